//! Serde adapters that carry a [`Value`] as its JSON text.
//!
//! Binary formats such as bincode cannot decode a `Value` (no `deserialize_any`,
//! `../shared/TOOLCHAIN.md`), so every `Value` inside a recorded input or output goes through
//! these: `#[serde(with = "crate::json_text")]`. In self-describing formats the field is a string.
//!
//! Reading goes through [`Value::from_json_text`], so a recorded value nested deeper than
//! [`MAX_DEPTH`](crate::value::MAX_DEPTH) levels (which no store takes, but a host could hand
//! the engine) makes the trace unreadable with an error naming the limit, rather than a replay
//! that would overflow the stack.

use crate::value::Value;
use serde::{Deserialize, Deserializer, Serializer};

/// Serialises a value as its compact JSON text.
pub fn serialize<S: Serializer>(v: &Value, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&v.to_string())
}

/// Parses a value from JSON text.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    let text = String::deserialize(d)?;
    Value::from_json_text(&text).map_err(serde::de::Error::custom)
}

/// The same for `Option<Value>`.
pub mod option {
    use super::*;

    /// Serialises `Some(v)` as its JSON text, `None` as none.
    pub fn serialize<S: Serializer>(v: &Option<Value>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    /// Parses an optional JSON text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| Value::from_json_text(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// The same for `Option<Arc<Value>>` (a stored value shared with the DataStore that holds it).
pub mod option_arc {
    use std::sync::Arc;

    use super::*;

    /// Serialises `Some(v)` as its JSON text, `None` as none.
    pub fn serialize<S: Serializer>(v: &Option<Arc<Value>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    /// Parses an optional JSON text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<Value>>, D::Error> {
        super::option::deserialize(d).map(|v| v.map(Arc::new))
    }
}
