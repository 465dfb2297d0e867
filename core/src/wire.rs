//! The stored value: ProfileStore's wire format (spec §1).
//!
//! Owns classification of whatever a key holds (§1.3), the freshly created profile (§1.2), lock
//! tags (`ActiveSession` / `ForceLoadSession`, §5.1), the `GlobalUpdates` queue layout in both the
//! ProfileStore and the ProfileService entry formats (§1.6), and the read-only view of a stored
//! value that the session, save and message code interpret.
//!
//! A Luau table serialises as a JSON object or, when it is empty or an array, as a JSON array, so
//! "a table" here means either, and an empty array is accepted wherever an object is expected
//! (`"MetaTags": []` in `../shared/fixtures/original-golden.json`).
//!
//! Inner fields are read defensively (spec §19 item 18): a missing `SessionLoadCount` reads as 0,
//! a `LastUpdate` that is not a number reads as absent, a malformed `GlobalUpdates` is repaired,
//! and an `ActiveSession` that is not a lock tag counts as no lock. The original throws on these
//! and leaves the key unusable.

use crate::value::Value;

/// A JSON object.
pub use crate::value::Object;

/// True for a JSON object or array: what Luau would see as a table.
pub fn is_table(v: &Value) -> bool {
    v.is_object() || v.is_array()
}

/// The identity of one game server: `game.PlaceId` and `game.JobId` (spec §5.1).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerIdentity {
    /// `game.PlaceId`.
    pub place_id: i64,
    /// `game.JobId` (`""` in Studio).
    pub job_id: String,
}

impl ServerIdentity {
    /// True iff `tag` is a lock tag naming this server: element 1 is our PlaceId and element 2
    /// our JobId. The GUID (element 3) is never compared (spec §5.1).
    pub fn owns(&self, tag: &Value) -> bool {
        let Some(items) = tag.as_array() else {
            return false;
        };
        let place_matches = items
            .first()
            .and_then(Value::as_f64)
            .is_some_and(|p| p == self.place_id as f64);
        let job_matches = items.get(1).and_then(Value::as_str) == Some(self.job_id.as_str());
        place_matches && job_matches
    }

    /// `ActiveSession` tag: `[PlaceId, JobId, guid]`.
    pub fn lock_tag(&self, guid: &str) -> Value {
        Value::from(vec![
            Value::from(self.place_id),
            Value::from(self.job_id.as_str()),
            Value::from(guid),
        ])
    }

    /// `ForceLoadSession` tag: `[PlaceId, JobId]`.
    pub fn claim_tag(&self) -> Value {
        Value::from(vec![
            Value::from(self.place_id),
            Value::from(self.job_id.as_str()),
        ])
    }
}

/// A lock tag is an array whose first two elements are a number and a string (ProfileService
/// tags have only those two; ProfileStore adds the session GUID).
pub fn is_lock_tag(v: &Value) -> bool {
    v.as_array()
        .is_some_and(|a| a.len() >= 2 && a[0].is_number() && a[1].is_string())
}

/// What a key currently holds, as every transform classifies it (spec §1.3).
#[derive(Debug, Clone, PartialEq)]
pub enum Classified {
    /// A valid profile: `Data`, `MetaData` and `GlobalUpdates` are all tables. The object is the
    /// working copy; unknown fields are kept (§1.1).
    Valid(Object),
    /// Nothing usable: absent, a messages-only stub, or junk. `global_updates` is the queue to
    /// carry into a new table (the stub's, else `[0, []]`).
    Missing {
        /// True when junk was found (the write that replaces it fires `OnOverwrite`).
        overwritten: bool,
        /// The `GlobalUpdates` to keep.
        global_updates: Value,
    },
}

/// [`classify`] without copying: a valid profile is returned by reference, so a caller that
/// replaces `Data` anyway (an owned save) need not copy the old one.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassifiedRef<'a> {
    /// A valid profile, as stored.
    Valid(&'a Object),
    /// As [`Classified::Missing`].
    Missing {
        /// True when junk was found.
        overwritten: bool,
        /// The `GlobalUpdates` to keep.
        global_updates: Value,
    },
}

/// Classifies the current stored value (spec §1.3) without copying it.
pub fn classify_ref(current: Option<&Value>) -> ClassifiedRef<'_> {
    let Some(v) = current else {
        return ClassifiedRef::Missing {
            overwritten: false,
            global_updates: empty_global_updates(),
        };
    };
    let Some(obj) = v.as_object() else {
        // A non-table value, or an array (a Luau table without `Data`/`GlobalUpdates` fields).
        return ClassifiedRef::Missing {
            overwritten: true,
            global_updates: empty_global_updates(),
        };
    };
    let field_is_table = |name: &str| obj.get(name).is_some_and(is_table);
    // A table `Data` makes a profile: a missing or malformed `MetaData` or `GlobalUpdates`
    // is repaired by the working copy, where the original takes the value for junk and
    // replaces it, `Data` and all (spec §19 item 2).
    if field_is_table("Data") {
        return ClassifiedRef::Valid(obj);
    }
    // A Luau reader sees a JSON null as an absent field.
    let absent = |name: &str| obj.get(name).is_none_or(Value::is_null);
    if absent("Data") && absent("MetaData") && field_is_table("GlobalUpdates") {
        return ClassifiedRef::Missing {
            overwritten: false,
            global_updates: repair_global_updates(&obj["GlobalUpdates"]),
        };
    }
    ClassifiedRef::Missing {
        overwritten: true,
        global_updates: empty_global_updates(),
    }
}

/// Whether a working copy keeps the stored `Data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredData {
    /// Copy it.
    Keep,
    /// Leave it out: the caller writes a new one.
    Replace,
}

/// The working copy of a valid profile: every field (unknown ones too), `MetaData` as an object
/// (a new profile's, created at `wall_now`, for a missing, empty or non-object `MetaData`), with a
/// number `SessionLoadCount` (0 when missing or not a number), and `GlobalUpdates` repaired
/// (`[0, []]` when missing). What a repaired value is written back as is a profile the
/// original module reads too: its start adds 1 to `SessionLoadCount`, and throws on anything
/// else (spec §19 item 18).
pub fn working_copy(obj: &Object, data: StoredData, wall_now: i64) -> Object {
    // A shared copy: only the fields changed below (and by the caller) are copied.
    let mut working = obj.clone();
    if data == StoredData::Replace {
        working.remove("Data");
    }
    match obj.get("GlobalUpdates") {
        Some(queue) if is_canonical_global_updates(queue) => {}
        Some(queue) => {
            working.insert("GlobalUpdates".into(), repair_global_updates(queue));
        }
        None => {
            working.insert("GlobalUpdates".into(), empty_global_updates());
        }
    }
    // An empty table, `{}` or `[]`, is no MetaData either.
    match obj
        .get("MetaData")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
    {
        None => {
            working.insert("MetaData".into(), Value::Object(new_meta_data(wall_now)));
        }
        Some(meta) if !meta.get("SessionLoadCount").is_some_and(Value::is_number) => {
            let mut meta = meta.clone();
            meta.insert("SessionLoadCount".into(), Value::from(0));
            working.insert("MetaData".into(), Value::Object(meta));
        }
        Some(_) => {}
    }
    working
}

/// What a write of `written` repairing the stored value `current` ([`working_copy`], or the
/// queue a message adds to) cannot keep, as JSON text: a `GlobalUpdates` or `MetaData` that is
/// no table, a counter or `SessionLoadCount` that is no number, queue entries with neither an
/// id nor a payload, elements past a queue's two. `None` when the write keeps everything (every
/// value ProfileStore writes), and for a value written over whole ("Invalid profile was
/// overwritten"). Only a value another tool wrote loses anything; the engine warns with this
/// text, so what was dropped is not lost silently (DEVIATIONS.md rows 2 and 18).
pub fn repair_losses(current: Option<&Value>, written: &Value) -> Option<String> {
    let obj = current?.as_object()?;
    let mut lost = Vec::new();
    let queue = obj.get("GlobalUpdates");
    // A queue written as it was stored (the same node: most saves) was not repaired.
    let kept = |q: &Value| match (q, written.get("GlobalUpdates")) {
        (Value::Array(a), Some(Value::Array(w))) => a.ptr_eq(w),
        _ => false,
    };
    if let Some(queue) = queue.filter(|q| !kept(q) && !is_canonical_global_updates(q)) {
        queue_losses(queue, &mut lost);
    }
    match obj.get("MetaData") {
        Some(Value::Object(meta)) => {
            let count = meta.get("SessionLoadCount");
            if let Some(count) = count.filter(|c| !is_nothing(c) && !c.is_number()) {
                lost.push(format!("MetaData.SessionLoadCount {}", excerpt(count)));
            }
        }
        Some(meta) if !is_nothing(meta) => lost.push(format!("MetaData {}", excerpt(meta))),
        _ => {}
    }
    if lost.is_empty() {
        return None;
    }
    // A profile, or a message-only key's queue; anything else is written over whole.
    let absent = |name: &str| obj.get(name).is_none_or(Value::is_null);
    let profile = obj.get("Data").is_some_and(is_table);
    let queue_only = absent("Data") && absent("MetaData") && queue.is_some_and(is_table);
    (profile || queue_only).then(|| lost.join("; "))
}

/// Whether `v` holds nothing a repair could lose: null, or an empty table.
fn is_nothing(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// [`repair_losses`] of a `GlobalUpdates` the repair changes (Luau's 1-based indices).
fn queue_losses(queue: &Value, lost: &mut Vec<String>) {
    let Some(items) = queue.as_array() else {
        if !is_nothing(queue) {
            lost.push(format!("GlobalUpdates {}", excerpt(queue)));
        }
        return;
    };
    if let Some(counter) = items.first().filter(|c| !is_nothing(c) && !c.is_number()) {
        lost.push(format!("GlobalUpdates[1] {}", excerpt(counter)));
    }
    match items.get(1) {
        Some(Value::Array(entries)) => {
            let dropped: Vec<Value> = entries.iter().filter(|e| !kept_entry(e)).cloned().collect();
            if !dropped.is_empty() {
                let n = dropped.len();
                let text = excerpt(&Value::from(dropped));
                lost.push(format!(
                    "{n} GlobalUpdates entries with no id or payload {text}"
                ));
            }
        }
        Some(entries) if !is_nothing(entries) => {
            lost.push(format!("GlobalUpdates[2] {}", excerpt(entries)));
        }
        _ => {}
    }
    if items.len() > 2 {
        let extra = Value::from(items[2..].to_vec());
        lost.push(format!("GlobalUpdates[3..] {}", excerpt(&extra)));
    }
}

/// `v`'s JSON text, cut to [`EXCERPT_CHARS`] characters (`…` marking the cut).
fn excerpt(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// How much of a dropped part's JSON text a repair warning shows.
const EXCERPT_CHARS: usize = 200;

/// Classifies the current stored value (spec §1.3), copying a valid one into a working copy
/// ([`working_copy`], at `wall_now`).
pub fn classify(current: Option<&Value>, wall_now: i64) -> Classified {
    match classify_ref(current) {
        ClassifiedRef::Valid(obj) => {
            Classified::Valid(working_copy(obj, StoredData::Keep, wall_now))
        }
        ClassifiedRef::Missing {
            overwritten,
            global_updates,
        } => Classified::Missing {
            overwritten,
            global_updates,
        },
    }
}

/// `[0, []]`: an empty message queue.
pub fn empty_global_updates() -> Value {
    Value::from(vec![Value::from(0), Value::from(Vec::new())])
}

/// Brings a `GlobalUpdates` table into `[last_id:number, entries:array]` form, keeping whatever
/// is readable (spec §19 item 18: the original throws on a malformed queue): every entry with
/// a payload, whatever its id (one without a whole-number id is kept but not delivered, see
/// [`message_id`]); entries with neither an id nor a payload (`"junk"`, `[]`) go.
fn repair_global_updates(v: &Value) -> Value {
    if is_canonical_global_updates(v) {
        return v.clone();
    }
    let last_id = v.get(0).and_then(Value::as_f64).unwrap_or(0.0);
    let entries: Vec<Value> = v
        .get(1)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(|e| kept_entry(e)).cloned().collect())
        .unwrap_or_default();
    // The counter covers every message id (an entry under another id does not move it: the
    // next message still gets a whole-number id of its own).
    let last_id = entries
        .iter()
        .filter_map(message_id)
        .fold(last_id, |last, id| last.max(id as f64));
    Value::from(vec![number(last_id), Value::from(entries)])
}

/// Whether the repair keeps a `GlobalUpdates` entry: one with an id or a payload.
fn kept_entry(e: &Value) -> bool {
    entry_id(e).is_some() || entry_payload(e).is_some()
}

/// Whether `v` is already what [`repair_global_updates`] makes of it: `[last_id, entries]` with
/// `last_id` written as [`number`] writes it, every entry one the repair keeps and every
/// message id at most `last_id` (the form every save writes, so the repair usually has nothing
/// to do).
fn is_canonical_global_updates(v: &Value) -> bool {
    let Some([last, entries]) = v.as_array().map(|a| a.as_slice()) else {
        return false;
    };
    let (Some(last_id), Some(entries)) = (last.as_f64(), entries.as_array()) else {
        return false;
    };
    *last == number(last_id)
        && entries
            .iter()
            .all(|e| kept_entry(e) && message_id(e).is_none_or(|id| id as f64 <= last_id))
}

/// A whole number is written as a JSON integer, anything else as a float.
pub fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.007_199_254_740_992e15 {
        Value::from(v as i64)
    } else {
        Value::from(v)
    }
}

/// The id of a `GlobalUpdates` entry (element 1 of either entry format).
pub fn entry_id(entry: &Value) -> Option<f64> {
    entry.as_array()?.first()?.as_f64()
}

/// `f` as an `i64` if it is a whole number an `i64` holds exactly; `None` for a fraction, a
/// number out of `i64`'s range (which `as` would saturate) or one that is not finite.
pub fn whole_number(f: f64) -> Option<i64> {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    (f.is_finite() && f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

/// A message's id as the engine tracks it: the entry's id if it is a whole number (the ids
/// `MessageAsync` assigns always are). An entry with any other id (written by another tool:
/// `1.5`, `"3"`) stays in the stored queue but is never delivered, so it can neither share an
/// id with another message nor be removed as one.
pub fn message_id(entry: &Value) -> Option<i64> {
    entry_id(entry).and_then(whole_number)
}

/// The payload of a `GlobalUpdates` entry: the **last** element, so ProfileService's
/// `[id, version, locked, data]` and ProfileStore's `[id, data]` both read (spec §1.6). A Luau
/// reader sees a JSON null as nil, so trailing nulls are not there: `[3, {…}, null]` carries
/// `{…}`, and `[3, null]`, an id with nothing after it, carries nothing.
pub fn entry_payload(entry: &Value) -> Option<&Value> {
    let items = entry.as_array()?;
    items.get(1..)?.iter().rev().find(|v| !v.is_null())
}

/// Builds the table a session start or `GetAsync` writes when no profile exists (spec §1.2),
/// before the lock is applied: `SessionLoadCount` 0, no `ActiveSession`, no `LastUpdate`.
pub fn new_profile(template: &Value, wall_now: i64, global_updates: Value) -> Object {
    let mut obj = Object::new();
    obj.insert("Data".into(), template.clone());
    obj.insert("MetaData".into(), Value::Object(new_meta_data(wall_now)));
    obj.insert("GlobalUpdates".into(), global_updates);
    obj
}

/// A new profile's `MetaData` (spec §1.2): created at `wall_now`, `SessionLoadCount` 0, no tags.
fn new_meta_data(wall_now: i64) -> Object {
    let mut meta = Object::new();
    meta.insert("ProfileCreateTime".into(), Value::from(wall_now));
    meta.insert("SessionLoadCount".into(), Value::from(0));
    // An empty Luau table is stored as `[]` (fixtures/README.md).
    meta.insert("MetaTags".into(), Value::from(Vec::new()));
    meta
}

/// Read access to a valid profile's fields (`MetaData` is looked up once, when wrapped: most
/// reads are of its fields).
pub struct ProfileValue<'a> {
    obj: &'a Object,
    meta: Option<&'a Object>,
}

impl<'a> ProfileValue<'a> {
    /// Wraps a stored value if it is an object.
    pub fn of(v: &'a Value) -> Option<Self> {
        v.as_object().map(ProfileValue::of_object)
    }

    /// Wraps a stored object.
    pub fn of_object(obj: &'a Object) -> Self {
        ProfileValue {
            obj,
            meta: obj.get("MetaData").and_then(Value::as_object),
        }
    }

    /// `MetaData`, if it is an object.
    pub fn meta(&self) -> Option<&'a Object> {
        self.meta
    }

    /// `MetaData.ActiveSession` if it is a lock tag.
    pub fn active_session(&self) -> Option<&'a Value> {
        self.meta()?.get("ActiveSession").filter(|v| is_lock_tag(v))
    }

    /// `MetaData.ForceLoadSession` if it is a lock tag.
    pub fn force_load_session(&self) -> Option<&'a Value> {
        self.meta()?
            .get("ForceLoadSession")
            .filter(|v| is_lock_tag(v))
    }

    /// The session GUID in `ActiveSession[3]`, when it is a string (ProfileStore locks only).
    pub fn session_guid(&self) -> Option<&'a str> {
        self.active_session()?.get(2)?.as_str()
    }

    /// `MetaData.SessionLoadCount`, 0 when absent or not a number.
    pub fn session_load_count(&self) -> i64 {
        self.meta()
            .and_then(|m| m.get("SessionLoadCount"))
            .and_then(Value::as_f64)
            .map_or(0, |v| v as i64)
    }

    /// `MetaData.LastUpdate` if it is a number.
    pub fn last_update(&self) -> Option<f64> {
        self.meta()?.get("LastUpdate")?.as_f64()
    }

    /// `MetaData.ProfileCreateTime` if it is a number.
    pub fn create_time(&self) -> Option<f64> {
        self.meta()?.get("ProfileCreateTime")?.as_f64()
    }

    /// The entries of `GlobalUpdates[2]` (empty when malformed).
    pub fn global_update_entries(&self) -> &'a [Value] {
        self.obj
            .get("GlobalUpdates")
            .and_then(|g| g.get(1))
            .and_then(Value::as_array)
            .map_or(&[], |a| a.as_slice())
    }

    /// `WasOverwritten == true`.
    pub fn was_overwritten(&self) -> bool {
        self.obj.get("WasOverwritten") == Some(&Value::Bool(true))
    }
}

/// Mutable access to `MetaData` of a working copy (created when absent).
pub fn meta_mut(obj: &mut Object) -> &mut Object {
    let slot = obj
        .entry("MetaData".into())
        .or_insert_with(|| Value::Object(Object::new()));
    if !slot.is_object() {
        *slot = Value::Object(Object::new());
    }
    slot.as_object_mut()
        .expect("MetaData was just made an object")
}

/// Removes every `GlobalUpdates` entry whose id is in `processed` (spec §8.2 step 1).
pub fn remove_processed(obj: &mut Object, processed: &std::collections::BTreeSet<i64>) {
    if processed.is_empty() {
        return;
    }
    if let Some(entries) = obj
        .get_mut("GlobalUpdates")
        .and_then(|g| g.get_mut(1))
        .and_then(Value::as_array_mut)
    {
        entries.retain(|e| message_id(e).is_none_or(|id| !processed.contains(&id)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::json;

    fn valid() -> Value {
        json!({"Data": {}, "MetaData": {"SessionLoadCount": 2}, "GlobalUpdates": [0, []], "Extra": 1})
    }

    #[test]
    fn classify_follows_spec_1_3() {
        assert_eq!(
            classify(None, 0),
            Classified::Missing {
                overwritten: false,
                global_updates: json!([0, []])
            }
        );
        assert_eq!(
            classify(Some(&json!(42)), 0),
            Classified::Missing {
                overwritten: true,
                global_updates: json!([0, []])
            }
        );
        assert_eq!(
            classify(Some(&json!(["ThisAintRight"])), 0),
            Classified::Missing {
                overwritten: true,
                global_updates: json!([0, []])
            }
        );
        assert_eq!(
            classify(Some(&json!({"GlobalUpdates": [3, [[3, {"a": 1}]]]})), 0),
            Classified::Missing {
                overwritten: false,
                global_updates: json!([3, [[3, {"a": 1}]]])
            }
        );
        // A JSON null reads as an absent field (what a Luau reader sees): still a message stub.
        assert_eq!(
            classify(
                Some(
                    &json!({"GlobalUpdates": [3, [[3, {"a": 1}]]], "Data": null, "MetaData": null})
                ),
                0
            ),
            Classified::Missing {
                overwritten: false,
                global_updates: json!([3, [[3, {"a": 1}]]])
            }
        );
        // A table Data makes a profile, whatever MetaData and GlobalUpdates are: they are
        // repaired, where the original wipes it all (spec §19 item 2, DEVIATIONS row 2), into
        // fields the original reads: a new profile's MetaData (made at the transform's
        // `os.time()`, 77 here) where there was none, a SessionLoadCount where it lacked one.
        let fresh = json!({"ProfileCreateTime": 77, "SessionLoadCount": 0, "MetaTags": []});
        for (v, meta) in [
            (json!({"Data": {"Coins": 5}, "MetaData": {}}), fresh.clone()),
            (
                json!({"Data": {"Coins": 5}, "MetaData": {"SessionLoadCount": "x", "Tag": 1}}),
                json!({"SessionLoadCount": 0, "Tag": 1}),
            ),
            (
                json!({"Data": {"Coins": 5}, "MetaData": 5, "GlobalUpdates": 0}),
                fresh.clone(),
            ),
            (json!({"Data": {"Coins": 5}}), fresh),
        ] {
            assert_eq!(
                classify(Some(&v), 77),
                Classified::Valid(
                    json!({"Data": {"Coins": 5}, "MetaData": meta, "GlobalUpdates": [0, []]})
                        .as_object()
                        .unwrap()
                        .clone()
                ),
                "{v}"
            );
        }
        // Without a table Data it is junk.
        assert_eq!(
            classify(
                Some(&json!({"Data": 5, "MetaData": {}, "GlobalUpdates": [0, []]})),
                0
            ),
            Classified::Missing {
                overwritten: true,
                global_updates: json!([0, []])
            }
        );
        let Classified::Valid(obj) = classify(Some(&valid()), 0) else {
            panic!("valid")
        };
        assert_eq!(obj["Extra"], json!(1), "unknown fields are kept");
    }

    #[test]
    fn empty_arrays_read_as_tables() {
        let v = json!({"Data": [], "MetaData": [], "GlobalUpdates": [0, []]});
        let Classified::Valid(obj) = classify(Some(&v), 0) else {
            panic!("valid")
        };
        // An empty MetaData is no MetaData: a new profile's (SessionLoadCount 0).
        assert_eq!(
            obj["MetaData"],
            json!({"ProfileCreateTime": 0, "SessionLoadCount": 0, "MetaTags": []})
        );
        assert_eq!(obj["Data"], json!([]));
    }

    #[test]
    fn malformed_global_updates_are_repaired() {
        let v =
            json!({"Data": {}, "MetaData": {}, "GlobalUpdates": ["x", [[5, {"a": 1}], "junk"]]});
        let Classified::Valid(obj) = classify(Some(&v), 0) else {
            panic!("valid")
        };
        assert_eq!(obj["GlobalUpdates"], json!([5, [[5, {"a": 1}]]]));
        let v = json!({"Data": {}, "MetaData": {}, "GlobalUpdates": {}});
        let Classified::Valid(obj) = classify(Some(&v), 0) else {
            panic!("valid")
        };
        assert_eq!(obj["GlobalUpdates"], json!([0, []]));
    }

    /// What a repair loses, and what it does not: empty tables and nulls hold nothing, a value
    /// written over whole is the overwrite's warning, not this one's, and long parts are cut.
    #[test]
    fn repair_losses_name_only_what_a_write_drops() {
        let losses = |v: Value| repair_losses(Some(&v), &Value::Null);
        assert_eq!(repair_losses(None, &Value::Null), None);
        let profile = |meta: Value, queue: Value| json!({"Data": {}, "MetaData": meta, "GlobalUpdates": queue});
        let meta = json!({"SessionLoadCount": 1});
        for (meta, queue) in [
            (meta.clone(), json!([0, []])),
            (json!({}), json!([1.0, [[1, 2]]])),
            (json!([]), json!(null)),
            (json!(null), json!({})),
            (json!({"SessionLoadCount": null}), json!([null, null])),
            // Kept, though never delivered (row 18): an id with nothing after it, a payload
            // under no whole-number id.
            (meta.clone(), json!([3, [[2], ["x", "y"], [1.5, 0]]])),
        ] {
            assert_eq!(
                losses(profile(meta.clone(), queue.clone())),
                None,
                "{meta} {queue}"
            );
        }
        assert_eq!(
            losses(profile(json!("m"), json!(["3", {"a": 1}]))),
            Some(r#"GlobalUpdates[1] "3"; GlobalUpdates[2] {"a":1}; MetaData "m""#.into())
        );
        // Junk replaced whole, or no table at all: not a repair.
        assert_eq!(losses(json!({"Data": 5, "GlobalUpdates": "junk"})), None);
        assert_eq!(losses(json!([1, 2])), None);
        // A queue the write keeps as stored (the same node) lost nothing, canonical or not.
        let stored = json!({"Data": {}, "GlobalUpdates": [0, ["junk"]]});
        let mut kept = stored.clone();
        kept["Data"] = json!({"Coins": 1});
        assert_eq!(repair_losses(Some(&stored), &kept), None);
        assert!(repair_losses(Some(&stored), &json!({"GlobalUpdates": [0, []]})).is_some());
        // A message-only key's queue.
        assert_eq!(
            losses(json!({"GlobalUpdates": [0, [true]]})),
            Some("1 GlobalUpdates entries with no id or payload [true]".into())
        );
        let long = "é".repeat(300);
        let cut = losses(profile(json!(long), json!([0, []]))).unwrap();
        assert_eq!(cut, format!("MetaData \"{}…", "é".repeat(199)));
    }

    /// The repair's shortcut for an already repaired queue must not let a near miss through.
    #[test]
    fn only_canonical_global_updates_are_kept_as_they_are() {
        let cases = [
            (
                json!([3, [[1, {"a": 1}], [3, 7]]]),
                json!([3, [[1, {"a": 1}], [3, 7]]]),
            ),
            (json!([0, []]), json!([0, []])),
            (json!([2.5, [[1, {}]]]), json!([2.5, [[1, {}]]])),
            (json!([5.0, []]), json!([5, []])),
            (json!([2, [[5, {}]]]), json!([5, [[5, {}]]])),
            (json!([1, [], 3]), json!([1, []])),
            (json!([3, [[1, {}], "junk", []]]), json!([3, [[1, {}]]])),
            // A payload under an id that is not a number is kept (never delivered).
            (
                json!([3, [["3", {"Coins": 100}], "junk"]]),
                json!([3, [["3", {"Coins": 100}]]]),
            ),
            // Ids that are not message ids do not move the counter.
            (
                json!([1, [[1.5, {}], [1e20, {}]]]),
                json!([1, [[1.5, {}], [1e20, {}]]]),
            ),
            (
                json!([1, [[4, {}], [1e20, {}]]]),
                json!([4, [[4, {}], [1e20, {}]]]),
            ),
            (json!([4]), json!([4, []])),
        ];
        for (stored, repaired) in cases {
            let v = json!({"Data": {}, "MetaData": {}, "GlobalUpdates": stored.clone()});
            let Classified::Valid(obj) = classify(Some(&v), 0) else {
                panic!("valid")
            };
            assert_eq!(obj["GlobalUpdates"], repaired, "{stored}");
        }
    }

    /// Message ids are whole numbers: an entry under any other id (another tool's `1.5`, `1e20`
    /// or `"3"`) is kept in the queue and never delivered, so it cannot share an id with a
    /// real message and is not removed when that one is processed.
    #[test]
    fn only_whole_number_ids_are_message_ids() {
        let cases = [
            (json!([1, {}]), Some(1)),
            (json!([-4.0, {}]), Some(-4)),
            (json!([1.5, {}]), None),
            (json!([1e20, {}]), None),
            (json!(["3", {}]), None),
        ];
        for (entry, id) in cases {
            assert_eq!(message_id(&entry), id, "{entry}");
        }
        let mut obj =
            json!({"GlobalUpdates": [2, [[1, {"a": 1}], [1.5, {"b": 2}], ["1", {"c": 3}]]]});
        let obj = obj.as_object_mut().unwrap();
        remove_processed(obj, &std::collections::BTreeSet::from([1]));
        assert_eq!(
            obj["GlobalUpdates"],
            json!([2, [[1.5, {"b": 2}], ["1", {"c": 3}]]])
        );
        // 2^63 is out of range; the largest double below it is in.
        let two_63 = 2f64.powi(63);
        assert_eq!(whole_number(two_63), None);
        assert_eq!(
            whole_number(two_63.next_down()),
            Some(9_223_372_036_854_774_784)
        );
        assert_eq!(whole_number(-two_63), Some(i64::MIN));
        assert_eq!(whole_number(f64::NAN), None);
    }

    #[test]
    fn entries_in_both_formats() {
        let ps = json!([4, {"Coins": 1}]);
        let legacy = json!([4, 2, false, {"Coins": 2}]);
        assert_eq!(entry_id(&ps), Some(4.0));
        assert_eq!(entry_payload(&ps), Some(&json!({"Coins": 1})));
        assert_eq!(entry_payload(&legacy), Some(&json!({"Coins": 2})));
        assert_eq!(entry_payload(&json!([4])), None);
        // Trailing nulls are nil to a Luau reader.
        assert_eq!(
            entry_payload(&json!([4, {"Coins": 3}, null, null])),
            Some(&json!({"Coins": 3}))
        );
        assert_eq!(entry_payload(&json!([4, null])), None);
        assert_eq!(entry_payload(&json!([null, null])), None);
    }

    #[test]
    fn ownership_compares_place_and_job_only() {
        let me = ServerIdentity {
            place_id: 1001,
            job_id: "job".into(),
        };
        assert!(me.owns(&json!([1001, "job", "GUID"])));
        assert!(
            me.owns(&json!([1001.0, "job"])),
            "ProfileService two-element tag"
        );
        assert!(!me.owns(&json!([1001, "other", "GUID"])));
        assert!(!me.owns(&json!("job")));
        assert_eq!(me.lock_tag("G"), json!([1001, "job", "G"]));
        assert_eq!(me.claim_tag(), json!([1001, "job"]));
    }

    #[test]
    fn inner_fields_read_defensively() {
        let v = json!({"MetaData": {"LastUpdate": "soon", "ActiveSession": "x"}});
        let p = ProfileValue::of(&v).unwrap();
        assert_eq!(p.session_load_count(), 0);
        assert_eq!(p.last_update(), None);
        assert_eq!(p.active_session(), None);
    }
}
