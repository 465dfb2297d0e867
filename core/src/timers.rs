//! Every "wait N seconds" of the original as a deadline (spec §0, §20), in one small table.
//!
//! Timers fire in deadline order, ties in the order they were set, so a run is deterministic.

use std::collections::BTreeMap;

use crate::protocol::{CallId, OpId};
use crate::queue::Token;

/// What happens when a timer fires.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Timer {
    /// A session start's conflict wait ended (ends early on close): next attempt.
    ConflictWait(Token),
    /// A session start's error backoff ended: next attempt.
    StartBackoff(Token),
    /// An ending save's backoff ended: retry.
    SaveRetry(u64),
    /// A `MessageAsync` backoff ended: retry.
    MessageRetry(CallId),
    /// A `GetAsync` backoff ended: retry.
    GetRetry(CallId),
    /// A mock-store operation completes one frame after it started (spec §14).
    MockOp(OpId),
    /// `BindToClose` without DataStore access finishes one frame after it started (spec §9.4).
    ShutdownWithoutAccess,
}

use crate::protocol::Seconds as Deadline;

/// Deadlines this close to `now` count as reached: float sums of waits (`8.2 + 8`) must not slip
/// to the next frame.
pub(crate) const TIME_EPSILON: f64 = 1e-9;

/// Pending timers, ordered by deadline then by insertion.
#[derive(Default, Debug)]
pub(crate) struct Timers {
    table: BTreeMap<(Deadline, u64), Timer>,
    seq: u64,
}

impl Timers {
    /// Sets a timer.
    pub fn set(&mut self, at: f64, timer: Timer) {
        self.seq += 1;
        self.table.insert((Deadline(at), self.seq), timer);
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<f64> {
        self.table.keys().next().map(|(d, _)| d.0)
    }

    /// Removes and returns the earliest timer due at `now`.
    pub fn pop_due(&mut self, now: f64) -> Option<Timer> {
        let (&key, _) = self.table.iter().next()?;
        // A NaN time is due for nothing (compared, it would be due for everything).
        if now.is_nan() || key.0.0 > now + TIME_EPSILON {
            return None;
        }
        self.table.remove(&key)
    }

    /// Moves every timer matching `pred` to fire at `at` (a conflict wait ends early on close).
    pub fn hasten(&mut self, at: f64, pred: impl Fn(&Timer) -> bool) {
        let keys: Vec<_> = self
            .table
            .iter()
            .filter(|(k, t)| k.0.0 > at && pred(t))
            .map(|(k, _)| *k)
            .collect();
        for k in keys {
            if let Some(t) = self.table.remove(&k) {
                self.set(at, t);
            }
        }
    }

    /// Cancels every timer matching `pred`.
    pub fn cancel(&mut self, pred: impl Fn(&Timer) -> bool) {
        self.table.retain(|_, t| !pred(t));
    }
}
