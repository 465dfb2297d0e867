//! Invariant checks over a finished fleet run (issue "harness" §4):
//!
//! - **no acknowledged save lost** — every operation id a session saw in its `LastSavedData` is
//!   in the player's final stored value;
//! - **no dupe** — no item in two profiles (or twice in one), no operation applied twice, and
//!   each `Counter` equal to the number of op ids (every operation adds one to both). A trade
//!   whose giver's key held the item, whose giver's side no committed write of the giver's own
//!   session stored, and whose receiver's side a committed write stored (of the receiver's
//!   session, or of one it passed the item on to) is torn, not a dupe, when its server died
//!   while the session was still its own (crashed, or killed at the end of `BindToClose` with
//!   faults on, or a request of its throttled, in its last 30 s) or another server took the
//!   giver's session while the DataStore was failing or the giver's server was throttled
//!   (faults on, or a request of that server throttled, within [`HANDOFF_BOUND`] before the
//!   take: the lock check's excuses); torn trades are counted;
//! - **no acknowledged item lost** — an item whose loot an acknowledged save confirmed is held
//!   by some profile, unless a trade of it took it from its giver's key and lost its
//!   receiver's side with the receiver's session (its server died after the trade while the
//!   session was its own, or another took the session under faults or a throttle: a torn
//!   trade's other half), and no receiver's
//!   write computed after a trade of it, before the item went on, lost it while the session
//!   lived;
//! - **messages** — every gift whose `MessageAsync` returned true is applied exactly once (the
//!   same gift under one more message id for each write of that `MessageAsync`'s own that
//!   committed although the call was told it failed: the call's retry wrote it again),
//!   a gift whose `MessageAsync` did not return true is applied, if at all, to its recipient
//!   only and at most once more per such write, and no message is delivered twice within one
//!   session;
//! - **locks** — one server holds each `(key, SessionLoadCount)` generation, and no session
//!   is taken from a live server without faults (or a throttle of its requests) from its
//!   holder's own last write of it (or from [`HANDOFF_BOUND`] before the take, if earlier) to
//!   the take: a holder asked to end its session lets go (a take from a server that died, not
//!   killed at the end of a healthy shutdown, is not one);
//! - **hand-offs** — while the DataStore is healthy (for the bound after the start and the
//!   [`crate::fleet::SAVE_RETRY_CAP`] before it), every start for a player whose old server
//!   is alive succeeds within [`HANDOFF_BOUND`] (or the player left first); a start that runs
//!   past it while healthy is reported when the player gives up, whenever it returns. Under
//!   faults, failures are counted by reason ([`crate::fleet::StartFailure`]: cancelled after
//!   the bound, left, timed out, closing, crashed, killed at the end of a shutdown, refused at
//!   the call, replaced by a later log-in);
//! - **every start failure explained** — a start that returned nil for none of those reasons
//!   (the fleet never starts one key on two servers at once, so no other start supersedes it);
//! - **every start returns** — after the run settles, no start on a running server is still
//!   waiting for its answer;
//! - **stored values read back** — the storage reads every key's final value, and every value
//!   a trade read (a corrupt row on disk is reported as the storage's error, naming the key,
//!   not as the lost saves or dupes it would otherwise look like).
//!
//! A violation names the key and comes with an excerpt of the run: up to 12 lines about that
//! key (its writes, its sessions' signals, its servers' deaths, its trades, and its starts:
//! called, threw, returned a profile or nil), from where the violation began when that is
//! known, else the key's last 12. A fleet that let go of its log as it ran
//! ([`Fleet::keep_log`]) is run again to cut them.

use std::collections::BTreeMap;

use profilestore_core::value::{Str, Value, json};

use crate::fleet::{Fleet, HANDOFF_BOUND, STORE};
use crate::log::Log;
use crate::storage::MemoryStorage;
use crate::world::{BIND_TO_CLOSE_LIMIT, Happening};

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Violation {
    /// Which invariant.
    pub invariant: &'static str,
    /// The key it concerns.
    pub key: String,
    /// What exactly.
    pub detail: String,
    /// Up to 12 lines of the run that concern the key: from where the violation began when
    /// that is known, else the key's last ([`excerpt`]); for a lost acknowledged op, the first
    /// of them and the lines up to the write that lost it, when that came later
    /// ([`excerpt_showing`]).
    pub excerpt: Vec<String>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} violated for {}: {}",
            self.invariant, self.key, self.detail
        )?;
        for line in &self.excerpt {
            writeln!(f, "    {line}")?;
        }
        Ok(())
    }
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// What a fleet logs of each committed write (`World::summarize`): `[SessionLoadCount, Ops,
/// Items]`, followed by the lock holder's JobId (`ActiveSession[1]`) while the value is locked.
/// `Ops` and `Items` are the written `Data.Ops` and `Data.Items` arrays themselves (shared, not
/// copied; `null` if there is none): the fleet reads off every write which sides of its trades
/// it stored, and a lost op's excerpt ends at the first write without it. A run logs hundreds
/// of thousands of writes, and an array costs far less memory than a JSON object.
pub fn summarize_write(v: &Value) -> Value {
    let meta = &v["MetaData"];
    let data = &v["Data"];
    let array = |field| data.get(field).filter(|a| a.is_array()).cloned();
    let mut summary = Vec::with_capacity(4);
    summary.extend([
        meta["SessionLoadCount"].clone(),
        array("Ops").unwrap_or_default(),
        array("Items").unwrap_or_default(),
    ]);
    if let Some(lock) = meta.get("ActiveSession") {
        summary.push(lock[1].clone());
    }
    Value::from(summary)
}

/// The `Data.Items` array a logged write's value (a whole stored value or a
/// [`summarize_write`] summary) stored, if it has one.
pub fn written_items(value: &Value) -> Option<&[Value]> {
    written_array(value, 2, "Items")
}

/// The `Data.Ops` array a logged write's value (a whole stored value or a [`summarize_write`]
/// summary) stored, if it has one.
pub fn written_ops(value: &Value) -> Option<&[Value]> {
    written_array(value, 1, "Ops")
}

/// The `Data` array `field`, found at `at` in a [`summarize_write`] summary.
fn written_array<'a>(value: &'a Value, at: usize, field: &str) -> Option<&'a [Value]> {
    let array = match value.as_array() {
        Some(summary) => summary.get(at)?,
        None => value["Data"].get(field)?,
    };
    array.as_array().map(|a| a.as_slice())
}

/// The `SessionLoadCount` and the lock holder (`ActiveSession[1]`, `None` when unlocked) of a
/// logged write's value (a whole stored value or a [`summarize_write`] summary); read without
/// copying anything but the holder's string handle.
pub fn generation_of(value: &Value) -> (i64, Option<&Str>) {
    let (holder, count) = match value.as_array() {
        Some(summary) => (summary.get(3), summary.first()),
        None => {
            let meta = &value["MetaData"];
            (
                meta.get("ActiveSession").and_then(|s| s.get(1)),
                meta.get("SessionLoadCount"),
            )
        }
    };
    let count = count.and_then(Value::as_i64).unwrap_or(0);
    match holder {
        Some(Value::String(job)) => (count, Some(job)),
        _ => (count, None),
    }
}

/// What a logged write shows: the lock holder (`ActiveSession[1]`, `None` when unlocked), the
/// `SessionLoadCount` and how many op ids the `Data` holds. Reads a whole stored value or a
/// [`summarize_write`] summary.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteFacts {
    /// `ActiveSession[1]`, if locked.
    pub lock: Option<Value>,
    /// `SessionLoadCount`.
    pub count: Value,
    /// Entries of `Data.Ops`.
    pub ops: u64,
}

impl WriteFacts {
    /// The facts of a logged write's value.
    pub fn of(value: &Value) -> WriteFacts {
        match value.as_array() {
            Some(summary) => WriteFacts {
                lock: summary.get(3).cloned(),
                count: summary.first().cloned().unwrap_or(Value::Null),
                ops: written_ops(value).map_or(0, <[Value]>::len) as u64,
            },
            None => {
                let meta = &value["MetaData"];
                WriteFacts {
                    lock: meta.get("ActiveSession").map(|a| a[1].clone()),
                    count: meta["SessionLoadCount"].clone(),
                    ops: written_ops(value).map_or(0, <[Value]>::len) as u64,
                }
            }
        }
    }
}

/// The lines of the run about `key`, in time order: the first `n` from time `from` when given
/// (where the violation started), else the last `n`.
pub fn excerpt(log: &Log, fleet: &Fleet, key: &str, from: Option<f64>, n: usize) -> Vec<String> {
    let lines: Vec<String> = key_lines(log, fleet, key, from, |_| false)
        .into_iter()
        .map(|(line, _)| line)
        .collect();
    first_or_last(lines, from.is_some(), n)
}

/// [`excerpt`] from `from` that also shows the first line at or after `from` that `shows`
/// picks (where the violation shows, when that is not where it began): if the first `n` lines
/// do not reach it, the first half of them, a line saying how many are left out, and the lines
/// up to and including it.
pub fn excerpt_showing(
    log: &Log,
    fleet: &Fleet,
    key: &str,
    from: f64,
    n: usize,
    shows: impl Fn(&Happening) -> bool,
) -> Vec<String> {
    let lines = key_lines(log, fleet, key, Some(from), shows);
    let Some(at) = lines
        .iter()
        .position(|(_, shown)| *shown)
        .filter(|&at| at >= n)
    else {
        let lines = lines.into_iter().map(|(line, _)| line).collect();
        return first_or_last(lines, true, n);
    };
    let head = n / 2;
    let tail = n - head - 1;
    let mut out: Vec<String> = lines[..head].iter().map(|(l, _)| l.clone()).collect();
    out.push(format!(
        "... {} line(s) about the key left out ...",
        at + 1 - tail - head
    ));
    out.extend(lines[at + 1 - tail..=at].iter().map(|(l, _)| l.clone()));
    out
}

/// The first `n` of `lines`, or the last `n`.
fn first_or_last(mut lines: Vec<String>, first: bool, n: usize) -> Vec<String> {
    if first {
        lines.truncate(n);
    } else {
        let keep = lines.len().saturating_sub(n);
        lines.drain(..keep);
    }
    lines
}

/// Every line of the run about `key` (from time `from` when given), in time order, each with
/// whether `shows` picks the happening it tells (a trade or start line: never).
fn key_lines(
    log: &Log,
    fleet: &Fleet,
    key: &str,
    from: Option<f64>,
    shows: impl Fn(&Happening) -> bool,
) -> Vec<(String, bool)> {
    // The servers that held a session of the key.
    let held: std::collections::BTreeSet<usize> = fleet
        .profile_keys
        .iter()
        .filter(|(_, k)| k.as_str() == key)
        .map(|((server, _), _)| *server)
        .collect();
    let mut lines: Vec<(f64, String, bool)> = log
        .iter()
        .filter(|l| from.is_none_or(|f| l.t >= f))
        .filter_map(|l| {
            let server = &fleet.world.servers[l.server];
            let about = |p: &profilestore_core::ProfileId| {
                fleet
                    .profile_keys
                    .get(&(l.server, *p))
                    .is_some_and(|k| k == key)
            };
            let text = match &l.what {
                Happening::Write { key: k, value, .. } if k == key => {
                    let facts = WriteFacts::of(value);
                    format!(
                        "write lock={} count={} ops={}",
                        facts.lock.map_or("none".to_string(), |j| j.to_string()),
                        facts.count,
                        facts.ops
                    )
                }
                Happening::Output(profilestore_core::Output::Event(e)) => match e {
                    profilestore_core::Event::OnSave { profile } if about(profile) => {
                        "OnSave".into()
                    }
                    profilestore_core::Event::OnLastSave { profile, reason } if about(profile) => {
                        format!("OnLastSave({})", reason.as_str())
                    }
                    profilestore_core::Event::OnSessionEnd { profile } if about(profile) => {
                        "OnSessionEnd".into()
                    }
                    profilestore_core::Event::OnAfterSave { profile, .. } if about(profile) => {
                        "OnAfterSave".into()
                    }
                    profilestore_core::Event::OnError {
                        key: k, message, ..
                    } if k == key => format!("OnError {message}"),
                    profilestore_core::Event::Message { profile, id, .. } if about(profile) => {
                        format!("message {id} delivered")
                    }
                    _ => return None,
                },
                // A server's death explains lost saves and torn trades of the keys it held.
                Happening::Crashed if held.contains(&l.server) => {
                    "crashed (or killed after BindToClose)".into()
                }
                Happening::Output(profilestore_core::Output::Completion(
                    profilestore_core::Completion::SessionStart {
                        profile: Some(p), ..
                    },
                )) if about(&p.profile) => "StartSessionAsync returned a profile".into(),
                _ => return None,
            };
            let line = format!("t={:.3} {} {text}", l.t, server.spec.name);
            Some((l.t, line, shows(&l.what)))
        })
        .collect();
    // So are its starts: when each was called, and each that threw or returned nil.
    for start in &fleet.observed.start_lines {
        if start.key == key && from.is_none_or(|f| start.at >= f) {
            let server = &fleet.world.servers[start.server].spec.name;
            let line = format!(
                "t={:.3} {server} StartSessionAsync {}",
                start.at, start.what
            );
            lines.push((start.at, line, false));
        }
    }
    // Trades are the game's, not the log's: the key's, as either side.
    for trade in &fleet.observed.trade_log {
        if (trade.from == key || trade.to == key) && from.is_none_or(|f| trade.at >= f) {
            let server = &fleet.world.servers[trade.server].spec.name;
            lines.push((
                trade.at,
                format!(
                    "t={:.3} {server} trade {} from {} to {}",
                    trade.at, trade.item, trade.from, trade.to
                ),
                false,
            ));
        }
    }
    // A run logs in time order; a line added afterwards (a test's) takes its time's place.
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    lines
        .into_iter()
        .map(|(_, line, shown)| (line, shown))
        .collect()
}

/// Checks every invariant; returns the violations (empty when the run is sound).
pub fn check(fleet: &mut Fleet) -> Vec<Violation> {
    // Lines logged since the run's last step (none after `Fleet::run`).
    fleet.react();
    // Each violation: invariant, key, detail, and where its excerpt starts (when known).
    let mut found: Vec<(&'static str, String, String, Option<f64>)> = Vec::new();
    let keys = fleet.keys();
    let mut finals: BTreeMap<String, Value> = BTreeMap::new();
    // Keys whose final value the storage cannot read: each reported as such, and left out of
    // the checks of what keys hold (which would otherwise report its ops lost, its gifts never
    // applied).
    let mut unreadable = std::collections::BTreeSet::new();
    for key in &keys {
        let v = match fleet.world.read_stored(STORE, key) {
            Ok(v) => v.unwrap_or(Value::Null),
            Err(e) => {
                found.push((
                    "stored values read back",
                    key.clone(),
                    format!("the final value cannot be read: {e}"),
                    None,
                ));
                unreadable.insert(key.as_str());
                Value::Null
            }
        };
        finals.insert(key.clone(), v);
    }
    let obs = fleet.observed.clone();
    for (key, at, e) in &obs.unreadable {
        found.push((
            "stored values read back",
            key.clone(),
            format!("a trade at t={at:.1} could not read the stored value: {e}"),
            Some(*at),
        ));
    }

    // No acknowledged save lost; no operation applied twice; the counter agrees with the log
    // (each gameplay operation adds one to both, in one write of `Data`). For a lost op, the
    // first one lost, by key.
    let mut losing_writes: BTreeMap<String, Str> = BTreeMap::new();
    for (p, key) in keys.iter().enumerate() {
        if unreadable.contains(key.as_str()) {
            continue;
        }
        let data = &finals[key]["Data"];
        let ops = strings(data, "Ops");
        // A key never written has neither; a profile that has ops has its counter.
        let counter = data.get("Counter").and_then(Value::as_i64);
        let mismatch = match counter {
            Some(counter) => counter != ops.len() as i64,
            None => !ops.is_empty(),
        };
        if mismatch {
            let counter = counter.map_or_else(|| "missing".to_string(), |c| format!("is {c}"));
            found.push((
                "counter matches the op log",
                key.clone(),
                format!("Counter {counter}, Ops holds {}", ops.len()),
                None,
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for op in &ops {
            if !seen.insert(op.clone()) {
                // Shown from the save that first confirmed the op, when one did.
                let acked = obs.acked_ops.get(p).and_then(|a| a.get(op));
                found.push((
                    "no operation applied twice",
                    key.clone(),
                    format!("{op} appears twice"),
                    acked,
                ));
            }
        }
        if let Some(acked) = obs.acked_ops.get(p) {
            // In op order (`AckedOps` lists numbered ops by number, then any other by name):
            // the report names the first missing op (`op2` before `op10`).
            let lost: Vec<(Str, f64)> = acked
                .iter()
                .filter(|(o, _)| !seen.contains(o.as_str()))
                .collect();
            if !lost.is_empty() {
                // Shown up to the first write without the first lost op (it was stored when
                // acknowledged: that write lost it), however far after.
                losing_writes.insert(key.clone(), lost[0].0.clone());
                found.push((
                    "no acknowledged save lost",
                    key.clone(),
                    format!(
                        "{} acknowledged op(s) missing from the final value, first {}",
                        lost.len(),
                        lost[0].0
                    ),
                    lost.iter().map(|(_, t)| *t).reduce(f64::min),
                ));
            }
        }
    }

    // No item in two profiles. ProfileStore gives no atomicity across keys: the giver's side
    // of a trade is lost when its session ends without a save storing it, so the item stays
    // in the giver's stored `Data` too. That happens when the server dies between the saves
    // of the two sides, and, while the DataStore fails, when another server takes the
    // session first: a steal after the giver's saves failed or its notices were lost (spec
    // §5.3; the late save then stores nothing, §8.3), or `ASSUME_DEAD`; and when the giver's
    // final save waits in a throttle queue past the taker's poll. Such torn trades are
    // counted; any other duplicate is a violation (so a steal from a live server is one with
    // no faults or throttle, or in a healthy stretch: a start takes a lock some 45 s after
    // asking for it, so what kept the owner from letting go fell within the bound before it).
    let stolen_under_faults =
        |taken: f64| fleet.config.faulty_between(taken - HANDOFF_BOUND, taken);
    // Whether server `s`, killed at `d` at the end of `BindToClose`, could have had its
    // final saves held past the kill: faults on, or a request of its throttled, in its last
    // 30 s. Healthy and unthrottled, they land within them.
    let world = &fleet.world;
    let held_up_at_kill = |s: usize, d: f64| {
        let from = d - BIND_TO_CLOSE_LIMIT;
        fleet.config.faulty_between(from, d) || world.servers[s].throttled_between(from, d)
    };
    // A trade's side lost with its session: the trade's server died after it while the
    // session (`key`'s `generation`) was still its own, not taken before (a take is judged
    // as one) nor released (its final save stored the side).
    let died_owning = |trade: &crate::fleet::Trade, (key, generation): (&String, i64)| {
        obs.died_at.get(&trade.server).is_some_and(|d| {
            *d >= trade.at
                && (!obs.killed.contains(&trade.server) || held_up_at_kill(trade.server, *d))
                && obs
                    .taken_generations
                    .get(&(key.clone(), generation))
                    .is_none_or(|taken| taken >= d)
                && obs
                    .released_generations
                    .get(&(Str::from(key.as_str()), generation))
                    .is_none_or(|released| released >= d)
        })
    };
    // The server a taken generation (`key`'s `generation`) was taken from, by its JobId.
    let taken_from = |key: &String, generation: i64| {
        let job = obs.taken_from.get(&(key.clone(), generation))?;
        world
            .servers
            .iter()
            .position(|s| s.engine().identity().job_id == job.as_str())
    };
    // A session (`key`'s `generation`) another server took while faults were on, or while a
    // request of its holder's server was throttled (a final save held in its queue past the
    // taker's poll, as the lock check below excuses), within the bound before the take.
    let stolen_session = |key: &String, generation: i64| {
        obs.taken_generations
            .get(&(key.clone(), generation))
            .is_some_and(|&taken| {
                stolen_under_faults(taken)
                    || taken_from(key, generation).is_some_and(|s| {
                        world.servers[s].throttled_between(taken - HANDOFF_BOUND, taken)
                    })
            })
    };
    // Counted anew by each check, an item once however many profiles hold it.
    fleet.torn_trades.clear();
    fleet.stolen_trades.clear();
    // Each item's holders, in key order.
    let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in &keys {
        for item in strings(&finals[key]["Data"], "Items") {
            holders.entry(item).or_default().push(key.clone());
        }
    }
    for (item, holders) in &holders {
        let [first_holder, ..] = holders.as_slice() else {
            continue;
        };
        if holders.len() < 2 {
            continue;
        }
        // Torn: a trade of the item whose giver's key held it and whose giver's side no write
        // stored, but whose receiver's side reached a store (a write of the receiver stored
        // the item, or of a session it was passed on to: the holders need not be that trade's
        // sides), on a server that died after it, or by a session another took. Each torn
        // trade leaves one copy more: a copy more than the torn trades explain is a dupe.
        let unsaved = || {
            obs.trade_log.iter().filter(|trade| {
                trade.item == *item
                    && !trade.giver_saved
                    && !trade.came_back
                    && trade.giver_held
                    && trade.receiver_side_stored(&obs.trade_log)
            })
        };
        // The death tore the trade only if the giver's session was still its own then: a
        // generation taken before the server died was torn by the take (and is judged as one
        // below), whenever the server died later; one released before it had stored the
        // giver's side in its final save (a dupe then is not the death's). A kill at the end
        // of `BindToClose` tears only while the DataStore fails or the server's requests are
        // throttled: otherwise the final saves land within the 30 s, and a giver's side they
        // did not store was lost.
        let died =
            |trade: &crate::fleet::Trade| died_owning(trade, (&trade.from, trade.giver_generation));
        // Any trade of a generation taken under faults or a throttle, however long after the
        // take: deviation 8's notice ends the old session within a message delay, but the
        // notice can be lost while faults are on, or ignored within 6 s of another accepted
        // message (spec §10.4), and it is not sent again; the old owner then trades on until
        // its next save (spec §19 item 8). Core tests check the notice itself.
        let stolen =
            |trade: &crate::fleet::Trade| stolen_session(&trade.from, trade.giver_generation);
        let by_death = unsaved().filter(|t| died(t)).count();
        let by_steal = unsaved().filter(|t| !died(t) && stolen(t)).count();
        if holders.len() - 1 <= by_death + by_steal {
            // Counted once however many profiles hold it: as torn by a death if a death
            // explains one of its copies, else by a steal.
            if by_death > 0 {
                fleet.torn_trades.push(item.clone());
            } else {
                fleet.stolen_trades.push(item.clone());
            }
        } else {
            // Shown from the first trade of the item whose giver's side no write stored (where
            // the copy came from), else from its first trade; the excerpt is of that giver's
            // key (the holders' keys show only the item arriving).
            let first = unsaved()
                .next()
                .or_else(|| obs.trade_log.iter().find(|t| t.item == *item));
            let detail = match holders.as_slice() {
                [a, b] if a == b => format!("{item} is held twice by {a}"),
                [a, b] => format!("{item} is held by both {a} and {b}"),
                // A key holding more than one copy is named once for each.
                _ => format!(
                    "{item} is held {} times ({}); torn trades explain {} extra copies",
                    holders.len(),
                    holders.join(", "),
                    by_death + by_steal
                ),
            };
            found.push((
                "no dupe",
                first.map_or_else(|| first_holder.clone(), |t| t.from.clone()),
                detail,
                first.map(|t| t.at),
            ));
        }
    }

    // Every sent gift applied; no message applied twice. Gifts are stored as `gift#message_id`:
    // the same gift under two message ids is a MessageAsync retried after an ambiguous failure
    // (the original protocol has no idempotency token), not a double processing, if a write
    // of that call committed ambiguously ([`crate::world::AmbiguousWrite::call`]); otherwise
    // it is a gift applied twice.
    let mut applied: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for key in &keys {
        let mut messages = std::collections::BTreeSet::new();
        for entry in strings(&finals[key]["Data"], "Gifts") {
            let fresh = messages.insert(entry.clone());
            let gift = entry.split('#').next().unwrap_or_default().to_string();
            if !fresh {
                found.push((
                    "no message processed twice",
                    key.clone(),
                    format!("{entry} applied twice"),
                    obs.gifts_sent.get(&gift).map(|g| g.at),
                ));
            }
            // Once per message id: an entry stored twice is reported just above.
            if fresh {
                applied.entry(gift).or_default().push(key.clone());
            }
        }
    }
    // Writes of `to` by `sent`'s own call that committed although the call was told they
    // failed.
    let ambiguous = |to: &String, sent: &crate::fleet::SentGift| {
        fleet
            .world
            .ambiguous_writes
            .iter()
            .filter(|w| {
                w.key.as_str() == to && w.server == sent.server && w.call == Some(sent.call)
            })
            .count()
    };
    // Their excerpts start when the `MessageAsync` returned.
    for (gift, sent) in &obs.gifts_sent {
        let (to, at) = (&sent.to, Some(sent.at));
        match applied.get(gift) {
            // Where the recipient's value cannot be read, whether it holds the gift is unknown
            // (that key is reported as unreadable); a copy on another key is still told.
            None if unreadable.contains(to.as_str()) => {}
            None => found.push((
                "every sent message delivered",
                to.clone(),
                format!("{gift} never applied"),
                at,
            )),
            Some(keys) if keys.iter().any(|k| k != to) => found.push((
                "messages reach their recipient",
                to.clone(),
                format!("{gift} applied to {keys:?}"),
                at,
            )),
            // A second copy comes only from a retry after a write that committed although the
            // call was told it failed (an ambiguous fault): one such write of the call's own
            // for each extra copy.
            Some(keys) if keys.len() > 1 && ambiguous(to, sent) < keys.len() - 1 => found.push((
                "no message processed twice",
                to.clone(),
                format!(
                    "{gift} applied {} times with {} ambiguous write(s) by its MessageAsync",
                    keys.len(),
                    ambiguous(to, sent)
                ),
                at,
            )),
            // And each such write stored a copy that is delivered like any message (the
            // recipient logs in once more in the settling): fewer copies applied means a
            // stored message was lost unapplied.
            Some(keys) if keys.len() < 1 + ambiguous(to, sent) => found.push((
                "every sent message delivered",
                to.clone(),
                format!(
                    "{gift} applied {} time(s), but its MessageAsync stored {} copies (its \
                     ambiguous writes and its last)",
                    keys.len(),
                    1 + ambiguous(to, sent)
                ),
                at,
            )),
            Some(_) => {}
        }
    }
    // A gift whose `MessageAsync` did not return true (it returned false, or its server died
    // first) may still have been written: then to its recipient only, and once more for
    // each write of the call's own that committed although the call was told it failed. A
    // gift no call sent is applied nowhere.
    for (gift, keys) in &applied {
        if obs.gifts_sent.contains_key(gift) {
            continue;
        }
        let Some(called) = obs.gifts_called.get(gift) else {
            found.push((
                "messages reach their recipient",
                keys[0].clone(),
                format!("{gift} applied to {keys:?}, but no MessageAsync sent it"),
                None,
            ));
            continue;
        };
        let (to, at) = (&called.to, Some(called.at));
        if keys.iter().any(|k| k != to) {
            found.push((
                "messages reach their recipient",
                to.clone(),
                format!("{gift} (its MessageAsync not returning true) applied to {keys:?}"),
                at,
            ));
        } else if keys.len() > 1 + ambiguous(to, called) {
            found.push((
                "no message processed twice",
                to.clone(),
                format!(
                    "{gift} applied {} times with {} ambiguous write(s) by its MessageAsync, \
                     which did not return true",
                    keys.len(),
                    ambiguous(to, called)
                ),
                at,
            ));
        }
    }
    for ((server, profile, id), delivered) in &obs.deliveries {
        let n = delivered.count;
        if n > 1 {
            let key = fleet
                .profile_keys
                .get(&(*server, *profile))
                .cloned()
                .unwrap_or_default();
            found.push((
                "no message processed twice",
                key,
                format!("message {id} delivered {n} times in one session"),
                Some(delivered.first_at),
            ));
        }
    }

    // No acknowledged item lost: an item whose loot an acknowledged save confirmed (every third
    // operation loots one: `{key}:op{3n}` loots `{key}:item{n}`) is held by some profile,
    // unless a trade of it lost its receiver's side: no write stored the item past its
    // receiver, whose session died with its server or was taken under faults, as for a torn
    // trade's giver (the giver's side stored, the item is then in no profile), and no write
    // of a receiver made after a trade of it lost it while its session lived. Not judged
    // when a final value cannot be read: the item may be there.
    if unreadable.is_empty() {
        for (p, key) in keys.iter().enumerate() {
            let Some(acked) = obs.acked_ops.get(p) else {
                continue;
            };
            for (op, at) in acked.iter() {
                let number = op
                    .strip_prefix(key.as_str())
                    .and_then(|rest| rest.strip_prefix(":op"))
                    .and_then(|n| n.parse::<u64>().ok());
                // An op the player never made (`op999` of a test) looted nothing.
                let looted = fleet.items_looted(p);
                let Some(n) = number.filter(|n| n % 3 == 0 && n / 3 <= looted) else {
                    continue;
                };
                let item = format!("{key}:item{}", n / 3);
                if holders.contains_key(&item) {
                    continue;
                }
                // Not if a receiver's write computed after a trade of it, before the item
                // went on, lost it with the session alive: no death or steal explains that.
                let trades = || obs.trade_log.iter().filter(|trade| trade.item == item);
                let lost_alive = trades().any(|trade| trade.receiver_lost_alive);
                // The trade must have taken the item from its giver's key (that side stored,
                // or the item never stored as the giver's): a giver's key that kept it, its
                // side torn too or lost with the session alive, is where the item is, and a
                // loss there is not this trade's.
                let lost_with_its_receiver = !lost_alive
                    && trades().any(|trade| {
                        !trade.receiver_side_stored(&obs.trade_log)
                            && (trade.giver_saved || !(trade.giver_held || trade.giver_lost_alive))
                            && (died_owning(trade, (&trade.to, trade.receiver_generation))
                                || stolen_session(&trade.to, trade.receiver_generation))
                    });
                if !lost_with_its_receiver {
                    found.push((
                        "no acknowledged item lost",
                        key.clone(),
                        format!("{item}, looted by {op} (acknowledged), is held by no profile"),
                        Some(at),
                    ));
                }
            }
        }
    }

    // One lock holder per generation (read off each write as it was logged); the excerpt
    // starts at the holder's last write before the other server's.
    for (key, count, last) in &obs.lock_conflicts {
        found.push((
            "one lock holder per generation",
            key.clone(),
            format!("generation {count} locked by two servers"),
            Some(*last),
        ));
    }

    // At most one session per key: another server takes a session (a steal, or the
    // `ASSUME_DEAD` take-over) only from a server that died first (killed at the end of a
    // `BindToClose`, only one held up then: its final saves land within it otherwise), or
    // after faults or throttling. Faults on at some moment from the holder's own last write
    // of the generation (or from HANDOFF_BOUND before the take, if that is earlier: the
    // taker's polls) to the take excuse it: the holder's saves or its notices could not get
    // through; so does a request of the holder's server throttled then (a final save held
    // in its queue past the taker's poll; `docs/DEVIATIONS.md` row 7). A lock no session of
    // the holder knows of (a start's write that committed though its call failed) was
    // written under faults, so it is excused too. A take otherwise is a hand-off that did
    // not happen: the holder kept its session though asked to end it. (With faults that
    // come and go faster than the holder saves, few takes are judged.)
    for ((key, count), t) in &obs.taken_generations {
        let generation = (Str::from(key.as_str()), *count);
        let (Some(s), Some(wrote)) = (taken_from(key, *count), obs.own_writes.get(&generation))
        else {
            continue;
        };
        let since = wrote.min(t - HANDOFF_BOUND);
        let died_first = obs
            .died_at
            .get(&s)
            .is_some_and(|d| *d <= *t && (!obs.killed.contains(&s) || held_up_at_kill(s, *d)));
        let throttled = world.servers[s].throttled_between(since, *t);
        if !died_first && !throttled && !fleet.config.faulty_between(since, *t) {
            found.push((
                "no session taken from a live server while healthy",
                key.clone(),
                format!(
                    "generation {count}, last written by its holder at t={wrote:.1}, taken \
                     from it at t={t:.1}"
                ),
                Some(since),
            ));
        }
    }

    // Generations never go back: a write below the key's last generation is a session that
    // lost its lock writing as its holder.
    for (key, before, count, t) in &obs.generations_gone_back {
        found.push((
            "generations never go back",
            key.clone(),
            format!("a write of generation {count} after generation {before}"),
            Some(*t),
        ));
    }

    // Every start returns (a profile or nil): a start still waiting after the run settled is
    // stuck, whatever the DataStore did.
    for (key, since) in fleet.unanswered_starts() {
        let at = since.map_or_else(|| "?".to_string(), |t| format!("{t:.1}"));
        found.push((
            "every start returns",
            key,
            format!("StartSessionAsync at t={at} never returned"),
            since,
        ));
    }

    // Under faults or not, a start that returned nil is explained by its reason.
    for (key, at, what) in &obs.unexplained_starts {
        found.push((
            "every start failure explained",
            key.clone(),
            format!("start at t={at:.1} {what}"),
            Some(*at),
        ));
    }

    // Hand-offs within the bound while healthy.
    for (key, at, outcome) in &obs.slow_healthy_starts {
        found.push((
            "healthy hand-off within bound",
            key.clone(),
            format!("start at t={at:.1} {outcome} (bound {HANDOFF_BOUND} s)"),
            Some(*at),
        ));
    }

    if found.is_empty() {
        return Vec::new();
    }
    // A run that let go of its log is run again keeping it, only to cut the excerpts: the same
    // configuration makes the same run (`--check-determinism`), on any storage.
    let again;
    // Why the excerpts come from the lines the run still keeps, when they must.
    let mut no_rerun = None;
    let source: &Fleet = if fleet.world.log.first_kept() == 0 {
        fleet
    } else {
        let mut config = fleet.config.clone();
        config.record = false;
        match Fleet::new(config, Box::new(MemoryStorage::new())) {
            Ok(mut rerun) => {
                rerun.handler_shares = fleet.handler_shares;
                rerun.run(|_| {});
                again = rerun;
                &again
            }
            // Only if the configuration was changed after the run (a test's doing).
            Err(e) => {
                no_rerun = Some(format!(
                    "(only the lines the run still kept: it could not be made again: {e})"
                ));
                fleet
            }
        }
    };
    // A fleet changed after it was made (a test's doing) runs differently again: say so rather
    // than show another run's lines as this one's.
    let (ran, reran) = (fleet.world.committed_writes, source.world.committed_writes);
    found
        .into_iter()
        .map(|(invariant, key, detail, from)| {
            let log = &source.world.log;
            let mut lines = match (from, losing_writes.get(&key)) {
                (Some(from), Some(op)) if invariant == "no acknowledged save lost" => {
                    let holds = |ops: &[Value]| ops.iter().any(|o| o.as_str() == Some(op));
                    excerpt_showing(log, source, &key, from, 12, |what| {
                        matches!(what, Happening::Write { key: k, value, .. }
                            if *k == key && !written_ops(value).is_some_and(holds))
                    })
                }
                _ => excerpt(log, source, &key, from, 12),
            };
            if let Some(note) = &no_rerun {
                lines.insert(0, note.clone());
            } else if ran != reran {
                lines.insert(
                    0,
                    format!(
                        "(not this run's lines: the run made again to cut them committed \
                         {reran} writes, the run {ran})"
                    ),
                );
            }
            Violation {
                excerpt: lines,
                invariant,
                key,
                detail,
            }
        })
        .collect()
}

/// The `q` quantile of `v` (0 < q ≤ 1) by the nearest-rank method: the smallest value at or
/// below which at least a fraction `q` of the values lie (so the median of two values is the
/// smaller, and the 1.0 quantile the largest); 0 for no values.
fn pct(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = (q * s.len() as f64).ceil() as usize;
    s.get(rank.clamp(1, s.len().max(1)) - 1)
        .copied()
        .unwrap_or(0.0)
}

/// A summary of a run, for the command line and `--json`.
pub fn summary(fleet: &Fleet, violations: &[Violation]) -> Value {
    let o = &fleet.observed;
    json!({
        "seed": fleet.config.seed,
        "servers": fleet.config.servers,
        "spare_servers": fleet.config.spare_servers,
        "players": fleet.config.players,
        "virtual_seconds": fleet.world.now,
        "sessions": o.sessions,
        "healthy_starts_checked": o.healthy_starts,
        "handoffs": {"count": o.handoffs.len(), "p50_s": pct(&o.handoffs, 0.5), "p90_s": pct(&o.handoffs, 0.9), "max_s": pct(&o.handoffs, 1.0)},
        "start_failures": o.failures.iter().map(|(k, v)| (format!("{k:?}"), json!(v))).collect::<profilestore_core::value::Object>(),
        "datastore_requests": fleet.world.request_counts(),
        "committed_writes": fleet.world.committed_writes,
        "throttled_requests": fleet.world.throttled,
        "refused_requests": fleet.world.refused,
        "key_throttle_holds": fleet.world.key_throttled,
        "errors": o.errors,
        "critical_toggles": o.critical_toggles,
        "trades": o.trades,
        "torn_trades_by_server_death": fleet.torn_trades.len(),
        "torn_trades_by_stolen_session": fleet.stolen_trades.len(),
        "gifts": o.gifts_sent.len(),
        "message_handlers": {
            "at_once": o.handled.at_once,
            "after_yield": o.handled.after_yield,
            "yield_outlived": o.handled.yield_outlived,
            "later": o.handled.later,
        },
        "messages_over_receive_limit": fleet.world.messaging.over_receive_limit(),
        "subscribes_refused": fleet.world.subscribes_refused,
        "shutdowns": o.shutdowns,
        "crashes": o.crashes,
        "replacements": o.replacements,
        "violations": violations.len(),
        "rerun": format!("profilestore-sim simulate {}", fleet.config.simulate_flags()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(lock: Option<&str>) -> Value {
        let mut meta = json!({"SessionLoadCount": 4, "LastUpdate": 1_735_689_600});
        if let Some(job) = lock {
            meta["ActiveSession"] = json!([1001, job]);
        }
        json!({"Data": {"Ops": ["p:op1", "p:op2", "p:op3"], "Items": ["p:item1"]}, "MetaData": meta, "GlobalUpdates": [0, []]})
    }

    /// Hand-off times are summed up by the nearest rank: a median is one of the values, the
    /// lower of the middle two for an even count.
    #[test]
    fn quantiles_are_nearest_ranks() {
        assert_eq!(pct(&[], 0.5), 0.0);
        assert_eq!(pct(&[3.0], 0.5), 3.0);
        assert_eq!((pct(&[9.0, 1.0], 0.5), pct(&[9.0, 1.0], 0.9)), (1.0, 9.0));
        let four = [4.0, 2.0, 3.0, 1.0];
        assert_eq!(
            (pct(&four, 0.5), pct(&four, 0.9), pct(&four, 1.0)),
            (2.0, 4.0, 4.0)
        );
        let ten: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(
            (pct(&ten, 0.5), pct(&ten, 0.9), pct(&ten, 1.0)),
            (5.0, 9.0, 10.0)
        );
    }

    #[test]
    fn a_write_summary_shows_what_the_whole_value_shows() {
        for lock in [Some("job-a"), None] {
            let value = stored(lock);
            let summary = summarize_write(&value);
            let facts = WriteFacts {
                lock: lock.map(|j| json!(j)),
                count: json!(4),
                ops: 3,
            };
            assert_eq!(WriteFacts::of(&value), facts);
            assert_eq!(WriteFacts::of(&summary), facts);
            let held = (4, lock.map(Str::from));
            assert_eq!(generation_of(&value).1.cloned(), held.1);
            assert_eq!(generation_of(&value).0, held.0);
            assert_eq!(generation_of(&summary).1.cloned(), held.1);
            assert_eq!(generation_of(&summary).0, held.0);
            let items = [json!("p:item1")];
            assert_eq!(written_items(&value), Some(&items[..]));
            assert_eq!(written_items(&summary), Some(&items[..]));
        }
        let ops = json!(["p:op1", "p:op2", "p:op3"]);
        assert_eq!(
            summarize_write(&stored(Some("job-a"))),
            json!([4, ops, ["p:item1"], "job-a"])
        );
        assert_eq!(summarize_write(&stored(None)), json!([4, ops, ["p:item1"]]));
        let ops = ops.as_array().map(|a| a.as_slice());
        assert_eq!(written_ops(&stored(None)), ops);
        assert_eq!(written_ops(&summarize_write(&stored(None))), ops);
        // No `Items` or `Ops` array: none read off the value or its summary.
        let bare = json!({"Data": {"Items": 7}, "MetaData": {"SessionLoadCount": 2}});
        assert_eq!(summarize_write(&bare), json!([2, null, null]));
        assert_eq!(written_items(&bare), None);
        assert_eq!(written_items(&summarize_write(&bare)), None);
        assert_eq!(written_ops(&bare), None);
        assert_eq!(written_ops(&summarize_write(&bare)), None);
        assert_eq!(WriteFacts::of(&summarize_write(&bare)).ops, 0);
    }
}
