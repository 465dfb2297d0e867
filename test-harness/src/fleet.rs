//! Fleets (issue "harness" §3–4): players who join, play, trade, gift, leave, rejoin the same
//! server quickly and hop between servers — starting on the new server while the old one still
//! holds the session — on a [`World`] of N servers with wall-clock skew, seeded DataStore faults,
//! lost messages, shutdowns (`BindToClose`, killed after Roblox's 30 s) and crashes, with spare
//! servers booting to replace dead ones ([`FleetConfig::spare_servers`]).
//!
//! Each player's `Data` holds a counter, a log of unique operation ids, unique items and the
//! gifts applied. A player's session start carries a `Cancel` tied to presence: it turns true
//! when the player leaves while loading, now and then or after a minute of waiting
//! ([`FleetConfig::quit_while_loading`]). Some starts carry none and time out instead
//! ([`FleetConfig::uncancellable`]); a profile they return for a player who left is ended at
//! once. Trades move one item between two active profiles on one server with no yield in
//! between. Gifts are `MessageAsync` messages; the game's handler ([`HandlerChoice`]) mostly
//! applies one and calls `processed()` at once, now and then yields first (applying it and
//! calling `processed()` a few seconds later, if the session is still active), and now and then
//! leaves it for a later session, so the engine's "seen" set and re-delivery in the next
//! session are exercised (spec §10.3).
//!
//! The run ends with a settle phase (faults off, everyone leaves, players with gifts waiting log
//! in once more) and then [`crate::invariants`] checks what happened.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use rustc_hash::FxHashMap;

use profilestore_core::guid::GuidGenerator;
use profilestore_core::profile::LastSavedData;
use profilestore_core::value::{Map, Str, Value, json};
use profilestore_core::{
    CallId, Completion, Delivery, Event, Input, InputResult, Output, ProfileId, StartParams,
    StoreId,
};

use crate::acked::AckedOps;
use crate::config::{ConfigError, probability};
use crate::datastore::{DataStoreService, Faults, Limits};
use crate::messaging::{MessagingConfig, MessagingService};
use crate::storage::Storage;
use crate::world::{Happening, LatencyModel, ServerSpec, World, WorldConfig};

/// The store every fleet uses.
pub const STORE: &str = "PlayerData";

/// What a fleet run is made of.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FleetConfig {
    /// Seed of everything.
    pub seed: u64,
    /// Number of servers.
    pub servers: usize,
    /// Number of players.
    pub players: usize,
    /// Virtual seconds of play (the settle phase comes after).
    pub duration: f64,
    /// Probability that a DataStore call fails (a fifth of those ambiguously: the write commits
    /// although an error is returned); the same probability loses a MessagingService message.
    pub faults: f64,
    /// Mean seconds a player stays on one server before leaving or hopping.
    pub stay: f64,
    /// Mean seconds between a player's gameplay operations.
    pub op_interval: f64,
    /// Largest wall-clock skew of a server, seconds (each server gets a seeded value in ±this;
    /// at most [`MAX_SKEW`]). Past 165 s two servers can differ by more than `ASSUME_DEAD`
    /// less `AUTO_SAVE_PERIOD` (630 − 300 s), and live locks look dead to the fast one: the
    /// original takes them at once (spec §19 item 7); this engine asks first, and the owner
    /// hands off (docs/DEVIATIONS.md row 7). In a run with faults a lost request still lets the
    /// fast server take the lock at its next poll: trades torn by a stolen session.
    pub max_skew: i64,
    /// Places the servers run: server `i` (spares included) runs PlaceId `1001 + i % places`.
    /// An experience's places share its DataStores, and a session lock names its place
    /// (spec §5.1), so players hop between places as between servers of one place.
    pub places: usize,
    /// Probability per server per virtual minute of a `BindToClose` shutdown.
    pub shutdown_rate: f64,
    /// Probability per server per virtual minute of a crash.
    pub crash_rate: f64,
    /// Record every engine input and output (for a trace file).
    pub record: bool,
    /// When set, DataStore faults and message loss come and go: on for this many seconds (a
    /// whole number: the run switches them once a virtual second), then off as long, starting
    /// on. A start whose hand-off bound (60 s) falls wholly in a healthy stretch (or in the
    /// settle phase) is held to it, so a period of 61 s or less holds none during play but
    /// in the last healthy stretch, which runs on into settling; `None`: faults the whole run.
    pub fault_period: Option<f64>,
    /// Probability per second that a player waiting for `StartSessionAsync` leaves (their
    /// `Cancel` turns true, as `player.Parent ~= Players` does).
    pub quit_while_loading: f64,
    /// Fraction of starts a game makes without a `Cancel` param: those keep going when the
    /// player leaves, and time out after `START_SESSION_TIMEOUT` of DataStore errors (spec §5);
    /// a profile they return for a player who left is ended at once.
    pub uncancellable: f64,
    /// Servers held in reserve: each replaces one that crashed or shut down, booting
    /// [`SPARE_BOOT_DELAY`] later (Roblox starts new servers as players need them), so a run
    /// with many deaths keeps hopping. Counted on top of `servers`.
    pub spare_servers: usize,
}

/// The largest [`FleetConfig::max_skew`]: a day.
pub const MAX_SKEW: i64 = 86_400;

/// Seconds from a server's death to its replacement taking players.
pub const SPARE_BOOT_DELAY: f64 = 10.0;

impl FleetConfig {
    /// A default fleet: `servers` servers, `players` players, `duration` seconds, `faults`.
    pub fn new(
        seed: u64,
        servers: usize,
        players: usize,
        duration: f64,
        faults: f64,
    ) -> FleetConfig {
        FleetConfig {
            seed,
            servers,
            players,
            duration,
            faults,
            stay: 90.0,
            op_interval: 10.0,
            max_skew: 5,
            places: 1,
            shutdown_rate: 0.0,
            crash_rate: 0.0,
            record: false,
            fault_period: None,
            quit_while_loading: 0.005,
            uncancellable: 0.1,
            spare_servers: 0,
        }
    }
}

/// How [`Fleet::run_until`] ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Played {
    /// Played for the configured duration, then settled: ready for the invariant checks.
    Settled,
    /// Stopped by the caller after `at` virtual seconds of play, not settled.
    Stopped {
        /// The virtual time play stopped at.
        at: f64,
    },
}

/// How a start that returned nil ended, as the fleet saw it: what [`StartFailure::of`] reads.
#[derive(Clone, Copy, Debug)]
pub struct StartEnd {
    /// Its server was closing.
    pub closing: bool,
    /// The host's `Cancel` had turned true (the player left).
    pub cancelled: bool,
    /// How long after the call the player left, if they did.
    pub waited_after_leaving: Option<f64>,
    /// It was made with a `Cancel`.
    pub cancellable: bool,
    /// Seconds from the call to the nil, on the world's frame clock.
    pub took: f64,
    /// `START_SESSION_TIMEOUT`.
    pub timeout: f64,
}

impl StartFailure {
    /// Why a start returned nil on a live server (crashes and refusals are told apart where
    /// they happen): closing, then the player's cancel (after [`HANDOFF_BOUND`] or before),
    /// then the timeout of a start without `Cancel`; anything else is unexplained.
    pub fn of(end: StartEnd) -> StartFailure {
        if end.closing {
            // A start on a closing server is not a hand-off, whoever gave up first.
            StartFailure::Closing
        } else if end.cancelled {
            match end.waited_after_leaving {
                Some(waited) if waited > HANDOFF_BOUND => StartFailure::Cancelled,
                _ => StartFailure::Left,
            }
        } else if !end.cancellable && end.took + 1e-6 >= end.timeout {
            // The engine's deadline check allows for float rounding (a wait of 120 s measured
            // between frame times can come out an ulp short): so does this one.
            StartFailure::TimedOut
        } else {
            StartFailure::Unexplained
        }
    }
}

/// The most servers a fleet runs (the world builds one engine each).
pub const MAX_SERVERS: usize = crate::trace::MAX_TRACE_SERVERS;

/// The most players a fleet runs.
pub const MAX_PLAYERS: usize = 1_000_000;

/// The longest virtual run: a year (the run advances a second at a time).
pub const MAX_DURATION: f64 = 366.0 * 86_400.0;

impl FleetConfig {
    /// Whether DataStore faults and message loss were on at some moment from `from` to `to`
    /// (virtual seconds), by the configuration: the whole run before the settle phase, or the
    /// faulty halves of [`FleetConfig::fault_period`] (each phase starts at the first
    /// one-second step at or after its boundary, so a window is looked at a second wider).
    pub(crate) fn faulty_between(&self, from: f64, to: f64) -> bool {
        let (from, to) = ((from - 1.0).max(0.0), to.min(self.duration));
        // Settling, from the end of play on, runs without faults.
        if self.faults == 0.0 || to < from || from >= self.duration {
            return false;
        }
        match self.fault_period {
            None => true,
            Some(period) => {
                // Faulty from 2k·period to (2k + 1)·period, that instant included: the events
                // of a step's end run before the phase switches.
                // (A faulty phase due exactly when play ends never starts: settling is
                // healthy.)
                let k = (from / period).floor();
                let at_switch_off = k % 2.0 == 1.0 && from == k * period;
                let next = (k + 1.0) * period;
                k % 2.0 == 0.0 || at_switch_off || (next <= to && next < self.duration)
            }
        }
    }

    /// The `profilestore-sim simulate` flags that play this configuration again: every field
    /// the command line sets, defaults included, so the line does not depend on them. (The
    /// gameplay pace `op_interval` has no flag; a value other than the default is named after
    /// the flags.)
    pub fn simulate_flags(&self) -> String {
        let mut flags = format!(
            "--servers {} --players {} --duration {} --faults {} --seed {} --stay {} \
             --crash-rate {} --shutdown-rate {} --spare-servers {} --places {} --max-skew {} \
             --quit-while-loading {} --uncancellable {}",
            self.servers,
            self.players,
            self.duration,
            self.faults,
            self.seed,
            self.stay,
            self.crash_rate,
            self.shutdown_rate,
            self.spare_servers,
            self.places,
            self.max_skew,
            self.quit_while_loading,
            self.uncancellable
        );
        if let Some(period) = self.fault_period {
            flags.push_str(&format!(" --fault-period {period}"));
        }
        let default = FleetConfig::new(0, 0, 0, 0.0, 0.0).op_interval;
        if self.op_interval != default {
            flags.push_str(&format!(
                " (and op_interval {}, which has no flag)",
                self.op_interval
            ));
        }
        flags
    }

    /// Refuses a configuration a fleet cannot run, naming the field: counts out of range,
    /// probabilities outside 0..1, rates and times that are negative, infinite or NaN.
    pub fn check(&self) -> Result<(), String> {
        let count = |name: &str, n: usize, max: usize| {
            if (1..=max).contains(&n) {
                Ok(())
            } else {
                Err(format!("{name} must be between 1 and {max}, got {n}"))
            }
        };
        count("servers", self.servers, MAX_SERVERS)?;
        // `servers` is at most MAX_SERVERS here: no overflow.
        if self.spare_servers > MAX_SERVERS - self.servers {
            return Err(format!(
                "servers and spare servers together must be at most {MAX_SERVERS}, got {} + {}",
                self.servers, self.spare_servers
            ));
        }
        count("players", self.players, MAX_PLAYERS)?;
        count("places", self.places, MAX_SERVERS)?;
        // Server `i` runs place `i % places`: a place beyond the servers would run nowhere.
        if self.places > self.servers + self.spare_servers {
            return Err(format!(
                "places must be at most the servers that run them, got {} for {} + {} spare",
                self.places, self.servers, self.spare_servers
            ));
        }
        if !(0..=MAX_SKEW).contains(&self.max_skew) {
            return Err(format!(
                "max_skew must be between 0 and {MAX_SKEW} s (a day), got {}",
                self.max_skew
            ));
        }
        if !(0.0..=MAX_DURATION).contains(&self.duration) {
            return Err(format!(
                "duration must be between 0 and {MAX_DURATION} s (a year), got {}",
                self.duration
            ));
        }
        for (name, p) in [
            ("faults", self.faults),
            ("quit_while_loading", self.quit_while_loading),
            ("uncancellable", self.uncancellable),
        ] {
            probability(name, p).map_err(|e| e.to_string())?;
        }
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "{name} must be a positive number of seconds, got {v}"
                ))
            }
        };
        positive("stay", self.stay)?;
        // The run switches faults once a virtual second: a period is a whole number of them.
        if let Some(period) = self.fault_period
            && !(period.is_finite() && period >= 1.0 && period.fract() == 0.0)
        {
            return Err(format!(
                "fault_period must be a whole number of seconds, at least 1, got {period}"
            ));
        }
        positive("op_interval", self.op_interval)?;
        for (name, rate) in [
            ("crash_rate", self.crash_rate),
            ("shutdown_rate", self.shutdown_rate),
        ] {
            // Per minute, rolled once a second: at most 60.
            if !(0.0..=60.0).contains(&rate) {
                return Err(format!(
                    "{name} must be between 0 and 60 per server per minute, got {rate}"
                ));
            }
        }
        Ok(())
    }
}

/// Where a player is.
#[derive(Clone, Debug, PartialEq)]
enum Presence {
    Offline,
    /// Waiting for `StartSessionAsync` on a server.
    Joining {
        server: usize,
        call: CallId,
        since: f64,
        /// The player's last session was still held (by the server it left, or being released
        /// by this one) when this start began: a hand-off.
        handoff: bool,
        /// The call was made with a `Cancel` param.
        cancellable: bool,
        /// When the player left (gave up after [`HANDOFF_BOUND`] or quit while loading).
        left_at: Option<f64>,
        /// Already reported as a healthy start that missed [`HANDOFF_BOUND`] (it may still
        /// return, after faults came back).
        flagged: bool,
    },
    /// Playing on a server.
    Online {
        server: usize,
        profile: ProfileId,
    },
}

impl Presence {
    /// The server this player counts toward (`Players` there): where they play or load. A
    /// player who left while loading is gone, whatever their start is still doing.
    fn counts_on(&self) -> Option<usize> {
        match *self {
            Presence::Online { server, .. }
            | Presence::Joining {
                server,
                left_at: None,
                ..
            } => Some(server),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
struct Player {
    key: String,
    presence: Presence,
    /// Leave (or hop) at this time while online.
    leave_at: f64,
    ops: u64,
    items: u64,
}

/// Why a session start returned nil (spec §21: "job stolen, request superseded by another
/// server, cancelled, closing"). Most fleet starts pass a `Cancel` tied to the player's
/// presence, which disables `START_SESSION_TIMEOUT` (spec §5): such a start under DataStore
/// errors retries until the player leaves. The others ([`FleetConfig::uncancellable`]) time out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum StartFailure {
    /// The player gave up after waiting [`HANDOFF_BOUND`] (`Cancel` returned true).
    Cancelled,
    /// The player left before [`HANDOFF_BOUND`] (`Cancel` returned true).
    Left,
    /// A start without `Cancel` gave up after `START_SESSION_TIMEOUT` of DataStore errors.
    TimedOut,
    /// The server was shutting down.
    Closing,
    /// None of the others: not cancelled, not timed out, not closing, the server alive (or
    /// a start still waiting on a server whose `BindToClose` returned, which waits for every
    /// start). The engine returns nil otherwise only when a later call takes the load job over
    /// or another server's `ForceLoadSession` claim replaces ours, and the fleet never starts
    /// one key twice at once (a re-login replacing a start is [`StartFailure::Replaced`]): a
    /// violation ("every start failure explained").
    Unexplained,
    /// The server crashed first.
    Crashed,
    /// The server was shutting down and was killed at the end of `BindToClose`'s 30 s with
    /// the start still waiting. A start on a closing server returns nil at its next step, so
    /// this one was held up (a request failing and backing off, a DataStore answer still on
    /// its way); counted apart from crashes so that a start stuck through a shutdown does not
    /// pass as one.
    Killed,
    /// `StartSessionAsync` threw at the call (the key is still loaded on that server: its
    /// `EndSession` after a hop had not run yet).
    Refused,
    /// The player left while it loaded and logged in again before it returned (the settling
    /// log-in of gift recipients): nobody waited on it any more.
    Replaced,
}

/// One trade: `item` moved from `from` to `to`, both playing on `server`, at `at`.
#[derive(Clone, Debug, PartialEq)]
pub struct Trade {
    /// The item id.
    pub item: String,
    /// The giver's key.
    pub from: String,
    /// The receiver's key.
    pub to: String,
    /// Where both played.
    pub server: usize,
    /// Virtual time of the trade.
    pub at: f64,
    /// Whether a committed write of the giver's own session (a save, whatever its caller was
    /// told, and whether or not the server was still alive) stored a `Data` holding no more
    /// copies of the item than [`Trade::giver_left`]: from then on the giver's side of the
    /// trade is stored.
    pub giver_saved: bool,
    /// Whether the giver's key stored the item: when the trade was made, or by a later write
    /// of the giver's session (one whose transform ran before the trade). A trade whose
    /// giver's side was lost leaves the giver a copy only then: an item the session was given
    /// and passed on before any write stored it was never the giver's to keep.
    pub giver_held: bool,
    /// Copies of the item the giver's `Data` still held after the trade: a write of the
    /// giver's holding more is taken as made before the trade, holding the copy given away
    /// ([`Trade::giver_held`]); as many or fewer, the giver's side stored. (More than none
    /// where the session loaded a copy left by an earlier torn trade and was then given the
    /// item back. Counts cannot tell copies apart: a copy the session is given later, before
    /// a write, reads as the one given away, which can only excuse more.)
    pub giver_left: usize,
    /// The giver's session: its profile's `SessionLoadCount`.
    pub giver_generation: i64,
    /// Whether the copy this trade gave came back to the giver's session (a later trade gave
    /// it back before any write stored the giver's side): the giver's side is no longer lost,
    /// and whatever copy the giver's key keeps, the returning trade accounts for. One give is
    /// marked per returning copy: the only pending give of the item, or, of several, the one
    /// the copy is traced to through the sessions that passed it on (none when it is not).
    pub came_back: bool,
    /// Whether the receiver's key stores the item as the receiver's session last wrote it (as
    /// for [`Trade::giver_saved`]), or, until that session writes, when the trade was made,
    /// if the item came back to the session that gave it away and its key still held the copy
    /// that session gave (more copies than that give left). Counted like
    /// [`Trade::giver_left`]: a write holding more copies than [`Trade::receiver_had`] keeps
    /// it.
    pub receiver_kept: bool,
    /// Copies of the item the receiver's `Data` held before the trade (more than none where
    /// a copy an earlier torn trade left was loaded, or the session was given it twice).
    pub receiver_had: usize,
    /// The trade (an index into [`Observations::trade_log`]) by which the receiver's session
    /// passed the item on: the receiver's side went on with that trade, and counts as stored
    /// if the session's last write kept it (held more copies than [`Trade::receiver_had`]) or
    /// that trade's receiver side is stored.
    pub passed_on: Option<usize>,
    /// The receiver's session: its profile's `SessionLoadCount`.
    pub receiver_generation: i64,
}

impl Trade {
    /// Whether the item this trade moved reached a store past the receiver: a write of the
    /// receiver's session stored it, or of a session it was passed on to ([`Trade::passed_on`],
    /// followed in `trades`, the trade log).
    pub fn receiver_side_stored(&self, trades: &[Trade]) -> bool {
        let mut trade = self;
        loop {
            if trade.receiver_kept {
                return true;
            }
            // A later trade each time (the log is in order): the walk ends.
            match trade.passed_on.and_then(|i| trades.get(i)) {
                Some(next) => trade = next,
                None => return false,
            }
        }
    }
}

/// A gift whose `MessageAsync` returned true.
#[derive(Clone, Debug, PartialEq)]
pub struct SentGift {
    /// The recipient's key.
    pub to: String,
    /// The server that called `MessageAsync`.
    pub server: usize,
    /// The call, on [`SentGift::server`].
    pub call: CallId,
    /// When the call returned (virtual seconds): a violation's excerpt starts there.
    pub at: f64,
}

/// The deliveries of one message to one session's handler.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Deliveries {
    /// How many times the handler received it (more than once is a violation).
    pub count: u32,
    /// When it first did (virtual seconds).
    pub first_at: f64,
}

/// Message deliveries by what the fleet's handler did with them ([`HandlerChoice`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandlerCounts {
    /// Applied and marked processed at once.
    pub at_once: u64,
    /// Yielded first; applied and marked processed when the yield is over
    /// ([`HANDLER_YIELD`]), unless [`HandlerCounts::yield_outlived`].
    pub after_yield: u64,
    /// Yielded past the end of their session: neither applied nor marked processed.
    pub yield_outlived: u64,
    /// Left for a later session.
    pub later: u64,
}

/// A handler waiting out its yield: it applies `gift` to `profile` on `server` at `at`.
#[derive(Clone, Debug)]
struct YieldedHandler {
    at: f64,
    server: usize,
    profile: ProfileId,
    id: i64,
    gift: Option<String>,
}

/// What a fleet run observed, for the report and the invariant checks.
#[derive(Clone, Debug, Default)]
pub struct Observations {
    /// Operation ids each player's own saves confirmed, with when each was first confirmed;
    /// per player, in [`Fleet::keys`] order.
    pub acked_ops: Vec<AckedOps>,
    /// Gifts whose `MessageAsync` returned true, by gift id.
    pub gifts_sent: BTreeMap<String, SentGift>,
    /// Deliveries per (server, profile, message id).
    pub deliveries: BTreeMap<(usize, ProfileId, i64), Deliveries>,
    /// Deliveries by what the handler did with them: at once, after a yield (of which how
    /// many found the session ended and did nothing), left for a later session.
    pub handled: HandlerCounts,
    /// Sessions started.
    pub sessions: u64,
    /// Start latencies (seconds) of every successful start.
    pub start_times: Vec<f64>,
    /// Latencies of the successful hand-offs: starts that began while the player's last session
    /// was still held, after a teleport to another server or a quick rejoin of the same one.
    pub handoffs: Vec<f64>,
    /// Failed starts by reason.
    pub failures: BTreeMap<StartFailure, u64>,
    /// Starts checked against the hand-off bound: those made with the DataStore healthy for the
    /// whole bound after them (from a second before), on a server not closing, that
    /// returned, or that the player gave up on past the bound.
    pub healthy_starts: u64,
    /// Starts that failed or took longer than the hand-off bound while the DataStore was healthy
    /// (on a server not closing): (key, started at, outcome). Stricter than the issue's "old
    /// server alive": a start whose old server died waits out the steal, also within the bound.
    pub slow_healthy_starts: Vec<(String, f64, String)>,
    /// Trades done.
    pub trades: u64,
    /// Trades whose giver's side was stored by a write that landed after the giver's server
    /// died (crashed or was killed: [`Observations::died_at`]; sent before, no `OnAfterSave`
    /// reports it).
    pub gives_saved_by_late_writes: u64,
    /// Every trade, in order.
    pub trade_log: Vec<Trade>,
    /// When each server died (crash, or killed at the end of `BindToClose`).
    pub died_at: BTreeMap<usize, f64>,
    /// The servers among [`Observations::died_at`] that were shutting down: killed when their
    /// `BindToClose` ran out, not crashed.
    pub killed: std::collections::BTreeSet<usize>,
    /// DataStore errors signalled (`OnError`).
    pub errors: u64,
    /// Critical-state toggles.
    pub critical_toggles: u64,
    /// Servers shut down / crashed.
    pub shutdowns: u64,
    /// Crashes.
    pub crashes: u64,
    /// Spare servers that replaced a dead one.
    pub replacements: u64,
    /// The lock holder of each (key, `SessionLoadCount`) written under a lock, with the time
    /// of its last write: read off every committed write as it is logged.
    pub lock_holders: FxHashMap<(Str, i64), (Str, f64)>,
    /// Writes naming a second holder for a generation: (key, generation, the first holder's
    /// last write before it).
    pub lock_conflicts: Vec<(String, i64, f64)>,
    /// Writes whose `SessionLoadCount` is below the key's previous write's: (key, previous
    /// generation, the write's, when). Only a start raises the count, and every write is made
    /// on the latest value: a lower one is a session that lost its lock writing as if it held
    /// it (the stale owner's save or release after a take).
    pub generations_gone_back: Vec<(String, i64, i64, f64)>,
    /// Per key: the `SessionLoadCount` of its last committed write, and the lock holder (job
    /// id) that write left, if any.
    pub last_generation: FxHashMap<Str, (i64, Option<Str>)>,
    /// Lock generations `(key, SessionLoadCount)` a later session took while they still held
    /// the key, with the time of the taking write: a steal after the holder did not release it
    /// (spec §5.3), or the `ASSUME_DEAD` take-over (a poll after asking). Whatever that
    /// session had not saved is lost with it: its next save finds the lock gone and stores
    /// nothing (spec §8.3, "Lock lost").
    pub taken_generations: BTreeMap<(String, i64), f64>,
    /// Lock generations `(key, SessionLoadCount)` their holder released (a committed write of
    /// the generation that leaves the key unlocked: a final save), with the time of that
    /// write. A server that dies after it cannot tear that session's trades: its final save
    /// stored them. (Looked up, never listed: a hash map, as a run notes a release per
    /// session.)
    pub released_generations: FxHashMap<(Str, i64), f64>,
    /// Starts that failed for no reason the fleet knows ([`StartFailure::Unexplained`]):
    /// (key, when the start was called, what happened to it).
    pub unexplained_starts: Vec<(String, f64, String)>,
    /// Stored values a trade could not read (to tell whether a key held the item): (key, when,
    /// the storage's error). The checks report each; the trade takes the key as holding it.
    pub unreadable: Vec<(String, f64, String)>,
}

impl Observations {
    /// Notes who a committed write at `t` says holds `key`'s lock (one lock holder per
    /// generation, checked by [`crate::invariants::check`]), and whether it took the lock of
    /// a generation that still held it ([`Observations::taken_generations`]).
    fn note_write(&mut self, key: &Str, value: &Value, t: f64) {
        let (count, holder) = crate::invariants::generation_of(value);
        let now = (count, holder.cloned());
        match self.last_generation.get_mut(key) {
            Some(last) => {
                // Taken: a later generation written while the key still named another server
                // as its holder. (A server bumping its own lock, as a start whose first write
                // failed ambiguously does, loses nothing.)
                let (before, locked) = std::mem::replace(last, now);
                if count < before {
                    self.generations_gone_back
                        .push((key.to_string(), before, count, t));
                }
                if count > before && locked.as_ref().is_some_and(|job| Some(job) != holder) {
                    self.taken_generations.insert((key.to_string(), before), t);
                }
                if count == before && locked.is_some() && holder.is_none() {
                    self.released_generations
                        .entry((key.clone(), count))
                        .or_insert(t);
                }
            }
            None => {
                self.last_generation.insert(key.clone(), now);
            }
        }
        let Some(job) = holder else {
            return;
        };
        let (holder, last) = self
            .lock_holders
            .entry((key.clone(), count))
            .or_insert_with(|| (job.clone(), t));
        if *holder == *job {
            *last = t;
        } else if !self
            .lock_conflicts
            .iter()
            .any(|(k, c, _)| *c == count && k == key.as_str())
        {
            // Once per generation, however often the other server writes it.
            self.lock_conflicts.push((key.to_string(), count, *last));
        }
    }
}

/// The entries of an `Items` array (none where it is not an array).
fn entries(items: &Value) -> &[Value] {
    items.as_array().map_or(&[], |a| a.as_slice())
}

/// How many of `items` are the string `item`.
fn copies(items: &[Value], item: &str) -> usize {
    items.iter().filter(|i| i.as_str() == Some(item)).count()
}

/// Trades with a side a later write may still settle, by (server, that side's key): the
/// giver's sides no write has stored yet, or the receivers' sides (see
/// [`Fleet::unkept_takes`]).
type Pending = FxHashMap<(usize, Str), Vec<usize>>;

/// A committed write of `key` by a session on server `s` (its start or a save, not an API
/// call's; `value` whole or a [`crate::invariants::summarize_write`] summary) confirms the
/// sides of that server's trades it stored, if it is of that side's own session (its
/// `SessionLoadCount` the trade's generation of that side): for the giver, `Data.Items` holds
/// no more copies of the item than the giver kept ([`Trade::giver_saved`]); for the receiver,
/// more than it had ([`Trade::receiver_kept`], set again by each write). A stored giver's
/// side leaves `gives`; a receiver's side leaves `takes` once the session has passed the item
/// on and a write shows no more copies than the receiver had. Every such write counts,
/// whatever its caller was told: a save answered with an error (an ambiguous fault), one that
/// hands the session off, one landing after its server died. A save that found the session
/// taken writes the taker's value again, under the taker's generation: it confirms nothing of
/// the lost session's trades. Returns how many giver's sides it confirmed.
fn confirm_write(
    trades: &mut [Trade],
    (gives, takes): (&mut Pending, &mut Pending),
    s: usize,
    key: &Str,
    value: &Value,
) -> u64 {
    // Without an `Items` array the value shows nothing of either side.
    let Some(items) = crate::invariants::written_items(value) else {
        return 0;
    };
    let generation = crate::invariants::generation_of(value).0;
    let mut confirmed = 0;
    let side = (s, key.clone());
    if let Some(list) = gives.get_mut(&side) {
        list.retain(|&i| {
            let trade = &mut trades[i];
            if generation != trade.giver_generation {
                return true;
            }
            // Holding the copy given away, the write was made before the trade: the giver's key
            // held it.
            if copies(items, &trade.item) > trade.giver_left {
                trade.giver_held = true;
                return true;
            }
            trade.giver_saved = true;
            confirmed += 1;
            false
        });
        if list.is_empty() {
            gives.remove(&side);
        }
    }
    if let Some(list) = takes.get_mut(&side) {
        list.retain(|&i| {
            let trade = &mut trades[i];
            if generation != trade.receiver_generation {
                return true;
            }
            // The session's latest write tells (a later one may take it back: the session
            // gave the item on, or a write made before it came back lands after).
            trade.receiver_kept = copies(items, &trade.item) > trade.receiver_had;
            // Passed on and not held: no later write of the session will hold it (writes of a
            // key commit in the order their transforms ran).
            trade.receiver_kept || trade.passed_on.is_none()
        });
        if list.is_empty() {
            takes.remove(&side);
        }
    }
    confirmed
}

/// The trade by which `trade`'s giver was given the item it passes on: among `takes` (the
/// giver's pending ones), the latest of the item, in this session, not passed on yet. One
/// copy goes on with each trade, whatever copies the session holds.
fn passing_take(trades: &[Trade], takes: &[usize], trade: &Trade) -> Option<usize> {
    takes.iter().rev().copied().find(|&i| {
        let t = &trades[i];
        t.item == trade.item
            && t.receiver_generation == trade.giver_generation
            && t.passed_on.is_none()
    })
}

/// Which give of `trade`'s receiver's session the item `trade` hands back descends from:
/// from `take`, the trade by which `trade`'s giver was given it ([`passing_take`]), back
/// through the sessions that passed it on, to a give of the receiver's session; `None` when
/// the chain reaches none.
fn returning_give(trades: &[Trade], take: usize, trade: &Trade) -> Option<usize> {
    let mut at = take;
    loop {
        let t = &trades[at];
        if t.from == trade.to && t.giver_generation == trade.receiver_generation {
            return Some(at);
        }
        // The trade that passed the item on by this one: an earlier one (the log is in order).
        at = (0..at).rev().find(|&i| trades[i].passed_on == Some(at))?;
    }
}

/// The bound a healthy hand-off must meet: a steal after `SESSION_STEAL` takes ≈45 s plus
/// request latencies (spec §5.3); anything slower is a violation.
pub const HANDOFF_BOUND: f64 = 60.0;

/// What the game's message handler does with a gift it is given (spec §10.3), drawn per
/// delivery from its own seeded generator (so the rest of a run's draws stay as they were).
/// In the settle phase it always applies the gift at once: the last log-in collects them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerChoice {
    /// Applies the gift and calls `processed()` before yielding (most handlers).
    AtOnce,
    /// Yields ([`HANDLER_YIELD`] seconds), then, if the session is still active, applies the
    /// gift and calls `processed()`; if it ended meanwhile, does neither, and the message is
    /// delivered again next session. Saves made while it waits keep the message stored.
    AfterYield,
    /// Leaves the message (an inventory full, say): neither applied nor processed. It is not
    /// delivered again to this session, and the next session delivers it again.
    Later,
}

/// The share of deliveries each [`HandlerChoice`] takes: [`HandlerChoice::AfterYield`], then
/// [`HandlerChoice::Later`]; the rest are handled at once.
pub const HANDLER_SHARES: (f64, f64) = (0.15, 0.1);

/// Seconds a [`HandlerChoice::AfterYield`] handler yields at least: it goes on at the fleet's
/// first whole-second step after (in play; at the end of play, three seconds into settling).
pub const HANDLER_YIELD: f64 = 3.0;

/// A running fleet.
pub struct Fleet {
    /// The configuration. Fields changed after [`Fleet::new`] are not checked again (the
    /// fault rate stays the one `new` checked); tests change it only to change what
    /// [`crate::invariants::check`] expects.
    pub config: FleetConfig,
    /// `config.faults` as [`Fleet::new`] checked it: the rate fault periods switch on.
    fault_rate: f64,
    /// The world.
    pub world: World,
    store: StoreId,
    players: Vec<Player>,
    /// Per player: when they next act. Kept apart from [`Player`] because every virtual second
    /// reads it for every player: eight bytes a player, not the player's two cache lines.
    next_at: Vec<f64>,
    /// Per server: its players ([`Presence::counts_on`]), kept up to date by
    /// [`Fleet::set_presence`] instead of counted from every player each second.
    online_counts: Vec<u32>,
    rng: GuidGenerator,
    /// What happened.
    pub observed: Observations,
    /// The key of every session profile, by server and profile (profiles of ended sessions are
    /// dropped from their engines, this stays).
    pub profile_keys: FxHashMap<(usize, ProfileId), String>,
    /// The player of every session profile, by server and profile.
    session_players: FxHashMap<(usize, ProfileId), usize>,
    /// Items duplicated because a server died between the two saves of a trade, in item order
    /// (filled by [`crate::invariants::check`]).
    pub torn_trades: Vec<String>,
    /// Items duplicated because the giver's session was taken by another server before a save
    /// stored the giver's side of a trade, in a run whose DataStore fails, in item order
    /// (filled by [`crate::invariants::check`]).
    pub stolen_trades: Vec<String>,
    /// Per server: the call → player waiting for a start.
    joining: Vec<FxHashMap<CallId, usize>>,
    /// Per server: message call → (gift id, recipient's key).
    gifting: Vec<FxHashMap<CallId, (String, String)>>,
    /// Per server: whether it is shutting down (the world kills it at the end of
    /// `BindToClose`).
    closing: Vec<bool>,
    /// When the current healthy stretch began (the healthy half of a fault period, or the
    /// settle phase); `None` while faults are on.
    healthy_from: Option<f64>,
    /// Whether the world's log keeps every line (the default) or lets go of the lines the
    /// fleet has read ([`crate::log::Log::forget_before`]): then the log's memory stays
    /// flat however long the run, and [`crate::invariants::check`] runs the seed again, keeping
    /// the log, only to cut the excerpts of violations it found.
    pub keep_log: bool,
    /// DataStore requests made while playing ([`Fleet::run`] before it settles): the
    /// configured workload's, without the settling's final saves and late log-ins.
    pub played_requests: u64,
    seen: usize,
    gift_seq: u64,
    /// The shares of deliveries the message handler yields on and leaves for later
    /// ([`HANDLER_SHARES`] unless a test sets others before [`Fleet::run`]).
    pub handler_shares: (f64, f64),
    /// Draws the message handler's [`HandlerChoice`]s, apart from `rng`.
    handler_rng: GuidGenerator,
    /// Handlers yielding, in the order they yielded (so in order of `at`).
    yielded: std::collections::VecDeque<YieldedHandler>,
    /// In the settle phase: handlers apply every gift at once.
    settling: bool,
    /// PlayerRemoving on the old server after a teleport: (at, server, profile).
    pending_ends: Vec<(f64, usize, ProfileId)>,
    /// Spare servers not booted yet, in boot order.
    spares: std::collections::VecDeque<usize>,
    /// Spares booting: when each takes players.
    booting: Vec<(f64, usize)>,
    /// Per (server, giver's key): trades (indexes into `trade_log`) whose giver side no write
    /// has stored yet.
    unsaved_gives: Pending,
    /// Per (server, receiver's key): trades whose receiver side a later write of the
    /// receiver's session may still store or take back ([`Trade::receiver_kept`]): until the
    /// session has passed the item on and a write shows no more copies than it had.
    unkept_takes: Pending,
    /// Per player: how many entries of the last `LastSavedData.Ops` seen were acknowledged,
    /// and the last of them.
    acked_upto: Vec<(usize, String)>,
}

impl Fleet {
    /// Builds the fleet on a DataStore backed by `storage`, or says why `config` cannot run
    /// ([`FleetConfig::check`]).
    pub fn new(config: FleetConfig, storage: Box<dyn Storage>) -> Result<Fleet, String> {
        config.check()?;
        let mut rng = GuidGenerator::new(config.seed ^ 0x5EED);
        let total = config.servers + config.spare_servers;
        let servers = (0..total)
            .map(|i| ServerSpec {
                name: format!("S{i}"),
                place_id: 1001 + (i % config.places.max(1)) as i64,
                wall_skew: if config.max_skew > 0 {
                    (rng.next_u64() % (2 * config.max_skew as u64 + 1)) as i64 - config.max_skew
                } else {
                    0
                },
            })
            .collect();
        let world_config = WorldConfig {
            seed: config.seed,
            epoch: 1_735_689_600,
            fps: 60.0,
            latency: LatencyModel::Sampled,
            servers,
        };
        let faults = Faults::seeded(config.seed)
            .with_latency(0.05, 0.25)
            .with_rates(config.faults * 0.8, config.faults * 0.2);
        let unusable = |e: ConfigError| e.to_string();
        let datastore = DataStoreService::new(world_config.epoch)
            .with_limits(Limits::roblox())
            .map_err(unusable)?
            .with_faults(faults)
            .map_err(unusable)?
            .with_storage(storage);
        let messaging =
            MessagingService::new(MessagingConfig::roblox(config.seed).with_loss(config.faults))
                .map_err(unusable)?;
        let mut world = World::new(world_config, datastore, messaging).map_err(unusable)?;
        world.log_values = false;
        world.summarize = crate::invariants::summarize_write;
        if config.record {
            // A new world has had no input yet.
            world.record().map_err(|e| e.to_string())?;
        }
        let mut store = StoreId(0);
        for s in 0..config.servers {
            if let Some(id) = open_store(&mut world, s) {
                store = id;
            }
        }
        // Spares wait, stopped, until a server dies.
        for s in config.servers..total {
            world.reserve(s);
        }
        let (players, next_at): (Vec<Player>, Vec<f64>) = (0..config.players)
            .map(|i| {
                let player = Player {
                    key: format!("Player_{i}"),
                    presence: Presence::Offline,
                    leave_at: 0.0,
                    ops: 0,
                    items: 0,
                };
                (player, rng.next_f64() * 10.0)
            })
            .unzip();
        let config_seed = config.seed;
        Ok(Fleet {
            acked_upto: vec![(0, String::new()); config.players],
            observed: Observations {
                acked_ops: players.iter().map(|p| AckedOps::new(&p.key)).collect(),
                ..Observations::default()
            },
            joining: vec![FxHashMap::default(); total],
            gifting: vec![FxHashMap::default(); total],
            closing: vec![false; total],
            spares: (config.servers..total).collect(),
            booting: Vec::new(),
            fault_rate: config.faults,
            config,
            world,
            store,
            players,
            next_at,
            online_counts: vec![0; total],
            rng,
            torn_trades: Vec::new(),
            stolen_trades: Vec::new(),
            profile_keys: FxHashMap::default(),
            session_players: FxHashMap::default(),
            healthy_from: None,
            keep_log: true,
            played_requests: 0,
            seen: 0,
            gift_seq: 0,
            handler_shares: HANDLER_SHARES,
            handler_rng: GuidGenerator::new(config_seed ^ 0x4A4E_D1E5),
            yielded: std::collections::VecDeque::new(),
            settling: false,
            pending_ends: Vec::new(),
            unsaved_gives: FxHashMap::default(),
            unkept_takes: FxHashMap::default(),
        })
    }

    /// An exponentially distributed draw of mean `mean`. The logarithm is `libm`'s, the same
    /// bits on every platform (`f64::ln` is the platform's maths library), so a seed makes the
    /// same run everywhere.
    fn exp(&mut self, mean: f64) -> f64 {
        -mean * libm::log(1.0 - self.rng.next_f64())
    }

    fn alive_servers(&self) -> Vec<usize> {
        (0..self.world.servers.len())
            .filter(|s| self.world.servers[*s].alive && !self.closing[*s])
            .collect()
    }

    /// Plays for `config.duration` seconds, calling `progress(virtual seconds)` now and then
    /// (last with `config.duration`, when play ends); then settles: faults off, everyone
    /// leaves and every final save lands (some five virtual minutes more).
    pub fn run(&mut self, mut progress: impl FnMut(f64)) {
        let played = self.run_until(|_, t| {
            progress(t);
            ControlFlow::Continue(())
        });
        debug_assert_eq!(played, Played::Settled);
    }

    /// [`Fleet::run`], which `progress` can stop: called with the fleet after each virtual
    /// second of play, a [`ControlFlow::Break`] ends the play there, without settling: the
    /// store holds what servers that crashed there would leave, so the run is not one the
    /// invariants can be checked on ([`Played::Stopped`]). How a command stops on Ctrl-C, or
    /// once its trace cannot be written.
    pub fn run_until(
        &mut self,
        mut progress: impl FnMut(&Fleet, f64) -> ControlFlow<()>,
    ) -> Played {
        let mut t = 0.0;
        while t < self.config.duration {
            t = self.play_second(t);
            if t >= self.config.duration {
                self.played_requests = self.world.request_total();
            }
            if progress(self, t).is_break() {
                return Played::Stopped { at: t };
            }
        }
        self.settle();
        Played::Settled
    }

    /// Plays the second after `t` (or what is left of the configured duration): the world
    /// runs to its end, then servers and players act. Returns the time it ends at.
    fn play_second(&mut self, t: f64) -> f64 {
        self.set_fault_phase(t);
        let t = (t + 1.0).min(self.config.duration);
        self.advance(t);
        self.resume_handlers();
        self.end_teleported();
        self.server_events();
        self.player_actions();
        self.update_player_counts();
        t
    }

    fn advance(&mut self, t: f64) {
        while self.world.step(t) {
            self.react();
        }
        self.react();
    }

    fn server_events(&mut self) {
        let per_second = |rate_per_minute: f64| rate_per_minute / 60.0;
        for s in 0..self.world.servers.len() {
            // Keep at least one server taking players.
            if self.alive_servers().len() <= 1 || !self.world.servers[s].alive || self.closing[s] {
                continue;
            }
            let died = if self.rng.next_f64() < per_second(self.config.crash_rate) {
                self.world.crash(s);
                self.observed.crashes += 1;
                true
            } else if self.rng.next_f64() < per_second(self.config.shutdown_rate) {
                self.world.shutdown(s);
                self.closing[s] = true;
                self.observed.shutdowns += 1;
                true
            } else {
                false
            };
            if died && let Some(spare) = self.spares.pop_front() {
                self.booting
                    .push((self.world.now + SPARE_BOOT_DELAY, spare));
            }
        }
        self.boot_spares();
        // Players on servers that died are gone from them.
        if self.world.servers.iter().all(|s| s.alive) {
            return;
        }
        for p in 0..self.players.len() {
            let server = match self.players[p].presence {
                Presence::Online { server, .. } | Presence::Joining { server, .. } => server,
                Presence::Offline => continue,
            };
            if !self.world.servers[server].alive {
                if let Presence::Joining { since, .. } = self.players[p].presence {
                    // A closing server's death is its kill. One that closed by itself (its
                    // `BindToClose` returned: no kill logged) waited for its starts to return
                    // first, so a start still waiting there is one whose answer went missing.
                    let reason = if !self.closing[server] {
                        StartFailure::Crashed
                    } else if self.observed.died_at.contains_key(&server) {
                        StartFailure::Killed
                    } else {
                        let key = self.players[p].key.clone();
                        let what = format!(
                            "was still waiting after {:.1} s when its server closed (its \
                             BindToClose returned, which waits for every start)",
                            self.world.now - since
                        );
                        self.observed.unexplained_starts.push((key, since, what));
                        StartFailure::Unexplained
                    };
                    *self.observed.failures.entry(reason).or_default() += 1;
                }
                self.set_presence(p, Presence::Offline);
                self.next_at[p] = self.world.now + 5.0;
            }
        }
    }

    /// Spares whose boot time has come start taking players.
    fn boot_spares(&mut self) {
        let now = self.world.now;
        let (due, later): (Vec<_>, Vec<_>) = self.booting.drain(..).partition(|(at, _)| *at <= now);
        self.booting = later;
        for (_, s) in due {
            self.world.boot(s);
            open_store(&mut self.world, s);
            self.observed.replacements += 1;
        }
    }

    fn player_actions(&mut self) {
        let now = self.world.now;
        for p in 0..self.players.len() {
            if self.next_at[p] > now {
                continue;
            }
            match self.players[p].presence.clone() {
                Presence::Offline => {
                    let alive = self.alive_servers();
                    if alive.is_empty() {
                        continue;
                    }
                    let server = alive[(self.rng.next_u64() % alive.len() as u64) as usize];
                    self.join(p, server, false);
                }
                Presence::Joining {
                    server,
                    call,
                    since,
                    cancellable,
                    left_at: None,
                    ..
                } => {
                    // A player gives up after a minute of loading, or leaves earlier now and
                    // then (checked every 5 s): with a `Cancel`, it turns true.
                    // (1 − p)⁵ as (q²)²·q: plain multiplications, the same bits on every
                    // platform and build (`powi` may be lowered either way).
                    let q = 1.0 - self.config.quit_while_loading;
                    let q2 = q * q;
                    let quit = 1.0 - q2 * q2 * q;
                    let too_long = now - since > HANDOFF_BOUND;
                    if too_long || self.rng.next_f64() < quit {
                        // A start that ran past the bound while the DataStore stayed healthy
                        // missed it now, whenever (and whether) it returns.
                        let missed = too_long && self.healthy_since(since) && !self.closing[server];
                        if missed {
                            self.observed.healthy_starts += 1;
                            self.observed.slow_healthy_starts.push((
                                self.players[p].key.clone(),
                                since,
                                format!("had not returned after {:.1} s", now - since),
                            ));
                        }
                        let mut gone = self.players[p].presence.clone();
                        if let Presence::Joining {
                            left_at, flagged, ..
                        } = &mut gone
                        {
                            *left_at = Some(now);
                            *flagged = missed;
                        }
                        self.set_presence(p, gone);
                        if cancellable {
                            let t = self.world.now_for(server);
                            self.world.servers[server].host.cancelled.insert(call);
                            self.world
                                .feed(server, Input::CancelSessionStart { now: t, call });
                        }
                    }
                    self.next_at[p] = now + 5.0;
                }
                // Gone: the start's result is awaited (a profile it returns is ended).
                Presence::Joining { .. } => {
                    self.next_at[p] = now + 5.0;
                }
                Presence::Online { server, .. } if self.closing[server] => {
                    // Kicked: a server that began shutting down has ended its sessions and
                    // takes no more play (Roblox removes its players); they come back on
                    // another server.
                    self.set_presence(p, Presence::Offline);
                    self.next_at[p] = now + 5.0;
                }
                Presence::Online { server, profile } => {
                    if now >= self.players[p].leave_at {
                        self.leave_or_hop(p, server, profile);
                    } else {
                        self.play(p, server, profile);
                    }
                }
            }
        }
    }

    /// Sets player `p`'s presence, moving them between servers' player counts.
    fn set_presence(&mut self, p: usize, presence: Presence) {
        if let Some(s) = self.players[p].presence.counts_on() {
            self.online_counts[s] -= 1;
        }
        if let Some(s) = presence.counts_on() {
            self.online_counts[s] += 1;
        }
        self.players[p].presence = presence;
    }

    /// Tells each server how many players it has: request budgets follow the players on each
    /// server (Roblox: base + per player). Tests (debug builds) count every player again, to
    /// catch a presence set without [`Fleet::set_presence`].
    fn update_player_counts(&mut self) {
        debug_assert_eq!(
            self.online_counts,
            self.players
                .iter()
                .fold(vec![0; self.online_counts.len()], |mut counts, p| {
                    if let Some(s) = p.presence.counts_on() {
                        counts[s] += 1;
                    }
                    counts
                }),
            "a presence changed without set_presence"
        );
        for s in 0..self.online_counts.len() {
            self.world.set_players(s, self.online_counts[s]);
        }
    }

    /// `StartSessionAsync` for player `p` on `server`; `handoff` when the player's last session
    /// is still held.
    fn join(&mut self, p: usize, server: usize, handoff: bool) {
        let now = self.world.now_for(server);
        let key = self.players[p].key.clone();
        let cancellable = self.rng.next_f64() >= self.config.uncancellable;
        let params = StartParams {
            steal: false,
            cancellable,
        };
        let started = self.world.feed(
            server,
            Input::StartSession {
                now,
                store: self.store.live(),
                key,
                params,
            },
        );
        if let InputResult::Call(Err(_)) = started {
            // A start throws only for a key still loaded on that server: here, the session
            // a hop left, whose `EndSession` has not run yet. Any other throw is a start that
            // failed for no reason the fleet knows.
            let key = &self.players[p].key;
            let ending_here = self.pending_ends.iter().any(|(_, s, profile)| {
                *s == server && self.profile_keys.get(&(*s, *profile)) == Some(key)
            });
            let reason = if ending_here {
                StartFailure::Refused
            } else {
                let what = "threw at the call, with no session of the key ending there".into();
                self.observed
                    .unexplained_starts
                    .push((key.clone(), self.world.now, what));
                StartFailure::Unexplained
            };
            *self.observed.failures.entry(reason).or_default() += 1;
        }
        if let InputResult::Call(Ok(call)) = started {
            self.joining[server].insert(call, p);
            let joining = Presence::Joining {
                server,
                call,
                since: self.world.now,
                handoff,
                cancellable,
                left_at: None,
                flagged: false,
            };
            self.set_presence(p, joining);
        }
        self.next_at[p] = self.world.now + 5.0;
    }

    fn leave_or_hop(&mut self, p: usize, server: usize, profile: ProfileId) {
        let roll = self.rng.next_f64();
        let alive = self.alive_servers();
        if roll < 0.6 && alive.len() > 1 {
            // Teleport: join the new server first; the old one lets go a moment later.
            let others: Vec<usize> = alive.into_iter().filter(|s| *s != server).collect();
            let to = others[(self.rng.next_u64() % others.len() as u64) as usize];
            self.join(p, to, true);
            let delay = self.rng.next_f64() * 3.0;
            self.pending_ends
                .push((self.world.now + delay, server, profile));
        } else {
            let now = self.world.now_for(server);
            self.world.feed(server, Input::EndSession { now, profile });
            if roll < 0.85 {
                // Rejoin the same server quickly.
                self.set_presence(p, Presence::Offline);
                self.join(p, server, true);
            } else {
                self.set_presence(p, Presence::Offline);
                let wait = self.exp(30.0);
                self.next_at[p] = self.world.now + wait;
            }
        }
    }

    /// PlayerRemoving on the old server, up to 3 s after the teleport (at the next step).
    fn end_teleported(&mut self) {
        let now = self.world.now;
        let (due, later): (Vec<_>, Vec<_>) = self
            .pending_ends
            .drain(..)
            .partition(|(at, _, _)| *at <= now);
        self.pending_ends = later;
        for (_, server, profile) in due {
            if self.world.servers[server].alive {
                let t = self.world.now_for(server);
                self.world
                    .feed(server, Input::EndSession { now: t, profile });
            }
        }
    }

    fn play(&mut self, p: usize, server: usize, profile: ProfileId) {
        let roll = self.rng.next_f64();
        let now = self.world.now;
        if roll < 0.1 {
            self.trade(p, server, profile);
        } else if roll < 0.15 {
            self.gift(p, server);
        } else {
            let player = &mut self.players[p];
            player.ops += 1;
            let op = numbered(&player.key, ":op", player.ops);
            let loot = player.ops.is_multiple_of(3).then(|| {
                player.items += 1;
                numbered(&player.key, ":item", player.items)
            });
            if let Some(data) = self.world.servers[server].host.data.get_mut(&profile)
                && let Some(table) = table_mut(data)
            {
                // One write access to the table (a copy if it is shared with a save) for the
                // three fields.
                let table: &mut Map = table;
                // Counted in place: the field is there on every operation but the first.
                match table.get_mut("Counter") {
                    Some(counter) => *counter = Value::from(counter.as_i64().unwrap_or(0) + 1),
                    None => {
                        table.insert("Counter".into(), Value::from(1));
                    }
                }
                push_to(table, "Ops", Value::from(op));
                if let Some(item) = loot {
                    push_to(table, "Items", Value::from(item));
                }
            }
        }
        let wait = self.exp(self.config.op_interval);
        self.next_at[p] = now + wait;
    }

    /// Moves one item from player `p` to another player online on the same server, with no
    /// yield in between.
    fn trade(&mut self, p: usize, server: usize, profile: ProfileId) {
        // The partner: the first player online on this server from a random place in the
        // list on (always starting at the top would send every item to one player).
        let n = self.players.len();
        let start = (self.rng.next_u64() % n as u64) as usize;
        let partner = (start..n)
            .chain(0..start)
            .find_map(|i| match self.players[i].presence {
                Presence::Online {
                    server: s,
                    profile: pr,
                } if s == server && i != p && self.world.servers[s].engine().is_active(pr) => {
                    Some(pr)
                }
                _ => None,
            });
        let Some(partner) = partner else { return };
        if !self.world.servers[server].engine().is_active(profile) {
            return;
        }
        let host = &mut self.world.servers[server].host;
        // The receiver's Data must take the item before the giver's gives it up.
        if host.data.get_mut(&partner).and_then(table_mut).is_none() {
            return;
        }
        let item = host
            .data
            .get_mut(&profile)
            .and_then(|d| d.get_mut("Items"))
            .and_then(Value::as_array_mut)
            .and_then(|a| a.pop());
        if let Some(item) = item {
            let id = item.as_str().unwrap_or_default();
            let copies_left = copies(entries(&host.data[&profile]["Items"]), id);
            let receiver_had = copies(entries(&host.data[&partner]["Items"]), id);
            push(
                host.data.get_mut(&partner).expect("checked"),
                "Items",
                item.clone(),
            );
            let engine = self.world.servers[server].engine();
            let (giver, receiver) = (engine.profile(profile), engine.profile(partner));
            let trade = Trade {
                item: item.as_str().unwrap_or_default().to_string(),
                from: giver.map(|x| x.key.clone()).unwrap_or_default(),
                to: receiver.map(|x| x.key.clone()).unwrap_or_default(),
                server,
                at: self.world.now,
                giver_saved: false,
                giver_held: false,
                giver_left: copies_left,
                came_back: false,
                giver_generation: giver.map_or(0, |x| x.session_load_count),
                receiver_kept: false,
                receiver_had,
                passed_on: None,
                receiver_generation: receiver.map_or(0, |x| x.session_load_count),
            };
            // What the two keys store now: a giver's side lost leaves a copy only where its key
            // held the item; an item back with the session that gave it away (no write stored
            // that) is stored on the receiver's side already if its key still holds it.
            let mut trade = trade;
            // A value the storage cannot read is reported as such ([`Observations::unreadable`])
            // and taken as holding the item: a copy it explains is not a false dupe on top.
            let (world, unreadable) = (&mut self.world, &mut self.observed.unreadable);
            let mut stored_copies = |key: &str| match world.read_stored(STORE, key) {
                Ok(stored) => {
                    stored.map_or(0, |v| copies(entries(&v["Data"]["Items"]), &trade.item))
                }
                Err(e) => {
                    unreadable.push((key.to_string(), world.now, e.to_string()));
                    usize::MAX
                }
            };
            trade.giver_held = stored_copies(&trade.from) > trade.giver_left;
            let receiver_stored = stored_copies(&trade.to);
            let trades = &mut self.observed.trade_log;
            let index = trades.len();
            // The item comes back to a session that gave it away in a trade no write of it
            // stored: that trade's giver side is this session's again (whatever copy its key
            // keeps, this trade or a later one accounts for).
            let (giver, receiver) = (
                (server, Str::from(&trade.from)),
                (server, Str::from(&trade.to)),
            );
            if let Some(gives) = self.unsaved_gives.get_mut(&receiver) {
                let back = |i: usize| {
                    trades[i].item == trade.item
                        && trades[i].giver_generation == trade.receiver_generation
                };
                let mut matching = gives.iter().copied().filter(|&i| back(i));
                // One copy comes back: where the session gave the item more than once (it held
                // copies), the give this copy descends from; none if that is not known.
                let returned = match (matching.next(), matching.next()) {
                    (Some(only), None) => Some(only),
                    (Some(_), Some(_)) => self
                        .unkept_takes
                        .get(&giver)
                        .and_then(|takes| passing_take(trades, takes, &trade))
                        .and_then(|take| returning_give(trades, take, &trade))
                        .filter(|&i| gives.contains(&i)),
                    (None, _) => None,
                };
                if let Some(returned) = returned {
                    trades[returned].came_back = true;
                    // Its key still holds the copy that session gave away.
                    trade.receiver_kept |= receiver_stored > trades[returned].giver_left;
                    gives.retain(|&i| i != returned);
                }
                if gives.is_empty() {
                    self.unsaved_gives.remove(&receiver);
                }
            }
            // The giver passes on an item this session was given: that trade's receiver side
            // goes on with this one. (It stays pending: a write made before now may still land
            // holding the item.)
            if let Some(take) = self
                .unkept_takes
                .get(&giver)
                .and_then(|takes| passing_take(trades, takes, &trade))
            {
                trades[take].passed_on = Some(index);
            }
            self.unsaved_gives.entry(giver).or_default().push(index);
            self.unkept_takes.entry(receiver).or_default().push(index);
            trades.push(trade);
            self.observed.trades += 1;
        }
    }

    fn gift(&mut self, p: usize, server: usize) {
        let to = (self.rng.next_u64() % self.players.len() as u64) as usize;
        if to == p {
            return;
        }
        self.gift_seq += 1;
        let gift = format!("gift{}", self.gift_seq);
        let key = self.players[to].key.clone();
        let now = self.world.now_for(server);
        let input = Input::Message {
            now,
            store: self.store.live(),
            key: key.clone(),
            message: Value::from(profilestore_core::value::Map::from([(
                "Gift",
                gift.as_str(),
            )])),
        };
        if let InputResult::Call(Ok(call)) = self.world.feed(server, input) {
            self.gifting[server].insert(call, (gift, key));
        }
    }

    /// Reads new log entries: session starts, gifts, deliveries, saves, errors, who each
    /// write says holds its key's lock. Then lets go of the lines read unless the log is kept.
    pub(crate) fn react(&mut self) {
        while self.seen < self.world.log.len() {
            let entry = &mut self.world.log[self.seen];
            self.seen += 1;
            let (s, t) = (entry.server, entry.t);
            let output = match &mut entry.what {
                Happening::Output(output) => output,
                Happening::Write {
                    key, value, call, ..
                } => {
                    self.observed.note_write(key, value, t);
                    // A session's own writes (not a `MessageAsync`'s, which stores the stored
                    // `Data` again) tell which sides of its trades are stored.
                    if call.is_none() {
                        let trades = &mut self.observed.trade_log;
                        let pending = (&mut self.unsaved_gives, &mut self.unkept_takes);
                        let confirmed = confirm_write(trades, pending, s, key, value);
                        // A write its server sent before it died lands with no `OnAfterSave`.
                        if self.observed.died_at.contains_key(&s) {
                            self.observed.gives_saved_by_late_writes += confirmed;
                        }
                    }
                    continue;
                }
                // A crash, or the kill at the end of a shutdown's BindToClose budget.
                Happening::Crashed => {
                    self.observed.died_at.entry(s).or_insert(t);
                    if self.closing[s] {
                        self.observed.killed.insert(s);
                    }
                    continue;
                }
                _ => continue,
            };
            match output {
                Output::Completion(Completion::SessionStart { call, profile }) => {
                    let (call, profile) = (*call, profile.as_ref().map(|l| l.profile));
                    self.on_started(s, call, profile, t);
                }
                Output::Completion(Completion::Message { call, ok }) => {
                    if let Some((gift, key)) = self.gifting[s].remove(call)
                        && *ok
                    {
                        let sent = SentGift {
                            to: key,
                            server: s,
                            call: *call,
                            at: t,
                        };
                        self.observed.gifts_sent.insert(gift, sent);
                    }
                }
                Output::Event(Event::Message {
                    profile,
                    id,
                    payload,
                    to: Delivery::AllHandlers | Delivery::Handler(0),
                }) => {
                    let (profile, id) = (*profile, *id);
                    let gift = payload.get("Gift").and_then(Value::as_str);
                    let gift = gift.map(|g| format!("{g}#{id}"));
                    self.on_message(s, profile, id, gift, t);
                }
                Output::Event(Event::OnAfterSave {
                    profile,
                    last_saved_data,
                }) => {
                    // The log keeps the signal, not the data: a long run would otherwise hold
                    // every LastSavedData it ever saw (the invariant checks do not need them).
                    let profile = *profile;
                    let saved = std::mem::take(last_saved_data);
                    self.on_after_save(s, profile, &saved, t);
                }
                Output::Event(Event::OnSessionEnd { profile }) => {
                    let online = Presence::Online {
                        server: s,
                        profile: *profile,
                    };
                    if let Some(&p) = self.session_players.get(&(s, *profile))
                        && self.players[p].presence == online
                    {
                        self.set_presence(p, Presence::Offline);
                        self.next_at[p] = self.world.now + 1.0;
                    }
                }
                Output::Event(Event::OnError { .. }) => self.observed.errors += 1,
                Output::Event(Event::OnCriticalToggle { .. }) => {
                    self.observed.critical_toggles += 1
                }
                _ => {}
            }
        }
        if !self.keep_log {
            self.world.log.forget_before(self.seen);
        }
    }

    /// The message handler, given message `id` (carrying `gift`, noted as `gift#message_id`)
    /// for `profile` on server `s`: applies it and marks it processed now, after a yield, or
    /// leaves it for a later session ([`HandlerChoice`]).
    fn on_message(&mut self, s: usize, profile: ProfileId, id: i64, gift: Option<String>, t: f64) {
        self.observed
            .deliveries
            .entry((s, profile, id))
            .or_insert(Deliveries {
                count: 0,
                first_at: t,
            })
            .count += 1;
        let (after_yield, later) = self.handler_shares;
        let draw = self.handler_rng.next_f64();
        let choice = if self.settling {
            HandlerChoice::AtOnce
        } else if draw < after_yield {
            HandlerChoice::AfterYield
        } else if draw < after_yield + later {
            HandlerChoice::Later
        } else {
            HandlerChoice::AtOnce
        };
        match choice {
            HandlerChoice::AtOnce => {
                self.observed.handled.at_once += 1;
                self.apply_gift(s, profile, id, gift);
            }
            HandlerChoice::AfterYield => {
                self.observed.handled.after_yield += 1;
                self.yielded.push_back(YieldedHandler {
                    at: self.world.now + HANDLER_YIELD,
                    server: s,
                    profile,
                    id,
                    gift,
                });
            }
            HandlerChoice::Later => self.observed.handled.later += 1,
        }
    }

    /// Applies `gift` to `profile`'s `Data` and marks message `id` processed, with no yield
    /// between.
    fn apply_gift(&mut self, s: usize, profile: ProfileId, id: i64, gift: Option<String>) {
        if let Some(gift) = gift
            && let Some(data) = self.world.servers[s].host.data.get_mut(&profile)
        {
            push(data, "Gifts", Value::from(gift.as_str()));
        }
        let _ = self.world.feed(s, Input::MessageProcessed { profile, id });
    }

    /// Handlers whose yield is over go on: each applies its gift if its session is still
    /// active (its server alive, the profile not ended), else does nothing.
    fn resume_handlers(&mut self) {
        while let Some(h) = self.yielded.front()
            && h.at <= self.world.now
        {
            let Some(h) = self.yielded.pop_front() else {
                break;
            };
            let server = &self.world.servers[h.server];
            if server.alive && server.engine().is_active(h.profile) {
                self.apply_gift(h.server, h.profile, h.id, h.gift);
            } else {
                self.observed.handled.yield_outlived += 1;
            }
        }
    }

    /// `OnAfterSave`: the op ids in `LastSavedData` are acknowledged. An op id is applied
    /// once, to one `Data`, and `Ops` is only appended to or copied whole; so a `LastSavedData`
    /// holding the player's last acknowledged op at the same place holds everything before it
    /// too, and only the entries after it are read.
    fn on_after_save(&mut self, s: usize, profile: ProfileId, saved: &LastSavedData, t: f64) {
        let saved: &Value = saved;
        if let Some(&p) = self.session_players.get(&(s, profile)) {
            let ops = saved
                .get("Ops")
                .and_then(Value::as_array)
                .map_or(&[][..], |a| a.as_slice());
            let done = &mut self.acked_upto[p];
            let extends = done.0 <= ops.len()
                && (done.0 == 0 || ops[done.0 - 1].as_str() == Some(done.1.as_str()));
            let from = if extends { done.0 } else { 0 };
            if let Some(last) = ops.last().and_then(Value::as_str) {
                *done = (ops.len(), last.to_string());
            }
            let acked = &mut self.observed.acked_ops[p];
            for op in ops[from..].iter().filter_map(Value::as_str) {
                acked.insert(op, t);
            }
        }
        // The game drops its reference to an ended session's profile: the engine forgets it
        // (as Luau's collector would), so long runs stay bounded. A profile with a save still
        // queued is dropped by the engine when that save finishes; the host's copy of its
        // Data goes at the next `OnAfterSave` seen after that.
        if !self.world.servers[s].engine().is_active(profile) {
            let _ = self.world.feed(s, Input::ForgetProfile { profile });
            let server = &mut self.world.servers[s];
            if server.engine().profile(profile).is_none() {
                server.host.data.remove(&profile);
                server.host.roblox_metadata.remove(&profile);
            }
        }
    }

    fn on_started(&mut self, s: usize, call: CallId, profile: Option<ProfileId>, t: f64) {
        let Some(p) = self.joining[s].remove(&call) else {
            return;
        };
        // Call ids are each engine's own: the start is the player's current one only if it is
        // on this server too.
        let current = matches!(
            self.players[p].presence,
            Presence::Joining { call: c, server, .. } if c == call && server == s
        );
        if !current {
            // A start the player left and a later log-in replaced: counted like any start; the
            // game ends a profile it returns at once.
            match profile {
                Some(profile) => {
                    self.profile_keys
                        .insert((s, profile), self.players[p].key.clone());
                    self.observed.sessions += 1;
                    let now = self.world.now_for(s);
                    self.world.feed(s, Input::EndSession { now, profile });
                }
                None => {
                    *self
                        .observed
                        .failures
                        .entry(StartFailure::Replaced)
                        .or_default() += 1;
                }
            }
            return;
        }
        let Presence::Joining {
            since,
            handoff,
            cancellable,
            left_at,
            flagged,
            ..
        } = self.players[p].presence.clone()
        else {
            return;
        };
        let took = t - since;
        // A start reported when it ran past the bound is not checked again.
        let healthy = !flagged && self.healthy_since(since);
        match profile {
            Some(profile) => {
                self.profile_keys
                    .insert((s, profile), self.players[p].key.clone());
                self.session_players.insert((s, profile), p);
                self.observed.sessions += 1;
                self.observed.start_times.push(took);
                if handoff {
                    self.observed.handoffs.push(took);
                }
                self.observed.healthy_starts += u64::from(healthy);
                if took > HANDOFF_BOUND && healthy {
                    self.observed.slow_healthy_starts.push((
                        self.players[p].key.clone(),
                        since,
                        format!("took {took:.1} s"),
                    ));
                }
                if left_at.is_some() {
                    // The player left while it loaded: the game ends the profile at once.
                    let now = self.world.now_for(s);
                    self.world.feed(s, Input::EndSession { now, profile });
                    self.set_presence(p, Presence::Offline);
                    let wait = self.exp(30.0);
                    self.next_at[p] = self.world.now + wait;
                    return;
                }
                let _ = self.world.feed(s, Input::AddMessageHandler { profile });
                self.set_presence(p, Presence::Online { server: s, profile });
                let stay = self.exp(self.config.stay);
                self.players[p].leave_at = self.world.now + stay;
                self.next_at[p] = self.world.now;
            }
            None => {
                let engine = self.world.servers[s].engine();
                let reason = StartFailure::of(StartEnd {
                    closing: engine.is_closing(),
                    cancelled: self.world.servers[s].host.cancelled.contains(&call),
                    waited_after_leaving: left_at.map(|at| at - since),
                    cancellable,
                    took,
                    timeout: engine.constants().start_session_timeout,
                });
                *self.observed.failures.entry(reason).or_default() += 1;
                if reason == StartFailure::Unexplained {
                    let key = self.players[p].key.clone();
                    let what = format!(
                        "returned no profile after {took:.1} s, neither cancelled, timed out \
                         nor closing"
                    );
                    self.observed.unexplained_starts.push((key, since, what));
                }
                // A player gives up only after waiting HANDOFF_BOUND: a healthy start that ends
                // cancelled missed the bound as surely as one that succeeded late. One the
                // player left earlier says nothing about the bound.
                // (An unexplained one is a violation of its own.)
                let judged = !matches!(
                    reason,
                    StartFailure::Closing | StartFailure::Left | StartFailure::Unexplained
                );
                if healthy && judged {
                    self.observed.healthy_starts += 1;
                    let outcome = match reason {
                        StartFailure::Cancelled => {
                            format!("returned no profile in {took:.1} s: the player gave up")
                        }
                        _ => format!("returned no profile ({reason:?})"),
                    };
                    self.observed.slow_healthy_starts.push((
                        self.players[p].key.clone(),
                        since,
                        outcome,
                    ));
                }
                self.set_presence(p, Presence::Offline);
                self.next_at[p] = self.world.now + 2.0;
            }
        }
    }

    /// Turns faults on or off at `t` by [`FleetConfig::fault_period`].
    fn set_fault_phase(&mut self, t: f64) {
        let Some(period) = self.config.fault_period else {
            return;
        };
        let faulty = ((t / period).floor() as u64).is_multiple_of(2);
        if faulty == self.healthy_from.is_none() && t > 0.0 {
            return;
        }
        self.set_faults(if faulty { self.fault_rate } else { 0.0 });
        self.healthy_from = (!faulty).then_some(t);
    }

    /// DataStore faults (four fifths plain, one fifth ambiguous, as [`Fleet::new`] sets them)
    /// and message loss at `rate`: the fault rate [`Fleet::new`] checked, or 0, which neither
    /// service refuses.
    fn set_faults(&mut self, rate: f64) {
        let datastore = self.world.datastore.set_fault_rates(rate * 0.8, rate * 0.2);
        let messaging = self.world.messaging.set_loss(rate);
        debug_assert!(
            datastore.is_ok() && messaging.is_ok(),
            "{datastore:?} {messaging:?}"
        );
    }

    /// Whether a start that began at `since` is held to [`HANDOFF_BOUND`]: the DataStore was
    /// healthy for the whole bound after it (from a second before), so a start that missed it
    /// missed it with nothing to blame. A start made late in a healthy stretch is not held to
    /// it, whenever it returns: had it hung, faults would have come back before the bound.
    fn healthy_since(&self, since: f64) -> bool {
        !self.config.faulty_between(since, since + HANDOFF_BOUND)
    }

    /// Faults off; everyone leaves; players with undelivered gifts log in once more; every
    /// final save lands.
    fn settle(&mut self) {
        // Healthy from now on; a healthy stretch under way goes on (its starts stay checked).
        self.healthy_from = Some(self.healthy_from.unwrap_or(self.world.now));
        self.set_faults(0.0);
        self.settling = true;
        let end = self.world.now;
        // Let pending starts, teleports and yielding handlers finish, then everyone leaves.
        self.advance(end + HANDLER_YIELD);
        self.resume_handlers();
        self.advance(end + 5.0);
        self.end_teleported();
        self.advance(end + 70.0);
        for round in 0..2 {
            for p in 0..self.players.len() {
                if let Presence::Online { server, profile } = self.players[p].presence {
                    if self.world.servers[server].alive {
                        let now = self.world.now_for(server);
                        self.world.feed(server, Input::EndSession { now, profile });
                    }
                    self.set_presence(p, Presence::Offline);
                }
            }
            let t = self.world.now;
            self.advance(t + 60.0);
            if round == 0 {
                // Gift recipients log in once to collect.
                let recipients: BTreeSet<String> = self
                    .observed
                    .gifts_sent
                    .values()
                    .map(|g| g.to.clone())
                    .collect();
                let alive = self.alive_servers();
                for p in 0..self.players.len() {
                    // A recipient still loading from before gets that session instead; one who
                    // left while loading logs in again (the game ends what that start returns).
                    let offline = matches!(
                        self.players[p].presence,
                        Presence::Offline
                            | Presence::Joining {
                                left_at: Some(_),
                                ..
                            }
                    );
                    if offline && recipients.contains(&self.players[p].key) && !alive.is_empty() {
                        let server = alive[p % alive.len()];
                        self.join(p, server, false);
                    }
                }
                let t = self.world.now;
                self.advance(t + 70.0);
            }
        }
    }

    /// Session starts on servers still running that never returned: (player key, when the
    /// call was made, if the player still waits on it). After [`Fleet::run`] settles, every
    /// start has returned a profile or nil.
    pub fn unanswered_starts(&self) -> Vec<(String, Option<f64>)> {
        // Sorted by key, time, then server and call: no order of the hash map reaches it.
        let mut pending = Vec::new();
        for (s, calls) in self.joining.iter().enumerate() {
            if !self.world.servers[s].alive {
                continue;
            }
            for (&call, &p) in calls {
                let since = match self.players[p].presence {
                    Presence::Joining {
                        call: c,
                        server,
                        since,
                        ..
                    } if c == call && server == s => Some(since),
                    _ => None,
                };
                pending.push((self.players[p].key.clone(), since, s, call));
            }
        }
        pending.sort_by(|a, b| {
            let since = |t: Option<f64>| t.unwrap_or(f64::NEG_INFINITY);
            (a.0.cmp(&b.0))
                .then(since(a.1).total_cmp(&since(b.1)))
                .then((a.2, a.3).cmp(&(b.2, b.3)))
        });
        pending
            .into_iter()
            .map(|(key, since, ..)| (key, since))
            .collect()
    }

    /// Keys of all players.
    pub fn keys(&self) -> Vec<String> {
        self.players.iter().map(|p| p.key.clone()).collect()
    }
}

/// The game script's start on server `s`: `ProfileStore.New` of the fleet's store.
fn open_store(world: &mut World, s: usize) -> Option<StoreId> {
    let template = json!({"Counter": 0, "Ops": [], "Items": [], "Gifts": []});
    match world.feed(
        s,
        Input::NewStore {
            name: STORE.into(),
            template,
        },
    ) {
        InputResult::Store(Ok(id)) => Some(id),
        _ => None,
    }
}

/// `{key}{tag}{n}` (an op or item id), built without `format!`: a run makes one per
/// gameplay operation.
fn numbered(key: &str, tag: &str, n: u64) -> Str {
    let mut digits = itoa::Buffer::new();
    Str::concat(&[key, tag, digits.format(n)])
}

/// The player's `Data` as an object: an empty Luau table is stored as `[]` (fixtures
/// README), and the game treats it as the empty table it is; any other non-object `Data` is
/// left alone (`None`).
fn table_mut(data: &mut Value) -> Option<&mut profilestore_core::value::Object> {
    if data.as_array().is_some_and(|a| a.is_empty()) {
        *data = json!({});
    }
    data.as_object_mut()
}

fn push(data: &mut Value, field: &str, v: Value) {
    if let Some(table) = table_mut(data) {
        push_to(table, field, v);
    }
}

/// [`push`] to a `Data` table already in hand.
fn push_to(table: &mut Map, field: &str, v: Value) {
    // Look the field up before making a key for it: it is there on every push but the first.
    if let Some(list) = table.get_mut(field).and_then(Value::as_array_mut) {
        list.push(v);
        return;
    }
    table.insert(field.into(), Value::from(vec![v]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::Logged;

    /// A trade that cannot read a key's stored value (a corrupt row on disk) notes the
    /// storage's error, naming the key, and takes the key as holding the item; the checks
    /// report it (issue "harness" §4: a violation names the key).
    #[test]
    fn a_trade_that_cannot_read_a_stored_value_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.db");
        let storage = crate::storage::SqliteStorage::open(&path).unwrap();
        let config = FleetConfig::new(5, 1, 10, 600.0, 0.0);
        let mut fleet = Fleet::new(config, Box::new(storage)).unwrap();
        let mut t = 0.0;
        while t < 60.0 {
            t = fleet.play_second(t);
        }
        // A player online whose Data holds an item to give, with a partner online.
        let online: Vec<(usize, ProfileId)> = (0..fleet.players.len())
            .filter_map(|p| match fleet.players[p].presence {
                Presence::Online { profile, .. } => Some((p, profile)),
                _ => None,
            })
            .collect();
        let host = &fleet.world.servers[0].host;
        let &(p, profile) = online
            .iter()
            .find(|(_, pr)| !entries(&host.data[pr]["Items"]).is_empty())
            .expect("a player online with an item");
        assert!(online.len() > 1, "a partner online");
        let key = fleet.players[p].key.clone();
        assert!(fleet.world.read_stored(STORE, &key).unwrap().is_some());
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute("UPDATE keys SET value = '{oops' WHERE key = ?1", [&key])
            .unwrap();
        let trades = fleet.observed.trades;
        fleet.trade(p, 0, profile);
        assert_eq!(fleet.observed.trades, trades + 1);
        let trade = fleet.observed.trade_log.last().unwrap();
        assert_eq!(
            (trade.from.as_str(), trade.giver_held),
            (key.as_str(), true)
        );
        let error =
            format!("corrupt stored data for {STORE}/global/{key}: column value is not valid JSON");
        let [(noted, at, e)] = fleet.observed.unreadable.clone().try_into().unwrap_or_else(
            |u: Vec<(String, f64, String)>| panic!("one unreadable value noted: {u:?}"),
        );
        assert_eq!((&noted, at), (&key, fleet.world.now));
        assert!(e.starts_with(&error), "{e}");
        let found = crate::invariants::check(&mut fleet);
        let trade_read = format!("a trade at t={at:.1} could not read the stored value: {error}");
        assert!(
            found
                .iter()
                .any(|v| v.invariant == "stored values read back"
                    && v.key == key
                    && v.detail.starts_with(&trade_read)),
            "{found:#?}"
        );
    }

    /// A start's nil is told by its cause, in order; a start without `Cancel` that the engine
    /// timed out at the frame its deadline fell due counts as timed out even when the wait,
    /// measured between frame times, comes out an ulp short of the timeout.
    #[test]
    fn a_failed_start_is_told_by_its_cause() {
        let end = StartEnd {
            closing: false,
            cancelled: false,
            waited_after_leaving: None,
            cancellable: false,
            took: 120.0,
            timeout: 120.0,
        };
        assert_eq!(StartFailure::of(end), StartFailure::TimedOut);
        let frame = (1..100_000u32)
            .map(f64::from)
            .find(|f| (f + 7200.0) / 60.0 - f / 60.0 < 120.0)
            .expect("a frame whose 120 s wait rounds short");
        let short = (frame + 7200.0) / 60.0 - frame / 60.0;
        let ends = [
            (StartEnd { took: short, ..end }, StartFailure::TimedOut),
            (StartEnd { took: 119.0, ..end }, StartFailure::Unexplained),
            (
                StartEnd {
                    cancellable: true,
                    ..end
                },
                StartFailure::Unexplained,
            ),
            (
                StartEnd {
                    cancelled: true,
                    waited_after_leaving: Some(HANDOFF_BOUND + 1.0),
                    ..end
                },
                StartFailure::Cancelled,
            ),
            (
                StartEnd {
                    cancelled: true,
                    waited_after_leaving: Some(3.0),
                    ..end
                },
                StartFailure::Left,
            ),
            (
                StartEnd {
                    closing: true,
                    cancelled: true,
                    ..end
                },
                StartFailure::Closing,
            ),
        ];
        for (end, expected) in ends {
            assert_eq!(StartFailure::of(end), expected, "{end:?}");
        }
    }

    /// Faults come and go with the fault period (on first), and are off in the settle phase;
    /// a window is looked at a second wider before its start.
    #[test]
    fn faults_are_on_by_the_configured_periods() {
        let mut config = FleetConfig::new(1, 1, 1, 500.0, 0.05);
        config.fault_period = Some(100.0);
        let cases = [
            (0.0, 10.0, true),
            (90.0, 150.0, true),
            (100.0, 150.0, true),
            (101.5, 199.0, false),
            // The instant faults switch off (100 s, reached from 101 widened) was faulty.
            (101.0, 150.0, true),
            (150.0, 200.0, true),
            (320.0, 390.0, false),
            (450.0, 600.0, true),
            // The settle phase (after 500 s) is healthy.
            (510.0, 600.0, false),
            // An empty window.
            (150.0, 120.0, false),
        ];
        for (from, to, faulty) in cases {
            assert_eq!(config.faulty_between(from, to), faulty, "{from}..{to}");
        }
        config.fault_period = None;
        assert!(config.faulty_between(320.0, 390.0));
        assert!(!config.faulty_between(510.0, 600.0));
        config.faults = 0.0;
        assert!(!config.faulty_between(0.0, 100.0));
    }

    /// An empty Luau table is stored as `[]`: the game's writes treat it as a table; any other
    /// non-table Data is left as it is rather than panicking.
    #[test]
    fn gameplay_writes_take_an_empty_array_as_a_table() {
        let mut data = json!([]);
        push(&mut data, "Ops", json!("op1"));
        assert_eq!(data, json!({"Ops": ["op1"]}));
        let mut data = json!({"Ops": 3, "Keep": true});
        push(&mut data, "Ops", json!("op1"));
        assert_eq!(data, json!({"Ops": ["op1"], "Keep": true}));
        let mut data = json!([1, 2]);
        push(&mut data, "Ops", json!("op1"));
        assert_eq!(data, json!([1, 2]));
        assert!(table_mut(&mut json!("text")).is_none());
    }

    /// A generation is taken when a later one is written while the key still named another
    /// server as its holder (a steal); one its holder released, by a final save or after a
    /// force-load request, or bumped itself, is not. Whole values and the log's summaries read
    /// alike.
    #[test]
    fn a_generation_locked_when_the_next_is_written_was_taken() {
        let value = |count: i64, job: Option<&str>| {
            let mut meta = json!({"SessionLoadCount": count});
            if let Some(job) = job {
                meta["ActiveSession"] = json!([1001, job]);
            }
            json!({"Data": {}, "MetaData": meta})
        };
        let mut obs = Observations::default();
        let (a, b) = (Str::from("A"), Str::from("B"));
        for (t, key, count, job) in [
            (1.0, &a, 1, Some("S0")),
            (2.0, &a, 1, Some("S0")),
            // A released generation 1, and S1 took generation 2 after it: a hand-off.
            (3.0, &a, 1, None),
            (4.0, &a, 2, Some("S1")),
            // S0 took generation 2 while S1 still held it: a steal.
            (5.0, &a, 3, Some("S0")),
            // S1 bumped its own lock (a start retried after an ambiguous failure): no loss.
            (5.0, &b, 4, Some("S1")),
            (6.0, &b, 5, Some("S1")),
            // S2 took generation 5 from S1, read off the log's summaries.
            (7.0, &b, 6, Some("S2")),
        ] {
            let v = value(count, job);
            if t >= 6.0 {
                obs.note_write(key, &crate::invariants::summarize_write(&v), t);
            } else {
                obs.note_write(key, &v, t);
            }
        }
        let taken: Vec<_> = obs.taken_generations.clone().into_iter().collect();
        assert_eq!(
            taken,
            [(("A".to_string(), 2), 5.0), (("B".to_string(), 5), 7.0)]
        );
        assert_eq!(obs.last_generation[&a], (3, Some(Str::from("S0"))));
        assert!(obs.generations_gone_back.is_empty());
        // S1, whose generation 2 S0 took, releases it as if it still held it: the write
        // goes back a generation (and leaves the key unlocked under S0's session).
        obs.note_write(&a, &value(2, None), 8.0);
        obs.note_write(&a, &value(4, Some("S1")), 9.0);
        assert_eq!(obs.generations_gone_back, [("A".to_string(), 3, 2, 8.0)]);
    }

    /// A start of `call` on `server`, made at `since`, the player still waiting on it.
    fn waiting(server: usize, call: u64, since: f64, cancellable: bool) -> Presence {
        Presence::Joining {
            server,
            call: CallId(call),
            since,
            handoff: false,
            cancellable,
            left_at: None,
            flagged: false,
        }
    }

    /// Player `p` waits on server 0 for a start (without `Cancel`) made a second more than the
    /// bound ago, and acts now; returns when the start was made.
    fn due_past_the_bound(fleet: &mut Fleet, p: usize) -> f64 {
        let since = fleet.world.now - HANDOFF_BOUND - 1.0;
        fleet.set_presence(p, waiting(0, 999_998, since, false));
        fleet.next_at[p] = fleet.world.now;
        since
    }

    /// For a player who gave up on a start: whether it was reported as missing the bound.
    fn gave_up_flagged(presence: &Presence) -> Option<bool> {
        match presence {
            Presence::Joining {
                left_at: Some(_),
                flagged,
                ..
            } => Some(*flagged),
            _ => None,
        }
    }

    /// `run_until` stops where its caller says, after playing exactly what a run of that
    /// length plays, and does not settle; `run` plays to the end and settles.
    #[test]
    fn a_run_stops_where_its_caller_says() {
        let fleet = |duration| {
            let config = FleetConfig::new(3, 2, 6, duration, 0.0);
            Fleet::new(config, Box::new(crate::storage::MemoryStorage::new())).unwrap()
        };
        let mut stopped = fleet(180.0);
        let mut seen = Vec::new();
        let played = stopped.run_until(|_, t| {
            seen.push(t);
            if t >= 30.0 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(played, Played::Stopped { at: 30.0 });
        assert_eq!(seen, (1..=30).map(f64::from).collect::<Vec<_>>());
        assert_eq!((stopped.world.now, stopped.settling), (30.0, false));
        // What a 30-second run plays before it settles.
        let mut short = fleet(30.0);
        assert_eq!(
            short.run_until(|_, _| ControlFlow::Continue(())),
            Played::Settled
        );
        assert!(short.world.now > 30.0 + 60.0, "settled after its play");
        assert_eq!(stopped.world.request_total(), short.played_requests);
        assert!(short.played_requests > 0);
    }

    /// A sound run of two servers and six players, three virtual minutes, no faults.
    fn sound_fleet() -> Fleet {
        let mut fleet = Fleet::new(
            FleetConfig::new(3, 2, 6, 180.0, 0.0),
            Box::new(crate::storage::MemoryStorage::new()),
        )
        .expect("a valid fleet configuration");
        fleet.run(|_| {});
        assert_eq!(crate::invariants::check(&mut fleet), vec![]);
        fleet
    }

    /// A trade of `item` from `Player_1` to `Player_2` on server 1 at `at`, by the given
    /// generations of their sessions, neither side confirmed.
    fn unconfirmed_trade(item: &str, at: f64, giver: i64, receiver: i64) -> Trade {
        Trade {
            item: item.into(),
            from: "Player_1".into(),
            to: "Player_2".into(),
            server: 1,
            at,
            giver_saved: false,
            giver_held: false,
            giver_left: 0,
            came_back: false,
            giver_generation: giver,
            receiver_kept: false,
            receiver_had: 0,
            passed_on: None,
            receiver_generation: receiver,
        }
    }

    /// A committed write of `key` by server 1 at `now`: its whole value (as the log keeps a
    /// write landing after its server died), or the fleet's summary of it.
    fn write_of(now: f64, key: &str, generation: i64, items: Value, whole: bool) -> Logged {
        let value = json!({"Data": {"Items": items}, "MetaData": {"SessionLoadCount": generation}});
        Logged {
            t: now,
            server: 1,
            what: Happening::Write {
                store: "PlayerData:global".into(),
                key: key.into(),
                value: if whole {
                    value
                } else {
                    crate::invariants::summarize_write(&value)
                },
                user_ids: Vec::new(),
                metadata: json!({}),
                call: None,
            },
        }
    }

    /// Trades of `items` from `Player_1` (generation 1) to `Player_2` (generation 7) on
    /// server 1, pending on both sides, in a sound run: (fleet, index of the first).
    fn pending_trades(items: &[&str]) -> (Fleet, usize) {
        let mut fleet = sound_fleet();
        let now = fleet.world.now;
        let base = fleet.observed.trade_log.len();
        for (i, item) in items.iter().enumerate() {
            let trade = unconfirmed_trade(item, now - 10.0, 1, 7);
            fleet.observed.trade_log.push(trade);
            let index = base + i;
            let gives = fleet.unsaved_gives.entry((1, "Player_1".into()));
            gives.or_default().push(index);
            let takes = fleet.unkept_takes.entry((1, "Player_2".into()));
            takes.or_default().push(index);
        }
        (fleet, base)
    }

    /// Server 1 crashes; then a write of `key` it sent before lands, logged whole.
    fn crash_then_write(fleet: &mut Fleet, key: &str, generation: i64, items: Value) {
        fleet.world.crash(1);
        let late = write_of(fleet.world.now, key, generation, items, true);
        fleet.world.log.push(late);
        fleet.react();
    }

    /// Each trade's (giver_saved, receiver_kept), from `base` on.
    fn sides(fleet: &Fleet, base: usize) -> Vec<(bool, bool)> {
        let trades = &fleet.observed.trade_log[base..];
        trades
            .iter()
            .map(|t| (t.giver_saved, t.receiver_kept))
            .collect()
    }

    /// The receiver's side of a trade is kept as the receiver's own session last wrote it:
    /// by a committed write whose `Data.Items` holds the item, read off the fleet's write
    /// summary (whatever the save's caller was told: an ambiguous fault, a hand-off) or off a
    /// whole value landing after the server died, until a later one without it; not by a
    /// write of another session of the key (the taker's), of another key, or by a
    /// `MessageAsync` (which stores the stored `Data` again). Not passed on, each stays
    /// pending.
    #[test]
    fn a_receivers_write_holding_the_item_keeps_its_side() {
        let (mut fleet, base) = pending_trades(&["a", "b", "c"]);
        let now = fleet.world.now;
        for (key, generation, items) in [
            ("Player_2", 8, json!(["a", "b"])),
            ("Player_2", 7, json!([])),
            ("Player_3", 7, json!(["a", "b"])),
            ("Player_2", 7, json!(["a"])),
        ] {
            let write = write_of(now, key, generation, items, false);
            fleet.world.log.push(write);
        }
        // A `MessageAsync` write of the key by that server stores the stored `Data` again:
        // not the session's.
        let mut message = write_of(now, "Player_2", 7, json!(["b", "c"]), false);
        if let Happening::Write { call, .. } = &mut message.what {
            *call = Some(CallId(1));
        }
        fleet.world.log.push(message);
        fleet.react();
        let kept = [(false, true), (false, false), (false, false)];
        assert_eq!(sides(&fleet, base), kept);
        crash_then_write(&mut fleet, "Player_2", 7, json!(["b"]));
        let kept = [(false, false), (false, true), (false, false)];
        assert_eq!(sides(&fleet, base), kept);
        let takes = fleet.unkept_takes.get(&(1, "Player_2".into()));
        assert_eq!(takes, Some(&vec![base, base + 1, base + 2]));
        assert_eq!(fleet.observed.gives_saved_by_late_writes, 0);
    }

    /// A receiver's side passed on (the session traded the item on) stays pending while the
    /// session's writes hold the item (made before it went on); a write of the session without
    /// it means none later will, and it is no longer pending.
    #[test]
    fn a_receivers_side_passed_on_waits_for_the_sessions_writes() {
        let (mut fleet, base) = pending_trades(&["a", "b"]);
        let now = fleet.world.now;
        for i in [base, base + 1] {
            fleet.observed.trade_log[i].passed_on = Some(base + 5);
        }
        let write = write_of(now, "Player_2", 7, json!(["a"]), false);
        fleet.world.log.push(write);
        fleet.react();
        let kept = [(false, true), (false, false)];
        assert_eq!(sides(&fleet, base), kept);
        let takes = fleet.unkept_takes.get(&(1, "Player_2".into()));
        assert_eq!(takes, Some(&vec![base]));
        let write = write_of(now, "Player_2", 7, json!([]), false);
        fleet.world.log.push(write);
        fleet.react();
        assert_eq!(sides(&fleet, base), [(false, false), (false, false)]);
        assert_eq!(fleet.unkept_takes.get(&(1, "Player_2".into())), None);
    }

    /// The giver's side is stored by a committed write of the giver's own session without the
    /// item (one holding it shows the giver's key held it): one landing after the server died
    /// (with no `OnAfterSave`) is counted apart. A
    /// value without `Data.Items`, one of another session of the key (a later one on this
    /// server, or the taker's), or another key's confirms nothing.
    #[test]
    fn a_givers_write_without_the_item_stores_its_side() {
        let (mut fleet, base) = pending_trades(&["gone", "kept", "late"]);
        let now = fleet.world.now;
        for (key, generation, items) in [
            ("Player_3", 1, json!([])),
            ("Player_1", 1, json!(null)),
            ("Player_1", 2, json!([])),
            ("Player_1", 1, json!(["kept", "late"])),
        ] {
            let write = write_of(now, key, generation, items, false);
            fleet.world.log.push(write);
        }
        fleet.react();
        let saved = [(true, false), (false, false), (false, false)];
        assert_eq!(sides(&fleet, base), saved);
        assert_eq!(fleet.observed.gives_saved_by_late_writes, 0);
        // The write holding "kept" and "late", made before their trades, shows the giver's
        // key held them: the copies a lost giver's side leaves.
        let held: Vec<bool> = fleet.observed.trade_log[base..]
            .iter()
            .map(|t| t.giver_held)
            .collect();
        assert_eq!(held, [false, true, true]);
        crash_then_write(&mut fleet, "Player_1", 1, json!(["kept"]));
        let saved = [(true, false), (false, false), (true, false)];
        assert_eq!(sides(&fleet, base), saved);
        assert_eq!(fleet.observed.gives_saved_by_late_writes, 1);
        let gives = fleet.unsaved_gives.get(&(1, "Player_1".into()));
        assert_eq!(gives, Some(&vec![base + 1]));
    }

    /// A giver whose `Data` kept a copy of the item it gave (a copy an earlier torn trade left
    /// in its key, then given back to it) has its side stored by a write holding only that
    /// copy; a write holding both is one made before the trade (the key held the copy given).
    /// Counting presence alone, the giver's side would never be stored, and the trade would
    /// excuse a copy its giver never left.
    #[test]
    fn a_giver_keeping_a_second_copy_stores_its_side_by_count() {
        let (mut fleet, base) = pending_trades(&["twice"]);
        fleet.observed.trade_log[base].giver_left = 1;
        let now = fleet.world.now;
        let before = write_of(now, "Player_1", 1, json!(["twice", "twice"]), false);
        fleet.world.log.push(before);
        fleet.react();
        let trade = &fleet.observed.trade_log[base];
        assert_eq!((trade.giver_held, trade.giver_saved), (true, false));
        let after = write_of(now, "Player_1", 1, json!(["twice"]), false);
        fleet.world.log.push(after);
        fleet.react();
        assert_eq!(sides(&fleet, base), [(true, false)]);
        assert_eq!(fleet.unsaved_gives.get(&(1, "Player_1".into())), None);
    }

    /// A receiver whose `Data` held a copy of the item before the trade keeps the one it was
    /// given only by a write holding more copies than that.
    #[test]
    fn a_receiver_that_had_a_copy_keeps_its_side_by_count() {
        let (mut fleet, base) = pending_trades(&["twice"]);
        fleet.observed.trade_log[base].receiver_had = 1;
        let now = fleet.world.now;
        let mut kept = Vec::new();
        for items in [
            json!(["twice"]),
            json!(["twice", "twice"]),
            json!(["twice"]),
        ] {
            let write = write_of(now, "Player_2", 7, items, false);
            fleet.world.log.push(write);
            fleet.react();
            kept.push(fleet.observed.trade_log[base].receiver_kept);
        }
        assert_eq!(kept, [false, true, false]);
    }

    /// A copy handed back to a session that gave the item more than once (it held copies) is
    /// traced to the give it descends from, through the sessions that passed it on: that give
    /// alone came back. The other's copy is still out there, and its giver side, if lost,
    /// left one more copy.
    #[test]
    fn a_copy_handed_back_is_traced_to_its_own_give() {
        let trade = |from: &str, giver: i64, to: &str, receiver: i64| Trade {
            from: from.into(),
            to: to.into(),
            ..unconfirmed_trade("x", 10.0, giver, receiver)
        };
        let mut trades = vec![
            trade("G", 1, "B", 7),
            trade("G", 1, "C", 3),
            trade("B", 7, "D", 2),
        ];
        // B passes on the copy it was given last.
        let twice = trade("E", 4, "B", 7);
        assert_eq!(
            passing_take(&[trades[0].clone(), twice], &[0, 1], &trades[2]),
            Some(1)
        );
        assert_eq!(passing_take(&trades, &[0], &trades[2]), Some(0));
        trades[0].passed_on = Some(2);
        // D hands it back: from D's take (trade 2) back to B's, given by G.
        let back = trade("D", 2, "G", 1);
        assert_eq!(passing_take(&trades, &[2], &back), Some(2));
        assert_eq!(returning_give(&trades, 2, &back), Some(0));
        // Straight back from C, whose take is trade 1.
        let from_c = trade("C", 3, "G", 1);
        assert_eq!(passing_take(&trades, &[1], &from_c), Some(1));
        assert_eq!(returning_give(&trades, 1, &from_c), Some(1));
        // A take of another session of D, or one passed on already, is not this copy's way
        // back; nor does a chain that reaches no give of G's session name one.
        assert_eq!(passing_take(&trades, &[2], &trade("D", 5, "G", 1)), None);
        assert_eq!(passing_take(&trades, &[0], &trade("B", 7, "G", 1)), None);
        assert_eq!(returning_give(&trades, 2, &trade("D", 2, "G", 4)), None);
    }

    /// A start still waiting on a running server after the run is reported; one on a server
    /// that died is not (it can never return).
    #[test]
    fn a_start_that_never_returns_is_a_violation() {
        let mut fleet = sound_fleet();
        let (p, call) = (2, CallId(999_999));
        fleet.joining[1].insert(call, p);
        let since = fleet.world.now - 100.0;
        fleet.set_presence(p, waiting(1, call.0, since, true));
        let v = crate::invariants::check(&mut fleet);
        let found: Vec<_> = v.iter().map(|v| (v.invariant, v.key.as_str())).collect();
        assert_eq!(found, [("every start returns", "Player_2")]);
        assert_eq!(
            v[0].detail,
            format!("StartSessionAsync at t={since:.1} never returned")
        );
        fleet.world.crash(1);
        assert_eq!(fleet.unanswered_starts(), vec![]);
    }

    /// A start that runs past the bound while the DataStore stays healthy is reported when the
    /// player gives up, not only if it returns before faults come back.
    #[test]
    fn a_healthy_start_past_the_bound_is_reported_when_the_player_gives_up() {
        let (mut fleet, p) = (sound_fleet(), 4);
        let since = due_past_the_bound(&mut fleet, p);
        let checked = fleet.observed.healthy_starts;
        fleet.player_actions();
        assert_eq!(fleet.observed.healthy_starts, checked + 1);
        let slow: Vec<_> = fleet
            .observed
            .slow_healthy_starts
            .iter()
            .map(|(key, at, outcome)| (key.as_str(), *at, outcome.as_str()))
            .collect();
        let outcome = format!("had not returned after {:.1} s", HANDOFF_BOUND + 1.0);
        assert_eq!(slow, [("Player_4", since, outcome.as_str())]);
        assert_eq!(gave_up_flagged(&fleet.players[p].presence), Some(true));
    }

    /// A start on a server that is shutting down is not held to the bound when the player
    /// gives up (its completion would be excused as `Closing` too).
    #[test]
    fn a_start_on_a_closing_server_past_the_bound_is_not_reported() {
        let (mut fleet, p) = (sound_fleet(), 4);
        due_past_the_bound(&mut fleet, p);
        fleet.closing[0] = true;
        fleet.player_actions();
        assert_eq!(fleet.observed.slow_healthy_starts, vec![]);
        assert_eq!(gave_up_flagged(&fleet.players[p].presence), Some(false));
    }

    /// A player on a server that began shutting down that second plays no more there (its
    /// sessions have ended; Roblox removes its players) and does not rejoin it: the player is
    /// offline, and comes back on another server.
    #[test]
    fn a_closing_servers_players_are_removed_not_left_playing() {
        let config = FleetConfig::new(6, 2, 1, 60.0, 0.0);
        let storage = Box::new(crate::storage::MemoryStorage::new());
        let mut fleet = Fleet::new(config, storage).unwrap();
        fleet.join(0, 0, false);
        fleet.advance(2.0);
        assert!(matches!(
            fleet.players[0].presence,
            Presence::Online { server: 0, .. }
        ));
        fleet.world.shutdown(0);
        fleet.closing[0] = true;
        let ops = fleet.players[0].ops;
        fleet.next_at[0] = fleet.world.now;
        fleet.player_actions();
        assert_eq!(fleet.players[0].presence, Presence::Offline);
        assert_eq!(fleet.players[0].ops, ops, "no play on the closing server");
        assert_eq!(fleet.next_at[0], fleet.world.now + 5.0);
    }

    /// A start still waiting when its server stops is counted by how it stopped: crashed;
    /// killed, when the server was shutting down (the world kills it at the end of
    /// `BindToClose`); and unexplained when the server closed by itself (its `BindToClose`
    /// returned, which waits for every start: the start's answer went missing).
    #[test]
    fn a_start_waiting_when_its_server_stops_is_counted_by_how_it_stopped() {
        for (closing, killed, reason) in [
            (false, true, StartFailure::Crashed),
            (true, true, StartFailure::Killed),
            (true, false, StartFailure::Unexplained),
        ] {
            let mut fleet = sound_fleet();
            let p = 4;
            let now = fleet.world.now;
            fleet.set_presence(p, waiting(0, 999_997, now - 2.0, true));
            fleet.closing[0] = closing;
            if killed {
                fleet.world.crash(0);
                // What the fleet reads before its per-second bookkeeping.
                fleet.react();
            } else {
                fleet.world.shutdown(0);
                fleet.advance(now + 1.0);
                assert!(!fleet.world.servers[0].alive, "closed by itself");
            }
            let mut failures = fleet.observed.failures.clone();
            fleet.server_events();
            *failures.entry(reason).or_default() += 1;
            assert_eq!(fleet.observed.failures, failures, "closing {closing}");
            assert_eq!(fleet.players[p].presence, Presence::Offline);
            let unexplained = &fleet.observed.unexplained_starts;
            if reason == StartFailure::Unexplained {
                assert_eq!(
                    unexplained,
                    &[(
                        "Player_4".to_string(),
                        now - 2.0,
                        "was still waiting after 3.0 s when its server closed (its BindToClose \
                     returned, which waits for every start)"
                            .to_string()
                    )]
                );
            } else {
                assert_eq!(unexplained, &[]);
            }
        }
    }

    /// The answer to a start the player left, after a later log-in replaced it, leaves the
    /// later start's bookkeeping alone, and is counted.
    #[test]
    fn a_replaced_starts_answer_does_not_touch_the_later_start() {
        let mut fleet = sound_fleet();
        let (p, old, new) = (3, CallId(999_990), CallId(999_991));
        fleet.joining[0].insert(old, p);
        fleet.joining[1].insert(new, p);
        let later = waiting(1, new.0, fleet.world.now, true);
        fleet.set_presence(p, later.clone());
        let mut failures = fleet.observed.failures.clone();
        let sessions = fleet.observed.sessions;
        let t = fleet.world.now;
        fleet.on_started(0, old, None, t);
        assert_eq!(fleet.players[p].presence, later);
        assert_eq!(fleet.joining[1].get(&new), Some(&p));
        // It is counted, as replaced.
        *failures.entry(StartFailure::Replaced).or_default() += 1;
        assert_eq!(fleet.observed.failures, failures);
        // One that returns a profile counts as a session, attributed to its key, and ends.
        let (older, profile) = (CallId(999_992), ProfileId(888_888));
        fleet.joining[0].insert(older, p);
        fleet.on_started(0, older, Some(profile), t);
        assert_eq!(fleet.observed.sessions, sessions + 1);
        assert_eq!(
            fleet.profile_keys.get(&(0, profile)),
            Some(&fleet.players[p].key)
        );
        assert_eq!(fleet.observed.failures, failures);
        assert_eq!(fleet.players[p].presence, later);
    }

    /// `StartSessionAsync` for a key still loaded on that server throws at the call: counted
    /// as a refused start while the session a hop left waits for its `EndSession`, and as an
    /// unexplained one (a violation) otherwise.
    #[test]
    fn a_start_refused_at_the_call_is_counted() {
        let mut fleet = sound_fleet();
        let p = 1;
        fleet.join(p, 0, false);
        let t = fleet.world.now;
        fleet.advance(t + 2.0);
        let Presence::Online { server: 0, profile } = fleet.players[p].presence else {
            panic!("{:?}", fleet.players[p].presence)
        };
        assert_eq!(fleet.observed.failures.get(&StartFailure::Refused), None);
        fleet.join(p, 0, false);
        assert_eq!(fleet.observed.failures[&StartFailure::Unexplained], 1);
        assert_eq!(fleet.observed.unexplained_starts.len(), 1);
        fleet.pending_ends.push((t + 5.0, 0, profile));
        fleet.join(p, 0, false);
        assert_eq!(fleet.observed.failures[&StartFailure::Refused], 1);
        assert_eq!(fleet.observed.unexplained_starts.len(), 1);
        assert!(matches!(fleet.players[p].presence, Presence::Online { .. }));
    }

    #[test]
    fn op_and_item_ids_are_key_tag_number() {
        assert_eq!(numbered("Player_7", ":op", 0), "Player_7:op0");
        assert_eq!(numbered("Player_7", ":op", 12), "Player_7:op12");
        assert_eq!(
            numbered("Player_1999", ":item", u64::MAX),
            format!("Player_1999:item{}", u64::MAX)
        );
    }
}
