//! Request budgets and throttle queues (spec "Request budgets", "Queues"): each server's, and
//! the experience-level ones all servers share.
//!
//! Each server has, per `DataStoreRequestType`, a token bucket: it refills at
//! `base + per_player × players` requests per minute up to one minute's worth (a surplus
//! earned at a higher rate is dropped when the rate falls), and starts full plus a one-time
//! startup burst, spent before the earned tokens. A request that finds a token is admitted at
//! once. Otherwise it joins a FIFO queue and is admitted when the bucket has refilled for it and
//! every request ahead of it in that queue has been admitted — a time we can compute exactly on
//! the virtual clock — unless the queue already holds [`super::Budgets::queue_capacity`] (30)
//! requests, in which case it is dropped with 301–306. A request that finds tokens while
//! others wait in its queue waits behind them too.
//! `UpdateAsync` needs both a read and a write token (it counts against both budgets).
//!
//! The queues are Roblox's (spec "Queues": Set, Ordered set, Get, Ordered get), not one per
//! request type: reads wait in the Get queue; writes and removes share the Set queue, as the
//! older budgets grouped Set, Increment, Update and Remove. List calls, which fail with a named
//! `…Throttle` error rather than a 301–306 code, wait in a queue of their own.
//!
//! The experience has, per request type, one more bucket that every server draws on: it refills
//! at `base + per_player × CCU` a minute (CCU: the players of all servers), starts full, and has
//! no burst. A request needs a token of both; it waits in its server's queue until both have
//! refilled for it. When that queue is full it is dropped: with 301–306 when its server's budget
//! is short, with `Standard…ExperienceThrottled` when only the experience's is.
//!
//! A queued request keeps the admission time computed when it arrived, even if the player count
//! changes while it waits.
//!
//! A request refused for its key's throughput (`KeyThrottled`) "is queued but temporarily
//! skipped" (spec "Queues"): [`BudgetBook::hold`] gives it a place in its queue until its key
//! has room. It counts towards the queue's 30 (a request finding the queue full is dropped,
//! and so is a held one finding it full), but the requests behind it do not wait for it.

use std::collections::BTreeMap;

use super::error::RequestError;
use super::limits::{Budgets, ExperienceBudgets, Rate};
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
    /// The queue was full (or a rate is zero): the call fails with this error (301–306, a named
    /// `…Throttle`, or `Standard…ExperienceThrottled`).
    Rejected(RequestError),
}

/// A token bucket: `tokens` earned at its rate (at most one minute's worth; below zero while
/// queued requests owe it), and what is left of the one-time startup burst, spent first.
#[derive(Clone, Debug)]
struct Bucket {
    tokens: f64,
    burst: f64,
    updated: f64,
}

impl Bucket {
    /// Adds the tokens earned since the last refill at `per_minute`, up to one minute's worth.
    /// Earned tokens above that (after the rate fell: fewer players, a lower
    /// `SetRateLimitForRequestType`) are dropped; the rest of the burst is kept.
    fn refill(&mut self, now: f64, per_minute: f64) {
        let elapsed = (now - self.updated).max(0.0);
        self.tokens = (self.tokens + elapsed * per_minute / 60.0).min(per_minute);
        self.updated = self.updated.max(now);
    }

    /// Whole or partial tokens at hand: the earned ones and the burst's.
    fn available(&self) -> f64 {
        self.tokens + self.burst
    }

    /// Takes one token, the burst's first (so the earned ones stay full, and refill, only
    /// once the burst is gone).
    fn take(&mut self) {
        let from_burst = self.burst.min(1.0);
        self.burst -= from_burst;
        self.tokens -= 1.0 - from_burst;
    }

    /// When a request taking a token now can run (refilled up to `now`): at once if there is a
    /// token, else when the deficit has refilled; `None` when nothing refills it (a rate of
    /// zero, or one so small that the wait overflows: a request queued until infinity would
    /// keep its place in the queue for good).
    fn ready(&self, now: f64, per_minute: f64) -> Option<f64> {
        let available = self.available();
        if available >= 1.0 {
            Some(now)
        } else if per_minute <= 0.0 {
            None
        } else {
            Some(now + (1.0 - available) * 60.0 / per_minute).filter(|at| at.is_finite())
        }
    }
}

/// Brings the bucket in `slot` up to `now` at `per_minute`, creating it on first use with one
/// minute's worth plus `burst`.
fn refill(slot: &mut Option<Bucket>, now: f64, per_minute: f64, burst: f64) -> &mut Bucket {
    let bucket = slot.get_or_insert(Bucket {
        tokens: per_minute,
        burst,
        updated: now,
    });
    bucket.refill(now, per_minute);
    bucket
}

/// One server's budgets: per request type (indexed by [`RequestType::index`]) an override of
/// the rate and the bucket, created on first use; per queue (indexed by
/// [`RequestType::queue`]) the admission times of the requests waiting in it, and until when
/// the requests held for their key's throughput keep a place in it.
#[derive(Clone, Debug, Default)]
struct ServerBudget {
    players: u32,
    overrides: [Option<Rate>; RequestType::COUNT],
    buckets: [Option<Bucket>; RequestType::COUNT],
    queues: [Vec<f64>; RequestType::QUEUES],
    held: [Vec<f64>; RequestType::QUEUES],
    /// The requests admitted to wait (not sent yet): when each goes, and its operation.
    waiting: Vec<(f64, Operation)>,
}

impl ServerBudget {
    /// The requests in queue `q` at `now`: waiting for tokens, or held for their key. Those
    /// whose time has come leave it.
    fn occupancy(&mut self, q: usize, now: f64) -> usize {
        self.queues[q].retain(|t| *t > now);
        self.held[q].retain(|t| *t > now);
        self.queues[q].len() + self.held[q].len()
    }
}

impl RequestType {
    const COUNT: usize = 4;
    /// The Get queue, the Set queue and the list calls' queue.
    const QUEUES: usize = 3;
    const ALL: [RequestType; RequestType::COUNT] = [
        RequestType::StandardRead,
        RequestType::StandardWrite,
        RequestType::StandardList,
        RequestType::StandardRemove,
    ];

    fn index(self) -> usize {
        match self {
            RequestType::StandardRead => 0,
            RequestType::StandardWrite => 1,
            RequestType::StandardList => 2,
            RequestType::StandardRemove => 3,
        }
    }

    /// The throttle queue a request of this type waits in (see the module's documentation).
    fn queue(self) -> usize {
        match self {
            RequestType::StandardRead => 0,
            RequestType::StandardWrite | RequestType::StandardRemove => 1,
            RequestType::StandardList => 2,
        }
    }

    /// The type's name in `Enum.DataStoreRequestType` (`StandardWrite`, ...).
    pub fn name(self) -> &'static str {
        match self {
            RequestType::StandardRead => "StandardRead",
            RequestType::StandardWrite => "StandardWrite",
            RequestType::StandardList => "StandardList",
            RequestType::StandardRemove => "StandardRemove",
        }
    }

    /// Its experience-level budget in `budgets`.
    fn experience_rate(self, budgets: &ExperienceBudgets) -> Rate {
        match self {
            RequestType::StandardRead => budgets.read,
            RequestType::StandardWrite => budgets.write,
            RequestType::StandardList => budgets.list,
            RequestType::StandardRemove => budgets.remove,
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
        let bucket = refill(&mut self.buckets[kind.index()], now, per_minute, burst);
        (bucket, per_minute)
    }

    /// Refills every bucket in use up to `now`.
    fn refill_all(&mut self, now: f64, budgets: &Budgets) {
        for kind in RequestType::ALL {
            if self.buckets[kind.index()].is_some() {
                self.refill(now, budgets, kind);
            }
        }
    }
}

/// The experience-level budgets all servers share: a bucket per request type whose rate follows
/// the experience's CCU, the players of every server.
#[derive(Clone, Debug, Default)]
struct ExperienceBudget {
    ccu: u64,
    buckets: [Option<Bucket>; RequestType::COUNT],
}

impl ExperienceBudget {
    /// Brings `kind`'s bucket up to `now` (full on first use, no burst); returns it with its
    /// rate per minute.
    fn refill(
        &mut self,
        now: f64,
        budgets: &ExperienceBudgets,
        kind: RequestType,
    ) -> (&mut Bucket, f64) {
        let rate = kind.experience_rate(budgets);
        let per_minute = (rate.base + rate.per_player * self.ccu as f64).max(0.0);
        let bucket = refill(&mut self.buckets[kind.index()], now, per_minute, 0.0);
        (bucket, per_minute)
    }

    /// Refills every bucket in use up to `now`.
    fn refill_all(&mut self, now: f64, budgets: &ExperienceBudgets) {
        for kind in RequestType::ALL {
            if self.buckets[kind.index()].is_some() {
                self.refill(now, budgets, kind);
            }
        }
    }
}

/// The request budgets of every server, and the experience's.
#[derive(Clone, Debug, Default)]
pub struct BudgetBook {
    servers: BTreeMap<ServerId, ServerBudget>,
    experience: ExperienceBudget,
}

impl BudgetBook {
    fn server(&mut self, server: ServerId) -> &mut ServerBudget {
        self.servers.entry(server).or_default()
    }

    /// Sets how many players a server has (its rates, and the experience's, scale with it).
    ///
    /// Tokens earned so far count at the old rate; later ones at the new.
    pub fn set_players(&mut self, now: f64, budgets: &Budgets, server: ServerId, players: u32) {
        if let Some(experience) = &budgets.experience {
            self.experience.refill_all(now, experience);
        }
        let s = self.servers.entry(server).or_default();
        s.refill_all(now, budgets);
        // The sum of the servers' players: never below a server's own count.
        self.experience.ccu = self.experience.ccu - u64::from(s.players) + u64::from(players);
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

    /// `GetRequestBudgetForRequestType`: whole requests available now (never negative). This
    /// is the server's budget; the experience's may be shorter.
    pub fn budget(
        &mut self,
        now: f64,
        budgets: &Budgets,
        server: ServerId,
        kind: RequestType,
    ) -> f64 {
        let (bucket, _) = self.server(server).refill(now, budgets, kind);
        bucket.available().max(0.0).floor()
    }

    /// The experience's whole requests of `kind` available now (never negative); `None` when
    /// experience budgets are not modelled.
    pub fn experience_budget(
        &mut self,
        now: f64,
        budgets: &Budgets,
        kind: RequestType,
    ) -> Option<f64> {
        let experience = budgets.experience.as_ref()?;
        let (bucket, _) = self.experience.refill(now, experience, kind);
        Some(bucket.available().max(0.0).floor())
    }

    /// Asks for one token of each of `operation`'s request types, from the server's budget and
    /// from the experience's. A request short of either waits in the server's queue until both
    /// have refilled for it; when that queue is full it is dropped: with 301–306 (or a named
    /// `…Throttle`) when the server's budget is short, with `Standard…ExperienceThrottled` when
    /// only the experience's is.
    pub fn admit(
        &mut self,
        now: f64,
        budgets: &Budgets,
        server: ServerId,
        operation: Operation,
    ) -> Admission {
        let s = self.servers.entry(server).or_default();
        // Decide for every type first, so a rejected UpdateAsync takes no read token either.
        // (At most two types: UpdateAsync's read and write.)
        let mut plans = [(RequestType::StandardRead, now); 2];
        let kinds = operation.request_types();
        for (plan, &kind) in plans.iter_mut().zip(kinds) {
            let (bucket, per_minute) = s.refill(now, budgets, kind);
            let own = bucket.ready(now, per_minute);
            let shared = match &budgets.experience {
                Some(experience) => {
                    let (bucket, per_minute) = self.experience.refill(now, experience, kind);
                    bucket.ready(now, per_minute)
                }
                None => Some(now),
            };
            let full = s.occupancy(kind.queue(), now) >= budgets.queue_capacity;
            let queue = &s.queues[kind.queue()];
            let experience_short = RequestError::ExperienceThrottled { operation, kind };
            // First in, first out: not before the requests already waiting in the queue (a
            // queue shared by two request types, as the Set queue is, holds both), even with
            // tokens at hand. A full queue holds requests waiting after `now`.
            let behind = queue.iter().fold(now, |at, &t| at.max(t));
            let ready = match (own, shared) {
                // With room in the queue it waits there if it must; with both tokens at hand
                // and nothing ahead of it, it runs at once and needs no room (so a queue of
                // capacity 0, "no queue", still lets such a request through).
                (Some(a), Some(b)) if !full || a.max(b).max(behind) <= now => a.max(b).max(behind),
                // The queue is full, and the server's own budget short or none short.
                (Some(a), Some(b)) if a > now || b <= now => {
                    return Admission::Rejected(RequestError::QueueFull { operation });
                }
                (Some(a), None) if a > now && full => {
                    return Admission::Rejected(RequestError::QueueFull { operation });
                }
                // Only the experience's budget is short (or its rate is zero: it never refills).
                (Some(_), _) => return Admission::Rejected(experience_short),
                (None, _) => return Admission::Rejected(RequestError::QueueFull { operation }),
            };
            *plan = (kind, ready);
        }
        let plans = &plans[..kinds.len()];
        // The request runs when every queue it waits in lets it go, and stays in each of those
        // till then (so that a later request of that queue does not pass it). A queue it did
        // not have to wait in (its budget at hand, nothing ahead) it does not enter: an
        // `UpdateAsync` short of reads only holds no place in the Set queue, and a later
        // `SetAsync` with a write token at hand goes first (Roblox does not say how its
        // queues interleave).
        let at = plans.iter().fold(now, |at, &(_, ready)| at.max(ready));
        if at > now {
            s.waiting.retain(|&(t, _)| t > now);
            s.waiting.push((at, operation));
        }
        for &(kind, ready) in plans {
            // Both refilled up to `now` just above.
            if let Some(bucket) = s.buckets[kind.index()].as_mut() {
                bucket.take();
            }
            if let Some(bucket) = self.experience.buckets[kind.index()].as_mut() {
                bucket.take();
            }
            if ready > now {
                s.queues[kind.queue()].push(at);
            }
        }
        if at > now {
            Admission::QueuedUntil(at)
        } else {
            Admission::Now
        }
    }

    /// Server `server` stopped (crashed, or closed) at `now`: the requests still waiting in
    /// its queues die there unsent, and the experience's tokens they took come back (its limit
    /// counts what reaches the DataStore). Requests held for their key had been sent: theirs
    /// stay taken.
    pub fn server_stopped(&mut self, now: f64, server: ServerId) {
        let Some(s) = self.servers.get_mut(&server) else {
            return;
        };
        for (at, operation) in std::mem::take(&mut s.waiting) {
            if at <= now {
                continue;
            }
            for kind in operation.request_types() {
                if let Some(bucket) = self.experience.buckets[kind.index()].as_mut() {
                    bucket.tokens += 1.0;
                }
            }
        }
        s.queues = Default::default();
        s.held = Default::default();
    }

    /// Keeps a place for a request of `operation` refused for its key's throughput, in each
    /// queue it waits in, until `until`, when its key has room (see the module docs); other
    /// requests pass it. A queue that is full drops it (301–306, or the list calls' named
    /// error), as it drops a request arriving then. It took its tokens when it was admitted.
    pub fn hold(
        &mut self,
        now: f64,
        budgets: &Budgets,
        server: ServerId,
        operation: Operation,
        until: f64,
    ) -> Result<(), RequestError> {
        let s = self.servers.entry(server).or_default();
        let kinds = operation.request_types();
        // Decide for every queue first, so a dropped request holds no place in any.
        for &kind in kinds {
            if s.occupancy(kind.queue(), now) >= budgets.queue_capacity {
                return Err(RequestError::QueueFull { operation });
            }
        }
        for &kind in kinds {
            s.held[kind.queue()].push(until);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ServerId = ServerId(1);

    /// Admits `n` requests of `op` on server `A` at `now`, each at once.
    fn admit_now(book: &mut BudgetBook, budgets: &Budgets, now: f64, op: Operation, n: usize) {
        for _ in 0..n {
            assert_eq!(book.admit(now, budgets, A, op), Admission::Now, "{op:?}");
        }
    }

    /// Admits one request of `op` on server `A` at `now` per time in `until`, each queued until
    /// that time.
    fn admit_queued(
        book: &mut BudgetBook,
        budgets: &Budgets,
        now: f64,
        op: Operation,
        until: impl IntoIterator<Item = f64>,
    ) {
        for t in until {
            assert_eq!(
                book.admit(now, budgets, A, op),
                Admission::QueuedUntil(t),
                "{op:?}"
            );
        }
    }

    #[test]
    fn startup_burst_then_queue_of_thirty_then_301() {
        let budgets = Budgets::roblox();
        let mut book = BudgetBook::default();
        // 60/min with no players: one minute (60) plus the startup burst (60) at once.
        assert_eq!(
            book.budget(0.0, &budgets, A, RequestType::StandardRead),
            120.0
        );
        admit_now(&mut book, &budgets, 0.0, Operation::Get, 120);
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

    /// A request held for its key's throughput "is queued but temporarily skipped" (spec
    /// "Queues"): it takes a place in its queue until its key has room, and no one waits
    /// behind it.
    #[test]
    fn a_request_held_for_its_key_keeps_a_place_but_blocks_no_one() {
        let budgets = Budgets {
            queue_capacity: 2,
            ..Budgets::roblox()
        };
        let full = |operation| Err(RequestError::QueueFull { operation });
        let mut book = BudgetBook::default();
        // Two reads held until 10 s fill the Get queue; a third is dropped.
        for _ in 0..2 {
            assert_eq!(book.hold(0.0, &budgets, A, Operation::Get, 10.0), Ok(()));
        }
        assert_eq!(
            book.hold(0.0, &budgets, A, Operation::Get, 10.0),
            full(Operation::Get)
        );
        // Requests with tokens at hand pass them; one that would wait finds no room.
        admit_now(&mut book, &budgets, 0.0, Operation::Get, 120);
        assert_eq!(
            book.admit(0.0, &budgets, A, Operation::Get),
            Admission::Rejected(RequestError::QueueFull {
                operation: Operation::Get
            })
        );
        // At 10 s the held reads go: the ten tokens refilled meanwhile are taken, and two more
        // reads wait for the next two.
        admit_now(&mut book, &budgets, 10.0, Operation::Get, 10);
        for at in [11.0, 12.0] {
            assert_eq!(
                book.admit(10.0, &budgets, A, Operation::Get),
                Admission::QueuedUntil(at)
            );
        }
        assert!(matches!(
            book.admit(10.0, &budgets, A, Operation::Get),
            Admission::Rejected(_)
        ));
        // A held UpdateAsync takes a place in both queues it waits in: the Set queue's too.
        let one = Budgets {
            queue_capacity: 1,
            ..Budgets::roblox()
        };
        let mut book = BudgetBook::default();
        assert_eq!(book.hold(0.0, &one, A, Operation::Update, 5.0), Ok(()));
        assert_eq!(
            book.hold(0.0, &one, A, Operation::Set, 5.0),
            full(Operation::Set)
        );
        assert_eq!(
            book.hold(0.0, &one, A, Operation::Get, 5.0),
            full(Operation::Get)
        );
        // A dropped UpdateAsync holds no place in either.
        let mut book = BudgetBook::default();
        assert_eq!(book.hold(0.0, &one, A, Operation::Get, 5.0), Ok(()));
        assert_eq!(
            book.hold(0.0, &one, A, Operation::Update, 5.0),
            full(Operation::Update)
        );
        assert_eq!(book.hold(0.0, &one, A, Operation::Set, 5.0), Ok(()));
        // Another server's queues are its own.
        assert_eq!(
            book.hold(0.0, &one, ServerId(2), Operation::Get, 5.0),
            Ok(())
        );
    }

    /// A queue of capacity 0 ("no queue", spec preamble: every limit can be scaled or turned
    /// off for tests) drops only the requests that would have to wait.
    #[test]
    fn without_a_queue_requests_run_at_once_or_are_dropped() {
        let budgets = Budgets {
            queue_capacity: 0,
            ..Budgets::roblox()
        };
        let mut book = BudgetBook::default();
        // 120 tokens at hand (a minute's 60 and the startup burst): each runs at once.
        admit_now(&mut book, &budgets, 0.0, Operation::Get, 120);
        // The 121st would wait a second for its token: with no queue it is dropped (301).
        assert_eq!(
            book.admit(0.0, &budgets, A, Operation::Get),
            Admission::Rejected(RequestError::QueueFull {
                operation: Operation::Get
            })
        );
        // An UpdateAsync needs a read token too: dropped, and it takes no write token.
        assert_eq!(
            book.admit(0.0, &budgets, A, Operation::Update),
            Admission::Rejected(RequestError::QueueFull {
                operation: Operation::Update
            })
        );
        assert_eq!(
            book.budget(0.0, &budgets, A, RequestType::StandardWrite),
            120.0
        );
        // A second later one token has refilled: one request runs, the next is dropped.
        assert_eq!(book.admit(1.0, &budgets, A, Operation::Get), Admission::Now);
        assert!(matches!(
            book.admit(1.0, &budgets, A, Operation::Get),
            Admission::Rejected(RequestError::QueueFull { .. })
        ));
    }

    /// A rate so small (but above zero) that the wait for a token overflows is no rate: the
    /// request is refused, as with a rate of zero, where it used to be queued until infinity,
    /// holding a place in the queue for good and never run.
    #[test]
    fn a_rate_too_small_to_wait_for_refuses_like_zero() {
        let budgets = Budgets::roblox();
        let mut book = BudgetBook::default();
        let tiny = Rate {
            base: 1e-320,
            per_player: 0.0,
            startup_burst: 0.0,
        };
        book.set_rate(0.0, &budgets, A, RequestType::StandardRead, tiny);
        for _ in 0..2 {
            assert_eq!(
                book.admit(0.0, &budgets, A, Operation::Get),
                Admission::Rejected(RequestError::QueueFull {
                    operation: Operation::Get
                })
            );
        }
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
        admit_now(&mut book, &budgets, 0.0, Operation::ListKeys, 14);
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

    /// A bucket holds at most one minute's worth at the rate of the moment, plus what is left
    /// of its burst: tokens earned at a higher rate go when the rate falls (they used to stay,
    /// so a server its players had left could still make a rush of requests at once).
    #[test]
    fn a_falling_rate_trims_the_earned_tokens_not_the_burst() {
        let budgets = Budgets::roblox();
        let mut book = BudgetBook::default();
        book.set_players(0.0, &budgets, A, 10);
        // 5 + 2×10 = 25 a minute, plus a burst of 5.
        let list = RequestType::StandardList;
        assert_eq!(book.budget(0.0, &budgets, A, list), 30.0);
        book.set_players(0.0, &budgets, A, 0);
        // 5 a minute now: 5 earned, the burst's 5 kept.
        assert_eq!(book.budget(0.0, &budgets, A, list), 10.0);
        admit_now(&mut book, &budgets, 0.0, Operation::ListKeys, 10);
        assert_eq!(
            book.admit(0.0, &budgets, A, Operation::ListKeys),
            Admission::QueuedUntil(12.0)
        );
        // `SetRateLimitForRequestType` lowering the rate trims the same way.
        let mut book = BudgetBook::default();
        assert_eq!(book.budget(0.0, &budgets, A, list), 10.0);
        admit_now(&mut book, &budgets, 0.0, Operation::ListKeys, 5);
        let rate = Rate {
            base: 2.0,
            per_player: 0.0,
            startup_burst: 0.0,
        };
        book.set_rate(0.0, &budgets, A, list, rate);
        assert_eq!(book.budget(0.0, &budgets, A, list), 2.0);
        assert_eq!(book.budget(600.0, &budgets, A, list), 2.0);
    }

    #[test]
    fn update_needs_read_and_write_budget() {
        let budgets = Budgets {
            queue_capacity: 1,
            ..Budgets::roblox()
        };
        let mut book = BudgetBook::default();
        admit_now(&mut book, &budgets, 0.0, Operation::Set, 120);
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
        admit_now(&mut book, &budgets, 0.0, Operation::Set, 120);
        admit_now(&mut book, &budgets, 0.0, Operation::Remove, 120);
        admit_queued(
            &mut book,
            &budgets,
            0.0,
            Operation::Set,
            (1..=20).map(f64::from),
        );
        // The removes' own budget would let them go at 1 s, 2 s, ... 10 s, but the queue is
        // first in, first out: they wait behind the twentieth set.
        admit_queued(&mut book, &budgets, 0.0, Operation::Remove, [20.0; 10]);
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
        admit_now(&mut book, &budgets, 0.0, Operation::Get, 120);
        assert_eq!(
            book.admit(0.0, &budgets, A, Operation::Get),
            Admission::QueuedUntil(1.0)
        );
        // At 1.5 s only the first queued set has run: one place is free, and a remove taking
        // it goes after everything ahead of it (its own budget is ready at 11 s).
        assert_eq!(
            book.admit(1.5, &budgets, A, Operation::Remove),
            Admission::QueuedUntil(20.0)
        );
        assert!(matches!(
            book.admit(1.5, &budgets, A, Operation::Set),
            Admission::Rejected(_)
        ));
        // At 20.5 s the queue is empty. The remove budget has refilled to 9.5 tokens: a remove
        // runs at once; the write budget is still half a token short: a set waits.
        assert_eq!(
            book.admit(20.5, &budgets, A, Operation::Remove),
            Admission::Now
        );
        assert_eq!(
            book.admit(20.5, &budgets, A, Operation::Set),
            Admission::QueuedUntil(21.0)
        );
        // ... and a remove that finds tokens now waits behind that set: first in, first out.
        assert_eq!(
            book.admit(20.5, &budgets, A, Operation::Remove),
            Admission::QueuedUntil(21.0)
        );
    }

    /// An `UpdateAsync` waiting for its read stays in the Set queue until it runs, even though
    /// its write budget was ready sooner: a set queued after it does not pass it.
    #[test]
    fn an_update_holds_its_place_in_the_set_queue() {
        let budgets = Budgets::roblox();
        let mut book = BudgetBook::default();
        admit_now(&mut book, &budgets, 0.0, Operation::Get, 120);
        admit_now(&mut book, &budgets, 0.0, Operation::Set, 120);
        // Five reads wait (1 s ... 5 s); the update's read comes after them, its write at 1 s.
        admit_queued(
            &mut book,
            &budgets,
            0.0,
            Operation::Get,
            (1..=5).map(f64::from),
        );
        admit_queued(&mut book, &budgets, 0.0, Operation::Update, [6.0]);
        // The next set's own budget is ready at 2 s; it waits for the update ahead of it.
        admit_queued(&mut book, &budgets, 0.0, Operation::Set, [6.0]);
        // At 3 s the write budget has a token again; a set still waits behind the two.
        admit_queued(&mut book, &budgets, 3.0, Operation::Set, [6.0]);
    }

    /// The experience's budget (300 + 20 × CCU writes a minute) is shared by every server: once
    /// servers together have used it, a server with budget left queues, then drops with
    /// `StandardWriteExperienceThrottled`.
    #[test]
    fn servers_share_the_experience_budget() {
        let budgets = Budgets::roblox();
        let mut book = BudgetBook::default();
        let b = ServerId(2);
        book.set_players(0.0, &budgets, A, 5);
        book.set_players(0.0, &budgets, b, 5);
        // Each server: 60 + 40 × 5 = 260 a minute plus a burst of 60. The experience: 300 +
        // 20 × 10 = 500, no burst.
        assert_eq!(
            book.budget(0.0, &budgets, b, RequestType::StandardWrite),
            320.0
        );
        assert_eq!(
            book.experience_budget(0.0, &budgets, RequestType::StandardWrite),
            Some(500.0)
        );
        admit_now(&mut book, &budgets, 0.0, Operation::Set, 300);
        for _ in 0..200 {
            assert_eq!(book.admit(0.0, &budgets, b, Operation::Set), Admission::Now);
        }
        assert_eq!(
            book.budget(0.0, &budgets, b, RequestType::StandardWrite),
            120.0
        );
        // B still has budget of its own, the experience has none: B's writes wait for the
        // experience's refill (500 a minute) in B's Set queue.
        for i in 1..=30 {
            assert_eq!(
                book.admit(0.0, &budgets, b, Operation::Set),
                Admission::QueuedUntil(f64::from(i) * 60.0 / 500.0)
            );
        }
        let dropped = book.admit(0.0, &budgets, b, Operation::Update);
        assert_eq!(
            dropped,
            Admission::Rejected(RequestError::ExperienceThrottled {
                operation: Operation::Update,
                kind: RequestType::StandardWrite,
            })
        );
        let Admission::Rejected(err) = dropped else {
            unreachable!()
        };
        assert_eq!(
            err.to_string(),
            "StandardWriteExperienceThrottled: UpdateAsync request dropped. The experience's \
             request budget is used up and the queue is full."
        );
        assert_eq!(err.code(), None);
        // Reads have their own experience budget.
        assert_eq!(book.admit(0.0, &budgets, b, Operation::Get), Admission::Now);
        assert_eq!(
            book.experience_budget(0.0, &budgets, RequestType::StandardWrite),
            Some(0.0)
        );
        // More players raise the experience's rate from then on: 300 + 20 × 110 = 2,500.
        book.set_players(0.0, &budgets, A, 105);
        assert_eq!(
            book.experience_budget(60.0, &budgets, RequestType::StandardWrite),
            Some(2470.0),
            "a minute at 2,500 a minute, less the 30 queued"
        );
        // Without experience budgets, only the server's count.
        let servers_only = Budgets {
            experience: None,
            ..Budgets::roblox()
        };
        let mut book = BudgetBook::default();
        for _ in 0..120 {
            assert_eq!(
                book.admit(0.0, &servers_only, A, Operation::Set),
                Admission::Now
            );
        }
        assert_eq!(
            book.experience_budget(0.0, &servers_only, RequestType::StandardWrite),
            None
        );
        // An experience budget of zero never refills: refused at once, naming it.
        let closed = Budgets {
            experience: Budgets::roblox().experience.map(|e| e.scaled(0.0)),
            ..Budgets::roblox()
        };
        let mut book = BudgetBook::default();
        assert_eq!(
            book.admit(0.0, &closed, A, Operation::Remove),
            Admission::Rejected(RequestError::ExperienceThrottled {
                operation: Operation::Remove,
                kind: RequestType::StandardRemove,
            })
        );
        // When the server's own budget is short and its queue full too, the queue is named.
        let tight = Budgets {
            queue_capacity: 0,
            ..closed
        };
        let mut book = BudgetBook::default();
        book.set_rate(
            0.0,
            &tight,
            A,
            RequestType::StandardRemove,
            // Half a token to start with: the server's own budget is short for a minute.
            Rate {
                base: 0.5,
                per_player: 0.0,
                startup_burst: 0.0,
            },
        );
        assert_eq!(
            book.admit(0.0, &tight, A, Operation::Remove),
            Admission::Rejected(RequestError::QueueFull {
                operation: Operation::Remove
            })
        );
    }

    /// A server that stops with requests in its queues never sends them: the experience's
    /// tokens they took come back (they used to stay taken, the other servers throttled for
    /// requests that never reached the DataStore). A request that has gone keeps its token.
    #[test]
    fn a_stopped_servers_queued_requests_give_the_experience_its_tokens_back() {
        let budgets = Budgets::roblox();
        let mut book = BudgetBook::default();
        let b = ServerId(2);
        book.set_players(0.0, &budgets, A, 0);
        book.set_players(0.0, &budgets, b, 0);
        // A: 60 a minute plus a burst of 60, so 120 updates at once and 10 more waiting,
        // one a second. The experience: 300 reads and 300 writes, no burst.
        admit_now(&mut book, &budgets, 0.0, Operation::Update, 120);
        admit_queued(
            &mut book,
            &budgets,
            0.0,
            Operation::Update,
            (1..=10).map(f64::from),
        );
        let experience = |book: &mut BudgetBook, now| {
            [RequestType::StandardRead, RequestType::StandardWrite]
                .map(|kind| book.experience_budget(now, &budgets, kind).unwrap())
        };
        assert_eq!(experience(&mut book, 0.0), [170.0, 170.0]);
        // At 3.5 s three have gone; the seven still waiting die with the server.
        book.server_stopped(3.5, A);
        // 170 + 3.5 s of refill at 300 a minute (17.5), + 7 given back.
        assert_eq!(experience(&mut book, 3.5), [194.0, 194.0]);
        // A request sent at once keeps its tokens when its server stops.
        assert_eq!(
            book.admit(3.5, &budgets, b, Operation::Update),
            Admission::Now
        );
        book.server_stopped(3.5, b);
        assert_eq!(experience(&mut book, 3.5), [193.0, 193.0]);
        // Stopping again gives nothing more back.
        book.server_stopped(3.5, A);
        assert_eq!(experience(&mut book, 3.5), [193.0, 193.0]);
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
