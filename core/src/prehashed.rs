//! [`Prehashed`]: a value that is hashed once, when made, for tables looked up many times per
//! request with the same key (the engine's session tokens, the harness's key paths).
//!
//! Hashing a `Prehashed` feeds the stored number, and comparing two compares the numbers first,
//! so a lookup reads the key's parts only to confirm a match. The value is read-only after it
//! is made, which keeps the stored number right. Ordering is the value's own.

use std::hash::{Hash, Hasher};

use rustc_hash::FxHasher;

/// `value` with its hash (rustc-hash's `FxHasher`, seedless: the same value hashes the same in
/// every run).
#[derive(Clone)]
pub struct Prehashed<T> {
    value: T,
    hash: u64,
}

impl<T: Hash> Prehashed<T> {
    /// Hashes `value` and keeps both.
    pub fn new(value: T) -> Prehashed<T> {
        let mut h = FxHasher::default();
        value.hash(&mut h);
        Prehashed {
            value,
            hash: h.finish(),
        }
    }
}

impl<T> Prehashed<T> {
    /// The value.
    pub fn get(&self) -> &T {
        &self.value
    }
}

impl<T: PartialEq> PartialEq for Prehashed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.value == other.value
    }
}

impl<T: Eq> Eq for Prehashed<T> {}

impl<T> Hash for Prehashed<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl<T: Ord> Ord for Prehashed<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}

impl<T: Ord> PartialOrd for Prehashed<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Prehashed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::Prehashed;
    use std::collections::HashSet;

    #[test]
    fn equal_values_are_equal_and_found_different_ones_are_not() {
        let a = Prehashed::new(("PlayerData", "Player_1"));
        let b = Prehashed::new(("PlayerData", "Player_1"));
        let c = Prehashed::new(("PlayerData", "Player_2"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a < c, "ordered as the values are");
        let set: HashSet<_> = [a.clone(), c.clone()].into_iter().collect();
        assert!(set.contains(&b));
        assert_eq!(set.len(), 2);
        assert_eq!(format!("{a:?}"), r#"("PlayerData", "Player_1")"#);
        assert_eq!(a.get().1, "Player_1");
    }
}
