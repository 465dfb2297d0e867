//! What a fleet saw happen, kept for [`crate::invariants`] (issue "harness" §4): why starts
//! failed, trades and their sides as writes confirm them, gifts sent and delivered, the
//! generations each key's writes carried and which server held each.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use profilestore_core::value::{Str, Value};
use profilestore_core::{CallId, ProfileId};

use crate::acked::AckedOps;

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

/// Why a session start returned nil (spec §21: "job stolen, request superseded by another
/// server, cancelled, closing"). Most fleet starts pass a `Cancel` tied to the player's
/// presence, which disables `START_SESSION_TIMEOUT` (spec §5): such a start under DataStore
/// errors retries until the player leaves. The others
/// ([`FleetConfig::uncancellable`](super::FleetConfig::uncancellable)) time out.
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
    /// pass as one. With the DataStore healthy through the 30 s and no request of its server
    /// throttled in them, nothing held it up: it is [`StartFailure::Unexplained`] instead.
    Killed,
    /// `StartSessionAsync` threw at the call (the key is still loaded on that server: its
    /// `EndSession` after a hop had not run yet).
    Refused,
    /// The player left while it loaded and logged in again before it returned (the settling
    /// log-in of gift recipients): nobody waited on it any more.
    Replaced,
}

/// A `StartSessionAsync` of `key` on `server` at `at`: called, or what it came to (`what`).
#[derive(Clone, Debug, PartialEq)]
pub struct StartLine {
    /// The player's key.
    pub key: Str,
    /// The server it was called on.
    pub server: usize,
    /// When.
    pub at: f64,
    /// `"called"`, `"threw"` or `"returned nil"`.
    pub what: &'static str,
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
    /// and passed on before any write stored it was never the giver's to keep. Cleared by a
    /// write of the session whose transform ran after the trade and still holds the copy
    /// given away (no later trade gave the item back): the game lost the giver's side with
    /// the session alive, which no death or steal excuses.
    pub giver_held: bool,
    /// Whether [`Trade::giver_held`] was ever cleared: a write of the giver's session computed
    /// after the trade still held the copy given away, so the giver's key kept the item (a
    /// `giver_held` of false then does not mean the key never stored it).
    pub giver_lost_alive: bool,
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
    /// Whether a write of the receiver's session whose transform ran after the trade, and
    /// before the session passed the item on, held no more copies than
    /// [`Trade::receiver_had`]: the game lost the receiver's side with the session alive,
    /// which no death or steal excuses (the receiver's mirror of a cleared
    /// [`Trade::giver_held`]).
    pub receiver_lost_alive: bool,
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

/// A gift's `MessageAsync` call ([`Observations::gifts_sent`]: one that returned true;
/// [`Observations::gifts_called`]: every one).
#[derive(Clone, Debug, PartialEq)]
pub struct SentGift {
    /// The recipient's key.
    pub to: String,
    /// The server that called `MessageAsync`.
    pub server: usize,
    /// The call, on [`SentGift::server`].
    pub call: CallId,
    /// When the call returned true (in [`Observations::gifts_sent`]) or was made (in
    /// [`Observations::gifts_called`]), virtual seconds: a violation's excerpt starts there.
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

/// Message deliveries by what the fleet's handler did with them
/// ([`HandlerChoice`](super::HandlerChoice)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandlerCounts {
    /// Applied and marked processed at once.
    pub at_once: u64,
    /// Yielded first; applied and marked processed when the yield is over
    /// ([`HANDLER_YIELD`](super::HANDLER_YIELD)), unless [`HandlerCounts::yield_outlived`].
    pub after_yield: u64,
    /// Yielded past the end of their session: neither applied nor marked processed.
    pub yield_outlived: u64,
    /// Left for a later session.
    pub later: u64,
}

/// A handler waiting out its yield: it applies `gift` to `profile` on `server` at `at`.
#[derive(Clone, Debug)]
pub(super) struct YieldedHandler {
    pub(super) at: f64,
    pub(super) server: usize,
    pub(super) profile: ProfileId,
    pub(super) id: i64,
    pub(super) gift: Option<String>,
}

/// What a fleet run observed, for the report and the invariant checks.
#[derive(Clone, Debug, Default)]
pub struct Observations {
    /// Operation ids each player's own saves confirmed, with when each was first confirmed;
    /// per player, in [`Fleet::keys`](super::Fleet::keys) order.
    pub acked_ops: Vec<AckedOps>,
    /// Gifts whose `MessageAsync` returned true, by gift id.
    pub gifts_sent: BTreeMap<String, SentGift>,
    /// Every gift's `MessageAsync` call, by gift id, whatever it returned (`at`: when it was
    /// called).
    pub gifts_called: BTreeMap<String, SentGift>,
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
    /// whole bound after them and [`SAVE_RETRY_CAP`] before them (from a second more), on a
    /// server not closing, that returned, that the player gave up on past the bound, or whose
    /// server died after the bound had passed.
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
    /// Every `StartSessionAsync` the fleet called, and each that threw or returned nil, in
    /// order, while the fleet keeps its log ([`super::Fleet::keep_log`]; a run that lets it go
    /// records none): the lines a failed start's excerpt shows, which the log cannot tell (it
    /// holds no inputs, and a nil names only its call).
    pub start_lines: Vec<StartLine>,
    /// When each server died (crash, or killed at the end of `BindToClose`).
    pub died_at: BTreeMap<usize, f64>,
    /// The servers among [`Observations::died_at`] that were shutting down: killed when their
    /// `BindToClose` ran out, not crashed.
    pub killed: std::collections::BTreeSet<usize>,
    /// DataStore errors signalled (`OnError`).
    pub errors: u64,
    /// Critical-state toggles.
    pub critical_toggles: u64,
    /// `BindToClose` shutdowns begun (a server killed at its end is counted here, not in
    /// `crashes`).
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
    /// The JobId of the server each of [`Observations::taken_generations`] was taken from.
    pub taken_from: BTreeMap<(String, i64), Str>,
    /// Per lock generation `(key, SessionLoadCount)`: when its holder itself last wrote it (a
    /// session's own write, its start's or a save's, by the server its lock names; not a
    /// `MessageAsync`'s, which any server writes keeping the lock it found).
    pub own_writes: FxHashMap<(Str, i64), f64>,
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
    /// a generation that still held it ([`Observations::taken_generations`]). `own`: the
    /// JobId of the writing server, where the write is a session's own (not a
    /// `MessageAsync`'s).
    pub(super) fn note_write(&mut self, key: &Str, value: &Value, t: f64, own: Option<&str>) {
        let (count, holder) = crate::invariants::generation_of(value);
        if let Some(job) = holder
            && own == Some(job.as_str())
        {
            self.own_writes.insert((key.clone(), count), t);
        }
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
                if count > before
                    && let Some(job) = locked.as_ref().filter(|job| Some(*job) != holder)
                {
                    self.taken_generations.insert((key.to_string(), before), t);
                    self.taken_from
                        .insert((key.to_string(), before), job.clone());
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
pub(super) fn entries(items: &Value) -> &[Value] {
    items.as_array().map_or(&[], |a| a.as_slice())
}

/// How many of `items` are the string `item`.
pub(super) fn copies(items: &[Value], item: &str) -> usize {
    items.iter().filter(|i| i.as_str() == Some(item)).count()
}

/// Whether a trade after `trades[i]`, and before a write's transform ran at `transformed_at`,
/// gave its item back to that trade's giver (the write may then hold a copy again, which
/// counts cannot tell from the one given away). A trade made in the transform's second came
/// after it (trades are made after the world's events of their second, as in
/// [`confirm_write`]).
fn given_back(trades: &[Trade], i: usize, transformed_at: Option<f64>) -> bool {
    let trade = &trades[i];
    trades[i + 1..].iter().any(|later| {
        later.item == trade.item
            && later.to == trade.from
            && transformed_at.is_none_or(|at| later.at < at)
    })
}

/// Trades with a side a later write may still settle, by (server, that side's key): the
/// giver's sides no write has stored yet, or the receivers' sides (see
/// [`Fleet::unkept_takes`]).
pub(super) type Pending = FxHashMap<(usize, Str), Vec<usize>>;

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
/// the lost session's trades. A giver's write holding the copy it gave away shows its key
/// held the item ([`Trade::giver_held`]) only if its transform ran before the trade (at
/// `transformed_at`, no later than the trade's second): one computed after the trade that
/// still holds it lost the giver's side with the session alive, which no death or steal
/// excuses; so did a receiver's write computed after the trade, and before the session passed
/// the item on, that holds no more copies than the receiver had
/// ([`Trade::receiver_lost_alive`]). Returns how many giver's sides it confirmed.
pub(super) fn confirm_write(
    trades: &mut [Trade],
    (gives, takes): (&mut Pending, &mut Pending),
    s: usize,
    (key, value, transformed_at): (&Str, &Value, Option<f64>),
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
            if generation != trades[i].giver_generation {
                return true;
            }
            // Holding the copy given away, the write was made before the trade: the giver's key
            // held it. (The trade is made after the world's events of its second.) Made after
            // it, with no trade giving the item back to the giver since, it lost the giver's
            // side with the session alive: no death or steal excuses that trade.
            if copies(items, &trades[i].item) > trades[i].giver_left {
                if transformed_at.is_none_or(|at| at <= trades[i].at) {
                    trades[i].giver_held = true;
                } else if !given_back(trades, i, transformed_at) {
                    trades[i].giver_held = false;
                    trades[i].giver_lost_alive = true;
                }
                return true;
            }
            let trade = &mut trades[i];
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
            if generation != trades[i].receiver_generation {
                return true;
            }
            // When the session passed the item on, if it has (a trade not in the log, as a
            // test may name, as before any write).
            let passed_at = trades[i]
                .passed_on
                .map(|j| trades.get(j).map_or(f64::NEG_INFINITY, |t| t.at));
            let trade = &mut trades[i];
            // The session's latest write tells (a later one may take it back: the session
            // gave the item on, or a write made before it came back lands after).
            trade.receiver_kept = copies(items, &trade.item) > trade.receiver_had;
            // Made after the trade (whose second's world events come first) and before the
            // item was passed on, the write must hold it.
            if !trade.receiver_kept
                && transformed_at
                    .is_some_and(|at| trade.at < at && passed_at.is_none_or(|passed| passed >= at))
            {
                trade.receiver_lost_alive = true;
            }
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
pub(super) fn passing_take(trades: &[Trade], takes: &[usize], trade: &Trade) -> Option<usize> {
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
pub(super) fn returning_give(trades: &[Trade], take: usize, trade: &Trade) -> Option<usize> {
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

/// The longest a save waits to retry after an error (spec §8: the backoff doubles up to
/// 20 s): a start made within it after faults may wait that long behind a final save of its
/// key, so it is not held to [`HANDOFF_BOUND`].
pub const SAVE_RETRY_CAP: f64 = 20.0;
