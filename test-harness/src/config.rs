//! Checks of the numbers the simulated services and the world are built with: a DataStore's
//! fault rates, latency and limits ([`crate::datastore`]), a MessagingService's delays, loss
//! and limits ([`crate::messaging`]), the world's frame rate and latency
//! ([`crate::world::WorldConfig`]).
//!
//! A probability outside 0..1, a time that is negative, non-finite or over a day
//! ([`MAX_SECONDS`]), a negative or non-finite rate, a frame rate, epoch or skew out of range,
//! or a range whose ends are the wrong way round is refused where it enters (the builder, setter or constructor taking
//! it), with an error naming the field, so a run never starts on a value it cannot use: a NaN
//! delay would schedule a delivery at no time, a rate above 1 fails every call. The fleet and
//! scenario runners check their own inputs first ([`crate::fleet::FleetConfig::check`],
//! [`crate::scenario`]); these checks protect direct users of the library.

/// A configuration value the harness cannot run with.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// Not a probability.
    #[error("{field} must be a probability between 0 and 1, got {value}")]
    Probability {
        /// The field, as a path (`faults.default.fail`).
        field: String,
        /// What it was set to.
        value: f64,
    },
    /// A time that is negative, longer than [`MAX_SECONDS`], infinite or NaN.
    #[error("{field} must be a number of seconds from 0 to 86400 (a day), got {value}")]
    Seconds {
        /// The field.
        field: String,
        /// What it was set to.
        value: f64,
    },
    /// A rate or count that is negative, infinite or NaN.
    #[error("{field} must be a finite number, 0 or more, got {value}")]
    Amount {
        /// The field.
        field: String,
        /// What it was set to.
        value: f64,
    },
    /// A quantity that must be above zero and at most a bound.
    #[error("{field} must be above 0 and at most {max}, got {value}")]
    Positive {
        /// The field.
        field: String,
        /// What it was set to.
        value: f64,
        /// The most allowed.
        max: f64,
    },
    /// A whole number outside the range the harness can compute with.
    #[error("{field} must be between {min} and {max}, got {value}")]
    OutOfRange {
        /// The field.
        field: String,
        /// What it was set to.
        value: i64,
        /// The least allowed.
        min: i64,
        /// The most allowed.
        max: i64,
    },
    /// A world and its DataStore that start their clocks at different Unix times.
    #[error(
        "the world's epoch ({world}) and its DataStore's ({datastore}) must be the same Unix time"
    )]
    EpochMismatch {
        /// `WorldConfig::epoch`.
        world: i64,
        /// The epoch the DataStore was made with.
        datastore: i64,
    },
    /// The two ends of a range the wrong way round.
    #[error("{min_field} ({min}) must not be more than {max_field} ({max})")]
    Reversed {
        /// The lower end's field.
        min_field: String,
        /// Its value.
        min: f64,
        /// The upper end's field.
        max_field: String,
        /// Its value.
        max: f64,
    },
}

/// The longest time a configuration may give (a latency, a delay, a cache time, a window):
/// a day. Longer ones are mistakes, and times computed from them must stay far from overflow.
pub const MAX_SECONDS: f64 = 86_400.0;

/// `Ok` if `ok`, else the error `refusal` makes.
fn unless(ok: bool, refusal: impl FnOnce() -> ConfigError) -> Result<(), ConfigError> {
    if ok { Ok(()) } else { Err(refusal()) }
}

/// `value` is a probability (0 to 1).
pub(crate) fn probability(field: &str, value: f64) -> Result<(), ConfigError> {
    let field = field.to_string();
    unless((0.0..=1.0).contains(&value), || ConfigError::Probability {
        field,
        value,
    })
}

/// `value` is a time from 0 to [`MAX_SECONDS`].
pub(crate) fn seconds(field: &str, value: f64) -> Result<(), ConfigError> {
    let field = field.to_string();
    unless((0.0..=MAX_SECONDS).contains(&value), || {
        ConfigError::Seconds { field, value }
    })
}

/// `value` is a finite rate or count, 0 or more.
pub(crate) fn amount(field: &str, value: f64) -> Result<(), ConfigError> {
    let field = field.to_string();
    unless(value.is_finite() && value >= 0.0, || ConfigError::Amount {
        field,
        value,
    })
}

/// `value` is above 0 and at most `max`.
pub(crate) fn positive(field: &str, value: f64, max: f64) -> Result<(), ConfigError> {
    let field = field.to_string();
    unless(value > 0.0 && value <= max, || ConfigError::Positive {
        field,
        value,
        max,
    })
}

/// `value` is within `min..=max`.
pub(crate) fn within(field: &str, value: i64, min: i64, max: i64) -> Result<(), ConfigError> {
    let field = field.to_string();
    unless((min..=max).contains(&value), || ConfigError::OutOfRange {
        field,
        value,
        min,
        max,
    })
}

/// `min..=max` is a range of times: both ends [`seconds`], `min` not above `max`.
pub(crate) fn time_range(
    (min_field, min): (&str, f64),
    (max_field, max): (&str, f64),
) -> Result<(), ConfigError> {
    seconds(min_field, min)?;
    seconds(max_field, max)?;
    unless(min <= max, || ConfigError::Reversed {
        min_field: min_field.to_string(),
        min,
        max_field: max_field.to_string(),
        max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_check_accepts_its_edges_and_names_the_field_it_refuses() {
        assert_eq!(probability("p", 0.0), Ok(()));
        assert_eq!(probability("p", 1.0), Ok(()));
        assert_eq!(
            probability("loss", 1.5).unwrap_err().to_string(),
            "loss must be a probability between 0 and 1, got 1.5"
        );
        let refused = |e: Result<(), ConfigError>| e.unwrap_err().to_string();
        assert_eq!(
            refused(probability("p", f64::NAN)),
            "p must be a probability between 0 and 1, got NaN"
        );
        assert_eq!(seconds("t", 0.0), Ok(()));
        assert_eq!(seconds("t", MAX_SECONDS), Ok(()));
        assert_eq!(
            seconds("latency.min", -0.5).unwrap_err().to_string(),
            "latency.min must be a number of seconds from 0 to 86400 (a day), got -0.5"
        );
        for (value, shown) in [
            (MAX_SECONDS + 1.0, "86401"),
            (f64::INFINITY, "inf"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(
                refused(seconds("t", value)),
                format!("t must be a number of seconds from 0 to 86400 (a day), got {shown}")
            );
        }
        assert_eq!(amount("r", 0.0), Ok(()));
        assert_eq!(
            refused(amount("r", f64::NAN)),
            "r must be a finite number, 0 or more, got NaN"
        );
        assert_eq!(positive("fps", 1000.0, 1000.0), Ok(()));
        assert_eq!(
            positive("fps", 0.0, 1000.0).unwrap_err().to_string(),
            "fps must be above 0 and at most 1000, got 0"
        );
        assert_eq!(
            refused(positive("fps", f64::NAN, 1000.0)),
            "fps must be above 0 and at most 1000, got NaN"
        );
        assert_eq!(
            refused(positive("fps", 1e300, 1000.0)),
            format!("fps must be above 0 and at most 1000, got {}", 1e300)
        );
        assert_eq!(within("n", 3, 3, 4), Ok(()));
        assert_eq!(
            within("epoch", -1, 0, 9).unwrap_err().to_string(),
            "epoch must be between 0 and 9, got -1"
        );
        assert_eq!(time_range(("a", 1.0), ("b", 1.0)), Ok(()));
        assert_eq!(
            time_range(("min_delay", 2.0), ("max_delay", 1.0))
                .unwrap_err()
                .to_string(),
            "min_delay (2) must not be more than max_delay (1)"
        );
        assert!(matches!(
            time_range(("a", f64::NAN), ("b", 1.0)),
            Err(ConfigError::Seconds { .. })
        ));
    }
}
