//! Every signal order of spec §8.4, shutdown (§9.4), the final-save retry schedule and the
//! auto-save ring driven through the engine (§7), pinned against `shared/fixtures/traces`.

use profilestore_core::testing::World;
use profilestore_core::value::json;
use profilestore_core::*;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

/// Signals only (no warnings), after time `from`.
fn signals(w: &World, s: usize, from: f64) -> Vec<(f64, Event)> {
    w.events(s)
        .into_iter()
        .filter(|(t, e)| *t >= from && !matches!(e, Event::Warn { .. } | Event::Print { .. }))
        .collect()
}

fn names(events: &[(f64, Event)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, e)| match e {
            Event::OnSave { .. } => "OnSave".to_string(),
            Event::OnLastSave { reason, .. } => format!("OnLastSave({})", reason.as_str()),
            Event::OnSessionEnd { .. } => "OnSessionEnd".into(),
            Event::OnAfterSave { .. } => "OnAfterSave".into(),
            Event::Message { .. } => "Message".into(),
            Event::OnError { .. } => "OnError".into(),
            Event::OnOverwrite { .. } => "OnOverwrite".into(),
            Event::OnCriticalToggle { is_critical } => format!("OnCriticalToggle({is_critical})"),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn regular_save_still_owner() {
    let mut w = World::new(1, 1);
    let store = w.new_store("S", json!({}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    let t = w.now;
    w.with(0, |e, now| e.save(now, p)).unwrap();
    w.run_for(1.0);
    assert_eq!(names(&signals(&w, 0, t)), ["OnSave", "OnAfterSave"]);
}

#[test]
fn force_load_detected_by_a_regular_save_saves_twice() {
    let mut w = World::new(2, 2);
    let store = w.new_store("S", json!({"Coins": 0}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    w.messaging_fail = 1.0; // A must learn from its own save, not from MessagingService
    w.start_session(1, store.live(), "k", StartParams::default());
    w.run_for(1.0);
    w.data_mut(0, p)["Coins"] = json!(3);
    let t = w.now;
    w.with(0, |e, now| e.save(now, p)).unwrap();
    w.run_for(1.0);
    let sig = signals(&w, 0, t);
    assert_eq!(
        names(&sig),
        [
            "OnSave",
            "OnSave",
            "OnLastSave(External)",
            "OnSessionEnd",
            "OnAfterSave"
        ]
    );
    assert!(close(sig[0].0, t) && close(sig[1].0, t + 0.3) && close(sig[4].0, t + 0.6));
    let a_writes: Vec<_> = w
        .writes("k")
        .into_iter()
        .filter(|x| x.1 == 0 && x.0 > t)
        .collect();
    assert_eq!(a_writes.len(), 2);
    assert_eq!(
        a_writes[0].2["Data"],
        json!({"Coins": 3}),
        "write #1 saves the data"
    );
    assert!(
        a_writes[1].2["MetaData"].get("ActiveSession").is_none(),
        "write #2 releases"
    );
}

#[test]
fn lock_lost_detected_by_a_save() {
    let mut w = World::new(2, 3);
    let store = w.new_store("S", json!({"Coins": 0}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    let b = w.start_session(
        1,
        store.live(),
        "k",
        StartParams {
            steal: true,
            cancellable: false,
        },
    );
    w.run_for(1.0);
    let pb = w.started_profile(1, b).unwrap();
    w.data_mut(1, pb)["Coins"] = json!(50);
    w.with(1, |e, now| e.save(now, pb)).unwrap();
    w.run_for(1.0);
    w.data_mut(0, p)["Coins"] = json!(1);
    let t = w.now;
    w.with(0, |e, now| e.save(now, p)).unwrap();
    w.run_for(1.0);
    let sig = signals(&w, 0, t);
    assert_eq!(names(&sig), ["OnSave", "OnSessionEnd", "OnAfterSave"]);
    assert_eq!(
        sig[2].1,
        Event::OnAfterSave {
            profile: p,
            last_saved_data: json!({"Coins": 50}).into()
        },
        "foreign data"
    );
    assert_eq!(
        w.stored("S", "k").unwrap()["Data"],
        json!({"Coins": 50}),
        "data not saved"
    );
}

/// Signals are outputs (`docs/DEVIATIONS.md`, "Signals are outputs"): `EndSession` puts out
/// `OnSave`, `OnLastSave` and `OnSessionEnd` in the call, so by the time a host hands the first
/// two to listeners `is_active` already reads false, where spec §8.1's listeners still see the
/// profile active. The host answers `IsActive()` inside them from the signals.
#[test]
fn an_ending_saves_signals_are_out_before_any_listener_runs() {
    let mut w = World::new(1, 5);
    let store = w.new_store("S", json!({}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    let t = w.now;
    w.with(0, |e, now| e.end_session(now, p));
    assert_eq!(
        names(&signals(&w, 0, t)),
        ["OnSave", "OnLastSave(Manual)", "OnSessionEnd"]
    );
    assert!(!w.servers[0].engine.is_active(p));
    w.run_for(1.0);
    assert_eq!(
        names(&signals(&w, 0, t)),
        [
            "OnSave",
            "OnLastSave(Manual)",
            "OnSessionEnd",
            "OnAfterSave"
        ]
    );
}

#[test]
fn set_async_on_view_profile_fires_only_on_save() {
    let mut w = World::new(1, 4);
    let store = w.new_store("S", json!({"Coins": 0}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    w.with(0, |e, now| e.end_session(now, p));
    w.run_for(1.0);
    let view = w.view(0, store, "k").expect("a view profile");
    let v = view.profile;
    assert_eq!(
        w.with(0, |e, now| e.save(now, v)),
        Err(ApiError::SaveInViewMode)
    );
    assert_eq!(
        w.with(0, |e, now| e.set_async(now, p)),
        Err(ApiError::SetAsyncNotViewMode)
    );
    w.data_mut(0, v)["Coins"] = json!(99);
    let t = w.now;
    let call = w.with(0, |e, now| e.set_async(now, v)).unwrap();
    w.run_for(1.0);
    assert_eq!(names(&signals(&w, 0, t)), ["OnSave"]);
    assert_eq!(
        w.completion(0, call).unwrap().1,
        Completion::SetAsync { call, ok: true }
    );
    assert_eq!(w.stored("S", "k").unwrap()["Data"], json!({"Coins": 99}));
}

/// Spec §9.3: `Profile:SetAsync()` removes the lock. DEVIATIONS row 8 tells the owner once the
/// write lands, but here the notice arrives while the owner's `os.clock()` is under 6 s, which
/// §10.4's rate limit drops (and it is not sent again): the original's behaviour remains, and
/// the owner learns of it at its next save. (`deviations.rs`
/// `d08_a_session_whose_key_was_overwritten_ends_at_once` has the notice arrive later.)
#[test]
fn set_async_clears_the_owners_lock_and_the_owner_loses_it_at_next_save() {
    let mut w = World::new(2, 5);
    let store = w.new_store("S", json!({"Coins": 0}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    let view = w.view(1, store, "k").expect("a view profile");
    w.data_mut(1, view.profile)["Coins"] = json!(7);
    w.with(1, |e, now| e.set_async(now, view.profile)).unwrap();
    w.run_for(1.0);
    let stored = w.stored("S", "k").unwrap().clone();
    assert!(stored["MetaData"].get("ActiveSession").is_none());
    assert!(
        w.now < 6.0 && w.servers[0].engine.is_active(p),
        "the owner's clock is under 6 s: the notice is dropped"
    );
    w.with(0, |e, now| e.save(now, p)).unwrap();
    w.run_for(1.0);
    assert!(!w.servers[0].engine.is_active(p));
    assert_eq!(w.stored("S", "k").unwrap()["Data"], json!({"Coins": 7}));
}

/// `shared/fixtures/traces/shutdown.jsonl`: three profiles, `BindToClose` at t = 6, all saved
/// with reason `Shutdown`, the handler finishing when the last write lands.
#[test]
fn shutdown_saves_every_active_profile() {
    let mut w = World::new(1, 6);
    let store = w.new_store("PlayerData", json!({"Coins": 0}));
    w.run_until(1.0);
    let calls: Vec<CallId> = ["k1", "k2", "k3"]
        .iter()
        .map(|k| w.start_session(0, store.live(), k, StartParams::default()))
        .collect();
    w.run_until(5.0);
    for (i, call) in calls.iter().enumerate() {
        let p = w.started_profile(0, *call).unwrap();
        w.data_mut(0, p)["Coins"] = json!(i + 1);
    }
    w.run_until(6.0);
    w.with(0, |e, now| e.shutdown(now));
    assert!(w.servers[0].engine.is_closing());
    let late = w
        .with(0, |e, now| {
            e.start_session(now, store.live(), "k4", StartParams::default())
        })
        .unwrap();
    w.run_until(20.0);
    assert_eq!(
        w.completion(0, late).unwrap().1,
        Completion::SessionStart {
            call: late,
            profile: None
        }
    );
    let sig = signals(&w, 0, 6.0);
    assert_eq!(
        names(&sig),
        [
            "OnSave",
            "OnLastSave(Shutdown)",
            "OnSessionEnd",
            "OnSave",
            "OnLastSave(Shutdown)",
            "OnSessionEnd",
            "OnSave",
            "OnLastSave(Shutdown)",
            "OnSessionEnd",
            "OnAfterSave",
            "OnAfterSave",
            "OnAfterSave"
        ]
    );
    // Ring order: k2, k3, k1 (each newcomer sits behind the cursor), as in the trace.
    let keys: Vec<String> = sig
        .iter()
        .filter_map(|(_, e)| match e {
            Event::OnSave { profile } => {
                Some(w.servers[0].engine.profile(*profile).unwrap().key.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(keys, ["k2", "k3", "k1"]);
    for k in ["k1", "k2", "k3"] {
        let v = w.stored("PlayerData", k).unwrap();
        assert!(v["MetaData"].get("ActiveSession").is_none());
        assert_eq!(v["MetaData"]["LastUpdate"], json!(1735689606));
    }
    let done = w
        .journal
        .iter()
        .find(|e| {
            matches!(
                e.record,
                profilestore_core::testing::Record::Output(Output::Completion(
                    Completion::Shutdown
                ))
            )
        })
        .unwrap();
    assert!(close(done.t, 6.3));
}

/// `shared/fixtures/traces/final_save_retry.jsonl`: every DataStore call fails from t = 5 to 20;
/// the final save fails at 5.3, 6.6, 8.9, 13.2 (backoff 1, 2, 4, 8) and lands at 21.5.
#[test]
fn final_save_retries_with_backoff_until_it_lands() {
    let mut w = World::new(1, 7);
    let store = w.new_store("PlayerData", json!({"Coins": 0}));
    w.run_until(1.0);
    let p = w.start_and_wait(0, store, "k").expect("session started");
    w.run_until(5.0);
    w.datastore_fail = 1.0;
    w.data_mut(0, p)["Coins"] = json!(4);
    w.with(0, |e, now| e.end_session(now, p));
    w.run_until(20.0);
    w.datastore_fail = 0.0;
    w.run_until(60.0);
    let sig = signals(&w, 0, 5.0);
    let errors: Vec<f64> = sig
        .iter()
        .filter(|(_, e)| matches!(e, Event::OnError { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(errors.len(), 4);
    for (g, want) in errors.iter().zip([5.3, 6.6, 8.9, 13.2]) {
        assert!(close(*g, want), "{errors:?}");
    }
    assert_eq!(
        sig.iter()
            .find(|(_, e)| matches!(e, Event::OnError { .. }))
            .unwrap()
            .1,
        Event::OnError {
            message: testing_fault(),
            store: "PlayerData".into(),
            key: "k".into()
        }
    );
    let (t, _, v) = w.writes("k").last().unwrap().clone();
    assert!(close(t, 21.5));
    assert_eq!(v["Data"], json!({"Coins": 4}));
    assert_eq!(v["MetaData"]["LastUpdate"], json!(1735689621));
}

fn testing_fault() -> String {
    profilestore_core::testing::FAULT_MESSAGE.to_string()
}

/// `shared/fixtures/traces/autosave_ring.jsonl`: AUTO_SAVE_PERIOD 30, five profiles started a
/// second apart; saves at 19.32, 25.32, ... in load order, each profile every 30 s.
#[test]
fn autosave_ring_spacing_through_the_engine() {
    let mut w = World::new(1, 8);
    let store = w.new_store("PlayerData", json!({"Coins": 0}));
    w.with(0, |e, _| e.set_constant("AUTO_SAVE_PERIOD", 30.0))
        .unwrap();
    let mut profiles = vec![];
    for i in 1..=5 {
        w.run_until(i as f64);
        let call = w.start_session(0, store.live(), &format!("k{i}"), StartParams::default());
        profiles.push(call);
    }
    w.run_until(125.0);
    let saves: Vec<(f64, String)> = signals(&w, 0, 0.0)
        .into_iter()
        .filter_map(|(t, e)| match e {
            Event::OnSave { profile } => {
                Some((t, w.servers[0].engine.profile(profile).unwrap().key.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(saves.len(), 18);
    for (i, (t, key)) in saves.iter().enumerate() {
        let want = 19.316_666 + 6.0 * i as f64;
        assert!(
            (t - want).abs() <= 1.0 / 60.0 + 1e-6,
            "save {i} of {key} at {t}"
        );
        assert_eq!(key, &format!("k{}", i % 5 + 1));
    }
}

/// Spec §12: critical state counts errors within `CRITICAL_STATE_ERROR_EXPIRE`; a successful
/// request in between does not reset that count. Four failing saves, a successful one, then a
/// fifth failing save: critical state begins at the fifth error.
#[test]
fn a_success_between_errors_does_not_reset_the_window() {
    let mut w = World::new(1, 10);
    let store = w.new_store("S", json!({}));
    let p = w.start_and_wait(0, store, "k").expect("session started");
    let save = |w: &mut World, fail: f64| {
        w.datastore_fail = fail;
        w.with(0, |e, now| e.save(now, p)).unwrap();
        w.run_for(2.0);
    };
    for _ in 0..4 {
        save(&mut w, 1.0);
    }
    save(&mut w, 0.0);
    let errors = |w: &World| {
        w.events(0)
            .into_iter()
            .filter(|(_, e)| matches!(e, Event::OnError { .. }))
            .count()
    };
    assert_eq!(errors(&w), 4);
    assert!(!w.servers[0].engine.is_critical_state());
    save(&mut w, 1.0);
    assert_eq!(errors(&w), 5);
    assert!(w.servers[0].engine.is_critical_state());
    let toggles: Vec<Event> = w
        .events(0)
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| matches!(e, Event::OnCriticalToggle { .. }))
        .collect();
    assert_eq!(toggles, [Event::OnCriticalToggle { is_critical: true }]);
}

/// Critical state (spec §12): five errors inside 120 s enter it; it ends 120 s after the window
/// last held five.
#[test]
fn critical_state_toggles_on_and_off() {
    let mut w = World::new(1, 9);
    let store = w.new_store("S", json!({}));
    w.datastore_fail = 1.0;
    let call = w.start_session(0, store.live(), "k", StartParams::default());
    // Errors at 0.3, 1.6, 3.9, 8.2, 16.5 (the fifth enters critical state at its frame).
    w.run_until(16.4);
    assert!(!w.servers[0].engine.is_critical_state());
    w.run_until(16.6);
    assert!(w.servers[0].engine.is_critical_state());
    w.datastore_fail = 0.0;
    w.run_until(400.0);
    assert!(
        w.started_profile(0, call).is_some(),
        "recovered after the outage"
    );
    let toggles: Vec<(f64, Event)> = signals(&w, 0, 0.0)
        .into_iter()
        .filter(|(_, e)| matches!(e, Event::OnCriticalToggle { .. }))
        .collect();
    assert_eq!(toggles.len(), 2);
    assert_eq!(toggles[0].1, Event::OnCriticalToggle { is_critical: true });
    assert!(
        (toggles[0].0 - 16.516_666).abs() < 1.0 / 60.0 + 1e-6,
        "{toggles:?}"
    );
    // The window holds five until the first error (0.3) expires at 120.3; the end is 120 s after
    // the last refresh, at ≈240.3.
    assert_eq!(toggles[1].1, Event::OnCriticalToggle { is_critical: false });
    assert!((toggles[1].0 - 240.3).abs() < 2.0 / 60.0, "{toggles:?}");
    assert_eq!(
        w.warnings(0, "ritical state"),
        [
            "[ProfileStore]: Entered critical state",
            "[ProfileStore]: Critical state ended"
        ]
    );
}
