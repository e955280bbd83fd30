//! Configuration: what the runtime is told. `settings.rs` is the schema (one field per
//! setting, its defaults per profile), `layers.rs` reads it from defaults → TOML file →
//! environment (figment), `validate.rs` lists every problem (`problem.rs`), `builder.rs` holds the
//! `with_*` methods, `values.rs` how durations, lists and secrets are written. This file holds `Config`
//! and its accessors. A setting's *type* lives with the feature that owns it (retry policy,
//! circuit breaker, readiness, idempotency store); config only reads and validates.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::idempotency::IdempotencySetting;
use crate::retry::RetryPolicy;

mod builder;
mod layers;
mod problem;
mod settings;
mod validate;
mod values;

pub use problem::{ConfigError, ConfigProblem};
use settings::Settings;
pub use settings::{GroupProtocol, Profile};

/// Runtime configuration. Build it with [`Config::development`], [`Config::production`] or
/// [`Config::from_env`], adjust it with the `with_*` methods; [`Config::validate`] (called by
/// [`runtime::start`](crate::runtime::start)) reports every problem at once.
///
/// ```no_run
/// use std::time::Duration;
/// use kafka_events::{Config, RetryPolicy};
///
/// # fn example() -> Result<(), kafka_events::ConfigError> {
/// // From the environment (and `KAFKA_EVENTS_CONFIG`'s TOML file), as in production:
/// let from_env = Config::from_env()?;
/// // Or built in code, each `with_*` over the profile's defaults:
/// let config = Config::production("billing", "kafka-1:9092,kafka-2:9092")
///     .with_topic_prefix("staging.")
///     .with_commit_interval(Duration::from_millis(500))
///     .with_default_retry(RetryPolicy { max: 5, ..RetryPolicy::default() })
///     .with_http("0.0.0.0:9464".parse().unwrap())
///     .with_consumer_property("fetch.wait.max.ms", "100");
/// config.validate()?; // every problem at once
/// # Ok(()) }
/// ```
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `KAFKA_EVENTS_PROFILE` | `development` or `production` | `development` |
/// | `KAFKA_BROKERS` | comma-separated `host:port` list | embedded broker (development only) |
/// | `SERVICE_NAME` | names the consumer group `${SERVICE_NAME}-main` | `kafka-events-dev` (development only) |
/// | `KAFKA_CLIENT_ID` | librdkafka `client.id` | `SERVICE_NAME` |
/// | `KAFKA_TOPIC_PREFIX` | prepended to every handler and publisher topic | empty |
/// | `KAFKA_DLQ_SUFFIX` | suffix of dead-letter topics | `.dlq` |
/// | `KAFKA_RETRY_SUFFIX` | suffix of retry topics | `.retry` |
/// | `KAFKA_PROVISION_TOPICS` | create missing handler and DLQ topics at start-up | `true` in development, `false` in production |
/// | `KAFKA_TOPIC_PARTITIONS` | partitions of provisioned topics | `3` |
/// | `KAFKA_TOPIC_REPLICATION_FACTOR` | replication factor of provisioned topics | `1` in development, `3` in production |
/// | `KAFKA_TOPIC_CLEANUP_POLICY` | `cleanup.policy` of created handler topics: `delete`, `compact` or `compact,delete` (retry and dead-letter topics always `delete`) | broker default |
/// | `KAFKA_TOPIC_RETENTION`, `KAFKA_RETRY_RETENTION`, `KAFKA_DLQ_RETENTION` | `retention.ms` of created handler, retry and dead-letter topics | broker default, `7days`, `90days` |
/// | `KAFKA_AUTO_OFFSET_RESET` | where a new group starts: `earliest` or `latest` | `earliest` |
/// | `KAFKA_GROUP_PROTOCOL` | consumer group protocol: `classic` (cooperative-sticky) or `consumer` (KIP-848, Kafka 4+); see [`GroupProtocol`] | `classic` |
/// | `KAFKA_COMMIT_INTERVAL` | how often finished offsets are committed (`500ms`, `1s` …) | `1s` |
/// | `KAFKA_PARTITION_BUFFER` | messages one partition may hold (read and not yet finished: waiting in its lane, behind their key, running, or publishing their retry or dead letter); at it the lane stops reading until one finishes | `5000` |
/// | `KAFKA_MAX_BUFFERED` | messages one consumer group member may hold across all its partitions (partitions stuck at their own cap excused); at it lanes stop reading | `20000` |
/// | `KAFKA_SHUTDOWN_TIMEOUT` | how long shutdown waits for in-flight messages (it ends within this plus 5 s; a consumer not closed by this plus 3 s is abandoned with an error) | `30s` |
/// | `KAFKA_HANDLER_TIMEOUT` | the longest one call of a handler without `timeout = "..."` may take; a call over it is cancelled and counts as a retryable failure of kind `timeout` | none |
/// | `KAFKA_RETRY_MAX`, `KAFKA_RETRY_BACKOFF`, `KAFKA_RETRY_INITIAL`, `KAFKA_RETRY_MAX_DELAY`, `KAFKA_RETRY_JITTER`, `KAFKA_RETRY_MODE` | retry policy of handlers without `retry(...)` | `3`, `exponential`, `200ms`, `30s`, `0.1`, `topic` |
/// | `KAFKA_EVENTS_HANDLERS` | comma-separated handler names to run (fn name or full path) | all |
/// | `KAFKA_EVENTS_CONFIG` | a TOML file of these settings, read by [`Config::from_env`] under the environment (see [`Config::from_sources`]) | none |
/// | `KAFKA_STARTUP_TIMEOUT` | how long start-up waits for a broker to answer (retrying with backoff) before it fails | `5m` |
/// | `KAFKA_ENABLED` | `false` starts nothing ([`runtime::start`](crate::runtime::start) logs it and returns) | `true` |
/// | `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_MECHANISM`, `KAFKA_SASL_USERNAME`, `KAFKA_SASL_PASSWORD` | `PLAINTEXT`/`SSL`/`SASL_PLAINTEXT`/`SASL_SSL`; `PLAIN`/`SCRAM-SHA-256`/`SCRAM-SHA-512`; credentials (never shown in `Debug` or errors) | none |
/// | `KAFKA_SSL_CA_LOCATION`, `KAFKA_SSL_CERTIFICATE_LOCATION`, `KAFKA_SSL_KEY_LOCATION`, `KAFKA_SSL_KEY_PASSWORD` | TLS files (checked to exist) | none |
/// | `KAFKA_CONSUMER_*`, `KAFKA_PRODUCER_*`, `KAFKA_CLIENT_*` | any librdkafka property of the consumers, the producer, or every client: `KAFKA_CONSUMER_SESSION_TIMEOUT_MS=30000` sets `session.timeout.ms` | none |
/// | `KAFKA_EVENTS_HTTP` | `host:port` of the HTTP endpoint (`/health/live`, `/health/ready`, `/metrics`); port `0` picks a free one | off |
/// | `KAFKA_EVENTS_DESCRIBE` | `json` or `asyncapi`: `runtime::start` prints the service's topology document (see [`describe`](crate::describe)) to stdout and returns without connecting | off |
/// | `KAFKA_EVENTS_POLL_TIMEOUT` | a poll thread silent for longer is not live (nor ready) | `60s` |
/// | `KAFKA_EVENTS_STARTUP_GRACE` | how long the main group may have no assignment and still be ready | `60s` |
/// | `KAFKA_CIRCUIT_FAILURES`, `KAFKA_CIRCUIT_RESET` | circuit breaker of handlers without `circuit(...)`: consecutive failed calls that open it (`0`: no breaker), and how long it stays open; `circuit(...)` fields left out take these (failures `5` when this is `0`) | `0`, `30s` |
/// | `KAFKA_EVENTS_LAG_INTERVAL` | how often the lag monitor measures consumer lag | `10s` |
/// | `KAFKA_IDEMPOTENCY_STORE` | where `idempotent` handlers record processed events: `memory`, or a `postgres://user:password@host/db` URL (feature `postgres`; the table is created at start-up) | none: an `idempotent` handler fails start-up |
/// | `KAFKA_IDEMPOTENCY_CAPACITY`, `KAFKA_IDEMPOTENCY_POOL_SIZE` | ids the memory store remembers; connections of the PostgreSQL pool | `100000`, `10` |
/// | `KAFKA_EVENTS_PROGRESS_TIMEOUT` | a partition with lag whose committed offset has not moved for longer (as the lag monitor measures it) makes the runtime not ready; `0s` never | `5m` |
/// | `KAFKA_EVENTS_LAG_THRESHOLD` | lag (messages, per partition) above which the runtime is not ready and warns; `0` never | `1000` |
#[derive(Clone)]
pub struct Config {
    settings: Settings,
    /// Where `idempotent` handlers record processed events: read from the settings, or given
    /// as a store ([`with_idempotency_store`](Self::with_idempotency_store)).
    idempotency: IdempotencySetting,
    /// Receives every message's outcome ([`testing::Harness`](crate::testing)); none otherwise.
    pub(crate) observer: Option<crate::observe::Observer>,
    /// Problems found while reading values (e.g. an env var that is not a number), reported by
    /// `validate` together with the rest.
    read_problems: Vec<ConfigProblem>,
}

impl Config {
    /// Defaults for local work. Without brokers the runtime starts an embedded broker.
    pub fn development(service_name: impl Into<String>) -> Self {
        Self::from_settings(Settings::development(Some(service_name.into())))
    }

    /// Defaults for production against `brokers` (comma-separated `host:port`): no topic
    /// provisioning, replication factor 3, and the seeds' client settings — producer `acks=all`,
    /// idempotence, `compression.type=snappy` (seed 004; every Kafka client reads it, KafkaJS
    /// included, which needs a plug-in for LZ4), `linger.ms=5`; consumer `session.timeout.ms=30000`,
    /// `max.partition.fetch.bytes=1048576` — each overridable with the property setters.
    pub fn production(service_name: impl Into<String>, brokers: impl Into<String>) -> Self {
        Self::from_settings(Settings::production(Some(service_name.into()), Some(brokers.into())))
    }

    fn from_settings(settings: Settings) -> Self {
        let (idempotency, read_problems) = match &settings.idempotency_store {
            None => (IdempotencySetting::None, Vec::new()),
            Some(store) => {
                match IdempotencySetting::parse(&store.0, settings.idempotency_capacity, settings.idempotency_pool_size)
                {
                    Ok(setting) => (setting, Vec::new()),
                    Err(reason) => {
                        (IdempotencySetting::None, vec![ConfigProblem::new("KAFKA_IDEMPOTENCY_STORE", reason)])
                    }
                }
            }
        };
        Self { settings, idempotency, observer: None, read_problems }
    }
}

impl Config {
    /// Where `idempotent` handlers record processed events.
    pub(crate) fn idempotency(&self) -> &IdempotencySetting {
        &self.idempotency
    }

    /// The profile.
    pub fn profile(&self) -> Profile {
        self.settings.profile
    }

    /// The configured brokers; `None` means the embedded broker.
    pub fn brokers(&self) -> Option<&str> {
        self.settings.brokers.as_deref()
    }

    /// The service name.
    pub fn service_name(&self) -> &str {
        self.settings.service_name.as_deref().unwrap_or_default()
    }

    /// The client id (the service name unless set).
    pub fn client_id(&self) -> &str {
        self.settings.client_id.as_deref().unwrap_or(self.service_name())
    }

    /// The real name of logical topic `topic` (the prefix applied).
    pub fn topic_name(&self, topic: &str) -> String {
        format!("{}{topic}", self.settings.topic_prefix)
    }

    /// The dead-letter suffix.
    pub fn dlq_suffix(&self) -> &str {
        &self.settings.dlq_suffix
    }

    /// The retry suffix.
    pub fn retry_suffix(&self) -> &str {
        &self.settings.retry_suffix
    }

    /// Whether topics are provisioned at start-up.
    pub fn provision_topics(&self) -> bool {
        self.settings.provision_topics
    }

    /// Partitions of provisioned topics.
    pub fn topic_partitions(&self) -> i32 {
        self.settings.topic_partitions
    }

    /// Replication factor of provisioned topics.
    pub fn topic_replication(&self) -> i32 {
        self.settings.topic_replication
    }

    /// `cleanup.policy` of created handler topics, if set.
    pub fn cleanup_policy(&self) -> Option<&str> {
        self.settings.cleanup_policy.as_deref()
    }

    /// Retention of created handler, retry and dead-letter topics.
    pub fn retention(&self) -> (Option<Duration>, Option<Duration>, Option<Duration>) {
        (self.settings.topic_retention, self.settings.retry_retention, self.settings.dlq_retention)
    }

    /// Where a new group starts.
    pub fn auto_offset_reset(&self) -> &str {
        &self.settings.auto_offset_reset
    }

    /// The commit interval.
    pub fn commit_interval(&self) -> Duration {
        self.settings.commit_interval
    }

    /// Messages one partition may hold.
    pub fn partition_buffer(&self) -> usize {
        self.settings.partition_buffer
    }

    /// Messages one consumer group member may hold.
    pub fn max_buffered(&self) -> usize {
        self.settings.max_buffered
    }

    /// Whether handlers without `circuit(...)` get a breaker.
    pub fn circuit_enabled(&self) -> bool {
        self.settings.circuit_failures > 0
    }

    /// The circuit policy `circuit(...)` fields default to.
    pub fn default_circuit(&self) -> crate::circuit::CircuitPolicy {
        crate::circuit::CircuitPolicy {
            failures: if self.settings.circuit_failures == 0 { 5 } else { self.settings.circuit_failures },
            reset: self.settings.circuit_reset,
        }
    }

    /// How often consumer lag is measured.
    pub fn lag_interval(&self) -> Duration {
        self.settings.lag_interval
    }

    /// `KAFKA_EVENTS_DESCRIBE`: the topology document `runtime::start` prints instead of
    /// running, if any.
    pub fn describe(&self) -> Option<crate::describe_format::DescribeFormat> {
        self.settings.describe
    }

    /// Where the HTTP endpoint listens, if it is on.
    pub fn http(&self) -> Option<std::net::SocketAddr> {
        self.settings.http
    }

    /// When the runtime counts as live and ready.
    pub fn readiness_policy(&self) -> crate::health::ReadinessPolicy {
        crate::health::ReadinessPolicy {
            poll_timeout: self.settings.poll_timeout,
            startup_grace: self.settings.startup_grace,
            lag_threshold: self.settings.lag_threshold,
            progress_timeout: self.settings.progress_timeout,
        }
    }

    /// The shutdown timeout.
    pub fn shutdown_timeout(&self) -> Duration {
        self.settings.shutdown_timeout
    }

    /// The time limit of handlers without `timeout = "..."`, if any.
    pub fn handler_timeout(&self) -> Option<Duration> {
        self.settings.handler_timeout
    }

    /// The default retry policy.
    pub fn default_retry(&self) -> RetryPolicy {
        self.settings.retry()
    }

    /// The handler selection, if any.
    pub fn handler_filter(&self) -> Option<&[String]> {
        self.settings.handlers.as_deref()
    }

    /// The consumer group protocol.
    pub fn group_protocol(&self) -> GroupProtocol {
        self.settings.group_protocol
    }

    pub(crate) fn consumer_properties(&self) -> &BTreeMap<String, String> {
        &self.settings.consumer.0
    }

    pub(crate) fn producer_properties(&self) -> &BTreeMap<String, String> {
        &self.settings.producer.0
    }

    pub(crate) fn client_properties(&self) -> &BTreeMap<String, String> {
        &self.settings.client.0
    }

    /// How long start-up waits for a broker to answer.
    pub fn startup_timeout(&self) -> Duration {
        self.settings.startup_timeout
    }

    /// Whether Kafka is enabled (`KAFKA_ENABLED`, default `true`).
    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("settings", &self.settings)
            .field("idempotency", &self.idempotency)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
