//! A simulated Roblox `MessagingService` on the virtual clock (spec "MessagingService"): topics,
//! `SubscribeAsync` / `Disconnect` per server, `PublishAsync` to every server subscribed to the
//! topic, delivery after a delay (best effort, typically 1–2 s), seeded loss, and the size limit:
//! the JSON-encoded payload must fit in 1 kB (1,024 bytes) and the topic name in 80 bytes of
//! UTF-8 (Roblox documents 80 characters; ProfileStore's topics are ASCII).
//!
//! Deliveries are decided at publish time, one per subscription then active (so a server's own
//! subscription hears its own publishes, as on Roblox): each draws a loss roll and a delay from a
//! seeded SplitMix64 generator on a stream of its own, in subscription order. A delivery whose
//! subscription was disconnected before it arrives is dropped.
//! [`MessagingService::poll_delivery`] hands them out in `(arrival time, publish order)` order,
//! so same seed and same calls give the same run.
//!
//! Rate limits ([`MessagingLimits`]): messages sent per server, received per topic and per game,
//! subscriptions and subscribe requests per server.

mod limits;

pub use limits::{MessagingLimits, Scaled};

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use rustc_hash::FxHashMap;

use profilestore_core::guid::GuidGenerator;
use profilestore_core::value::{MAX_DEPTH, Value};

use crate::config::{ConfigError, amount, probability, time_range};
use crate::datastore::ServerId;

/// Mixed into the seed of the loss and delay generator ("MESSAGES"): a world and a DataStore
/// given the same seed (as a fleet gives them) draw from other streams.
const MESSAGING_STREAM: u64 = 0x4D45_5353_4147_4553;

/// One `SubscribeAsync` connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SubscriptionId(pub u64);

/// The behaviour of a [`MessagingService`].
#[derive(Clone, Debug, PartialEq)]
pub struct MessagingConfig {
    /// Seed of the loss and delay generator.
    pub seed: u64,
    /// Shortest delivery delay, virtual seconds.
    pub min_delay: f64,
    /// Longest delivery delay, virtual seconds.
    pub max_delay: f64,
    /// Probability that one delivery is lost.
    pub loss: f64,
    /// Largest JSON-encoded payload in bytes (1,024); `None` turns the limit off.
    pub max_message_bytes: Option<usize>,
    /// Longest topic name in bytes (80); `None` turns the limit off.
    pub max_topic_len: Option<usize>,
    /// Rate limits.
    pub limits: MessagingLimits,
}

impl MessagingConfig {
    /// Roblox's typical behaviour: 1–2 s delays, no loss, the 1 kB payload and 80-byte topic
    /// limits.
    pub fn roblox(seed: u64) -> MessagingConfig {
        MessagingConfig {
            seed,
            min_delay: 1.0,
            max_delay: 2.0,
            loss: 0.0,
            max_message_bytes: Some(1024),
            max_topic_len: Some(80),
            limits: MessagingLimits::roblox(),
        }
    }

    /// The same with a fixed delay.
    pub fn with_delay(mut self, delay: f64) -> MessagingConfig {
        self.min_delay = delay;
        self.max_delay = delay;
        self
    }

    /// The same with a loss probability.
    pub fn with_loss(mut self, loss: f64) -> MessagingConfig {
        self.loss = loss;
        self
    }

    /// Refuses delays that are negative, not finite or reversed, a loss that is not a
    /// probability, and limits that are negative or not finite.
    pub fn check(&self) -> Result<(), ConfigError> {
        time_range(
            ("messaging.min_delay", self.min_delay),
            ("messaging.max_delay", self.max_delay),
        )?;
        probability("messaging.loss", self.loss)?;
        let l = &self.limits;
        let scaled = [
            ("sent_per_server", l.sent_per_server),
            ("received_per_topic", l.received_per_topic),
            ("received_per_game", l.received_per_game),
            ("subscriptions_per_server", l.subscriptions_per_server),
        ];
        for (name, limit) in scaled {
            if let Some(Scaled { base, per }) = limit {
                amount(&format!("messaging.limits.{name}.base"), base)?;
                amount(&format!("messaging.limits.{name}.per"), per)?;
            }
        }
        if let Some(rate) = l.subscribe_requests_per_server {
            amount("messaging.limits.subscribe_requests_per_server", rate)?;
        }
        Ok(())
    }
}

/// A message arriving at a subscription (`SubscribeAsync`'s callback argument).
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// The subscription it arrives at.
    pub subscription: SubscriptionId,
    /// The server holding that subscription.
    pub server: ServerId,
    /// Topic.
    pub topic: String,
    /// `message.Data`.
    pub data: Value,
    /// When it was published (virtual seconds; `message.Sent` is the wall time of this).
    pub sent: f64,
    /// When it arrives.
    pub delivered_at: f64,
    /// The server that published it.
    pub from: ServerId,
}

/// What a publish did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// Deliveries scheduled.
    pub scheduled: usize,
    /// Deliveries lost to the loss probability.
    pub lost: usize,
}

/// A refused MessagingService call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessagingError {
    /// The payload's JSON encoding is larger than allowed.
    #[error(
        "PublishAsync: message of {size} bytes exceeds the {limit}-byte limit on topic {topic:?}."
    )]
    MessageTooLarge {
        /// Topic.
        topic: String,
        /// Encoded size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The payload nests deeper than [`MAX_DEPTH`] levels (it would also be over 1 kB).
    #[error("PublishAsync: message nests deeper than {limit} levels on topic {topic:?}.")]
    MessageTooDeep {
        /// Topic.
        topic: String,
        /// The limit.
        limit: usize,
    },
    /// An empty topic name.
    #[error("MessagingService: topic name can't be empty.")]
    TopicEmpty,
    /// A topic name longer than allowed.
    #[error("MessagingService: topic name of {length} bytes exceeds the {limit}-byte limit.")]
    TopicTooLong {
        /// Its length in bytes.
        length: usize,
        /// The limit.
        limit: usize,
    },
    /// The server published as many messages as it may this minute.
    #[error("PublishAsync: the server's limit of {limit} messages a minute is used up.")]
    PublishLimit {
        /// Messages a minute.
        limit: u64,
    },
    /// The server holds as many subscriptions as it may.
    #[error("SubscribeAsync: the server's limit of {limit} subscriptions is reached.")]
    SubscriptionLimit {
        /// Subscriptions.
        limit: u64,
    },
    /// The server made as many subscribe requests as it may this minute.
    #[error(
        "SubscribeAsync: the server's limit of {limit} subscribe requests a minute is used up."
    )]
    SubscribeRequestLimit {
        /// Requests a minute.
        limit: u64,
    },
    /// Disconnecting a subscription that does not exist (any more).
    #[error("MessagingService: subscription {0:?} is not connected.")]
    UnknownSubscription(SubscriptionId),
}

#[derive(Clone, Debug)]
struct Subscription {
    server: ServerId,
    topic: String,
}

/// The MessagingService of one experience.
#[derive(Clone, Debug)]
pub struct MessagingService {
    config: MessagingConfig,
    rng: GuidGenerator,
    next_subscription: u64,
    next_sequence: u64,
    subscriptions: BTreeMap<SubscriptionId, Subscription>,
    /// The live subscriptions of each topic, in subscription order (a publish finds its
    /// subscribers without looking at every other topic's; only ever looked up, never iterated).
    by_topic: FxHashMap<String, Vec<SubscriptionId>>,
    /// Pending deliveries with their publish sequence number.
    in_flight: BinaryHeap<InFlight>,
    rates: limits::RateBook,
    over_receive_limit: u64,
}

impl MessagingService {
    /// Changes the loss probability from now on, or says why not (nothing changes then).
    pub fn set_loss(&mut self, loss: f64) -> Result<(), ConfigError> {
        probability("messaging.loss", loss)?;
        self.config.loss = loss;
        Ok(())
    }

    /// An empty service, or why `config` cannot be used ([`MessagingConfig::check`]).
    pub fn new(config: MessagingConfig) -> Result<MessagingService, ConfigError> {
        config.check()?;
        Ok(MessagingService {
            rng: GuidGenerator::new(config.seed ^ MESSAGING_STREAM),
            config,
            next_subscription: 1,
            next_sequence: 0,
            subscriptions: BTreeMap::new(),
            by_topic: FxHashMap::default(),
            in_flight: BinaryHeap::new(),
            rates: limits::RateBook::default(),
            over_receive_limit: 0,
        })
    }

    /// Sets how many players `server` has (its send and subscription limits grow with it).
    pub fn set_players(&mut self, server: ServerId, players: u32) {
        self.rates.set_players(server, players);
    }

    /// Deliveries dropped so far because a topic or the game received its limit.
    pub fn over_receive_limit(&self) -> u64 {
        self.over_receive_limit
    }

    fn check_topic(&self, topic: &str) -> Result<(), MessagingError> {
        if topic.is_empty() {
            return Err(MessagingError::TopicEmpty);
        }
        // Counted in bytes of UTF-8, as Luau's `string.len` counts, like the DataStore's limits
        // (`crate::datastore::limits`); Roblox documents 80 "characters".
        let length = topic.len();
        match self.config.max_topic_len {
            Some(limit) if length > limit => Err(MessagingError::TopicTooLong { length, limit }),
            _ => Ok(()),
        }
    }

    /// `SubscribeAsync(topic, callback)` on `server` at `now`.
    pub fn subscribe(
        &mut self,
        now: f64,
        server: ServerId,
        topic: &str,
    ) -> Result<SubscriptionId, MessagingError> {
        self.check_topic(topic)?;
        self.rates
            .subscribe(&self.config.limits, server, now)
            .map_err(|refusal| match refusal {
                limits::Refusal::Subscriptions(limit) => MessagingError::SubscriptionLimit {
                    limit: allowed(limit),
                },
                limits::Refusal::SubscribeRequests(limit) => {
                    MessagingError::SubscribeRequestLimit {
                        limit: allowed(limit),
                    }
                }
            })?;
        let id = SubscriptionId(self.next_subscription);
        self.next_subscription += 1;
        self.subscriptions.insert(
            id,
            Subscription {
                server,
                topic: topic.to_string(),
            },
        );
        // Ids only grow: pushing keeps each topic's list in subscription order.
        match self.by_topic.get_mut(topic) {
            Some(ids) => ids.push(id),
            None => {
                self.by_topic.insert(topic.to_string(), vec![id]);
            }
        }
        Ok(id)
    }

    /// Takes `subscription` out of its topic's index.
    fn unindex(&mut self, subscription: SubscriptionId, topic: &str) {
        if let Some(ids) = self.by_topic.get_mut(topic) {
            ids.retain(|id| *id != subscription);
            if ids.is_empty() {
                self.by_topic.remove(topic);
            }
        }
    }

    /// `connection:Disconnect()`: messages not yet delivered to it are dropped.
    pub fn unsubscribe(&mut self, subscription: SubscriptionId) -> Result<(), MessagingError> {
        let removed = self
            .subscriptions
            .remove(&subscription)
            .ok_or(MessagingError::UnknownSubscription(subscription))?;
        self.unindex(subscription, &removed.topic);
        self.rates.unsubscribed(removed.server);
        Ok(())
    }

    /// Counts `server` among the game's running servers, on which the receive limits grow
    /// ("(40 + 80 × servers)" a minute per topic, spec "MessagingService"), whether or not it
    /// has players or uses messaging.
    pub fn add_server(&mut self, server: ServerId) {
        self.rates.add_server(server);
    }

    /// Drops every subscription of a server (it shut down or crashed).
    pub fn remove_server(&mut self, server: ServerId) {
        let gone: Vec<(SubscriptionId, String)> = self
            .subscriptions
            .iter()
            .filter(|(_, s)| s.server == server)
            .map(|(id, s)| (*id, s.topic.clone()))
            .collect();
        for (id, topic) in gone {
            self.subscriptions.remove(&id);
            self.unindex(id, &topic);
        }
        self.rates.remove_server(server);
    }

    /// The live subscriptions to `topic`, in subscription order.
    pub fn subscribers(&self, topic: &str) -> Vec<(SubscriptionId, ServerId)> {
        self.by_topic.get(topic).map_or_else(Vec::new, |ids| {
            ids.iter()
                .filter_map(|id| self.subscriptions.get(id).map(|s| (*id, s.server)))
                .collect()
        })
    }

    /// `PublishAsync(topic, data)` from `server` at `now`.
    pub fn publish(
        &mut self,
        now: f64,
        server: ServerId,
        topic: &str,
        data: &Value,
    ) -> Result<Published, MessagingError> {
        self.check_topic(topic)?;
        if data.nested_deeper_than(MAX_DEPTH) {
            return Err(MessagingError::MessageTooDeep {
                topic: topic.to_string(),
                limit: MAX_DEPTH,
            });
        }
        let size = data.json_len();
        if let Some(limit) = self.config.max_message_bytes
            && size > limit
        {
            return Err(MessagingError::MessageTooLarge {
                topic: topic.to_string(),
                size,
                limit,
            });
        }
        self.rates
            .publish(&self.config.limits, server, now)
            .map_err(|limit| MessagingError::PublishLimit {
                limit: allowed(limit),
            })?;
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let mut published = Published {
            scheduled: 0,
            lost: 0,
        };
        for (subscription, to) in self.subscribers(topic) {
            let lost = self.rng.next_f64() < self.config.loss;
            let spread = (self.config.max_delay - self.config.min_delay).max(0.0);
            let delay = self.config.min_delay + spread * self.rng.next_f64();
            if lost {
                published.lost += 1;
                continue;
            }
            published.scheduled += 1;
            let message = Message {
                subscription,
                server: to,
                topic: topic.to_string(),
                data: data.clone(),
                sent: now,
                delivered_at: now + delay,
                from: server,
            };
            self.in_flight.push(InFlight { sequence, message });
        }
        Ok(published)
    }

    /// When the next delivery arrives, if any is pending.
    pub fn next_delivery(&self) -> Option<f64> {
        self.in_flight.peek().map(|f| f.message.delivered_at)
    }

    /// The next message that has arrived by `now` (earliest first, then in publish order), if
    /// its subscription is still connected; call until `None`.
    pub fn poll_delivery(&mut self, now: f64) -> Option<Message> {
        while self
            .in_flight
            .peek()
            .is_some_and(|f| f.message.delivered_at <= now)
        {
            let message = self.in_flight.pop()?.message;
            if !self.subscriptions.contains_key(&message.subscription) {
                continue;
            }
            if self
                .rates
                .receive(&self.config.limits, &message.topic, message.delivered_at)
            {
                return Some(message);
            }
            self.over_receive_limit += 1;
        }
        None
    }
}

/// A pending delivery, ordered for [`BinaryHeap`] (which pops its greatest element) so that the
/// earliest arrival pops first, then the earliest publish, then the earliest subscription.
#[derive(Clone, Debug)]
struct InFlight {
    sequence: u64,
    message: Message,
}

impl InFlight {
    fn order(&self, other: &Self) -> Ordering {
        let (a, b) = (&self.message, &other.message);
        a.delivered_at
            .total_cmp(&b.delivered_at)
            .then(self.sequence.cmp(&other.sequence))
            .then(a.subscription.cmp(&b.subscription))
    }
}

impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        other.order(self)
    }
}

impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.order(other) == Ordering::Equal
    }
}

impl Eq for InFlight {}

/// How many events a minute a limit lets through: those counted while fewer than `limit`
/// happened (a fractional limit allows its ceiling), as a refusal names it.
fn allowed(limit: f64) -> u64 {
    limit.ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use profilestore_core::value::json;

    const A: ServerId = ServerId(1);
    const B: ServerId = ServerId(2);

    /// The topic index follows every subscribe, disconnect and server removal, and lists a
    /// topic's subscribers in subscription order.
    #[test]
    fn subscribers_follow_subscribes_disconnects_and_dead_servers() {
        let mut ms = MessagingService::new(MessagingConfig::roblox(1)).unwrap();
        let a1 = ms.subscribe(0.0, A, "T").unwrap();
        let b1 = ms.subscribe(0.0, B, "T").unwrap();
        let b2 = ms.subscribe(0.0, B, "U").unwrap();
        let a2 = ms.subscribe(0.0, A, "T").unwrap();
        assert_eq!(ms.subscribers("T"), vec![(a1, A), (b1, B), (a2, A)]);
        assert_eq!(ms.subscribers("U"), vec![(b2, B)]);
        assert_eq!(ms.subscribers("none"), vec![]);
        ms.unsubscribe(a1).unwrap();
        assert_eq!(
            ms.unsubscribe(a1),
            Err(MessagingError::UnknownSubscription(a1))
        );
        assert_eq!(ms.subscribers("T"), vec![(b1, B), (a2, A)]);
        ms.remove_server(B);
        assert_eq!(ms.subscribers("T"), vec![(a2, A)]);
        assert_eq!(ms.subscribers("U"), vec![]);
        let b3 = ms.subscribe(0.0, B, "U").unwrap();
        assert_eq!(ms.subscribers("U"), vec![(b3, B)]);
    }

    /// A fractional limit (a library user's: Roblox's are whole) lets through the events
    /// counted below it, and a refusal names that count: 21 subscriptions under 20.5 (the error
    /// used to say 20).
    #[test]
    fn a_refusal_names_the_count_a_fractional_limit_allows() {
        let mut config = MessagingConfig::roblox(1);
        config.limits.subscriptions_per_server = Some(Scaled {
            base: 20.5,
            per: 0.0,
        });
        let mut ms = MessagingService::new(config).unwrap();
        for _ in 0..21 {
            ms.subscribe(0.0, A, "T").unwrap();
        }
        assert_eq!(
            ms.subscribe(0.0, A, "T").unwrap_err(),
            MessagingError::SubscriptionLimit { limit: 21 }
        );
    }

    /// The rate limits reach the calls: a publish or a subscribe over its limit is refused with
    /// an error naming it; a delivery over a receive limit is dropped and counted.
    #[test]
    fn rate_limits_refuse_calls_and_drop_deliveries() {
        let mut ms = MessagingService::new(MessagingConfig::roblox(1).with_delay(1.0)).unwrap();
        for _ in 0..20 {
            ms.subscribe(0.0, A, "T").unwrap();
        }
        let err = ms.subscribe(0.0, A, "T").unwrap_err();
        assert_eq!(err, MessagingError::SubscriptionLimit { limit: 20 });
        assert_eq!(
            err.to_string(),
            "SubscribeAsync: the server's limit of 20 subscriptions is reached."
        );
        // One server, no players: 600 publishes a minute; the topic receives 40 + 80 = 120 a
        // minute: each of these reaches A's 20 subscriptions.
        for i in 0..600 {
            ms.publish(f64::from(i) * 0.01, A, "T", &json!(i)).unwrap();
        }
        let err = ms.publish(6.0, A, "T", &json!(0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "PublishAsync: the server's limit of 600 messages a minute is used up."
        );
        let mut delivered = 0;
        while ms.poll_delivery(100.0).is_some() {
            delivered += 1;
        }
        assert_eq!(delivered, 120);
        assert_eq!(ms.over_receive_limit(), 600 * 20 - 120);
    }

    #[test]
    fn publish_reaches_every_subscribed_server_after_the_delay() {
        let mut ms = MessagingService::new(MessagingConfig::roblox(1).with_delay(1.5)).unwrap();
        let sa = ms.subscribe(0.0, A, "PS_X").unwrap();
        let sb = ms.subscribe(0.0, B, "PS_X").unwrap();
        ms.subscribe(0.0, B, "other").unwrap();
        let p = ms
            .publish(10.0, B, "PS_X", &json!({"LoadCount": 3}))
            .unwrap();
        assert_eq!(
            p,
            Published {
                scheduled: 2,
                lost: 0
            }
        );
        assert_eq!(ms.next_delivery(), Some(11.5));
        assert_eq!(ms.poll_delivery(11.49), None);
        let first = ms.poll_delivery(11.5).unwrap();
        assert_eq!(
            first,
            Message {
                subscription: sa,
                server: A,
                topic: "PS_X".into(),
                data: json!({"LoadCount": 3}),
                sent: 10.0,
                delivered_at: 11.5,
                from: B
            }
        );
        assert_eq!(ms.poll_delivery(11.5).unwrap().subscription, sb);
        assert_eq!(ms.poll_delivery(100.0), None);
    }

    #[test]
    fn one_kilobyte_limit_on_the_encoded_payload() {
        let mut ms = MessagingService::new(MessagingConfig::roblox(1)).unwrap();
        // A string of n characters encodes to n + 2 bytes.
        assert!(ms.publish(0.0, A, "t", &json!("x".repeat(1022))).is_ok());
        let err = ms
            .publish(0.0, A, "t", &json!("x".repeat(1023)))
            .unwrap_err();
        assert_eq!(
            err,
            MessagingError::MessageTooLarge {
                topic: "t".into(),
                size: 1025,
                limit: 1024
            }
        );
        assert_eq!(
            err.to_string(),
            "PublishAsync: message of 1025 bytes exceeds the 1024-byte limit on topic \"t\"."
        );
        // A scaled limit is the one named.
        let doubled = MessagingConfig {
            max_message_bytes: Some(2048),
            ..MessagingConfig::roblox(1)
        };
        assert_eq!(
            MessagingService::new(doubled)
                .unwrap()
                .publish(0.0, A, "t", &json!("x".repeat(3000)))
                .unwrap_err()
                .to_string(),
            "PublishAsync: message of 3002 bytes exceeds the 2048-byte limit on topic \"t\"."
        );
        let unlimited = MessagingConfig {
            max_message_bytes: None,
            ..MessagingConfig::roblox(1)
        };
        assert!(
            MessagingService::new(unlimited.clone())
                .unwrap()
                .publish(0.0, A, "t", &json!("x".repeat(5000)))
                .is_ok()
        );
        // A payload nested deeper than a value may be is refused as such, with or without the
        // size limit, before anything measures it level by level.
        let mut deep = json!(1);
        for _ in 0..=profilestore_core::value::MAX_DEPTH {
            deep = Value::from(vec![deep]);
        }
        let too_deep = MessagingError::MessageTooDeep {
            topic: "t".into(),
            limit: 512,
        };
        assert_eq!(ms.publish(0.0, A, "t", &deep), Err(too_deep.clone()));
        assert_eq!(
            too_deep.to_string(),
            "PublishAsync: message nests deeper than 512 levels on topic \"t\"."
        );
        assert_eq!(
            MessagingService::new(unlimited)
                .unwrap()
                .publish(0.0, A, "t", &deep),
            Err(too_deep)
        );
        assert_eq!(ms.subscribe(0.0, A, ""), Err(MessagingError::TopicEmpty));
        assert_eq!(
            ms.subscribe(0.0, A, &"t".repeat(81)),
            Err(MessagingError::TopicTooLong {
                length: 81,
                limit: 80
            })
        );
        // Bytes, as `string.len` counts them: 40 two-byte characters pass, 41 do not.
        assert!(ms.subscribe(0.0, A, &"é".repeat(40)).is_ok());
        let long = ms.subscribe(0.0, A, &"é".repeat(41)).unwrap_err();
        assert_eq!(
            long.to_string(),
            "MessagingService: topic name of 82 bytes exceeds the 80-byte limit."
        );
    }

    #[test]
    fn disconnected_subscriptions_get_nothing_more() {
        let mut ms = MessagingService::new(MessagingConfig::roblox(1).with_delay(1.0)).unwrap();
        let sa = ms.subscribe(0.0, A, "t").unwrap();
        ms.publish(0.0, B, "t", &json!(1)).unwrap();
        ms.unsubscribe(sa).unwrap();
        assert_eq!(ms.poll_delivery(5.0), None);
        assert_eq!(
            ms.unsubscribe(sa),
            Err(MessagingError::UnknownSubscription(sa))
        );
        ms.subscribe(0.0, B, "t").unwrap();
        ms.remove_server(B);
        assert_eq!(
            ms.publish(6.0, A, "t", &json!(2)).unwrap(),
            Published {
                scheduled: 0,
                lost: 0
            }
        );
    }

    #[test]
    fn loss_and_delay_are_seeded() {
        let run = |seed: u64| {
            let mut ms =
                MessagingService::new(MessagingConfig::roblox(seed).with_loss(0.3)).unwrap();
            ms.subscribe(0.0, A, "t").unwrap();
            ms.subscribe(0.0, B, "t").unwrap();
            let mut lost = 0;
            for i in 0..100 {
                lost += ms.publish(f64::from(i), A, "t", &json!(i)).unwrap().lost;
            }
            let mut arrivals = Vec::new();
            while let Some(m) = ms.poll_delivery(1000.0) {
                assert!((1.0..=2.0).contains(&(m.delivered_at - m.sent)));
                arrivals.push((m.data, m.server, m.delivered_at));
            }
            (lost, arrivals)
        };
        let (lost, arrivals) = run(9);
        assert_eq!((lost, arrivals.clone()), run(9));
        assert_eq!(lost + arrivals.len(), 200);
        // About 30% of 200 deliveries: seed 9 loses these.
        assert_eq!(lost, 62);
        assert!(
            arrivals.windows(2).all(|w| w[0].2 <= w[1].2),
            "delivered in arrival order"
        );
        assert_ne!(run(10).1, arrivals);
    }

    /// The loss probability's ends, and what loss leaves alone: each copy draws its delay and
    /// its loss whether or not it is lost, so the copies that do arrive arrive at the times they
    /// would with no loss.
    #[test]
    fn loss_removes_copies_and_moves_nothing_else() {
        let run = |loss: f64| {
            let mut ms = MessagingService::new(MessagingConfig::roblox(9).with_loss(loss)).unwrap();
            ms.subscribe(0.0, A, "t").unwrap();
            ms.subscribe(0.0, B, "t").unwrap();
            let lost: usize = (0..100)
                .map(|i| ms.publish(f64::from(i), A, "t", &json!(i)).unwrap().lost)
                .sum();
            let mut arrivals = Vec::new();
            while let Some(m) = ms.poll_delivery(1000.0) {
                arrivals.push((m.data, m.server, m.delivered_at));
            }
            (lost, arrivals)
        };
        let (none_lost, all) = run(0.0);
        assert_eq!((none_lost, all.len()), (0, 200));
        assert_eq!(run(1.0), (200, vec![]));
        let (lost, some) = run(0.3);
        assert_eq!(lost + some.len(), 200);
        assert!(
            some.iter().all(|copy| all.contains(copy)),
            "a copy that arrives arrives as it would with no loss"
        );
    }
}
