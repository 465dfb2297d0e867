//! Read-side APIs (spec §11): `GetAsync` (with version), `RemoveAsync`, `VersionQuery` /
//! `NextAsync`, view profiles, and the readiness gate that parks calls while `DataStoreState` is
//! `NotReady` (spec §3.3).
//!
//! Deviation (docs/DEVIATIONS.md, spec §19 item 14): a versioned read that fails is reported to
//! the caller as an error instead of nil, and `NextAsync` does not skip the version whose read
//! failed: the next call retries it.

use std::collections::VecDeque;

use crate::value::{Value, json};

use crate::engine::{Engine, LiveState, OpKind, Outcome, StoreRef};
use crate::error::{ApiError, check_profile_key};
use crate::profile::{Profile, ProfileKind};
use crate::protocol::*;
use crate::queue::Domain;
use crate::session::StartParams;
use crate::timers::Timer;
use crate::wire::{self, Classified};

/// A call made while `DataStoreState` was `NotReady`, resumed when it is known (spec §3.3).
#[derive(Clone, Debug)]
pub(crate) enum Parked {
    Start {
        call: CallId,
        store: StoreRef,
        key: String,
        params: StartParams,
    },
    Message {
        call: CallId,
        store: StoreRef,
        key: String,
        message: Value,
    },
    Get {
        call: CallId,
        store: StoreRef,
        key: String,
        version: Option<String>,
    },
    Remove {
        call: CallId,
        store: StoreRef,
        key: String,
    },
    Next {
        call: CallId,
        query: QueryId,
    },
}

/// A `GetAsync` in progress (also the item read of a `NextAsync`).
#[derive(Clone, Debug)]
pub(crate) struct GetCall {
    pub store: StoreId,
    pub mock: bool,
    pub key: String,
    pub version: Option<String>,
    pub backoff: f64,
    /// For `NextAsync`: the query, which of its pages (counted from 1) and the index in it of
    /// the item being read.
    pub query_item: Option<(QueryId, u64, usize)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum QueryState {
    Fresh,
    Loading,
    Ready,
    Failed,
}

/// A `VersionQuery` object (spec §11.3–11.4).
#[derive(Clone, Debug)]
pub(crate) struct VersionQuery {
    store: StoreRef,
    key: String,
    direction: SortDirection,
    min_date: Option<i64>,
    max_date: Option<i64>,
    state: QueryState,
    page: Vec<VersionItem>,
    /// Pages loaded so far: a failed item read rewinds the index only on its own page.
    page_no: u64,
    index: usize,
    is_finished: bool,
    listed: bool,
    waiting: VecDeque<CallId>,
    /// The host forgot the query while a call on it was in progress: dropped once idle.
    forgotten: bool,
    /// The last version of a page whose read failed while the next page was loading (nothing
    /// after it read yet): read first from the next page (deviation 14).
    retry: Option<VersionItem>,
}

/// The read transform applied locally to a value read by `GetAsync` (spec §11.1): a valid
/// profile as it is; anything else becomes a template profile carrying the stub's messages.
pub fn get_transform(raw: Option<&Value>, template: &Value, wall: i64) -> Value {
    match wire::classify(raw, wall) {
        Classified::Valid(obj) => Value::Object(obj),
        Classified::Missing { global_updates, .. } => {
            Value::Object(wire::new_profile(template, wall, global_updates))
        }
    }
}

impl Engine {
    /// `store:GetAsync(key, version?)` (spec §11.1): a view profile, or nil for an empty key.
    /// Answered by [`Completion::Get`].
    pub fn get(
        &mut self,
        now: Now,
        store: StoreRef,
        key: &str,
        version: Option<String>,
    ) -> Result<CallId, ApiError> {
        check_profile_key(key)?;
        self.check_store(store)?;
        let call = self.new_call();
        if self.closing {
            self.complete(Completion::Get {
                call,
                result: Ok(None),
            });
        } else if self.state == DataStoreState::NotReady {
            self.parked.push(Parked::Get {
                call,
                store,
                key: key.to_string(),
                version,
            });
        } else {
            self.begin_get(now, call, store, key, version, None);
        }
        Ok(call)
    }

    fn begin_get(
        &mut self,
        now: Now,
        call: CallId,
        store: StoreRef,
        key: &str,
        version: Option<String>,
        query_item: Option<(QueryId, u64, usize)>,
    ) {
        if version.is_some() && self.token(store, key).domain() != Domain::Live {
            self.complete(Completion::Get {
                call,
                result: Ok(None),
            });
            return;
        }
        let g = GetCall {
            store: store.store,
            mock: store.mock,
            key: key.to_string(),
            version,
            backoff: 1.0,
            query_item,
        };
        self.get_calls.insert(call, g);
        self.attempt_get(now, call);
    }

    pub(crate) fn attempt_get(&mut self, now: Now, call: CallId) {
        let Some(g) = self.get_calls.get(&call) else {
            return;
        };
        if self.closing {
            self.get_calls.remove(&call);
            self.complete(Completion::Get {
                call,
                result: Ok(None),
            });
            return;
        }
        let token = self.token(
            StoreRef {
                store: g.store,
                mock: g.mock,
            },
            &g.key.clone(),
        );
        self.enqueue_op(now, token, OpKind::Get(call));
    }

    pub(crate) fn on_get_result(&mut self, now: Now, call: CallId, outcome: Outcome) {
        let Some(g) = self.get_calls.get_mut(&call) else {
            return;
        };
        match outcome {
            Outcome::Ok { key_info: None, .. } => {
                self.get_calls.remove(&call);
                self.complete(Completion::Get {
                    call,
                    result: Ok(None),
                });
            }
            Outcome::Ok {
                value,
                key_info: Some(ki),
            } => {
                let g = self.get_calls.remove(&call).expect("present");
                let token = self.token(
                    StoreRef {
                        store: g.store,
                        mock: g.mock,
                    },
                    &g.key,
                );
                let id = ProfileId(self.next_id());
                let mut p = Profile::from_value(
                    id,
                    g.store,
                    token,
                    ProfileKind::View,
                    &value,
                    Some(ki),
                    now.mono,
                );
                p.is_mock = g.mock;
                let loaded = LoadedProfile {
                    profile: id,
                    data: value.get("Data").cloned().unwrap_or_else(|| json!({})),
                    roblox_metadata: crate::session::loaded_metadata(&value),
                };
                self.profiles.insert(id, p);
                self.complete(Completion::Get {
                    call,
                    result: Ok(Some(loaded)),
                });
            }
            Outcome::Failed(e) if g.version.is_some() => {
                let g = self.get_calls.remove(&call).expect("present");
                // Not past a version whose read failed (deviation 14): the next NextAsync reads
                // it again, if the query is still on its page and nothing was read after it.
                // With the next page loading (it was the page's last), it comes first from
                // that page: the page's arrival resets the index. If that page came first,
                // empty or failed, and ended the query, the version is read again alone.
                if let Some((query, page_no, index)) = g.query_item
                    && let Some(q) = self.queries.get_mut(&query)
                    && q.page_no == page_no
                    && q.index == index + 1
                {
                    match q.state {
                        QueryState::Loading => q.retry = q.page.get(index).cloned(),
                        QueryState::Failed => {
                            q.page.truncate(index + 1);
                            q.index = index;
                            q.is_finished = true;
                            q.state = QueryState::Ready;
                        }
                        _ => q.index = index,
                    }
                }
                if e.message.contains("not valid") {
                    self.warn(format!(
                        // Appendix A's text; the DataStore's error stands where the
                        // original prints its Luau traceback.
                        "[ProfileStore]: Passed version argument is not valid; Traceback:\n{}",
                        e.message
                    ));
                }
                self.complete(Completion::Get {
                    call,
                    result: Err(e),
                });
            }
            Outcome::Failed(_) => {
                // The loop waits out its backoff before it looks at `IsClosing` (spec §11.1,
                // §9.4): closing, the call returns nil at the retry.
                let wait = g.backoff;
                g.backoff = (g.backoff * 2.0).min(20.0);
                self.timers.set(now.mono + wait, Timer::GetRetry(call));
            }
        }
    }

    /// `store:RemoveAsync(key)` (spec §11.2): one attempt, no effect on active sessions.
    /// Answered by [`Completion::Remove`].
    pub fn remove(&mut self, now: Now, store: StoreRef, key: &str) -> Result<CallId, ApiError> {
        check_profile_key(key)?;
        self.check_store(store)?;
        let call = self.new_call();
        if self.closing {
            self.complete(Completion::Remove { call, ok: false });
        } else if self.state == DataStoreState::NotReady {
            self.parked.push(Parked::Remove {
                call,
                store,
                key: key.to_string(),
            });
        } else {
            let token = self.token(store, key);
            self.enqueue_op(now, token, OpKind::Remove(call));
        }
        Ok(call)
    }

    /// `store:VersionQuery(key, direction?, min_date?, max_date?)` (spec §11.3). Dates are epoch
    /// milliseconds; a date of 0 is no bound, as for Roblox's `ListVersionsAsync`, whose
    /// `minDate` and `maxDate` default to 0 (so `max_date` 0 with any `min_date` is no
    /// `MinDateAfterMaxDate`), and the request carries it as none.
    pub fn version_query(
        &mut self,
        store: StoreRef,
        key: &str,
        direction: SortDirection,
        min_date: Option<i64>,
        max_date: Option<i64>,
    ) -> Result<QueryId, ApiError> {
        check_profile_key(key)?;
        self.check_store(store)?;
        let (min_date, max_date) = (min_date.filter(|&d| d != 0), max_date.filter(|&d| d != 0));
        if let (Some(min), Some(max)) = (min_date, max_date)
            && min > max
        {
            return Err(ApiError::MinDateAfterMaxDate { min, max });
        }
        let id = QueryId(self.next_id());
        self.queries.insert(
            id,
            VersionQuery {
                store,
                key: key.to_string(),
                direction,
                min_date,
                max_date,
                state: QueryState::Fresh,
                page: Vec::new(),
                page_no: 0,
                index: 0,
                is_finished: false,
                listed: false,
                waiting: VecDeque::new(),
                forgotten: false,
                retry: None,
            },
        );
        Ok(id)
    }

    /// `query:NextAsync()` (spec §11.4): the next version as a view profile, or nil at the end.
    /// Answered by [`Completion::Get`].
    pub fn version_query_next(&mut self, now: Now, query: QueryId) -> Result<CallId, ApiError> {
        if !self.queries.contains_key(&query) {
            return Err(ApiError::UnknownQuery(query.0));
        }
        let call = self.new_call();
        if self.closing {
            self.complete(Completion::Get {
                call,
                result: Ok(None),
            });
        } else if self.state == DataStoreState::NotReady {
            self.parked.push(Parked::Next { call, query });
        } else {
            self.next_version(now, query, call);
        }
        Ok(call)
    }

    /// Drops a version query the host no longer references (Luau's garbage collector does this
    /// in the original). A query with a `NextAsync` call waiting for a page, or parked until the
    /// DataStore state is known, is dropped when those calls have their answers (the caller still
    /// holds it until then). A version read already sent completes either way.
    pub fn forget_version_query(&mut self, query: QueryId) {
        if let Some(q) = self.queries.get_mut(&query) {
            q.forgotten = true;
        }
        self.drop_if_forgotten(query);
    }

    /// Drops `query` if the host forgot it and no call waits on it.
    fn drop_if_forgotten(&mut self, query: QueryId) {
        let Some(q) = self.queries.get(&query) else {
            return;
        };
        let busy = q.state == QueryState::Loading
            || !q.waiting.is_empty()
            || self
                .parked
                .iter()
                .any(|p| matches!(p, Parked::Next { query: q, .. } if *q == query));
        if q.forgotten && !busy {
            self.queries.remove(&query);
        }
    }

    fn next_version(&mut self, now: Now, query: QueryId, call: CallId) {
        let Some(q) = self.queries.get(&query) else {
            // Forgotten meanwhile: there is nothing more to read.
            self.complete(Completion::Get {
                call,
                result: Ok(None),
            });
            return;
        };
        let domain = self.token(q.store, &q.key).domain();
        // Spec §11.4: closing → nil; a mock store → nil, warning once per server in Studio.
        if self.closing || domain != Domain::Live {
            if !self.closing && domain != Domain::Live && self.studio && !self.warned_mock_versions
            {
                self.warned_mock_versions = true;
                self.warn("[ProfileStore]: :VersionQuery() is not supported in mock mode!".into());
            }
            self.complete(Completion::Get {
                call,
                result: Ok(None),
            });
            return;
        }
        let q = self.queries.get_mut(&query).expect("checked");
        match q.state {
            QueryState::Failed => self.complete(Completion::Get {
                call,
                result: Ok(None),
            }),
            QueryState::Loading => q.waiting.push_back(call),
            QueryState::Fresh => {
                q.state = QueryState::Loading;
                q.waiting.push_front(call);
                let kind = DataStoreRequestKind::ListVersions {
                    query,
                    direction: q.direction,
                    min_date: q.min_date,
                    max_date: q.max_date,
                };
                let (store, key) = (
                    self.stores[q.store.store.0 as usize].name.clone(),
                    q.key.as_str().into(),
                );
                let op = self.emit_unqueued(store, key, kind);
                self.page_ops.insert(op, query);
            }
            QueryState::Ready => {
                if q.index < q.page.len() {
                    let item = q.page[q.index].version.clone();
                    q.index += 1;
                    let (store, key, index) = (q.store, q.key.clone(), q.index - 1);
                    let at = Some((query, q.page_no, index));
                    self.begin_get(now, call, store, &key, Some(item), at);
                } else if q.is_finished {
                    self.complete(Completion::Get {
                        call,
                        result: Ok(None),
                    });
                } else {
                    q.state = QueryState::Loading;
                    q.waiting.push_front(call);
                    let (store, key) = (
                        self.stores[q.store.store.0 as usize].name.clone(),
                        q.key.as_str().into(),
                    );
                    let op = self.emit_unqueued(
                        store,
                        key,
                        DataStoreRequestKind::NextVersionPage { query },
                    );
                    self.page_ops.insert(op, query);
                }
            }
        }
    }

    pub(crate) fn on_version_page(
        &mut self,
        now: Now,
        query: QueryId,
        result: Result<DataStoreResponse, DataStoreError>,
    ) {
        let Some(q) = self.queries.get_mut(&query) else {
            return;
        };
        let first = !q.listed;
        q.listed = true;
        match result {
            Ok(DataStoreResponse::Page { items, is_finished }) if first || !items.is_empty() => {
                q.page = q.retry.take().into_iter().chain(items).collect();
                q.page_no += 1;
                q.index = 0;
                q.is_finished = is_finished;
                q.state = QueryState::Ready;
            }
            // A later page empty or failed ends the query (nil from then on), after the version
            // whose read failed while it loaded (deviation 14): the page held it already.
            _ if q.retry.is_some() => {
                q.page = q.retry.take().into_iter().collect();
                q.page_no += 1;
                q.index = 0;
                q.is_finished = true;
                q.state = QueryState::Ready;
            }
            Ok(_) => q.state = QueryState::Failed,
            Err(e) => {
                q.state = QueryState::Failed;
                if first {
                    self.warn(format!(
                        "[ProfileStore]: Version query fail - {}",
                        e.message
                    ));
                }
            }
        }
        while let Some(q) = self.queries.get_mut(&query)
            && q.state != QueryState::Loading
            && let Some(call) = q.waiting.pop_front()
        {
            self.next_version(now, query, call);
        }
        self.drop_if_forgotten(query);
    }

    fn resume_parked(&mut self, now: Now, parked: Parked, cancelled: bool) {
        if self.closing {
            let completion = match parked {
                Parked::Start { call, .. } => Completion::SessionStart {
                    call,
                    profile: None,
                },
                Parked::Message { call, .. } => Completion::Message { call, ok: false },
                Parked::Get { call, .. } | Parked::Next { call, .. } => Completion::Get {
                    call,
                    result: Ok(None),
                },
                Parked::Remove { call, .. } => Completion::Remove { call, ok: false },
            };
            self.complete(completion);
            return;
        }
        match parked {
            // Its `Cancel`, asked after the wait, is true: it returns nil having written
            // nothing (as one the host cancelled while it waited).
            Parked::Start { call, .. } if cancelled => {
                self.complete(Completion::SessionStart {
                    call,
                    profile: None,
                });
            }
            Parked::Start {
                call,
                store,
                key,
                params,
            } => self.begin_start(now, call, store, &key, params),
            Parked::Message {
                call,
                store,
                key,
                message,
            } => self.begin_message(now, call, store, &key, message),
            Parked::Get {
                call,
                store,
                key,
                version,
            } => self.begin_get(now, call, store, &key, version, None),
            Parked::Remove { call, store, key } => {
                let token = self.token(store, &key);
                self.enqueue_op(now, token, OpKind::Remove(call));
            }
            Parked::Next { call, query } => self.next_version(now, query, call),
        }
    }

    /// Resumes every parked call, in order, asking each cancellable start on a live store its
    /// `Cancel` first when `live` is given; then drops the forgotten queries they were on.
    pub(crate) fn resume_all_parked(&mut self, now: Now, mut live: Option<&mut dyn LiveState>) {
        let parked = std::mem::take(&mut self.parked);
        let queries: Vec<QueryId> = parked
            .iter()
            .filter_map(|p| match p {
                Parked::Next { query, .. } => Some(*query),
                _ => None,
            })
            .collect();
        for p in parked {
            // The original's start looks at `Cancel` at the head of its loop, after the wait
            // (not while closing: its loop ends first); in call order, so a call parked before
            // it goes out before it returns.
            let cancelled = match (&p, live.as_mut()) {
                (
                    Parked::Start {
                        call,
                        store,
                        params,
                        ..
                    },
                    Some(live),
                ) if params.cancellable && !store.mock && !self.closing => {
                    live.cancel_requested(*call)
                }
                _ => false,
            };
            self.resume_parked(now, p, cancelled);
        }
        for query in queries {
            self.drop_if_forgotten(query);
        }
    }
}
