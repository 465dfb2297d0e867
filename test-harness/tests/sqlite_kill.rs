//! The on-disk store survives a writer process being killed mid-run: every key reopens as a
//! complete committed value (head and latest version from the same transaction), and every write
//! the killed process reported as committed is there.
//!
//! The test re-runs its own binary (`std::env::current_exe()`) with `PSH_KILL_TEST_DB` set; in
//! that child, `killed_writer_child` (an ignored test the parent runs with `--ignored`) writes in
//! a loop and prints `committed KEY N` after each write returns, until the parent kills it. A
//! kill at a moment the parent picks lands wherever the writer is; the second test makes sure
//! of the case that matters most: its child (`paused_writer_child`) stops at a commit, its
//! write made and `COMMIT` begun but not yet written (a SQLite commit hook that never
//! returns), and is killed there. (A kill halfway through writing a commit to the WAL is not
//! forced: SQLite offers no hook there.)

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use profilestore_core::value::{Value, json};
use profilestore_harness::datastore::{
    DataStoreService, GetOptions, Limits, ServerId, SetOptions, StoreName,
};
use profilestore_harness::storage::{KeyPath, SqliteStorage, Storage};

const ENV: &str = "PSH_KILL_TEST_DB";
const KEYS: u64 = 5;

/// A value whose parts must agree: `n`, the key, a pad of `n`-dependent length, its checksum.
fn value_for(key: &str, n: u64) -> Value {
    let pad: String = (0..(2000 + (n * 7919) % 60_000))
        .map(|i| char::from(b'a' + ((n + i) % 26) as u8))
        .collect();
    json!({"key": key, "n": n, "pad": pad.clone(), "sum": checksum(&pad)})
}

fn checksum(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn check_complete(key: &str, v: &Value) -> u64 {
    let n = v["n"]
        .as_u64()
        .unwrap_or_else(|| panic!("{key}: no n in {v}"));
    assert_eq!(
        v,
        &value_for(key, n),
        "{key}: the stored value is not one complete write"
    );
    n
}

/// The child: writes until killed. Ignored in a normal test run (it is not a test of its own);
/// the parent runs it with `--ignored`.
#[test]
#[ignore = "the child process of sqlite_store_survives_a_killed_writer"]
fn killed_writer_child() {
    // Run on its own (`--include-ignored`), it has nothing to do.
    let Ok(file) = std::env::var(ENV) else { return };
    let storage = SqliteStorage::open(&file).expect("child opens the database");
    write_until_killed(storage);
}

/// The commit [`paused_writer_child`] stops at.
const PAUSE_AT: u64 = 120;

/// The child of [`a_writer_killed_at_a_commit_loses_only_that_write`]: writes as
/// [`killed_writer_child`] does, and stops at commit [`PAUSE_AT`] (a commit hook that prints
/// `paused` and never returns).
#[test]
#[ignore = "the child process of a_writer_killed_at_a_commit_loses_only_that_write"]
fn paused_writer_child() {
    let Ok(file) = std::env::var(ENV) else { return };
    let mut conn = rusqlite::Connection::open(&file).expect("child opens the database");
    let mut commits = 0;
    conn.commit_hook(Some(move || {
        commits += 1;
        if commits == PAUSE_AT {
            println!("paused");
            let _ = std::io::Write::flush(&mut std::io::stdout());
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        false
    }))
    .expect("install the hook");
    write_until_killed(SqliteStorage::from_connection(conn).expect("child opens the schema"));
}

/// Writes `value_for(key, n)` to key `k{n % KEYS}` for n = 0, 1, ..., printing `writing KEY N`
/// before each write and `committed KEY N` after it returns.
fn write_until_killed(storage: SqliteStorage) {
    let mut ds = DataStoreService::new(1_735_689_600)
        .with_limits(Limits::unlimited())
        .unwrap()
        .with_storage(Box::new(storage));
    let store = StoreName::new("PlayerData");
    for n in 0u64.. {
        let key = format!("k{}", n % KEYS);
        // 700 s per write: some writes share a UTC hour (a version is replaced), some open one.
        let now = n as f64 * 700.0;
        println!("writing {key} {n}");
        ds.set_async(
            now,
            ServerId(1),
            &store,
            &key,
            value_for(&key, n),
            SetOptions::default(),
        )
        .expect("child write");
        println!("committed {key} {n}");
    }
}

/// Runs the child test `name` of this binary on the database `file`, its output piped.
fn spawn_writer(name: &str, file: &std::path::Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV, file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the writer")
}

#[test]
fn sqlite_store_survives_a_killed_writer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("killed.db");
    let mut child = spawn_writer("killed_writer_child", &file);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut reported: BTreeMap<String, u64> = BTreeMap::new();
    let mut count = 0;
    // Let it commit a few hundred writes, then kill it wherever it is (however long that
    // takes: a test holds no wall-clock deadline).
    while count < 300 {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(rest) = line.strip_prefix("committed ") {
            let (key, n) = rest.split_once(' ').unwrap();
            reported.insert(key.to_string(), n.parse().unwrap());
            count += 1;
        }
    }
    child.kill().expect("kill the writer");
    child.wait().unwrap();
    // Lines printed before the kill were committed too.
    for line in lines.map_while(Result::ok) {
        if let Some((key, n)) = line
            .strip_prefix("committed ")
            .and_then(|r| r.split_once(' '))
        {
            reported.insert(key.to_string(), n.parse().unwrap());
        }
    }
    assert_eq!(
        count, 300,
        "the writer stopped by itself after {count} writes"
    );

    let mut storage = SqliteStorage::open(&file).expect("reopen after the kill");
    let paths = storage.paths().unwrap();
    assert_eq!(paths.len(), KEYS as usize);
    for path in &paths {
        let head = storage.head(path).unwrap().unwrap();
        let n = check_complete(path.key(), head.value.as_ref().unwrap());
        assert!(
            n >= reported[path.key().as_str()],
            "{}: write {} was reported committed, found {n}",
            path.key(),
            reported[path.key().as_str()]
        );
        assert_eq!(
            head.serial,
            n / KEYS + 1,
            "{}: one serial per write",
            path.key()
        );
        // Head and latest version were committed together.
        let latest = storage.latest_version(path).unwrap().unwrap();
        assert_eq!(
            (latest.version.as_str(), latest.value.as_ref()),
            (head.version.as_str(), head.value.as_ref())
        );
        for v in storage.versions(path).unwrap() {
            check_complete(path.key(), v.value.as_ref().unwrap());
        }
    }
    // And the DataStore reads it back.
    let mut ds = DataStoreService::new(1_735_689_600).with_storage(Box::new(storage));
    let read = ds
        .get_async(
            0.0,
            ServerId(2),
            &StoreName::new("PlayerData"),
            "k0",
            GetOptions::default(),
        )
        .unwrap();
    check_complete("k0", read.value.as_ref().unwrap());
    assert_eq!(paths[0], KeyPath::new("PlayerData", "global", "k0"));
}

/// A writer killed at a commit (its write made, `COMMIT` begun, nothing of it written yet):
/// the database reopens with every write it reported committed and nothing of the one it was
/// committing (that key's head is its write before), and the head and latest version agree.
#[test]
fn a_writer_killed_at_a_commit_loses_only_that_write() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("paused.db");
    let mut child = spawn_writer("paused_writer_child", &file);
    let mut committed: BTreeMap<String, u64> = BTreeMap::new();
    let mut writing = None;
    let mut paused = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line == "paused" {
            paused = true;
            break;
        }
        let parse = |rest: &str| {
            let (key, n) = rest.split_once(' ').unwrap();
            (key.to_string(), n.parse::<u64>().unwrap())
        };
        if let Some(rest) = line.strip_prefix("writing ") {
            writing = Some(parse(rest));
        } else if let Some(rest) = line.strip_prefix("committed ") {
            let (key, n) = parse(rest);
            committed.insert(key, n);
        }
    }
    child.kill().expect("kill the writer");
    child.wait().unwrap();
    assert!(paused, "the writer ended before its commit {PAUSE_AT}");
    // The paused commit is write n's (opening the database committed the schema first): n
    // begun, every write before it returned.
    let (key, n) = writing.expect("a write in progress");
    assert_eq!(committed.values().max(), Some(&(n - 1)));
    // Commit 120 of the connection is write 117: opening the database made three first.
    assert_eq!((key.as_str(), n), ("k2", 117));

    let mut storage = SqliteStorage::open(&file).expect("reopen after the kill");
    let paths = storage.paths().unwrap();
    assert_eq!(paths.len(), KEYS as usize);
    for path in &paths {
        let head = storage.head(path).unwrap().unwrap();
        let found = check_complete(path.key(), head.value.as_ref().unwrap());
        // Exactly the last write reported, for the paused key as for the others.
        assert_eq!(found, committed[path.key().as_str()], "{}", path.key());
        let latest = storage.latest_version(path).unwrap().unwrap();
        assert_eq!(
            (latest.version.as_str(), latest.value.as_ref()),
            (head.version.as_str(), head.value.as_ref())
        );
    }
    // The paused key among them (its write before is its last reported, checked above).
    assert!(committed.contains_key(&key), "{key}");
}
