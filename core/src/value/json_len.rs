//! The length of a value's compact JSON text, without writing it: every DataStore write is
//! measured against the 4 MB limit (`shared/spec/roblox-datastore.md`), so this is on the hot
//! path of every simulation. Arrays and objects remember their length until written.

use std::sync::atomic::Ordering;

use super::{Node, Number, Value};

impl Value {
    /// The length in bytes of this value's compact JSON text: exactly
    /// `serde_json::to_string(self).len()`. Arrays and objects measured before and not written
    /// since cost nothing to measure again.
    pub fn json_len(&self) -> usize {
        match self {
            Value::Null | Value::Bool(true) => 4,
            Value::Bool(false) => 5,
            Value::Number(n) => number_len(n),
            Value::String(s) => string_len(s),
            Value::Array(a) => cached(&a.0, |items| {
                2 + items.len().saturating_sub(1) + items.iter().map(Value::json_len).sum::<usize>()
            }),
            Value::Object(o) => cached(&o.0, |map| map.json_len(Value::json_len)),
        }
    }
}

fn cached<T>(node: &Node<T>, measure: impl FnOnce(&T) -> usize) -> usize {
    match node.json_len.load(Ordering::Relaxed) {
        0 => {
            let len = measure(&node.items);
            node.json_len.store(len, Ordering::Relaxed);
            len
        }
        len => len,
    }
}

/// Extra bytes serde_json's escaping adds per byte: `\"`, `\\` and the short escapes of
/// control characters take 2 bytes, the other control characters `\u00XX` 6.
const ESCAPE_EXTRA: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = match b {
            0x08 | 0x09 | 0x0A | 0x0C | 0x0D => 1,
            _ => 5,
        };
        b += 1;
    }
    t[b'"' as usize] = 1;
    t[b'\\' as usize] = 1;
    t
};

/// The length of `s` as a JSON string, quotes and escapes included.
pub(super) fn string_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    if !any_escaped(bytes) {
        return 2 + bytes.len();
    }
    2 + bytes.len()
        + bytes
            .iter()
            .map(|&b| ESCAPE_EXTRA[b as usize] as usize)
            .sum::<usize>()
}

/// Whether any byte of `bytes` is escaped in JSON text (`"`, `\`, a control character),
/// tested eight bytes at a time: profile strings are mostly short ids with no escape, and this
/// test decides them in one or two word operations instead of a table lookup per byte.
fn any_escaped(bytes: &[u8]) -> bool {
    if bytes.len() < 8 {
        return bytes.iter().any(|&b| ESCAPE_EXTRA[b as usize] != 0);
    }
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        word_has_escape(u64::from_le_bytes(w))
    };
    // Whole words, then the last eight bytes (overlapping the last whole word).
    (0..bytes.len() / 8).any(|i| word(i * 8)) || word(bytes.len() - 8)
}

/// Whether a byte of `x` is below 0x20, `"` or `\` (the word tests of "Bit Twiddling Hacks":
/// `has_less(x, n)` is non-zero exactly when some byte is below `n`, and `has_zero(x ^ c)`
/// exactly when some byte equals `c`; bytes at and above 0x80 never match).
fn word_has_escape(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_less = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    let has_byte = |x: u64, c: u8| has_less(x ^ (ONES * u64::from(c)), 1);
    (has_less(x, 0x20) | has_byte(x, b'"') | has_byte(x, b'\\')) != 0
}

fn number_len(n: &Number) -> usize {
    fn digits(mut v: u64) -> usize {
        let mut d = 1;
        while v >= 10 {
            v /= 10;
            d += 1;
        }
        d
    }
    if let Some(u) = n.as_u64() {
        digits(u)
    } else if let Some(i) = n.as_i64() {
        1 + digits(i.unsigned_abs())
    } else {
        // Floats are rare in profiles: let serde_json format them.
        n.to_string().len()
    }
}
