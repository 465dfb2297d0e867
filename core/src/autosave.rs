//! The auto-save ring (spec §7): the ordered list of active profiles, the cursor and
//! `LastAutoSave`, and which profile each slot of `AUTO_SAVE_PERIOD / n` saves.
//!
//! Slots are computed by the engine after its listeners-free bookkeeping, so the list cannot
//! change while a burst of slots is processed: the cursor corruption of spec §19 item 21 cannot
//! happen, and every removal re-normalises the cursor.

use crate::protocol::ProfileId;

/// One ring entry: the profile and its `load_timestamp` (monotonic load time, never reset).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Entry {
    profile: ProfileId,
    loaded_at: f64,
}

/// The ring. The cursor is 0-based here (the original's `AutoSaveIndex` minus one).
#[derive(Debug, Default)]
pub struct AutoSaveRing {
    list: Vec<Entry>,
    cursor: usize,
    last_auto_save: f64,
    /// The earliest `loaded_at` in the ring: while it is fresh, every profile is, and a slot's
    /// scan (which would move the cursor a full turn) can be skipped.
    oldest_load: f64,
}

impl AutoSaveRing {
    /// Number of profiles in the ring.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when no profile is in the ring.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Profiles in ring order.
    pub fn profiles(&self) -> impl Iterator<Item = ProfileId> + '_ {
        self.list.iter().map(|e| e.profile)
    }

    /// Inserts at the cursor; with more than one element the cursor moves past it (so the new
    /// profile is the last one the cursor reaches); a lone profile resets `LastAutoSave`.
    pub fn insert(&mut self, profile: ProfileId, loaded_at: f64, now: f64) {
        let at = self.cursor.min(self.list.len());
        self.oldest_load = if self.list.is_empty() {
            loaded_at
        } else {
            self.oldest_load.min(loaded_at)
        };
        self.list.insert(at, Entry { profile, loaded_at });
        if self.list.len() > 1 {
            self.cursor = at + 1;
        } else {
            self.cursor = 0;
            self.last_auto_save = now;
        }
    }

    /// Removes a profile; a removal before the cursor moves it back; a cursor past the end
    /// returns to the start.
    pub fn remove(&mut self, profile: ProfileId) -> bool {
        let Some(i) = self.list.iter().position(|e| e.profile == profile) else {
            return false;
        };
        let removed = self.list.remove(i);
        if removed.loaded_at <= self.oldest_load {
            self.oldest_load = self
                .list
                .iter()
                .map(|e| e.loaded_at)
                .fold(f64::INFINITY, f64::min);
        }
        if i < self.cursor {
            self.cursor -= 1;
        }
        if self.cursor >= self.list.len() {
            self.cursor = 0;
        }
        true
    }

    /// When the next slot falls due, if any profile is in the ring.
    pub fn next_deadline(&self, period: f64) -> Option<f64> {
        let n = self.list.len();
        (n > 0).then(|| self.last_auto_save + period / n as f64)
    }

    /// Processes every slot due at `now` and returns the profiles to save, in order (a long
    /// frame may carry several slots; a slot whose candidates are all fresh saves nothing).
    pub fn due(&mut self, now: f64, period: f64) -> Vec<ProfileId> {
        let n = self.list.len();
        let mut saves = Vec::new();
        if n == 0 {
            return saves;
        }
        let step = period / n as f64;
        let fresh_for = period / 2.0;
        while now - self.last_auto_save >= step - crate::timers::TIME_EPSILON {
            self.last_auto_save += step;
            if now - self.oldest_load < fresh_for {
                // Every profile is fresh: the scan would come back to the same cursor.
                continue;
            }
            let is_fresh = |e: &Entry| now - e.loaded_at < fresh_for;
            let mut candidate = (!is_fresh(&self.list[self.cursor])).then_some(self.cursor);
            if candidate.is_none() {
                for _ in 1..n {
                    self.cursor = (self.cursor + 1) % n;
                    if !is_fresh(&self.list[self.cursor]) {
                        candidate = Some(self.cursor);
                        break;
                    }
                }
            }
            self.cursor = (self.cursor + 1) % n;
            if let Some(i) = candidate {
                saves.push(self.list[i].profile);
            }
        }
        saves
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(i: u64) -> ProfileId {
        ProfileId(i)
    }

    #[test]
    fn insertion_places_new_profiles_behind_the_cursor() {
        let mut r = AutoSaveRing::default();
        for i in 1..=5 {
            r.insert(p(i), i as f64, i as f64);
        }
        // k1 first, then k2..k5 each inserted at the cursor, which keeps pointing at k1.
        assert_eq!(
            r.profiles().collect::<Vec<_>>(),
            vec![p(2), p(3), p(4), p(5), p(1)]
        );
        assert_eq!(r.cursor, 4);
    }

    /// The `autosave_ring` fixture: period 30, five profiles loaded one second apart from
    /// t = 1.3; the first save goes to k1 at ≈19.3 and then one profile every 6 s in load order.
    #[test]
    fn ring_spacing_matches_autosave_ring_fixture() {
        let mut r = AutoSaveRing::default();
        for i in 1..=5u64 {
            let t = i as f64 + 0.3;
            r.insert(p(i), t, t);
        }
        let mut saved = Vec::new();
        let mut frame = 0u32;
        while frame <= 60 * 125 {
            let now = f64::from(frame) / 60.0;
            for prof in r.due(now, 30.0) {
                saved.push((prof.0, now));
            }
            frame += 1;
        }
        let order: Vec<u64> = saved.iter().map(|s| s.0).collect();
        assert_eq!(&order[..8], &[1, 2, 3, 4, 5, 1, 2, 3]);
        assert_eq!(saved.len(), 18, "slots from 19.3 to 121.3 every 6 s");
        for (i, (_, t)) in saved.iter().enumerate() {
            let expected = 19.3 + 6.0 * i as f64;
            assert!(
                (t - expected).abs() <= 1.0 / 60.0 + 1e-9,
                "save {i} at {t}, want {expected}"
            );
        }
    }

    #[test]
    fn each_profile_saved_once_per_period_and_fresh_ones_skipped() {
        let mut r = AutoSaveRing::default();
        for i in 0..10u64 {
            r.insert(p(i), -1000.0, 0.0);
        }
        // A newcomer loaded at 290 is fresh until 440.
        r.insert(p(99), 290.0, 0.0);
        let mut counts = std::collections::BTreeMap::new();
        for frame in 0..(60 * 600) {
            let now = f64::from(frame) / 60.0;
            for prof in r.due(now, 300.0) {
                *counts.entry(prof.0).or_insert(0u32) += 1;
            }
        }
        // 11 profiles: a slot every 300/11 s, 21 of them before 600 s. The newcomer's first slot
        // (the 11th, at ≈300 s, while it is fresh) goes to the next old profile, p0; its second
        // (the 21st, at ≈573 s) is its own.
        let mut expected: std::collections::BTreeMap<u64, u32> = (0..10).map(|i| (i, 2)).collect();
        expected.insert(99, 1);
        assert_eq!(counts, expected);
    }

    #[test]
    fn removal_keeps_cursor_in_range() {
        let mut r = AutoSaveRing::default();
        for i in 0..4 {
            r.insert(p(i), 0.0, 0.0);
        }
        for i in 0..4 {
            assert!(r.remove(p(i)));
            assert!(r.is_empty() || r.cursor < r.len());
        }
        assert!(!r.remove(p(0)));
        assert_eq!(r.next_deadline(300.0), None);
    }

    /// A burst of due slots (ten newcomers beside one old profile) all go to the old profile,
    /// as in the original (spec §7 notes); the cursor stays valid.
    #[test]
    fn catch_up_burst_goes_to_the_old_profile() {
        let mut r = AutoSaveRing::default();
        r.insert(p(0), 0.0, 0.0);
        let _ = r.due(250.0, 300.0);
        for i in 1..=10 {
            r.insert(p(i), 250.0, 250.0);
        }
        let saves = r.due(251.0, 300.0);
        assert_eq!(saves, vec![p(0); 9]);
        assert!(r.cursor < r.len());
    }
}
