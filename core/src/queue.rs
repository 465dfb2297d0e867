//! The per-key FIFO request queue (spec §6, "UpdateQueue").
//!
//! Keyed by session token, so the live, fallback-mock and user-mock domains never block each
//! other and two store objects with the same name share a queue. At most one DataStore request
//! per token is in flight; later ones wait and start in call order. The table holds no entry for
//! an idle token (the original's test checks this).

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::prehashed::Prehashed;
use crate::protocol::OpId;
use crate::value::Str;

/// Which store a token's operations go to (spec §5.1: prefixes `L_`, `M_`, `U_`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Domain {
    /// The live DataStore (`"L_"`).
    Live,
    /// The fallback mock used when `DataStoreState` is not `Access` (`"M_"`).
    FallbackMock,
    /// The user mock reached through `store.Mock` (`"U_"`).
    UserMock,
}

/// A session token: domain + store name + key (spec §5.1).
///
/// The engine looks its tables up by token several times per request, so a token is
/// [`Prehashed`]: its parts are hashed once, when it is made. Ordered by domain, store name, key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(Prehashed<(Domain, Str, Str)>);

impl Token {
    /// The token of `key` in store `store` of `domain`.
    pub fn new(domain: Domain, store: Str, key: Str) -> Token {
        Token(Prehashed::new((domain, store, key)))
    }

    /// Domain.
    pub fn domain(&self) -> Domain {
        self.0.get().0
    }

    /// Store name (inline up to 23 bytes, as are keys: making a token allocates nothing).
    pub fn store(&self) -> &Str {
        &self.0.get().1
    }

    /// Profile key.
    pub fn key(&self) -> &Str {
        &self.0.get().2
    }

    /// The original's string form: prefix, store name, `"\0"`, key.
    pub fn as_string(&self) -> String {
        let prefix = match self.domain() {
            Domain::Live => "L_",
            Domain::FallbackMock => "M_",
            Domain::UserMock => "U_",
        };
        format!("{prefix}{}\0{}", self.store(), self.key())
    }
}

/// Per-token FIFO of operations (looked up by token, never iterated).
#[derive(Default, Debug)]
pub struct RequestQueue {
    busy: FxHashMap<Token, VecDeque<OpId>>,
}

impl RequestQueue {
    /// Enters the queue: `true` means the operation may start now; otherwise it waits.
    pub fn enter(&mut self, token: &Token, op: OpId) -> bool {
        match self.busy.get_mut(token) {
            Some(waiters) => {
                waiters.push_back(op);
                false
            }
            None => {
                self.busy.insert(token.clone(), VecDeque::new());
                true
            }
        }
    }

    /// The running operation finished: returns the oldest waiter, which starts now, or frees the
    /// token.
    pub fn release(&mut self, token: &Token) -> Option<OpId> {
        let waiters = self.busy.get_mut(token)?;
        let next = waiters.pop_front();
        if next.is_none() {
            self.busy.remove(token);
        }
        next
    }

    /// Number of tokens with an operation running (0 when idle).
    pub fn busy_tokens(&self) -> usize {
        self.busy.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(key: &str) -> Token {
        Token::new(Domain::Live, "S".into(), key.into())
    }

    #[test]
    fn fifo_per_token_and_empty_when_idle() {
        let mut q = RequestQueue::default();
        assert!(q.enter(&token("a"), OpId(1)));
        assert!(!q.enter(&token("a"), OpId(2)));
        assert!(!q.enter(&token("a"), OpId(3)));
        assert!(q.enter(&token("b"), OpId(4)), "another key does not wait");
        assert_eq!(q.release(&token("a")), Some(OpId(2)));
        assert_eq!(q.release(&token("a")), Some(OpId(3)));
        assert_eq!(q.release(&token("a")), None);
        assert_eq!(q.release(&token("b")), None);
        assert_eq!(q.busy_tokens(), 0);
    }

    #[test]
    fn domains_do_not_share_a_queue() {
        let mut q = RequestQueue::default();
        let live = token("a");
        let mock = Token::new(Domain::UserMock, live.store().clone(), live.key().clone());
        assert_ne!(live, mock);
        assert!(q.enter(&live, OpId(1)));
        assert!(q.enter(&mock, OpId(2)));
        assert_eq!(live.as_string(), "L_S\0a");
        assert_eq!(mock.as_string(), "U_S\0a");
    }
}
