//! Traces and replay (issue "harness" §5): a recorded fleet run replays on fresh engines with
//! byte-identical outputs; the same seed run twice gives the same outputs and the same stored
//! data; a damaged trace is refused with a clear error.

use profilestore_harness::export;
use profilestore_harness::fleet::{Fleet, FleetConfig};
use profilestore_harness::storage::MemoryStorage;
use profilestore_harness::trace::{self, Trace, TraceError};

fn recorded(seed: u64) -> Fleet {
    let mut config = FleetConfig::new(seed, 3, 10, 240.0, 0.05);
    config.record = true;
    config.crash_rate = 0.05;
    let mut fleet = Fleet::new(config, Box::new(MemoryStorage::new()));
    fleet.run(|_| {});
    fleet
}

#[test]
fn a_recorded_fleet_replays_byte_for_byte() {
    let fleet = recorded(7);
    let t = Trace::of(&fleet.world, Some(fleet.config.clone())).unwrap();
    assert!(t.inputs.len() > 300, "{} inputs", t.inputs.len());
    let bytes = t.to_bytes();
    let back = Trace::from_bytes(&bytes, "memory").unwrap();
    assert_eq!(back, t);
    let r = trace::replay(&back);
    assert!(r.identical(), "{r:?}");
    assert_eq!(r.outputs, t.outputs.len());
}

#[test]
fn a_tampered_trace_is_detected_by_replay() {
    let fleet = recorded(8);
    let mut t = Trace::of(&fleet.world, None).unwrap();
    // Drop one DataStore answer from the middle: the engines diverge from the recording.
    let i = t
        .inputs
        .iter()
        .position(|x| matches!(x.input, profilestore_core::Input::DataStoreResponse { .. }))
        .unwrap();
    t.inputs.remove(i);
    let r = trace::replay(&t);
    assert!(!r.identical());
    assert!(r.first_difference.is_some());
}

#[test]
fn same_seed_twice_gives_identical_outputs_and_data() {
    let a = recorded(9);
    let mut b = recorded(9);
    let (ta, tb) = (
        Trace::of(&a.world, None).unwrap(),
        Trace::of(&b.world, None).unwrap(),
    );
    assert_eq!(ta.to_bytes(), tb.to_bytes());
    let mut a = a;
    let ea = export::export_string(a.world.datastore.storage_mut()).unwrap();
    let eb = export::export_string(b.world.datastore.storage_mut()).unwrap();
    assert_eq!(ea, eb);
    let c = recorded(10);
    assert_ne!(
        Trace::of(&c.world, None).unwrap().to_bytes(),
        ta.to_bytes(),
        "another seed, another run"
    );
}

#[test]
fn unreadable_traces_say_why() {
    let err = Trace::from_bytes(b"not a trace", "x.bin").unwrap_err();
    assert!(matches!(err, TraceError::Decode { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("trace file x.bin is not a readable trace")
    );
    let err = Trace::load(std::path::Path::new("/nonexistent/t.bin")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/t.bin"));
}
