//! The numbers the simulated services, the world and the fleet are built with are checked where
//! they enter (`profilestore_harness::config`): a bad one is refused with an error naming the
//! field, and a refused change leaves the running service as it was.

use profilestore_core::value::json;
use profilestore_harness::config::ConfigError;
use profilestore_harness::datastore::{
    DataStoreService, FaultRates, Faults, Limits, Operation, Rate, RequestType, ServerId,
    SetOptions, StoreName,
};
use profilestore_harness::fleet::{Fleet, FleetConfig};
use profilestore_harness::messaging::{MessagingConfig, MessagingService, Scaled};
use profilestore_harness::storage::MemoryStorage;
use profilestore_harness::world::{
    LatencyModel, MAX_EPOCH, MAX_WALL_SKEW, ServerSpec, World, WorldConfig,
};

const EPOCH: i64 = 1_735_689_600;
const A: ServerId = ServerId(0);

fn message(e: ConfigError) -> String {
    e.to_string()
}

#[test]
fn datastore_faults_are_checked_when_the_service_takes_them() {
    let refused = |faults: Faults| {
        DataStoreService::new(EPOCH)
            .with_faults(faults)
            .err()
            .map(message)
    };
    assert_eq!(
        refused(Faults::seeded(1).with_latency(0.3, 0.1)),
        Some("faults.latency.min (0.3) must not be more than faults.latency.max (0.1)".into())
    );
    assert_eq!(
        refused(Faults::seeded(1).with_latency(f64::NAN, 0.1)),
        Some(
            "faults.latency.min must be a number of seconds from 0 to 86400 (a day), got NaN"
                .into()
        )
    );
    assert_eq!(
        refused(Faults::seeded(1).with_rates(1.5, 0.0)),
        Some("faults.default.fail must be a probability between 0 and 1, got 1.5".into())
    );
    assert_eq!(
        refused(Faults::seeded(1).with_rates(0.75, 0.5)),
        Some(
            "faults.default.fail + faults.default.ambiguous must be a probability between 0 \
             and 1, got 1.25"
                .into()
        )
    );
    let mut per_operation = Faults::seeded(1);
    per_operation.per_operation.insert(
        Operation::Update,
        FaultRates {
            ambiguous: -0.1,
            ..FaultRates::none()
        },
    );
    assert_eq!(
        refused(per_operation),
        Some(
            "faults.per_operation[Update].ambiguous must be a probability between 0 and 1, \
             got -0.1"
                .into()
        )
    );
    // The edges are accepted: always failing, a fixed latency.
    assert!(
        DataStoreService::new(EPOCH)
            .with_faults(
                Faults::seeded(1)
                    .with_rates(0.8, 0.2)
                    .with_latency(0.1, 0.1)
            )
            .is_ok()
    );
}

#[test]
fn a_refused_fault_rate_change_leaves_the_old_rates_in_force() {
    let mut ds = DataStoreService::new(EPOCH)
        .with_limits(Limits::unlimited())
        .unwrap()
        .with_faults(Faults::seeded(1))
        .unwrap();
    assert_eq!(
        ds.set_fault_rates(f64::NAN, 0.0).map_err(message),
        Err("faults.default.fail must be a probability between 0 and 1, got NaN".into())
    );
    // Still no faults: every write of a hundred succeeds.
    let store = StoreName::new("S");
    for n in 0..100 {
        let key = format!("k{n}");
        assert!(
            ds.set_async(
                f64::from(n),
                A,
                &store,
                &key,
                json!(n),
                SetOptions::default()
            )
            .is_ok(),
            "write {n}"
        );
    }
    assert_eq!(ds.set_fault_rates(1.0, 0.0), Ok(()));
    assert!(
        ds.set_async(100.0, A, &store, "k", json!(1), SetOptions::default())
            .is_err()
    );
}

#[test]
fn datastore_limits_and_rate_limits_are_checked() {
    let refused = |limits: Limits| {
        DataStoreService::new(EPOCH)
            .with_limits(limits)
            .err()
            .map(message)
    };
    assert_eq!(
        refused(Limits {
            cache_seconds: Some(-4.0),
            ..Limits::roblox()
        }),
        Some(
            "limits.cache_seconds must be a number of seconds from 0 to 86400 (a day), got -4"
                .into()
        )
    );
    let mut budgets = Limits::roblox();
    if let Some(b) = budgets.budgets.as_mut() {
        b.write.per_player = f64::INFINITY;
    }
    assert_eq!(
        refused(budgets),
        Some("limits.budgets.write.per_player must be a finite number, 0 or more, got inf".into())
    );
    let mut experience = Limits::roblox();
    if let Some(e) = experience
        .budgets
        .as_mut()
        .and_then(|b| b.experience.as_mut())
    {
        e.list.base = -1.0;
    }
    assert_eq!(
        refused(experience),
        Some(
            "limits.budgets.experience.list.base must be a finite number, 0 or more, got -1".into()
        )
    );
    assert_eq!(
        refused(Limits {
            version_interval_ms: Some(0),
            ..Limits::roblox()
        }),
        Some("limits.version_interval_ms must be between 1 and 3153600000000, got 0".into())
    );
    assert_eq!(
        refused(Limits {
            version_retention_ms: Some(-1),
            ..Limits::roblox()
        }),
        Some("limits.version_retention_ms must be between 0 and 3153600000000, got -1".into())
    );
    let mut allowance = Limits::roblox();
    if let Some(t) = allowance.throughput.as_mut() {
        t.write_bytes = 1000;
    }
    assert_eq!(
        refused(allowance),
        Some(
            "limits.throughput.write_bytes must be between 1024 and 9223372036854775807, got 1000"
                .into()
        )
    );
    let mut unit = Limits::roblox();
    if let Some(t) = unit.throughput.as_mut() {
        t.unit_bytes = 0;
    }
    assert_eq!(
        refused(unit),
        Some(
            "limits.throughput.unit_bytes must be between 1 and 9223372036854775807, got 0".into()
        )
    );
    let mut throughput = Limits::roblox();
    if let Some(t) = throughput.throughput.as_mut() {
        t.window_seconds = f64::NAN;
    }
    assert_eq!(
        refused(throughput),
        Some(
            "limits.throughput.window_seconds must be a number of seconds from 0 to \
             86400 (a day), got NaN"
                .into()
        )
    );

    // SetRateLimitForRequestType: a refused rate leaves the budget as it was.
    let mut ds = DataStoreService::new(EPOCH)
        .with_limits(Limits::roblox())
        .unwrap();
    let before = ds.request_budget(0.0, A, RequestType::StandardWrite);
    assert_eq!(
        ds.set_rate_limit(0.0, A, RequestType::StandardWrite, Rate::new(f64::NAN, 0.0))
            .map_err(message),
        Err("rate[StandardWrite].base must be a finite number, 0 or more, got NaN".into())
    );
    assert_eq!(
        ds.request_budget(0.0, A, RequestType::StandardWrite),
        before
    );
}

#[test]
fn messaging_configuration_is_checked() {
    let refused = |config: MessagingConfig| MessagingService::new(config).err().map(message);
    assert_eq!(
        refused(MessagingConfig::roblox(1).with_loss(2.0)),
        Some("messaging.loss must be a probability between 0 and 1, got 2".into())
    );
    assert_eq!(
        refused(MessagingConfig::roblox(1).with_delay(-1.0)),
        Some(
            "messaging.min_delay must be a number of seconds from 0 to 86400 (a day), got -1"
                .into()
        )
    );
    let mut reversed = MessagingConfig::roblox(1);
    reversed.min_delay = 3.0;
    assert_eq!(
        refused(reversed),
        Some("messaging.min_delay (3) must not be more than messaging.max_delay (2)".into())
    );
    let mut limits = MessagingConfig::roblox(1);
    limits.limits.received_per_topic = Some(Scaled {
        base: 40.0,
        per: f64::NAN,
    });
    assert_eq!(
        refused(limits),
        Some(
            "messaging.limits.received_per_topic.per must be a finite number, 0 or more, got NaN"
                .into()
        )
    );

    // A refused loss leaves the old one: nothing is lost.
    let mut ms = MessagingService::new(MessagingConfig::roblox(1).with_delay(1.0)).unwrap();
    assert_eq!(
        ms.set_loss(-0.5).map_err(message),
        Err("messaging.loss must be a probability between 0 and 1, got -0.5".into())
    );
    ms.subscribe(0.0, A, "t").unwrap();
    let published = ms.publish(0.0, A, "t", &json!(1)).unwrap();
    assert_eq!((published.scheduled, published.lost), (1, 0));
}

fn world_config() -> WorldConfig {
    WorldConfig {
        seed: 1,
        epoch: EPOCH,
        fps: 60.0,
        latency: LatencyModel::Fixed(0.1),
        servers: vec![ServerSpec {
            name: "A".into(),
            place_id: 1,
            wall_skew: 0,
        }],
    }
}

fn build(config: WorldConfig) -> Result<World, String> {
    let ds = DataStoreService::new(EPOCH);
    let ms = MessagingService::new(MessagingConfig::roblox(1)).unwrap();
    World::new(config, ds, ms).map_err(message)
}

#[test]
fn the_world_checks_its_frame_rate_latency_epoch_and_skews() {
    assert!(build(world_config()).is_ok());
    let with = |change: fn(&mut WorldConfig)| {
        let mut config = world_config();
        change(&mut config);
        build(config).err()
    };
    assert_eq!(
        with(|c| c.fps = 0.0),
        Some("world.fps must be above 0 and at most 1000, got 0".into())
    );
    assert_eq!(
        with(|c| c.fps = 1001.0),
        Some("world.fps must be above 0 and at most 1000, got 1001".into())
    );
    assert_eq!(
        with(|c| c.latency = LatencyModel::Fixed(86_401.0)),
        Some("world.latency must be a number of seconds from 0 to 86400 (a day), got 86401".into())
    );
    assert_eq!(
        with(|c| c.latency = LatencyModel::Fixed(f64::INFINITY)),
        Some("world.latency must be a number of seconds from 0 to 86400 (a day), got inf".into())
    );
    assert_eq!(
        with(|c| c.epoch = MAX_EPOCH + 1),
        Some(format!(
            "world.epoch must be between 0 and {MAX_EPOCH}, got {}",
            MAX_EPOCH + 1
        ))
    );
    assert_eq!(
        with(|c| c.servers[0].wall_skew = i64::MIN),
        Some(format!(
            "world.servers[0].wall_skew must be between -{MAX_WALL_SKEW} and {MAX_WALL_SKEW}, \
             got {}",
            i64::MIN
        ))
    );
    assert!(with(|c| c.servers[0].wall_skew = -MAX_WALL_SKEW).is_none());
    // No server's clock starts before 1970.
    assert_eq!(
        with(|c| {
            c.epoch = 0;
            c.servers[0].wall_skew = -1;
        }),
        Some(format!(
            "world.servers[0].wall_skew must be between 0 and {MAX_WALL_SKEW}, got -1"
        ))
    );

    // The DataStore's clock starts where the world's does.
    let ds = DataStoreService::new(EPOCH + 1);
    let ms = MessagingService::new(MessagingConfig::roblox(1)).unwrap();
    assert_eq!(
        World::new(world_config(), ds, ms).err().map(message),
        Some(format!(
            "the world's epoch ({EPOCH}) and its DataStore's ({}) must be the same Unix time",
            EPOCH + 1
        ))
    );

    // The scenarios' world-level failure probabilities.
    let mut w = build(world_config()).unwrap();
    assert_eq!(
        w.set_datastore_fail(1.5).map_err(message),
        Err("world.datastore_fail must be a probability between 0 and 1, got 1.5".into())
    );
    assert_eq!(
        w.set_messaging_fail(f64::NAN).map_err(message),
        Err("world.messaging_fail must be a probability between 0 and 1, got NaN".into())
    );
    assert_eq!(w.set_datastore_fail(1.0), Ok(()));
    assert_eq!(w.set_messaging_fail(0.0), Ok(()));
}

#[test]
fn a_fleet_is_built_only_from_a_configuration_that_passes_its_check() {
    let mut config = FleetConfig::new(1, 1, 2, 10.0, 0.0);
    config.faults = 1.5;
    let refused = Fleet::new(config, Box::new(MemoryStorage::new())).err();
    assert_eq!(
        refused,
        Some("faults must be a probability between 0 and 1, got 1.5".into())
    );
}
