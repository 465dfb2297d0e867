//! The `profilestore-sim` command end to end: simulate with a trace, replay it, import the
//! golden fixture and inspect a key, compare a scenario with the original's trace, and clear
//! errors for bad arguments.

use std::process::Command;

use profilestore_harness::storage::SqliteStorage;

/// Whether `device` exists; on Linux, where it always does, its absence fails the test
/// (elsewhere the part of the test that needs it is skipped, saying so).
fn has(device: &str) -> bool {
    let there = std::path::Path::new(device).exists();
    if !there {
        skipped(device);
    }
    there
}

/// Says a part of a test needing `what` was skipped; on Linux, where it is always there,
/// fails the test instead.
fn skipped(what: &str) {
    if cfg!(target_os = "linux") {
        panic!("{what} is missing: every Linux system has it");
    }
    eprintln!("skipped: no {what} on this system");
}

fn sim(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_profilestore-sim"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A run far too long to end during a test (10 virtual hours of 2,000 players): one stopped or
/// killed as it goes.
const LONG: [&str; 7] = [
    "simulate",
    "--servers",
    "4",
    "--players",
    "2000",
    "--duration",
    "10h",
];

/// `profilestore-sim` with `args`, run in `dir` with `tmp` as its temporary folder (its output
/// piped), returned once `ready` says the run is under way.
fn started(
    args: &[&str],
    dir: &std::path::Path,
    tmp: &std::path::Path,
    ready: &dyn Fn() -> bool,
) -> std::process::Child {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let mut child = Command::new(env!("CARGO_BIN_EXE_profilestore-sim"))
        .args(args)
        .current_dir(dir)
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !ready() {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            panic!("it ended first: {}", String::from_utf8_lossy(&out.stderr));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run never got under way");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// A child process killed if the test fails before it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fixtures() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures").to_string()
}

/// A run writing its database holds it: another `simulate` on the same file, which would
/// delete it under the run, and an `import` into it are refused, naming the lock; the run's
/// database is left to it.
#[test]
fn a_database_a_run_is_writing_is_not_replaced_under_it() {
    let (dir, tmp) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = dir.path().join("profilestore-sim.db");
    let lock = dir.path().join("profilestore-sim.db.lock");
    // Under way once its database has its tables (the lock is taken before they are made).
    let ready = || db.exists() && SqliteStorage::open_existing(&db).is_ok();
    let running = KillOnDrop(started(&LONG, dir.path(), tmp.path(), &ready));
    let said = "profilestore-sim: another profilestore-sim command is using \
                profilestore-sim.db (profilestore-sim.db.lock is locked)\n";
    let short = ["simulate", "--players", "2", "--duration", "1m"];
    let (code, _, stderr) = sim(&short, dir.path());
    assert_eq!((code, stderr.as_str()), (2, said));
    let golden = format!("{}/original-golden.json", fixtures());
    let (code, _, stderr) = sim(&["import", &golden], dir.path());
    assert_eq!((code, stderr.as_str()), (2, said));
    assert!(db.exists() && lock.exists());
    drop(running);
    // Once the run is gone, the next run replaces the database.
    let (code, _, stderr) = sim(&short, dir.path());
    assert_eq!(code, 0, "{stderr}");
}

/// A database whose lock another command holds is said to be in use even before that command
/// has made its tables (a file that is not yet a profilestore database); once the lock is free,
/// the same file is refused as no profilestore database.
#[test]
fn a_held_database_without_tables_yet_is_said_to_be_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profilestore-sim.db");
    std::fs::write(&db, "not yet a database").unwrap();
    let held = std::fs::File::create(dir.path().join("profilestore-sim.db.lock")).unwrap();
    held.try_lock().unwrap();
    let short = ["simulate", "--players", "2", "--duration", "1m"];
    let (code, _, stderr) = sim(&short, dir.path());
    let said = "profilestore-sim: another profilestore-sim command is using \
                profilestore-sim.db (profilestore-sim.db.lock is locked)\n";
    assert_eq!((code, stderr.as_str()), (2, said));
    drop(held);
    // A command another test thread was starting while `held` was open holds a copy of it
    // until it has started (then it is closed): asked again while that copy lasts.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let (code, stderr) = loop {
        let (code, _, stderr) = sim(&short, dir.path());
        if stderr != said || std::time::Instant::now() > deadline {
            break (code, stderr);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let not_ours = "profilestore-sim: not replacing profilestore-sim.db: database error during \
                    read schema version: file is not a database\n";
    assert_eq!((code, stderr.as_str()), (2, not_ours));
    assert_eq!(std::fs::read(&db).unwrap(), b"not yet a database");
}

/// An SQLite database holding nothing (as a run killed between switching its new database to
/// WAL, which writes the file's first page, and making its tables leaves it) is replaced as an
/// empty file is: every later run used to refuse it as no profilestore database.
#[test]
fn an_empty_sqlite_database_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("profilestore-sim.db");
    let mode: String = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert!(std::fs::metadata(&db).unwrap().len() > 0);
    assert!(SqliteStorage::holds_nothing(&db).unwrap());
    let short = ["simulate", "--players", "2", "--duration", "1m"];
    let (code, _, stderr) = sim(&short, dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(!SqliteStorage::holds_nothing(&db).unwrap());
    assert!(SqliteStorage::open_existing(&db).is_ok());
    // A missing file is no such database, and asking makes none.
    let none = dir.path().join("none.db");
    assert!(!SqliteStorage::holds_nothing(&none).unwrap());
    assert!(!none.exists());
}

/// A folder given as the database is named as one by every command, and nothing is made
/// beside it (no lock file); a database named as another's lock file is refused by the
/// commands that write one, which would replace or write that lock.
#[test]
fn a_folder_or_a_lock_file_is_no_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("D")).unwrap();
    let golden = format!("{}/original-golden.json", fixtures());
    let folder = "D is a folder, not a database file";
    for (args, said) in [
        (
            vec!["simulate", "--db", "D", "--players", "2"],
            folder.to_string(),
        ),
        (vec!["import", &golden, "--db", "D"], folder.to_string()),
        (
            vec!["export", "--db", "D"],
            format!("cannot open D: database error during open D: {folder}"),
        ),
        (
            vec!["keys", "--db", "D"],
            format!("cannot open D: database error during open D: {folder}"),
        ),
    ] {
        let (code, _, stderr) = sim(&args, dir.path());
        assert_eq!(
            (code, stderr),
            (2, format!("profilestore-sim: {said}\n")),
            "{args:?}"
        );
    }
    let lock = "--db a.db.lock is named as another database's lock file: give the database \
                another name";
    for args in [
        vec!["simulate", "--db", "a.db.lock", "--players", "2"],
        vec!["import", &golden, "--db", "a.db.lock"],
    ] {
        let (code, _, stderr) = sim(&args, dir.path());
        assert_eq!(
            (code, stderr),
            (2, format!("profilestore-sim: {lock}\n")),
            "{args:?}"
        );
    }
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["D"]);
}

#[test]
fn simulate_then_replay_the_trace() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "simulate",
        "--servers",
        "2",
        "--players",
        "20",
        "--duration",
        "3m",
        "--faults",
        "0.05",
        "--seed",
        "4",
        "--trace",
        "run.trace",
        "--json",
    ];
    let (code, stdout, stderr) = sim(&args, dir.path());
    assert_eq!(code, 0, "{stderr}");
    let summary: profilestore_core::value::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(summary["violations"], 0);
    assert_eq!(summary["seed"], 4);
    assert!(summary["sessions"].as_u64().unwrap() > 10);
    assert!(
        dir.path().join("profilestore-sim.db").exists(),
        "the embedded store is the default"
    );
    let small = [
        "simulate",
        "--players",
        "10",
        "--duration",
        "2m",
        "--faults",
        "0.1",
    ];
    let args = [&small[..], &["--memory", "--json", "--check-determinism"]].concat();
    // Without `--trace` the check compares with a file of its own, in the temporary folder,
    // removed after.
    let tmp = tempfile::tempdir().unwrap();
    let checked = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_profilestore-sim"))
            .args(args)
            .current_dir(dir.path())
            .env("TMPDIR", tmp.path())
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
        serde_json::from_slice::<profilestore_core::value::Value>(&out.stdout).unwrap()
    };
    assert_eq!(checked(&args)["determinism"], "identical");
    // A `--trace` that is not a regular file (here a device) gets a copy of the trace the check
    // wrote and compared in its own folder, not one read back from the device.
    let summary = checked(&[&args[..], &["--trace", "/dev/null"]].concat());
    assert_eq!(summary["determinism"], "identical");
    assert_eq!(summary["trace"], "/dev/null");
    // A copy that cannot be written fails the trace, not the check: said once, exit 2.
    if has("/dev/full") {
        let full = [&args[..], &["--trace", "/dev/full"]].concat();
        let out = Command::new(env!("CARGO_BIN_EXE_profilestore-sim"))
            .args(&full)
            .current_dir(dir.path())
            .env("TMPDIR", tmp.path())
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2));
        let summary: profilestore_core::value::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(summary["determinism"], "identical");
        assert_eq!(summary["trace"], profilestore_core::value::Value::Null);
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "profilestore-sim: cannot write trace /dev/full: No space left on device (os error \
             28)\n"
        );
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
    // The first run on SQLite, the second in memory: the two stores export the same, and the
    // human summary says so (and names the trace written).
    let twice = [
        "--db",
        "twice.db",
        "--trace",
        "twice.trace",
        "--check-determinism",
    ];
    let args = [&small[..], &twice].concat();
    let (code, stdout, stderr) = sim(&args, dir.path());
    assert_eq!(code, 0, "{stderr}");
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .map(|l| l[name.len() + 2..].trim().to_string())
    };
    assert_eq!(
        row("same seed twice").as_deref(),
        Some("identical"),
        "{stdout}"
    );
    assert_eq!(
        row("trace written to").as_deref(),
        Some("twice.trace"),
        "{stdout}"
    );
    for partial in ["run.trace.partial", "twice.trace.partial"] {
        assert!(
            !dir.path().join(partial).exists(),
            "the trace took its name whole"
        );
    }
    let (code, stdout, _) = sim(&["replay", "twice.trace"], dir.path());
    assert_eq!(code, 0);
    let verdict = "replayed 345 inputs, 330 outputs: byte-identical";
    assert_eq!(stdout.lines().last(), Some(verdict), "{stdout}");
    let (code, stdout, _) = sim(&["replay", "run.trace"], dir.path());
    assert_eq!(code, 0);
    let verdict = "replayed 889 inputs, 832 outputs: byte-identical";
    assert_eq!(stdout.lines().last(), Some(verdict), "{stdout}");
    assert!(
        stdout.starts_with(
            "recorded run: profilestore-sim simulate --servers 2 --players 20 --duration 180 \
             --faults 0.05 --seed 4 --stay 90 "
        ),
        "{stdout}"
    );
    let (code, stdout, _) = sim(&["inspect", "Player_3"], dir.path());
    assert_eq!(code, 0);
    let v: profilestore_core::value::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["exists"], true);
    assert_eq!(
        v["lock"],
        profilestore_core::value::Value::Null,
        "everyone left at the end of the run"
    );
}

#[test]
fn import_the_golden_fixture_and_inspect_a_locked_key() {
    let dir = tempfile::tempdir().unwrap();
    let golden = format!("{}/original-golden.json", fixtures());
    let (code, stdout, stderr) = sim(&["import", &golden, "--db", "g.db"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "imported 8 key(s) into g.db");
    // Its keys, listed; by prefix; none in a store it does not hold, which it says.
    let (code, stdout, stderr) = sim(&["keys", "--db", "g.db", "--prefix", "locked"], dir.path());
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert_eq!(stdout, "locked_dead\nlocked_live\n");
    let (_, stdout, _) = sim(&["keys", "--db", "g.db"], dir.path());
    assert_eq!(stdout.lines().count(), 8);
    // A key holding a control character is written as a JSON string, one line still; so is
    // one that starts with a quote, which would read as such a string.
    std::fs::write(
        dir.path().join("tab.json"),
        r#"{"store": "PlayerData", "keys": {"a\tb": {"exists": true, "value": 1},
            "c": {"exists": true, "value": 2}, "\"x": {"exists": true, "value": 3}}}"#,
    )
    .unwrap();
    let (code, _, stderr) = sim(&["import", "tab.json", "--db", "t.db"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    let (_, stdout, _) = sim(&["keys", "--db", "t.db"], dir.path());
    assert_eq!(stdout, "\"\\\"x\"\n\"a\\tb\"\nc\n");
    let (code, stdout, stderr) = sim(&["keys", "--db", "g.db", "--store", "Player"], dir.path());
    assert_eq!((code, stdout.as_str()), (0, ""));
    assert_eq!(
        stderr,
        "profilestore-sim: no key in store \"Player\" of g.db; it holds PlayerData: 8 key(s)\n"
    );
    let (_, stdout, _) = sim(&["inspect", "locked_live", "--db", "g.db"], dir.path());
    let v: profilestore_core::value::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v["lock"]["topic"],
        "PS_DE788156-C5BD-4E85-B52B-124A9C0A7475"
    );
    // A database name that reads as a SQLite URI, or as its database in memory, is a file
    // name all the same.
    for odd in ["file:u.db?mode=memory", ":memory:"] {
        let (code, _, stderr) = sim(&["import", &golden, "--db", odd], dir.path());
        assert_eq!(code, 0, "{stderr}");
        assert!(dir.path().join(odd).is_file(), "{odd}");
        let (_, stdout, _) = sim(&["inspect", "locked_live", "--db", odd], dir.path());
        let v: profilestore_core::value::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["exists"], true, "{odd}: {stdout}");
    }
    // A write-protected database is not replaced by a run.
    let mut mode = std::fs::metadata(dir.path().join("g.db"))
        .unwrap()
        .permissions();
    mode.set_readonly(true);
    std::fs::set_permissions(dir.path().join("g.db"), mode.clone()).unwrap();
    let (code, _, stderr) = sim(&["simulate", "--db", "g.db", "--players", "2"], dir.path());
    assert_eq!(code, 2);
    assert!(
        stderr.contains("not replacing g.db: it is write-protected"),
        "{stderr}"
    );
    #[allow(clippy::permissions_set_readonly_false)]
    mode.set_readonly(false);
    std::fs::set_permissions(dir.path().join("g.db"), mode).unwrap();
    // An export edited and imported back: the edited key is a new write of it.
    let (_, exported, _) = sim(&["export", "--db", "g.db"], dir.path());
    let mut doc: serde_json::Value = serde_json::from_str(&exported).unwrap();
    let key = &mut doc["stores"][0]["keys"]["released"];
    key["value"]["Data"]["Coins"] = 1.into();
    let last = key["versions"].as_array().unwrap().len() - 1;
    key["versions"][last]["value"]["Data"]["Coins"] = 1.into();
    std::fs::write(dir.path().join("edited.json"), doc.to_string()).unwrap();
    let (code, stdout, stderr) = sim(&["import", "edited.json", "--db", "g.db"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.trim(),
        "imported 8 key(s) into g.db, 1 over another write of the key (given new versions)"
    );
    // A document that does not import leaves no database behind.
    std::fs::write(
        dir.path().join("bad.json"),
        r#"{"store": "S", "keys": {"k": {}}}"#,
    )
    .unwrap();
    let (code, _, stderr) = sim(&["import", "bad.json", "--db", "new.db"], dir.path());
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "profilestore-sim: cannot import bad.json: import document, keys[\"k\"]: \"exists\" \
         must be true or false\n"
    );
    assert!(!dir.path().join("new.db").exists());
    // A key the store does not hold: the answer says so, and the database's stores are named.
    let (code, stdout, stderr) = sim(
        &["inspect", "stub", "--db", "g.db", "--store", "Player"],
        dir.path(),
    );
    assert_eq!(code, 0);
    assert!(stdout.contains("\"exists\": false"), "{stdout}");
    assert_eq!(
        stderr.trim(),
        "profilestore-sim: no key \"stub\" in store \"Player\" of g.db; it holds \
         PlayerData: 8 key(s)"
    );
    let (_, stdout, _) = sim(&["inspect", "stub", "--db", "g.db"], dir.path());
    let v: profilestore_core::value::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v["pending_messages"],
        profilestore_core::json!([{"id": 1, "message": {"Gift": "Gem"}, "deliverable": true}])
    );
}

/// A key whose row was damaged (edited by hand): `inspect` and `export` name it and say how to
/// go on, `export --skip-corrupt` writes every other key (naming the one left out), and
/// importing a document that holds the key replaces it.
#[test]
fn a_corrupt_key_is_named_left_out_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let golden = format!("{}/original-golden.json", fixtures());
    let (code, _, stderr) = sim(&["import", &golden, "--db", "g.db"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    let (_, whole, _) = sim(&["export", "--db", "g.db"], dir.path());
    let changed = rusqlite::Connection::open(dir.path().join("g.db"))
        .unwrap()
        .execute("UPDATE keys SET value = '{' WHERE key = 'released'", [])
        .unwrap();
    assert_eq!(changed, 1);
    let damage = "corrupt stored data for PlayerData/global/released: column value is not \
                  valid JSON: EOF while parsing an object at line 1 column 1";
    let (code, stdout, stderr) = sim(&["inspect", "released", "--db", "g.db"], dir.path());
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert_eq!(
        stderr,
        format!(
            "profilestore-sim: {damage} (importing a document that holds the key replaces it)\n"
        )
    );
    let (code, stdout, stderr) = sim(&["export", "--db", "g.db"], dir.path());
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert_eq!(
        stderr,
        format!("profilestore-sim: {damage} (--skip-corrupt exports every other key)\n")
    );
    let (code, rest, stderr) = sim(&["export", "--db", "g.db", "--skip-corrupt"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "profilestore-sim: left out: {damage}\nprofilestore-sim: 1 key(s) left out; \
             importing a document that holds one replaces it, unless even its serial is \
             unreadable (see inspect)\n"
        )
    );
    let mut expected: serde_json::Value = serde_json::from_str(&whole).unwrap();
    let released = expected["stores"][0]["keys"]
        .as_object_mut()
        .unwrap()
        .remove("released")
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&rest).unwrap(),
        expected
    );
    // A row another program wrote under a name no call can make is still shown; the same
    // name not held is said to be too long.
    let long = "k".repeat(60);
    let named = dir.path().join("long.db");
    std::fs::copy(dir.path().join("g.db"), &named).unwrap();
    rusqlite::Connection::open(&named)
        .unwrap()
        .execute("UPDATE keys SET key = ?1 WHERE key = 'stub'", [&long])
        .unwrap();
    let (code, stdout, stderr) = sim(&["inspect", &long, "--db", "long.db"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"exists\": true"), "{stdout}");
    let (code, _, stderr) = sim(&["inspect", &long, "--db", "g.db"], dir.path());
    assert_eq!(
        (code, stderr.as_str()),
        (
            2,
            "profilestore-sim: 102: Key name exceeds the 50 character limit.\n"
        )
    );
    // With its serial damaged too, no import can number a write of it: said instead.
    let serial = dir.path().join("serial.db");
    std::fs::copy(dir.path().join("g.db"), &serial).unwrap();
    rusqlite::Connection::open(&serial)
        .unwrap()
        .execute("UPDATE keys SET serial = 'x' WHERE key = 'released'", [])
        .unwrap();
    let (code, _, stderr) = sim(&["inspect", "released", "--db", "serial.db"], dir.path());
    assert_eq!(code, 2);
    assert!(
        stderr.ends_with(
            " (its serial cannot be read either, so an import cannot replace it: mend or \
             delete its row of the keys table)\n"
        ),
        "{stderr}"
    );
    // A key name no call can address (a BLOB) fails the listing itself: named, no flag
    // helps, none suggested.
    let db = dir.path().join("blob.db");
    std::fs::copy(dir.path().join("g.db"), &db).unwrap();
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("UPDATE keys SET key = x'6b01' WHERE key = 'stub'", [])
        .unwrap();
    for flags in [&[][..], &["--skip-corrupt"]] {
        let args = [&["export", "--db", "blob.db"][..], flags].concat();
        let (code, stdout, stderr) = sim(&args, dir.path());
        assert_eq!((code, stdout.as_str()), (2, ""));
        assert_eq!(
            stderr,
            "profilestore-sim: corrupt stored data for PlayerData/global/x'6b01': column key \
             holds a BLOB, not text\n"
        );
    }
    // The whole export, imported back: the key is a new write, numbered after its last.
    std::fs::write(dir.path().join("whole.json"), &whole).unwrap();
    let (code, stdout, stderr) = sim(&["import", "whole.json", "--db", "g.db"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.trim(),
        "imported 8 key(s) into g.db, replacing 1 corrupt key(s): PlayerData/global/released, \
         1 over another write of the key (given new versions)"
    );
    let (code, stdout, _) = sim(&["inspect", "released", "--db", "g.db"], dir.path());
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["value"], released["value"]);
    // A version id carries its write's serial, second.
    let serial = v["version"].as_str().unwrap().split('.').nth(1).unwrap();
    assert_eq!(
        serial.parse::<u64>().unwrap(),
        released["serial"].as_u64().unwrap() + 1
    );
}

#[test]
fn scenario_matches_the_original_and_prints_a_journal() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixtures();
    let scenario = format!("{f}/scenarios/handoff_message.json");
    let trace = format!("{f}/traces/handoff_message.jsonl");
    let (code, stdout, _) = sim(&["scenario", &scenario, "--compare", &trace], dir.path());
    assert_eq!(
        (code, stdout.trim()),
        (
            0,
            "handoff_message: 0 difference(s) from the original, 0 from known deviations, \
             0 unexplained, 0 from what a deviation gives"
        )
    );
    // A fixture whose journal differs by a deviation (docs/DEVIATIONS.md row 8) names it and
    // passes.
    let steal = |dir: &str| format!("{f}/{dir}/handoff_steal.json");
    let (code, stdout, _) = sim(
        &[
            "scenario",
            &steal("scenarios"),
            "--compare",
            &format!("{}l", steal("traces")),
        ],
        dir.path(),
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(code, 0, "{stdout}");
    assert!(
        lines[0].starts_with("deviation §19 item 8 (docs/DEVIATIONS.md): "),
        "{stdout}"
    );
    assert_eq!(
        lines.last(),
        Some(
            &"handoff_steal: 1 difference(s) from the original, 1 from known deviations, \
              0 unexplained, 0 from what a deviation gives"
        )
    );
    // Another fixture's trace is refused, naming its case (`journal::explain` would not let the
    // deviation name its differences either).
    let (code, stdout, stderr) = sim(
        &["scenario", &steal("scenarios"), "--compare", &trace],
        dir.path(),
    );
    assert_eq!((code, stdout.as_str()), (2, ""), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{trace} is the journal of case \"handoff_message\", not of scenario \"handoff_steal\""
        )),
        "{stderr}"
    );
    let (code, stdout, _) = sim(&["scenario", &scenario], dir.path());
    assert_eq!(code, 0);
    let last: profilestore_core::value::Value =
        serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        last,
        profilestore_core::json!({"type": "end", "case": "handoff_message", "t": 30.0})
    );
}

#[test]
fn bad_arguments_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = sim(&["simulate", "--faults", "1.5", "--memory"], dir.path());
    assert_eq!(code, 2);
    assert!(
        stderr.contains(
            "invalid simulation: --faults must be a probability between 0 and 1, got 1.5"
        ),
        "{stderr}"
    );
    // Checked before the database is replaced: an existing one survives a bad command.
    std::fs::write(dir.path().join("keep.db"), b"data").unwrap();
    for (args, message) in [
        (
            &["--players", "18446744073709551615"][..],
            "--players must be between 1 and 1000000, got 18446744073709551615",
        ),
        (
            &["--servers", "0"][..],
            "--servers must be between 1 and 10000, got 0",
        ),
        (
            &["--stay", "nan"][..],
            "--stay must be a positive number of seconds, got NaN",
        ),
        (
            &["--fault-period", "1500ms"][..],
            "--fault-period must be a whole number of seconds, at least 1, got 1.5",
        ),
        (
            &["--crash-rate=-1"][..],
            "--crash-rate must be between 0 and 60 per server per minute, got -1",
        ),
        (
            &["--crash-rate", "40", "--shutdown-rate", "30"][..],
            "--crash-rate and --shutdown-rate together must be at most 60 per server per \
             minute, got 40 + 30",
        ),
        (
            &["--duration", "1e16"][..],
            "--duration must be between 0 and 31622400 s (a year), got 10000000000000000",
        ),
        (
            &["--servers", "2", "--spare-servers", "18446744073709551615"][..],
            "--servers and --spare-servers together must be at most 10000, got 2 + 18446744073709551615",
        ),
        (
            &["--uncancellable", "2"][..],
            "--uncancellable must be a probability between 0 and 1, got 2",
        ),
        (
            &["--places", "0"][..],
            "--places must be between 1 and 10000, got 0",
        ),
        (
            &["--max-skew=-5"][..],
            "--max-skew must be between 0 and 86400 s (a day), got -5",
        ),
        (
            &["--max-skew", "90000"][..],
            "--max-skew must be between 0 and 86400 s (a day), got 90000",
        ),
        // Negative values reach the checks that name the flag (clap took `-1` for a flag).
        (
            &["--max-skew", "-1"][..],
            "--max-skew must be between 0 and 86400 s (a day), got -1",
        ),
        (
            &["--seed", "-1"][..],
            "invalid value '-1' for '--seed <SEED>'",
        ),
        // A store in memory and a database file cannot both be where the run keeps its data.
        (
            &["--memory"][..],
            "the argument '--db <DB>' cannot be used with '--memory'",
        ),
        (
            &["--servers", "1", "--places", "5"][..],
            "--places must be at most the servers that run them, got 5 for 1 + 0 spare",
        ),
    ] {
        let mut all = vec!["simulate", "--db", "keep.db"];
        all.extend_from_slice(args);
        let (code, _, stderr) = sim(&all, dir.path());
        assert_eq!(code, 2, "{args:?}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert_eq!(std::fs::read(dir.path().join("keep.db")).unwrap(), b"data");
    }
    // Flags that change nothing in this run are noted, and the run goes on.
    let (code, _, stderr) = sim(
        &[
            "simulate",
            "--memory",
            "--players",
            "2",
            "--duration",
            "5s",
            "--fault-period",
            "10",
            "--spare-servers",
            "1",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr,
        "profilestore-sim: note: --fault-period does nothing without --faults\n\
         profilestore-sim: note: --spare-servers does nothing without --crash-rate or \
         --shutdown-rate\n"
    );
    // One server is never stopped (the last one taking players): the rates say so.
    let one = [
        "simulate",
        "--memory",
        "--servers",
        "1",
        "--players",
        "2",
        "--duration",
        "5s",
    ];
    let (code, _, stderr) = sim(&[&one[..], &["--crash-rate", "1"]].concat(), dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr,
        "profilestore-sim: note: --crash-rate and --shutdown-rate do nothing with one server \
         (the last one taking players is never stopped)\n"
    );
    let (code, stdout, stderr) = sim(&[&one[..4], &["--duration", "0"]].concat(), dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr,
        "profilestore-sim: note: --duration 0 plays nothing (the run only settles)\n"
    );
    assert!(
        stdout.contains("\n  sessions started                   0\n"),
        "{stdout}"
    );
    // A valid run does not replace a file that is not a profilestore database either, and
    // leaves no trace file behind when it refuses.
    let (code, _, stderr) = sim(
        &["simulate", "--db", "keep.db", "--trace", "fresh.trace"],
        dir.path(),
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("not replacing keep.db: "), "{stderr}");
    assert_eq!(std::fs::read(dir.path().join("keep.db")).unwrap(), b"data");
    assert!(!dir.path().join("fresh.trace").exists());
    // A database in a folder that does not exist, or under a file: the message says so.
    let golden = format!("{}/original-golden.json", fixtures());
    for (args, problem) in [
        (
            &[
                "simulate",
                "--db",
                "nodir/x.db",
                "--players",
                "2",
                "--duration",
                "1m",
            ][..],
            "nodir/x.db: the folder nodir does not exist",
        ),
        (
            &["import", &golden, "--db", "keep.db/x.db"][..],
            "keep.db/x.db: keep.db is a file, not a folder",
        ),
    ] {
        let (code, _, stderr) = sim(args, dir.path());
        assert_eq!(code, 2);
        assert!(
            stderr
                .trim()
                .ends_with(&format!("database error during open {problem}")),
            "{stderr}"
        );
    }
    // Nor another program's SQLite file that uses our schema version number.
    rusqlite::Connection::open(dir.path().join("app.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1); PRAGMA user_version = 1;")
        .unwrap();
    let (code, _, stderr) = sim(&["simulate", "--db", "app.db"], dir.path());
    assert_eq!(code, 2);
    assert!(stderr.contains("not replacing app.db: "), "{stderr}");
    let rows: i64 = rusqlite::Connection::open(dir.path().join("app.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1, "the file is untouched");
    // An empty file holds nothing to lose: it is replaced.
    std::fs::write(dir.path().join("empty.db"), b"").unwrap();
    let (code, _, stderr) = sim(
        &[
            "simulate",
            "--db",
            "empty.db",
            "--players",
            "2",
            "--duration",
            "1m",
        ],
        dir.path(),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        std::fs::metadata(dir.path().join("empty.db"))
            .unwrap()
            .len()
            > 0
    );
    let (code, _, stderr) = sim(&["replay", "missing.trace"], dir.path());
    assert_eq!(code, 2);
    assert!(stderr.contains("missing.trace"), "{stderr}");
    let (code, _, stderr) = sim(&["inspect", "k", "--db", "none.db"], dir.path());
    assert_eq!(code, 2);
    assert!(stderr.contains("no database at none.db"), "{stderr}");
    // A name no call can make is said before the database is looked for.
    let long = "k".repeat(51);
    for (args, said) in [
        (
            vec!["inspect", &long],
            "102: Key name exceeds the 50 character limit.",
        ),
        (
            vec!["inspect", "k", "--store", ""],
            "101: DataStore name can't be empty.",
        ),
        (vec!["keys", "--scope", ""], "101: Scope can't be empty."),
    ] {
        let (code, _, stderr) = sim(&args, dir.path());
        assert_eq!(
            (code, stderr.as_str()),
            (2, format!("profilestore-sim: {said}\n").as_str())
        );
    }
    let (code, _, stderr) = sim(&["simulate", "--duration", "soon"], dir.path());
    assert_eq!(code, 2);
    assert!(stderr.contains("invalid duration"), "{stderr}");
}

/// A signal (Ctrl-C's SIGINT, or SIGTERM) stops a run at its next virtual second: exit 130, what
/// was left undone on standard error, and nothing left of the trace it was writing or of the
/// determinism check's temporary folder; the database stays, as the stopped servers left it.
#[test]
fn a_signal_stops_a_run_and_removes_what_it_was_writing() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let names = |path: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    // A partial trace with more than `bytes` in it, somewhere under `path`.
    let writing = |path: &std::path::Path, bytes: u64| -> bool {
        walk(path).iter().any(|f| {
            f.extension().is_some_and(|e| e == "partial")
                && std::fs::metadata(f).is_ok_and(|m| m.len() > bytes)
        })
    };
    fn walk(path: &std::path::Path) -> Vec<std::path::PathBuf> {
        let Ok(entries) = std::fs::read_dir(path) else {
            return Vec::new();
        };
        entries
            .flatten()
            .flat_map(|e| {
                let p = e.path();
                if p.is_dir() { walk(&p) } else { vec![p] }
            })
            .collect()
    }
    // Sends `signal` once `ready` says the run is under way.
    let stop = |extra: &[&str], signal: &str, ready: &dyn Fn() -> bool| {
        let args = [&LONG[..], extra].concat();
        let child = started(&args, dir.path(), tmp.path(), ready);
        // The shell's `kill`, which every `sh` has (a `kill` program may not be installed).
        let sent = Command::new("sh")
            .args([
                "-c",
                r#"kill "$1" "$2""#,
                "sh",
                signal,
                &child.id().to_string(),
            ])
            .status()
            .unwrap();
        assert!(sent.success());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(130), "{stderr}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "");
        // "…at virtual second N of 36000: …", N a second of play.
        let (at, rest) = stderr
            .strip_prefix("profilestore-sim: stopped by a signal at virtual second ")
            .and_then(|s| s.split_once(" of 36000: "))
            .unwrap_or_else(|| panic!("{stderr}"));
        assert!(
            at.parse::<u32>().is_ok_and(|n| (1..36000).contains(&n)),
            "{stderr}"
        );
        rest.to_string()
    };
    // Stopped once the trace holds a megabyte (a 2-second run of this fleet records about
    // that, its first sessions written): stopped at its first bytes, a loaded machine could
    // stop the run before any write committed, and the export below found no key.
    let rest = stop(&["--db", "run.db", "--trace", "run.trace"], "-INT", &|| {
        writing(dir.path(), 1 << 20)
    });
    assert_eq!(
        rest,
        "nothing was checked; no trace was written to run.trace; run.db holds the store as the \
         stopped servers left it (sessions locked, as after a crash)\n"
    );
    // The database's lock file stays, as after any run on a database.
    assert_eq!(names(dir.path()), ["run.db", "run.db.lock"]);
    assert!(names(tmp.path()).is_empty());
    // The database reads back whole (export refuses a corrupt key), with the sessions of the
    // players online when the run stopped still locked.
    let (code, stdout, stderr) = sim(&["export", "--db", "run.db"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let keys = doc["stores"][0]["keys"].as_object().unwrap();
    let locked = keys
        .values()
        .filter(|k| k["value"]["MetaData"]["ActiveSession"].is_array())
        .count();
    assert!(
        locked > 0 && !keys.is_empty(),
        "{locked} of {} locked",
        keys.len()
    );
    std::fs::remove_file(dir.path().join("run.db")).unwrap();
    std::fs::remove_file(dir.path().join("run.db.lock")).unwrap();
    let rest = stop(&["--memory", "--check-determinism"], "-TERM", &|| {
        writing(tmp.path(), 0)
    });
    assert_eq!(rest, "nothing was checked\n");
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    assert!(names(tmp.path()).is_empty(), "{:?}", names(tmp.path()));
    // A trace written in place, into a pipe: what went out stays, cut short.
    let made = Command::new("mkfifo").arg(dir.path().join("pipe")).status();
    if !made.is_ok_and(|s| s.success()) {
        skipped("mkfifo");
        return;
    }
    let received = dir.path().join("received");
    let mut reader = KillOnDrop(
        Command::new("sh")
            .args(["-c", "exec cat pipe > received"])
            .current_dir(dir.path())
            .spawn()
            .unwrap(),
    );
    let rest = stop(&["--memory", "--trace", "pipe"], "-INT", &|| {
        std::fs::metadata(&received).is_ok_and(|m| m.len() > 0)
    });
    assert_eq!(
        rest,
        "nothing was checked; the trace sent to pipe is cut short\n"
    );
    assert!(reader.0.wait().unwrap().success());
    assert!(std::fs::metadata(&received).unwrap().len() > 0);
    // What went out replays as far as it goes, with `--prefix` only.
    let (code, _, stderr) = sim(&["replay", "received"], dir.path());
    assert_eq!(code, 2);
    assert!(stderr.ends_with("(cut short?)\n"), "{stderr}");
    let (code, stdout, stderr) = sim(&["replay", "--prefix", "received"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    let said = stdout.lines().last().unwrap_or_default();
    assert!(
        said.contains(" of a trace cut short ")
            && said.ends_with(": byte-identical as far as it goes"),
        "{stdout}"
    );
    // The same read from a pipe (held in memory first).
    let mut child = Command::new(env!("CARGO_BIN_EXE_profilestore-sim"))
        .args(["replay", "--prefix", "/dev/stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let bytes = std::fs::read(&received).unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let piped = String::from_utf8_lossy(&out.stdout);
    assert_eq!(piped.lines().last(), Some(said), "{piped}");
}

/// A determinism check killed outright (SIGKILL: nothing runs) leaves its folder, as large as
/// the trace so far; the next check removes it, saying so, and leaves nothing of its own.
#[test]
fn the_next_check_removes_the_folder_a_killed_check_left() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let partial_bytes = || -> u64 {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::metadata(e.path().join("first.trace.partial")).ok())
            .map(|m| m.len())
            .sum()
    };
    let args = [&LONG[..], &["--memory", "--check-determinism"]].concat();
    let mut child = started(&args, dir.path(), tmp.path(), &|| partial_bytes() > 0);
    child.kill().unwrap();
    child.wait().unwrap();
    let left = partial_bytes();
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    let out = Command::new(env!("CARGO_BIN_EXE_profilestore-sim"))
        .args(["simulate", "--memory", "--players", "4", "--duration", "1m"])
        .args(["--check-determinism", "--json"])
        .current_dir(dir.path())
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "profilestore-sim: note: removed 1 folder(s) of determinism checks whose commands \
             were killed ({:.1} MB) from {}\n",
            left as f64 / 1e6,
            tmp.path().display()
        )
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

/// A trace that stops taking bytes during the run (a full disk) stops the run there, rather
/// than after hours of play it could not record: exit 2, naming the file and the second.
#[test]
fn a_trace_that_cannot_be_written_stops_the_run() {
    if !has("/dev/full") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = sim(
        &[&LONG[..], &["--memory", "--trace", "/dev/full"]].concat(),
        dir.path(),
    );
    assert_eq!((code, stdout.as_str()), (2, ""), "{stderr}");
    let at = stderr
        .strip_prefix(
            "profilestore-sim: trace file /dev/full: No space left on device (os error 28): the \
             run was stopped at virtual second ",
        )
        .and_then(|s| s.strip_suffix(" of 36000 and nothing was checked\n"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        at.parse::<u32>().is_ok_and(|n| (1..36000).contains(&n)),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A `--trace` the run could not write is refused before the run, not after it (which threw
/// the run's summary away): a directory that does not exist, or the run's own database.
#[test]
fn a_trace_path_that_cannot_be_written_is_refused_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let run = |trace: &str| {
        let args = [
            "simulate",
            "--players",
            "5",
            "--duration",
            "1m",
            "--trace",
            trace,
        ];
        sim(&args, dir.path())
    };
    let (code, stdout, stderr) = run("missing/run.trace");
    assert_eq!(code, 2);
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with("profilestore-sim: cannot write trace missing/run.trace: "),
        "{stderr}"
    );
    assert!(
        !dir.path().join("profilestore-sim.db").exists(),
        "refused before the database is made"
    );
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    for trace in [
        "profilestore-sim.db",
        "./profilestore-sim.db-wal",
        "sub/../profilestore-sim.db",
        "profilestore-sim.db.lock",
    ] {
        let (code, _, stderr) = run(trace);
        assert_eq!(code, 2);
        assert_eq!(
            stderr,
            format!(
                "profilestore-sim: --trace {trace} names the run's database: give the trace a file of its own\n"
            )
        );
    }
    // Another run writing the same trace (it holds the partial file locked) is found before
    // the database is made; nothing is left behind.
    let held = std::fs::File::create(dir.path().join("held.trace.partial")).unwrap();
    held.try_lock().unwrap();
    let (code, _, stderr) = run("held.trace");
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "profilestore-sim: cannot write trace held.trace: another run is writing this trace \
         (held.trace.partial is locked)\n"
    );
    assert!(!dir.path().join("profilestore-sim.db").exists());
    assert!(!dir.path().join("held.trace").exists());
    drop(held);
    // Nor the database as the file the trace is written to until it is finished.
    let args = ["simulate", "--players", "5", "--duration", "1m"];
    let partial = ["--db", "run.trace.partial", "--trace", "run.trace"];
    let (code, _, stderr) = sim(&[&args[..], &partial].concat(), dir.path());
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "profilestore-sim: --trace run.trace names the run's database: give the trace a file of \
         its own\n"
    );
    // A file that is not a trace is not overwritten, also by a run that keeps its store in
    // memory, and is left as it was.
    std::fs::write(dir.path().join("notes.txt"), "keep me").unwrap();
    let args = ["simulate", "--memory", "--players", "5", "--duration", "1m"];
    let (code, _, stderr) = sim(&[&args[..], &["--trace", "notes.txt"]].concat(), dir.path());
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "profilestore-sim: not overwriting notes.txt with the trace: it is not a trace file\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "keep me"
    );
    // A trace file is overwritten.
    let (code, _, stderr) = sim(&[&args[..], &["--trace", "t.trace"]].concat(), dir.path());
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = sim(&[&args[..], &["--trace", "t.trace"]].concat(), dir.path());
    assert_eq!(code, 0, "{stderr}");
}

/// A note written to a closed stderr (`2>&1 | head -1`, its reader gone) is dropped: the
/// command finishes with its own status (it used to panic, exit 101).
#[test]
fn a_note_to_a_closed_stderr_does_not_stop_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = Command::new(env!("CARGO_BIN_EXE_profilestore-sim"))
        .args(["simulate", "--memory", "--json", "--players", "3"])
        .args(["--duration", "20s", "--fault-period", "2m"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// Paths a finished trace could not be renamed to, or must not be: one ending in a separator
/// (the run used to play in full, then lose its trace, "Not a directory"), and another
/// database's lock file (empty, so not refused as a non-trace; renamed over, that lock would
/// be lost). A symlink or a file of other bytes where the partial file goes is refused, and
/// left as it was (it used to be emptied, the symlink's target with it).
#[test]
fn a_trace_path_or_partial_file_in_the_way_is_refused_before_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["simulate", "--memory", "--players", "5", "--duration", "1m"];
    let run = |trace: &str| sim(&[&args[..], &["--trace", trace]].concat(), dir.path());
    let (code, stdout, stderr) = run("out/");
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert_eq!(
        stderr,
        "profilestore-sim: --trace out/ ends in a path separator: name a file\n"
    );
    std::fs::write(dir.path().join("t.trace"), "").unwrap();
    let (code, _, stderr) = run("t.trace/");
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "profilestore-sim: --trace t.trace/ ends in a path separator: name a file\n"
    );
    std::fs::write(dir.path().join("other.db.lock"), "").unwrap();
    let (code, _, stderr) = run("other.db.lock");
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "profilestore-sim: --trace other.db.lock is named like a database's lock file: give \
         the trace another name\n"
    );
    std::fs::write(dir.path().join("data.db"), "precious").unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("data.db", dir.path().join("run.trace.partial")).unwrap();
        let (code, _, stderr) = run("run.trace");
        assert_eq!(code, 2);
        assert_eq!(
            stderr,
            "profilestore-sim: cannot write trace run.trace: run.trace.partial is in the way of \
             the trace's partial file: it is not a regular file\n"
        );
        std::fs::remove_file(dir.path().join("run.trace.partial")).unwrap();
    }
    std::fs::write(dir.path().join("run.trace.partial"), "notes").unwrap();
    let (code, _, stderr) = run("run.trace");
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "profilestore-sim: cannot write trace run.trace: run.trace.partial is in the way of the \
         trace's partial file: it is not a trace\n"
    );
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert_eq!(
        (read("data.db"), read("run.trace.partial")),
        ("precious".into(), "notes".into())
    );
    assert!(!dir.path().join("run.trace").exists());
    // A killed run's partial file (the magic, or nothing yet) is taken over.
    std::fs::write(dir.path().join("run.trace.partial"), b"PSTRACE\0\x01").unwrap();
    let (code, _, stderr) = run("run.trace");
    assert_eq!(code, 0, "{stderr}");
    assert!(!dir.path().join("run.trace.partial").exists());
    assert!(
        std::fs::read(dir.path().join("run.trace"))
            .unwrap()
            .starts_with(b"PSTRACE\0")
    );
}

/// A trace read from a pipe (`replay /dev/stdin`, `<(zcat run.trace.gz)`) is read whole first,
/// up to a bound, and the decoder may claim no more than a multiple of what it read: a few
/// bytes claiming a huge length are refused, not allocated. A whole trace replays the same.
#[test]
fn a_trace_from_a_pipe_is_bounded_by_what_it_holds() {
    use profilestore_harness::trace::{TRACE_FORMAT, TRACE_MAGIC};
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let piped = |bytes: &[u8]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_profilestore-sim"))
            .args(["replay", "/dev/stdin"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("runs");
        // A replay that refuses the bytes may stop reading before they are all written.
        let _ = child.stdin.take().unwrap().write_all(bytes);
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Format, then a header (its length and checksum right: the format again, seed 0, epoch 0,
    // fps 0.0, latency, 1 server whose name claims 8 GiB, within what a bound on the pipe's
    // largest size, 1 GiB, would let the decoder claim).
    let mut hostile = TRACE_MAGIC.to_vec();
    hostile.push(TRACE_FORMAT as u8);
    let mut header = vec![TRACE_FORMAT as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0xFD];
    header.extend((1u64 << 33).to_le_bytes());
    hostile.extend((header.len() as u32).to_le_bytes());
    hostile.extend((!(header.len() as u32)).to_le_bytes());
    hostile.extend(crc32fast::hash(&header).to_le_bytes());
    hostile.extend(header);
    let (code, stdout, stderr) = piped(&hostile);
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert_eq!(
        stderr,
        "profilestore-sim: trace file /dev/stdin is not a readable trace: its header (at byte \
         9): a length inside it is larger than the file can hold\n"
    );
    let args = ["simulate", "--memory", "--players", "4", "--duration", "1m"];
    let (code, _, stderr) = sim(&[&args[..], &["--trace", "run.trace"]].concat(), dir.path());
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = piped(&std::fs::read(dir.path().join("run.trace")).unwrap());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.ends_with(": byte-identical\n"), "{stdout}");
}

/// Output that cannot be written for another reason than a closed pipe (a full disk) is an
/// error: said once, exit 2.
#[test]
fn output_that_cannot_be_written_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    if !has("/dev/full") {
        return;
    }
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_profilestore-sim"))
        .args(["simulate", "--memory", "--players", "5", "--duration", "1m"])
        .current_dir(dir.path())
        .stdout(full)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.matches("cannot write output").count(), 1, "{stderr}");
}

/// Output into a pipe closed early (`| head -1`) ends quietly: no panic, exit as the run's.
#[test]
fn a_closed_stdout_ends_the_output_quietly() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let scenario = format!("{}/scenarios/lifecycle.json", fixtures());
    for args in [
        vec!["simulate", "--memory", "--players", "5", "--duration", "1m"],
        vec!["scenario", scenario.as_str()],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_profilestore-sim"))
            .args(&args)
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The reading end closes before the program writes.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// A summary's `rerun` command plays the same run again: every flag of the configuration, the
/// ones left at their defaults too, so the second run's summary is the first's (but for the
/// wall-clock speed).
#[test]
fn a_summary_names_the_command_that_plays_the_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "simulate",
        "--memory",
        "--json",
        "--servers",
        "2",
        "--players",
        "12",
        "--duration",
        "90s",
        "--faults",
        "0.1",
        "--seed",
        "9",
        "--stay",
        "40",
        "--crash-rate",
        "0.5",
        "--spare-servers",
        "1",
        "--fault-period",
        "30",
        "--max-skew",
        "200",
        "--places",
        "2",
        "--quit-while-loading",
        "0.01",
        "--uncancellable",
        "0.25",
    ];
    let (code, stdout, stderr) = sim(&args, dir.path());
    assert_eq!(code, 0, "{stderr}");
    let first: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(first["violations"], 0);
    let rerun = first["rerun"].as_str().unwrap().to_string();
    assert_eq!(
        rerun,
        "profilestore-sim simulate --servers 2 --players 12 --duration 90 --faults 0.1 --seed 9 \
         --stay 40 --crash-rate 0.5 --shutdown-rate 0 --spare-servers 1 --places 2 --max-skew 200 \
         --quit-while-loading 0.01 --uncancellable 0.25 --fault-period 30 --memory"
    );
    let again: Vec<&str> = rerun.split(' ').skip(1).chain(["--json"]).collect();
    let (code2, stdout, stderr) = sim(&again, dir.path());
    assert_eq!(code2, code, "{stderr}");
    let mut second: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let mut first = first;
    for speed in [
        "wall_seconds",
        "datastore_requests_per_wall_second",
        "virtual_to_wall",
    ] {
        first.as_object_mut().unwrap().remove(speed);
        second.as_object_mut().unwrap().remove(speed);
    }
    assert_eq!(first, second);
    assert!(first["crashes"].as_u64().unwrap() > 0, "{first}");
}

/// A run on another database file than the default names it in its `rerun` command, quoted
/// for the shell where it needs to be and joined to its flag with `=` (a name starting with
/// `-` after a space would read as a flag), so playing it again does not replace the default
/// file; a run on the default file needs no flag.
#[test]
fn a_rerun_names_the_database_the_run_used() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runs")).unwrap();
    let rerun_of = |db: Option<&str>| {
        let db = db.map(|db| format!("--db={db}"));
        let mut args = vec![
            "simulate",
            "--json",
            "--players",
            "3",
            "--duration",
            "20s",
            "--seed",
            "2",
        ];
        args.extend(db.as_deref());
        let (code, stdout, stderr) = sim(&args, dir.path());
        assert_eq!(code, 0, "{stderr}");
        let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        summary["rerun"].as_str().unwrap().to_string()
    };
    let flags = "profilestore-sim simulate --servers 4 --players 3 --duration 20 --faults 0 \
                 --seed 2 --stay 90 --crash-rate 0 --shutdown-rate 0 --spare-servers 0 --places 1 \
                 --max-skew 5 --quit-while-loading 0.005 --uncancellable 0.1";
    assert_eq!(rerun_of(None), flags);
    assert_eq!(
        rerun_of(Some("runs/a.db")),
        format!("{flags} --db=runs/a.db")
    );
    assert_eq!(
        rerun_of(Some("it's mine.db")),
        format!("{flags} --db='it'\\''s mine.db'")
    );
    assert!(dir.path().join("it's mine.db").exists());
    // It used to print `--db -x.db`, which the command refuses as an unknown flag.
    assert_eq!(rerun_of(Some("-x.db")), format!("{flags} --db=-x.db"));
    assert!(dir.path().join("-x.db").exists());
}

/// The README's table of `simulate --json` fields names exactly the fields a run prints (a
/// run without `--check-determinism` and `--trace`, which add one field each).
#[test]
fn the_readme_lists_every_json_field() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    let start = readme
        .find("`simulate --json` prints one JSON object")
        .expect("the section");
    let mut documented = std::collections::BTreeSet::new();
    for line in readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| field"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
    {
        let names = line.split('|').nth(1).unwrap();
        for name in names.split('`').skip(1).step_by(2) {
            documented.insert(name.to_string());
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "simulate",
        "--memory",
        "--json",
        "--players",
        "5",
        "--duration",
        "1m",
    ];
    let (code, stdout, stderr) = sim(&args, dir.path());
    assert_eq!(code, 0, "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let printed: std::collections::BTreeSet<String> =
        summary.as_object().unwrap().keys().cloned().collect();
    assert_eq!(documented, printed);
}
