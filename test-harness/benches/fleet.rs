//! Simulation speed (issue "harness", Performance): simulated DataStore requests per wall second
//! and the virtual-to-wall time ratio for
//!
//! - (a) 1 server × 1,000 players × 10 virtual minutes, and
//! - (b) 8 servers × 2,000 players hopping every 90 s × 1 virtual hour with 5% faults,
//!
//! each on the in-memory and on the on-disk (SQLite) backend, in the same run. (b) on SQLite
//! writes and fsyncs every committed version and takes minutes; it runs when
//! `PROFILESTORE_BENCH_FULL=1` is set.
//!
//! After each in-memory run, a comparison in the same run: the value work of one save —
//! snapshot the `Data`, append an id to its `Ops`, build the new stored document around it,
//! measure that for the size limit, drop the old one — timed on the profiles the run ended with,
//! once on the engine's shared values (`profilestore_core::value`) and once on the same profiles
//! as `serde_json::Value` trees (deep copies, a full walk to measure), the representation the
//! engine used before (`docs/PERFORMANCE.md`).
//!
//! The figures are those of the configured play: its DataStore requests (each request once,
//! when it reaches the DataStore, a latency after it goes out: failed and ambiguous ones
//! included, throttled or held ones once, not the
//! `GetAsync` calls the 4 s cache answers, nor refusals of a full throttle queue, nor
//! MessagingService traffic), its wall time and its virtual time. After it a fleet settles
//! (faults off, everyone leaves, every final save lands, some five virtual minutes): the line
//! ends with the whole run's rate and ratio.
//!
//! The in-memory runs repeat (15 times for (a), 30 for the 100-player reference below, 3 for
//! (b)) and print their fastest and median
//! wall time: identical runs on this shared VM have differed by 2× within an hour and by
//! more than 4× between sessions (`docs/PERFORMANCE.md`). Like `profilestore-sim
//! simulate`, they let go of the world's log as the fleet reads it ([`Fleet::keep_log`]).
//!
//! Every fleet's players, (a)'s included (the issue names no stay for it), stay about 100 s on
//! average (a stay drawn with a 90 s mean, exponentially, ends at the player's next action,
//! some 10 s later), then hop to another server (60%), rejoin the same one (25%) or
//! go offline for about 30 s (15%); with (a)'s one server a hop is a rejoin. So (a)'s requests
//! are session starts and ends as well as saves: without those (a stay longer than the run) it
//! makes about half the requests, at a lower rate (`docs/PERFORMANCE.md`, "Tenth session").
//!
//! A run whose invariants fail, or runs of one configuration that made different numbers of
//! requests, stop the bench: a rate is reported only for sound, repeatable work. The median of
//! an even number of runs is the mean of the middle two.
//!
//! Next to (a), the same fleet with 100 players instead of 1,000: each request costs the same
//! instructions, but the working set fits the caches, so the two rates side by side show what
//! cache misses cost (a) on the machine at hand (`docs/PERFORMANCE.md`, "Sixth session").
//!
//! Before and after the runs, the machine's memory latency: nanoseconds per load of a chase
//! through 256 KB, 4 MB, 16 MB and 64 MB of memory in a random order. (a) is bound by memory
//! (its players' data, some 16 MB, does not stay in the caches), and on a shared VM the share
//! of the last-level cache and the memory a run gets change with its neighbours: these figures
//! say which phase the machine was in, for comparing bench runs made at different times
//! (`docs/PERFORMANCE.md`, "Twenty-second session").
//!
//! `cargo bench -p profilestore-harness --bench fleet [-- FILTER]` runs the measurements whose
//! name contains FILTER (all by default), e.g. `-- "(a)"` or `-- memory`.

use std::hint::black_box;
use std::time::Instant;

// The allocator `profilestore-sim` runs with: simulations allocate and free JSON values at a
// high rate, and mimalloc does that markedly faster than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use profilestore_core::value::Value;
use profilestore_harness::datastore::serialized_len;
use profilestore_harness::fleet::{Fleet, FleetConfig, STORE};
use profilestore_harness::invariants;
use profilestore_harness::storage::{MemoryStorage, SqliteStorage, Storage};
use profilestore_harness::timing::min_and_median;

/// Seconds per save of the value work described at the top of this file, on `fleet`'s final
/// profiles: on shared values and on `serde_json` trees; and the profiles' mean JSON size.
fn value_work(fleet: &mut Fleet) -> (f64, f64, usize) {
    let keys = fleet.keys();
    let values: Vec<Value> = keys
        .iter()
        .filter_map(|k| fleet.world.stored(STORE, k))
        .collect();
    if values.is_empty() {
        return (0.0, 0.0, 0);
    }
    let mean_size = values.iter().map(serialized_len).sum::<usize>() / values.len();
    let rounds = (100_000 / values.len()).max(1);
    let per_save =
        |elapsed: std::time::Duration| elapsed.as_secs_f64() / (rounds * values.len()) as f64;

    let started = Instant::now();
    for _ in 0..rounds {
        for v in &values {
            let mut data = black_box(v)["Data"].clone();
            if let Some(ops) = data.get_mut("Ops").and_then(Value::as_array_mut) {
                ops.push(Value::from("Player_0:op0"));
            }
            let mut doc = v.clone();
            doc["Data"] = data;
            black_box(doc.json_len());
            drop(black_box(doc));
        }
    }
    let shared = per_save(started.elapsed());

    let trees: Vec<serde_json::Value> = values.iter().map(Value::to_serde).collect();
    let started = Instant::now();
    for _ in 0..rounds {
        for v in &trees {
            let mut data = black_box(v)["Data"].clone();
            if let Some(ops) = data
                .get_mut("Ops")
                .and_then(serde_json::Value::as_array_mut)
            {
                ops.push(serde_json::Value::from("Player_0:op0"));
            }
            // The document around it: a deep copy of every other field (copying `Data` too,
            // only to replace it, would count its copy twice).
            let mut doc: serde_json::Map<String, serde_json::Value> = v
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| k.as_str() != "Data")
                        .map(|(k, x)| (k.clone(), x.clone()))
                        .collect()
                })
                .unwrap_or_default();
            doc.insert("Data".into(), data);
            let doc = serde_json::Value::Object(doc);
            let mut counter = ByteCounter(0);
            serde_json::to_writer(&mut counter, &doc).expect("counting cannot fail");
            black_box(counter.0);
            drop(black_box(doc));
        }
    }
    let trees = per_save(started.elapsed());
    (shared, trees, mean_size)
}

/// Counts the bytes `serde_json` writes (the length of a tree's JSON text, without keeping it).
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Nanoseconds per load of a chase through `bytes` of memory: each 64-byte line holds the
/// index of the next, in one random cycle through them all (the same cycle every run), so
/// each load waits for the one before and the prefetchers cannot guess the next.
fn load_latency(bytes: usize) -> f64 {
    const LINE: usize = 64 / std::mem::size_of::<u32>();
    let lines = bytes / 64;
    let mut order: Vec<usize> = (0..lines).collect();
    // Fisher-Yates with a fixed xorshift: the cycle does not depend on the run.
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    for i in (1..lines).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let mut next = vec![0u32; lines * LINE];
    for (w, &line) in order.iter().enumerate() {
        next[line * LINE] = (order[(w + 1) % lines] * LINE) as u32;
    }
    // Once round the cycle first: every line mapped and, if it fits, cached.
    let mut at = 0;
    for _ in 0..lines {
        at = next[at] as usize;
    }
    let loads = 2_000_000;
    let started = Instant::now();
    for _ in 0..loads {
        at = next[at] as usize;
    }
    black_box(at);
    started.elapsed().as_secs_f64() / loads as f64 * 1e9
}

/// Prints [`load_latency`] at the sizes the file's header names, saying `when`.
fn machine(when: &str) {
    let sizes = [
        (256 << 10, "256 KB"),
        (4 << 20, "4 MB"),
        (16 << 20, "16 MB"),
        (64 << 20, "64 MB"),
    ];
    let figures: Vec<String> = sizes
        .iter()
        .map(|&(bytes, name)| format!("{name} {:.1} ns", load_latency(bytes)))
        .collect();
    println!(
        "{:<40} {}",
        format!("machine: load latency {when}"),
        figures.join(", ")
    );
}

/// Runs `config` on storage from `storage` (with the directory it lives in, if any) `runs`
/// times and prints the fastest and the median run: wall times on a shared VM vary between
/// identical runs, and one run of (a) takes a fraction of a second.
fn measure(
    name: &str,
    config: FleetConfig,
    storage: impl Fn() -> (Option<tempfile::TempDir>, Box<dyn Storage>),
    runs: usize,
) {
    if !selected(name) {
        return;
    }
    // Per run: wall seconds of the play (the configured workload) and of the whole run (play,
    // then settling: everyone leaves and every final save lands).
    let mut walls: Vec<(f64, f64)> = Vec::with_capacity(runs);
    let mut requests_made = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs.max(1) {
        // The previous run's world is dropped first, outside the timed part, so this run
        // reuses its memory rather than faulting in fresh pages beside it.
        drop(last.take());
        let (dir, storage) = storage();
        let mut fleet = Fleet::new(config.clone(), storage).expect("a valid fleet configuration");
        // As the command line runs: the log lines the fleet has read are let go.
        fleet.keep_log = false;
        let started = Instant::now();
        let mut played = None;
        let duration = config.duration;
        fleet.run(|t| {
            if t >= duration {
                played = Some(started.elapsed().as_secs_f64());
            }
        });
        let whole = started.elapsed().as_secs_f64();
        walls.push((played.unwrap_or(whole), whole));
        requests_made.push((fleet.played_requests, fleet.world.request_total()));
        // Every run's invariants, outside the timed part.
        let violations = invariants::check(&mut fleet);
        assert!(
            violations.is_empty(),
            "{name}: a run broke invariants: {violations:?}"
        );
        last = Some((fleet, dir));
    }
    let (mut fleet, _dir) = last.expect("at least one run");
    assert!(
        requests_made.windows(2).all(|w| w[0] == w[1]),
        "{name}: runs of one seed made different numbers of requests: {requests_made:?}"
    );
    let mut plays: Vec<f64> = walls.iter().map(|w| w.0).collect();
    let mut wholes: Vec<f64> = walls.iter().map(|w| w.1).collect();
    let (fastest, median) = min_and_median(&mut plays).expect("at least one run");
    let (_, median_whole) = min_and_median(&mut wholes).expect("at least one run");
    let (played, requests) = (fleet.played_requests, fleet.world.request_total());
    println!(
        "{name:<40} {played:>9} requests, {} run(s): fastest {:.3} s = {:.0} requests/s, \
         median {:.3} s = {:.0} requests/s, {:.0}x virtual/wall at the median; \
         with settling {requests} requests, median {:.0} requests/s, {:.0}x; invariants hold",
        walls.len(),
        fastest,
        played as f64 / fastest,
        median,
        played as f64 / median,
        config.duration / median,
        requests as f64 / median_whole,
        fleet.world.now / median_whole
    );
    if name.contains("memory") {
        let (shared, trees, mean_size) = value_work(&mut fleet);
        for (what, per_save) in [("shared values", shared), ("serde_json trees", trees)] {
            println!(
                "{:<40} {:>9} bytes/profile {:>8.2} us/save {:>10.0} saves/s",
                format!("  value work of a save, {what}"),
                mean_size,
                per_save * 1e6,
                1.0 / per_save
            );
        }
    }
}

/// Whether `name` matches the command line's filter (the first argument that is not a flag).
fn selected(name: &str) -> bool {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .is_none_or(|filter| name.contains(&filter))
}

fn memory() -> (Option<tempfile::TempDir>, Box<dyn Storage>) {
    (None, Box::new(MemoryStorage::new()))
}

fn sqlite() -> (Option<tempfile::TempDir>, Box<dyn Storage>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = SqliteStorage::open(dir.path().join("bench.db")).expect("open sqlite");
    (Some(dir), Box::new(storage))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches` probe with this
    }
    machine("before");
    let a = FleetConfig::new(1, 1, 1000, 600.0, 0.0);
    // (b)'s "hopping every 90 s" (the issue): the fleet's default stay, drawn with a 90 s
    // mean, after which 60% hop (a server change every 150 s or so: docs/PERFORMANCE.md).
    let b = FleetConfig::new(2, 8, 2000, 3600.0, 0.05);
    measure("(a) 1x1000x10min memory", a.clone(), memory, 15);
    // The same workload with a tenth of the players: the same instructions per request, but a
    // working set that stays in the caches (docs/PERFORMANCE.md, "Sixth session").
    let small = FleetConfig::new(1, 1, 100, 600.0, 0.0);
    measure(
        "(a) at 100 players memory (cache reference)",
        small,
        memory,
        30,
    );
    measure("(a) 1x1000x10min sqlite", a, sqlite, 1);
    measure("(b) 8x2000x1h hop 90s 5% memory", b.clone(), memory, 3);
    if std::env::var("PROFILESTORE_BENCH_FULL").is_ok_and(|v| v == "1") {
        measure("(b) 8x2000x1h hop 90s 5% sqlite", b, sqlite, 1);
    } else {
        println!("(b) on sqlite skipped: set PROFILESTORE_BENCH_FULL=1");
    }
    machine("after");
}
