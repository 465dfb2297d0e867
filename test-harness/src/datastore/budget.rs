//! Server-level request budgets and throttle queues (spec "Request budgets", "Queues").
//!
//! Each server has, per `DataStoreRequestType`, a token bucket: it refills at
//! `base + per_player × players` requests per minute up to one minute's worth, and starts full
//! plus a one-time startup burst. A request that finds a token is admitted at once. Otherwise it
//! joins a FIFO queue and is admitted when the bucket has refilled for it — a time we can
//! compute exactly on the virtual clock — unless the queue already holds
//! [`super::Budgets::queue_capacity`] (30) requests, in which case it is dropped with 301–306.
//! `UpdateAsync` needs both a read and a write token (it counts against both budgets).
//!
//! The queues are Roblox's (spec "Queues": Set, Ordered set, Get, Ordered get), not one per
//! request type: reads wait in the Get queue; writes and removes share the Set queue, as the
//! older budgets grouped Set, Increment, Update and Remove. List calls, which fail with a named
//! `…Throttle` error rather than a 301–306 code, wait in a queue of their own.
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
}

/// One server's budgets: per request type (indexed by [`RequestType::index`]) an override of
/// the rate and the bucket, created on first use; per queue (indexed by
/// [`RequestType::queue`]) the admission times of the requests waiting in it.
#[derive(Clone, Debug, Default)]
struct ServerBudget {
    players: u32,
    overrides: [Option<Rate>; RequestType::COUNT],
    buckets: [Option<Bucket>; RequestType::COUNT],
    queues: [Vec<f64>; RequestType::QUEUES],
}

impl RequestType {
    const COUNT: usize = 4;
    /// The Get queue, the Set queue and the list calls' queue.
    const QUEUES: usize = 3;

    /// The throttle queue a request of this type waits in (see the module's documentation).
    fn queue(self) -> usize {
        match self {
            RequestType::StandardRead => 0,
            RequestType::StandardWrite | RequestType::StandardRemove => 1,
            RequestType::StandardList => 2,
        }
    }

    fn index(self) -> usize {
        match self {
            RequestType::StandardRead => 0,
            RequestType::StandardWrite => 1,
            RequestType::StandardList => 2,
            RequestType::StandardRemove => 3,
        }
    }
}

impl ServerBudget {
    /// Refill rate per minute and startup burst of `kind`.
    fn rate(&self, budgets: &Budgets, kind: RequestType) -> (f64, f64) {
        let rate = self.overrides[kind.index()].unwrap_or_else(|| kind.rate(budgets));
        (
            rate.per_minute(self.players).max(0.0),
            rate.startup_burst.max(0.0),
        )
    }

    /// Brings a bucket up to `now` (creating it, full plus burst, on first use); returns it
    /// with the type's rate per minute.
    fn refill(&mut self, now: f64, budgets: &Budgets, kind: RequestType) -> (&mut Bucket, f64) {
        let (per_minute, burst) = self.rate(budgets, kind);
        let bucket = self.buckets[kind.index()].get_or_insert(Bucket {
            tokens: per_minute + burst,
            updated: now,
        });
        let elapsed = (now - bucket.updated).max(0.0);
        if bucket.tokens < per_minute {
            bucket.tokens = (bucket.tokens + elapsed * per_minute / 60.0).min(per_minute);
        }
        bucket.updated = bucket.updated.max(now);
        (bucket, per_minute)
    }

    /// Refills every bucket in use up to `now`.
    fn refill_all(&mut self, now: f64, budgets: &Budgets) {
        for kind in [
            RequestType::StandardRead,
            RequestType::StandardWrite,
            RequestType::StandardList,
            RequestType::StandardRemove,
        ] {
            if self.buckets[kind.index()].is_some() {
                self.refill(now, budgets, kind);
            }
        }
    }
}

/// The request budgets of every server.
#[derive(Clone, Debug, Default)]
pub struct BudgetBook {
    servers: BTreeMap<ServerId, ServerBudget>,
}

impl BudgetBook {
    fn server(&mut self, server: ServerId) -> &mut ServerBudget {
        self.servers.entry(server).or_default()
    }

    /// Sets how many players a server has (its rates scale with it).
    ///
    /// Tokens earned so far count at the old rate; later ones at the new.
    pub fn set_players(&mut self, now: f64, budgets: &Budgets, server: ServerId, players: u32) {
        let s = self.server(server);
        s.refill_all(now, budgets);
        s.players = players;
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
        let s = self.server(server);
        if s.buckets[kind.index()].is_some() {
            s.refill(now, budgets, kind);
        }
        s.overrides[kind.index()] = Some(rate);
    }

    /// `GetRequestBudgetForRequestType`: whole requests available now (never negative).
    pub fn budget(
        &mut self,
        now: f64,
        budgets: &Budgets,
        server: ServerId,
        kind: RequestType,
    ) -> f64 {
        let (bucket, _) = self.server(server).refill(now, budgets, kind);
        bucket.tokens.max(0.0).floor()
    }

    /// Asks for one token of each of `operation`'s request types.
    pub fn admit(
        &mut self,
        now: f64,
        budgets: &Budgets,
        server: ServerId,
        operation: Operation,
    ) -> Admission {
        let s = self.server(server);
        // Decide for every type first, so a rejected UpdateAsync takes no read token either.
        // (At most two types: UpdateAsync's read and write.)
        let mut plans = [(RequestType::StandardRead, now); 2];
        let kinds = operation.request_types();
        for (plan, &kind) in plans.iter_mut().zip(kinds) {
            let (bucket, per_minute) = s.refill(now, budgets, kind);
            let tokens = bucket.tokens;
            let queue = &mut s.queues[kind.queue()];
            queue.retain(|t| *t > now);
            let ready = if tokens >= 1.0 {
                now
            } else if queue.len() >= budgets.queue_capacity || per_minute <= 0.0 {
                return Admission::Rejected(RequestError::QueueFull { operation });
            } else {
                now + (1.0 - tokens) * 60.0 / per_minute
            };
            *plan = (kind, ready);
        }
        let mut at = now;
        for &(kind, ready) in &plans[..kinds.len()] {
            // Refilled up to `now` just above.
            let Some(bucket) = s.buckets[kind.index()].as_mut() else {
                continue;
            };
            bucket.tokens -= 1.0;
            if ready > now {
                s.queues[kind.queue()].push(ready);
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

    /// Writes and removes wait in one Set queue of 30 (302 when it is full for a SetAsync,
    /// 306 for a RemoveAsync); reads keep their own Get queue.
    #[test]
    fn writes_and_removes_share_the_set_queue() {
        let budgets = Budgets::roblox();
        let mut book = BudgetBook::default();
        // Both buckets start with 60 + a burst of 60: empty them.
        for op in [Operation::Set, Operation::Remove] {
            for _ in 0..120 {
                assert_eq!(book.admit(0.0, &budgets, A, op), Admission::Now);
            }
        }
        for i in 1..=20 {
            assert_eq!(
                book.admit(0.0, &budgets, A, Operation::Set),
                Admission::QueuedUntil(f64::from(i))
            );
        }
        for i in 1..=10 {
            assert_eq!(
                book.admit(0.0, &budgets, A, Operation::Remove),
                Admission::QueuedUntil(f64::from(i))
            );
        }
        // Thirty wait in the Set queue: both a remove and a set are dropped now.
        let remove = book.admit(0.0, &budgets, A, Operation::Remove);
        let Admission::Rejected(err) = remove else {
            panic!("{remove:?}")
        };
        assert_eq!(
            err.to_string(),
            "306: RemoveAsync request dropped. Request was throttled but queue was full."
        );
        let set = book.admit(0.0, &budgets, A, Operation::Set);
        let Admission::Rejected(err) = set else {
            panic!("{set:?}")
        };
        assert_eq!(
            err.to_string(),
            "302: SetAsync request dropped. Request was throttled but queue was full."
        );
        // The Get queue is another queue: a throttled read still queues.
        for _ in 0..120 {
            assert_eq!(book.admit(0.0, &budgets, A, Operation::Get), Admission::Now);
        }
        assert_eq!(
            book.admit(0.0, &budgets, A, Operation::Get),
            Admission::QueuedUntil(1.0)
        );
        // At 1.5 s the first queued set and remove have run: two places are free.
        assert_eq!(
            book.admit(1.5, &budgets, A, Operation::Remove),
            Admission::QueuedUntil(11.0)
        );
        assert_eq!(
            book.admit(1.5, &budgets, A, Operation::Set),
            Admission::QueuedUntil(21.0)
        );
        assert!(matches!(
            book.admit(1.5, &budgets, A, Operation::Set),
            Admission::Rejected(_)
        ));
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
