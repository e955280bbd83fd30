//! Configuration: builders, `from_env`, and validation that lists every problem at once.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::idempotency::{setting, IdempotencySetting};
use crate::names::{check_group_id, check_topic_name, main_group, DEFAULT_DLQ_SUFFIX, DEFAULT_RETRY_SUFFIX};
use crate::problems::{Problem, Problems};
use crate::retry::{Backoff, RetryMode, RetryPolicy};

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
/// | `KAFKA_PARTITION_BUFFER` | messages one partition may hold (polled and not yet finished: buffered, waiting behind their key, running, or publishing their retry or dead letter) before it is paused; resumed at half | `5000` |
/// | `KAFKA_MAX_BUFFERED` | messages one consumer group member may hold across all its partitions; reaching it pauses them all, resumed at half | `20000` |
/// | `KAFKA_SHUTDOWN_TIMEOUT` | how long shutdown waits for in-flight messages | `30s` |
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

    /// Reads the variables listed on [`Config`] from the process environment — on top of the
    /// TOML file `KAFKA_EVENTS_CONFIG` names, if it names one (the environment wins). Values that
    /// cannot be read are reported by [`validate`](Self::validate) together with every other
    /// problem; this function fails only through that validation.
    pub fn from_env() -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let file = env.iter().find(|(k, _)| k == "KAFKA_EVENTS_CONFIG").map(|(_, v)| std::path::PathBuf::from(v));
        let config = Self::from_sources(file.as_deref(), env);
        config.validate()?;
        Ok(config)
    }

    /// Reads a TOML file of the same settings, then applies `env` over it (the environment
    /// wins). The file uses the variable names as keys, in any case (`KAFKA_BROKERS = "…"` or
    /// `kafka_brokers = "…"`); numbers, booleans and arrays (joined with commas) are accepted
    /// as well as strings; tables `[consumer]`, `[producer]` and `[client]` pass librdkafka
    /// properties through (`"session.timeout.ms" = 30000`). Unknown keys are problems, so a typo
    /// is not silently ignored. Builder methods called afterwards override both.
    pub fn from_sources(file: Option<&std::path::Path>, env: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut problems = Vec::new();
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        let mut file_keys = Vec::new();
        if let Some(path) = file {
            let key = format!("KAFKA_EVENTS_CONFIG ({})", path.display());
            match std::fs::read_to_string(path) {
                Err(error) => problems.push(ConfigProblem::new(&key, format!("cannot read it: {error}"))),
                Ok(text) => match text.parse::<toml::Table>() {
                    Err(error) => problems.push(ConfigProblem::new(&key, format!("not valid TOML: {error}"))),
                    Ok(table) => {
                        for (name, value) in file_vars(&table, &key, &mut problems) {
                            file_keys.push(name.clone());
                            vars.insert(name, value);
                        }
                    }
                },
            }
        }
        vars.extend(env);
        let (mut config, looked_up) = Self::read_vars(vars);
        for name in file_keys {
            let passthrough =
                ["KAFKA_CONSUMER_", "KAFKA_PRODUCER_", "KAFKA_CLIENT_"].iter().any(|p| name.starts_with(p));
            if !passthrough && !looked_up.contains(&name) {
                problems.push(ConfigProblem::new(
                    &name,
                    "unknown setting in the config file (see the variables documented on `Config`)",
                ));
            }
        }
        config.read_problems.extend(problems);
        config
    }

    /// Like [`from_env`](Self::from_env), from any list of variables, without validating.
    pub fn from_vars<K: AsRef<str>, V: Into<String>>(vars: impl IntoIterator<Item = (K, V)>) -> Self {
        Self::read_vars(vars).0
    }

    /// [`from_vars`](Self::from_vars), also returning every variable name it looked at.
    fn read_vars<K: AsRef<str>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> (Self, std::collections::BTreeSet<String>) {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_string(), v.into()))
            .filter(|(k, _)| k.starts_with("KAFKA_") || k == "SERVICE_NAME")
            .collect();
        let looked_up = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let get = |key: &str| {
            looked_up.borrow_mut().insert(key.to_string());
            vars.get(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
        };
        let mut problems = Vec::new();

        let profile = match get("KAFKA_EVENTS_PROFILE").as_deref() {
            None | Some("development") | Some("dev") => Profile::Development,
            Some("production") | Some("prod") => Profile::Production,
            Some(other) => {
                problems.push(ConfigProblem::new(
                    "KAFKA_EVENTS_PROFILE",
                    format!("`{other}` is not `development` or `production`"),
                ));
                Profile::Development
            }
        };
        let service = get("SERVICE_NAME");
        let mut config = match profile {
            Profile::Development => Self::development(service.clone().unwrap_or_else(|| DEV_SERVICE_NAME.into())),
            Profile::Production => Self::production(service.clone().unwrap_or_default(), String::new()),
        };
        if profile == Profile::Production && service.is_none() {
            config.service_name = None;
        }
        config.brokers = get("KAFKA_BROKERS");
        config.client_id = get("KAFKA_CLIENT_ID");
        if let Some(v) = get("KAFKA_TOPIC_PREFIX") {
            config.topic_prefix = v;
        }
        if let Some(v) = get("KAFKA_DLQ_SUFFIX") {
            config.dlq_suffix = v;
        }
        if let Some(v) = get("KAFKA_RETRY_SUFFIX") {
            config.retry_suffix = v;
        }
        if let Some(v) = get("KAFKA_AUTO_OFFSET_RESET") {
            config.auto_offset_reset = v;
        }
        if let Some(v) = get("KAFKA_GROUP_PROTOCOL") {
            match GroupProtocol::parse(&v) {
                Some(protocol) => config = config.with_group_protocol(protocol),
                None => problems
                    .push(ConfigProblem::new("KAFKA_GROUP_PROTOCOL", format!("`{v}` is not `classic` or `consumer`"))),
            }
        }
        if let Some(v) = get("KAFKA_EVENTS_HANDLERS") {
            config.handlers = Some(v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
        }
        let mut read = |key: &str, parse: &mut dyn FnMut(&str) -> Result<(), String>| {
            if let Some(value) = get(key) {
                if let Err(reason) = parse(&value) {
                    problems.push(ConfigProblem::new(key, reason));
                }
            }
        };
        read("KAFKA_PROVISION_TOPICS", &mut |v| parse_bool(v).map(|b| config.provision_topics = b));
        read("KAFKA_TOPIC_PARTITIONS", &mut |v| parse_num(v).map(|n| config.topic_partitions = n));
        read("KAFKA_TOPIC_REPLICATION_FACTOR", &mut |v| parse_num(v).map(|n| config.topic_replication = n));
        read("KAFKA_TOPIC_RETENTION", &mut |v| parse_duration(v).map(|d| config.topic_retention = Some(d)));
        read("KAFKA_TOPIC_CLEANUP_POLICY", &mut |v| {
            let policy = v.replace(' ', "");
            match policy.as_str() {
                "delete" | "compact" | "compact,delete" | "delete,compact" => {
                    config.cleanup_policy = Some(policy);
                    Ok(())
                }
                _ => Err(format!("`{v}` is not `delete`, `compact` or `compact,delete`")),
            }
        });
        read("KAFKA_RETRY_RETENTION", &mut |v| parse_duration(v).map(|d| config.retry_retention = Some(d)));
        read("KAFKA_DLQ_RETENTION", &mut |v| parse_duration(v).map(|d| config.dlq_retention = Some(d)));
        read("KAFKA_COMMIT_INTERVAL", &mut |v| parse_duration(v).map(|d| config.commit_interval = d));
        read("KAFKA_PARTITION_BUFFER", &mut |v| parse_num(v).map(|n| config.partition_buffer = n));
        read("KAFKA_MAX_BUFFERED", &mut |v| parse_num(v).map(|n| config.max_buffered = n));
        read("KAFKA_SHUTDOWN_TIMEOUT", &mut |v| parse_duration(v).map(|d| config.shutdown_timeout = d));
        read("KAFKA_HANDLER_TIMEOUT", &mut |v| parse_duration(v).map(|d| config.handler_timeout = Some(d)));
        read("KAFKA_EVENTS_HTTP", &mut |v| {
            v.parse()
                .map(|addr| config.http = Some(addr))
                .map_err(|_| format!("`{v}` is not a socket address like `0.0.0.0:9464`"))
        });
        read("KAFKA_EVENTS_POLL_TIMEOUT", &mut |v| parse_duration(v).map(|d| config.poll_timeout = d));
        read("KAFKA_EVENTS_STARTUP_GRACE", &mut |v| parse_duration(v).map(|d| config.startup_grace = d));
        read("KAFKA_EVENTS_LAG_INTERVAL", &mut |v| parse_duration(v).map(|d| config.lag_interval = d));
        read("KAFKA_CIRCUIT_FAILURES", &mut |v| parse_num(v).map(|n| config.circuit_failures = n));
        read("KAFKA_CIRCUIT_RESET", &mut |v| parse_duration(v).map(|d| config.circuit_reset = d));
        read("KAFKA_EVENTS_LAG_THRESHOLD", &mut |v| parse_num(v).map(|n| config.lag_threshold = n));
        read("KAFKA_EVENTS_PROGRESS_TIMEOUT", &mut |v| parse_duration(v).map(|d| config.progress_timeout = d));
        read("KAFKA_RETRY_MAX", &mut |v| parse_num(v).map(|n| config.default_retry.max = n));
        read("KAFKA_RETRY_INITIAL", &mut |v| parse_duration(v).map(|d| config.default_retry.initial = d));
        read("KAFKA_RETRY_MAX_DELAY", &mut |v| parse_duration(v).map(|d| config.default_retry.max_delay = d));
        read("KAFKA_RETRY_BACKOFF", &mut |v| {
            Backoff::parse(v)
                .map(|b| config.default_retry.backoff = b)
                .ok_or_else(|| format!("`{v}` is not `exponential`, `linear` or `fixed`"))
        });
        read("KAFKA_RETRY_JITTER", &mut |v| parse_num(v).map(|j| config.default_retry.jitter = j));
        read("KAFKA_RETRY_MODE", &mut |v| {
            RetryMode::parse(v)
                .map(|m| config.default_retry.mode = m)
                .ok_or_else(|| format!("`{v}` is not `topic` or `in_place`"))
        });
        let (mut capacity, mut pool_size) = (setting::DEFAULT_CAPACITY, setting::DEFAULT_POOL_SIZE);
        read("KAFKA_IDEMPOTENCY_CAPACITY", &mut |v| parse_num(v).map(|n| capacity = n));
        read("KAFKA_IDEMPOTENCY_POOL_SIZE", &mut |v| parse_num(v).map(|n| pool_size = n));
        read("KAFKA_IDEMPOTENCY_STORE", &mut |v| {
            config.idempotency = IdempotencySetting::parse(v, capacity, pool_size)?;
            Ok(())
        });
        read("KAFKA_ENABLED", &mut |v| parse_bool(v).map(|b| config.enabled = b));
        read("KAFKA_STARTUP_TIMEOUT", &mut |v| parse_duration(v).map(|d| config.startup_timeout = d));
        for (var, property) in SECURITY_VARS {
            if let Some(value) = get(var) {
                config.client_properties.insert((*property).to_string(), value);
            }
        }
        for (name, value) in &vars {
            let value = value.trim().to_string();
            if let Some(property) = name.strip_prefix("KAFKA_CONSUMER_") {
                config.consumer_properties.insert(property_name(property), value);
            } else if let Some(property) = name.strip_prefix("KAFKA_PRODUCER_") {
                config.producer_properties.insert(property_name(property), value);
            } else if let Some(property) = name.strip_prefix("KAFKA_CLIENT_").filter(|p| *p != "ID") {
                config.client_properties.insert(property_name(property), value);
            }
        }
        config.read_problems = problems;
        (config, looked_up.into_inner())
    }

    /// Checks every setting and returns all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = self.read_problems.clone();
        let mut problem = |key: &str, reason: String| problems.push(ConfigProblem::new(key, reason));
        match &self.brokers {
            None if self.profile == Profile::Production => {
                problem("KAFKA_BROKERS", "required in the production profile (comma-separated `host:port`)".into())
            }
            None => {}
            Some(brokers) => {
                for broker in brokers.split(',').map(str::trim) {
                    let valid = broker
                        .rsplit_once(':')
                        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
                    if !valid {
                        problem("KAFKA_BROKERS", format!("`{broker}` is not `host:port`"));
                    }
                }
            }
        }
        match self.service_name.as_deref() {
            None | Some("") => {
                problem("SERVICE_NAME", "required: it names the consumer groups (`${SERVICE_NAME}-main`)".into())
            }
            Some(name) => {
                if let Err(reason) = check_topic_name(name) {
                    problem("SERVICE_NAME", reason.replace("topic name", "service name"));
                } else if let Err(reason) = check_group_id(&main_group(name)) {
                    problem("SERVICE_NAME", reason);
                }
            }
        }
        if self.client_id.as_deref() == Some("") {
            problem("KAFKA_CLIENT_ID", "must not be empty".into());
        }
        if !self.topic_prefix.is_empty() {
            if let Err(reason) = check_topic_name(&self.topic_prefix) {
                problem("KAFKA_TOPIC_PREFIX", reason.replace("topic name", "prefix"));
            }
        }
        if let Err(reason) = check_topic_name(&self.dlq_suffix) {
            problem("KAFKA_DLQ_SUFFIX", reason.replace("topic name", "suffix"));
        }
        if let Err(reason) = check_topic_name(&self.retry_suffix) {
            problem("KAFKA_RETRY_SUFFIX", reason.replace("topic name", "suffix"));
        } else if self.retry_suffix == self.dlq_suffix {
            problem("KAFKA_RETRY_SUFFIX", format!("`{}` is also the dead-letter suffix", self.retry_suffix));
        }
        if self.topic_partitions < 1 {
            problem("KAFKA_TOPIC_PARTITIONS", format!("must be at least 1, got {}", self.topic_partitions));
        }
        if self.topic_replication < 1 && self.topic_replication != -1 {
            problem(
                "KAFKA_TOPIC_REPLICATION_FACTOR",
                format!("must be at least 1 (or -1 for the broker default), got {}", self.topic_replication),
            );
        }
        if !matches!(self.auto_offset_reset.as_str(), "earliest" | "latest") {
            problem("KAFKA_AUTO_OFFSET_RESET", format!("`{}` is not `earliest` or `latest`", self.auto_offset_reset));
        }
        if self.commit_interval.is_zero() || self.commit_interval > Duration::from_secs(3600) {
            problem(
                "KAFKA_COMMIT_INTERVAL",
                format!("must be between 1ms and 1h, got {}", humantime::format_duration(self.commit_interval)),
            );
        }
        if self.handler_timeout.is_some_and(|t| t.is_zero()) {
            problem("KAFKA_HANDLER_TIMEOUT", "must be longer than 0 (leave it unset for no limit)".into());
        }
        if self.partition_buffer == 0 {
            problem("KAFKA_PARTITION_BUFFER", "must be at least 1".into());
        }
        if self.max_buffered == 0 {
            problem("KAFKA_MAX_BUFFERED", "must be at least 1".into());
        }
        self.check_security(&mut problem);
        if let Some(policy) = &self.cleanup_policy {
            if !matches!(policy.as_str(), "delete" | "compact" | "compact,delete" | "delete,compact") {
                problem(
                    "KAFKA_TOPIC_CLEANUP_POLICY",
                    format!("`{policy}` is not `delete`, `compact` or `compact,delete`"),
                );
            }
        }
        if self.circuit_failures > 0 && self.circuit_reset.is_zero() {
            problem("KAFKA_CIRCUIT_RESET", "must be longer than 0 when KAFKA_CIRCUIT_FAILURES is set".into());
        }
        if self.lag_interval.is_zero() {
            problem("KAFKA_EVENTS_LAG_INTERVAL", "must be longer than 0".into());
        }
        if self.lag_threshold < 0 {
            problem("KAFKA_EVENTS_LAG_THRESHOLD", format!("must be 0 (off) or more, got {}", self.lag_threshold));
        }
        for reason in self.default_retry.problems() {
            problem("KAFKA_RETRY_*", reason);
        }
        match &self.idempotency {
            IdempotencySetting::Memory { capacity: 0 } => {
                problem("KAFKA_IDEMPOTENCY_CAPACITY", "must be at least 1".into())
            }
            IdempotencySetting::Postgres { pool_size: 0, .. } => {
                problem("KAFKA_IDEMPOTENCY_POOL_SIZE", "must be at least 1".into())
            }
            #[cfg(not(feature = "postgres"))]
            IdempotencySetting::Postgres { .. } => problem(
                "KAFKA_IDEMPOTENCY_STORE",
                "a PostgreSQL store needs the `postgres` feature of kafka-events".into(),
            ),
            _ => {}
        }
        if self.handlers.as_ref().is_some_and(|h| h.is_empty()) {
            problem("KAFKA_EVENTS_HANDLERS", "names no handler".into());
        }
        for (key, value) in &self.consumer_properties {
            if key == "enable.auto.commit" && value != "false" {
                problem("consumer property `enable.auto.commit`", "auto-commit would commit messages that were received but not processed; the runtime commits finished offsets itself".into());
            }
            if self.group_protocol == GroupProtocol::Consumer && GroupProtocol::CLASSIC_ONLY.contains(&key.as_str()) {
                problem(
                    &format!("consumer property `{key}`"),
                    "not used with KAFKA_GROUP_PROTOCOL=consumer: the broker decides it (`group.consumer.*` broker settings); remove it or use the classic protocol".into(),
                );
            }
            if key == "group.protocol" {
                problem(
                    "consumer property `group.protocol`",
                    "set KAFKA_GROUP_PROTOCOL (or `Config::with_group_protocol`) instead".into(),
                );
            }
        }
        Problems::check(problems)
    }

    /// Where `idempotent` handlers record processed events: `memory` or a `postgres://` URL, as
    /// `KAFKA_IDEMPOTENCY_STORE` takes it. A value it cannot read is reported by
    /// [`validate`](Self::validate).
    pub fn with_idempotency(mut self, store: &str) -> Self {
        match IdempotencySetting::parse(store, setting::DEFAULT_CAPACITY, setting::DEFAULT_POOL_SIZE) {
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

    /// Where `idempotent` handlers record processed events.
    pub(crate) fn idempotency(&self) -> &IdempotencySetting {
        &self.idempotency
    }

    /// Sets the service name (it names the consumer groups).
    pub fn with_service_name(mut self, service: impl Into<String>) -> Self {
        self.service_name = Some(service.into());
        self
    }
    /// Sets the brokers (comma-separated `host:port`).
    pub fn with_brokers(mut self, brokers: impl Into<String>) -> Self {
        self.brokers = Some(brokers.into());
        self
    }
    /// Sets the librdkafka `client.id`.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }
    /// Prepends `prefix` to every handler and publisher topic (e.g. `staging.`).
    pub fn with_topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.topic_prefix = prefix.into();
        self
    }
    /// Sets the dead-letter topic suffix (default `.dlq`).
    pub fn with_dlq_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.dlq_suffix = suffix.into();
        self
    }
    /// Sets the retry topic suffix (default `.retry`).
    pub fn with_retry_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.retry_suffix = suffix.into();
        self
    }
    /// Whether missing handler and DLQ topics are created at start-up.
    pub fn with_topic_provisioning(mut self, provision: bool) -> Self {
        self.provision_topics = provision;
        self
    }
    /// Partitions and replication factor of provisioned topics.
    pub fn with_topic_layout(mut self, partitions: i32, replication_factor: i32) -> Self {
        self.topic_partitions = partitions;
        self.topic_replication = replication_factor;
        self
    }
    /// `retention.ms` of created handler, retry and dead-letter topics (`None`: broker default).
    pub fn with_retention(mut self, topic: Option<Duration>, retry: Option<Duration>, dlq: Option<Duration>) -> Self {
        self.topic_retention = topic;
        self.retry_retention = retry;
        self.dlq_retention = dlq;
        self
    }
    /// The consumer group protocol. Choosing [`GroupProtocol::Consumer`] drops the consumer
    /// properties that protocol leaves to the broker (`session.timeout.ms`,
    /// `heartbeat.interval.ms`, `partition.assignment.strategy`) set so far, such as the
    /// production profile's session timeout; setting one of them afterwards is a configuration
    /// error.
    pub fn with_group_protocol(mut self, protocol: GroupProtocol) -> Self {
        self.group_protocol = protocol;
        if protocol == GroupProtocol::Consumer {
            self.consumer_properties.retain(|key, _| !GroupProtocol::CLASSIC_ONLY.contains(&key.as_str()));
        }
        self
    }
    /// Where a new consumer group starts: `earliest` or `latest`.
    pub fn with_auto_offset_reset(mut self, reset: impl Into<String>) -> Self {
        self.auto_offset_reset = reset.into();
        self
    }
    /// How often finished offsets are committed.
    pub fn with_commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }
    /// How many messages one partition may hold (polled, not yet finished) before it is paused.
    pub fn with_partition_buffer(mut self, messages: usize) -> Self {
        self.partition_buffer = messages;
        self
    }
    /// How many messages one consumer group member may hold across its partitions before all of
    /// them are paused.
    pub fn with_max_buffered(mut self, messages: usize) -> Self {
        self.max_buffered = messages;
        self
    }
    /// Serves `/health/live`, `/health/ready` and `/metrics` on `addr` (port 0: any free port;
    /// see [`Runtime::http_addr`](crate::runtime::Runtime::http_addr)).
    pub fn with_http(mut self, addr: std::net::SocketAddr) -> Self {
        self.http = Some(addr);
        self
    }
    /// A poll thread silent for longer than this is not live.
    pub fn with_poll_timeout(mut self, timeout: Duration) -> Self {
        self.poll_timeout = timeout;
        self
    }
    /// How long the main group may have no assignment and still be ready.
    pub fn with_startup_grace(mut self, grace: Duration) -> Self {
        self.startup_grace = grace;
        self
    }
    /// How often consumer lag is measured, and the per-partition lag over which the runtime is
    /// not ready (0: never).
    pub fn with_lag_monitor(mut self, interval: Duration, threshold: i64) -> Self {
        self.lag_interval = interval;
        self.lag_threshold = threshold;
        self
    }
    /// How long a partition with lag may go without its committed offset moving before the
    /// runtime reports it and is not ready (`Duration::ZERO`: never).
    pub fn with_progress_timeout(mut self, timeout: Duration) -> Self {
        self.progress_timeout = timeout;
        self
    }
    /// A circuit breaker for every handler without `circuit(...)` (`failures = 0`: none).
    pub fn with_circuit(mut self, failures: u32, reset: Duration) -> Self {
        self.circuit_failures = failures;
        self.circuit_reset = reset;
        self
    }
    /// Sets a librdkafka property on every client (consumers, producer, admin), e.g. security.
    pub fn with_client_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.client_properties.insert(key.into(), value.into());
        self
    }
    /// `cleanup.policy` of created handler topics (`delete`, `compact`, `compact,delete`).
    pub fn with_topic_cleanup_policy(mut self, policy: impl Into<String>) -> Self {
        self.cleanup_policy = Some(policy.into());
        self
    }
    /// How long start-up waits for a broker to answer.
    pub fn with_startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }
    /// `false` (`KAFKA_ENABLED=false`): [`runtime::start`](crate::runtime::start) starts nothing.
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }
    /// How long shutdown waits for in-flight messages.
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }
    /// The time limit of one call of handlers without `timeout = "..."` (`None`: no limit, the
    /// default). A call over it is cancelled — its future dropped at its next `.await` — and
    /// counts as a retryable failure of kind `timeout`.
    pub fn with_handler_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.handler_timeout = timeout;
        self
    }
    /// Retry policy of handlers without `retry(...)`, and defaults for unset `retry` fields.
    pub fn with_default_retry(mut self, policy: RetryPolicy) -> Self {
        self.default_retry = policy;
        self
    }
    /// Runs only the named handlers (fn name or `module::path::fn_name`).
    pub fn with_handlers<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.handlers = Some(names.into_iter().map(Into::into).collect());
        self
    }
    /// Passes a librdkafka property to the consumers (applied last, so it overrides the runtime's).
    pub fn with_consumer_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.consumer_properties.insert(key.into(), value.into());
        self
    }
    /// Passes a librdkafka property to the producer and the admin client.
    pub fn with_producer_property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.producer_properties.insert(key.into(), value.into());
        self
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

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("`{value}` is not a boolean (true/false)")),
    }
}

impl Config {
    /// Security settings that cannot work: unknown protocol or mechanism, SASL without
    /// credentials, certificate files that do not exist.
    fn check_security(&self, problem: &mut dyn FnMut(&str, String)) {
        let get = |p: &str| self.client_properties.get(p).map(String::as_str);
        let protocol = get("security.protocol").map(str::to_ascii_uppercase);
        if let Some(protocol) = &protocol {
            if !matches!(protocol.as_str(), "PLAINTEXT" | "SSL" | "SASL_PLAINTEXT" | "SASL_SSL") {
                problem(
                    "KAFKA_SECURITY_PROTOCOL",
                    format!("`{protocol}` is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
                );
            }
        }
        let sasl = protocol.as_deref().is_some_and(|p| p.starts_with("SASL"));
        match get("sasl.mechanism").map(str::to_ascii_uppercase) {
            Some(m) if !matches!(m.as_str(), "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") => {
                problem("KAFKA_SASL_MECHANISM", format!("`{m}` is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))
            }
            None if sasl => problem("KAFKA_SASL_MECHANISM", "required with a SASL security protocol".into()),
            _ => {}
        }
        if sasl {
            for (var, property) in [("KAFKA_SASL_USERNAME", "sasl.username"), ("KAFKA_SASL_PASSWORD", "sasl.password")]
            {
                if get(property).is_none_or(str::is_empty) {
                    problem(var, "required with a SASL security protocol".into());
                }
            }
        }
        for (var, property) in SECURITY_VARS.iter().filter(|(_, p)| p.ends_with(".location")) {
            if let Some(path) = get(property) {
                if !std::path::Path::new(path).is_file() {
                    problem(var, format!("`{path}` is not a readable file"));
                }
            }
        }
    }
}

/// Security variables and the librdkafka property each sets on every client.
const SECURITY_VARS: &[(&str, &str)] = &[
    ("KAFKA_SECURITY_PROTOCOL", "security.protocol"),
    ("KAFKA_SASL_MECHANISM", "sasl.mechanism"),
    ("KAFKA_SASL_USERNAME", "sasl.username"),
    ("KAFKA_SASL_PASSWORD", "sasl.password"),
    ("KAFKA_SSL_CA_LOCATION", "ssl.ca.location"),
    ("KAFKA_SSL_CERTIFICATE_LOCATION", "ssl.certificate.location"),
    ("KAFKA_SSL_KEY_LOCATION", "ssl.key.location"),
    ("KAFKA_SSL_KEY_PASSWORD", "ssl.key.password"),
];

/// `SESSION_TIMEOUT_MS` → `session.timeout.ms`.
fn property_name(var_suffix: &str) -> String {
    var_suffix.to_ascii_lowercase().replace('_', ".")
}

/// The settings of a TOML config file as variables: top-level keys are variable names (any
/// case); `[consumer]`, `[producer]` and `[client]` hold librdkafka properties.
fn file_vars(table: &toml::Table, file: &str, problems: &mut Vec<ConfigProblem>) -> Vec<(String, String)> {
    let scalar = |value: &toml::Value| match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(x) => Some(x.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Datetime(d) => Some(d.to_string()),
        toml::Value::Array(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|i| match i {
                    toml::Value::String(s) => Some(s.clone()),
                    toml::Value::Integer(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect();
            parts.map(|p| p.join(","))
        }
        toml::Value::Table(_) => None,
    };
    let mut vars = Vec::new();
    for (key, value) in table {
        match (key.to_ascii_lowercase().as_str(), value) {
            (section @ ("consumer" | "producer" | "client"), toml::Value::Table(properties)) => {
                for (property, value) in properties {
                    match scalar(value) {
                        Some(v) => vars.push((
                            format!(
                                "KAFKA_{}_{}",
                                section.to_ascii_uppercase(),
                                property.replace('.', "_").to_ascii_uppercase()
                            ),
                            v,
                        )),
                        None => problems.push(ConfigProblem::new(
                            &format!("{file}: [{section}] {property}"),
                            "must be a string, number or boolean",
                        )),
                    }
                }
            }
            (_, value) => match scalar(value) {
                Some(v) => vars.push((key.to_ascii_uppercase(), v)),
                None => problems.push(ConfigProblem::new(
                    &format!("{file}: {key}"),
                    "must be a string, number, boolean or array (tables only for [consumer], [producer], [client])",
                )),
            },
        }
    }
    vars
}

fn parse_num<N: std::str::FromStr>(value: &str) -> Result<N, String> {
    value.parse().map_err(|_| format!("`{value}` is not a valid number"))
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|e| format!("`{value}` is not a duration like `500ms` or `2s`: {e}"))
}

/// One configuration problem: which setting, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The environment variable (or setting) at fault.
    pub key: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

impl ConfigProblem {
    fn new(key: &str, reason: impl Into<String>) -> Self {
        Self { key: key.into(), reason: reason.into() }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

impl Problem for ConfigProblem {
    const HEADING: &'static str = "invalid configuration";
}

/// The configuration is invalid; every problem is listed.
pub type ConfigError = Problems<ConfigProblem>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_variable_is_named_in_one_error() {
        let config = Config::from_vars([
            ("KAFKA_EVENTS_PROFILE", "production"),
            ("KAFKA_TOPIC_PARTITIONS", "three"),
            ("KAFKA_COMMIT_INTERVAL", "soon"),
            ("KAFKA_RETRY_BACKOFF", "random"),
            ("KAFKA_AUTO_OFFSET_RESET", "middle"),
            ("KAFKA_PROVISION_TOPICS", "maybe"),
        ]);
        let err = config.validate().unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "KAFKA_PROVISION_TOPICS",
                "KAFKA_TOPIC_PARTITIONS",
                "KAFKA_COMMIT_INTERVAL",
                "KAFKA_RETRY_BACKOFF",
                "KAFKA_BROKERS",
                "SERVICE_NAME",
                "KAFKA_AUTO_OFFSET_RESET"
            ],
            "{err}"
        );
        assert!(err.to_string().starts_with("invalid configuration (7 problems):"), "{err}");
    }

    #[test]
    fn development_from_env_defaults() {
        let config = Config::from_vars([("SERVICE_NAME", "orders"), ("KAFKA_BROKERS", "127.0.0.1:9092,kafka-2:9093")]);
        config.validate().unwrap();
        assert_eq!(config.profile(), Profile::Development);
        assert_eq!(config.client_id(), "orders");
        assert_eq!(config.brokers(), Some("127.0.0.1:9092,kafka-2:9093"));
        assert!(config.provision_topics());
        let embedded = Config::from_vars(Vec::<(String, String)>::new());
        embedded.validate().unwrap();
        assert_eq!(embedded.brokers(), None);
        assert_eq!(embedded.service_name(), "kafka-events-dev");
    }

    #[test]
    fn bad_brokers_and_auto_commit_are_refused() {
        let err = Config::development("svc")
            .with_brokers("localhost,:9092,host:99999")
            .with_consumer_property("enable.auto.commit", "true")
            .validate()
            .unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
        assert!(err.to_string().contains("`localhost` is not `host:port`"));
        assert!(err.to_string().contains("auto-commit would commit"));
    }

    #[test]
    fn service_names_that_make_dynamic_group_ids_are_refused() {
        for service in ["dlq-reprocess-1700000000000", "orders-6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"] {
            let err = Config::development(service).validate().unwrap_err();
            assert_eq!(err.problems.len(), 1, "{err}");
            assert_eq!(err.problems[0].key, "SERVICE_NAME");
            assert!(err.problems[0].reason.contains("group ids must be static"), "{err}");
        }
        let err = Config::from_vars([("KAFKA_EVENTS_PROFILE", "production"), ("KAFKA_BROKERS", "k:9092")])
            .validate()
            .unwrap_err();
        assert_eq!(err.problems[0].key, "SERVICE_NAME", "production requires SERVICE_NAME: {err}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let config = Config::development("svc").with_producer_property("sasl.password", "hunter2");
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("[redacted]"));
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn write_file(text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("kafka-events-config-{}.toml", fastrand::u64(..)));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn file_then_environment_then_builder() {
        let path = write_file(
            r#"
            SERVICE_NAME = "orders"
            KAFKA_BROKERS = ["kafka-1:9092", "kafka-2:9092"]
            kafka_commit_interval = "2s"
            KAFKA_TOPIC_PARTITIONS = 6
            KAFKA_PROVISION_TOPICS = false

            [consumer]
            "session.timeout.ms" = 20000

            [producer]
            "linger.ms" = 10
            "#,
        );
        let env = vars(&[("KAFKA_COMMIT_INTERVAL", "500ms"), ("KAFKA_PRODUCER_LINGER_MS", "1"), ("HOME", "/root")]);
        let config = Config::from_sources(Some(&path), env).with_partition_buffer(42);
        config.validate().expect("valid");
        assert_eq!(config.service_name(), "orders", "from the file");
        assert_eq!(config.brokers(), Some("kafka-1:9092,kafka-2:9092"), "arrays are joined");
        assert_eq!(config.commit_interval(), Duration::from_millis(500), "the environment wins over the file");
        assert_eq!(config.topic_partitions(), 6);
        assert!(!config.provision_topics());
        assert_eq!(config.consumer_properties()["session.timeout.ms"], "20000");
        assert_eq!(config.producer_properties()["linger.ms"], "1", "environment over file for properties too");
        assert_eq!(config.partition_buffer(), 42, "builder methods override both");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_bad_config_file_is_named_with_every_problem() {
        let path =
            write_file("SERVICE_NAME = \"orders\"\nKAFKA_BROKRES = \"kafka:9092\"\nKAFKA_COMMIT_INTERVAL = \"soon\"\n");
        let err = Config::from_sources(Some(&path), vec![]).validate().unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert!(keys.contains(&"KAFKA_BROKRES"), "a typo is an unknown setting: {err}");
        assert!(keys.contains(&"KAFKA_COMMIT_INTERVAL"), "{err}");
        let missing = Config::from_sources(Some(std::path::Path::new("/nonexistent/kafka.toml")), vec![]);
        let err = missing.validate().unwrap_err();
        assert!(err.problems[0].key.starts_with("KAFKA_EVENTS_CONFIG"), "{err}");
        assert!(err.to_string().contains("cannot read it"), "{err}");
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn security_settings_are_checked_and_secrets_never_shown() {
        let config = Config::from_vars(vars(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-1"),
            ("KAFKA_SASL_USERNAME", "svc"),
            ("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem"),
        ]));
        let err = config.validate().unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["KAFKA_SASL_MECHANISM", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CA_LOCATION"], "{err}");

        let config = Config::from_vars(vars(&[
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "svc"),
            ("KAFKA_SASL_PASSWORD", "s3cr3t-value"),
        ]));
        config.validate().expect("valid");
        assert_eq!(config.client_properties()["sasl.mechanism"], "SCRAM-SHA-512");
        assert!(!format!("{config:?}").contains("s3cr3t-value"), "{config:?}");
    }

    #[test]
    fn the_consumer_group_protocol_leaves_session_and_assignment_to_the_broker() {
        let production =
            [("KAFKA_EVENTS_PROFILE", "production"), ("SERVICE_NAME", "orders"), ("KAFKA_BROKERS", "k:9092")];
        let classic = Config::from_vars(vars(&production));
        assert_eq!(classic.group_protocol(), GroupProtocol::Classic);
        assert_eq!(classic.consumer_properties()["session.timeout.ms"], "30000");
        let mut with_consumer = production.to_vec();
        with_consumer.push(("KAFKA_GROUP_PROTOCOL", "consumer"));
        let consumer = Config::from_vars(vars(&with_consumer));
        assert_eq!(consumer.group_protocol(), GroupProtocol::Consumer);
        assert!(!consumer.consumer_properties().contains_key("session.timeout.ms"), "the profile's default is dropped");
        consumer.validate().expect("valid");
        with_consumer.push(("KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS", "500"));
        let err = Config::from_vars(vars(&with_consumer)).validate().unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].key, "consumer property `heartbeat.interval.ms`");
        assert!(err.problems[0].reason.contains("the broker decides it"), "{err}");
        let err = Config::from_vars(vars(&[("KAFKA_GROUP_PROTOCOL", "eager")])).validate().unwrap_err();
        assert_eq!(
            (err.problems[0].key.as_str(), err.problems[0].reason.as_str()),
            ("KAFKA_GROUP_PROTOCOL", "`eager` is not `classic` or `consumer`")
        );
    }

    #[test]
    fn production_has_the_seed_defaults_and_kafka_can_be_disabled() {
        let config = Config::production("orders", "kafka:9092");
        assert_eq!(config.producer_properties()["compression.type"], "snappy");
        assert_eq!(config.producer_properties()["linger.ms"], "5");
        assert_eq!(config.consumer_properties()["session.timeout.ms"], "30000");
        assert!(!Config::from_vars(vars(&[("KAFKA_ENABLED", "false")])).enabled());
        let err = Config::from_vars(vars(&[("KAFKA_ENABLED", "perhaps")])).validate().unwrap_err();
        assert_eq!(err.problems[0].key, "KAFKA_ENABLED");
    }
}
