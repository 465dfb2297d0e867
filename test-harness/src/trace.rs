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

/// The trace format version, raised when the layout changes or the engine's behaviour does
/// (a replay compares outputs byte for byte, so an older engine's trace would report a
/// difference that is not one): 2: every input carries what it returned; 3: the fleet
/// configuration has `quit_while_loading` and `uncancellable`; 4: and `spare_servers`;
/// 5: starts queue behind final saves, critical-state and auto-save deadlines as computed, a
/// table `Data` makes a profile, unstorable final saves, messages and starts give up, mock ops
/// and pages answering updates and inputs naming unknown profiles are refused, a non-profile
/// save answer warns, Reconcile skips null template fields (same layout); 6: the fleet
/// configuration has `places`; 7: a start that takes a lock tells the session it took it from
/// (same layout); 8: starts waiting behind a final save return nil when the server closes,
/// `SetAsync` tells the session whose lock it removed, a start's release at closing is a
/// shutdown save (same layout); 9: a subscription that returns after its session ended is
/// disconnected then, `MessageAsync` and `GetAsync` failing while closing give up after their
/// backoff (same layout); 10: a lock that looks dead is asked for before it is taken (same
/// layout); 11: each input records the engine's next wake-up after it, which replay compares;
/// 12: a DataStore answer carries the live-state answers read while it was handled (a start
/// asks its `Cancel` before each attempt and after each result); 13: so does the DataStore
/// state (starts that waited for it are asked their `Cancel`); 14: a closing server asks no
/// `Cancel`, and waiting starts are asked in call order as they resume (same layout).
pub const TRACE_FORMAT: u32 = 14;

/// The first bytes of every trace file.
pub const TRACE_MAGIC: &[u8; 8] = b"PSTRACE\0";

/// The most servers a trace may name: replay builds one engine per server.
pub const MAX_TRACE_SERVERS: usize = 10_000;

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
    #[error(
        "trace file {path} has format {found}, this build reads format {TRACE_FORMAT} (a trace replays with the version that recorded it)"
    )]
    Format {
        /// Path.
        path: String,
        /// Its version.
        found: u32,
    },
    /// The world did not record.
    #[error("the run was not recorded (enable recording before running)")]
    NotRecorded,
    /// The trace could not be encoded (every field is plain data or JSON carried as text, so
    /// this names a defect, not an input).
    #[error("the trace could not be encoded: {0}")]
    Encode(String),
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

    /// Encodes the trace: [`TRACE_MAGIC`], then the trace in bincode (its format first).
    pub fn to_bytes(&self) -> Result<Vec<u8>, TraceError> {
        let mut bytes = TRACE_MAGIC.to_vec();
        let body = bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|e| TraceError::Encode(e.to_string()))?;
        bytes.extend(body);
        Ok(bytes)
    }

    /// Decodes a trace, refusing anything but exactly one whole trace of this format whose
    /// inputs name its own servers. Lengths inside the file are not trusted: the decoder may
    /// claim at most a bounded multiple of the file's size.
    pub fn from_bytes(bytes: &[u8], path: &str) -> Result<Trace, TraceError> {
        let damaged = |message: String| TraceError::Decode {
            path: path.to_string(),
            message,
        };
        let Some(bytes) = bytes.strip_prefix(TRACE_MAGIC) else {
            // Format 1 had no header and began with its format number (one byte, 1).
            if bytes.first() == Some(&1) {
                return Err(TraceError::Format {
                    path: path.to_string(),
                    found: 1,
                });
            }
            return Err(damaged("no trace header".into()));
        };
        // The format comes first: a trace of another version is named as such before its
        // layout is read.
        let (format, _): (u32, usize) =
            bincode::decode_from_slice(bytes, bincode::config::standard())
                .map_err(|e| damaged(decode_error(e)))?;
        if format != TRACE_FORMAT {
            return Err(TraceError::Format {
                path: path.to_string(),
                found: format,
            });
        }
        let (trace, used) = decode_bounded(bytes).map_err(|e| damaged(decode_error(e)))?;
        if used != bytes.len() {
            return Err(damaged(format!(
                "{} bytes follow the trace",
                bytes.len() - used
            )));
        }
        let servers = trace.world.servers.len();
        if servers > MAX_TRACE_SERVERS {
            return Err(damaged(format!(
                "{servers} servers, at most {MAX_TRACE_SERVERS} are replayed"
            )));
        }
        if let Some((i, t)) = trace
            .inputs
            .iter()
            .enumerate()
            .find(|(_, t)| t.server >= servers)
        {
            return Err(damaged(format!(
                "input {i} is for server {}, the trace has {servers}",
                t.server
            )));
        }
        Ok(trace)
    }

    /// Writes the trace to a file. A regular file (or a new one) is replaced whole: the bytes
    /// go to `<name>.partial` beside it, which then takes its name, so a process killed while
    /// writing leaves the previous trace as it was. Anything else (a pipe, a symlink) is
    /// written in place.
    pub fn save(&self, path: &Path) -> Result<(), TraceError> {
        let io = |source| TraceError::Io {
            path: path.display().to_string(),
            source,
        };
        let bytes = self.to_bytes()?;
        let plain = std::fs::symlink_metadata(path).map_or(true, |m| m.is_file());
        match path.file_name().filter(|_| plain) {
            Some(name) => {
                let mut partial = name.to_os_string();
                partial.push(".partial");
                let partial = path.with_file_name(partial);
                std::fs::write(&partial, &bytes)
                    .and_then(|()| std::fs::rename(&partial, path))
                    .map_err(|e| {
                        let _ = std::fs::remove_file(&partial);
                        io(e)
                    })
            }
            None => std::fs::write(path, bytes).map_err(io),
        }
    }

    /// Reads a trace file: a regular file whole, anything else (a pipe such as
    /// `<(zcat run.trace.gz)`, a device) up to [`MAX_STREAMED_TRACE`] bytes, so that
    /// `/dev/zero` is an error and not a read without end.
    pub fn load(path: &Path) -> Result<Trace, TraceError> {
        let io = |source| TraceError::Io {
            path: path.display().to_string(),
            source,
        };
        let bytes = if std::fs::metadata(path).map_err(io)?.is_file() {
            std::fs::read(path).map_err(io)?
        } else {
            let file = std::fs::File::open(path).map_err(io)?;
            read_bounded(file, MAX_STREAMED_TRACE)
                .map_err(io)?
                .ok_or_else(|| TraceError::Decode {
                    path: path.display().to_string(),
                    message: format!(
                        "more than {MAX_STREAMED_TRACE} bytes from a file that is not a regular file"
                    ),
                })?
        };
        Trace::from_bytes(&bytes, &path.display().to_string())
    }
}

/// The most [`Trace::load`] reads from a file that is not a regular file (1 GiB).
pub const MAX_STREAMED_TRACE: u64 = 1 << 30;

/// All of `reader` if it holds at most `limit` bytes, `None` if it holds more.
pub fn read_bounded(reader: impl std::io::Read, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// What is wrong with a file the decoder refused, in words (bincode's own text of the commonest
/// cases is a Rust debug print).
fn decode_error(e: bincode::error::DecodeError) -> String {
    use bincode::error::DecodeError;
    match e {
        DecodeError::UnexpectedEnd { additional } => {
            format!("the file ends {additional} byte(s) too early (cut short?)")
        }
        DecodeError::LimitExceeded => {
            "a length inside it is larger than the file can hold".to_string()
        }
        other => other.to_string(),
    }
}

/// Decodes with a limit on what the decoder may allocate for lengths read from the file:
/// 16 times the file's size (at least 64 KiB), rounded up to a power of four.
fn decode_bounded(bytes: &[u8]) -> Result<(Trace, usize), bincode::error::DecodeError> {
    fn with<const LIMIT: usize>(
        bytes: &[u8],
    ) -> Result<(Trace, usize), bincode::error::DecodeError> {
        let config = bincode::config::standard().with_limit::<LIMIT>();
        bincode::serde::decode_from_slice(bytes, config)
    }
    let need = bytes.len().saturating_mul(16);
    macro_rules! smallest_tier {
        ($($shift:literal)*) => {
            $(if need <= 1usize << $shift {
                return with::<{ 1usize << $shift }>(bytes);
            })*
        };
    }
    smallest_tier!(16 18 20 22 24 26 28 30 32 34 36 38 40);
    with::<{ usize::MAX }>(bytes)
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
    /// Index of the first input whose returned value (a transform's write among others)
    /// differs from the recording, if any.
    pub first_result_difference: Option<usize>,
    /// Recorded live-state answers that did not match what the engines asked for.
    pub diverged_answers: usize,
    /// Index of the first input after which the engine asked to be woken at another time
    /// than recorded, if any.
    pub first_deadline_difference: Option<usize>,
}

impl Replay {
    /// True when the replay reproduced the recording byte for byte.
    pub fn identical(&self) -> bool {
        self.first_difference.is_none()
            && self.first_result_difference.is_none()
            && self.first_deadline_difference.is_none()
            && self.diverged_answers == 0
    }
}

/// The determinism check (issue "harness" §5): whether two recorded worlds, run from the same
/// seed and configuration, took the same inputs and produced the same outputs, byte for byte.
pub fn same_run(a: &World, b: &World) -> Result<bool, TraceError> {
    let (a, b) = (Trace::of(a, None)?, Trace::of(b, None)?);
    Ok(a.outputs.len() == b.outputs.len() && a.to_bytes()? == b.to_bytes()?)
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
    let mut first_result_difference = None;
    let mut first_deadline_difference = None;
    // Compared as encoded bytes; a value that cannot be encoded compares unequal to
    // everything, so it counts as a difference rather than as two equal empty encodings.
    fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ()> {
        bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(drop)
    }
    fn same<T: Serialize>(a: &T, b: &T) -> bool {
        matches!((encode(a), encode(b)), (Ok(x), Ok(y)) if x == y)
    }
    for (i, traced) in trace.inputs.iter().enumerate() {
        let Some(engine) = engines.get_mut(traced.server) else {
            first_result_difference.get_or_insert(i);
            continue;
        };
        let (result, missed) = engine.replay_input(traced.input.clone());
        diverged += missed;
        if !same(&result, &traced.result) {
            first_result_difference.get_or_insert(i);
        }
        if !same(&engine.poll_timeout(), &traced.deadline) {
            first_deadline_difference.get_or_insert(i);
        }
        while let Some(output) = engine.poll_output() {
            outputs.push((traced.server, output));
        }
    }
    let first_difference = (0..outputs.len().max(trace.outputs.len())).find(|i| {
        match (outputs.get(*i), trace.outputs.get(*i)) {
            (Some(a), Some(b)) => !same(a, b),
            _ => true,
        }
    });
    Replay {
        inputs: trace.inputs.len(),
        outputs: outputs.len(),
        first_difference,
        first_result_difference,
        diverged_answers: diverged,
        first_deadline_difference,
    }
}
