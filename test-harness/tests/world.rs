//! The world on its own: request budgets and throttle queues reach the engines, a crashed server
//! answers nothing (its writes already sent still land), wall-clock skew reaches what servers
//! write, spare servers keep their own clocks, and calls take their round trips.

use profilestore_core::value::{Value, json};
use profilestore_core::{Completion, Input, InputResult, Output, StartParams, StoreId};
use profilestore_harness::datastore::{DataStoreService, Limits};
use profilestore_harness::messaging::{MessagingConfig, MessagingService};
use profilestore_harness::world::{Happening, LatencyModel, ServerSpec, World, WorldConfig};

fn world(servers: usize, limits: Limits) -> (World, StoreId) {
    world_with(servers, limits, false)
}

/// [`world`], recording every engine input from the first when `record` is set.
fn world_with(servers: usize, limits: Limits, record: bool) -> (World, StoreId) {
    let config = WorldConfig {
        seed: 3,
        epoch: 1_735_689_600,
        fps: 60.0,
        latency: LatencyModel::Fixed(0.15),
        servers: (0..servers)
            .map(|i| ServerSpec {
                name: format!("S{i}"),
                place_id: 1001,
                wall_skew: 100 * i as i64,
            })
            .collect(),
    };
    let ds = DataStoreService::new(config.epoch)
        .with_limits(limits)
        .unwrap();
    let mut w = World::new(
        config,
        ds,
        MessagingService::new(MessagingConfig::roblox(3).with_delay(0.2)).unwrap(),
    )
    .unwrap();
    if record {
        w.record().unwrap();
    }
    let mut store = StoreId(0);
    for s in 0..servers {
        if let InputResult::Store(Ok(id)) = w.feed(
            s,
            Input::NewStore {
                name: "S".into(),
                template: json!({}),
            },
        ) {
            store = id;
        }
    }
    (w, store)
}

/// Server `s` calls `StartSessionAsync(key)` with default parameters.
fn start(w: &mut World, s: usize, store: StoreId, key: &str) {
    let now = w.now_for(s);
    let input = Input::StartSession {
        now,
        store: store.live(),
        key: key.into(),
        params: StartParams::default(),
    };
    w.feed(s, input);
}

/// Server `s` calls `MessageAsync(key, message)`; returns what the call returned.
fn send_message(w: &mut World, s: usize, store: StoreId, key: &str, message: Value) -> InputResult {
    let now = w.now_for(s);
    let input = Input::Message {
        now,
        store: store.live(),
        key: key.into(),
        message,
    };
    w.feed(s, input)
}

/// Two servers, the second a spare booted at 100 s.
fn spare_booted_at_100() -> (World, StoreId) {
    let (mut w, store) = world(2, Limits::unlimited());
    w.reserve(1);
    w.run_until(100.0);
    w.boot(1);
    (w, store)
}

/// A server that crashes with requests in its throttle queue never sends them: the
/// experience's budget gets back what they took (it used to stay taken).
#[test]
fn a_crashed_servers_queued_requests_give_back_the_experience_budget() {
    use profilestore_harness::datastore::RequestType;
    let (mut w, store) = world(2, Limits::roblox());
    // 120 updates go at once (60 a minute and the burst), 30 wait (one every second, from
    // 1 s), the rest are refused.
    for i in 0..200 {
        start(&mut w, 0, store, &format!("k{i}"));
    }
    w.run_until(0.5);
    let experience = |w: &mut World| {
        let now = w.now;
        [RequestType::StandardRead, RequestType::StandardWrite]
            .map(|kind| w.datastore.experience_budget(now, kind).unwrap())
    };
    let before = experience(&mut w);
    w.crash(0);
    let after = experience(&mut w);
    assert_eq!(after.map(|a| a as i64), before.map(|b| b as i64 + 30));
}

#[test]
fn throttled_requests_queue_and_overflow_is_refused() {
    let (mut w, store) = world(1, Limits::roblox());
    for i in 0..300 {
        start(&mut w, 0, store, &format!("k{i}"));
    }
    w.run_until(600.0);
    let errors = w
        .log
        .iter()
        .filter(|l| matches!(&l.what, Happening::Output(Output::Event(profilestore_core::Event::OnError { message, .. })) if message.starts_with("304")))
        .count();
    let returned: Vec<bool> = w
        .log
        .iter()
        .filter_map(|l| match &l.what {
            Happening::Output(Output::Completion(Completion::SessionStart { profile, .. })) => {
                Some(profile.is_some())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        returned.len(),
        300,
        "every start returns: retried through the throttle, or nil after START_SESSION_TIMEOUT"
    );
    // Requests beyond the budget wait in the queue; a queue holds 30 and the rest are
    // refused, reaching the engine as 304 errors; the starts retry through it. (A seeded run:
    // the counts are exact.)
    let started = returned.iter().filter(|ok| **ok).count();
    assert_eq!(
        (w.throttled, w.refused, errors, started),
        (325, 1138, 1138, 281)
    );
    // The last queued request left its queue then.
    assert_eq!(w.servers[0].throttled_until(), Some(325.0));
}

#[test]
fn unlimited_budgets_never_throttle_and_skew_reaches_lock_times() {
    let (mut w, store) = world(2, Limits::unlimited());
    for s in 0..2 {
        start(&mut w, s, store, &format!("k{s}"));
    }
    w.run_until(2.0);
    assert_eq!((w.throttled, w.refused), (0, 0));
    assert_eq!(
        w.stored("S", "k0").unwrap()["MetaData"]["LastUpdate"],
        json!(1_735_689_600)
    );
    assert_eq!(
        w.stored("S", "k1").unwrap()["MetaData"]["LastUpdate"],
        json!(1_735_689_700),
        "server 1 runs 100 s ahead"
    );
}

#[test]
fn a_crashed_server_answers_nothing() {
    let (mut w, store) = world(1, Limits::unlimited());
    start(&mut w, 0, store, "k");
    w.crash(0);
    w.run_until(5.0);
    assert_eq!(w.stored("S", "k"), None, "its request died with it");
    assert!(matches!(w.log.last().unwrap().what, Happening::Crashed));
}

/// An ambiguous failure (spec "Errors": the write lands, the call reports an error) is in the
/// log as the write it is, beside the error the engine saw; the one-lock-holder check and the
/// journals read writes from the log.
#[test]
fn an_ambiguous_failure_logs_its_write() {
    use profilestore_harness::datastore::{Fault, Operation, internal_rejection};
    let (mut w, store) = world(1, Limits::unlimited());
    w.datastore
        .script_fault(Operation::Update, Fault::Ambiguous(internal_rejection()));
    start(&mut w, 0, store, "k");
    w.run_until(0.5);
    let lines: Vec<String> = w
        .log
        .iter()
        .filter_map(|l| match &l.what {
            Happening::Write {
                store, key, value, ..
            } => Some(format!(
                "write {store}/{key} count {}",
                value["MetaData"]["SessionLoadCount"]
            )),
            Happening::Output(Output::Event(profilestore_core::Event::OnError {
                message, ..
            })) => Some(format!("error {}", &message[..3])),
            _ => None,
        })
        .collect();
    assert_eq!(lines, ["write S:global/k count 1", "error 502"]);
    assert_eq!(
        w.stored("S", "k").unwrap()["MetaData"]["SessionLoadCount"],
        json!(1),
        "the write landed"
    );
}

/// A start whose write takes another server's lock but reports an error (the write committed)
/// still tells the session it took the lock from once its retry lands: the retry finds its own
/// lock and keeps what the taking attempt took (deviation 8, spec §19 item 8). The lock looks
/// dead, so the first attempt asks for it and the next poll takes it (deviation 7); that
/// second write is the one that fails.
#[test]
fn a_take_whose_write_failed_ambiguously_still_tells_the_old_session() {
    use profilestore_harness::datastore::{Fault, Operation, internal_rejection};
    let (mut w, store) = world(1, Limits::unlimited());
    let dead = json!({"Data": {}, "GlobalUpdates": [0, []],
        "MetaData": {"SessionLoadCount": 3, "LastUpdate": 1_735_680_000,
                     "ActiveSession": [999, "dead-job", "DEAD-GUID"]}});
    w.raw_set(0, "S", "k", dead).unwrap();
    w.run_until(1.0);
    start(&mut w, 0, store, "k");
    w.run_until(2.0);
    w.datastore
        .script_fault(Operation::Update, Fault::Ambiguous(internal_rejection()));
    w.run_until(15.0);
    let seen: Vec<String> = w
        .log
        .iter()
        .filter_map(|l| match &l.what {
            Happening::Write { value, .. } => Some(format!(
                "write count {}",
                value["MetaData"]["SessionLoadCount"]
            )),
            Happening::Published { topic, data, .. } => Some(format!("publish {topic} {data}")),
            Happening::Output(Output::Completion(Completion::SessionStart { profile, .. })) => {
                Some(format!("started {}", profile.is_some()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        seen,
        [
            "write count 3",
            "write count 3",
            r#"publish PS_DEAD-GUID {"EndSession":true,"LoadCount":3}"#,
            "write count 4",
            "write count 5",
            r#"publish PS_DEAD-GUID {"EndSession":true,"LoadCount":3}"#,
            "started true",
        ]
    );
    // The ambiguous write is noted as the start's own: no API call of the game's.
    let noted: Vec<_> = w
        .ambiguous_writes
        .iter()
        .map(|a| (a.key.to_string(), a.server, a.call))
        .collect();
    assert_eq!(noted, [("k".to_string(), 0, None)]);
    // The start's writes are its own: no API call's.
    assert!(
        w.log
            .iter()
            .all(|l| !matches!(&l.what, Happening::Write { call: Some(_), .. }))
    );
}

/// A `MessageAsync` whose write commits although the call is told it failed is retried by
/// the update wrapper and writes the message again under a new id (the original protocol has
/// no idempotency token, spec §10.1): the world notes the ambiguous write as that call's, which
/// is what excuses the second copy in the fleet's invariant checks.
#[test]
fn an_ambiguous_message_write_is_noted_as_its_calls() {
    use profilestore_harness::datastore::{Fault, Operation, internal_rejection};
    let (mut w, store) = world(1, Limits::unlimited());
    w.run_until(1.0);
    w.datastore
        .script_fault(Operation::Update, Fault::Ambiguous(internal_rejection()));
    let now = w.now_for(0);
    let message = Input::Message {
        now,
        store: store.live(),
        key: "k".into(),
        message: json!({"Gift": "g1"}),
    };
    let InputResult::Call(Ok(call)) = w.feed(0, message) else {
        panic!("MessageAsync refused");
    };
    w.run_until(30.0);
    let noted: Vec<_> = w
        .ambiguous_writes
        .iter()
        .map(|a| (a.key.to_string(), a.server, a.call))
        .collect();
    assert_eq!(noted, [("k".to_string(), 0, Some(call))]);
    // The log names the call each write served.
    let writes: Vec<_> = w
        .log
        .iter()
        .filter_map(|l| match &l.what {
            Happening::Write { call, .. } => Some(*call),
            _ => None,
        })
        .collect();
    assert_eq!(writes, [Some(call), Some(call)]);
    let returned = w.log.iter().find_map(|l| match &l.what {
        Happening::Output(Output::Completion(Completion::Message { call: c, ok }))
            if *c == call =>
        {
            Some(*ok)
        }
        _ => None,
    });
    assert_eq!(returned, Some(true));
    let stored = w.stored("S", "k").expect("the message's writes");
    assert_eq!(
        stored["GlobalUpdates"],
        json!([2, [[1, {"Gift": "g1"}], [2, {"Gift": "g1"}]]])
    );
}

/// A GetAsync the server's cache answers (within 4 s of its own read or write of the key)
/// costs no request budget and no round trip (spec "Caching").
#[test]
fn a_cached_get_costs_no_budget_and_no_round_trip() {
    use profilestore_harness::datastore::RequestType;
    let (mut w, store) = world(1, Limits::roblox());
    start(&mut w, 0, store, "k");
    w.run_until(1.0);
    let get = |w: &mut World| {
        let now = w.now_for(0);
        w.feed(
            0,
            Input::Get {
                now,
                store: store.live(),
                key: "k".into(),
                version: None,
            },
        );
    };
    let reads = |w: &mut World| {
        let (now, id) = (w.now, w.servers[0].id);
        w.datastore
            .request_budget(now, id, RequestType::StandardRead)
            .unwrap()
    };
    let returned_at = |w: &World| {
        w.log.iter().rev().find_map(|l| match &l.what {
            Happening::Output(Output::Completion(Completion::Get { .. })) => Some(l.t),
            _ => None,
        })
    };
    let (before, sent) = (reads(&mut w), w.request_total());
    get(&mut w);
    w.run_until(2.0);
    assert_eq!(w.request_total(), sent, "no request sent");
    assert_eq!(
        returned_at(&w),
        Some(1.0),
        "answered from the cache at once"
    );
    assert_eq!(reads(&mut w), before, "no read budget spent");
    // Past the 4 s cache the read goes out: a round trip, one read token.
    w.run_until(10.0);
    let before = reads(&mut w);
    get(&mut w);
    w.run_until(11.0);
    assert_eq!(returned_at(&w), Some(10.15));
    assert_eq!(reads(&mut w), before - 1.0);
}

/// A GetAsync that missed the cache and waited in the Get queue is a request sent to the
/// DataStore (it paid its read token and counts as one): it reads the stored value, not the
/// cache its server's own write refreshed while it waited (which would be a cached hit that
/// cost budget, and here a stale one).
#[test]
fn a_queued_get_reads_the_datastore_not_a_cache_filled_meanwhile() {
    use profilestore_harness::datastore::{RequestType, SetOptions, StoreName};
    let (mut w, store) = world(2, Limits::roblox());
    w.run_until(1.0);
    let get = |w: &mut World, key: &str| {
        let now = w.now_for(0);
        w.feed(
            0,
            Input::Get {
                now,
                store: store.live(),
                key: key.into(),
                version: None,
            },
        );
    };
    let (a, b) = (w.servers[0].id, w.servers[1].id);
    let mut spent = 0;
    while w
        .datastore
        .request_budget(w.now, a, RequestType::StandardRead)
        .unwrap()
        >= 1.0
    {
        get(&mut w, &format!("x{spent}"));
        spent += 1;
    }
    assert_eq!(spent, 120, "a minute's reads and the startup burst");
    let sent = w.request_total();
    get(&mut w, "k");
    assert_eq!(w.request_total(), sent, "queued: not sent yet");
    // While it waits: its own server writes the key (its cache now holds n = 1), then
    // another server writes n = 2.
    let profile = |n: i64| json!({"Data": {"n": n}, "MetaData": {}, "GlobalUpdates": [0, []]});
    let name = StoreName::new("S");
    let now = w.now;
    w.datastore
        .set_async(now, a, &name, "k", profile(1), SetOptions::default())
        .unwrap();
    w.datastore
        .set_async(now, b, &name, "k", profile(2), SetOptions::default())
        .unwrap();
    w.run_until(3.0);
    // The last read to return is the queued one; its Data went to the host.
    let read = w.log.iter().rev().find_map(|l| match &l.what {
        Happening::Output(Output::Completion(Completion::Get {
            result: Ok(Some(loaded)),
            ..
        })) => Some(w.servers[0].host.data[&loaded.profile].clone()),
        _ => None,
    });
    assert_eq!(read, Some(json!({"n": 2})));
}

/// An `UpdateAsync` whose transform returns nil sends no write (spec "UpdateAsync": nil
/// cancels it), so it returns as the transform returns, one round trip after the call, and
/// meets no fault of a write: a save to a removed key (DEVIATIONS row 1: its transform
/// cancels) ends its session with the row's warning even while every call fails (it used to
/// wait a second round trip and come back as a 502, an `OnError`).
#[test]
fn a_cancelled_update_returns_at_once_and_meets_no_write_fault() {
    let (mut w, store) = world(1, Limits::unlimited());
    start(&mut w, 0, store, "k");
    w.run_until(1.0);
    let p = started_profile(&w);
    let id = w.servers[0].id;
    let name = profilestore_harness::datastore::StoreName::new("S");
    w.datastore.remove_async(w.now, id, &name, "k").unwrap();
    w.set_datastore_fail(1.0).unwrap();
    let now = w.now_for(0);
    assert!(!w.feed(0, Input::Save { now, profile: p }).is_refusal());
    let asked = w.now;
    w.run_until(5.0);
    let events: Vec<(f64, &str)> = w
        .log
        .iter()
        .filter(|l| l.t > asked - 1e-9)
        .filter_map(|l| match &l.what {
            Happening::Output(Output::Event(profilestore_core::Event::Warn { message }))
                if message.contains("was removed or overwritten externally") =>
            {
                Some((l.t, "warned"))
            }
            Happening::Output(Output::Event(profilestore_core::Event::OnError { .. })) => {
                Some((l.t, "OnError"))
            }
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].1, "warned");
    assert!((events[0].0 - (asked + 0.15)).abs() < 1e-9, "{events:?}");
    assert_eq!(w.stored("S", "k"), None, "nothing written");
}

/// A shutdown (`BindToClose`) closes the server when ProfileStore's close handling returns; one
/// whose final saves cannot land is killed `BIND_TO_CLOSE_LIMIT` (30 s) after it began.
#[test]
fn a_shutdown_closes_when_done_or_is_killed_after_thirty_seconds() {
    use profilestore_harness::world::BIND_TO_CLOSE_LIMIT;
    let lock = |w: &mut World| {
        w.stored("S", "k").unwrap()["MetaData"]
            .get("ActiveSession")
            .cloned()
    };
    let crashed_at = |w: &World| {
        w.log
            .iter()
            .find_map(|l| matches!(l.what, Happening::Crashed).then_some(l.t))
    };
    // Healthy: the final save lands, the server closes, nobody kills it.
    let (mut w, store) = world(1, Limits::unlimited());
    start(&mut w, 0, store, "k");
    w.run_until(1.0);
    assert!(lock(&mut w).is_some());
    w.shutdown(0);
    w.run_until(60.0);
    assert!(!w.servers[0].alive, "closed when BindToClose returned");
    assert_eq!(crashed_at(&w), None);
    assert_eq!(lock(&mut w), None, "the final save released the lock");
    // Every DataStore call failing: the final save retries until the kill.
    let (mut w, store) = world(1, Limits::unlimited());
    start(&mut w, 0, store, "k");
    w.run_until(1.0);
    w.set_datastore_fail(1.0).unwrap();
    w.shutdown(0);
    w.run_until(29.0);
    assert!(w.servers[0].alive, "still saving");
    w.run_until(60.0);
    assert_eq!(crashed_at(&w), Some(1.0 + BIND_TO_CLOSE_LIMIT));
    assert!(lock(&mut w).is_some(), "killed before any final save");
}

/// The profile of the first session the log shows started.
fn started_profile(w: &World) -> profilestore_core::ProfileId {
    w.log
        .iter()
        .find_map(|l| match &l.what {
            Happening::Output(Output::Completion(Completion::SessionStart {
                profile: Some(p),
                ..
            })) => Some(p.profile),
            _ => None,
        })
        .expect("started")
}

/// Server 0 calls `profile:Save()` at each of `times`.
fn save_at(w: &mut World, profile: profilestore_core::ProfileId, times: &[f64]) {
    for &at in times {
        w.run_until(at);
        let now = w.now_for(0);
        w.feed(0, Input::Save { now, profile });
    }
}

/// Server 0 calls `store:RemoveAsync(key)`.
fn remove(w: &mut World, store: StoreId, key: &str) {
    let now = w.now_for(0);
    let remove = Input::Remove {
        now,
        store: store.live(),
        key: key.into(),
    };
    w.feed(0, remove);
}

/// Unlimited but for per-key throughput.
fn key_limits(throughput: profilestore_harness::datastore::ThroughputLimits) -> Limits {
    Limits {
        throughput: Some(throughput),
        ..Limits::unlimited()
    }
}

/// The log's writes of `key`: when they committed (to the millisecond) and which server's
/// call wrote them.
fn writes_of(w: &World, key: &str) -> Vec<(f64, usize)> {
    w.log
        .iter()
        .filter_map(|l| match &l.what {
            Happening::Write { key: k, .. } if k.as_str() == key => {
                Some(((l.t * 1000.0).round() / 1000.0, l.server))
            }
            _ => None,
        })
        .collect()
}

/// When the log's writes committed (to the millisecond).
fn write_times(w: &World) -> Vec<f64> {
    w.log
        .iter()
        .filter(|l| matches!(l.what, Happening::Write { .. }))
        .map(|l| (l.t * 1000.0).round() / 1000.0)
        .collect()
}

/// A request on a key whose per-minute throughput is used up waits in the queue until the
/// window has room (Roblox "temporarily skips" it) instead of failing.
#[test]
fn a_key_out_of_throughput_holds_its_requests_until_the_window_slides() {
    use profilestore_harness::datastore::ThroughputLimits;
    // Two 1 KB units of writes per minute on a key.
    let (mut w, store) = world(
        1,
        key_limits(ThroughputLimits {
            write_bytes: 2048,
            ..ThroughputLimits::roblox()
        }),
    );
    start(&mut w, 0, store, "k");
    w.run_until(1.0);
    let profile = started_profile(&w);
    // The start wrote once (at 0.3 s); two saves make three writes within a minute.
    save_at(&mut w, profile, &[1.0, 2.0]);
    w.run_until(120.0);
    let writes = write_times(&w);
    // The third write waited for the first (committed at 0.3 s) to leave the window, then
    // went as an update goes: it read the key again at 60.45 s, its transform ran then
    // (LastUpdate is 60 s in, not 2 s), and the write landed a round trip later.
    assert_eq!(writes, [0.3, 1.3, 60.6]);
    assert_eq!(w.key_throttled, 1);
    // The server's request was held from when the key refused it (2.3 s: the save made at
    // 2 s, its commit a round trip later) until then (what a fleet reads of a throttle).
    assert_eq!(w.servers[0].throttled, [(2.3, 60.3)]);
    assert_eq!(
        w.stored("S", "k").unwrap()["MetaData"]["LastUpdate"],
        json!(1_735_689_660)
    );
    let errors = w
        .log
        .iter()
        .filter(|l| {
            matches!(
                l.what,
                Happening::Output(Output::Event(profilestore_core::Event::OnError { .. }))
            )
        })
        .count();
    assert_eq!(errors, 0, "held, not failed");

    // Reads too: one 1 KB read a minute, so the save's read waits for the start's to expire.
    let (mut w, store) = world(
        1,
        key_limits(ThroughputLimits {
            read_bytes: 1024,
            ..ThroughputLimits::roblox()
        }),
    );
    start(&mut w, 0, store, "k");
    w.run_until(1.0);
    let now = w.now_for(0);
    w.feed(0, Input::Save { now, profile });
    w.run_until(120.0);
    let writes = write_times(&w);
    // The start read at 0.15 s: the save's read leaves its queue when that read leaves the
    // window (60.15 s), travels like any request (at the store at 60.3 s), and its write
    // lands a round trip later.
    assert_eq!(writes, [0.3, 60.45]);
    assert_eq!((w.key_throttled, w.request_total()), (1, 2));
}

/// A plain `SetAsync` (`World::raw_set`) its key's throughput refuses waits until the key has
/// room and lands then, counted once, as a request held for its key does (it used to be
/// dropped without a trace). One whose server stopped while it waited dies in its queue; one
/// sent before its server stopped lands.
#[test]
fn a_raw_set_out_of_key_throughput_lands_when_the_key_has_room() {
    use profilestore_harness::datastore::ThroughputLimits;
    // Never crashed; crashed while the third write waits in its queue (it dies there);
    // crashed after it left the queue at 60.15 s but before it lands (sent, so it lands).
    for crash_at in [None, Some(10.0), Some(60.2)] {
        // Two 1 KB units of writes per minute on a key.
        let (mut w, _) = world(
            1,
            key_limits(ThroughputLimits {
                write_bytes: 2048,
                ..ThroughputLimits::roblox()
            }),
        );
        for (t, n) in [(0.0, 1), (1.0, 2), (2.0, 3)] {
            w.run_until(t);
            w.raw_set(0, "S", "k", json!({"n": n})).unwrap();
        }
        if let Some(t) = crash_at {
            w.run_until(t);
            w.crash(0);
        }
        w.run_until(120.0);
        let writes: Vec<f64> = writes_of(&w, "k").into_iter().map(|(t, _)| t).collect();
        if crash_at == Some(10.0) {
            assert_eq!(writes, [0.15, 1.15]);
            assert_eq!(w.stored("S", "k"), Some(json!({"n": 2})));
            assert_eq!(w.request_total(), 2);
        } else {
            // The first write (at 0.15 s) leaves the window at 60.15 s; the third goes then,
            // landing a round trip later.
            assert_eq!(writes, [0.15, 1.15, 60.3], "crash at {crash_at:?}");
            assert_eq!(w.stored("S", "k"), Some(json!({"n": 3})));
            assert_eq!((w.request_total(), w.key_throttled), (3, 1));
        }
    }
}

/// A save whose write meets another writer's, when the key has no read left for the newer
/// value, waits for the key and then reads it: its transform runs twice in all (at its read,
/// and on the newest value when it goes), not a third time on the value it knew was stale.
#[test]
fn a_conflict_with_no_read_left_runs_the_transform_on_the_newest_value() {
    use profilestore_harness::datastore::ThroughputLimits;
    let (mut w, store) = world_with(
        1,
        key_limits(ThroughputLimits {
            read_bytes: 2048,
            ..ThroughputLimits::roblox()
        }),
        true,
    );
    start(&mut w, 0, store, "k");
    w.run_until(1.0);
    let profile = started_profile(&w);
    // The save reads at 1.15 s (the key's second read this minute); another writer lands at
    // 1.2 s, before the save's write at 1.3 s.
    save_at(&mut w, profile, &[1.0]);
    w.run_until(1.05);
    let mut other = w.stored("S", "k").unwrap().clone();
    other["Data"]["Other"] = json!(1);
    w.raw_set(0, "S", "k", other).unwrap();
    w.run_until(120.0);
    let transforms = w
        .traced_inputs()
        .unwrap()
        .iter()
        .filter(|t| matches!(t.input, Input::Transform { .. }))
        .count();
    // The start's one, the save's two.
    assert_eq!(transforms, 3);
    assert_eq!(w.key_throttled, 1);
    // The start, the other writer, the save: its read goes when the start's read leaves the
    // window (60.15 s), a round trip to the store, a round trip for the write.
    assert_eq!(write_times(&w), [0.3, 1.2, 60.45]);
    assert_eq!(
        w.stored("S", "k").unwrap()["Data"],
        json!({}),
        "the save's own Data"
    );
}

/// A call meets the world's faults once: a `GetAsync` held for its key's throughput, sent
/// again once the key has room, does not draw them again (here they are certain by then).
#[test]
fn a_request_held_for_its_key_meets_the_worlds_faults_once() {
    use profilestore_harness::datastore::ThroughputLimits;
    let (mut w, store) = world(
        1,
        key_limits(ThroughputLimits {
            read_bytes: 1024,
            ..ThroughputLimits::roblox()
        }),
    );
    start(&mut w, 0, store, "k");
    // Past the server's 4 s cache of the start's read.
    w.run_until(5.0);
    let now = w.now_for(0);
    let get = Input::Get {
        now,
        store: store.live(),
        key: "k".into(),
        version: None,
    };
    w.feed(0, get);
    w.run_until(6.0);
    assert_eq!(w.key_throttled, 1, "held for the key");
    w.set_datastore_fail(1.0).unwrap();
    w.run_until(120.0);
    let answered: Vec<bool> = w
        .log
        .iter()
        .filter_map(|l| match &l.what {
            Happening::Output(Output::Completion(profilestore_core::Completion::Get {
                result,
                ..
            })) => Some(matches!(result, Ok(Some(_)))),
            _ => None,
        })
        .collect();
    assert_eq!(answered, [true], "answered with the profile, not the fault");
}

/// A request held for its key's throughput takes a place in its server's throttle queues
/// (spec "Queues": it "is queued but temporarily skipped"), so a full queue drops it: with no
/// queue at all (capacity 0) the save the key has no room for fails with 304 instead of
/// waiting, and the next save, once the window has slid, lands.
#[test]
fn a_request_held_for_its_key_is_dropped_when_its_queue_is_full() {
    use profilestore_harness::datastore::{Budgets, ThroughputLimits};
    let limits = Limits {
        budgets: Some(Budgets {
            queue_capacity: 0,
            ..Budgets::roblox()
        }),
        ..key_limits(ThroughputLimits {
            write_bytes: 2048,
            ..ThroughputLimits::roblox()
        })
    };
    let (mut w, store) = world(1, limits);
    start(&mut w, 0, store, "k");
    w.run_until(1.0);
    let profile = started_profile(&w);
    // The start wrote at 0.3 s; the saves fed at 1 s and 2 s are the second and third writes
    // within a minute: the third has no room on the key and no place to wait.
    save_at(&mut w, profile, &[1.0, 2.0]);
    w.run_until(30.0);
    assert_eq!(write_times(&w), [0.3, 1.3]);
    assert_eq!((w.key_throttled, w.refused), (0, 1));
    let dropped: Vec<String> = w
        .log
        .iter()
        .filter_map(|l| match &l.what {
            Happening::Output(Output::Event(profilestore_core::Event::OnError {
                message, ..
            })) => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        dropped,
        ["304: UpdateAsync request dropped. Request was throttled but queue was full."]
    );
    // A minute after the start's write the key has room again: a save lands.
    save_at(&mut w, profile, &[61.0]);
    w.run_until(62.0);
    assert_eq!(write_times(&w), [0.3, 1.3, 61.3]);
}

/// The virtual clock never runs backwards (DESIGN §2: monotonic time for scheduling). A profile
/// joining the auto-save ring brings the ring's next slot forward, to a time that can already
/// be past; it fires at the next frame, not at a frame before the clock.
#[test]
fn the_clock_never_runs_backwards() {
    let (mut w, store) = world(1, Limits::unlimited());
    w.run_until(1.0);
    start(&mut w, 0, store, "k1");
    w.run_until(200.0);
    start(&mut w, 0, store, "k2");
    w.run_until(400.0);
    let times: Vec<f64> = w.log.iter().map(|l| l.t).collect();
    let back = times.windows(2).position(|t| t[1] < t[0]);
    assert_eq!(
        back.map(|i| &times[i..i + 2]),
        None,
        "the clock stepped back"
    );
    // k1's auto-save slot moved to the past when k2 joined: its save starts at the first frame
    // after k2's load landed (200.30 s) and commits at 200.6 s.
    let k1_saves = writes_of(&w, "k1");
    assert_eq!(k1_saves[..2], [(1.3, 0), (200.6, 0)], "{k1_saves:?}");
    assert_eq!(w.now, 400.0);
}

/// A plain `SetAsync` (a scenario's `raw_set`) is a DataStore call like the engine's: it meets
/// the world's faults and counts as a request (it used to write in every case); sent before its
/// server crashed, it lands, as an update's write does.
#[test]
fn a_raw_set_meets_faults_and_lands_after_a_crash() {
    let (mut w, _) = world(1, Limits::unlimited());
    w.raw_set(0, "S", "k", json!(1)).unwrap();
    w.crash(0);
    w.run_until(1.0);
    assert_eq!(w.stored("S", "k"), Some(json!(1)));

    let (mut w, _) = world(1, Limits::unlimited());
    w.set_datastore_fail(1.0).unwrap();
    w.raw_set(0, "S", "k", json!(1)).unwrap();
    w.run_until(1.0);
    assert_eq!(w.stored("S", "k"), None);
    assert_eq!(w.request_counts().get("SetAsync"), Some(&1));

    let (mut w, _) = world(1, Limits::unlimited());
    w.raw_set(0, "S", "k", json!(1)).unwrap();
    w.run_until(1.0);
    assert_eq!(w.stored("S", "k"), Some(json!(1)));
    assert_eq!(w.request_counts().get("SetAsync"), Some(&1));
}

/// A spare server booted late has an `os.clock()` of its own, counting from its boot (spec §0:
/// "local to this process"), and its engine's deadlines are kept in that clock: its session's
/// first auto-save comes one `AUTO_SAVE_PERIOD` (300 s) after its load, in world time.
#[test]
fn a_booted_spare_counts_its_clock_from_its_boot() {
    let (mut w, store) = spare_booted_at_100();
    assert_eq!(w.now_for(1).mono, 0.0);
    assert_eq!(w.now_for(0).mono, 100.0);
    start(&mut w, 1, store, "k");
    w.run_until(500.0);
    assert_eq!(
        writes_of(&w, "k"),
        [(100.3, 1), (400.6, 1)],
        "load, then the auto-save"
    );
}

/// A server in reserve takes its stores and constants, nothing that would send a request or
/// a message: a start is refused, naming the server, and nothing reaches the DataStore until
/// it boots.
#[test]
fn a_server_in_reserve_takes_only_its_setup() {
    let (mut w, store) = world(2, Limits::unlimited());
    w.reserve(1);
    let now = w.now_for(1);
    let input = Input::StartSession {
        now,
        store: store.live(),
        key: "k".into(),
        params: StartParams::default(),
    };
    assert_eq!(
        w.feed(1, input),
        InputResult::Done(Err(
            "server 1 is in reserve: it takes its stores and constants until it boots".into()
        ))
    );
    let setup = Input::NewStore {
        name: "T".into(),
        template: json!({}),
    };
    assert!(matches!(w.feed(1, setup), InputResult::Store(Ok(_))));
    w.run_until(10.0);
    assert_eq!(w.request_total(), 0);
    w.boot(1);
    start(&mut w, 1, store, "k");
    w.run_until(20.0);
    assert_eq!(writes_of(&w, "k"), [(10.3, 1)], "the load, once booted");
}

/// The same clock decides the start-up rule of spec §10.4: a session's messages are ignored
/// while its server's `os.clock()` is 6 s or less. A spare booted at 100 s ignores the nudge
/// of a `MessageAsync` that arrives 1.5 s after its boot (it used to read 101.5 and save).
#[test]
fn a_booted_spare_ignores_messages_in_its_first_six_seconds() {
    let (mut w, store) = spare_booted_at_100();
    start(&mut w, 1, store, "k");
    w.run_until(101.0);
    send_message(&mut w, 0, store, "k", json!({"gift": 1}));
    w.run_until(110.0);
    assert_eq!(
        writes_of(&w, "k"),
        [(100.3, 1), (101.3, 0)],
        "the load, the message; no save by server 1"
    );
}

/// A server that is not running is left alone: a second crash logs nothing, a shutdown of a
/// crashed server feeds its engine nothing, and only a server in reserve boots (a running one
/// keeps its `os.clock()`).
#[test]
fn a_server_not_running_is_left_alone() {
    let (mut w, store) = world(2, Limits::unlimited());
    start(&mut w, 0, store, "k");
    w.run_until(1.0);
    w.crash(0);
    let lines = w.log.len();
    w.crash(0);
    w.shutdown(0);
    w.run_until(40.0);
    assert_eq!(
        w.log.len(),
        lines,
        "{:?}",
        &w.log.iter().skip(lines).collect::<Vec<_>>()
    );
    let before = w.now_for(1).mono;
    w.boot(1);
    w.boot(0);
    assert_eq!(
        w.now_for(1).mono,
        before,
        "a running server's clock goes on"
    );
    assert!(!w.servers[0].alive, "a crashed server stays down");
    // A stopped server takes no input: refused, naming it, and nothing runs.
    let now = w.now_for(0);
    let lines = w.log.len();
    let refused = w.feed(0, Input::Shutdown { now });
    assert_eq!(
        refused,
        InputResult::Done(Err(
            "server 0 is not running: it stopped at t=1.000".to_string()
        ))
    );
    assert_eq!(w.log.len(), lines);
    // Nor does it go back into reserve (a boot would restart its clock), nor does a running
    // server once the clock has moved.
    w.reserve(0);
    w.reserve(1);
    assert!(w.servers[1].alive);
    w.boot(0);
    assert!(!w.servers[0].alive);
}

/// `run_until(f64::INFINITY)` runs until the world is quiet and leaves the clock at its last
/// event (it used to loop for ever with the clock at infinity); an end before the clock, or
/// NaN, runs nothing and moves nothing.
#[test]
fn run_until_infinity_stops_when_quiet() {
    let (mut w, store) = world(1, Limits::unlimited());
    let key = "k";
    let now = w.now_for(0);
    let input = Input::Message {
        now,
        store: store.live(),
        key: key.into(),
        message: json!({"Gift": 1}),
    };
    w.feed(0, input);
    w.run_until(f64::INFINITY);
    // Quiet once the message's write landed (0.3 s): no clock run to infinity.
    assert!((w.now - 0.3).abs() < 1e-9, "{}", w.now);
    assert_eq!(writes_of(&w, key).len(), 1);
    let now = w.now;
    w.run_until(f64::NAN);
    w.run_until(now - 0.5);
    assert_eq!(w.now, now);
}

/// A deadline past the last frame the clock can number (a constant set to 1e18 s: here a
/// start's wait before its next look at a locked key) is never reached: `run_until(f64::
/// INFINITY)` stops once the rest is quiet, as for no deadline (it used to overflow the frame
/// count: a panic in a debug build, a loop for ever in a release one). So does an end that far
/// away.
#[test]
fn a_deadline_past_the_last_frame_is_never_reached() {
    let (mut w, store) = world(1, Limits::unlimited());
    let locked = json!({
        "Data": {},
        "MetaData": {"ActiveSession": [1, "other-job", "0A0A0A0A-0000-0000-0000-000000000000"],
                     "LastUpdate": 1_735_689_600, "SessionLoadCount": 1},
        "GlobalUpdates": [0, []]
    });
    w.raw_set(0, "S", "k", locked).unwrap();
    w.run_until(1.0);
    let set = Input::SetConstant {
        name: "FIRST_LOAD_REPEAT".into(),
        value: 1e18,
    };
    assert!(!w.feed(0, set).is_refusal());
    start(&mut w, 0, store, "k");
    w.run_until(f64::INFINITY);
    assert!(
        w.now < 10.0,
        "quiet after the first look at the lock: {}",
        w.now
    );
    w.run_until(1e20);
    assert_eq!(w.now, 1e20);
}

/// A server that dies after its transform ran still has its write on the way: it lands, and
/// no answer reaches anyone (a write "may still have been applied"). Dying before the read
/// came back, it writes nothing (`a_crashed_server_answers_nothing`).
#[test]
fn a_write_sent_before_a_crash_lands() {
    let (mut w, store) = world(1, Limits::unlimited());
    start(&mut w, 0, store, "k");
    // The read answers at 0.15 s and the transform runs; the write commits at 0.30 s.
    w.run_until(0.2);
    w.crash(0);
    w.run_until(5.0);
    let stored = w.stored("S", "k").expect("the write landed");
    let job = w.servers[0].engine().identity().job_id.clone();
    assert_eq!(stored["MetaData"]["ActiveSession"][1], json!(job.as_str()));
    let answered = w.log.iter().any(|l| {
        matches!(
            l.what,
            Happening::Output(Output::Completion(Completion::SessionStart { .. }))
        )
    });
    assert!(!answered, "nobody hears of it");
}

/// A fleet logs only a summary of each write (`log_values` false), but a write that lands
/// after its server died is logged whole: no `OnAfterSave` will say what it stored.
#[test]
fn a_write_landing_after_its_server_died_is_logged_whole() {
    let logged = |w: &World, key: &str| -> Vec<Value> {
        w.log
            .iter()
            .filter_map(|l| match &l.what {
                Happening::Write { key: k, value, .. } if k == key => Some(value.clone()),
                _ => None,
            })
            .collect()
    };
    let (mut w, store) = world(2, Limits::unlimited());
    w.log_values = false;
    start(&mut w, 1, store, "alive");
    start(&mut w, 0, store, "k");
    w.run_until(0.2);
    w.crash(0);
    w.run_until(5.0);
    let stored = w.stored("S", "k").expect("the write landed");
    assert_eq!(logged(&w, "k"), [stored]);
    // A live server's write is summarized (by default to its `MetaData`).
    let alive = w.stored("S", "alive").unwrap();
    assert_eq!(
        logged(&w, "alive"),
        [json!({"MetaData": alive["MetaData"].clone()})]
    );
}

/// `SubscribeAsync` yields (spec §0): a session's subscription to its topic starts one round
/// trip after the session started, so a message published in between is not received; a
/// session that ended before the call came back is disconnected as soon as it does (spec
/// §10.4: "disconnected at once").
#[test]
fn a_subscription_starts_one_round_trip_after_it_is_asked_for() {
    let (mut w, store) = world_with(1, Limits::unlimited(), true);
    start(&mut w, 0, store, "k");
    // The start's write lands at 0.30 s; it returns and asks to subscribe.
    w.run_until(0.31);
    let guid = w.stored("S", "k").unwrap()["MetaData"]["ActiveSession"][2]
        .as_str()
        .unwrap()
        .to_string();
    let topic = profilestore_core::guid::session_topic(&guid);
    assert_eq!(w.messaging.subscribers(&topic), []);
    // Published before the subscription starts (at 0.45 s), and after: only the second is
    // received (0.2 s after it was published).
    let id = w.servers[0].id;
    let publish = |w: &mut World, n: i64| {
        let now = w.now;
        w.messaging.publish(now, id, &topic, &json!(n)).unwrap();
    };
    publish(&mut w, 1);
    w.run_until(0.5);
    assert_eq!(w.messaging.subscribers(&topic).len(), 1);
    publish(&mut w, 2);
    w.run_until(1.0);
    let received: Vec<Value> = w
        .traced_inputs()
        .unwrap()
        .iter()
        .filter_map(|t| match &t.input {
            Input::MessageReceived { data, .. } => Some(data.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(received, [json!(2)]);

    let (mut w, store) = world(1, Limits::unlimited());
    w.outputs = Some(Vec::new());
    start(&mut w, 0, store, "k");
    w.run_until(0.31);
    let profile = w.servers[0].engine().active_profiles()[0];
    let now = w.now_for(0);
    w.feed(0, Input::EndSession { now, profile });
    // The engine asks to disconnect only once the call came back (one round trip after it was
    // made at 0.30 s), not as the session ends.
    let unsubscribes = |w: &World| {
        w.outputs
            .iter()
            .flatten()
            .filter(|(_, o)| {
                matches!(
                    o,
                    Output::Messaging(profilestore_core::MessagingRequest::Unsubscribe { .. })
                )
            })
            .count()
    };
    w.run_until(0.44);
    assert_eq!(unsubscribes(&w), 0);
    w.run_until(5.0);
    assert_eq!(unsubscribes(&w), 1);
    let guid = w.log.iter().find_map(|l| match &l.what {
        Happening::Write { value, .. } => value["MetaData"]["ActiveSession"][2]
            .as_str()
            .map(str::to_string),
        _ => None,
    });
    let topic = profilestore_core::guid::session_topic(&guid.unwrap());
    assert_eq!(w.messaging.subscribers(&topic), [], "disconnected");
}

/// An `UpdateAsync` that finds another writer landed between its read and its write runs its
/// transform again on the server with the newer value: half a round trip for the value to come
/// back, half for the write to go again (0.15 s here), not in the same instant. The call meets
/// the world's faults once, not again at its second write.
#[test]
fn a_conflicting_update_tries_again_half_a_round_trip_each_way() {
    let (mut w, store) = world(2, Limits::unlimited());
    start(&mut w, 0, store, "k");
    w.run_until(1.0);
    let profile = w.servers[0].engine().active_profiles()[0];
    let now = w.now_for(0);
    w.feed(0, Input::Save { now, profile });
    send_message(&mut w, 1, store, "k", json!({"gift": 1}));
    // The call met the world's faults at its first write (1.3 s); its second does not draw
    // again, so faults from now on do not touch it.
    w.run_until(1.35);
    w.set_datastore_fail(1.0).unwrap();
    w.run_until(3.0);
    let writes: Vec<(f64, usize)> = writes_of(&w, "k")
        .into_iter()
        .filter(|(t, _)| *t > 1.0)
        .collect();
    assert_eq!(
        writes,
        [(1.3, 0), (1.45, 1)],
        "the save, then the message's second try"
    );
    let stored = w.stored("S", "k").unwrap();
    assert_eq!(
        stored["GlobalUpdates"],
        json!([1, [[1, {"gift": 1}]]]),
        "{stored}"
    );
}

/// A session of `S/k` in a world with `limits` whose save stored `{"Coins": 9}` (and
/// `RobloxMetaData` `{"Tag": "a"}`): the world and the profile.
fn a_session_saved_with_nine(limits: Limits) -> (World, profilestore_core::ProfileId) {
    let (mut w, store) = world(1, limits);
    start(&mut w, 0, store, "k");
    w.run_until(1.0);
    let profile = w.servers[0].engine().active_profiles()[0];
    let host = &mut w.servers[0].host;
    host.data.insert(profile, json!({"Coins": 9}));
    host.roblox_metadata.insert(profile, json!({"Tag": "a"}));
    let now = w.now_for(0);
    w.feed(0, Input::Save { now, profile });
    w.run_until(2.0);
    (w, profile)
}

/// Shuts the server down; checks the lock was released keeping the stored `Data` (`{"Coins":
/// 9}`) and the shutdown completed; returns the stored value and the refusal warnings.
fn shut_down_keeping_the_stored_data(w: &mut World) -> (Value, Vec<String>) {
    let now = w.now_for(0);
    w.feed(0, Input::Shutdown { now });
    w.run_until(20.0);
    let stored = w.stored("S", "k").unwrap();
    assert_eq!(stored["MetaData"].get("ActiveSession"), None, "released");
    assert_eq!(
        stored["Data"],
        json!({"Coins": 9}),
        "the stored Data is kept"
    );
    let done = w.log.iter().any(|l| {
        matches!(
            l.what,
            Happening::Output(Output::Completion(Completion::Shutdown))
        )
    });
    assert!(done, "the shutdown completes");
    let refusals = warnings(w)
        .into_iter()
        .map(|(_, m)| m)
        .filter(|m| m.contains("The DataStore refused to store"))
        .collect();
    (stored, refusals)
}

/// A final save the DataStore refuses as unstorable (here a `RobloxMetaData` over the 300
/// characters metadata may have: 511) is not sent again as it is for ever, holding the lock and
/// the shutdown: the next try releases the lock keeping the stored `Data` and metadata, and says
/// why (spec §19 item 16, DEVIATIONS row 16).
#[test]
fn a_final_save_the_store_refuses_releases_the_lock_keeping_what_is_stored() {
    let (mut w, profile) = a_session_saved_with_nine(Limits::roblox());
    // Then the game changes both, and its metadata is too large to keep.
    let host = &mut w.servers[0].host;
    host.data.insert(profile, json!({"Coins": 10}));
    let big = json!({"Note": "x".repeat(400)});
    host.roblox_metadata.insert(profile, big);
    let (stored, refusals) = shut_down_keeping_the_stored_data(&mut w);
    assert_eq!(
        stored["RobloxMetaData"],
        json!({"Tag": "a"}),
        "and its metadata"
    );
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(refusals[0].contains("511"), "the warning names the problem");
}

/// Row 16 with a `Data` the DataStore refuses as too large (105; the world keeps values of at
/// most 2,000 bytes): the final save's next try releases the lock keeping the stored `Data`,
/// naming the error, and the shutdown completes.
#[test]
fn a_final_save_of_data_too_large_releases_the_lock_keeping_the_stored_data() {
    let mut limits = Limits::roblox();
    limits.max_value_len = Some(2_000);
    let (mut w, profile) = a_session_saved_with_nine(limits);
    let too_large = json!({"Coins": 10, "Note": "x".repeat(3_000)});
    w.servers[0].host.data.insert(profile, too_large);
    let (_, refusals) = shut_down_keeping_the_stored_data(&mut w);
    assert_eq!(
        refusals,
        [
            "[ProfileStore]: The DataStore refused to store \"Profile.Data\" or \
             \"Profile.RobloxMetaData\" (STORE:S; KEY:k) (105: Serialized value exceeds 2000 \
             limit.); the session was released keeping the last saved Data"
        ]
    );
}

/// A world whose DataStore keeps at most 10 characters of metadata, with `S/k` a profile whose
/// `RobloxMetaData` is longer: every write of the key (each keeps its metadata) is refused
/// with 511.
fn a_key_whose_metadata_the_store_refuses() -> (World, StoreId) {
    let mut limits = Limits::roblox();
    limits.metadata = Some(profilestore_harness::datastore::MetadataLimits {
        key: 50,
        value: 250,
        total: 10,
    });
    let (mut w, store) = world(1, limits);
    let profile = json!({"Data": {"Coins": 1}, "GlobalUpdates": [0, []],
                         "MetaData": {"ProfileCreateTime": 1, "SessionLoadCount": 1, "MetaTags": {}},
                         "RobloxMetaData": {"Note": "longer than ten"}});
    w.raw_set(0, "S", "k", profile).unwrap();
    w.run_until(1.0);
    (w, store)
}

/// Whether the first session start the log shows returned a profile (`None`: none returned).
fn first_start_returned_a_profile(w: &World) -> Option<bool> {
    w.log.iter().find_map(|l| match &l.what {
        Happening::Output(Output::Completion(Completion::SessionStart { profile, .. })) => {
            Some(profile.is_some())
        }
        _ => None,
    })
}

/// The warnings the log holds, with their times.
fn warnings(w: &World) -> Vec<(f64, String)> {
    w.log
        .iter()
        .filter_map(|l| match &l.what {
            Happening::Output(Output::Event(profilestore_core::Event::Warn { message })) => {
                Some((l.t, message.clone()))
            }
            _ => None,
        })
        .collect()
}

/// A `MessageAsync` whose write the DataStore can never store (here the key's metadata, which
/// the write keeps: 511) returns false and says why, instead of retrying until the server
/// closes.
#[test]
fn a_message_the_store_cannot_keep_fails_at_once() {
    let (mut w, store) = a_key_whose_metadata_the_store_refuses();
    let before = w.stored("S", "k");
    let call = match send_message(&mut w, 0, store, "k", json!({"Gift": 1})) {
        InputResult::Call(Ok(call)) => call,
        other => panic!("{other:?}"),
    };
    w.run_until(5.0);
    let returned = w.log.iter().find_map(|l| match &l.what {
        Happening::Output(Output::Completion(Completion::Message { call: c, ok }))
            if *c == call =>
        {
            Some((l.t, *ok))
        }
        _ => None,
    });
    let warned = warnings(&w);
    // One update (sent at 1.0 s, its write refused at 1.3 s), no retry: false at once, saying
    // why, after the error every refused request registers.
    let at = |t: f64| (t - 1.3).abs() < 1e-9;
    assert!(returned.is_some_and(|(t, ok)| at(t) && !ok), "{returned:?}");
    let texts: Vec<&str> = warned.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(
        texts,
        [
            "[ProfileStore]: DataStore API error (STORE:S; KEY:k) - 511: Metadata attribute size \
             exceeds 10 limit.",
            "[ProfileStore]: MessageAsync (STORE:S; KEY:k) failed: the DataStore cannot store the \
             message (511: Metadata attribute size exceeds 10 limit.)"
        ]
    );
    assert!(warned.iter().all(|(t, _)| at(*t)));
    assert_eq!(w.request_counts().get("UpdateAsync"), Some(&1));
    assert!(before.is_some());
    assert_eq!(w.stored("S", "k"), before, "nothing written");
}

/// A session start whose write the DataStore can never store (the key's metadata again: 511)
/// returns nil at once and says why, instead of retrying until `START_SESSION_TIMEOUT` (or for
/// ever, with a `Cancel`); under the world's faults too, which used to answer the write a
/// server error to retry (as the DataStore's own faults do not).
#[test]
fn a_start_the_store_cannot_keep_returns_nil_at_once() {
    for fail in [0.0, 1.0] {
        a_start_the_store_cannot_keep_returns_nil_at_once_with(fail);
    }
}

fn a_start_the_store_cannot_keep_returns_nil_at_once_with(fail: f64) {
    let (mut w, store) = a_key_whose_metadata_the_store_refuses();
    w.set_datastore_fail(fail).unwrap();
    start(&mut w, 0, store, "k");
    w.run_until(2.0);
    let returned = first_start_returned_a_profile(&w);
    assert_eq!(returned, Some(false), "nil within two seconds");
    let warned = warnings(&w);
    let texts: Vec<&str> = warned.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(
        texts,
        [
            "[ProfileStore]: DataStore API error (STORE:S; KEY:k) - 511: Metadata attribute size \
             exceeds 10 limit.",
            "[ProfileStore]: StartSessionAsync (STORE:S; KEY:k) returns nil: the DataStore cannot \
             store the profile (511: Metadata attribute size exceeds 10 limit.)"
        ]
    );
    // One update (its write refused at 1.3 s), no retry.
    assert!(
        warned.iter().all(|(t, _)| (t - 1.3).abs() < 1e-9),
        "{warned:?}"
    );
    assert_eq!(w.request_counts().get("UpdateAsync"), Some(&1));
}

/// A stored `UserIds` holding what is not a whole number (written by another tool) does not
/// lock the profile out: the key's user ids a write sends are the whole numbers, as the profile
/// loads them (docs/DEVIATIONS.md, "Message ids and user ids are whole numbers"); sent as
/// stored, the DataStore refused every write (513) and the start returned nil for good.
#[test]
fn a_stored_user_id_that_is_not_a_whole_number_does_not_lock_the_profile_out() {
    let (mut w, store) = world(1, Limits::roblox());
    let meta = json!({"ProfileCreateTime": 1, "SessionLoadCount": 1, "MetaTags": {}});
    let profile = json!({"Data": {"Coins": 1}, "GlobalUpdates": [0, []], "MetaData": meta,
                         "UserIds": [101, "202", 1.5]});
    w.raw_set(0, "S", "k", profile).unwrap();
    w.run_until(1.0);
    start(&mut w, 0, store, "k");
    w.run_until(3.0);
    assert_eq!(first_start_returned_a_profile(&w), Some(true));
    let written = w.log.iter().rev().find_map(|l| match &l.what {
        Happening::Write {
            user_ids, value, ..
        } => Some((user_ids.clone(), value["UserIds"].clone())),
        _ => None,
    });
    // The key's user ids are the whole ones; the stored field keeps what it held.
    assert_eq!(written, Some((vec![101], json!([101, "202", 1.5]))));
}

/// A stored `RobloxMetaData` that is no table the DataStore takes as metadata (another tool's
/// `5`, `"x"` or `[1, 2]`) does not lock the profile out: a write sends no metadata, and the
/// profile loads `{}` (docs/DEVIATIONS.md, "Message ids and user ids are whole numbers"); sent
/// as stored, the DataStore refused every write (513): the start returned nil and every
/// `MessageAsync` false, for good.
#[test]
fn a_stored_roblox_metadata_that_is_no_table_does_not_lock_the_profile_out() {
    for stored in [json!(5), json!("x"), json!([1, 2])] {
        let (mut w, store) = world(1, Limits::roblox());
        let meta = json!({"ProfileCreateTime": 1, "SessionLoadCount": 1, "MetaTags": {}});
        let profile = json!({"Data": {"Coins": 1}, "GlobalUpdates": [0, []], "MetaData": meta,
                             "RobloxMetaData": stored.clone()});
        w.raw_set(0, "S", "k", profile).unwrap();
        w.run_until(1.0);
        let call = match send_message(&mut w, 0, store, "k", json!({"Gift": 1})) {
            InputResult::Call(Ok(call)) => call,
            other => panic!("{other:?}"),
        };
        w.run_until(2.0);
        start(&mut w, 0, store, "k");
        w.run_until(4.0);
        let sent = w.log.iter().find_map(|l| match &l.what {
            Happening::Output(Output::Completion(Completion::Message { call: c, ok }))
                if *c == call =>
            {
                Some(*ok)
            }
            _ => None,
        });
        assert_eq!(sent, Some(true), "{stored}");
        assert_eq!(first_start_returned_a_profile(&w), Some(true), "{stored}");
        let profile = started_profile(&w);
        save_at(&mut w, profile, &[5.0]);
        w.run_until(7.0);
        // The message's write and the start's: no metadata (the key's is `{}`), the stored
        // field as it was; the save's: the loaded `Profile.RobloxMetaData`, `{}`, as both.
        let written: Vec<(Value, Value)> = w
            .log
            .iter()
            .filter_map(|l| match &l.what {
                Happening::Write {
                    metadata,
                    value,
                    transformed_at: Some(_),
                    ..
                } => Some((metadata.clone(), value["RobloxMetaData"].clone())),
                _ => None,
            })
            .collect();
        let none = (json!({}), stored.clone());
        let saved = (json!({}), json!({}));
        assert_eq!(written, [none.clone(), none, saved], "{stored}");
    }
}

/// A server that is not running sends nothing: a `SetAsync` from it after its crash is refused,
/// naming it, and nothing lands (one sent before the crash still does).
#[test]
fn a_raw_set_from_a_stopped_server_is_refused() {
    let (mut w, _) = world(1, Limits::unlimited());
    w.raw_set(0, "S", "sent", json!(1)).unwrap();
    w.crash(0);
    assert_eq!(
        w.raw_set(0, "S", "after", json!(2)),
        Err("server 0 is not running: it sends no SetAsync".to_string())
    );
    w.run_until(5.0);
    assert_eq!(w.stored("S", "sent"), Some(json!(1)));
    assert_eq!(w.stored("S", "after"), None);
    assert_eq!(w.request_counts().get("SetAsync"), Some(&1));
}

/// A `RemoveAsync` is a write: sent before its server crashed, it still lands, as an update's
/// write does (and, like any call, meets the world's faults).
#[test]
fn a_removal_sent_before_a_crash_lands() {
    let (mut w, store) = world(1, Limits::unlimited());
    w.raw_set(0, "S", "k", json!(1)).unwrap();
    w.run_until(1.0);
    remove(&mut w, store, "k");
    w.crash(0);
    w.run_until(2.0);
    assert_eq!(w.stored("S", "k"), None, "removed");
    assert_eq!(w.request_counts().get("RemoveAsync"), Some(&1));
}

/// A removal still waiting in its server's throttle queue when the server crashes was never
/// sent: it dies with the server (spec "Queues": throttled requests wait in the server's
/// queues), while one already sent lands.
#[test]
fn a_removal_still_queued_when_its_server_crashes_does_not_land() {
    use profilestore_harness::datastore::{Budgets, Rate};
    // One removal a minute and no burst: the second waits a minute in the Set queue.
    let limits = Limits {
        budgets: Some(Budgets {
            remove: Rate {
                base: 1.0,
                per_player: 0.0,
                startup_burst: 0.0,
            },
            experience: None,
            ..Budgets::roblox()
        }),
        ..Limits::unlimited()
    };
    let (mut w, store) = world(1, limits);
    w.raw_set(0, "S", "sent", json!(1)).unwrap();
    w.raw_set(0, "S", "queued", json!(2)).unwrap();
    w.run_until(1.0);
    for key in ["sent", "queued"] {
        remove(&mut w, store, key);
    }
    assert_eq!(w.throttled, 1, "the second waits");
    w.crash(0);
    w.run_until(120.0);
    assert_eq!(
        w.stored("S", "sent"),
        None,
        "sent before the crash: removed"
    );
    assert_eq!(w.stored("S", "queued"), Some(json!(2)), "never sent: kept");
    assert_eq!(w.request_counts().get("RemoveAsync"), Some(&1));
}

/// A removal held for its key's throughput waits on its server too ("queued but temporarily
/// skipped"): if the server dies before the key has room, it was never sent and the key keeps
/// its value.
#[test]
fn a_removal_held_for_its_key_when_its_server_crashes_does_not_land() {
    use profilestore_harness::datastore::ThroughputLimits;
    // Two 1 KB writes a minute on a key: two sets use them, the removal waits a minute.
    let (mut w, store) = world(
        1,
        key_limits(ThroughputLimits {
            write_bytes: 2048,
            ..ThroughputLimits::roblox()
        }),
    );
    w.raw_set(0, "S", "k", json!(1)).unwrap();
    w.raw_set(0, "S", "k", json!(2)).unwrap();
    w.run_until(1.0);
    remove(&mut w, store, "k");
    w.run_until(2.0);
    assert_eq!(w.key_throttled, 1, "held for the key");
    w.crash(0);
    w.run_until(120.0);
    assert_eq!(w.stored("S", "k"), Some(json!(2)), "never sent: kept");
}

/// The receive limit per topic grows with the game's running servers, "(40 + 80 × servers)" a
/// minute (spec "MessagingService"), whether or not a server uses messaging: of three
/// servers, one subscribes and one publishes, and 280 of 300 messages within a minute arrive.
/// A reserved server does not count until it boots.
#[test]
fn the_receive_limit_counts_every_running_server() {
    use profilestore_harness::datastore::ServerId;
    let deliveries = |reserve: bool| {
        let (mut w, _) = world(3, Limits::unlimited());
        if reserve {
            w.reserve(2);
        }
        w.messaging.subscribe(0.0, ServerId(0), "T").unwrap();
        for i in 0..300 {
            w.messaging
                .publish(f64::from(i) * 0.1, ServerId(1), "T", &json!(i))
                .unwrap();
        }
        let mut n = 0;
        while w.messaging.poll_delivery(100.0).is_some() {
            n += 1;
        }
        n
    };
    assert_eq!(deliveries(false), 40 + 80 * 3);
    assert_eq!(deliveries(true), 40 + 80 * 2);
}

/// Recording starts before the first engine input or not at all: a trace missing the first
/// inputs could not replay on fresh engines. Asking again while recording changes nothing.
#[test]
fn recording_is_refused_once_an_engine_has_had_inputs() {
    let (mut w, _) = world(1, Limits::unlimited());
    // `world` opened a store on the server: one input.
    assert_eq!(
        w.record().map_err(|e| e.to_string()),
        Err(
            "recording must start before the first engine input (1 fed already): a replay \
             starts from fresh engines"
                .into()
        )
    );
    let config = WorldConfig {
        seed: 3,
        epoch: 1_735_689_600,
        fps: 60.0,
        latency: LatencyModel::Fixed(0.15),
        servers: vec![ServerSpec {
            name: "S0".into(),
            place_id: 1001,
            wall_skew: 0,
        }],
    };
    let ds = DataStoreService::new(config.epoch);
    let ms = MessagingService::new(MessagingConfig::roblox(3)).unwrap();
    let mut fresh = World::new(config, ds, ms).unwrap();
    assert_eq!(fresh.record(), Ok(()));
    fresh.feed(
        0,
        Input::NewStore {
            name: "S".into(),
            template: json!({}),
        },
    );
    assert_eq!(fresh.record(), Ok(()));
    let trace = profilestore_harness::trace::Trace::of(&fresh, None).unwrap();
    assert_eq!(trace.inputs.len(), 1);
}

/// A version query through the world: the listing, then each version read in turn, then nil
/// (the world keeps a listing's pages only while some are left).
#[test]
fn a_version_query_reads_every_version_through_the_world() {
    use profilestore_core::SortDirection;
    let (mut w, store) = world(1, Limits::unlimited());
    // One write an hour: three retained versions.
    for (hour, coins) in [(0.0, 1), (3600.0, 2), (7200.0, 3)] {
        w.run_until(hour + 1.0);
        let value = json!({"Data": {"Coins": coins}, "MetaData": {"SessionLoadCount": 0}, "GlobalUpdates": [0, []]});
        w.raw_set(0, "S", "k", value).unwrap();
    }
    w.run_until(7300.0);
    let InputResult::Query(Ok(query)) = w.feed(
        0,
        Input::VersionQuery {
            store: store.live(),
            key: "k".into(),
            direction: SortDirection::Ascending,
            min_date: None,
            max_date: None,
        },
    ) else {
        panic!("a query")
    };
    let mut coins = Vec::new();
    loop {
        let now = w.now_for(0);
        let InputResult::Call(Ok(call)) = w.feed(0, Input::VersionQueryNext { now, query }) else {
            panic!("a call")
        };
        w.run_until(w.now + 1.0);
        let answer = w.log.iter().rev().find_map(|l| match &l.what {
            Happening::Output(Output::Completion(Completion::Get { call: c, result }))
                if *c == call =>
            {
                Some(result.clone())
            }
            _ => None,
        });
        match answer.expect("the call returned") {
            // (The host holds the view's Data: the logged completion keeps a null.)
            Ok(Some(view)) => coins.push(w.servers[0].host.data[&view.profile]["Coins"].clone()),
            Ok(None) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(coins, [json!(1), json!(2), json!(3)]);
}

/// A publish draws nothing from the world's random stream while publishes never fail (the
/// fleet's case): which DataStore requests a fault rate hits does not move with the number of
/// publishes made before them. Two worlds differ only by a `MessageAsync` to a key another
/// server holds (which publishes a nudge) or to a free key (which does not); the same writes
/// after it then fault the same way in both. The publish used to draw (and `faulted` to meet
/// another number), so the two patterns differed.
#[test]
fn a_publish_does_not_move_later_faults() {
    let faults_after = |to: &str| {
        let (mut w, store) = world(2, Limits::unlimited());
        start(&mut w, 0, store, "held");
        w.run_until(5.0);
        let InputResult::Call(Ok(_)) = send_message(&mut w, 1, store, to, json!({"Gift": "g"}))
        else {
            panic!("MessageAsync refused");
        };
        w.run_until(20.0);
        let published = w
            .log
            .iter()
            .filter(|l| matches!(&l.what, Happening::Published { failed: None, .. }))
            .count();
        w.set_datastore_fail(0.5).unwrap();
        for i in 0..24 {
            w.raw_set(0, "S", &format!("k{i}"), json!(i)).unwrap();
        }
        w.run_until(25.0);
        let landed: Vec<bool> = (0..24)
            .map(|i| w.stored("S", &format!("k{i}")).is_some())
            .collect();
        (published, landed)
    };
    let (nudged, after_nudge) = faults_after("held");
    let (quiet, after_none) = faults_after("free");
    assert_eq!((nudged, quiet), (1, 0));
    assert_eq!(after_nudge, after_none);
    // Both fault rates at work: some writes land, some do not.
    assert!(after_none.contains(&true) && after_none.contains(&false));
}

/// A `SubscribeAsync` the MessagingService refuses is logged with its reason (the original's
/// error kills only the spawned thread, and Roblox prints it): a server without players may
/// hold 20 subscriptions, so the 21st session's is refused, naming the limit. It used to be
/// only counted, leaving no trace of why that session heard no end requests.
#[test]
fn a_refused_subscription_is_logged_with_its_reason() {
    let (mut w, store) = world(1, Limits::unlimited());
    for i in 0..21 {
        start(&mut w, 0, store, &format!("k{i}"));
        w.run_until(f64::from(i + 1));
    }
    let refused: Vec<(String, String)> = w
        .log
        .iter()
        .filter_map(|l| match &l.what {
            Happening::SubscribeRefused { topic, reason } => Some((topic.clone(), reason.clone())),
            _ => None,
        })
        .collect();
    let guid = w.stored("S", "k20").unwrap()["MetaData"]["ActiveSession"][2]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        refused,
        [(
            profilestore_core::guid::session_topic(&guid),
            "SubscribeAsync: the server's limit of 20 subscriptions is reached.".to_string()
        )]
    );
    assert_eq!(w.subscribes_refused, 1);
}

/// The world ticks an engine only at its deadlines. A `SetConstant` that leaves the window too
/// few errors while critical (spec §2: a change affects everything at once) ends critical state
/// `CRITICAL_STATE_EXPIRE` (120 s) after the change, as the original, which refreshes the start
/// every frame while the window holds enough (spec §12), ends it; it used to end 120 s after the
/// engine's last tick before the change.
#[test]
fn a_constant_change_ends_critical_state_counting_from_the_change() {
    let (mut w, store) = world(1, Limits::unlimited());
    w.set_datastore_fail(1.0).unwrap();
    start(&mut w, 0, store, "k");
    let toggles = |w: &World| -> Vec<(f64, bool)> {
        w.log
            .iter()
            .filter_map(|l| match &l.what {
                Happening::Output(Output::Event(profilestore_core::Event::OnCriticalToggle {
                    is_critical,
                })) => Some((l.t, *is_critical)),
                _ => None,
            })
            .collect()
    };
    // Five errors, the fifth at 16.5 s, enter critical state; the start then succeeds.
    w.run_until(17.0);
    assert_eq!(toggles(&w).len(), 1, "{:?}", toggles(&w));
    w.set_datastore_fail(0.0).unwrap();
    w.run_until(60.0);
    let set = Input::SetConstant {
        name: "CRITICAL_STATE_ERROR_COUNT".into(),
        value: 10.0,
    };
    assert_eq!(w.feed(0, set), InputResult::Done(Ok(())));
    w.run_until(400.0);
    let toggles = toggles(&w);
    assert_eq!(toggles.len(), 2, "{toggles:?}");
    assert!(toggles[0].1 && !toggles[1].1, "{toggles:?}");
    assert!((toggles[1].0 - 180.0).abs() < 2.0 / 60.0, "{toggles:?}");
}

/// A write repairing a malformed stored value (DEVIATIONS.md rows 2 and 18) that fails
/// ambiguously stores the repair although its call is told it failed: what it dropped is
/// still named, once, by the key's next write, which finds nothing more to repair and says a
/// failed write may have stored it (it went unnamed). One that failed outright is named once
/// too, by the retry that repairs again.
#[test]
fn a_repair_stored_by_an_ambiguous_failure_is_still_named() {
    use profilestore_harness::datastore::{Fault, internal_rejection};
    let may_have = "a write that failed may have stored the repair, which could not keep";
    let could_not = "the write could not keep";
    a_repair_after_a_failure_is_named_once(Fault::Ambiguous(internal_rejection()), may_have);
    a_repair_after_a_failure_is_named_once(Fault::Fail(internal_rejection()), could_not);
}

fn a_repair_after_a_failure_is_named_once(
    fault: profilestore_harness::datastore::Fault,
    said: &str,
) {
    use profilestore_harness::datastore::Operation;
    let (mut w, store) = world(1, Limits::unlimited());
    let bad = json!({"Data": {"Coins": 1}, "MetaData": [5, "x"], "GlobalUpdates": [0, []]});
    w.raw_set(0, "S", "k", bad).unwrap();
    w.run_until(1.0);
    w.datastore.script_fault(Operation::Update, fault);
    start(&mut w, 0, store, "k");
    w.run_until(10.0);
    assert_eq!(first_start_returned_a_profile(&w), Some(true));
    let repaired: Vec<(f64, String)> = warnings(&w)
        .into_iter()
        .filter(|(_, m)| m.contains("Malformed profile repaired"))
        .collect();
    assert_eq!(repaired.len(), 1, "{repaired:?}");
    assert_eq!(
        repaired[0].1,
        format!(
            "[ProfileStore]: Malformed profile repaired (STORE:S; KEY:k): {said} MetaData [5,\"x\"]"
        )
    );
    // Named when the retry (after the 502's backoff) landed, not at the failure.
    assert!(repaired[0].0 > 1.5, "{repaired:?}");
    assert_eq!(w.stored("S", "k").unwrap()["Data"], json!({"Coins": 1}));
}

/// A repair that a failed write may have stored is not named once the key no longer holds a
/// profile: removed by this server or by another, or overwritten with junk by another tool.
/// The start that then writes a new profile repaired nothing, and nothing is left to name (the
/// junk's overwriting is warned about as such).
#[test]
fn a_removal_forgets_a_repair_a_failed_write_may_have_stored() {
    use profilestore_harness::datastore::{Fault, Operation, internal_rejection};
    for after in ["removed here", "removed elsewhere", "junk written"] {
        let (mut w, store) = world(2, Limits::unlimited());
        let bad = json!({"Data": {"Coins": 1}, "MetaData": [5, "x"], "GlobalUpdates": [0, []]});
        w.raw_set(0, "S", "k", bad).unwrap();
        w.run_until(1.0);
        w.datastore
            .script_fault(Operation::Update, Fault::Ambiguous(internal_rejection()));
        start(&mut w, 0, store, "k");
        // The start's write fails (ambiguously) at 1.3 s; it retries after a second's backoff.
        w.run_until(1.4);
        match after {
            "removed here" => remove(&mut w, store, "k"),
            "removed elsewhere" => {
                let now = w.now_for(1);
                let remove = Input::Remove {
                    now,
                    store: store.live(),
                    key: "k".into(),
                };
                w.feed(1, remove);
            }
            _ => w.raw_set(1, "S", "k", json!("junk")).unwrap(),
        }
        w.run_until(10.0);
        assert_eq!(first_start_returned_a_profile(&w), Some(true), "{after}");
        assert_eq!(w.stored("S", "k").unwrap()["Data"], json!({}), "{after}");
        let warned: Vec<String> = warnings(&w)
            .into_iter()
            .map(|(_, m)| m)
            .filter(|m| m.contains("Malformed profile repaired") || m.contains("overwritten"))
            .collect();
        let overwritten = "[ProfileStore]: Invalid profile was overwritten (STORE:S; KEY:k)";
        let expected = match after {
            "junk written" => vec![overwritten.to_string()],
            _ => vec![],
        };
        assert_eq!(warned, expected, "{after}");
    }
}
