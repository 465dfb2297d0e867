//! The in-memory mock stores (spec §14): the user mock reached through `store.Mock` and the
//! fallback mock used when `DataStoreState` is not `Access`.
//!
//! Layout follows the original: per store name, per key, the whole stored value with its
//! created/updated times (milliseconds, whole-second resolution), a version counter, user ids and
//! Roblox metadata. Unlike the original (spec §19 item 23) a failed or cancelled write leaves the
//! store exactly as it was: the transform works on a copy.

use std::collections::BTreeMap;

use crate::value::{Value, json};

use crate::protocol::{KeyInfo, Transformed};

#[derive(Clone, Debug)]
struct Entry {
    value: Value,
    created: i64,
    updated: i64,
    version: u64,
    user_ids: Vec<i64>,
    metadata: Value,
}

impl Entry {
    fn key_info(&self) -> KeyInfo {
        KeyInfo {
            created_time: self.created,
            updated_time: self.updated,
            version: mock_version(self.version).into(),
            user_ids: self.user_ids.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

/// `"0000000000000000." .. <10-digit version> .. ".0000000000000000.01"` (spec §2, §14).
pub fn mock_version(n: u64) -> String {
    format!("0000000000000000.{n:010}.0000000000000000.01")
}

/// One mock store table.
#[derive(Debug, Default)]
pub struct MockStore {
    stores: BTreeMap<String, BTreeMap<String, Entry>>,
}

/// The outcome of a mock update.
pub enum MockWrite {
    /// Committed: the stored value and its key info.
    Committed(Value, KeyInfo),
    /// The transform returned nil: nothing written.
    Cancelled,
    /// The transform threw.
    Failed(String),
}

impl MockStore {
    /// Runs an update transform against `store/key` at wall time `wall`.
    pub fn update(
        &mut self,
        store: &str,
        key: &str,
        wall: i64,
        transform: impl FnOnce(Option<&Value>) -> Transformed,
    ) -> MockWrite {
        let existing = self.stores.get(store).and_then(|s| s.get(key));
        match transform(existing.map(|e| &e.value)) {
            Transformed::Cancel => MockWrite::Cancelled,
            Transformed::Error(m) => MockWrite::Failed(m),
            Transformed::Write {
                value,
                user_ids,
                metadata,
            } => {
                let now_ms = wall.saturating_mul(1000);
                let entry = self
                    .stores
                    .entry(store.to_string())
                    .or_default()
                    .entry(key.to_string())
                    .or_insert_with(|| Entry {
                        value: Value::Null,
                        created: now_ms,
                        updated: now_ms,
                        version: 0,
                        user_ids: Vec::new(),
                        metadata: json!({}),
                    });
                entry.value = value.clone();
                entry.user_ids = user_ids.as_ref().map(user_id_list).unwrap_or_default();
                entry.metadata = metadata.unwrap_or_else(|| json!({}));
                entry.version += 1;
                entry.updated = now_ms;
                MockWrite::Committed(value, entry.key_info())
            }
        }
    }

    /// Reads `store/key` without creating it.
    pub fn read(&self, store: &str, key: &str) -> Option<(Value, KeyInfo)> {
        let e = self.stores.get(store)?.get(key)?;
        Some((e.value.clone(), e.key_info()))
    }

    /// Deletes `store/key`, and the store's table when it becomes empty.
    pub fn remove(&mut self, store: &str, key: &str) {
        if let Some(s) = self.stores.get_mut(store) {
            s.remove(key);
            if s.is_empty() {
                self.stores.remove(store);
            }
        }
    }

    /// True when nothing is stored (the original's test checks the tables return to `{}`).
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }
}

/// Reads a `UserIds` value as a list of integers, skipping anything else (a fraction, a
/// string, a number out of `i64`'s range: saturating one would store another user's id).
pub fn user_id_list(v: &Value) -> Vec<i64> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_f64)
                .filter_map(crate::wire::whole_number)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mock_versions_count_writes_and_remove_empties_tables() {
        let mut m = MockStore::default();
        let w = |v: Value| {
            move |_: Option<&Value>| Transformed::Write {
                value: v,
                user_ids: Some(json!([5])),
                metadata: None,
            }
        };
        let MockWrite::Committed(_, k1) = m.update("S", "k", 100, w(json!({"a": 1}))) else {
            panic!()
        };
        assert_eq!(
            k1.version,
            "0000000000000000.0000000001.0000000000000000.01"
        );
        assert_eq!(k1.created_time, 100_000);
        assert_eq!(k1.user_ids, vec![5]);
        let MockWrite::Committed(_, k2) = m.update("S", "k", 101, w(json!({"a": 2}))) else {
            panic!()
        };
        assert_eq!(k2.version, mock_version(2));
        assert_eq!((k2.created_time, k2.updated_time), (100_000, 101_000));
        assert!(matches!(
            m.update("S", "j", 1, |_| Transformed::Error("boom".into())),
            MockWrite::Failed(_)
        ));
        assert!(
            m.read("S", "j").is_none(),
            "a failed write leaves no entry behind"
        );
        // A failed or cancelled write on a key that exists leaves it as it was (its value,
        // version and times), and a cancelled one on a missing key makes no entry.
        let before = m.read("S", "k");
        assert!(matches!(
            m.update("S", "k", 102, |_| Transformed::Error("boom".into())),
            MockWrite::Failed(_)
        ));
        assert!(matches!(
            m.update("S", "k", 103, |_| Transformed::Cancel),
            MockWrite::Cancelled
        ));
        assert_eq!(m.read("S", "k"), before);
        assert_eq!(before.unwrap().1.version, mock_version(2));
        assert!(matches!(
            m.update("S", "j", 104, |_| Transformed::Cancel),
            MockWrite::Cancelled
        ));
        assert!(m.read("S", "j").is_none());
        m.remove("S", "k");
        assert!(m.is_empty());
    }
}
