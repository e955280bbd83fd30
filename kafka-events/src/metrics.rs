//! Prometheus metrics of one runtime (prometheus-client), served at `/metrics` when the HTTP
//! endpoint is on and available in-process through
//! [`Runtime::metrics_text`](crate::runtime::Runtime::metrics_text).
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `kafka_events_messages_processed_total` | topic, handler | handler calls that succeeded |
//! | `kafka_events_messages_failed_total` | topic, handler, kind | attempts that failed: `decode`, `validation` (handler not called), `permanent`, `retryable`, `panic` |
//! | `kafka_events_messages_retried_total` | topic, handler | failed attempts scheduled for another try |
//! | `kafka_events_messages_dead_lettered_total` | topic, handler, kind | messages sent to the dead-letter topic, by `x-dlq-error-kind` |
//! | `kafka_events_duplicates_skipped_total` | topic, handler | events an `idempotent` handler skipped: already processed |
//! | `kafka_events_batch_size` | topic, handler | histogram of events per batch handler call |
//! | `kafka_events_handler_duration_seconds` | topic, handler | histogram of handler calls (decode/validation failures do not call it) |
//! | `kafka_events_messages_buffered` | group | messages held (polled, not yet committed past) |
//! | `kafka_events_consumer_lag` | group, topic, partition | high watermark − committed offset, every `KAFKA_EVENTS_LAG_INTERVAL` |
//! | `kafka_events_circuit_state` | topic, handler | 0 closed, 1 half-open, 2 open |
//! | `kafka_events_circuit_opened_total` | topic, handler | times the circuit opened |
//! | `kafka_events_rebalances_total` | group, kind | partitions `assigned` / `revoked` events |
//! | `kafka_events_commits_total`, `kafka_events_commit_failures_total` | group | offset commits |
//! | `kafka_events_delivery_failures_total` | topic | retry or dead-letter publishes the broker refused (each is retried) |
//! | `kafka_events_messages_consumed_total` | topic, partition | messages read whose outcome is durable (handled, skipped as a duplicate, sent to the retry topic or the DLQ): throughput per partition |
//! | `kafka_events_partition_stalled` | topic, partition, kind | 1 while the partition is held at a failing message (see `Health::stalled`); absent otherwise |
//! | `kafka_events_messages_published_total` | topic | messages a `Publisher` (yours, or `ctx.publisher()`) published and the broker acknowledged |
//! | `kafka_events_publish_failures_total` | topic | producer sends that failed (refused, timed out, queue full): a `Publisher`'s, and the runtime's own retry and dead-letter records (those also in `delivery_failures`) |
//! | `kafka_events_publish_latency_seconds` | topic | histogram: from the `publish` call (the event's creation) to the broker's acknowledgement |
//!
//! `topic` is the handler's topic (also for messages read from its retry topic) in the handler
//! metrics; the topic read (a retry topic counts apart) in `messages_consumed` and
//! `partition_stalled`; the topic written (prefix applied) in the publish metrics.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::health::Health;
use crate::sync::lock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabels {
    topic: String,
    handler: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    topic: String,
    handler: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RebalanceLabels {
    group: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    group: String,
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicPartitionLabels {
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StalledLabels {
    topic: String,
    partition: i32,
    kind: String,
}

type HistogramFamily = Family<HandlerLabels, Histogram, fn() -> Histogram>;
type TopicHistogramFamily = Family<TopicLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 100 µs … ~52 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

fn batch_histogram() -> Histogram {
    // 1 … 16384 events.
    Histogram::new(exponential_buckets(1.0, 2.0, 15))
}

/// The counters of one handler, resolved once so the hot path does no label lookup.
#[derive(Clone)]
pub(crate) struct HandlerMetrics {
    labels: HandlerLabels,
    processed: Counter,
    retried: Counter,
    duplicates: Counter,
    duration: Histogram,
    batch_size: Histogram,
    /// The failed and dead-lettered counters by kind, each resolved on its kind's first use (a
    /// label lookup builds three strings and hashes them: ~1,400 instructions per failure).
    failed_by_kind: Arc<std::sync::Mutex<Vec<(&'static str, Counter)>>>,
    dead_lettered_by_kind: Arc<std::sync::Mutex<Vec<(&'static str, Counter)>>>,
    metrics: Arc<Metrics>,
}

impl HandlerMetrics {
    pub(crate) fn observe_call(&self, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
    }
    /// `n` events handled (one call of a single handler, or one batch).
    pub(crate) fn processed_many(&self, n: usize) {
        self.processed.inc_by(n as u64);
    }
    pub(crate) fn duplicates(&self, n: usize) {
        self.duplicates.inc_by(n as u64);
    }
    pub(crate) fn observe_batch(&self, size: usize) {
        self.batch_size.observe(size as f64);
    }
    pub(crate) fn failed(&self, kind: &'static str) {
        self.of_kind(&self.failed_by_kind, &self.metrics.failed, kind).inc();
    }
    pub(crate) fn retried(&self) {
        self.retried.inc();
    }
    pub(crate) fn dead_lettered(&self, kind: &'static str) {
        self.of_kind(&self.dead_lettered_by_kind, &self.metrics.dead_lettered, kind).inc();
    }
    /// The counter of `kind` in `family`, through `cache` (looked up in the family on the kind's
    /// first use).
    fn of_kind(
        &self,
        cache: &std::sync::Mutex<Vec<(&'static str, Counter)>>,
        family: &Family<KindLabels, Counter>,
        kind: &'static str,
    ) -> Counter {
        let mut cache = crate::sync::lock(cache);
        if let Some((_, counter)) = cache.iter().find(|(known, _)| *known == kind) {
            return counter.clone();
        }
        let counter = family.get_or_create(&self.kind_labels(kind)).clone();
        cache.push((kind, counter.clone()));
        counter
    }
    fn kind_labels(&self, kind: &str) -> KindLabels {
        KindLabels { topic: self.labels.topic.clone(), handler: self.labels.handler.clone(), kind: kind.to_string() }
    }
}

/// Every metric of one runtime.
pub(crate) struct Metrics {
    registry: Registry,
    processed: Family<HandlerLabels, Counter>,
    failed: Family<KindLabels, Counter>,
    retried: Family<HandlerLabels, Counter>,
    duplicates: Family<HandlerLabels, Counter>,
    batch_size: HistogramFamily,
    dead_lettered: Family<KindLabels, Counter>,
    duration: HistogramFamily,
    buffered: Family<GroupLabels, Gauge>,
    lag: Family<PartitionLabels, Gauge>,
    /// The lag series last set, to drop partitions no longer owned.
    lag_reported: std::sync::Mutex<Vec<PartitionLabels>>,
    rebalances: Family<RebalanceLabels, Counter>,
    circuit_state: Family<HandlerLabels, Gauge>,
    circuit_opened: Family<HandlerLabels, Counter>,
    commits: Family<GroupLabels, Counter>,
    commit_failures: Family<GroupLabels, Counter>,
    delivery_failures: Family<TopicLabels, Counter>,
    consumed: Family<TopicPartitionLabels, Counter>,
    stalled: Family<StalledLabels, Gauge>,
    /// The stalled series last set, to drop partitions no longer stalled.
    stalled_reported: std::sync::Mutex<Vec<StalledLabels>>,
    published: Family<TopicLabels, Counter>,
    publish_failures: Family<TopicLabels, Counter>,
    publish_latency: TopicHistogramFamily,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("kafka_events");
        let processed = Family::<HandlerLabels, Counter>::default();
        let failed = Family::<KindLabels, Counter>::default();
        let retried = Family::<HandlerLabels, Counter>::default();
        let dead_lettered = Family::<KindLabels, Counter>::default();
        let duplicates = Family::<HandlerLabels, Counter>::default();
        let batch_size = HistogramFamily::new_with_constructor(batch_histogram as fn() -> Histogram);
        let duration = HistogramFamily::new_with_constructor(duration_histogram as fn() -> Histogram);
        let buffered = Family::<GroupLabels, Gauge>::default();
        let lag = Family::<PartitionLabels, Gauge>::default();
        let rebalances = Family::<RebalanceLabels, Counter>::default();
        let circuit_state = Family::<HandlerLabels, Gauge>::default();
        let circuit_opened = Family::<HandlerLabels, Counter>::default();
        let commits = Family::<GroupLabels, Counter>::default();
        let commit_failures = Family::<GroupLabels, Counter>::default();
        let delivery_failures = Family::<TopicLabels, Counter>::default();
        let consumed = Family::<TopicPartitionLabels, Counter>::default();
        let stalled = Family::<StalledLabels, Gauge>::default();
        let published = Family::<TopicLabels, Counter>::default();
        let publish_failures = Family::<TopicLabels, Counter>::default();
        let publish_latency = TopicHistogramFamily::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register("messages_processed", "Handler calls that succeeded", processed.clone());
        registry.register("messages_failed", "Attempts that failed, by kind", failed.clone());
        registry.register("messages_retried", "Failed attempts scheduled for another try", retried.clone());
        registry.register(
            "duplicates_skipped",
            "Events an idempotent handler skipped: already processed",
            duplicates.clone(),
        );
        registry.register("batch_size", "Events per batch handler call", batch_size.clone());
        registry.register("messages_dead_lettered", "Messages sent to the dead-letter topic", dead_lettered.clone());
        registry.register_with_unit("handler_duration", "Duration of handler calls", Unit::Seconds, duration.clone());
        registry.register("messages_buffered", "Messages held: polled, not yet committed past", buffered.clone());
        registry.register("consumer_lag", "High watermark minus committed offset", lag.clone());
        registry.register("rebalances", "Partition assignments and revocations", rebalances.clone());
        registry.register("circuit_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", circuit_state.clone());
        registry.register("circuit_opened", "Times the circuit breaker opened", circuit_opened.clone());
        registry.register("commits", "Offset commits", commits.clone());
        registry.register("commit_failures", "Offset commits that failed", commit_failures.clone());
        registry.register(
            "delivery_failures",
            "Retry or dead-letter publishes the broker refused (each is tried again)",
            delivery_failures.clone(),
        );
        registry.register(
            "messages_consumed",
            "Messages read whose outcome is durable (handled, duplicate, retry topic or DLQ)",
            consumed.clone(),
        );
        registry.register("partition_stalled", "1 while the partition is held at a failing message", stalled.clone());
        registry.register("messages_published", "Messages a Publisher published (acknowledged)", published.clone());
        registry.register(
            "publish_failures",
            "Producer sends that failed (a Publisher's, and retry and dead-letter records)",
            publish_failures.clone(),
        );
        registry.register_with_unit(
            "publish_latency",
            "From the publish call (the event's creation) to the broker's acknowledgement",
            Unit::Seconds,
            publish_latency.clone(),
        );
        Self {
            registry,
            processed,
            failed,
            retried,
            duplicates,
            batch_size,
            dead_lettered,
            duration,
            buffered,
            lag,
            lag_reported: std::sync::Mutex::default(),
            rebalances,
            circuit_state,
            circuit_opened,
            commits,
            commit_failures,
            delivery_failures,
            consumed,
            stalled,
            stalled_reported: std::sync::Mutex::default(),
            published,
            publish_failures,
            publish_latency,
        }
    }

    /// The counter of messages finished on one partition (resolved once per lane).
    pub(crate) fn consumed(&self, topic: &str, partition: i32) -> Counter {
        self.consumed.get_or_create(&TopicPartitionLabels { topic: topic.into(), partition }).clone()
    }

    /// A `Publisher` send to `topic` ended after `elapsed`: acknowledged or failed.
    pub(crate) fn published(&self, topic: &str, elapsed: Duration, ok: bool) {
        let labels = TopicLabels { topic: topic.into() };
        if ok {
            self.published.get_or_create(&labels).inc();
            self.publish_latency.get_or_create(&labels).observe(elapsed.as_secs_f64());
        } else {
            self.publish_failures.get_or_create(&labels).inc();
        }
    }

    /// The counters of the handler `handler` of `topic`.
    pub(crate) fn for_handler(self: &Arc<Self>, topic: &str, handler: &str) -> HandlerMetrics {
        let labels = HandlerLabels { topic: topic.to_string(), handler: handler.to_string() };
        HandlerMetrics {
            processed: self.processed.get_or_create(&labels).clone(),
            retried: self.retried.get_or_create(&labels).clone(),
            duplicates: self.duplicates.get_or_create(&labels).clone(),
            batch_size: self.batch_size.get_or_create(&labels).clone(),
            duration: self.duration.get_or_create(&labels).clone(),
            failed_by_kind: Arc::default(),
            dead_lettered_by_kind: Arc::default(),
            labels,
            metrics: self.clone(),
        }
    }

    pub(crate) fn rebalanced(&self, group: &str, revoked: bool) {
        let kind = if revoked { "revoked" } else { "assigned" };
        self.rebalances.get_or_create(&RebalanceLabels { group: group.into(), kind: kind.into() }).inc();
    }

    pub(crate) fn committed(&self, group: &str, ok: bool) {
        let labels = GroupLabels { group: group.into() };
        if ok {
            self.commits.get_or_create(&labels).inc();
        } else {
            self.commit_failures.get_or_create(&labels).inc();
        }
    }

    pub(crate) fn delivery_failed(&self, topic: &str) {
        let labels = TopicLabels { topic: topic.into() };
        self.delivery_failures.get_or_create(&labels).inc();
        self.publish_failures.get_or_create(&labels).inc();
    }

    /// The gauges (held messages, lag, circuit state), read from `health` — called at scrape
    /// time, so they show the state of the moment and reading health writes nothing.
    fn observe(&self, health: &Health) {
        for (group, member) in &health.groups {
            let held = i64::try_from(member.buffered).unwrap_or(i64::MAX);
            self.buffered.get_or_create(&GroupLabels { group: group.clone() }).set(held);
        }
        // Replaces the lag gauges: partitions no longer owned disappear.
        let mut reported = lock(&self.lag_reported);
        let now: Vec<PartitionLabels> = health
            .lag
            .iter()
            .map(|lag| {
                let labels =
                    PartitionLabels { group: lag.group.clone(), topic: lag.topic.clone(), partition: lag.partition };
                self.lag.get_or_create(&labels).set(lag.lag);
                labels
            })
            .collect();
        for gone in reported.iter().filter(|l| !now.contains(l)) {
            self.lag.remove(gone);
        }
        *reported = now;
        drop(reported);
        let mut reported = lock(&self.stalled_reported);
        let now: Vec<StalledLabels> = health
            .stalled
            .iter()
            .map(|stall| {
                let labels = StalledLabels {
                    topic: stall.topic.clone(),
                    partition: stall.partition,
                    kind: stall.kind.as_str().to_string(),
                };
                self.stalled.get_or_create(&labels).set(1);
                labels
            })
            .collect();
        for gone in reported.iter().filter(|l| !now.contains(l)) {
            self.stalled.remove(gone);
        }
        *reported = now;
        drop(reported);
        use crate::circuit::CircuitState;
        for circuit in &health.circuits {
            let labels = HandlerLabels { topic: circuit.topic.clone(), handler: circuit.handler.clone() };
            let state = match circuit.state {
                CircuitState::Closed => 0,
                CircuitState::HalfOpen => 1,
                CircuitState::Open => 2,
            };
            self.circuit_state.get_or_create(&labels).set(state);
        }
    }

    /// The counter a handler's circuit breaker increments when it opens.
    pub(crate) fn circuit_opened(&self, topic: &str, handler: &str) -> Counter {
        self.circuit_opened.get_or_create(&HandlerLabels { topic: topic.into(), handler: handler.into() }).clone()
    }

    /// The Prometheus text exposition of every metric, its gauges read from `health`.
    pub(crate) fn encode(&self, health: &Health) -> String {
        self.observe(health);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}
