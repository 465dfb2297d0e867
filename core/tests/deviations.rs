//! Where the original has a defect (spec §19) this engine does better while keeping the wire
//! protocol and timings. One test per entry of `docs/DEVIATIONS.md`, each showing that the
//! original's failure mode no longer happens.

use profilestore_core::testing::{Record, World};
use profilestore_core::value::{Value, json};
use profilestore_core::*;

fn shutdown_done(w: &World, s: usize) -> bool {
    w.journal.iter().any(|e| {
        e.server == s
            && matches!(
                e.record,
                Record::Output(Output::Completion(Completion::Shutdown))
            )
    })
}

fn warned(w: &World, s: usize, needle: &str) -> bool {
    w.events(s)
        .into_iter()
        .any(|(_, e)| matches!(e, Event::Warn { message } if message.contains(needle)))
}

/// §19 item 1: a key removed during a session. The original's final save retries forever and
/// shutdown never completes; here the save finds no profile, writes nothing and ends the session.
#[test]
fn d01_save_to_a_removed_key_ends_the_session_instead_of_retrying_forever() {
    let mut w = World::new(1, 101);
    let store = w.new_store("S", json!({}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    let q = w
        .start_and_wait(0, store, "other")
        .expect("session started");
    w.with(0, |e, now| e.remove(now, store.live(), "k"))
        .unwrap();
    w.run_for(1.0);
    w.with(0, |e, now| e.shutdown(now));
    w.run_for(60.0);
    assert!(shutdown_done(&w, 0), "shutdown completes");
    assert_eq!(
        w.stored("S", "k"),
        None,
        "nothing was written to the removed key"
    );
    assert!(!w.servers[0].engine.is_active(p) && !w.servers[0].engine.is_active(q));
    assert!(warned(
        &w,
        0,
        "(STORE:S; KEY:k) was removed or overwritten externally; the session has ended"
    ));
    assert_eq!(
        w.events(0)
            .iter()
            .filter(|(_, e)| matches!(e, Event::OnError { .. }))
            .count(),
        0
    );
}

/// §19 item 1, a regular save (`Save()`, as an auto-save): the key removed while the session
/// is active. The save finds no profile, writes nothing and ends the session: `OnSave`, then
/// `OnSessionEnd`, and no `OnAfterSave` (nothing was saved), no DataStore error;
/// `LastSavedData` and `KeyInfo` keep the last save's.
#[test]
fn d01_a_regular_save_to_a_removed_key_ends_the_active_session() {
    regular_save_to_a_key_without_a_profile(None);
}

/// [`d01_a_regular_save_to_a_removed_key_ends_the_active_session`] with the key overwritten
/// by junk (another tool's value): the same, and the junk stays.
#[test]
fn d01_a_regular_save_to_a_junk_key_ends_the_active_session() {
    regular_save_to_a_key_without_a_profile(Some(json!("junk")));
}

/// A session's key removed (`junk` `None`) or overwritten with `junk`, then `Save()`.
fn regular_save_to_a_key_without_a_profile(junk: Option<Value>) {
    let mut w = World::new(1, 104);
    let store = w.new_store("S", json!({}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    match &junk {
        None => {
            w.with(0, |e, now| e.remove(now, store.live(), "k"))
                .unwrap();
        }
        Some(junk) => w.raw_set("S", "k", junk.clone()),
    }
    w.run_for(1.0);
    let kept = |w: &World| {
        let profile = w.servers[0].engine.profile(p).unwrap();
        (profile.last_saved_data.clone(), profile.key_info.clone())
    };
    let last_save = kept(&w);
    let before = w.events(0).len();
    w.with(0, |e, now| e.save(now, p)).unwrap();
    w.run_for(5.0);
    assert!(!w.servers[0].engine.is_active(p));
    assert_eq!(w.stored("S", "k"), junk.as_ref(), "nothing was written");
    assert_eq!(kept(&w), last_save);
    let signals: Vec<&str> = w.events(0)[before..]
        .iter()
        .filter_map(|(_, e)| match e {
            Event::OnSave { profile } if *profile == p => Some("OnSave"),
            Event::OnSessionEnd { profile } if *profile == p => Some("OnSessionEnd"),
            Event::OnAfterSave { profile, .. } if *profile == p => Some("OnAfterSave"),
            Event::OnError { .. } => Some("OnError"),
            _ => None,
        })
        .collect();
    assert_eq!(signals, ["OnSave", "OnSessionEnd"]);
    assert!(warned(
        &w,
        0,
        "(STORE:S; KEY:k) was removed or overwritten externally; the session has ended"
    ));
}

/// §19 item 1 (SetAsync): the original fails on a removed key; here the view profile is
/// written as a whole profile, with no overwrite to announce (spec §1: `WasOverwritten` only
/// where the slot held an invalid value).
#[test]
fn d01_set_async_on_a_removed_key_writes_the_whole_profile() {
    set_async_over_a_key_without_a_profile(None);
}

/// [`d01_set_async_on_a_removed_key_writes_the_whole_profile`] with the key overwritten by
/// junk: the same, the junk replaced and announced as any overwrite is (spec §4 step 5).
#[test]
fn d01_set_async_on_a_junk_key_writes_the_whole_profile() {
    set_async_over_a_key_without_a_profile(Some(json!("junk")));
}

/// A view profile of key `k`, the key then removed (`junk` `None`) or overwritten with `junk`,
/// then `SetAsync` of `{"Coins": 8}`.
fn set_async_over_a_key_without_a_profile(junk: Option<Value>) {
    let mut w = World::new(1, 102);
    let store = w.new_store("S", json!({}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    w.with(0, |e, now| e.end_session(now, p));
    w.run_for(1.0);
    let view = w.view(0, store, "k").expect("a view profile");
    match &junk {
        None => {
            w.with(0, |e, now| e.remove(now, store.live(), "k"))
                .unwrap();
            w.run_for(1.0);
            assert_eq!(w.stored("S", "k"), None, "removed");
        }
        Some(junk) => w.raw_set("S", "k", junk.clone()),
    }
    w.data_mut(0, view.profile)["Coins"] = json!(8);
    let call = w.with(0, |e, now| e.set_async(now, view.profile)).unwrap();
    w.run_for(1.0);
    assert_eq!(
        w.completion(0, call).unwrap().1,
        Completion::SetAsync { call, ok: true }
    );
    let v = w.stored("S", "k").unwrap();
    assert_eq!(v["Data"], json!({"Coins": 8}));
    assert_eq!(v["MetaData"]["SessionLoadCount"], json!(1));
    let overwrite = Event::OnOverwrite {
        store: "S".into(),
        key: "k".into(),
    };
    let announced = w.events(0).iter().any(|(_, e)| *e == overwrite);
    match junk {
        None => {
            assert_eq!(v.get("WasOverwritten"), None, "{v}");
            assert!(!announced, "{:?}", w.events(0));
        }
        Some(_) => {
            assert_eq!(v["WasOverwritten"], json!(true));
            assert!(announced, "{:?}", w.events(0));
        }
    }
}

/// The topics the world's servers asked to subscribe to, in order.
fn subscribed_topics(w: &World) -> Vec<String> {
    w.journal
        .iter()
        .filter_map(|e| match &e.record {
            Record::Output(Output::Messaging(MessagingRequest::Subscribe { topic, .. })) => {
                Some(topic.clone())
            }
            _ => None,
        })
        .collect()
}

/// §19 item 3: the subscription uses the GUID stored in the lock, so release requests reach the
/// owner even when the stored lock kept an older GUID.
#[test]
fn d03_subscription_topic_is_the_stored_guid() {
    let mut w = World::new(2, 103);
    let store = w.new_store("S", json!({}));
    let job = w.servers[0].engine.identity().job_id.clone();
    w.raw_set(
        "S",
        "k",
        json!({"Data": {}, "MetaData": {"ActiveSession": [1001, job, "OLD-GUID"], "SessionLoadCount": 1, "LastUpdate": w.epoch},
               "GlobalUpdates": [0, []]}),
    );
    w.start_and_wait(0, store, "k").expect("session started");
    let topics = subscribed_topics(&w);
    assert_eq!(topics, ["PS_OLD-GUID"]);
    // So another server's release request is honoured: hand-off in ≈5 s, not a 45 s steal.
    w.run_until(10.0);
    let b = w.start_session(1, store.live(), "k", StartParams::default());
    w.run_until(30.0);
    let (t, _) = w.completion(1, b).unwrap();
    assert!((t - 15.6).abs() < 1e-6, "hand-off at {t}");
}

/// §19 item 3, "last caller wins": a second call takes over a start whose write (with the
/// first call's GUID) is already out. The session subscribes to the GUID its committed lock
/// holds, whichever call drew it.
#[test]
fn d03_a_caller_taking_over_a_start_subscribes_to_the_committed_guid() {
    let mut w = World::new(1, 133);
    let store = w.new_store("S", json!({}));
    let first = w.start_session(0, store.live(), "k", StartParams::default());
    w.run_for(0.2); // the first call's write is out
    let second = w.start_session(0, store.live(), "k", StartParams::default());
    w.run_for(2.0);
    assert_eq!(w.started_profile(0, first), None);
    assert!(w.started_profile(0, second).is_some());
    // One write, the first call's: the lock holds the GUID the first call drew, not one the
    // second drew (the original's session subscribes to the second's).
    let writes = w
        .journal
        .iter()
        .filter(|e| matches!(&e.record, Record::Output(Output::DataStore(_))))
        .count();
    assert_eq!(writes, 1);
    let stored = w.stored("S", "k").unwrap()["MetaData"]["ActiveSession"][2].clone();
    let topics = subscribed_topics(&w);
    assert_eq!(topics, [format!("PS_{}", stored.as_str().unwrap())]);
}

/// §19 item 7: `ASSUME_DEAD` reads the owner's `LastUpdate` (its clock) against the reader's
/// clock. A server whose clock runs more than 630 s ahead of the owner's finds a live lock
/// "dead": the original takes it at once, and the owner's unsaved changes are lost (its next
/// save finds the lock gone and stores nothing). Here the first sight asks, as for a live
/// lock; the owner, alive, ends its session and its final save stores the changes; the next
/// poll finds the key free.
#[test]
fn d07_a_live_lock_that_looks_dead_to_a_fast_clock_is_handed_off_not_taken() {
    let (mut w, store, a) = a_session_held_since_ten(107);
    w.servers[1].wall_skew = 700;
    // A's game changes the data; A's next save is minutes away.
    w.servers[0].host.data.insert(a, json!({"Coins": 7}));
    let b = w.start_session(1, store.live(), "k", StartParams::default());
    w.run_until(20.5);
    assert_eq!(w.started_profile(1, b), None, "not taken at once");
    let job_a = w.servers[0].engine.identity().job_id.clone();
    let first = w
        .writes("k")
        .into_iter()
        .find(|x| x.1 == 1)
        .expect("B's write");
    assert_eq!(first.2["MetaData"]["ActiveSession"][1], json!(job_a));
    w.run_until(40.0);
    let pb = w.started_profile(1, b).expect("B's session");
    let (t, _) = w.completion(1, b).unwrap();
    assert!((t - 25.6).abs() < 1e-6, "handed off at {t}");
    assert!(!w.servers[0].engine.is_active(a), "A ended");
    assert!(w.events(0).iter().any(|(_, e)| matches!(
        e,
        Event::OnLastSave {
            profile,
            reason: EndReason::External
        } if *profile == a
    )));
    // Nothing A's game did is lost: B loaded it.
    assert_eq!(w.data_mut(1, pb), &json!({"Coins": 7}));
    let v = w.stored("S", "k").unwrap();
    let job_b = w.servers[1].engine.identity().job_id.clone();
    assert_eq!(v["MetaData"]["ActiveSession"][1], json!(job_b));
}

/// Two servers; server 0 (A) holds key `k` of store "S" (template `{"Coins": 0}`) from 10 s
/// on, and the clock stands at 20 s: (world, store, A's profile).
fn a_session_held_since_ten(seed: u64) -> (World, StoreId, ProfileId) {
    let mut w = World::new(2, seed);
    let store = w.new_store("S", json!({"Coins": 0}));
    w.run_until(10.0);
    let a = w.start_and_wait(0, store, "k").expect("A's session");
    w.run_until(20.0);
    (w, store, a)
}

/// Server 1 calls `StartSessionAsync("k", {Steal = true})` on `store`.
fn steal_at_twenty(w: &mut World, store: StoreId) -> CallId {
    let steal = StartParams {
        steal: true,
        cancellable: false,
    };
    w.start_session(1, store.live(), "k", steal)
}

/// §19 item 8: after a steal the original's old owner plays on until its next save finds the
/// lock gone (up to `AUTO_SAVE_PERIOD`), and items it gives away meanwhile are duplicated. Here
/// the start that took the lock asks the old session to end, as a hand-off request would: the
/// old owner ends within a message delay, and its late save stores nothing.
#[test]
fn d08_a_session_whose_lock_was_taken_ends_at_once() {
    let (mut w, store, a) = a_session_held_since_ten(108);
    let b = steal_at_twenty(&mut w, store);
    w.run_until(20.5);
    let pb = w.started_profile(1, b).expect("B took the lock");
    // The game on A gives away coins it still believes are its player's.
    w.servers[0].host.data.insert(a, json!({"Coins": 99}));
    w.run_until(25.0);
    assert!(!w.servers[0].engine.is_active(a), "A ended");
    let ended: Vec<_> = w
        .events(0)
        .into_iter()
        .filter(|(t, _)| *t > 20.0)
        .map(|(_, e)| e)
        .collect();
    assert_eq!(
        ended,
        [
            Event::OnSave { profile: a },
            Event::OnLastSave {
                profile: a,
                reason: EndReason::External
            },
            Event::OnSessionEnd { profile: a },
            Event::OnAfterSave {
                profile: a,
                last_saved_data: json!({"Coins": 0}).into()
            },
        ]
    );
    // A's late write stored nothing: B's lock and the Data B loaded stand.
    let v = w.stored("S", "k").unwrap();
    let job_b = w.servers[1].engine.identity().job_id.clone();
    assert_eq!(v["MetaData"]["ActiveSession"][1], json!(job_b));
    assert_eq!(v["Data"], json!({"Coins": 0}));
    assert!(w.servers[1].engine.is_active(pb));
    // §19 item 10, kept: the `LastSavedData` A's `OnAfterSave` carries is the value B stored,
    // B's lock and all (its equality above compares `Data` alone, the same for both).
    let Some(Event::OnAfterSave {
        last_saved_data, ..
    }) = ended.last()
    else {
        panic!("{ended:?}")
    };
    assert_eq!(last_saved_data.stored(), v);
}

/// §19 item 8, with a second call on the taking server after the stealing attempt's transform
/// ran (last caller wins, §5.3 (b)): the new caller gets the session, and the old session is
/// still told.
#[test]
fn d08_a_caller_taking_over_the_stealing_start_still_tells_the_old_session() {
    let (mut w, store, a) = a_session_held_since_ten(109);
    let first = steal_at_twenty(&mut w, store);
    // The stealing transform runs a round trip (0.15 s) after the call, its write lands a
    // round trip later: the second call comes in between.
    w.run_until(20.2);
    let second = w.start_session(1, store.live(), "k", StartParams::default());
    w.run_until(25.0);
    assert_eq!(w.started_profile(1, first), None);
    assert!(w.started_profile(1, second).is_some(), "the new caller");
    let told: Vec<Value> = w
        .journal
        .iter()
        .filter(|e| e.server == 1)
        .filter_map(|e| match &e.record {
            Record::Output(Output::Messaging(MessagingRequest::Publish { data, .. })) => {
                Some(data.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(told, [json!({"LoadCount": 1, "EndSession": true})]);
    assert!(!w.servers[0].engine.is_active(a), "A was told and ended");
}

/// §19 item 8 for `Profile:SetAsync()` (spec §9.3): an overwrite removes the owner's lock, and
/// the owner is told as after a steal, so it ends within a message delay instead of playing on
/// until its next save; its late save stores nothing over the overwrite.
#[test]
fn d08_a_session_whose_key_was_overwritten_ends_at_once() {
    let (mut w, store, a) = a_session_held_since_ten(110);
    let view = w.view(1, store, "k").expect("a view profile");
    w.data_mut(1, view.profile)["Coins"] = json!(500);
    let call = w.with(1, |e, now| e.set_async(now, view.profile)).unwrap();
    w.servers[0].host.data.insert(a, json!({"Coins": 99}));
    w.run_until(25.0);
    assert_eq!(
        w.completion(1, call).unwrap().1,
        Completion::SetAsync { call, ok: true }
    );
    assert!(!w.servers[0].engine.is_active(a), "A was told and ended");
    let v = w.stored("S", "k").unwrap();
    assert_eq!(v["Data"], json!({"Coins": 500}));
    assert_eq!(v["MetaData"].get("ActiveSession"), None);
}

/// §19 item 24: a start whose write took the lock as the server began closing releases it
/// with a shutdown save (reason `Shutdown`, backoff capped at 8 s), not a `Manual` one capped
/// at 20 s: in an outage it tries six times inside BindToClose's 30 s instead of five.
#[test]
fn d24_a_release_because_the_server_closes_is_a_shutdown_save() {
    let mut w = World::new(1, 124);
    let store = w.new_store("S", json!({}));
    let call = w.start_session(0, store.live(), "k", StartParams::default());
    // The start's transform runs at 0.15 s and its answer comes at 0.3 s: close in between.
    w.run_for(0.2);
    w.with(0, |e, now| e.shutdown(now));
    w.run_for(0.11);
    w.datastore_fail = 1.0;
    w.run_for(30.0);
    let events = w.events(0);
    let reasons: Vec<EndReason> = events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::OnLastSave { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, [EndReason::Shutdown]);
    let tries = events
        .iter()
        .filter(|(_, e)| matches!(e, Event::OnError { .. }))
        .count();
    assert_eq!(tries, 6, "{events:?}");
    assert_eq!(w.completion(0, call), None, "returns once released");
}

/// A cancellable start whose player leaves, then (after `rejoin_after` seconds) a start for the
/// rejoined player: the first returns nil, the second gets the session and the lock.
fn leave_and_rejoin(seed: u64, rejoin_after: f64) -> World {
    let mut w = World::new(1, seed);
    let store = w.new_store("S", json!({}));
    let first = w.start_cancellable(0, store.live(), "k");
    w.servers[0].host.cancelled.insert(first); // the player left
    w.run_for(rejoin_after);
    let second = w.start_session(0, store.live(), "k", StartParams::default()); // rejoined
    w.run_for(2.0);
    assert_eq!(
        w.completion(0, first).unwrap().1,
        Completion::SessionStart {
            call: first,
            profile: None
        }
    );
    assert!(
        w.started_profile(0, second).is_some(),
        "the rejoined player gets the session"
    );
    let v = w.stored("S", "k").unwrap();
    assert!(v["MetaData"]["ActiveSession"].is_array(), "and the lock");
    w
}

/// The writes of key `k`: when each landed, whether it held a lock, its `SessionLoadCount`.
fn lock_writes(w: &World) -> Vec<(f64, bool, Value)> {
    w.writes("k")
        .into_iter()
        .map(|(t, _, v)| {
            let locked = v["MetaData"].get("ActiveSession").is_some();
            (t, locked, v["MetaData"]["SessionLoadCount"].clone())
        })
        .collect()
}

/// §19 item 4: the overlapping caller no longer inherits the first caller's `Cancel`.
#[test]
fn d04_last_caller_does_not_inherit_the_victims_cancel() {
    let w = leave_and_rejoin(104, 0.0);
    // The rejoin took the job over before the transform ran: one write, the lock.
    assert_eq!(lock_writes(&w), vec![(0.3, true, json!(1))]);
}

/// §19 item 4 when the first caller's transform already ran (at 0.15 s): it declined and wrote
/// no lock; the rejoined player's call, which took the job over while that write was on its
/// way (it lands at 0.3 s), tries again instead of returning nil.
#[test]
fn d04_a_takeover_after_a_declined_transform_tries_again() {
    let w = leave_and_rejoin(114, 0.2);
    // The declined write (no lock, a new profile's count) landed first, then the retry's.
    assert_eq!(
        lock_writes(&w),
        vec![(0.3, false, json!(0)), (0.6, true, json!(1))]
    );
}

/// §19 item 5: two starts for one key that overlap outside the in-flight window. The original
/// lets both run and orphans one profile (active in the ring forever, writing every cycle).
#[test]
fn d05_overlapping_starts_in_a_conflict_wait_leave_no_orphan() {
    overlapping_starts_leave_no_orphan(false);
}

/// Row 5 through two `ProfileStore.New` objects of one name: one load job per key still.
#[test]
fn d05_two_store_objects_of_one_name_share_the_load_job() {
    overlapping_starts_leave_no_orphan(true);
}

/// Two starts of one key on server 0 while server 1 holds it (its hand-off requests lost): the
/// later takes the earlier's job over, the earlier returns nil at once, one profile results.
/// With `two_objects`, the later call goes through a second store object of the same name.
fn overlapping_starts_leave_no_orphan(two_objects: bool) {
    let mut w = World::new(2, 105);
    let store = w.new_store("S", json!({}));
    let other = if two_objects {
        w.new_store("S", json!({}))
    } else {
        store
    };
    w.start_and_wait(1, store, "k").expect("session started");
    w.messaging_fail = 1.0;
    let first = w.start_session(0, store.live(), "k", StartParams::default());
    w.run_for(2.0); // first is now in its conflict wait
    let second = w.start_session(0, other.live(), "k", StartParams::default());
    assert_eq!(
        w.completion(0, first).unwrap().1,
        Completion::SessionStart {
            call: first,
            profile: None
        }
    );
    w.run_for(60.0);
    assert!(w.started_profile(0, second).is_some());
    assert_eq!(w.servers[0].engine.active_profiles().len(), 1);
    assert_eq!(
        w.servers[0].engine.profile_count(),
        1,
        "exactly one profile object exists"
    );
}

/// The outage of [`final_save_in_an_outage`] ends: the final save lands with the last
/// changes, and no session holds the key.
fn final_save_lands_unlocked(w: &mut World) {
    w.datastore_fail = 0.0;
    w.run_for(60.0);
    let stored = w.stored("S", "k").unwrap();
    assert_eq!(stored["Data"], json!({"Coins": 42}));
    assert_eq!(stored["MetaData"].get("ActiveSession"), None);
}

/// When start `call` on server 0 returned nil; fails, saying `what` was expected, if it has not
/// returned or returned a profile.
fn returned_nil(w: &World, call: CallId, what: &str) -> f64 {
    let (at, returned) = w.completion(0, call).expect(what);
    assert_eq!(
        returned,
        Completion::SessionStart {
            call,
            profile: None
        },
        "{what}"
    );
    at
}

/// A session of key `k` whose `Data` became `{"Coins": 42}` and that ended while every DataStore
/// call fails: two seconds later its final save is still retrying.
fn final_save_in_an_outage(seed: u64) -> (World, StoreId) {
    let mut w = World::new(1, seed);
    let store = w.new_store("S", json!({"Coins": 0}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    w.datastore_fail = 1.0;
    w.data_mut(0, p)["Coins"] = json!(42);
    w.with(0, |e, now| e.end_session(now, p));
    w.run_for(2.0);
    (w, store)
}

/// §19 item 2: a stored profile whose `GlobalUpdates` is missing (or whose `MetaData` is not a
/// table) is junk to the original, which replaces it — `Data` and all — with the template at the
/// next start, or with a bare message queue at the next `MessageAsync`. Here a table `Data`
/// makes a profile: the start loads it, a message joins a repaired queue, no overwrite.
#[test]
fn d02_a_profile_missing_its_message_queue_keeps_its_data() {
    let mut w = World::new(1, 102);
    let store = w.new_store("S", json!({"Coins": 0}));
    w.raw_set(
        "S",
        "k",
        json!({"Data": {"Coins": 500}, "MetaData": {"SessionLoadCount": 4}}),
    );
    let p = w.start_and_wait(0, store, "k").expect("session started");
    assert_eq!(w.servers[0].host.data[&p], json!({"Coins": 500}));
    let stored = w.stored("S", "k").unwrap();
    assert_eq!(stored["GlobalUpdates"], json!([0, []]));
    assert_eq!(stored["MetaData"]["SessionLoadCount"], json!(5));
    assert_eq!(stored["WasOverwritten"], json!(false));

    w.raw_set("S", "m", json!({"Data": {"Coins": 7}, "MetaData": 5}));
    w.with(0, |e, now| {
        e.message(now, store.live(), "m", json!({"Gift": 1}))
    })
    .expect("valid call");
    w.run_for(1.0);
    let stored = w.stored("S", "m").unwrap();
    assert_eq!(stored["Data"], json!({"Coins": 7}));
    assert_eq!(stored["GlobalUpdates"], json!([1, [[1, {"Gift": 1}]]]));
    // The repaired MetaData is a new profile's, which a server running the original reads
    // (its start adds 1 to SessionLoadCount: a bare `{}` made it throw there).
    assert_eq!(
        stored["MetaData"],
        json!({"ProfileCreateTime": 1_735_689_601, "SessionLoadCount": 0, "MetaTags": []})
    );
    assert!(
        !w.events(0)
            .iter()
            .any(|(_, e)| matches!(e, Event::OnOverwrite { .. })),
        "nothing was overwritten"
    );
}

/// The start `again` on server 0 returned a profile whose `Data` holds the session's last
/// changes (`{"Coins": 42}`, written by the final save), as the key's second session.
fn started_with_the_last_changes(w: &World, again: CallId, why: &str) {
    let p2 = w.started_profile(0, again).expect(why);
    assert_eq!(w.servers[0].host.data[&p2], json!({"Coins": 42}));
    assert_eq!(
        w.stored("S", "k").unwrap()["MetaData"]["SessionLoadCount"],
        json!(2)
    );
}

/// §19 item 9: rapid rejoin on the same server while the final save is still retrying. The
/// original starts a new generation from older data and the final save then writes nothing;
/// here the start waits for the final save, so the last changes survive.
///
/// The outage ends 5.5 s after `EndSession`: between the final save's tries (its third went
/// at 3.6 s, its fourth goes at 7.9 s) and just before the rejoin's own third attempt (5.6 s),
/// which in the original would land first and load the older data. (Seen: with both of the
/// engine's waits behind a final save taken out, this start loads `{"Coins": 0}`.)
#[test]
fn d09_rejoin_during_a_retrying_final_save_keeps_the_last_changes() {
    let (mut w, store) = final_save_in_an_outage(109);
    let again = w.start_session(0, store.live(), "k", StartParams::default());
    w.run_for(3.5);
    w.datastore_fail = 0.0;
    w.run_for(60.0);
    started_with_the_last_changes(&w, again, "the rejoin starts once the final save landed");
}

/// §19 item 9 and spec §5.3 ("repeat while `IsClosing` is false"): a start waiting behind a
/// retrying final save returns nil as soon as the server starts closing, as the original's own
/// attempt loop would; it does not wait for the save, which keeps retrying.
#[test]
fn d09_a_start_behind_a_final_save_returns_nil_when_the_server_closes() {
    let (mut w, store) = final_save_in_an_outage(609);
    let again = w.start_cancellable(0, store.live(), "k");
    w.run_for(3.0);
    assert_eq!(
        w.completion(0, again),
        None,
        "waiting behind the final save"
    );
    let closing = w.now;
    w.with(0, |e, now| e.shutdown(now));
    w.run_for(1.0);
    let at = returned_nil(&w, again, "returned when closing");
    assert!(at - closing <= 1.0 / 60.0 + 1e-9, "returned at {at}");
    // The final save still runs, and BindToClose waits for it: the shutdown completes only
    // after the save landed, not while it waits out its retry.
    w.run_for(5.0);
    assert!(!shutdown_done(&w, 0), "the final save is still retrying");
    w.datastore_fail = 0.0;
    w.run_for(30.0);
    assert_eq!(w.stored("S", "k").unwrap()["Data"], json!({"Coins": 42}));
    let landed = w.writes("k").last().map(|(t, _, _)| *t).unwrap();
    let done = w
        .journal
        .iter()
        .find(|e| {
            e.server == 0
                && matches!(
                    e.record,
                    Record::Output(Output::Completion(Completion::Shutdown))
                )
        })
        .map(|e| e.t)
        .expect("the shutdown completed");
    assert!(
        done >= landed,
        "shutdown at {done}, the final save landed at {landed}"
    );
}

/// §19 item 9 and spec §5.2 step 7: a cancellable start waiting behind a retrying final save
/// asks its `Cancel` when the save lands, before it attempts: a player who left after its last
/// backoff gets nil then, and nothing more is written (the attempt used to go out, the `Cancel`
/// heard only inside the transform, whose declined start still wrote the key again).
#[test]
fn d09_a_start_resuming_behind_a_final_save_asks_its_cancel_first() {
    let (mut w, store) = final_save_in_an_outage(709);
    // The final save retries at 4.6 s and 8.9 s; the start, called at 3 s, wakes at its
    // backoffs (4 s, 6 s, 10 s) to ask its `Cancel`.
    let again = w.start_cancellable(0, store.live(), "k");
    w.run_for(4.0);
    w.servers[0].host.cancelled.insert(again);
    w.datastore_fail = 0.0;
    w.run_for(10.0);
    let landed: Vec<f64> = w.writes("k").iter().map(|(t, _, _)| *t).collect();
    let at = returned_nil(&w, again, "returned when the final save landed");
    assert_eq!(
        landed.len(),
        2,
        "the first session's start and final save: {landed:?}"
    );
    assert!((landed[1] - 9.2).abs() < 1e-9, "{landed:?}");
    assert!(
        (at - landed[1]).abs() < 1e-9,
        "returned at {at}, the save landed at {landed:?}"
    );
    assert_eq!(w.stored("S", "k").unwrap()["Data"], json!({"Coins": 42}));
}

/// §19 item 9 and spec §5.3: a start without `Cancel` that waits behind a final save meeting
/// errors still returns nil after `START_SESSION_TIMEOUT`, as its own failing attempts would
/// have; the final save keeps retrying and lands once the DataStore is back. The timeout is
/// checked after a failed attempt or a wait, so with a timeout of 0 the start waits one
/// backoff (1 s), as its own first failing attempt would have (it returned nil at once,
/// unattempted).
#[test]
fn d09_a_start_without_cancel_behind_a_failing_final_save_times_out() {
    for (seed, timeout, returns) in [(209, None, 120.0), (210, Some(0.0), 1.0)] {
        let (mut w, store) = final_save_in_an_outage(seed);
        if let Some(timeout) = timeout {
            w.with(0, |e, _| e.set_constant("START_SESSION_TIMEOUT", timeout))
                .unwrap();
        }
        let asked = w.now;
        let again = w.start_session(0, store.live(), "k", StartParams::default());
        w.run_for(returns - 0.5);
        assert_eq!(w.completion(0, again), None, "still waiting");
        w.run_for(1.0);
        let at = returned_nil(&w, again, "nil after the timeout");
        assert!(
            (at - (asked + returns)).abs() <= 1.0 / 60.0,
            "returned at {at}"
        );
        final_save_lands_unlocked(&mut w);
    }
}

/// §19 item 9 with the start queued behind the final save's first try (spec §5.3 (iv)): the
/// try fails, and the start, whose turn in the queue comes next, waits for the save's retry
/// instead of writing first and loading older data.
#[test]
fn d09_a_start_queued_behind_a_final_save_that_fails_waits_for_its_retry() {
    let mut w = World::new(1, 409);
    let store = w.new_store("S", json!({"Coins": 0}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    w.data_mut(0, p)["Coins"] = json!(42);
    w.datastore_fail = 1.0;
    w.with(0, |e, now| e.end_session(now, p));
    let again = w.start_session(0, store.live(), "k", StartParams::default());
    // The final save's first try fails; the DataStore is healthy again before its retry.
    w.run_for(0.5);
    w.datastore_fail = 0.0;
    w.run_for(60.0);
    started_with_the_last_changes(&w, again, "the start runs once the final save landed");
}

/// The same timeout wherever it falls in the final save's retry cycle (every 20 s, a retry in
/// flight for part of it): a timeout that found the retry in the key's queue used to queue the
/// start behind it instead, returning late, or even with a profile.
#[test]
fn d09_a_start_without_cancel_times_out_wherever_the_retry_is() {
    for step in 0..200 {
        let (mut w, store) = final_save_in_an_outage(509);
        w.run_for(f64::from(step) * 0.1);
        let asked = w.now;
        let again = w.start_session(0, store.live(), "k", StartParams::default());
        w.run_for(121.0);
        let at = returned_nil(&w, again, &format!("nil, asked at {asked}"));
        assert!(
            (at - (asked + 120.0)).abs() <= 1.0 / 60.0,
            "asked at {asked}, returned at {at}"
        );
    }
}

/// §19 item 9 and spec §5.2 step 7 (`Cancel` "at each loop head"): a start with `Cancel`
/// that waits behind a final save meeting errors asks `Cancel` as its own failing attempts
/// would (1, 2, 4 … 20 s apart) and returns nil at the first wake after it says yes, while the
/// outage goes on; it used to wait for the save to land. Nothing it did is stored.
#[test]
fn d09_a_cancelled_start_behind_a_failing_final_save_returns_nil_in_the_outage() {
    let (mut w, store) = final_save_in_an_outage(709);
    let asked = w.now;
    let again = w.start_cancellable(0, store.live(), "k");
    w.run_for(40.0);
    assert_eq!(w.completion(0, again), None, "waiting behind the save");
    w.servers[0].host.cancelled.insert(again); // the player left
    let left = w.now;
    w.run_for(21.0);
    let at = returned_nil(&w, again, "nil once Cancel said yes");
    // Wakes 1, 3, 7, 15, 31 and 51 s after the call (backoffs 1, 2, 4, 8, 16, 20): the player
    // left 40 s in, so the wake at 51 s hears it.
    assert!(
        (at - (asked + 51.0)).abs() < 1e-9,
        "asked at {asked}, cancelled at {left}, returned at {at}"
    );
    final_save_lands_unlocked(&mut w);
}

/// §19 item 9 and spec §2 (a constant's change "affects every live profile immediately"): a
/// start without `Cancel` waiting behind a failing final save gives up by the
/// START_SESSION_TIMEOUT set while it waits, at its next wake (at most 20 s on), as its
/// failing attempts would; it used to keep the deadline it began with (120 s).
#[test]
fn d09_a_start_behind_a_final_save_reads_a_lowered_timeout() {
    let (mut w, store) = final_save_in_an_outage(809);
    let asked = w.now;
    let again = w.start_session(0, store.live(), "k", StartParams::default());
    w.run_for(30.0);
    assert_eq!(w.completion(0, again), None, "waiting behind the save");
    w.with(0, |e, _| e.set_constant("START_SESSION_TIMEOUT", 10.0))
        .unwrap();
    let lowered = w.now;
    w.run_for(21.0);
    let at = returned_nil(&w, again, "nil by the lowered timeout");
    // Lowered 30 s in; the wake 31 s in (backoffs 1, 2, 4, 8, 16) finds the 10 s passed.
    assert!(
        (at - (asked + 31.0)).abs() < 1e-9,
        "asked at {asked}, lowered at {lowered}, returned at {at}"
    );
}

/// A start without `Cancel` that takes over a start waiting behind a final save (last caller
/// wins) times out on its own clock, even when the start it replaced had none.
#[test]
fn d09_a_start_taking_over_a_waiting_one_times_out_on_its_own_clock() {
    let (mut w, store) = final_save_in_an_outage(309);
    let first = w.start_cancellable(0, store.live(), "k");
    w.run_for(10.0);
    let asked = w.now;
    let second = w.start_session(0, store.live(), "k", StartParams::default());
    let nil = |call| Completion::SessionStart {
        call,
        profile: None,
    };
    assert_eq!(w.completion(0, first), Some((asked, nil(first))));
    w.run_for(121.0);
    let (at, returned) = w.completion(0, second).expect("nil after its timeout");
    assert_eq!(returned, nil(second));
    assert!(
        (at - (asked + 120.0)).abs() <= 1.0 / 60.0,
        "returned at {at}"
    );
}

/// §19 items 11–12: values that hang the original are rejected by `SetConstant`.
#[test]
fn d12_set_constant_rejects_values_that_hang() {
    let mut w = World::new(1, 112);
    let store = w.new_store("S", json!({}));
    for (name, value) in [
        ("AUTO_SAVE_PERIOD", 0.0),
        ("LOAD_REPEAT_PERIOD", 0.0),
        ("MAX_MESSAGE_QUEUE", -1.0),
    ] {
        let err = w.with(0, |e, _| e.set_constant(name, value)).unwrap_err();
        assert!(
            matches!(err, ApiError::InvalidConstantValue { .. }),
            "{name}"
        );
    }
    w.start_and_wait(0, store, "k").expect("session started");
    w.run_for(301.0); // the ring keeps working with the default period
    let saves = w
        .events(0)
        .iter()
        .filter(|(_, e)| matches!(e, Event::OnSave { .. }))
        .count();
    assert_eq!(saves, 1);
}

/// §19 item 14: `NextAsync` no longer skips a version whose read failed, and reports the error.
#[test]
fn d14_next_async_retries_a_version_whose_read_failed() {
    let mut w = World::new(1, 114);
    let store = w.new_store("S", json!({"n": 0}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    for n in 1..=2 {
        w.data_mut(0, p)["n"] = json!(n);
        w.with(0, |e, now| e.save(now, p)).unwrap();
        w.run_for(1.0);
    }
    let q = w
        .with(0, |e, _| {
            e.version_query(store.live(), "k", SortDirection::Ascending, None, None)
        })
        .unwrap();
    let next = |w: &mut World| {
        let call = w.with(0, |e, now| e.version_query_next(now, q)).unwrap();
        w.run_for(1.0);
        match w.completion(0, call).unwrap().1 {
            Completion::Get { result, .. } => result.map(|o| o.map(|v| v.data["n"].clone())),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(next(&mut w), Ok(Some(json!(0))));
    w.datastore_fail = 1.0;
    assert_eq!(
        next(&mut w),
        Err(DataStoreError {
            message: profilestore_core::testing::FAULT_MESSAGE.into()
        }),
        "the failure is visible, not nil"
    );
    w.datastore_fail = 0.0;
    assert_eq!(
        next(&mut w),
        Ok(Some(json!(1))),
        "the failed version is read again"
    );
    assert_eq!(next(&mut w), Ok(Some(json!(2))));
    assert_eq!(next(&mut w), Ok(None));
}

/// Sets a fresh session's `Data` to `data`, saves, and checks the save failed with `error`
/// (`OnError`); then shuts down and checks the final save released the lock keeping the last
/// saved `Data` (`{"Coins": 0}`) and shutdown completed.
fn unsavable_data_is_released_keeping_the_stored_data(seed: u64, data: Value, error: &str) {
    let mut w = World::new(1, seed);
    let store = w.new_store("S", json!({"Coins": 0}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    *w.data_mut(0, p) = data;
    w.with(0, |e, now| e.save(now, p)).unwrap();
    w.run_for(1.0);
    assert!(
        w.events(0)
            .into_iter()
            .any(|(_, e)| matches!(e, Event::OnError { message, .. } if message == error))
    );
    w.with(0, |e, now| e.shutdown(now));
    w.run_for(5.0);
    assert!(shutdown_done(&w, 0));
    let v = w.stored("S", "k").unwrap();
    assert!(
        v["MetaData"].get("ActiveSession").is_none(),
        "the lock is released"
    );
    assert_eq!(
        v["Data"],
        json!({"Coins": 0}),
        "the last saved Data is kept"
    );
}

/// §19 item 16: `Profile.Data` set to a non-table. The original's EndSession leaves the profile
/// active forever and shutdown never completes; here regular saves fail with the original's
/// error and the final save releases the lock keeping the last saved Data.
#[test]
fn d16_non_table_data_does_not_block_the_final_save() {
    unsavable_data_is_released_keeping_the_stored_data(
        116,
        json!("oops"),
        "[ProfileStore]: Developer code likely set \"Profile.Data\" to a non-table value! (STORE:S; KEY:k)",
    );
}

/// The release of item 16 is announced once it lands: an ending save whose writes fail (an
/// outage) says nothing of a release until one goes through, and then says it once.
#[test]
fn d16_the_release_is_announced_when_it_lands() {
    let mut w = World::new(1, 117);
    let store = w.new_store("S", json!({"Coins": 0}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    *w.data_mut(0, p) = json!("oops");
    w.datastore_fail = 1.0;
    w.with(0, |e, now| e.end_session(now, p));
    w.run_for(10.0);
    let released = "the session was released keeping the last saved Data";
    assert!(
        w.warnings(0, released).is_empty(),
        "nothing was released yet"
    );
    assert!(
        w.stored("S", "k").unwrap()["MetaData"]
            .get("ActiveSession")
            .is_some()
    );
    w.datastore_fail = 0.0;
    w.run_for(30.0);
    assert!(
        w.stored("S", "k").unwrap()["MetaData"]
            .get("ActiveSession")
            .is_none()
    );
    assert_eq!(w.warnings(0, released).len(), 1);
}

/// `Profile.Data` nested deeper than a store takes (`MAX_DATA_DEPTH`, 511: the profile wraps it
/// one level down, values nest at most 512) is handled like the non-table `Data` of item 16:
/// regular saves fail naming the problem, and the final save releases the lock keeping the
/// last saved `Data`, so `EndSession` and shutdown complete (docs/DEVIATIONS.md, "Nesting").
#[test]
fn data_nested_too_deep_does_not_block_the_final_save() {
    let mut deep = json!(1);
    for _ in 0..profilestore_core::profile::MAX_DATA_DEPTH {
        deep = Value::from(vec![deep]);
    }
    unsavable_data_is_released_keeping_the_stored_data(
        117,
        json!({ "Coins": 1, "Deep": deep }),
        "[ProfileStore]: \"Profile.Data\" nests deeper than 511 levels and cannot be saved (STORE:S; KEY:k)",
    );
}

/// §19 item 16 with a processed message: the release keeps the stored `Data`, so it must keep
/// the message queued too (spec §10.3: an entry leaves with the `Data` holding its effect); the
/// next session gets it again instead of losing it.
#[test]
fn d16_a_release_that_keeps_the_stored_data_keeps_processed_messages() {
    let mut w = World::new(2, 216);
    w.servers[0].auto_process_messages = false;
    let store = w.new_store("S", json!({"Coins": 0}));
    w.run_until(7.0);
    let p = w.start_and_wait(0, store, "k").expect("session started");
    w.with(0, |e, _| e.add_message_handler(p)).unwrap();
    w.with(1, |e, now| {
        e.message(now, store.live(), "k", json!({"Coins": 5}))
    })
    .unwrap();
    w.run_for(7.0);
    // The handler applied the gift and marked it processed, then the game broke Data.
    w.with(0, |e, _| e.message_processed(p, 1)).unwrap();
    *w.data_mut(0, p) = json!("oops");
    w.with(0, |e, now| e.end_session(now, p));
    w.run_for(2.0);
    let v = w.stored("S", "k").unwrap();
    assert!(v["MetaData"].get("ActiveSession").is_none(), "released");
    assert_eq!(
        v["Data"],
        json!({"Coins": 0}),
        "the last saved Data is kept"
    );
    assert_eq!(
        v["GlobalUpdates"],
        json!([1, [[1, {"Coins": 5}]]]),
        "and the gift with it"
    );
}

/// §19 item 18: inner fields are read defensively; a stored `SessionLoadCount` at the top of the
/// integer range saturates instead of overflowing when a session starts.
#[test]
fn d18_a_huge_session_load_count_saturates() {
    let mut w = World::new(1, 218);
    let store = w.new_store("S", json!({}));
    w.raw_set(
        "S",
        "k",
        json!({"Data": {}, "MetaData": {"SessionLoadCount": i64::MAX}, "GlobalUpdates": [0, []]}),
    );
    w.start_and_wait(0, store, "k").expect("session started");
    let v = w.stored("S", "k").unwrap();
    assert_eq!(v["MetaData"]["SessionLoadCount"], json!(i64::MAX));
    assert!(
        v["MetaData"]["ActiveSession"].is_array(),
        "locked by the start"
    );
}

/// §19 item 17: a cancelled start always leaves the load-job count, so shutdown completes.
/// The start is cancelled during its conflict wait, returns nil at the wait's end (its next
/// loop head, spec §5.2 step 7), and a shutdown after that completes within a frame: nothing
/// of the start is left to wait for. A start cancelled as the shutdown begins returns at once.
#[test]
fn d17_cancelled_starts_never_block_shutdown() {
    let mut w = World::new(2, 117);
    let store = w.new_store("S", json!({}));
    w.start_and_wait(1, store, "k").expect("session started");
    w.messaging_fail = 1.0;
    let asked = w.now;
    let call = w.start_cancellable(0, store.live(), "k");
    w.run_for(2.0);
    w.with(0, |e, now| e.cancel_session_start(now, call));
    w.run_for(2.0);
    assert_eq!(w.completion(0, call), None, "still in its conflict wait");
    w.run_for(4.0);
    let at = returned_nil(&w, call, "cancelled at the wait's end");
    // Its claim landed a round trip after the call (0.3 s), then the first wait (5 s).
    assert!(
        (at - asked - 5.3).abs() < 1e-9,
        "returned {} s after",
        at - asked
    );
    w.with(0, |e, now| e.shutdown(now));
    w.run_for(1.0 / 60.0);
    assert!(shutdown_done(&w, 0), "no load job left behind");

    let call = w.start_cancellable(1, store.live(), "other");
    w.run_for(0.1);
    w.with(1, |e, now| e.cancel_session_start(now, call));
    w.with(1, |e, now| e.shutdown(now));
    w.run_for(1.0);
    assert_eq!(
        w.completion(1, call).map(|(_, c)| c),
        Some(Completion::SessionStart {
            call,
            profile: None
        }),
        "cancelled and closing"
    );
    assert!(shutdown_done(&w, 1));
}

/// §19 item 18: malformed inner fields no longer make every start fail.
#[test]
fn d18_fragile_inner_fields_are_read_defensively() {
    let mut w = World::new(1, 118);
    let store = w.new_store("S", json!({}));
    w.raw_set(
        "S",
        "k",
        json!({"Data": {"Coins": 3}, "MetaData": {"ActiveSession": "garbage", "LastUpdate": "soon"}, "GlobalUpdates": {}}),
    );
    let p = w.start_and_wait(0, store, "k").expect("session started");
    assert_eq!(w.servers[0].host.data[&p], json!({"Coins": 3}));
    w.with(0, |e, now| {
        e.message(now, store.live(), "k", json!({"a": 1}))
    })
    .unwrap();
    w.run_for(1.0);
    let v = w.stored("S", "k").unwrap();
    assert_eq!(v["MetaData"]["SessionLoadCount"], json!(1));
    assert_eq!(v["GlobalUpdates"], json!([1, [[1, {"a": 1}]]]));
    // A fractional `SessionLoadCount` reads as its whole part: the start stores 4, not 4.5.
    w.raw_set(
        "S",
        "j",
        json!({"Data": {}, "MetaData": {"SessionLoadCount": 3.5}, "GlobalUpdates": [0, []]}),
    );
    w.start_and_wait(0, store, "j").expect("session started");
    let v = w.stored("S", "j").unwrap();
    assert_eq!(v["MetaData"]["SessionLoadCount"], json!(4));
}

/// §19 items 2 and 18: what a repair of a malformed stored value cannot keep (queue entries
/// with neither an id nor a payload, elements past the queue's two, a `MetaData` or a
/// `SessionLoadCount` of the wrong type) is named in a warning when the repairing write
/// commits, with its JSON text; it used to go silently. A value the engine wrote itself
/// repairs nothing and warns nothing.
#[test]
fn d18_a_repair_that_drops_anything_warns_with_what_it_dropped() {
    let mut w = World::new(1, 182);
    let store = w.new_store("S", json!({}));
    let repaired = |w: &World| w.warnings(0, "Malformed profile repaired");
    w.raw_set(
        "S",
        "k",
        json!({"Data": {"Coins": 5}, "MetaData": [5, "x"],
               "GlobalUpdates": [2, [[1, {"a": 1}], [{"Gift": "Sword"}], "junk"], "extra"]}),
    );
    let p = w.start_and_wait(0, store, "k").expect("session started");
    assert_eq!(
        repaired(&w),
        [
            "[ProfileStore]: Malformed profile repaired (STORE:S; KEY:k): the write could not \
             keep 2 GlobalUpdates entries with no id or payload [[{\"Gift\":\"Sword\"}],\"junk\"]; \
             GlobalUpdates[3..] [\"extra\"]; MetaData [5,\"x\"]"
        ]
    );
    let v = w.stored("S", "k").unwrap();
    assert_eq!(v["GlobalUpdates"], json!([2, [[1, {"a": 1}]]]));
    assert_eq!(v["MetaData"]["SessionLoadCount"], json!(1));
    assert_eq!(v["Data"], json!({"Coins": 5}));
    // The repaired value is the engine's own: its saves warn no more.
    w.with(0, |e, now| e.save(now, p)).unwrap();
    w.run_for(1.0);
    w.with(0, |e, now| e.end_session(now, p));
    w.run_for(2.0);
    assert_eq!(repaired(&w).len(), 1);
    // A `SessionLoadCount` that is no number, and a message's queue that is no array.
    w.raw_set(
        "S",
        "j",
        json!({"Data": {}, "MetaData": {"SessionLoadCount": "3"}, "GlobalUpdates": [0, []]}),
    );
    w.start_and_wait(0, store, "j").expect("session started");
    w.raw_set("S", "m", json!({"GlobalUpdates": {"x": 1}}));
    w.with(0, |e, now| {
        e.message(now, store.live(), "m", json!({"Gift": 1}))
    })
    .unwrap();
    w.run_for(2.0);
    assert_eq!(
        repaired(&w)[1..],
        [
            "[ProfileStore]: Malformed profile repaired (STORE:S; KEY:j): the write could not \
             keep MetaData.SessionLoadCount \"3\"",
            "[ProfileStore]: Malformed profile repaired (STORE:S; KEY:m): the write could not \
             keep GlobalUpdates {\"x\":1}"
        ]
    );
    assert_eq!(
        w.stored("S", "m").unwrap()["GlobalUpdates"],
        json!([1, [[1, {"Gift": 1}]]])
    );
}

/// §19 item 18, `ForceLoadSession`: a claim that is not a lock tag (`[PlaceId, JobId]`, as a
/// start writes it) names no server that could take the lock. The original releases the lock
/// to any table there; here the owner keeps its session and saves as usual.
#[test]
fn d18_a_force_load_claim_that_is_not_a_lock_tag_is_no_claim() {
    let mut w = World::new(1, 181);
    let store = w.new_store("S", json!({}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    let mut stored = w.stored("S", "k").unwrap().clone();
    stored["MetaData"]["ForceLoadSession"] = json!(["x"]);
    w.raw_set("S", "k", stored);
    w.data_mut(0, p)["Coins"] = json!(5);
    w.with(0, |e, now| e.save(now, p)).unwrap();
    w.run_for(1.0);
    assert!(w.servers[0].engine.is_active(p));
    let v = w.stored("S", "k").unwrap();
    assert_eq!(v["Data"], json!({"Coins": 5}));
    assert_eq!(v["MetaData"]["ForceLoadSession"], json!(["x"]));
    assert!(v["MetaData"]["ActiveSession"].is_array());
    let ended = w
        .events(0)
        .iter()
        .any(|(_, e)| matches!(e, Event::OnSessionEnd { .. }));
    assert!(!ended);
}

/// §19 item 21: sessions ended right after a catch-up burst of auto-save slots (as an `OnSave`
/// listener might) leave the ring consistent; auto-saving continues for everyone left.
#[test]
fn d21_ending_sessions_during_a_burst_keeps_the_ring_working() {
    let mut w = World::new(1, 121);
    let store = w.new_store("S", json!({}));
    w.with(0, |e, _| e.set_constant("AUTO_SAVE_PERIOD", 30.0))
        .unwrap();
    let old = w.start_and_wait(0, store, "old").expect("session started");
    w.run_for(25.0);
    let calls: Vec<CallId> = (0..10)
        .map(|i| w.start_session(0, store.live(), &format!("n{i}"), StartParams::default()))
        .collect();
    w.run_for(0.5); // ten fresh profiles at once: the slots the old profile waited for fall due together
    let fresh: Vec<ProfileId> = calls
        .iter()
        .map(|c| w.started_profile(0, *c).unwrap())
        .collect();
    let burst = w
        .events(0)
        .iter()
        .filter(|(at, e)| *at > 25.0 && *e == Event::OnSave { profile: old })
        .count();
    assert_eq!(
        burst, 9,
        "the catch-up burst saved the old profile {burst} times"
    );
    // End half of the newcomers as a listener of the burst would.
    for p in fresh.iter().step_by(2) {
        w.with(0, |e, now| e.end_session(now, *p));
    }
    let t = w.now;
    w.run_for(61.0);
    let engine = &w.servers[0].engine;
    let mut remaining = engine.active_profiles();
    remaining.sort();
    let mut expected: Vec<ProfileId> = std::iter::once(old)
        .chain(fresh.iter().skip(1).step_by(2).copied())
        .collect();
    expected.sort();
    assert_eq!(remaining, expected);
    let mut saves_after = Vec::new();
    for p in remaining.iter().copied() {
        let saves = w
            .events(0)
            .iter()
            .filter(|(at, e)| *at > t && *e == Event::OnSave { profile: p })
            .count();
        saves_after.push(saves);
    }
    // Every remaining profile was auto-saved after the burst: twelve slots in 61 s (a slot
    // every 30 s / 6), the newcomers' first ones handed to the old profile while they were
    // younger than half a period (spec §7).
    assert_eq!(saves_after, [4, 2, 2, 2, 1, 1]);
}
