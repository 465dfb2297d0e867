//! ProfileStore's session engine as a deterministic sans-IO state machine.
//!
//! One [`Engine`] is one game server's ProfileStore: stores, session locks, steal and hand-off,
//! the auto-save ring, the per-key request queue, messages and the critical-state window, all as
//! specified in `shared/spec/profilestore-behaviour.md` and wire-compatible with the original
//! Luau module. It never reads a clock and never does IO: the host feeds it API calls, DataStore
//! and MessagingService results and the time, and executes what it asks for.
//!
//! # The run loop
//!
//! Drain [`Engine::poll_output`] until it returns `None`, then sleep until
//! [`Engine::poll_timeout`] (or the next frame) and call [`Engine::handle_timeout`]. DataStore
//! updates call back into [`Engine::transform`], which reads the host's live `Profile.Data`
//! through [`LiveState`].
//!
//! ```
//! use std::collections::BTreeMap;
//! use profilestore_core::*;
//! use profilestore_core::value::{json, Value};
//!
//! /// The host owns Profile.Data; the engine reads it when a save's transform runs.
//! #[derive(Default)]
//! struct Host { data: BTreeMap<ProfileId, Value> }
//! impl LiveState for Host {
//!     fn data(&mut self, p: ProfileId) -> Value { self.data[&p].clone() }
//!     fn roblox_metadata(&mut self, _: ProfileId) -> Value { json!({}) }
//! }
//!
//! let identity = ServerIdentity { place_id: 1001, job_id: "job-1".into() };
//! let mut engine = Engine::new(EngineConfig { identity, seed: 7, datastore_state: DataStoreState::Access });
//! let store = engine.new_store("PlayerData", json!({"Coins": 0})).unwrap();
//! let mut host = Host::default();
//! let mut db: BTreeMap<String, (Value, KeyInfo)> = BTreeMap::new(); // a toy DataStore
//! let mut now = Now { mono: 0.0, wall: 1_735_689_600 };
//!
//! engine.start_session(now, store.live(), "Player_1", StartParams::default()).unwrap();
//! let mut profile = None;
//! while now.mono < 10.0 {
//!     while let Some(output) = engine.poll_output() {
//!         match output {
//!             Output::DataStore(req) => {
//!                 let slot = format!("{}/{}", req.store, req.key);
//!                 let response = match req.kind {
//!                     DataStoreRequestKind::Update => {
//!                         let current = db.get(&slot).map(|(v, _)| v.clone());
//!                         let transformed = engine.transform(req.op, current.as_ref(), now.wall, &mut host);
//!                         transformed.commit_with(|value, _user_ids, _metadata| {
//!                             let info = KeyInfo { created_time: 0, updated_time: now.wall * 1000,
//!                                 version: "1".into(), user_ids: vec![], metadata: json!({}) };
//!                             db.insert(slot, (value.clone(), info.clone()));
//!                             info
//!                         })
//!                     }
//!                     _ => unimplemented!("reads are not used in this example"),
//!                 };
//!                 engine.handle_datastore_response(now, req.op, response, &mut host)
//!                     .expect("an answer to the request it sent");
//!             }
//!             Output::Completion(Completion::SessionStart { profile: Some(loaded), .. }) => {
//!                 host.data.insert(loaded.profile, loaded.data);
//!                 profile = Some(loaded.profile);
//!             }
//!             _ => {} // MessagingService requests, signals and other completions
//!         }
//!     }
//!     if let Some(p) = profile.take() {
//!         host.data.get_mut(&p).unwrap()["Coins"] = json!(5);
//!         engine.end_session(now, p); // final save: OnSave, OnLastSave, OnSessionEnd, write
//!         continue;
//!     }
//!     now.mono += 1.0 / 60.0; // or jump to engine.poll_timeout()
//!     engine.handle_timeout(now, &mut host);
//! }
//! let (saved, _) = &db["PlayerData/Player_1"];
//! assert_eq!(saved["Data"]["Coins"], json!(5));
//! assert!(saved["MetaData"].get("ActiveSession").is_none(), "the lock was released");
//! ```
//!
//! # Modules
//!
//! One module per concept of the spec: [`wire`] (§1), [`constants`] (§2), [`session`] (§5),
//! [`queue`] (§6), [`autosave`] (§7), [`save`] (§8–9), [`messages`] (§10), [`read`] (§11),
//! [`critical`] (§12), [`mock`] (§14), [`reconcile`](mod@reconcile) (§15), [`profile`] (§16). Where the original
//! has a defect (spec §19) the engine does better; each case is listed in `docs/DEVIATIONS.md`.
//! Stored values, `Profile.Data` and messages are [`value::Value`]s: JSON values with
//! `serde_json::Value`'s API whose copies share structure.

pub mod autosave;
pub mod constants;
pub mod critical;
mod engine;
pub mod error;
pub mod guid;
pub mod input;
pub mod json_text;
pub mod messages;
pub mod mock;
pub mod prehashed;
pub mod profile;
pub mod protocol;
pub mod queue;
pub mod read;
pub mod reconcile;
pub mod save;
pub mod session;
pub mod testing;
mod timers;
mod user_ids;
pub mod value;
pub mod wire;

pub use constants::Constants;
pub use engine::{Engine, EngineConfig, FRAME, LiveState, StoreRef};
pub use error::ApiError;
pub use input::{Input, InputResult, LiveAnswers, Recorder, Replayer};
pub use profile::{LastSavedData, Profile, ProfileKind, SessionHolder};
pub use protocol::*;
pub use reconcile::reconcile;
pub use save::SaveMode;
pub use session::StartParams;
pub use user_ids::lua_number;
pub use wire::ServerIdentity;
