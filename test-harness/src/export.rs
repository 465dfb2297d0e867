//! Export and import of a store's whole contents as one JSON document (DESIGN.md §4; the
//! fixture layout of `shared/fixtures/README.md`).
//!
//! # Export format (`"format": "profilestore-harness/datastore-export"`, `"formatVersion": 1`)
//!
//! ```json
//! {
//!   "format": "profilestore-harness/datastore-export",
//!   "formatVersion": 1,
//!   "stores": [
//!     {
//!       "store": "PlayerData",            // DataStore name
//!       "scope": "global",                // scope
//!       "keys": {                         // by key name, sorted
//!         "Player_1": {
//!           "exists": true,               // false once RemoveAsync wrote a tombstone
//!           "value": {"Data": {}},        // the current value; null when removed
//!           "userIds": [101],             // DataStoreKeyInfo:GetUserIds()
//!           "metadata": {"Rank": "Gold"}, // DataStoreKeyInfo:GetMetadata(), always an object
//!           "createdTime": 1735689600000, // CreatedTime, Unix ms
//!           "updatedTime": 1735689601000, // UpdatedTime, Unix ms
//!           "version": "…",               // Version of the last write
//!           "serial": 2,                  // writes made so far (an import: ≤ 8999999999)
//!           "versions": [                 // retained versions, oldest first
//!             {"slot": 1, "version": "…", "openedTime": 1735689600000,
//!              "createdTime": 1735689601000, "keyCreatedTime": 1735689600000,
//!              "deleted": false, "value": {"Data": {}}, "userIds": [101],
//!              "metadata": {"Rank": "Gold"}, "supersededTime": null}
//!           ]
//!         }
//!       }
//!     }
//!   ]
//! }
//! ```
//!
//! Stores are sorted by name then scope, keys by name, versions by slot, so exporting the same
//! contents always gives the same bytes.
//!
//! # Import
//!
//! [`import`] accepts that format and the fixture layout of `original-golden.json`:
//! `{"store": NAME, "scope"?: SCOPE, "keys": {KEY: {"exists", "value", "userIds", "metadata"}}}`
//! (other top-level fields such as `place_id` are ignored). A fixture key with `"exists": false`
//! is skipped; the others get one version written at the import time (`now_ms`; the command
//! line passes 2025-01-01T00:00:00Z, the fixtures' epoch), numbered after the key's stored
//! writes so that its version id is new. An empty Luau table stored as `[]` is accepted for
//! `metadata` and `userIds`. Every imported key replaces what the storage held for it; other
//! keys are left alone. That includes a key whose stored data cannot be read (corrupt: a row
//! edited by hand), numbered after the serial it had ([`ImportReport::repaired`]): the way to
//! repair one, with [`export_readable`] to get every other key out first.
//!
//! An export's key imported over a different write of that key (another value, user ids or
//! metadata, or another version id) is, to the store, a new write:
//! it gets the next serial after the stored key's, or its own if that is higher, and the
//! version id that serial makes ([`ImportReport::renumbered`] when that changed its id), so
//! that no `UpdateAsync` that read an earlier write commits
//! over it without running its transform again (version ids are what that check compares).
//! Imported over the same write, or into a store without the key, a key keeps its serial and
//! version: the same document imports to the same bytes.
//!
//! Refused, naming the key: a store name, scope or key no call could address (empty, or over
//! 50 bytes), and a value Roblox's DataStore would not store (over 4,194,304 bytes of JSON,
//! whatever limits a simulation scales). The whole document is checked first (an
//! export must agree with itself: one entry per store and scope, each key's latest version
//! its head's and not superseded; versions in increasing slots with distinct ids, times no
//! store writes refused: before 1970, a write before its slot opened or its key was created,
//! times going back across slots, an older version without `supersededTime` or superseded
//! before its write), then written in one step ([`Storage::replace_keys`]: one
//! transaction on disk, which also holds the reads the planning made: [`write_consistently`]),
//! so a refused document, or an import cut short, changes nothing.

use std::collections::BTreeMap;

use profilestore_core::value::{MAX_DEPTH, Str, Value};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::datastore::{Limits, MAX_IMPORTED_SERIAL, MAX_SERIAL, serialized_len, version_id};
use crate::storage::{
    Head, KeyPath, Replacement, Storage, StorageError, StoredVersion, write_consistently,
};

/// The `format` field of an export.
pub const FORMAT: &str = "profilestore-harness/datastore-export";
/// The `formatVersion` this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// A whole export.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportDocument {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`FORMAT_VERSION`].
    pub format_version: u32,
    /// One entry per DataStore name and scope.
    pub stores: Vec<ExportedStore>,
}

/// The keys of one DataStore name and scope.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportedStore {
    /// DataStore name.
    pub store: String,
    /// Scope.
    pub scope: String,
    /// Keys by name.
    pub keys: BTreeMap<String, ExportedKey>,
}

/// One key: its head and versions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportedKey {
    /// Whether the key has a value (false after `RemoveAsync`).
    pub exists: bool,
    /// The value, `null` when removed.
    pub value: Option<Value>,
    /// User ids.
    pub user_ids: Vec<i64>,
    /// Metadata.
    pub metadata: Value,
    /// `CreatedTime`, Unix ms.
    pub created_time: i64,
    /// `UpdatedTime`, Unix ms.
    pub updated_time: i64,
    /// `Version`.
    pub version: String,
    /// Writes made so far.
    pub serial: u64,
    /// Retained versions, oldest first.
    pub versions: Vec<ExportedVersion>,
}

/// One retained version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportedVersion {
    /// Slot number, from 1.
    pub slot: u64,
    /// Version id.
    pub version: String,
    /// First write into the slot, Unix ms.
    pub opened_time: i64,
    /// The write it holds, Unix ms.
    pub created_time: i64,
    /// The key's `CreatedTime` at that write, Unix ms.
    pub key_created_time: i64,
    /// A tombstone.
    pub deleted: bool,
    /// The value, `null` for a tombstone.
    pub value: Option<Value>,
    /// User ids.
    pub user_ids: Vec<i64>,
    /// Metadata.
    pub metadata: Value,
    /// When a newer slot superseded it, Unix ms.
    pub superseded_time: Option<i64>,
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Keys written: each store's by name, the stores in document order.
    pub imported: Vec<KeyPath>,
    /// Fixture keys with `"exists": false`, not written.
    pub skipped: Vec<KeyPath>,
    /// Keys of an export imported over another write of the key: given the next serial and a
    /// new version id (see the module docs).
    pub renumbered: Vec<KeyPath>,
    /// Keys whose stored data could not be read (corrupt), replaced whole by the import: the
    /// way to repair one (see the module docs).
    pub repaired: Vec<KeyPath>,
}

/// What the storage holds for a key an import replaces.
enum Stored {
    /// Nothing: the key was never written.
    Absent,
    /// Its head.
    Head(Head),
    /// A head that cannot be read ([`StorageError::Corrupt`]) but whose serial can: the import
    /// numbers its write after the key's writes all the same.
    Corrupt { serial: u64 },
}

/// Reads what the storage holds for `path`, as [`Stored`]: a key whose head or versions are
/// corrupt is read again for its serial alone ([`Storage::serial`]); one whose serial is
/// corrupt too is an error naming the key.
fn stored(storage: &mut dyn Storage, path: &KeyPath) -> Result<Stored, ExportError> {
    let read = match storage.head(path) {
        Ok(Some(head)) => storage.versions(path).map(|_| Stored::Head(head)),
        Ok(None) => Ok(Stored::Absent),
        Err(e) => Err(e),
    };
    match read {
        Err(StorageError::Corrupt { .. }) => Ok(match storage.serial(path)? {
            Some(serial) => Stored::Corrupt { serial },
            None => Stored::Absent,
        }),
        read => Ok(read?),
    }
}

/// An export or import failure, naming where the problem is.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ExportError {
    /// The document is not valid JSON or not in a known layout.
    #[error("import document: {0}")]
    Parse(String),
    /// A field has an impossible value.
    #[error("import document, {at}: {problem}")]
    Invalid {
        /// Where, e.g. `stores[0].keys["Player_1"].versions[1]`.
        at: String,
        /// What is wrong.
        problem: String,
    },
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Reads every key of `storage` into one document, all from one consistent state of the store
/// ([`crate::storage::read_consistently`]). A key whose stored data is corrupt, or that reads
/// but in a state no store could reach (which [`import_document`] would refuse), fails it,
/// named ([`StorageError::Corrupt`]): [`export_readable`] leaves such keys out. A key written
/// more than [`MAX_IMPORTED_SERIAL`] times is no corrupt data: it exports, and an import of the
/// document is refused, naming the key (its later writes would have no room).
pub fn export(storage: &mut dyn Storage) -> Result<ExportDocument, ExportError> {
    crate::storage::read_consistently(storage, |storage| read_all(storage, None))
}

/// [`export`] of every key that can be read: a key whose stored data is corrupt
/// ([`StorageError::Corrupt`], naming the key and what is wrong) is left out of the document
/// and its error returned beside it, where [`export`] fails; so is a key that reads but that
/// [`import_document`] would refuse as impossible (edited by hand into a state no store could
/// reach), so that the document imports (all but a key written more than
/// [`MAX_IMPORTED_SERIAL`] times, which is exported as [`export`] does). The way to get the
/// rest of a damaged database out: importing a document that holds a key left out replaces it
/// (one left out as unreadable is reported in [`ImportReport::repaired`]), unless even its
/// serial is unreadable (an import error naming the key; `profilestore-sim inspect` says so).
/// (A row whose key name no call can address fails the listing itself, as in [`export`].)
pub fn export_readable(
    storage: &mut dyn Storage,
) -> Result<(ExportDocument, Vec<StorageError>), ExportError> {
    let mut skipped = Vec::new();
    let document = crate::storage::read_consistently(storage, |storage| {
        read_all(storage, Some(&mut skipped))
    })?;
    Ok((document, skipped))
}

/// Every key's head and versions; with `skipped`, a key whose data is corrupt is noted there
/// and left out instead of failing the whole.
fn read_all(
    storage: &mut dyn Storage,
    mut skipped: Option<&mut Vec<StorageError>>,
) -> Result<ExportDocument, ExportError> {
    let mut stores: Vec<ExportedStore> = Vec::new();
    for path in storage.paths()? {
        let read = match storage.head(&path) {
            Ok(Some(head)) => storage.versions(&path).map(|versions| (head, versions)),
            Ok(None) => continue,
            Err(e) => Err(e),
        };
        let (head, versions) = match read {
            Ok(read) => read,
            Err(e) => {
                let corrupt = matches!(e, StorageError::Corrupt { .. });
                match skipped.as_deref_mut() {
                    Some(skipped) if corrupt => {
                        skipped.push(e);
                        continue;
                    }
                    _ => return Err(e.into()),
                }
            }
        };
        let exported = exported_key(head, versions);
        // A key that reads but that an import would refuse (a row edited by hand: a value
        // that is not its latest version's, no versions; a name or value over the limits,
        // written through a library with none) would make the document unimportable as a
        // whole: it is corrupt data, left out and named by the readable export.
        if let Err(ExportError::Invalid { problem, .. }) =
            addressable("", path.store(), path.scope(), path.key())
                .and_then(|_| checked_key("", &exported, MAX_SERIAL))
        {
            let corrupt = StorageError::Corrupt {
                path: path.to_string(),
                problem: format!("{problem}; an import would refuse it"),
            };
            match skipped.as_deref_mut() {
                Some(skipped) => {
                    skipped.push(corrupt);
                    continue;
                }
                None => return Err(corrupt.into()),
            }
        }
        if stores
            .last()
            .is_none_or(|s| s.store != path.store().as_str() || s.scope != path.scope().as_str())
        {
            stores.push(ExportedStore {
                store: path.store().to_string(),
                scope: path.scope().to_string(),
                keys: BTreeMap::new(),
            });
        }
        if let Some(store) = stores.last_mut() {
            store.keys.insert(path.key().to_string(), exported);
        }
    }
    Ok(ExportDocument {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        stores,
    })
}

/// [`export`] as pretty-printed JSON text.
pub fn export_string(storage: &mut dyn Storage) -> Result<String, ExportError> {
    document_text(&export(storage)?)
}

/// A document as [`export_string`] writes it: pretty-printed JSON text.
pub fn document_text(document: &ExportDocument) -> Result<String, ExportError> {
    serde_json::to_string_pretty(document).map_err(|e| ExportError::Parse(e.to_string()))
}

fn exported_key(head: Head, versions: Vec<StoredVersion>) -> ExportedKey {
    ExportedKey {
        exists: head.value.is_some(),
        value: head.value.map(Arc::unwrap_or_clone),
        user_ids: head.user_ids,
        metadata: head.metadata,
        created_time: head.created_ms,
        updated_time: head.updated_ms,
        version: head.version.to_string(),
        serial: head.serial,
        versions: versions
            .into_iter()
            .map(|v| ExportedVersion {
                slot: v.slot,
                version: v.version.to_string(),
                opened_time: v.opened_ms,
                created_time: v.created_ms,
                key_created_time: v.key_created_ms,
                deleted: v.value.is_none(),
                value: v.value.map(Arc::unwrap_or_clone),
                user_ids: v.user_ids,
                metadata: v.metadata,
                superseded_time: v.superseded_ms,
            })
            .collect(),
    }
}

/// The levels an export wraps a value in: document, `stores`, store, `keys`, key, `versions`,
/// version. A document may nest this much deeper than the values it holds.
const DOCUMENT_LEVELS: usize = 7;

/// Refuses a value (or metadata) no store would hold: nested deeper than [`MAX_DEPTH`].
fn storable(at: &str, what: &str, value: &Value) -> Result<(), ExportError> {
    if value.nested_deeper_than(MAX_DEPTH) {
        return Err(invalid(
            at,
            format!("{what} nests deeper than {MAX_DEPTH} levels"),
        ));
    }
    Ok(())
}

/// Refuses a key's value that Roblox's DataStore would not store: too deep, or longer than
/// its 4,194,304 bytes of JSON. Imported, it could be read but never written back, and a value
/// past the key's read throughput could not even be read.
fn storable_value(at: &str, value: &Value) -> Result<(), ExportError> {
    storable(at, "value", value)?;
    Limits::roblox()
        .check_value(value)
        .map(drop)
        .map_err(|e| invalid(at, format!("value: {e}")))
}

/// The serial of a write imported over a stored key whose serial is `stored`: the next one,
/// or a refusal when it would be over [`MAX_IMPORTED_SERIAL`] (leaving less than a billion
/// writes before version ids go out of order).
fn serial_after(at: &str, stored: u64) -> Result<u64, ExportError> {
    match stored.checked_add(1) {
        Some(next) if next <= MAX_IMPORTED_SERIAL => Ok(next),
        _ => Err(invalid(
            at,
            format!(
                "the store's serial {stored} leaves a write imported over it no serial at or \
                 below {MAX_IMPORTED_SERIAL} (later writes need room to keep version ids in order)"
            ),
        )),
    }
}

/// Refuses a store name, scope or key no DataStore call can name: empty, or longer than
/// Roblox's 50 bytes. Imported, `ListKeysAsync` would list a key every read refuses.
fn addressable(at: &str, store: &str, scope: &str, key: &str) -> Result<KeyPath, ExportError> {
    Limits::roblox()
        .check_path(store, scope, Some(key))
        .map_err(|e| invalid(at, e.to_string()))?;
    Ok(KeyPath::new(store, scope, key))
}

/// Imports a document in either layout (see the module docs); fixture keys get times and a
/// version at `now_ms` (Unix ms).
pub fn import(
    storage: &mut dyn Storage,
    text: &str,
    now_ms: i64,
) -> Result<ImportReport, ExportError> {
    let json = Value::from_json_text_within(text, MAX_DEPTH + DOCUMENT_LEVELS)
        .map_err(|e| ExportError::Parse(e.to_string()))?;
    // Parsed, a repeated key keeps its last value: refused instead, as one of the two is a
    // mistake and nothing says which (the walk nests no deeper than the parse just did).
    if let Some((at, key)) =
        crate::repeated_key::repeated_key(text).map_err(|e| ExportError::Parse(e.to_string()))?
    {
        return Err(invalid(
            &at,
            format!("key {key:?} appears twice in one object"),
        ));
    }
    if json.get("format").is_some() {
        // The format is named before the layout is read: another version's fields are not
        // errors of this one.
        let (format, version) = (&json["format"], &json["formatVersion"]);
        if format.as_str() != Some(FORMAT) || version.as_u64() != Some(FORMAT_VERSION.into()) {
            return Err(ExportError::Parse(format!(
                "format {format} version {version} is not supported (expected {FORMAT:?} version {FORMAT_VERSION})"
            )));
        }
        // A field that is missing or of the wrong type is named by its place in the document.
        let document: ExportDocument =
            serde_path_to_error::deserialize(serde_json::Value::from(json)).map_err(|e| {
                ExportError::Invalid {
                    at: e.path().to_string(),
                    problem: e.inner().to_string(),
                }
            })?;
        import_document(storage, &document)
    } else if json.get("store").is_some() && json.get("keys").is_some() {
        import_fixture(storage, &json, now_ms)
    } else {
        Err(ExportError::Parse(
            "unrecognised layout: expected an export (a \"format\" field) or a fixture (\"store\" and \"keys\")".into(),
        ))
    }
}

/// Imports an export document, checking it first (nothing is written if any key is invalid).
pub fn import_document(
    storage: &mut dyn Storage,
    document: &ExportDocument,
) -> Result<ImportReport, ExportError> {
    if document.format != FORMAT || document.format_version != FORMAT_VERSION {
        return Err(ExportError::Parse(format!(
            "format {:?} version {} is not supported (expected {FORMAT:?} version {FORMAT_VERSION})",
            document.format, document.format_version
        )));
    }
    write_consistently(storage, |storage| replace_document(storage, document))
}

/// The checking, planning and writing of [`import_document`], in one step of `storage`: the
/// serials planned are those stored when the replacement is written.
fn replace_document(
    storage: &mut dyn Storage,
    document: &ExportDocument,
) -> Result<ImportReport, ExportError> {
    let mut planned = Vec::new();
    let mut renumbered = Vec::new();
    let mut repaired = Vec::new();
    let mut stores = BTreeMap::new();
    for (i, store) in document.stores.iter().enumerate() {
        if let Some(first) = stores.insert((&store.store, &store.scope), i) {
            return Err(invalid(
                &format!("stores[{i}]"),
                format!(
                    "store {:?} scope {:?} is already stores[{first}]",
                    store.store, store.scope
                ),
            ));
        }
        for (key, exported) in &store.keys {
            let at = format!("stores[{i}].keys[{key:?}]");
            let path = addressable(&at, &store.store, &store.scope, key)?;
            let (mut head, mut versions) = checked_key(&at, exported, MAX_IMPORTED_SERIAL)?;
            // The serial of a stored write other than the document's, if there is one.
            let other = match stored(storage, &path)? {
                Stored::Absent => None,
                Stored::Head(current) => {
                    let same = current.version == head.version
                        && current.value == head.value
                        && current.user_ids == head.user_ids
                        && current.metadata == head.metadata;
                    // The same write keeps the key's serial where a document edited since
                    // puts it lower: the writes after would take serials the key gave out.
                    if same {
                        head.serial = head.serial.max(current.serial);
                    }
                    (!same).then_some(current.serial)
                }
                // Unreadable: whatever it held, it is not the document's write.
                Stored::Corrupt { serial } => {
                    repaired.push(path.clone());
                    Some(serial)
                }
            };
            if let Some(stored_serial) = other {
                // Another write than the stored one (or the same value under another id): to
                // the store it is a new write of the key, so it gets a version id the store has
                // not given before. (An id the key had — the stored head's, in an export edited
                // since, or an earlier write's a pending `UpdateAsync` read — would let that
                // update commit over the import without running its transform again.) Ids
                // carry the serial: numbered after the stored writes, the id is new.
                let serial = serial_after(&at, stored_serial)?.max(head.serial);
                let version = Str::from(version_id(head.created_ms, serial, head.updated_ms));
                if (serial, &version) != (head.serial, &head.version) {
                    head.serial = serial;
                    head.version = version.clone();
                    if let Some(latest) = versions.last_mut() {
                        latest.version = version;
                    }
                    renumbered.push(path.clone());
                }
            }
            planned.push(Replacement {
                path,
                head,
                versions,
            });
        }
    }
    storage.replace_keys(&planned)?;
    Ok(ImportReport {
        imported: planned.into_iter().map(|r| r.path).collect(),
        renumbered,
        repaired,
        ..ImportReport::default()
    })
}

fn invalid(at: &str, problem: impl Into<String>) -> ExportError {
    ExportError::Invalid {
        at: at.to_string(),
        problem: problem.into(),
    }
}

/// A key's metadata, which must be an object that Roblox's DataStore takes: ProfileStore
/// writes it back with every save, and metadata over its sizes would fail each one (511).
fn object_metadata(at: &str, metadata: &Value) -> Result<Value, ExportError> {
    // Too deep first: the message then names that, not the whole (huge) value.
    storable(at, "metadata", metadata)?;
    let checked = Limits::unlimited()
        .check_metadata(Some(metadata))
        .map_err(|_| invalid(at, format!("metadata must be an object, found {metadata}")))?;
    Limits::roblox()
        .check_metadata(Some(&checked))
        .map_err(|e| invalid(at, format!("metadata: {e}")))
}

/// A version's times as a store writes them (ms since 1970): none negative; opened (its
/// slot's first write) at or before created (its write); both at or after the previous
/// slot's (listings and `GetVersionAtTimeAsync` go by slot); superseded, at or after its own
/// write, exactly when a later slot follows (a superseded version with no time would never
/// expire, the latest one would look replaced).
fn check_version_times(
    at: &str,
    v: &ExportedVersion,
    previous: Option<&StoredVersion>,
    latest: bool,
) -> Result<(), ExportError> {
    for (name, t) in [
        ("openedTime", v.opened_time),
        ("createdTime", v.created_time),
        ("keyCreatedTime", v.key_created_time),
    ] {
        if t < 0 {
            return Err(invalid(at, format!("{name} {t} is before 1970")));
        }
    }
    for (name, t) in [
        ("keyCreatedTime", v.key_created_time),
        ("openedTime", v.opened_time),
    ] {
        if t > v.created_time {
            return Err(invalid(
                at,
                format!("{name} {t} is after createdTime {}", v.created_time),
            ));
        }
    }
    if let Some(p) = previous
        && (v.opened_time < p.opened_ms || v.created_time < p.created_ms)
    {
        return Err(invalid(
            at,
            format!(
                "times (opened {}, created {}) go back from slot {}'s (opened {}, created {})",
                v.opened_time, v.created_time, p.slot, p.opened_ms, p.created_ms
            ),
        ));
    }
    match v.superseded_time {
        Some(_) if latest => Ok(()),
        None if !latest => Err(invalid(
            at,
            "supersededTime is null, but a later slot superseded this version",
        )),
        Some(t) if t < v.created_time => Err(invalid(
            at,
            format!(
                "supersededTime {t} is before createdTime {}",
                v.created_time
            ),
        )),
        _ => Ok(()),
    }
}

/// `k` as stored, or why no store should hold it; `most_serial` is the largest write count
/// accepted: [`MAX_IMPORTED_SERIAL`] for an import (the key's later writes need room), and
/// [`MAX_SERIAL`] for a stored key being exported (whose writes may have gone past what an
/// import gives: its ids are in order, though an import of it is refused).
fn checked_key(
    at: &str,
    k: &ExportedKey,
    most_serial: u64,
) -> Result<(Head, Vec<StoredVersion>), ExportError> {
    if k.exists != k.value.is_some() {
        return Err(invalid(
            at,
            format!(
                "exists is {} but value is {}",
                k.exists,
                if k.value.is_some() { "set" } else { "null" }
            ),
        ));
    }
    // The on-disk store keeps counters as SQLite integers, and a write adds one to both: the
    // next write must fit too.
    let counter = |at: &str, name: &str, n: u64| {
        if n >= i64::MAX as u64 {
            Err(invalid(
                at,
                format!("{name} {n} leaves no room below {}", i64::MAX),
            ))
        } else {
            Ok(())
        }
    };
    // Version ids carry the serial in ten digits: past them they would sort out of order.
    if k.serial > most_serial {
        return Err(invalid(
            at,
            format!(
                "serial {} is over {most_serial}: version ids keep ten digits of it in order, \
                 and the key's later writes need room",
                k.serial
            ),
        ));
    }
    if let Some(value) = &k.value {
        storable_value(at, value)?;
    }
    storable(at, "metadata", &k.metadata)?;
    let mut versions = Vec::with_capacity(k.versions.len());
    let mut ids = std::collections::BTreeSet::new();
    for (j, v) in k.versions.iter().enumerate() {
        let vat = format!("{at}.versions[{j}]");
        counter(&vat, "slot", v.slot)?;
        let expected_slot = versions.last().map_or(1, |p: &StoredVersion| p.slot + 1);
        if v.slot < expected_slot || (j == 0 && v.slot == 0) {
            return Err(invalid(
                &vat,
                format!(
                    "slot {} must be at least {expected_slot} and increase",
                    v.slot
                ),
            ));
        }
        if let Some(value) = &v.value {
            storable_value(&vat, value)?;
        }
        storable(&vat, "metadata", &v.metadata)?;
        if v.deleted != v.value.is_none() {
            return Err(invalid(
                &vat,
                format!(
                    "deleted is {} but value is {}",
                    v.deleted,
                    if v.value.is_some() { "set" } else { "null" }
                ),
            ));
        }
        check_version_times(&vat, v, versions.last(), j + 1 == k.versions.len())?;
        if !ids.insert(v.version.as_str()) {
            return Err(invalid(
                &vat,
                format!(
                    "version {:?} is an earlier slot's too: GetVersionAsync could not tell them apart",
                    v.version
                ),
            ));
        }
        versions.push(StoredVersion {
            slot: v.slot,
            version: v.version.as_str().into(),
            opened_ms: v.opened_time,
            created_ms: v.created_time,
            key_created_ms: v.key_created_time,
            value: v.value.clone().map(Arc::new),
            user_ids: v.user_ids.clone(),
            metadata: object_metadata(&vat, &v.metadata)?,
            superseded_ms: v.superseded_time,
        });
    }
    // The head is the latest slot's write, which nothing has superseded.
    let latest = versions
        .last()
        .ok_or_else(|| invalid(at, "a key has at least one version (its latest write)"))?;
    if latest.version.as_str() != k.version {
        return Err(invalid(
            at,
            format!(
                "version {:?} is not the latest slot's ({:?})",
                k.version,
                latest.version.as_str()
            ),
        ));
    }
    if latest.superseded_ms.is_some() {
        return Err(invalid(
            &format!("{at}.versions[{}]", versions.len() - 1),
            "the latest version cannot be superseded",
        ));
    }
    let head = Head {
        size: k.value.as_ref().map_or(0, serialized_len),
        value: k.value.clone().map(Arc::new),
        created_ms: k.created_time,
        updated_ms: k.updated_time,
        version: k.version.as_str().into(),
        serial: k.serial,
        user_ids: k.user_ids.clone(),
        metadata: object_metadata(at, &k.metadata)?,
    };
    // The head is that write: an edit of one without the other (say, of `value` alone) would
    // make GetAsync and GetVersionAsync disagree.
    let differs = if head.value != latest.value {
        Some("value")
    } else if head.user_ids != latest.user_ids {
        Some("userIds")
    } else if head.metadata != latest.metadata {
        Some("metadata")
    } else if head.updated_ms != latest.created_ms {
        Some("updatedTime")
    } else if head.created_ms != latest.key_created_ms {
        Some("createdTime")
    } else {
        None
    };
    if let Some(field) = differs {
        return Err(invalid(
            at,
            format!(
                "{field} is not the latest version's (slot {}): the key's fields and its \
                 latest version describe one write",
                latest.slot
            ),
        ));
    }
    Ok((head, versions))
}

fn import_fixture(
    storage: &mut dyn Storage,
    json: &Value,
    now_ms: i64,
) -> Result<ImportReport, ExportError> {
    write_consistently(storage, |storage| replace_fixture(storage, json, now_ms))
}

/// The checking, planning and writing of [`import_fixture`], in one step of `storage`.
fn replace_fixture(
    storage: &mut dyn Storage,
    json: &Value,
    now_ms: i64,
) -> Result<ImportReport, ExportError> {
    let store = json["store"]
        .as_str()
        .ok_or_else(|| invalid("store", "must be a string"))?;
    let scope = match json.get("scope") {
        None => "global",
        Some(s) => s
            .as_str()
            .ok_or_else(|| invalid("scope", "must be a string"))?,
    };
    let keys = json["keys"]
        .as_object()
        .ok_or_else(|| invalid("keys", "must be an object"))?;
    let limits = Limits::unlimited();
    let mut planned = Vec::new();
    let mut report = ImportReport::default();
    for (key, entry) in keys {
        let at = format!("keys[{key:?}]");
        let path = addressable(&at, store, scope, key)?;
        // A misspelt field would otherwise import as nothing (`"userids"`: no user ids).
        if let Some(fields) = entry.as_object()
            && let Some((unknown, _)) = fields
                .iter()
                .find(|(f, _)| !["exists", "value", "userIds", "metadata"].contains(&f.as_str()))
        {
            return Err(invalid(
                &at,
                format!("unknown field {unknown:?} (expected exists, value, userIds, metadata)"),
            ));
        }
        let exists = entry
            .get("exists")
            .and_then(Value::as_bool)
            .ok_or_else(|| invalid(&at, "\"exists\" must be true or false"))?;
        if !exists {
            report.skipped.push(path);
            continue;
        }
        let value = entry
            .get("value")
            .filter(|v| !v.is_null())
            .ok_or_else(|| invalid(&at, "an existing key needs a value"))?;
        storable_value(&at, value)?;
        let user_ids = limits.check_user_ids(entry.get("userIds")).map_err(|_| {
            invalid(
                &at,
                format!(
                    "userIds must be a list of integers, found {}",
                    entry["userIds"]
                ),
            )
        })?;
        let metadata = object_metadata(&at, entry.get("metadata").unwrap_or(&Value::Null))?;
        // A key imported over one already stored gets a version id of its own: with the
        // same id an `UpdateAsync` that read the old value would commit over the new one
        // without running again.
        let serial = match stored(storage, &path)? {
            Stored::Absent => 1,
            Stored::Head(stored) => serial_after(&at, stored.serial)?,
            Stored::Corrupt { serial } => {
                report.repaired.push(path.clone());
                serial_after(&at, serial)?
            }
        };
        let version = version_id(now_ms, serial, now_ms);
        let head = Head {
            size: serialized_len(value),
            value: Some(Arc::new(value.clone())),
            created_ms: now_ms,
            updated_ms: now_ms,
            version: version.as_str().into(),
            serial,
            user_ids: user_ids.clone(),
            metadata: metadata.clone(),
        };
        let first = StoredVersion {
            slot: 1,
            version: version.into(),
            opened_ms: now_ms,
            created_ms: now_ms,
            key_created_ms: now_ms,
            value: Some(Arc::new(value.clone())),
            user_ids,
            metadata,
            superseded_ms: None,
        };
        planned.push(Replacement {
            path,
            head,
            versions: vec![first],
        });
    }
    storage.replace_keys(&planned)?;
    report.imported = planned.into_iter().map(|r| r.path).collect();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::{DataStoreService, GetOptions, ServerId, SetOptions, StoreName};
    use crate::storage::{MemoryStorage, SqliteStorage};
    use profilestore_core::value::json;

    const EPOCH: i64 = 1_735_689_600;
    const GOLDEN: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures/original-golden.json"
    ));

    #[test]
    fn golden_fixture_imports_and_reads_back_through_get_async() {
        let mut storage = MemoryStorage::new();
        let report = import(&mut storage, GOLDEN, EPOCH * 1000).unwrap();
        let names: Vec<&str> = report.imported.iter().map(|p| p.key().as_str()).collect();
        assert_eq!(
            names,
            [
                "locked_dead",
                "locked_live",
                "overwritten_active",
                "overwritten_released",
                "pending_messages",
                "processed_message",
                "released",
                "stub"
            ]
        );
        assert!(report.skipped.is_empty());
        assert!(
            report
                .imported
                .iter()
                .all(|p| p.store().as_str() == "PlayerData" && p.scope().as_str() == "global")
        );

        let mut ds = DataStoreService::new(EPOCH).with_storage(Box::new(storage));
        let store = StoreName::new("PlayerData");
        let read = ds
            .get_async(5.0, ServerId(1), &store, "released", GetOptions::default())
            .unwrap();
        let golden: Value = serde_json::from_str(GOLDEN).unwrap();
        assert_eq!(
            read.value.as_ref(),
            Some(&golden["keys"]["released"]["value"])
        );
        assert_eq!(read.value.as_ref().unwrap()["Data"]["Ratio"], json!(0.25));
        let info = read.key_info.unwrap();
        assert_eq!(info.user_ids, vec![101]);
        assert_eq!(info.metadata, json!({"Rank": "Gold"}));
        assert_eq!(
            (info.created_time, info.updated_time),
            (EPOCH * 1000, EPOCH * 1000)
        );
        assert_eq!(info.version, version_id(EPOCH * 1000, 1, EPOCH * 1000));
        // `[]` metadata (an empty Luau table) becomes the empty object.
        let dead = ds
            .get_async(
                5.0,
                ServerId(1),
                &store,
                "locked_dead",
                GetOptions::default(),
            )
            .unwrap();
        assert_eq!(dead.key_info.unwrap().metadata, json!({}));
        assert_eq!(
            dead.value.unwrap()["MetaData"]["ActiveSession"][0],
            json!(1001)
        );
        // Every fixture value is stored exactly.
        for (key, entry) in golden["keys"].as_object().unwrap() {
            let r = ds
                .get_async(
                    5.0,
                    ServerId(1),
                    &store,
                    key,
                    GetOptions { use_cache: false },
                )
                .unwrap();
            assert_eq!(r.value.as_ref(), Some(&entry["value"]), "{key}");
        }
    }

    #[test]
    fn fixture_keys_that_do_not_exist_are_skipped_and_bad_fields_are_named() {
        let doc = json!({"store": "S", "keys": {"a": {"exists": false}, "b": {"exists": true, "value": 1, "userIds": [], "metadata": []}}});
        let mut storage = MemoryStorage::new();
        let report = import(&mut storage, &doc.to_string(), 5).unwrap();
        assert_eq!(report.skipped, vec![KeyPath::new("S", "global", "a")]);
        assert_eq!(report.imported, vec![KeyPath::new("S", "global", "b")]);
        let bad =
            json!({"store": "S", "keys": {"b": {"exists": true, "value": 1, "userIds": ["x"]}}});
        assert_eq!(
            import(&mut storage, &bad.to_string(), 5)
                .unwrap_err()
                .to_string(),
            "import document, keys[\"b\"]: userIds must be a list of integers, found [\"x\"]"
        );
        let bad = json!({"store": "S", "keys": {"b": {"exists": true, "value": 1, "metadata": 3}}});
        assert_eq!(
            import(&mut storage, &bad.to_string(), 5)
                .unwrap_err()
                .to_string(),
            "import document, keys[\"b\"]: metadata must be an object, found 3"
        );
        // Metadata Roblox would refuse (each save writes it back) and a misspelt field are
        // named.
        let bad = json!({"store": "S", "keys": {"b": {"exists": true, "value": 1, "metadata": {"Rank": "x".repeat(251)}}}});
        assert_eq!(
            import(&mut storage, &bad.to_string(), 5)
                .unwrap_err()
                .to_string(),
            "import document, keys[\"b\"]: metadata: 511: Metadata attribute value size exceeds 250 limit."
        );
        let bad =
            json!({"store": "S", "keys": {"b": {"exists": true, "value": 1, "userids": [7]}}});
        assert_eq!(
            import(&mut storage, &bad.to_string(), 5)
                .unwrap_err()
                .to_string(),
            "import document, keys[\"b\"]: unknown field \"userids\" (expected exists, value, userIds, metadata)"
        );
        // Metadata nested too deep is named as that (it was \"must be an object\", with the
        // whole value).
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH + 1 {
            deep = json!([deep]);
        }
        let bad = json!({"store": "S", "keys": {"b": {"exists": true, "value": 1, "metadata": {"a": deep}}}});
        assert_eq!(
            import(&mut storage, &bad.to_string(), 5)
                .unwrap_err()
                .to_string(),
            format!("import document, keys[\"b\"]: metadata nests deeper than {MAX_DEPTH} levels")
        );
        // Names no call could address, values Roblox would not store (nothing written).
        let long = "x".repeat(51);
        let huge = "y".repeat(4_194_304 - 1); // 2 bytes more with its quotes
        for (doc, expected) in [
            (
                json!({"store": "S", "keys": {long.as_str(): {"exists": true, "value": 1}}}),
                format!("keys[\"{long}\"]: "),
            ),
            (
                json!({"store": "S", "keys": {"": {"exists": true, "value": 1}}}),
                "keys[\"\"]: ".to_string(),
            ),
            (
                json!({"store": "", "keys": {"c": {"exists": true, "value": 1}}}),
                "keys[\"c\"]: ".to_string(),
            ),
            (
                json!({"store": "S", "scope": long.as_str(), "keys": {"c": {"exists": true, "value": 1}}}),
                "keys[\"c\"]: ".to_string(),
            ),
            (
                json!({"store": "S", "keys": {"c": {"exists": true, "value": huge.as_str()}}}),
                "keys[\"c\"]: value: ".to_string(),
            ),
        ] {
            let mut fresh = MemoryStorage::new();
            let err = import(&mut fresh, &doc.to_string(), 5).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("import document, {expected}")),
                "{text}"
            );
            assert_eq!(fresh.paths().unwrap(), vec![], "nothing was written");
        }
        let mut fresh = MemoryStorage::new();
        let fits = "y".repeat(4_194_304 - 2);
        let doc = json!({"store": "S", "keys": {"x".repeat(50): {"exists": true, "value": fits}}});
        import(&mut fresh, &doc.to_string(), 5).unwrap();
        assert!(matches!(
            import(&mut storage, "{", 5),
            Err(ExportError::Parse(_))
        ));
        assert!(
            import(&mut storage, "{}", 5)
                .unwrap_err()
                .to_string()
                .contains("unrecognised layout")
        );
    }

    fn populated() -> DataStoreService {
        let mut ds = DataStoreService::new(EPOCH);
        let (s, a) = (StoreName::new("PlayerData"), ServerId(1));
        let with = SetOptions {
            user_ids: Some(json!([7])),
            metadata: Some(json!({"Rank": "Gold"})),
        };
        ds.set_async(0.0, a, &s, "k1", json!({"Coins": 1}), with)
            .unwrap();
        ds.set_async(
            3600.0,
            a,
            &s,
            "k1",
            json!({"Coins": 2}),
            SetOptions::default(),
        )
        .unwrap();
        ds.set_async(10.0, a, &s, "k2", json!("two"), SetOptions::default())
            .unwrap();
        ds.remove_async(20.0, a, &s, "k2").unwrap();
        ds.set_async(
            30.0,
            a,
            &StoreName::scoped("PlayerData", "beta"),
            "k1",
            json!(3),
            SetOptions::default(),
        )
        .unwrap();
        ds.set_async(
            40.0,
            a,
            &StoreName::new("Other"),
            "z",
            json!([1, 2]),
            SetOptions::default(),
        )
        .unwrap();
        ds
    }

    #[test]
    fn export_lists_everything_in_order_and_round_trips_into_sqlite() {
        let mut ds = populated();
        let document = export(ds.storage_mut()).unwrap();
        let stores: Vec<(&str, &str)> = document
            .stores
            .iter()
            .map(|s| (s.store.as_str(), s.scope.as_str()))
            .collect();
        assert_eq!(
            stores,
            [
                ("Other", "global"),
                ("PlayerData", "beta"),
                ("PlayerData", "global")
            ]
        );
        let player = &document.stores[2];
        let k1 = &player.keys["k1"];
        assert_eq!(k1.value, Some(json!({"Coins": 2})));
        assert_eq!(
            (k1.created_time, k1.updated_time, k1.serial),
            (EPOCH * 1000, EPOCH * 1000 + 3_600_000, 2)
        );
        assert_eq!(
            k1.user_ids,
            Vec::<i64>::new(),
            "the second SetAsync gave no user ids"
        );
        assert_eq!(k1.versions.len(), 2);
        assert_eq!(k1.versions[0].user_ids, vec![7]);
        assert_eq!(
            k1.versions[0].superseded_time,
            Some(EPOCH * 1000 + 3_600_000)
        );
        let k2 = &player.keys["k2"];
        assert!(!k2.exists && k2.value.is_none());
        // Removed in the hour it was written: the write keeps its version, superseded by the
        // tombstone's.
        assert_eq!(
            k2.versions
                .iter()
                .map(|v| (v.deleted, v.superseded_time))
                .collect::<Vec<_>>(),
            [(false, Some(EPOCH * 1000 + 20_000)), (true, None)]
        );

        let text = export_string(ds.storage_mut()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut sqlite = SqliteStorage::open(dir.path().join("copy.db")).unwrap();
        let report = import(&mut sqlite, &text, 0).unwrap();
        assert_eq!(report.imported.len(), 4);
        assert_eq!(export(&mut sqlite).unwrap(), document);
        assert_eq!(
            export_string(&mut sqlite).unwrap(),
            text,
            "same contents, same bytes"
        );
    }

    #[test]
    fn invalid_exports_are_refused_before_anything_is_written() {
        let mut ds = populated();
        let mut document = export(ds.storage_mut()).unwrap();
        let k1 = &document.stores[2].keys["k1"].versions;
        let (v0_opened, v0_created, v0_version) =
            (k1[0].opened_time, k1[0].created_time, k1[0].version.clone());
        let v1_created = k1[1].created_time;
        document.stores[2].keys.get_mut("k1").unwrap().versions[1].slot = 1;
        let mut fresh = MemoryStorage::new();
        let err = import_document(&mut fresh, &document).unwrap_err();
        assert_eq!(
            err.to_string(),
            "import document, stores[2].keys[\"k1\"].versions[1]: slot 1 must be at least 2 and increase"
        );
        assert_eq!(fresh.paths().unwrap(), vec![], "nothing was written");
        // Times a store never writes, and a version id two slots share.
        let refused = |edit: &dyn Fn(&mut Vec<ExportedVersion>)| {
            let mut document = export(populated().storage_mut()).unwrap();
            edit(&mut document.stores[2].keys.get_mut("k1").unwrap().versions);
            let mut fresh = MemoryStorage::new();
            let err = import_document(&mut fresh, &document)
                .unwrap_err()
                .to_string();
            assert_eq!(fresh.paths().unwrap(), vec![], "nothing was written");
            err.replace("import document, stores[2].keys[\"k1\"].", "")
        };
        assert_eq!(
            refused(&|v| v[0].superseded_time = None),
            "versions[0]: supersededTime is null, but a later slot superseded this version"
        );
        assert_eq!(
            refused(&|v| v[1].opened_time = v[0].opened_time - 1),
            format!(
                "versions[1]: times (opened {}, created {v1_created}) go back from slot 1's \
                 (opened {v0_opened}, created {v0_created})",
                v0_opened - 1
            )
        );
        assert_eq!(
            refused(&|v| v[0].opened_time = v[0].created_time + 1),
            format!(
                "versions[0]: openedTime {} is after createdTime {v0_created}",
                v0_created + 1
            )
        );
        assert_eq!(
            refused(&|v| v[0].key_created_time = -5),
            "versions[0]: keyCreatedTime -5 is before 1970"
        );
        assert_eq!(
            refused(&|v| v[1].version = v[0].version.clone()),
            format!(
                "versions[1]: version {:?} is an earlier slot's too: GetVersionAsync could not \
                 tell them apart",
                v0_version
            )
        );
        // Serials that leave later writes less than a billion before their version ids go out
        // of order (ten digits of serial; the on-disk store's integers end further, at
        // i64::MAX).
        let max = crate::datastore::MAX_SERIAL;
        for serial in [
            u64::MAX,
            i64::MAX as u64,
            max + 1,
            max,
            MAX_IMPORTED_SERIAL + 1,
        ] {
            let mut big = export(ds.storage_mut()).unwrap();
            big.stores[2].keys.get_mut("k1").unwrap().serial = serial;
            assert_eq!(
                import_document(&mut fresh, &big).unwrap_err().to_string(),
                format!(
                    "import document, stores[2].keys[\"k1\"]: serial {serial} is over 8999999999: version ids keep ten digits of it in order, and the key's later writes need room"
                )
            );
        }
        let mut big = export(ds.storage_mut()).unwrap();
        big.stores[2].keys.get_mut("k1").unwrap().versions[1].slot = 1 << 63;
        assert_eq!(
            import_document(&mut fresh, &big).unwrap_err().to_string(),
            "import document, stores[2].keys[\"k1\"].versions[1]: slot 9223372036854775808 leaves no room below 9223372036854775807"
        );
        // The largest imported: the writes after it, on the on-disk store too, keep their
        // version ids in order.
        let mut edge = export(ds.storage_mut()).unwrap();
        edge.stores[2].keys.get_mut("k1").unwrap().serial = MAX_IMPORTED_SERIAL;
        let mut sqlite = SqliteStorage::open_in_memory().unwrap();
        import_document(&mut sqlite, &edge).unwrap();
        let mut on_disk = DataStoreService::new(EPOCH).with_storage(Box::new(sqlite));
        let (s, a) = (StoreName::new("PlayerData"), ServerId(1));
        let mut ids = vec![edge.stores[2].keys["k1"].version.clone()];
        for (t, v) in [(7200.0, 1), (10800.0, 2)] {
            let written = on_disk
                .set_async(t, a, &s, "k1", json!(v), SetOptions::default())
                .unwrap();
            ids.push(written.key_info.version.to_string());
        }
        assert!(ids[2].contains(".9000000001."), "{ids:?}");
        assert!(ids.is_sorted(), "{ids:?}");
        // Written past what an import gives, the key still exports (it is no corrupt data),
        // and an import of that export is refused, naming why.
        let exported = export(on_disk.storage_mut()).unwrap();
        let at = exported
            .stores
            .iter()
            .position(|s| (s.store.as_str(), s.scope.as_str()) == ("PlayerData", "global"))
            .unwrap();
        assert_eq!(
            exported.stores[at].keys["k1"].serial,
            MAX_IMPORTED_SERIAL + 2
        );
        assert_eq!(
            import_document(&mut MemoryStorage::new(), &exported)
                .unwrap_err()
                .to_string(),
            format!(
                "import document, stores[{at}].keys[\"k1\"]: serial 9000000001 is over 8999999999: version ids keep ten digits of it in order, and the key's later writes need room"
            )
        );
        // Another write of that key imported over it would take a serial past the largest.
        let mut memory = MemoryStorage::new();
        import_document(&mut memory, &edge).unwrap();
        let mut over = edge.clone();
        let k1 = over.stores[2].keys.get_mut("k1").unwrap();
        k1.value = Some(json!(2));
        k1.versions.last_mut().unwrap().value = Some(json!(2));
        assert_eq!(
            import_document(&mut memory, &over).unwrap_err().to_string(),
            "import document, stores[2].keys[\"k1\"]: the store's serial 8999999999 leaves a write imported over it no serial at or below 8999999999 (later writes need room to keep version ids in order)"
        );
        assert_eq!(fresh.paths().unwrap(), vec![], "nothing was written");
        let mut wrong = export(ds.storage_mut()).unwrap();
        wrong.format_version = 2;
        assert!(
            import_document(&mut fresh, &wrong)
                .unwrap_err()
                .to_string()
                .contains("version 2 is not supported")
        );
        // Documents that contradict themselves.
        let base = export(ds.storage_mut()).unwrap();
        let refused = |edit: &dyn Fn(&mut ExportDocument)| {
            let mut document = base.clone();
            edit(&mut document);
            let mut fresh = MemoryStorage::new();
            let err = import_document(&mut fresh, &document).unwrap_err();
            assert_eq!(fresh.paths().unwrap(), vec![], "nothing was written");
            err.to_string()
        };
        assert_eq!(
            refused(&|d| d.stores[2].keys.get_mut("k1").unwrap().versions.clear()),
            "import document, stores[2].keys[\"k1\"]: a key has at least one version (its latest write)"
        );
        assert_eq!(
            refused(&|d| d.stores[2].keys.get_mut("k1").unwrap().version = "v0".into()),
            format!(
                "import document, stores[2].keys[\"k1\"]: version \"v0\" is not the latest slot's ({:?})",
                base.stores[2].keys["k1"].versions[1].version
            )
        );
        assert_eq!(
            refused(&|d| {
                d.stores[2].keys.get_mut("k1").unwrap().versions[1].superseded_time = Some(1)
            }),
            "import document, stores[2].keys[\"k1\"].versions[1]: the latest version cannot be superseded"
        );
        assert_eq!(
            refused(&|d| {
                let again = d.stores[2].clone();
                d.stores.push(again);
            }),
            "import document, stores[3]: store \"PlayerData\" scope \"global\" is already stores[2]"
        );
        // A key's fields edited without its latest version (or the other way round): GetAsync
        // and GetVersionAsync would disagree.
        fn key(d: &mut ExportDocument) -> &mut ExportedKey {
            d.stores[2].keys.get_mut("k1").unwrap()
        }
        type Edit<'a> = &'a dyn Fn(&mut ExportDocument);
        let edits: [(&str, Edit); 5] = [
            ("value", &|d| key(d).value = Some(json!({"edited": true}))),
            ("userIds", &|d| key(d).user_ids = vec![42]),
            ("metadata", &|d| key(d).metadata = json!({"edited": true})),
            ("updatedTime", &|d| key(d).updated_time += 1),
            ("createdTime", &|d| key(d).versions[1].key_created_time -= 1),
        ];
        for (field, edit) in edits {
            assert_eq!(
                refused(edit),
                format!(
                    "import document, stores[2].keys[\"k1\"]: {field} is not the latest \
                     version's (slot {}): the key's fields and its latest version describe one \
                     write",
                    base.stores[2].keys["k1"].versions[1].slot
                )
            );
        }
    }

    /// A key repeated in one object of the document (which a parse would silently resolve to
    /// its last value) is refused, naming the object's place; nothing is written.
    #[test]
    fn a_key_repeated_in_one_object_is_refused() {
        let refused = |text: &str| {
            let mut fresh = MemoryStorage::new();
            let err = import(&mut fresh, text, EPOCH * 1000)
                .unwrap_err()
                .to_string();
            assert_eq!(fresh.paths().unwrap(), vec![], "nothing was written");
            err
        };
        let key = r#"{"exists": true, "value": {"Data": {}}, "userIds": [], "metadata": {}}"#;
        assert_eq!(
            refused(&format!(
                r#"{{"store": "S", "keys": {{"k": {key}, "k": {key}}}}}"#
            )),
            "import document, keys: key \"k\" appears twice in one object"
        );
        assert_eq!(
            refused(r#"{"store": "S", "store": "T", "keys": {}}"#),
            "import document, its top level: key \"store\" appears twice in one object"
        );
        let deep = r#"{"exists": true, "value": {"Data": {"a": [1, {"x": 1, "x": 2}]}},
            "userIds": [], "metadata": {}}"#;
        assert_eq!(
            refused(&format!(
                r#"{{"store": "S", "keys": {{"Player 1": {deep}}}}}"#
            )),
            "import document, keys[\"Player 1\"].value.Data.a[1]: key \"x\" appears twice in \
             one object"
        );
        // The same document without the repeats imports.
        let mut fresh = MemoryStorage::new();
        let text = format!(r#"{{"store": "S", "keys": {{"k": {key}}}}}"#);
        import(&mut fresh, &text, EPOCH * 1000).unwrap();
        assert_eq!(fresh.paths().unwrap().len(), 1);
    }

    /// A field missing or of the wrong type is named by its place in the document; a document
    /// of another format version is named as such, whatever fields it has.
    #[test]
    fn layout_errors_name_their_place() {
        let mut ds = populated();
        let text = export_string(ds.storage_mut()).unwrap();
        let edited = |edit: &dyn Fn(&mut Value)| {
            let mut doc = Value::from_json_text(&text).unwrap();
            edit(&mut doc);
            let mut fresh = MemoryStorage::new();
            let err = import(&mut fresh, &doc.to_string(), 0).unwrap_err();
            assert_eq!(fresh.paths().unwrap(), vec![]);
            err.to_string()
        };
        fn k1(doc: &mut Value) -> &mut Value {
            &mut doc["stores"][2]["keys"]["k1"]
        }
        assert_eq!(
            edited(&|d| {
                k1(d).as_object_mut().unwrap().remove("serial");
            }),
            "import document, stores[2].keys.k1: missing field `serial`"
        );
        assert_eq!(
            edited(&|d| k1(d)["createdTime"] = json!("yesterday")),
            "import document, stores[2].keys.k1.createdTime: invalid type: string \"yesterday\", expected i64"
        );
        assert_eq!(
            edited(&|d| {
                d["formatVersion"] = json!(2);
                d["newField"] = json!(true);
            }),
            "import document: format \"profilestore-harness/datastore-export\" version 2 is not supported (expected \"profilestore-harness/datastore-export\" version 1)"
        );
    }

    /// An `UpdateAsync` that read a key before an import over it runs its transform again on
    /// the imported value: an import over another write of the key never carries a version id
    /// the key had. Fixture keys get the next serial; an export's key gets the next serial and
    /// its version id when its write differs from the stored one (edited since it was exported
    /// with its version kept, or exported before a later write), and keeps both otherwise.
    #[test]
    fn an_import_never_reuses_a_version_id_for_another_write() {
        use crate::datastore::{ReadTicket, UpdateCommit};
        use profilestore_core::Transformed;
        let fixture =
            |v: i64| format!(r#"{{"store":"S","keys":{{"k":{{"exists":true,"value":{v}}}}}}}"#);
        let mut ds = DataStoreService::new(EPOCH);
        let (s, a) = (StoreName::new("S"), ServerId(1));
        let write = |v: Value| Transformed::Write {
            value: v,
            user_ids: None,
            metadata: None,
        };
        // Commits `v` for `ticket`, which must find the key changed to `seen` first.
        let rerun = |ds: &mut DataStoreService, ticket: ReadTicket, seen: Value, v: i64| {
            let again = match ds.commit_update(1.0, ticket, write(json!(v))).unwrap() {
                UpdateCommit::Conflict(next) => next,
                other => panic!("committed over the import: {other:?}"),
            };
            assert_eq!(again.value.as_deref(), Some(&seen));
            let Ok(UpdateCommit::Committed(_)) = ds.commit_update(1.0, again, write(json!(v)))
            else {
                panic!("the second try commits")
            };
        };
        import(ds.storage_mut(), &fixture(1), EPOCH * 1000).unwrap();
        let ticket = ds.begin_update(0.0, a, &s, "k").unwrap();
        assert_eq!(ticket.value.as_deref(), Some(&json!(1)));
        import(ds.storage_mut(), &fixture(100), EPOCH * 1000).unwrap();
        rerun(&mut ds, ticket, json!(100), 101);

        // An export edited with its version kept, imported over the write it came from.
        let mut edited = export(ds.storage_mut()).unwrap();
        let key = edited.stores[0].keys.get_mut("k").unwrap();
        let (old_version, old_serial) = (key.version.clone(), key.serial);
        key.value = Some(json!(7));
        key.versions.last_mut().unwrap().value = Some(json!(7));
        let ticket = ds.begin_update(2.0, a, &s, "k").unwrap();
        let text = serde_json::to_string(&edited).unwrap();
        let report = import(ds.storage_mut(), &text, 0).unwrap();
        assert_eq!(report.renumbered, vec![KeyPath::new("S", "global", "k")]);
        let now = export(ds.storage_mut()).unwrap();
        let key = &now.stores[0].keys["k"];
        assert_eq!(key.serial, old_serial + 1);
        assert_ne!(key.version, old_version);
        assert_eq!(key.versions.last().unwrap().version, key.version);
        rerun(&mut ds, ticket, json!(7), 8);

        // An export from before a later write, imported over it: an update that read the
        // export's own write (its version) before that later write must run again too.
        let early = export_string(ds.storage_mut()).unwrap();
        let ticket = ds.begin_update(3.0, a, &s, "k").unwrap();
        ds.set_async(4.0, a, &s, "k", json!(9), SetOptions::default())
            .unwrap();
        assert_eq!(
            import(ds.storage_mut(), &early, 0)
                .unwrap()
                .renumbered
                .len(),
            1
        );
        rerun(&mut ds, ticket, json!(8), 10);

        // The same value under an earlier write's id: an update that read that earlier
        // write runs again too.
        let earlier = export_string(ds.storage_mut()).unwrap();
        let ticket = ds.begin_update(5.0, a, &s, "k").unwrap();
        let value = ticket.value.as_deref().cloned().unwrap();
        ds.set_async(6.0, a, &s, "k", json!(11), SetOptions::default())
            .unwrap();
        ds.set_async(7.0, a, &s, "k", value.clone(), SetOptions::default())
            .unwrap();
        assert_eq!(
            import(ds.storage_mut(), &earlier, 0)
                .unwrap()
                .renumbered
                .len(),
            1
        );
        rerun(&mut ds, ticket, value, 12);

        // The same write again: nothing renumbered, the same bytes.
        let unchanged = export_string(ds.storage_mut()).unwrap();
        let report = import(ds.storage_mut(), &unchanged, 0).unwrap();
        assert!(report.renumbered.is_empty());
        assert_eq!(export_string(ds.storage_mut()).unwrap(), unchanged);

        // The same write with its serial edited lower keeps the key's: the next write takes
        // the serial after it, as it would have (an id the key never had).
        let mut lowered = export(ds.storage_mut()).unwrap();
        let key = lowered.stores[0].keys.get_mut("k").unwrap();
        let serial = key.serial;
        key.serial = 1;
        let report = import_document(ds.storage_mut(), &lowered).unwrap();
        assert!(report.renumbered.is_empty());
        assert_eq!(export_string(ds.storage_mut()).unwrap(), unchanged);
        ds.set_async(8.0, a, &s, "k", json!(13), SetOptions::default())
            .unwrap();
        let after = export(ds.storage_mut()).unwrap();
        assert_eq!(after.stores[0].keys["k"].serial, serial + 1);
    }

    /// An import is one transaction on disk: a key the database refuses part-way leaves the
    /// keys before it as they were.
    #[test]
    fn an_import_the_database_refuses_part_way_changes_nothing() {
        let mut ds = populated();
        let document = export(ds.storage_mut()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("store.db");
        let mut sqlite = SqliteStorage::open(&file).unwrap();
        drop(sqlite);
        // A trigger (not part of the schema check) that refuses one key, after others.
        rusqlite::Connection::open(&file)
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON keys WHEN NEW.key = 'k2' \
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
            )
            .unwrap();
        sqlite = SqliteStorage::open(&file).unwrap();
        let err = import_document(&mut sqlite, &document).unwrap_err();
        assert!(err.to_string().contains("refused by the test"), "{err}");
        assert_eq!(
            sqlite.paths().unwrap(),
            vec![],
            "no key of the document landed"
        );
    }

    /// [`populated`]'s export, imported into `store.db` in a new folder: (the export, the
    /// folder).
    fn populated_on_disk() -> (ExportDocument, tempfile::TempDir) {
        let mut ds = populated();
        let document = export(ds.storage_mut()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut sqlite = SqliteStorage::open(dir.path().join("store.db")).unwrap();
        import_document(&mut sqlite, &document).unwrap();
        (document, dir)
    }

    /// Runs `sql` on the database `file` behind the storage's back (a hand edit): rows changed.
    fn edit(file: &std::path::Path, sql: &str) -> usize {
        rusqlite::Connection::open(file)
            .unwrap()
            .execute(sql, [])
            .unwrap()
    }

    /// A key whose stored data is corrupt (a row edited by hand) does not lock the rest of the
    /// database in, nor itself out: `export` fails naming it, `export_readable` gives every
    /// other key and names it, and an import of a document that holds it (an export's or a
    /// fixture's layout) replaces it, numbered after the writes it had, every other key left
    /// as it was. A key whose serial is corrupt too is refused by name, nothing written.
    #[test]
    fn a_corrupt_key_is_left_out_of_an_export_and_replaced_by_an_import() {
        let (document, dir) = populated_on_disk();
        let file = dir.path().join("store.db");
        let k1 = KeyPath::new("PlayerData", "global", "k1");
        let serial = document.stores[2].keys["k1"].serial;
        // Sets columns of PlayerData/global/k1's row.
        let damage = |set: &str| {
            let sql = format!(
                "UPDATE keys SET {set} WHERE store = 'PlayerData' AND scope = 'global' \
                 AND key = 'k1'"
            );
            edit(&file, &sql)
        };
        assert_eq!(damage("value = '{broken'"), 1);
        let mut sqlite = SqliteStorage::open(&file).unwrap();
        let err = export(&mut sqlite).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("corrupt stored data for PlayerData/global/k1: column value is not"),
            "{err}"
        );
        let (readable, skipped) = export_readable(&mut sqlite).unwrap();
        assert_eq!(skipped.len(), 1);
        assert!(
            matches!(&skipped[0], StorageError::Corrupt { path, .. } if *path == k1.to_string())
        );
        let mut without = document.clone();
        without.stores[2].keys.remove("k1");
        assert_eq!(readable, without, "every other key, as it was");

        // The export's own document puts it back, as a new write of the key.
        let report = import_document(&mut sqlite, &document).unwrap();
        assert_eq!(report.repaired, vec![k1.clone()]);
        assert_eq!(report.renumbered, vec![k1.clone()]);
        let after = export(&mut sqlite).unwrap();
        let key = &after.stores[2].keys["k1"];
        assert_eq!(key.serial, serial + 1);
        assert_eq!(key.value, document.stores[2].keys["k1"].value);
        assert_ne!(key.version, document.stores[2].keys["k1"].version);
        let mut others = after.clone();
        others.stores[2].keys.remove("k1");
        assert_eq!(others, without);

        // A fixture's layout does too.
        damage("metadata = '['");
        let fixture = r#"{"store": "PlayerData", "keys": {"k1": {"exists": true,
            "value": {"Coins": 9}, "userIds": [], "metadata": {}}}}"#;
        let report = import(&mut sqlite, fixture, 0).unwrap();
        assert_eq!(report.repaired, vec![k1.clone()]);
        let fixed = sqlite.head(&k1).unwrap().unwrap();
        assert_eq!(
            (fixed.serial, fixed.value.as_deref()),
            (serial + 2, Some(&json!({"Coins": 9})))
        );

        // A corrupt version, the head sound: left out and replaced the same way.
        let changed = edit(
            &file,
            "UPDATE versions SET metadata = '1' WHERE store = 'PlayerData' \
             AND scope = 'global' AND key = 'k1'",
        );
        assert_eq!(changed, 1);
        let (_, skipped) = export_readable(&mut sqlite).unwrap();
        assert_eq!(skipped.len(), 1);
        let report = import(&mut sqlite, fixture, 0).unwrap();
        assert_eq!(report.repaired, vec![k1.clone()]);
        assert_eq!(sqlite.head(&k1).unwrap().unwrap().serial, serial + 3);
        assert_eq!(export_readable(&mut sqlite).unwrap().1.len(), 0);

        // A corrupt serial leaves nothing to number after: refused, by name.
        damage("value = 'x', serial = 'many'");
        let err = import_document(&mut sqlite, &document).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("corrupt stored data for PlayerData/global/k1: "),
            "{err}"
        );
        let (unchanged, skipped) = export_readable(&mut sqlite).unwrap();
        assert_eq!((unchanged, skipped.len()), (without, 1));
    }

    /// A row edited by hand into a state that reads but that an import refuses (here a key
    /// with no versions left) fails the plain export, as corrupt data does, naming it (the
    /// document would not import); the readable export leaves it out and names it, so that
    /// its document imports.
    #[test]
    fn a_key_an_import_would_refuse_is_left_out_of_the_readable_export() {
        let (document, dir) = populated_on_disk();
        let file = dir.path().join("store.db");
        let this_key = "WHERE store = 'PlayerData' AND scope = 'global' AND key = 'k1'";
        assert_eq!(edit(&file, &format!("DELETE FROM versions {this_key}")), 2);
        let mut sqlite = SqliteStorage::open(&file).unwrap();
        let said = "corrupt stored data for PlayerData/global/k1: a key has at least one version \
                    (its latest write); an import would refuse it";
        let refused = export(&mut sqlite).unwrap_err();
        assert!(
            matches!(refused, ExportError::Storage(StorageError::Corrupt { .. })),
            "{refused:?}"
        );
        assert_eq!(refused.to_string(), said);
        let mut fresh = MemoryStorage::new();
        let (readable, skipped) = export_readable(&mut sqlite).unwrap();
        let named: Vec<String> = skipped.iter().map(ToString::to_string).collect();
        assert_eq!(named, [said]);
        let mut without = document.clone();
        without.stores[2].keys.remove("k1");
        assert_eq!(readable, without);
        import_document(&mut fresh, &readable).unwrap();
        assert_eq!(export(&mut fresh).unwrap(), without);
        // Importing a document that holds the key replaces the row, as for a corrupt one.
        import_document(&mut sqlite, &document).unwrap();
        assert_eq!(export(&mut sqlite).unwrap(), document);
    }

    /// A value as deep as a store takes (512 levels) exports and imports back, though the
    /// document nests it seven levels deeper; a value one level deeper is refused by name,
    /// before anything is written.
    #[test]
    fn values_as_deep_as_a_store_takes_round_trip() {
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = Value::from(vec![deep]);
        }
        let mut ds = DataStoreService::new(EPOCH);
        let store = StoreName::new("S");
        ds.set_async(
            0.0,
            ServerId(1),
            &store,
            "deep",
            deep.clone(),
            Default::default(),
        )
        .unwrap();
        let text = export_string(ds.storage_mut()).unwrap();
        let mut fresh = MemoryStorage::new();
        import(&mut fresh, &text, 0).unwrap();
        assert_eq!(export_string(&mut fresh).unwrap(), text);

        let mut document = export(ds.storage_mut()).unwrap();
        let key = document.stores[0].keys.get_mut("deep").unwrap();
        key.value = Some(Value::from(vec![deep]));
        let mut empty = MemoryStorage::new();
        assert_eq!(
            import_document(&mut empty, &document)
                .unwrap_err()
                .to_string(),
            "import document, stores[0].keys[\"deep\"]: value nests deeper than 512 levels"
        );
        assert_eq!(empty.paths().unwrap(), vec![], "nothing was written");
    }
}
