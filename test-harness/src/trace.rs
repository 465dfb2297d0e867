//! Traces and replay (issue "harness" §5): every engine input (and output) of a run, recorded
//! with the seed and the configuration, as a bincode file (JSON values inside carried as text, see
//! `profilestore_core::json_text`); replaying it rebuilds the same engines and feeds them the
//! same inputs — no DataStore, no host — and checks the outputs are byte-identical.
//!
//! The file is a stream: [`TRACE_MAGIC`], the format number, a header (the format number
//! again, under the header's checksum, and the world and fleet configurations), then one
//! frame per input and per output in the order they happened, then an end frame with their
//! counts. The header and each frame are a *part*: the length of its
//! bincode bytes, the length's bitwise complement and the bytes' CRC-32 (each a little-endian
//! `u32`), then the bytes; so a file that ends inside a part is told from one whose bytes
//! changed (a length that does not match its complement, contents that do not match their
//! checksum), and the reader names the part and the byte where it starts. A run writes it
//! as it goes ([`TraceWriter`]) and a replay reads it as it goes ([`TraceFile::replay`]), so
//! neither holds the run in memory, however long; the determinism check compares a second run
//! with the first's file as it goes ([`TraceWriter::compare_with`]). A [`Trace`] is the same
//! contents held in memory (tests).

use std::collections::VecDeque;
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

use profilestore_core::guid::GuidGenerator;
use profilestore_core::{Engine, Output};
use serde::{Deserialize, Serialize};

use crate::fleet::FleetConfig;
use crate::input_file::{MAX_STREAMED, read_bounded};
use crate::world::{Recorded, TracedInput, World, WorldConfig, engine_configs};

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
/// `Cancel`, and waiting starts are asked in call order as they resume (same layout); 15: the
/// file is a stream of frames after a header (module docs), not one encoded value; 16: the
/// header and each frame are preceded by their length and CRC-32; 17: and the length's
/// complement (module docs); 18: the header repeats the format number, under its checksum (a
/// damaged number is told from another format's), and a start waiting behind a failing final
/// save wakes at the error backoff to ask its `Cancel`, writes sending only whole-number user
/// ids; 19: session GUIDs draw on the server's PlaceId and JobId, a template's null fields are
/// left out of new profiles, a version whose read failed while the next page loaded is read
/// first from that page (same layout); 20: a version query's date of 0 is no bound, a stored
/// `RobloxMetaData` that is no table loads as `{}`, messages and templates larger than a key
/// holds and a second subscribe result are refused, a refused input leaves the engine's clock,
/// a `START_SESSION_TIMEOUT` of 0 lets a start queue or wait behind a final save once, the
/// auto-save catch-up counts slots, a failed version read is read again, a large negative
/// message counter still gives an id (same layout); 21: a `SetConstant` while critical with
/// the window full refreshes the critical state's start at once (same layout); 22: a write
/// repairing a malformed stored value warns with what it could not keep, and the
/// `MAX_MESSAGE_QUEUE` warning no longer calls every dropped message unprocessed (same layout);
/// 23: a repair whose write failed is named by the key's next write (same layout); 24: a start
/// waiting behind a final save asks its `Cancel` when the save lands (same layout); 25: the
/// repair a failed write may have stored is named as such, and forgotten when its key is
/// removed (same layout); 26: trailing nulls in a stored message entry are nothing, such a
/// repair is forgotten once the key holds no profile, an answer for a request not out is
/// refused as such whatever its shape, and the auto-save ring moves on at a clock too coarse
/// for its step (same layout).
pub const TRACE_FORMAT: u32 = 26;

/// The first bytes of every trace file.
pub const TRACE_MAGIC: &[u8; 8] = b"PSTRACE\0";

/// The most servers a trace may name: replay builds one engine per server.
pub const MAX_TRACE_SERVERS: usize = 10_000;

/// A recorded run held in memory: what a trace file holds (module docs).
#[derive(Clone, Debug, PartialEq)]
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
    /// For each input, how many outputs came before it: where the file puts it among them.
    pub marks: Vec<usize>,
}

/// What a trace file holds after its format number.
#[derive(Serialize, Deserialize)]
struct Header {
    /// The format number again, under the header's checksum.
    format: u32,
    world: WorldConfig,
    fleet: Option<FleetConfig>,
}

/// One frame after the header, as read.
#[derive(Deserialize)]
enum Frame {
    Input(TracedInput),
    Output(usize, Output),
    End { inputs: u64, outputs: u64 },
}

/// One frame, as written: [`Frame`]'s layout, borrowing what it writes.
#[derive(Serialize)]
enum FrameRef<'a> {
    Input(&'a TracedInput),
    Output(usize, &'a Output),
    End { inputs: u64, outputs: u64 },
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
    /// The trace of a world that recorded in memory ([`World::record`]; one that streams its
    /// trace to a file, [`World::stream_trace`], holds none).
    pub fn of(world: &World, fleet: Option<FleetConfig>) -> Result<Trace, TraceError> {
        let recorded = world.recorded().ok_or(TraceError::NotRecorded)?;
        Ok(Trace {
            format: TRACE_FORMAT,
            world: world.config.clone(),
            fleet,
            inputs: recorded.inputs.to_vec(),
            outputs: recorded.outputs.to_vec(),
            marks: recorded.marks.to_vec(),
        })
    }

    /// Encodes the trace as a file holds it (module docs): each input among the outputs where
    /// [`Trace::marks`] puts it.
    pub fn to_bytes(&self) -> Result<Vec<u8>, TraceError> {
        let encode = |e: bincode::error::EncodeError| TraceError::Encode(e.to_string());
        let mut frames =
            FrameWriter::start(Vec::new(), &self.world, self.fleet.as_ref()).map_err(encode)?;
        let recorded = Recorded {
            inputs: &self.inputs,
            outputs: &self.outputs,
            marks: &self.marks,
        };
        each_frame(&recorded, |frame| frames.frame(frame)).map_err(encode)?;
        frames.end().map_err(encode)
    }

    /// Decodes a trace, refusing anything but exactly one whole trace of this format whose
    /// inputs name its own servers. Lengths inside the file are not trusted: the decoder may
    /// claim at most 16 times a part's size for it ([`MAX_PART`] at most).
    pub fn from_bytes(bytes: &[u8], path: &str) -> Result<Trace, TraceError> {
        Trace::read(FrameReader::open(bytes, path, bytes.len() as u64)?)
    }

    fn read<R: BufRead>(mut frames: FrameReader<R>) -> Result<Trace, TraceError> {
        let mut trace = Trace {
            format: TRACE_FORMAT,
            world: frames.header.world.clone(),
            fleet: frames.header.fleet.clone(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            marks: Vec::new(),
        };
        while let Some(frame) = frames.next()? {
            match frame {
                Frame::Input(input) => {
                    trace.marks.push(trace.outputs.len());
                    trace.inputs.push(input);
                }
                Frame::Output(s, output) => trace.outputs.push((s, output)),
                Frame::End { .. } => {}
            }
        }
        Ok(trace)
    }

    /// Writes the trace to a file, as [`TraceWriter`] does.
    pub fn save(&self, path: &Path) -> Result<(), TraceError> {
        let bytes = self.to_bytes()?;
        let mut file = OutFile::create(path)?;
        file.out.write_all(&bytes).map_err(|e| io_error(path, e))?;
        file.finish()
    }

    /// Reads a trace file into memory (a replay need not: [`TraceFile`]).
    pub fn load(path: &Path) -> Result<Trace, TraceError> {
        Trace::read(open_frames(path)?)
    }
}

fn io_error(path: &Path, source: std::io::Error) -> TraceError {
    TraceError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A trace file being written. A regular file (or a new one) is replaced whole: the bytes go
/// to `<name>.partial` beside it ([`partial_path`]), locked against another run writing the
/// same trace, which takes its name when the trace is finished. A trace not finished (an
/// error, a panic) removes its partial file; a process killed while writing leaves it, and
/// the previous trace as it was. Anything else (a pipe, a symlink) is written in place, and
/// an unfinished trace there is left cut short.
struct OutFile {
    out: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    partial: Option<PathBuf>,
}

impl OutFile {
    fn create(path: &Path) -> Result<OutFile, TraceError> {
        let Some(partial) = partial_path(path) else {
            let file = std::fs::File::create(path).map_err(|e| io_error(path, e))?;
            return Ok(OutFile {
                out: std::io::BufWriter::new(file),
                path: path.to_path_buf(),
                partial: None,
            });
        };
        let file = open_partial(&partial).map_err(|e| io_error(path, e))?;
        file.set_len(0).map_err(|e| io_error(path, e))?;
        let partial = Some(partial);
        Ok(OutFile {
            out: std::io::BufWriter::new(file),
            path: path.to_path_buf(),
            partial,
        })
    }

    fn finish(mut self) -> Result<(), TraceError> {
        let done = self.out.flush().and_then(|()| match self.partial.take() {
            Some(partial) => std::fs::rename(&partial, &self.path).inspect_err(|_| {
                let _ = std::fs::remove_file(&partial);
            }),
            None => Ok(()),
        });
        done.map_err(|e| io_error(&self.path, e))
    }
}

/// Opens (making it if need be) and locks the partial file of a trace: locked before it is
/// emptied, so a run still writing it keeps its bytes; refused while another run holds it.
/// A partial file already there must be one: a regular file, empty or starting with
/// [`TRACE_MAGIC`] (a killed run's). A symlink (emptying it would empty the file it points
/// at) or a file of other bytes is refused, naming it.
fn open_partial(partial: &Path) -> std::io::Result<std::fs::File> {
    use std::io::Read;
    let shown = partial.display();
    if let Ok(meta) = std::fs::symlink_metadata(partial) {
        if !meta.is_file() {
            return Err(std::io::Error::other(format!(
                "{shown} is in the way of the trace's partial file: it is not a regular file"
            )));
        }
        let mut head = Vec::new();
        std::fs::File::open(partial)?
            .take(TRACE_MAGIC.len() as u64)
            .read_to_end(&mut head)?;
        if !head.is_empty() && !TRACE_MAGIC.starts_with(&head) {
            return Err(std::io::Error::other(format!(
                "{shown} is in the way of the trace's partial file: it is not a trace"
            )));
        }
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(partial)?;
    if file.try_lock().is_err() {
        return Err(std::io::Error::other(format!(
            "another run is writing this trace ({shown} is locked)"
        )));
    }
    Ok(file)
}

/// Whether a trace could be written to `path` through its partial file (a regular file or a
/// new one: [`partial_path`]; `Ok` for anything else, written in place): the partial file can
/// be made beside it and no other run holds it. One made to try is removed again; nothing is
/// truncated.
pub fn try_partial(path: &Path) -> std::io::Result<()> {
    let Some(partial) = partial_path(path) else {
        return Ok(());
    };
    let existed = partial.exists();
    let tried = open_partial(&partial).map(drop);
    if !existed {
        let _ = std::fs::remove_file(&partial);
    }
    tried
}

/// Whether `path` ends in a path separator (`out/`): it names a folder, never a trace file,
/// though `Path` drops the separator from its last component.
pub fn names_a_folder(path: &Path) -> bool {
    path.as_os_str()
        .to_string_lossy()
        .chars()
        .next_back()
        .is_some_and(std::path::is_separator)
}

/// Where a trace written to `path` goes until it is finished: `<name>.partial` beside it, for
/// a regular file or a new one; `None` for anything else (a pipe, a symlink, a path ending in
/// a separator: written in place, or refused when opened).
pub fn partial_path(path: &Path) -> Option<PathBuf> {
    if names_a_folder(path) {
        return None;
    }
    let plain = std::fs::symlink_metadata(path).map_or(true, |m| m.is_file());
    path.file_name().filter(|_| plain).map(|name| {
        let mut partial = name.to_os_string();
        partial.push(".partial");
        path.with_file_name(partial)
    })
}

impl Drop for OutFile {
    /// A trace not finished (an error, a panic) leaves no partial file behind.
    fn drop(&mut self) {
        if let Some(partial) = &self.partial {
            let _ = std::fs::remove_file(partial);
        }
    }
}

/// Writes [`TRACE_MAGIC`], the format, the header, then frames, counting them; the header
/// and each frame as a checked part ([`write_part`]).
struct FrameWriter<W: Write> {
    out: W,
    /// The part being encoded (reused: one allocation for the whole trace).
    part: Vec<u8>,
    inputs: u64,
    outputs: u64,
}

/// The bytes before each part's contents: its length, the length's bitwise complement (a
/// damaged length is told from a file that ends early) and the CRC-32 of the contents, each a
/// little-endian `u32`.
const PART_PREFIX: usize = 12;

/// The largest part a trace holds (1 GiB): one input or output, whose values a DataStore
/// takes up to 4 MB each. A reader allocates no more than this for a part.
pub const MAX_PART: usize = 1 << 30;

/// Writes `value` to `out` as one part: [`PART_PREFIX`] (the length of its bincode bytes, its
/// complement, their CRC-32), then those bytes, encoded in `buffer` first.
fn write_part<T: Serialize>(
    out: &mut impl Write,
    buffer: &mut Vec<u8>,
    value: T,
) -> Result<(), bincode::error::EncodeError> {
    use bincode::error::EncodeError;
    buffer.clear();
    bincode::serde::encode_into_std_write(value, buffer, bincode::config::standard())?;
    let len = u32::try_from(buffer.len())
        .ok()
        .filter(|&len| len as usize <= MAX_PART)
        .ok_or(EncodeError::Other("a trace frame is larger than 1 GiB"))?;
    let mut prefix = [0u8; PART_PREFIX];
    prefix[..4].copy_from_slice(&len.to_le_bytes());
    prefix[4..8].copy_from_slice(&(!len).to_le_bytes());
    prefix[8..].copy_from_slice(&crc32fast::hash(buffer).to_le_bytes());
    out.write_all(&prefix)
        .and_then(|()| out.write_all(buffer))
        .map_err(|inner| EncodeError::Io { inner, index: 0 })
}

/// The header, as written: [`Header`]'s layout, borrowing what it writes.
#[derive(Serialize)]
struct HeaderRef<'a> {
    format: u32,
    world: &'a WorldConfig,
    fleet: Option<&'a FleetConfig>,
}

impl<W: Write> FrameWriter<W> {
    fn start(
        mut out: W,
        world: &WorldConfig,
        fleet: Option<&FleetConfig>,
    ) -> Result<FrameWriter<W>, bincode::error::EncodeError> {
        let config = bincode::config::standard();
        out.write_all(TRACE_MAGIC)
            .map_err(|inner| bincode::error::EncodeError::Io { inner, index: 0 })?;
        bincode::serde::encode_into_std_write(TRACE_FORMAT, &mut out, config)?;
        let mut part = Vec::new();
        let header = HeaderRef {
            format: TRACE_FORMAT,
            world,
            fleet,
        };
        write_part(&mut out, &mut part, header)?;
        Ok(FrameWriter {
            out,
            part,
            inputs: 0,
            outputs: 0,
        })
    }

    fn frame(&mut self, frame: FrameRef) -> Result<(), bincode::error::EncodeError> {
        match frame {
            FrameRef::Input(_) => self.inputs += 1,
            FrameRef::Output(..) => self.outputs += 1,
            FrameRef::End { .. } => {}
        }
        write_part(&mut self.out, &mut self.part, frame)
    }

    fn end(mut self) -> Result<W, bincode::error::EncodeError> {
        let (inputs, outputs) = (self.inputs, self.outputs);
        self.frame(FrameRef::End { inputs, outputs })?;
        Ok(self.out)
    }
}

/// Calls `write` with the frames of `recorded`, in the order a file holds them: each input
/// after the outputs its mark counts (a mark behind the outputs already written, or missing,
/// puts it right after them; one past the end, after them all).
fn each_frame<E>(
    recorded: &Recorded,
    mut write: impl FnMut(FrameRef) -> Result<(), E>,
) -> Result<(), E> {
    let outputs = recorded.outputs;
    let mut written = 0;
    for (i, input) in recorded.inputs.iter().enumerate() {
        let before = recorded.marks.get(i).copied().unwrap_or(written);
        let before = before.clamp(written, outputs.len());
        for (s, output) in &outputs[written..before] {
            write(FrameRef::Output(*s, output))?;
        }
        written = before;
        write(FrameRef::Input(input))?;
    }
    for (s, output) in &outputs[written..] {
        write(FrameRef::Output(*s, output))?;
    }
    Ok(())
}

/// A trace written to a file as the run goes ([`World::stream_trace`]), or compared as it
/// goes with one written before (the determinism check: [`TraceWriter::compare_with`]): the
/// run's memory does not grow with it. The first error is kept and returned by
/// [`TraceWriter::finish`], which ends the trace; a writer dropped unfinished leaves no partial
/// file (a pipe or a symlink, written in place, is left cut short).
pub struct TraceWriter {
    frames: FrameWriter<Sink>,
    path: PathBuf,
    error: Option<TraceError>,
}

/// How a [`TraceWriter`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceEnd {
    /// The trace is in its file.
    Written,
    /// It was compared with a file: whether that file holds exactly these bytes.
    Compared {
        /// Byte for byte the same, and nothing more in the file.
        same: bool,
    },
}

/// Where a [`TraceWriter`]'s bytes go.
enum Sink {
    File(OutFile),
    Compare(Comparison),
}

/// Bytes compared, as they are written, with a file's next bytes.
struct Comparison {
    expected: std::io::BufReader<std::fs::File>,
    same: bool,
    read: Vec<u8>,
}

impl Comparison {
    fn check(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if !self.same {
            return Ok(());
        }
        self.read.resize(bytes.len(), 0);
        match self.expected.read_exact(&mut self.read) {
            Ok(()) => self.same = self.read == bytes,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => self.same = false,
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::File(file) => file.out.write(bytes),
            Sink::Compare(comparison) => {
                comparison.check(bytes)?;
                Ok(bytes.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(file) => file.out.flush(),
            Sink::Compare(_) => Ok(()),
        }
    }
}

impl TraceWriter {
    /// Starts the trace of a run of `world` (and `fleet`) at `path`.
    pub fn create(
        path: &Path,
        world: &WorldConfig,
        fleet: Option<&FleetConfig>,
    ) -> Result<TraceWriter, TraceError> {
        TraceWriter::start(Sink::File(OutFile::create(path)?), path, world, fleet)
    }

    /// Starts comparing the trace of a run of `world` (and `fleet`) with the file at `path`
    /// as the run goes, writing nothing.
    pub fn compare_with(
        path: &Path,
        world: &WorldConfig,
        fleet: Option<&FleetConfig>,
    ) -> Result<TraceWriter, TraceError> {
        let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
        let comparison = Comparison {
            expected: std::io::BufReader::new(file),
            same: true,
            read: Vec::new(),
        };
        TraceWriter::start(Sink::Compare(comparison), path, world, fleet)
    }

    fn start(
        sink: Sink,
        path: &Path,
        world: &WorldConfig,
        fleet: Option<&FleetConfig>,
    ) -> Result<TraceWriter, TraceError> {
        let frames = FrameWriter::start(sink, world, fleet).map_err(|e| encode_error(path, e))?;
        Ok(TraceWriter {
            frames,
            path: path.to_path_buf(),
            error: None,
        })
    }

    fn keep(&mut self, written: Result<(), bincode::error::EncodeError>) {
        if let (Err(e), None) = (written, &self.error) {
            self.error = Some(encode_error(&self.path, e));
        }
    }

    /// Appends an input.
    pub fn input(&mut self, input: &TracedInput) {
        let written = self.frames.frame(FrameRef::Input(input));
        self.keep(written);
    }

    /// Appends an output of server `s`.
    pub fn output(&mut self, s: usize, output: &Output) {
        let written = self.frames.frame(FrameRef::Output(s, output));
        self.keep(written);
    }

    /// Appends what a world recorded in memory before the trace went to a file.
    pub fn write_recorded(&mut self, recorded: &Recorded) {
        let written = each_frame(recorded, |frame| self.frames.frame(frame));
        self.keep(written);
    }

    /// The first error met writing (or reading the file compared with), if any: the trace
    /// will not finish.
    pub fn error(&self) -> Option<&TraceError> {
        self.error.as_ref()
    }

    /// Ends the trace (its end frame; the file in place, or the comparison's answer) or
    /// returns the first error met.
    pub fn finish(self) -> Result<TraceEnd, TraceError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let path = self.path;
        match self.frames.end().map_err(|e| encode_error(&path, e))? {
            Sink::File(file) => file.finish().map(|()| TraceEnd::Written),
            Sink::Compare(mut comparison) => {
                // Nothing more in the file than this run wrote.
                let more = comparison
                    .expected
                    .fill_buf()
                    .map_err(|e| io_error(&path, e))?;
                let same = comparison.same && more.is_empty();
                Ok(TraceEnd::Compared { same })
            }
        }
    }
}

/// An encoding failure writing to `path`: the file's error, or a defect (every field is plain
/// data or JSON carried as text).
fn encode_error(path: &Path, e: bincode::error::EncodeError) -> TraceError {
    match e {
        bincode::error::EncodeError::Io { inner, .. } => io_error(path, inner),
        other => TraceError::Encode(other.to_string()),
    }
}

/// A reader that counts the bytes taken from it.
struct Counted<R> {
    inner: R,
    taken: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.taken += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
        self.taken += amt as u64;
    }
}

/// Reads a trace's header, then its frames one by one, checking each.
struct FrameReader<R: BufRead> {
    input: Counted<R>,
    path: String,
    header: Header,
    /// The part being read (reused).
    part: Vec<u8>,
    /// The file's size.
    size: u64,
    inputs: u64,
    outputs: u64,
    ended: bool,
    /// Set when the last error was the file ending before the trace does: the bytes after the
    /// last whole frame (0 for a file that ends between frames).
    cut: Option<u64>,
}

impl<R: BufRead> FrameReader<R> {
    /// Reads the magic, the format and the header of a file of `size` bytes.
    fn open(input: R, path: &str, size: u64) -> Result<FrameReader<R>, TraceError> {
        let mut input = Counted {
            inner: input,
            taken: 0,
        };
        let damaged = |message: String| TraceError::Decode {
            path: path.to_string(),
            message,
        };
        let mut magic = Vec::with_capacity(TRACE_MAGIC.len());
        (&mut input)
            .take(TRACE_MAGIC.len() as u64)
            .read_to_end(&mut magic)
            .map_err(|e| io_error(Path::new(path), e))?;
        if magic != TRACE_MAGIC {
            // Format 1 had no header and began with its format number (one byte, 1).
            if magic.first() == Some(&1) {
                return Err(TraceError::Format {
                    path: path.to_string(),
                    found: 1,
                });
            }
            return Err(damaged("no trace header".into()));
        }
        // The format comes first: a trace of another version is named as such before its
        // layout is read.
        let format: u32 =
            decode_limited(&mut input, part_budget(0)).map_err(|e| read_error(path, e))?;
        let mut part = Vec::new();
        if format != TRACE_FORMAT {
            // The number up front has no checksum of its own; the header repeats it under its
            // checksum. A sound header of this format after another number: that number is a
            // damaged byte.
            let header = read_part::<Header, _>(&mut input, &mut part, size, "");
            if header.is_ok_and(|h| h.format == TRACE_FORMAT) {
                return Err(damaged(format!(
                    "its format number reads {format}, but its header is format \
                     {TRACE_FORMAT}'s: the file is damaged"
                )));
            }
            return Err(TraceError::Format {
                path: path.to_string(),
                found: format,
            });
        }
        let header: Header = match read_part(&mut input, &mut part, size, "its header") {
            Ok(header) => header,
            Err(PartError::Io(e)) => return Err(io_error(Path::new(path), e)),
            Err(PartError::Cut(_)) => {
                return Err(damaged("the file ends too early (cut short?)".into()));
            }
            Err(PartError::Damaged(message)) => return Err(damaged(message)),
        };
        if header.format != TRACE_FORMAT {
            return Err(damaged(format!(
                "its header says format {}, its format number {TRACE_FORMAT}",
                header.format
            )));
        }
        let servers = header.world.servers.len();
        if servers > MAX_TRACE_SERVERS {
            return Err(damaged(format!(
                "{servers} servers, at most {MAX_TRACE_SERVERS} are replayed"
            )));
        }
        Ok(FrameReader {
            input,
            path: path.to_string(),
            header,
            part,
            size,
            inputs: 0,
            outputs: 0,
            ended: false,
            cut: None,
        })
    }

    fn damaged(&self, message: String) -> TraceError {
        TraceError::Decode {
            path: self.path.clone(),
            message,
        }
    }

    /// The next frame, `None` after the end frame (once the counts and the end of the file
    /// are checked).
    fn next(&mut self) -> Result<Option<Frame>, TraceError> {
        self.cut = None;
        if self.ended {
            return Ok(None);
        }
        let at_end = self
            .input
            .fill_buf()
            .map_err(|e| io_error(Path::new(&self.path), e))?
            .is_empty();
        if at_end {
            self.cut = Some(0);
            return Err(self.damaged("the file ends before the trace does (cut short?)".into()));
        }
        let what = format!("frame {}", self.inputs + self.outputs);
        let frame: Frame =
            read_part(&mut self.input, &mut self.part, self.size, &what).map_err(|e| match e {
                PartError::Io(e) => io_error(Path::new(&self.path), e),
                PartError::Cut(unread) => {
                    self.cut = Some(unread);
                    self.damaged("the file ends too early (cut short?)".into())
                }
                PartError::Damaged(message) => self.damaged(message),
            })?;
        match &frame {
            Frame::Input(t) => {
                let servers = self.header.world.servers.len();
                if t.server >= servers {
                    return Err(self.damaged(format!(
                        "input {} is for server {}, the trace has {servers}",
                        self.inputs, t.server
                    )));
                }
                self.inputs += 1;
            }
            Frame::Output(..) => self.outputs += 1,
            Frame::End { inputs, outputs } => {
                if (*inputs, *outputs) != (self.inputs, self.outputs) {
                    return Err(self.damaged(format!(
                        "its end counts {inputs} inputs and {outputs} outputs, it holds {} and {}",
                        self.inputs, self.outputs
                    )));
                }
                // Counted up to a bound (a regular file can hold any amount after it).
                let after = std::io::copy(
                    &mut (&mut self.input).take(MAX_STREAMED + 1),
                    &mut std::io::sink(),
                )
                .map_err(|e| io_error(Path::new(&self.path), e))?;
                if after > MAX_STREAMED {
                    return Err(
                        self.damaged(format!("more than {MAX_STREAMED} bytes follow the trace"))
                    );
                } else if after > 0 {
                    return Err(self.damaged(format!("{after} bytes follow the trace")));
                }
                self.ended = true;
            }
        }
        Ok(Some(frame))
    }
}

/// Why [`read_part`] read no part.
enum PartError {
    /// The file's own error.
    Io(std::io::Error),
    /// The file ends inside the part: how many bytes it holds from the part's start.
    Cut(u64),
    /// The part's bytes are not what was written, or not one value: what is wrong.
    Damaged(String),
}

/// Reads one part written by [`write_part`] from `input` (which has taken `input.taken` of a
/// file of `size` bytes) and decodes it, the decoder claiming at most [`part_budget`]: a part
/// the file ends inside is [`PartError::Cut`]; one whose length does not match its complement
/// (or is over [`MAX_PART`]), whose bytes do not match their checksum, or that holds more or
/// less than one value, is damage, named with `what` and where it starts.
fn read_part<T: serde::de::DeserializeOwned, R: BufRead>(
    input: &mut Counted<R>,
    part: &mut Vec<u8>,
    size: u64,
    what: &str,
) -> Result<T, PartError> {
    let start = input.taken;
    let mut prefix = [0u8; PART_PREFIX];
    let got = read_full(input, &mut prefix).map_err(PartError::Io)?;
    if got < PART_PREFIX {
        return Err(PartError::Cut(got as u64));
    }
    let [l0, l1, l2, l3, n0, n1, n2, n3, c0, c1, c2, c3] = prefix;
    let len = u32::from_le_bytes([l0, l1, l2, l3]);
    let crc = u32::from_le_bytes([c0, c1, c2, c3]);
    if !len != u32::from_le_bytes([n0, n1, n2, n3]) || len as usize > MAX_PART {
        return Err(PartError::Damaged(format!(
            "{what} (at byte {start}) has a damaged length: the file is damaged"
        )));
    }
    // A sound length is checked against what the file holds before anything is allocated
    // for it: more is a file that ends early.
    let left = size.saturating_sub(input.taken);
    if u64::from(len) > left {
        return Err(PartError::Cut(PART_PREFIX as u64 + left));
    }
    part.resize(len as usize, 0);
    let got = read_full(input, part).map_err(PartError::Io)?;
    if got < part.len() {
        return Err(PartError::Cut((PART_PREFIX + got) as u64));
    }
    if crc32fast::hash(part) != crc {
        return Err(PartError::Damaged(format!(
            "{what} (at byte {start}) does not match its checksum: the file is damaged"
        )));
    }
    let mut bytes = &part[..];
    let value = decode_limited(&mut bytes, part_budget(part.len())).map_err(|e| {
        use bincode::error::DecodeError;
        // Its bytes are the ones written (the checksum says so): a value they end inside was
        // never whole, not cut from the file.
        let why = match e {
            DecodeError::UnexpectedEnd { .. } | DecodeError::Io { .. } => {
                "its contents end early".to_string()
            }
            e => decode_error(e),
        };
        PartError::Damaged(format!("{what} (at byte {start}): {why}"))
    })?;
    if !bytes.is_empty() {
        return Err(PartError::Damaged(format!(
            "{what} (at byte {start}) holds {} bytes after its contents",
            bytes.len()
        )));
    }
    Ok(value)
}

/// Reads into all of `buf` unless the input ends first: how many bytes were read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The frames of the trace file at `path`, read as they are needed from a regular file;
/// anything else (a pipe such as `<(zcat run.trace.gz)`, a device) is read into memory first,
/// up to [`MAX_STREAMED`] bytes, so that `/dev/zero` is an error and not a read without
/// end, and what the decoder may claim is bounded by what was read.
fn open_frames(path: &Path) -> Result<FrameReader<Box<dyn BufRead>>, TraceError> {
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let shown = path.display().to_string();
    if meta.is_file() {
        let input: Box<dyn BufRead> = Box::new(std::io::BufReader::new(file));
        return FrameReader::open(input, &shown, meta.len());
    }
    let bytes = read_bounded(file, MAX_STREAMED)
        .map_err(|e| io_error(path, e))?
        .ok_or_else(|| TraceError::Decode {
            path: shown.clone(),
            message: format!(
                "more than {MAX_STREAMED} bytes from a file that is not a regular file"
            ),
        })?;
    let size = bytes.len() as u64;
    FrameReader::open(Box::new(std::io::Cursor::new(bytes)), &shown, size)
}

/// A trace file opened for replay: its header read, its frames read as the replay goes
/// ([`TraceFile::replay`]), so a replay's memory does not grow with the run.
pub struct TraceFile {
    frames: FrameReader<Box<dyn BufRead>>,
}

impl TraceFile {
    /// Opens the trace file at `path` and reads its header.
    pub fn open(path: &Path) -> Result<TraceFile, TraceError> {
        Ok(TraceFile {
            frames: open_frames(path)?,
        })
    }

    /// The fleet configuration it recorded, when the run was a fleet.
    pub fn fleet(&self) -> Option<&FleetConfig> {
        self.frames.header.fleet.as_ref()
    }

    /// Replays it on fresh engines, comparing every output with the recording as both come.
    pub fn replay(self) -> Result<Replay, TraceError> {
        self.replay_as(false).map(|(replay, _)| replay)
    }

    /// [`TraceFile::replay`], or, for a file that ends before its trace does (the partial file
    /// of a killed run, a trace sent to a pipe whose run was stopped), a replay of the frames
    /// it holds: each of its inputs replayed and each of its outputs compared, the outputs of
    /// the replay past the last recorded one not counted. With a replay of a cut file, how many
    /// bytes after its last whole frame were not read. Damage (a frame whose length or
    /// contents do not match their checks) is an error still.
    pub fn replay_prefix(self) -> Result<(Replay, Option<u64>), TraceError> {
        self.replay_as(true)
    }

    fn replay_as(mut self, prefix: bool) -> Result<(Replay, Option<u64>), TraceError> {
        let mut replayer = Replayer::new(&self.frames.header.world);
        loop {
            let frame = match self.frames.next() {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok((replayer.finish(), None)),
                Err(e) => match self.frames.cut {
                    Some(unread) if prefix => {
                        return Ok((replayer.finish_prefix(), Some(unread)));
                    }
                    _ => return Err(e),
                },
            };
            match frame {
                Frame::Input(input) => replayer.input(input),
                Frame::Output(s, output) => replayer.recorded(s, output),
                Frame::End { .. } => {}
            }
        }
    }
}

/// A part the decoder could not read: the file's own error (a disk failing), or what is wrong
/// with its bytes.
fn read_error(path: &str, e: bincode::error::DecodeError) -> TraceError {
    match e {
        bincode::error::DecodeError::Io { inner, .. }
            if inner.kind() != std::io::ErrorKind::UnexpectedEof =>
        {
            io_error(Path::new(path), inner)
        }
        e => TraceError::Decode {
            path: path.to_string(),
            message: decode_error(e),
        },
    }
}

/// What is wrong with a file the decoder refused, in words (bincode's own text of the commonest
/// cases is a Rust debug print).
fn decode_error(e: bincode::error::DecodeError) -> String {
    use bincode::error::DecodeError;
    match e {
        DecodeError::UnexpectedEnd { .. } => "the file ends too early (cut short?)".to_string(),
        DecodeError::Io { .. } => "the file ends too early (cut short?)".to_string(),
        DecodeError::LimitExceeded => {
            "a length inside it is larger than the file can hold".to_string()
        }
        other => other.to_string(),
    }
}

/// What decoding a part of `len` bytes may claim: 16 times its length, at least 64 KiB.
/// bincode claims what a value takes in memory as it decodes it: a string's length, and 4 or 8
/// bytes for each integer and length however few bytes its varint took (16 at most, a `u128`
/// in one byte), so a sound part claims at most 16 times its bytes, and a length inside it that
/// claims more is refused before anything is allocated for it. (Bounded by the whole file's
/// size instead, a few bytes in a large file could claim gigabytes, and past 64 GiB nothing at
/// all.)
fn part_budget(len: usize) -> usize {
    len.saturating_mul(16).max(1 << 16)
}

/// Decodes one part from `input`, letting the decoder claim at most `need` bytes for lengths
/// read from the file (rounded up to a power of four, at least 64 KiB; at most 2^40, more
/// than a part can hold: [`MAX_PART`]).
fn decode_limited<T: serde::de::DeserializeOwned, R: Read>(
    input: &mut R,
    need: usize,
) -> Result<T, bincode::error::DecodeError> {
    fn with<const LIMIT: usize, T: serde::de::DeserializeOwned, R: Read>(
        input: &mut R,
    ) -> Result<T, bincode::error::DecodeError> {
        let config = bincode::config::standard().with_limit::<LIMIT>();
        bincode::serde::decode_from_std_read(input, config)
    }
    macro_rules! smallest_tier {
        ($($shift:literal)*) => {
            $(if need <= 1usize << $shift {
                return with::<{ 1usize << $shift }, T, R>(input);
            })*
        };
    }
    smallest_tier!(16 18 20 22 24 26 28 30 32 34 36 38);
    with::<{ 1usize << 40 }, T, R>(input)
}

/// What a replay found.
#[derive(Clone, Debug, PartialEq)]
pub struct Replay {
    /// Inputs replayed.
    pub inputs: usize,
    /// Outputs produced; after a cut ([`TraceFile::replay_prefix`]), those the file holds.
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

/// Whether two worlds recording in memory, run from the same seed and configuration, took the
/// same inputs and produced the same outputs, byte for byte: the determinism check (issue
/// "harness" §5) on traces held in memory (`simulate` compares with a file as it goes:
/// [`TraceWriter::compare_with`]).
pub fn same_run(a: &World, b: &World) -> Result<bool, TraceError> {
    let (a, b) = (Trace::of(a, None)?, Trace::of(b, None)?);
    Ok(a.outputs.len() == b.outputs.len() && a.to_bytes()? == b.to_bytes()?)
}

/// Replays a trace on fresh engines and compares every output with the recording.
pub fn replay(trace: &Trace) -> Replay {
    let mut replayer = Replayer::new(&trace.world);
    let mut recorded = trace.outputs.iter();
    for (i, input) in trace.inputs.iter().enumerate() {
        // The outputs recorded before this input first: both queues stay short.
        let before = trace.marks.get(i).copied().unwrap_or(0);
        while replayer.recorded_count < before {
            let Some((s, output)) = recorded.next() else {
                break;
            };
            replayer.recorded(*s, output.clone());
        }
        replayer.input(input.clone());
    }
    for (s, output) in recorded {
        replayer.recorded(*s, output.clone());
    }
    replayer.finish()
}

/// Fresh engines fed a trace's inputs, their outputs compared with the recorded ones in
/// order as both come in: only those one side has and the other not yet are held.
struct Replayer {
    engines: Vec<Engine>,
    inputs: usize,
    produced_count: usize,
    recorded_count: usize,
    produced: VecDeque<(usize, Output)>,
    recorded: VecDeque<(usize, Output)>,
    compared: usize,
    first_difference: Option<usize>,
    first_result_difference: Option<usize>,
    first_deadline_difference: Option<usize>,
    diverged: usize,
}

// Compared as encoded bytes; a value that cannot be encoded compares unequal to everything, so
// it counts as a difference rather than as two equal empty encodings.
fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ()> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(drop)
}

fn same<T: Serialize>(a: &T, b: &T) -> bool {
    matches!((encode(a), encode(b)), (Ok(x), Ok(y)) if x == y)
}

impl Replayer {
    fn new(world: &WorldConfig) -> Replayer {
        let mut rng = GuidGenerator::new(world.seed);
        Replayer {
            engines: engine_configs(world, &mut rng)
                .into_iter()
                .map(Engine::new)
                .collect(),
            inputs: 0,
            produced_count: 0,
            recorded_count: 0,
            produced: VecDeque::new(),
            recorded: VecDeque::new(),
            compared: 0,
            first_difference: None,
            first_result_difference: None,
            first_deadline_difference: None,
            diverged: 0,
        }
    }

    fn input(&mut self, traced: TracedInput) {
        let i = self.inputs;
        self.inputs += 1;
        // Where an output comes is part of the recording: every output recorded before this
        // input must have been made before it, and nothing more (an output moved past an input,
        // or ahead of one, is a difference even when the order of all outputs is the same).
        if self.produced_count != self.recorded_count {
            self.first_difference.get_or_insert(self.compared);
        }
        let Some(engine) = self.engines.get_mut(traced.server) else {
            self.first_result_difference.get_or_insert(i);
            return;
        };
        let (result, missed) = engine.replay_input(traced.input);
        self.diverged += missed;
        if !same(&result, &traced.result) {
            self.first_result_difference.get_or_insert(i);
        }
        if !same(&engine.poll_timeout(), &traced.deadline) {
            self.first_deadline_difference.get_or_insert(i);
        }
        // The world takes a server's outputs after each input it feeds it. A transform it runs
        // inside a DataStore request (`World::run_transform`) is not followed by a drain, but
        // transforms put out nothing: were one to, the replay would place its outputs before
        // the next input and count a difference, never hide one.
        while let Some(output) = engine.poll_output() {
            self.produced_count += 1;
            self.produced.push_back((traced.server, output));
        }
        self.compare();
    }

    fn recorded(&mut self, s: usize, output: Output) {
        self.recorded_count += 1;
        self.recorded.push_back((s, output));
        self.compare();
    }

    fn compare(&mut self) {
        while let (Some(a), Some(b)) = (self.produced.front(), self.recorded.front()) {
            if self.first_difference.is_none() && !same(a, b) {
                self.first_difference = Some(self.compared);
            }
            self.produced.pop_front();
            self.recorded.pop_front();
            self.compared += 1;
        }
        // Past the first difference only the counts matter.
        if self.first_difference.is_some() {
            self.produced.clear();
            self.recorded.clear();
        }
    }

    fn finish(mut self) -> Replay {
        // One side has outputs the other has not.
        if self.produced_count != self.recorded_count {
            self.first_difference.get_or_insert(self.compared);
        }
        let outputs = self.produced_count;
        self.report(outputs)
    }

    /// The end of a replay of a trace cut short: outputs the replay made past the recording's
    /// last are what the cut took away; a recorded output the replay did not make is a
    /// difference still.
    fn finish_prefix(mut self) -> Replay {
        if self.produced_count < self.recorded_count {
            self.first_difference.get_or_insert(self.compared);
        }
        let outputs = self.recorded_count;
        self.report(outputs)
    }

    /// What the replay found, counting `outputs`.
    fn report(self, outputs: usize) -> Replay {
        Replay {
            inputs: self.inputs,
            outputs,
            first_difference: self.first_difference,
            first_result_difference: self.first_result_difference,
            diverged_answers: self.diverged,
            first_deadline_difference: self.first_deadline_difference,
        }
    }
}
