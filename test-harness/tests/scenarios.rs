//! Conformance with the original (issue: harness §6): every scenario in
//! `shared/fixtures/scenarios/` runs with its latency model and its journal matches the
//! original's in `shared/fixtures/traces/` — per key the same stored values (job ids and GUIDs
//! by role), the same publishes, calls, returns and signals, at times within one frame — except
//! where a deviation (`journal::KNOWN_DEVIATIONS`) names the difference and our journal is
//! the one that deviation gives.

use std::path::PathBuf;

use profilestore_core::value::{Value, json};
use profilestore_harness::journal;
use profilestore_harness::scenario;

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/fixtures"
    ))
}

fn check(case: &str) {
    let scenario =
        scenario::load(&fixtures().join(format!("scenarios/{case}.json"))).expect("scenario loads");
    let ours = scenario::run(&scenario).expect("scenario runs");
    let text = std::fs::read_to_string(fixtures().join(format!("traces/{case}.jsonl")))
        .expect("trace present");
    let original = journal::parse(&text).expect("trace parses");
    assert_eq!(
        scenario.name, case,
        "known deviations are looked up by the scenario's name"
    );
    let known = journal::known_deviation(case);
    let e = journal::explain(&original, &ours, 1.0 / 60.0 + 1e-6, known).unwrap();
    for (deviation, d) in &e.named {
        eprintln!("{case}: deviation \"{deviation}\" (docs/DEVIATIONS.md):\n{d}");
    }
    // Each fixture a deviation changes names it; no other does.
    let mut named: Vec<&str> = e.named.iter().map(|(name, _)| *name).collect();
    named.dedup();
    let expected: &[&str] = match case {
        "handoff_steal" => &["§19 item 8"],
        "assume_dead" => &["§19 items 7 and 8"],
        _ => &[],
    };
    assert_eq!(named, expected, "{case}");
    // Row 8 adds one publish to `handoff_steal`; row 7 two to `assume_dead` (the request, and
    // row 8's notice once the lock is taken).
    let publishes = |j: &[Value]| j.iter().filter(|l| l["type"] == "publish").count();
    let added = match case {
        "handoff_steal" => 1,
        "assume_dead" => 2,
        _ => 0,
    };
    assert_eq!(publishes(&ours), publishes(&original) + added, "{case}");
    let listed = |diffs: &[journal::Difference]| {
        diffs
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        e.unexplained.is_empty(),
        "{case}: {} difference(s) from the original:\n{}\n--- our journal ---\n{}",
        e.unexplained.len(),
        listed(&e.unexplained),
        journal::render(&ours)
    );
    assert!(
        e.departures.is_empty(),
        "{case}: {} difference(s) from what deviation {:?} gives:\n{}\n--- our journal ---\n{}",
        e.departures.len(),
        known.map(|k| k.deviation),
        listed(&e.departures),
        journal::render(&ours)
    );
    assert!(
        e.stale.is_empty(),
        "{case}: known deviations that no longer show: {:?}",
        e.stale
    );
    assert_eq!(ours.last().unwrap()["type"], "end");
    // The comparison numbers job ids and session GUIDs by role, whatever they look like: each
    // lock tag we write has Roblox's shapes (a JobId as a lower-case GUID, a session GUID in
    // upper case, as the original's traces have them), and no id plays both roles. (Tags the
    // scenario file itself stores, with `raw_set`, are its own.)
    let file = std::fs::read_to_string(fixtures().join(format!("scenarios/{case}.json")))
        .expect("scenario present");
    let mut jobs = std::collections::BTreeSet::new();
    let mut guids = std::collections::BTreeSet::new();
    for line in ours.iter().filter(|l| l["type"] == "write") {
        let meta = &line["value"]["MetaData"];
        if let Some(tag) = meta.get("ActiveSession") {
            let (job, guid) = (tag[1].as_str().unwrap(), tag[2].as_str().unwrap());
            if file.contains(&format!("\"{job}\"")) {
                continue;
            }
            assert!(is_guid(job, false), "{case}: JobId {job} in {line}");
            assert!(is_guid(guid, true), "{case}: session GUID {guid} in {line}");
            jobs.insert(job.to_string());
            guids.insert(guid.to_string());
        }
        if let Some(claim) = meta.get("ForceLoadSession") {
            let job = claim[1].as_str().unwrap();
            if file.contains(&format!("\"{job}\"")) {
                continue;
            }
            assert!(is_guid(job, false), "{case}: JobId {job} in {line}");
            jobs.insert(job.to_string());
        }
    }
    assert!(
        !jobs.is_empty() && !guids.is_empty(),
        "{case}: no lock written"
    );
    assert!(jobs.is_disjoint(&guids), "{case}");
    // Times are given to the microsecond, without float noise (1.3, not 1.2999999999999998).
    for line in &ours {
        let t = line["t"].to_string();
        let decimals = t.split('.').nth(1).map_or(0, str::len);
        assert!(decimals <= 6, "{case}: t {t} in {line}");
    }
}

/// Whether `id` is a GUID (8-4-4-4-12 hex digits) in upper case (`upper`) or lower case.
fn is_guid(id: &str, upper: bool) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    let sizes: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    let digit = |c: char| {
        c.is_ascii_digit()
            || if upper {
                ('A'..='F').contains(&c)
            } else {
                ('a'..='f').contains(&c)
            }
    };
    sizes == [8, 4, 4, 4, 12] && groups.iter().all(|g| g.chars().all(digit))
}

/// Every known deviation is a fixture's, changes only the streams it names, and changes them:
/// its journal is the original's trace edited, not a copy of ours.
#[test]
fn known_deviations_edit_their_fixture_in_the_streams_they_name() {
    for k in journal::KNOWN_DEVIATIONS {
        let text = std::fs::read_to_string(fixtures().join(format!("traces/{}.jsonl", k.case)))
            .expect("a fixture's trace");
        assert_eq!(
            k.original, text,
            "{}: the copy of the fixture's trace",
            k.case
        );
        let original = journal::parse(&text).unwrap();
        let deviated = journal::parse(k.journal).unwrap();
        let e = journal::explain(&original, &deviated, 0.0, Some(k)).unwrap();
        assert!(e.conforms() && e.stale.is_empty(), "{}: {e:?}", k.case);
        // Calls, returns, writes and signals outside the streams are the original's, byte for
        // byte (publishes outside them were compared above, by role).
        let outside = |lines: &[Value]| -> Vec<String> {
            lines
                .iter()
                .filter(|l| {
                    l["type"] != "publish" && !k.streams.contains(&l["key"].as_str().unwrap_or(""))
                })
                .map(|l| l.to_string())
                .collect()
        };
        assert_eq!(outside(&deviated), outside(&original), "{}", k.case);
    }
}

/// A scenario journal that differs from what the deviation gives in the deviation's own
/// stream fails the comparison: `assume_dead` with the taking write's `Data` changed.
#[test]
fn a_difference_in_a_deviations_stream_is_not_named_away() {
    let scenario =
        scenario::load(&fixtures().join("scenarios/assume_dead.json")).expect("scenario loads");
    let mut ours = scenario::run(&scenario).expect("scenario runs");
    let text = std::fs::read_to_string(fixtures().join("traces/assume_dead.jsonl")).unwrap();
    let original = journal::parse(&text).unwrap();
    let known = journal::known_deviation("assume_dead");
    assert!(
        journal::explain(&original, &ours, 1.0 / 60.0, known)
            .unwrap()
            .conforms()
    );
    let take = ours
        .iter_mut()
        .rfind(|l| l["type"] == "write")
        .expect("the taking write");
    take["value"]["Data"] = json!({"Coins": 0});
    let e = journal::explain(&original, &ours, 1.0 / 60.0, known).unwrap();
    assert!(!e.conforms());
    assert_eq!(e.departures.len(), 1, "{e:?}");
    assert_eq!(e.departures[0].stream, "k");
    // Nothing in "k" is named as the deviation's: its differences are unexplained.
    assert!(e.named.iter().all(|(_, d)| d.stream != "k"), "{e:?}");
    assert!(e.unexplained.iter().any(|d| d.stream == "k"), "{e:?}");
}

/// The cases below, one test each.
const CASES: [&str; 8] = [
    "lifecycle",
    "handoff_message",
    "handoff_steal",
    "messages",
    "assume_dead",
    "shutdown",
    "autosave_ring",
    "final_save_retry",
];

/// Every scenario in the fixtures folder has a trace and is one of [`CASES`], and every trace
/// has its scenario: a fixture added later fails here until it is listed (and given its test
/// below).
#[test]
fn every_fixture_scenario_is_run() {
    let names = |dir: &str, ext: &str| {
        let mut names: Vec<String> = std::fs::read_dir(fixtures().join(dir))
            .expect("fixtures folder")
            .filter_map(|entry| {
                let name = entry.ok()?.file_name().into_string().ok()?;
                name.strip_suffix(ext).map(str::to_string)
            })
            .collect();
        names.sort();
        names
    };
    let mut cases: Vec<String> = CASES.iter().map(|c| c.to_string()).collect();
    cases.sort();
    assert_eq!(names("scenarios", ".json"), cases);
    assert_eq!(names("traces", ".jsonl"), cases);
}

#[test]
fn lifecycle() {
    check("lifecycle");
}

#[test]
fn handoff_message() {
    check("handoff_message");
}

#[test]
fn handoff_steal() {
    check("handoff_steal");
}

#[test]
fn messages() {
    check("messages");
}

#[test]
fn assume_dead() {
    check("assume_dead");
}

#[test]
fn shutdown() {
    check("shutdown");
}

#[test]
fn autosave_ring() {
    check("autosave_ring");
}

#[test]
fn final_save_retry() {
    check("final_save_retry");
}
