//! A fleet's configuration ([`FleetConfig`]): what a run is made of, its defaults, and the
//! checks that refuse a configuration no run can play (issue "harness" §3, §7).

use crate::config::probability;

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
    /// Mean of the stay drawn (exponentially) for a player on one server before leaving or
    /// hopping. The stay ends at the player's first action at or after its drawn end, and
    /// actions come [`FleetConfig::op_interval`] apart on average (exponentially, on whole
    /// seconds), so stays last about `stay + op_interval` on average (100 s with the
    /// defaults).
    pub stay: f64,
    /// Mean seconds between a player's gameplay operations (acted on at whole seconds, as
    /// `stay`).
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
    /// `BindToClose` shutdowns per server per virtual minute (rolled once a second; with
    /// `crash_rate`, at most 60).
    pub shutdown_rate: f64,
    /// Crashes per server per virtual minute (rolled once a second; with `shutdown_rate`, at
    /// most 60).
    pub crash_rate: f64,
    /// Record every engine input and output (for a trace file).
    pub record: bool,
    /// When set, DataStore faults and message loss come and go: on for this many seconds (a
    /// whole number: the run switches them once a virtual second), then off as long, starting
    /// on. A start whose hand-off bound (60 s), and the 20 s before it (`SAVE_RETRY_CAP`: the
    /// aftermath of faults), fall wholly in a healthy stretch (or in the settle phase) is held
    /// to it, so a period of 82 s or less holds none during play but in the last healthy
    /// stretch, which runs on into settling; `None`: faults the whole run.
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
    /// with many deaths keeps hopping. Counted on top of `servers`. A death in the last
    /// [`SPARE_BOOT_DELAY`] of play takes a spare that never boots (the play ends first).
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
        // A server dies at most once a second: the two together at most 60 a minute.
        if self.crash_rate + self.shutdown_rate > 60.0 {
            return Err(format!(
                "crash and shutdown rates together must be at most 60 per server per minute, \
                 got {} + {}",
                self.crash_rate, self.shutdown_rate
            ));
        }
        Ok(())
    }
}
