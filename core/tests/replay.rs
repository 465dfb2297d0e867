//! Record and replay (DESIGN.md §2): every input is serialisable (bincode, JSON carried as text);
//! replaying a recorded input stream on a fresh engine gives byte-identical outputs without the
//! host, and the same seed and inputs give the same outputs twice.

use std::collections::BTreeMap;

use profilestore_core::testing::Host;
use profilestore_core::value::{Value, json};
use profilestore_core::*;

fn config() -> EngineConfig {
    EngineConfig {
        identity: ServerIdentity {
            place_id: 1001,
            job_id: "job".into(),
        },
        seed: 99,
        datastore_state: DataStoreState::Access,
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(v, bincode::config::standard()).expect("encodes")
}

/// The recording driver: an engine, its host, a toy DataStore, and everything recorded.
struct Rig {
    engine: Engine,
    host: Host,
    store: BTreeMap<String, (Value, KeyInfo)>,
    inputs: Vec<Input>,
    outputs: Vec<Output>,
    writes: u32,
    profile: Option<ProfileId>,
}

impl Rig {
    /// Applies an input, recording it with the host's answers, then executes every output.
    fn apply(&mut self, input: Input) {
        let mut rec = Recorder::new(&mut self.host);
        let input = match input {
            Input::Timeout { now, .. } => {
                self.engine.handle_timeout(now, &mut rec);
                input
            }
            other => {
                self.engine.handle_input(other.clone(), &mut rec);
                other
            }
        };
        let input = input.with_live(rec.answers);
        self.inputs.push(input);
    }

    fn pump(&mut self, now: Now) {
        while let Some(out) = self.engine.poll_output() {
            self.outputs.push(out.clone());
            match out {
                Output::DataStore(req) => {
                    let current = self.store.get(req.key.as_str()).map(|(v, _)| v.clone());
                    let mut rec = Recorder::new(&mut self.host);
                    let t = self
                        .engine
                        .transform(req.op, current.as_ref(), now.wall, &mut rec);
                    let live = rec.answers;
                    self.inputs.push(Input::Transform {
                        op: req.op,
                        current,
                        wall: now.wall,
                        live,
                    });
                    self.writes += 1;
                    // The second write fails; everything else commits.
                    let result = if self.writes == 2 {
                        Err(DataStoreError {
                            message: "502: injected".into(),
                        })
                    } else {
                        let (store, writes) = (&mut self.store, self.writes);
                        t.commit_with(|value, _, _| {
                            let info = KeyInfo {
                                created_time: 0,
                                updated_time: now.wall * 1000,
                                version: format!("v{writes}").into(),
                                user_ids: vec![],
                                metadata: json!({}),
                            };
                            store.insert(req.key.to_string(), (value.clone(), info.clone()));
                            info
                        })
                    };
                    self.apply(Input::DataStoreResponse {
                        now,
                        op: req.op,
                        result,
                        live: LiveAnswers::default(),
                    });
                }
                Output::Messaging(MessagingRequest::Subscribe { subscription, .. }) => {
                    self.apply(Input::SubscribeResult {
                        now,
                        subscription,
                        result: Ok(()),
                    });
                }
                Output::Completion(Completion::SessionStart {
                    profile: Some(loaded),
                    ..
                }) => {
                    self.host.data.insert(loaded.profile, loaded.data.clone());
                    self.profile = Some(loaded.profile);
                }
                Output::Event(Event::Message { profile, id, .. }) => {
                    self.apply(Input::MessageProcessed { profile, id });
                }
                _ => {}
            }
        }
    }
}

/// Drives one engine through a session with a message, a data change, a failing write and the
/// final save, recording every input and every output.
fn record() -> (Vec<Input>, Vec<Output>) {
    let mut rig = Rig {
        engine: Engine::new(config()),
        host: Host::default(),
        store: BTreeMap::new(),
        inputs: vec![],
        outputs: vec![],
        writes: 0,
        profile: None,
    };
    rig.apply(Input::NewStore {
        name: "S".into(),
        template: json!({"Coins": 0}),
    });
    let s = StoreId(0).live();
    for step in 0..(60 * 10) {
        let mono = step as f64 / 60.0;
        let now = Now {
            mono,
            wall: 1_735_689_600 + mono as i64,
        };
        let scripted = match step {
            60 => Some(Input::StartSession {
                now,
                store: s,
                key: "k".into(),
                params: StartParams::default(),
            }),
            120 => Some(Input::Message {
                now,
                store: s,
                key: "k".into(),
                message: json!({"Gift": 1}),
            }),
            180 => rig
                .profile
                .map(|profile| Input::AddMessageHandler { profile }),
            240 => rig
                .profile
                .map(|profile| Input::EndSession { now, profile }),
            _ => None,
        };
        if step == 210
            && let Some(p) = rig.profile
        {
            rig.host.data.get_mut(&p).unwrap()["Coins"] = json!(42);
        }
        if let Some(input) = scripted {
            rig.apply(input);
            rig.pump(now);
        }
        rig.apply(Input::Timeout {
            now,
            live: LiveAnswers::default(),
        });
        rig.pump(now);
    }
    (rig.inputs, rig.outputs)
}

/// Each output's kind: its variant and, for a DataStore request, the request's.
fn kinds(outputs: &[Output]) -> Vec<String> {
    let variant = |text: String| {
        let end = text
            .find(|c: char| !c.is_alphanumeric())
            .unwrap_or(text.len());
        text[..end].to_string()
    };
    outputs
        .iter()
        .map(|o| match o {
            Output::DataStore(r) => format!("DataStore::{}", variant(format!("{:?}", r.kind))),
            Output::Event(e) => format!("Event::{}", variant(format!("{e:?}"))),
            Output::Completion(c) => format!("Completion::{}", variant(format!("{c:?}"))),
            Output::Messaging(m) => format!("Messaging::{}", variant(format!("{m:?}"))),
        })
        .collect()
}

#[test]
fn replaying_a_recorded_stream_gives_byte_identical_outputs() {
    let (inputs, outputs) = record();
    // The session's start, its failing write, the message handled on the next save, the
    // final save: every step the stream is to carry is in it.
    assert_eq!(inputs.len(), 617);
    assert_eq!(
        kinds(&outputs),
        [
            "DataStore::Update",
            "Messaging::Subscribe",
            "Completion::SessionStart",
            "DataStore::Update",
            "Event::Warn",
            "Event::OnError",
            "DataStore::Update",
            "Event::OnSave",
            "DataStore::Update",
            "Completion::Message",
            "Event::Message",
            "Event::OnAfterSave",
            "Event::OnSave",
            "Event::OnLastSave",
            "Messaging::Unsubscribe",
            "Event::OnSessionEnd",
            "DataStore::Update",
            "Event::OnAfterSave",
        ]
    );

    // The stream survives bincode.
    let bytes = encode(&inputs);
    let (decoded, _): (Vec<Input>, usize) =
        bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).expect("decodes");
    assert_eq!(decoded, inputs);

    let mut engine = Engine::new(config());
    let mut replayed = Vec::new();
    for input in decoded {
        let (_, diverged) = engine.replay_input(input);
        assert_eq!(diverged, 0);
        replayed.extend(std::iter::from_fn(|| engine.poll_output()));
    }
    assert_eq!(encode(&replayed), encode(&outputs));
}

#[test]
fn same_seed_and_inputs_give_the_same_outputs() {
    let (i1, o1) = record();
    let (i2, o2) = record();
    assert_eq!(encode(&i1), encode(&i2));
    assert_eq!(encode(&o1), encode(&o2));
}

#[test]
fn a_diverging_replay_is_detected() {
    let (inputs, _) = record();
    let mut engine = Engine::new(config());
    let mut diverged = 0;
    let mut dropped = 0;
    for input in inputs {
        if let Input::Timeout { live, .. }
        | Input::Transform { live, .. }
        | Input::DataStoreResponse { live, .. } = &input
        {
            dropped += live.0.len();
        }
        // Drop every recorded answer: the engine asks for Data the recording no longer has.
        let input = input.with_live(LiveAnswers::default());
        diverged += engine.replay_input(input).1;
        while engine.poll_output().is_some() {}
    }
    // Each answer dropped is one the replay misses (the saves' four reads of `Data`).
    assert_eq!((diverged, dropped), (4, 4));
}

/// A recorded input carrying JSON nested deeper than `serde_json`'s 128-level parsing limit
/// decodes (traces carry JSON as text: it used to encode and then fail to decode).
#[test]
fn a_deeply_nested_value_survives_a_trace_round_trip() {
    let mut data = json!("leaf");
    for _ in 0..500 {
        data = Value::from(vec![data]);
    }
    let input = Input::MessageReceived {
        now: Now { mono: 1.0, wall: 1 },
        subscription: SubscriptionId(3),
        data,
    };
    let config = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(&input, config).unwrap();
    let (back, used): (Input, usize) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(back, input);
}

/// The `Cancel` a start parked for `DataStoreState` is asked when the state becomes known
/// travels with that input: replayed without the host, the start returns nil the same way, and
/// an answer left out is a divergence.
#[test]
fn the_cancel_asked_when_the_state_becomes_known_is_recorded_and_replayed() {
    let waiting = EngineConfig {
        datastore_state: DataStoreState::NotReady,
        ..config()
    };
    let now = Now { mono: 0.0, wall: 0 };
    let record = |engine: &mut Engine, host: &mut Host| -> (Vec<Input>, Vec<Output>) {
        let mut inputs = Vec::new();
        let store = engine.new_store("S", json!({})).unwrap();
        inputs.push(Input::NewStore {
            name: "S".into(),
            template: json!({}),
        });
        let start = Input::StartSession {
            now,
            store: store.live(),
            key: "k".into(),
            params: StartParams {
                cancellable: true,
                ..StartParams::default()
            },
        };
        let InputResult::Call(Ok(call)) = engine.handle_input(start.clone(), host) else {
            panic!("the start is parked")
        };
        inputs.push(start);
        host.cancelled.insert(call);
        let known = Input::DataStoreState {
            now,
            state: DataStoreState::Access,
            live: LiveAnswers::default(),
        };
        let mut rec = Recorder::new(host);
        engine.handle_input(known.clone(), &mut rec);
        inputs.push(known.with_live(rec.answers));
        (
            inputs,
            std::iter::from_fn(|| engine.poll_output()).collect(),
        )
    };
    let (inputs, outputs) = record(&mut Engine::new(waiting.clone()), &mut Host::default());
    let Some(Input::DataStoreState { live, .. }) = inputs.last() else {
        panic!()
    };
    assert_eq!(live.0, [profilestore_core::input::LiveAnswer::Cancel(true)]);
    assert!(
        outputs.contains(&Output::Completion(Completion::SessionStart {
            call: CallId(1),
            profile: None
        }))
    );
    let replay = |inputs: &[Input]| {
        let mut engine = Engine::new(waiting.clone());
        let diverged: usize = inputs
            .iter()
            .map(|i| engine.replay_input(i.clone()).1)
            .sum();
        let outputs: Vec<Output> = std::iter::from_fn(|| engine.poll_output()).collect();
        (diverged, outputs)
    };
    assert_eq!(replay(&inputs), (0, outputs));
    let mut without = inputs.clone();
    let last = without.pop().unwrap();
    without.push(last.with_live(LiveAnswers::default()));
    assert_eq!(replay(&without).0, 1);
}
