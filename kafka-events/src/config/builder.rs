//! The `with_*` builder methods: each overrides what the profile and the environment set.

use std::time::Duration;

use super::problem::ConfigProblem;
use super::settings::GroupProtocol;
use super::Config;
use crate::idempotency::IdempotencySetting;
use crate::retry::RetryPolicy;

impl Config {
    /// Where `idempotent` handlers record processed events: `memory` or a `postgres://` URL, as
    /// `KAFKA_IDEMPOTENCY_STORE` takes it. A value it cannot read is reported by
    /// [`validate`](Self::validate).
    pub fn with_idempotency(mut self, store: &str) -> Self {
        match IdempotencySetting::parse(store, self.settings.idempotency_capacity, self.settings.idempotency_pool_size)
        {
            Ok(setting) => self.idempotency = setting,
            Err(reason) => self.read_problems.push(ConfigProblem::new("KAFKA_IDEMPOTENCY_STORE", reason)),
        }
        self
    }

    /// Uses `store` (any [`IdempotencyStore`](crate::idempotency::IdempotencyStore), e.g. a
    /// [`PostgresStore`](crate::idempotency::PostgresStore) on the application's own pool) for
    /// `idempotent` handlers.
    pub fn with_idempotency_store(mut self, store: std::sync::Arc<dyn crate::idempotency::IdempotencyStore>) -> Self {
        self.idempotency = IdempotencySetting::Store(store);
        self
    }

    /// Sets the service name (it names the consumer groups).
    pub fn with_service_name(mut self, service: impl Into<String>) -> Self {
        self.settings.service_name = Some(service.into());
        self
    }

    /// Sets the brokers (comma-separated `host:port`).
    pub fn with_brokers(mut self, brokers: impl Into<String>) -> Self {
        self.settings.brokers = Some(brokers.into());
        self
    }

    /// Sets the librdkafka `client.id`.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.settings.client_id = Some(client_id.into());
        self
    }

    /// Prepends `prefix` to every handler and publisher topic (e.g. `staging.`).
    pub fn with_topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.topic_prefix = prefix.into();
        self
    }

    /// Sets the dead-letter topic suffix (default `.dlq`).
    pub fn with_dlq_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.settings.dlq_suffix = suffix.into();
        self
    }

    /// Sets the retry topic suffix (default `.retry`).
    pub fn with_retry_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.settings.retry_suffix = suffix.into();
        self
    }

    /// Whether missing handler and DLQ topics are created at start-up.
    pub fn with_topic_provisioning(mut self, provision: bool) -> Self {
        self.settings.provision_topics = provision;
        self
    }

    /// Partitions and replication factor of provisioned topics.
    pub fn with_topic_layout(mut self, partitions: i32, replication_factor: i32) -> Self {
        self.settings.topic_partitions = partitions;
        self.settings.topic_replication = replication_factor;
        self
    }

    /// `retention.ms` of created handler, retry and dead-letter topics (`None`: broker default).
    pub fn with_retention(mut self, topic: Option<Duration>, retry: Option<Duration>, dlq: Option<Duration>) -> Self {
        self.settings.topic_retention = topic;
        self.settings.retry_retention = retry;
        self.settings.dlq_retention = dlq;
        self
    }

    /// The consumer group protocol. Choosing [`GroupProtocol::Consumer`] drops the consumer
    /// properties that protocol leaves to the broker (`session.timeout.ms`,
    /// `heartbeat.interval.ms`, `partition.assignment.strategy`) set so far, such as the
    /// production profile's session timeout; setting one of them afterwards is a configuration
    /// error.
    pub fn with_group_protocol(mut self, protocol: GroupProtocol) -> Self {
        self.settings.use_protocol(protocol);
        self
    }

    /// Where a new consumer group starts: `earliest` or `latest`.
    pub fn with_auto_offset_reset(mut self, reset: impl Into<String>) -> Self {
        self.settings.auto_offset_reset = reset.into();
        self
    }

    /// How often finished offsets are committed.
    pub fn with_commit_interval(mut self, interval: Duration) -> Self {
        self.settings.commit_interval = interval;
        self
    }

    /// How many messages one partition may hold (polled, not yet finished) before it is paused.
    pub fn with_partition_buffer(mut self, messages: usize) -> Self {
        self.settings.partition_buffer = messages;
        self
    }

    /// How many messages one consumer group member may hold across its partitions before all of
    /// them are paused.
    pub fn with_max_buffered(mut self, messages: usize) -> Self {
        self.settings.max_buffered = messages;
        self
    }

    /// Serves `/health/live`, `/health/ready` and `/metrics` on `addr` (port 0: any free port;
    /// see [`Runtime::http_addr`](crate::runtime::Runtime::http_addr)).
    pub fn with_http(mut self, addr: std::net::SocketAddr) -> Self {
        self.settings.http = Some(addr);
        self
    }

    /// Makes `runtime::start` print the topology document in `format` and return without
    /// connecting (`KAFKA_EVENTS_DESCRIBE`).
    pub fn with_describe(mut self, format: crate::describe_format::DescribeFormat) -> Self {
        self.settings.describe = Some(format);
        self
    }

    /// A poll thread silent for longer than this is not live.
    pub fn with_poll_timeout(mut self, timeout: Duration) -> Self {
        self.settings.poll_timeout = timeout;
        self
    }

    /// How long the main group may have no assignment and still be ready.
    pub fn with_startup_grace(mut self, grace: Duration) -> Self {
        self.settings.startup_grace = grace;
        self
    }

    /// How often consumer lag is measured, and the per-partition lag over which the runtime is
    /// not ready (0: never).
    pub fn with_lag_monitor(mut self, interval: Duration, threshold: i64) -> Self {
        self.settings.lag_interval = interval;
        self.settings.lag_threshold = threshold;
        self
    }

    /// How long a partition with lag may go without its committed offset moving before the
    /// runtime reports it and is not ready (`Duration::ZERO`: never).
    pub fn with_progress_timeout(mut self, timeout: Duration) -> Self {
        self.settings.progress_timeout = timeout;
        self
    }

    /// A circuit breaker for every handler without `circuit(...)` (`failures = 0`: none).
    pub fn with_circuit(mut self, failures: u32, reset: Duration) -> Self {
        self.settings.circuit_failures = failures;
        self.settings.circuit_reset = reset;
        self
    }

    /// Sets a librdkafka property on every client (consumers, producer, admin), e.g. security.
    pub fn with_client_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.client.0.insert(key.into(), value.into());
        self
    }

    /// `cleanup.policy` of created handler topics (`delete`, `compact`, `compact,delete`).
    pub fn with_topic_cleanup_policy(mut self, policy: impl Into<String>) -> Self {
        self.settings.cleanup_policy = Some(policy.into());
        self
    }

    /// How long start-up waits for a broker to answer.
    pub fn with_startup_timeout(mut self, timeout: Duration) -> Self {
        self.settings.startup_timeout = timeout;
        self
    }

    /// `false` (`KAFKA_ENABLED=false`): [`runtime::start`](crate::runtime::start) starts nothing.
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.settings.enabled = enabled;
        self
    }

    /// How long shutdown waits for in-flight messages.
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.settings.shutdown_timeout = timeout;
        self
    }

    /// The time limit of one call of handlers without `timeout = "..."` (`None`: no limit, the
    /// default). A call over it is cancelled — its future dropped at its next `.await` — and
    /// counts as a retryable failure of kind `timeout`.
    pub fn with_handler_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.handler_timeout = timeout;
        self
    }

    /// Retry policy of handlers without `retry(...)`, and defaults for unset `retry` fields.
    pub fn with_default_retry(mut self, policy: RetryPolicy) -> Self {
        self.settings.set_retry(policy);
        self
    }

    /// Runs only the named handlers (fn name or `module::path::fn_name`).
    pub fn with_handlers<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.settings.handlers = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Passes a librdkafka property to the consumers (applied last, so it overrides the runtime's).
    pub fn with_consumer_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.consumer.0.insert(key.into(), value.into());
        self
    }

    /// Passes a librdkafka property to the producer and the admin client.
    pub fn with_producer_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.producer.0.insert(key.into(), value.into());
        self
    }
}
