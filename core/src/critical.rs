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

    /// The per-frame evaluation; returns `Some(new_state)` when it toggles.
    pub fn tick(&mut self, now: f64, c: &Constants) -> Option<bool> {
        let enough = self.issues.len() as f64 >= c.critical_state_error_count;
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
        let expiry = self
            .issues
            .front()
            .map(|t| t + c.critical_state_error_expire);
        let enough = self.issues.len() as f64 >= c.critical_state_error_count;
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
