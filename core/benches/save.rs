//! One save of a 1 KiB, 10 KiB and 100 KiB profile through the engine — `Save()`, the transform
//! against the stored value, the result and its signals — against serde_json serialize + parse
//! of the same document, the baseline, in the same run.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use profilestore_core::testing::{Host, InstantStore};
use profilestore_core::value::{Value, json};
use profilestore_core::*;

/// A profile `Data` of about `kib` KiB of JSON: an inventory of small item objects.
fn data_of(kib: usize) -> Value {
    let item = |i: usize| json!({"Id": i, "Name": format!("Item{i:05}"), "Level": i % 50, "Equipped": i.is_multiple_of(7)});
    let mut items = Vec::new();
    let mut data = json!({"Coins": 1234, "Gems": 5, "Items": []});
    while serde_json::to_string(&data).unwrap().len() < kib * 1024 {
        items.push(item(items.len()));
        data["Items"] = Value::from(items.clone());
    }
    data
}

fn bench_save(c: &mut Criterion) {
    let mut group = c.benchmark_group("save");
    for kib in [1usize, 10, 100] {
        let data = data_of(kib);
        let bytes = serde_json::to_string(&data).unwrap().len();
        group.throughput(Throughput::Bytes(bytes as u64));

        let mut engine = profilestore_core::testing::engine("bench", 1);
        let store = engine.new_store("S", json!({})).unwrap();
        let mut host = Host::default();
        let mut ds = InstantStore::default();
        let now = Now {
            mono: 100.0,
            wall: 1_735_689_600,
        };
        engine
            .start_session(now, store.live(), "k", StartParams::default())
            .unwrap();
        let outputs = ds.pump(&mut engine, &mut host, now);
        let profile = outputs
            .iter()
            .find_map(|o| match o {
                Output::Completion(Completion::SessionStart {
                    profile: Some(p), ..
                }) => Some(p.profile),
                _ => None,
            })
            .unwrap();
        host.data.insert(profile, data.clone());
        engine.save(now, profile).unwrap();
        ds.pump(&mut engine, &mut host, now);

        group.bench_with_input(
            BenchmarkId::new("engine_save", format!("{kib}KiB")),
            &kib,
            |b, _| {
                b.iter(|| {
                    engine.save(now, profile).unwrap();
                    ds.pump(&mut engine, &mut host, now)
                })
            },
        );
        let stored = ds.values.values().next().unwrap().0.clone();
        group.bench_with_input(
            BenchmarkId::new("serde_json_roundtrip", format!("{kib}KiB")),
            &kib,
            |b, _| {
                b.iter(|| {
                    let text = serde_json::to_string(&stored).unwrap();
                    serde_json::from_str::<Value>(&text).unwrap()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_save);
criterion_main!(benches);
