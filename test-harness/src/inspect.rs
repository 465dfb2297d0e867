//! `inspect` of a stored key: its value, its versions, who holds the session lock since when,
//! and the messages waiting in its queue (spec §1, §10).

use profilestore_core::value::{Value, json};
use profilestore_core::wire;

use crate::datastore::StoreName;
use crate::storage::{Storage, StorageError};

/// Everything worth knowing about one key of `store` in `scope` (`"global"` unless the game
/// passed a scope to `GetDataStore`), as JSON; `now` (Unix seconds) measures the lock's last
/// update.
pub fn inspect(
    storage: &mut dyn Storage,
    store: &str,
    scope: &str,
    key: &str,
    now: Option<i64>,
) -> Result<Value, StorageError> {
    let path = StoreName::scoped(store, scope).path(key);
    // The head and the versions from one state of the store (another process may be writing).
    let read = crate::storage::read_consistently(storage, |storage| {
        let Some(head) = storage.head(&path)? else {
            return Ok(None);
        };
        Ok::<_, StorageError>(Some((head, storage.versions(&path)?)))
    })?;
    let Some((head, stored_versions)) = read else {
        return Ok(json!({"store": store, "scope": scope, "key": key, "exists": false}));
    };
    let versions: Vec<Value> = stored_versions
        .iter()
        .map(|v| json!({"version": v.version, "created_ms": v.created_ms, "deleted": v.value.is_none()}))
        .collect();
    let value = head.value.as_deref().cloned().unwrap_or(Value::Null);
    let meta = &value["MetaData"];
    // The lock as the engine reads it (spec §19 item 18, docs/DEVIATIONS.md row 18): a value
    // a start would write over as junk holds none, nor does an `ActiveSession` that is no lock
    // tag, and a `ForceLoadSession` that is none is no claim.
    let profile = match wire::classify_ref(Some(&value)) {
        wire::ClassifiedRef::Valid(obj) => Some(wire::ProfileValue::of_object(obj)),
        wire::ClassifiedRef::Missing { .. } => None,
    };
    let tag = profile.as_ref().and_then(|p| p.active_session());
    // The lock was first written into the oldest retained version slot that holds the same
    // lock and generation (generations only grow, so an older slot holding another is from
    // before it). A slot keeps the last write of its UTC hour: the lock came at or after the
    // slot's first write, so this is when it was taken or up to an hour before.
    let held_since_ms = tag.and_then(|tag| {
        stored_versions
            .iter()
            .filter(|v| {
                v.value.as_deref().is_some_and(|x| {
                    x["MetaData"].get("ActiveSession") == Some(tag)
                        && x["MetaData"].get("SessionLoadCount") == meta.get("SessionLoadCount")
                })
            })
            .map(|v| v.opened_ms)
            .min()
    });
    let lock = match (&profile, tag) {
        (Some(p), Some(tag)) => json!({
            "held_since_ms": held_since_ms,
            "place_id": tag.get(0),
            "job_id": tag.get(1),
            "session_guid": tag.get(2),
            "topic": p.session_guid().map(profilestore_core::guid::session_topic),
            "last_update": meta.get("LastUpdate"),
            "seconds_since_last_update": seconds_since(now, meta.get("LastUpdate")),
            "session_load_count": meta.get("SessionLoadCount"),
            "force_load_requested_by": p.force_load_session(),
        }),
        _ => Value::Null,
    };
    // Each stored entry: its id as stored, its payload as the engine reads it (spec §1.6: the
    // last of two or more elements), and whether a session would deliver it (a whole-number
    // id and a payload; others stay queued undelivered, or are dropped at the next write if
    // they have neither).
    let pending: Vec<Value> = value["GlobalUpdates"][1]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    let payload = wire::entry_payload(e);
                    json!({
                        "id": e.as_array().and_then(|a| a.first()),
                        "message": payload,
                        "deliverable": wire::message_id(e).is_some() && payload.is_some(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(json!({
        "store": store,
        "scope": scope,
        "key": key,
        "exists": head.value.is_some(),
        "value": value,
        "user_ids": head.user_ids,
        "metadata": head.metadata,
        "created_ms": head.created_ms,
        "updated_ms": head.updated_ms,
        "version": head.version,
        "versions": versions,
        "lock": lock,
        "pending_messages": pending,
    }))
}

/// Seconds from a lock's `LastUpdate` (a number: whole, or not, as another tool may write it,
/// read as the engine reads it) to `now`; `None` without both, or when the clocks are so far
/// apart that the difference is not a plain number of seconds.
fn seconds_since(now: Option<i64>, last_update: Option<&Value>) -> Option<Value> {
    let (now, last) = (now?, last_update?.as_f64()?);
    let since = now as f64 - last;
    (since.abs() < 9.007_199_254_740_992e15).then(|| wire::number(since))
}

/// For an [`inspect`] answer about a key never written (a removed key has versions, and is
/// not one): the stores the storage holds keys in, as `inspect` takes their names (a store of
/// another scope than `global` followed by its `--scope`), with their key counts; `None`
/// otherwise.
pub fn stores_held_if_never_written(
    storage: &mut dyn Storage,
    answer: &Value,
) -> Result<Option<String>, StorageError> {
    if answer["exists"] != false || answer.get("versions").is_some() {
        return Ok(None);
    }
    stores_held(storage).map(Some)
}

/// The names of the keys of `store` in `scope` that start with `prefix`, in byte order, as
/// `ListKeysAsync` orders them: every key the file holds, removed keys included (they keep
/// their versions), even those removed over 30 days before that `ListKeysAsync` no longer
/// lists (this reads the file, with no clock to judge them by).
pub fn key_names(
    storage: &mut dyn Storage,
    store: &str,
    scope: &str,
    prefix: &str,
) -> Result<Vec<String>, StorageError> {
    Ok(storage
        .paths()?
        .into_iter()
        .filter(|p| p.store() == store && p.scope() == scope && p.key().starts_with(prefix))
        .map(|p| p.key().to_string())
        .collect())
}

/// The stores the storage holds keys in, as `inspect` takes their names (a store of another
/// scope than `global` followed by its `--scope`), with their key counts.
pub fn stores_held(storage: &mut dyn Storage) -> Result<String, StorageError> {
    let mut stores: std::collections::BTreeMap<String, usize> = Default::default();
    for p in storage.paths()? {
        let name = if p.scope().as_str() == "global" {
            p.store().to_string()
        } else {
            format!("{} --scope {}", p.store(), p.scope())
        };
        *stores.entry(name).or_default() += 1;
    }
    let held: Vec<String> = stores
        .iter()
        .map(|(name, n)| format!("{name}: {n} key(s)"))
        .collect();
    Ok(if held.is_empty() {
        "no keys".to_string()
    } else {
        held.join(", ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datastore::DataStoreService;
    use crate::storage::MemoryStorage;

    /// A DataStore holding `value` at `S/k`, written at its start.
    fn holding(value: Value) -> DataStoreService {
        let mut ds =
            DataStoreService::new(1_735_689_600).with_storage(Box::new(MemoryStorage::new()));
        let server = crate::datastore::ServerId(0);
        ds.set_async(
            0.0,
            server,
            &StoreName::new("S"),
            "k",
            value,
            Default::default(),
        )
        .unwrap();
        ds
    }

    /// `keys` lists one store and scope, by prefix, in byte order, removed keys included; with
    /// none, the stores held are named.
    #[test]
    fn key_names_list_one_store_by_prefix_in_byte_order() {
        let mut ds = holding(json!(1));
        let server = crate::datastore::ServerId(0);
        let write = |ds: &mut DataStoreService, store: &StoreName, key: &str| {
            ds.set_async(1.0, server, store, key, json!(2), Default::default())
                .unwrap();
        };
        let s = StoreName::new("S");
        for key in ["kb", "kA", "a", "k\u{e9}"] {
            write(&mut ds, &s, key);
        }
        write(&mut ds, &StoreName::scoped("S", "beta"), "k2");
        write(&mut ds, &StoreName::new("T"), "k3");
        ds.remove_async(2.0, server, &s, "kb").unwrap();
        let storage = ds.storage_mut();
        assert_eq!(
            key_names(storage, "S", "global", "").unwrap(),
            ["a", "k", "kA", "kb", "k\u{e9}"]
        );
        assert_eq!(
            key_names(storage, "S", "global", "k").unwrap(),
            ["k", "kA", "kb", "k\u{e9}"]
        );
        assert_eq!(key_names(storage, "S", "beta", "").unwrap(), ["k2"]);
        assert!(key_names(storage, "U", "global", "").unwrap().is_empty());
        assert_eq!(
            stores_held(storage).unwrap(),
            "S: 5 key(s), S --scope beta: 1 key(s), T: 1 key(s)"
        );
        assert_eq!(stores_held(&mut MemoryStorage::new()).unwrap(), "no keys");
    }

    #[test]
    fn inspect_shows_lock_versions_and_messages() {
        let mut ds = holding(
            json!({"Data": {}, "GlobalUpdates": [2, [[2, {"Gift": "Gem"}]]],
                           "MetaData": {"ActiveSession": [1001, "job", "GUID"], "LastUpdate": 1_735_689_600, "SessionLoadCount": 3}}),
        );
        let v = inspect(ds.storage_mut(), "S", "global", "k", Some(1_735_689_660)).unwrap();
        assert_eq!(v["lock"]["job_id"], json!("job"));
        assert_eq!(v["lock"]["topic"], json!("PS_GUID"));
        assert_eq!(v["lock"]["seconds_since_last_update"], json!(60));
        // A clock so far off that the difference overflows measures nothing.
        let far = inspect(ds.storage_mut(), "S", "global", "k", Some(i64::MIN)).unwrap();
        assert_eq!(far["lock"]["seconds_since_last_update"], Value::Null);
        assert_eq!(v["lock"]["held_since_ms"], json!(1_735_689_600_000i64));
        assert_eq!(
            v["pending_messages"],
            json!([{"id": 2, "message": {"Gift": "Gem"}, "deliverable": true}])
        );
        assert_eq!(v["versions"].as_array().unwrap().len(), 1);
        assert_eq!(
            inspect(ds.storage_mut(), "S", "global", "nope", None).unwrap()["exists"],
            json!(false)
        );
    }

    /// A lock is shown as the engine reads it: none in a value a start would write over as
    /// junk (no table `Data`), none for an `ActiveSession` that is no lock tag (`[PlaceId,
    /// JobId, ...]`), and no claim for such a `ForceLoadSession`. (Read off the raw value, the
    /// first two showed a lock no engine honours.)
    #[test]
    fn a_lock_is_shown_as_the_engine_reads_it() {
        let lock = |value: Value| {
            let mut ds = holding(value);
            inspect(ds.storage_mut(), "S", "global", "k", None).unwrap()["lock"].clone()
        };
        let meta = |tag: Value, claim: Value| {
            json!({"ActiveSession": tag, "ForceLoadSession": claim,
                   "SessionLoadCount": 1})
        };
        let profile = |meta: Value| json!({"Data": {}, "MetaData": meta, "GlobalUpdates": [0, []]});
        assert_eq!(
            lock(profile(meta(json!(["A", "B", "G"]), json!(null)))),
            Value::Null
        );
        assert_eq!(lock(profile(meta(json!([]), json!(null)))), Value::Null);
        let junk = json!({"MetaData": meta(json!([1, "j", "G"]), json!(null))});
        assert_eq!(lock(junk), Value::Null);
        let held = lock(profile(meta(json!([1, "j", "G"]), json!(["x"]))));
        assert_eq!(
            (
                &held["job_id"],
                &held["topic"],
                &held["force_load_requested_by"]
            ),
            (&json!("j"), &json!("PS_G"), &Value::Null)
        );
        let claimed = lock(profile(meta(json!([1, "j", "G"]), json!([2, "k"]))));
        assert_eq!(claimed["force_load_requested_by"], json!([2, "k"]));
    }

    /// Entries another tool wrote are shown as stored and read as the engine reads them: `[3]`
    /// has an id and no payload, `"junk"` neither, `1.5` and `"4"` are no message ids: none is
    /// deliverable. A `LastUpdate`
    /// written as a float is measured too.
    #[test]
    fn odd_queue_entries_and_a_float_last_update_read_as_the_engine_reads_them() {
        let mut ds = holding(
            json!({"Data": {}, "MetaData": {"ActiveSession": [1001, "job", "G"], "LastUpdate": 1_735_689_600.5},
                           "GlobalUpdates": [3, [[1, {"a": 1}], [3], "junk", [1.5, {"b": 2}], ["4", {"c": 3}]]]}),
        );
        let v = inspect(ds.storage_mut(), "S", "global", "k", Some(1_735_689_660)).unwrap();
        assert_eq!(
            v["pending_messages"],
            json!([
                {"id": 1, "message": {"a": 1}, "deliverable": true},
                {"id": 3, "message": null, "deliverable": false},
                {"id": null, "message": null, "deliverable": false},
                {"id": 1.5, "message": {"b": 2}, "deliverable": false},
                {"id": "4", "message": {"c": 3}, "deliverable": false}
            ])
        );
        assert_eq!(v["lock"]["seconds_since_last_update"], json!(59.5));
    }

    /// A key never written gets the stores the storage holds, named as `inspect` takes them;
    /// a written key, and a removed one (it has versions), get no such hint.
    #[test]
    fn a_key_never_written_is_answered_with_the_stores_held() {
        let mut ds = DataStoreService::new(1_735_689_600);
        let server = crate::datastore::ServerId(0);
        for (store, key) in [("S", "a"), ("S", "b"), ("T", "c")] {
            ds.set_async(
                0.0,
                server,
                &StoreName::new(store),
                key,
                json!(1),
                Default::default(),
            )
            .unwrap();
        }
        let scoped = StoreName::scoped("S", "beta");
        ds.set_async(0.0, server, &scoped, "d", json!(1), Default::default())
            .unwrap();
        ds.remove_async(1.0, server, &StoreName::new("S"), "b")
            .unwrap();
        let mut hint = |key: &str| {
            let answer = inspect(ds.storage_mut(), "S", "global", key, None).unwrap();
            stores_held_if_never_written(ds.storage_mut(), &answer).unwrap()
        };
        assert_eq!(
            hint("nope").as_deref(),
            Some("S: 2 key(s), S --scope beta: 1 key(s), T: 1 key(s)")
        );
        assert_eq!(hint("a"), None);
        assert_eq!(hint("b"), None, "removed, not never written");
        // The scoped store is reached with its scope, and only so.
        assert_eq!(hint("d").as_deref(), hint("nope").as_deref());
        let scoped = inspect(ds.storage_mut(), "S", "beta", "d", None).unwrap();
        assert_eq!(
            (&scoped["exists"], &scoped["value"]),
            (&json!(true), &json!(1))
        );
    }

    /// The lock is held since the first write into the oldest version slot written under the
    /// same lock and generation: later auto-saves keep that time, even those replacing the
    /// slot within its hour; a new generation (or another holder) starts it again.
    #[test]
    fn the_lock_is_held_since_its_first_retained_version() {
        let mut ds = DataStoreService::new(1_735_689_600);
        let hour = 3600.0;
        let locked = |job: &str, count: i64| {
            json!({"Data": {}, "MetaData": {"ActiveSession": [1001, job, "G"],
                    "LastUpdate": 1_735_689_600, "SessionLoadCount": count}})
        };
        let write = |ds: &mut DataStoreService, t: f64, value: Value| {
            let store = StoreName::new("S");
            let server = crate::datastore::ServerId(0);
            ds.set_async(t, server, &store, "k", value, Default::default())
                .unwrap();
        };
        write(&mut ds, 0.0, locked("a", 1));
        write(&mut ds, hour, locked("b", 2));
        // An auto-save later in the hour replaces the hour's version: the time stays.
        write(&mut ds, 1.75 * hour, locked("b", 2));
        write(&mut ds, 2.0 * hour, locked("b", 2));
        write(&mut ds, 3.0 * hour + 60.0, locked("b", 2));
        let held = |ds: &mut DataStoreService| {
            inspect(ds.storage_mut(), "S", "global", "k", None).unwrap()["lock"]["held_since_ms"]
                .clone()
        };
        assert_eq!(
            held(&mut ds),
            json!(1_735_693_200_000i64),
            "since the hour-1 version"
        );
        write(&mut ds, 4.0 * hour, locked("b", 3));
        assert_eq!(
            held(&mut ds),
            json!(1_735_704_000_000i64),
            "a new generation"
        );
        // A generation taken within an hour whose version an older one opened: at most an
        // hour early, never late.
        write(&mut ds, 5.0 * hour + 60.0, locked("c", 4));
        write(&mut ds, 5.5 * hour, locked("d", 5));
        assert_eq!(
            held(&mut ds),
            json!(1_735_689_600_000i64 + 5 * 3_600_000 + 60_000),
            "since the hour-5 slot's first write"
        );
    }
}
