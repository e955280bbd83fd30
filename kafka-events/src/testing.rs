//! Testing your handlers (feature `testing`).
//!
//! **Unit tests** call a handler directly with a context built by [`context`]:
//!
//! ```
//! # use kafka_events::prelude::*;
//! # #[derive(serde::Deserialize, validator::Validate)] struct OrderCreated { id: String }
//! # async fn on_order(event: OrderCreated, ctx: MessageContext) -> Result<(), HandlerError> {
//! #     if ctx.attempt() > 1 { Ok(()) } else { Err(HandlerError::retryable("first try")) }
//! # }
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use kafka_events::testing;
//!
//! let ctx = testing::context("orders.created").key("ord-1").header("x-correlation-id", "c-1").attempt(2).build();
//! on_order(OrderCreated { id: "ord-1".into() }, ctx).await.unwrap();
//! # }
//! ```
//!
//! **Integration tests** run chosen handlers on the embedded broker with a [`Harness`]: publish
//! an event, then await its [`Outcome`] — no sleeps, no polling loops in the test:
//!
//! ```no_run
//! # use kafka_events::prelude::*;
//! # #[derive(serde::Serialize)] struct OrderCreated { id: String, amount: f64 }
//! # #[tokio::main] async fn main() -> Result<(), kafka_events::Error> {
//! use kafka_events::testing::{Harness, Outcome};
//!
//! let harness = Harness::start(["on_order"]).await?;
//! let sent = harness.publish("orders.created", &OrderCreated { id: "ord-1".into(), amount: 5.0 }).await;
//! assert_eq!(harness.outcome(&sent).await, Outcome::Handled { attempts: 1 });
//! harness.shutdown().await
//! # }
//! ```
//!
//! A harness runs only the handlers it names (by fn name or `module::path::fn`), under a topic
//! prefix and service name of its own, so tests in one binary run in parallel without seeing each
//! other's messages. Each harness starts its own embedded broker in-process (or uses
//! `KAFKA_BROKERS` when that is set — Apache Kafka 4.0 or later, or use
//! [`Harness::start_with`] and your own config) and joins its groups with the `consumer` group
//! protocol, which has no initial rebalance delay: the four tests of the repository's `tests/harness.rs`
//! take about a second together on the embedded broker, 3–4 s on Apache Kafka.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use crate::handler::{BatchContext, MessageContext};
use crate::message::Origin;
use crate::observe::Observer;
pub use crate::observe::Outcome;
use crate::publisher::{Delivery, PublishOptions, Publisher};
use crate::runtime::Runtime;
use crate::sync::lock;
use crate::{Config, Error};

/// Builds a [`MessageContext`] for calling a handler directly: [`context`]`("orders").key("k").build()`.
#[derive(Debug)]
pub struct ContextBuilder {
    context: MessageContext,
}

/// A context of a message of `topic`: partition 0, offset 0, attempt 1, no key, no headers, a
/// new trace, no publisher (give one with [`ContextBuilder::publisher`]).
pub fn context(topic: &str) -> ContextBuilder {
    ContextBuilder {
        context: MessageContext {
            topic: topic.into(),
            partition: 0,
            offset: 0,
            timestamp: None,
            key: None,
            headers: Default::default(),
            attempt: 1,
            trace: crate::trace::TraceContext::new_root(),
            claim: Default::default(),
            publisher: None,
        },
    }
}

impl ContextBuilder {
    /// The partition.
    pub fn partition(mut self, partition: i32) -> Self {
        self.context.partition = partition;
        self
    }
    /// The offset.
    pub fn offset(mut self, offset: i64) -> Self {
        self.context.offset = offset;
        self
    }
    /// The key.
    pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.context.key = Some(key.as_ref().into());
        self
    }
    /// A header (call again for more; a name given twice reads as its last value).
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.context.headers = self.context.headers.iter().chain([(name, Some(value.as_ref()))]).collect();
        self
    }
    /// The attempt (1 is the first; a retried message has 2 and up).
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.context.attempt = attempt;
        self
    }
    /// The message's timestamp, in milliseconds since the epoch.
    pub fn timestamp(mut self, millis: i64) -> Self {
        self.context.timestamp = Some(millis);
        self
    }
    /// The publisher `ctx.publisher()` returns (e.g. [`Harness::publisher`]).
    pub fn publisher(mut self, publisher: Publisher) -> Self {
        self.context.publisher = Some(publisher);
        self
    }
    /// The context.
    pub fn build(self) -> MessageContext {
        self.context
    }
}

/// A [`BatchContext`] of `messages` (built with [`context`]), consumed from `topic`'s
/// `partition`, on attempt 1.
pub fn batch_context(topic: &str, partition: i32, messages: Vec<MessageContext>) -> BatchContext {
    BatchContext { topic: topic.to_string(), partition, messages, attempt: 1, claim: Default::default() }
}

/// Outcomes reported so far, by where each message was produced.
#[derive(Default)]
struct Outcomes {
    seen: Mutex<HashMap<Origin, Outcome>>,
    changed: Notify,
}

/// Runs chosen handlers on the embedded broker (or `KAFKA_BROKERS`, when set) and reports how
/// each message it publishes ends. See the [module docs](self).
pub struct Harness {
    runtime: Runtime,
    outcomes: Arc<Outcomes>,
    timeout: Duration,
}

impl Harness {
    /// Runs `handlers` (fn names or `module::path::fn`) with the development defaults, fast retries
    /// kept as each handler declares them.
    pub async fn start<S: Into<String>>(handlers: impl IntoIterator<Item = S>) -> Result<Self, Error> {
        let run = format!("test-{}", unique_letters());
        let mut config = Config::from_vars([("SERVICE_NAME", run.clone())])
            .with_topic_prefix(format!("{run}."))
            .with_handlers(handlers)
            .with_commit_interval(Duration::from_millis(100))
            .with_group_protocol(crate::config::GroupProtocol::Consumer)
            // A test waits for each hop through a retry topic: fetch as soon as data is there.
            .with_consumer_property("fetch.wait.max.ms", "10");
        if let Ok(brokers) = std::env::var("KAFKA_BROKERS") {
            config = config.with_brokers(brokers);
        }
        Self::start_with(config).await
    }

    /// Runs the handlers `config` selects ([`Config::with_handlers`]) with `config`.
    pub async fn start_with(mut config: Config) -> Result<Self, Error> {
        let outcomes = Arc::new(Outcomes::default());
        let reported = outcomes.clone();
        let observer: Observer = Arc::new(move |at, outcome| {
            lock(&reported.seen).insert(at, outcome);
            reported.changed.notify_waiters();
        });
        config.observer = Some(observer);
        let runtime = crate::runtime::launch(config).await?;
        Ok(Self { runtime, outcomes, timeout: Duration::from_secs(10) })
    }

    /// How long [`outcome`](Self::outcome) waits (10 s unless set).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The runtime's publisher (topic names get the harness's prefix).
    pub fn publisher(&self) -> Publisher {
        self.runtime.publisher()
    }

    /// The running runtime (health, metrics, bootstrap servers).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Creates `topic` (the harness's prefix applied) if it is missing: a topic handlers publish
    /// to that is no handler's own (brokers with `auto.create.topics.enable=false` refuse to
    /// create it on first use).
    pub async fn create_topic(&self, topic: &str) -> Result<(), Error> {
        self.runtime.ensure_topic(topic).await
    }

    /// Publishes `event` as JSON to `topic`; panics if the broker refuses it (a test cannot go on).
    pub async fn publish<T: Serialize + ?Sized>(&self, topic: &str, event: &T) -> Delivery {
        self.publish_with(topic, event, PublishOptions::new()).await
    }

    /// [`publish`](Self::publish) with a key and headers.
    pub async fn publish_with<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        event: &T,
        options: PublishOptions,
    ) -> Delivery {
        let delivery = self.publisher().publish_with(topic, event, options).await;
        delivery.unwrap_or_else(|error| panic!("publishing to `{topic}`: {error}"))
    }

    /// Publishes raw bytes (e.g. a malformed payload) to `topic`.
    pub async fn publish_bytes(&self, topic: &str, payload: &[u8], options: PublishOptions) -> Delivery {
        let delivery = self.publisher().publish_bytes(topic, payload, options).await;
        delivery.unwrap_or_else(|error| panic!("publishing to `{topic}`: {error}"))
    }

    /// Waits until the message `sent` has its final outcome — handled (after any retries),
    /// skipped as a duplicate, dead-lettered (the dead letter acknowledged) or stalled — and
    /// returns it. Panics, naming the message, when none comes within the timeout.
    pub async fn outcome(&self, sent: &Delivery) -> Outcome {
        let at = Origin { topic: sent.topic.clone(), partition: sent.partition, offset: sent.offset };
        let waiting = async {
            loop {
                let changed = self.outcomes.changed.notified();
                if let Some(outcome) = lock(&self.outcomes.seen).get(&at) {
                    return outcome.clone();
                }
                changed.await;
            }
        };
        match tokio::time::timeout(self.timeout, waiting).await {
            Ok(outcome) => outcome,
            Err(_) => panic!(
                "no outcome within {} for the message at {}[{}]@{}: is its handler among the harness's, and is `{}` its topic?",
                humantime::format_duration(self.timeout),
                sent.topic,
                sent.partition,
                sent.offset,
                sent.topic
            ),
        }
    }

    /// The first `count` messages of `topic` (the harness's prefix applied), from its beginning:
    /// what handlers published there. Panics, naming the topic, when fewer arrive within the
    /// timeout.
    pub async fn published(&self, topic: &str, count: usize) -> Vec<Published> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::message::{Headers, Message};
        let name = self.runtime.config().topic_name(topic);
        let topic = name.clone();
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.runtime.bootstrap_servers())
            .set("group.id", format!("test-reader-{}", unique_letters()))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap_or_else(|error| panic!("a reader of `{topic}`: {error}"));
        let deadline = std::time::Instant::now() + self.timeout;
        let read = tokio::task::spawn_blocking(move || {
            // Assigned, not subscribed: a reader joins no group, so it waits for no rebalance.
            let metadata = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(5))
                .unwrap_or_else(|error| panic!("the partitions of `{topic}`: {error}"));
            let mut partitions = rdkafka::TopicPartitionList::new();
            for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                partitions
                    .add_partition_offset(&topic, partition.id(), rdkafka::Offset::Beginning)
                    .expect("a valid offset");
            }
            consumer.assign(&partitions).unwrap_or_else(|error| panic!("reading `{topic}`: {error}"));
            let mut messages = Vec::new();
            while messages.len() < count && std::time::Instant::now() < deadline {
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                    let headers = message.headers().map_or_else(Vec::new, |headers| {
                        headers
                            .iter()
                            .map(|h| {
                                (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                            })
                            .collect()
                    });
                    messages.push(Published {
                        key: message.key().map(<[u8]>::to_vec),
                        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        headers,
                    });
                }
            }
            messages
        });
        let messages = read.await.expect("the reader thread");
        assert!(messages.len() >= count, "only {} of {count} messages arrived on `{name}`", messages.len());
        messages
    }

    /// Stops the handlers (finishing what they are running) and the embedded broker.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.runtime.shutdown().await
    }
}

/// A message read back from a topic by [`Harness::published`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The key.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub payload: Vec<u8>,
    /// The headers, values as (lossy) UTF-8, in order.
    pub headers: Vec<(String, String)>,
}

impl Published {
    /// The value, decoded from JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_slice(&self.payload)
    }

    /// The last header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Letters only: the runtime refuses group ids that embed digits that look like a timestamp.
fn unique_letters() -> String {
    (0..12).map(|_| fastrand::lowercase()).collect()
}
