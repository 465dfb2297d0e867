//! Version listings are consistent whatever the query (issue "harness" §1: ListVersionsAsync
//! with sort direction, min/max date and pages): paging through any page size gives exactly the
//! one-page listing, descending is ascending reversed, date bounds keep exactly the versions in
//! range, and the listing matches the one-version-per-UTC-hour rule (which merges writes, not
//! removals: a removal, and the write after it, open versions of their own).

use profilestore_core::SortDirection;
use profilestore_core::value::json;
use profilestore_harness::datastore::{
    DataStoreService, ServerId, SetOptions, StoreName, VersionQuery,
};
use profilestore_harness::storage::{MemoryStorage, SqliteStorage, Storage};
use proptest::prelude::*;

const EPOCH: i64 = 1_735_689_600;
const HOUR_MS: i64 = 3_600_000;

/// A key's history: writes (`true`) and removals (`false`) at increasing virtual times.
fn history() -> impl Strategy<Value = Vec<(f64, bool)>> {
    prop::collection::vec((1.0f64..20_000.0, prop::bool::weighted(0.85)), 1..40).prop_map(|steps| {
        let mut t = 0.0;
        steps
            .into_iter()
            .map(|(dt, write)| {
                t += dt;
                (t, write)
            })
            .collect()
    })
}

/// Every item of a listing, page by page: (version, created ms, deleted).
fn list_all(ds: &mut DataStoreService, now: f64, query: VersionQuery) -> Vec<(String, i64, bool)> {
    let store = StoreName::new("S");
    let mut pages = ds.list_versions_async(now, &store, "k", query).unwrap();
    let mut items = Vec::new();
    loop {
        items.extend(
            pages
                .items
                .iter()
                .map(|i| (i.version.clone(), i.created_time, i.is_deleted)),
        );
        if pages.is_finished {
            return items;
        }
        ds.advance_versions(now, &mut pages).unwrap();
    }
}

fn check(
    storage: Box<dyn Storage>,
    history: &[(f64, bool)],
    page_size: u32,
    bounds: (i64, i64),
) -> Result<(), TestCaseError> {
    let mut ds = DataStoreService::new(EPOCH).with_storage(storage);
    let store = StoreName::new("S");
    // (wall ms, removal) of every write and removal that committed.
    let mut commits = Vec::new();
    for (i, (t, write)) in history.iter().enumerate() {
        let wrote = if *write {
            ds.set_async(
                *t,
                ServerId(0),
                &store,
                "k",
                json!(i),
                SetOptions::default(),
            )
            .is_ok()
        } else {
            ds.remove_async(*t, ServerId(0), &store, "k")
                .is_ok_and(|r| r.value.is_some())
        };
        if wrote {
            commits.push((ds.wall_ms(*t), !*write));
        }
    }
    let now = history.last().map_or(0.0, |h| h.0);
    let all = list_all(&mut ds, now, VersionQuery::default());
    // One version per UTC hour that saw writes in a row, holding its last write; one per
    // removal.
    let mut expected: Vec<(i64, bool)> = Vec::new();
    for &(at, removal) in &commits {
        match expected.last_mut() {
            Some(last) if !removal && !last.1 && last.0 / HOUR_MS == at / HOUR_MS => last.0 = at,
            _ => expected.push((at, removal)),
        }
    }
    let listed: Vec<(i64, bool)> = all.iter().map(|v| (v.1, v.2)).collect();
    prop_assert_eq!(&listed, &expected);
    // Any page size pages through the same listing; descending is it reversed.
    let paged = |direction| VersionQuery {
        direction,
        page_size,
        ..VersionQuery::default()
    };
    prop_assert_eq!(
        &list_all(&mut ds, now, paged(SortDirection::Ascending)),
        &all
    );
    let mut descending = list_all(&mut ds, now, paged(SortDirection::Descending));
    descending.reverse();
    prop_assert_eq!(&descending, &all);
    // Date bounds keep exactly the versions created in range.
    let (lo, hi) = (EPOCH * 1000 + bounds.0, EPOCH * 1000 + bounds.1);
    let bounded = VersionQuery {
        min_date: Some(lo),
        max_date: Some(hi),
        page_size,
        ..VersionQuery::default()
    };
    let in_range: Vec<_> = all
        .iter()
        .filter(|v| lo <= v.1 && v.1 <= hi)
        .cloned()
        .collect();
    prop_assert_eq!(&list_all(&mut ds, now, bounded), &in_range);
    // A date of 0 is no bound, Roblox's default for both: from `lo` on, then everything.
    let from_lo = VersionQuery {
        min_date: Some(lo),
        max_date: Some(0),
        page_size,
        ..VersionQuery::default()
    };
    let since_lo: Vec<_> = all.iter().filter(|v| lo <= v.1).cloned().collect();
    prop_assert_eq!(&list_all(&mut ds, now, from_lo), &since_lo);
    let zeros = VersionQuery {
        min_date: Some(0),
        max_date: Some(0),
        page_size,
        ..VersionQuery::default()
    };
    prop_assert_eq!(&list_all(&mut ds, now, zeros), &all);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        // A fixed seed: every run, CI's too, tries the same cases.
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5EED),
        ..ProptestConfig::default()
    })]

    #[test]
    fn listings_agree_across_pages_directions_bounds_and_backends(
        history in history(),
        page_size in 1u32..5,
        a in 0i64..400_000_000,
        b in 0i64..400_000_000,
    ) {
        let bounds = (a.min(b), a.max(b));
        check(Box::new(MemoryStorage::new()), &history, page_size, bounds)?;
        check(Box::new(SqliteStorage::open_in_memory().unwrap()), &history, page_size, bounds)?;
    }
}
