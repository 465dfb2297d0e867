//! The storage backends are interchangeable (issue "harness" §1, "Storage behind one trait"): a
//! fleet run with faults gives the same engine outputs and the same stored contents on memory,
//! on SQLite in memory and on a SQLite file (read back after the run's connection is closed),
//! and a store's export imports into the other backend and exports again unchanged.

use profilestore_harness::export;
use profilestore_harness::fleet::{Fleet, FleetConfig};
use profilestore_harness::invariants;
use profilestore_harness::storage::{MemoryStorage, SqliteStorage, Storage};
use profilestore_harness::trace::Trace;

fn fleet_on(seed: u64, storage: Box<dyn Storage>) -> Fleet {
    let mut config = FleetConfig::new(seed, 3, 20, 600.0, 0.05);
    config.record = true;
    config.crash_rate = 0.05;
    config.shutdown_rate = 0.05;
    config.fault_period = Some(60.0);
    let mut fleet = Fleet::new(config, storage).expect("a valid fleet configuration");
    fleet.run(|_| {});
    fleet
}

#[test]
fn a_fleet_runs_the_same_on_memory_and_on_sqlite() {
    for seed in [21, 22] {
        let mut memory = fleet_on(seed, Box::new(MemoryStorage::new()));
        let mut sqlite = fleet_on(seed, Box::new(SqliteStorage::open_in_memory().unwrap()));
        let (tm, ts) = (
            Trace::of(&memory.world, None).unwrap(),
            Trace::of(&sqlite.world, None).unwrap(),
        );
        assert!(tm.outputs.len() > 1000, "{} outputs", tm.outputs.len());
        assert!(
            tm.to_bytes().unwrap() == ts.to_bytes().unwrap(),
            "seed {seed}: traces differ"
        );
        let em = export::export_string(memory.world.datastore.storage_mut()).unwrap();
        let es = export::export_string(sqlite.world.datastore.storage_mut()).unwrap();
        assert_eq!(em, es, "seed {seed}: contents differ");
    }
}

#[test]
fn a_fleet_on_a_sqlite_file_stores_what_it_stores_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.db");
    let mut memory = fleet_on(24, Box::new(MemoryStorage::new()));
    let file = fleet_on(24, Box::new(SqliteStorage::open(&path).unwrap()));
    let (tm, tf) = (
        Trace::of(&memory.world, None).unwrap(),
        Trace::of(&file.world, None).unwrap(),
    );
    assert!(
        tm.to_bytes().unwrap() == tf.to_bytes().unwrap(),
        "traces differ"
    );
    // The file as another process finds it once this one has let go of it.
    drop(file);
    let mut reopened = SqliteStorage::open_existing(&path).unwrap();
    let em = export::export_string(memory.world.datastore.storage_mut()).unwrap();
    assert!(em.len() > 10_000, "{} bytes exported", em.len());
    assert_eq!(export::export_string(&mut reopened).unwrap(), em);
}

#[test]
fn an_export_moves_between_backends_unchanged() {
    let mut fleet = fleet_on(23, Box::new(MemoryStorage::new()));
    let text = export::export_string(fleet.world.datastore.storage_mut()).unwrap();
    let mut sqlite = SqliteStorage::open_in_memory().unwrap();
    export::import(&mut sqlite, &text, 0).unwrap();
    assert_eq!(export::export_string(&mut sqlite).unwrap(), text);
    let mut back = MemoryStorage::new();
    export::import(&mut back, &text, 0).unwrap();
    assert_eq!(export::export_string(&mut back).unwrap(), text);
}

/// A key whose row on disk is corrupt after a run is reported as unreadable, naming the key and
/// the storage's error, and nothing else is reported of it: before, the check read it as
/// nothing stored and reported the player's acknowledged ops lost.
#[test]
fn a_corrupt_final_value_is_reported_as_unreadable_not_as_lost_saves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.db");
    let config = FleetConfig::new(31, 1, 10, 120.0, 0.0);
    let mut fleet = Fleet::new(config, Box::new(SqliteStorage::open(&path).unwrap())).unwrap();
    fleet.keep_log = true;
    fleet.run(|_| {});
    assert_eq!(invariants::check(&mut fleet), []);
    let acked = fleet.observed.acked_ops[3].len();
    assert!(acked > 0, "Player_3 had ops acknowledged");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE keys SET value = '[1,' WHERE key = 'Player_3'", [])
        .unwrap();
    let found: Vec<(&str, String, String)> = invariants::check(&mut fleet)
        .into_iter()
        .map(|v| (v.invariant, v.key, v.detail))
        .collect();
    assert_eq!(
        found,
        [(
            "stored values read back",
            "Player_3".to_string(),
            "the final value cannot be read: corrupt stored data for PlayerData/global/Player_3: \
             column value is not valid JSON: EOF while parsing a value at line 1 column 3"
                .to_string()
        )]
    );
}
