//! Validation: every problem of a configuration, at once.

use std::time::Duration;

use super::problem::{ConfigError, ConfigProblem};
use super::settings::{GroupProtocol, Profile, SECURITY_VARS};
use super::Config;
use crate::idempotency::IdempotencySetting;
use crate::names::{check_group_id, check_topic_name, main_group};
use crate::problems::Problems;

impl Config {
    /// Checks every setting and returns all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = self.read_problems.clone();
        let mut problem = |key: &str, reason: String| problems.push(ConfigProblem::new(key, reason));
        match &self.settings.brokers {
            None if self.settings.profile == Profile::Production => {
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
        match self.settings.service_name.as_deref() {
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
        if self.settings.client_id.as_deref() == Some("") {
            problem("KAFKA_CLIENT_ID", "must not be empty".into());
        }
        if !self.settings.topic_prefix.is_empty() {
            if let Err(reason) = check_topic_name(&self.settings.topic_prefix) {
                problem("KAFKA_TOPIC_PREFIX", reason.replace("topic name", "prefix"));
            }
        }
        if let Err(reason) = check_topic_name(&self.settings.dlq_suffix) {
            problem("KAFKA_DLQ_SUFFIX", reason.replace("topic name", "suffix"));
        }
        if let Err(reason) = check_topic_name(&self.settings.retry_suffix) {
            problem("KAFKA_RETRY_SUFFIX", reason.replace("topic name", "suffix"));
        } else if self.settings.retry_suffix == self.settings.dlq_suffix {
            problem("KAFKA_RETRY_SUFFIX", format!("`{}` is also the dead-letter suffix", self.settings.retry_suffix));
        }
        if self.settings.topic_partitions < 1 {
            problem("KAFKA_TOPIC_PARTITIONS", format!("must be at least 1, got {}", self.settings.topic_partitions));
        }
        if self.settings.topic_replication < 1 && self.settings.topic_replication != -1 {
            problem(
                "KAFKA_TOPIC_REPLICATION_FACTOR",
                format!("must be at least 1 (or -1 for the broker default), got {}", self.settings.topic_replication),
            );
        }
        if !matches!(self.settings.auto_offset_reset.as_str(), "earliest" | "latest") {
            problem(
                "KAFKA_AUTO_OFFSET_RESET",
                format!("`{}` is not `earliest` or `latest`", self.settings.auto_offset_reset),
            );
        }
        if self.settings.commit_interval.is_zero() || self.settings.commit_interval > Duration::from_secs(3600) {
            problem(
                "KAFKA_COMMIT_INTERVAL",
                format!(
                    "must be between 1ms and 1h, got {}",
                    humantime::format_duration(self.settings.commit_interval)
                ),
            );
        }
        if self.settings.handler_timeout.is_some_and(|t| t.is_zero()) {
            problem("KAFKA_HANDLER_TIMEOUT", "must be longer than 0 (leave it unset for no limit)".into());
        }
        if self.settings.partition_buffer == 0 {
            problem("KAFKA_PARTITION_BUFFER", "must be at least 1".into());
        }
        if self.settings.max_buffered == 0 {
            problem("KAFKA_MAX_BUFFERED", "must be at least 1".into());
        }
        self.check_security(&mut problem);
        if let Some(policy) = &self.settings.cleanup_policy {
            if kafka_events_rules::cleanup_policy(policy).is_none() {
                problem("KAFKA_TOPIC_CLEANUP_POLICY", format!("`{policy}` {}", super::values::NOT_A_CLEANUP_POLICY));
            }
        }
        if self.settings.circuit_failures > 0 && self.settings.circuit_reset.is_zero() {
            problem("KAFKA_CIRCUIT_RESET", "must be longer than 0 when KAFKA_CIRCUIT_FAILURES is set".into());
        }
        if self.settings.lag_interval.is_zero() {
            problem("KAFKA_EVENTS_LAG_INTERVAL", "must be longer than 0".into());
        }
        if self.settings.lag_threshold < 0 {
            problem(
                "KAFKA_EVENTS_LAG_THRESHOLD",
                format!("must be 0 (off) or more, got {}", self.settings.lag_threshold),
            );
        }
        for reason in self.settings.retry().problems() {
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
        if self.settings.handlers.as_ref().is_some_and(|h| h.is_empty()) {
            problem("KAFKA_EVENTS_HANDLERS", "names no handler".into());
        }
        for (key, value) in &self.settings.consumer.0 {
            if key == "enable.auto.commit" && value != "false" {
                problem("consumer property `enable.auto.commit`", "auto-commit would commit messages that were received but not processed; the runtime commits finished offsets itself".into());
            }
            if self.settings.group_protocol == GroupProtocol::Consumer
                && GroupProtocol::CLASSIC_ONLY.contains(&key.as_str())
            {
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
}

impl Config {
    /// Security settings that cannot work: unknown protocol or mechanism, SASL without
    /// credentials, certificate files that do not exist.
    fn check_security(&self, problem: &mut dyn FnMut(&str, String)) {
        let get = |p: &str| self.settings.client.0.get(p).map(String::as_str);
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
