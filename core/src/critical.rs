//! The critical-state window (spec §12): recent DataStore errors, `IsCriticalState`, and when
//! `OnCriticalToggle` fires.
//!
//! Critical means "≥ `CRITICAL_STATE_ERROR_COUNT` errors within the last
//! `CRITICAL_STATE_ERROR_EXPIRE` seconds"; it ends `CRITICAL_STATE_EXPIRE` seconds after the
//! window last held that many. It changes no behaviour.

use std::collections::VecDeque;

use crate::constants::Constants;

/// Whether `now` has reached `deadline`, computed as [`CriticalState::next_deadline`] computes
/// it: `(t + e) - t` can fall short of `e` in floating point, and a host that ticks at the
/// deadline must see it pass.
fn reached(now: f64, deadline: f64) -> bool {
    now + crate::timers::TIME_EPSILON >= deadline
}

/// Recorded errors and the critical flag.
#[derive(Debug, Default)]
pub struct CriticalState {
    issues: VecDeque<f64>,
    is_critical: bool,
    critical_since: f64,
    /// The window held enough errors when a constant changed: the original refreshes the start
    /// every frame until then, so the next tick (due at once) refreshes it to its own time.
    held_until_change: bool,
}

impl CriticalState {
    /// `ProfileStore.IsCriticalState`.
    pub fn is_critical(&self) -> bool {
        self.is_critical
    }

    /// Registers one error at monotonic time `now`.
    pub fn record_error(&mut self, now: f64) {
        self.issues.push_back(now);
    }

    /// Whether the window holds enough errors under `c`.
    fn enough(&self, c: &Constants) -> bool {
        self.issues.len() as f64 >= c.critical_state_error_count
    }

    /// `SetConstant` is about to replace constants `before`. While critical with the window
    /// full under them, the original refreshes the start every frame up to the change, and a
    /// lower count or a shorter expiry may end that at once: the start is refreshed by the
    /// next tick, which [`next_deadline`](Self::next_deadline) makes due at once (a host that
    /// ticks only at deadlines otherwise ended critical state counting from its last tick, up
    /// to `CRITICAL_STATE_ERROR_EXPIRE` seconds early).
    pub fn constants_changing(&mut self, before: &Constants) {
        if self.is_critical && self.enough(before) {
            self.held_until_change = true;
        }
    }

    /// The per-frame evaluation; returns `Some(new_state)` when it toggles.
    pub fn tick(&mut self, now: f64, c: &Constants) -> Option<bool> {
        if std::mem::take(&mut self.held_until_change) {
            self.critical_since = self.critical_since.max(now);
        }
        let enough = self.enough(c);
        let mut toggled = None;
        if !self.is_critical {
            if enough {
                self.is_critical = true;
                self.critical_since = now;
                toggled = Some(true);
            }
        } else if enough {
            self.critical_since = now;
        } else if reached(now, self.critical_since + c.critical_state_expire) {
            self.is_critical = false;
            toggled = Some(false);
        }
        while self
            .issues
            .front()
            .is_some_and(|t| reached(now, t + c.critical_state_error_expire))
        {
            self.issues.pop_front();
        }
        toggled
    }

    /// The next time `tick` can change anything.
    pub fn next_deadline(&self, c: &Constants) -> Option<f64> {
        if self.held_until_change {
            // Past: the host ticks at once, at the time the constant changed.
            return Some(self.critical_since);
        }
        let expiry = self
            .issues
            .front()
            .map(|t| t + c.critical_state_error_expire);
        let enough = self.enough(c);
        // While the window holds enough errors every tick refreshes the start, so the end can
        // come only once an error has expired: offering it then would wake the host at every
        // tick (at once, with a `CRITICAL_STATE_EXPIRE` of 0).
        let end =
            (self.is_critical && !enough).then_some(self.critical_since + c.critical_state_expire);
        let enter =
            (!self.is_critical && enough).then(|| self.issues.back().copied().unwrap_or(0.0));
        [expiry, end, enter].into_iter().flatten().reduce(f64::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// While critical with the window full, the next wake-up is the first error's expiry, not
    /// the refreshed end: with `CRITICAL_STATE_EXPIRE` 0 that end was the tick's own time, and a
    /// host jumping to `poll_timeout` ticked at the same instant for ever.
    #[test]
    fn a_full_window_wakes_the_host_at_its_first_expiry() {
        let mut c = Constants::default();
        c.set("CRITICAL_STATE_EXPIRE", 0.0).unwrap();
        let mut s = CriticalState::default();
        for t in [10.0, 11.0, 12.0, 13.0, 14.0] {
            s.record_error(t);
        }
        assert_eq!(s.tick(14.0, &c), Some(true));
        assert_eq!(s.next_deadline(&c), Some(130.0));
        assert_eq!(s.tick(20.0, &c), None);
        assert_eq!(s.next_deadline(&c), Some(130.0));
        // At 130 the first error expires: the window holds four, the end is due at once.
        assert_eq!(s.tick(130.0, &c), None);
        assert_eq!(s.next_deadline(&c), Some(130.0));
        assert_eq!(s.tick(130.0, &c), Some(false));
        assert_eq!(s.next_deadline(&c), Some(131.0));
    }

    #[test]
    fn five_errors_enter_and_quiet_ends_120s_after_window_drains() {
        let c = Constants::default();
        let mut s = CriticalState::default();
        for t in [10.0, 11.0, 12.0, 13.0] {
            s.record_error(t);
        }
        assert_eq!(s.tick(13.0, &c), None);
        s.record_error(14.0);
        assert_eq!(s.tick(14.0, &c), Some(true));
        assert!(s.is_critical());
        // The window still holds five errors until the first expires at 130.
        assert_eq!(s.tick(129.9, &c), None);
        assert_eq!(s.critical_since, 129.9);
        assert_eq!(
            s.tick(130.0, &c),
            None,
            "refresh, then the 10.0 error expires"
        );
        // From 130 the window holds four: critical ends 120 s after the last refresh.
        assert_eq!(s.tick(249.9, &c), None);
        assert_eq!(s.tick(250.0, &c), Some(false));
        assert!(!s.is_critical());
    }

    /// A tick at `next_deadline` passes it: `(8.2 + 120) - 8.2` is 119.99999999999999, and an
    /// error recorded at 8.2 used to outlive its deadline, so a host jumping to the engine's
    /// next wake-up found the same time again, for ever.
    #[test]
    fn a_tick_at_the_deadline_passes_it() {
        let c = Constants::default();
        let mut s = CriticalState::default();
        s.record_error(8.2);
        assert_eq!(s.next_deadline(&c), Some(128.2));
        s.tick(128.2, &c);
        assert_eq!(s.next_deadline(&c), None);
        // The end of critical state too: entered at 8.2 and refreshed while the window holds
        // five errors (last at 128.2), it ends at its deadline 120 s later.
        for _ in 0..5 {
            s.record_error(8.2);
        }
        assert_eq!(s.tick(8.2, &c), Some(true));
        assert_eq!(s.next_deadline(&c), Some(128.2));
        assert_eq!(s.tick(128.2, &c), None, "the errors expire");
        assert_eq!(s.next_deadline(&c), Some(248.2));
        assert_eq!(s.tick(248.2, &c), Some(false));
        assert_eq!(s.next_deadline(&c), None);
    }

    /// A constant changed while the window held enough errors (spec §2: a change "affects
    /// every ... live profile immediately"; §12: the start is refreshed every frame while the
    /// window holds enough): the start is refreshed to the next tick, due at once, so critical
    /// state ends `CRITICAL_STATE_EXPIRE` after the change, not after the last tick before it.
    #[test]
    fn a_lower_count_ends_critical_state_counting_from_the_change() {
        let mut c = Constants::default();
        let mut s = CriticalState::default();
        for t in [10.0, 11.0, 12.0, 13.0, 14.0] {
            s.record_error(t);
        }
        assert_eq!(s.tick(14.0, &c), Some(true));
        assert_eq!(s.next_deadline(&c), Some(130.0));
        // At 60 the count is raised to 10: the five errors are no longer enough.
        let before = c.clone();
        c.set("CRITICAL_STATE_ERROR_COUNT", 10.0).unwrap();
        s.constants_changing(&before);
        assert_eq!(s.next_deadline(&c), Some(14.0), "due at once");
        assert_eq!(s.tick(60.0, &c), None);
        assert_eq!(s.next_deadline(&c), Some(130.0), "the first error's expiry");
        assert_eq!(s.tick(130.0, &c), None);
        assert_eq!(s.tick(179.9, &c), None);
        assert_eq!(s.tick(180.0, &c), Some(false));
        // Not critical: a change makes nothing due at once.
        let mut quiet = CriticalState::default();
        quiet.record_error(1.0);
        quiet.constants_changing(&before);
        assert_eq!(quiet.next_deadline(&c), Some(121.0));
    }

    /// Errors spread over the whole window still count together (the window is a sliding
    /// count of errors, not a streak). Successes are not recorded at all: an engine-level
    /// test (`signals.rs` `a_success_between_errors_does_not_reset_the_window`) shows one in
    /// between changes nothing.
    #[test]
    fn errors_across_the_window_count_together() {
        let c = Constants::default();
        let mut s = CriticalState::default();
        for t in [0.0, 30.0, 60.0, 90.0, 119.0] {
            s.record_error(t);
        }
        assert_eq!(s.tick(119.0, &c), Some(true));
    }
}
