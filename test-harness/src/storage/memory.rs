//! [`MemoryStorage`]: the in-memory backend, the default for simulations and tests.
//!
//! A hash map from [`KeyPath`] to the key's head and version slots for the lookups every request
//! makes, and a sorted set of the paths for listings, so iteration order is the sorted key order
//! and nothing hash-ordered can reach an output.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap as HashMap;

use super::{
    Commit, Head, KeyPath, Replacement, Storage, StorageError, StoredVersion, VersionWrite,
    check_commit,
};

#[derive(Clone, Debug)]
struct Record {
    head: Head,
    versions: Vec<StoredVersion>,
}

/// Keys, key info and versions in memory; lost when dropped.
#[derive(Clone, Debug, Default)]
pub struct MemoryStorage {
    keys: HashMap<KeyPath, Record>,
    /// Every path in `keys`, in order (keys are never deleted, only tombstoned).
    order: BTreeSet<KeyPath>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStorage::default()
    }
}

impl Storage for MemoryStorage {
    fn head(&mut self, path: &KeyPath) -> Result<Option<Head>, StorageError> {
        Ok(self.keys.get(path).map(|r| r.head.clone()))
    }

    fn with_head(
        &mut self,
        path: &KeyPath,
        read: &mut dyn FnMut(Option<&Head>),
    ) -> Result<(), StorageError> {
        read(self.keys.get(path).map(|r| &r.head));
        Ok(())
    }

    fn latest_version(&mut self, path: &KeyPath) -> Result<Option<StoredVersion>, StorageError> {
        Ok(self.keys.get(path).and_then(|r| r.versions.last().cloned()))
    }

    fn versions(&mut self, path: &KeyPath) -> Result<Vec<StoredVersion>, StorageError> {
        Ok(self
            .keys
            .get(path)
            .map(|r| r.versions.clone())
            .unwrap_or_default())
    }

    fn head_meta(&mut self, path: &KeyPath) -> Result<Option<super::HeadMeta>, StorageError> {
        Ok(self.keys.get(path).map(|r| super::HeadMeta::from(&r.head)))
    }

    fn latest_slot(&mut self, path: &KeyPath) -> Result<Option<(u64, i64)>, StorageError> {
        Ok(self
            .keys
            .get(path)
            .and_then(|r| r.versions.last())
            .map(|v| (v.slot, v.opened_ms)))
    }

    fn commit(&mut self, path: &KeyPath, commit: Commit) -> Result<(), StorageError> {
        let record = self.keys.get_mut(path);
        check_commit(
            path,
            record.as_ref().map(|r| &r.head),
            record.as_ref().and_then(|r| r.versions.last()),
            &commit,
        )?;
        let Commit { head, version, .. } = commit;
        let record = match record {
            Some(record) => {
                record.head = head;
                record
            }
            None => {
                self.order.insert(path.clone());
                self.keys.entry(path.clone()).or_insert(Record {
                    head,
                    versions: Vec::new(),
                })
            }
        };
        match version {
            VersionWrite::Append(v) => {
                if let Some(previous) = record.versions.last_mut() {
                    previous.superseded_ms = Some(v.created_ms);
                }
                record.versions.push(v);
            }
            VersionWrite::ReplaceLatest(v) => {
                if let Some(latest) = record.versions.last_mut() {
                    *latest = v;
                }
            }
        }
        Ok(())
    }

    fn list_keys(
        &mut self,
        store: &str,
        scope: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Head)>, StorageError> {
        let start = KeyPath::new(store, scope, after.unwrap_or(prefix));
        Ok(self
            .order
            .range(start..)
            .take_while(|p| p.store() == store && p.scope() == scope)
            .filter(|p| after.is_none_or(|a| p.key().as_str() > a))
            .take_while(|p| p.key().starts_with(prefix) || p.key().as_str() < prefix)
            .filter(|p| p.key().starts_with(prefix))
            .take(limit)
            .map(|p| (p.key().to_string(), self.keys[p].head.clone()))
            .collect())
    }

    fn paths(&mut self) -> Result<Vec<KeyPath>, StorageError> {
        Ok(self.order.iter().cloned().collect())
    }

    fn replace_keys(&mut self, keys: &[Replacement]) -> Result<(), StorageError> {
        for key in keys {
            self.order.insert(key.path.clone());
            self.keys.insert(
                key.path.clone(),
                Record {
                    head: key.head.clone(),
                    versions: key.versions.clone(),
                },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_storage_meets_the_storage_contract() {
        crate::storage::contract::run(&mut MemoryStorage::new());
    }
}
