//! Publishing events: typed JSON, keys, headers; delivery errors are returned, never swallowed.
//!
//! Every message gets, unless the options give them:
//! - `x-message-id`: a UUIDv7 (unique, ordered by creation time);
//! - `x-correlation-id` when published from inside a handler: the handled message's
//!   `x-correlation-id`, or its `x-message-id` when it has none — so a request and everything
//!   it causes share one id;
//! - `traceparent` (see [`trace`](crate::trace)).
//!
//! Backpressure: librdkafka's producer queue is bounded (`queue.buffering.max.messages`,
//! `queue.buffering.max.kbytes`, settable with `Config::with_producer_property`); when it is
//! full, `publish` waits (up to 30 s) for room instead of growing memory, then fails with
//! `QueueFull`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;

use crate::client_context::TracingContext;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::names::header::{CORRELATION_ID, MESSAGE_ID};

/// Publishes events through the runtime's one idempotent producer. Cheap to clone.
///
/// ```no_run
/// # #[derive(serde::Serialize)] struct OrderCreated { id: String }
/// # async fn example(runtime: &kafka_events::Runtime) -> Result<(), kafka_events::PublishError> {
/// use kafka_events::PublishOptions;
///
/// let publisher = runtime.publisher(); // or `ctx.publisher()` inside a handler
/// let event = OrderCreated { id: "ord-1".into() };
/// let delivery = publisher
///     .publish_with("orders.created", &event, PublishOptions::new().key("ord-1").header("x-tenant", "acme"))
///     .await?; // returns once the broker acknowledged it
/// println!("{}[{}]@{}", delivery.topic, delivery.partition, delivery.offset);
/// # Ok(()) }
/// ```
///
/// Every message gets an `x-message-id`, the `x-correlation-id` of the handler's input when
/// published from a handler, and a `traceparent`.
///
/// Topic names are logical: the configured prefix is applied, as for handlers.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer<TracingContext>,
    /// Shared: a handler's context gets a clone of the publisher for every message.
    config: Arc<Config>,
    metrics: Arc<Metrics>,
}

/// Options of one published message.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    key: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    partition: Option<i32>,
}

impl PublishOptions {
    /// No key, no headers, partition chosen by the partitioner.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the key (messages with one key go to one partition, in order).
    pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.key = Some(key.as_ref().to_vec());
        self
    }
    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }
    /// Sends to this partition instead of the partitioner's choice.
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
}

/// Where a message was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic (prefix applied).
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// A message could not be published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The event could not be serialized to JSON.
    #[error("could not encode the event as JSON: {0}")]
    Encode(#[from] serde_json::Error),
    /// The broker did not acknowledge the message.
    #[error("delivery to `{topic}` failed: {source}")]
    Delivery {
        /// The topic.
        topic: String,
        /// The producer's error.
        #[source]
        source: KafkaError,
    },
}

impl Publisher {
    pub(crate) fn new(producer: FutureProducer<TracingContext>, config: Config, metrics: Arc<Metrics>) -> Self {
        Self { producer, config: Arc::new(config), metrics }
    }

    /// Publishes `event` as JSON to `topic` and waits for the broker's acknowledgement.
    pub async fn publish<T: Serialize + ?Sized>(&self, topic: &str, event: &T) -> Result<Delivery, PublishError> {
        self.publish_with(topic, event, PublishOptions::new()).await
    }

    /// Like [`publish`](Self::publish), with a key, headers or a partition.
    pub async fn publish_with<T: Serialize + ?Sized>(
        &self,
        topic: &str,
        event: &T,
        options: PublishOptions,
    ) -> Result<Delivery, PublishError> {
        let payload = serde_json::to_vec(event)?;
        self.publish_bytes(topic, &payload, options).await
    }

    /// Publishes raw bytes (not necessarily JSON) to `topic`.
    pub async fn publish_bytes(
        &self,
        topic: &str,
        payload: &[u8],
        options: PublishOptions,
    ) -> Result<Delivery, PublishError> {
        let created = Instant::now();
        let topic = self.config.topic_name(topic);
        let mut headers = OwnedHeaders::new_with_capacity(options.headers.len() + 1);
        for (name, value) in &options.headers {
            headers = headers.insert(Header { key: name, value: Some(value) });
        }
        let given = |header: &str| options.headers.iter().any(|(name, _)| name == header);
        if !given(MESSAGE_ID) {
            let id = uuid::Uuid::now_v7().to_string();
            headers = headers.insert(Header { key: MESSAGE_ID, value: Some(&id) });
        }
        if !given(CORRELATION_ID) {
            if let Some(correlation) = crate::trace::correlation() {
                headers = headers.insert(Header { key: CORRELATION_ID, value: Some(&correlation) });
            }
        }
        if !given(crate::trace::TRACEPARENT) {
            // Inside a handler: the handler's span is the parent; elsewhere a new trace starts.
            let parent = crate::trace::current().unwrap_or_else(crate::trace::TraceContext::new_root);
            headers = headers.insert(Header { key: crate::trace::TRACEPARENT, value: Some(&parent.traceparent()) });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).payload(payload).headers(headers);
        if let Some(key) = &options.key {
            record = record.key(key);
        }
        if let Some(partition) = options.partition {
            record = record.partition(partition);
        }
        let sent = self.producer.send(record, Duration::from_secs(30)).await;
        self.metrics.published(&topic, created.elapsed(), sent.is_ok());
        match sent {
            Ok(delivery) => Ok(Delivery { topic, partition: delivery.partition, offset: delivery.offset }),
            Err((source, _)) => Err(PublishError::Delivery { topic, source }),
        }
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}
