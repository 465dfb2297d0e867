//! The world (DESIGN.md §4): game servers — each a `profilestore-core` engine with its own
//! PlaceId, JobId and wall-clock skew — on one virtual clock, sharing one simulated
//! [`DataStoreService`] and one [`MessagingService`].
//!
//! The world executes what engines ask for with a latency model (every DataStore call one round
//! trip, `SubscribeAsync` too; `UpdateAsync` two: the transform runs when the read arrives, and
//! if another server committed before the write it runs again half a round trip later, its
//! write landing half a round trip after that), delivers MessagingService messages, ticks every
//! server's Heartbeat, injects world-wide faults (once per call), and logs everything that
//! happens ([`Logged`]). A server that dies gets no more answers, but a write it already sent
//! still lands. Every engine input goes through [`World::feed`], so a run can be recorded as a
//! trace ([`World::record`]) and replayed byte for byte.
//!
//! What drives a server — a Rust workload today, a Luau script or a C engine later — calls
//! [`World::feed`] with API inputs and reads [`World::log`]; the world itself makes no game
//! decisions. That pair is the seam DESIGN.md §4 asks to keep small, rather than a trait: the
//! two drivers there are (the fleet, and the scenario runner) need nothing else, and a trait
//! is cut best from what the Luau host's servers turn out to share with them, when it comes.
//! The world calls no driver back, so none has to live inside it.

use std::collections::{BTreeMap, BinaryHeap};

use profilestore_core::Seconds as At;
use profilestore_core::guid::GuidGenerator;
use profilestore_core::testing::Host;
use profilestore_core::value::{Str, Value};
use profilestore_core::{
    CallId, Completion, DataStoreError, DataStoreRequest, DataStoreRequestKind, DataStoreResponse,
    DataStoreState, Engine, EngineConfig, Input, InputResult, LiveAnswers, MessagingRequest, Now,
    OpId, Output, Recorder, ServerIdentity, SubscriptionId, Transformed,
};

use crate::config::{ConfigError, positive, probability, seconds, within};
use crate::datastore::{
    Admission, Committed, DataStoreService, GetOptions, Operation, Read, ReadTicket, RequestError,
    ServerId, StoreName, UpdateCommit, VersionPages,
};
use crate::log::Log;
use crate::messaging::{self, MessagingService};

/// When a request refused for its key's throughput can go (`None` for other errors, and for a
/// request too large to ever fit).
fn key_ready_at(error: &RequestError) -> Option<f64> {
    match error {
        RequestError::KeyThrottled { ready_at, .. } => *ready_at,
        _ => None,
    }
}

/// The detail of the 502 world-wide DataStore faults report.
const FAULT_DETAIL: &str = "HTTP 500 (Internal Server Error)";

/// The error world-wide DataStore faults report: the text of the DataStore's own 502,
/// [`crate::datastore::internal_rejection`]. (The original's emulator reported `HTTP 500` for
/// its first fault in `final_save_retry` and `HTTP 503` after: journal comparisons compare
/// an `OnError` text up to its HTTP status, [`crate::journal`].)
pub const FAULT_MESSAGE: &str =
    "502: API Services rejected request with error. HTTP 500 (Internal Server Error)";

/// One server of the world.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServerSpec {
    /// Name used in journals ("A", "B", ...).
    pub name: String,
    /// `game.PlaceId`.
    pub place_id: i64,
    /// Seconds this server's wall clock runs ahead (negative: behind).
    pub wall_skew: i64,
}

/// How long things take.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum LatencyModel {
    /// Every DataStore round trip takes this long (the scenario files' model).
    Fixed(f64),
    /// Each round trip is drawn from the DataStore's seeded latency distribution.
    Sampled,
}

/// What the world is built from; with the seed it fixes the whole run.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorldConfig {
    /// Seed of JobIds, session GUIDs and world faults.
    pub seed: u64,
    /// Unix time at virtual time 0.
    pub epoch: i64,
    /// Heartbeat frames per second.
    pub fps: f64,
    /// DataStore latency.
    pub latency: LatencyModel,
    /// The servers.
    pub servers: Vec<ServerSpec>,
}

/// [`World::record`] asked for after engines had inputs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "recording must start before the first engine input ({inputs} fed already): a replay \
     starts from fresh engines"
)]
pub struct RecordTooLate {
    /// Inputs fed before.
    pub inputs: u64,
}

/// The latest Unix time a world may start at: the last second of the year 9999.
pub const MAX_EPOCH: i64 = 253_402_300_799;

/// The highest Heartbeat frame rate a world may run at (Roblox runs 60).
pub const MAX_FPS: f64 = 1000.0;

/// The largest wall-clock skew of a server, seconds: ten years either way.
pub const MAX_WALL_SKEW: i64 = 315_360_000;

impl WorldConfig {
    /// Refuses a frame rate that is not above 0 and at most [`MAX_FPS`], a fixed latency that
    /// is not a time from 0 to a day ([`crate::config::MAX_SECONDS`]), an epoch outside
    /// 0..=[`MAX_EPOCH`] and a server skew beyond ±[`MAX_WALL_SKEW`] or putting the server's
    /// clock before 1970 at the start (so a server's wall clock, epoch + virtual time + skew,
    /// stays a plain Unix time).
    pub fn check(&self) -> Result<(), ConfigError> {
        positive("world.fps", self.fps, MAX_FPS)?;
        if let LatencyModel::Fixed(round_trip) = self.latency {
            seconds("world.latency", round_trip)?;
        }
        within("world.epoch", self.epoch, 0, MAX_EPOCH)?;
        for (i, server) in self.servers.iter().enumerate() {
            within(
                &format!("world.servers[{i}].wall_skew"),
                server.wall_skew,
                (-MAX_WALL_SKEW).max(-self.epoch),
                MAX_WALL_SKEW,
            )?;
        }
        Ok(())
    }
}

/// One simulated game server.
pub struct Server {
    /// Its spec.
    pub spec: ServerSpec,
    /// Its engine: read it with [`Server::engine`]; every input goes through [`World::feed`].
    engine: Engine,
    /// Its host state (`Profile.Data` and friends).
    pub host: Host,
    /// False after a crash, once its shutdown finished (`BindToClose` returned) or it was
    /// killed at its end, and while in reserve ([`World::reserve`]): it answers
    /// nothing: answers, messages and transforms for it are lost (writes it already sent still
    /// land).
    pub alive: bool,
    /// When it last stopped (crashed, was killed or closed), virtual seconds: a request it
    /// had sent by then still lands, one still waiting in its throttle queues does not.
    stopped_at: Option<f64>,
    /// Its id at the DataStore and MessagingService.
    pub id: ServerId,
    /// When DataStore requests of its waited in a throttle queue or were held for their key:
    /// `(from, until)` spans in virtual seconds, in time order, overlapping ones merged (so
    /// they are ordered by their ends too). See [`Server::throttled_between`].
    pub throttled: Vec<(f64, f64)>,
    subscriptions: BTreeMap<SubscriptionId, messaging::SubscriptionId>,
    /// `SubscribeAsync` calls still on their way (one round trip). The engine asks to
    /// disconnect a subscription only once its call came back; a host that disconnects one
    /// still on its way (as the world allows) takes it out of this set, and it never subscribes.
    subscribing: std::collections::BTreeSet<SubscriptionId>,
    /// The engine's `poll_timeout()` as of `deadline_fresh`: the world needs every server's
    /// next deadline at every step, and only an input can change it.
    deadline: Option<f64>,
    /// False once an input reached the engine since `deadline` was read.
    deadline_fresh: bool,
    /// When its process started, virtual seconds: its `os.clock()` (the engine's monotonic
    /// time) counts from here (spec §0: "local to this process"). 0 but for a booted spare.
    booted_at: f64,
}

impl Server {
    /// Its engine, to read (`is_active`, `profile`...). Inputs go through [`World::feed`], which
    /// records them and keeps the world's view of the engine's next deadline current.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A request of its waits in a throttle queue, or is held for its key, from `from` (now)
    /// until `until`.
    fn note_throttled(&mut self, from: f64, until: f64) {
        match self.throttled.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(until),
            _ => self.throttled.push((from, until)),
        }
    }

    /// Whether a DataStore request of its waited in a throttle queue (or was held for its
    /// key) at some moment from `from` to `to`.
    pub fn throttled_between(&self, from: f64, to: f64) -> bool {
        // The first span not over by `from`: the spans are ordered by their ends.
        let i = self.throttled.partition_point(|&(_, until)| until < from);
        self.throttled.get(i).is_some_and(|&(start, _)| start <= to)
    }

    /// Until when a request of its waited in a throttle queue, at the latest; `None` if none
    /// ever did.
    pub fn throttled_until(&self) -> Option<f64> {
        self.throttled.last().map(|&(_, until)| until)
    }
}

/// Something that happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Happening {
    /// An engine output (signal, API completion) after the world executed its IO part.
    Output(Output),
    /// A write committed.
    Write {
        /// DataStore name with scope (`PlayerData:global`).
        store: Str,
        /// Key.
        key: Str,
        /// The stored value.
        value: Value,
        /// The key's user ids.
        user_ids: Vec<i64>,
        /// The key's metadata.
        metadata: Value,
        /// The game's API call the write served (a `MessageAsync`'s:
        /// [`Engine::op_call`]); `None` for a session's own writes (its start and saves) and
        /// for writes made outside ProfileStore ([`World::raw_set`]).
        call: Option<CallId>,
        /// When the update's transform that computed the value ran (virtual seconds): the
        /// value is what the server held then, however much later the write landed. `None`
        /// for writes without a transform ([`World::raw_set`]).
        transformed_at: Option<f64>,
    },
    /// A key was removed.
    Removed {
        /// DataStore name with scope.
        store: Str,
        /// Key.
        key: Str,
    },
    /// A MessagingService publish.
    Published {
        /// Topic.
        topic: String,
        /// Payload.
        data: Value,
        /// Why the `PublishAsync` call failed (a fault, or the service refused it: too large,
        /// bad topic, the server's publish limit), delivering it to nobody; `None` when sent.
        failed: Option<String>,
        /// Deliveries of a sent message lost to the service's loss probability (best effort:
        /// the call succeeded).
        dropped: usize,
    },
    /// A `SubscribeAsync` the MessagingService refused (a limit of the server's): the session
    /// hears no requests to end or save by message (spec §10.4: the error only kills the
    /// spawned thread, whose error Roblox prints; here it is logged).
    SubscribeRefused {
        /// Topic.
        topic: String,
        /// The service's error.
        reason: String,
    },
    /// The server crashed, or was killed at the end of its shutdown's 30 s.
    Crashed,
}

/// A log line: when, which server, what.
#[derive(Clone, Debug, PartialEq)]
pub struct Logged {
    /// Virtual seconds.
    pub t: f64,
    /// Server index.
    pub server: usize,
    /// What happened.
    pub what: Happening,
}

enum Pending {
    /// A request reaches the DataStore; it left its server at `sent_at` (after waiting in a
    /// throttle queue, or for its key's throughput).
    Read {
        server: usize,
        request: DataStoreRequest,
        sent_at: f64,
        /// Sent again after waiting for its key's throughput: the call met the world's faults
        /// when it first reached the DataStore (a call meets them once).
        held: bool,
    },
    /// The write half of an update.
    Commit {
        server: usize,
        op: OpId,
        ticket: Box<ReadTicket>,
        output: Transformed,
        /// Not the call's first write (a conflict's second, or one held for the key's
        /// throughput): the call met the world's faults at its first.
        retry: bool,
        /// When its transform ran.
        transformed_at: f64,
    },
    /// An update whose write waited for its key's throughput reaches the DataStore again: it
    /// reads the key's current value and the transform runs on that (as Roblox runs a held
    /// request's transform only when it goes), then the write goes.
    Reread {
        server: usize,
        op: OpId,
        ticket: Box<ReadTicket>,
    },
    /// A `GetAsync` the server's cache answers: no request goes out (no budget, no fault).
    CachedGet {
        server: usize,
        request: DataStoreRequest,
    },
    /// [`World::raw_set`]'s write; `held`: when it left its server's queue, if it waited there
    /// for its key's throughput (it drew its fault when it first arrived).
    RawSet {
        server: usize,
        store: String,
        key: String,
        value: Value,
        held: Option<f64>,
    },
    /// A request refused by its throttle queue: the error arrives at once.
    Refused {
        server: usize,
        op: OpId,
        error: DataStoreError,
    },
    /// The end of a shutdown's `BindToClose` budget: the server is killed if still running.
    Kill { server: usize },
    /// Another writer landed between an update's read and its write: the newer value reaches
    /// the server, which runs the transform again now and sends the write again.
    Retransform {
        server: usize,
        op: OpId,
        ticket: Box<ReadTicket>,
    },
    /// A `SubscribeAsync` call reaches the MessagingService: the subscription starts there
    /// (messages published before it are not received) and the call returns.
    Subscribe {
        server: usize,
        subscription: SubscriptionId,
        topic: String,
    },
}

/// Roblox's `BindToClose` budget: a server is killed this long after its shutdown starts,
/// whatever its close handlers are still doing.
pub const BIND_TO_CLOSE_LIMIT: f64 = 30.0;

/// A pending event in the world's queue: earliest time first, then the order of scheduling.
/// The event itself waits in [`Agenda::slots`]: the heap moves 24-byte entries, not requests.
struct Scheduled {
    at: At,
    seq: u64,
    slot: u32,
}

impl Scheduled {
    fn order(&self) -> (At, u64) {
        (self.at, self.seq)
    }
}

// `BinaryHeap` pops its greatest element: the earliest event is the greatest.
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.order().cmp(&self.order())
    }
}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        self.order() == other.order()
    }
}

impl Eq for Scheduled {}

/// The world's pending events, earliest first (ties in scheduling order).
#[derive(Default)]
struct Agenda {
    heap: BinaryHeap<Scheduled>,
    /// The events, by slot; a slot is reused once its event has been taken.
    slots: Vec<Option<Pending>>,
    free: Vec<u32>,
    seq: u64,
}

impl Agenda {
    fn push(&mut self, at: f64, pending: Pending) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(pending);
                slot
            }
            None => {
                self.slots.push(Some(pending));
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 pending events")
            }
        };
        self.heap.push(Scheduled {
            at: At(at),
            seq: self.seq,
            slot,
        });
    }

    /// When the earliest event is due.
    fn next_at(&self) -> Option<f64> {
        self.heap.peek().map(|s| s.at.0)
    }

    fn pop(&mut self) -> Option<Pending> {
        let next = self.heap.pop()?;
        self.free.push(next.slot);
        self.slots[next.slot as usize].take()
    }
}

/// The DataStore call a request is (version page advances count as listings).
fn operation_of(kind: &DataStoreRequestKind) -> Operation {
    match kind {
        DataStoreRequestKind::Update => Operation::Update,
        DataStoreRequestKind::Get => Operation::Get,
        DataStoreRequestKind::GetVersion { .. } => Operation::GetVersion,
        DataStoreRequestKind::Remove => Operation::Remove,
        DataStoreRequestKind::ListVersions { .. }
        | DataStoreRequestKind::NextVersionPage { .. } => Operation::ListVersions,
    }
}

/// The engine configuration of every server of a world: JobIds and GUID seeds drawn from the
/// world's seed, so a trace can rebuild the same engines.
pub fn engine_configs(config: &WorldConfig, rng: &mut GuidGenerator) -> Vec<EngineConfig> {
    config
        .servers
        .iter()
        .map(|spec| EngineConfig {
            identity: ServerIdentity {
                place_id: spec.place_id,
                job_id: rng.next_guid().to_lowercase(),
            },
            seed: rng.next_u64(),
            datastore_state: DataStoreState::Access,
        })
        .collect()
}

/// A recording held in memory ([`World::recorded`], [`crate::trace::Trace`]).
#[derive(Clone, Copy, Debug)]
pub struct Recorded<'a> {
    /// Every input.
    pub inputs: &'a [TracedInput],
    /// Every output, with its server.
    pub outputs: &'a [(usize, Output)],
    /// For each input, how many outputs came before it (where a trace file puts it among
    /// them; a mark out of order or past the end puts it after the outputs before it).
    pub marks: &'a [usize],
}

/// A recorded engine input: which server, what, and what it returned (a transform's written
/// value among others).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TracedInput {
    /// Server index.
    pub server: usize,
    /// The input.
    pub input: Input,
    /// What the engine returned for it.
    pub result: InputResult,
    /// The engine's next wake-up after it (`poll_timeout()`): a replay that puts out the same
    /// outputs but asks to be woken at another time is not the same run.
    pub deadline: Option<f64>,
}

/// An update that committed although its caller was told it failed (an ambiguous fault).
#[derive(Clone, Debug, PartialEq)]
pub struct AmbiguousWrite {
    /// When it committed (virtual seconds).
    pub at: f64,
    /// The key it wrote.
    pub key: Str,
    /// The server that sent it.
    pub server: usize,
    /// The API call it served ([`Engine::op_call`]: a `MessageAsync`'s), if any; `None` for a
    /// session's own writes.
    pub call: Option<CallId>,
}

/// The world.
pub struct World {
    /// Virtual seconds.
    pub now: f64,
    /// The configuration it was built from.
    pub config: WorldConfig,
    /// The servers.
    pub servers: Vec<Server>,
    /// The shared DataStore.
    pub datastore: DataStoreService,
    /// The shared MessagingService.
    pub messaging: MessagingService,
    /// Everything that happened, in order (a reader may let go of the lines it has read:
    /// [`Log::forget_before`]).
    pub log: Log,
    /// Probability that a DataStore call fails (after its round trips, without effect):
    /// [`World::set_datastore_fail`].
    datastore_fail: f64,
    /// Probability that a publish is lost: [`World::set_messaging_fail`].
    messaging_fail: f64,
    /// DataStore requests that waited in a throttle queue.
    pub throttled: u64,
    /// DataStore requests refused because their throttle queue was full.
    pub refused: u64,
    /// `SubscribeAsync` calls the MessagingService refused (its limits, or a bad topic name).
    pub subscribes_refused: u64,
    /// Writes the DataStore committed (each logged as a [`Happening::Write`]).
    pub committed_writes: u64,
    /// Updates that committed although their caller was told they failed (an ambiguous
    /// fault). Kept whole (they are few): the invariant checks read them.
    pub ambiguous_writes: Vec<AmbiguousWrite>,
    /// Times a DataStore request was held because its key's per-minute throughput was used up
    /// (Roblox skips it in the queue until the key has room; a request can be held more than
    /// once when others take the room first).
    pub key_throttled: u64,
    /// Log whole stored values with every write (journals need them); when false only
    /// `summarize(value)` is logged (by default the value's `MetaData`), which keeps long fleet
    /// runs light, except for a write landing after its server died, always logged whole (no
    /// `OnAfterSave` will show what it stored).
    pub log_values: bool,
    /// What a write logs when `log_values` is false.
    pub summarize: fn(&Value) -> Value,
    /// Every engine input, when recording in memory ([`World::record`], which alone starts
    /// it: a trace must hold every input from the first; read it with
    /// [`World::traced_inputs`]). `None` once the trace goes to a file.
    pub(crate) trace: Option<Vec<TracedInput>>,
    /// For each recorded input, how many outputs were recorded before it.
    trace_marks: Vec<usize>,
    /// Where the trace goes instead, as the run goes ([`World::stream_trace`]).
    stream: Option<crate::trace::TraceWriter>,
    /// Every engine output, in order, when recording in memory (for replay comparison); set
    /// it to `Some` to collect outputs without recording inputs. `None` once the trace goes
    /// to a file.
    pub outputs: Option<Vec<(usize, Output)>>,
    rng: GuidGenerator,
    requests: BTreeMap<Operation, u64>,
    pending: Agenda,
    /// The DataStore's commits being logged (kept for its allocation).
    commits: Vec<Committed>,
    pages: BTreeMap<(usize, profilestore_core::QueryId), VersionPages>,
    frame: u64,
    /// Engine inputs fed so far (recording must start before the first).
    inputs: u64,
}

impl World {
    /// Builds a world: engines with seeded JobIds and GUID seeds, all with DataStore access;
    /// or why `config` cannot be used ([`WorldConfig::check`], and the DataStore's epoch must
    /// be the world's). The DataStore and the MessagingService checked the rest of their
    /// configurations when they were built.
    pub fn new(
        config: WorldConfig,
        mut datastore: DataStoreService,
        mut messaging: MessagingService,
    ) -> Result<World, ConfigError> {
        config.check()?;
        if datastore.epoch() != config.epoch {
            return Err(ConfigError::EpochMismatch {
                world: config.epoch,
                datastore: datastore.epoch(),
            });
        }
        // The log shows every commit, also those whose call failed ambiguously.
        datastore.watch_commits();
        // Every server runs from the start (until reserved): the messaging limits count it.
        for i in 0..config.servers.len() {
            messaging.add_server(ServerId(i as u64));
        }
        let mut rng = GuidGenerator::new(config.seed);
        let engines = engine_configs(&config, &mut rng);
        let servers = config
            .servers
            .iter()
            .zip(engines)
            .enumerate()
            .map(|(i, (spec, engine))| {
                let engine = Engine::new(engine);
                Server {
                    spec: spec.clone(),
                    deadline: None,
                    deadline_fresh: false,
                    booted_at: 0.0,
                    engine,
                    host: Host::default(),
                    alive: true,
                    stopped_at: None,
                    id: ServerId(i as u64),
                    throttled: Vec::new(),
                    subscriptions: BTreeMap::new(),
                    subscribing: Default::default(),
                }
            })
            .collect();
        Ok(World {
            now: 0.0,
            config,
            servers,
            datastore,
            messaging,
            log: Log::new(),
            datastore_fail: 0.0,
            messaging_fail: 0.0,
            throttled: 0,
            refused: 0,
            subscribes_refused: 0,
            committed_writes: 0,
            ambiguous_writes: Vec::new(),
            key_throttled: 0,
            log_values: true,
            summarize: |v| profilestore_core::json!({"MetaData": v.get("MetaData").cloned().unwrap_or(Value::Null)}),
            trace: None,
            trace_marks: Vec::new(),
            stream: None,
            outputs: None,
            rng,
            requests: BTreeMap::new(),
            pending: Agenda::default(),
            commits: Vec::new(),
            pages: BTreeMap::new(),
            frame: 0,
            inputs: 0,
        })
    }

    /// Starts recording every engine input and output; refused once an engine has had an
    /// input, as a replay starts from fresh engines and a trace must hold every input from the
    /// first (already recording: nothing changes).
    pub fn record(&mut self) -> Result<(), RecordTooLate> {
        if self.recording() {
            return Ok(());
        }
        if self.inputs > 0 {
            return Err(RecordTooLate {
                inputs: self.inputs,
            });
        }
        self.trace = Some(Vec::new());
        self.outputs = Some(Vec::new());
        Ok(())
    }

    /// Every engine input so far, when recording in memory.
    pub fn traced_inputs(&self) -> Option<&[TracedInput]> {
        self.trace.as_deref()
    }

    /// What recording in memory holds (none when not recording, or streaming to a file).
    pub fn recorded(&self) -> Option<Recorded<'_>> {
        Some(Recorded {
            inputs: self.trace.as_deref()?,
            outputs: self.outputs.as_deref()?,
            marks: &self.trace_marks,
        })
    }

    /// Whether the world records its inputs (in memory or to a file).
    fn recording(&self) -> bool {
        self.trace.is_some() || self.stream.is_some()
    }

    /// Sends the recording to `trace` from now on, what was recorded so far first: the run's
    /// memory no longer grows with it, and [`World::outputs`] is no longer collected. Refused
    /// (nothing changes) unless recording in memory: a trace must hold every input from the
    /// first.
    pub fn stream_trace(
        &mut self,
        mut trace: crate::trace::TraceWriter,
    ) -> Result<(), crate::trace::TraceError> {
        let recorded = self
            .recorded()
            .ok_or(crate::trace::TraceError::NotRecorded)?;
        trace.write_recorded(&recorded);
        self.trace = None;
        self.outputs = None;
        self.trace_marks = Vec::new();
        self.stream = Some(trace);
        Ok(())
    }

    /// The first error the trace [`World::stream_trace`] writes or compares has met, if any:
    /// it will not finish.
    pub fn trace_error(&self) -> Option<&crate::trace::TraceError> {
        self.stream.as_ref()?.error()
    }

    /// Ends the trace [`World::stream_trace`] writes or compares (`None` when there is none):
    /// the file in place or the comparison's answer, or the first error met. Nothing is
    /// recorded after.
    pub fn finish_trace(
        &mut self,
    ) -> Option<Result<crate::trace::TraceEnd, crate::trace::TraceError>> {
        self.stream.take().map(crate::trace::TraceWriter::finish)
    }

    /// Sets the probability that a DataStore call fails after its round trips, without effect
    /// (the scenarios' fault windows), or says why not (nothing changes then).
    pub fn set_datastore_fail(&mut self, p: f64) -> Result<(), ConfigError> {
        probability("world.datastore_fail", p)?;
        self.datastore_fail = p;
        Ok(())
    }

    /// Sets the probability that a publish is lost, or says why not (nothing changes then).
    pub fn set_messaging_fail(&mut self, p: f64) -> Result<(), ConfigError> {
        probability("world.messaging_fail", p)?;
        self.messaging_fail = p;
        Ok(())
    }

    /// The clocks server `s` reads now.
    pub fn now_for(&self, s: usize) -> Now {
        Now {
            mono: self.now - self.servers[s].booted_at,
            wall: self.config.epoch + self.now.floor() as i64 + self.servers[s].spec.wall_skew,
        }
    }

    /// Feeds one input to server `s` (recorded when tracing), then executes its outputs. A
    /// server that has stopped (crashed, closed or killed) takes nothing, and one in reserve
    /// nothing but its stores and constants ([`World::reserve`]): the input is refused, naming
    /// the server, and nothing is recorded.
    pub fn feed(&mut self, s: usize, input: Input) -> InputResult {
        if let Some(at) = self.servers[s].stopped_at {
            return InputResult::Done(Err(format!(
                "server {s} is not running: it stopped at t={at:.3}"
            )));
        }
        let setup = matches!(input, Input::NewStore { .. } | Input::SetConstant { .. });
        if !self.servers[s].alive && !setup {
            // A call would send requests and messages from a server that is not running.
            return InputResult::Done(Err(format!(
                "server {s} is in reserve: it takes its stores and constants until it boots"
            )));
        }
        let result = self.apply(s, input);
        self.drain(s);
        result
    }

    /// Feeds `input` to server `s`'s engine (recording it when tracing); its next deadline is read
    /// again at the next step.
    fn apply(&mut self, s: usize, input: Input) -> InputResult {
        let result = self.apply_input(s, input);
        self.servers[s].deadline_fresh = false;
        result
    }

    fn apply_input(&mut self, s: usize, input: Input) -> InputResult {
        self.inputs += 1;
        let recording = self.recording();
        let server = &mut self.servers[s];
        if !recording {
            return server.engine.handle_input(input, &mut server.host);
        }
        let mut rec = Recorder::new(&mut server.host);
        let result = server.engine.handle_input(input.clone(), &mut rec);
        // What the host's live state answered travels with the input.
        let input = input.with_live(rec.answers);
        let traced = TracedInput {
            server: s,
            input,
            result: result.clone(),
            deadline: server.engine.poll_timeout(),
        };
        if let Some(stream) = &mut self.stream {
            stream.input(&traced);
        } else if let Some(trace) = &mut self.trace {
            let before = self.outputs.as_ref().map_or(0, Vec::len);
            self.trace_marks.push(before);
            trace.push(traced);
        }
        result
    }

    /// Tells the DataStore and the MessagingService how many players server `s` has (request
    /// budgets and messaging limits grow with it).
    pub fn set_players(&mut self, s: usize, players: u32) {
        let id = self.servers[s].id;
        // A stopped server counts towards no limit any more (it left them at [`World::stop`]),
        // and one in reserve towards none yet: it has no players until it boots.
        if !self.servers[s].alive {
            return;
        }
        self.datastore.set_player_count(self.now, id, players);
        self.messaging.set_players(id, players);
    }

    /// Server `s` shuts down: `BindToClose` runs ProfileStore's close handling (final saves).
    /// The server closes when it returns ([`Completion::Shutdown`]), or is killed
    /// [`BIND_TO_CLOSE_LIMIT`] after the shutdown began (at the first Heartbeat frame at or
    /// after that, before the frame runs), whichever comes first. A server
    /// that is not running (stopped, crashed, in reserve) is left alone.
    pub fn shutdown(&mut self, s: usize) {
        if !self.servers[s].alive {
            return;
        }
        let now = self.now_for(s);
        self.feed(s, Input::Shutdown { now });
        // On the Heartbeat frame the limit falls on, at that frame's own time: an event at a
        // frame's time goes before the frame, so the server ticks no frame at or after its
        // kill, however the sum rounds.
        let kill_at = self.frame_time(self.frame_at_or_after(self.now + BIND_TO_CLOSE_LIMIT));
        self.schedule(kill_at, Pending::Kill { server: s });
    }

    /// The first Heartbeat frame at or after `t` (within a millionth of a frame: a time that
    /// rounds to just past a frame is that frame's).
    fn frame_at_or_after(&self, t: f64) -> u64 {
        (t * self.config.fps - 1e-6).ceil().max(0.0) as u64
    }

    /// When frame `f` falls.
    fn frame_time(&self, f: u64) -> f64 {
        f as f64 / self.config.fps
    }

    /// Server `s` waits in reserve: stopped, taking nothing, until [`World::boot`]. Only at the
    /// world's start, before the clock moves: a server that has run (or stopped) is left
    /// alone, as a later boot would start its clock again under requests it already sent.
    pub fn reserve(&mut self, s: usize) {
        if self.now > 0.0 || self.servers[s].stopped_at.is_some() {
            return;
        }
        self.servers[s].alive = false;
        self.messaging.remove_server(self.servers[s].id);
    }

    /// A reserved server starts running (a replacement for one that stopped); its engine sees
    /// its first input after this, and its `os.clock()` starts at 0 now. Feed a reserved server
    /// nothing but its stores, at the world's start: an input fed in reserve reads the world's
    /// clock, which its clock after the boot would fall behind. A server not in reserve
    /// (running, or stopped after running) is left alone: its clock does not start again.
    pub fn boot(&mut self, s: usize) {
        if self.servers[s].alive || self.servers[s].stopped_at.is_some() {
            return;
        }
        self.servers[s].alive = true;
        self.messaging.add_server(self.servers[s].id);
        self.servers[s].deadline_fresh = false;
        self.servers[s].booted_at = self.now;
    }

    /// Server `s` dies at once: no final save; its subscriptions are gone, and its requests get
    /// no answer (a write already sent still lands; a read, or an update still to run its
    /// transform, goes no further). A server not running is left alone.
    pub fn crash(&mut self, s: usize) {
        if !self.servers[s].alive {
            return;
        }
        self.stop(s);
        self.log_happening(s, Happening::Crashed);
    }

    /// Server `s` stops running: nothing reaches it any more.
    fn stop(&mut self, s: usize) {
        if !self.servers[s].alive {
            // Already stopped: it stopped then (what it had sent by then still lands).
            return;
        }
        self.servers[s].alive = false;
        self.servers[s].stopped_at = Some(self.now);
        self.messaging.remove_server(self.servers[s].id);
        // Its players no longer count towards the experience's request budgets, and the
        // requests still in its throttle queues never reach the DataStore.
        let id = self.servers[s].id;
        self.datastore.set_player_count(self.now, id, 0);
        self.datastore.server_stopped(self.now, id);
    }

    /// A plain `SetAsync` by server `s` (outside ProfileStore), committed one round trip later
    /// (even if the server has died by then: the request was sent) unless it meets a fault
    /// (`datastore_fail`); one its key's throughput refuses waits until the key has room and
    /// goes then, as a request held for its key does. It takes no request budget (scenarios
    /// run with unlimited budgets).
    /// A server not running (stopped, crashed, in reserve) sends nothing: refused, naming it.
    pub fn raw_set(
        &mut self,
        s: usize,
        store: &str,
        key: &str,
        value: Value,
    ) -> Result<(), String> {
        if !self.servers[s].alive {
            return Err(format!("server {s} is not running: it sends no SetAsync"));
        }
        let at = self.now + self.round_trip();
        self.schedule(
            at,
            Pending::RawSet {
                server: s,
                store: store.to_string(),
                key: key.to_string(),
                value,
                held: None,
            },
        );
        Ok(())
    }

    /// The stored value of `store/key` (read without cache, costs no budget): `None` for a key
    /// never written or removed, and an error where the storage cannot read it (a corrupt row
    /// on disk, say).
    pub fn read_stored(
        &mut self,
        store: &str,
        key: &str,
    ) -> Result<Option<Value>, crate::storage::StorageError> {
        let head = self
            .datastore
            .storage_mut()
            .head(&StoreName::new(store).path(key))?;
        Ok(head
            .and_then(|h| h.value)
            .map(std::sync::Arc::unwrap_or_clone))
    }

    /// [`World::read_stored`] for a world whose storage reads cannot fail (in memory, as the
    /// tests use): a read error reads as `None`. The invariant checks use `read_stored`, which
    /// tells the two apart.
    pub fn stored(&mut self, store: &str, key: &str) -> Option<Value> {
        self.read_stored(store, key).ok().flatten()
    }

    /// Runs the world until virtual time `end`.
    pub fn run_until(&mut self, end: f64) {
        while self.step(end) {}
    }

    /// Processes the next thing that happens at or before `end` — a DataStore answer, a
    /// message delivery or a Heartbeat frame — and returns true; or, when nothing happens
    /// before `end`, moves the clock to `end` (if `end` is not behind it) and returns false.
    pub fn step(&mut self, end: f64) -> bool {
        let fps = self.config.fps;
        // The next Heartbeat frame at which some server has work: frames where no engine has a
        // deadline change nothing (every per-frame rule of the original is a deadline in the
        // engine), so they are skipped rather than ticked.
        for server in &mut self.servers {
            if !server.deadline_fresh {
                // In world time: the engine counts from its boot.
                server.deadline = server.engine.poll_timeout().map(|d| d + server.booted_at);
                server.deadline_fresh = true;
            }
        }
        let due = |server: &Server| {
            debug_assert!(
                server.deadline_fresh || !server.alive,
                "a server's deadline is read after an input reached it"
            );
            server.alive.then_some(server.deadline).flatten()
        };
        let deadline = self.servers.iter().filter_map(due).reduce(f64::min);
        // A deadline already past (a profile joining the auto-save ring brings its next slot
        // forward) fires at the first frame not before the clock: time never runs backwards.
        let first = self.frame_at_or_after(self.now).max(self.frame);
        // A deadline past the last frame the clock numbers (`frame_at_or_after` saturates
        // there: a constant of 1e18 s) is never reached.
        let frame = deadline
            .map(|d| self.frame_at_or_after(d).max(first))
            .filter(|&f| f < u64::MAX);
        let frame_at = frame.map_or(f64::INFINITY, |f| self.frame_time(f));
        let pending_at = self.pending.next_at();
        let message_at = self.messaging.next_delivery();
        let event_at = [pending_at, message_at]
            .into_iter()
            .flatten()
            .reduce(f64::min);
        let next = event_at.map_or(frame_at, |e| e.min(frame_at));
        // Nothing at or before `end` (or nothing at all: `run_until(f64::INFINITY)` runs until
        // the world is quiet): the clock moves to `end` if that is ahead of it. An `end`
        // before the clock, or not a number, runs nothing and leaves the clock and the frames
        // as they are.
        if next > end || end.is_nan() || next.is_infinite() {
            if end.is_finite() && end >= self.now {
                self.now = end;
                let past = ((self.now * fps).floor() as u64).saturating_add(1);
                self.frame = self.frame.max(past);
            }
            return false;
        }
        // (A frame rounds to within 1e-6 of a frame's length below the clock at most.)
        self.now = self.now.max(next);
        if event_at.is_some_and(|e| e <= frame_at) {
            if pending_at == event_at {
                let next = self.pending.pop().expect("checked");
                self.process(next);
            } else if let Some(message) = self.messaging.poll_delivery(self.now) {
                self.deliver(message);
            }
        } else if let Some(f) = frame {
            self.frame = f + 1;
            for s in 0..self.servers.len() {
                if due(&self.servers[s]).is_some_and(|d| d <= frame_at + 1e-6) {
                    let now = self.now_for(s);
                    self.feed(
                        s,
                        Input::Timeout {
                            now,
                            live: LiveAnswers::default(),
                        },
                    );
                }
            }
        }
        true
    }

    fn round_trip(&mut self) -> f64 {
        match self.config.latency {
            LatencyModel::Fixed(rt) => rt,
            LatencyModel::Sampled => self.datastore.sample_latency(),
        }
    }

    fn schedule(&mut self, at: f64, pending: Pending) {
        self.pending.push(at, pending);
    }

    fn log_happening(&mut self, server: usize, what: Happening) {
        self.log.push(Logged {
            t: self.now,
            server,
            what,
        });
    }

    /// Executes everything server `s` asked for. Once the server has stopped (its
    /// `BindToClose` returned earlier in the same outputs), what its engine still puts out is
    /// recorded and its signals and completions logged, but no request leaves it.
    pub fn drain(&mut self, s: usize) {
        while let Some(output) = self.servers[s].engine.poll_output() {
            if let Some(outputs) = &mut self.outputs {
                outputs.push((s, output.clone()));
            }
            if let Some(stream) = &mut self.stream {
                stream.output(s, &output);
            }
            if self.servers[s].stopped_at.is_some() {
                if matches!(output, Output::Event(_) | Output::Completion(_)) {
                    self.log_happening(s, Happening::Output(output));
                }
                continue;
            }
            match output {
                Output::DataStore(request) => {
                    // A GetAsync the server's 4 s cache answers costs no budget and sends
                    // nothing (spec "Caching"): it is answered at once.
                    if matches!(request.kind, DataStoreRequestKind::Get)
                        && self.datastore.is_cached(
                            self.now,
                            self.servers[s].id,
                            &StoreName::new(&request.store),
                            &request.key,
                        )
                    {
                        self.schedule(self.now, Pending::CachedGet { server: s, request });
                        continue;
                    }
                    // Server request budgets (throttle queues of 30) decide when it is sent.
                    let operation = operation_of(&request.kind);
                    let sent_at =
                        match self
                            .datastore
                            .admit(self.now, self.servers[s].id, operation)
                        {
                            Admission::Now => self.now,
                            Admission::QueuedUntil(t) => {
                                self.throttled += 1;
                                let until = t.max(self.now);
                                self.servers[s].note_throttled(self.now, until);
                                until
                            }
                            Admission::Rejected(e) => {
                                self.refused += 1;
                                let pending = Pending::Refused {
                                    server: s,
                                    op: request.op,
                                    error: e.to_core(),
                                };
                                self.schedule(self.now, pending);
                                continue;
                            }
                        };
                    let at = sent_at + self.round_trip();
                    let pending = Pending::Read {
                        server: s,
                        request,
                        sent_at,
                        held: false,
                    };
                    self.schedule(at, pending);
                }
                Output::Messaging(MessagingRequest::Subscribe {
                    subscription,
                    topic,
                }) => {
                    // `SubscribeAsync` yields its caller (spec §0): the subscription starts, and
                    // the call returns, one round trip later.
                    self.servers[s].subscribing.insert(subscription);
                    let at = self.now + self.round_trip();
                    let pending = Pending::Subscribe {
                        server: s,
                        subscription,
                        topic,
                    };
                    self.schedule(at, pending);
                }
                Output::Messaging(MessagingRequest::Unsubscribe { subscription }) => {
                    self.servers[s].subscribing.remove(&subscription);
                    if let Some(id) = self.servers[s].subscriptions.remove(&subscription) {
                        let _ = self.messaging.unsubscribe(id);
                    }
                }
                Output::Messaging(MessagingRequest::Publish { topic, data }) => {
                    let (failed, dropped) = if self.publish_lost() {
                        (Some("fault".to_string()), 0)
                    } else {
                        match self
                            .messaging
                            .publish(self.now, self.servers[s].id, &topic, &data)
                        {
                            Ok(published) => (None, published.lost),
                            Err(e) => (Some(e.to_string()), 0),
                        }
                    };
                    let what = Happening::Published {
                        topic,
                        data,
                        failed,
                        dropped,
                    };
                    self.log_happening(s, what);
                }
                Output::Completion(mut c) => {
                    if let Completion::SessionStart {
                        profile: Some(loaded),
                        ..
                    }
                    | Completion::Get {
                        result: Ok(Some(loaded)),
                        ..
                    } = &mut c
                    {
                        // The host owns Profile.Data and RobloxMetaData from now on: they move to
                        // it, and the logged completion keeps nulls in their place.
                        let host = &mut self.servers[s].host;
                        host.data
                            .insert(loaded.profile, std::mem::take(&mut loaded.data));
                        host.roblox_metadata
                            .insert(loaded.profile, std::mem::take(&mut loaded.roblox_metadata));
                    }
                    let closed = matches!(c, Completion::Shutdown);
                    self.log_happening(s, Happening::Output(Output::Completion(c)));
                    if closed {
                        // BindToClose returned: the server closes (gracefully, no kill), and
                        // nothing its engine puts out after that leaves it.
                        self.stop(s);
                    }
                }
                other => self.log_happening(s, Happening::Output(other)),
            }
        }
    }

    fn deliver(&mut self, message: messaging::Message) {
        let Some(s) = self.servers.iter().position(|x| x.id == message.server) else {
            return;
        };
        if !self.servers[s].alive {
            return;
        }
        let subscription = self.servers[s]
            .subscriptions
            .iter()
            .find(|(_, id)| **id == message.subscription)
            .map(|(c, _)| *c);
        if let Some(subscription) = subscription {
            let now = self.now_for(s);
            self.feed(
                s,
                Input::MessageReceived {
                    now,
                    subscription,
                    data: message.data,
                },
            );
        }
    }

    /// A `SubscribeAsync` call of server `s` arrives: unless the server died or disconnected it
    /// meanwhile, the MessagingService subscribes (or refuses) and the engine hears the result.
    fn subscribe(&mut self, s: usize, subscription: SubscriptionId, topic: &str) {
        if !self.servers[s].alive || !self.servers[s].subscribing.remove(&subscription) {
            return;
        }
        let result = self
            .messaging
            .subscribe(self.now, self.servers[s].id, topic)
            .map_err(|e| e.to_string());
        match &result {
            Ok(id) => {
                self.servers[s].subscriptions.insert(subscription, *id);
            }
            Err(reason) => {
                self.subscribes_refused += 1;
                let what = Happening::SubscribeRefused {
                    topic: topic.to_string(),
                    reason: reason.clone(),
                };
                self.log_happening(s, what);
            }
        }
        let now = self.now_for(s);
        let result = result.map(|_| ());
        self.feed(
            s,
            Input::SubscribeResult {
                now,
                subscription,
                result,
            },
        );
    }

    fn respond(&mut self, s: usize, op: OpId, result: Result<DataStoreResponse, DataStoreError>) {
        let now = self.now_for(s);
        let live = LiveAnswers::default();
        self.feed(
            s,
            Input::DataStoreResponse {
                now,
                op,
                result,
                live,
            },
        );
    }

    fn process(&mut self, pending: Pending) {
        match pending {
            Pending::Read {
                server,
                request,
                sent_at,
                held,
            } => self.read(server, request, sent_at, held),
            Pending::Subscribe {
                server,
                subscription,
                topic,
            } => self.subscribe(server, subscription, &topic),
            Pending::Retransform { server, op, ticket } => {
                if self.servers[server].alive {
                    let output = self.run_transform(server, op, &ticket);
                    let at = self.now + self.round_trip() / 2.0;
                    let pending = Pending::Commit {
                        server,
                        op,
                        ticket,
                        output,
                        retry: true,
                        transformed_at: self.now,
                    };
                    self.schedule(at, pending);
                }
            }
            Pending::Reread { server, op, ticket } => self.reread(server, op, *ticket),
            Pending::Kill { server } => {
                if self.servers[server].alive {
                    self.crash(server);
                }
            }
            Pending::Refused { server, op, error } => {
                if self.servers[server].alive {
                    self.respond(server, op, Err(error));
                }
            }
            Pending::Commit {
                server,
                op,
                ticket,
                output,
                retry,
                transformed_at,
            } => self.commit(server, op, *ticket, output, retry, transformed_at),
            Pending::CachedGet { server, request } => {
                if self.servers[server].alive {
                    let (id, store) = (self.servers[server].id, StoreName::new(&request.store));
                    let read = self.datastore.get_async(
                        self.now,
                        id,
                        &store,
                        &request.key,
                        Default::default(),
                    );
                    let result = read.map(Read::into_response).map_err(|e| e.to_core());
                    self.respond(server, request.op, result);
                }
            }
            Pending::RawSet {
                server,
                store,
                key,
                value,
                held,
            } => {
                // A SetAsync like any other: it counts as a request and meets the world's
                // faults; sent before its server died, it still lands (not one held in the
                // server's queue for its key when the server died: it died there).
                let stopped_at = self.servers[server].stopped_at;
                if let Some(sent) = held
                    && !self.servers[server].alive
                    && !stopped_at.is_some_and(|t| sent <= t)
                {
                    return;
                }
                *self.requests.entry(Operation::Set).or_default() += 1;
                if held.is_none() && self.faulted() {
                    return;
                }
                let name = StoreName::new(&store);
                let id = self.servers[server].id;
                let written = self.datastore.set_async(
                    self.now,
                    id,
                    &name,
                    &key,
                    value.clone(),
                    Default::default(),
                );
                if let Some(at) = written.err().as_ref().and_then(key_ready_at) {
                    // Held in its server's queue until its key has room (counted once, when
                    // it goes), then sent again: it used to be dropped without a trace. A
                    // server no longer running has no queue: it dies there.
                    *self.requests.entry(Operation::Set).or_default() -= 1;
                    if self.servers[server].alive {
                        self.key_throttled += 1;
                        let arrives = at + self.round_trip();
                        let pending = Pending::RawSet {
                            server,
                            store,
                            key,
                            value,
                            held: Some(at),
                        };
                        self.schedule(arrives, pending);
                    }
                    return;
                }
                self.log_commits(server, None, None);
            }
        }
    }

    /// Logs what the DataStore committed during server `s`'s last call: writes, and removals
    /// of a value (an ambiguous failure's commit too, though the call reports an error).
    /// `transformed_at`: when the transform of an update's write ran. Returns the key of the
    /// last write logged, if any.
    fn log_commits(
        &mut self,
        s: usize,
        call: Option<CallId>,
        transformed_at: Option<f64>,
    ) -> Option<Str> {
        let mut written = None;
        let mut commits = std::mem::take(&mut self.commits);
        self.datastore.swap_commits(&mut commits);
        for Committed { path, read } in commits.drain(..) {
            let store = Str::concat(&[path.store(), ":", path.scope()]);
            let what = match read.value.as_deref() {
                None => Happening::Removed {
                    store,
                    key: path.key().clone(),
                },
                Some(value) => {
                    self.committed_writes += 1;
                    // A write that lands after its server died is logged whole: no
                    // `OnAfterSave` will show what it stored, and a summary keeps only what
                    // the fleet's checks read (such writes are few).
                    let value = if self.servers[s].alive {
                        self.logged_value(Some(value))
                    } else {
                        value.clone()
                    };
                    let (user_ids, metadata) = read
                        .key_info
                        .map_or((Vec::new(), Value::Null), |k| (k.user_ids, k.metadata));
                    written = Some(path.key().clone());
                    Happening::Write {
                        store,
                        key: path.key().clone(),
                        value,
                        user_ids,
                        metadata,
                        call,
                        transformed_at,
                    }
                }
            };
            self.log_happening(s, what);
        }
        // Emptied, it keeps its allocation: the next swap hands it to the DataStore.
        self.commits = commits;
        written
    }

    fn logged_value(&self, value: Option<&Value>) -> Value {
        match value {
            Some(v) if self.log_values => v.clone(),
            Some(v) => (self.summarize)(v),
            None => Value::Null,
        }
    }

    /// Whether this DataStore request faults. Like [`World::publish_lost`], no draw when the
    /// rate is 0: a world with faults of one kind only keeps them where they were when the
    /// other kind's requests come and go (an extra publish does not move every later fault).
    fn faulted(&mut self) -> bool {
        self.datastore_fail > 0.0 && self.rng.next_f64() < self.datastore_fail
    }

    /// Whether this publish is lost ([`World::set_messaging_fail`]).
    fn publish_lost(&mut self) -> bool {
        self.messaging_fail > 0.0 && self.rng.next_f64() < self.messaging_fail
    }

    /// DataStore requests executed so far, by API (`UpdateAsync`, `GetAsync`, ...).
    pub fn request_counts(&self) -> BTreeMap<&'static str, u64> {
        self.requests
            .iter()
            .map(|(op, n)| (op.api_name(), *n))
            .collect()
    }

    /// Total DataStore requests executed so far.
    pub fn request_total(&self) -> u64 {
        self.requests.values().sum()
    }

    fn read(&mut self, s: usize, request: DataStoreRequest, sent_at: f64, held: bool) {
        if !self.servers[s].alive {
            // A removal is a write: sent before its server died, it still lands (unless it
            // meets a fault), with no answer; one still waiting in the server's queues died
            // with it, and so does one its key's throughput refuses now (a live server holds
            // that in its queue). Anything else needs the server.
            let sent = self.servers[s].stopped_at.is_some_and(|t| sent_at <= t);
            if request.kind == DataStoreRequestKind::Remove && sent {
                *self.requests.entry(Operation::Remove).or_default() += 1;
                if held || !self.faulted() {
                    let store = StoreName::new(&request.store);
                    let id = self.servers[s].id;
                    let removed = self
                        .datastore
                        .remove_async(self.now, id, &store, &request.key);
                    if removed.as_ref().err().and_then(key_ready_at).is_some() {
                        // Never executed: not counted.
                        *self.requests.entry(Operation::Remove).or_default() -= 1;
                        return;
                    }
                    let call = self.servers[s].engine.op_call(request.op);
                    self.log_commits(s, call, None);
                }
            }
            return;
        }
        let api = operation_of(&request.kind);
        *self.requests.entry(api).or_default() += 1;
        let store = StoreName::new(&request.store);
        let id = self.servers[s].id;
        let now = self.now;
        let result = match &request.kind {
            DataStoreRequestKind::Update => {
                match self.datastore.begin_update(now, id, &store, &request.key) {
                    Ok(ticket) => {
                        let output = self.run_transform(s, request.op, &ticket);
                        // A transform that returns nil (or a JSON null, as `commit_update`
                        // reads it) cancels the write, and one that throws fails the call
                        // (spec "UpdateAsync"): no write request goes out, so the call returns
                        // now and meets no fault of a write.
                        let writes =
                            matches!(&output, Transformed::Write { value, .. } if !value.is_null());
                        if !writes {
                            let transformed_at = self.now;
                            self.commit_now(s, request.op, ticket, output, transformed_at);
                            return;
                        }
                        let at = self.now + self.round_trip();
                        self.schedule(
                            at,
                            Pending::Commit {
                                server: s,
                                op: request.op,
                                ticket: Box::new(ticket),
                                output,
                                retry: false,
                                transformed_at: self.now,
                            },
                        );
                        return;
                    }
                    Err(e) => Err(e),
                }
            }
            _ if !held && self.faulted() => Err(RequestError::RequestRejected {
                detail: FAULT_DETAIL.into(),
            }),
            // A GetAsync the cache could answer was answered when asked (`drain`): one sent
            // paid its budget and reads the DataStore, even if its server's cache was filled
            // while it waited in its queue.
            DataStoreRequestKind::Get => self
                .datastore
                .get_async(
                    now,
                    id,
                    &store,
                    &request.key,
                    GetOptions { use_cache: false },
                )
                .map(Read::into_response),
            DataStoreRequestKind::GetVersion { version } => self
                .datastore
                .get_version_async(now, &store, &request.key, version)
                .map(Read::into_response),
            DataStoreRequestKind::Remove => {
                let removed = self.datastore.remove_async(now, id, &store, &request.key);
                let call = self.servers[s].engine.op_call(request.op);
                self.log_commits(s, call, None);
                removed.map(Read::into_response)
            }
            DataStoreRequestKind::ListVersions {
                query: qid,
                direction,
                min_date,
                max_date,
            } => {
                let query = crate::datastore::VersionQuery {
                    direction: *direction,
                    min_date: *min_date,
                    max_date: *max_date,
                    page_size: 0,
                };
                match self
                    .datastore
                    .list_versions_async(now, &store, &request.key, query)
                {
                    Ok(pages) => {
                        let response = pages.to_response();
                        // Remembered for the query's NextVersionPage requests, while there
                        // are pages left (the engine asks for none after the last).
                        if !pages.is_finished {
                            self.pages.insert((s, *qid), pages);
                        }
                        Ok(response)
                    }
                    Err(e) => Err(e),
                }
            }
            DataStoreRequestKind::NextVersionPage { query } => {
                let Some(pages) = self.pages.get_mut(&(s, *query)) else {
                    let error = DataStoreError {
                        message: "no version listing to advance".into(),
                    };
                    self.respond(s, request.op, Err(error));
                    return;
                };
                let mut pages = pages.clone();
                let r = self.datastore.advance_versions(now, &mut pages);
                let response = pages.to_response();
                if pages.is_finished {
                    self.pages.remove(&(s, *query));
                } else {
                    self.pages.insert((s, *query), pages);
                }
                r.map(|_| response)
            }
        };
        match result {
            Err(e) => match key_ready_at(&e) {
                Some(at) => {
                    // Held in its queue until the key has room (counted once, when it goes),
                    // or dropped if the queue is full (never executed: not counted).
                    *self.requests.entry(api).or_default() -= 1;
                    match self.datastore.hold_for_key(now, id, api, at) {
                        Ok(()) => {
                            // It leaves its queue when the key has room, and travels as any
                            // request does.
                            self.key_throttled += 1;
                            self.servers[s].note_throttled(now, at);
                            let pending = Pending::Read {
                                server: s,
                                request,
                                sent_at: at,
                                held: true,
                            };
                            let arrives = at + self.round_trip();
                            self.schedule(arrives, pending);
                        }
                        Err(full) => {
                            self.refused += 1;
                            self.respond(s, request.op, Err(full.to_core()));
                        }
                    }
                }
                None => self.respond(s, request.op, Err(e.to_core())),
            },
            Ok(response) => self.respond(s, request.op, Ok(response)),
        }
    }

    /// Holds update `op` in its server's queues until its key has room (`error` says when,
    /// unless it cannot wait): it goes then, reading the key again a round trip later
    /// ([`Pending::Reread`]). Without room in the queues, the queue's error answers the call.
    fn hold_update(&mut self, s: usize, op: OpId, ticket: Box<ReadTicket>, error: RequestError) {
        let error = match key_ready_at(&error) {
            Some(at) => {
                let id = self.servers[s].id;
                match self
                    .datastore
                    .hold_for_key(self.now, id, Operation::Update, at)
                {
                    Ok(()) => {
                        self.key_throttled += 1;
                        self.servers[s].note_throttled(self.now, at);
                        let arrives = at + self.round_trip();
                        self.schedule(
                            arrives,
                            Pending::Reread {
                                server: s,
                                op,
                                ticket,
                            },
                        );
                        return;
                    }
                    Err(full) => {
                        self.refused += 1;
                        full
                    }
                }
            }
            None => error,
        };
        self.respond(s, op, Err(error.to_core()));
    }

    /// An update held for its key reaches the DataStore again: the transform runs on the
    /// key's current value, and the write goes a round trip later. One whose server died
    /// while it waited died with it (nothing was sent).
    fn reread(&mut self, s: usize, op: OpId, ticket: ReadTicket) {
        if !self.servers[s].alive {
            return;
        }
        match self.datastore.reread_update(self.now, &ticket) {
            Ok(fresh) => {
                let output = self.run_transform(s, op, &fresh);
                let at = self.now + self.round_trip();
                let pending = Pending::Commit {
                    server: s,
                    op,
                    ticket: Box::new(fresh),
                    output,
                    retry: true,
                    transformed_at: self.now,
                };
                self.schedule(at, pending);
            }
            Err(e) if key_ready_at(&e).is_some() => self.hold_update(s, op, Box::new(ticket), e),
            Err(e) => self.respond(s, op, Err(e.to_core())),
        }
    }

    fn run_transform(&mut self, s: usize, op: OpId, ticket: &ReadTicket) -> Transformed {
        let wall = self.now_for(s).wall;
        if !self.recording() {
            // An input like any other (recording would trace it through `apply`).
            self.inputs += 1;
            let server = &mut self.servers[s];
            let result =
                server
                    .engine
                    .transform(op, ticket.value.as_deref(), wall, &mut server.host);
            server.deadline_fresh = false;
            return result;
        }
        let result = self.apply(
            s,
            Input::Transform {
                op,
                current: ticket.value.as_deref().cloned(),
                wall,
                live: LiveAnswers::default(),
            },
        );
        match result {
            InputResult::Transformed(t) => t.into(),
            _ => Transformed::Cancel,
        }
    }

    /// An update's write reaches the DataStore. A call meets the world's faults once, at its
    /// first write (`retry` is false); a conflict's second write or a write held for the key's
    /// throughput does not draw again.
    fn commit(
        &mut self,
        s: usize,
        op: OpId,
        ticket: ReadTicket,
        output: Transformed,
        retry: bool,
        transformed_at: f64,
    ) {
        if !self.servers[s].alive {
            // The server died after its transform ran: the write was on its way and lands
            // (a write "may still have been applied", spec "Error codes"), unless it meets a
            // fault or needs the transform again (another writer came first, or the key had
            // no room); no answer reaches anyone.
            if retry || !self.faulted() {
                let _ = self.datastore.commit_update(self.now, ticket, output);
                let call = self.servers[s].engine.op_call(op);
                self.log_commits(s, call, Some(transformed_at));
            }
            return;
        }
        if !retry && self.faulted() {
            // A write the DataStore cannot take is refused for that before it is sent, as
            // under the DataStore's own faults: not retried as a server error.
            let error = match self.datastore.check_write(&output) {
                Err(unstorable) => unstorable.to_core(),
                Ok(()) => DataStoreError {
                    message: FAULT_MESSAGE.into(),
                },
            };
            self.respond(s, op, Err(error));
            return;
        }
        self.commit_now(s, op, ticket, output, transformed_at);
    }

    /// Commits an update's write; on a conflict the transform runs again, on the server, with
    /// the newer value: half a round trip for the value to come back, half for the write to go
    /// again (so yet another writer can land in between).
    fn commit_now(
        &mut self,
        s: usize,
        op: OpId,
        ticket: ReadTicket,
        output: Transformed,
        transformed_at: f64,
    ) {
        let result = {
            let commit = self.datastore.commit_update(self.now, ticket, output);
            // Asked before the answer: the operation is still in flight.
            let call = self.servers[s].engine.op_call(op);
            let written = self.log_commits(s, call, Some(transformed_at));
            if let (Err(_), Some(key)) = (&commit, written) {
                self.ambiguous_writes.push(AmbiguousWrite {
                    at: self.now,
                    key,
                    server: s,
                    call,
                });
            }
            match commit {
                Ok(UpdateCommit::Committed(read)) => Ok(read.into_response()),
                Ok(UpdateCommit::Cancelled) => Ok(DataStoreResponse::Value {
                    value: None,
                    key_info: None,
                }),
                Ok(UpdateCommit::Conflict(fresh)) => {
                    // Roblox calls the transform again with the newer value.
                    let at = self.now + self.round_trip() / 2.0;
                    let pending = Pending::Retransform {
                        server: s,
                        op,
                        ticket: Box::new(fresh),
                    };
                    self.schedule(at, pending);
                    return;
                }
                Ok(UpdateCommit::Throttled { ticket, error, .. }) => {
                    return self.hold_update(s, op, ticket, error);
                }
                Err(e) => Err(e.to_core()),
            }
        };
        self.respond(s, op, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messaging::MessagingConfig;

    /// A world of one server, `S0`, at 60 fps with fixed 0.15 s round trips.
    fn one_server() -> World {
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
        World::new(config, ds, ms).unwrap()
    }

    /// A server's throttles are kept as spans, overlapping ones merged, and asked about a
    /// window: a throttle over before it or begun after it is not in it.
    #[test]
    fn throttles_are_spans_asked_about_a_window() {
        let mut world = one_server();
        let server = &mut world.servers[0];
        assert_eq!(
            (server.throttled_until(), server.throttled_between(0.0, 1e9)),
            (None, false)
        );
        for (from, until) in [(10.0, 20.0), (15.0, 18.0), (20.0, 25.0), (40.0, 50.0)] {
            server.note_throttled(from, until);
        }
        assert_eq!(server.throttled, [(10.0, 25.0), (40.0, 50.0)]);
        assert_eq!(server.throttled_until(), Some(50.0));
        for (from, to, throttled) in [
            (0.0, 9.0, false),
            (0.0, 10.0, true),
            (25.0, 30.0, true),
            (26.0, 39.0, false),
            (30.0, 45.0, true),
            (50.0, 60.0, true),
            (51.0, 60.0, false),
        ] {
            assert_eq!(
                server.throttled_between(from, to),
                throttled,
                "{from}..{to}"
            );
        }
    }

    /// A shutdown's kill falls on the Heartbeat frame its 30 s end on, at that frame's own
    /// time, so the closing server ticks no frame at or after its kill: shut down at frame 251
    /// (60 fps), `now + 30` rounds to just after frame 2051's time (which a frame would then
    /// have run first), and the kill is at exactly that frame's time.
    #[test]
    fn a_shutdown_is_killed_on_the_frame_its_limit_falls_on() {
        let mut world = one_server();
        let start = 251.0 / 60.0;
        world.run_until(start);
        assert_eq!(world.now, start);
        assert!(
            start + BIND_TO_CLOSE_LIMIT > 2051.0 / 60.0,
            "the sum rounds past the frame"
        );
        world.shutdown(0);
        let kills: Vec<f64> = (world.pending.heap.iter())
            .filter(|e| {
                matches!(
                    world.pending.slots[e.slot as usize],
                    Some(Pending::Kill { .. })
                )
            })
            .map(|e| e.at.0)
            .collect();
        assert_eq!(kills, [2051.0 / 60.0]);
    }
}
