//! Configuration: what the runtime is told. This file holds the settings, their defaults and
//! accessors; `read.rs` reads the environment and a TOML file, `validate.rs` lists every problem,
//! `builder.rs` holds the `with_*` methods. A setting's *type* lives with the feature that owns it (retry policy, circuit
//! breaker, readiness, idempotency store); config only parses and validates.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::idempotency::IdempotencySetting;
use crate::names::{DEFAULT_DLQ_SUFFIX, DEFAULT_RETRY_SUFFIX};
use crate::retry::RetryPolicy;

mod builder;
mod read;
mod validate;

pub use validate::{ConfigError, ConfigProblem};

/// Which defaults apply and how strict validation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Profile {
    /// Local work: without `KAFKA_BROKERS` an embedded broker (librdkafka's mock cluster) is
    /// started in-process; topics are provisioned at start-up.
    Development,
    /// Production: `KAFKA_BROKERS` and `SERVICE_NAME` are required; topics are not created unless
    /// asked for.
    Production,
}

/// The consumer group protocol of the runtime's groups (`KAFKA_GROUP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum GroupProtocol {
    /// `classic`: JoinGroup/SyncGroup rebalances with the `cooperative-sticky` assignor run by the
    /// members; `session.timeout.ms` and `heartbeat.interval.ms` are the client's. Works with
    /// every broker version.
    #[default]
    Classic,
    /// `consumer`: Kafka 4's consumer group protocol (KIP-848): the broker assigns partitions
    /// and rebalances each member incrementally, without a group-wide barrier; the session
    /// timeout and heartbeat interval are the broker's (`group.consumer.session.timeout.ms`,
    /// `group.consumer.heartbeat.interval.ms`). Needs Apache Kafka 4.0 or later.
    Consumer,
}

impl GroupProtocol {
    /// Consumer properties the `consumer` protocol leaves to the broker; librdkafka refuses them.
    const CLASSIC_ONLY: [&'static str; 4] =
        ["partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms", "group.protocol.type"];

    fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "classic" => Some(Self::Classic),
            "consumer" => Some(Self::Consumer),
            _ => None,
        }
    }

    /// librdkafka's `group.protocol` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Consumer => "consumer",
        }
    }
}

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
    profile: Profile,
    brokers: Option<String>,
    client_id: Option<String>,
    service_name: Option<String>,
    topic_prefix: String,
    dlq_suffix: String,
    retry_suffix: String,
    provision_topics: bool,
    topic_partitions: i32,
    topic_replication: i32,
    topic_retention: Option<Duration>,
    cleanup_policy: Option<String>,
    retry_retention: Option<Duration>,
    dlq_retention: Option<Duration>,
    auto_offset_reset: String,
    group_protocol: GroupProtocol,
    commit_interval: Duration,
    partition_buffer: usize,
    max_buffered: usize,
    shutdown_timeout: Duration,
    handler_timeout: Option<Duration>,
    http: Option<std::net::SocketAddr>,
    startup_timeout: Duration,
    poll_timeout: Duration,
    startup_grace: Duration,
    lag_interval: Duration,
    /// `KAFKA_EVENTS_DESCRIBE`: print the topology document instead of running.
    describe: Option<crate::describe_format::DescribeFormat>,
    lag_threshold: i64,
    progress_timeout: Duration,
    circuit_failures: u32,
    circuit_reset: Duration,
    default_retry: RetryPolicy,
    handlers: Option<Vec<String>>,
    consumer_properties: BTreeMap<String, String>,
    producer_properties: BTreeMap<String, String>,
    /// Properties of every client (security).
    client_properties: BTreeMap<String, String>,
    enabled: bool,
    idempotency: IdempotencySetting,
    /// Receives every message's outcome ([`testing::Harness`](crate::testing)); none otherwise.
    pub(crate) observer: Option<crate::observe::Observer>,
    /// Problems found while reading values (e.g. an env var that is not a number), reported by
    /// `validate` together with the rest.
    read_problems: Vec<ConfigProblem>,
}

const DEV_SERVICE_NAME: &str = "kafka-events-dev";

impl Config {
    /// Defaults for local work. Without brokers the runtime starts an embedded broker.
    pub fn development(service_name: impl Into<String>) -> Self {
        Self {
            profile: Profile::Development,
            brokers: None,
            client_id: None,
            service_name: Some(service_name.into()),
            topic_prefix: String::new(),
            dlq_suffix: DEFAULT_DLQ_SUFFIX.into(),
            retry_suffix: DEFAULT_RETRY_SUFFIX.into(),
            provision_topics: true,
            topic_partitions: 3,
            topic_replication: 1,
            topic_retention: None,
            cleanup_policy: None,
            retry_retention: Some(Duration::from_secs(7 * 24 * 3600)),
            dlq_retention: Some(Duration::from_secs(90 * 24 * 3600)),
            auto_offset_reset: "earliest".into(),
            group_protocol: GroupProtocol::Classic,
            commit_interval: Duration::from_secs(1),
            partition_buffer: 5000,
            max_buffered: 20_000,
            shutdown_timeout: Duration::from_secs(30),
            handler_timeout: None,
            http: None,
            startup_timeout: Duration::from_secs(300),
            poll_timeout: Duration::from_secs(60),
            startup_grace: Duration::from_secs(60),
            lag_interval: Duration::from_secs(10),
            describe: None,
            lag_threshold: 1000,
            progress_timeout: Duration::from_secs(300),
            circuit_failures: 0,
            circuit_reset: Duration::from_secs(30),
            default_retry: RetryPolicy::default(),
            handlers: None,
            consumer_properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
            client_properties: BTreeMap::new(),
            enabled: true,
            idempotency: IdempotencySetting::None,
            read_problems: Vec::new(),
            observer: None,
        }
    }

    /// Defaults for production against `brokers` (comma-separated `host:port`): no topic
    /// provisioning, replication factor 3, and the seeds' client settings — producer `acks=all`,
    /// idempotence, `compression.type=snappy` (seed 004; every Kafka client reads it, KafkaJS
    /// included, which needs a plug-in for LZ4), `linger.ms=5`; consumer `session.timeout.ms=30000`,
    /// `max.partition.fetch.bytes=1048576` — each overridable with the property setters.
    pub fn production(service_name: impl Into<String>, brokers: impl Into<String>) -> Self {
        let mut config = Self {
            profile: Profile::Production,
            brokers: Some(brokers.into()),
            provision_topics: false,
            topic_replication: 3,
            ..Self::development(service_name)
        };
        for (key, value) in [("compression.type", "snappy"), ("linger.ms", "5")] {
            config.producer_properties.insert(key.into(), value.into());
        }
        for (key, value) in [("session.timeout.ms", "30000"), ("max.partition.fetch.bytes", "1048576")] {
            config.consumer_properties.insert(key.into(), value.into());
        }
        config
    }
}

impl Config {
    /// Where `idempotent` handlers record processed events.
    pub(crate) fn idempotency(&self) -> &IdempotencySetting {
        &self.idempotency
    }

    /// The profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The configured brokers; `None` means the embedded broker.
    pub fn brokers(&self) -> Option<&str> {
        self.brokers.as_deref()
    }

    /// The service name.
    pub fn service_name(&self) -> &str {
        self.service_name.as_deref().unwrap_or_default()
    }

    /// The client id (the service name unless set).
    pub fn client_id(&self) -> &str {
        self.client_id.as_deref().unwrap_or(self.service_name())
    }

    /// The real name of logical topic `topic` (the prefix applied).
    pub fn topic_name(&self, topic: &str) -> String {
        format!("{}{topic}", self.topic_prefix)
    }

    /// The dead-letter suffix.
    pub fn dlq_suffix(&self) -> &str {
        &self.dlq_suffix
    }

    /// The retry suffix.
    pub fn retry_suffix(&self) -> &str {
        &self.retry_suffix
    }

    /// Whether topics are provisioned at start-up.
    pub fn provision_topics(&self) -> bool {
        self.provision_topics
    }

    /// Partitions of provisioned topics.
    pub fn topic_partitions(&self) -> i32 {
        self.topic_partitions
    }

    /// Replication factor of provisioned topics.
    pub fn topic_replication(&self) -> i32 {
        self.topic_replication
    }

    /// Retention of created handler, retry and dead-letter topics.
    /// `cleanup.policy` of created handler topics, if set.
    pub fn cleanup_policy(&self) -> Option<&str> {
        self.cleanup_policy.as_deref()
    }

    /// Retention of created handler, retry and dead-letter topics.
    pub fn retention(&self) -> (Option<Duration>, Option<Duration>, Option<Duration>) {
        (self.topic_retention, self.retry_retention, self.dlq_retention)
    }

    /// Where a new group starts.
    pub fn auto_offset_reset(&self) -> &str {
        &self.auto_offset_reset
    }

    /// The commit interval.
    pub fn commit_interval(&self) -> Duration {
        self.commit_interval
    }

    /// Messages one partition may hold.
    pub fn partition_buffer(&self) -> usize {
        self.partition_buffer
    }

    /// Messages one consumer group member may hold.
    pub fn max_buffered(&self) -> usize {
        self.max_buffered
    }

    /// Whether handlers without `circuit(...)` get a breaker.
    pub fn circuit_enabled(&self) -> bool {
        self.circuit_failures > 0
    }

    /// The circuit policy `circuit(...)` fields default to.
    pub fn default_circuit(&self) -> crate::circuit::CircuitPolicy {
        crate::circuit::CircuitPolicy {
            failures: if self.circuit_failures == 0 { 5 } else { self.circuit_failures },
            reset: self.circuit_reset,
        }
    }

    /// How often consumer lag is measured.
    pub fn lag_interval(&self) -> Duration {
        self.lag_interval
    }

    /// `KAFKA_EVENTS_DESCRIBE`: the topology document `runtime::start` prints instead of
    /// running, if any.
    pub fn describe(&self) -> Option<crate::describe_format::DescribeFormat> {
        self.describe
    }

    /// Where the HTTP endpoint listens, if it is on.
    pub fn http(&self) -> Option<std::net::SocketAddr> {
        self.http
    }

    /// When the runtime counts as live and ready.
    pub fn readiness_policy(&self) -> crate::health::ReadinessPolicy {
        crate::health::ReadinessPolicy {
            poll_timeout: self.poll_timeout,
            startup_grace: self.startup_grace,
            lag_threshold: self.lag_threshold,
            progress_timeout: self.progress_timeout,
        }
    }

    /// The shutdown timeout.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown_timeout
    }

    /// The time limit of handlers without `timeout = "..."`, if any.
    pub fn handler_timeout(&self) -> Option<Duration> {
        self.handler_timeout
    }

    /// The default retry policy.
    pub fn default_retry(&self) -> &RetryPolicy {
        &self.default_retry
    }

    /// The handler selection, if any.
    pub fn handler_filter(&self) -> Option<&[String]> {
        self.handlers.as_deref()
    }

    /// The consumer group protocol.
    pub fn group_protocol(&self) -> GroupProtocol {
        self.group_protocol
    }

    pub(crate) fn consumer_properties(&self) -> &BTreeMap<String, String> {
        &self.consumer_properties
    }

    pub(crate) fn producer_properties(&self) -> &BTreeMap<String, String> {
        &self.producer_properties
    }

    pub(crate) fn client_properties(&self) -> &BTreeMap<String, String> {
        &self.client_properties
    }

    /// How long start-up waits for a broker to answer.
    pub fn startup_timeout(&self) -> Duration {
        self.startup_timeout
    }

    /// Whether Kafka is enabled (`KAFKA_ENABLED`, default `true`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |props: &BTreeMap<String, String>| -> BTreeMap<String, String> {
            props
                .iter()
                .map(|(k, v)| {
                    let secret = ["password", "secret", "token", "key"].iter().any(|s| k.contains(s));
                    (k.clone(), if secret { "[redacted]".into() } else { v.clone() })
                })
                .collect()
        };
        f.debug_struct("Config")
            .field("profile", &self.profile)
            .field("brokers", &self.brokers)
            .field("service_name", &self.service_name)
            .field("client_id", &self.client_id())
            .field("topic_prefix", &self.topic_prefix)
            .field("dlq_suffix", &self.dlq_suffix)
            .field("retry_suffix", &self.retry_suffix)
            .field("provision_topics", &self.provision_topics)
            .field("topic_partitions", &self.topic_partitions)
            .field("topic_replication", &self.topic_replication)
            .field("retention", &self.retention())
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("group_protocol", &self.group_protocol)
            .field("commit_interval", &self.commit_interval)
            .field("partition_buffer", &self.partition_buffer)
            .field("max_buffered", &self.max_buffered)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("handler_timeout", &self.handler_timeout)
            .field("http", &self.http)
            .field("poll_timeout", &self.poll_timeout)
            .field("startup_grace", &self.startup_grace)
            .field("lag_interval", &self.lag_interval)
            .field("describe", &self.describe)
            .field("lag_threshold", &self.lag_threshold)
            .field("progress_timeout", &self.progress_timeout)
            .field("circuit_failures", &self.circuit_failures)
            .field("circuit_reset", &self.circuit_reset)
            .field("default_retry", &self.default_retry)
            .field("handlers", &self.handlers)
            .field("consumer_properties", &redact(&self.consumer_properties))
            .field("producer_properties", &redact(&self.producer_properties))
            .field("client_properties", &redact(&self.client_properties))
            .field("enabled", &self.enabled)
            .field("cleanup_policy", &self.cleanup_policy)
            .field("startup_timeout", &self.startup_timeout)
            .field("idempotency", &self.idempotency)
            .finish()
    }
}

/// Security variables and the librdkafka property each sets on every client.
pub(crate) const SECURITY_VARS: &[(&str, &str)] = &[
    ("KAFKA_SECURITY_PROTOCOL", "security.protocol"),
    ("KAFKA_SASL_MECHANISM", "sasl.mechanism"),
    ("KAFKA_SASL_USERNAME", "sasl.username"),
    ("KAFKA_SASL_PASSWORD", "sasl.password"),
    ("KAFKA_SSL_CA_LOCATION", "ssl.ca.location"),
    ("KAFKA_SSL_CERTIFICATE_LOCATION", "ssl.certificate.location"),
    ("KAFKA_SSL_KEY_LOCATION", "ssl.key.location"),
    ("KAFKA_SSL_KEY_PASSWORD", "ssl.key.password"),
];

#[cfg(test)]
mod tests;
