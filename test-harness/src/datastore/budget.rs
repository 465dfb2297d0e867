//! Server-level request budgets and throttle queues (spec "Request budgets", "Queues").
//!
//! Each server has, per `DataStoreRequestType`, a token bucket: it refills at
//! `base + per_player × players` requests per minute up to one minute's worth, and starts full
//! plus a one-time startup burst. A request that finds a token is admitted at once. Otherwise it
//! joins that type's FIFO queue and is admitted when the bucket has refilled for it — a time we
//! can compute exactly on the virtual clock — unless the queue already holds
//! [`super::Budgets::queue_capacity`] (30) requests, in which case it is dropped with 301–306.
//! `UpdateAsync` needs both a read and a write token (it counts against both budgets).
//!
//! A queued request keeps the admission time computed when it arrived, even if the player count
//! changes while it waits.

use std::collections::BTreeMap;

use super::error::RequestError;
use super::limits::{Budgets, Rate};
use super::{Operation, ServerId};

/// `Enum.DataStoreRequestType` for standard data stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestType {
    /// GetAsync, GetVersionAsync, GetVersionAtTimeAsync, the read of UpdateAsync.
    StandardRead,
    /// SetAsync, IncrementAsync, the write of UpdateAsync.
    StandardWrite,
    /// ListKeysAsync, ListVersionsAsync.
    StandardList,
    /// RemoveAsync.
    StandardRemove,
}

impl RequestType {
    /// The budget of this type in `budgets`.
    pub fn rate(self, budgets: &Budgets) -> Rate {
        match self {
            RequestType::StandardRead => budgets.read,
            RequestType::StandardWrite => budgets.write,
            RequestType::StandardList => budgets.list,
            RequestType::StandardRemove => budgets.remove,
        }
    }
}

/// The outcome of asking for budget.
#[derive(Clone, Debug, PartialEq)]
pub enum Admission {
    /// Budget was available: run the request now.
    Now,
    /// Throttled: the request waits in its queue and runs at this virtual time.
    QueuedUntil(f64),
    /// The queue was full: the call fails with this error (301–306 or a named `…Throttle`).
    Rejected(RequestError),
}

#[derive(Clone, Debug)]
struct Bucket {
    tokens: f64,
    updated: f64,
    /// Admission times of the requests waiting in this type's queue.
    queue: Vec<f64>,
}

#[derive(Clone, Debug)]
struct ServerBudget {
    players: u32,
    overrides: BTreeMap<RequestType, Rate>,
    buckets: BTreeMap<RequestType, Bucket>,
}

/// The request budgets of every server.
#[derive(Clone, Debug, Default)]
pub struct BudgetBook {
    servers: BTreeMap<ServerId, ServerBudget>,
}

impl BudgetBook {
    fn server(&mut self, server: ServerId) -> &mut ServerBudget {
        self.servers.entry(server).or_insert_with(|| ServerBudget {
            players: 0,
            overrides: BTreeMap::new(),
            buckets: BTreeMap::new(),
        })
    }

    /// Sets how many players a server has (its rates scale with it).
    ///
    /// Tokens earned so far count at the old rate; later ones at the new.
    pub fn set_players(&mut self, now: f64, budgets: &Budgets, server: ServerId, players: u32) {
        let kinds: Vec<RequestType> = self.server(server).buckets.keys().copied().collect();
        for kind in kinds {
            self.refill(now, budgets, server, kind);
        }
        self.server(server).players = players;
    }

    /// `DataStoreService:SetRateLimitForRequestType` for one server. Tokens earned so far count
    /// at the old rate; a bucket not used yet starts with the new rate and its burst.
    pub fn set_rate(
        &mut self,
        now: f64,
        budgets: &Budgets,
        server: ServerId,
        kind: RequestType,
        rate: Rate,
    ) {
        if self.server(server).buckets.contains_key(&kind) {
            self.refill(now, budgets, server, kind);
        }
        self.server(server).overrides.insert(kind, rate);
    }

    fn rate(&mut self, budgets: &Budgets, server: ServerId, kind: RequestType) -> (f64, f64) {
        let s = self.server(server);
        let rate = s
            .overrides
            .get(&kind)
            .copied()
            .unwrap_or_else(|| kind.rate(budgets));
        (
            rate.per_minute(s.players).max(0.0),
            rate.startup_burst.max(0.0),
        )
    }

    /// Brings a bucket up to `now` (creating it, full plus burst, on first use).
    fn refill(
        &mut self,
        now: f64,
        budgets: &Budgets,
        server: ServerId,
        kind: RequestType,
    ) -> &mut Bucket {
        let (per_minute, burst) = self.rate(budgets, server, kind);
        let bucket = self
            .server(server)
            .buckets
            .entry(kind)
            .or_insert_with(|| Bucket {
                tokens: per_minute + burst,
                updated: now,
                queue: Vec::new(),
            });
        let elapsed = (now - bucket.updated).max(0.0);
        if bucket.tokens < per_minute {
            bucket.tokens = (bucket.tokens + elapsed * per_minute / 60.0).min(per_minute);
        }
        bucket.updated = bucket.updated.max(now);
        bucket.queue.retain(|t| *t > now);
        bucket
    }

    /// `GetRequestBudgetForRequestType`: whole requests available now (never negative).
    pub fn budget(
        &mut self,
        now: f64,
        budgets: &Budgets,
        server: ServerId,
        kind: RequestType,
    ) -> f64 {
        self.refill(now, budgets, server, kind)
            .tokens
            .max(0.0)
            .floor()
    }

    /// Asks for one token of each of `operation`'s request types.
    pub fn admit(
        &mut self,
        now: f64,
        budgets: &Budgets,
        server: ServerId,
        operation: Operation,
    ) -> Admission {
        let kinds = operation.request_types();
        // Decide for every type first, so a rejected UpdateAsync takes no read token either.
        let mut plans = Vec::with_capacity(kinds.len());
        for &kind in kinds {
            let (per_minute, _) = self.rate(budgets, server, kind);
            let bucket = self.refill(now, budgets, server, kind);
            if bucket.tokens >= 1.0 {
                plans.push((kind, now));
            } else if bucket.queue.len() >= budgets.queue_capacity || per_minute <= 0.0 {
                return Admission::Rejected(RequestError::QueueFull { operation });
            } else {
                let wait = (1.0 - bucket.tokens) * 60.0 / per_minute;
                plans.push((kind, now + wait));
            }
        }
        let mut at = now;
        for (kind, ready) in plans {
            let bucket = self.refill(now, budgets, server, kind);
            bucket.tokens -= 1.0;
            if ready > now {
                bucket.queue.push(ready);
            }
            at = at.max(ready);
        }
        if at > now {
            Admission::QueuedUntil(at)
        } else {
            Admission::Now
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ServerId = ServerId(1);

    #[test]
    fn startup_burst_then_queue_of_thirty_then_301() {
        let budgets = Budgets::roblox();
        let mut book = BudgetBook::default();
        // 60/min with no players: one minute (60) plus the startup burst (60) at once.
        assert_eq!(
            book.budget(0.0, &budgets, A, RequestType::StandardRead),
            120.0
        );
        for _ in 0..120 {
            assert_eq!(book.admit(0.0, &budgets, A, Operation::Get), Admission::Now);
        }
        // The refill is one token a second: the queue drains at 1 s, 2 s, ... 30 s.
        for i in 1..=30 {
            assert_eq!(
                book.admit(0.0, &budgets, A, Operation::Get),
                Admission::QueuedUntil(f64::from(i))
            );
        }
        let rejected = book.admit(0.0, &budgets, A, Operation::Get);
        assert_eq!(
            rejected,
            Admission::Rejected(RequestError::QueueFull {
                operation: Operation::Get
            })
        );
        let Admission::Rejected(err) = rejected else {
            unreachable!()
        };
        assert_eq!(
            err.to_string(),
            "301: GetAsync request dropped. Request was throttled but queue was full."
        );
        // Other request types have their own budgets.
        assert_eq!(book.admit(0.0, &budgets, A, Operation::Set), Admission::Now);
        // Another server has its own budget too.
        assert_eq!(
            book.admit(0.0, &budgets, ServerId(2), Operation::Get),
            Admission::Now
        );
        // At 1.5 s one queued request has run: there is room for one more, behind the other 29.
        assert_eq!(
            book.admit(1.5, &budgets, A, Operation::Get),
            Admission::QueuedUntil(31.0)
        );
        assert!(matches!(
            book.admit(1.5, &budgets, A, Operation::Get),
            Admission::Rejected(_)
        ));
    }

    #[test]
    fn players_raise_the_rate() {
        let budgets = Budgets::roblox();
        let mut book = BudgetBook::default();
        book.set_players(0.0, &budgets, A, 2);
        // 5 + 2×2 = 9 per minute, plus a burst of 5.
        assert_eq!(
            book.budget(0.0, &budgets, A, RequestType::StandardList),
            14.0
        );
        for _ in 0..14 {
            assert_eq!(
                book.admit(0.0, &budgets, A, Operation::ListKeys),
                Admission::Now
            );
        }
        // 9 per minute: one every 60/9 s.
        assert_eq!(
            book.admit(0.0, &budgets, A, Operation::ListKeys),
            Admission::QueuedUntil(60.0 / 9.0)
        );
        // Refilled tokens cap at one minute's worth (9), the burst does not come back.
        assert_eq!(
            book.budget(1000.0, &budgets, A, RequestType::StandardList),
            9.0
        );
    }

    #[test]
    fn update_needs_read_and_write_budget() {
        let budgets = Budgets {
            queue_capacity: 1,
            ..Budgets::roblox()
        };
        let mut book = BudgetBook::default();
        for _ in 0..120 {
            assert_eq!(book.admit(0.0, &budgets, A, Operation::Set), Admission::Now);
        }
        // Read has tokens, write does not: the update waits for the write token.
        assert_eq!(
            book.admit(0.0, &budgets, A, Operation::Update),
            Admission::QueuedUntil(1.0)
        );
        assert_eq!(
            book.budget(0.0, &budgets, A, RequestType::StandardRead),
            119.0
        );
        // The write queue (capacity 1) is full: a second update is dropped with 304 and takes
        // no read token.
        let err = RequestError::QueueFull {
            operation: Operation::Update,
        };
        assert_eq!(
            book.admit(0.0, &budgets, A, Operation::Update),
            Admission::Rejected(err)
        );
        assert_eq!(
            book.budget(0.0, &budgets, A, RequestType::StandardRead),
            119.0
        );
    }

    #[test]
    fn rate_overrides_and_scaling() {
        let budgets = Budgets::roblox().scaled(0.5);
        let mut book = BudgetBook::default();
        assert_eq!(
            book.budget(0.0, &budgets, A, RequestType::StandardWrite),
            60.0
        );
        book.set_rate(
            0.0,
            &budgets,
            A,
            RequestType::StandardRemove,
            Rate {
                base: 2.0,
                per_player: 0.0,
                startup_burst: 0.0,
            },
        );
        assert_eq!(
            book.admit(0.0, &budgets, A, Operation::Remove),
            Admission::Now
        );
        assert_eq!(
            book.admit(0.0, &budgets, A, Operation::Remove),
            Admission::Now
        );
        assert_eq!(
            book.admit(0.0, &budgets, A, Operation::Remove),
            Admission::QueuedUntil(30.0)
        );
        let zero = Rate {
            base: 0.0,
            per_player: 0.0,
            startup_burst: 0.0,
        };
        book.set_rate(0.0, &budgets, ServerId(3), RequestType::StandardRead, zero);
        let err = RequestError::QueueFull {
            operation: Operation::GetVersion,
        };
        assert_eq!(
            book.admit(0.0, &budgets, ServerId(3), Operation::GetVersion),
            Admission::Rejected(err)
        );
    }
}
