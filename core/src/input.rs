//! Every engine input as one serialisable value, for record and replay (DESIGN.md §2).
//!
//! A host that records calls [`Engine::handle_input`] with each [`Input`] and wraps its
//! [`LiveState`] in a [`Recorder`], which captures what the host answered (`Profile.Data`,
//! `RobloxMetaData`, `Cancel`) in the input's [`LiveAnswers`]. Replaying the recorded inputs on a
//! fresh engine built with the same [`EngineConfig`](crate::EngineConfig) gives identical
//! outputs, with no host at all: the answers come back from the recording ([`Replayer`]).
//!
//! JSON values are carried as text ([`crate::json_text`]), so the stream encodes with bincode.

use std::collections::VecDeque;

use crate::value::{Value, json};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, LiveState, StoreRef};
use crate::error::ApiError;
use crate::protocol::*;
use crate::session::StartParams;

/// One input to an engine.
#[allow(missing_docs)] // the variants mirror the Engine methods of the same name
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Input {
    NewStore {
        name: String,
        #[serde(with = "crate::json_text")]
        template: Value,
    },
    SetConstant {
        name: String,
        value: f64,
    },
    StartSession {
        now: Now,
        store: StoreRef,
        key: String,
        params: StartParams,
    },
    CancelSessionStart {
        now: Now,
        call: CallId,
    },
    EndSession {
        now: Now,
        profile: ProfileId,
    },
    Save {
        now: Now,
        profile: ProfileId,
    },
    SetAsync {
        now: Now,
        profile: ProfileId,
    },
    Message {
        now: Now,
        store: StoreRef,
        key: String,
        #[serde(with = "crate::json_text")]
        message: Value,
    },
    AddMessageHandler {
        profile: ProfileId,
    },
    MessageProcessed {
        profile: ProfileId,
        id: i64,
    },
    Get {
        now: Now,
        store: StoreRef,
        key: String,
        version: Option<String>,
    },
    Remove {
        now: Now,
        store: StoreRef,
        key: String,
    },
    VersionQuery {
        store: StoreRef,
        key: String,
        direction: SortDirection,
        min_date: Option<i64>,
        max_date: Option<i64>,
    },
    VersionQueryNext {
        now: Now,
        query: QueryId,
    },
    AddUserId {
        profile: ProfileId,
        id: f64,
    },
    RemoveUserId {
        profile: ProfileId,
        id: f64,
    },
    Shutdown {
        now: Now,
    },
    ForgetProfile {
        profile: ProfileId,
    },
    /// [`Engine::handle_timeout`].
    Timeout {
        now: Now,
        live: LiveAnswers,
    },
    /// [`Engine::transform`].
    Transform {
        op: OpId,
        #[serde(with = "crate::json_text::option")]
        current: Option<Value>,
        wall: i64,
        live: LiveAnswers,
    },
    /// [`Engine::handle_datastore_response`]. `live` is what the host's live state answered
    /// while the engine handled it (a session start asks its `Cancel` after each result, spec
    /// §5.2 step 7): empty when fed, filled by a recorder ([`Input::with_live`]).
    DataStoreResponse {
        now: Now,
        op: OpId,
        result: Result<DataStoreResponse, DataStoreError>,
        live: LiveAnswers,
    },
    /// [`Engine::handle_subscribe_result`].
    SubscribeResult {
        now: Now,
        subscription: SubscriptionId,
        result: Result<(), String>,
    },
    /// [`Engine::handle_message_received`].
    MessageReceived {
        now: Now,
        subscription: SubscriptionId,
        #[serde(with = "crate::json_text")]
        data: Value,
    },
    /// [`Engine::handle_datastore_state`]. `live` is what the host's live state answered
    /// meanwhile (the `Cancel` of starts that waited for the state): empty when fed, filled
    /// by a recorder ([`Input::with_live`]).
    DataStoreState {
        now: Now,
        state: DataStoreState,
        live: LiveAnswers,
    },
    /// [`Engine::forget_version_query`].
    ForgetVersionQuery {
        query: QueryId,
    },
    /// [`Engine::set_template`] (last, so that traces recorded before it keep their variant
    /// numbers).
    SetTemplate {
        store: StoreId,
        #[serde(with = "crate::json_text")]
        template: Value,
    },
}

/// The clock readings of an input (`&Input` or `&mut Input`), if it carries them: one match
/// for [`Input::now`] and [`Input::now_mut`].
macro_rules! clock_of {
    ($input:expr) => {
        match $input {
            Input::StartSession { now, .. }
            | Input::CancelSessionStart { now, .. }
            | Input::EndSession { now, .. }
            | Input::Save { now, .. }
            | Input::SetAsync { now, .. }
            | Input::Message { now, .. }
            | Input::Get { now, .. }
            | Input::Remove { now, .. }
            | Input::VersionQueryNext { now, .. }
            | Input::Shutdown { now }
            | Input::Timeout { now, .. }
            | Input::DataStoreResponse { now, .. }
            | Input::SubscribeResult { now, .. }
            | Input::MessageReceived { now, .. }
            | Input::DataStoreState { now, .. } => Some(now),
            Input::NewStore { .. }
            | Input::SetConstant { .. }
            | Input::AddMessageHandler { .. }
            | Input::MessageProcessed { .. }
            | Input::VersionQuery { .. }
            | Input::AddUserId { .. }
            | Input::RemoveUserId { .. }
            | Input::ForgetProfile { .. }
            | Input::ForgetVersionQuery { .. }
            | Input::SetTemplate { .. }
            | Input::Transform { .. } => None,
        }
    };
}

impl Input {
    /// The input as a trace keeps it: with `answers`, what the host's live state answered
    /// while the engine handled it ([`Recorder`]), carried by the inputs that ask (timeouts,
    /// transforms, DataStore answers, the DataStore state); the other inputs ask nothing
    /// (their `answers` are empty) and are returned as they are.
    pub fn with_live(self, answers: LiveAnswers) -> Input {
        match self {
            Input::Timeout { now, .. } => Input::Timeout { now, live: answers },
            Input::Transform {
                op, current, wall, ..
            } => Input::Transform {
                op,
                current,
                wall,
                live: answers,
            },
            Input::DataStoreResponse {
                now, op, result, ..
            } => Input::DataStoreResponse {
                now,
                op,
                result,
                live: answers,
            },
            Input::DataStoreState { now, state, .. } => Input::DataStoreState {
                now,
                state,
                live: answers,
            },
            other => other,
        }
    }

    /// The input's time, for the inputs that carry one.
    pub fn now(&self) -> Option<Now> {
        clock_of!(self).copied()
    }

    /// The input's time, to change (a tool that edits traces), for the inputs that carry one.
    pub fn now_mut(&mut self) -> Option<&mut Now> {
        clock_of!(self)
    }
}

/// What an input returned synchronously.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InputResult {
    /// Nothing.
    None,
    /// A new store, or why not.
    Store(Result<StoreId, String>),
    /// A call id, or the thrown error.
    Call(Result<CallId, String>),
    /// A query id, or the thrown error.
    Query(Result<QueryId, String>),
    /// Success or the thrown error.
    Done(Result<(), String>),
    /// `add_message_handler`: registered or not.
    Registered(Result<bool, String>),
    /// A transform's result: written value, cancel or error.
    Transformed(TransformedRecord),
}

impl InputResult {
    /// Whether the input was refused (an error returned). A transform's error is its result,
    /// not a refusal, even the host error of a transform for a request the engine has not sent
    /// ([`ApiError::OpNotSent`], [`ApiError::MockOp`]): it fails the DataStore call running it.
    pub fn is_refusal(&self) -> bool {
        match self {
            InputResult::Store(r) => r.is_err(),
            InputResult::Call(r) => r.is_err(),
            InputResult::Query(r) => r.is_err(),
            InputResult::Done(r) => r.is_err(),
            InputResult::Registered(r) => r.is_err(),
            InputResult::None | InputResult::Transformed(_) => false,
        }
    }
}

/// [`Transformed`] in serialisable form.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TransformedRecord {
    Write {
        #[serde(with = "crate::json_text")]
        value: Value,
        #[serde(with = "crate::json_text::option")]
        user_ids: Option<Value>,
        #[serde(with = "crate::json_text::option")]
        metadata: Option<Value>,
    },
    Cancel,
    Error(String),
}

impl From<&Transformed> for TransformedRecord {
    fn from(t: &Transformed) -> Self {
        match t {
            Transformed::Write {
                value,
                user_ids,
                metadata,
            } => TransformedRecord::Write {
                value: value.clone(),
                user_ids: user_ids.clone(),
                metadata: metadata.clone(),
            },
            Transformed::Cancel => TransformedRecord::Cancel,
            Transformed::Error(m) => TransformedRecord::Error(m.clone()),
        }
    }
}

impl From<TransformedRecord> for Transformed {
    fn from(t: TransformedRecord) -> Self {
        match t {
            TransformedRecord::Write {
                value,
                user_ids,
                metadata,
            } => Transformed::Write {
                value,
                user_ids,
                metadata,
            },
            TransformedRecord::Cancel => Transformed::Cancel,
            TransformedRecord::Error(m) => Transformed::Error(m),
        }
    }
}

/// What the host's [`LiveState`] answered during one input, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveAnswers(pub Vec<LiveAnswer>);

/// One answer of the host.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LiveAnswer {
    Data(#[serde(with = "crate::json_text")] Value),
    RobloxMetadata(#[serde(with = "crate::json_text")] Value),
    Cancel(bool),
}

/// Wraps the host's live state and records its answers.
pub struct Recorder<'a> {
    inner: &'a mut dyn LiveState,
    /// The answers so far.
    pub answers: LiveAnswers,
}

impl<'a> Recorder<'a> {
    /// Records what `inner` answers.
    pub fn new(inner: &'a mut dyn LiveState) -> Self {
        Recorder {
            inner,
            answers: LiveAnswers::default(),
        }
    }
}

impl LiveState for Recorder<'_> {
    fn data(&mut self, profile: ProfileId) -> Value {
        let v = self.inner.data(profile);
        self.answers.0.push(LiveAnswer::Data(v.clone()));
        v
    }
    fn roblox_metadata(&mut self, profile: ProfileId) -> Value {
        let v = self.inner.roblox_metadata(profile);
        self.answers.0.push(LiveAnswer::RobloxMetadata(v.clone()));
        v
    }
    fn cancel_requested(&mut self, call: CallId) -> bool {
        let v = self.inner.cancel_requested(call);
        self.answers.0.push(LiveAnswer::Cancel(v));
        v
    }
}

/// Plays recorded answers back in order. An answer of the wrong kind, or a missing one, means
/// the replay diverged; it is counted in [`Replayer::diverged`] and a neutral value is given.
#[derive(Default)]
pub struct Replayer {
    answers: VecDeque<LiveAnswer>,
    /// Answers that did not match what the engine asked for.
    pub diverged: usize,
}

impl Replayer {
    /// Plays `answers` back.
    pub fn new(answers: &LiveAnswers) -> Self {
        Replayer {
            answers: answers.0.iter().cloned().collect(),
            diverged: 0,
        }
    }
}

impl LiveState for Replayer {
    fn data(&mut self, _: ProfileId) -> Value {
        match self.answers.pop_front() {
            Some(LiveAnswer::Data(v)) => v,
            _ => {
                self.diverged += 1;
                json!({})
            }
        }
    }
    fn roblox_metadata(&mut self, _: ProfileId) -> Value {
        match self.answers.pop_front() {
            Some(LiveAnswer::RobloxMetadata(v)) => v,
            _ => {
                self.diverged += 1;
                json!({})
            }
        }
    }
    fn cancel_requested(&mut self, _: CallId) -> bool {
        match self.answers.pop_front() {
            Some(LiveAnswer::Cancel(v)) => v,
            _ => {
                self.diverged += 1;
                false
            }
        }
    }
}

fn text<T>(r: Result<T, ApiError>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

impl Engine {
    /// Whether `result` is an answer request `op` can take (see [`Engine::handle_input`]'s
    /// list): the checks [`Engine::handle_datastore_response`] and `handle_input` both make.
    pub(crate) fn check_datastore_response(
        &self,
        op: OpId,
        result: &Result<DataStoreResponse, DataStoreError>,
    ) -> Result<(), ApiError> {
        // A page answers only a version listing, and a listing only a page (or an error); an
        // update or a read gets a value.
        let page = matches!(result, Ok(DataStoreResponse::Page { .. }));
        let listing = self.is_page_op(op);
        // A request answered already (a listing's page too) or never sent, whatever the answer.
        if !listing && !self.has_op(op) {
            return Err(ApiError::NotAwaitingAnswer(op.0));
        }
        // A request that is not out waits for no answer, whatever its shape.
        if self.is_mock_op(op) {
            return Err(ApiError::MockOp(op.0));
        }
        if self.is_queued(op) {
            return Err(ApiError::OpNotSent(op.0));
        }
        if page && !listing {
            return Err(ApiError::WrongAnswer(op.0));
        }
        if listing && result.is_ok() && !page {
            return Err(ApiError::PageExpected(op.0));
        }
        // Every DataStore call that returns a value returns its key info with it.
        if let Ok(DataStoreResponse::Value {
            value: Some(_),
            key_info: None,
        }) = result
        {
            return Err(ApiError::MissingKeyInfo(op.0));
        }
        if let Ok(DataStoreResponse::Value { value: Some(_), .. }) = result
            && self.is_unwritten_update(op)
        {
            return Err(ApiError::UnwrittenUpdate(op.0));
        }
        Ok(())
    }

    /// Applies one recorded input. `Timeout` and `Transform` read live state from `live`; to
    /// replay, pass a [`Replayer`] built from the input's [`LiveAnswers`] (see
    /// [`Engine::replay_input`]).
    ///
    /// Host errors change nothing, and are refused with [`InputResult::Done`] holding the
    /// error, except those of the method the input calls (last in the list), which come back
    /// in that method's own result (`Call(Err)`, `Store(Err)`, `Query(Err)`,
    /// `Registered(Err)`); [`InputResult::is_refusal`] tells every refusal:
    ///
    /// - an input whose `now.mono` is not a finite number, or is before an earlier input's (the
    ///   engine's timers count on `os.clock()` never going back);
    /// - a timeout fed while outputs wait to be polled;
    /// - a profile id the engine does not know (`EndSession`, `MessageProcessed`, `AddUserId`,
    ///   `RemoveUserId`, `ForgetProfile`; ending a known profile twice is fine), and
    ///   `MessageProcessed` for a message the profile's handlers were not given;
    /// - a page of versions answering anything but a version listing, a value answering a
    ///   version listing, a value without key info, a value answering an update whose latest
    ///   transform did not write;
    /// - an answer for a request not waiting for one (answered already, or never sent), or for
    ///   one the engine has not sent — still queued, or a mock store's, which never goes out (a
    ///   transform for such a request returns a transform error);
    /// - a `SubscribeAsync` result for a subscription not waiting for one;
    /// - and anything the method an input calls refuses (an unknown store, an invalid key, a
    ///   `Save` of a view profile...): its time is not taken either.
    pub fn handle_input(&mut self, input: Input, live: &mut dyn LiveState) -> InputResult {
        use Input as I;
        if let Some(now) = input.now()
            && !now.mono.is_finite()
        {
            return InputResult::Done(text(Err(ApiError::NonFiniteTime(now.mono))));
        }
        if matches!(input, I::Timeout { .. }) && self.pending_outputs() > 0 {
            let waiting = self.pending_outputs();
            return InputResult::Done(text(Err(ApiError::OutputsNotDrained(waiting))));
        }
        if let Some(now) = input.now()
            && now.mono < self.last_mono
        {
            return InputResult::Done(text(Err(ApiError::TimeWentBack {
                now: now.mono,
                last: self.last_mono,
            })));
        }
        if let I::DataStoreResponse { op, result, .. } = &input
            && let Err(e) = self.check_datastore_response(*op, result)
        {
            return InputResult::Done(text(Err(e)));
        }
        // A profile id this engine does not know (never handed out, or forgotten) is a host
        // error for every input that names one; the methods that return a result say so
        // themselves.
        if let I::EndSession { profile, .. }
        | I::MessageProcessed { profile, .. }
        | I::AddUserId { profile, .. }
        | I::RemoveUserId { profile, .. }
        | I::ForgetProfile { profile } = &input
            && self.profile(*profile).is_none()
        {
            return InputResult::Done(text(Err(ApiError::UnknownProfile(profile.0))));
        }
        if let I::SubscribeResult { subscription, .. } = &input
            && !self.subscribing.contains(subscription)
        {
            let refused = ApiError::NotAwaitingSubscription(subscription.0);
            return InputResult::Done(text(Err(refused)));
        }
        // Taken: its time is the latest one seen. An input the call itself refuses (an
        // unknown store, an invalid key, ...) changes nothing, its time included: a refused
        // input dated far ahead would otherwise refuse every real one after it as going back.
        let before = self.last_mono;
        if let Some(now) = input.now() {
            self.last_mono = now.mono;
        }
        let result = self.dispatch(input, live);
        if result.is_refusal() {
            self.last_mono = before;
        }
        result
    }

    /// Hands a checked input to the method it calls.
    fn dispatch(&mut self, input: Input, live: &mut dyn LiveState) -> InputResult {
        use Input as I;
        match input {
            I::NewStore { name, template } => {
                InputResult::Store(text(self.new_store(&name, template)))
            }
            I::SetConstant { name, value } => {
                InputResult::Done(text(self.set_constant(&name, value)))
            }
            I::StartSession {
                now,
                store,
                key,
                params,
            } => InputResult::Call(text(self.start_session(now, store, &key, params))),
            I::CancelSessionStart { now, call } => {
                self.cancel_session_start(now, call);
                InputResult::None
            }
            I::EndSession { now, profile } => {
                self.end_session(now, profile);
                InputResult::None
            }
            I::Save { now, profile } => InputResult::Done(text(self.save(now, profile))),
            I::SetAsync { now, profile } => InputResult::Call(text(self.set_async(now, profile))),
            I::Message {
                now,
                store,
                key,
                message,
            } => InputResult::Call(text(self.message(now, store, &key, message))),
            I::AddMessageHandler { profile } => {
                InputResult::Registered(text(self.add_message_handler(profile)))
            }
            I::MessageProcessed { profile, id } => match self.message_processed(profile, id) {
                Ok(()) => InputResult::None,
                refused => InputResult::Done(text(refused)),
            },
            I::Get {
                now,
                store,
                key,
                version,
            } => InputResult::Call(text(self.get(now, store, &key, version))),
            I::Remove { now, store, key } => InputResult::Call(text(self.remove(now, store, &key))),
            I::VersionQuery {
                store,
                key,
                direction,
                min_date,
                max_date,
            } => InputResult::Query(text(
                self.version_query(store, &key, direction, min_date, max_date),
            )),
            I::VersionQueryNext { now, query } => {
                InputResult::Call(text(self.version_query_next(now, query)))
            }
            I::AddUserId { profile, id } => {
                self.add_user_id(profile, id);
                InputResult::None
            }
            I::RemoveUserId { profile, id } => {
                self.remove_user_id(profile, id);
                InputResult::None
            }
            I::Shutdown { now } => {
                self.shutdown(now);
                InputResult::None
            }
            I::ForgetProfile { profile } => {
                self.forget_profile(profile);
                InputResult::None
            }
            I::ForgetVersionQuery { query } => {
                self.forget_version_query(query);
                InputResult::None
            }
            I::SetTemplate { store, template } => {
                InputResult::Done(text(self.set_template(store, template)))
            }
            I::Timeout { now, .. } => {
                self.handle_timeout(now, live);
                InputResult::None
            }
            I::Transform {
                op, current, wall, ..
            } => {
                let t = self.transform(op, current.as_ref(), wall, live);
                InputResult::Transformed((&t).into())
            }
            I::DataStoreResponse {
                now, op, result, ..
            } => {
                // A mock op's answer was refused above.
                self.answer_op(now, op, result, live);
                InputResult::None
            }
            I::SubscribeResult {
                now,
                subscription,
                result,
            } => {
                self.handle_subscribe_result(now, subscription, result);
                InputResult::None
            }
            I::MessageReceived {
                now,
                subscription,
                data,
            } => {
                self.handle_message_received(now, subscription, &data);
                InputResult::None
            }
            I::DataStoreState { now, state, .. } => {
                self.handle_datastore_state(now, state, live);
                InputResult::None
            }
        }
    }

    /// Replays one recorded input, answering live-state questions from its recording. Returns
    /// the result and how many recorded answers did not match (0 for a faithful replay).
    pub fn replay_input(&mut self, input: Input) -> (InputResult, usize) {
        let answers = match &input {
            Input::Timeout { live, .. }
            | Input::Transform { live, .. }
            | Input::DataStoreResponse { live, .. }
            | Input::DataStoreState { live, .. } => live.clone(),
            _ => LiveAnswers::default(),
        };
        let mut replayer = Replayer::new(&answers);
        let result = self.handle_input(input, &mut replayer);
        (result, replayer.diverged + replayer.answers.len())
    }
}
