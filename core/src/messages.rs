//! Messages (spec §10): `MessageAsync`, the `GlobalUpdates` queue, `MessageHandler` delivery and
//! `processed()`, and the MessagingService requests that nudge or release a session.
//!
//! Deviation (docs/DEVIATIONS.md, spec §19 item 11): when `MAX_MESSAGE_QUEUE` drops the oldest
//! entries the engine warns instead of dropping silently; the limit itself cannot be set below 1.

use crate::guid::session_topic;
use crate::value::{Value, json};

use crate::engine::{Engine, OpKind, OpNote, Outcome, StoreRef};
use crate::error::{ApiError, check_profile_key};
use crate::protocol::*;
use crate::queue::Token;
use crate::read::Parked;
use crate::save::SaveMode;
use crate::session::write;
use crate::timers::Timer;

/// The deepest message `MessageAsync` takes: a key's message queue holds it four levels down
/// (the stored value, `GlobalUpdates`, its list of messages, the `[id, message]` entry), and a
/// store takes values nested up to [`MAX_DEPTH`](crate::value::MAX_DEPTH) levels.
pub const MAX_MESSAGE_DEPTH: usize = crate::value::MAX_DEPTH - 4;
use crate::wire::{self, Classified, ProfileValue};

/// The MessagingService reaction rate limit per profile, seconds (spec §2, §10.4).
pub const REACTION_INTERVAL: f64 = 6.0;

/// A `MessageAsync` call in progress.
#[derive(Clone, Debug)]
pub(crate) struct MessageCall {
    pub token: Token,
    pub message: Value,
    pub backoff: f64,
}

/// The id a new message gets on a key whose message counter is `last` (a whole number):
/// `last + 1`; for a negative counter so large that adding 1 gives it back (another tool's),
/// the next whole number above it that a double holds, and -2^63 (the least id that can be
/// delivered, `wire::whole_number`) for one below that. None when no id is left above the
/// counter: from 2^53 on adding 1 can give the counter back, and past 2^63 no id can be
/// delivered; the original would store the message under an id already used.
fn next_id(last: f64) -> Option<f64> {
    const LEAST: f64 = -9_223_372_036_854_775_808.0; // -2^63
    let id = if last < LEAST {
        LEAST
    } else if last + 1.0 > last || last >= 0.0 {
        last + 1.0
    } else {
        last.next_up()
    };
    (id > last && wire::whole_number(id).is_some()).then_some(id)
}

/// The message counter of the stored value `current` as the message transform reads it (a
/// repaired queue's; 0 for none), whole.
fn counter_of(current: Option<&Value>) -> f64 {
    let queue = match wire::classify(current, 0) {
        Classified::Valid(obj) => obj.get("GlobalUpdates").cloned(),
        Classified::Missing { global_updates, .. } => Some(global_updates),
    };
    queue
        .and_then(|q| q.get(0).and_then(Value::as_f64))
        .unwrap_or(0.0)
        .floor()
}

/// Why a message found no id: its key's counter.
pub(crate) fn no_message_id(last: f64) -> String {
    format!(
        "no message id is left above the key's message counter ({})",
        crate::lua_number(last)
    )
}

/// The message transform (spec §10.1 step 2): append `[id, message]` with the next id, then drop
/// the oldest entries beyond `max_queue` (`wall`: `os.time()`, for a `MetaData` the value
/// lacked, see [`wire::working_copy`]). Returns the write and how many entries were dropped;
/// a transform error, writing nothing, when the key's counter has no id left above it (from
/// 2^53 on, adding 1 can give the counter back; past 2^63 no id can be delivered: only another
/// tool writes such a counter).
pub fn message_transform(
    current: Option<&Value>,
    message: &Value,
    max_queue: usize,
    wall: i64,
) -> (Transformed, usize) {
    let (mut obj, overwritten) = match wire::classify(current, wall) {
        Classified::Valid(mut obj) => {
            obj.insert("WasOverwritten".into(), Value::Bool(false));
            (obj, false)
        }
        Classified::Missing {
            overwritten,
            global_updates,
        } => {
            let mut obj = wire::Object::new();
            obj.insert("GlobalUpdates".into(), global_updates);
            (obj, overwritten)
        }
    };
    let queue = obj
        .get_mut("GlobalUpdates")
        .and_then(Value::as_array_mut)
        .expect("classify repairs GlobalUpdates");
    // A whole number past the counter (a counter another tool left fractional, 2.5, gives 3):
    // message ids are whole numbers (`wire::message_id`).
    let last = queue[0].as_f64().unwrap_or(0.0).floor();
    let Some(id) = next_id(last) else {
        return (Transformed::Error(no_message_id(last)), 0);
    };
    queue[0] = wire::number(id);
    let entries = queue[1]
        .as_array_mut()
        .expect("classify repairs GlobalUpdates");
    entries.push(Value::from(vec![wire::number(id), message.clone()]));
    let dropped = entries.len().saturating_sub(max_queue);
    entries.drain(..dropped);
    if overwritten {
        obj.insert("WasOverwritten".into(), Value::Bool(true));
    }
    (write(obj), dropped)
}

impl Engine {
    /// `store:MessageAsync(key, message)` (spec §10.1): appends the message to the key's queue,
    /// retrying until it succeeds or the server closes. Answered by [`Completion::Message`].
    pub fn message(
        &mut self,
        now: Now,
        store: StoreRef,
        key: &str,
        message: Value,
    ) -> Result<CallId, ApiError> {
        check_profile_key(key)?;
        self.check_store(store)?;
        if !wire::is_table(&message) {
            return Err(ApiError::MessageNotTable);
        }
        if message.nested_deeper_than(MAX_MESSAGE_DEPTH) {
            return Err(ApiError::MessageTooDeep);
        }
        if message.json_len() > crate::profile::MAX_VALUE_LEN {
            return Err(ApiError::MessageTooLarge(message.json_len()));
        }
        let call = self.new_call();
        if self.closing {
            self.complete(Completion::Message { call, ok: false });
        } else if self.state == DataStoreState::NotReady {
            self.parked.push(Parked::Message {
                call,
                store,
                key: key.to_string(),
                message,
            });
        } else {
            self.begin_message(now, call, store, key, message);
        }
        Ok(call)
    }

    pub(crate) fn begin_message(
        &mut self,
        now: Now,
        call: CallId,
        store: StoreRef,
        key: &str,
        message: Value,
    ) {
        let token = self.token(store, key);
        self.message_calls.insert(
            call,
            MessageCall {
                token,
                message,
                backoff: 1.0,
            },
        );
        self.attempt_message(now, call);
    }

    pub(crate) fn attempt_message(&mut self, now: Now, call: CallId) {
        let Some(m) = self.message_calls.get(&call) else {
            return;
        };
        if self.closing {
            self.message_calls.remove(&call);
            self.complete(Completion::Message { call, ok: false });
            return;
        }
        let token = m.token.clone();
        self.enqueue_op(now, token, OpKind::Message(call));
    }

    pub(crate) fn message_transform(
        &mut self,
        call: CallId,
        current: Option<&Value>,
        wall: i64,
    ) -> (Transformed, OpNote) {
        let Some(m) = self.message_calls.get(&call) else {
            return (Transformed::Cancel, OpNote::None);
        };
        let max = self.constants.max_message_queue as usize;
        let (t, dropped) = message_transform(current, &m.message, max, wall);
        let note = if let Transformed::Error(_) = t {
            OpNote::NoMessageId(counter_of(current))
        } else if dropped > 0 {
            OpNote::DroppedMessages(dropped)
        } else {
            OpNote::None
        };
        (t, note)
    }

    pub(crate) fn on_message_result(
        &mut self,
        now: Now,
        call: CallId,
        outcome: Outcome,
        note: OpNote,
    ) {
        let Some(m) = self.message_calls.get_mut(&call) else {
            return;
        };
        match outcome {
            Outcome::Ok { value, .. } => {
                let token = m.token.clone();
                self.message_calls.remove(&call);
                if let OpNote::DroppedMessages(n) = note {
                    self.warn(format!(
                        "[ProfileStore]: MAX_MESSAGE_QUEUE reached (STORE:{}; KEY:{}): the {n} oldest message(s) were dropped",
                        token.store(), token.key()
                    ));
                }
                if let Some(&profile) = self.registry.get(&token) {
                    self.save_active(now, profile);
                } else if let Some(pv) = ProfileValue::of(&value)
                    && let Some(guid) = pv.session_guid()
                {
                    let data = json!({"LoadCount": pv.session_load_count()});
                    self.messaging(MessagingRequest::Publish {
                        topic: session_topic(guid),
                        data,
                    });
                }
                self.complete(Completion::Message { call, ok: true });
            }
            Outcome::Failed(e) => {
                // A message the DataStore can never store (nested too deep once queued, say),
                // or that no id is left for, fails the call instead of retrying for ever.
                // (The request may also have failed on its way: the reason is the counter's
                // all the same, and trying again would find it the same.)
                let reason = if let OpNote::NoMessageId(last) = note {
                    Some(no_message_id(last))
                } else if crate::profile::unstorable(&e.message) {
                    Some(format!(
                        "the DataStore cannot store the message ({})",
                        e.message
                    ))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    let text = format!(
                        "[ProfileStore]: MessageAsync (STORE:{}; KEY:{}) failed: {reason}",
                        m.token.store(),
                        m.token.key(),
                    );
                    self.message_calls.remove(&call);
                    self.warn(text);
                    self.complete(Completion::Message { call, ok: false });
                } else {
                    // The loop waits out its backoff before it looks at `IsClosing` (spec
                    // §10.1 step 4, §9.4): closing, the call returns false at the retry.
                    let wait = m.backoff;
                    m.backoff = (m.backoff * 2.0).min(20.0);
                    self.timers.set(now.mono + wait, Timer::MessageRetry(call));
                }
            }
        }
    }

    /// `Profile:MessageHandler(fn)` (spec §10.3): registers a handler on an active or view
    /// profile and replays every unprocessed message to it ([`Event::Message`] with
    /// [`Delivery::Handler`]). Returns false (not registered) for an ended session.
    pub fn add_message_handler(&mut self, profile: ProfileId) -> Result<bool, ApiError> {
        let p = self
            .profiles
            .get(&profile)
            .ok_or(ApiError::UnknownProfile(profile.0))?;
        if p.kind != crate::profile::ProfileKind::View && !self.is_active(profile) {
            return Ok(false);
        }
        let index = p.handler_count;
        let pending = p.pending_messages();
        self.profiles
            .get_mut(&profile)
            .expect("checked")
            .handler_count += 1;
        for (id, payload) in pending {
            self.emit(Event::Message {
                profile,
                id,
                payload,
                to: Delivery::Handler(index),
            });
        }
        Ok(true)
    }

    /// A handler called `processed()` for message `id` (spec §10.3): the entry is removed from
    /// the DataStore by the next owned save, atomically with that save's `Data`. Refused for an
    /// unknown profile, for a message id the profile has not seen, and while it has no handler
    /// ([`ApiError::MessageNotDelivered`]).
    pub fn message_processed(&mut self, profile: ProfileId, id: i64) -> Result<(), ApiError> {
        let p = self
            .profiles
            .get_mut(&profile)
            .ok_or(ApiError::UnknownProfile(profile.0))?;
        // Only a message the handlers were given: the next save removes a processed one from
        // the DataStore.
        if p.handler_count == 0 || !p.received.contains(&id) {
            return Err(ApiError::MessageNotDelivered {
                profile: profile.0,
                id,
            });
        }
        p.processed.insert(id);
        Ok(())
    }

    /// A MessagingService message arrived on a subscription (spec §10.4): a matching `LoadCount`
    /// makes an active profile save (`Save()`), or end its session (`EndSession = true`, reason
    /// `External`), at most once per 6 s.
    pub fn handle_message_received(
        &mut self,
        now: Now,
        subscription: SubscriptionId,
        data: &Value,
    ) {
        let Some(&profile) = self.subscriptions.get(&subscription) else {
            return;
        };
        let Some(p) = self.profiles.get_mut(&profile) else {
            return;
        };
        let load_count = data.get("LoadCount").and_then(Value::as_f64);
        if load_count != Some(p.session_load_count as f64) {
            return;
        }
        if now.mono - p.last_reaction <= REACTION_INTERVAL {
            return;
        }
        p.last_reaction = now.mono;
        if !self.is_active(profile) {
            return;
        }
        if data.get("EndSession") == Some(&Value::Bool(true)) {
            self.begin_save(now, profile, SaveMode::Ending(EndReason::External));
        } else {
            self.save_active(now, profile);
        }
    }

    /// `SubscribeAsync` returned (spec §10.4): a subscription that outlived its session is
    /// disconnected at once; a failed one is dropped.
    pub fn handle_subscribe_result(
        &mut self,
        _now: Now,
        subscription: SubscriptionId,
        result: Result<(), String>,
    ) {
        // Only the first answer counts (`handle_input` refuses another).
        if !self.subscribing.remove(&subscription) {
            return;
        }
        let Some(&profile) = self.subscriptions.get(&subscription) else {
            return;
        };
        if result.is_err() {
            self.subscriptions.remove(&subscription);
            if let Some(p) = self.profiles.get_mut(&profile) {
                p.subscription = None;
            }
        } else if !self.is_active(profile) {
            self.subscriptions.remove(&subscription);
            if let Some(p) = self.profiles.get_mut(&profile) {
                p.subscription = None;
            }
            self.messaging(MessagingRequest::Unsubscribe { subscription });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_to_missing_key_creates_stub() {
        let (t, dropped) = message_transform(None, &json!({"Gift": "Shield"}), 1000, 0);
        assert_eq!(dropped, 0);
        assert_eq!(
            t,
            Transformed::Write {
                value: json!({"GlobalUpdates": [1, [[1, {"Gift": "Shield"}]]]}),
                user_ids: None,
                metadata: None
            }
        );
    }

    #[test]
    fn message_to_junk_overwrites_with_stub() {
        let (t, _) = message_transform(Some(&json!("junk")), &json!({"a": 1}), 1000, 0);
        let Transformed::Write { value, .. } = t else {
            panic!()
        };
        assert_eq!(
            value,
            json!({"GlobalUpdates": [1, [[1, {"a": 1}]]], "WasOverwritten": true})
        );
    }

    /// A new message always gets a whole-number id past the counter, whatever another tool
    /// left in the queue (a fractional counter, entries under other ids), so it is delivered.
    #[test]
    fn a_new_message_gets_a_whole_number_id() {
        for (queue, id) in [
            (json!([2.5, [[1, {}]]]), 3),
            (json!([1, [[1.5, {}]]]), 2),
            (json!([1, [[1e20, {}]]]), 2),
        ] {
            let v = json!({"Data": {}, "MetaData": {}, "GlobalUpdates": queue.clone()});
            let (t, _) = message_transform(Some(&v), &json!({"n": 1}), 1000, 0);
            let Transformed::Write { value, .. } = t else {
                panic!()
            };
            let entries = value["GlobalUpdates"][1].as_array().unwrap();
            let last = entries.last().unwrap();
            assert_eq!(crate::wire::message_id(last), Some(id), "{queue}");
            assert_eq!(value["GlobalUpdates"][0], json!(id), "{queue}");
        }
    }

    /// Ids must increase (spec §10.1): at 2^53, past 2^63 and beyond, the counter has no id
    /// left above it, and the transform writes nothing; just below 2^53, the last id is still
    /// given.
    #[test]
    fn a_counter_with_no_id_above_it_writes_nothing() {
        for counter in [json!(9_007_199_254_740_992_i64), json!(1e19), json!(1e300)] {
            let v = json!({"Data": {}, "MetaData": {}, "GlobalUpdates": [counter.clone(), []]});
            let (t, dropped) = message_transform(Some(&v), &json!({"n": 1}), 1000, 0);
            let Transformed::Error(text) = t else {
                panic!("{counter}: {t:?}")
            };
            assert!(
                text.starts_with("no message id is left above the key's message counter ("),
                "{text}"
            );
            assert_eq!(dropped, 0);
        }
        let v =
            json!({"Data": {}, "MetaData": {}, "GlobalUpdates": [9_007_199_254_740_990_i64, []]});
        let (t, _) = message_transform(Some(&v), &json!({"n": 1}), 1000, 0);
        let Transformed::Write { value, .. } = t else {
            panic!("{t:?}")
        };
        assert_eq!(value["GlobalUpdates"][0], json!(9_007_199_254_740_991_i64));
        // At 2^53 + 2, adding 1 rounds up to 2^53 + 4: a fresh id all the same.
        let v =
            json!({"Data": {}, "MetaData": {}, "GlobalUpdates": [9_007_199_254_740_994_i64, []]});
        let (t, _) = message_transform(Some(&v), &json!({"n": 1}), 1000, 0);
        let Transformed::Write { value, .. } = t else {
            panic!("{t:?}")
        };
        assert_eq!(
            value["GlobalUpdates"][1][0][0].as_f64(),
            Some(9_007_199_254_740_996.0)
        );
    }

    /// A negative counter (only another tool writes one) has ids above it however large it
    /// is: the next whole number a double holds above it, -2^63 below that (every message to
    /// such a key used to be refused, as if no id were left).
    #[test]
    fn a_large_negative_counter_still_gives_an_id() {
        for (counter, id) in [
            (json!(-5), -4.0),
            (json!(-9_007_199_254_740_992_i64), -9_007_199_254_740_991.0),
            (
                json!(-1_152_921_504_606_846_976_i64),
                -1_152_921_504_606_846_848.0,
            ),
            (json!(-1e300), -9_223_372_036_854_775_808.0),
        ] {
            let v = json!({"Data": {}, "MetaData": {}, "GlobalUpdates": [counter.clone(), []]});
            let (t, _) = message_transform(Some(&v), &json!({"n": 1}), 1000, 0);
            let Transformed::Write { value, .. } = t else {
                panic!("{counter}: {t:?}")
            };
            assert_eq!(value["GlobalUpdates"][0].as_f64(), Some(id), "{counter}");
            let entry = &value["GlobalUpdates"][1][0];
            assert_eq!(crate::wire::message_id(entry), Some(id as i64), "{counter}");
        }
    }

    #[test]
    fn ids_increase_and_oldest_are_dropped_beyond_max() {
        let mut v = json!({"Data": {}, "MetaData": {}, "GlobalUpdates": [7, [[6, {}], [7, {}]]]});
        for _ in 0..2 {
            let (t, _) = message_transform(Some(&v), &json!({"n": 1}), 3, 0);
            let Transformed::Write { value, .. } = t else {
                panic!()
            };
            v = value;
        }
        assert_eq!(
            v["GlobalUpdates"],
            json!([9, [[7, {}], [8, {"n": 1}], [9, {"n": 1}]]])
        );
        let (_, dropped) = message_transform(Some(&v), &json!({}), 3, 0);
        assert_eq!(dropped, 1);
    }
}
