//! `UpdateAsync` from several servers, interleaved every possible way (issue "harness" §1: "re-runs
//! the transform when another writer committed between its read and its write"), with failures
//! and ambiguous failures: no committed update is lost or applied twice, every commit extends
//! exactly the value before it, and the commits the store reports are exactly those in the value.

use profilestore_core::Transformed;
use profilestore_core::value::{Value, json};
use profilestore_harness::datastore::{
    DataStoreService, Faults, ReadTicket, ServerId, StoreName, UpdateCommit,
};
use proptest::prelude::*;

/// The transform of update `id`: append `id` to the list (nil reads as empty).
fn append(current: Option<&Value>, id: &str) -> Transformed {
    let mut list = current
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    list.push(json!(id));
    Transformed::Write {
        value: Value::Array(list),
        user_ids: None,
        metadata: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        // A fixed seed: every run, CI's too, tries the same cases.
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5EED),
        ..ProptestConfig::default()
    })]

    #[test]
    fn interleaved_updates_lose_nothing(
        schedule in prop::collection::vec((0u64..3, any::<bool>()), 1..60),
        fault_seed in any::<u64>(),
    ) {
        let faults = Faults::seeded(fault_seed).with_rates(0.15, 0.1);
        let mut ds = DataStoreService::new(1_735_689_600).with_faults(faults).unwrap();
        ds.watch_commits();
        let store = StoreName::new("S");
        let mut open: [Option<(ReadTicket, String)>; 3] = [None, None, None];
        let mut committed: Vec<String> = Vec::new();
        let mut last: Vec<Value> = Vec::new();
        for (step, (server, begin)) in schedule.into_iter().enumerate() {
            let now = step as f64 * 0.1;
            let slot = &mut open[server as usize];
            match slot.take() {
                None if begin => {
                    if let Ok(ticket) = ds.begin_update(now, ServerId(server), &store, "k") {
                        *slot = Some((ticket, format!("s{server}:{step}")));
                    }
                }
                None => {}
                Some((ticket, id)) => {
                    // Commit, running the transform again on each newer value.
                    let mut output = append(ticket.value.as_deref(), &id);
                    let mut ticket = ticket;
                    let told = loop {
                        match ds.commit_update(now, ticket, output) {
                            Ok(UpdateCommit::Conflict(fresh)) => {
                                output = append(fresh.value.as_deref(), &id);
                                ticket = fresh;
                            }
                            other => break other,
                        }
                    };
                    let commits = ds.take_commits();
                    // What the caller was told holds: a commit it was told of is stored, one
                    // it was told did not happen is not (an error may be either: ambiguous).
                    match &told {
                        Ok(UpdateCommit::Committed(read)) => {
                            prop_assert_eq!(commits.len(), 1);
                            prop_assert_eq!(&commits[0].read, read);
                        }
                        Ok(_) => prop_assert_eq!(commits.len(), 0),
                        Err(_) => prop_assert!(commits.len() <= 1),
                    }
                    for c in commits {
                        let value = c.read.value.as_deref().cloned().unwrap_or(Value::Null);
                        let list = value.as_array().map(|a| a.to_vec()).unwrap_or_default();
                        // Each commit is the value before it plus its own id.
                        prop_assert_eq!(&list[..list.len() - 1], &last[..]);
                        prop_assert_eq!(&list[list.len() - 1], &json!(id));
                        committed.push(id.clone());
                        last = list;
                    }
                }
            }
        }
        ds.set_fault_rates(0.0, 0.0).unwrap();
        let stored = ds
            .get_async(100.0, ServerId(9), &store, "k", Default::default())
            .expect("a read with faults off")
            .value
            .and_then(|v| v.as_array().map(|a| a.to_vec()))
            .unwrap_or_default();
        let ids: Vec<Value> = committed.iter().map(|c| json!(c)).collect();
        prop_assert_eq!(stored, ids);
    }
}
