//! Faults and latency from a seed (DESIGN.md §4 "Faults from a seed"; spec "A failed write may
//! still have been applied").
//!
//! Every DataStore call that reaches the service (a cached `GetAsync` does not) draws exactly one
//! number from the fault generator, whatever the configured rates, so changing one rate never
//! shifts the outcomes of unrelated calls. The draw `u` in `[0, 1)` decides:
//! `u < fail` → the call fails and nothing happens; `u < fail + ambiguous` → the call does its
//! work (the write commits) and then reports the error anyway. Scripted faults
//! ([`super::DataStoreService::script_fault`]) override the draw for the next call of one kind.
//! Latency draws come from a second generator so they never disturb fault outcomes.
//! Both are SplitMix64 ([`profilestore_core::guid::GuidGenerator`]) on streams of their own
//! (the seed mixed with a constant per generator, so a world and a MessagingService given the
//! same seed draw other numbers): same seed and same calls, same results.

use std::collections::{BTreeMap, VecDeque};

use profilestore_core::guid::GuidGenerator;

use super::Operation;
use super::error::RequestError;
use crate::config::{ConfigError, probability, time_range};

/// Mixed into the seed of the fault generator ("FAULTS!!"): a world, a MessagingService and a
/// DataStore given one seed (as a fleet gives them) draw from separate streams, so the n-th
/// fault roll is not the n-th GUID or message-loss roll.
const FAULT_STREAM: u64 = 0x4641_554C_5453_2121;

/// Mixed into the seed of the latency generator ("LATENCY!").
const LATENCY_STREAM: u64 = 0x4C41_5445_4E43_5921;

/// What happens to one call.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The call fails with this error and changes nothing.
    Fail(RequestError),
    /// The call does its work (a write commits) and then fails with this error anyway.
    Ambiguous(RequestError),
}

/// Fault probabilities for one kind of call.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultRates {
    /// Probability the call fails without effect.
    pub fail: f64,
    /// Probability the call takes effect but reports failure.
    pub ambiguous: f64,
    /// The error reported.
    pub error: RequestError,
}

impl FaultRates {
    /// No faults; the error is the usual 502.
    pub fn none() -> FaultRates {
        FaultRates {
            fail: 0.0,
            ambiguous: 0.0,
            error: internal_rejection(),
        }
    }

    /// Refuses rates that are not probabilities or that add up to more than 1; `name` is the
    /// rates' place in the configuration, for the error.
    pub fn check(&self, name: &str) -> Result<(), ConfigError> {
        probability(&format!("{name}.fail"), self.fail)?;
        probability(&format!("{name}.ambiguous"), self.ambiguous)?;
        probability(
            &format!("{name}.fail + {name}.ambiguous"),
            self.fail + self.ambiguous,
        )
    }
}

/// `502: API Services rejected request with error. HTTP 500 (Internal Server Error)`
pub fn internal_rejection() -> RequestError {
    RequestError::RequestRejected {
        detail: "HTTP 500 (Internal Server Error)".into(),
    }
}

/// Round-trip latency, uniform in `[min, max]` virtual seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    /// Shortest round trip.
    pub min: f64,
    /// Longest round trip.
    pub max: f64,
}

/// The fault model of a [`super::DataStoreService`].
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Seed of both generators.
    pub seed: u64,
    /// Round-trip latency.
    pub latency: Latency,
    /// Rates for calls without an entry in `per_operation`.
    pub default: FaultRates,
    /// Rates per kind of call.
    pub per_operation: BTreeMap<Operation, FaultRates>,
}

impl Faults {
    /// No faults, latency 0.
    pub fn none() -> Faults {
        Faults::seeded(0)
    }

    /// No faults yet, latency 0, generators seeded with `seed`.
    pub fn seeded(seed: u64) -> Faults {
        Faults {
            seed,
            latency: Latency { min: 0.0, max: 0.0 },
            default: FaultRates::none(),
            per_operation: BTreeMap::new(),
        }
    }

    /// The same, with every call failing with probability `fail` and being ambiguous with
    /// probability `ambiguous`.
    pub fn with_rates(mut self, fail: f64, ambiguous: f64) -> Faults {
        self.default.fail = fail;
        self.default.ambiguous = ambiguous;
        self
    }

    /// The same, with this latency range.
    pub fn with_latency(mut self, min: f64, max: f64) -> Faults {
        self.latency = Latency { min, max };
        self
    }

    /// Refuses a latency range that is negative, not finite or reversed, and rates that are
    /// not probabilities ([`FaultRates::check`]).
    pub fn check(&self) -> Result<(), ConfigError> {
        time_range(
            ("faults.latency.min", self.latency.min),
            ("faults.latency.max", self.latency.max),
        )?;
        self.default.check("faults.default")?;
        for (operation, rates) in &self.per_operation {
            rates.check(&format!("faults.per_operation[{operation:?}]"))?;
        }
        Ok(())
    }
}

/// The running state of the fault model.
#[derive(Clone, Debug)]
pub struct FaultState {
    config: Faults,
    faults: GuidGenerator,
    latency: GuidGenerator,
    scripted: BTreeMap<Operation, VecDeque<Fault>>,
}

impl FaultState {
    /// Changes every operation's fault probabilities from now on: the defaults become these and
    /// the per-operation rates are dropped (the generators keep their state).
    pub fn set_rates(&mut self, fail: f64, ambiguous: f64) {
        self.config.default.fail = fail;
        self.config.default.ambiguous = ambiguous;
        self.config.per_operation.clear();
    }

    /// Starts both generators from the config's seed, each on its own stream.
    pub fn new(config: Faults) -> FaultState {
        FaultState {
            faults: GuidGenerator::new(config.seed ^ FAULT_STREAM),
            latency: GuidGenerator::new(config.seed ^ LATENCY_STREAM),
            scripted: BTreeMap::new(),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Faults {
        &self.config
    }

    /// Queues a fault for the next call of kind `operation`.
    pub fn script(&mut self, operation: Operation, fault: Fault) {
        self.scripted.entry(operation).or_default().push_back(fault);
    }

    /// Decides the fate of one call (one draw).
    pub fn roll(&mut self, operation: Operation) -> Option<Fault> {
        let u = self.faults.next_f64();
        if let Some(fault) = self
            .scripted
            .get_mut(&operation)
            .and_then(VecDeque::pop_front)
        {
            return Some(fault);
        }
        let rates = self
            .config
            .per_operation
            .get(&operation)
            .unwrap_or(&self.config.default);
        if u < rates.fail {
            Some(Fault::Fail(rates.error.clone()))
        } else if u < rates.fail + rates.ambiguous {
            Some(Fault::Ambiguous(rates.error.clone()))
        } else {
            None
        }
    }

    /// One round-trip latency sample.
    pub fn latency(&mut self) -> f64 {
        let Latency { min, max } = self.config.latency;
        let u = self.latency.next_f64();
        min + (max - min).max(0.0) * u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_fates_and_latencies() {
        let config = Faults::seeded(42)
            .with_rates(0.2, 0.1)
            .with_latency(0.1, 0.3);
        let run = |config: &Faults| {
            let mut s = FaultState::new(config.clone());
            (0..200)
                .map(|_| (s.roll(Operation::Update), s.latency()))
                .collect::<Vec<_>>()
        };
        let a = run(&config);
        assert_eq!(a, run(&config));
        let fails = a
            .iter()
            .filter(|(f, _)| matches!(f, Some(Fault::Fail(_))))
            .count();
        let ambiguous = a
            .iter()
            .filter(|(f, _)| matches!(f, Some(Fault::Ambiguous(_))))
            .count();
        // About 20% and 10% of 200: seed 42 draws these.
        assert_eq!((fails, ambiguous), (45, 24));
        assert!(a.iter().all(|(_, l)| (0.1..=0.3).contains(l)));
        assert_ne!(a, run(&Faults { seed: 43, ..config }));
    }

    #[test]
    fn scripted_faults_come_first_and_keep_the_draw_sequence() {
        let config = Faults::seeded(7).with_rates(0.5, 0.0);
        let mut plain = FaultState::new(config.clone());
        let mut scripted = FaultState::new(config);
        scripted.script(Operation::Set, Fault::Ambiguous(internal_rejection()));
        assert_eq!(
            scripted.roll(Operation::Set),
            Some(Fault::Ambiguous(internal_rejection()))
        );
        plain.roll(Operation::Set);
        for _ in 0..20 {
            assert_eq!(plain.roll(Operation::Set), scripted.roll(Operation::Set));
        }
    }

    #[test]
    fn per_operation_rates_override_the_default() {
        let mut config = Faults::seeded(1);
        let throttled = RequestError::InternalServerError {
            detail: "injected".into(),
        };
        config.per_operation.insert(
            Operation::Get,
            FaultRates {
                fail: 1.0,
                ambiguous: 0.0,
                error: throttled.clone(),
            },
        );
        let mut s = FaultState::new(config);
        assert_eq!(s.roll(Operation::Get), Some(Fault::Fail(throttled)));
        assert_eq!(s.roll(Operation::Set), None);
    }
}
