//! Traces and replay (issue "harness" §5): a recorded fleet run replays on fresh engines with
//! byte-identical outputs; the same seed run twice gives the same outputs and the same stored
//! data; a damaged trace is refused with a clear error.

use profilestore_harness::export;
use profilestore_harness::fleet::{Fleet, FleetConfig};
use profilestore_harness::storage::MemoryStorage;
use profilestore_harness::trace::{self, Trace, TraceError, TraceFile};

fn recorded(seed: u64) -> Fleet {
    let mut config = FleetConfig::new(seed, 3, 10, 240.0, 0.05);
    config.record = true;
    config.crash_rate = 0.05;
    let mut fleet =
        Fleet::new(config, Box::new(MemoryStorage::new())).expect("a valid fleet configuration");
    fleet.run(|_| {});
    fleet
}

#[test]
fn a_recorded_fleet_replays_byte_for_byte() {
    let fleet = recorded(7);
    let t = Trace::of(&fleet.world, Some(fleet.config.clone())).unwrap();
    assert!(t.inputs.len() > 300, "{} inputs", t.inputs.len());
    let bytes = t.to_bytes().unwrap();
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
    // Drop the first DataStore answer: the engines diverge from the recording.
    let i = t
        .inputs
        .iter()
        .position(|x| matches!(x.input, profilestore_core::Input::DataStoreResponse { .. }))
        .unwrap();
    t.inputs.remove(i);
    let r = trace::replay(&t);
    assert!(!r.identical());
    // The sixth input, the first DataStore answer, is gone: from the second output on the
    // replay differs (exact: the run is seeded).
    assert_eq!((i, r.first_difference), (5, Some(1)));
}

/// A transform that writes something else is a difference even when every signal and
/// completion stays the same: the written value is what the trace checks it by.
#[test]
fn a_changed_written_value_is_detected_by_replay() {
    use profilestore_core::InputResult;
    use profilestore_core::input::TransformedRecord;
    let fleet = recorded(8);
    let mut t = Trace::of(&fleet.world, None).unwrap();
    let (i, traced) = t
        .inputs
        .iter_mut()
        .enumerate()
        .find(|(_, x)| {
            matches!(
                x.result,
                InputResult::Transformed(TransformedRecord::Write { .. })
            )
        })
        .unwrap();
    if let InputResult::Transformed(TransformedRecord::Write { value, .. }) = &mut traced.result {
        value["Data"]["Counter"] = profilestore_core::json!(-1);
    }
    let r = trace::replay(&t);
    assert_eq!(r.first_difference, None, "no signal changed");
    assert_eq!(r.first_result_difference, Some(i));
    assert!(!r.identical());
}

/// An engine that puts out the same outputs but asks to be woken at another time is not the
/// same run: each input's recorded wake-up is checked (an auto-save moved later, before the
/// next recorded tick, would otherwise replay as identical).
#[test]
fn a_changed_wake_up_is_detected_by_replay() {
    let fleet = recorded(8);
    let mut t = Trace::of(&fleet.world, None).unwrap();
    let i = t.inputs.len() / 2;
    t.inputs[i].deadline = t.inputs[i].deadline.map(|d| d + 0.5);
    let r = trace::replay(&t);
    assert_eq!(
        (r.first_difference, r.first_result_difference),
        (None, None)
    );
    assert_eq!(r.first_deadline_difference, Some(i));
    assert!(!r.identical());
}

/// An output recorded after another input than the one that made it is not the same run,
/// though every output comes in the same order: the committed trace with one output moved past
/// the next input, or ahead of the input that made it, replays as different, in memory and
/// from a file.
#[test]
fn an_output_moved_across_an_input_is_detected_by_replay() {
    let t = committed_trace();
    let i = (1..t.marks.len())
        .find(|&i| t.marks[i] > t.marks[i - 1] && t.marks[i + 1] > t.marks[i])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (shift, first) in [(-1, t.marks[i] - 1), (1, t.marks[i])] {
        let mut moved = t.clone();
        moved.marks[i] = moved.marks[i].checked_add_signed(shift).unwrap();
        let r = trace::replay(&moved);
        assert_eq!(r.first_difference, Some(first), "moved by {shift}");
        assert_eq!(
            (r.first_result_difference, r.first_deadline_difference),
            (None, None)
        );
        assert!(!r.identical());
        let path = dir.path().join("moved.trace");
        std::fs::write(&path, moved.to_bytes().unwrap()).unwrap();
        let r = TraceFile::open(&path).unwrap().replay().unwrap();
        assert_eq!(
            r.first_difference,
            Some(first),
            "moved by {shift}, from a file"
        );
    }
    // Unmoved, it is the recording.
    assert!(trace::replay(&t).identical());
}

/// `payload` as a trace file holds each part after the format number: its length, the
/// length's complement and its CRC-32 (little-endian `u32`s), then its bytes.
fn part(payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut bytes = len.to_le_bytes().to_vec();
    bytes.extend((!len).to_le_bytes());
    bytes.extend(crc32fast::hash(payload).to_le_bytes());
    bytes.extend(payload);
    bytes
}

/// The bytes before a part's contents ([`part`]).
const PREFIX: usize = 12;

/// The length of the part of `bytes` that starts at `at` ([`part`]).
fn part_len(bytes: &[u8], at: usize) -> usize {
    let prefix = bytes
        .get(at..at + 4)
        .expect("a part's length where one starts");
    u32::from_le_bytes(prefix.try_into().unwrap()) as usize
}

/// Where each part of a trace file starts, the header first (after 8 bytes of magic and one
/// of format number), read off their lengths.
fn part_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = vec![];
    let mut at = 9;
    while at < bytes.len() {
        starts.push(at);
        at += PREFIX + part_len(bytes, at);
    }
    assert_eq!(at, bytes.len(), "the parts end where the file does");
    starts
}

/// Lengths inside a file are not trusted, nothing may follow the trace, and inputs must name
/// the trace's servers: each gets an error, not a panic or a huge allocation.
#[test]
fn hostile_trace_bytes_get_errors() {
    use profilestore_harness::trace::{TRACE_FORMAT, TRACE_MAGIC};
    // format, then a header (the format again, seed 0, epoch 0, fps 0.0, latency, 1 server
    // whose name claims a huge length) whose checksum is right.
    // Also in a file of 4 MiB: what a part may claim is bounded by the part, not the file (by
    // the file, 32 MiB was claimed and allocated, and a file over 64 GiB had no bound at all).
    for (len, padding) in [(u64::MAX, 0), (1 << 40, 0), (1 << 25, 4 << 20)] {
        let mut bytes = TRACE_MAGIC.to_vec();
        bytes.push(TRACE_FORMAT as u8);
        let mut header = vec![TRACE_FORMAT as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0xFD];
        header.extend(len.to_le_bytes());
        bytes.extend(part(&header));
        bytes.resize(bytes.len() + padding, 0);
        let err = Trace::from_bytes(&bytes, "h.bin").unwrap_err();
        assert!(matches!(err, TraceError::Decode { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "trace file h.bin is not a readable trace: its header (at byte 9): a length inside \
             it is larger than the file can hold"
        );
    }
    // A header whose length matches its complement but is over the largest part: refused
    // before anything is allocated for it.
    let mut bytes = TRACE_MAGIC.to_vec();
    bytes.push(TRACE_FORMAT as u8);
    let len = trace::MAX_PART as u32 + 1;
    bytes.extend(len.to_le_bytes());
    bytes.extend((!len).to_le_bytes());
    bytes.extend([0; 4]);
    assert_eq!(
        Trace::from_bytes(&bytes, "h.bin").unwrap_err().to_string(),
        "trace file h.bin is not a readable trace: its header (at byte 9) has a damaged \
         length: the file is damaged"
    );
    let fleet = recorded(9);
    let t = Trace::of(&fleet.world, None).unwrap();
    // A trace cut short says so in words: inside a frame, or between two (its end frame
    // lost: here the last output's too, so the file holds a trace of every frame but those).
    let whole = t.to_bytes().unwrap();
    let err = Trace::from_bytes(&whole[..whole.len() - 3], "h.bin").unwrap_err();
    assert_eq!(
        err.to_string(),
        "trace file h.bin is not a readable trace: the file ends too early (cut short?)"
    );
    // Cut where the end frame (the last part) starts: whole frames only.
    let end_frame = |bytes: &[u8]| *part_starts(bytes).last().unwrap();
    let at = end_frame(&whole);
    assert_eq!(
        Trace::from_bytes(&whole[..at], "h.bin")
            .unwrap_err()
            .to_string(),
        "trace file h.bin is not a readable trace: the file ends before the trace does (cut \
         short?)"
    );
    // An end frame that does not count what the file holds: here one output was lost.
    let mut shorter = t.clone();
    shorter.outputs.pop();
    let shorter = shorter.to_bytes().unwrap();
    let frames = end_frame(&shorter);
    let mut lost = shorter[..frames].to_vec();
    lost.extend(&whole[at..]);
    let err = Trace::from_bytes(&lost, "h.bin").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "trace file h.bin is not a readable trace: its end counts {} inputs and {} outputs, \
             it holds {} and {}",
            t.inputs.len(),
            t.outputs.len(),
            t.inputs.len(),
            t.outputs.len() - 1
        )
    );
    let mut bytes = t.to_bytes().unwrap();
    bytes.push(0);
    let err = Trace::from_bytes(&bytes, "h.bin").unwrap_err();
    assert_eq!(
        err.to_string(),
        "trace file h.bin is not a readable trace: 1 bytes follow the trace"
    );
    let mut bad = t.clone();
    bad.inputs[5].server = 99;
    let err = Trace::from_bytes(&bad.to_bytes().unwrap(), "h.bin").unwrap_err();
    assert_eq!(
        err.to_string(),
        "trace file h.bin is not a readable trace: input 5 is for server 99, the trace has 3"
    );
    let refusal = |found: u32| {
        format!(
            "trace file h.bin has format {found}, this build reads format {TRACE_FORMAT} (a trace replays with the version that recorded it)"
        )
    };
    // A trace of another format: its number, then a layout this build does not read.
    let mut other = [&TRACE_MAGIC[..], &[TRACE_FORMAT as u8 + 1], &[0xff; 16]].concat();
    let err = Trace::from_bytes(&other, "h.bin").unwrap_err();
    assert_eq!(err.to_string(), refusal(TRACE_FORMAT + 1));
    // A sound header that says another format than the number up front: damage too.
    let whole = t.to_bytes().unwrap();
    let len = part_len(&whole, 9);
    let mut header = whole[9 + PREFIX..9 + PREFIX + len].to_vec();
    header[0] = TRACE_FORMAT as u8 - 1;
    let mixed = [&whole[..9], &part(&header), &whole[9 + PREFIX + len..]].concat();
    let err = Trace::from_bytes(&mixed, "h.bin").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "trace file h.bin is not a readable trace: its header says format {}, its format \
             number {TRACE_FORMAT}",
            TRACE_FORMAT - 1
        )
    );
    // Real traces of the formats before (their magic, number and header: the first bytes of
    // each `recorded.trace` committed): format 17's header has this layout but not the number
    // repeated inside it, and from format 18 on each repeats its own number: another format,
    // not damage.
    for format in 17..TRACE_FORMAT {
        let path = format!(
            "{}/tests/data/format{format}-header.trace",
            env!("CARGO_MANIFEST_DIR")
        );
        let err = Trace::from_bytes(&std::fs::read(&path).unwrap(), "h.bin").unwrap_err();
        assert_eq!(err.to_string(), refusal(format), "format {format}");
    }
    // This format's header after another number: the number is a damaged byte.
    let mut renumbered = t.to_bytes().unwrap();
    for found in [TRACE_FORMAT + 1, TRACE_FORMAT - 1] {
        renumbered[TRACE_MAGIC.len()] = found as u8;
        let err = Trace::from_bytes(&renumbered, "h.bin").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "trace file h.bin is not a readable trace: its format number reads {found}, \
                 but its header is format {TRACE_FORMAT}'s: the file is damaged"
            )
        );
    }
    // Formats 7 and 6 have this layout but engines that behaved differently (starts behind a
    // final save at shutdown; no notice after a steal), format 5 lacks the fleet's `places`,
    // format 4's engine queued starts differently: refused, not replayed into a false
    // difference.
    for older in [7, 6, 5, 4, 3] {
        other[TRACE_MAGIC.len()] = older as u8;
        let err = Trace::from_bytes(&other, "h.bin").unwrap_err();
        assert_eq!(err.to_string(), refusal(older));
    }
    // Format 1 files had no header and began with the byte 1.
    let format_1 = [1, 7, 0, 0];
    let err = Trace::from_bytes(&format_1, "h.bin").unwrap_err();
    assert_eq!(err.to_string(), refusal(1));
}

#[test]
fn same_seed_twice_gives_identical_outputs_and_data() {
    let a = recorded(9);
    let mut b = recorded(9);
    let (ta, tb) = (
        Trace::of(&a.world, None).unwrap(),
        Trace::of(&b.world, None).unwrap(),
    );
    assert_eq!(ta.to_bytes().unwrap(), tb.to_bytes().unwrap());
    assert!(trace::same_run(&a.world, &b.world).unwrap());
    let mut a = a;
    let ea = export::export_string(a.world.datastore.storage_mut()).unwrap();
    let eb = export::export_string(b.world.datastore.storage_mut()).unwrap();
    assert_eq!(ea, eb);
    let c = recorded(10);
    assert_ne!(
        Trace::of(&c.world, None).unwrap().to_bytes().unwrap(),
        ta.to_bytes().unwrap(),
        "another seed, another run"
    );
    // The check `simulate --check-determinism` makes (it exits 1 when this is false).
    assert!(!trace::same_run(&a.world, &c.world).unwrap());
    let unrecorded = Fleet::new(
        FleetConfig::new(9, 1, 1, 10.0, 0.0),
        Box::new(MemoryStorage::new()),
    )
    .expect("a valid fleet configuration");
    assert!(matches!(
        trace::same_run(&a.world, &unrecorded.world),
        Err(TraceError::NotRecorded)
    ));
}

#[test]
fn unreadable_traces_say_why() {
    let err = Trace::from_bytes(b"not a trace", "x.bin").unwrap_err();
    assert!(matches!(err, TraceError::Decode { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "trace file x.bin is not a readable trace: no trace header"
    );
    let err = Trace::load(std::path::Path::new("/nonexistent/t.bin")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/t.bin"));
    let err = Trace::load(std::path::Path::new("/tmp")).unwrap_err();
    assert!(err.to_string().starts_with("trace file /tmp: "), "{err}");
}

/// A trace recorded by an earlier build and committed (`tests/data/recorded.trace`) replays
/// byte-identical: a change to the engine's behaviour that moves any output fails here until
/// `TRACE_FORMAT` is raised (which makes older traces say so instead of reporting differences)
/// and the file is recorded again, its old header kept first as the sample of the old format
/// that `hostile_trace_bytes_get_errors` reads, from the workspace root:
///
/// ```sh
/// head -c 125 test-harness/tests/data/recorded.trace \
///     > test-harness/tests/data/format$OLD-header.trace
/// cargo run --release -p profilestore-harness --bin profilestore-sim -- simulate --memory \
///     --players 6 --servers 2 --duration 2m --faults 0.1 --seed 5 \
///     --trace test-harness/tests/data/recorded.trace
/// ```
#[test]
fn the_committed_trace_replays_identically() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/recorded.trace");
    let t = match Trace::load(std::path::Path::new(path)) {
        Err(TraceError::Format { found, .. }) => panic!(
            "tests/data/recorded.trace has format {found}, this build writes {}: record it again \
             (see this test's doc comment)",
            trace::TRACE_FORMAT
        ),
        other => other.expect("the committed trace loads"),
    };
    let fleet = t.fleet.as_ref().expect("recorded by simulate");
    assert_eq!((fleet.seed, fleet.servers, fleet.players), (5, 2, 6));
    let r = trace::replay(&t);
    assert!(
        r.inputs > 100 && r.outputs > 100,
        "{} inputs, {} outputs",
        r.inputs,
        r.outputs
    );
    assert!(
        r.identical(),
        "the engine's outputs moved since the trace was recorded ({r:?}): raise TRACE_FORMAT \
         and record it again (see this test's doc comment)"
    );
}

/// The committed trace (`the_committed_trace_replays_identically`), for tests that damage it.
fn committed_trace() -> Trace {
    Trace::from_bytes(committed_bytes(), "recorded.trace").expect("the committed trace loads")
}

/// The committed trace's bytes (`tests/data/recorded.trace`).
fn committed_bytes() -> &'static [u8] {
    include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/recorded.trace"
    ))
}

/// The id fields of `input` (store, profile, call, op, query, subscription), as numbers.
fn ids_mut(input: &mut profilestore_core::Input) -> Vec<&mut u64> {
    use profilestore_core::Input as I;
    match input {
        I::StartSession { store, .. }
        | I::Message { store, .. }
        | I::Get { store, .. }
        | I::Remove { store, .. }
        | I::VersionQuery { store, .. } => vec![&mut store.store.0],
        I::SetTemplate { store, .. } => vec![&mut store.0],
        I::CancelSessionStart { call, .. } => vec![&mut call.0],
        I::EndSession { profile, .. }
        | I::Save { profile, .. }
        | I::SetAsync { profile, .. }
        | I::AddMessageHandler { profile }
        | I::MessageProcessed { profile, .. }
        | I::AddUserId { profile, .. }
        | I::RemoveUserId { profile, .. }
        | I::ForgetProfile { profile } => vec![&mut profile.0],
        I::VersionQueryNext { query, .. } | I::ForgetVersionQuery { query } => vec![&mut query.0],
        I::Transform { op, .. } | I::DataStoreResponse { op, .. } => vec![&mut op.0],
        I::SubscribeResult { subscription, .. } | I::MessageReceived { subscription, .. } => {
            vec![&mut subscription.0]
        }
        I::NewStore { .. }
        | I::SetConstant { .. }
        | I::Shutdown { .. }
        | I::Timeout { .. }
        | I::DataStoreState { .. } => vec![],
    }
}

/// Values a damaged trace might carry where a stored profile or a message belongs.
fn odd_value(n: usize) -> profilestore_core::value::Value {
    use profilestore_core::value::json;
    match n % 6 {
        0 => json!(null),
        1 => json!(7),
        2 => json!("Data"),
        3 => json!([1, {"Data": 2}]),
        4 => json!({"Data": [], "MetaData": "x", "GlobalUpdates": 3}),
        _ => json!({"Data": {}, "MetaData": {"ActiveSession": [1], "ProfileCreateTime": "t"}}),
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 256,
        // A fixed seed: every run, CI's too, tries the same cases.
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5EED),
        ..Default::default()
    })]

    /// Any one byte of a trace file changed, anywhere, makes it unreadable, never a trace
    /// that reads (and replays as a run that differs), nor a panic: the magic and the format
    /// number are checked, and every part's length against its complement and its contents
    /// against their CRC-32, which catches every change of one byte.
    #[test]
    fn any_changed_byte_makes_a_trace_unreadable(at in 0usize..1 << 20, change in 1u8..=255) {
        let bytes = committed_bytes();
        let at = at % bytes.len();
        let mut damaged = bytes.to_vec();
        damaged[at] ^= change;
        let read = std::panic::catch_unwind(|| Trace::from_bytes(&damaged, "d.bin"));
        proptest::prop_assert!(matches!(read, Ok(Err(_))), "byte {} ^ {}", at, change);
    }

    /// A trace whose inputs were dropped, repeated, reordered or moved to another server (a
    /// hand-edited or damaged file that still decodes) replays without panicking: the engine
    /// refuses inputs that name nothing it knows (`Engine::replay_input`). (Whether replay
    /// then reports a difference is not asserted: an edit can leave every output as it was,
    /// say a timer input dropped that put nothing out.)
    #[test]
    fn a_trace_with_its_inputs_shuffled_replays_without_panicking(
        edits in proptest::collection::vec((0u8..4, 0usize..100_000, 0usize..100_000), 1..6)
    ) {
        let mut t = committed_trace();
        for (kind, a, b) in edits {
            let n = t.inputs.len();
            let (a, b) = (a % n, b % n);
            match kind {
                0 => {
                    t.inputs.remove(a);
                }
                1 => {
                    let repeated = t.inputs[a].clone();
                    t.inputs.insert(b, repeated);
                }
                2 => t.inputs.swap(a, b),
                _ => t.inputs[a].server = t.inputs[b].server,
            }
        }
        let replayed = std::panic::catch_unwind(|| trace::replay(&t));
        proptest::prop_assert!(replayed.is_ok());
    }

    /// A trace whose inputs' contents were altered (a hand-edited or damaged file that still
    /// decodes) replays without panicking: ids that name another object of the same kind or
    /// nothing at all, a DataStore answer of another request (of another kind), a stored value
    /// or a message that is not what the engine wrote, clocks that jump, stop or are not
    /// numbers. The engine refuses or reports what it cannot use. (As above, whether replay
    /// reports a difference is not asserted: an edit can change nothing the engine puts out.)
    #[test]
    fn a_trace_with_its_inputs_altered_replays_without_panicking(
        edits in proptest::collection::vec(
            (0u8..6, 0usize..100_000, 0usize..100_000, 0usize..100_000),
            1..8,
        )
    ) {
        use profilestore_core::Input as I;
        let mut t = committed_trace();
        let n = t.inputs.len();
        for (kind, a, b, c) in edits {
            let (i, j) = (a % n, b % n);
            let other = t.inputs[j].input.clone();
            let input = &mut t.inputs[i].input;
            match kind {
                // An id of another input (any kind), or a number naming nothing.
                0 | 1 => {
                    let mut donor = other;
                    let value = match (kind, ids_mut(&mut donor).pop()) {
                        (0, Some(id)) => *id,
                        _ => b as u64,
                    };
                    if let Some(id) = ids_mut(input).pop() {
                        *id = value;
                    }
                }
                // Another request's answer.
                2 => {
                    if let (I::DataStoreResponse { result, .. }, I::DataStoreResponse { result: r, .. }) =
                        (input, other)
                    {
                        *result = r;
                    }
                }
                // A stored value or a message the engine did not write.
                3 => match input {
                    I::Transform { current, .. } => *current = Some(odd_value(b)),
                    I::MessageReceived { data, .. } => *data = odd_value(b),
                    I::Message { message, .. } => *message = odd_value(b),
                    _ => {}
                },
                // Clocks that are not numbers, run backwards or leap: the monotonic and the
                // wall clock drawn apart, and a transform's wall clock.
                4 => {
                    let mono = [f64::NAN, f64::NEG_INFINITY, -1.0, 0.0, 1e300, f64::INFINITY];
                    let wall = [i64::MIN, -1, 0, i64::MAX];
                    if let Some(now) = input.now_mut() {
                        now.mono = mono[b % mono.len()];
                        now.wall = wall[c % wall.len()];
                    } else if let I::Transform { wall: w, .. } = input {
                        *w = wall[c % wall.len()];
                    }
                }
                // Live answers (what the host said while a timer or a transform ran) recorded
                // for another input.
                _ => {
                    if let (
                        I::Timeout { live, .. } | I::Transform { live, .. },
                        I::Timeout { live: l, .. } | I::Transform { live: l, .. },
                    ) = (input, other)
                    {
                        *live = l;
                    }
                }
            }
        }
        let replayed = std::panic::catch_unwind(|| trace::replay(&t));
        proptest::prop_assert!(replayed.is_ok());
    }
}

/// A trace written as the run goes (`simulate --trace`) holds the same bytes as the one the
/// same run records in memory, and replays from the file as it is read, without holding it.
#[test]
fn a_trace_streamed_as_the_run_goes_is_the_one_held_in_memory() {
    use profilestore_harness::trace::TraceWriter;
    let memory = recorded(11);
    let t = Trace::of(&memory.world, Some(memory.config.clone())).unwrap();
    let bytes = t.to_bytes().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.trace");
    let storage = Box::new(MemoryStorage::new());
    let mut fleet = Fleet::new(memory.config.clone(), storage).unwrap();
    let writer = TraceWriter::create(&path, &fleet.world.config, Some(&fleet.config)).unwrap();
    // Another run writing the same trace meanwhile is refused, and leaves this one's be.
    let err = TraceWriter::create(&path, &fleet.world.config, None)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "trace file {}: another run is writing this trace ({}.partial is locked)",
            path.display(),
            path.display()
        )
    );
    fleet.world.stream_trace(writer).unwrap();
    assert!(matches!(
        Trace::of(&fleet.world, None),
        Err(TraceError::NotRecorded)
    ));
    fleet.run(|_| {});
    assert!(
        !path.exists(),
        "the file takes its name when the trace is finished"
    );
    fleet.world.finish_trace().unwrap().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let file = TraceFile::open(&path).unwrap();
    assert_eq!(file.fleet(), Some(&memory.config));
    let r = file.replay().unwrap();
    assert!(r.identical(), "{r:?}");
    assert_eq!((r.inputs, r.outputs), (t.inputs.len(), t.outputs.len()));
    // A writer dropped unfinished (an error, a panic) leaves nothing behind.
    let other = dir.path().join("unfinished.trace");
    drop(TraceWriter::create(&other, &fleet.world.config, None).unwrap());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // A file cut in the middle is an error of the replay that reads that far.
    std::fs::write(&other, &bytes[..bytes.len() / 2]).unwrap();
    let err = TraceFile::open(&other).unwrap().replay().unwrap_err();
    let message = format!("{err}");
    assert!(
        message.starts_with(&format!("trace file {}", other.display()))
            && message.ends_with("(cut short?)"),
        "{message}"
    );
}

/// A byte changed anywhere after the format number is damage, named with the part it falls in
/// and the byte where that part starts, by a replay and by a replay of a prefix alike (each part
/// carries its length twice and a CRC-32: `trace.rs`, format 17), not replayed as a run that
/// differs nor taken for a cut; a whole part lost from the middle is damage too.
#[test]
fn a_changed_byte_is_named_as_damage_where_it_is() {
    use profilestore_harness::trace::TraceFile;
    let dir = tempfile::tempdir().unwrap();
    let fleet = recorded(3);
    let t = Trace::of(&fleet.world, Some(fleet.config.clone())).unwrap();
    let bytes = t.to_bytes().unwrap();
    let starts = part_starts(&bytes);
    assert_eq!(starts.len(), 1 + t.inputs.len() + t.outputs.len() + 1);
    let path = dir.path().join("damaged.trace");
    let read = |damaged: &[u8]| {
        std::fs::write(&path, damaged).unwrap();
        let whole = TraceFile::open(&path).unwrap().replay().unwrap_err();
        let prefix = TraceFile::open(&path).unwrap().replay_prefix().unwrap_err();
        assert_eq!(whole.to_string(), prefix.to_string());
        assert!(matches!(whole, TraceError::Decode { .. }), "{whole}");
        whole.to_string()
    };
    // The first frame, one in the middle, the end frame: a bit of the contents, of the
    // checksum, of the length (one more, one less, far more than the file holds), of the
    // length's complement.
    for k in [1, starts.len() / 2, starts.len() - 1] {
        let start = starts[k];
        let named = |what: &str| {
            format!(
                "trace file {} is not a readable trace: frame {} (at byte {start}) {what}: the \
                 file is damaged",
                path.display(),
                k - 1
            )
        };
        let flips = [
            (start + PREFIX + part_len(&bytes, start) / 2, 0x10),
            (start + 9, 0x10),
            (start, 1),
            (start, 2),
            (start + 3, 0x40),
            (start + 5, 0x10),
        ];
        for (at, bit) in flips {
            let mut damaged = bytes.clone();
            damaged[at] ^= bit;
            let what = if at < start + 8 {
                "has a damaged length"
            } else {
                "does not match its checksum"
            };
            assert_eq!(read(&damaged), named(what), "byte {at} ^ {bit}");
        }
    }
    // The header.
    let mut damaged = bytes.clone();
    damaged[9 + PREFIX + 1] ^= 0x10;
    let err = Trace::from_bytes(&damaged, "h.bin").unwrap_err();
    assert_eq!(
        err.to_string(),
        "trace file h.bin is not a readable trace: its header (at byte 9) does not match its \
         checksum: the file is damaged"
    );
    // A frame lost from the middle: the end frame's counts say so.
    let k = starts.len() / 2;
    let lost = [&bytes[..starts[k]], &bytes[starts[k + 1]..]].concat();
    assert!(read(&lost).contains("its end counts"), "{}", read(&lost));
}

/// A trace cut short (a killed run's partial file, a stopped run's pipe) replays as far as it
/// goes with `replay_prefix`: every input it holds replayed and every output it holds compared,
/// wherever the cut falls, saying how many bytes of an incomplete frame it left; a recorded
/// output the replay does not make is still a difference, other damage still an error, and a
/// whole trace replays whole.
#[test]
fn a_trace_cut_short_replays_as_far_as_it_goes() {
    use profilestore_harness::trace::TraceFile;
    let dir = tempfile::tempdir().unwrap();
    let fleet = recorded(14);
    let t = Trace::of(&fleet.world, Some(fleet.config.clone())).unwrap();
    let bytes = t.to_bytes().unwrap();
    let path = dir.path().join("cut.trace");
    let prefix = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        TraceFile::open(&path).unwrap().replay_prefix()
    };
    let (whole, cut) = prefix(&bytes).unwrap();
    assert!(cut.is_none() && whole.identical(), "{whole:?}");
    assert_eq!(
        (whole.inputs, whole.outputs),
        (t.inputs.len(), t.outputs.len())
    );
    // Cuts inside frames, from near the header to the end frame.
    let mut last = (0, 0);
    for tenth in 1..10 {
        let at = bytes.len() * tenth / 10 + tenth;
        let (r, cut) = prefix(&bytes[..at]).unwrap();
        assert!(r.identical(), "cut at {tenth}/10: {r:?}");
        assert!(r.inputs >= last.0 && r.outputs >= last.1 && r.inputs < t.inputs.len());
        last = (r.inputs, r.outputs);
        // What was not read is the start of one frame.
        let unread = cut.expect("cut") as usize;
        assert!(unread < at && unread < 4096, "{unread}");
    }
    assert!(last.0 > t.inputs.len() / 2, "{last:?}");
    let (r, cut) = prefix(&bytes[..bytes.len() - 1]).unwrap();
    assert!(cut.is_some() && r.identical(), "{r:?}");
    assert_eq!((r.inputs, r.outputs), (t.inputs.len(), t.outputs.len()));
    // A cut between frames: the full trace's bytes up to where the trace of its first inputs
    // (and the outputs before the next) puts its end frame.
    let k = t.inputs.len() / 3;
    let mut first = t.clone();
    first.inputs.truncate(k);
    first.marks.truncate(k);
    first.outputs.truncate(t.marks[k]);
    let first = first.to_bytes().unwrap();
    // Where its end frame (its last part) starts: the full trace's next frame starts there.
    let between = *part_starts(&first).last().unwrap();
    assert_eq!(bytes[..between], first[..between]);
    let (r, cut) = prefix(&bytes[..between]).unwrap();
    assert_eq!(cut, Some(0));
    assert!(r.identical(), "{r:?}");
    assert_eq!((r.inputs, r.outputs), (k, t.marks[k]));
    // A recorded output the replay does not make: different, first or last.
    let mut tampered = t.clone();
    tampered.outputs.remove(0);
    tampered
        .marks
        .iter_mut()
        .for_each(|m| *m = m.saturating_sub(1));
    let tampered = tampered.to_bytes().unwrap();
    let (r, cut) = prefix(&tampered[..tampered.len() / 2]).unwrap();
    assert!(cut.is_some() && !r.identical(), "{r:?}");
    let mut extra = t.clone();
    extra.outputs.push(t.outputs[0].clone());
    let extra = extra.to_bytes().unwrap();
    let (r, cut) = prefix(&extra[..extra.len() - 1]).unwrap();
    assert!(cut.is_some() && !r.identical(), "{r:?}");
    assert_eq!(r.first_difference, Some(t.outputs.len()));
    // Bytes after the end are damage, not a cut.
    assert!(prefix(&[&bytes[..], &[0]].concat()).is_err());
}

/// The determinism check's comparison (`simulate --check-determinism`): a run's trace compared,
/// as the run goes, with the file an earlier run wrote: the same seed is the same bytes; another
/// seed, a file cut short or one with more after the trace are not.
#[test]
fn a_run_compared_with_a_trace_file_as_it_goes() {
    use profilestore_harness::trace::{TraceEnd, TraceWriter};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("first.trace");
    let first = recorded(12);
    Trace::of(&first.world, Some(first.config.clone()))
        .unwrap()
        .save(&path)
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let compare = |seed: u64, file: &std::path::Path| {
        let mut config = first.config.clone();
        config.seed = seed;
        let mut fleet = Fleet::new(config, Box::new(MemoryStorage::new())).unwrap();
        let comparer =
            TraceWriter::compare_with(file, &fleet.world.config, Some(&fleet.config)).unwrap();
        fleet.world.stream_trace(comparer).unwrap();
        fleet.run(|_| {});
        fleet.world.finish_trace().unwrap().unwrap()
    };
    assert_eq!(compare(12, &path), TraceEnd::Compared { same: true });
    assert_eq!(compare(13, &path), TraceEnd::Compared { same: false });
    let other = dir.path().join("other.trace");
    for changed in [
        bytes[..bytes.len() - 1].to_vec(),
        [&bytes[..], &[0]].concat(),
    ] {
        std::fs::write(&other, changed).unwrap();
        assert_eq!(compare(12, &other), TraceEnd::Compared { same: false });
    }
    // Comparing writes nothing.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

/// A sound trace reads back whatever its size: a header naming 3,000 servers, and an input
/// carrying a value of nearly 4 MiB. bincode claims 4 or 8 bytes for each integer and length,
/// however few bytes it took, so a part may claim several times its size (its decoder was once
/// bounded by the part's size alone, which refused such sound traces as damaged).
#[test]
fn a_trace_of_many_servers_and_a_large_value_reads_back() {
    use profilestore_core::value::json;
    use profilestore_core::{Input, InputResult};
    use profilestore_harness::datastore::DataStoreService;
    use profilestore_harness::messaging::{MessagingConfig, MessagingService};
    use profilestore_harness::world::{LatencyModel, ServerSpec, World, WorldConfig};
    let config = WorldConfig {
        seed: 3,
        epoch: 1_735_689_600,
        fps: 60.0,
        latency: LatencyModel::Fixed(0.15),
        servers: (0..3000)
            .map(|i| ServerSpec {
                name: format!("S{i}"),
                place_id: 1001 + i as i64,
                wall_skew: i as i64 % 7,
            })
            .collect(),
    };
    let ds = DataStoreService::new(config.epoch);
    let messaging = MessagingService::new(MessagingConfig::roblox(3)).unwrap();
    let mut w = World::new(config, ds, messaging).unwrap();
    w.record().unwrap();
    // A template of (4 MiB - 1 KiB) of JSON, under what a key holds.
    let template = json!({"s": "x".repeat((4 << 20) - 1024 - 8)});
    let input = Input::NewStore {
        name: "S".into(),
        template,
    };
    assert!(matches!(w.feed(0, input), InputResult::Store(Ok(_))));
    let t = Trace::of(&w, None).unwrap();
    let bytes = t.to_bytes().unwrap();
    let back = Trace::from_bytes(&bytes, "memory").unwrap();
    assert_eq!(back.world.servers.len(), 3000);
    assert_eq!(back, t);
}
