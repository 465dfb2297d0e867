//! Any JSON value a DataStore accepts comes back exactly as it went in, on both backends, and
//! the size the limits measure is the length of its JSON text (issue "harness" §1: values,
//! limits, storage).

use profilestore_core::value::{Number, Value};
use profilestore_harness::datastore::{
    DataStoreService, GetOptions, ServerId, SetOptions, StoreName, serialized_len,
};
use profilestore_harness::storage::{MemoryStorage, SqliteStorage, Storage};
use proptest::prelude::*;

/// Leaves of every kind: integers across the range, finite doubles of every magnitude, and
/// strings with quotes, backslashes, control characters and non-ASCII text.
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        "[\\u{0}-\\u{7f}\"\\\\é日🎮]{0,24}".prop_map(Value::from),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z\"\\\\\\u{1}é]{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn round_trip(storage: Box<dyn Storage>, value: &Value) -> Option<Value> {
    let mut ds = DataStoreService::new(1_735_689_600).with_storage(storage);
    let store = StoreName::new("S");
    let server = ServerId(0);
    ds.set_async(
        0.0,
        server,
        &store,
        "k",
        value.clone(),
        SetOptions::default(),
    )
    .unwrap();
    let options = GetOptions { use_cache: false };
    ds.get_async(1.0, server, &store, "k", options)
        .unwrap()
        .value
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        // A fixed seed: every run, CI's too, tries the same cases.
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5EED),
        ..ProptestConfig::default()
    })]

    #[test]
    fn values_come_back_exactly_and_are_measured_as_their_text(
        v in value().prop_filter("SetAsync(nil) is refused (103)", |v| !v.is_null())
    ) {
        prop_assert_eq!(serialized_len(&v), serde_json::to_string(&v).unwrap().len());
        let memory = round_trip(Box::new(MemoryStorage::new()), &v);
        prop_assert_eq!(memory.as_ref(), Some(&v));
        let sqlite = round_trip(Box::new(SqliteStorage::open_in_memory().unwrap()), &v);
        prop_assert_eq!(sqlite.as_ref(), Some(&v));
    }
}
