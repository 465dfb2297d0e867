//! Conformance with the original (issue: harness §6): every scenario in
//! `shared/fixtures/scenarios/` runs with its latency model and its journal matches the
//! original's in `shared/fixtures/traces/` — per key the same stored values (job ids and GUIDs
//! by role), the same publishes, calls, returns and signals, at times within one frame — except
//! where a deviation (`journal::KNOWN_DEVIATIONS`) names the difference.

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
    let known = journal::known_deviations(case);
    let e = journal::explain(
        journal::compare(&original, &ours, 1.0 / 60.0 + 1e-6),
        &known,
    );
    for (deviation, d) in &e.named {
        eprintln!("{case}: deviation \"{deviation}\" (docs/DEVIATIONS.md):\n{d}");
        // The notice after a steal is one publish more where the original's stream of that
        // topic ends: the end request, with the count of the session the lock was taken from.
        if *deviation == "§19 item 8" {
            let (t, body) = d.actual.as_ref().expect("an added line");
            assert_eq!(d.expected, None, "{case}: {d}");
            // When the taking start returns: the old lock's count, sent once.
            let (count, at) = if case == "assume_dead" {
                (3, 3.3)
            } else {
                (1, 56.8)
            };
            let want: Value = json!({"EndSession": true, "LoadCount": count});
            assert_eq!(body["data"], want, "{case}: {d}");
            assert!((t - at).abs() <= 1.0 / 60.0 + 1e-6, "{case}: {d}");
        }
    }
    // Each named difference is one line more than the original's: as many publishes more.
    let publishes = |j: &[Value]| j.iter().filter(|l| l["type"] == "publish").count();
    assert_eq!(
        publishes(&ours),
        publishes(&original) + e.named.len(),
        "{case}"
    );
    assert!(
        e.unexplained.is_empty(),
        "{case}: {} difference(s) from the original:\n{}\n--- our journal ---\n{}",
        e.unexplained.len(),
        e.unexplained
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        journal::render(&ours)
    );
    assert!(
        e.stale.is_empty(),
        "{case}: known deviations that no longer show: {:?}",
        e.stale
    );
    assert_eq!(ours.last().unwrap()["type"], "end");
    // Times are given to the microsecond, without float noise (1.3, not 1.2999999999999998).
    for line in &ours {
        let t = line["t"].to_string();
        let decimals = t.split('.').nth(1).map_or(0, str::len);
        assert!(decimals <= 6, "{case}: t {t} in {line}");
    }
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
