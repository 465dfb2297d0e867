//! The length of a value's compact JSON text, without writing it, and how deeply it nests:
//! every DataStore write is measured against the 4 MB limit (`shared/spec/roblox-datastore.md`)
//! and [`super::MAX_DEPTH`], so this is on the hot path of every simulation. Arrays and objects
//! remember both measurements until written, and one walk takes both.

use super::{Measure, Node, Number, Value};

impl Value {
    /// The length in bytes of this value's compact JSON text: exactly
    /// `serde_json::to_string(self).len()`. Arrays and objects measured before and not written
    /// since cost nothing to measure again. Measuring recurses as deep as the value: see
    /// [`Value::json_len_within`] for a value of unknown origin.
    pub fn json_len(&self) -> usize {
        self.measure_unbounded().0
    }

    /// How many levels of arrays and objects this value nests: 0 for a scalar, 1 for `[]` or
    /// `{"a": 1}`, 2 for `[[]]`. Measured with (and cached like) [`Value::json_len`].
    pub fn depth(&self) -> usize {
        self.measure_unbounded().1
    }

    /// [`Value::json_len`] if this value nests at most `depth` levels, else `None`; it never
    /// recurses more than `depth` levels, whatever the value. The check to make before
    /// measuring, storing or writing out a value that may be pathological.
    pub fn json_len_within(&self, depth: usize) -> Option<usize> {
        self.measure(depth).map(|(len, _)| len)
    }

    /// Whether this value nests deeper than `limit` levels (see [`Value::depth`]), found
    /// without recursing more than `limit` levels.
    pub fn nested_deeper_than(&self, limit: usize) -> bool {
        self.measure(limit).is_none()
    }

    /// The JSON length and depth, measured however deep the value is.
    pub(super) fn measure_unbounded(&self) -> (usize, usize) {
        match self.measure(usize::MAX) {
            Some(measured) => measured,
            None => unreachable!("no value nests usize::MAX levels"),
        }
    }

    /// The JSON length and depth, or `None` if deeper than `limit`.
    pub(super) fn measure(&self, limit: usize) -> Option<(usize, usize)> {
        let mut depth = 0;
        let len = item_len(self, limit, &mut depth)?;
        Some((len, depth))
    }
}

/// The JSON length of `item`, raising `depth` to its depth; `None` if deeper than `limit`.
#[inline]
fn item_len(item: &Value, limit: usize, depth: &mut usize) -> Option<usize> {
    let (len, item_depth) = match item {
        Value::Null | Value::Bool(true) => return Some(4),
        Value::Bool(false) => return Some(5),
        Value::Number(n) => return Some(number_len(n)),
        Value::String(s) => return Some(string_len(s)),
        Value::Array(a) => measure_node(&a.0, limit, |items, limit| {
            let (mut len, mut depth) = (2 + items.len().saturating_sub(1), 0);
            for item in items {
                len += item_len(item, limit, &mut depth)?;
            }
            Some((len, depth))
        })?,
        Value::Object(o) => measure_node(&o.0, limit, |map, limit| {
            let mut depth = 0;
            let len = map.json_len(|value| item_len(value, limit, &mut depth))?;
            Some((len, depth))
        })?,
    };
    *depth = (*depth).max(item_depth);
    Some(len)
}

/// `node`'s cached length and depth, or measured by `children` (length, and depth of the
/// deepest child, each child within the given limit) if not known; `None` if deeper than
/// `limit`.
fn measure_node<T>(
    node: &Node<T>,
    limit: usize,
    children: impl FnOnce(&T, usize) -> Option<(usize, usize)>,
) -> Option<(usize, usize)> {
    if let Some(m) = node.measured() {
        return (m.depth <= limit).then_some((m.len, m.depth));
    }
    let (len, child_depth) = children(&node.items, limit.checked_sub(1)?)?;
    let depth = child_depth + 1;
    node.remember(Measure { len, depth });
    Some((len, depth))
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
