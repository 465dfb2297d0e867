//! Traces and replay (issue "harness" §5): every engine input of a run, recorded with the seed
//! and the configuration, as one bincode file (JSON values inside carried as text, see
//! `profilestore_core::json_text`); replaying it rebuilds the same engines and feeds them the
//! same inputs — no DataStore, no host — and checks the outputs are byte-identical.

use std::path::Path;

use profilestore_core::guid::GuidGenerator;
use profilestore_core::{Engine, Output};
use serde::{Deserialize, Serialize};

use crate::fleet::FleetConfig;
use crate::world::{TracedInput, World, WorldConfig, engine_configs};

/// The trace format version.
pub const TRACE_FORMAT: u32 = 1;

/// A recorded run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// [`TRACE_FORMAT`].
    pub format: u32,
    /// The world it ran in (seed, servers, latency).
    pub world: WorldConfig,
    /// The fleet configuration, when the run was a fleet.
    pub fleet: Option<FleetConfig>,
    /// Every engine input, in order.
    pub inputs: Vec<TracedInput>,
    /// Every engine output, in order, as recorded.
    pub outputs: Vec<(usize, Output)>,
}

/// A trace that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// File IO.
    #[error("trace file {path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a trace, or a damaged one.
    #[error("trace file {path} is not a readable trace: {message}")]
    Decode {
        /// Path.
        path: String,
        /// Cause.
        message: String,
    },
    /// A trace of another format version.
    #[error("trace file {path} has format {found}, this build reads format {TRACE_FORMAT}")]
    Format {
        /// Path.
        path: String,
        /// Its version.
        found: u32,
    },
    /// The world did not record.
    #[error("the run was not recorded (enable recording before running)")]
    NotRecorded,
}

impl Trace {
    /// The trace of a world that recorded ([`World::record`]).
    pub fn of(world: &World, fleet: Option<FleetConfig>) -> Result<Trace, TraceError> {
        Ok(Trace {
            format: TRACE_FORMAT,
            world: world.config.clone(),
            fleet,
            inputs: world.trace.clone().ok_or(TraceError::NotRecorded)?,
            outputs: world.outputs.clone().ok_or(TraceError::NotRecorded)?,
        })
    }

    /// Encodes the trace.
    pub fn to_bytes(&self) -> Vec<u8> {
        bincode::serde::encode_to_vec(self, bincode::config::standard())
            .expect("traces always encode")
    }

    /// Decodes a trace.
    pub fn from_bytes(bytes: &[u8], path: &str) -> Result<Trace, TraceError> {
        let (trace, _): (Trace, usize) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map_err(|e| {
                TraceError::Decode {
                    path: path.to_string(),
                    message: e.to_string(),
                }
            })?;
        if trace.format != TRACE_FORMAT {
            return Err(TraceError::Format {
                path: path.to_string(),
                found: trace.format,
            });
        }
        Ok(trace)
    }

    /// Writes the trace to a file.
    pub fn save(&self, path: &Path) -> Result<(), TraceError> {
        std::fs::write(path, self.to_bytes()).map_err(|source| TraceError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Reads a trace file.
    pub fn load(path: &Path) -> Result<Trace, TraceError> {
        let bytes = std::fs::read(path).map_err(|source| TraceError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Trace::from_bytes(&bytes, &path.display().to_string())
    }
}

/// What a replay found.
#[derive(Clone, Debug, PartialEq)]
pub struct Replay {
    /// Inputs replayed.
    pub inputs: usize,
    /// Outputs produced.
    pub outputs: usize,
    /// Index of the first output that differs from the recording, if any.
    pub first_difference: Option<usize>,
    /// Recorded live-state answers that did not match what the engines asked for.
    pub diverged_answers: usize,
}

impl Replay {
    /// True when the replay reproduced the recording byte for byte.
    pub fn identical(&self) -> bool {
        self.first_difference.is_none() && self.diverged_answers == 0
    }
}

/// Replays a trace on fresh engines and compares every output with the recording.
pub fn replay(trace: &Trace) -> Replay {
    let mut rng = GuidGenerator::new(trace.world.seed);
    let mut engines: Vec<Engine> = engine_configs(&trace.world, &mut rng)
        .into_iter()
        .map(Engine::new)
        .collect();
    let mut outputs: Vec<(usize, Output)> = Vec::new();
    let mut diverged = 0;
    for traced in &trace.inputs {
        let Some(engine) = engines.get_mut(traced.server) else {
            diverged += 1;
            continue;
        };
        diverged += engine.replay_input(traced.input.clone()).1;
        while let Some(output) = engine.poll_output() {
            outputs.push((traced.server, output));
        }
    }
    let encode = |o: &(usize, Output)| {
        bincode::serde::encode_to_vec(o, bincode::config::standard()).expect("encodes")
    };
    let first_difference = (0..outputs.len().max(trace.outputs.len())).find(|i| {
        match (outputs.get(*i), trace.outputs.get(*i)) {
            (Some(a), Some(b)) => encode(a) != encode(b),
            _ => true,
        }
    });
    Replay {
        inputs: trace.inputs.len(),
        outputs: outputs.len(),
        first_difference,
        diverged_answers: diverged,
    }
}
