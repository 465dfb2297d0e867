//! The world around `profilestore-core` (DESIGN.md §4): simulated DataStore and
//! MessagingService, server fleets on a virtual clock, faults, invariants, traces and replay.
//!
//! Not built yet: this crate only reserves its place in the workspace until the harness issue.
