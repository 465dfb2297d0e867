//! Session start: `StartSessionAsync` with `Steal` and `Cancel` (spec §5).
//!
//! Owns the load jobs (one per session token), the attempt loop — take, conflict wait
//! (`FIRST_LOAD_REPEAT`, then `LOAD_REPEAT_PERIOD`), steal after
//! `ceil(SESSION_STEAL / LOAD_REPEAT_PERIOD)` polls, `ASSUME_DEAD`, error backoff 1→20 s bounded
//! by `START_SESSION_TIMEOUT` — and the session-start transform (spec §5.3 "Hooks").
//!
//! Deviations from the original (docs/DEVIATIONS.md): a load job lives for the whole call, so a
//! later call on the same key always takes it over ("last caller wins" also outside the in-flight
//! window, spec §19 item 5) and the transform always uses the current caller's `Cancel` and
//! `Steal` (item 4); the MessagingService topic is the GUID actually stored in the lock (item 3);
//! an attempt waits while a final save of the same key is still retrying (item 9), and returns
//! nil once the server closes; a start that takes the lock from another server's session asks
//! that session to end (item 8); a start that took the lock as the server closes releases it
//! with a shutdown save (item 24); a lock that looks dead by `ASSUME_DEAD` is asked for like a
//! live one and taken at the call's next poll if our request still stands (item 7).

use crate::value::{Value, json};

use crate::engine::{Engine, LiveState, OpKind, Outcome, StoreRef};
use crate::error::{ApiError, check_profile_key};
use crate::guid::session_topic;
use crate::profile::{Profile, ProfileKind};
use crate::protocol::*;
use crate::queue::{Domain, Token};
use crate::read::Parked;
use crate::save::SaveMode;
use crate::timers::Timer;
use crate::wire::{self, Classified, ProfileValue, ServerIdentity};

/// `StartSessionAsync` params (spec §5.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StartParams {
    /// `Steal = true`: take the lock from another server at once.
    pub steal: bool,
    /// A `Cancel` function was given, and `START_SESSION_TIMEOUT` does not apply. The engine
    /// asks [`LiveState::cancel_requested`] where the original calls `Cancel()` (spec §5.2
    /// step 7): inside each session-start transform, before each later attempt (the timeout
    /// that ends a wait or a backoff, the state becoming known for a start that waited for it)
    /// and before it handles each DataStore answer. A host that learns of a cancel at another
    /// time reports it with [`Engine::cancel_session_start`] (a start waiting behind a final
    /// save, or parked while `DataStoreState` is unknown, returns nil at once).
    pub cancellable: bool,
}

/// Where a load job is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum StartPhase {
    /// A session-start write is queued or in flight.
    InFlight,
    /// Waiting for a timer (conflict wait or error backoff).
    Waiting,
    /// Waiting for a final save of the same key to finish (deviation for spec §19 item 9).
    BehindFinalSave,
    /// Cancelled or closing after its write took the lock: the release save runs, and the call
    /// returns nil once it lands (spec §5.3 (c): "run a final save synchronously … and return
    /// nil").
    Releasing,
}

/// A session start in progress for one token.
#[derive(Clone, Debug)]
pub(crate) struct StartJob {
    pub caller: CallId,
    pub store: StoreId,
    pub mock: bool,
    pub user_steal: bool,
    pub cancellable: bool,
    pub cancelled: bool,
    pub request_force_load: bool,
    pub steal_session: bool,
    pub force_load_steps: u32,
    pub started: f64,
    pub backoff: f64,
    pub guid: String,
    pub phase: StartPhase,
    /// The in-flight attempt's transform ran declined (closing or cancelled): its write took
    /// no lock and claimed nothing, whoever calls by the time it returns.
    pub attempt_declined: bool,
    /// The in-flight attempt's transform took the lock from another server's session: that
    /// session's GUID and `SessionLoadCount`, to tell it once the write lands (deviation for
    /// spec §19 item 8).
    pub taken_from: Option<(String, i64)>,
}

impl StartJob {
    /// When a start without `Cancel` gives up (spec §5.3: START_SESSION_TIMEOUT after the
    /// call); a start with one never does.
    fn timeout_deadline(&self, constants: &crate::constants::Constants) -> Option<f64> {
        (!self.cancellable).then_some(self.started + constants.start_session_timeout)
    }

    /// The wait before the next attempt after a failed one (spec §5.3: 1, 2, 4 … 20 s),
    /// doubling the one after.
    fn next_backoff(&mut self) -> f64 {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2.0).min(20.0);
        wait
    }

    fn new(caller: CallId, store: StoreRef, params: StartParams, now: f64) -> StartJob {
        StartJob {
            caller,
            store: store.store,
            mock: store.mock,
            // `store.Mock:StartSessionAsync` drops params (spec §14).
            user_steal: params.steal && !store.mock,
            cancellable: params.cancellable && !store.mock,
            cancelled: false,
            request_force_load: true,
            steal_session: false,
            force_load_steps: 0,
            started: now,
            backoff: 1.0,
            guid: String::new(),
            phase: StartPhase::Waiting,
            attempt_declined: false,
            taken_from: None,
        }
    }
}

/// What the session-start transform needs to know (spec §5.3 "Hooks").
pub struct StartContext<'a> {
    /// This server.
    pub identity: &'a ServerIdentity,
    /// This attempt's GUID.
    pub guid: &'a str,
    /// Closing or cancelled: leave the lock alone.
    pub declined: bool,
    /// `Steal = true`.
    pub user_steal: bool,
    /// The steal threshold was reached on an earlier poll.
    pub steal_session: bool,
    /// First attempt of this call: ask for the lock with `ForceLoadSession`.
    pub request_force_load: bool,
    /// `ASSUME_DEAD`, seconds.
    pub assume_dead: f64,
    /// `os.time()` when the transform runs.
    pub wall: i64,
    /// The store's template.
    pub template: &'a Value,
}

/// The session-start transform: a pure function of the stored value and the attempt's state.
pub fn start_transform(current: Option<&Value>, ctx: &StartContext<'_>) -> Transformed {
    let (mut obj, overwritten) = match wire::classify(current, ctx.wall) {
        Classified::Valid(mut obj) => {
            obj.insert("WasOverwritten".into(), Value::Bool(false));
            if !ctx.declined {
                claim_existing(&mut obj, ctx);
            }
            (obj, false)
        }
        Classified::Missing {
            overwritten,
            global_updates,
        } => {
            let mut obj = wire::new_profile(ctx.template, ctx.wall, global_updates);
            if !ctx.declined {
                wire::meta_mut(&mut obj)
                    .insert("ActiveSession".into(), ctx.identity.lock_tag(ctx.guid));
            }
            (obj, overwritten)
        }
    };
    if !ctx.declined {
        let meta = wire::meta_mut(&mut obj);
        if meta
            .get("ActiveSession")
            .is_some_and(|t| ctx.identity.owns(t))
        {
            // Read defensively (spec §19 item 18): a huge stored count saturates, not overflows.
            let count = meta
                .get("SessionLoadCount")
                .and_then(Value::as_f64)
                .unwrap_or(0.0) as i64;
            meta.insert(
                "SessionLoadCount".into(),
                Value::from(count.saturating_add(1)),
            );
            meta.insert("LastUpdate".into(), Value::from(ctx.wall));
        }
    }
    if overwritten {
        obj.insert("WasOverwritten".into(), Value::Bool(true));
    }
    write(obj)
}

/// The existing-profile hook (spec §5.3): take, keep, ask, or leave the lock.
fn claim_existing(obj: &mut wire::Object, ctx: &StartContext<'_>) {
    let last_update = ProfileValue::of_object(obj).last_update();
    let meta = wire::meta_mut(obj);
    let take = |meta: &mut wire::Object| {
        meta.insert("ActiveSession".into(), ctx.identity.lock_tag(ctx.guid));
        meta.remove("ForceLoadSession");
    };
    // A value that is not a lock tag is no lock (spec §19 item 18: the original never starts).
    let Some(tag) = meta.get("ActiveSession").filter(|t| wire::is_lock_tag(t)) else {
        take(meta);
        return;
    };
    if ctx.identity.owns(tag) {
        meta.remove("ForceLoadSession");
        return;
    }
    let our_claim = meta
        .get("ForceLoadSession")
        .is_some_and(|f| ctx.identity.owns(f));
    let looks_dead = last_update.is_some_and(|lu| (ctx.wall as f64) - lu > ctx.assume_dead);
    if looks_dead && our_claim && !ctx.request_force_load {
        // Spec §19 item 7: `LastUpdate` is the owner's clock, read against ours, so a live
        // owner whose clock runs behind (or whose saves have been failing) looks dead. The
        // original takes such a lock at once and the owner's unsaved changes are lost. Here
        // it is asked for as a live lock is (below: the first attempt of a call writes our
        // request, a later request by another server supersedes ours), and our request still
        // standing at a later poll of the same call is enough to take it, without waiting
        // out `SESSION_STEAL` (`docs/DEVIATIONS.md`, row 7). A claim of ours the first
        // attempt finds (an earlier call's, or this call's after an ambiguous failure or a
        // new caller taking the call over) is asked again: the claim tag names the server,
        // not the call. A live owner releases on the request first.
        take(meta);
    } else if ctx.steal_session || ctx.user_steal {
        if ctx.user_steal || our_claim {
            take(meta);
        }
    } else if ctx.request_force_load {
        meta.insert("ForceLoadSession".into(), ctx.identity.claim_tag());
    }
}

/// The session a start transform's write takes the lock from: the GUID and
/// `SessionLoadCount` of the stored value's lock, which is another server's, when `result`
/// writes ours (a steal, `Steal = true`, or `ASSUME_DEAD`). A lock with no GUID has no topic
/// to tell.
fn taken_session(
    before: &ProfileValue<'_>,
    result: &Transformed,
    identity: &ServerIdentity,
) -> Option<(String, i64)> {
    let Transformed::Write { value, .. } = result else {
        return None;
    };
    let ours_now = ProfileValue::of(value)
        .and_then(|v| v.active_session())
        .is_some_and(|t| identity.owns(t));
    if !ours_now {
        return None;
    }
    Some((
        before.session_guid()?.to_string(),
        before.session_load_count(),
    ))
}

/// The request a waiting server sends the lock's holder (spec §5.3 (c)): end the session
/// with GUID `guid` whose `SessionLoadCount` is `load_count` (§10.4).
fn end_request(guid: &str, load_count: i64) -> MessagingRequest {
    MessagingRequest::Publish {
        topic: session_topic(guid),
        data: json!({"LoadCount": load_count, "EndSession": true}),
    }
}

/// A write of `obj`, with its `UserIds` and `RobloxMetaData` fields as the key's user ids and
/// metadata (spec §1.5). The user ids sent are the whole numbers within `i64` of `UserIds`, as
/// a profile loads them (docs/DEVIATIONS.md, "Message ids and user ids are whole numbers"): an
/// entry another tool wrote (`"202"`, `1.5`) would make the DataStore refuse every write of
/// the key (513), its start's and its messages' included, and lock the profile out for good.
/// The stored field keeps what it held; the first owned save writes the loaded list. The
/// metadata sent is `RobloxMetaData` only where it is a table the DataStore can take as
/// metadata ([`storable_metadata`]); a `5` or `[1, 2]` another tool stored would likewise
/// make it refuse every write of the key.
pub(crate) fn write(obj: wire::Object) -> Transformed {
    let user_ids = obj.get("UserIds").filter(|v| !v.is_null()).map(|v| {
        let whole = v
            .as_array()
            .is_some_and(|a| a.iter().all(|id| id.as_i64().is_some()));
        if whole {
            v.clone()
        } else {
            let ids = crate::mock::user_id_list(v).into_iter().map(Value::from);
            Value::from(ids.collect::<Vec<_>>())
        }
    });
    Transformed::Write {
        // A JSON null is an absent field to a Luau reader: no user ids, no metadata.
        user_ids,
        metadata: obj
            .get("RobloxMetaData")
            .filter(|v| storable_metadata(v))
            .cloned(),
        value: Value::Object(obj),
    }
}

/// Whether a stored `RobloxMetaData` is a table the DataStore takes as a key's metadata: a
/// dictionary, or the empty table (Luau cannot tell `{}` from `[]`). Anything else (a number,
/// a string, a list) another tool stored is no metadata: a write sends none, and a profile
/// loads `{}` (docs/DEVIATIONS.md, "Message ids and user ids are whole numbers").
pub(crate) fn storable_metadata(v: &Value) -> bool {
    v.is_object() || v.as_array().is_some_and(|a| a.is_empty())
}

/// `Profile.RobloxMetaData` of a profile loaded from `value`: its stored `RobloxMetaData`, or
/// `{}` where that is absent, null (nil to a Luau reader) or no metadata ([`storable_metadata`]).
pub(crate) fn loaded_metadata(value: &Value) -> Value {
    value
        .get("RobloxMetaData")
        .filter(|m| storable_metadata(m))
        .cloned()
        .unwrap_or_else(|| json!({}))
}

impl Engine {
    /// `store:StartSessionAsync(key, params)` (spec §5). The answer comes as
    /// [`Completion::SessionStart`] with the returned id; errors are thrown synchronously.
    pub fn start_session(
        &mut self,
        now: Now,
        store: StoreRef,
        key: &str,
        params: StartParams,
    ) -> Result<CallId, ApiError> {
        check_profile_key(key)?;
        self.check_store(store)?;
        if self.state != DataStoreState::NotReady && !self.closing {
            let token = self.token(store, key);
            if self.registry.contains_key(&token) {
                return Err(already_loaded(&token));
            }
        }
        let call = self.new_call();
        if self.closing {
            self.complete(Completion::SessionStart {
                call,
                profile: None,
            });
        } else if self.state == DataStoreState::NotReady {
            self.parked.push(Parked::Start {
                call,
                store,
                key: key.to_string(),
                params,
            });
        } else {
            self.begin_start(now, call, store, key, params);
        }
        Ok(call)
    }

    /// The host's `Cancel` predicate returned true for a start call (spec §5.2): the call
    /// returns nil at its next check, and a session obtained meanwhile is released. A call made
    /// without `Cancel`, or on `store.Mock` (which drops its params, spec §14), cannot be
    /// cancelled, whether it still waits for the DataStore state or has begun.
    pub fn cancel_session_start(&mut self, now: Now, call: CallId) {
        if let Some(i) = self.parked.iter().position(|p| {
            matches!(p, Parked::Start { call: c, store, params, .. }
                if *c == call && params.cancellable && !store.mock)
        }) {
            self.parked.remove(i);
            self.complete(Completion::SessionStart {
                call,
                profile: None,
            });
            return;
        }
        let Some(token) = self
            .load_jobs
            .iter()
            .find(|(_, j)| j.caller == call && j.cancellable)
            .map(|(t, _)| t.clone())
        else {
            return;
        };
        let job = self.load_jobs.get_mut(&token).expect("found above");
        job.cancelled = true;
        if job.phase == StartPhase::BehindFinalSave {
            self.finish_start(now, &token, None);
        }
    }

    pub(crate) fn begin_start(
        &mut self,
        now: Now,
        call: CallId,
        store: StoreRef,
        key: &str,
        params: StartParams,
    ) {
        let token = self.token(store, key);
        if self.registry.contains_key(&token) {
            // Only reachable for calls parked while the state was unknown.
            self.warn(already_loaded(&token).to_string());
            self.complete(Completion::SessionStart {
                call,
                profile: None,
            });
            return;
        }
        let fresh = StartJob::new(call, store, params, now.mono);
        match self.load_jobs.get_mut(&token) {
            Some(job) => {
                // Last caller wins: the earlier call returns nil, this one takes over the job.
                let victim = job.caller;
                let phase = job.phase;
                *job = StartJob {
                    phase,
                    guid: job.guid.clone(),
                    attempt_declined: job.attempt_declined,
                    // The lock an earlier attempt took is still to be told when this caller's
                    // result lands.
                    taken_from: job.taken_from.take(),
                    ..fresh
                };
                self.complete(Completion::SessionStart {
                    call: victim,
                    profile: None,
                });
                if phase != StartPhase::InFlight {
                    // The new caller's own attempt: at once after a wait, or behind a final save
                    // (a release is one) with its own timeout; the old caller's timers go.
                    let t = token.clone();
                    self.timers.cancel(|timer| matches!(timer, Timer::ConflictWait(x) | Timer::StartBackoff(x) if *x == t));
                    self.attempt(now, &token);
                }
            }
            None => {
                self.load_jobs.insert(token.clone(), fresh);
                self.attempt(now, &token);
            }
        }
    }

    /// Asks the host whether the start on `token` (cancellable, not cancelled yet) is to be
    /// cancelled, and remembers a yes: the original calls `Cancel()` at each attempt, inside
    /// the transform and after each result (spec §5.2 step 7), and so does the engine, except
    /// before the first attempt of a call made with the state known, which goes out with the
    /// call: a `Cancel` already true then is heard inside the transform (which declines; on a
    /// missing key it still writes a new profile, without a lock; docs/DEVIATIONS.md).
    pub(crate) fn ask_cancel(&mut self, token: &Token, live: &mut dyn LiveState) {
        // The original's checks stop at `IsClosing` first: a closing server asks no `Cancel`.
        if self.closing {
            return;
        }
        if let Some(job) = self.load_jobs.get_mut(token)
            && job.cancellable
            && !job.cancelled
            && live.cancel_requested(job.caller)
        {
            job.cancelled = true;
        }
    }

    /// One pass of the attempt loop's head (spec §5.3 (a), (b)).
    pub(crate) fn attempt(&mut self, now: Now, token: &Token) {
        let Some(job) = self.load_jobs.get(token) else {
            return;
        };
        if self.closing || job.cancelled {
            self.finish_start(now, token, None);
            return;
        }
        // A final save of the key still to land: a start queues behind it while it is in the
        // key's queue (spec §5.3 (iv)), and waits outside the queue while it waits to retry
        // (deviation for spec §19 item 9; its turn in the queue would come before the retry).
        if self.ending_saves.get(token).is_some_and(|n| *n > 0) {
            if !self.final_save_queued(token) {
                self.wait_behind_final_save(now, token);
                return;
            }
            // Woken by its timeout while the save's retry is in the queue: it gives up. Not a
            // call's first pass (its job made now): the timeout is checked after a failed
            // attempt or a wait (spec §5.3), so even a timeout of 0 lets a start right after
            // `EndSession` queue behind the final save (§5.3 (iv)).
            if now.mono > job.started
                && job
                    .timeout_deadline(&self.constants)
                    .is_some_and(|d| now.mono + crate::timers::TIME_EPSILON >= d)
            {
                self.finish_start(now, token, None);
                return;
            }
        }
        let guid = self.guids.next_guid();
        let job = self.load_jobs.get_mut(token).expect("present");
        job.guid = guid;
        job.phase = StartPhase::InFlight;
        job.attempt_declined = false;
        self.enqueue_op(now, token.clone(), OpKind::Start);
    }

    /// The start of `token` waits for a final save of its key to land (deviation for spec §19
    /// item 9), outside the key's queue. It wakes as its own failing attempts would have while
    /// the final save meets errors (the error backoff: 1, 2, 4 … 20 s): to ask `Cancel` (spec
    /// §5.2 step 7: "at each loop head") and, without `Cancel`, to give up after
    /// START_SESSION_TIMEOUT as it is then (spec §5.3; §2: a constant changed meanwhile
    /// applies), at the deadline itself when that comes first. A start cancelled (or a server
    /// closing) meanwhile returns nil.
    pub(crate) fn wait_behind_final_save(&mut self, now: Now, token: &Token) {
        let Some(job) = self.load_jobs.get_mut(token) else {
            return;
        };
        if self.closing || job.cancelled {
            self.finish_start(now, token, None);
            return;
        }
        // Not on a call's first pass (its job made now): the timeout is checked after a
        // failed attempt or a wait (spec §5.3), so even a timeout of 0 waits one backoff.
        let deadline = job
            .timeout_deadline(&self.constants)
            .filter(|_| now.mono > job.started);
        if deadline.is_some_and(|d| now.mono + crate::timers::TIME_EPSILON >= d) {
            self.finish_start(now, token, None);
            return;
        }
        let wake = now.mono + job.next_backoff();
        job.phase = StartPhase::BehindFinalSave;
        let at = deadline.map_or(wake, |d| d.min(wake));
        self.timers.set(at, Timer::StartBackoff(token.clone()));
    }

    /// Deviation for spec §19 item 8: a write of `token` took the lock from the session with
    /// GUID `guid` and `SessionLoadCount` `load_count` (a steal, `ASSUME_DEAD`, an overwrite);
    /// that session is asked to end now, with the request a waiting server sends before a
    /// steal, rather than playing on until its next save finds the lock gone. Live keys only.
    pub(crate) fn tell_lock_taken(&mut self, token: &Token, guid: &str, load_count: i64) {
        if token.domain() == Domain::Live {
            self.messaging(end_request(guid, load_count));
        }
    }

    /// The server started closing: starts waiting behind a final save return nil now, as the
    /// original's attempt loop stops once `IsClosing` is true (spec §5.3); the saves go on.
    pub(crate) fn end_starts_behind_final_saves(&mut self, now: Now) {
        // In call order: the map's order must not reach the outputs.
        let mut waiting: Vec<(CallId, Token)> = self
            .load_jobs
            .iter()
            .filter(|(_, j)| j.phase == StartPhase::BehindFinalSave)
            .map(|(t, j)| (j.caller, t.clone()))
            .collect();
        waiting.sort_by_key(|(call, _)| *call);
        for (_, token) in waiting {
            self.finish_start(now, &token, None);
        }
    }

    /// A final save of `token` landed: a start waiting behind it attempts now, its `Cancel`
    /// asked first as at any attempt after a wait (spec §5.2 step 7: a player who left while
    /// it waited gets nil, and nothing is written), and a start that was releasing the lock it
    /// took returns nil.
    pub(crate) fn resume_behind_final_save(
        &mut self,
        now: Now,
        token: &Token,
        live: &mut dyn LiveState,
    ) {
        match self.load_jobs.get(token).map(|j| j.phase) {
            Some(StartPhase::BehindFinalSave) => {
                // The timeout set while it waited is not needed any more.
                self.timers
                    .cancel(|t| matches!(t, Timer::StartBackoff(x) if x == token));
                self.ask_cancel(token, live);
                self.attempt(now, token);
            }
            Some(StartPhase::Releasing) => self.finish_start(now, token, None),
            _ => {}
        }
    }

    pub(crate) fn start_transform(
        &mut self,
        token: &Token,
        current: Option<&Value>,
        wall: i64,
        live: &mut dyn LiveState,
    ) -> Transformed {
        if !self.load_jobs.contains_key(token) {
            return Transformed::Cancel;
        }
        self.ask_cancel(token, live);
        let job = self.load_jobs.get_mut(token).expect("checked");
        job.attempt_declined = self.closing || job.cancelled;
        let job = &self.load_jobs[token];
        let template = &self.stores[job.store.0 as usize].template;
        let ctx = StartContext {
            identity: &self.identity,
            guid: &job.guid,
            declined: self.closing || job.cancelled,
            user_steal: job.user_steal,
            steal_session: job.steal_session,
            request_force_load: job.request_force_load,
            assume_dead: self.constants.assume_dead,
            wall,
            template,
        };
        let result = start_transform(current, &ctx);
        let before = current.and_then(ProfileValue::of);
        let lock = before.as_ref().and_then(|v| v.active_session());
        // A run that finds our own lock keeps what an earlier attempt took: that attempt's
        // write committed although it reported an error.
        if !lock.is_some_and(|t| self.identity.owns(t)) {
            let taken_from = match (&before, lock) {
                (Some(before), Some(_)) => taken_session(before, &result, &self.identity),
                _ => None,
            };
            if let Some(job) = self.load_jobs.get_mut(token) {
                job.taken_from = taken_from;
            }
        }
        result
    }

    /// Interprets a session-start write (spec §5.3 (c)).
    pub(crate) fn on_attempt_result(&mut self, now: Now, token: &Token, outcome: Outcome) {
        let Some(job) = self.load_jobs.get_mut(token) else {
            return;
        };
        job.phase = StartPhase::Waiting;
        let declined = self.closing || job.cancelled;
        // A later caller took the job over after this attempt's transform declined for the
        // earlier one (spec §19 item 4): its write claimed nothing, so try again for the new
        // caller rather than read it as someone else's lock.
        let retry_for_new_caller = job.attempt_declined && !declined;
        let (value, key_info) = match outcome {
            Outcome::Ok {
                value,
                key_info: Some(ki),
            } => (value, ki),
            failed => {
                let timed_out = !job.cancellable
                    && now.mono - job.started >= self.constants.start_session_timeout;
                // A write the DataStore can never store (a template nested too deep, say) would
                // fail on every attempt: the call returns nil at once and says why.
                let unstorable = match &failed {
                    Outcome::Failed(e) => {
                        crate::profile::unstorable(&e.message).then(|| e.message.clone())
                    }
                    _ => None,
                };
                if let Some(error) = unstorable {
                    self.warn(format!(
                        "[ProfileStore]: StartSessionAsync (STORE:{}; KEY:{}) returns nil: the DataStore cannot store the profile ({error})",
                        token.store(),
                        token.key()
                    ));
                    self.finish_start(now, token, None);
                } else if timed_out || declined {
                    self.finish_start(now, token, None);
                } else {
                    let wait = job.next_backoff();
                    self.timers
                        .set(now.mono + wait, Timer::StartBackoff(token.clone()));
                }
                return;
            }
        };
        let pv = ProfileValue::of(&value);
        let lock = pv.as_ref().and_then(|p| p.active_session());
        match lock {
            Some(tag) if self.identity.owns(tag) => {
                if let Some((guid, load_count)) = job.taken_from.take() {
                    self.tell_lock_taken(token, &guid, load_count);
                }
                let loaded = self.create_session_profile(now, token, &value, key_info);
                if declined {
                    // The caller gets nil: the host never sees this profile's Data, so the
                    // release writes back what is stored rather than asking the host for it;
                    // nor its id, so nothing will forget it: it is dropped once released.
                    if let Some(p) = self.profiles.get_mut(&loaded.profile) {
                        p.host_has_data = false;
                        p.forgotten = true;
                    }
                    // A release because the server closes is a shutdown save (backoff capped
                    // at 8 s, more tries inside BindToClose's 30 s); the original uses
                    // "Manual" either way (spec §19 item 24).
                    let reason = if self.closing {
                        EndReason::Shutdown
                    } else {
                        EndReason::Manual
                    };
                    self.begin_save(now, loaded.profile, SaveMode::Ending(reason));
                    if self.ending_saves.contains_key(token) {
                        let job = self.load_jobs.get_mut(token).expect("present");
                        job.phase = StartPhase::Releasing;
                    } else {
                        self.finish_start(now, token, None);
                    }
                } else {
                    self.finish_start(now, token, Some(loaded));
                }
            }
            Some(_) | None if retry_for_new_caller => self.attempt(now, token),
            Some(_) if !declined => {
                let pv = pv.expect("a lock implies an object");
                let our_claim = pv
                    .force_load_session()
                    .is_some_and(|f| self.identity.owns(f));
                if !our_claim {
                    self.finish_start(now, token, None);
                    return;
                }
                let steal_steps = self.constants.steal_steps();
                let job = self.load_jobs.get_mut(token).expect("present");
                if !job.request_force_load {
                    job.force_load_steps += 1;
                    if job.force_load_steps >= steal_steps {
                        job.steal_session = true;
                    }
                }
                let wait = if job.request_force_load {
                    self.constants.first_load_repeat
                } else {
                    self.constants.load_repeat_period
                };
                job.request_force_load = false;
                if let Some(guid) = pv.session_guid() {
                    self.messaging(end_request(guid, pv.session_load_count()));
                }
                self.timers
                    .set(now.mono + wait, Timer::ConflictWait(token.clone()));
            }
            _ => self.finish_start(now, token, None),
        }
    }

    fn create_session_profile(
        &mut self,
        now: Now,
        token: &Token,
        value: &std::sync::Arc<Value>,
        key_info: KeyInfo,
    ) -> LoadedProfile {
        let job = &self.load_jobs[token];
        let (store, mock) = (job.store, job.mock);
        let id = ProfileId(self.next_id());
        let mut profile = Profile::from_value(
            id,
            store,
            token.clone(),
            ProfileKind::Session,
            value,
            Some(key_info),
            now.mono,
        );
        profile.is_mock = mock;
        let topic = ProfileValue::of(value)
            .and_then(|p| p.session_guid())
            .map(session_topic);
        if token.domain() == Domain::Live
            && let Some(topic) = topic
        {
            let subscription = SubscriptionId(self.next_id());
            profile.subscription = Some(subscription);
            self.subscriptions.insert(subscription, id);
            self.subscribing.insert(subscription);
            self.messaging(MessagingRequest::Subscribe {
                subscription,
                topic,
            });
        }
        let loaded = LoadedProfile {
            profile: id,
            data: value.get("Data").cloned().unwrap_or_else(|| json!({})),
            roblox_metadata: loaded_metadata(value),
        };
        // One session per key and server: load jobs are one per key and a start on a loaded
        // key is refused, so no session is registered here. Were one, it ends as any session
        // does (`OnSessionEnd`, out of the ring), not left saving for ever (spec §19 item 5).
        if let Some(&displaced) = self.registry.get(token) {
            self.end_registration(displaced);
        }
        profile.registered = true;
        self.profiles.insert(id, profile);
        self.registry.insert(token.clone(), id);
        self.ring.insert(id, now.mono, now.mono);
        loaded
    }

    fn finish_start(&mut self, _now: Now, token: &Token, profile: Option<LoadedProfile>) {
        let Some(job) = self.load_jobs.remove(token) else {
            return;
        };
        self.timers
            .cancel(|t| matches!(t, Timer::ConflictWait(x) | Timer::StartBackoff(x) if x == token));
        self.complete(Completion::SessionStart {
            call: job.caller,
            profile,
        });
        self.check_shutdown_done();
    }
}

fn already_loaded(token: &Token) -> ApiError {
    ApiError::AlreadyLoaded {
        store: token.store().to_string(),
        key: token.key().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> ServerIdentity {
        ServerIdentity {
            place_id: 1001,
            job_id: "A".into(),
        }
    }

    fn ctx<'a>(id: &'a ServerIdentity, template: &'a Value) -> StartContext<'a> {
        StartContext {
            identity: id,
            guid: "G1",
            declined: false,
            user_steal: false,
            steal_session: false,
            request_force_load: true,
            assume_dead: 630.0,
            wall: 1000,
            template,
        }
    }

    fn written(t: Transformed) -> Value {
        match t {
            Transformed::Write { value, .. } => value,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn new_profile_is_taken_with_load_count_1() {
        let (id, template) = (me(), json!({"Coins": 0}));
        let v = written(start_transform(None, &ctx(&id, &template)));
        assert_eq!(
            v,
            json!({
                "Data": {"Coins": 0},
                "GlobalUpdates": [0, []],
                "MetaData": {"ActiveSession": [1001, "A", "G1"], "LastUpdate": 1000, "MetaTags": [],
                             "ProfileCreateTime": 1000, "SessionLoadCount": 1}
            })
        );
    }

    #[test]
    fn declined_start_still_creates_profile_without_lock() {
        let (id, template) = (me(), json!({}));
        let c = StartContext {
            declined: true,
            ..ctx(&id, &template)
        };
        let v = written(start_transform(None, &c));
        assert_eq!(
            v["MetaData"],
            json!({"MetaTags": [], "ProfileCreateTime": 1000, "SessionLoadCount": 0})
        );
    }

    #[test]
    fn foreign_lock_gets_a_force_load_request_then_is_stolen() {
        let (id, template) = (me(), json!({}));
        let stored = json!({"Data": {}, "GlobalUpdates": [0, []], "MetaData": {
            "ActiveSession": [1001, "B", "GB"], "LastUpdate": 990, "SessionLoadCount": 3}});
        let v = written(start_transform(Some(&stored), &ctx(&id, &template)));
        assert_eq!(v["MetaData"]["ForceLoadSession"], json!([1001, "A"]));
        assert_eq!(v["MetaData"]["ActiveSession"], json!([1001, "B", "GB"]));
        assert_eq!(v["MetaData"]["SessionLoadCount"], json!(3));
        assert_eq!(v["WasOverwritten"], json!(false));
        let c = StartContext {
            steal_session: true,
            request_force_load: false,
            ..ctx(&id, &template)
        };
        let v = written(start_transform(Some(&v), &c));
        assert_eq!(v["MetaData"]["ActiveSession"], json!([1001, "A", "G1"]));
        assert_eq!(v["MetaData"]["SessionLoadCount"], json!(4));
        assert!(v["MetaData"].get("ForceLoadSession").is_none());
    }

    #[test]
    fn steal_flag_needs_our_claim_but_user_steal_does_not() {
        let (id, template) = (me(), json!({}));
        let stored = json!({"Data": {}, "GlobalUpdates": [0, []], "MetaData": {
            "ActiveSession": [1001, "B", "GB"], "ForceLoadSession": [1001, "C"], "LastUpdate": 990, "SessionLoadCount": 3}});
        let c = StartContext {
            steal_session: true,
            request_force_load: false,
            ..ctx(&id, &template)
        };
        let v = written(start_transform(Some(&stored), &c));
        assert_eq!(
            v["MetaData"]["ActiveSession"][1],
            json!("B"),
            "someone else asked after us"
        );
        let c = StartContext {
            user_steal: true,
            ..ctx(&id, &template)
        };
        let v = written(start_transform(Some(&stored), &c));
        assert_eq!(v["MetaData"]["ActiveSession"][1], json!("A"));
    }

    /// Spec §19 item 7 (`docs/DEVIATIONS.md` row 7): a lock older than `ASSUME_DEAD` by our
    /// clock is asked for first, and taken once our request is in the stored value (or with
    /// `Steal = true`).
    #[test]
    fn a_lock_that_looks_dead_is_asked_for_then_taken() {
        let (id, template) = (me(), json!({}));
        let stored = json!({"Data": {}, "GlobalUpdates": [0, []], "MetaData": {
            "ActiveSession": [999, "dead", "DG"], "LastUpdate": 1000 - 631, "SessionLoadCount": 3}});
        let later = StartContext {
            request_force_load: false,
            ..ctx(&id, &template)
        };
        // Asked for by the first attempt; a later one with no request of ours standing writes
        // none (as for a live lock: its start gives up).
        let v = written(start_transform(Some(&stored), &ctx(&id, &template)));
        assert_eq!(v["MetaData"]["ActiveSession"], json!([999, "dead", "DG"]));
        assert_eq!(v["MetaData"]["ForceLoadSession"], json!([1001, "A"]));
        assert_eq!(v["MetaData"]["SessionLoadCount"], json!(3));
        let v = written(start_transform(Some(&stored), &later));
        assert_eq!(v["MetaData"]["ActiveSession"], json!([999, "dead", "DG"]));
        assert!(v["MetaData"].get("ForceLoadSession").is_none());
        // Still held when we look again: taken, whether or not the steal threshold was reached.
        let asked = written(start_transform(Some(&stored), &ctx(&id, &template)));
        let c = StartContext {
            request_force_load: false,
            ..ctx(&id, &template)
        };
        let v = written(start_transform(Some(&asked), &c));
        assert_eq!(v["MetaData"]["ActiveSession"], json!([1001, "A", "G1"]));
        assert_eq!(v["MetaData"]["SessionLoadCount"], json!(4));
        assert!(v["MetaData"].get("ForceLoadSession").is_none());
        // Someone else asked since: theirs stands, as for a live lock (our start then gives
        // up), so two servers never take turns overwriting each other's request.
        let mut other = asked.clone();
        other["MetaData"]["ForceLoadSession"] = json!([1001, "C"]);
        let v = written(start_transform(Some(&other), &c));
        assert_eq!(v["MetaData"]["ActiveSession"][1], json!("dead"));
        assert_eq!(v["MetaData"]["ForceLoadSession"], json!([1001, "C"]));
        // `Steal = true` takes at once, as for any lock.
        let steal = StartContext {
            user_steal: true,
            ..ctx(&id, &template)
        };
        let v = written(start_transform(Some(&stored), &steal));
        assert_eq!(v["MetaData"]["ActiveSession"][1], json!("A"));
        // The first attempt of a call asks even when a claim of ours stands (an earlier
        // call's, or this one's after an ambiguous failure): no take without asking.
        let v = written(start_transform(Some(&asked), &ctx(&id, &template)));
        assert_eq!(v["MetaData"]["ActiveSession"][1], json!("dead"));
        assert_eq!(v["MetaData"]["ForceLoadSession"], json!([1001, "A"]));
        // The steal threshold reached changes nothing: our standing claim takes it.
        let stealing = StartContext {
            steal_session: true,
            ..c
        };
        let v = written(start_transform(Some(&asked), &stealing));
        assert_eq!(v["MetaData"]["ActiveSession"][1], json!("A"));
        // Exactly ASSUME_DEAD old is not dead: with our claim standing, a later poll before
        // the steal threshold leaves the lock where it is.
        let mut edge = asked.clone();
        edge["MetaData"]["LastUpdate"] = json!(1000 - 630);
        let v = written(start_transform(Some(&edge), &c));
        assert_eq!(
            v["MetaData"]["ActiveSession"][1],
            json!("dead"),
            "630 s is not more than ASSUME_DEAD"
        );
    }

    #[test]
    fn own_lock_keeps_its_guid() {
        let (id, template) = (me(), json!({}));
        let stored = json!({"Data": {}, "GlobalUpdates": [0, []], "MetaData": {
            "ActiveSession": [1001, "A", "OLD"], "ForceLoadSession": [1001, "B"], "SessionLoadCount": 1}});
        let v = written(start_transform(Some(&stored), &ctx(&id, &template)));
        assert_eq!(v["MetaData"]["ActiveSession"], json!([1001, "A", "OLD"]));
        assert_eq!(v["MetaData"]["SessionLoadCount"], json!(2));
        assert!(v["MetaData"].get("ForceLoadSession").is_none());
    }

    #[test]
    fn junk_is_overwritten_and_stub_messages_carried() {
        let (id, template) = (me(), json!({"Coins": 0}));
        let v = written(start_transform(
            Some(&json!(["ThisAintRight"])),
            &ctx(&id, &template),
        ));
        assert_eq!(v["WasOverwritten"], json!(true));
        assert_eq!(v["Data"], json!({"Coins": 0}));
        let stub = json!({"GlobalUpdates": [1, [[1, {"Gift": "Shield"}]]]});
        let v = written(start_transform(Some(&stub), &ctx(&id, &template)));
        assert_eq!(v["GlobalUpdates"], json!([1, [[1, {"Gift": "Shield"}]]]));
        assert!(v.get("WasOverwritten").is_none());
    }
}
