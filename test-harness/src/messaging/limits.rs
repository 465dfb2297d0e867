//! MessagingService rate limits (spec "MessagingService"): messages sent per server
//! (600 + 240 × players a minute), messages received per topic (40 + 80 × servers a minute) and
//! per game (400 + 200 × servers a minute), subscriptions per server (20 + 8 × players) and
//! subscribe requests per server (240 a minute).
//!
//! A rate is counted over a sliding 60-second window of virtual time. A publish or a subscribe
//! over its limit is refused with an error; a message arriving over a receive limit is dropped
//! (delivery is best effort). "Servers" are the servers running: those that reported a player
//! count, subscribed or published, until they stop.

use std::collections::{BTreeMap, VecDeque};

use rustc_hash::FxHashMap;

use crate::datastore::ServerId;

/// `base + per × n`: a limit that grows with the players of a server or the servers of a game.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scaled {
    /// The limit with none.
    pub base: f64,
    /// What each one adds.
    pub per: f64,
}

impl Scaled {
    /// The limit for `n`.
    pub fn at(self, n: usize) -> f64 {
        self.base + self.per * n as f64
    }
}

/// The limits; `None` turns one off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MessagingLimits {
    /// Messages a server may publish a minute, by its players (600 + 240n).
    pub sent_per_server: Option<Scaled>,
    /// Messages a topic may receive a minute, by servers (40 + 80n).
    pub received_per_topic: Option<Scaled>,
    /// Messages the game may receive a minute, by servers (400 + 200n).
    pub received_per_game: Option<Scaled>,
    /// Subscriptions a server may hold, by its players (20 + 8n).
    pub subscriptions_per_server: Option<Scaled>,
    /// Subscribe requests a server may make a minute (240).
    pub subscribe_requests_per_server: Option<f64>,
}

impl MessagingLimits {
    /// Roblox's limits.
    pub fn roblox() -> MessagingLimits {
        let scaled = |base, per| Some(Scaled { base, per });
        MessagingLimits {
            sent_per_server: scaled(600.0, 240.0),
            received_per_topic: scaled(40.0, 80.0),
            received_per_game: scaled(400.0, 200.0),
            subscriptions_per_server: scaled(20.0, 8.0),
            subscribe_requests_per_server: Some(240.0),
        }
    }

    /// No rate limits.
    pub fn off() -> MessagingLimits {
        MessagingLimits {
            sent_per_server: None,
            received_per_topic: None,
            received_per_game: None,
            subscriptions_per_server: None,
            subscribe_requests_per_server: None,
        }
    }
}

/// Times of the events of the last minute.
#[derive(Clone, Debug, Default)]
struct Window(VecDeque<f64>);

impl Window {
    /// Events in the minute up to `now`: an event at `t` leaves at `t + 60` (computed so, the
    /// way the clock reaches that time: `now - 60` can round below `t`, keeping an event a
    /// minute old in the window).
    fn count(&mut self, now: f64) -> usize {
        while self.0.front().is_some_and(|t| *t + 60.0 <= now) {
            self.0.pop_front();
        }
        self.0.len()
    }

    /// Records an event at `now` if fewer than `limit` happened in the last minute.
    fn take(&mut self, now: f64, limit: f64) -> bool {
        if self.count(now) as f64 >= limit {
            return false;
        }
        self.0.push_back(now);
        true
    }
}

#[derive(Clone, Debug, Default)]
struct ServerState {
    players: u32,
    subscriptions: usize,
    sent: Window,
    subscribe_requests: Window,
}

/// What the limits have counted.
#[derive(Clone, Debug, Default)]
pub struct RateBook {
    servers: BTreeMap<ServerId, ServerState>,
    /// Looked up by topic; iterated only to let go of windows that emptied, in any order.
    received_by_topic: FxHashMap<String, Window>,
    /// How many topics `received_by_topic` may hold before the empty windows go (topics are
    /// one per session, `PS_<guid>`: a long run would otherwise keep every one).
    prune_at: usize,
    received: Window,
}

/// The fewest topics [`RateBook`] keeps before it lets go of empty windows.
const PRUNE_AT_LEAST: usize = 1024;

/// Which limit refused a subscribe, and its value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Refusal {
    /// Subscriptions the server holds.
    Subscriptions(f64),
    /// Subscribe requests by the server this minute.
    SubscribeRequests(f64),
}

impl RateBook {
    fn server(&mut self, server: ServerId) -> &mut ServerState {
        self.servers.entry(server).or_default()
    }

    /// Sets how many players `server` has (and counts it as running).
    pub fn set_players(&mut self, server: ServerId, players: u32) {
        self.server(server).players = players;
    }

    /// `server` stopped: it no longer counts, and its subscriptions are gone.
    pub fn remove_server(&mut self, server: ServerId) {
        self.servers.remove(&server);
    }

    /// Counts `server` as running (with the players it has, none if never told).
    pub fn add_server(&mut self, server: ServerId) {
        self.server(server);
    }

    /// A publish by `server` at `now`: counted, or refused over the limit (returned).
    pub fn publish(
        &mut self,
        limits: &MessagingLimits,
        server: ServerId,
        now: f64,
    ) -> Result<(), f64> {
        let s = self.server(server);
        match limits.sent_per_server {
            Some(rate) => {
                let limit = rate.at(s.players as usize);
                if s.sent.take(now, limit) {
                    Ok(())
                } else {
                    Err(limit)
                }
            }
            None => Ok(()),
        }
    }

    /// A subscribe by `server` at `now`: counted, or refused over a limit.
    pub fn subscribe(
        &mut self,
        limits: &MessagingLimits,
        server: ServerId,
        now: f64,
    ) -> Result<(), Refusal> {
        let s = self.server(server);
        if let Some(rate) = limits.subscriptions_per_server {
            let limit = rate.at(s.players as usize);
            if s.subscriptions as f64 >= limit {
                return Err(Refusal::Subscriptions(limit));
            }
        }
        if let Some(limit) = limits.subscribe_requests_per_server
            && !s.subscribe_requests.take(now, limit)
        {
            return Err(Refusal::SubscribeRequests(limit));
        }
        s.subscriptions += 1;
        Ok(())
    }

    /// One of `server`'s subscriptions was disconnected.
    pub fn unsubscribed(&mut self, server: ServerId) {
        if let Some(s) = self.servers.get_mut(&server) {
            s.subscriptions = s.subscriptions.saturating_sub(1);
        }
    }

    /// A message on `topic` arriving at `now`: whether the receive limits let it through
    /// (counted if so).
    pub fn receive(&mut self, limits: &MessagingLimits, topic: &str, now: f64) -> bool {
        let servers = self.servers.len().max(1);
        let game = limits.received_per_game.map(|r| r.at(servers));
        if game.is_some_and(|limit| self.received.count(now) as f64 >= limit) {
            return false;
        }
        if let Some(rate) = limits.received_per_topic {
            if self.received_by_topic.len() >= self.prune_at.max(PRUNE_AT_LEAST) {
                self.received_by_topic.retain(|_, w| w.count(now) > 0);
                self.prune_at = 2 * self.received_by_topic.len();
            }
            let window = match self.received_by_topic.get_mut(topic) {
                Some(w) => w,
                None => self.received_by_topic.entry(topic.to_string()).or_default(),
            };
            if !window.take(now, rate.at(servers)) {
                return false;
            }
        }
        if game.is_some() {
            self.received.0.push_back(now);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ServerId = ServerId(1);
    const B: ServerId = ServerId(2);

    #[test]
    fn publishes_are_counted_per_server_over_a_sliding_minute() {
        let limits = MessagingLimits::roblox();
        let mut book = RateBook::default();
        book.set_players(A, 1); // 600 + 240 = 840 a minute
        for i in 0..840 {
            assert_eq!(book.publish(&limits, A, f64::from(i) * 0.05), Ok(()));
        }
        assert_eq!(book.publish(&limits, A, 42.0), Err(840.0));
        // Another server has its own count (600 with no players).
        assert_eq!(book.publish(&limits, B, 42.0), Ok(()));
        // A minute after the first publish, one more fits.
        assert_eq!(book.publish(&limits, A, 60.0), Ok(()));
        assert_eq!(book.publish(&limits, A, 60.0), Err(840.0));
        assert_eq!(book.publish(&MessagingLimits::off(), A, 60.0), Ok(()));
        // The same from 0.3 s: 60.3 - 60 rounds below 0.3, yet the publish a minute after the
        // first still leaves it.
        let mut book = RateBook::default();
        for i in 0..600 {
            assert_eq!(book.publish(&limits, A, 0.3 + f64::from(i) * 0.05), Ok(()));
        }
        assert_eq!(book.publish(&limits, A, 42.0), Err(600.0));
        assert_eq!(book.publish(&limits, A, 0.3 + 60.0), Ok(()));
    }

    #[test]
    fn subscriptions_are_capped_by_players_and_requests_by_the_minute() {
        let limits = MessagingLimits::roblox();
        let mut book = RateBook::default();
        // 20 + 8 × 0 subscriptions held at once.
        for _ in 0..20 {
            assert_eq!(book.subscribe(&limits, A, 0.0), Ok(()));
        }
        assert_eq!(
            book.subscribe(&limits, A, 0.0),
            Err(Refusal::Subscriptions(20.0))
        );
        book.unsubscribed(A);
        assert_eq!(book.subscribe(&limits, A, 0.0), Ok(()));
        // With 100 players, 820 may be held, but only 240 requests go through a minute.
        book.set_players(A, 100);
        for _ in 0..219 {
            assert_eq!(book.subscribe(&limits, A, 1.0), Ok(()));
        }
        assert_eq!(
            book.subscribe(&limits, A, 1.0),
            Err(Refusal::SubscribeRequests(240.0))
        );
        assert_eq!(book.subscribe(&limits, A, 60.5), Ok(()));
    }

    #[test]
    fn arrivals_over_a_receive_limit_are_dropped() {
        let limits = MessagingLimits::roblox();
        let mut book = RateBook::default();
        book.set_players(A, 0);
        book.set_players(B, 0);
        // Two servers: 40 + 160 = 200 a minute on one topic, 400 + 400 = 800 in the game.
        let through = (0..250)
            .filter(|i| book.receive(&limits, "T", f64::from(*i) * 0.1))
            .count();
        assert_eq!(through, 200);
        let through = (0..700)
            .filter(|i| book.receive(&limits, &format!("U{}", i % 10), 30.0))
            .count();
        assert_eq!(through, 600, "the game's 800 less the 200 on T");
        // A server that stops no longer counts: one server, 120 on a topic.
        book.remove_server(B);
        let through = (0..200)
            .filter(|_| book.receive(&limits, "V", 100.0))
            .count();
        assert_eq!(through, 120);
    }

    /// Topics are one per session: the windows of topics that received nothing in the last
    /// minute are let go once there are many, and a topic's limit counts as before.
    #[test]
    fn the_windows_of_quiet_topics_are_let_go() {
        let limits = MessagingLimits::roblox();
        let mut book = RateBook::default();
        book.set_players(A, 0);
        // One message a second, each to a topic of its own, for an hour and more.
        for i in 0..5000 {
            assert!(book.receive(&limits, &format!("PS_{i}"), f64::from(i)));
        }
        assert!(
            book.received_by_topic.len() <= PRUNE_AT_LEAST,
            "{} windows kept",
            book.received_by_topic.len()
        );
        // A busy topic among them still stops at its limit (one server: 120 a minute).
        let through = (0..200)
            .filter(|i| book.receive(&limits, "busy", 5000.0 + f64::from(*i) * 0.01))
            .count();
        assert_eq!(through, 120);
    }
}
