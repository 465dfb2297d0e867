//! The world around `profilestore-core` (DESIGN.md §4). Built so far: the storage layer.
//!
//! - [`datastore`]: a faithful simulated Roblox `DataStoreService` on a virtual clock —
//!   `UpdateAsync` with transform re-runs on conflict (also split into read and commit halves),
//!   the 4-second `GetAsync` cache, key info, versions with the one-per-UTC-hour rule,
//!   tombstones, every documented size limit with Roblox's error codes, server request budgets
//!   with throttle queues, per-key throughput, and seeded faults including ambiguous failures.
//! - [`storage`]: the backend behind it, in memory or in an on-disk SQLite file that survives
//!   restarts and crashes.
//! - [`export`]: a store's whole contents as one JSON document, and import of it and of the
//!   fixture layout (`shared/fixtures/original-golden.json`).
//! - [`messaging`]: a simulated `MessagingService` with delay, seeded loss and the 1 kB limit.
//!
//! Everything is deterministic: no OS clock (every call takes `now`), no unseeded randomness,
//! no hash-ordered iteration reaching an output.
//!
//! Not built yet: server fleets driving several engines on one clock, invariant checkers,
//! traces and replay, and the scenario runner for `shared/fixtures/scenarios`.

pub mod datastore;
pub mod export;
pub mod fleet;
pub mod inspect;
pub mod invariants;
pub mod journal;
pub mod messaging;
pub mod scenario;
pub mod storage;
pub mod trace;
pub mod world;
