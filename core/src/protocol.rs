//! Everything that crosses the engine's boundary: ids, the clock reading every input carries,
//! DataStore and MessagingService requests and their results, signal events and API completions
//! (DESIGN.md §2, spec §20).
//!
//! Every type here is serde-serialisable so a recorded stream of inputs replays a run. JSON values
//! are carried as [`Value`]; binary trace formats that cannot decode `Value` (bincode)
//! wrap them with [`crate::json_text`].

use crate::value::{Str, Value};
use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub u64);
    };
}

id_type!(
    /// A store object made by `ProfileStore.New`.
    StoreId
);
id_type!(
    /// A profile object (active, ended or view).
    ProfileId
);
id_type!(
    /// One asynchronous API call; its [`Completion`] carries the same id.
    CallId
);
id_type!(
    /// One DataStore request in flight.
    OpId
);
id_type!(
    /// One MessagingService subscription.
    SubscriptionId
);
id_type!(
    /// A version query made by `VersionQuery`.
    QueryId
);

/// The two clocks every input carries (spec §0): `mono` is `os.clock()` (seconds, local,
/// monotonic, used for all scheduling); `wall` is `os.time()` (whole Unix seconds, persisted and
/// compared across servers).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Now {
    /// Monotonic seconds.
    pub mono: f64,
    /// Wall-clock Unix seconds.
    pub wall: i64,
}

/// `Profile:OnLastSave(reason)` reasons and the matching backoff caps (spec §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndReason {
    /// `EndSession()`, or a session obtained while cancelling/closing.
    Manual,
    /// A MessagingService end request, or a save that saw another server's `ForceLoadSession`.
    External,
    /// `BindToClose`.
    Shutdown,
}

impl EndReason {
    /// The text ProfileStore passes to `OnLastSave`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Manual => "Manual",
            EndReason::External => "External",
            EndReason::Shutdown => "Shutdown",
        }
    }
}

/// `ProfileStore.DataStoreState` (spec §13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataStoreState {
    /// Not known yet (Studio probe in flight): async APIs wait.
    NotReady,
    /// Live DataStore.
    Access,
    /// Studio without API access: the fallback mock store is used.
    NoAccess,
    /// Studio without network: the fallback mock store is used.
    NoInternet,
}

impl DataStoreState {
    /// The state string Luau code sees.
    pub fn as_str(self) -> &'static str {
        match self {
            DataStoreState::NotReady => "NotReady",
            DataStoreState::Access => "Access",
            DataStoreState::NoAccess => "NoAccess",
            DataStoreState::NoInternet => "NoInternet",
        }
    }

    /// Interprets the Studio access probe's outcome (spec §13): `ConnectFail` → `NoInternet`;
    /// `403` or `must publish` → `NoAccess`; success or any other error → `Access`.
    pub fn from_probe(result: Result<(), &str>) -> DataStoreState {
        match result {
            Err(m) if m.contains("ConnectFail") => DataStoreState::NoInternet,
            Err(m) if m.contains("403") || m.contains("must publish") => DataStoreState::NoAccess,
            _ => DataStoreState::Access,
        }
    }
}

/// `Enum.SortDirection` for version listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SortDirection {
    /// Oldest first (the engine default).
    #[default]
    Ascending,
    /// Newest first.
    Descending,
}

/// `DataStoreKeyInfo` as returned with a value (spec §1.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// Creation time of the key, epoch milliseconds.
    pub created_time: i64,
    /// Time of the last write, epoch milliseconds.
    pub updated_time: i64,
    /// Opaque version string.
    pub version: Str,
    /// `GetUserIds()`.
    pub user_ids: Vec<i64>,
    /// `GetMetadata()`.
    #[serde(with = "crate::json_text")]
    pub metadata: Value,
}

/// A DataStore request for the host to execute against the DataStore named `store`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataStoreRequest {
    /// Answer with [`crate::Engine::handle_datastore_response`] (and, for updates, run the
    /// transform with [`crate::Engine::transform`]).
    pub op: OpId,
    /// DataStore name (the ProfileStore store name).
    pub store: Str,
    /// Key.
    pub key: Str,
    /// What to do.
    pub kind: DataStoreRequestKind,
}

/// The DataStore calls ProfileStore makes (spec §17).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DataStoreRequestKind {
    /// `UpdateAsync(key, transform)`: read, call [`crate::Engine::transform`] (possibly several
    /// times), write what it returns (or nothing on cancel), answer with the committed value.
    Update,
    /// `GetAsync(key)`.
    Get,
    /// `GetVersionAsync(key, version)`.
    GetVersion {
        /// Version string.
        version: String,
    },
    /// `RemoveAsync(key)`.
    Remove,
    /// `ListVersionsAsync(key, direction, min, max)`; answer with a page.
    ListVersions {
        /// The query this listing belongs to (its later pages are asked for by this id).
        query: QueryId,
        /// Sort direction.
        direction: SortDirection,
        /// Minimum date, epoch ms.
        min_date: Option<i64>,
        /// Maximum date, epoch ms.
        max_date: Option<i64>,
    },
    /// `pages:AdvanceToNextPageAsync()` on the listing started by the query's earlier request.
    NextVersionPage {
        /// The query this page belongs to.
        query: QueryId,
    },
}

/// One item of a version page.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionItem {
    /// Version string.
    pub version: String,
    /// Creation time of that version, epoch ms.
    pub created_time: i64,
    /// Whether it is a deletion tombstone.
    pub is_deleted: bool,
}

/// A successful DataStore answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DataStoreResponse {
    /// Value and key info (update, get, get version, remove). `value` is `None` for an empty key
    /// or a cancelled update.
    Value {
        /// The value (committed, read or removed), shared with the DataStore that holds it.
        #[serde(with = "crate::json_text::option_arc")]
        value: Option<std::sync::Arc<Value>>,
        /// Key info, absent for an empty key.
        key_info: Option<KeyInfo>,
    },
    /// A page of versions.
    Page {
        /// Items of the current page.
        items: Vec<VersionItem>,
        /// `pages.IsFinished`.
        is_finished: bool,
    },
}

/// A DataStore error: the message the engine raised (`"502: API Services rejected ..."`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataStoreError {
    /// The error text, as `tostring(err)` would give it.
    pub message: String,
}

/// What a transform returns to the DataStore executing an update.
#[derive(Clone, Debug, PartialEq)]
pub enum Transformed {
    /// Write `value`, and store `user_ids` / `metadata` as the key's user ids and metadata
    /// (`None` clears them).
    Write {
        /// New stored value.
        value: Value,
        /// The value's `UserIds` field.
        user_ids: Option<Value>,
        /// The value's `RobloxMetaData` field.
        metadata: Option<Value>,
    },
    /// Return nil from the transform: nothing is written.
    Cancel,
    /// The transform threw; the update fails with this message.
    Error(String),
}

impl Transformed {
    /// The answer of a DataStore that executes this transform result: `store` writes the value
    /// with its user ids and metadata and returns the new key info; a cancel answers nil, nil;
    /// an error fails the update with the transform's message.
    pub fn commit_with(
        self,
        store: impl FnOnce(&Value, Option<Value>, Option<Value>) -> KeyInfo,
    ) -> Result<DataStoreResponse, DataStoreError> {
        match self {
            Transformed::Write {
                value,
                user_ids,
                metadata,
            } => {
                let key_info = store(&value, user_ids, metadata);
                Ok(DataStoreResponse::Value {
                    value: Some(std::sync::Arc::new(value)),
                    key_info: Some(key_info),
                })
            }
            Transformed::Cancel => Ok(DataStoreResponse::Value {
                value: None,
                key_info: None,
            }),
            Transformed::Error(message) => Err(DataStoreError { message }),
        }
    }
}

/// A number of seconds with a total order (NaN sorts last), for deadline tables.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Seconds(pub f64);

impl Eq for Seconds {}

impl PartialOrd for Seconds {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Seconds {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A MessagingService request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MessagingRequest {
    /// `SubscribeAsync(topic, cb)`; answer with [`crate::Engine::handle_subscribe_result`] and
    /// deliver messages on the topic with [`crate::Engine::handle_message_received`].
    Subscribe {
        /// Subscription handle.
        subscription: SubscriptionId,
        /// Topic, `"PS_" .. guid`.
        topic: String,
    },
    /// `connection:Disconnect()`. Asked only for a subscription whose
    /// `SubscribeResult` came back `Ok`: a session that ends while its `SubscribeAsync` is
    /// still out is disconnected when the call returns (spec §10.4).
    Unsubscribe {
        /// Subscription handle.
        subscription: SubscriptionId,
    },
    /// `PublishAsync(topic, data)`, fire-and-forget.
    Publish {
        /// Topic.
        topic: String,
        /// Payload (`{LoadCount, EndSession?}`).
        #[serde(with = "crate::json_text")]
        data: Value,
    },
}

/// Which handlers a message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Delivery {
    /// Every handler, in registration order, stopping at the first that calls `processed()`
    /// before it yields (a save revealed a new message, spec §10.3).
    AllHandlers,
    /// Only the handler registered as number `n` (0-based), replaying on registration.
    Handler(usize),
}

/// A signal ProfileStore fires (spec §8.4, §10, §12), in firing order.
///
/// A profile's signals can name an id the host was never given: a start that took the lock
/// but returns nil (its `Cancel` said yes, or the server is closing) releases the lock with a
/// final save whose `OnSave`, `OnLastSave`, `OnSessionEnd` and `OnAfterSave` fire under the
/// id of a profile no caller received (the original fires them on an object no script
/// holds, with no listeners). A host ignores ids it does not know.
///
/// Signals are put out by the call that fires them, and listeners run after it returned:
/// when an `EndSession`'s `OnSave` and `OnLastSave` reach a host,
/// [`crate::Engine::is_active`] already reads false, where the original's listeners still see
/// the profile active; a host answers `IsActive()` inside them from the signals
/// (`docs/DEVIATIONS.md`, "Signals are outputs").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// `profile.OnSave()`.
    OnSave {
        /// Profile.
        profile: ProfileId,
    },
    /// `profile.OnLastSave(reason)`.
    OnLastSave {
        /// Profile.
        profile: ProfileId,
        /// Why the session ends.
        reason: EndReason,
    },
    /// `profile.OnSessionEnd()`.
    OnSessionEnd {
        /// Profile.
        profile: ProfileId,
    },
    /// `profile.OnAfterSave(last_saved_data)`.
    OnAfterSave {
        /// Profile.
        profile: ProfileId,
        /// `profile.LastSavedData` (shared with [`crate::Profile::last_saved_data`], not copied).
        last_saved_data: crate::profile::LastSavedData,
    },
    /// A message for the profile's handlers: call `fn(payload, processed)`.
    Message {
        /// Profile.
        profile: ProfileId,
        /// Message id (pass it to [`crate::Engine::message_processed`]).
        id: i64,
        /// A copy of the payload.
        #[serde(with = "crate::json_text")]
        payload: Value,
        /// Which handlers receive it.
        to: Delivery,
    },
    /// `ProfileStore.OnError(message, store_name, profile_key)`.
    OnError {
        /// Error text.
        message: String,
        /// Store name.
        store: String,
        /// Key.
        key: String,
    },
    /// `ProfileStore.OnOverwrite(store_name, profile_key)`.
    OnOverwrite {
        /// Store name.
        store: String,
        /// Key.
        key: String,
    },
    /// `ProfileStore.OnCriticalToggle(is_critical)`.
    OnCriticalToggle {
        /// New state.
        is_critical: bool,
    },
    /// `ProfileStore.DataStoreState` changed (the Studio probe answered).
    DataStoreStateChanged {
        /// New state.
        state: DataStoreState,
    },
    /// A `warn(...)` line (Appendix A).
    Warn {
        /// Text, with the `[ProfileStore]: ` prefix.
        message: String,
    },
    /// A `print(...)` line (Appendix A).
    Print {
        /// Text, with the `[ProfileStore]: ` prefix.
        message: String,
    },
}

/// The loaded state of a new profile object, for the host to build its `Profile` from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadedProfile {
    /// Handle.
    pub profile: ProfileId,
    /// Initial `Profile.Data` (the host owns it from now on).
    #[serde(with = "crate::json_text")]
    pub data: Value,
    /// Initial `Profile.RobloxMetaData` (the host owns it from now on).
    #[serde(with = "crate::json_text")]
    pub roblox_metadata: Value,
}

/// The result of an asynchronous API call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Completion {
    /// `StartSessionAsync` returned: a profile, or nil.
    SessionStart {
        /// Call.
        call: CallId,
        /// The profile, or `None` (nil).
        profile: Option<LoadedProfile>,
    },
    /// `MessageAsync` returned.
    Message {
        /// Call.
        call: CallId,
        /// Its boolean result.
        ok: bool,
    },
    /// `GetAsync` or `NextAsync` returned a view profile or nil.
    Get {
        /// Call.
        call: CallId,
        /// The view profile, nil, or — for a versioned read that failed — the error (the
        /// original returns nil and hides it, spec §19 item 14).
        result: Result<Option<LoadedProfile>, DataStoreError>,
    },
    /// `RemoveAsync` returned.
    Remove {
        /// Call.
        call: CallId,
        /// Its boolean result.
        ok: bool,
    },
    /// `Profile:SetAsync()` returned.
    SetAsync {
        /// Call.
        call: CallId,
        /// Whether the write committed (the original only reports failures via `OnError`).
        ok: bool,
    },
    /// The `BindToClose` handler finished: every final save and session start is done.
    Shutdown,
}

/// One thing the host must act on, from [`crate::Engine::poll_output`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Output {
    /// Execute a DataStore request.
    DataStore(DataStoreRequest),
    /// Execute a MessagingService request.
    Messaging(MessagingRequest),
    /// Fire a signal.
    Event(Event),
    /// Resume the caller of an asynchronous API call.
    Completion(Completion),
}
