//! Reading settings from the environment and from a TOML file (`KAFKA_EVENTS_CONFIG`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::validate::{ConfigError, ConfigProblem};
use super::{Config, GroupProtocol, Profile, DEV_SERVICE_NAME, SECURITY_VARS};
use crate::idempotency::{setting, IdempotencySetting};
use crate::retry::{Backoff, RetryMode};

impl Config {
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
    pub(super) fn read_vars<K: AsRef<str>, V: Into<String>>(
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
        read("KAFKA_TOPIC_CLEANUP_POLICY", &mut |v| match kafka_events_rules::cleanup_policy(v) {
            Some(policy) => {
                config.cleanup_policy = Some(policy);
                Ok(())
            }
            None => Err(super::validate::not_a_cleanup_policy(v)),
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
        read("KAFKA_EVENTS_DESCRIBE", &mut |v| {
            crate::describe_format::DescribeFormat::parse(v)
                .map(|f| config.describe = Some(f))
                .ok_or_else(|| format!("`{v}` is not `json` or `asyncapi`"))
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
}

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

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("`{value}` is not a boolean (true/false)")),
    }
}

fn parse_num<N: std::str::FromStr>(value: &str) -> Result<N, String> {
    value.parse().map_err(|_| format!("`{value}` is not a valid number"))
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|e| format!("`{value}` is not a duration like `500ms` or `2s`: {e}"))
}
