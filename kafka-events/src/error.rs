//! The runtime's top-level error.

use rdkafka::error::KafkaError;

use crate::config::ConfigError;
use crate::problems::{Problem, Problems};
use crate::registry::TopologyError;

/// Why the runtime could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid; every problem is listed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The handlers do not form a valid topology; every problem is listed with its site.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// A Kafka client could not be created or a broker operation failed.
    #[error("kafka {context}: {source}")]
    Kafka {
        /// What the runtime was doing.
        context: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// Topics could not be provisioned; every problem is listed.
    #[error(transparent)]
    Provisioning(#[from] Problems<ProvisioningProblem>),
    /// Installing the signal handlers failed.
    #[error("could not listen for shutdown signals: {0}")]
    Signal(#[source] std::io::Error),
    /// The brokers refused our credentials (SASL) or TLS handshake: no retry can fix it.
    #[error("the brokers at {brokers} refused authentication: {reason}; {}", auth_hint(.reason))]
    Authentication {
        /// `bootstrap.servers`.
        brokers: String,
        /// librdkafka's error.
        reason: String,
    },
    /// No broker answered within `KAFKA_STARTUP_TIMEOUT`.
    #[error("no broker at {brokers} answered within {}: {reason}", humantime::format_duration(*.waited))]
    Unreachable {
        /// `bootstrap.servers`.
        brokers: String,
        /// How long start-up tried.
        waited: std::time::Duration,
        /// The last error.
        reason: String,
    },
    /// `KAFKA_ENABLED=false`: [`launch`](crate::runtime::launch) starts nothing.
    /// ([`start`](crate::runtime::start) logs it and returns `Ok`.)
    #[error("Kafka is disabled (KAFKA_ENABLED=false): no consumer or producer was started")]
    Disabled,
    /// The HTTP endpoint could not listen (`KAFKA_EVENTS_HTTP`).
    #[error("the HTTP endpoint cannot listen on {addr}: {source}")]
    Http {
        /// The address it was given.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The idempotency store (`KAFKA_IDEMPOTENCY_STORE`) could not be opened or migrated.
    #[error(transparent)]
    Idempotency(crate::idempotency::StoreError),
    /// The consumer thread ended abnormally.
    #[error("the consumer of group `{group}` stopped unexpectedly: {reason}")]
    Consumer {
        /// The consumer group.
        group: String,
        /// What happened.
        reason: String,
    },
}

/// One topic that could not be provisioned, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisioningProblem(pub String);

impl std::fmt::Display for ProvisioningProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Problem for ProvisioningProblem {
    const HEADING: &'static str = "could not provision topics";
}

impl Error {
    /// Topics could not be provisioned, for these reasons.
    pub(crate) fn provisioning(problems: impl IntoIterator<Item = String>) -> Self {
        Self::Provisioning(Problems { problems: problems.into_iter().map(ProvisioningProblem).collect() })
    }
}

/// What to check after an authentication failure: the TLS files when the TLS handshake failed
/// (librdkafka's `SSL` error), the SASL settings otherwise.
fn auth_hint(reason: &str) -> &'static str {
    if reason.contains("SSL") {
        "check KAFKA_SECURITY_PROTOCOL and KAFKA_SSL_CA_LOCATION (the CA that signed the brokers' certificates), KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION"
    } else {
        "check KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
    }
}

impl Error {
    pub(crate) fn kafka(context: impl Into<String>, source: KafkaError) -> Self {
        Self::Kafka { context: context.into(), source }
    }
}
