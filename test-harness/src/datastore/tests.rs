//! The DataStore rules, each pinned with exact values.

use super::*;
use profilestore_core::guid::GuidGenerator;
use profilestore_core::value::json;

const EPOCH: i64 = 1_735_689_600; // 2025-01-01T00:00:00Z, on a UTC hour
const MS0: i64 = EPOCH * 1000;
const HOUR: f64 = 3600.0;
const A: ServerId = ServerId(1);
const B: ServerId = ServerId(2);
const C: ServerId = ServerId(3);

fn store() -> StoreName {
    StoreName::new("PlayerData")
}

fn no_cache() -> GetOptions {
    GetOptions { use_cache: false }
}

fn set(ds: &mut DataStoreService, now: f64, key: &str, value: Value) -> Written {
    ds.set_async(now, A, &store(), key, value, SetOptions::default())
        .unwrap()
}

fn value_at(ds: &mut DataStoreService, now: f64, key: &str) -> Option<Value> {
    ds.get_async(now, C, &store(), key, no_cache())
        .unwrap()
        .value
}

fn versions(ds: &mut DataStoreService, now: f64, key: &str) -> Vec<VersionItem> {
    ds.list_versions_async(now, &store(), key, VersionQuery::default())
        .unwrap()
        .items
}

fn write(value: Value) -> Transformed {
    Transformed::Write {
        value,
        user_ids: None,
        metadata: None,
    }
}

#[test]
fn set_and_get_report_key_info() {
    let mut ds = DataStoreService::new(EPOCH);
    let options = SetOptions {
        user_ids: Some(json!([101])),
        metadata: Some(json!({"Rank": "Gold"})),
    };
    let w = ds
        .set_async(1.5, A, &store(), "k", json!({"Coins": 5}), options)
        .unwrap();
    let info = KeyInfo {
        created_time: MS0 + 1500,
        updated_time: MS0 + 1500,
        version: "000001941F2981DC.0000000001.000001941F2981DC.01".into(),
        user_ids: vec![101],
        metadata: json!({"Rank": "Gold"}),
    };
    assert_eq!(
        w,
        Written {
            value: json!({"Coins": 5}),
            key_info: info.clone()
        }
    );
    let read = ds
        .get_async(1.6, B, &store(), "k", GetOptions::default())
        .unwrap();
    assert_eq!(
        read,
        Read {
            value: Some(json!({"Coins": 5})),
            key_info: Some(info.clone())
        }
    );
    // A write without user ids or metadata clears them; CreatedTime stays.
    let w2 = set(&mut ds, 2.0, "k", json!({"Coins": 6}));
    assert_eq!(
        w2.key_info,
        KeyInfo {
            created_time: MS0 + 1500,
            updated_time: MS0 + 2000,
            version: "000001941F2981DC.0000000002.000001941F2983D0.01".into(),
            user_ids: vec![],
            metadata: json!({}),
        }
    );
    assert!(w2.key_info.version > info.version, "version ids increase");
    assert_eq!(
        read.into_response(),
        DataStoreResponse::Value {
            value: Some(json!({"Coins": 5}).into()),
            key_info: Some(info)
        }
    );
    // A missing key: nil, nil.
    assert_eq!(
        ds.get_async(3.0, A, &store(), "nobody", GetOptions::default())
            .unwrap(),
        Read::none()
    );
}

#[test]
fn scopes_and_store_names_are_separate_keys() {
    let mut ds = DataStoreService::new(EPOCH);
    set(&mut ds, 0.0, "k", json!("global"));
    ds.set_async(
        0.0,
        A,
        &StoreName::scoped("PlayerData", "beta"),
        "k",
        json!("beta"),
        SetOptions::default(),
    )
    .unwrap();
    ds.set_async(
        0.0,
        A,
        &StoreName::new("Other"),
        "k",
        json!("other"),
        SetOptions::default(),
    )
    .unwrap();
    assert_eq!(value_at(&mut ds, 1.0, "k"), Some(json!("global")));
    let beta = ds
        .get_async(
            1.0,
            A,
            &StoreName::scoped("PlayerData", "beta"),
            "k",
            no_cache(),
        )
        .unwrap();
    assert_eq!(beta.value, Some(json!("beta")));
    let other = ds
        .get_async(1.0, A, &StoreName::new("Other"), "k", no_cache())
        .unwrap();
    assert_eq!(other.value, Some(json!("other")));
}

#[test]
fn get_cache_lasts_four_seconds_per_server() {
    let mut ds = DataStoreService::new(EPOCH);
    assert_eq!(
        ds.get_async(0.0, A, &store(), "k", GetOptions::default())
            .unwrap(),
        Read::none()
    );
    set_from(&mut ds, 1.0, B, "k", json!(1));
    // A's read at 0 s is cached until 4 s, nil included.
    assert!(ds.is_cached(3.999, A, &store(), "k"));
    assert_eq!(
        ds.get_async(3.999, A, &store(), "k", GetOptions::default())
            .unwrap()
            .value,
        None
    );
    assert!(!ds.is_cached(4.0, A, &store(), "k"));
    assert_eq!(
        ds.get_async(4.0, A, &store(), "k", GetOptions::default())
            .unwrap()
            .value,
        Some(json!(1))
    );
    // The 4.0 s read restarted the timer: cached until 8 s.
    set_from(&mut ds, 5.0, C, "k", json!(2));
    assert_eq!(
        ds.get_async(7.9, A, &store(), "k", GetOptions::default())
            .unwrap()
            .value,
        Some(json!(1))
    );
    // UseCache = false goes to the backend, and refreshes the cache.
    assert_eq!(
        ds.get_async(7.9, A, &store(), "k", no_cache())
            .unwrap()
            .value,
        Some(json!(2))
    );
    set_from(&mut ds, 8.0, C, "k", json!(3));
    assert_eq!(
        ds.get_async(11.8, A, &store(), "k", GetOptions::default())
            .unwrap()
            .value,
        Some(json!(2))
    );
    // A server's own writes refresh its cache.
    set_from(&mut ds, 20.0, B, "k", json!(4));
    set_from(&mut ds, 21.0, C, "k", json!(5));
    assert_eq!(
        ds.get_async(23.9, B, &store(), "k", GetOptions::default())
            .unwrap()
            .value,
        Some(json!(4))
    );
    assert_eq!(
        ds.get_async(24.0, B, &store(), "k", GetOptions::default())
            .unwrap()
            .value,
        Some(json!(5))
    );
    // Another DataStore object (another scope) has its own cache entry.
    assert!(!ds.is_cached(24.0, B, &StoreName::scoped("PlayerData", "beta"), "k"));
    // With caching off every read goes to the backend.
    let mut plain = DataStoreService::new(EPOCH)
        .with_limits(Limits {
            cache_seconds: None,
            ..Limits::roblox()
        })
        .unwrap();
    plain
        .get_async(0.0, A, &store(), "k", GetOptions::default())
        .unwrap();
    plain
        .set_async(1.0, B, &store(), "k", json!(1), SetOptions::default())
        .unwrap();
    assert_eq!(
        plain
            .get_async(1.0, A, &store(), "k", GetOptions::default())
            .unwrap()
            .value,
        Some(json!(1))
    );
}

fn set_from(ds: &mut DataStoreService, now: f64, server: ServerId, key: &str, value: Value) {
    ds.set_async(now, server, &store(), key, value, SetOptions::default())
        .unwrap();
}

/// Faults where every `GetAsync` that reaches the backend fails (`internal_rejection`).
fn failing_gets() -> Faults {
    let mut faults = Faults::seeded(1);
    faults.per_operation.insert(
        Operation::Get,
        FaultRates {
            fail: 1.0,
            ambiguous: 0.0,
            error: internal_rejection(),
        },
    );
    faults
}

/// `set_fault_rates` replaces the whole fault model's rates, per-operation ones included: the
/// fleet's fault periods switch every operation's faults off and on with it.
#[test]
fn set_fault_rates_replaces_the_per_operation_rates_too() {
    let faults = failing_gets();
    let mut ds = DataStoreService::new(EPOCH).with_faults(faults).unwrap();
    set(&mut ds, 0.0, "k", json!(1));
    assert_eq!(
        ds.get_async(1.0, A, &store(), "k", no_cache()).unwrap_err(),
        internal_rejection()
    );
    ds.set_fault_rates(0.0, 0.0).unwrap();
    for i in 2..12 {
        let read = ds.get_async(f64::from(i), A, &store(), "k", no_cache());
        assert_eq!(read.unwrap().value, Some(json!(1)));
    }
}

/// GetVersionAsync, ListVersionsAsync and ListKeysAsync are never cached (facts, "Caching"):
/// another server's write shows in them at once, while this server's `GetAsync` still answers
/// from its cache.
#[test]
fn version_and_list_reads_are_never_cached() {
    let mut ds = DataStoreService::new(EPOCH);
    set_from(&mut ds, 0.0, B, "k", json!(1));
    let cached = |ds: &mut DataStoreService, now| {
        ds.get_async(now, A, &store(), "k", GetOptions::default())
            .unwrap()
            .value
    };
    assert_eq!(cached(&mut ds, 1.0), Some(json!(1)));
    let second = ds
        .set_async(2.0, B, &store(), "k", json!(2), SetOptions::default())
        .unwrap();
    set_from(&mut ds, 2.0, B, "k2", json!(3));
    assert_eq!(
        cached(&mut ds, 2.5),
        Some(json!(1)),
        "A's GetAsync is cached"
    );
    let version = second.key_info.version.to_string();
    let read = ds.get_version_async(2.5, &store(), "k", &version).unwrap();
    assert_eq!(read.value, Some(json!(2)));
    let newest = VersionQuery {
        direction: SortDirection::Descending,
        ..VersionQuery::default()
    };
    let listed = ds.list_versions_async(2.5, &store(), "k", newest).unwrap();
    assert_eq!(listed.items[0].version, version);
    assert_eq!(listed.items[0].created_time, MS0 + 2000);
    let keys = ds
        .list_keys_async(2.5, &store(), KeyQuery::default())
        .unwrap();
    assert_eq!(keys.items, ["k", "k2"]);
}

#[test]
fn cache_hits_skip_faults_and_throughput() {
    let faults = failing_gets();
    let tiny = ThroughputLimits {
        read_bytes: 1024,
        ..ThroughputLimits::roblox()
    };
    let limits = Limits {
        throughput: Some(tiny),
        ..Limits::roblox()
    };
    let mut ds = DataStoreService::new(EPOCH)
        .with_faults(faults)
        .unwrap()
        .with_limits(limits)
        .unwrap();
    set(&mut ds, 0.0, "k", json!(1));
    // A's SetAsync filled its cache, so these reads never reach the (always failing) backend.
    for i in 0..10 {
        assert_eq!(
            ds.get_async(f64::from(i) * 0.1, A, &store(), "k", GetOptions::default())
                .unwrap()
                .value,
            Some(json!(1))
        );
    }
    assert_eq!(
        ds.get_async(1.0, A, &store(), "k", no_cache()).unwrap_err(),
        internal_rejection()
    );
}

#[test]
fn only_the_first_write_of_a_utc_hour_keeps_a_version() {
    let mut ds = DataStoreService::new(EPOCH);
    let v1 = set(&mut ds, 0.0, "k", json!(1)).key_info.version;
    let v2 = set(&mut ds, 10.0, "k", json!(2)).key_info.version;
    let v3 = set(&mut ds, HOUR - 1.0, "k", json!(3)).key_info.version;
    assert!(v1 < v2 && v2 < v3, "every write gets a new, larger id");
    // One version for the hour, holding the last write of the hour.
    assert_eq!(
        versions(&mut ds, HOUR - 1.0, "k"),
        vec![VersionItem {
            version: v3.to_string(),
            created_time: MS0 + 3_599_000,
            is_deleted: false
        }]
    );
    assert_eq!(
        ds.get_version_async(HOUR - 1.0, &store(), "k", &v1)
            .unwrap(),
        Read::none(),
        "overwritten for good"
    );
    assert_eq!(
        ds.get_version_async(HOUR - 1.0, &store(), "k", &v3)
            .unwrap()
            .value,
        Some(json!(3))
    );
    // The first write of the next hour opens a new version.
    let v4 = set(&mut ds, HOUR, "k", json!(4)).key_info.version;
    let v5 = set(&mut ds, HOUR + 60.0, "k", json!(5)).key_info.version;
    let items = versions(&mut ds, HOUR + 60.0, "k");
    assert_eq!(
        items.iter().map(|v| v.version.clone()).collect::<Vec<_>>(),
        vec![v3, v5.clone()]
    );
    assert_eq!(items[1].created_time, MS0 + 3_660_000);
    assert_eq!(
        ds.get_version_async(HOUR + 60.0, &store(), "k", &v4)
            .unwrap(),
        Read::none()
    );
    let old = ds
        .get_version_async(HOUR + 60.0, &store(), "k", &v5)
        .unwrap();
    assert_eq!(
        old.key_info.map(|k| (k.created_time, k.updated_time)),
        Some((MS0, MS0 + 3_660_000))
    );
    // Without the hourly rule every write keeps a version.
    let mut every = DataStoreService::new(EPOCH)
        .with_limits(Limits {
            version_interval_ms: None,
            ..Limits::roblox()
        })
        .unwrap();
    for i in 0..3 {
        set(&mut every, f64::from(i), "k", json!(i));
    }
    assert_eq!(versions(&mut every, 3.0, "k").len(), 3);
}

/// The hour and the day are UTC's, not counted from a key's first write or the last snapshot:
/// a store whose clock starts at 00:30 UTC opens a version at 01:00 and takes a snapshot again
/// after midnight.
#[test]
fn versions_and_snapshots_follow_utc_hours_and_days() {
    let half_past = EPOCH + 1800; // 2025-01-01T00:30:00Z
    let mut ds = DataStoreService::new(half_past);
    set(&mut ds, 0.0, "k", json!(1)); // 00:30:00
    set(&mut ds, 1740.0, "k", json!(2)); // 00:59:00, same hour
    assert_eq!(versions(&mut ds, 1740.0, "k").len(), 1);
    set(&mut ds, 1799.0, "j", json!(1)); // 00:59:59
    set(&mut ds, 1801.0, "j", json!(2)); // 01:00:01, two seconds later
    set(&mut ds, 1801.0, "k", json!(3)); // 01:00:01, half an hour after k's first write
    let created = |ds: &mut DataStoreService, key: &str| {
        versions(ds, 1801.0, key)
            .iter()
            .map(|v| v.created_time)
            .collect::<Vec<_>>()
    };
    let ms = half_past * 1000;
    assert_eq!(created(&mut ds, "j"), vec![ms + 1_799_000, ms + 1_801_000]);
    assert_eq!(created(&mut ds, "k"), vec![ms + 1_740_000, ms + 1_801_000]);
    // Snapshots: one a UTC day, so 23:59 and 00:01 the next day are both taken.
    assert_eq!(ds.take_snapshot(84_540.0), Ok(())); // 23:59:00
    assert_eq!(ds.take_snapshot(84_599.0), Err(RequestError::SnapshotLimit)); // 23:59:59
    assert_eq!(ds.take_snapshot(84_660.0), Ok(())); // 00:01:00 the next day
}

#[test]
fn a_snapshot_makes_the_next_write_open_a_version() {
    let mut ds = DataStoreService::new(EPOCH);
    set(&mut ds, 0.0, "k", json!(1));
    set(&mut ds, 10.0, "k", json!(2));
    ds.take_snapshot(20.0).unwrap();
    set(&mut ds, 30.0, "k", json!(3));
    set(&mut ds, 40.0, "k", json!(4));
    let items = versions(&mut ds, 50.0, "k");
    assert_eq!(
        items.iter().map(|v| v.created_time).collect::<Vec<_>>(),
        vec![MS0 + 10_000, MS0 + 40_000]
    );
    assert_eq!(ds.take_snapshot(50.0), Err(RequestError::SnapshotLimit));
    assert_eq!(ds.take_snapshot(86_400.0), Ok(()), "one a UTC day");
}

/// A snapshot taken in the millisecond a key's slot opened (a virtual clock puts both at one
/// instant) still keeps that write: the next write opens a version of its own. It used to be
/// merged into the slot, the write the snapshot was to keep overwritten for good. A slot
/// opened in that millisecond after the snapshot takes the hour's writes as usual.
#[test]
fn a_snapshot_in_the_millisecond_of_a_write_keeps_it() {
    let mut ds = DataStoreService::new(EPOCH);
    set(&mut ds, 0.0, "k", json!(1));
    ds.take_snapshot(0.0).unwrap();
    set(&mut ds, 0.0, "j", json!(1));
    set(&mut ds, 10.0, "k", json!(2));
    set(&mut ds, 10.0, "j", json!(2));
    set(&mut ds, 20.0, "k", json!(3));
    let created = |ds: &mut DataStoreService, key: &str| {
        versions(ds, 30.0, key)
            .iter()
            .map(|v| v.created_time)
            .collect::<Vec<_>>()
    };
    assert_eq!(created(&mut ds, "k"), vec![MS0, MS0 + 20_000]);
    assert_eq!(created(&mut ds, "j"), vec![MS0 + 10_000]);
}

#[test]
fn remove_writes_a_tombstone_and_returns_the_previous_value() {
    let mut ds = DataStoreService::new(EPOCH);
    let options = SetOptions {
        user_ids: Some(json!([5])),
        metadata: Some(json!({"a": 1})),
    };
    ds.set_async(0.0, A, &store(), "k", json!(1), options)
        .unwrap();
    let second = set(&mut ds, HOUR, "k", json!(2));
    let removed = ds.remove_async(2.0 * HOUR, A, &store(), "k").unwrap();
    assert_eq!(
        removed,
        Read {
            value: Some(json!(2)),
            key_info: Some(second.key_info.clone())
        }
    );
    assert_eq!(value_at(&mut ds, 2.0 * HOUR, "k"), None);
    assert_eq!(
        ds.get_async(2.0 * HOUR, A, &store(), "k", GetOptions::default())
            .unwrap(),
        Read::none()
    );
    // A second remove: nil, nil, and no new version.
    assert_eq!(
        ds.remove_async(2.0 * HOUR + 1.0, A, &store(), "k").unwrap(),
        Read::none()
    );
    let items = versions(&mut ds, 2.0 * HOUR + 1.0, "k");
    assert_eq!(
        items.iter().map(|v| v.is_deleted).collect::<Vec<_>>(),
        vec![false, false, true]
    );
    // Old versions stay readable; the tombstone version reads as nil with its key info.
    let old = ds
        .get_version_async(2.0 * HOUR, &store(), "k", &items[0].version)
        .unwrap();
    assert_eq!(old.value, Some(json!(1)));
    assert_eq!(old.key_info.unwrap().user_ids, vec![5]);
    let tomb = ds
        .get_version_async(2.0 * HOUR, &store(), "k", &items[2].version)
        .unwrap();
    assert_eq!(
        (tomb.value, tomb.key_info.map(|k| k.updated_time)),
        (None, Some(MS0 + 7_200_000))
    );
    // UpdateAsync sees a removed key as nil, nil.
    let mut seen = Vec::new();
    ds.update_async(2.0 * HOUR + 2.0, A, &store(), "k", &mut |v, k| {
        seen.push((v.cloned(), k.cloned()));
        Transformed::Cancel
    })
    .unwrap();
    assert_eq!(seen, vec![(None, None)]);
    // Removed keys are listed (unless excluded) until they expire 30 days later.
    let listed = |ds: &mut DataStoreService, now: f64, exclude_deleted: bool| {
        let query = KeyQuery {
            exclude_deleted,
            ..KeyQuery::default()
        };
        ds.list_keys_async(now, &store(), query).unwrap().items
    };
    assert_eq!(listed(&mut ds, 3.0 * HOUR, false), vec!["k"]);
    assert_eq!(listed(&mut ds, 3.0 * HOUR, true), Vec::<String>::new());
    let gone = 2.0 * HOUR + 30.0 * 86_400.0;
    assert_eq!(listed(&mut ds, gone - 0.001, false), vec!["k"]);
    assert_eq!(listed(&mut ds, gone, false), Vec::<String>::new());
    assert_eq!(versions(&mut ds, gone, "k"), vec![]);
    // Writing again starts a new key: CreatedTime is the new write's.
    let again = set(&mut ds, gone + 1.0, "k", json!(3));
    assert_eq!(again.key_info.created_time, ds.wall_ms(gone + 1.0));
    assert_eq!(
        again.key_info.version.split('.').nth(1),
        Some("0000000004"),
        "serials keep counting"
    );
}

/// Spec "RemoveAsync": a removal writes a tombstone version and old versions remain listable,
/// even when the write it removes was in the same UTC hour (the hourly rule merges writes, not
/// removals). The write after the removal opens a version too; the one after that merges again.
#[test]
fn a_removal_in_the_hour_of_a_write_keeps_that_writes_version() {
    let mut ds = DataStoreService::new(EPOCH);
    set(&mut ds, 0.0, "k", json!(1));
    let merged = set(&mut ds, 60.0, "k", json!(2)).key_info.version;
    ds.remove_async(120.0, A, &store(), "k").unwrap();
    let shape = |items: &[VersionItem]| {
        items
            .iter()
            .map(|v| (v.created_time - MS0, v.is_deleted))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        shape(&versions(&mut ds, 130.0, "k")),
        vec![(60_000, false), (120_000, true)]
    );
    let removed = ds.get_version_async(130.0, &store(), "k", &merged).unwrap();
    assert_eq!(
        removed.value,
        Some(json!(2)),
        "the removed value stays readable"
    );
    set(&mut ds, 180.0, "k", json!(3));
    set(&mut ds, 240.0, "k", json!(4));
    let items = versions(&mut ds, 250.0, "k");
    assert_eq!(
        shape(&items),
        vec![(60_000, false), (120_000, true), (240_000, false)]
    );
    let latest = ds
        .get_version_async(250.0, &store(), "k", &items[2].version)
        .unwrap();
    assert_eq!(latest.value, Some(json!(4)));
}

/// Spec "RemoveAsync": removed objects are deleted permanently after 30 days. Written again
/// after that, the key starts a new history: its old tombstone does not come back as a
/// superseded version, and no time before the new write finds a version.
#[test]
fn a_key_written_again_after_it_was_gone_for_good_starts_a_new_history() {
    let mut ds = DataStoreService::new(EPOCH);
    set(&mut ds, 0.0, "k", json!(1));
    ds.remove_async(HOUR, A, &store(), "k").unwrap();
    let gone = HOUR + 30.0 * 86_400.0;
    assert_eq!(versions(&mut ds, gone, "k"), vec![]);
    let again = set(&mut ds, gone + 1.0, "k", json!(2)).key_info.version;
    let items = versions(&mut ds, gone + 2.0, "k");
    assert_eq!(
        items
            .iter()
            .map(|v| (v.version.as_str(), v.is_deleted))
            .collect::<Vec<_>>(),
        vec![(again.as_str(), false)]
    );
    for at in [HOUR, gone] {
        let read = ds
            .get_version_at_time_async(gone + 2.0, &store(), "k", ds.wall_ms(at))
            .unwrap();
        assert_eq!(read, Read::none(), "at {at}");
    }
}

#[test]
fn superseded_versions_expire_thirty_days_after_being_superseded() {
    let mut ds = DataStoreService::new(EPOCH);
    let v1 = set(&mut ds, 0.0, "k", json!(1)).key_info.version;
    set(&mut ds, HOUR, "k", json!(2));
    let expiry = HOUR + 30.0 * 86_400.0;
    assert_eq!(versions(&mut ds, expiry - 0.001, "k").len(), 2);
    assert_eq!(
        ds.get_version_async(expiry - 0.001, &store(), "k", &v1)
            .unwrap()
            .value,
        Some(json!(1))
    );
    assert_eq!(
        versions(&mut ds, expiry, "k").len(),
        1,
        "the latest version never expires"
    );
    assert_eq!(
        ds.get_version_async(expiry, &store(), "k", &v1).unwrap(),
        Read::none()
    );
    let mut forever = DataStoreService::new(EPOCH)
        .with_limits(Limits {
            version_retention_ms: None,
            ..Limits::roblox()
        })
        .unwrap();
    set(&mut forever, 0.0, "k", json!(1));
    set(&mut forever, HOUR, "k", json!(2));
    assert_eq!(versions(&mut forever, 1e9, "k").len(), 2);
}

#[test]
fn list_versions_pages_directions_and_dates() {
    let mut ds = DataStoreService::new(EPOCH);
    let ids: Vec<String> = (0..6)
        .map(|h| {
            set(&mut ds, f64::from(h) * HOUR, "k", json!(h))
                .key_info
                .version
                .to_string()
        })
        .collect();
    let now = 6.0 * HOUR;
    let query = VersionQuery {
        page_size: 4,
        ..VersionQuery::default()
    };
    let mut pages = ds.list_versions_async(now, &store(), "k", query).unwrap();
    let names = |p: &VersionPages| {
        p.items
            .iter()
            .map(|v| v.version.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (names(&pages), pages.is_finished),
        (ids[0..4].to_vec(), false)
    );
    ds.advance_versions(now, &mut pages).unwrap();
    assert_eq!(
        (names(&pages), pages.is_finished),
        (ids[4..6].to_vec(), true)
    );
    assert_eq!(
        pages.to_response(),
        DataStoreResponse::Page {
            items: pages.items.clone(),
            is_finished: true
        }
    );
    let err = ds.advance_versions(now, &mut pages).unwrap_err();
    assert_eq!(err.to_string(), "No pages to advance to.");
    let descending = VersionQuery {
        direction: SortDirection::Descending,
        page_size: 4,
        ..VersionQuery::default()
    };
    let mut pages = ds
        .list_versions_async(now, &store(), "k", descending)
        .unwrap();
    assert_eq!(
        names(&pages),
        vec![
            ids[5].clone(),
            ids[4].clone(),
            ids[3].clone(),
            ids[2].clone()
        ]
    );
    ds.advance_versions(now, &mut pages).unwrap();
    assert_eq!(
        (names(&pages), pages.is_finished),
        (vec![ids[1].clone(), ids[0].clone()], true)
    );
    // Dates are inclusive, in epoch ms.
    let window = VersionQuery {
        min_date: Some(MS0 + 7_200_000),
        max_date: Some(MS0 + 14_400_000),
        ..VersionQuery::default()
    };
    let pages = ds.list_versions_async(now, &store(), "k", window).unwrap();
    assert_eq!(
        (names(&pages), pages.is_finished),
        (ids[2..5].to_vec(), true)
    );
    // A key never written has no versions.
    let empty = ds
        .list_versions_async(now, &store(), "nobody", VersionQuery::default())
        .unwrap();
    assert_eq!((empty.items.len(), empty.is_finished), (0, true));
}

#[test]
fn get_version_at_time_picks_the_version_current_then() {
    let mut ds = DataStoreService::new(EPOCH);
    set(&mut ds, 0.0, "k", json!("first"));
    set(&mut ds, 2.0 * HOUR, "k", json!("second"));
    let at = |ds: &mut DataStoreService, ts: i64| {
        ds.get_version_at_time_async(3.0 * HOUR, &store(), "k", ts)
    };
    assert_eq!(at(&mut ds, MS0 - 1).unwrap(), Read::none());
    assert_eq!(
        at(&mut ds, MS0 + 3_600_000).unwrap().value,
        Some(json!("first"))
    );
    assert_eq!(
        at(&mut ds, MS0 + 7_200_000).unwrap().value,
        Some(json!("second"))
    );
    assert_eq!(
        at(&mut ds, 0).unwrap_err(),
        RequestError::InvalidTimestamp { timestamp_ms: 0 }
    );
    let too_late = MS0 + 10_800_000 + 600_001;
    assert_eq!(
        at(&mut ds, too_late).unwrap_err().to_string(),
        "InvalidTimestamp: Timestamp must be positive and not more than ten minutes in the future."
    );
    assert!(at(&mut ds, too_late - 1).is_ok());
    // Its faults and its throttle errors are its own, not `GetVersionAsync`'s.
    ds.script_fault(
        Operation::GetVersionAtTime,
        Fault::Fail(internal_rejection()),
    );
    let version = at(&mut ds, MS0 + 3_600_000).unwrap_err();
    assert_eq!(version, internal_rejection());
    let id = ds.list_versions_async(3.0 * HOUR, &store(), "k", VersionQuery::default());
    let first = id.unwrap().items[0].version.clone();
    assert!(
        ds.get_version_async(3.0 * HOUR, &store(), "k", &first)
            .is_ok()
    );
    assert_eq!(
        Operation::GetVersionAtTime.request_types(),
        &[RequestType::StandardRead]
    );
}

/// Inside an hour whose writes overwrote each other, the time lookup finds the hour's version
/// (the last write of the hour), which `ListVersionsAsync` dates by that last write.
#[test]
fn get_version_at_time_inside_an_overwritten_hour_returns_the_hour_version() {
    let mut ds = DataStoreService::new(EPOCH);
    set(&mut ds, 0.0, "k", json!("a")); // 00:00
    set(&mut ds, 3000.0, "k", json!("b")); // 00:50, overwrites the hour's version
    let at_00_20 = MS0 + 1_200_000;
    let read = ds
        .get_version_at_time_async(3600.0, &store(), "k", at_00_20)
        .unwrap();
    assert_eq!(read.value, Some(json!("b")));
    assert_eq!(read.key_info.map(|k| k.updated_time), Some(MS0 + 3_000_000));
    let listed = |ds: &mut DataStoreService, max_ms: i64| {
        let query = VersionQuery {
            max_date: Some(max_ms),
            ..VersionQuery::default()
        };
        ds.list_versions_async(3600.0, &store(), "k", query)
            .unwrap()
            .items
            .len()
    };
    assert_eq!(listed(&mut ds, at_00_20), 0);
    assert_eq!(listed(&mut ds, MS0 + 3_000_000), 1);
}

/// `ListKeysAsync(prefix, pageSize, cursor, excludeDeleted)`: a listing resumes from a page's
/// cursor in a new call; with `excludeDeleted` a page checks at most 512 keys, and 600 removed
/// keys before a live one give an empty page that is not finished, its cursor past the 512
/// checked, then the live key; once the removed keys are deleted for good (30 days), the live
/// key is on the first page.
#[test]
fn list_keys_resumes_from_a_cursor_and_checks_512_keys_when_excluding_removed_ones() {
    let mut ds = DataStoreService::new(EPOCH);
    for i in 0..600 {
        let key = format!("d{i:03}");
        set(&mut ds, 0.0, &key, json!(i));
        ds.remove_async(1.0, A, &store(), &key).unwrap();
    }
    set(&mut ds, 0.0, "live", json!(1));
    let live_only = KeyQuery {
        page_size: 10,
        exclude_deleted: true,
        ..KeyQuery::default()
    };
    let mut pages = ds
        .list_keys_async(2.0, &store(), live_only.clone())
        .unwrap();
    assert_eq!(
        (pages.items.clone(), pages.is_finished, pages.cursor()),
        (vec![], false, Some("d511"))
    );
    ds.advance_keys(2.0, &mut pages).unwrap();
    assert_eq!(
        (pages.items.clone(), pages.is_finished),
        (vec!["live".to_string()], true)
    );
    // A new call from the first page's cursor goes on where it stopped.
    let resumed = ds
        .list_keys_async(
            2.0,
            &store(),
            KeyQuery {
                cursor: Some("d511".into()),
                ..live_only.clone()
            },
        )
        .unwrap();
    assert_eq!(resumed.items, ["live"]);
    // Removed keys listed too: a page of 3 from a cursor.
    let all = ds
        .list_keys_async(
            2.0,
            &store(),
            KeyQuery {
                page_size: 3,
                cursor: Some("d596".into()),
                ..KeyQuery::default()
            },
        )
        .unwrap();
    assert_eq!(
        (all.items.clone(), all.is_finished, all.cursor()),
        (
            vec!["d597".to_string(), "d598".into(), "d599".into()],
            false,
            Some("d599")
        )
    );
    // Thirty days after their removal the removed keys are gone for good: not listed, and
    // not among the 512 keys a page checks (they used to fill the first page's scan).
    let gone = 1.0 + 30.0 * 86_400.0;
    let pages = ds.list_keys_async(gone, &store(), live_only).unwrap();
    assert_eq!(
        (pages.items.clone(), pages.is_finished),
        (vec!["live".to_string()], true)
    );
}

/// Spec "Request budgets": a server's budget per minute is base + per player × players (60 + 40
/// for reads, writes and removes, 5 + 2 for lists), plus a one-time burst of the base at start;
/// the experience's, shared by all servers, 300 + k × CCU (k = 40 reads, 20 writes, 2 lists,
/// 40 removes). With 7 players on one server, at its start:
#[test]
fn every_request_types_budget_follows_its_formula() {
    let mut ds = DataStoreService::new(EPOCH)
        .with_limits(Limits::roblox())
        .unwrap();
    ds.set_player_count(0.0, A, 7);
    let server: Vec<Option<f64>> = [
        RequestType::StandardRead,
        RequestType::StandardWrite,
        RequestType::StandardList,
        RequestType::StandardRemove,
    ]
    .iter()
    .map(|&kind| ds.request_budget(0.0, A, kind))
    .collect();
    assert_eq!(
        server,
        [
            Some(60.0 + 40.0 * 7.0 + 60.0),
            Some(60.0 + 40.0 * 7.0 + 60.0),
            Some(5.0 + 2.0 * 7.0 + 5.0),
            Some(60.0 + 40.0 * 7.0 + 60.0)
        ]
    );
    let experience: Vec<Option<f64>> = [
        RequestType::StandardRead,
        RequestType::StandardWrite,
        RequestType::StandardList,
        RequestType::StandardRemove,
    ]
    .iter()
    .map(|&kind| ds.experience_budget(0.0, kind))
    .collect();
    assert_eq!(
        experience,
        [
            Some(300.0 + 40.0 * 7.0),
            Some(300.0 + 20.0 * 7.0),
            Some(300.0 + 2.0 * 7.0),
            Some(300.0 + 40.0 * 7.0)
        ]
    );
}

#[test]
fn list_keys_pages_by_prefix() {
    let mut ds = DataStoreService::new(EPOCH);
    for key in ["a3", "b1", "a1", "a2"] {
        set(&mut ds, 0.0, key, json!(key));
    }
    ds.set_async(
        0.0,
        A,
        &StoreName::scoped("PlayerData", "beta"),
        "a9",
        json!(9),
        SetOptions::default(),
    )
    .unwrap();
    ds.remove_async(1.0, A, &store(), "a2").unwrap();
    let query = KeyQuery {
        prefix: "a".into(),
        page_size: 2,
        ..KeyQuery::default()
    };
    let mut pages = ds.list_keys_async(2.0, &store(), query.clone()).unwrap();
    assert_eq!(
        (pages.items.clone(), pages.is_finished),
        (vec!["a1".to_string(), "a2".into()], false)
    );
    ds.advance_keys(2.0, &mut pages).unwrap();
    assert_eq!(
        (pages.items.clone(), pages.is_finished),
        (vec!["a3".to_string()], true)
    );
    assert_eq!(
        ds.advance_keys(2.0, &mut pages),
        Err(RequestError::NoMorePages)
    );
    let live = ds
        .list_keys_async(
            2.0,
            &store(),
            KeyQuery {
                exclude_deleted: true,
                ..query
            },
        )
        .unwrap();
    assert_eq!(
        (live.items, live.is_finished),
        (vec!["a1".to_string(), "a3".into()], true)
    );
    let all = ds
        .list_keys_async(2.0, &store(), KeyQuery::default())
        .unwrap();
    assert_eq!(all.items, ["a1", "a2", "a3", "b1"]);
    let beta = ds
        .list_keys_async(
            2.0,
            &StoreName::scoped("PlayerData", "beta"),
            KeyQuery::default(),
        )
        .unwrap();
    assert_eq!(beta.items, ["a9"]);
}

#[test]
fn increment_adds_to_an_integer() {
    let mut ds = DataStoreService::new(EPOCH);
    let inc = |ds: &mut DataStoreService, key: &str, delta: i64| {
        ds.increment_async(0.0, A, &store(), key, delta, SetOptions::default())
            .map(|w| w.value)
    };
    assert_eq!(inc(&mut ds, "n", 5), Ok(json!(5)));
    assert_eq!(inc(&mut ds, "n", -7), Ok(json!(-2)));
    set(&mut ds, 0.0, "f", json!(3.0));
    assert_eq!(
        inc(&mut ds, "f", 1),
        Ok(json!(4)),
        "Luau numbers: 3.0 is an integer"
    );
    set(&mut ds, 0.0, "s", json!("x"));
    assert_eq!(
        inc(&mut ds, "s", 1).unwrap_err().to_string(),
        "ValueNotInteger: IncrementAsync can't increment a string; the stored value must be an integer."
    );
    set(&mut ds, 0.0, "half", json!(1.5));
    assert_eq!(
        inc(&mut ds, "half", 1),
        Err(RequestError::NotAnInteger {
            found: "the number 1.5".into()
        })
    );
    set(&mut ds, 0.0, "max", json!(i64::MAX));
    assert_eq!(
        inc(&mut ds, "max", 1),
        Err(RequestError::IncrementOverflow {
            current: i64::MAX,
            delta: 1
        })
    );
    assert_eq!(
        value_at(&mut ds, 1.0, "s"),
        Some(json!("x")),
        "a failed increment writes nothing"
    );
}

/// `[[...]]` nested `depth` levels.
fn nested(depth: usize) -> Value {
    let mut v = json!("leaf");
    for _ in 0..depth {
        v = Value::from(vec![v]);
    }
    v
}

/// A value or metadata nested deeper than `MAX_DEPTH` (512) is refused with 104 and writes
/// nothing, whichever call brings it; 512 levels are stored and read back.
#[test]
fn values_nested_deeper_than_the_limit_are_refused_with_104() {
    let mut ds = DataStoreService::new(EPOCH);
    set(&mut ds, 0.0, "k", json!({"Coins": 1}));
    set(&mut ds, 0.0, "max", nested(512));
    assert_eq!(value_at(&mut ds, 0.0, "max"), Some(nested(512)));

    let refused = RequestError::CantStoreValue {
        what: "a value nested deeper than 512 levels".into(),
    };
    assert_eq!(
        refused.to_string(),
        "104: Can't store a value nested deeper than 512 levels in DataStore."
    );
    let set_deep = ds.set_async(1.0, A, &store(), "k", nested(513), SetOptions::default());
    assert_eq!(set_deep.unwrap_err(), refused);
    let mut transform = |_: Option<&Value>, _: Option<&KeyInfo>| write(nested(513));
    let update_deep = ds.update_async(2.0, A, &store(), "k", &mut transform);
    assert_eq!(update_deep.unwrap_err(), refused);
    let meta = SetOptions {
        metadata: Some(json!({ "a": nested(512) })),
        ..SetOptions::default()
    };
    assert_eq!(
        ds.set_async(3.0, A, &store(), "k", json!(2), meta)
            .unwrap_err()
            .to_string(),
        "104: Can't store metadata nested deeper than 512 levels in DataStore."
    );
    // Nothing was written: one version, the first value.
    assert_eq!(value_at(&mut ds, 4.0, "k"), Some(json!({"Coins": 1})));
    assert_eq!(versions(&mut ds, 4.0, "k").len(), 1);
}

#[test]
fn every_size_and_format_limit_has_its_error_code() {
    let mut ds = DataStoreService::new(EPOCH);
    let opts = SetOptions::default;
    let get = |ds: &mut DataStoreService, s: &StoreName, k: &str| {
        ds.get_async(0.0, A, s, k, GetOptions::default())
    };
    let code = |r: Result<Read, RequestError>| r.unwrap_err().to_string();
    assert_eq!(
        code(get(&mut ds, &store(), "")),
        "101: Key name can't be empty."
    );
    assert_eq!(
        code(get(&mut ds, &store(), &"k".repeat(51))),
        "102: Key name exceeds the 50 character limit."
    );
    assert!(get(&mut ds, &store(), &"k".repeat(50)).is_ok());
    assert_eq!(
        code(get(&mut ds, &StoreName::new(&"s".repeat(51)), "k")),
        "102: DataStore name exceeds the 50 character limit."
    );
    assert_eq!(
        code(get(&mut ds, &StoreName::new(""), "k")),
        "101: DataStore name can't be empty."
    );
    assert_eq!(
        code(get(&mut ds, &StoreName::scoped("S", &"c".repeat(51)), "k")),
        "102: Scope exceeds the 50 character limit."
    );
    assert_eq!(
        code(get(&mut ds, &StoreName::scoped("S", ""), "k")),
        "101: Scope can't be empty."
    );
    // 105: the serialized value, quotes included, may be 4,194,304 characters.
    let at_limit = json!("x".repeat(4_194_302));
    assert!(
        ds.set_async(0.0, A, &store(), "big", at_limit, opts())
            .is_ok()
    );
    let over = ds
        .set_async(
            61.0,
            A,
            &store(),
            "big2",
            json!("x".repeat(4_194_303)),
            opts(),
        )
        .unwrap_err();
    assert_eq!(
        over,
        RequestError::ValueTooLarge {
            size: 4_194_305,
            limit: 4_194_304
        }
    );
    assert_eq!(over.to_string(), "105: Serialized value exceeds 4MB limit.");
    assert_eq!(
        ds.set_async(0.0, A, &store(), "nil", Value::Null, opts())
            .unwrap_err()
            .code(),
        Some(103)
    );
    // 511 / 513 / 512 on user ids and metadata.
    let meta = SetOptions {
        metadata: Some(json!({"a": "x".repeat(299)})),
        ..opts()
    };
    assert_eq!(
        ds.set_async(0.0, A, &store(), "m", json!(1), meta)
            .unwrap_err()
            .code(),
        Some(511)
    );
    let meta = SetOptions {
        metadata: Some(json!("text")),
        ..opts()
    };
    assert_eq!(
        ds.set_async(0.0, A, &store(), "m", json!(1), meta)
            .unwrap_err()
            .to_string(),
        "513: Attribute metadata format is invalid."
    );
    let ids = SetOptions {
        user_ids: Some(json!(["1"])),
        ..opts()
    };
    assert_eq!(
        ds.set_async(0.0, A, &store(), "m", json!(1), ids)
            .unwrap_err()
            .to_string(),
        "513: Attribute userId format is invalid."
    );
    let mut few = DataStoreService::new(EPOCH)
        .with_limits(Limits {
            max_user_ids: Some(1),
            ..Limits::roblox()
        })
        .unwrap();
    let ids = SetOptions {
        user_ids: Some(json!([1, 2])),
        ..opts()
    };
    assert_eq!(
        few.set_async(0.0, A, &store(), "m", json!(1), ids)
            .unwrap_err()
            .to_string(),
        "512: UserID size exceeds 1 limit."
    );
    for (service, what) in [(&mut ds, "metadata and user ids"), (&mut few, "512")] {
        assert_eq!(
            value_at(service, 1.0, "m"),
            None,
            "refused writes ({what}) store nothing"
        );
    }
    // The same checks apply to what an UpdateAsync transform returns.
    let err = ds
        .update_async(1.0, A, &store(), "u", &mut |_, _| {
            write(json!("x".repeat(4_194_303)))
        })
        .unwrap_err();
    assert_eq!(err.code(), Some(105));
    let err = ds
        .update_async(1.0, A, &store(), "u", &mut |_, _| Transformed::Write {
            value: json!(1),
            user_ids: Some(json!([1.5])),
            metadata: None,
        })
        .unwrap_err();
    assert_eq!(err.code(), Some(513));
    assert_eq!(value_at(&mut ds, 2.0, "u"), None);
    // The transform's result is checked before the request's fate applies: a request that was
    // to fail is refused for its value, as `SetAsync`'s arguments are.
    ds.script_fault(Operation::Update, Fault::Fail(internal_rejection()));
    let err = ds
        .update_async(2.0, A, &store(), "u", &mut |_, _| {
            write(json!("x".repeat(4_194_303)))
        })
        .unwrap_err();
    assert_eq!(err.code(), Some(105));
    assert_eq!(value_at(&mut ds, 2.0, "u"), None);
    // Turned off: none of it applies.
    let mut free = DataStoreService::new(EPOCH)
        .with_limits(Limits::unlimited())
        .unwrap();
    assert!(
        free.set_async(
            0.0,
            A,
            &store(),
            &"k".repeat(80),
            json!("x".repeat(4_194_303)),
            opts()
        )
        .is_ok()
    );
}

#[test]
fn update_reruns_the_transform_when_another_server_wrote_in_between() {
    let mut ds = DataStoreService::new(EPOCH);
    set(&mut ds, 0.0, "k", json!({"Coins": 10}));
    let mut runs_a = 0;
    let mut transform_a = |v: Option<&Value>| {
        runs_a += 1;
        write(json!({"Coins": v.unwrap()["Coins"].as_i64().unwrap() + 1}))
    };
    let ticket_a = ds.begin_update(1.0, A, &store(), "k").unwrap();
    assert_eq!(
        (ticket_a.value.as_deref().cloned(), ticket_a.read_at),
        (Some(json!({"Coins": 10})), 1.0)
    );
    // B reads and commits while A's request is in flight.
    let ticket_b = ds.begin_update(1.05, B, &store(), "k").unwrap();
    let committed = ds
        .commit_update(1.2, ticket_b, write(json!({"Coins": 100})))
        .unwrap();
    let UpdateCommit::Committed(b) = committed else {
        panic!("B commits: {committed:?}")
    };
    let out = transform_a(ticket_a.value.as_deref());
    let conflict = ds.commit_update(1.3, ticket_a, out).unwrap();
    let UpdateCommit::Conflict(again) = conflict else {
        panic!("A conflicts: {conflict:?}")
    };
    assert_eq!(
        (again.value.as_deref().cloned(), again.key_info.clone()),
        (b.value.as_deref().cloned(), b.key_info)
    );
    let out = transform_a(again.value.as_deref());
    let UpdateCommit::Committed(a) = ds.commit_update(1.3, again, out).unwrap() else {
        panic!()
    };
    assert_eq!(a.value.as_deref().cloned(), Some(json!({"Coins": 101})));
    assert_eq!(runs_a, 2);
    let info = a.key_info.unwrap();
    assert_eq!(
        (info.updated_time, info.version.split('.').nth(1)),
        (MS0 + 1300, Some("0000000003"))
    );
    // In one step with nobody in between the transform runs once and sees the key info.
    let mut runs = Vec::new();
    let read = ds
        .update_async(2.0, A, &store(), "k", &mut |v, k| {
            runs.push(k.map(|k| k.updated_time));
            write(json!({"Coins": v.unwrap()["Coins"].as_i64().unwrap() * 2}))
        })
        .unwrap();
    assert_eq!(runs, vec![Some(MS0 + 1300)]);
    assert_eq!(read.value, Some(json!({"Coins": 202})));
}

#[test]
fn update_cancel_and_transform_errors_write_nothing() {
    let mut ds = DataStoreService::new(EPOCH);
    set(&mut ds, 0.0, "k", json!(1));
    assert_eq!(
        ds.update_async(1.0, A, &store(), "k", &mut |_, _| Transformed::Cancel)
            .unwrap(),
        Read::none()
    );
    let err = ds
        .update_async(1.0, A, &store(), "k", &mut |_, _| {
            Transformed::Error("boom".into())
        })
        .unwrap_err();
    assert_eq!(
        (err.to_string(), err.to_core().message),
        ("boom".to_string(), "boom".to_string())
    );
    assert_eq!(
        ds.update_async(1.0, A, &store(), "k", &mut |_, _| write(Value::Null))
            .unwrap(),
        Read::none()
    );
    // A cancelled update sends no write, so it meets no fault of one (it used to come back
    // with the fault's error): the fault its read drew goes unused.
    for fault in [
        Fault::Fail(internal_rejection()),
        Fault::Ambiguous(internal_rejection()),
    ] {
        ds.script_fault(Operation::Update, fault);
        assert_eq!(
            ds.update_async(1.5, A, &store(), "k", &mut |_, _| Transformed::Cancel)
                .unwrap(),
            Read::none()
        );
    }
    assert_eq!(versions(&mut ds, 2.0, "k").len(), 1);
    let read = ds.get_async(2.0, B, &store(), "k", no_cache()).unwrap();
    assert_eq!(
        read.key_info.unwrap().version.split('.').nth(1),
        Some("0000000001")
    );
    // The transform's user ids and metadata become the key's.
    let read = ds
        .update_async(3.0, A, &store(), "k", &mut |_, _| Transformed::Write {
            value: json!(2),
            user_ids: Some(json!([9])),
            metadata: Some(json!({"Rank": "Gold"})),
        })
        .unwrap();
    let info = read.key_info.unwrap();
    assert_eq!(
        (info.user_ids, info.metadata),
        (vec![9], json!({"Rank": "Gold"}))
    );
    // Returning nil user ids and metadata clears them.
    let read = ds
        .update_async(4.0, A, &store(), "k", &mut |_, _| write(json!(3)))
        .unwrap();
    let info = read.key_info.unwrap();
    assert_eq!((info.user_ids, info.metadata), (vec![], json!({})));
}

#[test]
fn ambiguous_failures_commit_but_report_an_error() {
    let mut ds = DataStoreService::new(EPOCH);
    assert_eq!(
        ds.get_async(0.0, A, &store(), "k", GetOptions::default())
            .unwrap(),
        Read::none()
    );
    ds.script_fault(Operation::Set, Fault::Ambiguous(internal_rejection()));
    let err = ds
        .set_async(1.0, A, &store(), "k", json!(1), SetOptions::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "502: API Services rejected request with error. HTTP 500 (Internal Server Error)"
    );
    assert_eq!(
        ds.get_async(2.0, A, &store(), "k", GetOptions::default())
            .unwrap()
            .value,
        None,
        "A's cache did not learn of it"
    );
    assert_eq!(
        ds.get_async(2.0, A, &store(), "k", no_cache())
            .unwrap()
            .value,
        Some(json!(1)),
        "but it committed"
    );

    ds.script_fault(Operation::Update, Fault::Ambiguous(internal_rejection()));
    let mut runs = 0;
    let err = ds
        .update_async(3.0, A, &store(), "k", &mut |_, _| {
            runs += 1;
            write(json!(2))
        })
        .unwrap_err();
    assert_eq!((err, runs), (internal_rejection(), 1));
    assert_eq!(value_at(&mut ds, 3.0, "k"), Some(json!(2)));

    ds.script_fault(Operation::Update, Fault::Fail(internal_rejection()));
    assert_eq!(
        ds.update_async(4.0, A, &store(), "k", &mut |_, _| write(json!(3)))
            .unwrap_err(),
        internal_rejection()
    );
    assert_eq!(
        value_at(&mut ds, 4.0, "k"),
        Some(json!(2)),
        "a plain failure writes nothing"
    );

    ds.script_fault(Operation::Remove, Fault::Fail(internal_rejection()));
    assert_eq!(
        ds.remove_async(5.0, A, &store(), "k").unwrap_err(),
        internal_rejection()
    );
    assert_eq!(value_at(&mut ds, 5.0, "k"), Some(json!(2)));
    ds.script_fault(Operation::Remove, Fault::Ambiguous(internal_rejection()));
    assert_eq!(
        ds.remove_async(6.0, A, &store(), "k").unwrap_err(),
        internal_rejection()
    );
    assert_eq!(value_at(&mut ds, 6.0, "k"), None);

    // An ambiguous fault decided at the read survives a conflict and applies to the re-run.
    set(&mut ds, 7.0, "k", json!(10));
    ds.script_fault(Operation::Update, Fault::Ambiguous(internal_rejection()));
    let ticket = ds.begin_update(8.0, A, &store(), "k").unwrap();
    set_from(&mut ds, 8.1, B, "k", json!(20));
    let UpdateCommit::Conflict(again) = ds.commit_update(8.2, ticket, write(json!(11))).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        ds.commit_update(8.2, again, write(json!(21))),
        Err(internal_rejection())
    );
    assert_eq!(value_at(&mut ds, 9.0, "k"), Some(json!(21)));
}

#[test]
fn request_budgets_queue_then_drop_with_301_to_306() {
    let mut ds = DataStoreService::new(EPOCH);
    assert_eq!(
        ds.request_budget(0.0, A, RequestType::StandardRead),
        Some(120.0)
    );
    for _ in 0..120 {
        assert_eq!(ds.admit(0.0, A, Operation::Get), Admission::Now);
    }
    for i in 1..=30 {
        assert_eq!(
            ds.admit(0.0, A, Operation::Get),
            Admission::QueuedUntil(f64::from(i))
        );
    }
    let Admission::Rejected(err) = ds.admit(0.0, A, Operation::Get) else {
        panic!()
    };
    assert_eq!(
        err.to_string(),
        "301: GetAsync request dropped. Request was throttled but queue was full."
    );
    // The read queue is full, so an UpdateAsync (read + write) is dropped with 304.
    let Admission::Rejected(err) = ds.admit(0.0, A, Operation::Update) else {
        panic!()
    };
    assert_eq!(err.code(), Some(304));
    for _ in 0..120 {
        assert_eq!(ds.admit(0.0, A, Operation::Remove), Admission::Now);
    }
    for _ in 0..30 {
        assert!(matches!(
            ds.admit(0.0, A, Operation::Remove),
            Admission::QueuedUntil(_)
        ));
    }
    let Admission::Rejected(err) = ds.admit(0.0, A, Operation::Remove) else {
        panic!()
    };
    assert_eq!(err.code(), Some(306));
    // More players, more budget; a fresh server has its own.
    ds.set_player_count(0.0, B, 10);
    assert_eq!(
        ds.request_budget(0.0, B, RequestType::StandardWrite),
        Some(520.0)
    );
    ds.set_rate_limit(
        0.0,
        C,
        RequestType::StandardList,
        Rate {
            base: 1.0,
            per_player: 0.0,
            startup_burst: 0.0,
        },
    )
    .unwrap();
    assert_eq!(ds.admit(0.0, C, Operation::ListKeys), Admission::Now);
    assert_eq!(
        ds.admit(0.0, C, Operation::ListVersions),
        Admission::QueuedUntil(60.0)
    );
    // Off: always now.
    let mut free = DataStoreService::new(EPOCH)
        .with_limits(Limits::unlimited())
        .unwrap();
    assert!((0..1000).all(|_| free.admit(0.0, A, Operation::Update) == Admission::Now));
    assert_eq!(free.request_budget(0.0, A, RequestType::StandardRead), None);
}

#[test]
fn per_key_throughput_throttles_reads_and_writes() {
    let mut ds = DataStoreService::new(EPOCH);
    // 4,194,304 bytes serialized = 4096 units: the whole minute's write budget of the key.
    set(&mut ds, 0.0, "big", json!("x".repeat(4_194_302)));
    // Six 4096-unit reads fit in 25 MB (25,600 units); the seventh does not.
    for i in 1..=6 {
        assert!(
            ds.get_async(f64::from(i), B, &store(), "big", no_cache())
                .is_ok()
        );
    }
    let err = ds
        .get_async(7.0, B, &store(), "big", no_cache())
        .unwrap_err();
    assert_eq!(
        err,
        RequestError::KeyThrottled {
            kind: Throughput::Read,
            used_units: 24_576,
            request_units: 4096,
            limit_units: 25_600,
            // Room once the read at 1 s leaves the 60 s window.
            ready_at: Some(61.0),
        }
    );
    assert_eq!(
        err.to_string(),
        "KeyThrottled: The request rate exceeds the allowed maximum for the key."
    );
    let err = ds
        .set_async(30.0, A, &store(), "big", json!(1), SetOptions::default())
        .unwrap_err();
    assert_eq!(
        err,
        RequestError::KeyThrottled {
            kind: Throughput::Write,
            used_units: 4096,
            request_units: 1,
            limit_units: 4096,
            ready_at: Some(60.0),
        }
    );
    assert!(
        ds.set_async(30.0, A, &store(), "other", json!(1), SetOptions::default())
            .is_ok(),
        "per key"
    );
    assert!(
        ds.set_async(60.0, A, &store(), "big", json!(1), SetOptions::default())
            .is_ok(),
        "the window slid"
    );
    // An UpdateAsync counts its read and its write.
    let mut small = DataStoreService::new(EPOCH)
        .with_limits(Limits {
            throughput: Some(ThroughputLimits {
                write_bytes: 2048,
                ..ThroughputLimits::roblox()
            }),
            ..Limits::roblox()
        })
        .unwrap();
    small
        .update_async(0.0, A, &store(), "k", &mut |_, _| write(json!(1)))
        .unwrap();
    small
        .update_async(1.0, A, &store(), "k", &mut |_, _| write(json!(2)))
        .unwrap();
    let err = small
        .update_async(2.0, A, &store(), "k", &mut |_, _| write(json!(3)))
        .unwrap_err();
    assert!(matches!(
        err,
        RequestError::KeyThrottled {
            kind: Throughput::Write,
            ..
        }
    ));
    // Its read: two units of reads a minute let two updates through, not a third.
    let mut small = DataStoreService::new(EPOCH)
        .with_limits(Limits {
            throughput: Some(ThroughputLimits {
                read_bytes: 2048,
                ..ThroughputLimits::roblox()
            }),
            ..Limits::roblox()
        })
        .unwrap();
    for t in [0.0, 1.0] {
        small
            .update_async(t, A, &store(), "k", &mut |_, _| write(json!(1)))
            .unwrap();
    }
    let err = small
        .update_async(2.0, A, &store(), "k", &mut |_, _| write(json!(3)))
        .unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::KeyThrottled {
                kind: Throughput::Read,
                used_units: 2,
                request_units: 1,
                limit_units: 2,
                ..
            }
        ),
        "{err:?}"
    );
    let mut free = DataStoreService::new(EPOCH)
        .with_limits(Limits::unlimited())
        .unwrap();
    for i in 0..3 {
        free.set_async(
            f64::from(i),
            A,
            &store(),
            "big",
            json!("x".repeat(4_194_302)),
            SetOptions::default(),
        )
        .unwrap();
    }
}

/// A store without limits but per-key throughput.
fn key_throughput_only(throughput: ThroughputLimits) -> DataStoreService {
    DataStoreService::new(EPOCH)
        .with_limits(Limits {
            throughput: Some(throughput),
            ..Limits::unlimited()
        })
        .unwrap()
}

/// A request the key's throughput refuses has not run: it draws no fault, so a scripted fault
/// waits for the attempt that goes.
#[test]
fn a_throttled_attempt_draws_no_fault() {
    let mut ds = key_throughput_only(ThroughputLimits {
        write_bytes: 1024,
        ..ThroughputLimits::roblox()
    });
    set(&mut ds, 0.0, "k", json!(1));
    ds.script_fault(Operation::Remove, Fault::Ambiguous(internal_rejection()));
    let err = ds.remove_async(1.0, A, &store(), "k").unwrap_err();
    assert!(matches!(err, RequestError::KeyThrottled { ready_at: Some(t), .. } if t == 60.0));
    assert_eq!(
        value_at(&mut ds, 1.0, "k"),
        Some(json!(1)),
        "nothing written"
    );
    // At 60 s the removal goes, meets its scripted fault, commits and reports it.
    let err = ds.remove_async(60.0, A, &store(), "k").unwrap_err();
    assert_eq!(err, internal_rejection());
    assert_eq!(value_at(&mut ds, 60.0, "k"), None, "removed all the same");
}

/// An update whose re-read after a conflict the key cannot take yet comes back to be committed
/// later (and re-read then), instead of failing.
#[test]
fn a_conflict_re_read_out_of_throughput_is_handed_back() {
    let mut ds = key_throughput_only(ThroughputLimits {
        read_bytes: 2048,
        ..ThroughputLimits::roblox()
    });
    let a = ds.begin_update(0.0, A, &store(), "k").unwrap();
    let b = ds.begin_update(0.5, B, &store(), "k").unwrap();
    assert!(matches!(
        ds.commit_update(1.0, a, write(json!("a"))).unwrap(),
        UpdateCommit::Committed(_)
    ));
    // B's write conflicts; its re-read would be the key's third read unit in a minute.
    let UpdateCommit::Throttled {
        ticket,
        output,
        error,
    } = ds.commit_update(1.5, b, write(json!("b"))).unwrap()
    else {
        panic!("handed back")
    };
    assert!(matches!(error, RequestError::KeyThrottled { ready_at: Some(t), .. } if t == 60.0));
    assert_eq!(output, write(json!("b")));
    // Committed again at 60 s: the conflict is found again and the re-read goes.
    let UpdateCommit::Conflict(fresh) = ds.commit_update(60.0, *ticket, output).unwrap() else {
        panic!("re-read")
    };
    assert_eq!(fresh.value.as_deref(), Some(&json!("a")));
}

/// A random workload of every call kind on a seeded fault model; the full outcome log.
fn workload(fault_seed: u64) -> Vec<String> {
    workload_on(fault_seed, Box::new(crate::storage::MemoryStorage::new()))
}

/// [`workload`] on `storage`.
fn workload_on(fault_seed: u64, storage: Box<dyn crate::storage::Storage>) -> Vec<String> {
    let faults = Faults::seeded(fault_seed)
        .with_rates(0.15, 0.1)
        .with_latency(0.05, 0.4);
    let mut ds = DataStoreService::new(EPOCH)
        .with_faults(faults)
        .unwrap()
        .with_storage(storage);
    let mut choose = GuidGenerator::new(99);
    let mut log = Vec::new();
    let mut now = 0.0;
    for _ in 0..400 {
        now += 20.0 * choose.next_f64();
        let server = ServerId(choose.next_u64() % 3);
        let key = format!("k{}", choose.next_u64() % 4);
        let entry = match choose.next_u64() % 6 {
            0 => format!(
                "{:?}",
                ds.get_async(now, server, &store(), &key, GetOptions::default())
            ),
            1 => format!(
                "{:?}",
                ds.set_async(
                    now,
                    server,
                    &store(),
                    &key,
                    json!(now),
                    SetOptions::default()
                )
            ),
            2 => format!(
                "{:?}",
                ds.increment_async(now, server, &store(), &key, 1, SetOptions::default())
            ),
            3 => format!(
                "{:?}",
                ds.update_async(now, server, &store(), &key, &mut |v, _| write(json!([
                    v.cloned(),
                    now
                ])))
            ),
            4 => format!("{:?}", ds.remove_async(now, server, &store(), &key)),
            _ => format!(
                "{:?}",
                ds.list_versions_async(now, &store(), &key, VersionQuery::default())
            ),
        };
        log.push(format!(
            "{now:.3} {:?} {entry} latency={}",
            server,
            ds.sample_latency()
        ));
    }
    log.push(format!("{:?}", crate::export::export(ds.storage_mut())));
    log
}

#[test]
fn same_seed_same_outcomes() {
    let first = workload(5);
    assert_eq!(first, workload(5));
    let failures = first
        .iter()
        .filter(|l| l.contains("RequestRejected"))
        .count();
    assert!(
        failures > 40,
        "the fault model was active: {failures} failures"
    );
    assert_ne!(first, workload(6));
}

/// The two backends behind the Storage trait are one DataStore: the same random workload (over
/// two hours of UTC-hour version slots, removals, increments, conflicts and faults) gives the
/// same answers, latencies and final contents on both.
#[test]
fn memory_and_sqlite_give_the_same_outcomes() {
    for seed in [5, 6, 7] {
        let sqlite = crate::storage::SqliteStorage::open_in_memory().unwrap();
        let on_sqlite = workload_on(seed, Box::new(sqlite));
        let on_memory = workload(seed);
        assert_eq!(on_memory.len(), on_sqlite.len());
        for (i, (m, q)) in on_memory.iter().zip(&on_sqlite).enumerate() {
            assert_eq!(m, q, "seed {seed}, entry {i}");
        }
    }
}

#[test]
fn sqlite_backed_service_keeps_everything_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("datastore.db");
    let open = || {
        let storage = crate::storage::SqliteStorage::open(&file).unwrap();
        DataStoreService::new(EPOCH).with_storage(Box::new(storage))
    };
    let mut ds = open();
    let options = SetOptions {
        user_ids: Some(json!([101])),
        metadata: Some(json!({"Rank": "Gold"})),
    };
    let w1 = ds
        .set_async(0.0, A, &store(), "k", json!({"Coins": 1}), options)
        .unwrap();
    ds.update_async(HOUR, A, &store(), "k", &mut |_, _| {
        write(json!({"Coins": 2}))
    })
    .unwrap();
    set(&mut ds, 0.0, "gone", json!(0));
    ds.remove_async(10.0, A, &store(), "gone").unwrap();
    let before = (
        versions(&mut ds, HOUR, "k"),
        ds.get_async(HOUR, B, &store(), "k", no_cache()).unwrap(),
    );
    drop(ds);

    let mut ds = open();
    assert_eq!(
        (
            versions(&mut ds, HOUR, "k"),
            ds.get_async(HOUR, B, &store(), "k", no_cache()).unwrap()
        ),
        before
    );
    let first = ds
        .get_version_async(HOUR, &store(), "k", &w1.key_info.version)
        .unwrap();
    assert_eq!(first.value, Some(json!({"Coins": 1})));
    assert_eq!(first.key_info.unwrap().user_ids, vec![101]);
    assert_eq!(value_at(&mut ds, HOUR, "gone"), None);
    assert_eq!(
        ds.list_keys_async(HOUR, &store(), KeyQuery::default())
            .unwrap()
            .items,
        ["gone", "k"]
    );
    // Writing continues the serials where the first process left off.
    let w3 = set(&mut ds, 2.0 * HOUR, "k", json!({"Coins": 3}));
    assert_eq!(w3.key_info.version.split('.').nth(1), Some("0000000003"));
}

#[test]
fn version_ids_have_roblox_layout() {
    for (created, serial, written) in [
        (0, 0, 0),
        (1_735_689_600_000, 1, 1_735_689_601_500),
        (-5, 7, -1),
        (i64::MAX, 9_999_999_999, i64::MAX),
        (0x0123_4567_89AB_CDEF, 10_000_000_000, 1),
        (42, u64::MAX, 43),
    ] {
        assert_eq!(
            version_id(created, serial, written),
            format!(
                "{:016X}.{serial:010}.{:016X}.01",
                created.max(0),
                written.max(0)
            )
        );
    }
    assert_eq!(
        version_id(1_735_689_600_000, 2, 1_735_689_602_000),
        "000001941F297C00.0000000002.000001941F2983D0.01"
    );
}

/// A failure of the storage itself reaches the caller as `InternalServerError`, as a server
/// error of Roblox's would, and is counted apart from simulated faults, naming the failure.
#[test]
fn storage_failures_are_counted_apart_from_faults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("datastore.db");
    let storage = crate::storage::SqliteStorage::open(&file).unwrap();
    let mut ds = DataStoreService::new(EPOCH).with_storage(Box::new(storage));
    set(&mut ds, 0.0, "k", json!(1));
    ds.script_fault(Operation::Set, Fault::Fail(internal_rejection()));
    assert!(
        ds.set_async(1.0, A, &store(), "k", json!(2), SetOptions::default())
            .is_err()
    );
    assert_eq!(
        ds.storage_failures(),
        (0, None),
        "a simulated fault is not one"
    );
    // Another program breaks the database under the service.
    let other = rusqlite::Connection::open(&file).unwrap();
    other.execute_batch("DROP TABLE versions;").unwrap();
    let err = ds
        .set_async(2.0, A, &store(), "k", json!(3), SetOptions::default())
        .unwrap_err();
    let RequestError::InternalServerError { detail } = &err else {
        panic!("{err:?}")
    };
    let (count, first) = ds.storage_failures();
    assert_eq!((count, first), (1, Some(detail.as_str())));
    assert!(detail.starts_with("database error during "), "{detail}");
}

/// A store kept from an earlier run and reopened by a service whose clock starts earlier (the
/// same epoch, a new run) holds times after the new clock's: a write is then made at the key's
/// last time, so the key's times and versions never go back and the store still exports. (It
/// used to write an `UpdatedTime` before the last, into a version opened after it was
/// created, which export refuses as corrupt.)
#[test]
fn a_write_never_goes_back_before_the_keys_last_time() {
    let mut ds = DataStoreService::new(EPOCH);
    set(&mut ds, 100.0, "k", json!(1));
    set(&mut ds, 200.0, "k", json!(2));
    let mut ds = DataStoreService::new(EPOCH).with_storage(ds.into_storage());
    let written = set(&mut ds, 50.0, "k", json!(3));
    assert_eq!(
        (written.key_info.created_time, written.key_info.updated_time),
        (MS0 + 100_000, MS0 + 200_000)
    );
    // A removal, and a write in an hour before the key's: still at its last time.
    ds.remove_async(60.0, A, &store(), "k").unwrap();
    let written = set(&mut ds, -3600.0, "k", json!(4));
    assert_eq!(written.key_info.updated_time, MS0 + 200_000);
    assert_eq!(value_at(&mut ds, 70.0, "k"), Some(json!(4)));
    crate::export::export(&mut *ds.into_storage()).expect("the store exports");
    // The same with the file reopened, as a second run on one database does.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("datastore.db");
    let open = || Box::new(crate::storage::SqliteStorage::open(&file).unwrap());
    let mut ds = DataStoreService::new(EPOCH).with_storage(open());
    set(&mut ds, 200.0, "k", json!(1));
    drop(ds);
    let mut ds = DataStoreService::new(EPOCH).with_storage(open());
    let written = set(&mut ds, 50.0, "k", json!(2));
    assert_eq!(written.key_info.updated_time, MS0 + 200_000);
    crate::export::export(&mut *ds.into_storage()).expect("the file exports");
}
