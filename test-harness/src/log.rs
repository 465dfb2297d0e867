//! The world's log ([`crate::world::World::log`]): everything that happened, in order, kept in
//! fixed-size chunks.
//!
//! Long fleet runs log about three lines per DataStore request. In one growing `Vec` every
//! doubling copies the whole log into fresh memory, which the kernel must zero first; chunks
//! are written once and never moved. Readers index it like a slice and iterate it in order.

use std::ops::{Index, IndexMut};

use crate::world::Logged;

/// Lines per chunk (about 600 kB of `Logged`).
const CHUNK: usize = 4096;

/// An append-only, indexable sequence of [`Logged`] lines.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Log {
    chunks: Vec<Vec<Logged>>,
    len: usize,
}

impl Log {
    /// An empty log.
    pub fn new() -> Log {
        Log::default()
    }

    /// Appends a line.
    pub fn push(&mut self, line: Logged) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(line),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(line);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    /// Number of lines.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was logged.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Line `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<&Logged> {
        self.chunks.get(i / CHUNK).and_then(|c| c.get(i % CHUNK))
    }

    /// The last line.
    pub fn last(&self) -> Option<&Logged> {
        self.chunks.last().and_then(|c| c.last())
    }

    /// The lines in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Logged> + '_ {
        self.chunks.iter().flatten()
    }
}

impl Index<usize> for Log {
    type Output = Logged;

    fn index(&self, i: usize) -> &Logged {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl IndexMut<usize> for Log {
    fn index_mut(&mut self, i: usize) -> &mut Logged {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<'a> IntoIterator for &'a Log {
    type Item = &'a Logged;
    type IntoIter = std::iter::Flatten<std::slice::Iter<'a, Vec<Logged>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.chunks.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::Happening;

    fn line(i: usize) -> Logged {
        Logged {
            t: i as f64,
            server: i % 3,
            what: Happening::Crashed,
        }
    }

    #[test]
    fn indexes_and_iterates_across_chunk_boundaries() {
        let mut log = Log::new();
        assert!(log.is_empty());
        assert_eq!(log.last(), None);
        let n = 2 * CHUNK + 5;
        for i in 0..n {
            log.push(line(i));
        }
        assert_eq!(log.len(), n);
        assert_eq!(log.chunks.len(), 3);
        for i in [0, CHUNK - 1, CHUNK, 2 * CHUNK, n - 1] {
            assert_eq!(log[i].t, i as f64);
            assert_eq!(log.get(i).map(|l| l.server), Some(i % 3));
        }
        assert_eq!(log.get(n), None);
        assert_eq!(log.last().map(|l| l.t), Some((n - 1) as f64));
        let times: Vec<f64> = log.iter().map(|l| l.t).collect();
        assert_eq!(times, (0..n).map(|i| i as f64).collect::<Vec<_>>());
        let mut lines = 0;
        for (i, l) in (&log).into_iter().enumerate() {
            assert_eq!(l.t, i as f64);
            lines += 1;
        }
        assert_eq!(lines, n);
        log[CHUNK].server = 9;
        assert_eq!(log[CHUNK].server, 9);
    }
}
