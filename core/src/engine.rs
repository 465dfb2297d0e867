//! The engine: one game server's ProfileStore (DESIGN.md §2).
//!
//! This module owns the plumbing every concept shares: stores, the profile table and the
//! active-session registry (spec §5.1), the per-key queue of DataStore operations and how an
//! operation reaches the live DataStore or a mock store (spec §4, §6, §14), error registration
//! and `OnOverwrite` (spec §4 step 6, §12), timers, ticks, shutdown (spec §9.4) and the output
//! queue. Session start, saves, messages and the read-side APIs live in their own modules as
//! further `impl Engine` blocks.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use crate::value::{Str, Value};

use crate::autosave::AutoSaveRing;
use crate::constants::Constants;
use crate::critical::CriticalState;
use crate::error::ApiError;
use crate::guid::GuidGenerator;
use crate::messages::MessageCall;
use crate::mock::{MockStore, MockWrite};
use crate::profile::{DataProblem, Profile};
use crate::protocol::*;
use crate::queue::{Domain, RequestQueue, Token};
use crate::read::{GetCall, Parked, VersionQuery};
use crate::save::SaveJob;
use crate::session::StartJob;
use crate::timers::{Timer, Timers};
use crate::wire::{self, ServerIdentity};

/// One frame of Roblox's 60 Hz Heartbeat: how long a mock operation takes (spec §14).
pub const FRAME: f64 = 1.0 / 60.0;

/// What an engine is constructed with.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EngineConfig {
    /// `game.PlaceId` / `game.JobId`.
    pub identity: ServerIdentity,
    /// Seed of the session-GUID generator, which also draws on `identity`: servers given one
    /// seed still draw GUIDs of their own ([`crate::guid::GuidGenerator::for_server`]).
    pub seed: u64,
    /// `DataStoreState` at start: `Access` on a live server; `NotReady` in Studio, and only there
    /// (the engine takes a start in another state for Studio: mock-mode warnings are Studio's).
    /// The access probe is the host's to run (spec §13: `SetAsync("____PS", os.time())` on the
    /// DataStore `"____PS"`, in a spawned thread): it reports the outcome with
    /// [`Engine::handle_datastore_state`] (or [`crate::Input::DataStoreState`]), read with
    /// [`DataStoreState::from_probe`]. Until then, calls that need the DataStore wait.
    pub datastore_state: DataStoreState,
}

/// The host's live state, read when the original reads it: a profile's `Data` and
/// `RobloxMetaData` when a transform runs (spec §4 "Transform re-execution": the core never
/// keeps a copy of `Profile.Data` as the truth), a start's `Cancel` at each attempt, inside
/// its transform and after each result (spec §5.2 step 7).
pub trait LiveState {
    /// The current `Profile.Data` of `profile`: asked for every profile the engine still holds
    /// ([`Engine::profile`] is `Some`), one the host passed to [`Engine::forget_profile`]
    /// included while its last save is still to be made.
    fn data(&mut self, profile: ProfileId) -> Value;
    /// The current `Profile.RobloxMetaData` of `profile`.
    fn roblox_metadata(&mut self, profile: ProfileId) -> Value;
    /// Evaluates a cancellable session start's `Cancel` predicate (spec §5.2). Only called for
    /// calls started with `cancellable: true`; once it returns true the engine remembers it.
    fn cancel_requested(&mut self, call: CallId) -> bool {
        let _ = call;
        false
    }
}

/// A store object from `ProfileStore.New`, or its `.Mock` twin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreRef {
    /// The store.
    pub store: StoreId,
    /// True for `store.Mock`.
    pub mock: bool,
}

impl StoreId {
    /// The store itself (`store:StartSessionAsync`).
    pub fn live(self) -> StoreRef {
        StoreRef {
            store: self,
            mock: false,
        }
    }

    /// `store.Mock`.
    pub fn mock(self) -> StoreRef {
        StoreRef {
            store: self,
            mock: true,
        }
    }
}

pub(crate) struct Store {
    pub name: Str,
    pub template: Value,
}

/// What a queued DataStore operation is for.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum OpKind {
    /// A session-start write for the load job of the op's token.
    Start,
    /// A save job.
    Save(u64),
    /// A `MessageAsync` write.
    Message(CallId),
    /// A `GetAsync` read (with or without version).
    Get(CallId),
    /// A `RemoveAsync`.
    Remove(CallId),
}

/// What the last transform run of an operation found, for interpreting its result.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub(crate) enum OpNote {
    #[default]
    None,
    /// A save found no profile at the key (removed or junk) and wrote nothing.
    NotAProfile,
    /// An ending save found `Profile.Data` unsavable (not a table, or nested too deep) and
    /// kept the stored `Data`.
    DataRejected(DataProblem),
    /// A message write dropped this many of the oldest entries (`MAX_MESSAGE_QUEUE`).
    DroppedMessages(usize),
    /// A message write found no id left above the key's counter (this one) and wrote nothing.
    NoMessageId(f64),
}

pub(crate) struct Op {
    pub token: Token,
    pub kind: OpKind,
    pub note: OpNote,
    /// Sent to its DataStore (its key's queue let it go). An op still waiting in the queue has
    /// no request out: a transform or an answer for it is a host error, and is refused.
    pub sent: bool,
    /// Its latest transform returned a write: only then does an update's answer carry a
    /// value (a DataStore answers a cancelled update with nil, and fails a throwing one).
    pub wrote: bool,
    /// What that write could not keep of a malformed stored value ([`wire::repair_losses`]):
    /// warned about once it commits.
    pub lost: Option<String>,
}

/// How an operation ended, after the update wrapper's checks (spec §4 steps 4–6).
pub(crate) enum Outcome {
    /// The value (committed, or read and completed locally) and its key info; a committed or
    /// read value is shared with the DataStore's copy.
    Ok {
        value: Arc<Value>,
        key_info: Option<KeyInfo>,
    },
    /// The operation failed (error registered where the original registers it).
    Failed(DataStoreError),
}

/// One game server's ProfileStore.
///
/// Methods come in four kinds (quinn-proto's taxonomy):
///
/// - **getters**: [`datastore_state`](Self::datastore_state), [`is_closing`](Self::is_closing),
///   [`is_critical_state`](Self::is_critical_state), [`profile`](Self::profile),
///   [`is_active`](Self::is_active), [`constants`](Self::constants), [`template`](Self::template);
/// - **API calls** (mutators; those that can start a request or a timer take `now`):
///   [`new_store`](Self::new_store),
///   [`set_constant`](Self::set_constant), [`start_session`](Self::start_session),
///   [`cancel_session_start`](Self::cancel_session_start), [`end_session`](Self::end_session),
///   [`save`](Self::save), [`set_async`](Self::set_async), [`message`](Self::message),
///   [`add_message_handler`](Self::add_message_handler),
///   [`message_processed`](Self::message_processed), [`get`](Self::get),
///   [`remove`](Self::remove), [`version_query`](Self::version_query),
///   [`version_query_next`](Self::version_query_next), [`add_user_id`](Self::add_user_id),
///   [`remove_user_id`](Self::remove_user_id), [`shutdown`](Self::shutdown),
///   [`forget_profile`](Self::forget_profile), [`forget_version_query`](Self::forget_version_query);
/// - **inputs** (`handle_*` and [`transform`](Self::transform)): time passing, DataStore and
///   MessagingService results, the Studio access probe;
/// - **outputs**: [`poll_output`](Self::poll_output) until it returns `None`, then
///   [`poll_timeout`](Self::poll_timeout) for the next wake-up.
///
/// Drain `poll_output` after every call before feeding the next timeout; `handle_input` refuses
/// a timeout while outputs wait.
///
/// Times must be finite and never go back: [`handle_input`](Self::handle_input) refuses an input
/// whose `now.mono` is not finite or is before an earlier input's, but the methods called
/// directly take `now` as given. A host calling them must make the same checks: a NaN time sets
/// timers that never order with the others (one fires only after every other timer), and a NaN
/// auto-save time stops the auto-save ring for good.
pub struct Engine {
    /// The latest monotonic time an input brought through [`Engine::handle_input`].
    pub(crate) last_mono: f64,
    pub(crate) identity: ServerIdentity,
    pub(crate) state: DataStoreState,
    pub(crate) constants: Constants,
    pub(crate) closing: bool,
    pub(crate) stores: Vec<Store>,
    // Hashed tables are looked up, and iterated only to search or to collect what is then
    // sorted (nothing hash-ordered reaches an output): hashing a token is much cheaper than
    // comparing its strings down a B-tree, and a numeric handle is found in one probe however
    // many profiles a server holds.
    pub(crate) profiles: HashMap<ProfileId, Profile>,
    pub(crate) registry: HashMap<Token, ProfileId>,
    queue: RequestQueue,
    ops: HashMap<OpId, Op>,
    pub(crate) page_ops: BTreeMap<OpId, QueryId>,
    pub(crate) load_jobs: HashMap<Token, StartJob>,
    pub(crate) saves: HashMap<u64, SaveJob>,
    pub(crate) ending_saves: HashMap<Token, usize>,
    /// What a repairing write that failed could not keep ([`wire::repair_losses`]), by key:
    /// a write that failed ambiguously may have stored the repair, so the key's next write,
    /// finding nothing more to repair, warns with it; forgotten by a transform that finds no
    /// profile in the key (removed, or overwritten by another tool).
    unconfirmed_repairs: BTreeMap<Token, String>,
    /// Keys whose last final save landed while a DataStore answer was handled: a start waiting
    /// behind it resumes at the end of that answer, asking its `Cancel` first.
    pub(crate) landed_final_saves: Vec<Token>,
    pub(crate) message_calls: BTreeMap<CallId, MessageCall>,
    pub(crate) get_calls: BTreeMap<CallId, GetCall>,
    pub(crate) queries: BTreeMap<QueryId, VersionQuery>,
    pub(crate) subscriptions: BTreeMap<SubscriptionId, ProfileId>,
    /// Subscriptions whose `SubscribeAsync` has not returned yet (spec §10.4): one whose
    /// session ends meanwhile is disconnected when it returns, not before.
    pub(crate) subscribing: BTreeSet<SubscriptionId>,
    pub(crate) parked: Vec<Parked>,
    pub(crate) ring: AutoSaveRing,
    critical: CriticalState,
    pub(crate) timers: Timers,
    user_mock: MockStore,
    fallback_mock: MockStore,
    pub(crate) guids: GuidGenerator,
    outputs: VecDeque<Output>,
    next_id: u64,
    shutdown_pending: bool,
    /// Running in Studio (`RunService:IsStudio()`): a live server starts with `Access`, Studio
    /// with the probe still to answer ([`EngineConfig::datastore_state`], spec §3.1).
    pub(crate) studio: bool,
    pub(crate) warned_mock_versions: bool,
}

impl Engine {
    /// A new engine for one server.
    pub fn new(config: EngineConfig) -> Engine {
        let guids = GuidGenerator::for_server(
            config.seed,
            config.identity.place_id,
            &config.identity.job_id,
        );
        Engine {
            last_mono: f64::NEG_INFINITY,
            studio: config.datastore_state != DataStoreState::Access,
            identity: config.identity,
            state: config.datastore_state,
            constants: Constants::default(),
            closing: false,
            stores: Vec::new(),
            profiles: HashMap::default(),
            registry: HashMap::default(),
            queue: RequestQueue::default(),
            ops: HashMap::default(),
            page_ops: BTreeMap::new(),
            load_jobs: HashMap::default(),
            saves: HashMap::default(),
            ending_saves: HashMap::default(),
            unconfirmed_repairs: BTreeMap::new(),
            landed_final_saves: Vec::new(),
            message_calls: BTreeMap::new(),
            get_calls: BTreeMap::new(),
            queries: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            subscribing: BTreeSet::new(),
            parked: Vec::new(),
            ring: AutoSaveRing::default(),
            critical: CriticalState::default(),
            timers: Timers::default(),
            user_mock: MockStore::default(),
            fallback_mock: MockStore::default(),
            guids,
            outputs: VecDeque::new(),
            next_id: 0,
            shutdown_pending: false,
            warned_mock_versions: false,
        }
    }

    // ---------------------------------------------------------------- getters

    /// `ProfileStore.DataStoreState`.
    pub fn datastore_state(&self) -> DataStoreState {
        self.state
    }

    /// `ProfileStore.IsClosing`.
    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// `ProfileStore.IsCriticalState`.
    pub fn is_critical_state(&self) -> bool {
        self.critical.is_critical()
    }

    /// The current constants.
    pub fn constants(&self) -> &Constants {
        &self.constants
    }

    /// This server's identity.
    pub fn identity(&self) -> &ServerIdentity {
        &self.identity
    }

    /// A profile object.
    pub fn profile(&self, id: ProfileId) -> Option<&Profile> {
        self.profiles.get(&id)
    }

    /// `Profile:IsActive()`: the registry entry for the profile's token is this profile.
    pub fn is_active(&self, id: ProfileId) -> bool {
        let active = self.profiles.get(&id).is_some_and(|p| p.registered);
        debug_assert_eq!(
            active,
            self.profiles
                .get(&id)
                .is_some_and(|p| self.registry.get(&p.token) == Some(&id)),
            "profile {id:?}: the registered flag and the registry disagree"
        );
        active
    }

    /// The API call an operation in flight serves, for the calls that have one
    /// (`MessageAsync`, `GetAsync`, `RemoveAsync`); `None` for a session's own writes (start,
    /// saves) and for an operation that has finished. A harness uses it to tell which call an
    /// ambiguous write (committed although an error is returned) belonged to.
    pub fn op_call(&self, op: OpId) -> Option<CallId> {
        match self.ops.get(&op)?.kind {
            OpKind::Message(call) | OpKind::Get(call) | OpKind::Remove(call) => Some(call),
            OpKind::Start | OpKind::Save(_) => None,
        }
    }

    /// The active profiles, in auto-save ring order.
    pub fn active_profiles(&self) -> Vec<ProfileId> {
        self.ring.profiles().collect()
    }

    /// The template of a store (kept by reference in the original; here by value: see
    /// [`Engine::set_template`]).
    pub fn template(&self, store: StoreId) -> Option<&Value> {
        self.store(store).map(|s| &s.template)
    }

    /// The name of a store.
    pub fn store_name(&self, store: StoreId) -> Option<&str> {
        self.store(store).map(|s| s.name.as_str())
    }

    /// True when the per-key queue holds nothing (the original's test checks this).
    pub fn queue_is_idle(&self) -> bool {
        self.queue.busy_tokens() == 0
    }

    /// Number of profile objects the engine still tracks (active, ending, ended, view).
    pub fn profile_count(&self) -> usize {
        self.profiles.len()
    }

    // ---------------------------------------------------------------- store and constants

    /// `ProfileStore.New(store_name, template)` (spec §3.2). The template must be a table; a
    /// field of it holding JSON null, at any level, is no field (a Luau table cannot hold nil:
    /// `Reconcile` skips it), so the profiles made from it never store one.
    pub fn new_store(&mut self, name: &str, template: Value) -> Result<StoreId, ApiError> {
        if name.is_empty() {
            return Err(ApiError::EmptyStoreName);
        }
        if name.len() > crate::error::MAX_NAME_LEN {
            return Err(ApiError::StoreNameTooLong);
        }
        check_template(&template)?;
        self.stores.push(Store {
            name: name.into(),
            template: crate::reconcile::without_null_fields(&template),
        });
        Ok(StoreId(self.stores.len() as u64 - 1))
    }

    /// Replaces a store's template. The original keeps the caller's template table by
    /// reference (spec §3.2): a change to it shows in the next new profile, `Reconcile` and
    /// the template view of `GetAsync`. The engine holds a value, so a host whose language
    /// shares tables (the Luau host) passes the template's current contents before a call that
    /// reads it; a host that never changes its template need not call this. Refused, changing
    /// nothing, the template checked first: a template that is not a table, nests too deep or
    /// is larger than a key holds (`TemplateTooLarge`), then an unknown store. As in
    /// [`Engine::new_store`], a field holding JSON null is left out (a Luau table cannot hold
    /// nil), so new profiles never store one.
    pub fn set_template(&mut self, store: StoreId, template: Value) -> Result<(), ApiError> {
        check_template(&template)?;
        let s = self
            .stores
            .get_mut(usize::try_from(store.0).unwrap_or(usize::MAX))
            .ok_or(ApiError::UnknownStore(store.0))?;
        s.template = crate::reconcile::without_null_fields(&template);
        Ok(())
    }

    /// `ProfileStore.SetConstant(name, value)` (spec §2), rejecting values that cannot work.
    pub fn set_constant(&mut self, name: &str, value: f64) -> Result<(), ApiError> {
        let before = self.constants.clone();
        self.constants.set(name, value)?;
        self.critical.constants_changing(&before);
        Ok(())
    }

    // ---------------------------------------------------------------- outputs

    /// The next thing the host must do, or `None` when drained.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The monotonic time at which [`handle_timeout`](Self::handle_timeout) must next be called,
    /// or `None` when nothing is scheduled. It can be a time already past (a profile joining
    /// the auto-save ring late, a constant changed while critical): call it at once then, with
    /// the current time. Read it again after every input: any input can move it.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<f64> {
        let ring = self.ring.next_deadline(self.constants.auto_save_period);
        let critical = self.critical.next_deadline(&self.constants);
        [self.timers.next_deadline(), ring, critical]
            .into_iter()
            .flatten()
            .reduce(f64::min)
    }

    pub(crate) fn emit(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    pub(crate) fn complete(&mut self, completion: Completion) {
        self.outputs.push_back(Output::Completion(completion));
    }

    pub(crate) fn messaging(&mut self, request: MessagingRequest) {
        self.outputs.push_back(Output::Messaging(request));
    }

    pub(crate) fn warn(&mut self, message: String) {
        self.emit(Event::Warn { message });
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(crate) fn new_call(&mut self) -> CallId {
        CallId(self.next_id())
    }

    // ---------------------------------------------------------------- inputs

    /// Time passed: fires due timers (waits and backoffs end, mock operations complete), then
    /// runs the Heartbeat work: the auto-save ring (spec §7) and the critical-state evaluation
    /// (spec §12). Call it at [`poll_timeout`](Self::poll_timeout), or every frame, with
    /// [`poll_output`](Self::poll_output) drained first: [`Engine::handle_input`] refuses a
    /// timeout while outputs wait; called directly, the timeout's outputs queue behind them.
    pub fn handle_timeout(&mut self, now: Now, live: &mut dyn LiveState) {
        while let Some(timer) = self.timers.pop_due(now.mono) {
            match timer {
                Timer::ConflictWait(token) | Timer::StartBackoff(token) => {
                    self.ask_cancel(&token, live);
                    self.attempt(now, &token)
                }
                Timer::SaveRetry(id) => self.retry_save(now, id),
                Timer::MessageRetry(call) => self.attempt_message(now, call),
                Timer::GetRetry(call) => self.attempt_get(now, call),
                Timer::MockOp(op) => self.run_mock_op(now, op, live),
                Timer::ShutdownWithoutAccess => self.complete(Completion::Shutdown),
            }
        }
        for profile in self.ring.due(now.mono, self.constants.auto_save_period) {
            self.begin_save(now, profile, crate::save::SaveMode::Regular);
        }
        if let Some(is_critical) = self.critical.tick(now.mono, &self.constants) {
            self.emit(Event::OnCriticalToggle { is_critical });
            let text = if is_critical {
                "Entered critical state"
            } else {
                "Critical state ended"
            };
            self.warn(format!("[ProfileStore]: {text}"));
        }
    }

    /// Runs the transform of the update `op` against the value the DataStore currently holds,
    /// reading live state from `live` (spec §4). The DataStore may call this several times for
    /// one request; every call reflects the state at that moment. An unknown or finished `op`
    /// gets [`Transformed::Cancel`]; an `op` still waiting in its key's queue (no request was
    /// sent for it, or a mock store's, which never goes out: a host error) gets
    /// [`Transformed::Error`] naming it.
    pub fn transform(
        &mut self,
        op: OpId,
        current: Option<&Value>,
        wall: i64,
        live: &mut dyn LiveState,
    ) -> Transformed {
        if self.is_mock_op(op) {
            Transformed::Error(ApiError::MockOp(op.0).to_string())
        } else {
            self.run_transform(op, current, wall, live)
        }
    }

    /// Whether `op` is a version listing's request (answered with pages).
    pub(crate) fn is_page_op(&self, op: OpId) -> bool {
        self.page_ops.contains_key(&op)
    }

    /// The key of `op` when it is a session start's request.
    pub(crate) fn start_token(&self, op: OpId) -> Option<Token> {
        self.ops
            .get(&op)
            .filter(|o| matches!(o.kind, OpKind::Start))
            .map(|o| o.token.clone())
    }

    /// Whether `op` is an update (a start, a save, a message) whose latest transform did not
    /// write: it was not run, or returned nil or an error.
    pub(crate) fn is_unwritten_update(&self, op: OpId) -> bool {
        self.ops.get(&op).is_some_and(|o| {
            matches!(o.kind, OpKind::Start | OpKind::Save(_) | OpKind::Message(_)) && !o.wrote
        })
    }

    /// Whether `op` is a mock store's operation, still running (the engine answers it itself).
    pub(crate) fn is_mock_op(&self, op: OpId) -> bool {
        self.ops
            .get(&op)
            .is_some_and(|o| o.token.domain() != Domain::Live)
    }

    /// [`Engine::transform`] for an op the engine runs, a mock one included.
    fn run_transform(
        &mut self,
        op: OpId,
        current: Option<&Value>,
        wall: i64,
        live: &mut dyn LiveState,
    ) -> Transformed {
        let kind = match self.ops.get(&op) {
            Some(o) if o.sent => o.kind.clone(),
            Some(_) => return Transformed::Error(ApiError::OpNotSent(op.0).to_string()),
            None => return Transformed::Cancel,
        };
        let (result, note) = match kind {
            OpKind::Start => {
                let token = self.ops[&op].token.clone();
                (
                    self.start_transform(&token, current, wall, live),
                    OpNote::None,
                )
            }
            OpKind::Save(id) => self.save_transform(id, current, wall, live),
            OpKind::Message(call) => self.message_transform(call, current, wall),
            OpKind::Get(_) | OpKind::Remove(_) => (Transformed::Cancel, OpNote::None),
        };
        if let Some(o) = self.ops.get_mut(&op) {
            o.note = note;
            o.wrote = matches!(result, Transformed::Write { .. });
            o.lost = match &result {
                Transformed::Write { value, .. } => wire::repair_losses(current, value),
                _ => None,
            };
            // The key holds no profile now (removed, by this server or another, or overwritten
            // by another tool): whatever a failed write may have stored of a repair is gone.
            if !self.unconfirmed_repairs.is_empty()
                && !matches!(wire::classify_ref(current), wire::ClassifiedRef::Valid(_))
            {
                self.unconfirmed_repairs.remove(&o.token);
            }
        }
        result
    }

    /// The DataStore answered request `op` (spec §4 steps 4–6): the queue slot is handed to the
    /// next waiter first, then the result is interpreted — except for a start waiting behind a
    /// final save, whose turn comes after the save's result (deviation 9). A session start's
    /// `Cancel` is asked first ([`LiveState::cancel_requested`]: the original calls it after
    /// each result, spec §5.2 step 7).
    ///
    /// An answer the request cannot take is refused, naming the request, and changes nothing,
    /// as [`Engine::handle_input`] refuses it: a page for anything but a version listing, a
    /// value for a listing, a value without key info, a value for an update whose latest
    /// transform did not write (taken as committed, a final save would count a lock released
    /// that is still stored), an answer for a request answered already or never sent, still
    /// queued, or a mock store's (which never goes out: the engine completes it itself).
    pub fn handle_datastore_response(
        &mut self,
        now: Now,
        op: OpId,
        result: Result<DataStoreResponse, DataStoreError>,
        live: &mut dyn LiveState,
    ) -> Result<(), ApiError> {
        self.check_datastore_response(op, &result)?;
        self.answer_op(now, op, result, live);
        Ok(())
    }

    /// [`Engine::handle_datastore_response`] for any op, a mock one included (its timer's).
    pub(crate) fn answer_op(
        &mut self,
        now: Now,
        op: OpId,
        result: Result<DataStoreResponse, DataStoreError>,
        live: &mut dyn LiveState,
    ) {
        if let Some(query) = self.page_ops.remove(&op) {
            self.on_version_page(now, query, result);
            return;
        }
        // An answer for an op still queued (a host error, refused by `handle_input`) must not
        // release its key's queue: the op that holds it is still out.
        if self.is_queued(op) {
            return;
        }
        if let Some(token) = self.start_token(op) {
            self.ask_cancel(&token, live);
        }
        let Some(op_state) = self.ops.remove(&op) else {
            return;
        };
        let next = self.queue.release(&op_state.token);
        // A start queued behind a final save takes its turn once the save's result is known:
        // if the save is to retry, the start waits for it (deviation for spec §19 item 9)
        // instead of writing first. Every other op starts before the result is handled.
        let start_after = next.filter(|n| {
            matches!(self.ops.get(n).map(|o| &o.kind), Some(OpKind::Start))
                && self.is_final_save(&op_state.kind)
        });
        if let Some(next) = next
            && start_after.is_none()
        {
            self.start_op(now, next);
        }
        self.finish_op(now, op_state, result);
        if let Some(next) = start_after {
            self.start_op(now, next);
        }
        for token in std::mem::take(&mut self.landed_final_saves) {
            self.resume_behind_final_save(now, &token, live);
        }
    }

    /// Whether an op of `kind` is a final save (a save that ends its session).
    pub(crate) fn is_final_save(&self, kind: &OpKind) -> bool {
        matches!(kind, OpKind::Save(id)
            if self.saves.get(id).is_some_and(|j| matches!(j.mode, crate::save::SaveMode::Ending(_))))
    }

    /// Whether a final save of `token` is in the key's queue (queued or sent), rather than
    /// waiting to retry.
    pub(crate) fn final_save_queued(&self, token: &Token) -> bool {
        self.ops
            .values()
            .any(|o| o.token == *token && self.is_final_save(&o.kind))
    }

    /// How many outputs wait to be polled.
    pub(crate) fn pending_outputs(&self) -> usize {
        self.outputs.len()
    }

    /// Whether `op` is an operation the engine still tracks (queued or out, not yet answered).
    pub(crate) fn has_op(&self, op: OpId) -> bool {
        self.ops.contains_key(&op)
    }

    /// Whether `op` waits in its key's queue: known, but not sent yet.
    pub(crate) fn is_queued(&self, op: OpId) -> bool {
        self.ops.get(&op).is_some_and(|o| !o.sent)
    }

    /// The Studio access probe answered (spec §13): sets the state once and resumes the calls
    /// that were waiting for it, asking each cancellable start on a live store its `Cancel`
    /// first.
    pub fn handle_datastore_state(
        &mut self,
        now: Now,
        state: DataStoreState,
        live: &mut dyn LiveState,
    ) {
        if self.state != DataStoreState::NotReady || state == DataStoreState::NotReady {
            return;
        }
        self.state = state;
        self.emit(Event::DataStoreStateChanged { state });
        if state == DataStoreState::NoInternet {
            self.warn("[ProfileStore]: No internet access - check your network connection".into());
        }
        let line = if state == DataStoreState::Access {
            "[ProfileStore]: Roblox API services available - data will be saved"
        } else {
            "[ProfileStore]: Roblox API services unavailable - data will not be saved"
        };
        self.emit(Event::Print {
            message: line.into(),
        });
        self.resume_all_parked(now, Some(live));
    }

    /// `BindToClose` fired (spec §9.4): `IsClosing` becomes true; with DataStore access every
    /// active profile gets a final save with reason `Shutdown`, and [`Completion::Shutdown`]
    /// comes once every save and session start has finished. Without access it comes one frame
    /// later and nothing is saved. Starts waiting behind a final save (deviation 9) return nil
    /// now; starts in a conflict wait end it now (spec §9.4) and return nil at the next
    /// [`Engine::handle_timeout`] ([`Engine::poll_timeout`] is `now`), so a host keeps ticking
    /// after this call; calls parked while the state was unknown complete.
    pub fn shutdown(&mut self, now: Now) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.resume_all_parked(now, None);
        self.end_starts_behind_final_saves(now);
        self.timers
            .hasten(now.mono, |t| matches!(t, Timer::ConflictWait(_)));
        if self.state != DataStoreState::Access {
            self.timers
                .set(now.mono + FRAME, Timer::ShutdownWithoutAccess);
            return;
        }
        for profile in self.ring.profiles().collect::<Vec<_>>() {
            if self.is_active(profile) {
                self.begin_save(
                    now,
                    profile,
                    crate::save::SaveMode::Ending(EndReason::Shutdown),
                );
            }
        }
        self.shutdown_pending = true;
        self.check_shutdown_done();
    }

    pub(crate) fn check_shutdown_done(&mut self) {
        if self.shutdown_pending && self.load_jobs.is_empty() && self.saves.is_empty() {
            self.shutdown_pending = false;
            self.complete(Completion::Shutdown);
        }
    }

    /// Drops a profile object the host no longer references (Luau's garbage collector does this
    /// in the original). An active profile, or one with a save in progress, is kept until its
    /// session has ended and its last save is done, then dropped without another call; until
    /// then its saves still write the host's `Data`, so the host keeps answering
    /// [`LiveState::data`] and [`LiveState::roblox_metadata`] for it until
    /// [`Engine::profile`] returns `None` (an answer of `{}` would be saved as the `Data`).
    pub fn forget_profile(&mut self, id: ProfileId) {
        if let Some(p) = self.profiles.get_mut(&id) {
            p.forgotten = true;
        }
        self.drop_profile_if_forgotten(id);
    }

    /// Drops profile `id` if the host forgot it and it is no longer busy.
    pub(crate) fn drop_profile_if_forgotten(&mut self, id: ProfileId) {
        let forgotten_and_idle = self
            .profiles
            .get(&id)
            .is_some_and(|p| p.forgotten && p.pending_saves == 0);
        if forgotten_and_idle
            && !self.is_active(id)
            && let Some(p) = self.profiles.remove(&id)
            && let Some(sub) = p.subscription
        {
            self.subscriptions.remove(&sub);
        }
    }

    // ---------------------------------------------------------------- operations

    /// The token for a call on `store` (spec §5.1).
    pub(crate) fn token(&self, store: StoreRef, key: &str) -> Token {
        let domain = if store.mock {
            Domain::UserMock
        } else if self.state == DataStoreState::Access {
            Domain::Live
        } else {
            Domain::FallbackMock
        };
        Token::new(
            domain,
            self.stores[store.store.0 as usize].name.clone(),
            key.into(),
        )
    }

    pub(crate) fn check_store(&self, store: StoreRef) -> Result<(), ApiError> {
        match self.store(store.store) {
            Some(_) => Ok(()),
            None => Err(ApiError::UnknownStore(store.store.0)),
        }
    }

    /// The store `id` names, if this engine handed it out (an id past `usize` names none, on
    /// any target: it is not cut down to another store's).
    fn store(&self, id: StoreId) -> Option<&Store> {
        self.stores.get(usize::try_from(id.0).ok()?)
    }

    /// Enters the per-key queue with a new operation; it starts now if the token is idle.
    pub(crate) fn enqueue_op(&mut self, now: Now, token: Token, kind: OpKind) -> OpId {
        let op = OpId(self.next_id());
        let starts_now = self.queue.enter(&token, op);
        self.ops.insert(
            op,
            Op {
                token,
                kind,
                note: OpNote::None,
                lost: None,
                sent: false,
                wrote: false,
            },
        );
        if starts_now {
            self.start_op(now, op);
        }
        op
    }

    /// Sends an operation to its DataStore: a request for the live one, a one-frame timer for
    /// the mock stores.
    fn start_op(&mut self, now: Now, op: OpId) {
        let Some(o) = self.ops.get_mut(&op) else {
            return;
        };
        if matches!(o.kind, OpKind::Start)
            && self.ending_saves.get(&o.token).is_some_and(|n| *n > 0)
        {
            // Its turn came while a final save of its key waits to retry: it leaves the queue
            // to the ops behind it and waits for the save to land.
            let token = o.token.clone();
            self.ops.remove(&op);
            if let Some(next) = self.queue.release(&token) {
                self.start_op(now, next);
            }
            self.wait_behind_final_save(now, &token);
            return;
        }
        let o = self.ops.get_mut(&op).expect("present");
        o.sent = true;
        o.wrote = false;
        let o = &*o;
        if o.token.domain() != Domain::Live {
            self.timers.set(now.mono + FRAME, Timer::MockOp(op));
            return;
        }
        let kind = match &o.kind {
            OpKind::Start | OpKind::Save(_) | OpKind::Message(_) => DataStoreRequestKind::Update,
            OpKind::Remove(_) => DataStoreRequestKind::Remove,
            OpKind::Get(call) => match self.get_calls.get(call).and_then(|g| g.version.clone()) {
                Some(version) => DataStoreRequestKind::GetVersion { version },
                None => DataStoreRequestKind::Get,
            },
        };
        let request = DataStoreRequest {
            op,
            store: o.token.store().clone(),
            key: o.token.key().clone(),
            kind,
        };
        self.outputs.push_back(Output::DataStore(request));
    }

    /// Emits a request that does not take part in the per-key queue (version listing).
    pub(crate) fn emit_unqueued(
        &mut self,
        store: Str,
        key: Str,
        kind: DataStoreRequestKind,
    ) -> OpId {
        let op = OpId(self.next_id());
        self.outputs.push_back(Output::DataStore(DataStoreRequest {
            op,
            store,
            key,
            kind,
        }));
        op
    }

    /// Applies a mock operation to its mock store and finishes it like a DataStore answer.
    fn run_mock_op(&mut self, now: Now, op: OpId, live: &mut dyn LiveState) {
        let Some(o) = self.ops.get(&op) else { return };
        let (token, kind) = (o.token.clone(), o.kind.clone());
        let mut store = match token.domain() {
            Domain::UserMock => std::mem::take(&mut self.user_mock),
            _ => std::mem::take(&mut self.fallback_mock),
        };
        let result = match kind {
            OpKind::Get(_) => {
                let (value, key_info) = match store.read(token.store(), token.key()) {
                    Some((v, k)) => (Some(Arc::new(v)), Some(k)),
                    None => (None, None),
                };
                Ok(DataStoreResponse::Value { value, key_info })
            }
            OpKind::Remove(_) => {
                store.remove(token.store(), token.key());
                Ok(DataStoreResponse::Value {
                    value: None,
                    key_info: None,
                })
            }
            _ => match store.update(token.store(), token.key(), now.wall, |cur| {
                self.run_transform(op, cur, now.wall, live)
            }) {
                MockWrite::Committed(v, k) => Ok(DataStoreResponse::Value {
                    value: Some(Arc::new(v)),
                    key_info: Some(k),
                }),
                MockWrite::Cancelled => Ok(DataStoreResponse::Value {
                    value: None,
                    key_info: None,
                }),
                MockWrite::Failed(message) => Err(DataStoreError { message }),
            },
        };
        match token.domain() {
            Domain::UserMock => self.user_mock = store,
            _ => self.fallback_mock = store,
        }
        self.answer_op(now, op, result, live);
    }

    /// The update wrapper's result handling (spec §4 steps 4–6), then the operation's own.
    fn finish_op(&mut self, now: Now, op: Op, result: Result<DataStoreResponse, DataStoreError>) {
        let versioned = matches!(&op.kind, OpKind::Get(c) if self.get_calls.get(c).is_some_and(|g| g.version.is_some()));
        let outcome = match result {
            Ok(DataStoreResponse::Value { value, key_info }) => match &op.kind {
                OpKind::Get(_) => {
                    let template = self.get_template(&op.kind);
                    let value = crate::read::get_transform(value.as_deref(), &template, now.wall);
                    Outcome::Ok {
                        value: Arc::new(value),
                        key_info,
                    }
                }
                OpKind::Remove(_) => Outcome::Ok {
                    value: value.unwrap_or_default(),
                    key_info,
                },
                _ => match value {
                    Some(v) if wire::is_table(&v) => {
                        let unconfirmed = match self.unconfirmed_repairs.is_empty() {
                            true => None,
                            false => self.unconfirmed_repairs.remove(&op.token),
                        };
                        let what = match (&op.lost, unconfirmed) {
                            (Some(lost), _) => Some(format!("the write could not keep {lost}")),
                            // This write found nothing to repair: an earlier one that failed
                            // may have stored the repair (an ambiguous failure), or another
                            // server did.
                            (None, Some(lost)) => Some(format!(
                                "a write that failed may have stored the repair, which could \
                                 not keep {lost}"
                            )),
                            (None, None) => None,
                        };
                        if let Some(what) = what {
                            self.warn(format!(
                                "[ProfileStore]: Malformed profile repaired (STORE:{}; KEY:{}): \
                                 {what}",
                                op.token.store(),
                                op.token.key()
                            ));
                        }
                        if wire::ProfileValue::of(&v).is_some_and(|p| p.was_overwritten()) {
                            self.warn(format!(
                                "[ProfileStore]: Invalid profile was overwritten (STORE:{}; KEY:{})",
                                op.token.store(), op.token.key()
                            ));
                            self.emit(Event::OnOverwrite {
                                store: op.token.store().to_string(),
                                key: op.token.key().to_string(),
                            });
                        }
                        Outcome::Ok { value: v, key_info }
                    }
                    // A save that found no profile cancelled its write (DEVIATIONS.md row 1):
                    // nil is its answer. Every other write commits, so anything but a table is
                    // an error, whatever the transform noted (a trimmed message queue, a
                    // rejected `Data`).
                    _ if op.note == OpNote::NotAProfile => Outcome::Ok {
                        value: Arc::default(),
                        key_info: None,
                    },
                    _ => {
                        let e = DataStoreError {
                            message: "Undefined error".into(),
                        };
                        self.register_error(now, &op.token, &e.message);
                        Outcome::Failed(e)
                    }
                },
            },
            Ok(DataStoreResponse::Page { .. }) => Outcome::Failed(DataStoreError {
                message: "unexpected page".into(),
            }),
            Err(e) => {
                if let Some(lost) = &op.lost {
                    self.unconfirmed_repairs
                        .insert(op.token.clone(), lost.clone());
                }
                // RemoveAsync and versioned reads do not count as errors (spec §12), nor a
                // message the engine refused itself for want of an id (its transform's error,
                // not the DataStore's: a DataStore error on the same request still counts).
                // (Compared by its end: a host's `UpdateAsync` may prefix the error it throws.)
                let refused = matches!(op.note, OpNote::NoMessageId(last)
                    if e.message.ends_with(&crate::messages::no_message_id(last)));
                if !matches!(op.kind, OpKind::Remove(_)) && !versioned && !refused {
                    self.register_error(now, &op.token, &e.message);
                }
                Outcome::Failed(e)
            }
        };
        match op.kind {
            OpKind::Start => self.on_attempt_result(now, &op.token, outcome),
            OpKind::Save(id) => self.on_save_result(now, id, outcome, op.note),
            OpKind::Message(call) => self.on_message_result(now, call, outcome, op.note),
            OpKind::Get(call) => self.on_get_result(now, call, outcome),
            OpKind::Remove(call) => {
                let ok = matches!(outcome, Outcome::Ok { .. });
                self.complete(Completion::Remove { call, ok });
            }
        }
    }

    fn get_template(&self, kind: &OpKind) -> Value {
        let OpKind::Get(call) = kind else {
            return Value::Null;
        };
        self.get_calls
            .get(call)
            .map(|g| self.stores[g.store.0 as usize].template.clone())
            .unwrap_or(Value::Null)
    }

    /// Registers a DataStore error (spec §12): warn, record it in the critical window, `OnError`.
    pub(crate) fn register_error(&mut self, now: Now, token: &Token, message: &str) {
        self.warn(format!(
            "[ProfileStore]: DataStore API error (STORE:{}; KEY:{}) - {message}",
            token.store(),
            token.key()
        ));
        self.critical.record_error(now.mono);
        self.emit(Event::OnError {
            message: message.to_string(),
            store: token.store().to_string(),
            key: token.key().to_string(),
        });
    }
}

/// A store's template: a table (spec §3.2) no deeper than a profile's `Data` can be
/// ([`MAX_DATA_DEPTH`](crate::profile::MAX_DATA_DEPTH)) and no larger than a key holds
/// ([`MAX_VALUE_LEN`](crate::profile::MAX_VALUE_LEN)), or every profile made from it would
/// fail to save.
fn check_template(template: &Value) -> Result<(), ApiError> {
    if !wire::is_table(template) {
        Err(ApiError::InvalidTemplate)
    } else if template.nested_deeper_than(crate::profile::MAX_DATA_DEPTH) {
        Err(ApiError::TemplateTooDeep)
    } else if template.json_len() > crate::profile::MAX_VALUE_LEN {
        Err(ApiError::TemplateTooLarge(template.json_len()))
    } else {
        Ok(())
    }
}
