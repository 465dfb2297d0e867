//! The world around `profilestore-core` (DESIGN.md §4).
//!
//! - [`config`]: the checks of the numbers the services and the world are built with.
//! - [`datastore`]: a faithful simulated Roblox `DataStoreService` on a virtual clock —
//!   `UpdateAsync` with transform re-runs on conflict (also split into read and commit halves),
//!   the 4-second `GetAsync` cache, key info, versions with the one-per-UTC-hour rule,
//!   tombstones, the size limits of names, keys, values, metadata and user ids with Roblox's
//!   error codes (not the experience's storage quota), server request budgets
//!   with throttle queues, per-key throughput, and seeded faults including ambiguous failures.
//! - [`storage`]: the backend behind it, in memory or in an on-disk SQLite file that survives
//!   restarts and crashes.
//! - [`export`]: a store's whole contents as one JSON document, and import of it and of the
//!   fixture layout (`shared/fixtures/original-golden.json`).
//! - [`messaging`]: a simulated `MessagingService` with delay, seeded loss and the 1 kB limit.
//! - [`world`]: engines on one virtual clock over that DataStore and MessagingService, with
//!   latency, budgets, faults, skew and crashes; every engine input goes through one path.
//! - [`acked`]: the ops a save acknowledged, per player, for the check that none is lost.
//! - [`fleet`] and [`invariants`]: players who join, trade, gift, leave, rejoin and hop; the
//!   checks that no acknowledged save is lost, nothing is duplicated, messages arrive once and
//!   hand-offs finish in time.
//! - [`log`]: the world's log of everything that happened, in chunks that never move.
//! - [`trace`]: record a run's inputs and outputs (bincode) and replay them byte for byte.
//! - [`timing`]: the fastest and median of repeated timed runs (the fleet bench, `fleet_run`).
//! - [`check_folder`]: the determinism check's temporary folder, and the removal of those
//!   killed commands left.
//! - [`scenario`] and [`journal`]: the fixture scenario format played on the world, and the
//!   behaviour journal compared with the original's traces.
//! - [`inspect`]: a stored key's value, versions, lock holder and pending messages.
//! - [`input_file`]: the files a command is given, read whole or, from a pipe or device, up to
//!   a bound.
//!
//! The `profilestore-sim` binary puts these on the command line.
//!
//! Everything is deterministic: no OS clock (every call takes `now`), no unseeded randomness,
//! no hash-ordered iteration reaching an output.

pub mod acked;
pub mod check_folder;
pub mod config;
pub mod datastore;
pub mod export;
pub mod fleet;
pub mod input_file;
pub mod inspect;
pub mod invariants;
pub mod journal;
pub mod log;
pub mod messaging;
pub mod scenario;
pub mod storage;
pub mod timing;
pub mod trace;
pub mod world;

mod repeated_key;
