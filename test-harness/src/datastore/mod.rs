//! A faithful simulated Roblox `DataStoreService` on a virtual clock (spec
//! `roblox-datastore.md`: "Sizes", "Serialization", "Request budgets", "Per-key throughput",
//! "Caching", "Error codes", "UpdateAsync", "DataStoreKeyInfo", "Versioning", "RemoveAsync";
//! DESIGN.md §4).
//!
//! [`DataStoreService`] owns the Roblox rules; the bytes live in a [`crate::storage::Storage`]
//! (in memory by default, SQLite on disk). Every call takes `now`, virtual seconds since the
//! service's epoch (Unix seconds, given at construction); the service never reads the OS clock.
//! Times it reports (`CreatedTime`, `UpdatedTime`, version dates) are Unix milliseconds:
//! `epoch × 1000 + round(now × 1000)`, except that a key's times never go back: a write to a
//! key whose last time is later (a store kept from a run whose clock ran further) is made at
//! that time.
//!
//! # What it models
//!
//! - Per DataStore name + scope ([`StoreName`], scope `"global"` by default): `GetAsync` with
//!   the 4-second cache per server and DataStore (keyed by a caller-supplied [`ServerId`];
//!   `use_cache: false` bypasses it; writes from that server refresh it), `SetAsync` with user
//!   ids and metadata, `IncrementAsync`, `UpdateAsync` (the transform is re-run when another
//!   writer committed between its read and its write), `RemoveAsync` (a tombstone version; a
//!   second remove returns nil, nil), `GetVersionAsync`, `GetVersionAtTimeAsync`,
//!   `ListVersionsAsync` and `ListKeysAsync` with pages (a key listing resumes from a cursor; with
//!   `excludeDeleted` a page checks at most 512 keys).
//! - [`KeyInfo`] (from `profilestore-core`): `CreatedTime`, `UpdatedTime`, an opaque increasing
//!   `Version`, user ids and metadata; a write that gives no user ids or metadata clears them.
//! - Versions: only the first write in each UTC hour opens a retained version; later writes in
//!   that hour overwrite it (each write still gets a new version id, and the overwritten id is
//!   gone). A snapshot ([`DataStoreService::take_snapshot`]) makes the next write to every key
//!   open a new version. A removal always opens a version (its tombstone) and keeps the one it
//!   removes, and the write after it opens another. Superseded versions, and keys removed,
//!   disappear 30 days later; a key written again after that starts a new history.
//! - Limits ([`Limits`]): name/scope/key length (101/102), value size (105), metadata size
//!   (511), user ids (512/513), NaN/inf and invalid UTF-8 (104, when a host converts its own
//!   numbers with [`number_value`] or hands over JSON bytes to [`decode_value`]: a [`Value`]
//!   cannot hold NaN or inf, and `Value::from(f64::NAN)` is `null`), server request budgets
//!   with Roblox's throttle queues ([`DataStoreService::admit`], 301–306) under the
//!   experience-level budgets all servers share (`Standard…ExperienceThrottled`), per-key
//!   throughput (`KeyThrottled`).
//! - Faults ([`Faults`]): seeded per-call failures, ambiguous failures (the write commits but
//!   the call reports an error) and latency samples.
//!
//! # What it does not model
//!
//! - The per-experience storage quota (500 MB + 1 MB per lifetime user, measured on compressed
//!   latest versions): nothing is refused for the store's total size.
//! - Storing NaN or ±inf: Roblox advises against it (Open Cloud cannot read such a key); here
//!   they are refused with 104, naming the number, as a [`Value`] cannot hold them.
//! - Errors with no documented trigger a simulation could follow: `DatastoreThrottled`
//!   (only the per-key `KeyThrottled` is raised), the `…GameServerThrottled` request types
//!   (a server short of its own budget queues, then drops with 301–306), 401/402 for calls
//!   made while the game shuts down, and 503 for an unknown version (it reads as nil, nil).
//!
//! # Driving it
//!
//! Budgets are an admission step the host runs before a call, because a throttled request
//! waits in a queue and the host owns the clock: call [`DataStoreService::admit`]; on
//! [`Admission::Now`] perform the call now, on [`Admission::QueuedUntil`] perform it at that
//! time, on [`Admission::Rejected`] fail it. A `GetAsync` that the cache will answer costs no
//! budget: check [`DataStoreService::is_cached`] first. Latency is also the host's to apply:
//! [`DataStoreService::sample_latency`] gives one round trip. `UpdateAsync` can run in one step
//! ([`DataStoreService::update_async`]) or split around the round trips: `begin_update` (the
//! read) then `commit_update` (the write), which answers `Conflict` with a fresh read when
//! another writer got in between — run the transform again on it and commit again.
//!
//! ```
//! use profilestore_harness::datastore::*;
//! use profilestore_core::Transformed;
//! use profilestore_core::value::json;
//!
//! let mut ds = DataStoreService::new(1_735_689_600);
//! let (a, b) = (ServerId(1), ServerId(2));
//! let store = StoreName::new("PlayerData");
//! ds.set_async(0.0, a, &store, "Player_1", json!({"Coins": 1}), SetOptions::default()).unwrap();
//!
//! // Two servers update the same key; B commits between A's read and A's write.
//! let bump = |v: Option<&profilestore_core::value::Value>| {
//!     let coins = v.and_then(|v| v["Coins"].as_i64()).unwrap_or(0);
//!     Transformed::Write { value: json!({"Coins": coins + 1}), user_ids: None, metadata: None }
//! };
//! let ticket_a = ds.begin_update(1.0, a, &store, "Player_1").unwrap();
//! let ticket_b = ds.begin_update(1.1, b, &store, "Player_1").unwrap();
//! let out = bump(ticket_b.value.as_deref());
//! assert!(matches!(ds.commit_update(1.2, ticket_b, out).unwrap(), UpdateCommit::Committed(_)));
//! let out = bump(ticket_a.value.as_deref());
//! let UpdateCommit::Conflict(again) = ds.commit_update(1.3, ticket_a, out).unwrap() else { panic!() };
//! assert_eq!(again.value.as_deref(), Some(&json!({"Coins": 2}))); // A's transform runs again on B's value
//! let out = bump(again.value.as_deref());
//! ds.commit_update(1.3, again, out).unwrap();
//! let read = ds.get_async(2.0, b, &store, "Player_1", GetOptions { use_cache: false }).unwrap();
//! assert_eq!(read.value, Some(json!({"Coins": 3})));
//! ```

mod budget;
mod error;
mod faults;
mod limits;
#[cfg(test)]
mod tests;
mod throughput;

pub use budget::{Admission, RequestType};
pub use error::{MetadataPart, NameKind, RequestError, Throughput};
pub use faults::{Fault, FaultRates, Faults, Latency, internal_rejection};
pub use limits::{
    Budgets, ExperienceBudgets, Limits, MetadataLimits, Rate, ThroughputLimits, decode_value,
    number_value, serialized_len,
};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use profilestore_core::value::{Str, Value, json};
use profilestore_core::{DataStoreResponse, KeyInfo, SortDirection, Transformed, VersionItem};
use rustc_hash::FxHashMap as HashMap;

use crate::config::ConfigError;
use crate::storage::{
    Commit, Expect, Head, HeadMeta, KeyPath, MemoryStorage, Storage, StorageError, StoredVersion,
    VersionWrite,
};
use budget::BudgetBook;
use faults::FaultState;
use limits::integer;
use throughput::{KeyUse, ThroughputBook};

/// Identifies a game server (for the per-server cache and request budgets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerId(pub u64);

/// The kinds of DataStore call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// `GetAsync`.
    Get,
    /// `SetAsync`.
    Set,
    /// `IncrementAsync`.
    Increment,
    /// `UpdateAsync`.
    Update,
    /// `RemoveAsync`.
    Remove,
    /// `GetVersionAsync`.
    GetVersion,
    /// `ListVersionsAsync` and its `AdvanceToNextPageAsync`.
    ListVersions,
    /// `ListKeysAsync` and its `AdvanceToNextPageAsync`.
    ListKeys,
    /// `GetVersionAtTimeAsync`.
    GetVersionAtTime,
}

impl Operation {
    /// The Luau method name.
    pub fn api_name(self) -> &'static str {
        match self {
            Operation::Get => "GetAsync",
            Operation::Set => "SetAsync",
            Operation::Increment => "IncrementAsync",
            Operation::Update => "UpdateAsync",
            Operation::Remove => "RemoveAsync",
            Operation::GetVersion => "GetVersionAsync",
            Operation::ListVersions => "ListVersionsAsync",
            Operation::ListKeys => "ListKeysAsync",
            Operation::GetVersionAtTime => "GetVersionAtTimeAsync",
        }
    }

    /// The request budgets the call draws on (`UpdateAsync` takes a read and a write).
    pub fn request_types(self) -> &'static [RequestType] {
        match self {
            Operation::Get | Operation::GetVersion | Operation::GetVersionAtTime => {
                &[RequestType::StandardRead]
            }
            Operation::Set | Operation::Increment => &[RequestType::StandardWrite],
            Operation::Update => &[RequestType::StandardRead, RequestType::StandardWrite],
            Operation::Remove => &[RequestType::StandardRemove],
            Operation::ListVersions | Operation::ListKeys => &[RequestType::StandardList],
        }
    }
}

/// A DataStore object: `DataStoreService:GetDataStore(name, scope)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreName {
    /// DataStore name (inline up to 23 bytes: naming a store allocates nothing).
    pub name: Str,
    /// Scope.
    pub scope: Str,
}

impl StoreName {
    /// `GetDataStore(name)`: the `"global"` scope.
    pub fn new(name: &str) -> StoreName {
        StoreName::scoped(name, "global")
    }

    /// `GetDataStore(name, scope)`.
    pub fn scoped(name: &str, scope: &str) -> StoreName {
        StoreName {
            name: name.into(),
            scope: scope.into(),
        }
    }

    /// Where `key` of this DataStore is stored.
    pub fn path(&self, key: &str) -> KeyPath {
        KeyPath::new(&self.name, &self.scope, key)
    }
}

/// A value with its key info, as `GetAsync` returns them (both `None` for a missing key).
#[derive(Clone, Debug, PartialEq)]
pub struct Read {
    /// The value.
    pub value: Option<Value>,
    /// `DataStoreKeyInfo`.
    pub key_info: Option<KeyInfo>,
}

impl Read {
    /// nil, nil.
    pub fn none() -> Read {
        Read {
            value: None,
            key_info: None,
        }
    }

    /// The engine's response type for this answer.
    pub fn into_response(self) -> DataStoreResponse {
        DataStoreResponse::Value {
            value: self.value.map(Arc::new),
            key_info: self.key_info,
        }
    }
}

/// A committed write: the stored value and its new key info (`SetAsync` returns
/// `key_info.version`, `IncrementAsync` returns `value`).
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    /// The stored value.
    pub value: Value,
    /// The key info after the write.
    pub key_info: KeyInfo,
}

/// `DataStoreGetOptions`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GetOptions {
    /// `UseCache` (default true).
    pub use_cache: bool,
}

impl Default for GetOptions {
    fn default() -> Self {
        GetOptions { use_cache: true }
    }
}

/// User ids and `DataStoreSetOptions` metadata for `SetAsync` / `IncrementAsync`. Given as
/// JSON the way a Luau host hands them over; `None` clears them, like on Roblox.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SetOptions {
    /// A list of integer user ids.
    pub user_ids: Option<Value>,
    /// A table of metadata.
    pub metadata: Option<Value>,
}

/// What `UpdateAsync` read, for its transform; hand it back to
/// [`DataStoreService::commit_update`].
#[derive(Clone, Debug, PartialEq)]
pub struct ReadTicket {
    /// The server running the update.
    pub server: ServerId,
    /// The key (DataStore name, scope and key name), checked against the name limits.
    pub path: KeyPath,
    /// The value the transform receives (nil for a missing or removed key), shared with the
    /// store: pass `value.as_deref()` to the transform.
    pub value: Option<Arc<Value>>,
    /// The key info the transform receives.
    pub key_info: Option<KeyInfo>,
    /// When the read happened.
    pub read_at: f64,
    seen: Option<Str>,
    fault: Option<Fault>,
}

/// The outcome of [`DataStoreService::commit_update`].
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateCommit {
    /// Written: the new value (shared with the store) and key info.
    Committed(SharedRead),
    /// The transform returned nil: nothing written.
    Cancelled,
    /// Another writer committed since the read: run the transform again on this fresh read and
    /// commit again.
    Conflict(ReadTicket),
    /// The key's write throughput is used up (`error` is `KeyThrottled`, saying when there is
    /// room): nothing written; the ticket and output come back to commit again then.
    Throttled {
        /// The read, to commit with again.
        ticket: Box<ReadTicket>,
        /// The transform's output, unchanged.
        output: Transformed,
        /// The `KeyThrottled` error.
        error: RequestError,
    },
}

/// `ListVersionsAsync` arguments.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct VersionQuery {
    /// Sort order (by creation time).
    pub direction: SortDirection,
    /// Only versions created at or after this time, epoch ms. 0 is no bound, as Roblox's
    /// `minDate` defaults to 0.
    pub min_date: Option<i64>,
    /// Only versions created at or before this time, epoch ms. 0 is no bound: Roblox's
    /// `maxDate` defaults to 0, and `ListVersionsAsync(key, dir, 0, 0)` lists every version.
    pub max_date: Option<i64>,
    /// Items per page; 0 means Roblox's default of 1024.
    pub page_size: u32,
}

/// A `ListVersionsAsync` date bound: 0 is none (Roblox's default for both dates).
fn bound(date: Option<i64>) -> Option<i64> {
    date.filter(|&d| d != 0)
}

/// `DataStoreVersionPages`.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionPages {
    /// The key listed.
    pub path: KeyPath,
    /// The query.
    pub query: VersionQuery,
    /// `GetCurrentPage()`.
    pub items: Vec<VersionItem>,
    /// `IsFinished`.
    pub is_finished: bool,
    cursor: Option<u64>,
}

impl VersionPages {
    /// The engine's response type for the current page.
    pub fn to_response(&self) -> DataStoreResponse {
        DataStoreResponse::Page {
            items: self.items.clone(),
            is_finished: self.is_finished,
        }
    }
}

/// `ListKeysAsync` arguments.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyQuery {
    /// Only keys starting with this.
    pub prefix: String,
    /// Items per page; 0 means Roblox's default of 50.
    pub page_size: u32,
    /// Where an earlier listing stopped ([`KeyPages::cursor`]): list the keys after it.
    pub cursor: Option<String>,
    /// Leave out removed keys (they are listed by default until they expire). A page then
    /// checks at most [`EXCLUDE_DELETED_SCAN`] keys: if those are all removed it comes back
    /// empty, not finished, with a cursor past them.
    pub exclude_deleted: bool,
}

/// How many keys a `ListKeysAsync` page with `excludeDeleted` checks at most (Roblox's
/// `DataStore:ListKeysAsync` reference: "will check up to 512 keys").
pub const EXCLUDE_DELETED_SCAN: usize = 512;

/// `DataStoreKeyPages`.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyPages {
    /// The DataStore listed.
    pub store: StoreName,
    /// The query.
    pub query: KeyQuery,
    /// `GetCurrentPage()`: key names, in byte order.
    pub items: Vec<String>,
    /// `IsFinished`.
    pub is_finished: bool,
    cursor: Option<String>,
}

impl KeyPages {
    /// Where this listing has got to: a later `ListKeysAsync` given it as
    /// [`KeyQuery::cursor`] lists the keys after the current page. `None` before any key.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }
}

#[derive(Clone, Debug)]
struct CacheEntry {
    read: SharedRead,
    expires: f64,
}

/// A read whose value is shared with the store: no copy until a caller needs its own.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SharedRead {
    /// The value (`None` for a missing or removed key), shared with the store.
    pub value: Option<Arc<Value>>,
    /// `DataStoreKeyInfo`.
    pub key_info: Option<KeyInfo>,
    /// The value's compact JSON length (0 without a value), for throughput.
    size: usize,
}

impl SharedRead {
    /// The caller's own copy (the value is copied only while the store still shares it).
    pub fn into_read(self) -> Read {
        Read {
            value: self.value.map(Arc::unwrap_or_clone),
            key_info: self.key_info,
        }
    }

    /// The engine's response type for this answer (the value stays shared).
    pub fn into_response(self) -> DataStoreResponse {
        DataStoreResponse::Value {
            value: self.value,
            key_info: self.key_info,
        }
    }
}

/// The largest write count (serial) a key's version ids keep in order: an id carries it as ten
/// zero-padded digits, and ids compare as text, so an eleven-digit serial would sort before the
/// ten-digit ones. No run writes a key ten billion times, and an import leaves a billion
/// writes of room ([`MAX_IMPORTED_SERIAL`]).
pub const MAX_SERIAL: u64 = 9_999_999_999;

/// The largest write count an import gives a key: a billion writes below [`MAX_SERIAL`], so
/// the writes after it keep their version ids in order (one at [`MAX_SERIAL`] would leave the
/// next write's id out of order).
pub const MAX_IMPORTED_SERIAL: u64 = MAX_SERIAL - 1_000_000_000;

/// The opaque, increasing version id of a write: the key's creation time, the write's serial
/// number (at most [`MAX_SERIAL`] keeps ids in order) and time (hex ms), in the layout of
/// Roblox's ids (`08DC….0000000001.08DC….01`).
pub fn version_id(key_created_ms: i64, serial: u64, written_ms: i64) -> String {
    VersionText::new(key_created_ms, serial, written_ms)
        .as_str()
        .to_string()
}

/// A [`version_id`] written on the stack: every commit makes one, and building it in a
/// `String` (or with `format!`'s padded hex) cost more than the rest of a commit's bookkeeping.
struct VersionText {
    /// Room for the longest id: 16 + 1 + 20 (a `u64` serial) + 1 + 16 + 3 bytes.
    bytes: [u8; 64],
    len: usize,
}

impl VersionText {
    fn new(key_created_ms: i64, serial: u64, written_ms: i64) -> VersionText {
        let mut text = VersionText {
            bytes: [0; 64],
            len: 0,
        };
        let mut serial_digits = itoa::Buffer::new();
        let serial_digits = serial_digits.format(serial);
        text.hex16(key_created_ms);
        text.push(b".");
        for _ in serial_digits.len()..10 {
            text.push(b"0");
        }
        text.push(serial_digits.as_bytes());
        text.push(b".");
        text.hex16(written_ms);
        text.push(b".01");
        text
    }

    fn push(&mut self, bytes: &[u8]) {
        self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn hex16(&mut self, v: i64) {
        let v = v.max(0) as u64;
        for (i, shift) in (0..16).rev().enumerate() {
            self.bytes[self.len + i] = b"0123456789ABCDEF"[((v >> (shift * 4)) & 0xF) as usize];
        }
        self.len += 16;
    }

    fn as_str(&self) -> &str {
        // Hex digits, decimal digits and dots only.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

fn key_info(head: &Head) -> KeyInfo {
    KeyInfo {
        created_time: head.created_ms,
        updated_time: head.updated_ms,
        version: head.version.clone(),
        user_ids: head.user_ids.clone(),
        metadata: head.metadata.clone(),
    }
}

fn version_info(v: &StoredVersion) -> KeyInfo {
    KeyInfo {
        created_time: v.key_created_ms,
        updated_time: v.created_ms,
        version: v.version.clone(),
        user_ids: v.user_ids.clone(),
        metadata: v.metadata.clone(),
    }
}

/// Whether `head` is a tombstone older than the `retention` period: the key is gone for good.
fn expired(head: &Head, retention: Option<i64>, now_ms: i64) -> bool {
    head.value.is_none() && retention.is_some_and(|r| now_ms >= head.updated_ms.saturating_add(r))
}

/// What a reader sees of a head (nil, nil for a tombstone).
fn visible(head: &Head) -> SharedRead {
    match &head.value {
        Some(v) => SharedRead {
            value: Some(Arc::clone(v)),
            key_info: Some(key_info(head)),
            size: head.size,
        },
        None => SharedRead::default(),
    }
}

/// The new state a write wants.
#[derive(Clone)]
struct NewState {
    /// The value, `None` for a tombstone.
    value: Option<Value>,
    /// Its compact JSON length (0 for a tombstone), measured by the write's size check.
    size: usize,
    user_ids: Vec<i64>,
    metadata: Value,
}

impl NewState {
    /// A tombstone with no user ids and empty metadata.
    fn tombstone() -> NewState {
        NewState {
            value: None,
            size: 0,
            user_ids: Vec::new(),
            metadata: json!({}),
        }
    }
}

/// How many times a write re-reads when the storage reports a concurrent commit (only another
/// process sharing an on-disk store can cause one).
const WRITE_ATTEMPTS: usize = 16;

/// The simulated DataStoreService of one experience (all its servers).
///
/// Methods by kind: construction (`new`, `with_*`); budgets (`admit`, `request_budget`,
/// `set_player_count`, `set_rate_limit`); faults (`sample_latency`, `script_fault`); the
/// DataStore calls (`*_async`, `begin_update` / `commit_update`, `advance_*`); storage access
/// (`storage_mut`, `into_storage`).
pub struct DataStoreService {
    storage: Box<dyn Storage>,
    epoch: i64,
    limits: Limits,
    faults: FaultState,
    budgets: BudgetBook,
    throughput: ThroughputBook,
    /// Each server's `GetAsync` cache (looked up by key, never iterated into an answer).
    cache: BTreeMap<ServerId, HashMap<KeyPath, CacheEntry>>,
    /// When expired cache entries are next dropped: once per cache lifetime, so a cache holds
    /// no more than about two lifetimes of reads (an entry shares its value with the store
    /// and would otherwise keep an old version alive).
    cache_sweep_at: f64,
    /// The last snapshot ([`DataStoreService::take_snapshot`]).
    snapshot: Option<Snapshot>,
    /// Every commit since the last [`DataStoreService::take_commits`], when watched.
    commits: Option<Vec<Committed>>,
    /// Failures of the storage itself (not simulated faults), and the first one's message.
    storage_failures: (u64, Option<String>),
}

/// A write or removal the store committed, whatever its call returned: an ambiguous failure
/// commits and then reports an error, and a watcher of the store still sees the commit.
#[derive(Clone, Debug, PartialEq)]
pub struct Committed {
    /// The key.
    pub path: KeyPath,
    /// What a reader sees after the commit: no value after a removal (a tombstone).
    pub read: SharedRead,
}

impl std::fmt::Debug for DataStoreService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataStoreService")
            .field("epoch", &self.epoch)
            .field("limits", &self.limits)
            .field("faults", self.faults.config())
            .finish_non_exhaustive()
    }
}

impl DataStoreService {
    /// A failure of the storage itself (a full disk, a database another process locked): the
    /// call fails with `InternalServerError`, as Roblox's own server errors reach a game, and
    /// the service counts it ([`DataStoreService::storage_failures`]), so that a host can tell
    /// a broken backend from the faults it asked for.
    fn storage_failed(&mut self, e: StorageError) -> RequestError {
        let detail = e.to_string();
        let (count, first) = &mut self.storage_failures;
        *count += 1;
        first.get_or_insert_with(|| detail.clone());
        RequestError::InternalServerError { detail }
    }

    /// How many calls failed because the storage did (not by a simulated fault), and the
    /// first such failure's message.
    pub fn storage_failures(&self) -> (u64, Option<&str>) {
        (self.storage_failures.0, self.storage_failures.1.as_deref())
    }

    /// An empty in-memory DataStore with Roblox's limits and no faults; `now = 0` is Unix time
    /// `epoch` (seconds).
    pub fn new(epoch: i64) -> DataStoreService {
        DataStoreService {
            storage: Box::new(MemoryStorage::new()),
            epoch,
            limits: Limits::roblox(),
            faults: FaultState::new(Faults::none()),
            budgets: BudgetBook::default(),
            throughput: ThroughputBook::default(),
            cache: BTreeMap::new(),
            cache_sweep_at: 0.0,
            snapshot: None,
            commits: None,
            storage_failures: (0, None),
        }
    }

    /// From now on, records every commit (write, increment, update or removal) for
    /// [`DataStoreService::take_commits`], including those whose call then failed ambiguously.
    pub fn watch_commits(&mut self) {
        self.commits.get_or_insert_with(Vec::new);
    }

    /// The commits recorded since the last call, oldest first (empty unless watched).
    pub fn take_commits(&mut self) -> Vec<Committed> {
        self.commits
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Swaps the commits recorded since the last call (oldest first) into `out`, which should
    /// be empty: its allocation records the next ones, so a caller draining every commit
    /// allocates nothing. Leaves `out` as it was unless watched.
    pub fn swap_commits(&mut self, out: &mut Vec<Committed>) {
        if let Some(commits) = &mut self.commits {
            std::mem::swap(commits, out);
        }
    }

    /// The same service with other limits, or why they cannot be used ([`Limits::check`];
    /// the service is dropped with the error: check them first to keep it).
    pub fn with_limits(mut self, limits: Limits) -> Result<DataStoreService, ConfigError> {
        limits.check()?;
        self.limits = limits;
        Ok(self)
    }

    /// Changes the fault probabilities of every operation from now on (e.g. to end an
    /// outage): the defaults become these and the per-operation rates
    /// ([`Faults::per_operation`]) are dropped, so every operation then faults at these rates.
    /// Or says why not ([`FaultRates::check`]; nothing changes then).
    pub fn set_fault_rates(&mut self, fail: f64, ambiguous: f64) -> Result<(), ConfigError> {
        FaultRates {
            fail,
            ambiguous,
            ..FaultRates::none()
        }
        .check("faults.default")?;
        self.faults.set_rates(fail, ambiguous);
        Ok(())
    }

    /// The same service with `faults` as its fault model, or why it cannot be used
    /// ([`Faults::check`]; the service is dropped with the error: check them first to keep
    /// it).
    pub fn with_faults(mut self, faults: Faults) -> Result<DataStoreService, ConfigError> {
        faults.check()?;
        self.faults = FaultState::new(faults);
        Ok(self)
    }

    /// The same service over another storage (e.g. [`crate::storage::SqliteStorage`]).
    pub fn with_storage(mut self, storage: Box<dyn Storage>) -> DataStoreService {
        self.storage = storage;
        self.cache.clear();
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The storage, for export/import and inspection. Changes made through it bypass the
    /// servers' caches until those expire.
    pub fn storage_mut(&mut self) -> &mut dyn Storage {
        &mut *self.storage
    }

    /// Gives the storage back (to reopen it elsewhere).
    pub fn into_storage(self) -> Box<dyn Storage> {
        self.storage
    }

    /// The Unix time (seconds) at virtual time 0.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Unix milliseconds at virtual time `now`.
    pub fn wall_ms(&self, now: f64) -> i64 {
        self.epoch
            .saturating_mul(1000)
            .saturating_add((now * 1000.0).round() as i64)
    }

    // ---- budgets -------------------------------------------------------------------------

    /// Asks for request budget before a call (see the module docs). Always [`Admission::Now`]
    /// when budgets are off.
    pub fn admit(&mut self, now: f64, server: ServerId, operation: Operation) -> Admission {
        match &self.limits.budgets {
            Some(budgets) => self.budgets.admit(now, budgets, server, operation),
            None => Admission::Now,
        }
    }

    /// Keeps a place in `server`'s throttle queues for a request refused for its key's
    /// throughput until `until`, when the key has room (spec "Queues": such a request "is
    /// queued but temporarily skipped"), or drops it when a queue is full. Always `Ok` when
    /// budgets are off.
    pub fn hold_for_key(
        &mut self,
        now: f64,
        server: ServerId,
        operation: Operation,
        until: f64,
    ) -> Result<(), RequestError> {
        match &self.limits.budgets {
            Some(budgets) => self.budgets.hold(now, budgets, server, operation, until),
            None => Ok(()),
        }
    }

    /// `GetRequestBudgetForRequestType`; `None` when budgets are off.
    pub fn request_budget(&mut self, now: f64, server: ServerId, kind: RequestType) -> Option<f64> {
        let budgets = self.limits.budgets.as_ref()?;
        Some(self.budgets.budget(now, budgets, server, kind))
    }

    /// Requests of `kind` the experience-level budget (shared by all servers) allows now;
    /// `None` when budgets, or experience budgets, are off.
    pub fn experience_budget(&mut self, now: f64, kind: RequestType) -> Option<f64> {
        let budgets = self.limits.budgets.as_ref()?;
        self.budgets.experience_budget(now, budgets, kind)
    }

    /// Sets how many players `server` has; its rates, and the experience's, scale with it.
    pub fn set_player_count(&mut self, now: f64, server: ServerId, players: u32) {
        if let Some(budgets) = &self.limits.budgets {
            self.budgets.set_players(now, budgets, server, players);
        }
    }

    /// `server` stopped (crashed, or closed) at `now`: its requests still waiting in its
    /// throttle queues die unsent, giving back the experience budget they took.
    pub fn server_stopped(&mut self, now: f64, server: ServerId) {
        self.budgets.server_stopped(now, server);
    }

    /// `DataStoreService:SetRateLimitForRequestType` on `server`, or why `rate` cannot be used
    /// ([`Rate::check`]; nothing changes then).
    pub fn set_rate_limit(
        &mut self,
        now: f64,
        server: ServerId,
        kind: RequestType,
        rate: Rate,
    ) -> Result<(), ConfigError> {
        rate.check(&format!("rate[{kind:?}]"))?;
        if let Some(budgets) = &self.limits.budgets {
            self.budgets.set_rate(now, budgets, server, kind, rate);
        }
        Ok(())
    }

    // ---- faults --------------------------------------------------------------------------

    /// One round-trip latency from the seeded latency model.
    pub fn sample_latency(&mut self) -> f64 {
        self.faults.latency()
    }

    /// Makes the next call of kind `operation` meet `fault` (ahead of the random model).
    pub fn script_fault(&mut self, operation: Operation, fault: Fault) {
        self.faults.script(operation, fault);
    }

    /// Rolls a write's fate: `Err` to fail now, `Ok(Some(e))` to report `e` after committing.
    fn write_fate(
        faults: &mut FaultState,
        operation: Operation,
    ) -> Result<Option<RequestError>, RequestError> {
        match faults.roll(operation) {
            Some(Fault::Fail(e)) => Err(e),
            Some(Fault::Ambiguous(e)) => Ok(Some(e)),
            None => Ok(None),
        }
    }

    /// Rolls a read's fate: for a read an ambiguous failure is a plain failure.
    fn read_fate(faults: &mut FaultState, operation: Operation) -> Result<(), RequestError> {
        match faults.roll(operation) {
            Some(Fault::Fail(e) | Fault::Ambiguous(e)) => Err(e),
            None => Ok(()),
        }
    }

    // ---- shared steps --------------------------------------------------------------------

    fn path(&self, store: &StoreName, key: &str) -> Result<KeyPath, RequestError> {
        self.limits.check_name(NameKind::DataStore, &store.name)?;
        self.limits.check_name(NameKind::Scope, &store.scope)?;
        self.limits.check_name(NameKind::Key, key)?;
        Ok(store.path(key))
    }

    /// Runs a call on a key: the key's throughput must take it first (a request it cannot
    /// take yet has not run, and draws its fate when it does); then `fate` decides the call's
    /// fault, and unless that fails the call, the use is counted.
    fn on_key<T>(
        &mut self,
        now: f64,
        use_: KeyUse<'_>,
        fate: impl FnOnce(&mut FaultState) -> Result<T, RequestError>,
    ) -> Result<T, RequestError> {
        let Some(limits) = self.limits.throughput else {
            return fate(&mut self.faults);
        };
        let faults = &mut self.faults;
        self.throughput.charge(now, &limits, use_, || fate(faults))
    }

    /// A tombstone older than the retention period: the key is gone for good.
    fn expired(&self, head: &Head, now_ms: i64) -> bool {
        expired(head, self.limits.version_retention_ms, now_ms)
    }

    fn version_visible(&self, v: &StoredVersion, now_ms: i64) -> bool {
        match (v.superseded_ms, self.limits.version_retention_ms) {
            (Some(superseded), Some(retention)) => now_ms < superseded.saturating_add(retention),
            _ => true,
        }
    }

    /// The stored head (for compare-and-swap) and what a reader sees.
    fn read_current(
        &mut self,
        path: &KeyPath,
        now_ms: i64,
    ) -> Result<(Option<HeadMeta>, SharedRead), RequestError> {
        let retention = self.limits.version_retention_ms;
        let mut current = (None, SharedRead::default());
        self.storage
            .with_head(path, &mut |head| {
                if let Some(head) = head {
                    let read = if expired(head, retention, now_ms) {
                        SharedRead::default()
                    } else {
                        visible(head)
                    };
                    current = (Some(HeadMeta::from(head)), read);
                }
            })
            .map_err(|e| self.storage_failed(e))?;
        Ok(current)
    }

    /// Whether a write of `path` at `now_ms` goes into the latest slot, opened at `opened_ms`
    /// (same UTC hour, not opened before a snapshot taken since).
    fn same_bucket(&self, path: &KeyPath, opened_ms: i64, now_ms: i64) -> bool {
        let Some(interval) = self.limits.version_interval_ms.filter(|i| *i > 0) else {
            return false;
        };
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.at_ms <= now_ms && s.precedes(path, opened_ms))
        {
            return false;
        }
        opened_ms.div_euclid(interval) == now_ms.div_euclid(interval)
    }

    /// Builds and applies the commit that turns `current` into `state` at `now_ms`; returns
    /// what a reader now sees.
    fn commit_state(
        &mut self,
        now_ms: i64,
        path: &KeyPath,
        current: Option<&HeadMeta>,
        state: NewState,
    ) -> Result<SharedRead, StorageError> {
        let NewState {
            value,
            size,
            user_ids,
            metadata,
        } = state;
        let value = value.map(Arc::new);
        let latest = self.storage.latest_slot(path)?;
        // A key's times never go back: a store kept from an earlier run (a file reopened by a
        // world whose clock starts earlier) holds times after `now_ms`, and a write then is
        // made at the key's last time, so its versions stay in order.
        let now_ms = current
            .map(|h| h.updated_ms)
            .into_iter()
            .chain(latest.map(|(_, opened_ms)| opened_ms))
            .fold(now_ms, i64::max);
        let created_ms = match current {
            Some(h) if h.has_value => h.created_ms,
            _ => now_ms,
        };
        let serial = current.map_or(0, |h| h.serial) + 1;
        let version = Str::from(VersionText::new(created_ms, serial, now_ms).as_str());
        let stored = |slot: u64, opened_ms: i64| StoredVersion {
            slot,
            version: version.clone(),
            opened_ms,
            created_ms: now_ms,
            key_created_ms: created_ms,
            value: value.clone(),
            user_ids: user_ids.clone(),
            metadata: metadata.clone(),
            superseded_ms: None,
        };
        // The hourly rule merges writes (Set, Update, Increment) into the hour's version only
        // while that version holds a value: a removal writes a tombstone version of its own
        // and keeps the version it removes, and a write after a removal keeps the tombstone
        // (spec "RemoveAsync": old versions remain listable).
        let merges = value.is_some() && current.is_some_and(|h| h.has_value);
        let version_write = match latest {
            Some((slot, opened_ms)) if merges && self.same_bucket(path, opened_ms, now_ms) => {
                VersionWrite::ReplaceLatest(stored(slot, opened_ms))
            }
            Some((slot, _)) => VersionWrite::Append(stored(slot + 1, now_ms)),
            None => VersionWrite::Append(stored(1, now_ms)),
        };
        let opens_slot = matches!(version_write, VersionWrite::Append(_));
        let head = Head {
            value,
            size,
            created_ms,
            updated_ms: now_ms,
            version,
            serial,
            user_ids,
            metadata,
        };
        let read = visible(&head);
        let expect = current.map_or(Expect::Absent, |h| Expect::Version(h.version.clone()));
        self.storage.commit(
            path,
            Commit {
                expect,
                head,
                version: version_write,
            },
        )?;
        if opens_slot
            && let Some(snapshot) = &mut self.snapshot
            && snapshot.at_ms == now_ms
        {
            snapshot.opened_since.insert(path.clone());
        }
        if let Some(commits) = &mut self.commits {
            commits.push(Committed {
                path: path.clone(),
                read: read.clone(),
            });
        }
        Ok(read)
    }

    /// Read-modify-write, re-reading if the storage saw a concurrent commit. `make` gets the
    /// visible value and returns the new state or `None` (write nothing). Returns what was read
    /// and what a reader sees after the write.
    fn write_with(
        &mut self,
        now_ms: i64,
        path: &KeyPath,
        mut make: impl FnMut(Option<&Value>) -> Result<Option<NewState>, RequestError>,
    ) -> Result<(Read, Option<SharedRead>), RequestError> {
        for _ in 0..WRITE_ATTEMPTS {
            let (head, read) = self.read_current(path, now_ms)?;
            let Some(state) = make(read.value.as_deref())? else {
                return Ok((read.into_read(), None));
            };
            match self.commit_state(now_ms, path, head.as_ref(), state) {
                Ok(new_head) => return Ok((read.into_read(), Some(new_head))),
                Err(StorageError::Conflict { .. }) => continue,
                Err(e) => return Err(self.storage_failed(e)),
            }
        }
        Err(RequestError::InternalServerError {
            detail: format!("{path} kept changing during {WRITE_ATTEMPTS} write attempts"),
        })
    }

    fn cached(&self, now: f64, server: ServerId, path: &KeyPath) -> Option<SharedRead> {
        self.limits.cache_seconds?;
        let entry = self.cache.get(&server)?.get(path)?;
        (now < entry.expires).then(|| entry.read.clone())
    }

    fn remember(&mut self, now: f64, server: ServerId, path: &KeyPath, read: &SharedRead) {
        let Some(ttl) = self.limits.cache_seconds else {
            return;
        };
        let entry = CacheEntry {
            read: read.clone(),
            expires: now + ttl,
        };
        if now >= self.cache_sweep_at {
            for cache in self.cache.values_mut() {
                cache.retain(|_, e| e.expires > now);
            }
            self.cache_sweep_at = now + ttl;
        }
        let cache = self.cache.entry(server).or_default();
        match cache.get_mut(path) {
            Some(slot) => *slot = entry,
            None => {
                cache.insert(path.clone(), entry);
            }
        }
    }

    // ---- the DataStore calls -------------------------------------------------------------

    /// Whether `server`'s `GetAsync(key)` at `now` would be answered from its cache.
    pub fn is_cached(&self, now: f64, server: ServerId, store: &StoreName, key: &str) -> bool {
        self.cached(now, server, &store.path(key)).is_some()
    }

    /// `GetAsync(key, options)`: the value and key info (nil, nil when missing or removed).
    /// A backend read refreshes `server`'s 4-second cache; a cache hit costs nothing.
    pub fn get_async(
        &mut self,
        now: f64,
        server: ServerId,
        store: &StoreName,
        key: &str,
        options: GetOptions,
    ) -> Result<Read, RequestError> {
        let path = self.path(store, key)?;
        if options.use_cache
            && let Some(hit) = self.cached(now, server, &path)
        {
            return Ok(hit.into_read());
        }
        let (_, read) = self.read_current(&path, self.wall_ms(now))?;
        let use_ = KeyUse {
            path: &path,
            kind: Throughput::Read,
            bytes: read.size,
        };
        self.on_key(now, use_, |f| Self::read_fate(f, Operation::Get))?;
        self.remember(now, server, &path, &read);
        Ok(read.into_read())
    }

    /// `SetAsync(key, value, userIds, options)`.
    pub fn set_async(
        &mut self,
        now: f64,
        server: ServerId,
        store: &StoreName,
        key: &str,
        value: Value,
        options: SetOptions,
    ) -> Result<Written, RequestError> {
        let path = self.path(store, key)?;
        let size = self.limits.check_value(&value)?;
        let user_ids = self.limits.check_user_ids(options.user_ids.as_ref())?;
        let metadata = self.limits.check_metadata(options.metadata.as_ref())?;
        let use_ = KeyUse {
            path: &path,
            kind: Throughput::Write,
            bytes: size,
        };
        let late = self.on_key(now, use_, |f| Self::write_fate(f, Operation::Set))?;
        let state = NewState {
            value: Some(value),
            size,
            user_ids,
            metadata,
        };
        let (_, written) =
            self.write_with(self.wall_ms(now), &path, |_| Ok(Some(state.clone())))?;
        self.finish_write(now, server, &path, written, late)
    }

    /// `IncrementAsync(key, delta, userIds, options)`: the stored integer (0 when missing) plus
    /// `delta`.
    pub fn increment_async(
        &mut self,
        now: f64,
        server: ServerId,
        store: &StoreName,
        key: &str,
        delta: i64,
        options: SetOptions,
    ) -> Result<Written, RequestError> {
        let path = self.path(store, key)?;
        let user_ids = self.limits.check_user_ids(options.user_ids.as_ref())?;
        let metadata = self.limits.check_metadata(options.metadata.as_ref())?;
        // An integer is at most 20 bytes: always one throughput unit.
        let late = self.on_key(now, KeyUse::write(&path), |f| {
            Self::write_fate(f, Operation::Increment)
        })?;
        let (_, written) = self.write_with(self.wall_ms(now), &path, |current| {
            let n = match current {
                None => 0,
                Some(v) => integer(v).ok_or_else(|| RequestError::NotAnInteger {
                    found: limits::describe(v),
                })?,
            };
            let sum = n
                .checked_add(delta)
                .ok_or(RequestError::IncrementOverflow { current: n, delta })?;
            let value = json!(sum);
            Ok(Some(NewState {
                size: serialized_len(&value),
                value: Some(value),
                user_ids: user_ids.clone(),
                metadata: metadata.clone(),
            }))
        })?;
        self.finish_write(now, server, &path, written, late)
    }

    fn finish_write(
        &mut self,
        now: f64,
        server: ServerId,
        path: &KeyPath,
        written: Option<SharedRead>,
        late: Option<RequestError>,
    ) -> Result<Written, RequestError> {
        let read = written.ok_or_else(|| RequestError::InternalServerError {
            detail: format!("{path}: nothing written"),
        })?;
        if let Some(e) = late {
            return Err(e);
        }
        self.remember(now, server, path, &read);
        match read.into_read() {
            Read {
                value: Some(value),
                key_info: Some(key_info),
            } => Ok(Written { value, key_info }),
            _ => Err(RequestError::InternalServerError {
                detail: format!("{path}: write left no value"),
            }),
        }
    }

    /// `UpdateAsync(key, transform)` in one step: reads, calls `transform(value, key_info)`,
    /// writes what it returns, calling it again if another writer committed in between. Returns
    /// the committed value and key info, or nil, nil when the transform cancelled.
    pub fn update_async(
        &mut self,
        now: f64,
        server: ServerId,
        store: &StoreName,
        key: &str,
        transform: &mut dyn FnMut(Option<&Value>, Option<&KeyInfo>) -> Transformed,
    ) -> Result<Read, RequestError> {
        let mut ticket = self.begin_update(now, server, store, key)?;
        loop {
            let output = transform(ticket.value.as_deref(), ticket.key_info.as_ref());
            match self.commit_update(now, ticket, output)? {
                UpdateCommit::Committed(read) => return Ok(read.into_read()),
                UpdateCommit::Cancelled => return Ok(Read::none()),
                UpdateCommit::Conflict(next) => ticket = next,
                UpdateCommit::Throttled { error, .. } => return Err(error),
            }
        }
    }

    /// The read half of `UpdateAsync`: what the transform receives. The call's fault fate is
    /// decided here and applied at commit.
    pub fn begin_update(
        &mut self,
        now: f64,
        server: ServerId,
        store: &StoreName,
        key: &str,
    ) -> Result<ReadTicket, RequestError> {
        let path = self.path(store, key)?;
        self.read_for_update(now, server, path, None)
    }

    /// The read of an update; `carried` is the fate of the call when this is a re-read after a
    /// conflict (a first read draws it once the key's throughput takes the read).
    fn read_for_update(
        &mut self,
        now: f64,
        server: ServerId,
        path: KeyPath,
        carried: Option<Option<Fault>>,
    ) -> Result<ReadTicket, RequestError> {
        let (head, read) = self.read_current(&path, self.wall_ms(now))?;
        let use_ = KeyUse {
            path: &path,
            kind: Throughput::Read,
            bytes: read.size,
        };
        // The read is made and counted whatever the call's fate: a fault fails an update at
        // its write, after the read (an `UpdateAsync` fails after both round trips), where a
        // failed `GetAsync` read nothing.
        let fault = self.on_key(now, use_, |f| {
            Ok(carried.unwrap_or_else(|| f.roll(Operation::Update)))
        })?;
        Ok(ReadTicket {
            server,
            path,
            value: read.value,
            key_info: read.key_info,
            read_at: now,
            seen: head.map(|h| h.version),
            fault,
        })
    }

    /// Another writer committed since `ticket` was read: a fresh read for the transform to run
    /// again on (the ticket's fault decision carries over). When the key's read throughput
    /// cannot take the re-read yet, the old ticket comes back [`UpdateCommit::Throttled`]
    /// (committing it later finds the conflict again and re-reads then).
    fn conflict(
        &mut self,
        now: f64,
        ticket: ReadTicket,
        output: Option<Transformed>,
    ) -> Result<UpdateCommit, RequestError> {
        let carried = Some(ticket.fault.clone());
        match self.read_for_update(now, ticket.server, ticket.path.clone(), carried) {
            Ok(again) => Ok(UpdateCommit::Conflict(again)),
            Err(error @ RequestError::KeyThrottled { .. }) => match output {
                Some(output) => Ok(UpdateCommit::Throttled {
                    ticket: Box::new(ticket),
                    output,
                    error,
                }),
                None => Err(error),
            },
            Err(e) => Err(e),
        }
    }

    /// The read of an update sent again after waiting for its key's throughput (its write was
    /// refused for the key, [`UpdateCommit::Throttled`]): the key's current value, for the
    /// transform to run on again. The call keeps the fault fate it drew at its first read.
    pub fn reread_update(
        &mut self,
        now: f64,
        ticket: &ReadTicket,
    ) -> Result<ReadTicket, RequestError> {
        let carried = Some(ticket.fault.clone());
        self.read_for_update(now, ticket.server, ticket.path.clone(), carried)
    }

    /// The error an `UpdateAsync` whose transform put out `output` meets before its write is
    /// sent, if any: a transform's result is checked where it runs (as `SetAsync` checks its
    /// arguments), so a value, user ids or metadata the DataStore cannot take are refused for
    /// that whatever becomes of the request (a fault the world draws for it too). A cancel and
    /// a transform error meet none here.
    pub fn check_write(&self, output: &Transformed) -> Result<(), RequestError> {
        match output {
            Transformed::Write {
                value,
                user_ids,
                metadata,
            } if !value.is_null() => self
                .checked_write(value, user_ids.as_ref(), metadata.as_ref())
                .map(drop),
            _ => Ok(()),
        }
    }

    /// [`DataStoreService::check_write`]'s checks of a write: its size, user ids and metadata
    /// as stored.
    fn checked_write(
        &self,
        value: &Value,
        user_ids: Option<&Value>,
        metadata: Option<&Value>,
    ) -> Result<(usize, Vec<i64>, Value), RequestError> {
        let size = self.limits.check_value(value)?;
        let user_ids = self.limits.check_user_ids(user_ids)?;
        let metadata = self.limits.check_metadata(metadata)?;
        Ok((size, user_ids, metadata))
    }

    /// The write half of `UpdateAsync`: commits the transform's `output` unless the key changed
    /// since `ticket` was read, in which case it answers [`UpdateCommit::Conflict`] with a fresh
    /// read. A transform error fails the call with the transform's message; returning nil (or a
    /// JSON null value) cancels. A scripted or random fault decided at the read applies to the
    /// write: `Fail` writes nothing, `Ambiguous` writes and then reports the error; a cancelled
    /// update sends no write (spec "UpdateAsync") and meets neither.
    pub fn commit_update(
        &mut self,
        now: f64,
        ticket: ReadTicket,
        output: Transformed,
    ) -> Result<UpdateCommit, RequestError> {
        let (value, user_ids, metadata) = match output {
            Transformed::Error(message) => return Err(RequestError::Transform(message)),
            Transformed::Write {
                value,
                user_ids,
                metadata,
            } if !value.is_null() => (value, user_ids, metadata),
            Transformed::Cancel | Transformed::Write { .. } => return Ok(UpdateCommit::Cancelled),
        };
        // A value the DataStore cannot take is refused for that, whatever became of the
        // request ([`DataStoreService::check_write`]).
        let (size, checked_user_ids, checked_metadata) =
            self.checked_write(&value, user_ids.as_ref(), metadata.as_ref())?;
        if let Some(Fault::Fail(e)) = &ticket.fault {
            return Err(e.clone());
        }
        let now_ms = self.wall_ms(now);
        let head = self
            .storage
            .head_meta(&ticket.path)
            .map_err(|e| self.storage_failed(e))?;
        if head.as_ref().map(|h| &h.version) != ticket.seen.as_ref() {
            let output = Transformed::Write {
                value,
                user_ids,
                metadata,
            };
            return self.conflict(now, ticket, Some(output));
        }
        let path = &ticket.path;
        let use_ = KeyUse {
            path,
            kind: Throughput::Write,
            bytes: size,
        };
        if let Err(error) = self.on_key(now, use_, |_| Ok(())) {
            let output = Transformed::Write {
                value,
                user_ids,
                metadata,
            };
            return Ok(UpdateCommit::Throttled {
                ticket: Box::new(ticket),
                output,
                error,
            });
        }
        let state = NewState {
            value: Some(value),
            size,
            user_ids: checked_user_ids,
            metadata: checked_metadata,
        };
        let read = match self.commit_state(now_ms, path, head.as_ref(), state) {
            Ok(read) => read,
            // Another process committed between our check and our commit (the output is
            // spent: a re-read the key cannot take yet fails the call).
            Err(StorageError::Conflict { .. }) => return self.conflict(now, ticket, None),
            Err(e) => return Err(self.storage_failed(e)),
        };
        if let Some(Fault::Ambiguous(e)) = ticket.fault {
            return Err(e);
        }
        self.remember(now, ticket.server, &ticket.path, &read);
        Ok(UpdateCommit::Committed(read))
    }

    /// `RemoveAsync(key)`: writes a tombstone version and returns the previous value and key
    /// info; a key already missing or removed returns nil, nil and writes nothing.
    pub fn remove_async(
        &mut self,
        now: f64,
        server: ServerId,
        store: &StoreName,
        key: &str,
    ) -> Result<Read, RequestError> {
        let path = self.path(store, key)?;
        let late = self.on_key(now, KeyUse::write(&path), |f| {
            Self::write_fate(f, Operation::Remove)
        })?;
        let (previous, _) = self.write_with(self.wall_ms(now), &path, |current| {
            Ok(current.map(|_| NewState::tombstone()))
        })?;
        if let Some(e) = late {
            return Err(e);
        }
        self.remember(now, server, &path, &SharedRead::default());
        Ok(previous)
    }

    /// `GetVersionAsync(key, version)`: that version's value and key info (`UpdatedTime` is
    /// when the version was written). A tombstone version gives a nil value with its key info;
    /// an unknown or expired version gives nil, nil.
    pub fn get_version_async(
        &mut self,
        now: f64,
        store: &StoreName,
        key: &str,
        version: &str,
    ) -> Result<Read, RequestError> {
        let path = self.path(store, key)?;
        self.find_version(now, &path, Operation::GetVersion, |v| v.version == version)
    }

    /// `GetVersionAtTimeAsync(key, timestamp)`: the version that was current at `timestamp_ms`
    /// (the latest whose slot opened at or before it), or nil, nil. The timestamp must be
    /// positive and at most ten minutes ahead (`InvalidTimestamp`).
    ///
    /// Within an hour whose writes overwrote each other (spec "Versioning": later writes in the
    /// hour overwrite permanently) the value current at `timestamp_ms` may be gone; the hour's
    /// version is returned, holding the hour's last write, whose `CreatedTime` can be later than
    /// `timestamp_ms`. (The spec does not say what Roblox returns; this is the closest value
    /// still stored. `ListVersionsAsync` filters by `CreatedTime`, so a `maxDate` inside that
    /// hour does not list it.)
    pub fn get_version_at_time_async(
        &mut self,
        now: f64,
        store: &StoreName,
        key: &str,
        timestamp_ms: i64,
    ) -> Result<Read, RequestError> {
        let path = self.path(store, key)?;
        if timestamp_ms <= 0 || timestamp_ms > self.wall_ms(now).saturating_add(600_000) {
            return Err(RequestError::InvalidTimestamp { timestamp_ms });
        }
        let candidates = self.visible_versions(now, &path)?;
        let slot = candidates
            .iter()
            .rev()
            .find(|v| v.opened_ms <= timestamp_ms)
            .map(|v| v.slot);
        self.find_version(now, &path, Operation::GetVersionAtTime, |v| {
            Some(v.slot) == slot
        })
    }

    fn visible_versions(
        &mut self,
        now: f64,
        path: &KeyPath,
    ) -> Result<Vec<StoredVersion>, RequestError> {
        let now_ms = self.wall_ms(now);
        match self
            .storage
            .head(path)
            .map_err(|e| self.storage_failed(e))?
        {
            Some(head) if !self.expired(&head, now_ms) => {}
            _ => return Ok(Vec::new()),
        }
        let versions = self
            .storage
            .versions(path)
            .map_err(|e| self.storage_failed(e))?;
        // A key written again after it was gone for good starts a new history: what it held
        // before, up to the tombstone that expired, stays gone.
        let retention = self.limits.version_retention_ms;
        let gone_through = versions
            .iter()
            .filter(|v| {
                v.value.is_none()
                    && retention.is_some_and(|r| {
                        v.superseded_ms
                            .is_some_and(|s| s >= v.created_ms.saturating_add(r))
                    })
            })
            .map(|v| v.slot)
            .max()
            .unwrap_or(0);
        Ok(versions
            .into_iter()
            .filter(|v| v.slot > gone_through && self.version_visible(v, now_ms))
            .collect())
    }

    /// The visible version `pick` selects (nil, nil if none), charged as a read; the call's
    /// fate (a fault of `operation`) is drawn once the key's throughput takes it.
    fn find_version(
        &mut self,
        now: f64,
        path: &KeyPath,
        operation: Operation,
        pick: impl Fn(&StoredVersion) -> bool,
    ) -> Result<Read, RequestError> {
        let found = self
            .visible_versions(now, path)?
            .into_iter()
            .find(|v| pick(v));
        let read = found.map_or_else(Read::none, |v| Read {
            key_info: Some(version_info(&v)),
            value: v.value.map(Arc::unwrap_or_clone),
        });
        let size = read.value.as_ref().map_or(0, serialized_len);
        let use_ = KeyUse {
            path,
            kind: Throughput::Read,
            bytes: size,
        };
        self.on_key(now, use_, |f| Self::read_fate(f, operation))?;
        Ok(read)
    }

    /// `ListVersionsAsync(key, direction, minDate, maxDate, pageSize)`: the first page.
    pub fn list_versions_async(
        &mut self,
        now: f64,
        store: &StoreName,
        key: &str,
        query: VersionQuery,
    ) -> Result<VersionPages, RequestError> {
        let path = self.path(store, key)?;
        Self::read_fate(&mut self.faults, Operation::ListVersions)?;
        let mut pages = VersionPages {
            path,
            query,
            items: Vec::new(),
            is_finished: false,
            cursor: None,
        };
        self.fill_version_page(now, &mut pages)?;
        Ok(pages)
    }

    /// `pages:AdvanceToNextPageAsync()` on a version listing (`No pages to advance to.` after
    /// the last page). On error the pages are unchanged.
    pub fn advance_versions(
        &mut self,
        now: f64,
        pages: &mut VersionPages,
    ) -> Result<(), RequestError> {
        if pages.is_finished {
            return Err(RequestError::NoMorePages);
        }
        Self::read_fate(&mut self.faults, Operation::ListVersions)?;
        self.fill_version_page(now, pages)
    }

    fn fill_version_page(
        &mut self,
        now: f64,
        pages: &mut VersionPages,
    ) -> Result<(), RequestError> {
        let q = pages.query;
        let (min, max) = (bound(q.min_date), bound(q.max_date));
        let mut list: Vec<StoredVersion> = self
            .visible_versions(now, &pages.path)?
            .into_iter()
            .filter(|v| {
                min.is_none_or(|m| v.created_ms >= m) && max.is_none_or(|m| v.created_ms <= m)
            })
            .collect();
        if q.direction == SortDirection::Descending {
            list.reverse();
        }
        let after = |v: &StoredVersion| match (pages.cursor, q.direction) {
            (None, _) => true,
            (Some(c), SortDirection::Ascending) => v.slot > c,
            (Some(c), SortDirection::Descending) => v.slot < c,
        };
        let page_size = if q.page_size == 0 {
            1024
        } else {
            q.page_size as usize
        };
        let rest: Vec<StoredVersion> = list.into_iter().filter(after).collect();
        pages.is_finished = rest.len() <= page_size;
        pages.items = rest
            .iter()
            .take(page_size)
            .map(|v| VersionItem {
                version: v.version.to_string(),
                created_time: v.created_ms,
                is_deleted: v.value.is_none(),
            })
            .collect();
        pages.cursor = rest
            .get(page_size.min(rest.len()).saturating_sub(1))
            .map(|v| v.slot)
            .or(pages.cursor);
        Ok(())
    }

    /// `ListKeysAsync(prefix, pageSize, cursor, excludeDeleted)`: the first page of key names.
    pub fn list_keys_async(
        &mut self,
        now: f64,
        store: &StoreName,
        query: KeyQuery,
    ) -> Result<KeyPages, RequestError> {
        self.limits.check_name(NameKind::DataStore, &store.name)?;
        self.limits.check_name(NameKind::Scope, &store.scope)?;
        Self::read_fate(&mut self.faults, Operation::ListKeys)?;
        let cursor = query.cursor.clone();
        let mut pages = KeyPages {
            store: store.clone(),
            query,
            items: Vec::new(),
            is_finished: false,
            cursor,
        };
        self.fill_key_page(now, &mut pages)?;
        Ok(pages)
    }

    /// `pages:AdvanceToNextPageAsync()` on a key listing.
    pub fn advance_keys(&mut self, now: f64, pages: &mut KeyPages) -> Result<(), RequestError> {
        if pages.is_finished {
            return Err(RequestError::NoMorePages);
        }
        Self::read_fate(&mut self.faults, Operation::ListKeys)?;
        self.fill_key_page(now, pages)
    }

    fn fill_key_page(&mut self, now: f64, pages: &mut KeyPages) -> Result<(), RequestError> {
        let page_size = if pages.query.page_size == 0 {
            50
        } else {
            pages.query.page_size as usize
        };
        let now_ms = self.wall_ms(now);
        let mut found = Vec::new();
        let mut cursor = pages.cursor.clone();
        let mut checked = 0;
        let mut cut_short = false;
        'scan: loop {
            let batch = self
                .storage
                .list_keys(
                    &pages.store.name,
                    &pages.store.scope,
                    &pages.query.prefix,
                    cursor.as_deref(),
                    page_size + 1,
                )
                .map_err(|e| self.storage_failed(e))?;
            if batch.is_empty() {
                break;
            }
            for (key, head) in batch {
                // A key removed over 30 days ago is deleted for good: neither listed nor
                // among the keys an `excludeDeleted` page checks.
                if self.expired(&head, now_ms) {
                    cursor = Some(key);
                    continue;
                }
                if pages.query.exclude_deleted && checked == EXCLUDE_DELETED_SCAN {
                    // Checked enough: the page ends here, the listing does not.
                    cut_short = true;
                    break 'scan;
                }
                checked += 1;
                cursor = Some(key.clone());
                if head.value.is_none() && pages.query.exclude_deleted {
                    continue;
                }
                found.push(key);
                if found.len() > page_size {
                    break 'scan;
                }
            }
        }
        pages.is_finished = !cut_short && found.len() <= page_size;
        found.truncate(page_size);
        // The next page starts after the last key listed, or after the last one checked
        // when the scan was cut short.
        if cut_short {
            pages.cursor = cursor;
        } else if let Some(last) = found.last() {
            pages.cursor = Some(last.clone());
        }
        pages.items = found;
        Ok(())
    }

    /// Open Cloud's snapshot: the next write to every key opens a new version whatever the
    /// hour. Once per UTC day (`SnapshotLimit` otherwise). Not persisted by the storage.
    pub fn take_snapshot(&mut self, now: f64) -> Result<(), RequestError> {
        const DAY_MS: i64 = 86_400_000;
        let now_ms = self.wall_ms(now);
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.at_ms.div_euclid(DAY_MS) == now_ms.div_euclid(DAY_MS))
        {
            return Err(RequestError::SnapshotLimit);
        }
        self.snapshot = Some(Snapshot {
            at_ms: now_ms,
            opened_since: BTreeSet::new(),
        });
        Ok(())
    }
}

/// An Open Cloud snapshot: every version slot opened before it takes no more writes.
#[derive(Debug)]
struct Snapshot {
    /// When it was taken, epoch milliseconds.
    at_ms: i64,
    /// Keys whose latest slot was opened in the snapshot's own millisecond, after it: a slot
    /// opened at `at_ms` is otherwise taken to precede it (a virtual clock puts many writes in
    /// one millisecond, and the one the snapshot must keep is not to be written over).
    opened_since: BTreeSet<KeyPath>,
}

impl Snapshot {
    /// Whether `path`'s slot opened at `opened_ms` was opened before the snapshot.
    fn precedes(&self, path: &KeyPath, opened_ms: i64) -> bool {
        opened_ms < self.at_ms || (opened_ms == self.at_ms && !self.opened_since.contains(path))
    }
}
