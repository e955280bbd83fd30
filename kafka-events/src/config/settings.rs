//! The settings schema: one field per setting, named by its environment variable, with its
//! type, its way of being written and its defaults per profile. The layers (`layers.rs`) read
//! into it, `validate.rs` checks it, `Config`'s accessors and `with_*` methods read and write
//! it. A new setting is a field here (with its doc and default), its row in the table on
//! [`Config`](super::Config) and README (a test keeps both in step), and its check if it has one.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::{self, Properties, StoreUrl};
use crate::describe_format::DescribeFormat;
use crate::names::{DEFAULT_DLQ_SUFFIX, DEFAULT_RETRY_SUFFIX};
use crate::retry::{Backoff, RetryMode, RetryPolicy};

/// Which defaults apply and how strict validation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Profile {
    /// Local work: without `KAFKA_BROKERS` an embedded broker (librdkafka's mock cluster) is
    /// started in-process; topics are provisioned at start-up.
    #[serde(alias = "dev")]
    Development,
    /// Production: `KAFKA_BROKERS` and `SERVICE_NAME` are required; topics are not created unless
    /// asked for.
    #[serde(alias = "prod")]
    Production,
}

/// The consumer group protocol of the runtime's groups (`KAFKA_GROUP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
    pub(super) const CLASSIC_ONLY: [&'static str; 4] =
        ["partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms", "group.protocol.type"];

    /// librdkafka's `group.protocol` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Consumer => "consumer",
        }
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

/// The service name of the development profile when `SERVICE_NAME` is not set.
pub(super) const DEV_SERVICE_NAME: &str = "kafka-events-dev";

/// Every setting (see the table on [`Config`](super::Config) for what each means).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Settings {
    /// Which defaults apply and how strict validation is.
    #[serde(rename = "KAFKA_EVENTS_PROFILE")]
    pub profile: Profile,
    /// Comma-separated `host:port`; `None`: the embedded broker (development only).
    #[serde(rename = "KAFKA_BROKERS")]
    pub brokers: Option<String>,
    /// Names the consumer groups.
    #[serde(rename = "SERVICE_NAME")]
    pub service_name: Option<String>,
    /// librdkafka `client.id` (the service name unless set).
    #[serde(rename = "KAFKA_CLIENT_ID")]
    pub client_id: Option<String>,
    /// Prepended to every handler and publisher topic.
    #[serde(rename = "KAFKA_TOPIC_PREFIX")]
    pub topic_prefix: String,
    /// Suffix of dead-letter topics.
    #[serde(rename = "KAFKA_DLQ_SUFFIX")]
    pub dlq_suffix: String,
    /// Suffix of retry topics.
    #[serde(rename = "KAFKA_RETRY_SUFFIX")]
    pub retry_suffix: String,
    /// Create missing handler, retry and dead-letter topics at start-up.
    #[serde(rename = "KAFKA_PROVISION_TOPICS")]
    pub provision_topics: bool,
    /// Partitions of provisioned topics.
    #[serde(rename = "KAFKA_TOPIC_PARTITIONS")]
    pub topic_partitions: i32,
    /// Replication factor of provisioned topics (`-1`: the broker's default).
    #[serde(rename = "KAFKA_TOPIC_REPLICATION_FACTOR")]
    pub topic_replication: i32,
    /// `cleanup.policy` of created handler topics.
    #[serde(rename = "KAFKA_TOPIC_CLEANUP_POLICY", with = "values::cleanup_policy")]
    pub cleanup_policy: Option<String>,
    /// `retention.ms` of created handler topics.
    #[serde(rename = "KAFKA_TOPIC_RETENTION", with = "values::opt_duration")]
    pub topic_retention: Option<Duration>,
    /// `retention.ms` of created retry topics.
    #[serde(rename = "KAFKA_RETRY_RETENTION", with = "values::opt_duration")]
    pub retry_retention: Option<Duration>,
    /// `retention.ms` of created dead-letter topics.
    #[serde(rename = "KAFKA_DLQ_RETENTION", with = "values::opt_duration")]
    pub dlq_retention: Option<Duration>,
    /// Where a new group starts: `earliest` or `latest` (checked by `validate`, since
    /// [`with_auto_offset_reset`](super::Config::with_auto_offset_reset) takes any text).
    #[serde(rename = "KAFKA_AUTO_OFFSET_RESET")]
    pub auto_offset_reset: String,
    /// The consumer group protocol.
    #[serde(rename = "KAFKA_GROUP_PROTOCOL")]
    pub group_protocol: GroupProtocol,
    /// How often finished offsets are committed.
    #[serde(rename = "KAFKA_COMMIT_INTERVAL", with = "values::duration")]
    pub commit_interval: Duration,
    /// Messages one partition may hold.
    #[serde(rename = "KAFKA_PARTITION_BUFFER")]
    pub partition_buffer: usize,
    /// Messages one consumer group member may hold across its partitions.
    #[serde(rename = "KAFKA_MAX_BUFFERED")]
    pub max_buffered: usize,
    /// How long shutdown waits for in-flight messages.
    #[serde(rename = "KAFKA_SHUTDOWN_TIMEOUT", with = "values::duration")]
    pub shutdown_timeout: Duration,
    /// The time limit of one call of handlers without `timeout = "..."`.
    #[serde(rename = "KAFKA_HANDLER_TIMEOUT", with = "values::opt_duration")]
    pub handler_timeout: Option<Duration>,
    /// Retries of handlers without `retry(...)`.
    #[serde(rename = "KAFKA_RETRY_MAX")]
    pub retry_max: u32,
    /// How their delay grows.
    #[serde(rename = "KAFKA_RETRY_BACKOFF")]
    pub retry_backoff: Backoff,
    /// Their first delay.
    #[serde(rename = "KAFKA_RETRY_INITIAL", with = "values::duration")]
    pub retry_initial: Duration,
    /// Their longest delay.
    #[serde(rename = "KAFKA_RETRY_MAX_DELAY", with = "values::duration")]
    pub retry_max_delay: Duration,
    /// Their jitter (0.0 to 1.0).
    #[serde(rename = "KAFKA_RETRY_JITTER")]
    pub retry_jitter: f64,
    /// Where their failed messages wait.
    #[serde(rename = "KAFKA_RETRY_MODE")]
    pub retry_mode: RetryMode,
    /// The handlers to run (fn name or full path); `None`: all.
    #[serde(rename = "KAFKA_EVENTS_HANDLERS", with = "values::list")]
    pub handlers: Option<Vec<String>>,
    /// How long start-up waits for a broker to answer.
    #[serde(rename = "KAFKA_STARTUP_TIMEOUT", with = "values::duration")]
    pub startup_timeout: Duration,
    /// `false`: `runtime::start` starts nothing.
    #[serde(rename = "KAFKA_ENABLED")]
    pub enabled: bool,
    /// Where the HTTP endpoint listens.
    #[serde(rename = "KAFKA_EVENTS_HTTP", with = "values::address")]
    pub http: Option<std::net::SocketAddr>,
    /// Print the topology document instead of running.
    #[serde(rename = "KAFKA_EVENTS_DESCRIBE")]
    pub describe: Option<DescribeFormat>,
    /// A poll thread silent for longer is not live.
    #[serde(rename = "KAFKA_EVENTS_POLL_TIMEOUT", with = "values::duration")]
    pub poll_timeout: Duration,
    /// How long the main group may have no assignment and still be ready.
    #[serde(rename = "KAFKA_EVENTS_STARTUP_GRACE", with = "values::duration")]
    pub startup_grace: Duration,
    /// Consecutive failed calls that open the default circuit breaker (`0`: none).
    #[serde(rename = "KAFKA_CIRCUIT_FAILURES")]
    pub circuit_failures: u32,
    /// How long the default circuit breaker stays open.
    #[serde(rename = "KAFKA_CIRCUIT_RESET", with = "values::duration")]
    pub circuit_reset: Duration,
    /// How often consumer lag is measured.
    #[serde(rename = "KAFKA_EVENTS_LAG_INTERVAL", with = "values::duration")]
    pub lag_interval: Duration,
    /// Per-partition lag above which the runtime is not ready (`0`: never).
    #[serde(rename = "KAFKA_EVENTS_LAG_THRESHOLD")]
    pub lag_threshold: i64,
    /// How long a partition with lag may go without its committed offset moving (`0s`: never).
    #[serde(rename = "KAFKA_EVENTS_PROGRESS_TIMEOUT", with = "values::duration")]
    pub progress_timeout: Duration,
    /// `memory` or a `postgres://` URL.
    #[serde(rename = "KAFKA_IDEMPOTENCY_STORE")]
    pub idempotency_store: Option<StoreUrl>,
    /// Ids the memory store remembers.
    #[serde(rename = "KAFKA_IDEMPOTENCY_CAPACITY")]
    pub idempotency_capacity: usize,
    /// Connections of the PostgreSQL pool.
    #[serde(rename = "KAFKA_IDEMPOTENCY_POOL_SIZE")]
    pub idempotency_pool_size: u32,
    /// librdkafka properties of the consumers (`KAFKA_CONSUMER_*`, `[consumer]`).
    #[serde(rename = "KAFKA_CONSUMER")]
    pub consumer: Properties,
    /// librdkafka properties of the producer and the admin client (`KAFKA_PRODUCER_*`,
    /// `[producer]`).
    #[serde(rename = "KAFKA_PRODUCER")]
    pub producer: Properties,
    /// librdkafka properties of every client (`KAFKA_CLIENT_*`, `[client]`, the security
    /// variables).
    #[serde(rename = "KAFKA_CLIENT")]
    pub client: Properties,
}

impl Settings {
    /// The development profile's defaults.
    pub(super) fn development(service_name: Option<String>) -> Self {
        let retry = RetryPolicy::default();
        Self {
            profile: Profile::Development,
            brokers: None,
            service_name,
            client_id: None,
            topic_prefix: String::new(),
            dlq_suffix: DEFAULT_DLQ_SUFFIX.into(),
            retry_suffix: DEFAULT_RETRY_SUFFIX.into(),
            provision_topics: true,
            topic_partitions: 3,
            topic_replication: 1,
            cleanup_policy: None,
            topic_retention: None,
            retry_retention: Some(Duration::from_secs(7 * 24 * 3600)),
            dlq_retention: Some(Duration::from_secs(90 * 24 * 3600)),
            auto_offset_reset: "earliest".into(),
            group_protocol: GroupProtocol::Classic,
            commit_interval: Duration::from_secs(1),
            partition_buffer: 5000,
            max_buffered: 20_000,
            shutdown_timeout: Duration::from_secs(30),
            handler_timeout: None,
            retry_max: retry.max,
            retry_backoff: retry.backoff,
            retry_initial: retry.initial,
            retry_max_delay: retry.max_delay,
            retry_jitter: retry.jitter,
            retry_mode: retry.mode,
            handlers: None,
            startup_timeout: Duration::from_secs(300),
            enabled: true,
            http: None,
            describe: None,
            poll_timeout: Duration::from_secs(60),
            startup_grace: Duration::from_secs(60),
            circuit_failures: 0,
            circuit_reset: Duration::from_secs(30),
            lag_interval: Duration::from_secs(10),
            lag_threshold: 1000,
            progress_timeout: Duration::from_secs(300),
            idempotency_store: None,
            idempotency_capacity: crate::idempotency::setting::DEFAULT_CAPACITY,
            idempotency_pool_size: crate::idempotency::setting::DEFAULT_POOL_SIZE,
            consumer: Properties::default(),
            producer: Properties::default(),
            client: Properties::default(),
        }
    }

    /// The production profile's defaults: no provisioning, replication factor 3, and the seeds'
    /// client settings (see [`Config::production`](super::Config::production)).
    pub(super) fn production(service_name: Option<String>, brokers: Option<String>) -> Self {
        let mut settings = Self {
            profile: Profile::Production,
            brokers,
            provision_topics: false,
            topic_replication: 3,
            ..Self::development(service_name)
        };
        for (key, value) in [("compression.type", "snappy"), ("linger.ms", "5")] {
            settings.producer.0.insert(key.into(), value.into());
        }
        for (key, value) in [("session.timeout.ms", "30000"), ("max.partition.fetch.bytes", "1048576")] {
            settings.consumer.0.insert(key.into(), value.into());
        }
        settings
    }

    /// The defaults of `profile` under `protocol`: the `consumer` protocol leaves the session
    /// timeout and the assignment to the broker, so the profile does not set them.
    pub(super) fn defaults(profile: Profile, protocol: GroupProtocol) -> Self {
        let mut settings = match profile {
            Profile::Development => Self::development(Some(DEV_SERVICE_NAME.into())),
            Profile::Production => Self::production(None, None),
        };
        settings.use_protocol(protocol);
        settings
    }

    /// Sets the group protocol, dropping the consumer properties the `consumer` protocol leaves
    /// to the broker.
    pub(super) fn use_protocol(&mut self, protocol: GroupProtocol) {
        self.group_protocol = protocol;
        if protocol == GroupProtocol::Consumer {
            self.consumer.0.retain(|key, _| !GroupProtocol::CLASSIC_ONLY.contains(&key.as_str()));
        }
    }

    /// The retry policy of handlers without `retry(...)`.
    pub(super) fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max: self.retry_max,
            backoff: self.retry_backoff,
            initial: self.retry_initial,
            max_delay: self.retry_max_delay,
            jitter: self.retry_jitter,
            mode: self.retry_mode,
        }
    }

    /// Sets the retry policy of handlers without `retry(...)`.
    pub(super) fn set_retry(&mut self, policy: RetryPolicy) {
        let RetryPolicy { max, backoff, initial, max_delay, jitter, mode } = policy;
        (self.retry_max, self.retry_backoff, self.retry_initial) = (max, backoff, initial);
        (self.retry_max_delay, self.retry_jitter, self.retry_mode) = (max_delay, jitter, mode);
    }
}
