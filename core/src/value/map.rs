//! [`Map`]: the entries of a JSON object as one vector sorted by key.
//!
//! Profile objects are small (a stored profile has about six fields, `MetaData` five, a game's
//! `Data` a few dozen), and the engine looks fields up by name on every request. A sorted vector
//! copies (on write) as one allocation and frees as one, where a B-tree pays an allocation per
//! node. Each entry keeps the first eight bytes of its key as a big-endian number, so a search
//! compares numbers and reads a key's bytes only when those agree: field names mostly differ in
//! their first bytes (`Data`, `GlobalUpdates`, `MetaData`...). Small objects are searched front to
//! back, large ones by bisection. Iteration is in key order, as `serde_json`'s
//! `BTreeMap`-backed objects iterate, so the JSON text is the same.

use std::cmp::Ordering;
use std::fmt;

use super::{Str, Value};

/// Objects with at most this many entries are searched front to back.
const LINEAR_SEARCH: usize = 12;

/// One entry: the key's [`prefix`], length and JSON length (quotes and escapes included, so
/// measuring an object reads no key bytes), the key, the value.
///
/// 64 bytes, one cache line: the lengths are kept as `u32`. A search reads each entry it
/// passes, and a profile's objects are cold when a request comes for them, so each byte over the
/// line was a second line read (`docs/PERFORMANCE.md`, "Seventh session").
#[derive(Clone, PartialEq)]
struct Slot {
    prefix: u64,
    /// The key's length modulo 2^32, to tell keys apart without reading them (a search confirms
    /// a match with the key's own length or bytes).
    len: u32,
    /// The key's JSON length, [`fit`]: [`u32::MAX`] means "measure the key again".
    key_json: u32,
    key: Str,
    value: Value,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 64);

/// `n` as a `u32`, or [`u32::MAX`] when it does not fit.
#[inline]
fn fit(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Slot {
    fn new(key: Str, value: Value) -> Slot {
        Slot {
            prefix: prefix(&key),
            len: key.len() as u32,
            key_json: fit(super::json_len::string_len(&key)),
            key,
            value,
        }
    }

    /// The key's JSON length.
    #[inline]
    fn key_json(&self) -> usize {
        #[cold]
        fn measure(key: &str) -> usize {
            super::json_len::string_len(key)
        }
        match self.key_json {
            u32::MAX => measure(&self.key),
            n => n as usize,
        }
    }

    /// The key's place relative to `key` (whose prefix is `key_prefix`), in string order.
    #[inline]
    fn cmp_key(&self, key_prefix: u64, key: &str) -> Ordering {
        // Big-endian, zero-padded: prefixes compare as the first eight bytes do, and equal
        // prefixes leave the decision to the whole keys.
        self.prefix
            .cmp(&key_prefix)
            .then_with(|| self.key.as_str().cmp(key))
    }
}

/// The first eight bytes of `key` as a big-endian number, zero-padded.
#[inline]
fn prefix(key: &str) -> u64 {
    word(key.as_bytes())
}

/// The first eight bytes of `bytes` as a big-endian number, zero-padded, read with at most two
/// loads: a key of four to seven bytes is read as two overlapping four-byte words.
#[inline]
fn word(bytes: &[u8]) -> u64 {
    if let Some(first) = bytes.first_chunk::<8>() {
        return u64::from_be_bytes(*first);
    }
    let n = bytes.len();
    if let (Some(head), Some(tail)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        // Byte `i` belongs at bits 56 - 8i: the tail word's first byte is byte n - 4.
        let head = u64::from(u32::from_be_bytes(*head)) << 32;
        return head | u64::from(u32::from_be_bytes(*tail)) << (64 - 8 * n);
    }
    let mut word = 0u64;
    for (i, &b) in bytes.iter().enumerate() {
        word |= u64::from(b) << (56 - 8 * i);
    }
    word
}

/// The entries of a JSON object, sorted by key, keys unique.
#[derive(Default, PartialEq)]
pub struct Map {
    entries: Vec<Slot>,
}

impl Clone for Map {
    /// A copy with room for one more entry: objects are copied to be written, and a write that
    /// adds a key (a lock, a new field) would otherwise move the whole copy at once.
    fn clone(&self) -> Map {
        let mut entries = Vec::with_capacity(self.entries.len() + 1);
        entries.extend(self.entries.iter().cloned());
        Map { entries }
    }
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
        let key_prefix = prefix(key);
        if self.entries.len() <= LINEAR_SEARCH {
            // Equal prefix and length settle a key of up to eight bytes; a longer one compares
            // the rest of its bytes only then.
            // One pass in key order: the first key not below `key` is it or its place.
            let (len, tail) = (key.len(), key.as_bytes().get(8..).unwrap_or_default());
            for (i, slot) in self.entries.iter().enumerate() {
                if slot.prefix < key_prefix {
                    continue;
                }
                if slot.prefix > key_prefix {
                    return Err(i);
                }
                // `len` is the length modulo 2^32: a short key's own length settles a match (a
                // longer one's bytes past the prefix do).
                if slot.len == len as u32
                    && if len <= 8 {
                        slot.key.len() == len
                    } else {
                        slot.key.as_bytes().get(8..) == Some(tail)
                    }
                {
                    return Ok(i);
                }
                if slot.key.as_str() > key {
                    return Err(i);
                }
            }
            return Err(self.entries.len());
        }
        self.entries
            .binary_search_by(|slot| slot.cmp_key(key_prefix, key))
    }

    /// The value at `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.find(key).ok().map(|i| &self.entries[i].value)
    }

    /// The value at `key`, for writing.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.find(key).ok().map(|i| &mut self.entries[i].value)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`, returning the value it replaces.
    pub fn insert(&mut self, key: Str, value: Value) -> Option<Value> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].value, value)),
            Err(i) => {
                self.entries.insert(i, Slot::new(key, value));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.find(key).ok().map(|i| self.entries.remove(i).value)
    }

    /// The slot of `key`, to fill if empty.
    pub fn entry(&mut self, key: Str) -> Entry<'_> {
        let at = self.find(&key);
        Entry { map: self, key, at }
    }

    /// Keeps the entries `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&Str, &mut Value) -> bool) {
        self.entries
            .retain_mut(|slot| keep(&slot.key, &mut slot.value));
    }

    /// The length of this map's compact JSON text, each value measured by `value_len` (`None`
    /// if a value could not be).
    pub(super) fn json_len(
        &self,
        mut value_len: impl FnMut(&Value) -> Option<usize>,
    ) -> Option<usize> {
        let mut len = 2 + self.entries.len().saturating_sub(1);
        for slot in &self.entries {
            len += slot.key_json() + 1 + value_len(&slot.value)?;
        }
        Some(len)
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
        self.entries.iter().map(|slot| &slot.key)
    }

    /// The values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Value> + ExactSizeIterator {
        self.entries.iter().map(|slot| &slot.value)
    }

    /// The values in key order, writable.
    pub fn values_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = &mut Value> + ExactSizeIterator {
        self.entries.iter_mut().map(|slot| &mut slot.value)
    }

    /// Builds a map from entries in any order; of equal keys the last one wins (as repeated
    /// inserts, and as `serde_json` reads an object with a repeated key).
    pub(super) fn from_entries(entries: Vec<(Str, Value)>) -> Self {
        let mut entries: Vec<Slot> = entries.into_iter().map(|(k, v)| Slot::new(k, v)).collect();
        if !entries.is_sorted_by(|a, b| a.cmp_key(b.prefix, &b.key) == Ordering::Less) {
            // Stable: equal keys stay in input order, so the last of each run is the winner.
            entries.sort_by(|a, b| a.cmp_key(b.prefix, &b.key));
            let mut unique: Vec<Slot> = Vec::with_capacity(entries.len());
            for slot in entries {
                match unique.last_mut() {
                    Some(last) if last.key == slot.key => *last = slot,
                    _ => unique.push(slot),
                }
            }
            entries = unique;
        }
        Map { entries }
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
                self.map.entries.insert(i, Slot::new(self.key, make()));
                i
            }
        };
        &mut self.map.entries[i].value
    }

    /// The value, inserting `null` first if the key is absent.
    pub fn or_default(self) -> &'a mut Value {
        self.or_insert_with(Value::default)
    }
}

/// The entries of a [`Map`] in key order.
pub struct Iter<'a>(std::slice::Iter<'a, Slot>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a Str, &'a Value);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|slot| (&slot.key, &slot.value))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|slot| (&slot.key, &slot.value))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// The entries of a [`Map`] in key order, values writable.
pub struct IterMut<'a>(std::slice::IterMut<'a, Slot>);

impl<'a> Iterator for IterMut<'a> {
    type Item = (&'a Str, &'a mut Value);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|slot| (&slot.key, &mut slot.value))
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
    type IntoIter = IntoIter;
    fn into_iter(self) -> IntoIter {
        IntoIter(self.entries.into_iter())
    }
}

/// The entries of a [`Map`] in key order, by value.
pub struct IntoIter(std::vec::IntoIter<Slot>);

impl Iterator for IntoIter {
    type Item = (Str, Value);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|slot| (slot.key, slot.value))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for IntoIter {}

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

#[cfg(test)]
mod tests {
    use super::{Map, Slot, fit, word};
    use crate::value::{Value, json};

    /// Lengths that do not fit a `u32` are kept as `u32::MAX`; a slot whose key's JSON length
    /// is `u32::MAX` measures its key again, so the object's length stays exact (keys that long
    /// cannot be built in a test: the slot is marked by hand).
    #[test]
    fn lengths_past_u32_are_measured_again() {
        assert_eq!(fit(7), 7);
        assert_eq!(fit(u32::MAX as usize - 1), u32::MAX - 1);
        assert_eq!(fit(u32::MAX as usize), u32::MAX);
        assert_eq!(fit(usize::MAX), u32::MAX);
        let mut map: Map = [("a\"b\u{1}", json!(1)), ("Data", json!([true, "x"]))].into();
        let text = Value::Object(map.clone().into()).to_string();
        assert_eq!(text, r#"{"Data":[true,"x"],"a\"b\u0001":1}"#);
        let measure = |map: &Map| map.json_len(|v: &Value| Some(v.json_len()));
        assert_eq!(measure(&map), Some(text.len()));
        for slot in &mut map.entries {
            slot.key_json = u32::MAX;
        }
        assert_eq!(measure(&map), Some(text.len()));
        let slot = Slot::new("Data".into(), Value::Null);
        assert_eq!((slot.len, slot.key_json), (4, 6));
    }

    /// An entry's length is kept modulo 2^32, so a key 2^32 + 2 bytes long whose first eight
    /// bytes are `ab` and NULs has the same prefix and kept length as `"ab"`: a search confirms
    /// with the key's own length (the wrap is made by hand: such a key cannot be built in a test).
    #[test]
    fn a_wrapped_length_does_not_make_a_match() {
        let mut map: Map = [("ab\0", json!(1)), ("b", json!(2))].into();
        map.entries[0].len = 2;
        assert_eq!(map.get("ab"), None);
        assert_eq!(map.find("ab"), Err(0), "placed before the longer key");
        assert_eq!(map.get("b"), Some(&json!(2)));
        // The other way round: a short stored key whose wrapped length agrees with a long
        // lookup key of the same (zero-padded) prefix is not sliced past its end. (A real
        // lookup key 2^32 bytes longer than the stored one wraps to the same length.)
        let mut map: Map = [("ab", json!(1))].into();
        let long = "ab\0\0\0\0\0\0xy";
        map.entries[0].len = long.len() as u32;
        assert_eq!(map.get(long), None);
        assert_eq!(map.find(long), Err(1));
    }

    /// Every length up to nine bytes, with bytes that set the top bit and NULs: the two-load
    /// reading agrees with placing the bytes one by one.
    #[test]
    fn word_is_the_first_eight_bytes_big_endian_zero_padded() {
        for n in 0..=9 {
            for fill in [0x00u8, 0x01, 0x7F, 0x80, 0xFF] {
                let bytes: Vec<u8> = (0..n)
                    .map(|i| fill.wrapping_add((i as u8).wrapping_mul(37)))
                    .collect();
                let mut expected = 0u64;
                for (i, &b) in bytes.iter().take(8).enumerate() {
                    expected |= u64::from(b) << (56 - 8 * i);
                }
                assert_eq!(word(&bytes), expected, "{bytes:?}");
            }
        }
    }
}
