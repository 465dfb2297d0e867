//! The Luau host for profilestore-rs (DESIGN.md §5).
//!
//! Not built yet: this crate only reserves its place in the workspace. The Luau VM host, the
//! ProfileStore Luau API and the `profilestore` command arrive in a later issue.
