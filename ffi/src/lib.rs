//! The C ABI for profilestore-rs (DESIGN.md §6).
//!
//! Not built yet: this crate only reserves its place in the workspace. The C ABI over
//! `profilestore-core` arrives in a later issue.
