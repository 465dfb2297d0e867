//! The save pipeline (spec §8, §9): auto-save, `Save()`, `EndSession()`, MessagingService and
//! force-load releases, shutdown, and `SetAsync()` on view profiles.
//!
//! One routine, three modes ([`SaveMode`]): regular (one attempt), ending (retried with backoff
//! capped at 20 s, 8 s for `Shutdown`) and overwrite (one attempt). The synchronous prefix fires
//! `OnSave` → `OnLastSave(reason)` → `OnSessionEnd` before the request is queued; the result
//! fires the signals of spec §8.4 in their exact order.
//!
//! Deviations (docs/DEVIATIONS.md): a save that finds no profile at the key (removed, or junk)
//! writes nothing and ends the session instead of failing forever (spec §19 item 1); an ending
//! save whose `Profile.Data` is not a table still releases the lock, keeping the stored `Data`
//! (item 16); `SetAsync` on a removed or junk key writes the view profile as a whole profile,
//! and one that removes a session's lock tells that session (item 8).

use std::sync::Arc;

use crate::value::{Value, json};

use crate::engine::{Engine, LiveState, OpKind, OpNote, Outcome};
use crate::error::ApiError;
use crate::profile::{DataProblem, LastSavedData};
use crate::protocol::*;
use crate::session::write;
use crate::timers::Timer;
use crate::wire::{self, ClassifiedRef, ProfileValue, ServerIdentity, StoredData};

/// How a save behaves (spec §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SaveMode {
    /// Auto-save, `Save()`, message-triggered: one attempt, the session continues.
    Regular,
    /// Final save: releases the lock, retried until it succeeds.
    Ending(EndReason),
    /// `SetAsync()` on a view profile: overwrite and clear any lock, one attempt.
    Overwrite(CallId),
}

/// A save in progress.
#[derive(Clone, Debug)]
pub(crate) struct SaveJob {
    pub profile: ProfileId,
    pub mode: SaveMode,
    pub backoff: f64,
    /// A final save the DataStore refused as unstorable or too large
    /// ([`crate::profile::unstorable`], [`crate::profile::too_large`]): its error. The next
    /// tries release the lock keeping the stored `Data` and `RobloxMetaData`.
    pub refused: Option<String>,
    /// An overwrite's transform removed a session's lock: that session's GUID and
    /// `SessionLoadCount`, told once the write lands (deviation for spec §19 item 8).
    pub lock_removed: Option<(String, i64)>,
}

/// What the save transform needs (spec §8.2).
pub struct SaveContext<'a> {
    /// This server.
    pub identity: &'a ServerIdentity,
    /// The mode.
    pub mode: SaveMode,
    /// `SessionLoadCount` the profile object was created with.
    pub load_index: i64,
    /// Message ids marked processed.
    pub processed: &'a std::collections::BTreeSet<i64>,
    /// `Profile.Data` now, or `None` to keep the stored `Data`.
    pub data: Option<Value>,
    /// `Profile.RobloxMetaData` now, or `None` to keep the stored one.
    pub roblox_metadata: Option<Value>,
    /// `Profile.UserIds` now.
    pub user_ids: &'a [i64],
    /// `Profile.FirstSessionTime` (used when an overwrite has to build a whole profile).
    pub first_session_time: f64,
    /// `os.time()` when the transform runs.
    pub wall: i64,
}

/// Whether a stored value's lock is this profile's session: this server and this generation.
pub fn owns_session(identity: &ServerIdentity, value: &ProfileValue<'_>, load_index: i64) -> bool {
    value.active_session().is_some_and(|t| identity.owns(t))
        && value.session_load_count() == load_index
}

/// The save transform (spec §8.2): a pure function of the stored value and the profile's state.
pub fn save_transform(current: Option<&Value>, ctx: SaveContext<'_>) -> (Transformed, OpNoteKind) {
    match wire::classify_ref(current) {
        ClassifiedRef::Valid(stored) => {
            let owned = matches!(ctx.mode, SaveMode::Overwrite(_))
                || owns_session(
                    ctx.identity,
                    &ProfileValue::of_object(stored),
                    ctx.load_index,
                );
            // An owned save replaces Data: do not copy the old one.
            let data = if owned && ctx.data.is_some() {
                StoredData::Replace
            } else {
                StoredData::Keep
            };
            let mut obj = wire::working_copy(stored, data, ctx.wall);
            obj.insert("WasOverwritten".into(), Value::Bool(false));
            if owned {
                let (mode, wall) = (ctx.mode, ctx.wall);
                write_profile_fields(&mut obj, ctx);
                let meta = wire::meta_mut(&mut obj);
                match mode {
                    SaveMode::Overwrite(_) => {
                        meta.remove("ActiveSession");
                        meta.remove("ForceLoadSession");
                    }
                    SaveMode::Regular => {
                        meta.insert("LastUpdate".into(), Value::from(wall));
                    }
                    SaveMode::Ending(_) => {
                        meta.insert("LastUpdate".into(), Value::from(wall));
                        meta.remove("ActiveSession");
                    }
                }
            }
            (write(obj), OpNoteKind::Saved)
        }
        ClassifiedRef::Missing {
            overwritten,
            global_updates,
        } => match ctx.mode {
            SaveMode::Overwrite(_) => {
                let mut obj = wire::new_profile(&json!({}), ctx.wall, global_updates);
                let meta = wire::meta_mut(&mut obj);
                meta.insert(
                    "ProfileCreateTime".into(),
                    wire::number(ctx.first_session_time),
                );
                meta.insert("SessionLoadCount".into(), Value::from(ctx.load_index));
                write_profile_fields(&mut obj, ctx);
                if overwritten {
                    obj.insert("WasOverwritten".into(), Value::Bool(true));
                }
                (write(obj), OpNoteKind::Saved)
            }
            _ => (Transformed::Cancel, OpNoteKind::NotAProfile),
        },
    }
}

/// What the save transform found, beside its write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpNoteKind {
    /// A profile was written (owned or not).
    Saved,
    /// No profile at the key: nothing written.
    NotAProfile,
}

/// Moves the profile's `Data`, `RobloxMetaData` and `UserIds` into the working copy. Processed
/// messages leave the queue only together with the `Data` that holds their effect (spec
/// §10.3): a save that keeps the stored `Data` keeps them queued, for the next session.
fn write_profile_fields(obj: &mut wire::Object, ctx: SaveContext<'_>) {
    if let Some(data) = ctx.data {
        wire::remove_processed(obj, ctx.processed);
        obj.insert("Data".into(), data);
    }
    match ctx.roblox_metadata {
        Some(roblox_metadata) => {
            obj.insert("RobloxMetaData".into(), roblox_metadata);
        }
        // Without the host's (it never had the profile, or the store refused it) the stored
        // one is kept; a profile that has none yet gets the `{}` its `RobloxMetaData` starts as
        // (spec §16): an owned save writes the two fields together, as the original does.
        None if obj.get("RobloxMetaData").is_none_or(Value::is_null) => {
            obj.insert("RobloxMetaData".into(), Value::Object(wire::Object::new()));
        }
        None => {}
    }
    obj.insert(
        "UserIds".into(),
        ctx.user_ids
            .iter()
            .copied()
            .map(Value::from)
            .collect::<Vec<_>>()
            .into(),
    );
}

impl Engine {
    /// `Profile:EndSession()` (spec §9.1): if active, the final save with reason `Manual` starts
    /// now (`OnSave`, `OnLastSave`, `OnSessionEnd` fire before this returns); else nothing.
    pub fn end_session(&mut self, now: Now, profile: ProfileId) {
        if self.is_active(profile) {
            self.begin_save(now, profile, SaveMode::Ending(EndReason::Manual));
        }
    }

    /// `Profile:Save()` (spec §9.2): an immediate regular save of an active profile, which also
    /// moves it to the back of the auto-save ring. On an inactive profile it only warns.
    pub fn save(&mut self, now: Now, profile: ProfileId) -> Result<(), ApiError> {
        let p = self
            .profiles
            .get(&profile)
            .ok_or(ApiError::UnknownProfile(profile.0))?;
        if p.kind == crate::profile::ProfileKind::View {
            return Err(ApiError::SaveInViewMode);
        }
        if !self.is_active(profile) {
            let text = format!(
                "[ProfileStore]: Attempted saving an inactive profile (STORE:{}; KEY:{}); Traceback:",
                p.store_name, p.key
            );
            self.warn(text);
            return Ok(());
        }
        self.save_active(now, profile);
        Ok(())
    }

    /// `Save()` on a profile known to be active.
    pub(crate) fn save_active(&mut self, now: Now, profile: ProfileId) {
        let loaded_at = self.profiles[&profile].load_timestamp;
        self.ring.remove(profile);
        self.ring.insert(profile, loaded_at, now.mono);
        self.begin_save(now, profile, SaveMode::Regular);
    }

    /// `Profile:SetAsync()` (spec §9.3): overwrites the key with this view profile and clears any
    /// lock (telling the session that held it, deviation 8). Answered by
    /// [`Completion::SetAsync`].
    pub fn set_async(&mut self, now: Now, profile: ProfileId) -> Result<CallId, ApiError> {
        let p = self
            .profiles
            .get(&profile)
            .ok_or(ApiError::UnknownProfile(profile.0))?;
        if p.kind != crate::profile::ProfileKind::View {
            return Err(ApiError::SetAsyncNotViewMode);
        }
        let call = self.new_call();
        self.begin_save(now, profile, SaveMode::Overwrite(call));
        Ok(call)
    }

    /// The synchronous prefix of every save (spec §8.1), then the queued write.
    pub(crate) fn begin_save(&mut self, now: Now, profile: ProfileId, mode: SaveMode) {
        let Some(p) = self.profiles.get_mut(&profile) else {
            return;
        };
        p.pending_saves += 1;
        let token = p.token.clone();
        self.emit(Event::OnSave { profile });
        if let SaveMode::Ending(reason) = mode {
            self.emit(Event::OnLastSave { profile, reason });
            self.end_registration(profile);
            *self.ending_saves.entry(token.clone()).or_default() += 1;
        }
        let id = self.next_id();
        self.saves.insert(
            id,
            SaveJob {
                profile,
                mode,
                backoff: 1.0,
                refused: None,
                lock_removed: None,
            },
        );
        self.enqueue_op(now, token, OpKind::Save(id));
    }

    /// Ends the session locally: unsubscribe, leave the ring and the registry, `OnSessionEnd`.
    pub(crate) fn end_registration(&mut self, profile: ProfileId) {
        self.unsubscribe(profile);
        if self.is_active(profile)
            && let Some(p) = self.profiles.get_mut(&profile)
        {
            p.registered = false;
            let token = p.token.clone();
            self.registry.remove(&token);
            self.ring.remove(profile);
            self.emit(Event::OnSessionEnd { profile });
        }
    }

    /// Disconnects the session's subscription (spec §10.4). One whose `SubscribeAsync` has not
    /// returned yet has no connection to disconnect: it stays known, and is disconnected when
    /// the call returns ([`Engine::handle_subscribe_result`]).
    fn unsubscribe(&mut self, profile: ProfileId) {
        if let Some(subscription) = self
            .profiles
            .get_mut(&profile)
            .and_then(|p| p.subscription.take())
            && !self.subscribing.contains(&subscription)
        {
            self.subscriptions.remove(&subscription);
            self.messaging(MessagingRequest::Unsubscribe { subscription });
        }
    }

    pub(crate) fn retry_save(&mut self, now: Now, id: u64) {
        if let Some(job) = self.saves.get(&id) {
            let token = self.profiles[&job.profile].token.clone();
            self.enqueue_op(now, token, OpKind::Save(id));
        }
    }

    pub(crate) fn save_transform(
        &mut self,
        id: u64,
        current: Option<&Value>,
        wall: i64,
        live: &mut dyn LiveState,
    ) -> (Transformed, OpNote) {
        let Some(job) = self.saves.get(&id) else {
            return (Transformed::Cancel, OpNote::None);
        };
        let mode = job.mode;
        let p = &self.profiles[&job.profile];
        let mut note = OpNote::None;
        let refused = job.refused.is_some();
        let (data, roblox_metadata) = if p.host_has_data && !refused {
            (live.data(p.id), Some(live.roblox_metadata(p.id)))
        } else {
            (Value::Null, None)
        };
        let data = if refused {
            note = OpNote::DataRejected(DataProblem::Refused);
            None
        } else if !p.host_has_data {
            None
        } else if let Some(problem) = DataProblem::of(&data) {
            if !matches!(mode, SaveMode::Ending(_)) {
                return (Transformed::Error(p.data_error(problem)), OpNote::None);
            }
            note = OpNote::DataRejected(problem);
            None
        } else {
            Some(data)
        };
        let ctx = SaveContext {
            identity: &self.identity,
            mode,
            load_index: p.load_index,
            processed: &p.processed,
            data,
            roblox_metadata,
            user_ids: &p.user_ids,
            first_session_time: p.first_session_time,
            wall,
        };
        let (result, kind) = save_transform(current, ctx);
        if kind == OpNoteKind::NotAProfile {
            note = OpNote::NotAProfile;
        }
        if matches!(mode, SaveMode::Overwrite(_)) {
            let before = current.and_then(ProfileValue::of);
            let lock_removed = before
                .filter(|_| matches!(result, Transformed::Write { .. }))
                .and_then(|v| Some((v.session_guid()?.to_string(), v.session_load_count())));
            if let Some(job) = self.saves.get_mut(&id) {
                job.lock_removed = lock_removed;
            }
        }
        (result, note)
    }

    /// Interprets a save's result (spec §8.3).
    pub(crate) fn on_save_result(&mut self, now: Now, id: u64, outcome: Outcome, note: OpNote) {
        let Some(job) = self.saves.get(&id).cloned() else {
            return;
        };
        let profile = job.profile;
        // Said once the release landed: a write that failed released nothing (it retries).
        let landed = matches!(
            outcome,
            Outcome::Ok {
                key_info: Some(_),
                ..
            }
        );
        if let OpNote::DataRejected(problem) = note
            && landed
        {
            let p = &self.profiles[&profile];
            let refused = job
                .refused
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            let text = format!(
                "{}{refused}; the session was released keeping the last saved Data",
                p.data_error(problem)
            );
            self.warn(text);
        }
        if let SaveMode::Overwrite(call) = job.mode {
            let ok = landed;
            if ok && let Some((guid, load_count)) = &job.lock_removed {
                let token = self.profiles[&profile].token.clone();
                self.tell_lock_taken(&token, guid, *load_count);
            }
            self.finish_save(id);
            self.complete(Completion::SetAsync { call, ok });
            return;
        }
        match outcome {
            Outcome::Ok {
                value,
                key_info: Some(ki),
            } => self.after_save(now, id, value, ki),
            Outcome::Ok { .. } if note == OpNote::NotAProfile => {
                let p = &self.profiles[&profile];
                let text = format!(
                    "[ProfileStore]: Profile (STORE:{}; KEY:{}) was removed or overwritten externally; the session has ended",
                    p.store_name, p.key
                );
                self.warn(text);
                self.end_registration(profile);
                self.finish_save(id);
            }
            _ => match job.mode {
                SaveMode::Ending(reason) => {
                    // Writing an unstorable value again cannot succeed: the next tries release
                    // the lock keeping what is stored (as for a `Data` that is not a table).
                    if let Outcome::Failed(e) = &outcome
                        && (crate::profile::unstorable(&e.message)
                            || crate::profile::too_large(&e.message))
                        && let Some(job) = self.saves.get_mut(&id)
                    {
                        job.refused.get_or_insert_with(|| e.message.clone());
                    }
                    let cap = if reason == EndReason::Shutdown {
                        8.0
                    } else {
                        20.0
                    };
                    let job = self.saves.get_mut(&id).expect("present");
                    let wait = job.backoff;
                    job.backoff = (job.backoff * 2.0).min(cap);
                    self.timers.set(now.mono + wait, Timer::SaveRetry(id));
                }
                _ => self.finish_save(id),
            },
        }
    }

    fn after_save(&mut self, now: Now, id: u64, stored: Arc<Value>, key_info: KeyInfo) {
        let value: &Value = &stored;
        let job = self.saves[&id].clone();
        let profile = job.profile;
        let Some(pv) = ProfileValue::of(value) else {
            // Not a profile (a misbehaving DataStore): the session cannot continue.
            let p = &self.profiles[&profile];
            let text = format!(
                "[ProfileStore]: The DataStore answered a save of (STORE:{}; KEY:{}) with a value that is not a profile; the session has ended",
                p.store_name, p.key
            );
            self.warn(text);
            self.end_registration(profile);
            self.finish_save(id);
            return;
        };
        let load_index = self.profiles[&profile].load_index;
        let owned = owns_session(&self.identity, &pv, load_index);
        let force_load_pending = pv
            .force_load_session()
            .is_some_and(|f| !self.identity.owns(f));
        let is_active = self.is_active(profile);
        if force_load_pending && owned {
            // The nested ending save starts before this one counts as finished (spec §8.3:
            // the job count drops at the end), so a shutdown waits for it.
            if is_active {
                self.begin_save(now, profile, SaveMode::Ending(EndReason::External));
            }
            self.finish_save(id);
            return;
        }
        let entries = pv.global_update_entries().to_vec();
        let p = self
            .profiles
            .get_mut(&profile)
            .expect("saved profile exists");
        let mut still_pending = std::collections::BTreeSet::new();
        let mut new_messages = Vec::new();
        for entry in &entries {
            let Some(mid) = wire::message_id(entry) else {
                continue;
            };
            if p.processed.contains(&mid) {
                still_pending.insert(mid);
            } else if p.received.insert(mid)
                && let Some(payload) = wire::entry_payload(entry)
            {
                new_messages.push((mid, payload.clone()));
            }
        }
        p.processed.retain(|i| still_pending.contains(i));
        p.key_info = Some(key_info);
        p.last_saved_data = LastSavedData::of(Arc::clone(&stored));
        p.global_updates = entries;
        let has_handlers = p.handler_count > 0;
        let last_saved_data = p.last_saved_data.clone();
        if owned {
            if is_active && job.mode == SaveMode::Regular && has_handlers {
                for (mid, payload) in new_messages {
                    self.emit(Event::Message {
                        profile,
                        id: mid,
                        payload,
                        to: Delivery::AllHandlers,
                    });
                }
            }
        } else {
            self.end_registration(profile);
        }
        self.emit(Event::OnAfterSave {
            profile,
            last_saved_data,
        });
        self.finish_save(id);
    }

    fn finish_save(&mut self, id: u64) {
        let Some(job) = self.saves.remove(&id) else {
            return;
        };
        let mut forgotten = false;
        if let Some(p) = self.profiles.get_mut(&job.profile) {
            p.pending_saves = p.pending_saves.saturating_sub(1);
            forgotten = p.forgotten;
        }
        if let SaveMode::Ending(_) = job.mode {
            let token = self.profiles[&job.profile].token.clone();
            let remaining = self.ending_saves.get_mut(&token).map(|n| {
                *n -= 1;
                *n
            });
            if remaining == Some(0) {
                self.ending_saves.remove(&token);
                // Resumed once the answer is handled, where the host's `Cancel` can be asked.
                self.landed_final_saves.push(token);
            }
        }
        self.check_shutdown_done();
        // Every way a session ends goes through a save: this is where a forgotten profile
        // stops being busy.
        if forgotten {
            self.drop_profile_if_forgotten(job.profile);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Only the errors that say the value or its metadata can never be stored stop a final
    /// save from writing the host's values again: the five codes `docs/DEVIATIONS.md` row 16
    /// names, with the simulated DataStore's texts.
    #[test]
    fn unstorable_errors_are_the_value_and_metadata_codes() {
        use crate::profile::unstorable;
        for message in [
            "103: Can't allow nil in DataStore.",
            "104: Can't store NaN in DataStore.",
            "511: Metadata attribute exceeds 300 limit.",
            "513: Attribute metadata format is invalid.",
            "513: Attribute userId format is invalid.",
        ] {
            assert!(unstorable(message), "{message}");
        }
        // Too many user ids: a later write can carry fewer (`RemoveUserId`), so it retries.
        assert!(!unstorable("512: UserID size exceeds 4 limit."));
        // Too large is not unstorable for ever (a key can shrink); only a final save takes it
        // for a refusal.
        let large = "105: Value exceeds the 4194304 character limit.";
        assert!(!unstorable(large) && crate::profile::too_large(large));
        for message in [
            "301: GetAsync request dropped. Request was throttled but queue was full.",
            "502: RequestRejected",
            "Undefined error",
            "KeyThrottled: The request rate exceeds the allowed maximum for the key.",
        ] {
            assert!(!unstorable(message), "{message}");
        }
    }

    fn me() -> ServerIdentity {
        ServerIdentity {
            place_id: 1001,
            job_id: "A".into(),
        }
    }

    fn stored() -> Value {
        json!({"Data": {"Coins": 1}, "GlobalUpdates": [3, [[2, {"g": 2}], [3, {"g": 3}]]],
               "MetaData": {"ActiveSession": [1001, "A", "G"], "SessionLoadCount": 2, "LastUpdate": 5,
                            "ProfileCreateTime": 1, "MetaTags": [], "Custom": true},
               "Extra": "kept"})
    }

    fn ctx<'a>(
        id: &'a ServerIdentity,
        processed: &'a BTreeSet<i64>,
        mode: SaveMode,
    ) -> SaveContext<'a> {
        SaveContext {
            identity: id,
            mode,
            load_index: 2,
            processed,
            data: Some(json!({"Coins": 9})),
            roblox_metadata: Some(json!({"Rank": "Gold"})),
            user_ids: &[101],
            first_session_time: 1.0,
            wall: 100,
        }
    }

    #[test]
    fn owned_regular_save_writes_data_and_removes_processed() {
        let id = me();
        let processed = BTreeSet::from([2]);
        let (t, note) = save_transform(Some(&stored()), ctx(&id, &processed, SaveMode::Regular));
        assert_eq!(note, OpNoteKind::Saved);
        let Transformed::Write {
            value,
            user_ids,
            metadata,
        } = t
        else {
            panic!()
        };
        assert_eq!(value["Data"], json!({"Coins": 9}));
        assert_eq!(value["GlobalUpdates"], json!([3, [[3, {"g": 3}]]]));
        assert_eq!(value["MetaData"]["LastUpdate"], json!(100));
        assert_eq!(value["MetaData"]["ActiveSession"], json!([1001, "A", "G"]));
        assert_eq!(value["MetaData"]["Custom"], json!(true));
        assert_eq!(value["Extra"], json!("kept"));
        assert_eq!(user_ids, Some(json!([101])));
        assert_eq!(metadata, Some(json!({"Rank": "Gold"})));
    }

    #[test]
    fn ending_save_clears_the_lock() {
        let id = me();
        let processed = BTreeSet::new();
        let (t, _) = save_transform(
            Some(&stored()),
            ctx(&id, &processed, SaveMode::Ending(EndReason::Manual)),
        );
        let Transformed::Write { value, .. } = t else {
            panic!()
        };
        assert!(value["MetaData"].get("ActiveSession").is_none());
        assert_eq!(value["MetaData"]["LastUpdate"], json!(100));
    }

    #[test]
    fn stale_generation_is_not_owned_and_nothing_changes() {
        let id = me();
        let processed = BTreeSet::new();
        let c = SaveContext {
            load_index: 1,
            ..ctx(&id, &processed, SaveMode::Regular)
        };
        let (t, _) = save_transform(Some(&stored()), c);
        let Transformed::Write { value, .. } = t else {
            panic!()
        };
        let mut expected = stored();
        expected["WasOverwritten"] = json!(false);
        assert_eq!(value, expected);
    }

    #[test]
    fn overwrite_clears_lock_and_claim_but_keeps_counters() {
        let id = me();
        let processed = BTreeSet::new();
        let mut v = stored();
        v["MetaData"]["ForceLoadSession"] = json!([1001, "B"]);
        let (t, _) = save_transform(
            Some(&v),
            ctx(&id, &processed, SaveMode::Overwrite(CallId(1))),
        );
        let Transformed::Write { value, .. } = t else {
            panic!()
        };
        assert!(value["MetaData"].get("ActiveSession").is_none());
        assert!(value["MetaData"].get("ForceLoadSession").is_none());
        assert_eq!(value["MetaData"]["LastUpdate"], json!(5));
        assert_eq!(value["MetaData"]["SessionLoadCount"], json!(2));
    }

    #[test]
    fn save_to_missing_key_writes_nothing() {
        let id = me();
        let processed = BTreeSet::new();
        for mode in [SaveMode::Regular, SaveMode::Ending(EndReason::Shutdown)] {
            let (t, note) = save_transform(None, ctx(&id, &processed, mode));
            assert_eq!((t, note), (Transformed::Cancel, OpNoteKind::NotAProfile));
        }
        let (t, _) = save_transform(
            Some(&json!(42)),
            ctx(&id, &processed, SaveMode::Overwrite(CallId(1))),
        );
        let Transformed::Write { value, .. } = t else {
            panic!()
        };
        assert_eq!(value["Data"], json!({"Coins": 9}));
        assert_eq!(value["WasOverwritten"], json!(true));
        assert_eq!(value["MetaData"]["SessionLoadCount"], json!(2));
    }
}
