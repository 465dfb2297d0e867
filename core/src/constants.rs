//! The ten tunable constants of ProfileStore and `SetConstant` (spec §2).
//!
//! The original accepts any number for any constant, including values that hang the server
//! (spec §19 items 11–12). [`Constants::set`] keeps the names, the defaults and the error texts of
//! the original, and additionally rejects values that cannot work (see `docs/DEVIATIONS.md`).

use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The settable constants, with ProfileStore's defaults (spec §2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Constants {
    /// Auto-save cycle length, seconds.
    pub auto_save_period: f64,
    /// Conflict re-poll interval after the first one, seconds.
    pub load_repeat_period: f64,
    /// Delay between the first and the second conflict poll, seconds.
    pub first_load_repeat: f64,
    /// Seconds of asking before the waiting server steals the lock.
    pub session_steal: f64,
    /// A lock whose `LastUpdate` is older than this many seconds is taken at the start's next
    /// poll, without the steal's wait (the original takes it at once: `docs/DEVIATIONS.md`
    /// row 7 asks its holder first).
    pub assume_dead: f64,
    /// Give-up time of a session start after DataStore errors (only without `Cancel`), seconds.
    pub start_session_timeout: f64,
    /// Errors inside the window needed to enter or extend critical state.
    pub critical_state_error_count: f64,
    /// Lifetime of one recorded error, seconds.
    pub critical_state_error_expire: f64,
    /// Seconds after the last "still critical" refresh at which critical state ends.
    pub critical_state_expire: f64,
    /// Maximum number of entries kept in `GlobalUpdates[2]`.
    pub max_message_queue: f64,
}

impl Default for Constants {
    fn default() -> Self {
        Constants {
            auto_save_period: 300.0,
            load_repeat_period: 10.0,
            first_load_repeat: 5.0,
            session_steal: 40.0,
            assume_dead: 630.0,
            start_session_timeout: 120.0,
            critical_state_error_count: 5.0,
            critical_state_error_expire: 120.0,
            critical_state_expire: 120.0,
            max_message_queue: 1000.0,
        }
    }
}

/// What a constant's value must be for the engine to keep working.
#[derive(Clone, Copy)]
enum Domain {
    /// A duration that must be greater than zero (a zero period spins or never steals).
    PositiveSeconds,
    /// A duration where zero is meaningful (e.g. "retry at once").
    NonNegativeSeconds,
    /// A whole count of at least one.
    CountAtLeastOne,
}

const NAMES: [(&str, Domain); 10] = [
    ("AUTO_SAVE_PERIOD", Domain::PositiveSeconds),
    ("LOAD_REPEAT_PERIOD", Domain::PositiveSeconds),
    ("FIRST_LOAD_REPEAT", Domain::NonNegativeSeconds),
    ("SESSION_STEAL", Domain::NonNegativeSeconds),
    ("ASSUME_DEAD", Domain::NonNegativeSeconds),
    ("START_SESSION_TIMEOUT", Domain::NonNegativeSeconds),
    ("CRITICAL_STATE_ERROR_COUNT", Domain::CountAtLeastOne),
    ("CRITICAL_STATE_ERROR_EXPIRE", Domain::NonNegativeSeconds),
    ("CRITICAL_STATE_EXPIRE", Domain::NonNegativeSeconds),
    ("MAX_MESSAGE_QUEUE", Domain::CountAtLeastOne),
];

impl Constants {
    /// `ProfileStore.SetConstant(name, value)`.
    ///
    /// Errors: an unknown name gives the original's `Invalid constant name was provided`; a value
    /// outside the constant's working domain (NaN, infinity, a period under one frame, a count that
    /// is not a whole number ≥ 1) gives [`ApiError::InvalidConstantValue`] naming the constant.
    pub fn set(&mut self, name: &str, value: f64) -> Result<(), ApiError> {
        let (_, domain) = NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or(ApiError::InvalidConstantName)?;
        let rule = match domain {
            // A loop period shorter than a Heartbeat frame does not work: the auto-save loop
            // cannot advance its clock by it (it hangs), and conflict polls run every frame
            // without ever reaching the steal.
            Domain::PositiveSeconds if !(value.is_finite() && value >= crate::engine::FRAME) => {
                Some("a finite number of seconds, at least one frame (1/60 s)")
            }
            Domain::NonNegativeSeconds if !(value.is_finite() && value >= 0.0) => {
                Some("a finite number of seconds, 0 or more")
            }
            Domain::CountAtLeastOne
                if !(value.is_finite() && value >= 1.0 && value.fract() == 0.0) =>
            {
                Some("a whole number, 1 or more")
            }
            _ => None,
        };
        if let Some(rule) = rule {
            return Err(ApiError::InvalidConstantValue {
                name: name.to_string(),
                value,
                rule,
            });
        }
        *self.slot(name) = value;
        Ok(())
    }

    /// Reads a constant by its ProfileStore name.
    pub fn get(&self, name: &str) -> Option<f64> {
        let mut copy = self.clone();
        NAMES
            .iter()
            .any(|(n, _)| *n == name)
            .then(|| *copy.slot(name))
    }

    fn slot(&mut self, name: &str) -> &mut f64 {
        match name {
            "AUTO_SAVE_PERIOD" => &mut self.auto_save_period,
            "LOAD_REPEAT_PERIOD" => &mut self.load_repeat_period,
            "FIRST_LOAD_REPEAT" => &mut self.first_load_repeat,
            "SESSION_STEAL" => &mut self.session_steal,
            "ASSUME_DEAD" => &mut self.assume_dead,
            "START_SESSION_TIMEOUT" => &mut self.start_session_timeout,
            "CRITICAL_STATE_ERROR_COUNT" => &mut self.critical_state_error_count,
            "CRITICAL_STATE_ERROR_EXPIRE" => &mut self.critical_state_error_expire,
            "CRITICAL_STATE_EXPIRE" => &mut self.critical_state_expire,
            _ => &mut self.max_message_queue,
        }
    }

    /// The number of conflict polls after which the waiting server steals:
    /// `ceil(SESSION_STEAL / LOAD_REPEAT_PERIOD)` (spec §5.3).
    pub fn steal_steps(&self) -> u32 {
        (self.session_steal / self.load_repeat_period).ceil() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_spec_section_2() {
        let c = Constants::default();
        assert_eq!(c.get("AUTO_SAVE_PERIOD"), Some(300.0));
        assert_eq!(c.get("LOAD_REPEAT_PERIOD"), Some(10.0));
        assert_eq!(c.get("FIRST_LOAD_REPEAT"), Some(5.0));
        assert_eq!(c.get("SESSION_STEAL"), Some(40.0));
        assert_eq!(c.get("ASSUME_DEAD"), Some(630.0));
        assert_eq!(c.get("START_SESSION_TIMEOUT"), Some(120.0));
        assert_eq!(c.get("CRITICAL_STATE_ERROR_COUNT"), Some(5.0));
        assert_eq!(c.get("CRITICAL_STATE_ERROR_EXPIRE"), Some(120.0));
        assert_eq!(c.get("CRITICAL_STATE_EXPIRE"), Some(120.0));
        assert_eq!(c.get("MAX_MESSAGE_QUEUE"), Some(1000.0));
        assert_eq!(c.get("NOPE"), None);
        assert_eq!(c.steal_steps(), 4);
    }

    #[test]
    fn set_constant_sets_all_ten() {
        let mut c = Constants::default();
        for (i, (name, _)) in NAMES.iter().enumerate() {
            let v = 7.0 + i as f64;
            c.set(name, v).unwrap();
            assert_eq!(c.get(name), Some(v), "{name}");
        }
        // Each name reached its own field (a name mapped to another's would leave a default).
        assert_eq!(
            c,
            Constants {
                auto_save_period: 7.0,
                load_repeat_period: 8.0,
                first_load_repeat: 9.0,
                session_steal: 10.0,
                assume_dead: 11.0,
                start_session_timeout: 12.0,
                critical_state_error_count: 13.0,
                critical_state_error_expire: 14.0,
                critical_state_expire: 15.0,
                max_message_queue: 16.0,
            }
        );
    }

    #[test]
    fn set_constant_rejects_unknown_name_with_original_text() {
        let err = Constants::default().set("AUTOSAVE", 1.0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "[ProfileStore]: Invalid constant name was provided"
        );
    }

    #[test]
    fn set_constant_rejects_values_that_hang() {
        let mut c = Constants::default();
        for (name, v) in [
            ("AUTO_SAVE_PERIOD", 0.0),
            ("AUTO_SAVE_PERIOD", -1.0),
            // Positive but under a frame: the auto-save clock could not advance by it.
            ("AUTO_SAVE_PERIOD", 5e-324),
            ("LOAD_REPEAT_PERIOD", 0.0),
            ("LOAD_REPEAT_PERIOD", 1e-12),
            ("MAX_MESSAGE_QUEUE", -1.0),
            ("MAX_MESSAGE_QUEUE", 0.0),
            ("MAX_MESSAGE_QUEUE", 2.5),
            ("ASSUME_DEAD", f64::NAN),
            ("SESSION_STEAL", f64::INFINITY),
        ] {
            let err = c.set(name, v).unwrap_err();
            assert!(
                matches!(&err, ApiError::InvalidConstantValue { name: n, .. } if n == name),
                "{name}={v}: {err}"
            );
        }
        assert_eq!(c, Constants::default(), "a rejected value changes nothing");
        assert_eq!(
            c.set("AUTO_SAVE_PERIOD", 0.0).unwrap_err().to_string(),
            "[ProfileStore]: Invalid value for AUTO_SAVE_PERIOD (0): must be a finite number of seconds, at least one frame (1/60 s)"
        );
        c.set("AUTO_SAVE_PERIOD", crate::engine::FRAME).unwrap();
    }
}
