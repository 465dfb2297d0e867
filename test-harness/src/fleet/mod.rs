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
//! The run ends with a settle phase (faults off, everyone leaves, every player a gift was sent
//! to logs in once more) and then [`crate::invariants`] checks what happened.

mod config;
mod observations;
#[cfg(test)]
mod tests;

pub use config::*;
pub use observations::*;

use std::collections::BTreeSet;
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
use crate::config::ConfigError;
use crate::datastore::{DataStoreService, Faults, Limits};
use crate::messaging::{MessagingConfig, MessagingService};
use crate::storage::Storage;
use crate::world::{BIND_TO_CLOSE_LIMIT, Happening, LatencyModel, ServerSpec, World, WorldConfig};

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
    /// Per server: when it began shutting down (virtual seconds).
    closing_since: Vec<Option<f64>>,
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
            closing_since: vec![None; total],
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
        let (crash, shutdown) = death_chances(self.config.crash_rate, self.config.shutdown_rate);
        for s in 0..self.world.servers.len() {
            // Keep at least one server taking players.
            if self.alive_servers().len() <= 1 || !self.world.servers[s].alive || self.closing[s] {
                continue;
            }
            let died = if self.rng.next_f64() < crash {
                self.world.crash(s);
                self.observed.crashes += 1;
                true
            } else if self.rng.next_f64() < shutdown {
                self.world.shutdown(s);
                self.closing[s] = true;
                self.closing_since[s] = Some(self.world.now);
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
        self.leave_dead_servers();
    }

    /// Players on servers that died are gone from them: a start still waiting there is
    /// counted by how its server died (and held to the bound if it had run past it before),
    /// and the player is offline. Run each second of play,
    /// and in the settling, where a shutdown begun in the play's last 30 s is killed.
    fn leave_dead_servers(&mut self) {
        if self.world.servers.iter().all(|s| s.alive) {
            return;
        }
        for p in 0..self.players.len() {
            let server = match self.players[p].presence {
                Presence::Online { server, .. } | Presence::Joining { server, .. } => server,
                Presence::Offline => continue,
            };
            if !self.world.servers[server].alive {
                if let Presence::Joining { since, left_at, .. } = self.players[p].presence {
                    // A start its player had not yet given up on (that is checked every 5 s)
                    // that was past the bound before its server died, the DataStore healthy
                    // and the server not closing within the bound, missed it as surely.
                    let died = self.observed.died_at.get(&server).copied();
                    let waited = died.unwrap_or(self.world.now) - since;
                    if left_at.is_none()
                        && waited > HANDOFF_BOUND
                        && self.healthy_since(since)
                        && !self.closing_within_bound(server, since)
                    {
                        self.observed.healthy_starts += 1;
                        self.observed.slow_healthy_starts.push((
                            self.players[p].key.clone(),
                            since,
                            format!("had not returned after {waited:.1} s when its server died"),
                        ));
                    }
                    // A closing server's death is its kill. One that closed by itself (its
                    // `BindToClose` returned: no kill logged) waited for its starts to return
                    // first, so a start still waiting there is one whose answer went missing.
                    // A start on a closing server returns nil at its next step: one still
                    // waiting at the kill was held up, by DataStore errors or a throttle of
                    // its server's requests, and without either in the shutdown it was stuck.
                    let killed_at = self.observed.died_at.get(&server).copied();
                    let held_up = killed_at.is_some_and(|d| {
                        let from = d - BIND_TO_CLOSE_LIMIT;
                        self.config.faulty_between(from, d)
                            || self.world.servers[server].throttled_between(from, d)
                    });
                    let stuck = match killed_at {
                        _ if !self.closing[server] => None,
                        Some(_) if held_up => None,
                        Some(d) => Some(format!(
                            "was still waiting after {:.1} s when its server was killed at the \
                             end of BindToClose, with the DataStore healthy through the \
                             shutdown and no request of its server throttled then",
                            d - since
                        )),
                        None => Some(format!(
                            "was still waiting after {:.1} s when its server closed (its \
                             BindToClose returned, which waits for every start)",
                            self.world.now - since
                        )),
                    };
                    let reason = if let Some(what) = stuck {
                        let key = self.players[p].key.clone();
                        self.observed.unexplained_starts.push((key, since, what));
                        StartFailure::Unexplained
                    } else if self.closing[server] {
                        StartFailure::Killed
                    } else {
                        StartFailure::Crashed
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
                        let missed = too_long
                            && self.healthy_since(since)
                            && !self.closing_within_bound(server, since);
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
        self.start_line(p, server, self.world.now, "called");
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
            self.start_line(p, server, self.world.now, "threw");
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
                giver_lost_alive: false,
                giver_left: copies_left,
                came_back: false,
                giver_generation: giver.map_or(0, |x| x.session_load_count),
                receiver_kept: false,
                receiver_had,
                passed_on: None,
                receiver_generation: receiver.map_or(0, |x| x.session_load_count),
                receiver_lost_alive: false,
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
            let called = SentGift {
                to: key.clone(),
                server,
                call,
                at: self.world.now,
            };
            self.observed.gifts_called.insert(gift.clone(), called);
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
                    key,
                    value,
                    call,
                    transformed_at,
                    ..
                } => {
                    // A session's own write, by the server it ran on.
                    let own = call
                        .is_none()
                        .then(|| self.world.servers[s].engine().identity().job_id.as_str());
                    self.observed.note_write(key, value, t, own);
                    // A session's own writes (not a `MessageAsync`'s, which stores the stored
                    // `Data` again) tell which sides of its trades are stored.
                    if call.is_none() {
                        let trades = &mut self.observed.trade_log;
                        let pending = (&mut self.unsaved_gives, &mut self.unkept_takes);
                        let written = (&*key, &*value, *transformed_at);
                        let confirmed = confirm_write(trades, pending, s, written);
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

    /// Notes a [`StartLine`] of player `p` on server `s` at `at`, while the fleet keeps its
    /// log.
    fn start_line(&mut self, p: usize, s: usize, at: f64, what: &'static str) {
        if self.keep_log {
            self.observed.start_lines.push(StartLine {
                key: self.players[p].key.as_str().into(),
                server: s,
                at,
                what,
            });
        }
    }

    fn on_started(&mut self, s: usize, call: CallId, profile: Option<ProfileId>, t: f64) {
        let Some(p) = self.joining[s].remove(&call) else {
            return;
        };
        if profile.is_none() {
            self.start_line(p, s, t, "returned nil");
        }
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
                // (Nor one whose server began closing within the bound; one that began later
                // found the start past the bound already.)
                let closed_late = reason == StartFailure::Closing
                    && took > HANDOFF_BOUND
                    && !self.closing_within_bound(s, since)
                    && left_at.is_none_or(|at| at - since > HANDOFF_BOUND);
                let judged = closed_late
                    || !matches!(
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
    /// healthy for the whole bound after it, and for [`SAVE_RETRY_CAP`] before it (from a
    /// second more), so a start that missed it missed it with nothing to blame. A start made
    /// late in a healthy stretch is not held to it, whenever it returns: had it hung, faults
    /// would have come back before the bound. Nor one made early in it: a final save of the
    /// key that failed just before may wait up to 20 s to retry, and the start waits behind it
    /// (deviation for spec §19 item 9), then perhaps for a steal of a lock that a start's
    /// write, committed though its call failed, left behind.
    fn healthy_since(&self, since: f64) -> bool {
        !self
            .config
            .faulty_between(since - SAVE_RETRY_CAP, since + HANDOFF_BOUND)
    }

    /// Whether server `s` began shutting down within the bound of a start made at `since`
    /// (a start there is not held to the bound). One that began later found the start past
    /// the bound already: it excuses nothing.
    fn closing_within_bound(&self, s: usize, since: f64) -> bool {
        self.closing[s] && self.closing_since[s].is_none_or(|at| at <= since + HANDOFF_BOUND)
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
        self.leave_dead_servers();
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
            self.leave_dead_servers();
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
                    if let Some(server) = settle_server(&self.players[p].presence, &alive, p)
                        && recipients.contains(&self.players[p].key)
                    {
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

    /// How many items player `p` (in [`Fleet::keys`] order) looted: its items are
    /// `{key}:item1` to `{key}:item{n}`.
    pub(crate) fn items_looted(&self, p: usize) -> u64 {
        self.players.get(p).map_or(0, |player| player.items)
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

/// The chances a server crashes in a second, and that it shuts down in a second it did not
/// crash, for `crash_rate` crashes and `shutdown_rate` shutdowns per server per virtual minute
/// (their sum at most 60: `FleetConfig::check`). The shutdown is rolled only when the crash
/// roll fails, so its chance is raised to make up for the seconds a crash took: each rate is
/// met as given.
fn death_chances(crash_rate: f64, shutdown_rate: f64) -> (f64, f64) {
    let crash = crash_rate / 60.0;
    let shutdown = match crash < 1.0 {
        true => (shutdown_rate / 60.0 / (1.0 - crash)).min(1.0),
        false => 0.0,
    };
    (crash, shutdown)
}

/// Where player `p` (the `p`th) logs in once more in the settle, if it does, among the `alive`
/// servers: an offline player on one of them, spread by index; a player who left while loading
/// (the game ends what that start returns) on the server of that start while it runs, where
/// the later call takes the load over, so no key is started on two servers at once; a player
/// online or still loading stays.
fn settle_server(presence: &Presence, alive: &[usize], p: usize) -> Option<usize> {
    let spread = || alive.get(p % alive.len().max(1)).copied();
    match *presence {
        Presence::Offline => spread(),
        Presence::Joining {
            server,
            left_at: Some(_),
            ..
        } if alive.contains(&server) => Some(server),
        Presence::Joining {
            left_at: Some(_), ..
        } => spread(),
        _ => None,
    }
}
