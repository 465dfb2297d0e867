//! [`AckedOps`]: the operation ids one player's own saves confirmed, and when each was first
//! confirmed — what the "no acknowledged save lost" invariant (issue "harness" §4) checks the
//! final stored value against.
//!
//! A fleet numbers a player's operations `{key}:op1`, `{key}:op2`, … and a save confirms them
//! in that order, so the times are kept by number in one array: eight bytes an operation,
//! written at its end. (A hash map from id to time took about 4 kB a player, a quarter of a
//! 1,000-player run's heap besides the log, and every confirmation touched a random line of
//! it: `docs/PERFORMANCE.md`, "Sixth session".) An id of any other shape is kept by name.

use std::collections::BTreeMap;

use profilestore_core::value::Str;

/// How far past the highest number seen so far an id's number may be and still be kept by
/// number: a stray `{key}:op99999999` is kept by name rather than growing the array to match.
const MAX_GAP: u64 = 4096;

/// The operation ids one player's saves confirmed, with the virtual time each was first
/// confirmed.
// No `PartialEq`: unconfirmed slots hold NaN, so a record would not equal its own clone.
#[derive(Clone, Debug, Default)]
pub struct AckedOps {
    /// `{key}:op`, the prefix of the player's numbered ids.
    prefix: String,
    /// Entry `n - 1`: when `{key}:op{n}` was first confirmed; NaN while it has not been.
    by_number: Vec<f64>,
    /// Confirmed ids not of the numbered form.
    other: BTreeMap<Str, f64>,
    /// Ids confirmed.
    len: usize,
}

impl AckedOps {
    /// An empty record for the player with key `key`.
    pub fn new(key: &str) -> AckedOps {
        AckedOps {
            prefix: format!("{key}:op"),
            ..AckedOps::default()
        }
    }

    /// Notes that `op` was confirmed at `t`; an id confirmed before keeps its first time.
    pub fn insert(&mut self, op: &str, t: f64) {
        let number = self.number_of(op);
        let first = match number {
            // Kept by name when it came beyond the gap: it stays there (the gap moves up as
            // the array grows, so the same id may now qualify by number).
            Some(_) if self.other.contains_key(op) => false,
            Some(n) => {
                let i = (n - 1) as usize;
                if i >= self.by_number.len() {
                    self.by_number.resize(i + 1, f64::NAN);
                }
                let slot = &mut self.by_number[i];
                let first = slot.is_nan();
                if first {
                    *slot = t;
                }
                first
            }
            None => match self.other.entry(Str::from(op)) {
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(t);
                    true
                }
                std::collections::btree_map::Entry::Occupied(_) => false,
            },
        };
        self.len += usize::from(first);
    }

    /// When `op` was first confirmed, if it was.
    pub fn get(&self, op: &str) -> Option<f64> {
        match self.number_of(op) {
            Some(n) => self
                .by_number
                .get((n - 1) as usize)
                .copied()
                .filter(|t| !t.is_nan())
                .or_else(|| self.other.get(op).copied()),
            None => self.other.get(op).copied(),
        }
    }

    /// Number of ids confirmed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no id was confirmed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every confirmed id with its time: the numbered ones in number order, then the others in
    /// id order.
    pub fn iter(&self) -> impl Iterator<Item = (Str, f64)> + '_ {
        let mut digits = itoa::Buffer::new();
        let numbered = self
            .by_number
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.is_nan())
            .map(move |(i, t)| {
                let id = Str::concat(&[&self.prefix, digits.format(i as u64 + 1)]);
                (id, *t)
            });
        numbered.chain(self.other.iter().map(|(id, t)| (id.clone(), *t)))
    }

    /// The `n` of `{key}:op{n}`, if `op` is written exactly so (`n` from 1, no leading zero)
    /// and `n` is within [`MAX_GAP`] of the array's end.
    fn number_of(&self, op: &str) -> Option<u64> {
        let digits = op.strip_prefix(self.prefix.as_str())?;
        let canonical = !digits.is_empty()
            && digits.len() <= 19
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if !canonical {
            return None;
        }
        let n: u64 = digits.parse().ok()?;
        (n <= self.by_number.len() as u64 + MAX_GAP).then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(acked: &AckedOps) -> Vec<(String, f64)> {
        acked.iter().map(|(id, t)| (id.to_string(), t)).collect()
    }

    #[test]
    fn numbered_ids_are_kept_by_number_and_keep_their_first_time() {
        let mut acked = AckedOps::new("Player_7");
        acked.insert("Player_7:op1", 10.0);
        acked.insert("Player_7:op2", 10.0);
        acked.insert("Player_7:op1", 20.0);
        acked.insert("Player_7:op5", 30.0);
        assert_eq!(acked.len(), 3);
        assert_eq!(acked.by_number.len(), 5);
        assert!(acked.other.is_empty());
        assert_eq!(acked.get("Player_7:op1"), Some(10.0));
        assert_eq!(acked.get("Player_7:op3"), None);
        assert_eq!(acked.get("Player_7:op6"), None);
        assert_eq!(
            ids(&acked),
            [
                ("Player_7:op1".to_string(), 10.0),
                ("Player_7:op2".to_string(), 10.0),
                ("Player_7:op5".to_string(), 30.0)
            ]
        );
    }

    #[test]
    fn other_ids_are_kept_by_name() {
        let mut acked = AckedOps::new("Player_7");
        // Another player's id, a leading zero, op0, no digits, a sign, a number far past the
        // end, a number too long for u64.
        let odd = [
            "Player_70:op1",
            "Player_7:op01",
            "Player_7:op0",
            "Player_7:op",
            "Player_7:op+1",
            "Player_7:op99999999",
            "Player_7:op99999999999999999999",
            "gift#1",
        ];
        for (i, op) in odd.iter().enumerate() {
            acked.insert(op, i as f64);
        }
        acked.insert("Player_7:op0", 50.0);
        assert_eq!(acked.len(), odd.len());
        assert!(acked.by_number.is_empty());
        for (i, op) in odd.iter().enumerate() {
            assert_eq!(acked.get(op), Some(i as f64), "{op}");
        }
        let mut expected: Vec<(String, f64)> = odd
            .iter()
            .enumerate()
            .map(|(i, op)| (op.to_string(), i as f64))
            .collect();
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(ids(&acked), expected);
    }

    /// An id kept by name because it came far past the end stays one id once the array has
    /// grown near it: confirmed again, it keeps its first time and counts once.
    #[test]
    fn an_id_kept_by_name_stays_one_id_as_the_array_grows() {
        let mut acked = AckedOps::new("P");
        acked.insert("P:op5000", 1.0);
        for n in 1..=904 {
            acked.insert(&format!("P:op{n}"), 2.0);
        }
        assert_eq!(acked.get("P:op5000"), Some(1.0));
        acked.insert("P:op5000", 3.0);
        assert_eq!(acked.get("P:op5000"), Some(1.0));
        assert_eq!(acked.len(), 905);
        assert_eq!(acked.iter().count(), 905);
        assert_eq!(acked.iter().filter(|(id, _)| id == "P:op5000").count(), 1);
    }
}
