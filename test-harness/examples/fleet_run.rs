//! Runs one fleet and prints its simulated DataStore requests per wall second: the program the
//! instruction counts of `docs/PERFORMANCE.md` are taken with (`valgrind --tool=callgrind`), as
//! it runs `Fleet::run` and nothing else (no invariant checks, no value-work comparison). Its
//! figure is the whole run's, settling included (the bench's first figure is the play's alone,
//! its second the whole run's), in memory.
//!
//! ```sh
//! cargo run --release -p profilestore-harness --example fleet_run            # run (a)
//! cargo run --release -p profilestore-harness --example fleet_run -- 2000 3600 8 0.05 90  # (b)
//! ```
//!
//! Arguments, all optional: players (1000), virtual seconds (600), servers (1), fault rate (0),
//! mean stay in seconds (the fleet's default). `FLEET_RUNS=N` runs the fleet N times in one
//! process and also prints the fastest and the median, each run's world dropped before the next
//! starts, as the bench does: the way to compare two builds run alternately
//! (`docs/PERFORMANCE.md`).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Instant;

use profilestore_harness::fleet::{Fleet, FleetConfig};
use profilestore_harness::storage::MemoryStorage;
use profilestore_harness::timing::min_and_median;

fn arg<T: std::str::FromStr>(n: usize, what: &str) -> Option<T> {
    let text = std::env::args().nth(n)?;
    match text.parse() {
        Ok(v) => Some(v),
        Err(_) => {
            eprintln!("fleet_run: {what} must be a number, not {text:?}");
            std::process::exit(2);
        }
    }
}

fn main() {
    let players = arg(1, "players").unwrap_or(1000);
    let seconds = arg(2, "virtual seconds").unwrap_or(600.0);
    let servers = arg(3, "servers").unwrap_or(1);
    let faults = arg(4, "fault rate").unwrap_or(0.0);
    // The bench's seeds: 1 for (a), 2 for (b).
    let seed = if servers > 1 { 2 } else { 1 };
    let mut config = FleetConfig::new(seed, servers, players, seconds, faults);
    if let Some(stay) = arg(5, "stay") {
        config.stay = stay;
    }
    if let Err(e) = config.check() {
        eprintln!("fleet_run: {e}");
        std::process::exit(2);
    }
    let runs = match std::env::var("FLEET_RUNS") {
        Err(_) => 1,
        Ok(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("fleet_run: FLEET_RUNS must be a positive number, not {text:?}");
                std::process::exit(2);
            }
        },
    };
    let mut rates = Vec::with_capacity(runs);
    for _ in 0..runs {
        let mut fleet = Fleet::new(config.clone(), Box::new(MemoryStorage::new()))
            .expect("a valid fleet configuration");
        // As the command line runs it: the log lines the fleet has read are let go.
        fleet.keep_log = false;
        let started = Instant::now();
        fleet.run(|_| {});
        let wall = started.elapsed().as_secs_f64();
        let requests = fleet.world.request_total();
        let rate = requests as f64 / wall;
        println!("{requests} requests in {wall:.3} s wall: {rate:.0} requests/s");
        rates.push(rate);
        if runs == 1 {
            // Dropping a large world is not part of the simulation.
            std::mem::forget(fleet);
        }
    }
    if runs > 1 {
        let fastest = rates.iter().copied().fold(0.0, f64::max);
        let (_, median) = min_and_median(&mut rates).expect("runs > 1");
        println!("{runs} runs: fastest {fastest:.0} requests/s, median {median:.0}");
    }
}
