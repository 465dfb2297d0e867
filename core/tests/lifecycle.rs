//! Session lifecycle on one server, pinned against `shared/fixtures/traces/lifecycle.jsonl`
//! (spec §5, §8.4, §9.1).

use profilestore_core::testing::{Record, World};
use profilestore_core::value::json;
use profilestore_core::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn lifecycle_matches_original_trace() {
    let mut w = World::new(1, 1);
    let store = w.new_store("PlayerData", json!({"Coins": 0}));
    let job = w.servers[0].engine.identity().job_id.clone();
    w.run_until(1.0);
    let call = w.start_session(0, store.live(), "k", StartParams::default());
    w.run_until(3.0);
    let (t, _) = w.completion(0, call).expect("started");
    assert!(close(t, 1.3), "returned at {t}");
    let p = w.started_profile(0, call).unwrap();
    let profile = w.servers[0].engine.profile(p).unwrap();
    assert_eq!(profile.session_load_count, 1);
    assert_eq!(profile.first_session_time, 1_735_689_601.0);

    let writes = w.writes("k");
    assert_eq!(writes.len(), 1);
    let guid = writes[0].2["MetaData"]["ActiveSession"][2]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        writes[0].2,
        json!({"Data": {"Coins": 0}, "GlobalUpdates": [0, []],
               "MetaData": {"ActiveSession": [1001, job, guid], "LastUpdate": 1735689601, "MetaTags": [],
                            "ProfileCreateTime": 1735689601, "SessionLoadCount": 1}})
    );

    w.data_mut(0, p)["Coins"] = json!(1);
    w.with(0, |e, now| e.save(now, p)).unwrap();
    w.run_until(6.0);
    w.data_mut(0, p)["Coins"] = json!(2);
    w.with(0, |e, now| e.end_session(now, p));
    assert!(
        !w.servers[0].engine.is_active(p),
        "inactive as soon as EndSession returns"
    );
    w.run_until(9.0);
    let call2 = w.start_session(0, store.live(), "k", StartParams::default());
    w.run_until(12.0);
    let p2 = w.started_profile(0, call2).unwrap();
    assert_eq!(
        w.servers[0].engine.profile(p2).unwrap().session_load_count,
        2
    );
    w.with(0, |e, now| e.end_session(now, p2));
    w.run_until(20.0);

    let writes = w.writes("k");
    let times: Vec<f64> = writes.iter().map(|w| w.0).collect();
    for (got, want) in times.iter().zip([1.3, 3.3, 6.3, 9.3, 12.3]) {
        assert!(close(*got, want), "write times {times:?}");
    }
    assert_eq!(writes.len(), 5);
    assert_eq!(
        writes[1].2,
        json!({"Data": {"Coins": 1}, "GlobalUpdates": [0, []],
               "MetaData": {"ActiveSession": [1001, job, guid], "LastUpdate": 1735689603, "MetaTags": [],
                            "ProfileCreateTime": 1735689601, "SessionLoadCount": 1},
               "RobloxMetaData": {}, "UserIds": [], "WasOverwritten": false})
    );
    assert_eq!(
        writes[2].2,
        json!({"Data": {"Coins": 2}, "GlobalUpdates": [0, []],
               "MetaData": {"LastUpdate": 1735689606, "MetaTags": [], "ProfileCreateTime": 1735689601,
                            "SessionLoadCount": 1},
               "RobloxMetaData": {}, "UserIds": [], "WasOverwritten": false})
    );
    assert_eq!(writes[3].2["MetaData"]["SessionLoadCount"], json!(2));
    assert_ne!(
        writes[3].2["MetaData"]["ActiveSession"][2],
        json!(guid),
        "a new GUID per session"
    );

    let signals: Vec<(f64, Event)> = w
        .events(0)
        .into_iter()
        .filter(|(_, e)| !matches!(e, Event::Warn { .. }))
        .collect();
    let expected = vec![
        (3.0, Event::OnSave { profile: p }),
        (
            3.3,
            Event::OnAfterSave {
                profile: p,
                last_saved_data: json!({"Coins": 1}).into(),
            },
        ),
        (6.0, Event::OnSave { profile: p }),
        (
            6.0,
            Event::OnLastSave {
                profile: p,
                reason: EndReason::Manual,
            },
        ),
        (6.0, Event::OnSessionEnd { profile: p }),
        (
            6.3,
            Event::OnAfterSave {
                profile: p,
                last_saved_data: json!({"Coins": 2}).into(),
            },
        ),
        (12.0, Event::OnSave { profile: p2 }),
        (
            12.0,
            Event::OnLastSave {
                profile: p2,
                reason: EndReason::Manual,
            },
        ),
        (12.0, Event::OnSessionEnd { profile: p2 }),
        (
            12.3,
            Event::OnAfterSave {
                profile: p2,
                last_saved_data: json!({"Coins": 2}).into(),
            },
        ),
    ];
    assert_eq!(signals.len(), expected.len(), "{signals:#?}");
    for ((t, e), (wt, we)) in signals.iter().zip(&expected) {
        assert!(close(*t, *wt), "{e:?} at {t}, want {wt}");
        assert_eq!(e, we);
    }
    // Subscribed to its session topic and unsubscribed at the end (each session here).
    let count = |unsubscribe: bool| {
        w.journal
            .iter()
            .filter(|e| match &e.record {
                Record::Output(Output::Messaging(MessagingRequest::Subscribe { .. })) => {
                    !unsubscribe
                }
                Record::Output(Output::Messaging(MessagingRequest::Unsubscribe { .. })) => {
                    unsubscribe
                }
                _ => false,
            })
            .count()
    };
    assert_eq!((count(false), count(true)), (2, 2));
    assert!(w.servers[0].engine.queue_is_idle());
}

/// A profile the host forgets while its session is active stays (auto-saves, `EndSession`'s
/// final save) until the session has ended and its last save is done; then it is dropped
/// without another call. (It used to stay until the host forgot it again.)
#[test]
fn a_profile_forgotten_while_busy_is_dropped_after_its_last_save() {
    let mut w = World::new(1, 1);
    let store = w.new_store("S", json!({}));
    let p = w.start_and_wait(0, store, "k").expect("started");
    w.with(0, |e, _| e.forget_profile(p));
    assert!(
        w.servers[0].engine.is_active(p),
        "an active profile is kept"
    );
    w.run_for(400.0);
    assert!(w.servers[0].engine.is_active(p));
    // And auto-saved (`AUTO_SAVE_PERIOD` 300 s, one profile in the ring): the start's write,
    // then one save.
    let saves = w
        .events(0)
        .iter()
        .filter(|(_, e)| matches!(e, Event::OnSave { profile } if *profile == p))
        .count();
    assert_eq!((saves, w.writes("k").len()), (1, 2));
    w.with(0, |e, now| e.end_session(now, p));
    let e = &w.servers[0].engine;
    assert!(!e.is_active(p));
    assert!(e.profile(p).is_some(), "kept while its final save is out");
    w.run_for(1.0);
    assert!(w.servers[0].engine.profile(p).is_none(), "dropped after it");
    let stored = w.stored("S", "k").expect("saved");
    assert!(
        stored["MetaData"].get("ActiveSession").is_none(),
        "{stored}"
    );

    // Forgetting an ended profile with no save out drops it at once; an unknown id is ignored.
    let q = w.start_and_wait(0, store, "k2").expect("started");
    w.with(0, |e, now| e.end_session(now, q));
    w.run_for(1.0);
    assert!(
        w.servers[0].engine.profile(q).is_some(),
        "not forgotten: kept"
    );
    w.with(0, |e, _| {
        e.forget_profile(q);
        e.forget_profile(q);
    });
    assert!(w.servers[0].engine.profile(q).is_none());
}

/// Spec §5.3 (iv) and §6: `EndSession` then `StartSessionAsync` at once queues the start behind
/// the final save, and a call made after the start (`RemoveAsync` here) queues behind the
/// start, so the start loads what the final save wrote. (The start used to wait outside the
/// queue until the save landed, letting the removal pass it: it then created a fresh profile.)
#[test]
fn a_start_right_after_end_session_queues_behind_the_final_save() {
    use profilestore_core::testing::World;
    use profilestore_core::value::json;
    use profilestore_core::{Completion, StartParams};

    let mut w = World::new(1, 305);
    let store = w.new_store("S", json!({"Coins": 0}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    *w.data_mut(0, p) = json!({"Coins": 2});
    w.run_for(5.0);
    w.with(0, |e, now| e.end_session(now, p));
    let again = w.start_session(0, store.live(), "k", StartParams::default());
    let remove = w
        .with(0, |e, now| e.remove(now, store.live(), "k"))
        .expect("valid key");
    w.run_for(5.0);
    let p2 = w
        .started_profile(0, again)
        .expect("the start loads the saved profile");
    assert_eq!(w.servers[0].host.data[&p2], json!({"Coins": 2}));
    let (started_at, _) = w.completion(0, again).unwrap();
    let (removed_at, removed) = w.completion(0, remove).unwrap();
    assert!(matches!(removed, Completion::Remove { .. }), "{removed:?}");
    assert!(started_at < removed_at, "{started_at} < {removed_at}");
    assert_eq!(w.stored("S", "k"), None, "the removal ran last");
}

/// Spec §5.3: `START_SESSION_TIMEOUT` is checked after a failed attempt, so a timeout of 0
/// does not stop a start made right after `EndSession` (§5.3 (iv)) from queueing behind the
/// final save and loading what it wrote. (It used to return nil at once, unattempted.)
#[test]
fn a_timeout_of_zero_still_lets_a_start_right_after_end_session_load() {
    use profilestore_core::testing::World;
    use profilestore_core::value::json;
    use profilestore_core::{Completion, StartParams};

    let mut w = World::new(1, 306);
    let store = w.new_store("S", json!({"Coins": 0}));
    w.with(0, |e, _| e.set_constant("START_SESSION_TIMEOUT", 0.0))
        .unwrap();
    let p = w.start_and_wait(0, store, "k").expect("session started");
    *w.data_mut(0, p) = json!({"Coins": 2});
    w.run_for(5.0);
    w.with(0, |e, now| e.end_session(now, p));
    let again = w.start_session(0, store.live(), "k", StartParams::default());
    w.run_for(5.0);
    let p2 = w
        .started_profile(0, again)
        .expect("the start loads the saved profile");
    assert_eq!(w.servers[0].host.data[&p2], json!({"Coins": 2}));
    assert!(matches!(
        w.completion(0, again),
        Some((
            _,
            Completion::SessionStart {
                profile: Some(_),
                ..
            }
        ))
    ));
    let stored = w.stored("S", "k").unwrap();
    assert_eq!(stored["MetaData"]["SessionLoadCount"], json!(2));
}

/// Spec §19 item 22 (reproduced): the final save's transform reads `Profile.Data` when it
/// runs, at the DataStore, not when `EndSession` was called: a change the game makes right
/// after `EndSession` (same frame) is in the released value.
#[test]
fn data_changed_after_end_session_reaches_the_final_save() {
    let mut w = World::new(1, 27);
    let store = w.new_store("S", json!({"Coins": 0}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    w.data_mut(0, p)["Coins"] = json!(1);
    w.with(0, |e, now| e.end_session(now, p));
    w.data_mut(0, p)["Coins"] = json!(2);
    w.run_for(2.0);
    let stored = w.stored("S", "k").unwrap();
    assert_eq!(stored["Data"], json!({"Coins": 2}));
    assert_eq!(stored["MetaData"].get("ActiveSession"), None, "released");
}
