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

impl Usage {
    /// The window of `kind`'s charges.
    fn window(&mut self, kind: Throughput) -> &mut VecDeque<(f64, u64)> {
        match kind {
            Throughput::Read => &mut self.reads,
            Throughput::Write => &mut self.writes,
        }
    }
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

/// One request's use of a key's throughput.
#[derive(Clone, Copy, Debug)]
pub struct KeyUse<'a> {
    /// The key.
    pub path: &'a KeyPath,
    /// Read or write.
    pub kind: Throughput,
    /// The request's bytes (rounded up to whole units).
    pub bytes: usize,
}

impl<'a> KeyUse<'a> {
    /// A write without a value to measure (a removal, an increment): one unit.
    pub fn write(path: &'a KeyPath) -> KeyUse<'a> {
        KeyUse {
            path,
            kind: Throughput::Write,
            bytes: 0,
        }
    }
}

impl ThroughputBook {
    /// Charges a request to its key's window at `now` if it fits (else `KeyThrottled`, with
    /// when it will fit, if it can) and `decide`, asked only then, approves: a request that
    /// fails either way is not counted. The key is looked up once.
    pub fn charge<T>(
        &mut self,
        now: f64,
        limits: &ThroughputLimits,
        use_: KeyUse<'_>,
        decide: impl FnOnce() -> Result<T, RequestError>,
    ) -> Result<T, RequestError> {
        let KeyUse { path, kind, bytes } = use_;
        let request_units = units(limits, bytes);
        let limit_units = match kind {
            Throughput::Read => limits.read_bytes,
            Throughput::Write => limits.write_bytes,
        } / limits.unit_bytes.max(1);
        let Some(usage) = self.keys.get_mut(path) else {
            // Nothing used yet: only a request larger than the whole budget is refused.
            if request_units > limit_units {
                return Err(RequestError::KeyThrottled {
                    kind,
                    used_units: 0,
                    request_units,
                    limit_units,
                    ready_at: None,
                });
            }
            let decided = decide()?;
            let usage = self.keys.entry(path.clone()).or_default();
            usage.window(kind).push_back((now, request_units));
            return Ok(decided);
        };
        let window = usage.window(kind);
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
        let decided = decide()?;
        window.push_back((now, request_units));
        Ok(decided)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check, then record: what the DataStore does around a call's fate.
    fn charge(
        book: &mut ThroughputBook,
        now: f64,
        limits: &ThroughputLimits,
        path: &KeyPath,
        kind: Throughput,
        bytes: usize,
    ) -> Result<(), RequestError> {
        book.charge(now, limits, KeyUse { path, kind, bytes }, || Ok(()))
    }

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
        // 4 MB = 4096 units: a 4095-unit write, then a one-unit write fills it exactly.
        charge(&mut book, 0.0, &l, &p, Throughput::Write, 4095 * 1024).unwrap();
        charge(&mut book, 10.0, &l, &p, Throughput::Write, 1).unwrap();
        let err = charge(&mut book, 59.9, &l, &p, Throughput::Write, 1).unwrap_err();
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
        // Two units: the first entry's departure (60 s) makes room; the whole budget needs the
        // second entry gone too (70 s).
        let err = charge(&mut book, 59.9, &l, &p, Throughput::Write, 2 * 1024).unwrap_err();
        assert!(matches!(err, RequestError::KeyThrottled { ready_at: Some(t), .. } if t == 60.0));
        let err = charge(&mut book, 59.9, &l, &p, Throughput::Write, 4096 * 1024).unwrap_err();
        assert!(matches!(err, RequestError::KeyThrottled { ready_at: Some(t), .. } if t == 70.0));
        // A request larger than the whole window's budget never fits.
        let err = charge(&mut book, 59.9, &l, &p, Throughput::Write, 4097 * 1024).unwrap_err();
        assert!(matches!(
            err,
            RequestError::KeyThrottled { ready_at: None, .. }
        ));
        // Reads have their own budget; other keys too.
        charge(&mut book, 59.9, &l, &p, Throughput::Read, 1).unwrap();
        charge(
            &mut book,
            59.9,
            &l,
            &KeyPath::new("S", "global", "other"),
            Throughput::Write,
            1,
        )
        .unwrap();
        // At 60 s the first write leaves the window.
        charge(&mut book, 60.0, &l, &p, Throughput::Write, 4095 * 1024).unwrap();
        assert!(
            charge(&mut book, 60.0, &l, &p, Throughput::Write, 1).is_err(),
            "the write at 10 s still counts"
        );
        charge(&mut book, 70.0, &l, &p, Throughput::Write, 1).unwrap();
    }
}
