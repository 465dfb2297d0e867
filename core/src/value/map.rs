//! [`Map`]: the entries of a JSON object as one vector sorted by key.
//!
//! Profile objects are small (a stored profile has about six fields, `MetaData` five, a game's
//! `Data` a few dozen), and the engine looks fields up by name on every request. A sorted vector
//! finds a short key by comparing lengths before bytes, copies (on write) as one allocation and
//! frees as one, where a B-tree pays a node walk with a string comparison per key, and an
//! allocation per node. Large objects are searched by bisection. Iteration is in key order, as
//! `serde_json`'s `BTreeMap`-backed objects iterate, so the JSON text is the same.

use std::cmp::Ordering;
use std::fmt;

use super::{Str, Value};

/// Objects with at most this many entries are searched front to back.
const LINEAR_SEARCH: usize = 12;

/// The entries of a JSON object, sorted by key, keys unique.
#[derive(Clone, Default, PartialEq)]
pub struct Map {
    entries: Vec<(Str, Value)>,
}

impl Map {
    /// An empty map.
    pub fn new() -> Self {
        Map {
            entries: Vec::new(),
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where `key` is (`Ok`) or would be inserted (`Err`).
    fn find(&self, key: &str) -> Result<usize, usize> {
        if self.entries.len() <= LINEAR_SEARCH {
            // Equal lengths first: most field names differ in length, and that settles them.
            if let Some(i) = self
                .entries
                .iter()
                .position(|(k, _)| k.len() == key.len() && k.as_str() == key)
            {
                return Ok(i);
            }
            return Err(self
                .entries
                .partition_point(|(k, _)| cmp_keys(k, key) == Ordering::Less));
        }
        self.entries.binary_search_by(|(k, _)| cmp_keys(k, key))
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    /// The value at `key`, for writing.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.find(key).ok().map(|i| &mut self.entries[i].1)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`, returning the value it replaces.
    pub fn insert(&mut self, key: Str, value: Value) -> Option<Value> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// The slot of `key`, to fill if empty.
    pub fn entry(&mut self, key: Str) -> Entry<'_> {
        let at = self.find(&key);
        Entry { map: self, key, at }
    }

    /// Keeps the entries `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&Str, &mut Value) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    /// The entries in key order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.entries.iter())
    }

    /// The entries in key order, values writable.
    pub fn iter_mut(&mut self) -> IterMut<'_> {
        IterMut(self.entries.iter_mut())
    }

    /// The keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Str> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k)
    }

    /// The values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Value> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }

    /// The values in key order, writable.
    pub fn values_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = &mut Value> + ExactSizeIterator {
        self.entries.iter_mut().map(|(_, v)| v)
    }

    /// Builds a map from entries in any order; of equal keys the last one wins (as repeated
    /// inserts, and as `serde_json` reads an object with a repeated key).
    pub(super) fn from_entries(mut entries: Vec<(Str, Value)>) -> Self {
        if !entries.is_sorted_by(|(a, _), (b, _)| a < b) {
            // Stable: equal keys stay in input order, so the last of each run is the winner.
            entries.sort_by(|(a, _), (b, _)| a.cmp(b));
            let mut unique: Vec<(Str, Value)> = Vec::with_capacity(entries.len());
            for entry in entries {
                match unique.last_mut() {
                    Some(last) if last.0 == entry.0 => *last = entry,
                    _ => unique.push(entry),
                }
            }
            entries = unique;
        }
        Map { entries }
    }
}

/// `a.cmp(b)`, deciding on the first byte where it can: the field names of a profile mostly
/// differ there (`Data`, `GlobalUpdates`, `MetaData`...), and the comparison then costs no call
/// to `memcmp`.
#[inline]
fn cmp_keys(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    match (a.first(), b.first()) {
        (Some(x), Some(y)) if x != y => x.cmp(y),
        _ => a.cmp(b),
    }
}

/// A slot of a [`Map`] from [`Map::entry`].
pub struct Entry<'a> {
    map: &'a mut Map,
    key: Str,
    at: Result<usize, usize>,
}

impl<'a> Entry<'a> {
    /// The value, inserting `value` first if the key is absent.
    pub fn or_insert(self, value: Value) -> &'a mut Value {
        self.or_insert_with(|| value)
    }

    /// The value, inserting `make()` first if the key is absent.
    pub fn or_insert_with(self, make: impl FnOnce() -> Value) -> &'a mut Value {
        let i = match self.at {
            Ok(i) => i,
            Err(i) => {
                self.map.entries.insert(i, (self.key, make()));
                i
            }
        };
        &mut self.map.entries[i].1
    }

    /// The value, inserting `null` first if the key is absent.
    pub fn or_default(self) -> &'a mut Value {
        self.or_insert_with(Value::default)
    }
}

/// The entries of a [`Map`] in key order.
pub struct Iter<'a>(std::slice::Iter<'a, (Str, Value)>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a Str, &'a Value);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k, v))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, v)| (k, v))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// The entries of a [`Map`] in key order, values writable.
pub struct IterMut<'a>(std::slice::IterMut<'a, (Str, Value)>);

impl<'a> Iterator for IterMut<'a> {
    type Item = (&'a Str, &'a mut Value);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (&*k, v))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for IterMut<'_> {}

impl<'a> IntoIterator for &'a Map {
    type Item = (&'a Str, &'a Value);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<'a> IntoIterator for &'a mut Map {
    type Item = (&'a Str, &'a mut Value);
    type IntoIter = IterMut<'a>;
    fn into_iter(self) -> IterMut<'a> {
        self.iter_mut()
    }
}

impl IntoIterator for Map {
    type Item = (Str, Value);
    type IntoIter = std::vec::IntoIter<(Str, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<K: Into<Str>, V: Into<Value>> FromIterator<(K, V)> for Map {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Map::from_entries(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl<K: Into<Str>, V: Into<Value>, const N: usize> From<[(K, V); N]> for Map {
    fn from(entries: [(K, V); N]) -> Self {
        entries.into_iter().collect()
    }
}

impl<K: Into<Str>, V: Into<Value>> Extend<(K, V)> for Map {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k.into(), v.into());
        }
    }
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl std::ops::Index<&str> for Map {
    type Output = Value;
    /// The value at `key`; panics if absent, as a `BTreeMap` does.
    fn index(&self, key: &str) -> &Value {
        self.get(key).expect("key not found in JSON object")
    }
}
