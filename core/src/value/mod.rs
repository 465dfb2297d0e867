//! JSON values whose copies share structure: the values the engine reads, writes and hands to
//! its host (stored profiles, `Profile.Data`, messages, key info metadata).
//!
//! A profile value moves through many hands on every DataStore request: the stored version, the
//! transform's working copy, the host's `Profile.Data`, the snapshot a save writes,
//! `LastSavedData`, the DataStore's cache and its version history. With `serde_json::Value` each
//! of those is a deep copy, and measuring a written value for the 4 MB limit is a walk of the
//! whole tree (`docs/PERFORMANCE.md`). Here:
//!
//! - a [`Value`] clone costs at most one reference-count increment: arrays, objects and long
//!   strings are reference counted and shared until written, short strings are kept inline;
//! - writing through `&mut` ([`Array`] and [`Object`] dereference mutably, [`Value::as_object_mut`],
//!   `value["key"] = ...`) copies only the containers on the path to the write, one level each,
//!   and only when they are shared (copy on write);
//! - every array and object caches the length of its compact JSON text ([`Value::json_len`]), so
//!   measuring a value whose `Data` was not touched costs a few additions;
//! - values nest at most [`MAX_DEPTH`] levels where they come in from text or go to a store
//!   ([`Value::from_json_text`], [`Value::nested_deeper_than`]): reading, writing, comparing and
//!   dropping a value recurse once per level, and a value nested tens of thousands deep would
//!   overflow the stack.
//!
//! The API follows `serde_json::Value` (same variants, `as_*`, `is_*`, `get`, indexing, [`json!`],
//! `Display` as compact JSON text), values serialise to exactly the text `serde_json` gives
//! the same JSON, and they convert to and from `serde_json::Value` losslessly.
//!
//! [`json!`]: crate::json

mod compare;
mod json_len;
mod map;
mod serde_impl;

use std::borrow::Borrow;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use serde_json::Number;
use smol_str::SmolStr;

/// Builds a [`Value`] from JSON syntax, like `serde_json::json!` (which it calls, then converts;
/// interpolated expressions must be `Serialize`). An interpolated [`Value`] is copied deeply on
/// the way: on hot paths build values with `Value::from` and the containers' own methods.
#[macro_export]
macro_rules! json {
    ($($json:tt)+) => {
        $crate::value::Value::from($crate::value::__serde_json::json!($($json)+))
    };
}
pub use crate::json;

#[doc(hidden)]
pub use serde_json as __serde_json;

/// A JSON value. Cloning is cheap; see the module docs.
#[derive(Clone, Default, PartialEq)]
pub enum Value {
    /// `null`.
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number (an integer or a finite double), as `serde_json` keeps it.
    Number(Number),
    /// A string.
    String(Str),
    /// An array.
    Array(Array),
    /// An object, its keys in sorted order.
    Object(Object),
}

/// An immutable string: up to 23 bytes kept inline (most profile strings: ids, field names), a
/// longer one shared. A clone copies 24 bytes, and for a longer string increments its count.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Str(SmolStr);

impl Str {
    /// The string.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The concatenation of `parts`, built in place (no allocation when it fits inline).
    pub fn concat(parts: &[&str]) -> Str {
        let mut builder = smol_str::SmolStrBuilder::new();
        for part in parts {
            builder.push_str(part);
        }
        Str(builder.finish())
    }
}

impl Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl Borrow<str> for Str {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

impl AsRef<str> for Str {
    fn as_ref(&self) -> &str {
        self.0.as_str()
    }
}

impl From<&str> for Str {
    fn from(s: &str) -> Self {
        Str(SmolStr::new(s))
    }
}

impl From<String> for Str {
    fn from(s: String) -> Self {
        Str(SmolStr::from(s))
    }
}

impl From<&String> for Str {
    fn from(s: &String) -> Self {
        Str(SmolStr::new(s))
    }
}

impl From<Str> for String {
    fn from(s: Str) -> Self {
        s.0.to_string()
    }
}

impl PartialEq<str> for Str {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Str {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Str {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<Str> for String {
    fn eq(&self, other: &Str) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Str> for &str {
    fn eq(&self, other: &Str) -> bool {
        *self == other.as_str()
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

/// The deepest nesting of arrays and objects a value may have where it is read from text or
/// written to a store: `[]` is one level, `[[]]` two, a profile's `Data` one below the profile.
///
/// Roblox documents no such limit. Ours keeps every recursive walk of a value (serialising,
/// comparing, dropping, measuring) within a few hundred kilobytes of stack, so a malformed
/// file or a pathological value gets an error instead of aborting the process.
pub const MAX_DEPTH: usize = 512;

/// A shared container with the length of its compact JSON text and its depth, measured together
/// and cached in one word ([`Measure`]; 0: not measured yet).
struct Node<T> {
    items: T,
    measured: AtomicU64,
}

impl<T: Clone> Clone for Node<T> {
    fn clone(&self) -> Self {
        Node {
            items: self.items.clone(),
            measured: AtomicU64::new(self.measured.load(Ordering::Relaxed)),
        }
    }
}

impl<T> Node<T> {
    fn new(items: T) -> Arc<Self> {
        Arc::new(Node {
            items,
            measured: AtomicU64::new(0),
        })
    }

    /// The cached measurement, if any.
    fn measured(&self) -> Option<Measure> {
        Measure::unpack(self.measured.load(Ordering::Relaxed))
    }

    /// Caches `m` (one that does not fit the word is not cached: measured again when asked).
    fn remember(&self, m: Measure) {
        self.measured.store(m.pack(), Ordering::Relaxed);
    }

    /// Forgets the cached measurement.
    fn forget(&mut self) {
        *self.measured.get_mut() = 0;
    }
}

/// A container's JSON length and depth, as cached in a [`Node`]: the length in the low 48 bits,
/// the depth in the high 16. Every container is at least 2 bytes long and 1 level deep, so 0
/// means "not measured".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Measure {
    len: usize,
    depth: usize,
}

impl Measure {
    const LEN_BITS: u32 = 48;

    fn unpack(word: u64) -> Option<Measure> {
        (word != 0).then_some(Measure {
            len: (word & ((1 << Self::LEN_BITS) - 1)) as usize,
            depth: (word >> Self::LEN_BITS) as usize,
        })
    }

    /// The cached word, or 0 (not cached) for a length or depth too large for it.
    fn pack(self) -> u64 {
        match (u64::try_from(self.len), u64::try_from(self.depth)) {
            (Ok(len), Ok(depth)) if len >> Self::LEN_BITS == 0 && depth >> 16 == 0 => {
                len | depth << Self::LEN_BITS
            }
            _ => 0,
        }
    }
}

/// Unshares `node` if needed and forgets its measurements: the way to every write.
fn write<T: Clone>(node: &mut Arc<Node<T>>) -> &mut T {
    let node = Arc::make_mut(node);
    node.forget();
    &mut node.items
}

/// Takes `node`'s items, copying them only if the node is shared.
fn unwrap_or_clone<T: Clone>(node: Arc<Node<T>>) -> T {
    Arc::try_unwrap(node).map_or_else(|shared| shared.items.clone(), |n| n.items)
}

/// A JSON array: dereferences to `Vec<Value>`; writing through `&mut` copies it first if shared.
#[derive(Clone)]
pub struct Array(Arc<Node<Vec<Value>>>);

pub use map::{Entry, Map};

/// A JSON object: dereferences to its [`Map`]; writing through `&mut` copies it first if shared.
#[derive(Clone)]
pub struct Object(Arc<Node<Map>>);

impl Array {
    /// An empty array.
    pub fn new() -> Self {
        Array(Node::new(Vec::new()))
    }

    /// Whether `self` and `other` are the same shared array (then they are equal).
    pub fn ptr_eq(&self, other: &Array) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The items, copied only if shared.
    pub fn into_vec(self) -> Vec<Value> {
        unwrap_or_clone(self.0)
    }

    /// Appends `value`, keeping a measured length up to date (a log that grows by one entry
    /// per save is then measured in constant time).
    pub fn push(&mut self, value: Value) {
        if Arc::get_mut(&mut self.0).is_none() {
            // Shared: copy into room for more, rather than copy and then grow at once.
            let old = &self.0;
            let mut items = Vec::with_capacity(old.items.len() + old.items.len() / 2 + 1);
            items.extend(old.items.iter().cloned());
            let measured = AtomicU64::new(old.measured.load(Ordering::Relaxed));
            self.0 = Arc::new(Node { items, measured });
        }
        let node = Arc::make_mut(&mut self.0);
        if let Some(m) = Measure::unpack(*node.measured.get_mut()) {
            // Measured within the limit, so a push never walks a pathological value to its
            // bottom; a value deeper than that leaves the array to be measured when asked.
            *node.measured.get_mut() = match value.measure(MAX_DEPTH) {
                Some((len, depth)) => Measure {
                    len: m.len + usize::from(!node.items.is_empty()) + len,
                    depth: m.depth.max(depth + 1),
                }
                .pack(),
                None => 0,
            };
        }
        node.items.push(value);
    }

    /// Removes the last item, keeping a measured length (and depth) up to date.
    pub fn pop(&mut self) -> Option<Value> {
        let node = Arc::make_mut(&mut self.0);
        let value = node.items.pop()?;
        if let Some(m) = Measure::unpack(*node.measured.get_mut()) {
            // An item deeper than the limit (an array `json_len` measured may hold one) counts
            // as the deepest: the array is measured again when asked.
            let (len, depth) = value.measure(MAX_DEPTH).unwrap_or((0, m.depth));
            *node.measured.get_mut() = if depth > 0 && depth + 1 >= m.depth {
                // A container that may have been the deepest item: measure again when asked.
                0
            } else {
                Measure {
                    len: m.len - usize::from(!node.items.is_empty()) - len,
                    depth: m.depth,
                }
                .pack()
            };
        }
        Some(value)
    }
}

impl Object {
    /// An empty object.
    pub fn new() -> Self {
        Object(Node::new(Map::new()))
    }

    /// Whether `self` and `other` are the same shared object (then they are equal).
    pub fn ptr_eq(&self, other: &Object) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The entries, copied only if shared.
    pub fn into_map(self) -> Map {
        unwrap_or_clone(self.0)
    }
}

impl Default for Array {
    fn default() -> Self {
        Array::new()
    }
}

impl Default for Object {
    fn default() -> Self {
        Object::new()
    }
}

impl Deref for Array {
    type Target = Vec<Value>;
    fn deref(&self) -> &Vec<Value> {
        &self.0.items
    }
}

impl DerefMut for Array {
    fn deref_mut(&mut self) -> &mut Vec<Value> {
        write(&mut self.0)
    }
}

impl Deref for Object {
    type Target = Map;
    fn deref(&self) -> &Map {
        &self.0.items
    }
}

impl DerefMut for Object {
    fn deref_mut(&mut self) -> &mut Map {
        write(&mut self.0)
    }
}

impl From<Vec<Value>> for Array {
    fn from(items: Vec<Value>) -> Self {
        Array(Node::new(items))
    }
}

impl From<Map> for Object {
    fn from(map: Map) -> Self {
        Object(Node::new(map))
    }
}

impl<V: Into<Value>> FromIterator<V> for Array {
    fn from_iter<I: IntoIterator<Item = V>>(iter: I) -> Self {
        Array::from(iter.into_iter().map(Into::into).collect::<Vec<_>>())
    }
}

impl<K: Into<Str>, V: Into<Value>> FromIterator<(K, V)> for Object {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Object::from(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect::<Map>(),
        )
    }
}

impl IntoIterator for Array {
    type Item = Value;
    type IntoIter = std::vec::IntoIter<Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.into_vec().into_iter()
    }
}

impl<'a> IntoIterator for &'a Array {
    type Item = &'a Value;
    type IntoIter = std::slice::Iter<'a, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl IntoIterator for Object {
    type Item = (Str, Value);
    type IntoIter = map::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        self.into_map().into_iter()
    }
}

impl<'a> IntoIterator for &'a Object {
    type Item = (&'a Str, &'a Value);
    type IntoIter = map::Iter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl PartialEq for Array {
    fn eq(&self, other: &Self) -> bool {
        self.ptr_eq(other) || **self == **other
    }
}

impl PartialEq for Object {
    fn eq(&self, other: &Self) -> bool {
        self.ptr_eq(other) || **self == **other
    }
}

impl fmt::Debug for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

static NULL: Value = Value::Null;

impl Value {
    /// Whether this is `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Whether this is `true` or `false`.
    pub fn is_boolean(&self) -> bool {
        matches!(self, Value::Bool(_))
    }

    /// Whether this is a number.
    pub fn is_number(&self) -> bool {
        matches!(self, Value::Number(_))
    }

    /// Whether this is a string.
    pub fn is_string(&self) -> bool {
        matches!(self, Value::String(_))
    }

    /// Whether this is an array.
    pub fn is_array(&self) -> bool {
        matches!(self, Value::Array(_))
    }

    /// Whether this is an object.
    pub fn is_object(&self) -> bool {
        matches!(self, Value::Object(_))
    }

    /// Whether this is an integer that fits an `i64`.
    pub fn is_i64(&self) -> bool {
        matches!(self, Value::Number(n) if n.is_i64())
    }

    /// Whether this is an integer that fits a `u64`.
    pub fn is_u64(&self) -> bool {
        matches!(self, Value::Number(n) if n.is_u64())
    }

    /// Whether this is a number stored as a double.
    pub fn is_f64(&self) -> bool {
        matches!(self, Value::Number(n) if n.is_f64())
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number as an `i64`, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    /// The number as a `u64`, if it is an integer that fits.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// The number as an `f64`, if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The array, if this is one.
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The array for writing, if this is one (copied on the first write if shared).
    pub fn as_array_mut(&mut self) -> Option<&mut Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The object, if this is one.
    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// The object for writing, if this is one (copied on the first write if shared).
    pub fn as_object_mut(&mut self) -> Option<&mut Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// `self[index]` if this is an object with that key or an array with that index.
    pub fn get<I: ValueIndex>(&self, index: I) -> Option<&Value> {
        index.index_into(self)
    }

    /// The same for writing. Like every write, it unshares the container (even when the index
    /// is absent): look with [`Value::get`] first where a miss is common and copies matter.
    pub fn get_mut<I: ValueIndex>(&mut self, index: I) -> Option<&mut Value> {
        index.index_into_mut(self)
    }

    /// Takes the value out, leaving `null`.
    pub fn take(&mut self) -> Value {
        std::mem::take(self)
    }

    /// This value as a `serde_json::Value` (a deep copy).
    pub fn to_serde(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => serde_json::Value::Number(n.clone()),
            Value::String(s) => serde_json::Value::String(s.to_string()),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Value::to_serde).collect()),
            Value::Object(o) => serde_json::Value::Object(
                o.iter()
                    .map(|(k, v)| (k.to_string(), v.to_serde()))
                    .collect(),
            ),
        }
    }
}

/// What a [`Value`] can be indexed by: a key (objects) or a position (arrays), like
/// `serde_json::value::Index`.
pub trait ValueIndex {
    /// `v[self]` if present.
    fn index_into<'v>(&self, v: &'v Value) -> Option<&'v Value>;
    /// The same for writing.
    fn index_into_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value>;
    /// `v[self]` for assignment: a missing key is inserted as `null`, and `null` becomes an
    /// object first. Panics where `serde_json` does (a key into a non-object, a position out of
    /// bounds).
    fn index_or_insert<'v>(&self, v: &'v mut Value) -> &'v mut Value;
}

impl ValueIndex for str {
    fn index_into<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        v.as_object()?.get(self)
    }
    fn index_into_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        v.as_object_mut()?.get_mut(self)
    }
    fn index_or_insert<'v>(&self, v: &'v mut Value) -> &'v mut Value {
        if v.is_null() {
            *v = Value::Object(Object::new());
        }
        match v {
            Value::Object(o) => o.entry(Str::from(self)).or_insert(Value::Null),
            other => panic!("cannot access key {self:?} in JSON {}", kind(other)),
        }
    }
}

impl ValueIndex for String {
    fn index_into<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        self.as_str().index_into(v)
    }
    fn index_into_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        self.as_str().index_into_mut(v)
    }
    fn index_or_insert<'v>(&self, v: &'v mut Value) -> &'v mut Value {
        self.as_str().index_or_insert(v)
    }
}

impl ValueIndex for usize {
    fn index_into<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        v.as_array()?.get(*self)
    }
    fn index_into_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        v.as_array_mut()?.get_mut(*self)
    }
    fn index_or_insert<'v>(&self, v: &'v mut Value) -> &'v mut Value {
        match v {
            Value::Array(a) => {
                let len = a.len();
                a.get_mut(*self).unwrap_or_else(|| {
                    panic!("cannot access index {self} of JSON array of length {len}")
                })
            }
            other => panic!("cannot access index {self} of JSON {}", kind(other)),
        }
    }
}

impl<T: ValueIndex + ?Sized> ValueIndex for &T {
    fn index_into<'v>(&self, v: &'v Value) -> Option<&'v Value> {
        (**self).index_into(v)
    }
    fn index_into_mut<'v>(&self, v: &'v mut Value) -> Option<&'v mut Value> {
        (**self).index_into_mut(v)
    }
    fn index_or_insert<'v>(&self, v: &'v mut Value) -> &'v mut Value {
        (**self).index_or_insert(v)
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl<I: ValueIndex> std::ops::Index<I> for Value {
    type Output = Value;
    /// `self[index]`, or `null` when absent (as `serde_json`).
    fn index(&self, index: I) -> &Value {
        index.index_into(self).unwrap_or(&NULL)
    }
}

impl<I: ValueIndex> std::ops::IndexMut<I> for Value {
    fn index_mut(&mut self, index: I) -> &mut Value {
        index.index_or_insert(self)
    }
}

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => Value::Number(n),
            serde_json::Value::String(s) => Value::String(s.into()),
            serde_json::Value::Array(a) => Value::Array(a.into_iter().collect()),
            serde_json::Value::Object(o) => Value::Object(o.into_iter().collect()),
        }
    }
}

impl From<Value> for serde_json::Value {
    fn from(v: Value) -> Self {
        v.to_serde()
    }
}

impl From<&Value> for serde_json::Value {
    fn from(v: &Value) -> Self {
        v.to_serde()
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

macro_rules! from_integer {
    ($($t:ty)*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Self {
                Value::Number(Number::from(n))
            }
        }
    )*};
}
from_integer!(i8 i16 i32 i64 isize u8 u16 u32 u64 usize);

impl From<f64> for Value {
    /// A finite double; NaN and the infinities become `null`, as in `serde_json`.
    fn from(f: f64) -> Self {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

impl From<Number> for Value {
    fn from(n: Number) -> Self {
        Value::Number(n)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s.into())
    }
}

impl From<Str> for Value {
    fn from(s: Str) -> Self {
        Value::String(s)
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Self {
        Value::Array(items.into())
    }
}

impl From<Array> for Value {
    fn from(a: Array) -> Self {
        Value::Array(a)
    }
}

impl From<Map> for Value {
    fn from(m: Map) -> Self {
        Value::Object(m.into())
    }
}

impl From<Object> for Value {
    fn from(o: Object) -> Self {
        Value::Object(o)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl fmt::Debug for Value {
    /// The same shape as `serde_json::Value`'s `Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("Null"),
            Value::Bool(b) => write!(f, "Bool({b})"),
            Value::Number(n) => write!(f, "Number({n})"),
            Value::String(s) => write!(f, "String({s:?})"),
            Value::Array(a) => {
                f.write_str("Array ")?;
                fmt::Debug::fmt(a, f)
            }
            Value::Object(o) => {
                f.write_str("Object ")?;
                fmt::Debug::fmt(o, f)
            }
        }
    }
}

impl fmt::Display for Value {
    /// Compact JSON text (`{:#}`: indented), exactly as `serde_json` writes the same JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = if f.alternate() {
            serde_json::to_string_pretty(self)
        } else {
            serde_json::to_string(self)
        };
        f.write_str(&text.map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests;
