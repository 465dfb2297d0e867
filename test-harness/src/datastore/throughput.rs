//! Per-key throughput (spec "Per-key throughput"): over a sliding window (60 s), the reads of a
//! key may move at most 25 MB and its writes 4 MB, across all servers, every request rounded up
//! to a whole 1 KB unit. A request is approved if the usage in the window, including itself, is
//! within the limit; a denied request is not counted and fails with `KeyThrottled`, which says
//! when the window will have room for it (the world holds the request until then, as Roblox's
//! queue "temporarily skips" a throttled key's request).

use std::collections::VecDeque;

use rustc_hash::FxHashMap as HashMap;

use super::error::{RequestError, Throughput};
use super::limits::ThroughputLimits;
use crate::storage::KeyPath;

#[derive(Clone, Debug, Default)]
struct Usage {
    reads: VecDeque<(f64, u64)>,
    writes: VecDeque<(f64, u64)>,
}

/// Throughput used by every key in the current window (looked up by key, never iterated).
#[derive(Clone, Debug, Default)]
pub struct ThroughputBook {
    keys: HashMap<KeyPath, Usage>,
}

/// How many units a request of `bytes` costs: rounded up, at least one.
pub fn units(limits: &ThroughputLimits, bytes: usize) -> u64 {
    let unit = limits.unit_bytes.max(1);
    (bytes as u64).div_ceil(unit).max(1)
}

impl ThroughputBook {
    /// Records a request of `bytes` on `path` at `now`, or refuses it with `KeyThrottled`.
    pub fn charge(
        &mut self,
        now: f64,
        limits: &ThroughputLimits,
        path: &KeyPath,
        kind: Throughput,
        bytes: usize,
    ) -> Result<(), RequestError> {
        let request_units = units(limits, bytes);
        let limit_units = match kind {
            Throughput::Read => limits.read_bytes,
            Throughput::Write => limits.write_bytes,
        } / limits.unit_bytes.max(1);
        let usage = match self.keys.get_mut(path) {
            Some(usage) => usage,
            None => self.keys.entry(path.clone()).or_default(),
        };
        let window = match kind {
            Throughput::Read => &mut usage.reads,
            Throughput::Write => &mut usage.writes,
        };
        while window
            .front()
            // The same sum as `ready_at` below: at the time it names, the entry is gone.
            .is_some_and(|(t, _)| *t + limits.window_seconds <= now)
        {
            window.pop_front();
        }
        let used_units: u64 = window.iter().map(|(_, u)| u).sum();
        if used_units + request_units > limit_units {
            // Entries leave the window `window_seconds` after they were charged, oldest first.
            let ready_at = (request_units <= limit_units).then(|| {
                let mut used = used_units;
                let mut at = now;
                for (t, u) in window.iter() {
                    if used + request_units <= limit_units {
                        break;
                    }
                    used -= u;
                    at = t + limits.window_seconds;
                }
                at
            });
            return Err(RequestError::KeyThrottled {
                kind,
                used_units,
                request_units,
                limit_units,
                ready_at,
            });
        }
        window.push_back((now, request_units));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_round_up_to_whole_kilobytes() {
        let l = ThroughputLimits::roblox();
        // The documented example: 800 bytes and 1.2 KB count as 1 KB + 2 KB.
        assert_eq!(units(&l, 800) + units(&l, 1229), 3);
        assert_eq!(units(&l, 0), 1);
        assert_eq!(units(&l, 1024), 1);
        assert_eq!(units(&l, 1025), 2);
    }

    #[test]
    fn write_budget_slides_over_sixty_seconds() {
        let l = ThroughputLimits::roblox();
        let p = KeyPath::new("S", "global", "k");
        let mut book = ThroughputBook::default();
        // 4 MB = 4096 units: 4095 one-unit writes then one more fills it exactly.
        book.charge(0.0, &l, &p, Throughput::Write, 4095 * 1024)
            .unwrap();
        book.charge(10.0, &l, &p, Throughput::Write, 1).unwrap();
        let err = book.charge(59.9, &l, &p, Throughput::Write, 1).unwrap_err();
        assert_eq!(
            err,
            RequestError::KeyThrottled {
                kind: Throughput::Write,
                used_units: 4096,
                request_units: 1,
                limit_units: 4096,
                // The 4095-unit write leaves the window at 60 s, and then there is room.
                ready_at: Some(60.0),
            }
        );
        // Needing more than the first entry frees: room once the second leaves too.
        let err = book
            .charge(59.9, &l, &p, Throughput::Write, 2 * 1024)
            .unwrap_err();
        assert!(matches!(err, RequestError::KeyThrottled { ready_at: Some(t), .. } if t == 60.0));
        let err = book
            .charge(59.9, &l, &p, Throughput::Write, 4096 * 1024)
            .unwrap_err();
        assert!(matches!(err, RequestError::KeyThrottled { ready_at: Some(t), .. } if t == 70.0));
        // A request larger than the whole window's budget never fits.
        let err = book
            .charge(59.9, &l, &p, Throughput::Write, 4097 * 1024)
            .unwrap_err();
        assert!(matches!(
            err,
            RequestError::KeyThrottled { ready_at: None, .. }
        ));
        // Reads have their own budget; other keys too.
        book.charge(59.9, &l, &p, Throughput::Read, 1).unwrap();
        book.charge(
            59.9,
            &l,
            &KeyPath::new("S", "global", "other"),
            Throughput::Write,
            1,
        )
        .unwrap();
        // At 60 s the first write leaves the window.
        book.charge(60.0, &l, &p, Throughput::Write, 4095 * 1024)
            .unwrap();
        assert!(
            book.charge(60.0, &l, &p, Throughput::Write, 1).is_err(),
            "the write at 10 s still counts"
        );
        book.charge(70.0, &l, &p, Throughput::Write, 1).unwrap();
    }
}
