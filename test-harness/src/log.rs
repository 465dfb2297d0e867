//! The world's log ([`crate::world::World::log`]): everything that happened, in order, kept in
//! fixed-size chunks.
//!
//! Long fleet runs log about three lines per DataStore request. In one growing `Vec` every
//! doubling copies the whole log into fresh memory, which the kernel must zero first; chunks
//! are written once and never moved. Readers index it like a slice and iterate it in order.
//!
//! A reader that has read every line so far may let them go ([`Log::forget_before`]): a fleet
//! run that does not keep its log drops the lines as soon as the fleet has read them, while
//! they are still in the cache, and writes the next ones into the same room. The log's memory
//! then stays flat however long the run (`docs/PERFORMANCE.md`, "Ninth session"). Line
//! numbers do not change: forgotten lines are simply gone from [`Log::get`] and [`Log::iter`].

use std::ops::{Index, IndexMut};

use crate::world::Logged;

/// Lines per chunk (about 600 kB of `Logged`).
const CHUNK: usize = 4096;

/// An append-only, indexable sequence of [`Logged`] lines.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Log {
    /// The lines kept, from line [`Log::first`] on; every chunk but the last is full.
    chunks: Vec<Vec<Logged>>,
    /// The number of the first line kept (the lines before it were forgotten).
    first: usize,
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

    /// Lets go of the lines before line `n`. When that is every line, they are dropped at
    /// once and the first chunk's room is kept for the next ones; otherwise only whole
    /// chunks go.
    pub fn forget_before(&mut self, n: usize) {
        let n = n.min(self.len);
        if n <= self.first {
            return;
        }
        if n == self.len {
            self.chunks.truncate(1);
            if let Some(chunk) = self.chunks.first_mut() {
                chunk.clear();
            }
            self.first = n;
        } else {
            let whole = (n - self.first) / CHUNK;
            self.chunks.drain(..whole);
            self.first += whole * CHUNK;
        }
    }

    /// The number of the first line kept (0 unless lines were forgotten).
    pub fn first_kept(&self) -> usize {
        self.first
    }

    /// Where line `i` is kept: chunk and place in it.
    fn locate(&self, i: usize) -> Option<(usize, usize)> {
        let j = i.checked_sub(self.first)?;
        Some((j / CHUNK, j % CHUNK))
    }

    /// Number of lines logged, forgotten ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was logged.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Line `i`, if there is one and it was not forgotten.
    pub fn get(&self, i: usize) -> Option<&Logged> {
        let (c, k) = self.locate(i)?;
        self.chunks.get(c).and_then(|chunk| chunk.get(k))
    }

    /// The last line, if kept.
    pub fn last(&self) -> Option<&Logged> {
        self.chunks.last().and_then(|c| c.last())
    }

    /// The lines kept, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Logged> + '_ {
        self.chunks.iter().flatten()
    }
}

impl Index<usize> for Log {
    type Output = Logged;

    /// # Panics
    /// If line `i` was forgotten or not logged yet.
    fn index(&self, i: usize) -> &Logged {
        match self.get(i) {
            Some(line) => line,
            None => panic!("log line {i} is forgotten or not logged yet"),
        }
    }
}

impl IndexMut<usize> for Log {
    fn index_mut(&mut self, i: usize) -> &mut Logged {
        let place = self.locate(i);
        match place.and_then(|(c, k)| self.chunks.get_mut(c)?.get_mut(k)) {
            Some(line) => line,
            None => panic!("log line {i} is forgotten or not logged yet"),
        }
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

    #[test]
    fn forgetting_keeps_line_numbers_and_reuses_room() {
        let mut log = Log::new();
        let n = 3 * CHUNK + 7;
        for i in 0..n {
            log.push(line(i));
        }
        // Inside the second chunk: only the first chunk is wholly before it.
        log.forget_before(CHUNK + 10);
        assert_eq!(log.first_kept(), CHUNK);
        assert_eq!(log.get(CHUNK - 1), None);
        assert_eq!(log.get(CHUNK).map(|l| l.t), Some(CHUNK as f64));
        assert_eq!(log[n - 1].t, (n - 1) as f64);
        assert_eq!(log.len(), n);
        assert_eq!(log.iter().count(), n - CHUNK);
        // Never backwards.
        log.forget_before(5);
        assert_eq!(log.first_kept(), CHUNK);
        // Every line: all dropped, one chunk's room kept and written again from its start.
        log.forget_before(n);
        assert_eq!((log.first_kept(), log.len(), log.iter().count()), (n, n, 0));
        assert_eq!(log.last(), None);
        assert_eq!(log.chunks.len(), 1);
        assert_eq!(log.chunks[0].capacity(), CHUNK);
        log.push(line(n));
        log.push(line(n + 1));
        assert_eq!((log[n].t, log[n + 1].t), (n as f64, (n + 1) as f64));
        assert_eq!(log.get(n - 1), None);
        assert_eq!(log.last().map(|l| l.t), Some((n + 1) as f64));
        // Lines still being read keep their place.
        log.forget_before(n + 1);
        assert_eq!(log.first_kept(), n);
        assert_eq!(log.iter().count(), 2);
    }
}
