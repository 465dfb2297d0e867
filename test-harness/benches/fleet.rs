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
//! `cargo bench -p profilestore-harness --bench fleet [-- FILTER]` runs the measurements whose
//! name contains FILTER (all by default), e.g. `-- "(a)"` or `-- memory`.

use std::time::Instant;

// The allocator `profilestore-sim` runs with: simulations allocate and free JSON values at a
// high rate, and mimalloc does that markedly faster than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use profilestore_harness::fleet::{Fleet, FleetConfig};
use profilestore_harness::invariants;
use profilestore_harness::storage::{MemoryStorage, SqliteStorage, Storage};

fn measure(name: &str, config: FleetConfig, storage: Box<dyn Storage>) {
    if !selected(name) {
        return;
    }
    let mut fleet = Fleet::new(config, storage);
    let started = Instant::now();
    fleet.run(|_| {});
    let wall = started.elapsed().as_secs_f64();
    let requests = fleet.world.request_total();
    let violations = invariants::check(&mut fleet).len();
    println!(
        "{name:<34} {requests:>9} requests {wall:>8.2} s wall {:>10.0} requests/s {:>8.0}x virtual/wall  violations {violations}",
        requests as f64 / wall,
        fleet.world.now / wall
    );
    // Dropping a large world is not part of the simulation.
    std::mem::forget(fleet);
}

/// Whether `name` matches the command line's filter (the first argument that is not a flag).
fn selected(name: &str) -> bool {
    std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .is_none_or(|filter| name.contains(&filter))
}

fn sqlite() -> (tempfile::TempDir, Box<dyn Storage>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = SqliteStorage::open(dir.path().join("bench.db")).expect("open sqlite");
    (dir, Box::new(storage))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches` probe with this
    }
    let a = FleetConfig::new(1, 1, 1000, 600.0, 0.0);
    let mut b = FleetConfig::new(2, 8, 2000, 3600.0, 0.05);
    b.stay = 90.0;
    measure(
        "(a) 1x1000x10min memory",
        a.clone(),
        Box::new(MemoryStorage::new()),
    );
    let (_dir, disk) = sqlite();
    measure("(a) 1x1000x10min sqlite", a, disk);
    measure(
        "(b) 8x2000x1h hop 90s 5% memory",
        b.clone(),
        Box::new(MemoryStorage::new()),
    );
    if std::env::var("PROFILESTORE_BENCH_FULL").is_ok_and(|v| v == "1") {
        let (_dir, disk) = sqlite();
        measure("(b) 8x2000x1h hop 90s 5% sqlite", b, disk);
    } else {
        println!("(b) on sqlite skipped: set PROFILESTORE_BENCH_FULL=1");
    }
}
