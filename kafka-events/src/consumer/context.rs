//! A member's consumer context — the type parameter of its consumer and partition queues, at
//! the bottom of the member's modules: librdkafka's logs and errors, and the rebalance hooks,
//! which it hands to the member ([`Hooks`], implemented by the member's shared state) so that
//! everything a queue or the consumer's type needs stays below the lanes and the member.

use std::sync::{Arc, OnceLock};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::ClientContext;

use super::liveness::Liveness;
use crate::client_context::log_to_tracing;
use crate::sync::contain;

/// A member's consumer.
pub(crate) type MemberConsumer = BaseConsumer<GroupContext>;

/// What a rebalance does to the member, around rust-rdkafka's (un)assignment.
pub(crate) trait Hooks: Send + Sync {
    /// Before: split assigned partitions' queues off; revoked lanes finish and commit.
    fn before(&self, consumer: &MemberConsumer, rebalance: &Rebalance<'_>);
    /// After: start the assigned partitions' lanes.
    fn after(&self, consumer: &MemberConsumer, rebalance: &Rebalance<'_>);
}

pub(crate) struct GroupContext {
    pub(crate) group: String,
    pub(crate) liveness: Arc<Liveness>,
    /// Set once, before the consumer subscribes (rebalances are served only by its polls).
    pub(crate) hooks: OnceLock<Arc<dyn Hooks>>,
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_to_tracing(level, fac, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) {
            self.liveness.broker_unreachable();
        }
        contain(|| tracing::warn!(target: "librdkafka", group = %self.group, %error, "{reason}"));
    }
}

/// Both hooks run in [`contain`]: whatever a log line does (see [`crate::sync`]), rust-rdkafka
/// then completes the (un)assignment, and the revocation that closing the consumer serves ends.
/// Each hook does its work before it logs.
impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Some(hooks) = self.hooks.get() {
            contain(|| hooks.before(consumer, rebalance));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Some(hooks) = self.hooks.get() {
            contain(|| hooks.after(consumer, rebalance));
        }
    }
}
