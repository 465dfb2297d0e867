//! Property tests (proptest) over random interleavings of API calls, DataStore errors, lost
//! MessagingService messages, crashes, shutdowns and time on three engines sharing one store.
//!
//! After every run, with faults turned off and every session ended, these hold:
//! - no engine panicked;
//! - no owned save is lost: every operation id a server saw in `LastSavedData` of its own
//!   session is in the final stored value of that key;
//! - two engines never both complete an owned save for the same key and `SessionLoadCount`, and a
//!   `(key, SessionLoadCount)` pair is only ever locked by one server;
//! - no message is delivered twice to one session (sessions register a handler at random,
//!   which marks every message it is given processed).

use std::collections::{BTreeMap, BTreeSet};

use profilestore_core::testing::{Record, World};
use profilestore_core::value::{Value, json};
use profilestore_core::*;
use proptest::prelude::*;

const KEYS: [&str; 2] = ["a", "b"];

#[derive(Clone, Debug)]
enum Action {
    /// `handle`: register a message handler once the session has started.
    Start {
        s: usize,
        k: usize,
        steal: bool,
        handle: bool,
    },
    End {
        s: usize,
        k: usize,
    },
    Save {
        s: usize,
        k: usize,
    },
    Mutate {
        s: usize,
        k: usize,
    },
    Message {
        s: usize,
        k: usize,
    },
    Handle {
        s: usize,
        k: usize,
    },
    Wait(f64),
    Faults {
        datastore: f64,
        messaging: f64,
    },
    Crash(usize),
    Shutdown(usize),
}

fn action() -> impl Strategy<Value = Action> {
    let s = 0..3usize;
    let k = 0..KEYS.len();
    prop_oneof![
        4 => (s.clone(), k.clone(), prop::bool::weighted(0.15), prop::bool::weighted(0.7))
            .prop_map(|(s, k, steal, handle)| Action::Start { s, k, steal, handle }),
        2 => (s.clone(), k.clone()).prop_map(|(s, k)| Action::End { s, k }),
        2 => (s.clone(), k.clone()).prop_map(|(s, k)| Action::Save { s, k }),
        5 => (s.clone(), k.clone()).prop_map(|(s, k)| Action::Mutate { s, k }),
        4 => (s.clone(), k.clone()).prop_map(|(s, k)| Action::Message { s, k }),
        1 => (s.clone(), k.clone()).prop_map(|(s, k)| Action::Handle { s, k }),
        6 => (0.0..40.0f64).prop_map(Action::Wait),
        2 => (prop::sample::select(vec![0.0, 0.2, 1.0]), prop::sample::select(vec![0.0, 0.5, 1.0]))
            .prop_map(|(datastore, messaging)| Action::Faults { datastore, messaging }),
        1 => s.clone().prop_map(Action::Crash),
        1 => s.prop_map(Action::Shutdown),
    ]
}

fn active_profile(w: &World, s: usize, key: &str) -> Option<ProfileId> {
    let e = &w.servers[s].engine;
    e.active_profiles()
        .into_iter()
        .find(|p| e.profile(*p).is_some_and(|x| x.key == key))
}

fn ops(v: &Value) -> BTreeSet<String> {
    v.get("ops")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Plays `actions`, settles, checks the invariants, and returns what the checks ran on: per
/// key, the ops its owners' saves acknowledged, and the lock holders (key, generation, job).
fn run(actions: &[Action], seed: u64) -> Checked {
    let mut w = World::new(3, seed);
    let store = w.new_store("S", json!({"ops": []}));
    for s in 0..3 {
        w.with(s, |e, _| e.set_constant("AUTO_SAVE_PERIOD", 60.0))
            .unwrap();
    }
    let mut next_op = 0u32;
    let mut handled = 0;
    // Sessions to give a handler once started: (server, key).
    let mut want_handler = BTreeSet::new();
    for a in actions {
        mark_processed(&mut w, &mut handled);
        want_handler.retain(|&(s, k)| match active_profile(&w, s, KEYS[k]) {
            Some(p) if w.servers[s].alive => {
                w.with(s, |e, _| e.add_message_handler(p)).unwrap();
                false
            }
            _ => w.servers[s].alive,
        });
        match *a {
            Action::Start {
                s,
                k,
                steal,
                handle,
            } if w.servers[s].alive => {
                if handle {
                    want_handler.insert((s, k));
                }
                let params = StartParams {
                    steal,
                    cancellable: false,
                };
                let _ = w.with(s, |e, now| {
                    e.start_session(now, store.live(), KEYS[k], params)
                });
            }
            Action::End { s, k } if w.servers[s].alive => {
                if let Some(p) = active_profile(&w, s, KEYS[k]) {
                    w.with(s, |e, now| e.end_session(now, p));
                }
            }
            Action::Save { s, k } if w.servers[s].alive => {
                if let Some(p) = active_profile(&w, s, KEYS[k]) {
                    w.with(s, |e, now| e.save(now, p)).unwrap();
                }
            }
            Action::Mutate { s, k } if w.servers[s].alive => {
                if let Some(p) = active_profile(&w, s, KEYS[k]) {
                    next_op += 1;
                    let id = format!("s{s}-{next_op}");
                    w.data_mut(s, p)["ops"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!(id));
                }
            }
            Action::Message { s, k } if w.servers[s].alive => {
                let _ = w.with(s, |e, now| {
                    e.message(now, store.live(), KEYS[k], json!({"gift": 1}))
                });
            }
            Action::Handle { s, k } if w.servers[s].alive => {
                if let Some(p) = active_profile(&w, s, KEYS[k]) {
                    w.with(s, |e, _| e.add_message_handler(p)).unwrap();
                }
            }
            Action::Wait(t) => w.run_for(t),
            Action::Faults {
                datastore,
                messaging,
            } => {
                w.datastore_fail = datastore;
                w.messaging_fail = messaging;
            }
            Action::Crash(s) => w.crash(s),
            Action::Shutdown(s) if w.servers[s].alive => w.with(s, |e, now| e.shutdown(now)),
            _ => {}
        }
    }
    mark_processed(&mut w, &mut handled);
    // Settle: no faults, end every session (starts still waiting may finish later), let every
    // final save land.
    w.datastore_fail = 0.0;
    w.messaging_fail = 0.0;
    for _ in 0..6 {
        for s in 0..3 {
            if w.servers[s].alive {
                for p in w.servers[s].engine.active_profiles() {
                    w.with(s, |e, now| e.end_session(now, p));
                }
            }
        }
        w.run_for(120.0);
    }

    // No owned save lost.
    let mut acked: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &w.journal {
        if let Record::Output(Output::Event(Event::OnAfterSave {
            profile,
            last_saved_data,
        })) = &e.record
        {
            let key = w.servers[e.server]
                .engine
                .profile(*profile)
                .map(|p| p.key.clone());
            if let Some(key) = key {
                let mine = ops(last_saved_data)
                    .into_iter()
                    .filter(|o| o.starts_with(&format!("s{}-", e.server)));
                acked.entry(key).or_default().extend(mine);
            }
        }
    }
    for (key, acked) in &acked {
        let stored = w
            .stored("S", key)
            .map(|v| ops(&v["Data"]))
            .unwrap_or_default();
        let missing: Vec<_> = acked.difference(&stored).collect();
        assert!(
            missing.is_empty(),
            "key {key}: acknowledged ops {missing:?} lost; final {stored:?}"
        );
    }

    // One lock holder per (key, SessionLoadCount); owned saves by that holder only.
    let jobs: Vec<String> = w
        .servers
        .iter()
        .map(|s| s.engine.identity().job_id.clone())
        .collect();
    let mut holder: BTreeMap<(String, i64), String> = BTreeMap::new();
    let mut previous: BTreeMap<String, Value> = BTreeMap::new();
    for e in &w.journal {
        let Record::Write { key, value } = &e.record else {
            continue;
        };
        let slc = value["MetaData"]["SessionLoadCount"].as_i64().unwrap_or(0);
        if let Some(job) = value["MetaData"]["ActiveSession"][1].as_str() {
            let h = holder
                .entry((key.clone(), slc))
                .or_insert_with(|| job.to_string());
            assert_eq!(h, job, "key {key} generation {slc} locked by two servers");
        }
        // Only the holder of the previous value's lock may change Data (owned saves); starts,
        // claims, messages and non-owned saves write Data back unchanged.
        if let Some(prev) = previous.get(key)
            && prev.get("Data").is_some()
            && value["Data"] != prev["Data"]
        {
            let prev_job = prev["MetaData"]["ActiveSession"][1].as_str();
            assert_eq!(
                prev_job,
                Some(jobs[e.server].as_str()),
                "key {key}: Data changed by a server that did not hold the lock"
            );
        }
        previous.insert(key.clone(), value.clone());
    }

    // No message delivered twice to one session: to its handlers after a save, or to a
    // handler as it registers (given only what is not processed, and every message a handler
    // is given is processed at once).
    let mut delivered = BTreeSet::new();
    for e in &w.journal {
        if let Record::Output(Output::Event(Event::Message { profile, id, .. })) = &e.record {
            assert!(
                delivered.insert((e.server, *profile, *id)),
                "message {id} delivered twice"
            );
        }
    }
    Checked {
        acked,
        holder,
        delivered: delivered.len(),
    }
}

/// Marks processed every message the handlers were given since journal entry `from` (a
/// handler calling `processed()`), and moves `from` past them.
fn mark_processed(w: &mut World, from: &mut usize) {
    let given: Vec<(usize, ProfileId, i64)> = w.journal[*from..]
        .iter()
        .filter_map(|e| match &e.record {
            Record::Output(Output::Event(Event::Message { profile, id, .. })) => {
                Some((e.server, *profile, *id))
            }
            _ => None,
        })
        .collect();
    *from = w.journal.len();
    for (s, profile, id) in given {
        if w.servers[s].alive {
            // Refused only for a profile dropped since (its session ended).
            let _ = w.with(s, |e, _| e.message_processed(profile, id));
        }
    }
}

/// What [`run`]'s checks ran on.
struct Checked {
    acked: BTreeMap<String, BTreeSet<String>>,
    holder: BTreeMap<(String, i64), String>,
    /// Messages delivered to a session's handlers after a save.
    delivered: usize,
}

proptest! {
    // 48 cases in the normal run; PROPTEST_CASES=N runs more.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        // A fixed seed: every run, CI's too, tries the same cases.
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5EED),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_interleavings_keep_the_invariants(actions in prop::collection::vec(action(), 1..40), seed in any::<u64>()) {
        run(&actions, seed);
    }
}

/// A start of key `k` on server `s` that registers no handler of its own.
fn start(s: usize, k: usize, steal: bool) -> Action {
    Action::Start {
        s,
        k,
        steal,
        handle: false,
    }
}

/// A hand-picked interleaving for the message check: a session with a handler is sent a
/// gift from another server; its next save delivers it once, and the saves after (the
/// handler marked it processed) do not deliver it again. The check counts what it saw.
#[test]
fn a_message_reaches_a_sessions_handler_once() {
    let checked = run(
        &[
            start(0, 0, false),
            Action::Wait(1.0),
            Action::Handle { s: 0, k: 0 },
            Action::Message { s: 1, k: 0 },
            Action::Wait(10.0),
            Action::Save { s: 0, k: 0 },
            Action::Wait(10.0),
            Action::Save { s: 0, k: 0 },
            Action::Wait(10.0),
        ],
        7,
    );
    assert_eq!(checked.delivered, 1);
}

/// A hand-picked interleaving: steal while the owner's saves fail, then recovery.
#[test]
fn steal_during_an_outage_keeps_acknowledged_ops() {
    let checked = run(
        &[
            start(0, 0, false),
            Action::Wait(1.0),
            Action::Mutate { s: 0, k: 0 },
            Action::Save { s: 0, k: 0 },
            Action::Wait(1.0),
            Action::Faults {
                datastore: 0.0,
                messaging: 1.0,
            },
            start(1, 0, false),
            Action::Mutate { s: 0, k: 0 },
            Action::Wait(30.0),
            Action::Mutate { s: 0, k: 0 },
            start(2, 0, true),
            Action::Wait(30.0),
            Action::Mutate { s: 1, k: 0 },
            Action::Mutate { s: 2, k: 0 },
            Action::Faults {
                datastore: 1.0,
                messaging: 0.0,
            },
            Action::Wait(30.0),
        ],
        7,
    );
    // The checks ran on something: ops acknowledged, and the key's lock held by more than
    // one server over its generations (the steal happened).
    // Acknowledged: server 0's op, saved before the outage, and server 2's, after its steal
    // (no save of server 1 acknowledged its op).
    let acked: Vec<(&String, Vec<&String>)> = checked
        .acked
        .iter()
        .map(|(k, ops)| (k, ops.iter().collect()))
        .collect();
    assert_eq!(format!("{acked:?}"), r#"[("a", ["s0-1", "s2-4"])]"#);
    let holders: BTreeSet<&String> = checked.holder.values().collect();
    assert_eq!(holders.len(), 2);
}

/// The case proptest once shrank a failure to (recorded before the strategy changed, so its
/// stored seed no longer makes it): a start on server 2, a stealing start of the same key on
/// server 0, then a change on server 2 after the steal.
#[test]
fn a_steal_then_a_change_on_the_old_owner_keeps_the_invariants() {
    let checked = run(
        &[
            start(2, 1, false),
            start(0, 1, true),
            Action::Wait(22.5484822145131),
            Action::Mutate { s: 2, k: 1 },
            Action::Wait(38.724863261237864),
        ],
        0,
    );
    // Two generations of the key, held by two servers; the old owner's change after the
    // steal was never acknowledged (its save found the lock gone).
    let holders: Vec<(&(String, i64), &String)> = checked.holder.iter().collect();
    assert_eq!(holders.len(), 2, "{holders:?}");
    assert_eq!(
        (&holders[0].0.0, holders[0].0.1, holders[1].0.1),
        (&"b".to_string(), 1, 2)
    );
    assert_ne!(holders[0].1, holders[1].1);
    assert_eq!(
        checked.acked,
        BTreeMap::from([("b".to_string(), BTreeSet::new())])
    );
}
