//! The auto-save ring with 100,000 active profiles (spec §7): the work of one Heartbeat tick —
//! the ring's slots plus the regular saves they start, completed by an instant DataStore — with
//! 1,000 profiles as the baseline in the same run; and the memory one idle active profile costs
//! the engine (Data excluded: every profile holds `{}`), from the process's resident set.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use profilestore_core::testing::{Host, InstantStore};
use profilestore_core::value::{Value, json};
use profilestore_core::*;

struct Loaded {
    engine: Engine,
    host: Host,
    ds: InstantStore,
    now: Now,
}

fn load(n: usize) -> Loaded {
    let mut engine = profilestore_core::testing::engine("bench", 1);
    let store = engine.new_store("S", json!({})).unwrap();
    let mut host = Host::default();
    let mut ds = InstantStore::default();
    let now = Now {
        mono: 0.0,
        wall: 1_735_689_600,
    };
    for i in 0..n {
        engine
            .start_session(
                now,
                store.live(),
                &format!("Player_{i}"),
                StartParams::default(),
            )
            .unwrap();
        ds.pump(&mut engine, &mut host, now);
    }
    assert_eq!(engine.active_profiles().len(), n);
    // Run the Heartbeat past the freshness half-period, so every slot saves a profile.
    let mut l = Loaded {
        engine,
        host,
        ds,
        now,
    };
    while l.now.mono < 200.0 {
        l.now.mono += FRAME;
        l.engine.handle_timeout(l.now, &mut l.host);
        l.ds.pump(&mut l.engine, &mut l.host, l.now);
    }
    l
}

fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn report_memory() {
    let n = 100_000u64;
    let before = resident_kib();
    let loaded = load(n as usize);
    let after = resident_kib();
    if let (Some(b), Some(a)) = (before, after) {
        // The in-bench DataStore keeps one stored value per profile too; measure it apart, by
        // the memory a deep copy of it takes (a `Value` clone would only share the original's
        // nodes: a copy parsed from its text owns its own).
        let ds_only = {
            let b2 = resident_kib().unwrap_or(0);
            let copy: Vec<_> = loaded
                .ds
                .values
                .iter()
                .map(|(k, (v, info))| {
                    let deep = Value::from_json_text(&v.to_string()).expect("a stored value");
                    (k.clone(), (deep, info.clone()))
                })
                .collect();
            let a2 = resident_kib().unwrap_or(0);
            drop(copy);
            a2.saturating_sub(b2)
        };
        let engine_kib = (a - b).saturating_sub(ds_only);
        println!(
            "memory: {n} active idle profiles: process +{} KiB, stored values ~{ds_only} KiB, engine ~{engine_kib} KiB = {} bytes per profile",
            a - b,
            engine_kib * 1024 / n
        );
    }
    drop(loaded);
}

fn bench_tick(c: &mut Criterion) {
    report_memory();
    let mut group = c.benchmark_group("autosave_tick");
    for n in [1_000usize, 100_000] {
        let mut l = load(n);
        let mut saves = 0u64;
        let mut ticks = 0u64;
        group.bench_with_input(BenchmarkId::new("profiles", n), &n, |b, _| {
            b.iter(|| {
                l.now.mono += FRAME;
                l.engine.handle_timeout(l.now, &mut l.host);
                let outputs = l.ds.pump(&mut l.engine, &mut l.host, l.now);
                saves += outputs
                    .iter()
                    .filter(|o| matches!(o, Output::Event(Event::OnSave { .. })))
                    .count() as u64;
                ticks += 1;
                outputs
            })
        });
        println!(
            "autosave_tick/profiles/{n}: {:.2} saves per tick on average",
            saves as f64 / ticks.max(1) as f64
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench_tick
}
criterion_main!(benches);
