//! The persistence behind the simulated DataStore (DESIGN.md §4 "Storage behind it is
//! pluggable"): the [`Storage`] trait and its two implementations, [`MemoryStorage`] (the default
//! for simulations and tests) and [`SqliteStorage`] (an embedded on-disk database that keeps keys,
//! versions and key info across process restarts).
//!
//! A storage is deliberately dumb: it keeps, per [`KeyPath`], the key's current state (its
//! [`Head`]) and its retained versions ([`StoredVersion`]), and applies one [`Commit`] at a time
//! atomically — the head and the version change land together or not at all, and only if the
//! head is still what the writer read ([`Expect`], a compare-and-swap). Every Roblox rule (key
//! info, the one-version-per-UTC-hour rule, tombstones, retention, limits) lives in
//! [`crate::datastore`], which decides what to commit. That split keeps a third backend (a
//! networked database, later) small: implement the seven methods without a default.
//!
//! Ordering is deterministic everywhere: keys sort by `(store, scope, key)` in byte order,
//! versions by their slot number.

mod memory;
mod sqlite;

pub use memory::MemoryStorage;
pub use sqlite::{SCHEMA_VERSION, SqliteStorage};

use profilestore_core::prehashed::Prehashed;
use profilestore_core::value::Str;
use profilestore_core::value::Value;
use std::sync::Arc;

/// Where a key lives: DataStore name, scope and key name.
///
/// Every DataStore request looks its path up several times (storage, throughput, cache), so a
/// path is [`Prehashed`]: its parts are hashed once, when it is made. Ordered by store, scope,
/// key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyPath(Prehashed<(Str, Str, Str)>);

impl KeyPath {
    /// A path from its three parts (names of up to 23 bytes, the usual case, are kept inline:
    /// making or copying such a path allocates nothing).
    pub fn new(store: &str, scope: &str, key: &str) -> Self {
        KeyPath(Prehashed::new((store.into(), scope.into(), key.into())))
    }

    /// DataStore name (`DataStoreService:GetDataStore(name)`).
    pub fn store(&self) -> &Str {
        &self.0.get().0
    }

    /// Scope (`"global"` unless given).
    pub fn scope(&self) -> &Str {
        &self.0.get().1
    }

    /// Key name.
    pub fn key(&self) -> &Str {
        &self.0.get().2
    }
}

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.store(), self.scope(), self.key())
    }
}

/// The current state of a key: what `GetAsync` and `DataStoreKeyInfo` report.
#[derive(Clone, Debug, PartialEq)]
pub struct Head {
    /// The value, or `None` once `RemoveAsync` wrote a tombstone. Shared: the head, its version
    /// slot and the read cache hold one copy.
    pub value: Option<Arc<Value>>,
    /// The value's compact JSON length in bytes (0 for a tombstone), measured once when it is
    /// written or loaded, so reads are charged per-key throughput without serializing it again.
    pub size: usize,
    /// `CreatedTime`, epoch milliseconds.
    pub created_ms: i64,
    /// `UpdatedTime` (time of the last write or removal), epoch milliseconds.
    pub updated_ms: i64,
    /// `Version` of the last write.
    pub version: Str,
    /// How many writes (tombstones included) the key has ever had; the next version id uses
    /// `serial + 1`, so ids keep increasing even when a same-hour write replaces a version.
    pub serial: u64,
    /// `GetUserIds()`.
    pub user_ids: Vec<i64>,
    /// `GetMetadata()`, always a JSON object.
    pub metadata: Value,
}

/// A [`Head`] without its value: what a compare-and-swap and the next version id need.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadMeta {
    /// The key holds a value (false after a removal).
    pub has_value: bool,
    /// `CreatedTime`, epoch milliseconds.
    pub created_ms: i64,
    /// `UpdatedTime` (the last write's time, a removal's included), epoch milliseconds.
    pub updated_ms: i64,
    /// Writes so far.
    pub serial: u64,
    /// `Version` of the last write.
    pub version: Str,
}

impl From<&Head> for HeadMeta {
    fn from(h: &Head) -> Self {
        HeadMeta {
            has_value: h.value.is_some(),
            created_ms: h.created_ms,
            updated_ms: h.updated_ms,
            serial: h.serial,
            version: h.version.clone(),
        }
    }
}

/// One retained version of a key (`ListVersionsAsync` / `GetVersionAsync`).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredVersion {
    /// Position in the key's history, from 1; a same-hour write replaces the latest slot.
    pub slot: u64,
    /// Version id of the write this slot now holds.
    pub version: Str,
    /// Time of the first write into this slot (the UTC-hour rule looks at it), epoch ms.
    pub opened_ms: i64,
    /// Time of the write this slot now holds (`DataStoreObjectVersionInfo.CreatedTime`), epoch ms.
    pub created_ms: i64,
    /// The key's `CreatedTime` when this version was written, epoch ms.
    pub key_created_ms: i64,
    /// The value, or `None` for a tombstone (shared with the head while it is the latest).
    pub value: Option<Arc<Value>>,
    /// User ids stored with this version.
    pub user_ids: Vec<i64>,
    /// Metadata stored with this version (a JSON object).
    pub metadata: Value,
    /// When a newer slot superseded this one (retention counts from here), epoch ms.
    pub superseded_ms: Option<i64>,
}

/// What a [`Commit`] requires of the key's current head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The key has never been written.
    Absent,
    /// The head's version is this one.
    Version(Str),
}

/// How a [`Commit`] changes the key's version history.
#[derive(Clone, Debug, PartialEq)]
pub enum VersionWrite {
    /// Add a new slot (its `slot` is one more than the latest); the previous latest slot gets
    /// `superseded_ms = new.created_ms`.
    Append(StoredVersion),
    /// Overwrite the latest slot (same `slot` number): a later write in the same UTC hour.
    ReplaceLatest(StoredVersion),
}

/// One DataStore write, applied atomically by [`Storage::commit`].
#[derive(Clone, Debug, PartialEq)]
pub struct Commit {
    /// Compare-and-swap condition on the current head.
    pub expect: Expect,
    /// The key's new head.
    pub head: Head,
    /// The version history change.
    pub version: VersionWrite,
}

/// A storage failure, naming the key or operation involved.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StorageError {
    /// The head changed since the writer read it (another writer committed in between).
    #[error("write conflict on {path}: the key changed since it was read")]
    Conflict {
        /// The key.
        path: KeyPath,
    },
    /// A commit that does not fit the stored history (e.g. replacing a slot that is not the latest).
    #[error("invalid commit on {path}: {problem}")]
    InvalidCommit {
        /// The key.
        path: KeyPath,
        /// What is wrong.
        problem: String,
    },
    /// Stored data could not be decoded.
    #[error("corrupt stored data for {path}: {problem}")]
    Corrupt {
        /// The key.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// The database failed.
    #[error("database error during {operation}: {message}")]
    Database {
        /// What was being done.
        operation: String,
        /// The database's message.
        message: String,
    },
}

/// Runs `read` on one consistent state of `storage` ([`Storage::begin_read`]): an export or
/// an inspection sees each key's head and versions from the same moment, whatever another
/// process writes meanwhile. The read ends whether or not `read` succeeds.
pub fn read_consistently<T, E: From<StorageError>>(
    storage: &mut dyn Storage,
    read: impl FnOnce(&mut dyn Storage) -> Result<T, E>,
) -> Result<T, E> {
    bracketed(storage, |s| s.begin_read(), |s, _| s.end_read(), read)
}

/// Runs `write` (reads, then [`Storage::replace_keys`]) as one step of `storage`
/// ([`Storage::begin_write`]): on disk no other process writes between what `write` reads and
/// what it writes, so an import numbers its versions after the serials the store really has.
/// On disk the step is kept if `write` succeeds and undone if it fails; in memory, where
/// nothing can come between, `write`'s replacement (its last step) is simply made or not.
pub fn write_consistently<T, E: From<StorageError>>(
    storage: &mut dyn Storage,
    write: impl FnOnce(&mut dyn Storage) -> Result<T, E>,
) -> Result<T, E> {
    bracketed(
        storage,
        |s| s.begin_write(),
        |s, kept| s.end_write(kept),
        write,
    )
}

/// Runs `step` between `begin` and `end` (told whether `step` succeeded, and called either
/// way): `step`'s error first, else `end`'s.
fn bracketed<T, E: From<StorageError>>(
    storage: &mut dyn Storage,
    begin: fn(&mut dyn Storage) -> Result<(), StorageError>,
    end: fn(&mut dyn Storage, bool) -> Result<(), StorageError>,
    step: impl FnOnce(&mut dyn Storage) -> Result<T, E>,
) -> Result<T, E> {
    begin(storage)?;
    let result = step(storage);
    let ended = end(storage, result.is_ok());
    let value = result?;
    ended?;
    Ok(value)
}

/// The backend behind [`crate::datastore::DataStoreService`].
///
/// Implementations must apply each [`Commit`] atomically and durably (for on-disk backends) and
/// return keys and versions in deterministic order.
pub trait Storage: Send {
    /// The key's head, or `None` if it was never written.
    fn head(&mut self, path: &KeyPath) -> Result<Option<Head>, StorageError>;

    /// Calls `read` with the key's head (`None` if never written), lent rather than copied
    /// where the backend keeps heads in memory: a read then copies only what it keeps.
    fn with_head(
        &mut self,
        path: &KeyPath,
        read: &mut dyn FnMut(Option<&Head>),
    ) -> Result<(), StorageError> {
        read(self.head(path)?.as_ref());
        Ok(())
    }

    /// The key's head without its value (cheaper where the backend can skip the value).
    fn head_meta(&mut self, path: &KeyPath) -> Result<Option<HeadMeta>, StorageError> {
        Ok(self.head(path)?.as_ref().map(HeadMeta::from))
    }

    /// The key's serial (writes so far), or `None` if it was never written, read on its own:
    /// a key whose other columns are corrupt still tells how many writes it had, so an import
    /// that replaces it numbers its write after them (a version id it never had).
    fn serial(&mut self, path: &KeyPath) -> Result<Option<u64>, StorageError> {
        Ok(self.head_meta(path)?.map(|m| m.serial))
    }

    /// The latest retained version slot, if any.
    fn latest_version(&mut self, path: &KeyPath) -> Result<Option<StoredVersion>, StorageError>;

    /// The latest slot's number and opening time (what the UTC-hour rule needs), without its
    /// value.
    fn latest_slot(&mut self, path: &KeyPath) -> Result<Option<(u64, i64)>, StorageError> {
        Ok(self.latest_version(path)?.map(|v| (v.slot, v.opened_ms)))
    }

    /// Every stored version slot of the key, oldest (lowest slot) first.
    fn versions(&mut self, path: &KeyPath) -> Result<Vec<StoredVersion>, StorageError>;

    /// Applies one write atomically: checks `commit.expect` against the current head (else
    /// [`StorageError::Conflict`]), replaces the head and applies the version change.
    fn commit(&mut self, path: &KeyPath, commit: Commit) -> Result<(), StorageError>;

    /// Up to `limit` keys of `store`/`scope` whose name starts with `prefix` and sorts after
    /// `after`, in byte order, with their heads (tombstoned keys included).
    fn list_keys(
        &mut self,
        store: &str,
        scope: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Head)>, StorageError>;

    /// Every key of every store, sorted.
    fn paths(&mut self) -> Result<Vec<KeyPath>, StorageError>;

    /// Starts reading one consistent state of the store, until [`Storage::end_read`]: on disk
    /// a read transaction, so that the writes another process commits meanwhile (a simulation
    /// running on the same file) are seen all or none. Nothing to do in memory. Only reads may
    /// come between the two; [`read_consistently`] pairs them.
    fn begin_read(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Ends what [`Storage::begin_read`] began.
    fn end_read(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Starts a step that reads and then replaces keys, until [`Storage::end_write`]: on disk
    /// a write transaction taken at once, so no other process commits between the two (a
    /// simulation running on the same file waits, as it does for any write). Nothing to do in
    /// memory. Only reads and [`Storage::replace_keys`] may come between the two;
    /// [`write_consistently`] pairs them.
    fn begin_write(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Ends what [`Storage::begin_write`] began: its writes are kept if `keep`, else undone.
    fn end_write(&mut self, keep: bool) -> Result<(), StorageError> {
        let _ = keep;
        Ok(())
    }

    /// Replaces everything stored for each key (head and all versions), all of them in one
    /// step: on disk one transaction (or part of the one [`Storage::begin_write`] began), so an
    /// import that fails (or a process killed) part-way leaves every key as it was. Used by
    /// import.
    fn replace_keys(&mut self, keys: &[Replacement]) -> Result<(), StorageError>;

    /// [`Storage::replace_keys`] for one key.
    fn replace_key(
        &mut self,
        path: &KeyPath,
        head: &Head,
        versions: &[StoredVersion],
    ) -> Result<(), StorageError> {
        self.replace_keys(&[Replacement {
            path: path.clone(),
            head: head.clone(),
            versions: versions.to_vec(),
        }])
    }
}

/// A key's whole new contents, for [`Storage::replace_keys`].
#[derive(Clone, Debug, PartialEq)]
pub struct Replacement {
    /// The key.
    pub path: KeyPath,
    /// Its head.
    pub head: Head,
    /// All its versions, oldest first.
    pub versions: Vec<StoredVersion>,
}

/// Checks a commit against the stored head and latest slot; shared by the implementations so
/// they agree on what a valid commit is.
pub(crate) fn check_commit(
    path: &KeyPath,
    head: Option<&Head>,
    latest: Option<&StoredVersion>,
    commit: &Commit,
) -> Result<(), StorageError> {
    let matches = match (&commit.expect, head) {
        (Expect::Absent, None) => true,
        (Expect::Version(v), Some(h)) => *v == h.version,
        _ => false,
    };
    if !matches {
        return Err(StorageError::Conflict { path: path.clone() });
    }
    let latest_slot = latest.map_or(0, |v| v.slot);
    let problem = match &commit.version {
        VersionWrite::Append(v) if v.slot != latest_slot + 1 => Some(format!(
            "appended slot {} but the latest slot is {latest_slot}",
            v.slot
        )),
        VersionWrite::ReplaceLatest(v) if latest.is_none() || v.slot != latest_slot => {
            Some(format!(
                "replaced slot {} but the latest slot is {latest_slot}",
                v.slot
            ))
        }
        _ => None,
    };
    match problem {
        Some(problem) => Err(StorageError::InvalidCommit {
            path: path.clone(),
            problem,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod contract {
    //! The behaviour every [`Storage`] must show, run against each implementation.

    use super::*;
    use profilestore_core::value::json;

    fn head(version: &str, serial: u64, value: Option<Value>) -> Head {
        Head {
            size: value.as_ref().map_or(0, crate::datastore::serialized_len),
            value: value.map(Arc::new),
            created_ms: 1000,
            updated_ms: 1000 + serial as i64,
            version: version.into(),
            serial,
            user_ids: vec![7],
            metadata: json!({"a": 1}),
        }
    }

    fn version(slot: u64, id: &str, value: Option<Value>) -> StoredVersion {
        StoredVersion {
            slot,
            version: id.into(),
            opened_ms: 1000,
            created_ms: 1000 + slot as i64,
            key_created_ms: 1000,
            value: value.map(Arc::new),
            user_ids: vec![7],
            metadata: json!({"a": 1}),
            superseded_ms: None,
        }
    }

    /// Commits, conflicts, version slots and listing order.
    pub fn run(storage: &mut dyn Storage) {
        let p = KeyPath::new("S", "global", "k");
        assert_eq!(storage.head(&p).unwrap(), None);
        let c1 = Commit {
            expect: Expect::Absent,
            head: head("v1", 1, Some(json!(1))),
            version: VersionWrite::Append(version(1, "v1", Some(json!(1)))),
        };
        storage.commit(&p, c1.clone()).unwrap();
        assert_eq!(storage.head(&p).unwrap(), Some(c1.head.clone()));
        // A second writer that read "absent" loses.
        assert_eq!(
            storage.commit(&p, c1.clone()),
            Err(StorageError::Conflict { path: p.clone() })
        );
        // Same-hour overwrite keeps one slot.
        let c2 = Commit {
            expect: Expect::Version("v1".into()),
            head: head("v2", 2, Some(json!(2))),
            version: VersionWrite::ReplaceLatest(version(1, "v2", Some(json!(2)))),
        };
        storage.commit(&p, c2.clone()).unwrap();
        assert_eq!(
            storage.versions(&p).unwrap(),
            vec![version(1, "v2", Some(json!(2)))]
        );
        // A writer that read an older version loses, and leaves the key as it was: the
        // compare-and-swap that tells a stale read from another process's commit.
        let stale = Commit {
            expect: Expect::Version("v1".into()),
            head: head("v9", 9, Some(json!(9))),
            version: VersionWrite::ReplaceLatest(version(1, "v9", Some(json!(9)))),
        };
        assert_eq!(
            storage.commit(&p, stale.clone()),
            Err(StorageError::Conflict { path: p.clone() })
        );
        assert_eq!(storage.head(&p).unwrap(), Some(c2.head.clone()));
        assert_eq!(
            storage.versions(&p).unwrap(),
            vec![version(1, "v2", Some(json!(2)))]
        );
        // So does one that read a version of a key that holds none.
        let empty = KeyPath::new("S", "global", "never");
        assert_eq!(
            storage.commit(&empty, stale),
            Err(StorageError::Conflict {
                path: empty.clone()
            })
        );
        assert_eq!(storage.head(&empty).unwrap(), None);
        // A new hour appends and supersedes the previous slot.
        let c3 = Commit {
            expect: Expect::Version("v2".into()),
            head: head("v3", 3, None),
            version: VersionWrite::Append(version(2, "v3", None)),
        };
        storage.commit(&p, c3.clone()).unwrap();
        let vs = storage.versions(&p).unwrap();
        assert_eq!(vs.len(), 2);
        assert_eq!(vs[0].superseded_ms, Some(1002));
        assert_eq!(vs[1], version(2, "v3", None));
        assert_eq!(
            storage.latest_version(&p).unwrap(),
            Some(version(2, "v3", None))
        );
        // Slot numbers are checked.
        let bad = Commit {
            expect: Expect::Version("v3".into()),
            head: head("v4", 4, Some(json!(4))),
            version: VersionWrite::Append(version(5, "v4", Some(json!(4)))),
        };
        assert!(matches!(
            storage.commit(&p, bad.clone()),
            Err(StorageError::InvalidCommit { .. })
        ));
        assert_eq!(
            storage.head(&p).unwrap(),
            Some(c3.head.clone()),
            "a rejected commit changes nothing"
        );

        // Listing: byte order, prefix, cursor, limit; other stores and scopes apart.
        for key in ["b", "a", "ab", "c"] {
            let path = KeyPath::new("L", "global", key);
            let c = Commit {
                expect: Expect::Absent,
                head: head("v1", 1, Some(json!(key))),
                version: VersionWrite::Append(version(1, "v1", Some(json!(key)))),
            };
            storage.commit(&path, c.clone()).unwrap();
        }
        let other = KeyPath::new("L", "other", "a0");
        storage
            .replace_key(&other, &head("v9", 9, Some(json!(0))), &[])
            .unwrap();
        let names = |v: Vec<(String, Head)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            names(storage.list_keys("L", "global", "", None, 10).unwrap()),
            ["a", "ab", "b", "c"]
        );
        assert_eq!(
            names(storage.list_keys("L", "global", "a", None, 10).unwrap()),
            ["a", "ab"]
        );
        assert_eq!(
            names(storage.list_keys("L", "global", "", Some("ab"), 2).unwrap()),
            ["b", "c"]
        );
        // Key names may hold NUL characters; a prefix counts them like any other byte.
        let nul = KeyPath::new("N", "global", "a\0b");
        storage
            .replace_key(&nul, &head("v1", 1, Some(json!(1))), &[])
            .unwrap();
        assert_eq!(
            names(storage.list_keys("N", "global", "a\0", None, 10).unwrap()),
            ["a\0b"]
        );
        assert_eq!(
            names(storage.list_keys("N", "global", "a\0c", None, 10).unwrap()),
            Vec::<String>::new()
        );
        // An empty key name (no DataStore call makes one, another program may) starts with
        // the empty prefix and no other.
        let empty = KeyPath::new("E", "global", "");
        storage
            .replace_key(&empty, &head("v1", 1, Some(json!(1))), &[])
            .unwrap();
        assert_eq!(
            names(storage.list_keys("E", "global", "", None, 10).unwrap()),
            [""]
        );
        assert_eq!(
            names(storage.list_keys("E", "global", "a", None, 10).unwrap()),
            Vec::<String>::new()
        );
        assert_eq!(
            storage.paths().unwrap(),
            vec![
                KeyPath::new("E", "global", ""),
                KeyPath::new("L", "global", "a"),
                KeyPath::new("L", "global", "ab"),
                KeyPath::new("L", "global", "b"),
                KeyPath::new("L", "global", "c"),
                KeyPath::new("L", "other", "a0"),
                KeyPath::new("N", "global", "a\0b"),
                KeyPath::new("S", "global", "k"),
            ]
        );
        // replace_key swaps the whole history.
        storage
            .replace_key(
                &p,
                &head("v7", 7, Some(json!(7))),
                &[version(1, "v7", Some(json!(7)))],
            )
            .unwrap();
        assert_eq!(
            storage.versions(&p).unwrap(),
            vec![version(1, "v7", Some(json!(7)))]
        );
        assert_eq!(storage.head(&p).unwrap().unwrap().version, "v7");
    }
}

#[cfg(test)]
mod tests {
    use super::KeyPath;
    use std::collections::HashSet;

    /// Paths are equal only when all three parts are; the key's precomputed hash does not stand
    /// in for the store and scope; order is store, scope, key.
    #[test]
    fn a_path_is_its_three_parts() {
        let a = KeyPath::new("S", "global", "k");
        assert_eq!(a, KeyPath::new("S", "global", "k"));
        assert_ne!(a, KeyPath::new("T", "global", "k"));
        assert_ne!(a, KeyPath::new("S", "other", "k"));
        assert_ne!(a, KeyPath::new("S", "global", "k2"));
        let set: HashSet<KeyPath> = [
            KeyPath::new("S", "global", "k"),
            KeyPath::new("T", "global", "k"),
            KeyPath::new("S", "other", "k"),
            KeyPath::new("S", "global", "k"),
        ]
        .into_iter()
        .collect();
        assert_eq!(set.len(), 3);
        let mut sorted = [
            KeyPath::new("T", "a", "a"),
            KeyPath::new("S", "b", "a"),
            KeyPath::new("S", "a", "b"),
        ];
        sorted.sort();
        let shown: Vec<String> = sorted.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["S/a/b", "S/b/a", "T/a/a"]);
    }
}
