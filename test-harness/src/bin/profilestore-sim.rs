//! `profilestore-sim`: simulate fleets, play scenario files, replay traces, inspect stored keys.
//!
//! ```text
//! profilestore-sim simulate --servers 4 --players 200 --duration 30m --faults 0.05 --seed 1
//! profilestore-sim scenario ../shared/fixtures/scenarios/handoff_message.json
//! profilestore-sim replay run.trace
//! profilestore-sim inspect Player_7
//! profilestore-sim export > store.json
//! profilestore-sim import ../shared/fixtures/original-golden.json --db golden.db
//! ```

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use profilestore_harness::check_folder::{self, CheckFolder};
use profilestore_harness::datastore::{Limits, StoreName};
use profilestore_harness::fleet::{Fleet, FleetConfig, Played, STORE};
use profilestore_harness::input_file::{MAX_STREAMED, read_text};
use profilestore_harness::storage::{MemoryStorage, SqliteStorage, Storage, StorageError};
use profilestore_harness::trace::{self, TRACE_MAGIC};
use profilestore_harness::{export, inspect, invariants, journal, scenario};

// Simulations allocate and free JSON values at a high rate; mimalloc does that markedly faster
// than the system allocator (the fleet bench measures it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The embedded on-disk store runs use unless told otherwise.
const DEFAULT_DB: &str = "profilestore-sim.db";

/// `word` as one word of a POSIX shell command: as it is when it holds only characters no
/// shell treats specially, else in single quotes (a single quote inside as `'\''`).
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=,+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `eprintln!` that cannot panic: with stderr closed (`2>&1 | head -1`, its reader gone) a note
/// is dropped, and the command still exits with its own status.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

#[derive(Parser)]
#[command(
    name = "profilestore-sim",
    version,
    about = "Simulate ProfileStore fleets on a virtual clock"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a fleet of servers and players, then check every invariant.
    // Negative numbers reach the value checks, which name the flag (`--max-skew -1`).
    #[command(allow_negative_numbers = true)]
    Simulate {
        /// Number of servers.
        #[arg(long, default_value_t = 4)]
        servers: usize,
        /// Number of players.
        #[arg(long, default_value_t = 200)]
        players: usize,
        /// Virtual time to play, e.g. 90s, 30m, 2h. The run then settles, with faults off:
        /// everyone leaves, gift recipients log in once more to collect, and every final save
        /// lands, so the summary's virtual time is a few minutes longer.
        #[arg(long, default_value = "30m", value_parser = parse_duration)]
        duration: f64,
        /// Probability that a DataStore call fails (and that a message is lost).
        #[arg(long, default_value_t = 0.0)]
        faults: f64,
        /// Seed of the whole run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Mean seconds of the stay drawn for a player on a server before leaving or hopping
        /// (it ends at the player's next action after that: about 10 s more on average).
        #[arg(long, default_value_t = 90.0)]
        stay: f64,
        /// Crashes per server per virtual minute.
        #[arg(long, default_value_t = 0.0)]
        crash_rate: f64,
        /// BindToClose shutdowns per server per virtual minute.
        #[arg(long, default_value_t = 0.0)]
        shutdown_rate: f64,
        /// Servers held in reserve: each replaces one that crashed or shut down, 10 s later.
        #[arg(long, default_value_t = 0)]
        spare_servers: usize,
        /// Places the servers run (PlaceIds 1001, 1002, ..., dealt round the servers); players
        /// hop between places as between servers.
        #[arg(long, default_value_t = 1)]
        places: usize,
        /// Largest wall-clock (`os.time()`) skew of a server, seconds: each server's clock runs
        /// ahead or behind by a seeded amount within this.
        #[arg(long, default_value_t = 5)]
        max_skew: i64,
        /// Probability per second that a loading player leaves (their `Cancel` turns true).
        #[arg(long, default_value_t = 0.005)]
        quit_while_loading: f64,
        /// Fraction of session starts made without a `Cancel` (they time out after DataStore
        /// errors instead).
        #[arg(long, default_value_t = 0.1)]
        uncancellable: f64,
        /// Faults come and go: on for this long, then off as long (e.g. 2m); a start whose 20 s
        /// before and 60 s after fall in a healthy stretch (or in settling) is held to the
        /// hand-off bound, so a period of 82 s or less holds only starts in the last healthy
        /// stretch. Default: faults the whole run.
        #[arg(long, value_parser = parse_duration)]
        fault_period: Option<f64>,
        /// Record every engine input and output into this trace file (replay checks the
        /// outputs).
        #[arg(long)]
        trace: Option<PathBuf>,
        /// The SQLite file the run's DataStore lives in (replaced at the start of the run).
        #[arg(long, default_value = DEFAULT_DB, conflicts_with = "memory")]
        db: PathBuf,
        /// Keep the DataStore in memory instead.
        #[arg(long)]
        memory: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// Run the same seed a second time (in memory) and check that every engine input and
        /// output, the stored data (every key, value, version and time) and the summary are
        /// identical; exits 1 if they differ.
        #[arg(long)]
        check_determinism: bool,
    },
    /// Play a scenario file and print its journal (one JSON object per line).
    Scenario {
        /// The scenario file.
        file: PathBuf,
        /// Compare the journal with this one (e.g. the original's trace) instead of printing it.
        #[arg(long)]
        compare: Option<PathBuf>,
    },
    /// Replay a trace file and check the outputs are byte-identical.
    Replay {
        /// The trace file.
        file: PathBuf,
        /// Replay a file that ends before its trace does (the `.partial` file of a killed run,
        /// a trace sent to a pipe whose run was stopped) as far as it goes.
        #[arg(long)]
        prefix: bool,
    },
    /// Write every key of a database (values, user ids, metadata, times, versions) as one JSON
    /// document to standard output.
    Export {
        /// The SQLite file.
        #[arg(long, default_value = DEFAULT_DB)]
        db: PathBuf,
        /// Leave out keys whose stored data is corrupt (or in a state an import would refuse),
        /// naming each on standard error, instead of failing: the way to get the rest of a
        /// damaged database out (importing a document that holds such a key replaces it,
        /// unless even its serial is unreadable: `inspect` says so).
        #[arg(long)]
        skip_corrupt: bool,
    },
    /// Load a JSON document (an export, or the layout of shared/fixtures/original-golden.json)
    /// into a database.
    Import {
        /// The document.
        file: PathBuf,
        /// The SQLite file (created if missing).
        #[arg(long, default_value = DEFAULT_DB)]
        db: PathBuf,
    },
    /// List the keys of a store, one per line, in byte order (as `ListKeysAsync` lists them:
    /// removed keys included); a key holding a control character or a line separator, or
    /// starting with `"`, is written as a JSON string.
    Keys {
        /// Only keys that start with this.
        #[arg(long, default_value = "")]
        prefix: String,
        #[command(flatten)]
        at: StoreArgs,
    },
    /// Show a stored key: value, versions, lock holder, pending messages.
    #[command(allow_negative_numbers = true)]
    Inspect {
        /// The key.
        key: String,
        #[command(flatten)]
        at: StoreArgs,
        /// The time to measure the lock's last update against, Unix seconds. Default: now.
        /// (`simulate` runs on a virtual clock that starts on 2025-01-01, 1735689600: add the
        /// run's `virtual_seconds` for its end.)
        #[arg(long)]
        now: Option<i64>,
    },
}

/// The store a command reads (`keys`, `inspect`) and the database it is in.
#[derive(clap::Args)]
struct StoreArgs {
    /// The ProfileStore store name.
    #[arg(long, default_value = STORE)]
    store: String,
    /// The store's scope (`DataStoreService:GetDataStore(name, scope)`).
    #[arg(long, default_value = "global")]
    scope: String,
    /// The SQLite file.
    #[arg(long, default_value = DEFAULT_DB)]
    db: PathBuf,
}

/// Whether `c` ends a line beyond the control characters: U+2028 and U+2029.
fn is_line_end(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}')
}

/// Takes the lock of database `db` for the command's lifetime (held by the returned file):
/// `simulate`, which replaces the database, and `import`, which writes it, take it, so one
/// never replaces a database another is still writing (whose writes would go to a file no
/// longer there). An advisory lock on `<db>.lock`, a file beside it that stays (removing
/// it could let two commands lock two files of one name). `None` where the database's folder
/// does not exist: no command can use a database there either, and opening it says why.
fn lock_db(db: &Path) -> Result<Option<std::fs::File>, String> {
    // Refused before a lock file is made beside it.
    if db.is_dir() {
        return Err(format!("{} is a folder, not a database file", db.display()));
    }
    // Another database's lock: replaced or written, that lock would stop working.
    if db.as_os_str().as_encoded_bytes().ends_with(b".lock") {
        return Err(format!(
            "--db {} is named as another database's lock file: give the database another name",
            db.display()
        ));
    }
    let path = lock_path(db);
    let cannot = |e: &dyn std::fmt::Display| {
        format!("cannot lock {}: {e} ({})", db.display(), path.display())
    };
    let file = match std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
    {
        Ok(file) => file,
        // No folder to hold it: no command can use a database there, and opening it says why.
        Err(_)
            if db
                .parent()
                .is_some_and(|p| !p.as_os_str().is_empty() && !p.is_dir()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(cannot(&e)),
    };
    match try_lock_patiently(&file) {
        Ok(true) => Ok(Some(file)),
        Ok(false) => Err(in_use(db)),
        // A file system without locks, say: said as it is, not as another command.
        Err(e) => Err(cannot(&e)),
    }
}

/// How long a lock found taken is tried again before its database is said to be in use: a
/// command's probe ([`held_elsewhere`]) takes a free lock for an instant, which must not turn
/// another command away.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(250);

/// Takes `file`'s lock, trying again for [`LOCK_PATIENCE`] while another holds it: `Ok(false)`
/// when it is held still.
fn try_lock_patiently(file: &std::fs::File) -> std::io::Result<bool> {
    let until = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < until => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// `<db>.lock`, the file `lock_db` locks.
fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// What a command refused because another holds `db`'s lock is told.
fn in_use(db: &Path) -> String {
    format!(
        "another profilestore-sim command is using {} ({} is locked)",
        db.display(),
        lock_path(db).display()
    )
}

/// Whether another command holds `db`'s lock now (not just another probe, for an instant:
/// [`try_lock_patiently`]); the lock file is not made where there is none (no command holds
/// it then).
fn held_elsewhere(db: &Path) -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open(lock_path(db))
        .is_ok_and(|file| matches!(try_lock_patiently(&file), Ok(false)))
}

/// Opens `at`'s database for `keys` or `inspect`; where there is none, a name no call can make
/// (`check_names`) is said first.
fn open_to_look_up(at: &StoreArgs, key: Option<&str>) -> Result<SqliteStorage, String> {
    existing_db(&at.db).or_else(|e| {
        check_names(at, key)?;
        Err(e)
    })
}

/// Checks the names `keys` and `inspect` address (store, scope, and the key when there is
/// one) against Roblox's limits, as a call would, once the database showed nothing under
/// them: a name no call can make is said as such, not reported as a key or store the
/// database does not hold (a row another program wrote under such a name is still shown).
fn check_names(
    StoreArgs { store, scope, .. }: &StoreArgs,
    key: Option<&str>,
) -> Result<(), String> {
    Limits::roblox()
        .check_path(store, scope, key)
        .map_err(|e| e.to_string())
}

/// Opens the existing database `db` for reading (`export`, `keys`, `inspect`), or says there
/// is none.
fn existing_db(db: &Path) -> Result<SqliteStorage, String> {
    if !db.exists() {
        return Err(format!(
            "no database at {} (run `simulate` first or pass --db)",
            db.display()
        ));
    }
    SqliteStorage::open_existing(db).map_err(|e| format!("cannot open {}: {e}", db.display()))
}

/// Refuses a `--trace` path before a run rather than after it: a directory, an existing file
/// that is not a trace (a database, say: it would be overwritten at the end), the run's own
/// database when the run makes one (`db`, compared by its directory's real path and its
/// name, as the file the trace is written to until it is finished, `<name>.partial`, is), or
/// a trace that cannot be written: a regular file's (or a new one's) partial file that cannot
/// be made beside it, or that another run writing the same trace holds locked; anything else
/// (a device) that cannot be opened for writing. A named pipe is not opened here: that would
/// wait for its reader, which would then see the pipe close. Nothing is truncated or left
/// here (a partial file made to try is removed).
fn check_trace_path(path: &Path, db: Option<&Path>) -> Result<(), String> {
    use std::io::Read;
    let shown = path.display();
    if trace::names_a_folder(path) {
        // The run would play in full, then fail to rename its trace to a folder's name.
        return Err(format!(
            "--trace {shown} ends in a path separator: name a file"
        ));
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            return Err(format!("--trace {shown} is a directory"));
        }
        if meta.is_file() && meta.len() > 0 {
            let mut head = Vec::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(TRACE_MAGIC.len() as u64).read_to_end(&mut head))
                .map_err(|e| format!("cannot read --trace {shown}: {e}"))?;
            if head != TRACE_MAGIC {
                return Err(format!(
                    "not overwriting {shown} with the trace: it is not a trace file"
                ));
            }
        }
    }
    // Where a path leads: its directory's real path (symlinks and `..` resolved) and its name.
    let real = |p: &Path| -> Option<PathBuf> {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Some(std::fs::canonicalize(dir).ok()?.join(p.file_name()?))
    };
    if let Some(db) = db {
        let partial = trace::partial_path(path);
        // The database, its SQLite files and its lock (renamed over, the lock would be lost).
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let mut name = db.as_os_str().to_os_string();
            name.push(suffix);
            let db_file = real(Path::new(&name));
            let written = [Some(path), partial.as_deref()];
            if written
                .into_iter()
                .flatten()
                .any(|t| real(t).is_some_and(|t| Some(t) == db_file))
            {
                return Err(format!(
                    "--trace {shown} names the run's database: give the trace a file of its own"
                ));
            }
        }
    }
    if path.as_os_str().as_encoded_bytes().ends_with(b".lock") {
        // A database's lock file (empty, so not refused as a non-trace above): renamed over,
        // the lock another command holds would be lost.
        return Err(format!(
            "--trace {shown} is named like a database's lock file: give the trace another name"
        ));
    }
    let cannot = |e: std::io::Error| format!("cannot write trace {shown}: {e}");
    if trace::partial_path(path).is_some() {
        return trace::try_partial(path).map_err(cannot);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo()) {
            return Ok(());
        }
    }
    let device = std::fs::OpenOptions::new().write(true).open(path);
    device.map(drop).map_err(cannot)
}

/// `println!` through [`emit`]: every line this program prints goes that way.
macro_rules! out {
    ($($arg:tt)*) => {
        emit(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// Set when standard output was closed (`| head`): nothing more is written.
static OUTPUT_CLOSED: AtomicBool = AtomicBool::new(false);
/// Set when writing standard output failed otherwise (a full disk): the program exits 2.
static OUTPUT_FAILED: AtomicBool = AtomicBool::new(false);

/// Writes to standard output. A closed pipe (`| head`) ends the output quietly instead of
/// panicking; any other failure is said once, and makes the exit code 2.
fn emit(text: &str) {
    use std::io::Write;
    if OUTPUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            OUTPUT_CLOSED.store(true, Ordering::Relaxed);
        }
        Err(e) => {
            OUTPUT_CLOSED.store(true, Ordering::Relaxed);
            if !OUTPUT_FAILED.swap(true, Ordering::Relaxed) {
                note!("profilestore-sim: cannot write output: {e}");
            }
        }
    }
}

/// Seconds of a duration flag: a number of seconds (`90`, `2.5`), or numbers each with a unit,
/// summed (`90s`, `30m`, `1h30m`, `1.5h`; units `ms`, `s`, `m`, `h`, `d`, `w` and their long
/// names). Negative, infinite and unreadable durations are refused, saying why.
fn parse_duration(text: &str) -> Result<f64, String> {
    let invalid = |why: &str| format!("invalid duration {text:?}: {why}");
    let finite = |seconds: f64| {
        if !seconds.is_finite() {
            Err(invalid("too long"))
        } else if seconds < 0.0 {
            Err(invalid("must be 0 or more"))
        } else {
            Ok(seconds)
        }
    };
    if let Ok(seconds) = text.trim().parse::<f64>() {
        return if seconds.is_nan() {
            Err(invalid("not a number"))
        } else {
            finite(seconds)
        };
    }
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid("empty (use e.g. 90s, 30m, 2h)"));
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let after = after.trim_start();
        let letters = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(letters);
        let Ok(n) = number.parse::<f64>() else {
            return Err(invalid(
                "expected a number and a unit (use e.g. 90s, 30m, 2h)",
            ));
        };
        let per = match unit {
            "ms" | "msec" | "millis" => 0.001,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86_400.0,
            "w" | "week" | "weeks" => 604_800.0,
            "" => {
                return Err(invalid(&format!(
                    "{number} has no unit (use e.g. 90s, 30m, 2h)"
                )));
            }
            other => {
                return Err(invalid(&format!(
                    "unknown unit {other:?} (use ms, s, m, h, d or w)"
                )));
            }
        };
        total = finite(total + n * per)?;
        rest = after.trim_start();
    }
    Ok(total)
}

/// A [`FleetConfig::check`] message, which names the configuration's field, worded with the
/// command-line flag that sets it (`max_skew must be ...` → `--max-skew must be ...`).
fn as_flag(message: &str) -> String {
    const FIELDS: [&str; 12] = [
        "servers",
        "players",
        "places",
        "max_skew",
        "duration",
        "faults",
        "stay",
        "fault_period",
        "quit_while_loading",
        "uncancellable",
        "crash_rate",
        "shutdown_rate",
    ];
    if let Some(rest) = message.strip_prefix("servers and spare servers together") {
        return format!("--servers and --spare-servers together{rest}");
    }
    if let Some(rest) = message.strip_prefix("crash and shutdown rates together") {
        return format!("--crash-rate and --shutdown-rate together{rest}");
    }
    for field in FIELDS {
        if let Some(rest) = message.strip_prefix(&format!("{field} must")) {
            return format!("--{} must{rest}", field.replace('_', "-"));
        }
    }
    message.to_string()
}

/// A bar of `duration` virtual seconds saying `message`, drawn on standard error (hidden for
/// `--json`, and by indicatif when standard error is not a terminal).
fn progress_bar(json: bool, duration: f64, message: &'static str) -> ProgressBar {
    let bar = if json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(duration.ceil() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} virtual {pos}/{len} s [{bar:40}] {elapsed_precise} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

/// Set by the first Ctrl-C (or SIGTERM, SIGHUP) during `simulate`: the play stops at its next
/// virtual second and the command ends with what it has finished, removing the trace it was
/// writing and the determinism check's folder; a second signal quits at once (leaving them).
/// A signal while a run settles, or while runs are compared or printed, stops nothing of
/// that; the determinism check's second run, still to play, then stops at its first second.
static STOPPED: AtomicBool = AtomicBool::new(false);

/// Set when [`STOPPED`] cut the command short: it exits [`STOPPED_STATUS`].
static CUT_SHORT: AtomicBool = AtomicBool::new(false);

/// Set when the (first) run played to its end: a signal after that does not stop it (its
/// summary is printed), only a determinism check's second run.
static PLAYED: AtomicBool = AtomicBool::new(false);

/// The exit status of a command a signal stopped (128 + SIGINT, as a shell reports Ctrl-C).
const STOPPED_STATUS: u8 = 130;

/// Makes a signal set [`STOPPED`] rather than kill the process, until a second one comes.
fn stop_on_signal() -> Result<(), String> {
    ctrlc::set_handler(|| {
        if STOPPED.swap(true, Ordering::SeqCst) {
            std::process::exit(i32::from(STOPPED_STATUS));
        }
    })
    .map_err(|e| format!("cannot handle Ctrl-C: {e}"))
}

/// A fleet's progress: moves `bar`, and stops the play once a signal came ([`STOPPED`]) or
/// its trace failed (nothing the run does after could be replayed or compared).
fn until_stopped(bar: &ProgressBar) -> impl FnMut(&Fleet, f64) -> ControlFlow<()> + '_ {
    |fleet, t| {
        bar.set_position(t as u64);
        if STOPPED.load(Ordering::SeqCst) || fleet.world.trace_error().is_some() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

fn main() -> ExitCode {
    let code = match run(Cli::parse().command) {
        Ok(_) if OUTPUT_FAILED.load(Ordering::Relaxed) => ExitCode::from(2),
        Ok(code) => code,
        Err(message) => {
            note!("profilestore-sim: {message}");
            ExitCode::from(2)
        }
    };
    if CUT_SHORT.load(Ordering::SeqCst) {
        return ExitCode::from(STOPPED_STATUS);
    }
    if STOPPED.load(Ordering::SeqCst) && PLAYED.load(Ordering::SeqCst) {
        note!("profilestore-sim: note: the signal came after the play, which was finished");
    }
    code
}

fn run(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Simulate {
            servers,
            players,
            duration,
            faults,
            seed,
            stay,
            crash_rate,
            shutdown_rate,
            spare_servers,
            places,
            max_skew,
            quit_while_loading,
            uncancellable,
            fault_period,
            trace,
            db,
            memory,
            json,
            check_determinism,
        } => {
            let mut config = FleetConfig::new(seed, servers, players, duration, faults);
            config.stay = stay;
            config.crash_rate = crash_rate;
            config.shutdown_rate = shutdown_rate;
            config.spare_servers = spare_servers;
            config.places = places;
            config.max_skew = max_skew;
            config.quit_while_loading = quit_while_loading;
            config.uncancellable = uncancellable;
            config.fault_period = fault_period;
            config.record = trace.is_some() || check_determinism;
            // Checked before the database is replaced.
            config
                .check()
                .map_err(|e| format!("invalid simulation: {}", as_flag(&e)))?;
            if fault_period.is_some() && faults == 0.0 {
                note!("profilestore-sim: note: --fault-period does nothing without --faults");
            }
            if duration == 0.0 {
                // Players first act in their first ten seconds: none of them plays.
                note!("profilestore-sim: note: --duration 0 plays nothing (the run only settles)");
            }
            if servers == 1 && (crash_rate > 0.0 || shutdown_rate > 0.0) {
                // A crash or shutdown never takes the last server taking players.
                note!(
                    "profilestore-sim: note: --crash-rate and --shutdown-rate do nothing with \
                     one server (the last one taking players is never stopped)"
                );
            } else if spare_servers > 0 && crash_rate == 0.0 && shutdown_rate == 0.0 {
                note!(
                    "profilestore-sim: note: --spare-servers does nothing without --crash-rate \
                     or --shutdown-rate"
                );
            }
            // From here on a signal stops the run where it is, cleaning up what it made.
            stop_on_signal()?;
            // Only a profilestore database, an empty file or nothing is replaced: refused
            // before the trace file is made, so a refused run leaves nothing behind.
            if !memory {
                if db.is_dir() {
                    return Err(format!("{} is a folder, not a database file", db.display()));
                }
                // Removing a file ignores its mode: a write-protected database is kept.
                if std::fs::metadata(&db).is_ok_and(|m| m.permissions().readonly()) {
                    return Err(format!(
                        "not replacing {}: it is write-protected",
                        db.display()
                    ));
                }
                // An empty file, or an empty database (one a run was killed in before it made
                // its tables): nothing in it is lost.
                let empty = std::fs::metadata(&db).is_ok_and(|m| m.is_file() && m.len() == 0)
                    || SqliteStorage::holds_nothing(&db).unwrap_or(false);
                if db.exists()
                    && !empty
                    && let Err(e) = SqliteStorage::open_existing(&db)
                {
                    // A run that has made its database but not yet its tables holds it: said
                    // as held, not as a file that is no profilestore database.
                    if held_elsewhere(&db) {
                        return Err(in_use(&db));
                    }
                    return Err(format!("not replacing {}: {e}", db.display()));
                }
            }
            if let Some(path) = &trace {
                check_trace_path(path, (!memory).then_some(db.as_path()))?;
            }
            // Held until the run ends; taken once the run is known to go ahead (a refused run
            // leaves nothing behind), before anything is replaced.
            let _db_lock = if memory { None } else { lock_db(&db)? };
            // The determinism check compares the second run with the first's trace file as the
            // second run goes: the `--trace` file when that is a regular file, else one in a
            // temporary folder of the check's own (made here, before anything is replaced;
            // removed when the command ends).
            let compare_dir = match &trace {
                Some(path) if trace::partial_path(path).is_some() => None,
                _ if check_determinism => {
                    let tmp = std::env::temp_dir();
                    let folder = CheckFolder::new_in(&tmp).map_err(|e| {
                        format!("cannot make a temporary folder for the determinism check: {e}")
                    })?;
                    remove_abandoned_checks(&tmp, &folder);
                    Some(folder)
                }
                _ => None,
            };
            if STOPPED.load(Ordering::SeqCst) {
                // Before anything is replaced or written.
                CUT_SHORT.store(true, Ordering::SeqCst);
                drop(compare_dir);
                note!("profilestore-sim: stopped by a signal before the run: nothing changed");
                return Ok(ExitCode::from(STOPPED_STATUS));
            }
            let storage: Box<dyn Storage> = if memory {
                Box::new(MemoryStorage::new())
            } else {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = db.clone().into_os_string();
                    p.push(suffix);
                    let p = PathBuf::from(p);
                    match std::fs::remove_file(&p) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(format!("cannot replace {}: {e}", p.display()));
                        }
                        _ => {}
                    }
                }
                Box::new(
                    SqliteStorage::open(&db)
                        .map_err(|e| format!("cannot open {}: {e}", db.display()))?,
                )
            };
            let mut fleet = Fleet::new(config.clone(), storage)?;
            // The log does not grow with the run: excerpts of violations come from a second run.
            fleet.keep_log = false;
            // Nor does a trace: it is written as the run goes.
            let trace_file = match &compare_dir {
                Some(dir) => Some(dir.path().join("first.trace")),
                None => trace.clone(),
            };
            if let Some(path) = &trace_file {
                stream_trace(&mut fleet, path, false)?;
            }
            let bar = progress_bar(json, duration, "");
            let started = Instant::now();
            let played = fleet.run_until(until_stopped(&bar));
            bar.finish_and_clear();
            if let Played::Stopped { at } = played {
                let failed = fleet
                    .world
                    .trace_error()
                    .map(|e| trace_failure(e, &trace, &compare_dir, check_determinism));
                // A trace written in place (a pipe, a symlink) keeps what went out.
                let in_place = compare_dir.is_none()
                    && trace
                        .as_ref()
                        .is_some_and(|p| trace::partial_path(p).is_none());
                // Dropping the fleet removes the partial trace; the check's folder goes too.
                drop(fleet);
                drop(compare_dir);
                if !STOPPED.load(Ordering::SeqCst) {
                    let failed = failed.unwrap_or_default();
                    return Err(format!(
                        "{failed}: the run was stopped at virtual second {at} of {duration} and \
                         nothing was checked"
                    ));
                }
                // A signal (the trace may have failed with it: Ctrl-C reaches a reader too).
                CUT_SHORT.store(true, Ordering::SeqCst);
                let mut left = String::new();
                match (&trace, failed) {
                    (_, Some(failed)) => left += &format!("; {failed}"),
                    (Some(path), None) if in_place => {
                        left += &format!("; the trace sent to {} is cut short", path.display());
                    }
                    (Some(path), None) => {
                        left += &format!("; no trace was written to {}", path.display());
                    }
                    (None, None) => {}
                }
                if !memory {
                    left += &format!(
                        "; {} holds the store as the stopped servers left it (sessions locked, \
                         as after a crash)",
                        db.display()
                    );
                }
                note!(
                    "profilestore-sim: stopped by a signal at virtual second {at} of {duration}: \
                     nothing was checked{left}"
                );
                return Ok(ExitCode::from(STOPPED_STATUS));
            }
            PLAYED.store(true, Ordering::SeqCst);
            let wall = started.elapsed().as_secs_f64();
            let violations = invariants::check(&mut fleet);
            let mut summary = invariants::summary(&fleet, &violations);
            let requests = fleet.world.request_total();
            summary["wall_seconds"] = profilestore_core::json!(wall);
            summary["datastore_requests_per_wall_second"] =
                profilestore_core::json!(requests as f64 / wall.max(1e-9));
            summary["virtual_to_wall"] = profilestore_core::json!(fleet.world.now / wall.max(1e-9));
            summary["store"] = profilestore_core::json!(if memory {
                "memory".to_string()
            } else {
                db.display().to_string()
            });
            // Where its DataStore lived: the default file needs no flag.
            let backend = if memory {
                Some("--memory".to_string())
            } else if db != Path::new(DEFAULT_DB) {
                // `--db=`: a name starting with `-` would read as a flag after a space.
                Some(format!("--db={}", shell_word(&db.display().to_string())))
            } else {
                None
            };
            if let Some(backend) = backend {
                let rerun = format!(
                    "{} {backend}",
                    summary["rerun"].as_str().unwrap_or_default()
                );
                summary["rerun"] = profilestore_core::json!(rerun);
            }
            let mut reproduced = true;
            // Failures after the run are reported after its summary, which they do not void.
            let mut failures = Vec::new();
            // A backend that failed (a full disk, a database another process locked) reached
            // the engines as DataStore errors: the run is not what its seed plays.
            if let (n @ 1.., first) = fleet.world.datastore.storage_failures() {
                failures.push(format!(
                    "the store failed {n} time(s) during the run, not by a simulated fault (first: \
                     {}): the run is not what its seed plays",
                    first.unwrap_or_default()
                ));
            }
            let written = fleet.world.finish_trace();
            if let Some(Err(e)) = &written {
                failures.push(trace_failure(e, &trace, &compare_dir, check_determinism));
            }
            if check_determinism {
                let second = |path: &Path| -> Result<(Fleet, bool), String> {
                    let mut again = Fleet::new(config, Box::new(MemoryStorage::new()))
                        .map_err(|e| format!("determinism check failed: {e}"))?;
                    // Its log is let go as read too: the check compares what is recorded.
                    again.keep_log = false;
                    stream_trace(&mut again, path, true)
                        .map_err(|e| format!("determinism check failed: {e}"))?;
                    // As long as the run itself: show it going.
                    let bar = progress_bar(json, duration, "determinism check: second run");
                    let played = again.run_until(until_stopped(&bar));
                    bar.finish_and_clear();
                    if let Played::Stopped { at } = played
                        && STOPPED.load(Ordering::SeqCst)
                    {
                        CUT_SHORT.store(true, Ordering::SeqCst);
                        return Err(format!(
                            "determinism check not finished: stopped by a signal at virtual \
                             second {at} of {duration} of the second run"
                        ));
                    }
                    if let Some(e) = again.world.trace_error() {
                        return Err(format!("determinism check failed: {e}"));
                    }
                    match again.world.finish_trace() {
                        Some(Ok(trace::TraceEnd::Compared { same })) => Ok((again, same)),
                        Some(Err(e)) => Err(format!("determinism check failed: {e}")),
                        _ => Err("determinism check failed: the second run compared no trace"
                            .to_string()),
                    }
                };
                let compared = match (&trace_file, &written) {
                    (Some(path), Some(Ok(_))) => Some(second(path)),
                    // Said above.
                    _ => None,
                };
                match compared {
                    None => {}
                    Some(Err(e)) => failures.push(e),
                    Some(Ok((mut again, same_trace))) => {
                        match differences(&mut fleet, &violations, &mut again, same_trace) {
                            Ok(differ) => {
                                reproduced = differ.is_empty();
                                summary["determinism"] = profilestore_core::json!(if reproduced {
                                    "identical"
                                } else {
                                    "DIFFERENT"
                                });
                                if !reproduced {
                                    note!(
                                        "profilestore-sim: seed {seed} did not reproduce: the two runs' {} differ",
                                        differ.join(", ")
                                    );
                                }
                            }
                            Err(e) => failures.push(format!("determinism check failed: {e}")),
                        }
                        std::mem::forget(again);
                    }
                }
            }
            // A trace the check wrote in its own folder is the `--trace` file's (a pipe, say).
            let mut trace_written = matches!(written, Some(Ok(_)));
            if let (Some(dir), Some(path), true) = (&compare_dir, &trace, trace_written) {
                let copy = dir.path().join("first.trace");
                let copied = match std::fs::File::open(&copy) {
                    Err(e) => Err(format!("cannot read {}: {e}", copy.display())),
                    Ok(mut from) => std::fs::File::create(path)
                        .and_then(|mut to| std::io::copy(&mut from, &mut to))
                        .map_err(|e| format!("cannot write trace {}: {e}", path.display())),
                };
                if let Err(e) = copied {
                    failures.push(e);
                    trace_written = false;
                }
            }
            if let (Some(path), true) = (&trace, trace_written) {
                summary["trace"] = profilestore_core::json!(path.display().to_string());
            }
            // The determinism check's own folder goes.
            drop(compare_dir);
            if json {
                summary["violation_details"] =
                    serde_json::to_value(&violations).unwrap_or_default().into();
                out!(
                    "{}",
                    serde_json::to_string_pretty(&summary).unwrap_or_default()
                );
            } else {
                print_summary(&summary);
                for v in &violations {
                    out!("\nseed {seed}: {v}");
                }
            }
            if !failures.is_empty() {
                return Err(failures.join("\n"));
            }
            Ok(if violations.is_empty() && reproduced {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Scenario { file, compare } => {
            let s = scenario::load(&file).map_err(|e| e.to_string())?;
            let ours = scenario::run(&s).map_err(|e| e.to_string())?;
            match compare {
                None => {
                    emit(&journal::render(&ours));
                    Ok(ExitCode::SUCCESS)
                }
                Some(path) => {
                    let text = read_text(&path, MAX_STREAMED)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                    let theirs =
                        journal::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                    // A journal's `end` line names its case: another scenario's journal
                    // would differ everywhere.
                    let case = theirs
                        .iter()
                        .rev()
                        .find(|l| l.get("type").and_then(|t| t.as_str()) == Some("end"))
                        .and_then(|l| l.get("case"))
                        .and_then(|c| c.as_str());
                    if let Some(case) = case
                        && case != s.name
                    {
                        return Err(format!(
                            "{} is the journal of case {case:?}, not of scenario {:?}",
                            path.display(),
                            s.name
                        ));
                    }
                    // A fixture's differences from a defect we fixed on purpose are named, and
                    // do not fail the comparison if ours is what the deviation says.
                    let known = journal::known_deviation(&s.name);
                    let e = journal::explain(&theirs, &ours, 1.0 / 60.0 + 1e-6, known)?;
                    for d in &e.unexplained {
                        out!("{d}");
                    }
                    for (deviation, d) in &e.named {
                        out!("deviation {deviation} (docs/DEVIATIONS.md): {d}");
                    }
                    for d in &e.departures {
                        out!(
                            "not what the known deviation gives (its journal is the expected side): {d}"
                        );
                    }
                    for stale in &e.stale {
                        out!("known deviation {stale} no longer shows in this journal");
                    }
                    out!(
                        "{}: {} difference(s) from the original, {} from known deviations, {} unexplained, {} from what a deviation gives",
                        s.name,
                        e.named.len() + e.unexplained.len(),
                        e.named.len(),
                        e.unexplained.len(),
                        e.departures.len()
                    );
                    Ok(if e.conforms() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    })
                }
            }
        }
        Command::Replay { file, prefix } => {
            // Read as the replay goes: its memory does not grow with the run.
            let t = trace::TraceFile::open(&file).map_err(|e| e.to_string())?;
            let recorded = t.fleet().cloned();
            // A damaged file is an error, however far the replay read, and prints nothing else
            // (a file cut short too, unless `--prefix`).
            let (r, cut) = if prefix {
                t.replay_prefix()
            } else {
                t.replay().map(|r| (r, None))
            }
            .map_err(|e| e.to_string())?;
            // What was recorded, so a run can also be played again with its invariants checked.
            if let Some(config) = &recorded {
                // A trace does not say where the run's DataStore lived (it plays the same
                // either way): without `--memory` or `--db` the command replaces the default file.
                out!(
                    "recorded run: profilestore-sim simulate {} (plus --memory or --db FILE for \
                     its DataStore; the default replaces ./{DEFAULT_DB})",
                    config.simulate_flags()
                );
            }
            out!(
                "replayed {} inputs, {} outputs{}: {}",
                r.inputs,
                r.outputs,
                match cut {
                    Some(0) => " of a trace cut short between frames".to_string(),
                    Some(unread) => format!(
                        " of a trace cut short ({unread} bytes of an incomplete frame not read)"
                    ),
                    None => String::new(),
                },
                if r.identical() {
                    let far = if cut.is_some() {
                        " as far as it goes"
                    } else {
                        ""
                    };
                    format!("byte-identical{far}")
                } else {
                    let at = |i: Option<usize>| i.map_or("none".to_string(), |i| i.to_string());
                    format!(
                        "DIFFERENT (first different output: {}, first different returned \
                         value: input {}, first different wake-up: after input {}, {} diverged \
                         answers)",
                        at(r.first_difference),
                        at(r.first_result_difference),
                        at(r.first_deadline_difference),
                        r.diverged_answers
                    )
                }
            );
            Ok(if r.identical() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Export { db, skip_corrupt } => {
            let mut storage = existing_db(&db)?;
            let text = if skip_corrupt {
                let (document, skipped) =
                    export::export_readable(&mut storage).map_err(|e| e.to_string())?;
                for e in &skipped {
                    note!("profilestore-sim: left out: {e}");
                }
                if !skipped.is_empty() {
                    note!(
                        "profilestore-sim: {} key(s) left out; importing a document that holds \
                         one replaces it, unless even its serial is unreadable (see inspect)",
                        skipped.len()
                    );
                }
                export::document_text(&document)
            } else {
                export::export_string(&mut storage)
            };
            let text = text.map_err(|e| match e {
                // Named only where it helps: the key's own data is corrupt, not the listing.
                export::ExportError::Storage(StorageError::Corrupt { .. })
                    if !skip_corrupt && storage.paths().is_ok() =>
                {
                    format!("{e} (--skip-corrupt exports every other key)")
                }
                e => e.to_string(),
            })?;
            emit(&format!("{text}\n"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { file, db } => {
            let text = read_text(&file, MAX_STREAMED)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            // Keys without times in the document get this one: 2025-01-01T00:00:00Z, the
            // fixtures' epoch.
            let epoch_ms = 1_735_689_600_000;
            // Checked in memory first: a document that does not import leaves no database
            // behind (opening one creates it).
            export::import(&mut MemoryStorage::new(), &text, epoch_ms)
                .map_err(|e| format!("cannot import {}: {e}", file.display()))?;
            let _db_lock = lock_db(&db)?;
            let mut storage = SqliteStorage::open(&db)
                .map_err(|e| format!("cannot open {}: {e}", db.display()))?;
            let report =
                export::import(&mut storage, &text, epoch_ms).map_err(|e| e.to_string())?;
            let mut notes = String::new();
            if !report.skipped.is_empty() {
                notes += &format!(", skipped {} missing", report.skipped.len());
            }
            if !report.repaired.is_empty() {
                // Stored data that could not be read, replaced by the document's.
                let keys: Vec<String> = report.repaired.iter().map(|p| p.to_string()).collect();
                notes += &format!(
                    ", replacing {} corrupt key(s): {}",
                    keys.len(),
                    keys.join(", ")
                );
            }
            if !report.renumbered.is_empty() {
                // Imported over other writes of those keys: new writes, with new version ids.
                notes += &format!(
                    ", {} over another write of the key (given new versions)",
                    report.renumbered.len()
                );
            }
            out!(
                "imported {} key(s) into {}{notes}",
                report.imported.len(),
                db.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys { prefix, at } => {
            let mut storage = open_to_look_up(&at, None)?;
            let names = inspect::key_names(&mut storage, &at.store, &at.scope, &prefix)
                .map_err(|e| e.to_string())?;
            if names.is_empty() {
                check_names(&at, None)?;
            }
            let StoreArgs { store, scope, db } = at;
            if names.is_empty() {
                // A misspelt store is the likely mistake: say what the database holds.
                let held = inspect::stores_held(&mut storage).map_err(|e| e.to_string())?;
                let scoped = if scope == "global" {
                    String::new()
                } else {
                    format!(" scope {scope:?}")
                };
                let prefixed = if prefix.is_empty() {
                    String::new()
                } else {
                    format!(" starting {prefix:?}")
                };
                note!(
                    "profilestore-sim: no key{prefixed} in store {store:?}{scoped} of {}; it \
                     holds {held}",
                    db.display()
                );
            }
            let mut text = String::new();
            for name in names {
                // One line a key, told apart from a key written as JSON.
                if name.starts_with('"') || name.chars().any(|c| c.is_control() || is_line_end(c)) {
                    text += &serde_json::to_string(&name).unwrap_or_default();
                } else {
                    text += &name;
                }
                text.push('\n');
            }
            emit(&text);
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { key, at, now } => {
            let mut storage = open_to_look_up(&at, Some(&key))?;
            let now = now.or_else(|| {
                let since_epoch = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()?;
                i64::try_from(since_epoch.as_secs()).ok()
            });
            let v = match inspect::inspect(&mut storage, &at.store, &at.scope, &key, now) {
                Ok(v) => v,
                // An import numbers its write after the key's serial: without one it cannot.
                Err(e @ StorageError::Corrupt { .. }) => {
                    let path = StoreName::scoped(&at.store, &at.scope).path(&key);
                    return Err(match storage.serial(&path) {
                        Ok(_) => {
                            format!("{e} (importing a document that holds the key replaces it)")
                        }
                        Err(_) => format!(
                            "{e} (its serial cannot be read either, so an import cannot replace \
                             it: mend or delete its row of the keys table)"
                        ),
                    });
                }
                Err(e) => return Err(e.to_string()),
            };
            if v["exists"] == false {
                check_names(&at, Some(&key))?;
            }
            let StoreArgs { store, scope, db } = at;
            // A misspelt store is the likely mistake: say what the database holds.
            if let Some(held) = inspect::stores_held_if_never_written(&mut storage, &v)
                .map_err(|e| e.to_string())?
            {
                let scoped = if scope == "global" {
                    String::new()
                } else {
                    format!(" scope {scope:?}")
                };
                note!(
                    "profilestore-sim: no key {key:?} in store {store:?}{scoped} of {}; it holds {held}",
                    db.display()
                );
            }
            emit(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Removes the determinism checks' folders that killed commands left in `tmp` beside `ours`
/// ([`check_folder::remove_abandoned`]), saying so.
fn remove_abandoned_checks(tmp: &Path, ours: &CheckFolder) {
    let removed = check_folder::remove_abandoned(tmp, ours);
    if let n @ 1.. = removed.folders.len() {
        note!(
            "profilestore-sim: note: removed {n} folder(s) of determinism checks whose commands \
             were killed ({:.1} MB) from {}",
            removed.bytes as f64 / 1e6,
            tmp.display()
        );
    }
}

/// A failed trace of the run, said once: as the determinism check's failure when the check
/// needed it, naming the `--trace` file too when the check wrote the trace in its own folder
/// (`compare_dir`).
fn trace_failure(
    e: &trace::TraceError,
    trace: &Option<PathBuf>,
    compare_dir: &Option<CheckFolder>,
    check_determinism: bool,
) -> String {
    match (trace, compare_dir) {
        (Some(path), Some(_)) => format!(
            "determinism check failed: {e} (so {} was not written either)",
            path.display()
        ),
        _ if check_determinism => format!("determinism check failed: {e}"),
        _ => e.to_string(),
    }
}

/// Sends `fleet`'s trace to the file at `path` as it runs, or, `compare`, compares it with
/// that file as it runs.
fn stream_trace(fleet: &mut Fleet, path: &Path, compare: bool) -> Result<(), String> {
    let (world, config) = (&fleet.world.config, Some(&fleet.config));
    let writer = if compare {
        trace::TraceWriter::compare_with(path, world, config)
    } else {
        trace::TraceWriter::create(path, world, config)
    };
    let writer = writer.map_err(|e| e.to_string())?;
    fleet.world.stream_trace(writer).map_err(|e| e.to_string())
}

/// What differs between a run (`first`, checked: `violations`) and the same seed run again
/// (`again`): the engines' inputs and outputs (`same_trace`: the second run's trace, compared
/// byte for byte with the first's as it ran), what the DataStore holds at the end (every key,
/// value, version and time, as exported), the summary (every count and invariant result) and
/// the violations (invariant, key and detail of each, in order). Empty when the two agree in
/// all four.
fn differences(
    first: &mut Fleet,
    violations: &[invariants::Violation],
    again: &mut Fleet,
    same_trace: bool,
) -> Result<Vec<&'static str>, String> {
    let mut differ = Vec::new();
    if !same_trace {
        differ.push("engine inputs and outputs");
    }
    let stored = |fleet: &mut Fleet| {
        export::export_string(fleet.world.datastore.storage_mut()).map_err(|e| e.to_string())
    };
    if stored(first)? != stored(again)? {
        differ.push("stored data");
    }
    let again_violations = invariants::check(again);
    if invariants::summary(first, violations) != invariants::summary(again, &again_violations) {
        differ.push("summaries");
    }
    let named = |v: &[invariants::Violation]| {
        v.iter()
            .map(|v| (v.invariant, v.key.clone(), v.detail.clone()))
            .collect::<Vec<_>>()
    };
    if named(violations) != named(&again_violations) {
        differ.push("violations");
    }
    Ok(differ)
}

fn print_summary(s: &profilestore_core::value::Value) {
    let row = |name: &str, value: String| out!("  {name:<34} {value}");
    out!(
        "profilestore-sim: seed {} — {} servers, {} players, {:.0} virtual s in {:.2} wall s ({:.0}× real time)",
        s["seed"],
        s["servers"],
        s["players"],
        s["virtual_seconds"].as_f64().unwrap_or(0.0),
        s["wall_seconds"].as_f64().unwrap_or(0.0),
        s["virtual_to_wall"].as_f64().unwrap_or(0.0)
    );
    row("sessions started", s["sessions"].to_string());
    row(
        "healthy starts held to the bound",
        s["healthy_starts_checked"].to_string(),
    );
    let h = &s["handoffs"];
    row(
        "hand-offs (p50 / p90 / max s)",
        format!(
            "{} ({:.2} / {:.2} / {:.2})",
            h["count"],
            h["p50_s"].as_f64().unwrap_or(0.0),
            h["p90_s"].as_f64().unwrap_or(0.0),
            h["max_s"].as_f64().unwrap_or(0.0)
        ),
    );
    row("failed starts by reason", s["start_failures"].to_string());
    row("DataStore requests", s["datastore_requests"].to_string());
    row(
        "DataStore requests per wall s",
        format!(
            "{:.0}",
            s["datastore_requests_per_wall_second"]
                .as_f64()
                .unwrap_or(0.0)
        ),
    );
    row("committed writes", s["committed_writes"].to_string());
    row(
        "throttled / refused requests",
        format!("{} / {}", s["throttled_requests"], s["refused_requests"]),
    );
    row(
        "holds for key throughput",
        s["key_throttle_holds"].to_string(),
    );
    row("errors (OnError)", s["errors"].to_string());
    row("critical-state toggles", s["critical_toggles"].to_string());
    row(
        "trades / torn by death / by steal",
        format!(
            "{} / {} / {}",
            s["trades"], s["torn_trades_by_server_death"], s["torn_trades_by_stolen_session"]
        ),
    );
    row("gifts sent", s["gifts"].to_string());
    let h = &s["message_handlers"];
    row(
        "gifts handled now / yield / later",
        format!(
            "{} / {} ({} outlived) / {}",
            h["at_once"], h["after_yield"], h["yield_outlived"], h["later"]
        ),
    );
    row(
        "refused subscribes / limit drops",
        format!(
            "{} / {}",
            s["subscribes_refused"], s["messages_over_receive_limit"]
        ),
    );
    row(
        "shutdowns / crashes / replaced",
        format!(
            "{} / {} / {} (of {} spare servers)",
            s["shutdowns"], s["crashes"], s["replacements"], s["spare_servers"]
        ),
    );
    row("store", s["store"].as_str().unwrap_or_default().to_string());
    if let Some(path) = s.get("trace").and_then(|t| t.as_str()) {
        row("trace written to", path.to_string());
    }
    if let Some(d) = s.get("determinism") {
        row(
            "same seed twice",
            d.as_str().unwrap_or_default().to_string(),
        );
    }
    let v = s["violations"].as_u64().unwrap_or(0);
    row(
        "invariants",
        if v == 0 {
            "all hold".into()
        } else {
            format!("{v} VIOLATION(S)")
        },
    );
    // Last, on a line of its own: the command that plays this run again.
    out!(
        "  the same run: {}",
        s["rerun"].as_str().unwrap_or_default()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock another holds for an instant (a command's probe) is taken once let go; one held
    /// past [`LOCK_PATIENCE`] is said to be held (it used to be said held at once, so a
    /// probe could turn a command away).
    #[test]
    fn a_lock_held_for_an_instant_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let open = || {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .unwrap()
        };
        let (probe, file) = (open(), open());
        probe.lock().unwrap();
        let let_go = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(probe);
        });
        assert!(try_lock_patiently(&file).unwrap());
        let_go.join().unwrap();
        let other = open();
        let started = std::time::Instant::now();
        assert!(!try_lock_patiently(&other).unwrap());
        assert!(started.elapsed() >= LOCK_PATIENCE);
    }

    /// Durations read as seconds or as numbers with units, summed; anything else is refused,
    /// saying why (a sum of seconds and a full second of milliseconds panicked in the parser
    /// used before).
    #[test]
    fn durations_read_as_seconds_or_with_units() {
        for (text, seconds) in [
            ("90", 90.0),
            ("2.5", 2.5),
            ("0", 0.0),
            ("90s", 90.0),
            ("30m", 1800.0),
            ("2h", 7200.0),
            ("1h30m", 5400.0),
            ("1h 30m", 5400.0),
            ("1.5m", 90.0),
            ("500ms", 0.5),
            ("1d", 86_400.0),
            ("1w", 604_800.0),
            ("10 minutes", 600.0),
        ] {
            assert_eq!(parse_duration(text), Ok(seconds), "{text}");
        }
        for (text, why) in [
            ("-1", "must be 0 or more"),
            ("inf", "too long"),
            ("NaN", "not a number"),
            ("1e309", "too long"),
            ("", "empty (use e.g. 90s, 30m, 2h)"),
            (
                "soon",
                "expected a number and a unit (use e.g. 90s, 30m, 2h)",
            ),
            (
                "-1m",
                "expected a number and a unit (use e.g. 90s, 30m, 2h)",
            ),
            (
                "1..5m",
                "expected a number and a unit (use e.g. 90s, 30m, 2h)",
            ),
            ("1h30", "30 has no unit (use e.g. 90s, 30m, 2h)"),
            ("3yr", "unknown unit \"yr\" (use ms, s, m, h, d or w)"),
            ("18446744073709551615s1000ms", ""),
        ] {
            let got = parse_duration(text);
            if why.is_empty() {
                assert!(got.is_ok(), "{text}: {got:?}");
            } else {
                assert_eq!(got, Err(format!("invalid duration {text:?}: {why}")));
            }
        }
        let weeks = format!("{}w", "9".repeat(400));
        assert_eq!(
            parse_duration(&weeks),
            Err(format!("invalid duration {weeks:?}: too long"))
        );
    }

    /// A recorded 2-server fleet of `seed` (six players, one virtual minute, 10% faults), run.
    fn played(seed: u64) -> Fleet {
        let mut config = FleetConfig::new(seed, 2, 6, 60.0, 0.1);
        config.record = true;
        let mut fleet = Fleet::new(config, Box::new(MemoryStorage::new())).unwrap();
        fleet.keep_log = false;
        fleet.run(|_| {});
        fleet
    }

    /// The determinism check finds what differs: nothing between two runs of one seed; the
    /// engines, the stored data and the summary between two seeds (both runs clean, so their
    /// violations agree); the stored data, the summary it feeds and the violations it causes
    /// when a key was changed after the run. (The
    /// traces are compared here in memory, with `trace::same_run`; the command compares the
    /// second run's with the first's file as it goes.)
    #[test]
    fn differences_name_what_differs() {
        let mut first = played(3);
        let violations = invariants::check(&mut first);
        assert_eq!(violations, vec![]);
        let mut compared = |again: &mut Fleet| {
            let same = trace::same_run(&first.world, &again.world).unwrap();
            differences(&mut first, &violations, again, same)
        };
        assert_eq!(compared(&mut played(3)), Ok(vec![]));
        assert_eq!(
            compared(&mut played(4)),
            Ok(vec![
                "engine inputs and outputs",
                "stored data",
                "summaries"
            ])
        );
        let mut changed = played(3);
        let key = changed.keys()[0].clone();
        let id = changed.world.servers[0].id;
        changed
            .world
            .datastore
            .set_async(
                changed.world.now,
                id,
                &profilestore_harness::datastore::StoreName::new(STORE),
                &key,
                profilestore_core::json!({"Data": {"Counter": 1, "Ops": []}}),
                Default::default(),
            )
            .unwrap();
        assert_eq!(
            compared(&mut changed),
            Ok(vec!["stored data", "summaries", "violations"])
        );
    }
}
