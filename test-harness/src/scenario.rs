//! Scenario files (`shared/fixtures/README.md`, "Scenario format"): servers, timed actions, fault
//! windows and a fixed latency model, played on the [`World`] to produce the behaviour journal
//! of [`crate::journal`] — the same format the original module's traces are in.
//!
//! Every profile a scenario starts gets listeners on its four signals and a message handler that
//! calls `processed()` at once; module-wide `OnError`, `OnOverwrite` and `OnCriticalToggle` are
//! listened to as well (README).
//!
//! Where the format leaves things open:
//! - `save` and `end_session` act on the last profile the server's start for the key returned
//!   (an ended one too: `Save()` then warns, `EndSession` does nothing, as on a script holding
//!   the profile); with none, they are journaled as calls and do nothing (a script's `nil`
//!   profile);
//! - a fault window applies to the DataStore requests that reach the DataStore while it is
//!   open (a call made just before it opens and landing inside fails);
//! - `GetAsync` is not cached: every call takes its round trip, as the latency model says (the
//!   simulated DataStore's 4 s cache is off for scenarios).
//!
//! One addition to the format: a `faults` action's `datastore_ambiguous`, the probability that
//! a DataStore call does its work (a write commits, a read reads) although its caller is told
//! it failed (the DataStore's own ambiguous fault; `datastore_fail`'s failures do nothing).

use std::collections::BTreeMap;

use profilestore_core::profile::MAX_DATA_DEPTH;
use profilestore_core::value::{Value, json};
use profilestore_core::{
    CallId, Completion, Delivery, Event, Input, InputResult, Output, ProfileId, StartParams,
    StoreId,
};
use serde::Deserialize;

use crate::config::{ConfigError, positive, seconds};
use crate::datastore::{DataStoreService, Limits};
use crate::fleet::MAX_DURATION;
use crate::input_file::{MAX_STREAMED, read_text};
use crate::journal::Line;
use crate::messaging::{MessagingConfig, MessagingLimits, MessagingService};
use crate::world::{Happening, LatencyModel, MAX_EPOCH, MAX_FPS, ServerSpec, World, WorldConfig};

/// A scenario file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Case name (the journal's `end` line carries it).
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// The ProfileStore store name.
    pub store: String,
    /// The store's template.
    pub template: Value,
    /// The fixed latency model.
    pub latency: ScenarioLatency,
    /// Unix time at t = 0.
    pub epoch: i64,
    /// The servers.
    pub servers: Vec<ScenarioServer>,
    /// When the run stops.
    pub horizon: f64,
    /// Timed actions.
    pub actions: Vec<Action>,
}

/// The scenario's latency model.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioLatency {
    /// One DataStore round trip (`UpdateAsync` takes two).
    pub datastore_round_trip: f64,
    /// Publish to delivery.
    pub message_delay: f64,
    /// How long `PublishAsync` yields its caller. Checked, but nothing waits on it: ProfileStore
    /// calls `PublishAsync` only from spawned threads (spec §5.3, §10.1), whose yield
    /// delays nothing the journal records.
    #[serde(default)]
    pub publish_yield: f64,
    /// Heartbeat frames per second.
    pub fps: f64,
}

/// A server of the scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioServer {
    /// Name ("A").
    pub name: String,
    /// PlaceId.
    pub place_id: i64,
}

/// A timed action.
#[derive(Clone, Debug, Deserialize)]
pub struct Action {
    /// Virtual seconds.
    pub t: f64,
    /// The server that performs it (absent for world-wide actions).
    #[serde(default)]
    pub server: Option<String>,
    /// What to do.
    #[serde(flatten)]
    pub what: ActionKind,
}

/// The actions of the format.
#[allow(missing_docs)]
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case")]
pub enum ActionKind {
    StartSession {
        key: String,
        #[serde(default)]
        steal: bool,
    },
    SetData {
        key: String,
        path: String,
        value: Value,
    },
    Save {
        key: String,
    },
    EndSession {
        key: String,
    },
    Message {
        key: String,
        message: Value,
    },
    Get {
        key: String,
    },
    Remove {
        key: String,
    },
    SetConstant {
        name: String,
        value: f64,
    },
    RawSet {
        key: String,
        value: Value,
    },
    Close,
    Crash,
    Faults {
        datastore_fail: Option<f64>,
        /// Ours, not the fixtures README's: the probability that a DataStore call does its
        /// work (a write commits) although its caller is told it failed.
        datastore_ambiguous: Option<f64>,
        messaging_fail: Option<f64>,
    },
}

/// A scenario that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A latency figure the virtual clock cannot run on ([`ScenarioLatency::check`]).
    #[error("invalid scenario: {0}")]
    Config(#[from] ConfigError),
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("invalid scenario {path}: {source}")]
    Parse {
        /// Path.
        path: String,
        /// Cause.
        source: serde_json::Error,
    },
    /// A field is missing or of the wrong type, named by its place in the document
    /// (`actions[3].key`).
    #[error("invalid scenario {path}: at {at}: {problem}")]
    Layout {
        /// Path of the file.
        path: String,
        /// The field's place.
        at: String,
        /// What is wrong.
        problem: String,
    },
    /// An action names a server the scenario does not have.
    #[error("actions[{index}] at t={t} names unknown server {server:?}")]
    UnknownServer {
        /// The action's place in the file's `actions`.
        index: usize,
        /// Time of the action.
        t: f64,
        /// The name.
        server: String,
    },
    /// The scenario contradicts the format: an action after the horizon, an unknown field, two
    /// servers of one name, a probability outside 0–1...
    #[error("invalid scenario: {0}")]
    Invalid(String),
    /// An action was refused by the engine (for example an invalid key or constant).
    #[error("actions[{index}] at t={t} was refused: {message}")]
    Refused {
        /// The action's place in the file's `actions`.
        index: usize,
        /// Time of the action.
        t: f64,
        /// The engine's error.
        message: String,
    },
}

/// Reads a scenario file.
pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
    let text = read_text(path, MAX_STREAMED).map_err(|source| ScenarioError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let parse = |source| ScenarioError::Parse {
        path: path.display().to_string(),
        source,
    };
    let raw: serde_json::Value = serde_json::from_str(&text).map_err(parse)?;
    // Parsed, a repeated key keeps its last value (`"steal": true, "steal": false` would run a
    // plain start): refused, naming it.
    if let Some((at, key)) = crate::repeated_key::repeated_key(&text).map_err(parse)? {
        return Err(ScenarioError::Layout {
            path: path.display().to_string(),
            at,
            problem: format!("key {key:?} appears twice in one object"),
        });
    }
    let mut scenario: Scenario =
        serde_path_to_error::deserialize(raw.clone()).map_err(|e| ScenarioError::Layout {
            path: path.display().to_string(),
            at: e.path().to_string(),
            problem: e.inner().to_string(),
        })?;
    // `-0` is the start of the run, and sorts with 0 (ordered by `total_cmp`, it would come
    // before the actions at 0 listed ahead of it, and be written `-0.0` in the journal).
    for action in &mut scenario.actions {
        if action.t == 0.0 {
            action.t = 0.0;
        }
    }
    // An action's fields are read through a tagged enum, which cannot refuse unknown fields
    // itself: a misspelt `"Steal"` would run a plain start.
    for (index, action) in raw["actions"].as_array().into_iter().flatten().enumerate() {
        if let Some(message) = unknown_action_field(index, action) {
            return Err(ScenarioError::Invalid(message));
        }
    }
    Ok(scenario)
}

/// The first field of `action` (the `index`th) its `do` does not take, as a message.
fn unknown_action_field(index: usize, action: &serde_json::Value) -> Option<String> {
    let object = action.as_object()?;
    let what = object
        .get("do")
        .and_then(|d| d.as_str())
        .unwrap_or_default();
    let fields: &[&str] = match what {
        "start_session" => &["key", "steal"],
        "set_data" => &["key", "path", "value"],
        "save" | "end_session" | "get" | "remove" => &["key"],
        "message" => &["key", "message"],
        "set_constant" => &["name", "value"],
        "raw_set" => &["key", "value"],
        "close" | "crash" => &[],
        "faults" => &["datastore_fail", "datastore_ambiguous", "messaging_fail"],
        _ => return None,
    };
    // Faults are the world's: a `faults` action names no server.
    let common: &[&str] = if what == "faults" {
        &["t", "do"]
    } else {
        &["t", "server", "do"]
    };
    let t = object.get("t").map(|t| t.to_string()).unwrap_or_default();
    object
        .keys()
        .find(|k| !common.contains(&k.as_str()) && !fields.contains(&k.as_str()))
        .map(|k| format!("actions[{index}] ({what:?} at t={t}) has no field {k:?}"))
}

impl Scenario {
    /// Refuses what the format does not allow: a latency model the clock cannot run on (see
    /// [`ScenarioLatency::check`]), a horizon that is negative, not finite or over a year, an
    /// action time that is negative, not finite or after the horizon, an epoch outside years
    /// 1970–9999, two servers of one name, an action of a server (all but `faults`) naming no
    /// server or one the scenario does not have, a fault probability outside 0–1, a `set_data`
    /// path of more parts than a stored `Data` nests, a `raw_set` no DataStore stores.
    pub fn check(&self) -> Result<(), ScenarioError> {
        self.latency.check()?;
        let invalid = |message: String| Err(ScenarioError::Invalid(message));
        if !(0.0..=MAX_DURATION).contains(&self.horizon) {
            return invalid(format!(
                "horizon is {}, expected a number of seconds from 0 to {MAX_DURATION} (a year)",
                self.horizon
            ));
        }
        if !(0..=MAX_EPOCH).contains(&self.epoch) {
            return invalid(format!(
                "epoch is {}, expected a Unix time from 0 to {MAX_EPOCH}",
                self.epoch
            ));
        }
        for (i, server) in self.servers.iter().enumerate() {
            if self.servers[..i].iter().any(|s| s.name == server.name) {
                return invalid(format!("two servers are named {:?}", server.name));
            }
        }
        for (index, action) in self.actions.iter().enumerate() {
            let t = action.t;
            if !(t.is_finite() && (0.0..=self.horizon).contains(&t)) {
                return invalid(format!(
                    "actions[{index}] at t={t} is outside the run (0 to the horizon, {})",
                    self.horizon
                ));
            }
            if !matches!(action.what, ActionKind::Faults { .. }) {
                match &action.server {
                    None => return invalid(format!("actions[{index}] at t={t} names no server")),
                    Some(name) if !self.servers.iter().any(|s| s.name == *name) => {
                        return Err(ScenarioError::UnknownServer {
                            index,
                            t,
                            server: name.clone(),
                        });
                    }
                    Some(_) => {}
                }
            }
            if let ActionKind::Faults {
                datastore_fail,
                datastore_ambiguous,
                messaging_fail,
            } = &action.what
            {
                for (field, p) in [
                    ("datastore_fail", datastore_fail),
                    ("datastore_ambiguous", datastore_ambiguous),
                    ("messaging_fail", messaging_fail),
                ] {
                    if let Some(p) = p
                        && !(0.0..=1.0).contains(p)
                    {
                        return invalid(format!(
                            "actions[{index}] (faults at t={t}): {field} is {p}, expected a \
                             probability from 0 to 1"
                        ));
                    }
                }
            }
            // A path deeper than any stored `Data`: the tables it makes could never be saved,
            // and a value nested that deep would overflow the stack when dropped.
            if let ActionKind::SetData { path, .. } = &action.what {
                let parts = path.split('.').count();
                if parts > MAX_DATA_DEPTH {
                    return invalid(format!(
                        "actions[{index}] (set_data at t={t}): the path has {parts} parts, \
                         expected at most {MAX_DATA_DEPTH} (the deepest Data a store takes)"
                    ));
                }
            }
            // A plain write the scenario's DataStore (its limits off) could never store: it
            // would fail without a trace in the journal.
            if let ActionKind::RawSet { key, value } = &action.what {
                let limits = Limits::unlimited();
                let refused = limits
                    .check_name(crate::datastore::NameKind::Key, key)
                    .and_then(|()| limits.check_value(value).map(drop));
                if let Err(e) = refused {
                    return invalid(format!(
                        "actions[{index}] (raw_set at t={t}) cannot be stored: {e}"
                    ));
                }
            }
        }
        Ok(())
    }
}

struct Runner {
    world: World,
    store: StoreId,
    names: Vec<String>,
    journal: Vec<Line>,
    /// Per server, the profile each key is currently held by.
    profiles: Vec<BTreeMap<String, ProfileId>>,
    /// Per server, every profile a start returned to the script, with its key (kept after
    /// its session ends: its last signals come after).
    received: Vec<BTreeMap<ProfileId, String>>,
    /// Per server, calls waiting for their return: call name and key.
    calls: Vec<BTreeMap<CallId, (&'static str, String)>>,
    seen: usize,
}

impl ScenarioLatency {
    /// Refuses figures the virtual clock cannot run on: a Heartbeat of zero or fewer frames
    /// per second never ticks (at most [`MAX_FPS`]), a negative or non-finite delay never
    /// arrives (at most a day, [`crate::config::MAX_SECONDS`]).
    pub fn check(&self) -> Result<(), ScenarioError> {
        positive("latency.fps", self.fps, MAX_FPS)?;
        seconds("latency.datastore_round_trip", self.datastore_round_trip)?;
        seconds("latency.message_delay", self.message_delay)?;
        seconds("latency.publish_yield", self.publish_yield)?;
        Ok(())
    }
}

/// Plays a scenario and returns its journal.
pub fn run(scenario: &Scenario) -> Result<Vec<Line>, ScenarioError> {
    scenario.check()?;
    let servers: Vec<ServerSpec> = scenario
        .servers
        .iter()
        .map(|s| ServerSpec {
            name: s.name.clone(),
            place_id: s.place_id,
            wall_skew: 0,
        })
        .collect();
    let config = WorldConfig {
        seed: 1,
        epoch: scenario.epoch,
        fps: scenario.latency.fps,
        latency: LatencyModel::Fixed(scenario.latency.datastore_round_trip),
        servers,
    };
    // Every call takes its round trip (the latency model): no `GetAsync` cache.
    let limits = Limits {
        cache_seconds: None,
        ..Limits::unlimited()
    };
    let datastore = DataStoreService::new(scenario.epoch).with_limits(limits)?;
    // The format has no players, and Roblox's MessagingService rate limits scale with them
    // (20 + 8 × players subscriptions a server): off, as the DataStore's are. The payload and
    // topic sizes stay.
    let messaging = MessagingService::new(MessagingConfig {
        limits: MessagingLimits::off(),
        ..MessagingConfig::roblox(1).with_delay(scenario.latency.message_delay)
    })?;
    let mut world = World::new(config, datastore, messaging)?;
    let mut store = StoreId(0);
    for s in 0..world.servers.len() {
        let input = Input::NewStore {
            name: scenario.store.clone(),
            template: scenario.template.clone(),
        };
        let refused = match world.feed(s, input) {
            InputResult::Store(Ok(id)) => {
                store = id;
                continue;
            }
            InputResult::Store(Err(message)) => message,
            other => format!("unexpected answer {other:?}"),
        };
        return Err(ScenarioError::Invalid(format!(
            "store {:?} with its template cannot be opened: {refused}",
            scenario.store
        )));
    }
    let n = world.servers.len();
    let mut r = Runner {
        world,
        store,
        names: scenario.servers.iter().map(|s| s.name.clone()).collect(),
        journal: Vec::new(),
        profiles: vec![BTreeMap::new(); n],
        received: vec![BTreeMap::new(); n],
        calls: vec![BTreeMap::new(); n],
        seen: 0,
    };
    // In time order, and in file order at one time (a stable sort).
    let mut actions: Vec<(usize, &Action)> = scenario.actions.iter().enumerate().collect();
    actions.sort_by(|a, b| a.1.t.total_cmp(&b.1.t));
    for (index, action) in actions {
        r.run_until(action.t);
        r.perform(index, action, &scenario.store)?;
        r.react();
    }
    r.run_until(scenario.horizon);
    r.journal
        .push(json!({"type": "end", "case": scenario.name, "t": scenario.horizon}));
    Ok(r.journal)
}

impl Runner {
    fn run_until(&mut self, t: f64) {
        while self.world.step(t) {
            self.react();
        }
        self.react();
    }

    fn server_index(&self, index: usize, action: &Action) -> Result<usize, ScenarioError> {
        let name = action.server.clone().unwrap_or_default();
        self.names
            .iter()
            .position(|n| *n == name)
            .ok_or(ScenarioError::UnknownServer {
                index,
                t: action.t,
                server: name,
            })
    }

    fn line(&mut self, s: usize, body: Value) {
        self.line_at(self.world.now, s, body);
    }

    fn call(
        &mut self,
        s: usize,
        name: &'static str,
        key: &str,
        result: InputResult,
        (index, t): (usize, f64),
    ) -> Result<(), ScenarioError> {
        self.line(s, json!({"type": "call", "call": name, "key": key}));
        match result {
            InputResult::Call(Ok(call)) => {
                self.calls[s].insert(call, (name, key.to_string()));
                Ok(())
            }
            InputResult::Call(Err(message)) | InputResult::Done(Err(message)) => {
                Err(ScenarioError::Refused { index, t, message })
            }
            _ => Ok(()),
        }
    }

    /// Performs `action`, the `index`th of the file.
    fn perform(
        &mut self,
        index: usize,
        action: &Action,
        store_name: &str,
    ) -> Result<(), ScenarioError> {
        let t = action.t;
        let store = self.store.live();
        if let ActionKind::Faults {
            datastore_fail,
            datastore_ambiguous,
            messaging_fail,
        } = &action.what
        {
            if let Some(p) = datastore_fail {
                self.world.set_datastore_fail(*p)?;
            }
            if let Some(p) = datastore_ambiguous {
                // The DataStore's own faults, which no other scenario action sets.
                self.world.datastore.set_fault_rates(0.0, *p)?;
            }
            if let Some(p) = messaging_fail {
                self.world.set_messaging_fail(*p)?;
            }
            return Ok(());
        }
        let s = self.server_index(index, action)?;
        if !self.world.servers[s].alive {
            // A crashed (or closed) server does nothing more (fixtures README: `crash` dies at
            // once): an action of it is a mistake in the scenario.
            return Err(ScenarioError::Invalid(format!(
                "actions[{index}] at t={t} is of server {:?}, which is no longer running",
                self.names[s]
            )));
        }
        let now = self.world.now_for(s);
        match &action.what {
            ActionKind::StartSession { key, steal } => {
                let params = StartParams {
                    steal: *steal,
                    cancellable: false,
                };
                let input = Input::StartSession {
                    now,
                    store,
                    key: key.clone(),
                    params,
                };
                let result = self.world.feed(s, input);
                self.call(s, "StartSessionAsync", key, result, (index, t))?;
            }
            ActionKind::SetData { key, path, value } => {
                let Some(&p) = self.profiles[s].get(key) else {
                    let message = format!(
                        "set_data: server {} holds no profile of key {key:?}",
                        self.names[s]
                    );
                    return Err(ScenarioError::Refused { index, t, message });
                };
                let data = self.world.servers[s]
                    .host
                    .data
                    .entry(p)
                    .or_insert_with(|| json!({}));
                if let Err(problem) = set_path(data, path, value.clone()) {
                    let message = format!("set_data {key:?} {path:?}: {problem}");
                    return Err(ScenarioError::Refused { index, t, message });
                }
            }
            ActionKind::Save { key } => {
                self.line(s, json!({"type": "call", "call": "Save", "key": key}));
                if let Some(&profile) = self.profiles[s].get(key) {
                    self.world.feed(s, Input::Save { now, profile });
                }
            }
            ActionKind::EndSession { key } => {
                self.line(s, json!({"type": "call", "call": "EndSession", "key": key}));
                if let Some(&profile) = self.profiles[s].get(key) {
                    self.world.feed(s, Input::EndSession { now, profile });
                }
            }
            ActionKind::Message { key, message } => {
                let input = Input::Message {
                    now,
                    store,
                    key: key.clone(),
                    message: message.clone(),
                };
                let result = self.world.feed(s, input);
                self.call(s, "MessageAsync", key, result, (index, t))?;
            }
            ActionKind::Get { key } => {
                let result = self.world.feed(
                    s,
                    Input::Get {
                        now,
                        store,
                        key: key.clone(),
                        version: None,
                    },
                );
                self.call(s, "GetAsync", key, result, (index, t))?;
            }
            ActionKind::Remove { key } => {
                let result = self.world.feed(
                    s,
                    Input::Remove {
                        now,
                        store,
                        key: key.clone(),
                    },
                );
                self.call(s, "RemoveAsync", key, result, (index, t))?;
            }
            ActionKind::SetConstant { name, value } => {
                if let InputResult::Done(Err(message)) = self.world.feed(
                    s,
                    Input::SetConstant {
                        name: name.clone(),
                        value: *value,
                    },
                ) {
                    return Err(ScenarioError::Refused { index, t, message });
                }
            }
            ActionKind::RawSet { key, value } => {
                if let Err(message) = self.world.raw_set(s, store_name, key, value.clone()) {
                    return Err(ScenarioError::Refused { index, t, message });
                }
            }
            ActionKind::Close => self.world.shutdown(s),
            ActionKind::Crash => self.world.crash(s),
            ActionKind::Faults { .. } => {}
        }
        Ok(())
    }

    /// Turns new log entries into journal lines, and plays the listeners' part: a started
    /// profile gets its message handler, and every message is processed at once.
    fn react(&mut self) {
        while self.seen < self.world.log.len() {
            let entry = self.world.log[self.seen].clone();
            self.seen += 1;
            let s = entry.server;
            match entry.what {
                Happening::Write {
                    store,
                    key,
                    value,
                    user_ids,
                    metadata,
                    ..
                } => {
                    let line = json!({"type": "write", "store": store, "key": key, "value": value,
                                      "userIds": user_ids, "metadata": metadata});
                    self.line_at(entry.t, s, line);
                }
                Happening::Removed { store, key } => {
                    self.line_at(
                        entry.t,
                        s,
                        json!({"type": "remove", "store": store, "key": key}),
                    );
                }
                Happening::Published {
                    topic,
                    data,
                    failed,
                    ..
                } => {
                    // The journal's `failed`: the PublishAsync call errored.
                    let failed = failed.is_some();
                    self.line_at(
                        entry.t,
                        s,
                        json!({"type": "publish", "topic": topic, "data": data, "failed": failed}),
                    );
                }
                // Not in the journal format (fixtures README): scenarios set no limits.
                Happening::Crashed | Happening::SubscribeRefused { .. } => {}
                Happening::Output(Output::Completion(c)) => self.on_completion(entry.t, s, c),
                Happening::Output(Output::Event(e)) => self.on_event(entry.t, s, e),
                Happening::Output(_) => {}
            }
        }
    }

    /// A journal line at time `t`, given to the microsecond: the sums of latencies and frames
    /// that make virtual times carry float noise (`1.2999999999999998` for 1.3) that would only
    /// make journals harder to read and to diff.
    fn line_at(&mut self, t: f64, s: usize, mut body: Value) {
        body["t"] = json!((t * 1e6).round() / 1e6);
        body["server"] = json!(self.names[s]);
        self.journal.push(body);
    }

    fn on_completion(&mut self, t: f64, s: usize, c: Completion) {
        let Some(call) = profilestore_core::testing::completion_call(&c) else {
            return;
        };
        let Some((name, key)) = self.calls[s].remove(&call) else {
            return;
        };
        let ok = match &c {
            Completion::SessionStart { profile, .. } => profile.is_some(),
            Completion::Message { ok, .. }
            | Completion::Remove { ok, .. }
            | Completion::SetAsync { ok, .. } => *ok,
            Completion::Get { result, .. } => matches!(result, Ok(Some(_))),
            Completion::Shutdown => true,
        };
        let mut line = json!({"type": "return", "call": name, "key": key, "ok": ok});
        // A view profile's `Data` is what `GetAsync` returns (the format's `data`); the world
        // has moved it to the host.
        if let Completion::Get {
            result: Ok(Some(view)),
            ..
        } = &c
            && let Some(data) = self.world.servers[s].host.data.get(&view.profile)
        {
            line["data"] = data.clone();
        }
        self.line_at(t, s, line);
        if let Completion::SessionStart {
            profile: Some(loaded),
            ..
        } = c
        {
            self.received[s].insert(loaded.profile, key.clone());
            self.profiles[s].insert(key, loaded.profile);
            self.world.feed(
                s,
                Input::AddMessageHandler {
                    profile: loaded.profile,
                },
            );
        }
    }

    fn on_event(&mut self, t: f64, s: usize, e: Event) {
        let (signal, profile, extra) = match e {
            Event::OnSave { profile } => ("OnSave", Some(profile), None),
            Event::OnLastSave { profile, reason } => (
                "OnLastSave",
                Some(profile),
                Some(("reason", json!(reason.as_str()))),
            ),
            Event::OnSessionEnd { profile } => ("OnSessionEnd", Some(profile), None),
            Event::OnAfterSave {
                profile,
                last_saved_data,
            } => (
                "OnAfterSave",
                Some(profile),
                Some(("data", (*last_saved_data).clone())),
            ),
            Event::Message {
                profile,
                id,
                payload,
                to,
            } => {
                if matches!(to, Delivery::AllHandlers | Delivery::Handler(0)) {
                    self.world.feed(s, Input::MessageProcessed { profile, id });
                }
                ("Message", Some(profile), Some(("message", payload)))
            }
            Event::OnError { message, key, .. } => {
                let line =
                    json!({"type": "signal", "signal": "OnError", "key": key, "message": message});
                self.line_at(t, s, line);
                return;
            }
            Event::OnOverwrite { key, .. } => {
                self.line_at(
                    t,
                    s,
                    json!({"type": "signal", "signal": "OnOverwrite", "key": key}),
                );
                return;
            }
            Event::OnCriticalToggle { is_critical } => {
                self.line_at(
                    t,
                    s,
                    json!({"type": "signal", "signal": "OnCriticalToggle", "value": is_critical}),
                );
                return;
            }
            _ => return,
        };
        // Only a profile the script was given has the format's listeners: one a start took
        // the lock for and then declined (cancelled, or the server closing) releases it with a
        // final save whose signals fire on an object no script holds (spec §5.3).
        let Some(key) = profile.and_then(|p| self.received[s].get(&p)) else {
            return;
        };
        let mut line = json!({"type": "signal", "signal": signal, "key": key});
        if let Some((field, value)) = extra {
            line[field] = value;
        }
        self.line_at(t, s, line);
    }
}

/// Sets `data.<path>` (`"Coins"`, `"A.B"`) as Luau's `Data.A.B = value` would, creating the
/// tables missing on the way; `null` (Luau's `nil`) removes the field (a field under a missing
/// table is not there to remove, and no table is made). An empty array on the way (`Data`
/// itself included) is an empty table, as Luau cannot tell `{}` from `[]` (the original stores
/// an empty `Items = {}` as `[]`): it becomes an object holding the field. A field on the way
/// that holds something other than a table (a non-empty array included: its elements would be
/// lost) or an empty name is refused, naming it, and `data` is left as it was.
fn set_path(data: &mut Value, path: &str, value: Value) -> Result<(), String> {
    let parts: Vec<&str> = path.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err("a path names fields separated by single dots".into());
    }
    let (last, on_the_way) = parts.split_last().expect("split gives at least one part");
    if is_empty_array(data) {
        // Nothing under it to remove; anything else is set in a table made for it, with
        // every table on the way (none is there to refuse the path).
        if value.is_null() {
            return Ok(());
        }
        *data = json!({});
    }
    // Checked first, so a refused path changes nothing.
    let mut at = &*data;
    for (i, part) in on_the_way.iter().enumerate() {
        match at.get(part) {
            // Nothing there to remove: no table is made for it.
            None | Some(Value::Null) if value.is_null() => return Ok(()),
            Some(v) if is_empty_array(v) && value.is_null() => return Ok(()),
            None | Some(Value::Null) => break,
            Some(v) if is_empty_array(v) => break,
            Some(v @ Value::Object(_)) => at = v,
            Some(other) => {
                return Err(format!(
                    "{} holds {other}, not a table",
                    parts[..=i].join(".")
                ));
            }
        }
    }
    if !data.is_object() {
        return Err(format!("Data holds {data}, not a table"));
    }
    let mut slot = data;
    for part in on_the_way {
        let map = slot.as_object_mut().expect("checked above: a table");
        let next = map.entry((*part).into()).or_insert_with(|| json!({}));
        if next.is_null() || is_empty_array(next) {
            *next = json!({});
        }
        slot = next;
    }
    let map = slot.as_object_mut().expect("checked above: a table");
    match value {
        Value::Null => {
            map.remove(last);
        }
        value => {
            map.insert((*last).into(), value);
        }
    }
    Ok(())
}

/// An empty array: what the original stores for an empty Luau table.
fn is_empty_array(v: &Value) -> bool {
    v.as_array().is_some_and(|a| a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_path_creates_tables() {
        let mut d = json!({"Coins": 1});
        set_path(&mut d, "A.B", json!(2)).unwrap();
        set_path(&mut d, "Coins", json!(3)).unwrap();
        assert_eq!(d, json!({"Coins": 3, "A": {"B": 2}}));
    }

    /// `null` is Luau's `nil`: setting a field to it removes the field (it used to store a JSON
    /// null, which the original's writes never hold). A field on the way that is not a table
    /// is refused, naming it, and nothing changes (an array used to be replaced by `{}`, its
    /// elements lost).
    #[test]
    fn set_path_removes_on_null_and_refuses_what_is_not_a_table() {
        let mut d = json!({"Coins": 1, "Items": [10, 20], "A": {"B": 2, "C": 3}});
        set_path(&mut d, "Coins", Value::Null).unwrap();
        set_path(&mut d, "A.B", Value::Null).unwrap();
        set_path(&mut d, "Gone", Value::Null).unwrap();
        set_path(&mut d, "X.Y", Value::Null).unwrap();
        assert_eq!(d, json!({"Items": [10, 20], "A": {"C": 3}}));
        let before = d.clone();
        assert_eq!(
            set_path(&mut d, "Items.3", json!(1)),
            Err("Items holds [10,20], not a table".into())
        );
        assert_eq!(
            set_path(&mut d, "A.C.D", json!(1)),
            Err("A.C holds 3, not a table".into())
        );
        assert_eq!(
            set_path(&mut d, "A..B", json!(1)),
            Err("a path names fields separated by single dots".into())
        );
        assert_eq!(d, before);
    }

    /// The original stores an empty Luau table as `[]` (`"Items": []` in
    /// `original-golden.json`): a path through one sets the field in a table made for it, as
    /// Luau's `Data.Items.Sword = 1` does; removing under it changes nothing. `Data` itself
    /// stored as `[]` too.
    #[test]
    fn set_path_takes_an_empty_array_as_an_empty_table() {
        let mut d = json!({"Items": [], "A": {"B": []}});
        set_path(&mut d, "Items.Sword", Value::Null).unwrap();
        set_path(&mut d, "A.B.C.D", Value::Null).unwrap();
        assert_eq!(d, json!({"Items": [], "A": {"B": []}}));
        set_path(&mut d, "Items.Sword", json!(1)).unwrap();
        set_path(&mut d, "A.B.C.D", json!(2)).unwrap();
        assert_eq!(
            d,
            json!({"Items": {"Sword": 1}, "A": {"B": {"C": {"D": 2}}}})
        );
        let mut data = json!([]);
        set_path(&mut data, "Gone", Value::Null).unwrap();
        assert_eq!(data, json!([]));
        set_path(&mut data, "Coins.Gold", json!(5)).unwrap();
        assert_eq!(data, json!({"Coins": {"Gold": 5}}));
    }

    /// A Heartbeat that never ticks or a delay that never ends is refused before the run (a
    /// negative fps used to make the virtual clock loop forever).
    #[test]
    fn latency_the_clock_cannot_run_on_is_refused() {
        let good = ScenarioLatency {
            datastore_round_trip: 0.3,
            message_delay: 0.2,
            publish_yield: 0.05,
            fps: 60.0,
        };
        assert!(good.check().is_ok());
        let cases = [
            (
                ScenarioLatency { fps: 0.0, ..good },
                "latency.fps must be above 0 and at most 1000, got 0",
            ),
            (
                ScenarioLatency {
                    fps: 1001.0,
                    ..good
                },
                "latency.fps must be above 0 and at most 1000, got 1001",
            ),
            (
                ScenarioLatency { fps: -60.0, ..good },
                "latency.fps must be above 0 and at most 1000, got -60",
            ),
            (
                ScenarioLatency {
                    fps: f64::NAN,
                    ..good
                },
                "latency.fps must be above 0 and at most 1000, got NaN",
            ),
            (
                ScenarioLatency {
                    message_delay: -1.0,
                    ..good
                },
                "latency.message_delay must be a number of seconds from 0 to 86400 (a day), got -1",
            ),
            (
                ScenarioLatency {
                    datastore_round_trip: f64::INFINITY,
                    ..good
                },
                "latency.datastore_round_trip must be a number of seconds from 0 to 86400 (a day), got inf",
            ),
        ];
        for (latency, message) in cases {
            let err = latency.check().unwrap_err();
            assert_eq!(err.to_string(), format!("invalid scenario: {message}"));
        }
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/scenarios"
        );
        let first = std::fs::read_dir(dir)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut scenario = load(&first).unwrap();
        scenario.latency.fps = -1.0;
        assert_eq!(
            run(&scenario).map(|_| ()).map_err(|e| e.to_string()),
            Err("invalid scenario: latency.fps must be above 0 and at most 1000, got -1".into())
        );
    }

    #[test]
    fn every_fixture_scenario_parses() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/scenarios"
        );
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("fixtures present") {
            let path = entry.unwrap().path();
            let s = load(&path).unwrap();
            assert!(!s.actions.is_empty(), "{}", path.display());
            n += 1;
        }
        assert_eq!(n, 8);
    }

    fn lifecycle_text() -> String {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/scenarios/lifecycle.json"
        );
        std::fs::read_to_string(path).unwrap()
    }

    /// Loads the `lifecycle` fixture changed by `edit`, written to a temporary file.
    fn load_edited(edit: impl FnOnce(&mut serde_json::Value)) -> Result<Vec<Line>, ScenarioError> {
        let mut raw: serde_json::Value = serde_json::from_str(&lifecycle_text()).unwrap();
        edit(&mut raw);
        // A folder of its own per call: tests run in parallel.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scenario.json");
        std::fs::write(&path, raw.to_string()).unwrap();
        load(&path).and_then(|s| run(&s))
    }

    /// A `faults` action's `datastore_ambiguous` (ours) makes DataStore writes commit although
    /// their calls are told they failed: the save at 3 s writes (its `write` line) and reports
    /// an error (`OnError`); set back to 0, writes commit and succeed again.
    #[test]
    fn an_ambiguous_fault_commits_a_write_its_call_is_told_failed() {
        let lines = load_edited(|s| {
            let actions = s["actions"].as_array_mut().unwrap();
            actions.push(serde_json::json!({"t": 2, "do": "faults", "datastore_ambiguous": 1}));
            actions.push(serde_json::json!({"t": 4, "do": "faults", "datastore_ambiguous": 0}));
        })
        .unwrap();
        let at = |from: f64, to: f64| -> Vec<&Line> {
            let within = |l: &&Line| l["t"].as_f64().is_some_and(|t| (from..to).contains(&t));
            lines.iter().filter(within).collect()
        };
        let what = |l: &Line| {
            let kind = l.get("signal").unwrap_or(&l["type"]);
            (l["t"].as_f64().unwrap(), kind.as_str().unwrap().to_string())
        };
        let between = at(3.0, 4.0);
        let kinds: Vec<(f64, String)> = between.iter().map(|l| what(l)).collect();
        let expected = [
            (3.0, "call"),
            (3.0, "OnSave"),
            (3.3, "write"),
            (3.3, "OnError"),
        ];
        assert_eq!(kinds, expected.map(|(t, k)| (t, k.to_string())));
        assert_eq!(between[2]["value"]["Data"], serde_json::json!({"Coins": 1}));
        assert_eq!(
            between[3]["message"],
            "502: API Services rejected request with error. HTTP 500 (Internal Server Error)"
        );
        // From 4 s on, writes succeed: the final save at 6 s, the start at 9 s and its final
        // save at 12 s write and report no error.
        let later: Vec<(f64, String)> = at(4.0, f64::INFINITY).iter().map(|l| what(l)).collect();
        assert!(later.iter().all(|(_, k)| k != "OnError"), "{later:?}");
        assert_eq!(later.iter().filter(|(_, k)| k == "write").count(), 3);
    }

    /// A key written twice in one object is refused, naming it and where it is (parsed, the
    /// last one won: `"steal": true, "steal": false` ran a plain start). A time of `-0` is the
    /// run's start, 0, as the actions at 0 are (it sorted before them and was written `-0.0`).
    #[test]
    fn a_repeated_key_is_refused_and_minus_zero_is_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scenario.json");
        let start = "\"do\": \"start_session\",";
        let twice = lifecycle_text().replacen(
            start,
            &format!("{start} \"steal\": true, \"steal\": false,"),
            1,
        );
        std::fs::write(&path, twice).unwrap();
        assert_eq!(
            load(&path).unwrap_err().to_string(),
            format!(
                "invalid scenario {}: at actions[0]: key \"steal\" appears twice in one object",
                path.display()
            )
        );
        let mut raw: serde_json::Value = serde_json::from_str(&lifecycle_text()).unwrap();
        let mut at_minus_zero = raw["actions"][0].clone();
        at_minus_zero["t"] = serde_json::json!(-0.0);
        at_minus_zero["do"] = serde_json::json!("get");
        let actions = raw["actions"].as_array_mut().unwrap();
        actions.insert(
            0,
            serde_json::json!({"t": 0, "do": "faults", "datastore_fail": 0}),
        );
        actions.insert(1, at_minus_zero);
        let text = raw.to_string();
        assert!(text.contains("\"t\":-0.0"), "{text}");
        std::fs::write(&path, text).unwrap();
        let scenario = load(&path).unwrap();
        assert_eq!(scenario.actions[1].t.to_bits(), 0.0f64.to_bits());
        let lines = run(&scenario).unwrap();
        let get = lines.iter().find(|l| l["call"] == "GetAsync").unwrap();
        assert_eq!(get["t"].to_string(), "0.0");
    }

    /// The format has no players, so MessagingService rate limits (20 + 8 × players
    /// subscriptions a server) are off: a server holding 21 sessions is subscribed to each,
    /// and the 21st is handed over by message (the end request, ~5.6 s), not stolen after
    /// `SESSION_STEAL` (which a 60 s horizon would not reach).
    #[test]
    fn a_server_with_many_sessions_hands_each_over_by_message() {
        let lines = load_edited(|raw| {
            raw["servers"] = serde_json::json!([
                {"name": "A", "place_id": 1001},
                {"name": "B", "place_id": 1001}
            ]);
            let mut actions: Vec<serde_json::Value> = (1..=21)
                .map(|i| serde_json::json!({"t": 1, "server": "A", "do": "start_session", "key": format!("k{i}")}))
                .collect();
            actions.push(serde_json::json!({"t": 30, "server": "B", "do": "start_session", "key": "k21"}));
            raw["actions"] = serde_json::Value::Array(actions);
            raw["horizon"] = serde_json::json!(60);
        })
        .unwrap();
        let returned: Vec<f64> = lines
            .iter()
            .filter(|l| l["type"] == "return" && l["server"] == "B" && l["key"] == "k21")
            .map(|l| {
                assert_eq!(l["ok"], json!(true), "{l}");
                l["t"].as_f64().unwrap()
            })
            .collect();
        assert_eq!(returned.len(), 1, "{}", crate::journal::render(&lines));
        // Asked at 30 s, handed over by message: 5.6 s (a steal would come after the horizon).
        assert_eq!(returned, [35.6]);
    }

    /// A start that took the lock but returns nil (its server began closing meanwhile)
    /// releases the lock with a final save whose signals fire on an object no script holds,
    /// with none of the format's listeners: they are not journaled (they used to be, three
    /// under the key and `OnAfterSave` under none, as the profile was gone by then).
    #[test]
    fn signals_of_a_profile_no_script_received_are_not_journaled() {
        let lines = load_edited(|raw| {
            raw["actions"] = serde_json::json!([
                {"t": 5.8, "server": "A", "do": "start_session", "key": "k"},
                {"t": 6.0, "server": "A", "do": "close"}
            ]);
            raw["horizon"] = serde_json::json!(60);
        })
        .unwrap();
        let journal = crate::journal::render(&lines);
        let start = lines
            .iter()
            .find(|l| l["type"] == "return" && l["call"] == "StartSessionAsync")
            .unwrap_or_else(|| panic!("{journal}"));
        assert_eq!(start["ok"], json!(false), "{journal}");
        let writes = lines.iter().filter(|l| l["type"] == "write").count();
        assert_eq!(writes, 2, "the take and the release: {journal}");
        let signals: Vec<&Line> = lines.iter().filter(|l| l["type"] == "signal").collect();
        assert!(signals.is_empty(), "{journal}");
    }

    /// A `GetAsync` return carries the view profile's `Data` (the format's `data`); nil has
    /// none.
    #[test]
    fn a_get_return_carries_the_profiles_data() {
        let lines = load_edited(|raw| {
            let actions = raw["actions"].as_array_mut().unwrap();
            actions.push(serde_json::json!({"t": 19, "server": "A", "do": "get", "key": "k"}));
            actions.push(serde_json::json!({"t": 19, "server": "A", "do": "get", "key": "none"}));
        })
        .unwrap();
        let returns: Vec<&Line> = lines
            .iter()
            .filter(|l| l["type"] == "return" && l["call"] == "GetAsync")
            .collect();
        assert_eq!(returns.len(), 2, "{}", crate::journal::render(&lines));
        let of = |key: &str| *returns.iter().find(|l| l["key"] == key).unwrap();
        assert_eq!(of("k")["ok"], json!(true));
        assert_eq!(
            of("k")["data"],
            json!({"Coins": 2}),
            "the last session saved 2"
        );
        // A key never written: nil (spec §11.1), no data.
        assert_eq!(of("none")["ok"], json!(false));
        assert_eq!(of("none").get("data"), None);
    }

    /// What the format does not allow is refused with its reason, before anything runs: an
    /// action after the horizon (it used to run, and the clock then stepped back to the
    /// horizon for the `end` line), a misspelt field (`"Steal"` ran a plain start), two
    /// servers of one name, a probability of 5, an epoch the clock overflows on, a store or
    /// template the engine refuses (the run used to go on with no store), an action naming no
    /// server or an unknown one, a field of the wrong type (named by its place); and, when the
    /// run reaches it, an action of a server that crashed (it used to land).
    #[test]
    fn what_the_format_does_not_allow_is_refused() {
        assert!(load_edited(|_| {}).is_ok());
        type Edit = dyn Fn(&mut serde_json::Value);
        let cases: [(&Edit, &str); 6] = [
            (
                &|s| {
                    s["actions"].as_array_mut().unwrap().push(
                        serde_json::json!({"t": 25, "server": "A", "do": "get", "key": "late"}),
                    )
                },
                "actions[7] at t=25 is outside the run (0 to the horizon, 20)",
            ),
            (
                &|s| s["horizon"] = serde_json::json!(-1),
                "horizon is -1, expected a number of seconds from 0 to 31622400 (a year)",
            ),
            (
                &|s| s["actions"][0]["Steal"] = serde_json::json!(true),
                "actions[0] (\"start_session\" at t=1) has no field \"Steal\"",
            ),
            (
                &|s| {
                    let first = s["servers"][0].clone();
                    s["servers"].as_array_mut().unwrap().push(first);
                },
                "two servers are named \"A\"",
            ),
            (
                &|s| {
                    s["actions"]
                        .as_array_mut()
                        .unwrap()
                        .push(serde_json::json!({"t": 2, "do": "faults", "datastore_fail": 5}))
                },
                "actions[7] (faults at t=2): datastore_fail is 5, expected a probability from 0 \
                 to 1",
            ),
            (
                &|s| s["epoch"] = serde_json::json!(i64::MAX),
                "epoch is 9223372036854775807, expected a Unix time from 0 to 253402300799",
            ),
        ];
        for (edit, message) in cases {
            let err = load_edited(edit).unwrap_err();
            assert_eq!(err.to_string(), format!("invalid scenario: {message}"));
        }
        // A store or template the engine refuses, before anything runs.
        for (edit, problem) in [
            (
                &(|s: &mut serde_json::Value| s["template"] = serde_json::json!(5)) as &Edit,
                "store \"PlayerData\" with its template cannot be opened: \
                 [ProfileStore]: Invalid template argument",
            ),
            (
                &|s| s["store"] = serde_json::json!(""),
                "store \"\" with its template cannot be opened: ",
            ),
        ] {
            let err = load_edited(edit).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid scenario: {problem}")),
                "{err}"
            );
        }
        // A server action naming no server, or an unknown one, before anything runs.
        let err = load_edited(|s| {
            s["actions"][0].as_object_mut().unwrap().remove("server");
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid scenario: actions[0] at t=1 names no server"
        );
        let err = load_edited(|s| s["actions"][6]["server"] = serde_json::json!("B")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "actions[6] at t=12 names unknown server \"B\""
        );
        // An action of a server that crashed (its removal used to land as if sent before the
        // crash).
        let err = load_edited(|s| {
            s["actions"] = serde_json::json!([
                {"t": 1, "server": "A", "do": "raw_set", "key": "k", "value": {"x": 1}},
                {"t": 2, "server": "A", "do": "crash"},
                {"t": 3, "server": "A", "do": "remove", "key": "k"}
            ])
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid scenario: actions[2] at t=3 is of server \"A\", which is no longer running"
        );
        // A field of the wrong type is named by its place (an action's fields by the action:
        // its kind is read with them).
        let err = load_edited(|s| s["actions"][3]["key"] = serde_json::json!(5)).unwrap_err();
        let err = err.to_string();
        assert!(
            err.contains(": at actions[3]: invalid type: integer `5`, expected a string"),
            "{err}"
        );
        let err = load_edited(|s| s["horizon"] = serde_json::json!("20")).unwrap_err();
        assert!(
            err.to_string()
                .contains(": at horizon: invalid type: string"),
            "{err}"
        );
        // A raw write no DataStore stores (it failed without a word).
        let err = load_edited(|s| {
            s["actions"].as_array_mut().unwrap().push(serde_json::json!(
                {"t": 2, "server": "A", "do": "raw_set", "key": "", "value": 1}
            ))
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid scenario: actions[7] (raw_set at t=2) cannot be stored: 101: Key name \
             can't be empty."
        );
        // A path deeper than any Data a store takes (a million parts overflowed the stack when
        // the nested tables were dropped); the deepest allowed runs.
        let deep = |parts: usize| {
            move |s: &mut serde_json::Value| {
                s["actions"].as_array_mut().unwrap().push(serde_json::json!(
                    {"t": 2, "server": "A", "do": "set_data", "key": "k",
                     "path": vec!["a"; parts].join("."), "value": 1}
                ))
            }
        };
        let err = load_edited(deep(MAX_DATA_DEPTH + 1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "invalid scenario: actions[7] (set_data at t=2): the path has {} parts, \
                 expected at most {MAX_DATA_DEPTH} (the deepest Data a store takes)",
                MAX_DATA_DEPTH + 1
            )
        );
        assert!(load_edited(deep(MAX_DATA_DEPTH)).is_ok());
        // A field the format does not have, anywhere (`publish_yeild` was ignored, and so was
        // a `faults` action's server: faults are the world's).
        for (edit, problem) in [
            (
                &(|s: &mut serde_json::Value| s["seed"] = serde_json::json!(5)) as &Edit,
                "unknown field `seed`",
            ),
            (
                &|s| s["latency"]["publish_yeild"] = serde_json::json!(0.5),
                "at latency.publish_yeild: unknown field `publish_yeild`",
            ),
            (
                &|s| s["servers"][0]["job_id"] = serde_json::json!("j"),
                "at servers[0].job_id: unknown field `job_id`",
            ),
            (
                &|s| {
                    s["actions"].as_array_mut().unwrap().push(serde_json::json!(
                        {"t": 2, "do": "faults", "server": "A", "datastore_fail": 1}
                    ))
                },
                "actions[7] (\"faults\" at t=2) has no field \"server\"",
            ),
        ] {
            let err = load_edited(edit).unwrap_err().to_string();
            assert!(err.contains(problem), "{err}");
        }
        // `set_data` on a key the server does not hold is refused, not dropped.
        let err = load_edited(|s| {
            s["actions"].as_array_mut().unwrap().push(serde_json::json!(
                {"t": 2, "server": "A", "do": "set_data", "key": "other", "path": "Coins", "value": 1}
            ))
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "actions[7] at t=2 was refused: set_data: server A holds no profile of key \"other\""
        );
    }
}
