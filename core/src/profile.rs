//! Profile objects (spec §16): what the engine keeps per profile, and the fields a host reads.
//!
//! `Profile.Data` and `Profile.RobloxMetaData` belong to the host (DESIGN.md §2); the engine
//! reads them through [`crate::LiveState`] when a transform runs. Everything else a Luau
//! `Profile` exposes is here.

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use crate::value::Value;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::protocol::{KeyInfo, ProfileId, StoreId, SubscriptionId};
use crate::queue::Token;
use crate::wire::{self, ProfileValue};

/// Whether a profile holds a session or is a read-only view (spec §11.1, §21).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProfileKind {
    /// Obtained by `StartSessionAsync`: registered, auto-saved, subscribed.
    Session,
    /// Obtained by `GetAsync` / `NextAsync`: never active; its only write is `SetAsync`.
    View,
}

/// `Profile.Session`: the lock holder at load.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionHolder {
    /// `PlaceId`.
    pub place_id: Value,
    /// `JobId`.
    pub job_id: String,
}

/// `Profile.LastSavedData`: the `Data` of the profile value the last load or save returned.
///
/// It shares that whole stored value with the DataStore that returned it (an `Arc`), so a load
/// or save hands the engine no copy of `Data`; it dereferences to the `Data` table (an empty
/// table when the value has none). Cloning is cheap. It serialises as the `Data` table's JSON
/// text, like the other values carried by recorded outputs.
#[derive(Clone, Debug, Default)]
pub struct LastSavedData {
    /// The stored profile value, `Data` and all.
    stored: Arc<Value>,
}

impl LastSavedData {
    /// The `Data` of a stored profile value, sharing it.
    pub fn of(stored: Arc<Value>) -> LastSavedData {
        LastSavedData { stored }
    }

    /// The whole stored profile value the `Data` came from: its `MetaData` tells whose
    /// session wrote it (a save that found its session taken returns the taker's value).
    pub fn stored(&self) -> &Value {
        &self.stored
    }

    /// The `Data` table.
    pub fn data(&self) -> &Value {
        static EMPTY_TABLE: LazyLock<Value> = LazyLock::new(|| Value::Object(Default::default()));
        self.stored.get("Data").unwrap_or(&EMPTY_TABLE)
    }
}

impl std::ops::Deref for LastSavedData {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.data()
    }
}

impl From<Value> for LastSavedData {
    /// `Data` on its own (as a profile value `{"Data": data}`).
    fn from(data: Value) -> LastSavedData {
        let mut stored = crate::value::Object::new();
        stored.insert("Data".into(), data);
        LastSavedData::of(Arc::new(Value::Object(stored)))
    }
}

impl PartialEq for LastSavedData {
    fn eq(&self, other: &Self) -> bool {
        self.data() == other.data()
    }
}

impl Serialize for LastSavedData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::json_text::serialize(self.data(), s)
    }
}

impl<'de> Deserialize<'de> for LastSavedData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LastSavedData, D::Error> {
        crate::json_text::deserialize(d).map(LastSavedData::from)
    }
}

/// One profile object.
#[derive(Clone, Debug)]
pub struct Profile {
    /// Handle.
    pub id: ProfileId,
    /// `Profile.ProfileStore` (the real store object, also for mock profiles).
    pub store: StoreId,
    /// Store name.
    pub store_name: String,
    /// `Profile.Key`.
    pub key: String,
    /// Session or view.
    pub kind: ProfileKind,
    /// Obtained through `store.Mock`.
    pub is_mock: bool,
    /// `Profile.FirstSessionTime` (`MetaData.ProfileCreateTime`, or 0).
    pub first_session_time: f64,
    /// `Profile.SessionLoadCount`.
    pub session_load_count: i64,
    /// `Profile.Session`.
    pub session: Option<SessionHolder>,
    /// `Profile.UserIds`.
    pub user_ids: Vec<i64>,
    /// `Profile.KeyInfo` of the last load or save.
    pub key_info: Option<KeyInfo>,
    /// `Profile.LastSavedData`.
    pub last_saved_data: LastSavedData,
    pub(crate) token: Token,
    pub(crate) load_index: i64,
    pub(crate) load_timestamp: f64,
    pub(crate) processed: BTreeSet<i64>,
    pub(crate) received: BTreeSet<i64>,
    pub(crate) global_updates: Vec<Value>,
    pub(crate) handler_count: usize,
    pub(crate) subscription: Option<SubscriptionId>,
    pub(crate) last_reaction: f64,
    /// False for a session obtained while its start was being cancelled or the server closing:
    /// the host never received its `Data`, so its release keeps the stored `Data`.
    pub(crate) host_has_data: bool,
    /// Save jobs of this profile not yet finished: while any is, the profile is kept.
    pub(crate) pending_saves: usize,
    /// The host forgot the profile while it was busy: it is dropped once it is not
    /// ([`Engine::forget_profile`](crate::Engine::forget_profile)).
    pub(crate) forgotten: bool,
    /// The engine's registry holds this profile for its token: the session is active. Kept
    /// with the registry, so asking costs one lookup
    /// ([`Engine::is_active`](crate::Engine::is_active)).
    pub(crate) registered: bool,
}

/// The deepest `Profile.Data` a save writes: the stored profile wraps it one level down, and
/// a store takes values nested up to [`MAX_DEPTH`](crate::value::MAX_DEPTH) levels.
pub const MAX_DATA_DEPTH: usize = crate::value::MAX_DEPTH - 1;

/// The most bytes of JSON a DataStore key holds (Roblox's 4,194,304-character limit, error 105):
/// a template or a message larger than this alone is in no value a store would take.
pub const MAX_VALUE_LEN: usize = 4_194_304;

/// Why a profile's `Data` cannot be saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataProblem {
    /// Not a table (spec §8.1).
    NotATable,
    /// Nested deeper than [`MAX_DATA_DEPTH`] levels (no store would take the profile).
    TooDeep,
    /// The DataStore refused a final save as unstorable (`Data` too large, or a
    /// `RobloxMetaData` it cannot keep): see [`unstorable`] and [`too_large`].
    Refused,
}

/// Whether a DataStore error says what the write carries can never be stored, so that writing
/// it again cannot succeed: Roblox's 103 (value not allowed), 104 (cannot store: NaN, nesting),
/// 511 (metadata too large) and 513 (metadata format). Not 105 (value too large): a key can
/// shrink (its message queue empties), so only a final save, which then writes less, takes it
/// for a refusal ([`too_large`]). Error messages begin with their code (`"104: ..."`).
pub fn unstorable(message: &str) -> bool {
    matches!(error_code(message), Some("103" | "104" | "511" | "513"))
}

/// Whether a DataStore error is 105: the value is larger than a key may hold.
pub fn too_large(message: &str) -> bool {
    error_code(message) == Some("105")
}

/// The code a DataStore error message begins with (`"105"` of `"105: ..."`).
fn error_code(message: &str) -> Option<&str> {
    message.split_once(':').map(|(code, _)| code.trim())
}

impl DataProblem {
    /// What is wrong with `data` as a profile's `Data`, if anything.
    pub fn of(data: &Value) -> Option<DataProblem> {
        if !crate::wire::is_table(data) {
            Some(DataProblem::NotATable)
        } else if data.nested_deeper_than(MAX_DATA_DEPTH) {
            Some(DataProblem::TooDeep)
        } else {
            None
        }
    }
}

impl Profile {
    /// Builds a profile object from a loaded or read value (spec §16). Every message id already
    /// present is marked seen.
    pub(crate) fn from_value(
        id: ProfileId,
        store: StoreId,
        token: Token,
        kind: ProfileKind,
        stored: &Arc<Value>,
        key_info: Option<KeyInfo>,
        now: f64,
    ) -> Profile {
        let value: &Value = stored;
        let pv = ProfileValue::of(value);
        let entries: Vec<Value> = pv
            .as_ref()
            .map(|p| p.global_update_entries().to_vec())
            .unwrap_or_default();
        let received = entries.iter().filter_map(wire::message_id).collect();
        let session = pv
            .as_ref()
            .and_then(|p| p.active_session())
            .map(|tag| SessionHolder {
                place_id: tag[0].clone(),
                job_id: tag[1].as_str().unwrap_or_default().to_string(),
            });
        let slc = pv.as_ref().map_or(0, |p| p.session_load_count());
        Profile {
            id,
            store,
            store_name: token.store().to_string(),
            key: token.key().to_string(),
            kind,
            is_mock: false,
            first_session_time: pv.as_ref().and_then(|p| p.create_time()).unwrap_or(0.0),
            session_load_count: slc,
            session,
            user_ids: value
                .get("UserIds")
                .map(crate::mock::user_id_list)
                .unwrap_or_default(),
            key_info,
            last_saved_data: LastSavedData::of(Arc::clone(stored)),
            token,
            load_index: slc,
            load_timestamp: now,
            processed: BTreeSet::new(),
            received,
            global_updates: entries,
            handler_count: 0,
            subscription: None,
            last_reaction: 0.0,
            host_has_data: true,
            pending_saves: 0,
            forgotten: false,
            registered: false,
        }
    }

    /// Unprocessed messages in stored order: what a newly registered handler receives.
    pub fn pending_messages(&self) -> Vec<(i64, Value)> {
        self.global_updates
            .iter()
            .filter_map(|e| {
                let id = wire::message_id(e)?;
                let payload = wire::entry_payload(e)?;
                (!self.processed.contains(&id)).then(|| (id, payload.clone()))
            })
            .collect()
    }

    /// Why this profile's `Data` cannot be saved: `Data` must be a table (spec §8.1), and nest
    /// no deeper than [`MAX_DATA_DEPTH`] levels.
    pub(crate) fn data_error(&self, problem: DataProblem) -> String {
        match problem {
            DataProblem::NotATable => format!(
                "[ProfileStore]: Developer code likely set \"Profile.Data\" to a non-table value! (STORE:{}; KEY:{})",
                self.store_name, self.key
            ),
            DataProblem::TooDeep => format!(
                "[ProfileStore]: \"Profile.Data\" nests deeper than {MAX_DATA_DEPTH} levels and cannot be saved (STORE:{}; KEY:{})",
                self.store_name, self.key
            ),
            DataProblem::Refused => format!(
                "[ProfileStore]: The DataStore refused to store \"Profile.Data\" or \"Profile.RobloxMetaData\" (STORE:{}; KEY:{})",
                self.store_name, self.key
            ),
        }
    }
}
