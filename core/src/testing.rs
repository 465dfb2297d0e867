//! A small world to drive engines in tests, examples and benchmarks (quinn-proto's `Pair`
//! driver, for ProfileStore): several engines on one virtual clock sharing one simple DataStore
//! and one MessagingService, with the fixed latency model of `shared/fixtures/README.md` (a
//! DataStore round trip of 0.15 s, `UpdateAsync` taking two, messages arriving 0.2 s after
//! publish, a 60 Hz Heartbeat) and seeded faults.
//!
//! The faithful simulator — Roblox's limits and error codes, versions per UTC hour, storage
//! backends, fleets of players — is `profilestore-harness`; this one is deliberately small so
//! the core can be tested on its own. It re-runs an update's transform when another server
//! committed between its read and its write, as Roblox does (spec §4).

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;
use std::sync::Arc;

use crate::protocol::Seconds as At;
use crate::value::{Str, Value, json};

use crate::engine::{Engine, EngineConfig, LiveState, StoreRef};
use crate::guid::GuidGenerator;
use crate::input::{Input, InputResult, LiveAnswers};
use crate::protocol::*;
use crate::session::StartParams;
use crate::wire::ServerIdentity;

/// The latency model (`shared/fixtures/README.md`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    /// One DataStore round trip, seconds (`UpdateAsync` takes two).
    pub round_trip: f64,
    /// Delay from `PublishAsync` to delivery, seconds.
    pub message_delay: f64,
    /// Heartbeat frames per second.
    pub fps: f64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            round_trip: 0.15,
            message_delay: 0.2,
            fps: 60.0,
        }
    }
}

/// The error a failed DataStore call reports in this world.
pub const FAULT_MESSAGE: &str =
    "502: API Services rejected request with error. HTTP 500 (Internal Server Error)";

/// One version of a stored key.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredVersion {
    /// Version string.
    pub version: String,
    /// The value, `None` for a removal.
    pub value: Option<Value>,
    /// When it was written, epoch ms.
    pub written: i64,
    /// The key info this write gave the key (`GetVersionAsync` answers with it).
    pub key_info: KeyInfo,
}

/// A key of the simple DataStore.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredKey {
    /// Current value (`None` after a removal).
    pub value: Option<Value>,
    /// Current key info.
    pub key_info: KeyInfo,
    /// Every write, oldest first.
    pub versions: Vec<StoredVersion>,
}

/// The host side of one server: it owns `Profile.Data` and `Profile.RobloxMetaData`.
#[derive(Clone, Debug, Default)]
pub struct Host {
    /// `Profile.Data` per profile (looked up, never iterated).
    pub data: FxHashMap<ProfileId, Value>,
    /// `Profile.RobloxMetaData` per profile (looked up, never iterated).
    pub roblox_metadata: FxHashMap<ProfileId, Value>,
    /// Start calls whose `Cancel` returns true.
    pub cancelled: BTreeSet<CallId>,
}

impl LiveState for Host {
    fn data(&mut self, profile: ProfileId) -> Value {
        self.data
            .get(&profile)
            .cloned()
            .unwrap_or_else(|| json!({}))
    }
    fn roblox_metadata(&mut self, profile: ProfileId) -> Value {
        self.roblox_metadata
            .get(&profile)
            .cloned()
            .unwrap_or_else(|| json!({}))
    }
    fn cancel_requested(&mut self, call: CallId) -> bool {
        self.cancelled.contains(&call)
    }
}

/// One simulated game server.
pub struct Server {
    /// Its engine.
    pub engine: Engine,
    /// Its host state.
    pub host: Host,
    /// False after a crash: it answers nothing and its requests are lost.
    pub alive: bool,
    /// Seconds its wall clock runs ahead of the world's.
    pub wall_skew: i64,
    /// Call `processed()` on every message as soon as it is delivered.
    pub auto_process_messages: bool,
}

/// What happened, for assertions.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// Something an engine output (signal, completion or MessagingService request).
    Output(Output),
    /// A DataStore write committed.
    Write {
        /// Key.
        key: String,
        /// The whole stored value.
        value: Value,
    },
    /// A key was removed.
    Removed {
        /// Key.
        key: String,
    },
    /// A published message was lost.
    Lost {
        /// Topic.
        topic: String,
    },
}

/// A journal line: when, which server, what.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Virtual seconds.
    pub t: f64,
    /// Server index.
    pub server: usize,
    /// What happened.
    pub record: Record,
}

enum Pending {
    Read {
        server: usize,
        request: DataStoreRequest,
    },
    Commit {
        server: usize,
        request: DataStoreRequest,
        read_version: usize,
        staged: Transformed,
    },
    Message {
        topic: String,
        data: Value,
    },
}

/// Engines, a DataStore, a MessagingService and a clock.
pub struct World {
    /// Virtual seconds since the start.
    pub now: f64,
    /// Unix time at `now == 0`.
    pub epoch: i64,
    /// Latency model.
    pub latency: Latency,
    /// The servers.
    pub servers: Vec<Server>,
    /// The DataStore: `(store, key)` → key.
    pub store: BTreeMap<(String, String), StoredKey>,
    /// Everything that happened.
    pub journal: Vec<Entry>,
    /// Probability that a DataStore call fails (after its round trips, without writing).
    pub datastore_fail: f64,
    /// Probability that a publish is lost.
    pub messaging_fail: f64,
    rng: GuidGenerator,
    pending: BTreeMap<(At, u64), Pending>,
    seq: u64,
    topics: BTreeMap<String, Vec<(usize, SubscriptionId)>>,
    frame: u64,
}

impl World {
    /// `servers` servers with PlaceId 1001 and seeded JobIds, DataStore access, the clock at 0.
    pub fn new(servers: usize, seed: u64) -> World {
        let mut rng = GuidGenerator::new(seed);
        let servers = (0..servers)
            .map(|_| {
                let job_id = rng.next_guid().to_lowercase();
                let config = EngineConfig {
                    identity: ServerIdentity {
                        place_id: 1001,
                        job_id,
                    },
                    seed: rng.next_u64(),
                    datastore_state: DataStoreState::Access,
                };
                Server {
                    engine: Engine::new(config),
                    host: Host::default(),
                    alive: true,
                    wall_skew: 0,
                    auto_process_messages: true,
                }
            })
            .collect();
        World {
            now: 0.0,
            epoch: 1_735_689_600,
            latency: Latency::default(),
            servers,
            store: BTreeMap::new(),
            journal: Vec::new(),
            datastore_fail: 0.0,
            messaging_fail: 0.0,
            rng,
            pending: BTreeMap::new(),
            seq: 0,
            topics: BTreeMap::new(),
            frame: 0,
        }
    }

    /// The clocks server `s` reads now.
    pub fn now_for(&self, s: usize) -> Now {
        Now {
            mono: self.now,
            wall: self.epoch + self.now.floor() as i64 + self.servers[s].wall_skew,
        }
    }

    /// `ProfileStore.New(name, template)` on every server (same id everywhere).
    pub fn new_store(&mut self, name: &str, template: Value) -> StoreId {
        let ids: Vec<StoreId> = self
            .servers
            .iter_mut()
            .map(|s| {
                s.engine
                    .new_store(name, template.clone())
                    .expect("valid store")
            })
            .collect();
        ids[0]
    }

    /// Calls `f` on server `s`'s engine at the current time, then executes its outputs.
    pub fn with<R>(&mut self, s: usize, f: impl FnOnce(&mut Engine, Now) -> R) -> R {
        let now = self.now_for(s);
        let r = f(&mut self.servers[s].engine, now);
        self.drain(s);
        r
    }

    /// `StartSessionAsync` on server `s`.
    pub fn start_session(
        &mut self,
        s: usize,
        store: StoreRef,
        key: &str,
        params: StartParams,
    ) -> CallId {
        self.with(s, |e, now| e.start_session(now, store, key, params))
            .expect("valid call")
    }

    /// `StartSessionAsync(key, {Cancel = ...})` on server `s`: the test reports the player
    /// leaving with [`Engine::cancel_session_start`] (or through [`Host::cancelled`]).
    pub fn start_cancellable(&mut self, s: usize, store: StoreRef, key: &str) -> CallId {
        let params = StartParams {
            steal: false,
            cancellable: true,
        };
        self.start_session(s, store, key, params)
    }

    /// `StartSessionAsync(key)` on server `s`, then one virtual second: the profile, if the
    /// session started by then.
    pub fn start_and_wait(&mut self, s: usize, store: StoreId, key: &str) -> Option<ProfileId> {
        let call = self.start_session(s, store.live(), key, StartParams::default());
        self.run_for(1.0);
        self.started_profile(s, call)
    }

    /// `GetAsync(key)` on server `s`, then one virtual second: the view profile, or `None` for
    /// an empty key. Panics when the call has not returned a profile or nil by then (this is a
    /// test helper).
    pub fn view(&mut self, s: usize, store: StoreId, key: &str) -> Option<LoadedProfile> {
        let call = self
            .with(s, |e, now| e.get(now, store.live(), key, None))
            .expect("valid key");
        self.run_for(1.0);
        match self.completion(s, call) {
            Some((_, Completion::Get { result: Ok(p), .. })) => p,
            other => panic!("GetAsync did not return: {other:?}"),
        }
    }

    /// The profile a start call on server `s` returned, once it has returned one.
    pub fn started_profile(&self, s: usize, call: CallId) -> Option<ProfileId> {
        self.journal
            .iter()
            .filter(|e| e.server == s)
            .find_map(|e| match &e.record {
                Record::Output(Output::Completion(Completion::SessionStart {
                    call: c,
                    profile: Some(p),
                })) if *c == call => Some(p.profile),
                _ => None,
            })
    }

    /// When and how a call on server `s` completed.
    pub fn completion(&self, s: usize, call: CallId) -> Option<(f64, Completion)> {
        self.journal
            .iter()
            .filter(|e| e.server == s)
            .find_map(|e| match &e.record {
                Record::Output(Output::Completion(c)) if completion_call(c) == Some(call) => {
                    Some((e.t, c.clone()))
                }
                _ => None,
            })
    }

    /// `Profile.Data` on server `s`.
    pub fn data_mut(&mut self, s: usize, profile: ProfileId) -> &mut Value {
        self.servers[s]
            .host
            .data
            .entry(profile)
            .or_insert_with(|| json!({}))
    }

    /// The current stored value of `store/key`.
    pub fn stored(&self, store: &str, key: &str) -> Option<&Value> {
        self.store
            .get(&(store.to_string(), key.to_string()))?
            .value
            .as_ref()
    }

    /// Writes a raw value (a plain `SetAsync` from outside ProfileStore).
    pub fn raw_set(&mut self, store: &str, key: &str, value: Value) {
        let wall = self.epoch + self.now.floor() as i64;
        self.put(store, key, Some(value), None, None, wall);
    }

    /// Server `s` dies at once: no final save, its requests are lost.
    pub fn crash(&mut self, s: usize) {
        self.servers[s].alive = false;
    }

    /// Runs the world for `seconds` of virtual time.
    pub fn run_for(&mut self, seconds: f64) {
        self.run_until(self.now + seconds);
    }

    /// Runs the world until virtual time `end`.
    pub fn run_until(&mut self, end: f64) {
        loop {
            let frame_at = self.frame as f64 / self.latency.fps;
            let event_at = self.pending.keys().next().map(|(a, _)| a.0);
            let next = event_at.map_or(frame_at, |e| e.min(frame_at));
            if next > end {
                self.now = end;
                return;
            }
            self.now = next;
            if event_at.is_some_and(|e| e <= frame_at) {
                let key = *self.pending.keys().next().expect("checked");
                let pending = self.pending.remove(&key).expect("checked");
                self.process(pending);
            } else {
                self.frame += 1;
                for s in 0..self.servers.len() {
                    if self.servers[s].alive {
                        let now = self.now_for(s);
                        let server = &mut self.servers[s];
                        server.engine.handle_timeout(now, &mut server.host);
                        self.drain(s);
                    }
                }
            }
        }
    }

    /// Journal entries of server `s` that are signals, as `(t, event)`.
    pub fn events(&self, s: usize) -> Vec<(f64, Event)> {
        self.journal
            .iter()
            .filter(|e| e.server == s)
            .filter_map(|e| match &e.record {
                Record::Output(Output::Event(ev)) => Some((e.t, ev.clone())),
                _ => None,
            })
            .collect()
    }

    /// The warnings server `s` gave that contain `part`, in order.
    pub fn warnings(&self, s: usize, part: &str) -> Vec<String> {
        self.events(s)
            .into_iter()
            .filter_map(|(_, e)| match e {
                Event::Warn { message } if message.contains(part) => Some(message),
                _ => None,
            })
            .collect()
    }

    /// Committed writes of `key`, as `(t, server, value)`.
    pub fn writes(&self, key: &str) -> Vec<(f64, usize, Value)> {
        self.journal
            .iter()
            .filter_map(|e| match &e.record {
                Record::Write { key: k, value } if k == key => Some((e.t, e.server, value.clone())),
                _ => None,
            })
            .collect()
    }

    fn schedule(&mut self, at: f64, pending: Pending) {
        self.seq += 1;
        self.pending.insert((At(at), self.seq), pending);
    }

    fn log(&mut self, server: usize, record: Record) {
        self.journal.push(Entry {
            t: self.now,
            server,
            record,
        });
    }

    /// Executes everything server `s` asked for.
    pub fn drain(&mut self, s: usize) {
        while let Some(output) = self.servers[s].engine.poll_output() {
            match &output {
                Output::DataStore(request) => {
                    let at = self.now + self.latency.round_trip;
                    self.schedule(
                        at,
                        Pending::Read {
                            server: s,
                            request: request.clone(),
                        },
                    );
                }
                Output::Messaging(MessagingRequest::Subscribe {
                    subscription,
                    topic,
                }) => {
                    self.topics
                        .entry(topic.clone())
                        .or_default()
                        .push((s, *subscription));
                    let now = self.now_for(s);
                    self.servers[s]
                        .engine
                        .handle_subscribe_result(now, *subscription, Ok(()));
                }
                Output::Messaging(MessagingRequest::Unsubscribe { subscription }) => {
                    for subs in self.topics.values_mut() {
                        subs.retain(|(srv, sub)| !(*srv == s && sub == subscription));
                    }
                }
                Output::Messaging(MessagingRequest::Publish { topic, data }) => {
                    if self.rng.next_f64() < self.messaging_fail {
                        self.log(
                            s,
                            Record::Lost {
                                topic: topic.clone(),
                            },
                        );
                    } else {
                        let at = self.now + self.latency.message_delay;
                        self.schedule(
                            at,
                            Pending::Message {
                                topic: topic.clone(),
                                data: data.clone(),
                            },
                        );
                    }
                }
                Output::Event(Event::Message { profile, id, .. })
                    if self.servers[s].auto_process_messages =>
                {
                    self.servers[s]
                        .engine
                        .message_processed(*profile, *id)
                        .expect("a message delivered to the handler");
                }
                Output::Completion(
                    Completion::SessionStart {
                        profile: Some(loaded),
                        ..
                    }
                    | Completion::Get {
                        result: Ok(Some(loaded)),
                        ..
                    },
                ) => {
                    let host = &mut self.servers[s].host;
                    host.data.insert(loaded.profile, loaded.data.clone());
                    host.roblox_metadata
                        .insert(loaded.profile, loaded.roblox_metadata.clone());
                }
                _ => {}
            }
            self.log(s, Record::Output(output));
        }
    }

    fn process(&mut self, pending: Pending) {
        match pending {
            Pending::Read { server, request } => self.read(server, request),
            Pending::Commit {
                server,
                request,
                read_version,
                staged,
            } => self.commit(server, request, read_version, staged),
            Pending::Message { topic, data } => {
                for (s, subscription) in self.topics.get(&topic).cloned().unwrap_or_default() {
                    if self.servers[s].alive {
                        let now = self.now_for(s);
                        self.servers[s]
                            .engine
                            .handle_message_received(now, subscription, &data);
                        self.drain(s);
                    }
                }
            }
        }
    }

    fn version_of(&self, store: &str, key: &str) -> usize {
        self.store
            .get(&(store.to_string(), key.to_string()))
            .map_or(0, |k| k.versions.len())
    }

    fn read(&mut self, s: usize, request: DataStoreRequest) {
        if !self.servers[s].alive {
            return;
        }
        let slot = (request.store.to_string(), request.key.to_string());
        let current = self.store.get(&slot).cloned();
        let value_response = |k: Option<&StoredKey>| DataStoreResponse::Value {
            value: k.and_then(|k| k.value.clone()).map(Arc::new),
            key_info: k.filter(|k| k.value.is_some()).map(|k| k.key_info.clone()),
        };
        let result = match &request.kind {
            DataStoreRequestKind::Update => {
                let now = self.now_for(s);
                let server = &mut self.servers[s];
                let value = current.as_ref().and_then(|k| k.value.clone());
                let staged =
                    server
                        .engine
                        .transform(request.op, value.as_ref(), now.wall, &mut server.host);
                let read_version = self.version_of(&request.store, &request.key);
                let at = self.now + self.latency.round_trip;
                self.schedule(
                    at,
                    Pending::Commit {
                        server: s,
                        request,
                        read_version,
                        staged,
                    },
                );
                return;
            }
            _ if self.rng.next_f64() < self.datastore_fail => Err(DataStoreError {
                message: FAULT_MESSAGE.into(),
            }),
            DataStoreRequestKind::Get => Ok(value_response(current.as_ref())),
            DataStoreRequestKind::GetVersion { version } => {
                let found = current
                    .as_ref()
                    .and_then(|k| k.versions.iter().find(|v| &v.version == version));
                match found {
                    Some(v) => Ok(DataStoreResponse::Value {
                        value: v.value.clone().map(Arc::new),
                        key_info: Some(v.key_info.clone()),
                    }),
                    None => Err(DataStoreError {
                        message: "103: Version is not valid".into(),
                    }),
                }
            }
            DataStoreRequestKind::Remove => {
                let previous = value_response(current.as_ref());
                if current.as_ref().is_some_and(|k| k.value.is_some()) {
                    let wall = self.now_for(s).wall;
                    self.put(&request.store, &request.key, None, None, None, wall);
                    self.log(
                        s,
                        Record::Removed {
                            key: request.key.to_string(),
                        },
                    );
                }
                Ok(previous)
            }
            DataStoreRequestKind::ListVersions {
                direction,
                min_date,
                max_date,
                ..
            } => {
                let in_range = |t: i64| {
                    min_date.is_none_or(|min| t >= min) && max_date.is_none_or(|max| t <= max)
                };
                let mut items: Vec<VersionItem> = current
                    .map(|k| {
                        k.versions
                            .iter()
                            .filter(|v| in_range(v.written))
                            .map(|v| VersionItem {
                                version: v.version.clone(),
                                created_time: v.written,
                                is_deleted: v.value.is_none(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if *direction == SortDirection::Descending {
                    items.reverse();
                }
                Ok(DataStoreResponse::Page {
                    items,
                    is_finished: true,
                })
            }
            DataStoreRequestKind::NextVersionPage { .. } => Ok(DataStoreResponse::Page {
                items: vec![],
                is_finished: true,
            }),
        };
        self.respond(s, request.op, result);
    }

    fn commit(
        &mut self,
        s: usize,
        request: DataStoreRequest,
        read_version: usize,
        staged: Transformed,
    ) {
        if !self.servers[s].alive {
            return;
        }
        if self.rng.next_f64() < self.datastore_fail {
            self.respond(
                s,
                request.op,
                Err(DataStoreError {
                    message: FAULT_MESSAGE.into(),
                }),
            );
            return;
        }
        let now = self.now_for(s);
        let staged = if self.version_of(&request.store, &request.key) != read_version {
            // Another server wrote in between: Roblox calls the transform again.
            let current = self.stored(&request.store, &request.key).cloned();
            let server = &mut self.servers[s];
            server
                .engine
                .transform(request.op, current.as_ref(), now.wall, &mut server.host)
        } else {
            staged
        };
        let mut written = None;
        let result = staged.commit_with(|value, user_ids, metadata| {
            written = Some(value.clone());
            self.put(
                &request.store,
                &request.key,
                Some(value.clone()),
                user_ids,
                metadata,
                now.wall,
            )
        });
        if let Some(value) = written {
            self.log(
                s,
                Record::Write {
                    key: request.key.to_string(),
                    value,
                },
            );
        }
        self.respond(s, request.op, result);
    }

    fn respond(&mut self, s: usize, op: OpId, result: Result<DataStoreResponse, DataStoreError>) {
        let now = self.now_for(s);
        let server = &mut self.servers[s];
        let input = Input::DataStoreResponse {
            now,
            op,
            result,
            live: LiveAnswers::default(),
        };
        // Through `handle_input`, as a host feeds it: a start asks its `Cancel` here.
        let answered = server.engine.handle_input(input, &mut server.host);
        debug_assert_eq!(
            answered,
            InputResult::None,
            "the world's answers are never refused"
        );
        self.drain(s);
    }

    fn put(
        &mut self,
        store: &str,
        key: &str,
        value: Option<Value>,
        user_ids: Option<Value>,
        metadata: Option<Value>,
        wall: i64,
    ) -> KeyInfo {
        let ms = wall * 1000;
        let entry = self
            .store
            .entry((store.to_string(), key.to_string()))
            .or_insert_with(|| StoredKey {
                value: None,
                key_info: KeyInfo {
                    created_time: ms,
                    updated_time: ms,
                    version: Str::from(""),
                    user_ids: vec![],
                    metadata: json!({}),
                },
                versions: vec![],
            });
        let version = format!("v{}", entry.versions.len() + 1);
        entry.key_info = KeyInfo {
            created_time: entry.key_info.created_time,
            updated_time: ms,
            version: version.as_str().into(),
            user_ids: user_ids
                .as_ref()
                .map(crate::mock::user_id_list)
                .unwrap_or_default(),
            metadata: metadata.unwrap_or_else(|| json!({})),
        };
        entry.versions.push(StoredVersion {
            version,
            value: value.clone(),
            written: ms,
            key_info: entry.key_info.clone(),
        });
        entry.value = value;
        entry.key_info.clone()
    }
}

/// The call id a completion answers, if any.
pub fn completion_call(c: &Completion) -> Option<CallId> {
    match c {
        Completion::SessionStart { call, .. }
        | Completion::Message { call, .. }
        | Completion::Get { call, .. }
        | Completion::Remove { call, .. }
        | Completion::SetAsync { call, .. } => Some(*call),
        Completion::Shutdown => None,
    }
}

/// One engine with DataStore access (PlaceId 1), for tests, benchmarks and examples.
pub fn engine(job_id: &str, seed: u64) -> Engine {
    Engine::new(EngineConfig {
        identity: ServerIdentity {
            place_id: 1,
            job_id: job_id.to_string(),
        },
        seed,
        datastore_state: DataStoreState::Access,
    })
}

/// A DataStore that answers every request at once, in memory: for benchmarks and examples that
/// measure the engine rather than a latency model.
#[derive(Default)]
pub struct InstantStore {
    /// `(store, key)` → value and key info.
    pub values: BTreeMap<(String, String), (Value, KeyInfo)>,
    writes: u64,
}

impl InstantStore {
    /// Drains `engine`, answering DataStore requests immediately (updates run their transform
    /// once), until only non-DataStore outputs remain; returns those.
    pub fn pump(&mut self, engine: &mut Engine, live: &mut dyn LiveState, now: Now) -> Vec<Output> {
        let mut others = Vec::new();
        while let Some(output) = engine.poll_output() {
            let Output::DataStore(request) = output else {
                others.push(output);
                continue;
            };
            let slot = (request.store.to_string(), request.key.to_string());
            let result = match request.kind {
                DataStoreRequestKind::Update => {
                    let current = self.values.get(&slot).map(|(v, _)| v);
                    let transformed = engine.transform(request.op, current, now.wall, live);
                    let writes = &mut self.writes;
                    let values = &mut self.values;
                    transformed.commit_with(|value, user_ids, metadata| {
                        *writes += 1;
                        let info = KeyInfo {
                            created_time: now.wall * 1000,
                            updated_time: now.wall * 1000,
                            version: writes.to_string().into(),
                            user_ids: user_ids
                                .as_ref()
                                .map(crate::mock::user_id_list)
                                .unwrap_or_default(),
                            metadata: metadata.unwrap_or_else(|| json!({})),
                        };
                        values.insert(slot, (value.clone(), info.clone()));
                        info
                    })
                }
                DataStoreRequestKind::Get => {
                    let found = self.values.get(&slot).cloned();
                    Ok(DataStoreResponse::Value {
                        value: found.as_ref().map(|f| Arc::new(f.0.clone())),
                        key_info: found.map(|f| f.1),
                    })
                }
                DataStoreRequestKind::Remove => {
                    let removed = self.values.remove(&slot);
                    Ok(DataStoreResponse::Value {
                        value: removed.as_ref().map(|f| Arc::new(f.0.clone())),
                        key_info: removed.map(|f| f.1),
                    })
                }
                _ => Err(DataStoreError {
                    message: "not supported by InstantStore".into(),
                }),
            };
            engine
                .handle_datastore_response(now, request.op, result, live)
                .expect("an answer to a request the engine sent");
        }
        others
    }
}
