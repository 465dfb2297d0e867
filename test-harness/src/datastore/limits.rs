//! The limits the simulated DataStore enforces (spec "Sizes", "Serialization", "Request
//! budgets", "Per-key throughput", "Caching", "Versioning") and the checks that apply the size
//! and format rules to names, values, user ids and metadata.
//!
//! Every limit is an `Option` (or a number) in [`Limits`], so a test can scale it or turn it off:
//! [`Limits::roblox`] is the documented behaviour, [`Limits::unlimited`] turns every limit off
//! while keeping the semantics (cache, versioning) of Roblox.
//!
//! One limit is ours, not Roblox's: a value (or metadata) nested deeper than
//! [`MAX_DEPTH`](profilestore_core::value::MAX_DEPTH) levels is refused with 104, found without
//! walking deeper than that, so everything a store holds reads back and can be walked safely.
//!
//! Sizes are counted in bytes of UTF-8, which is what Luau's `string.len` (the documented way
//! to check them) counts; values are measured as compact JSON, like `HttpService:JSONEncode`.

use profilestore_core::value::{MAX_DEPTH, Value};

use super::error::{MetadataPart, NameKind, RequestError};
use crate::config::{ConfigError, amount, seconds};

/// A server-level rate: `base + per_player × players` requests per minute, plus a one-time
/// burst when the server starts (spec "Server-level defaults").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Requests per minute with no players.
    pub base: f64,
    /// Extra requests per minute per player in the server.
    pub per_player: f64,
    /// Extra requests a new server may make at once. Roblox does not publish the size of its
    /// startup burst; we assume one minute of the base rate.
    pub startup_burst: f64,
}

impl Rate {
    /// A rate with the assumed startup burst (one minute of `base`).
    pub fn new(base: f64, per_player: f64) -> Rate {
        Rate {
            base,
            per_player,
            startup_burst: base,
        }
    }

    /// Requests per minute with `players` in the server.
    pub fn per_minute(&self, players: u32) -> f64 {
        self.base + self.per_player * f64::from(players)
    }

    /// Refuses a negative or non-finite part; `name` is the rate's place in the
    /// configuration, for the error.
    pub fn check(&self, name: &str) -> Result<(), ConfigError> {
        amount(&format!("{name}.base"), self.base)?;
        amount(&format!("{name}.per_player"), self.per_player)?;
        amount(&format!("{name}.startup_burst"), self.startup_burst)
    }

    /// The same rate multiplied by `factor` (base, per-player and burst).
    pub fn scaled(&self, factor: f64) -> Rate {
        Rate {
            base: self.base * factor,
            per_player: self.per_player * factor,
            startup_burst: self.startup_burst * factor,
        }
    }
}

/// Checks the rates of the four request types (read, write, list, remove) under `prefix`.
fn check_kinds(prefix: &str, rates: [Rate; 4]) -> Result<(), ConfigError> {
    for (kind, rate) in ["read", "write", "list", "remove"].into_iter().zip(rates) {
        rate.check(&format!("{prefix}.{kind}"))?;
    }
    Ok(())
}

/// The server-level request budgets of each `DataStoreRequestType` for standard data stores,
/// and the experience-level ones all servers share.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budgets {
    /// `StandardRead`: GetAsync, GetVersionAsync, the read of UpdateAsync (60 + 40n).
    pub read: Rate,
    /// `StandardWrite`: SetAsync, IncrementAsync, the write of UpdateAsync (60 + 40n).
    pub write: Rate,
    /// `StandardList`: ListKeysAsync, ListVersionsAsync (5 + 2n).
    pub list: Rate,
    /// `StandardRemove`: RemoveAsync (60 + 40n).
    pub remove: Rate,
    /// Requests each throttle queue holds before dropping with 301–306 (30). With 0 there is no
    /// queue: a request runs at once if its tokens are at hand and is dropped otherwise.
    pub queue_capacity: usize,
    /// The experience-level budgets every server shares (`None`: not modelled).
    pub experience: Option<ExperienceBudgets>,
}

/// The experience-level request budgets (spec "Request budgets", current): shared by all the
/// experience's servers, `base + per_player × CCU` requests per minute where CCU counts the
/// players of every server; no startup burst. (Open Cloud shares them too; the simulator has no
/// Open Cloud calls.)
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExperienceBudgets {
    /// `StandardRead` (300 + 40 × CCU).
    pub read: Rate,
    /// `StandardWrite` (300 + 20 × CCU).
    pub write: Rate,
    /// `StandardList` (300 + 2 × CCU).
    pub list: Rate,
    /// `StandardRemove` (300 + 40 × CCU).
    pub remove: Rate,
}

impl ExperienceBudgets {
    /// Roblox's current experience-level limits (doc revision 2026-07).
    pub fn roblox() -> ExperienceBudgets {
        let rate = |base, per_player| Rate {
            base,
            per_player,
            startup_burst: 0.0,
        };
        ExperienceBudgets {
            read: rate(300.0, 40.0),
            write: rate(300.0, 20.0),
            list: rate(300.0, 2.0),
            remove: rate(300.0, 40.0),
        }
    }

    /// Every rate multiplied by `factor`.
    pub fn scaled(&self, factor: f64) -> ExperienceBudgets {
        ExperienceBudgets {
            read: self.read.scaled(factor),
            write: self.write.scaled(factor),
            list: self.list.scaled(factor),
            remove: self.remove.scaled(factor),
        }
    }
}

impl Budgets {
    /// Roblox's current server-level defaults (doc revision 2026-07).
    pub fn roblox() -> Budgets {
        Budgets {
            read: Rate::new(60.0, 40.0),
            write: Rate::new(60.0, 40.0),
            list: Rate::new(5.0, 2.0),
            remove: Rate::new(60.0, 40.0),
            queue_capacity: 30,
            experience: Some(ExperienceBudgets::roblox()),
        }
    }

    /// Every rate multiplied by `factor`, the experience's too (the queue capacity stays).
    pub fn scaled(&self, factor: f64) -> Budgets {
        Budgets {
            read: self.read.scaled(factor),
            write: self.write.scaled(factor),
            list: self.list.scaled(factor),
            remove: self.remove.scaled(factor),
            queue_capacity: self.queue_capacity,
            experience: self.experience.map(|e| e.scaled(factor)),
        }
    }
}

/// Per-key throughput over a sliding window (spec "Per-key throughput").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ThroughputLimits {
    /// Bytes of reads allowed per window (25 MB).
    pub read_bytes: u64,
    /// Bytes of writes allowed per window (4 MB).
    pub write_bytes: u64,
    /// Every request is rounded up to a multiple of this (1 KB = 1024 bytes); a request with
    /// no value counts as one unit.
    pub unit_bytes: u64,
    /// Window length in seconds (60).
    pub window_seconds: f64,
}

impl ThroughputLimits {
    /// Roblox's limits: 25 MB/min read, 4 MB/min write, 1 KB rounding.
    pub fn roblox() -> ThroughputLimits {
        ThroughputLimits {
            read_bytes: 25 * 1024 * 1024,
            write_bytes: 4 * 1024 * 1024,
            unit_bytes: 1024,
            window_seconds: 60.0,
        }
    }
}

/// Metadata size limits (spec "Sizes"): key ≤ 50, value ≤ 250, total ≤ 300 characters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetadataLimits {
    /// Longest attribute name.
    pub key: usize,
    /// Longest attribute value (strings by length, other values by their JSON text).
    pub value: usize,
    /// All names and values together.
    pub total: usize,
}

/// The longest version bucket or retention [`Limits`] takes, in ms: a century (longer ones are
/// mistakes, and times computed from them must stay far from overflow).
pub const MAX_VERSION_MS: i64 = 100 * 365 * 24 * 3_600_000;

/// Everything the simulated DataStore limits, and the timing rules that go with it.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Longest DataStore name, scope and key (50).
    pub max_name_len: Option<usize>,
    /// Longest serialized value (4,194,304).
    pub max_value_len: Option<usize>,
    /// Metadata sizes.
    pub metadata: Option<MetadataLimits>,
    /// Most user ids per key. Roblox has a limit (error 512) but does not publish it, so the
    /// default is `None`; set it to test 512.
    pub max_user_ids: Option<usize>,
    /// Server-level request budgets and throttle queues (see [`super::DataStoreService::admit`]).
    pub budgets: Option<Budgets>,
    /// Per-key throughput.
    pub throughput: Option<ThroughputLimits>,
    /// How long `GetAsync` caches a value per server and DataStore (4 s); `None` disables caching.
    pub cache_seconds: Option<f64>,
    /// Length of a version bucket in ms: only the first write in each bucket creates a retained
    /// version (one UTC hour, 3,600,000). `None`: every write keeps its own version.
    pub version_interval_ms: Option<i64>,
    /// How long a superseded version (and a removed key) is kept, in ms (30 days). `None`: forever.
    pub version_retention_ms: Option<i64>,
}

impl Limits {
    /// Roblox's documented limits and rules.
    pub fn roblox() -> Limits {
        Limits {
            max_name_len: Some(50),
            max_value_len: Some(4_194_304),
            metadata: Some(MetadataLimits {
                key: 50,
                value: 250,
                total: 300,
            }),
            max_user_ids: None,
            budgets: Some(Budgets::roblox()),
            throughput: Some(ThroughputLimits::roblox()),
            cache_seconds: Some(4.0),
            version_interval_ms: Some(3_600_000),
            version_retention_ms: Some(30 * 24 * 3_600_000),
        }
    }

    /// No size, budget or throughput limit; the cache and versioning rules stay as on Roblox.
    pub fn unlimited() -> Limits {
        Limits {
            max_name_len: None,
            max_value_len: None,
            metadata: None,
            max_user_ids: None,
            budgets: None,
            throughput: None,
            ..Limits::roblox()
        }
    }

    /// Refuses a cache time, budget rate or throughput window that is negative or not finite;
    /// a version bucket under 1 ms or a negative retention (either over a century); a
    /// throughput unit under a byte, or a read or write allowance under one unit (no request
    /// could ever pass).
    pub fn check(&self) -> Result<(), ConfigError> {
        let in_range = |field: &str, value: i64, min: i64, max: i64| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange {
                    field: field.to_string(),
                    value,
                    min,
                    max,
                })
            }
        };
        if let Some(interval) = self.version_interval_ms {
            in_range("limits.version_interval_ms", interval, 1, MAX_VERSION_MS)?;
        }
        if let Some(retention) = self.version_retention_ms {
            in_range("limits.version_retention_ms", retention, 0, MAX_VERSION_MS)?;
        }
        if let Some(t) = &self.throughput {
            let bytes = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
            in_range(
                "limits.throughput.unit_bytes",
                bytes(t.unit_bytes),
                1,
                i64::MAX,
            )?;
            let unit = bytes(t.unit_bytes);
            in_range(
                "limits.throughput.read_bytes",
                bytes(t.read_bytes),
                unit,
                i64::MAX,
            )?;
            in_range(
                "limits.throughput.write_bytes",
                bytes(t.write_bytes),
                unit,
                i64::MAX,
            )?;
        }
        if let Some(cache) = self.cache_seconds {
            seconds("limits.cache_seconds", cache)?;
        }
        if let Some(b) = &self.budgets {
            check_kinds("limits.budgets", [b.read, b.write, b.list, b.remove])?;
            if let Some(e) = &b.experience {
                check_kinds(
                    "limits.budgets.experience",
                    [e.read, e.write, e.list, e.remove],
                )?;
            }
        }
        if let Some(throughput) = &self.throughput {
            seconds(
                "limits.throughput.window_seconds",
                throughput.window_seconds,
            )?;
        }
        Ok(())
    }

    /// Checks a DataStore name, scope or key: not empty (101), not longer than allowed (102).
    pub fn check_name(&self, what: NameKind, name: &str) -> Result<(), RequestError> {
        if name.is_empty() {
            return Err(RequestError::NameEmpty { what });
        }
        match self.max_name_len {
            Some(limit) if name.len() > limit => Err(RequestError::NameTooLong {
                what,
                length: name.len(),
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// Checks the names a key's path is made of (101, 102): the DataStore's name, its scope
    /// and, when given, the key, in that order.
    pub fn check_path(
        &self,
        store: &str,
        scope: &str,
        key: Option<&str>,
    ) -> Result<(), RequestError> {
        let names = [(NameKind::DataStore, store), (NameKind::Scope, scope)];
        for (kind, name) in names.into_iter().chain(key.map(|k| (NameKind::Key, k))) {
            self.check_name(kind, name)?;
        }
        Ok(())
    }

    /// Checks a value to store and returns its serialized size: not nil (103), not nested
    /// deeper than [`MAX_DEPTH`] (104, our limit: see [`MAX_DEPTH`]), not larger than allowed
    /// (105).
    pub fn check_value(&self, value: &Value) -> Result<usize, RequestError> {
        if value.is_null() {
            return Err(RequestError::ValueNotAllowed { what: "nil".into() });
        }
        let size = value
            .json_len_within(MAX_DEPTH)
            .ok_or_else(|| too_deep("a value"))?;
        match self.max_value_len {
            Some(limit) if size > limit => Err(RequestError::ValueTooLarge { size, limit }),
            _ => Ok(size),
        }
    }

    /// Reads the user ids given with a write: `None`/nil clears them; otherwise a list (an
    /// empty table may arrive as `{}`) of integers (513), not more than allowed (512).
    pub fn check_user_ids(&self, user_ids: Option<&Value>) -> Result<Vec<i64>, RequestError> {
        let items: &[Value] = match user_ids {
            None | Some(Value::Null) => &[],
            Some(Value::Array(items)) => items,
            Some(Value::Object(map)) if map.is_empty() => &[],
            Some(other) => {
                return Err(RequestError::UserIdFormat {
                    found: describe(other),
                });
            }
        };
        let ids = items
            .iter()
            .map(|v| integer(v).ok_or_else(|| RequestError::UserIdFormat { found: describe(v) }))
            .collect::<Result<Vec<i64>, _>>()?;
        match self.max_user_ids {
            Some(limit) if ids.len() > limit => Err(RequestError::TooManyUserIds {
                count: ids.len(),
                limit,
            }),
            _ => Ok(ids),
        }
    }

    /// Reads the metadata given with a write: `None`/nil clears it (stored as `{}`); an empty
    /// table may arrive as `[]`; anything else must be an object (513) within the sizes (511).
    pub fn check_metadata(&self, metadata: Option<&Value>) -> Result<Value, RequestError> {
        if metadata.is_some_and(|m| m.nested_deeper_than(MAX_DEPTH)) {
            return Err(too_deep("metadata"));
        }
        let map = match metadata {
            None | Some(Value::Null) => return Ok(Value::Object(Default::default())),
            Some(Value::Array(items)) if items.is_empty() => {
                return Ok(Value::Object(Default::default()));
            }
            Some(Value::Object(map)) => map,
            Some(other) => {
                return Err(RequestError::MetadataFormat {
                    found: describe(other),
                });
            }
        };
        if let Some(limits) = &self.metadata {
            let mut total = 0;
            for (key, value) in map {
                let value_len = match value {
                    Value::String(s) => s.len(),
                    other => serialized_len(other),
                };
                if key.len() > limits.key {
                    return Err(RequestError::MetadataTooLarge {
                        part: MetadataPart::Key,
                        size: key.len(),
                        limit: limits.key,
                    });
                }
                if value_len > limits.value {
                    return Err(RequestError::MetadataTooLarge {
                        part: MetadataPart::Value,
                        size: value_len,
                        limit: limits.value,
                    });
                }
                total += key.len() + value_len;
            }
            if total > limits.total {
                return Err(RequestError::MetadataTooLarge {
                    part: MetadataPart::Total,
                    size: total,
                    limit: limits.total,
                });
            }
        }
        Ok(Value::Object(map.clone()))
    }
}

/// The refusal (104) of `what` nested deeper than [`MAX_DEPTH`] levels: found before anything
/// measures or writes it out level by level.
fn too_deep(what: &str) -> RequestError {
    RequestError::CantStoreValue {
        what: format!("{what} nested deeper than {MAX_DEPTH} levels"),
    }
}

/// The length of a value's compact JSON text, in bytes: exactly `serde_json::to_string(value)
/// .len()`, as [`Value::json_len`] measures it (every DataStore write is measured, so arrays and
/// objects keep their length until written).
pub fn serialized_len(value: &Value) -> usize {
    value.json_len()
}

/// A JSON number that is an integer (Luau numbers are doubles: `5.0` counts).
pub(crate) fn integer(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let f = v.as_f64()?;
    // ±2^63 are exact doubles; an integral double in [-2^63, 2^63) fits in i64.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    (f.fract() == 0.0 && (-TWO_63..TWO_63).contains(&f)).then_some(f as i64)
}

/// Converts a Luau number to a storable JSON number: NaN and ±inf are refused with 104
/// (JSON cannot hold them and Open Cloud could not read the key back).
pub fn number_value(x: f64) -> Result<Value, RequestError> {
    if x.is_nan() {
        return Err(RequestError::CantStoreValue { what: "NaN".into() });
    }
    if x.is_infinite() {
        let what = if x > 0.0 { "inf" } else { "-inf" };
        return Err(RequestError::CantStoreValue { what: what.into() });
    }
    Ok(if x.fract() == 0.0 && x.abs() < 9.007_199_254_740_992e15 {
        Value::from(x as i64)
    } else {
        profilestore_core::value::Number::from_f64(x)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    })
}

/// What a refused value is, in a few words (`"the number 1.5"`, `"a table"`): never the value
/// written out, which a host could nest or size without bound.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nil".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) | Value::Object(_) => "a table".into(),
    }
}

/// Decodes a value a host hands over as JSON bytes (e.g. a Luau string encoded by the host):
/// invalid UTF-8 and the non-JSON numbers `NaN` / `Infinity` (or a number too large for a
/// double) are refused with 104, other malformed text with 104 naming the parse error.
pub fn decode_value(bytes: &[u8]) -> Result<Value, RequestError> {
    let text = std::str::from_utf8(bytes).map_err(|e| RequestError::CantStoreValue {
        what: format!(
            "a string that is not valid UTF-8 (byte {})",
            e.valid_up_to()
        ),
    })?;
    Value::from_json_text(text).map_err(|e| {
        if let Some(token) = non_finite_token(text).or_else(|| overflowing_number(text)) {
            return RequestError::CantStoreValue { what: token };
        }
        if e.to_string().starts_with("JSON text nests deeper than") {
            return too_deep("a value");
        }
        RequestError::CantStoreValue {
            what: format!("malformed JSON ({e})"),
        }
    })
}

/// `"inf"` or `"-inf"` for the first number outside strings too large for a double
/// (`1e400`, `-1e400`), if any.
fn overflowing_number(text: &str) -> Option<String> {
    let number = |c: char, _: &str| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E');
    runs_outside_strings(text, number)
        .into_iter()
        .find_map(|run| {
            let x = run.parse::<f64>().ok().filter(|x| x.is_infinite())?;
            Some(if x > 0.0 { "inf" } else { "-inf" }.to_string())
        })
}

/// The first bare word outside strings that spells a non-finite number, if any.
fn non_finite_token(text: &str) -> Option<String> {
    let word = |c: char, run: &str| c.is_ascii_alphabetic() || (c == '-' && run.is_empty());
    runs_outside_strings(text, word)
        .into_iter()
        .find_map(|word| {
            let lower = word.trim_start_matches('-').to_ascii_lowercase();
            match lower.as_str() {
                "nan" => Some("NaN".to_string()),
                "inf" | "infinity" if word.starts_with('-') => Some("-inf".to_string()),
                "inf" | "infinity" => Some("inf".to_string()),
                _ => None,
            }
        })
}

/// The runs of characters outside JSON strings that `in_run` takes (given the run so far), in
/// order: the bare words and numbers of a text the parser refused.
fn runs_outside_strings(text: &str, in_run: impl Fn(char, &str) -> bool) -> Vec<String> {
    let (mut in_string, mut escaped) = (false, false);
    let mut runs = Vec::new();
    let mut run = String::new();
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if in_run(c, &run) {
            run.push(c);
            continue;
        }
        if !run.is_empty() {
            runs.push(std::mem::take(&mut run));
        }
        in_string = c == '"';
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use profilestore_core::value::json;

    #[test]
    fn names_are_checked_for_empty_and_length() {
        let l = Limits::roblox();
        assert_eq!(
            l.check_name(NameKind::Key, ""),
            Err(RequestError::NameEmpty {
                what: NameKind::Key
            })
        );
        assert_eq!(l.check_name(NameKind::Key, &"k".repeat(50)), Ok(()));
        let err = l.check_name(NameKind::Key, &"k".repeat(51)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "102: Key name exceeds the 50 character limit."
        );
        // Bytes, like string.len: 26 two-byte characters are 52 bytes.
        assert_eq!(
            l.check_name(NameKind::DataStore, &"é".repeat(26)),
            Err(RequestError::NameTooLong {
                what: NameKind::DataStore,
                length: 52,
                limit: 50
            })
        );
        assert_eq!(
            Limits::unlimited().check_name(NameKind::Scope, &"s".repeat(500)),
            Ok(())
        );
    }

    #[test]
    fn value_size_is_its_compact_json_length() {
        let l = Limits::roblox();
        // A string of n characters serializes to n + 2 bytes (its quotes).
        assert_eq!(l.check_value(&json!("x".repeat(4_194_302))), Ok(4_194_304));
        let err = l.check_value(&json!("x".repeat(4_194_303))).unwrap_err();
        assert_eq!(
            err,
            RequestError::ValueTooLarge {
                size: 4_194_305,
                limit: 4_194_304
            }
        );
        assert_eq!(err.code(), Some(105));
        assert_eq!(
            l.check_value(&Value::Null).unwrap_err().to_string(),
            "103: Can't allow nil in DataStore."
        );
        assert_eq!(
            Limits::unlimited().check_value(&json!("x".repeat(5_000_000))),
            Ok(5_000_002)
        );
    }

    #[test]
    fn user_ids_must_be_integers() {
        let l = Limits {
            max_user_ids: Some(2),
            ..Limits::roblox()
        };
        assert_eq!(l.check_user_ids(None), Ok(vec![]));
        assert_eq!(l.check_user_ids(Some(&json!({}))), Ok(vec![]));
        assert_eq!(l.check_user_ids(Some(&json!([1, 2.0]))), Ok(vec![1, 2]));
        assert_eq!(
            l.check_user_ids(Some(&json!([1.5]))),
            Err(RequestError::UserIdFormat {
                found: "the number 1.5".into()
            })
        );
        // A refused value is described, never written out: a host value nested a million
        // levels deep is refused without walking it (and not dropped here, which would).
        let mut deep = Value::from(1);
        for _ in 0..1_000_000 {
            deep = Value::from(vec![deep]);
        }
        let ids = Value::from(vec![deep]);
        assert_eq!(
            l.check_user_ids(Some(&ids)),
            Err(RequestError::UserIdFormat {
                found: "a table".into()
            })
        );
        std::mem::forget(ids);
        assert_eq!(
            l.check_user_ids(Some(&json!("7"))).unwrap_err().code(),
            Some(513)
        );
        let err = l.check_user_ids(Some(&json!([1, 2, 3]))).unwrap_err();
        assert_eq!(err, RequestError::TooManyUserIds { count: 3, limit: 2 });
        assert_eq!(err.to_string(), "512: UserID size exceeds 2 limit.");
    }

    #[test]
    fn metadata_sizes_and_format() {
        let l = Limits::roblox();
        assert_eq!(l.check_metadata(None), Ok(json!({})));
        assert_eq!(
            l.check_metadata(Some(&json!([]))),
            Ok(json!({})),
            "an empty Luau table may arrive as []"
        );
        assert_eq!(
            l.check_metadata(Some(&json!({"Rank": "Gold"}))),
            Ok(json!({"Rank": "Gold"}))
        );
        assert_eq!(
            l.check_metadata(Some(&json!([1]))).unwrap_err().to_string(),
            "513: Attribute metadata format is invalid."
        );
        // 2 attributes of 1 + 149 characters: 300 in total is allowed, 301 is not.
        let ok = json!({"a": "x".repeat(149), "b": "y".repeat(149)});
        assert!(l.check_metadata(Some(&ok)).is_ok());
        let big = json!({"a": "x".repeat(149), "b": "y".repeat(150)});
        let err = l.check_metadata(Some(&big)).unwrap_err();
        assert_eq!(
            err,
            RequestError::MetadataTooLarge {
                part: MetadataPart::Total,
                size: 301,
                limit: 300
            }
        );
        assert_eq!(
            err.to_string(),
            "511: Metadata attribute size exceeds 300 limit."
        );
        let long_value = json!({"a": "x".repeat(251)});
        assert_eq!(
            l.check_metadata(Some(&long_value)),
            Err(RequestError::MetadataTooLarge {
                part: MetadataPart::Value,
                size: 251,
                limit: 250
            })
        );
        let long_key = json!({"k".repeat(51): 1});
        assert_eq!(
            l.check_metadata(Some(&long_key)),
            Err(RequestError::MetadataTooLarge {
                part: MetadataPart::Key,
                size: 51,
                limit: 50
            })
        );
        assert_eq!(Limits::unlimited().check_metadata(Some(&big)), Ok(big));
    }

    #[test]
    fn non_finite_numbers_and_bad_utf8_are_refused_with_104() {
        assert_eq!(
            number_value(f64::NAN).unwrap_err().to_string(),
            "104: Can't store NaN in DataStore."
        );
        assert_eq!(
            number_value(f64::INFINITY).unwrap_err().to_string(),
            "104: Can't store inf in DataStore."
        );
        assert_eq!(
            number_value(f64::NEG_INFINITY).unwrap_err().to_string(),
            "104: Can't store -inf in DataStore."
        );
        assert_eq!(number_value(2.0), Ok(json!(2)));
        assert_eq!(number_value(0.25), Ok(json!(0.25)));
        assert_eq!(
            decode_value(br#"{"a": [1, "NaN"]}"#),
            Ok(json!({"a": [1, "NaN"]}))
        );
        assert_eq!(
            decode_value(br#"{"a": NaN}"#).unwrap_err().to_string(),
            "104: Can't store NaN in DataStore."
        );
        assert_eq!(
            decode_value(b"[-Infinity]").unwrap_err().to_string(),
            "104: Can't store -inf in DataStore."
        );
        assert_eq!(
            decode_value(b"1e400").unwrap_err().to_string(),
            "104: Can't store inf in DataStore."
        );
        // The sign of a number too large for a double is kept (it read as inf); a string that
        // spells one is only a string.
        assert_eq!(
            decode_value(br#"{"x": "1e400", "y": [2, -1e400]}"#)
                .unwrap_err()
                .to_string(),
            "104: Can't store -inf in DataStore."
        );
        // Text nested deeper than a store keeps gets the depth refusal, not "malformed JSON".
        let deep = format!("{}{}", "[".repeat(513), "]".repeat(513));
        assert_eq!(
            decode_value(deep.as_bytes()).unwrap_err().to_string(),
            "104: Can't store a value nested deeper than 512 levels in DataStore."
        );
        assert_eq!(
            decode_value(b"\"ab\xff\"").unwrap_err().to_string(),
            "104: Can't store a string that is not valid UTF-8 (byte 3) in DataStore."
        );
        assert!(
            decode_value(b"{")
                .unwrap_err()
                .to_string()
                .starts_with("104: Can't store malformed JSON (")
        );
    }
}
