//! The context of the runtime's own librdkafka clients (producer, admin, transactional
//! producers): librdkafka's log lines and client errors into `tracing`, and the last
//! authentication failure, so start-up can stop at once with a clear error. A leaf module: the
//! publisher and the processor share it without reaching into `connection`.

use std::sync::Mutex;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::sync::{contain, lock};

/// Routes librdkafka's logs and client errors into `tracing`, and remembers an authentication
/// failure so that start-up can stop at once with a clear error instead of retrying.
#[derive(Debug, Clone, Default)]
pub struct TracingContext {
    auth_failure: std::sync::Arc<Mutex<Option<String>>>,
}

impl TracingContext {
    /// The last authentication (SASL or TLS handshake) failure librdkafka reported, if any.
    pub(crate) fn auth_failure(&self) -> Option<String> {
        lock(&self.auth_failure).clone()
    }
}

/// Errors no retry can fix: the broker refused who we are.
pub(crate) fn is_auth_failure(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Authentication
                | RDKafkaErrorCode::SaslAuthenticationFailed
                | RDKafkaErrorCode::UnsupportedSASLMechanism
                | RDKafkaErrorCode::IllegalSASLState
                | RDKafkaErrorCode::SSL
        )
    )
}

impl ClientContext for TracingContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_to_tracing(level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        if is_auth_failure(&error) {
            *lock(&self.auth_failure) = Some(format!("{error}: {reason}"));
        }
        contain(|| tracing::warn!(target: "librdkafka", %error, "{reason}"));
    }
}

/// librdkafka's log line as a `tracing` event. librdkafka calls this from C: a panic of the
/// subscriber's (see [`crate::sync`]) would abort the process, so it is contained.
pub(crate) fn log_to_tracing(level: RDKafkaLogLevel, fac: &str, message: &str) {
    contain(|| match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical | RDKafkaLogLevel::Error => {
            tracing::error!(target: "librdkafka", fac, "{message}")
        }
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => tracing::info!(target: "librdkafka", fac, "{message}"),
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
    });
}
