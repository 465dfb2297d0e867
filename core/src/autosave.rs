//! The auto-save ring (spec §7): the ordered list of active profiles, the cursor and
//! `LastAutoSave`, and which profile each slot of `AUTO_SAVE_PERIOD / n` saves.
//!
//! Slots are computed by the engine after its listeners-free bookkeeping, so the list cannot
//! change while a burst of slots is processed: the cursor corruption of spec §19 item 21 cannot
//! happen, and every removal re-normalises the cursor.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use crate::protocol::{ProfileId, Seconds};

/// One ring entry: its `load_timestamp` (monotonic load time, never reset) and its neighbours
/// (the ring is circular: the last entry's `next` is the first).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Node {
    loaded_at: f64,
    prev: ProfileId,
    next: ProfileId,
}

/// The ring, as a circular doubly linked list over profile handles: inserting at the cursor
/// and removing a profile take constant time however many profiles a server holds (a server
/// with a thousand players re-links an entry instead of shifting a thousand).
///
/// The cursor names the entry the next slot looks at first (the original's `AutoSaveIndex`);
/// the entries are in list order from `head`.
#[derive(Debug, Default)]
pub struct AutoSaveRing {
    /// Looked up only, never iterated: the order comes from the links.
    nodes: FxHashMap<ProfileId, Node>,
    head: Option<ProfileId>,
    cursor: Option<ProfileId>,
    last_auto_save: f64,
    /// Entries by load time, for the earliest one: while it is fresh, every profile is, and a
    /// slot's scan (which would move the cursor a full turn) can be skipped.
    by_load: BTreeSet<(Seconds, ProfileId)>,
}

impl AutoSaveRing {
    /// Number of profiles in the ring.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True when no profile is in the ring.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Profiles in ring order.
    pub fn profiles(&self) -> impl Iterator<Item = ProfileId> + '_ {
        let mut at = self.head;
        (0..self.nodes.len()).filter_map(move |_| {
            let here = at?;
            at = self.nodes.get(&here).map(|n| n.next);
            Some(here)
        })
    }

    /// Inserts at the cursor, just before the entry it names, which stays named (so the new
    /// profile is the last one the cursor reaches); a lone profile resets `LastAutoSave`.
    pub fn insert(&mut self, profile: ProfileId, loaded_at: f64, now: f64) {
        if self.nodes.contains_key(&profile) {
            self.remove(profile);
        }
        self.by_load.insert((Seconds(loaded_at), profile));
        let Some(at) = self.cursor else {
            self.nodes.insert(
                profile,
                Node {
                    loaded_at,
                    prev: profile,
                    next: profile,
                },
            );
            self.head = Some(profile);
            self.cursor = Some(profile);
            self.last_auto_save = now;
            return;
        };
        let prev = self.nodes[&at].prev;
        self.nodes.insert(
            profile,
            Node {
                loaded_at,
                prev,
                next: at,
            },
        );
        self.join(prev, profile);
        self.join(profile, at);
        if self.head == Some(at) {
            self.head = Some(profile);
        }
    }

    /// Removes a profile. A cursor naming it moves to the entry after it (the first one when it
    /// was the last).
    pub fn remove(&mut self, profile: ProfileId) -> bool {
        let Some(node) = self.nodes.remove(&profile) else {
            return false;
        };
        self.by_load.remove(&(Seconds(node.loaded_at), profile));
        if self.nodes.is_empty() {
            self.head = None;
            self.cursor = None;
            return true;
        }
        self.join(node.prev, node.next);
        if self.head == Some(profile) {
            self.head = Some(node.next);
        }
        if self.cursor == Some(profile) {
            // The entry after the removed one: the first when the removed one was the last.
            self.cursor = Some(node.next);
        }
        true
    }

    /// Makes `b` the entry after `a`.
    fn join(&mut self, a: ProfileId, b: ProfileId) {
        if let Some(n) = self.nodes.get_mut(&a) {
            n.next = b;
        }
        if let Some(n) = self.nodes.get_mut(&b) {
            n.prev = a;
        }
    }

    /// When the next slot falls due, if any profile is in the ring.
    pub fn next_deadline(&self, period: f64) -> Option<f64> {
        let n = self.nodes.len();
        (n > 0).then(|| slot_after(self.last_auto_save, period / n as f64))
    }

    /// Processes every slot due at `now` and returns the profiles to save, in order (a long
    /// frame may carry several slots; a slot whose candidates are all fresh saves nothing).
    pub fn due(&mut self, now: f64, period: f64) -> Vec<ProfileId> {
        let n = self.nodes.len();
        let mut saves = Vec::new();
        let (Some(mut cursor), Some(&(oldest, _))) = (self.cursor, self.by_load.first()) else {
            return saves;
        };
        let step = period / n as f64;
        let fresh_for = period / 2.0;
        let next = |p: ProfileId| self.nodes[&p].next;
        let is_fresh = |p: ProfileId| now - self.nodes[&p].loaded_at < fresh_for;
        // A clock that jumped absurdly far (a host feeding a wrong `now`) must not keep the
        // loop going for ever: at most this many slots are caught up, the rest skipped. (The
        // slots are counted: far from zero a double's steps are coarser than `step`, so the
        // loop can need more turns than the distance says.)
        const MAX_SLOTS: usize = 100_000;
        if now - self.last_auto_save > step * MAX_SLOTS as f64 {
            // (A step below the clock's resolution would put that at `now`: one slot is left.)
            self.last_auto_save = (now - step * MAX_SLOTS as f64).min(now.next_down());
        }
        let mut slots = 0;
        // Reached as `next_deadline` computes it (`(a + b) - a` can fall short of `b`).
        while now + crate::timers::TIME_EPSILON >= slot_after(self.last_auto_save, step) {
            if slots == MAX_SLOTS {
                self.last_auto_save = now;
                break;
            }
            slots += 1;
            self.last_auto_save = slot_after(self.last_auto_save, step);
            if now - oldest.0 < fresh_for {
                // Every profile is fresh: the scan would come back to the same cursor.
                continue;
            }
            let mut candidate = (!is_fresh(cursor)).then_some(cursor);
            if candidate.is_none() {
                for _ in 1..n {
                    cursor = next(cursor);
                    if !is_fresh(cursor) {
                        candidate = Some(cursor);
                        break;
                    }
                }
            }
            cursor = next(cursor);
            if let Some(p) = candidate {
                saves.push(p);
            }
        }
        self.cursor = Some(cursor);
        saves
    }
}

/// The slot `step` after the one at `last`: at least the clock's next value, so that a step
/// below the clock's resolution at `last` (an absurd clock, far from zero) still moves the ring
/// on, one slot per value the clock takes, and the next deadline is never `now` itself (a host
/// waking at its deadline would spin there).
fn slot_after(last: f64, step: f64) -> f64 {
    (last + step).max(last.next_up())
}

#[cfg(test)]
mod tests {
    use super::*;

    impl AutoSaveRing {
        /// The cursor as a 0-based position in ring order (the original's `AutoSaveIndex` - 1).
        fn cursor_index(&self) -> Option<usize> {
            self.profiles().position(|p| Some(p) == self.cursor)
        }
    }

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
        assert_eq!(r.cursor_index(), Some(4));
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

    /// A clock fed absurd values (an enormous jump, a step below its resolution) ends the
    /// catch-up instead of looping for ever.
    #[test]
    fn absurd_clocks_do_not_hang_the_ring() {
        let mut r = AutoSaveRing::default();
        r.insert(p(1), 0.0, 0.0);
        r.insert(p(2), 0.0, 0.0);
        // A jump to 1e18 s: 100,000 slots are caught up, not 6.7e15, each saving one of the
        // two. (At 1e18 a double moves in steps of 128 s, so a 150 s step advances by 128: the
        // distance alone allowed some 117,000, and the test used to accept up to 200,000.)
        let saves = r.due(1e18, 300.0);
        assert_eq!(saves.len(), 100_000);
        // The rest are skipped: the next slot is a step away.
        assert!(r.due(1e18, 300.0).is_empty());
        // A step below the clock's resolution: nothing more is due, at once; the next slot is
        // the clock's next value (128 s on), not `now` again, which a host waking at its
        // deadline would spin at, the ring never moving.
        assert!(r.due(1e18, 1e-300).is_empty());
        let next = r.next_deadline(1e-300).unwrap();
        assert_eq!(next, 1e18_f64.next_up());
        // Then one slot per value the clock takes.
        assert_eq!(r.due(next, 1e-300), vec![p(1)]);
        assert_eq!(r.next_deadline(1e-300), Some(next.next_up()));
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

    /// The ring as a plain list with an index cursor, the way spec §7 describes it.
    #[derive(Default)]
    struct ListRing {
        list: Vec<(ProfileId, f64)>,
        cursor: usize,
        last_auto_save: f64,
    }

    impl ListRing {
        fn insert(&mut self, profile: ProfileId, loaded_at: f64, now: f64) {
            let at = self.cursor.min(self.list.len());
            self.list.insert(at, (profile, loaded_at));
            if self.list.len() > 1 {
                self.cursor = at + 1;
            } else {
                self.cursor = 0;
                self.last_auto_save = now;
            }
        }

        fn remove(&mut self, profile: ProfileId) -> bool {
            let Some(i) = self.list.iter().position(|e| e.0 == profile) else {
                return false;
            };
            self.list.remove(i);
            if i < self.cursor {
                self.cursor -= 1;
            }
            if self.cursor >= self.list.len() {
                self.cursor = 0;
            }
            true
        }

        fn due(&mut self, now: f64, period: f64) -> Vec<ProfileId> {
            let n = self.list.len();
            let mut saves = Vec::new();
            if n == 0 {
                return saves;
            }
            let step = period / n as f64;
            let fresh = |e: &(ProfileId, f64)| now - e.1 < period / 2.0;
            while now + crate::timers::TIME_EPSILON >= self.last_auto_save + step {
                self.last_auto_save += step;
                let mut candidate = (!fresh(&self.list[self.cursor])).then_some(self.cursor);
                for _ in 1..n {
                    if candidate.is_some() {
                        break;
                    }
                    self.cursor = (self.cursor + 1) % n;
                    if !fresh(&self.list[self.cursor]) {
                        candidate = Some(self.cursor);
                    }
                }
                self.cursor = (self.cursor + 1) % n;
                if let Some(i) = candidate {
                    saves.push(self.list[i].0);
                }
            }
            saves
        }
    }

    /// Random joins, leaves, manual saves (remove + insert) and frames: the linked ring keeps
    /// the same order, cursor and slots as the plain list.
    #[test]
    fn linked_ring_matches_the_list_model() {
        for seed in 0..10u64 {
            let mut rng = crate::guid::GuidGenerator::new(seed);
            let (mut ring, mut list) = (AutoSaveRing::default(), ListRing::default());
            let mut next_id = 0u64;
            let mut now = 0.0;
            for step in 0..3000 {
                now += 0.25;
                let roll = rng.next_u64() % 10;
                if roll < 3 || list.list.is_empty() {
                    next_id += 1;
                    ring.insert(p(next_id), now, now);
                    list.insert(p(next_id), now, now);
                } else if roll < 6 {
                    let victim = list.list[(rng.next_u64() % list.list.len() as u64) as usize].0;
                    assert!(ring.remove(victim));
                    assert!(list.remove(victim));
                    if roll == 5 {
                        // A manual save moves the profile to the back of the ring.
                        let loaded_at = now - 100.0;
                        ring.insert(victim, loaded_at, now);
                        list.insert(victim, loaded_at, now);
                    }
                } else {
                    assert_eq!(
                        ring.due(now, 30.0),
                        list.due(now, 30.0),
                        "seed {seed} step {step}"
                    );
                }
                let order: Vec<_> = list.list.iter().map(|e| e.0).collect();
                assert_eq!(ring.profiles().collect::<Vec<_>>(), order, "seed {seed}");
                let cursor = (!list.list.is_empty()).then_some(list.cursor);
                assert_eq!(ring.cursor_index(), cursor, "seed {seed} step {step}");
                assert_eq!(ring.next_deadline(30.0).is_some(), !order.is_empty());
            }
        }
    }

    #[test]
    fn removal_keeps_cursor_in_range() {
        let mut r = AutoSaveRing::default();
        for i in 0..4 {
            r.insert(p(i), 0.0, 0.0);
        }
        for i in 0..4 {
            assert!(r.remove(p(i)));
            assert!(r.is_empty() || r.cursor_index().is_some());
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
        assert!(r.cursor_index().is_some());
    }
}
