//! Publishing a message's outcome — its retry record or its dead letter — until the broker
//! acknowledges it, and never forever silently:
//!
//! - a transient failure (broker away, timeout, leader moving) is tried again with backoff
//!   (100 ms doubling to 30 s), the offset staying unfinished;
//! - a record the producer or broker refuses as too large gives way to the next form in its
//!   chain: a retry record to a dead letter, a dead letter to one without the original key,
//!   value and headers (the original stays readable in its topic until retention);
//! - a refusal no retry can fix (authorization, unknown topic, invalid record, or too large with
//!   no form left) holds the partition at the message, reported in `health().stalled` (kind
//!   `undeliverable`) and logged, and is tried again every 30 s: an operator may fix the ACL or
//!   create the topic, and the message then goes on.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{wait, Finish, Publishing};
use crate::client_context::TracingContext;
use crate::error_kind::ErrorKind;
use crate::health::HealthBoard;
use crate::metrics::{HandlerMetrics, Metrics};
use crate::received::Consumed;

/// A key up to this size stays on a dead letter published without its payload (it keeps the
/// dead letter on its key's partition); a larger one is dropped with the value.
const SMALL_KEY: usize = 1024;

/// The longest wait between two tries, and the wait after a refusal no retry can fix.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One form of an outcome record: where it goes, what it carries.
pub(crate) struct Outgoing {
    pub(crate) topic: String,
    /// `retry record`, `dead letter`, … (for logs).
    pub(crate) what: &'static str,
    /// The original key and value go with it; otherwise only a small key (see [`SMALL_KEY`]).
    pub(crate) with_payload: bool,
    pub(crate) headers: OwnedHeaders,
    /// Counted in `kafka_events_dead_lettered_total` with this kind once published: a dead
    /// letter that stands in for a retry record too large to publish (dead letters decided as
    /// such are counted when decided).
    pub(crate) counts_as: Option<(HandlerMetrics, ErrorKind)>,
}

/// The forms tried once every form of a chain was refused as too large, built only then from
/// the copy of the original message the publish keeps: a retry record's dead-letter forms, which
/// almost no retry needs.
pub(crate) type Fallback = Box<dyn FnOnce(&OwnedMessage) -> Vec<Outgoing> + Send>;

/// How the producer or broker refused a record, when no retry of the same record can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Larger than `message.max.bytes` (producer) or the topic's `max.message.bytes` (broker).
    TooLarge,
    /// Authorization, unknown or invalid topic, invalid record, policy: a person must act.
    Permanent,
}

/// Classifies a publish error; `None` for a transient one.
pub(crate) fn refusal(error: &KafkaError) -> Option<Refusal> {
    use RDKafkaErrorCode as C;
    match error.rdkafka_error_code()? {
        C::MessageSizeTooLarge | C::MessageBatchTooLarge | C::InvalidMessageSize => Some(Refusal::TooLarge),
        C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::UnknownTopic
        | C::UnknownTopicOrPartition
        | C::InvalidTopic
        | C::InvalidRecord
        | C::InvalidRequiredAcks
        | C::UnsupportedForMessageFormat
        | C::PolicyViolation => Some(Refusal::Permanent),
        _ => None,
    }
}

/// Publishes the first form of `chain` the broker accepts (see the module docs); resolves to
/// `Finished` once one is acknowledged, or `Interrupted` when `cancel` fires while it waits
/// (the offset then stays unfinished and the message is redelivered).
pub(crate) fn publish_durably(
    producer: FutureProducer<TracingContext>,
    status: Arc<HealthBoard>,
    metrics: Arc<Metrics>,
    message: &impl Consumed,
    chain: Vec<Outgoing>,
    mut then: Option<Fallback>,
    cancel: &CancellationToken,
) -> Publishing {
    let cancel = cancel.clone();
    // The publish outlives the message: a copy, and its headers when `then` may need them (a
    // shared copy; librdkafka's form is built only for `then`).
    let headers = then.as_ref().and_then(|_| message.copied_headers());
    let original = OwnedMessage::new(
        message.payload().map(<[u8]>::to_vec),
        message.key().map(<[u8]>::to_vec),
        message.topic().to_string(),
        message.timestamp(),
        message.partition(),
        message.offset(),
        None,
    );
    let publish = async move {
        let (key, payload) = (original.key(), original.payload());
        let (source_topic, source_partition, source_offset) =
            (original.topic(), original.partition(), original.offset());
        let mut chain = chain.into_iter();
        let Some(mut current) = chain.next() else { return Finish::Finished };
        let mut backoff = Duration::from_millis(100);
        let mut stalled = false;
        loop {
            // The headers go with the record; a refused record gives them back.
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&current.topic).headers(std::mem::take(&mut current.headers));
            let key = key.filter(|k| current.with_payload || k.len() <= SMALL_KEY);
            if let Some(key) = key {
                record = record.key(key);
            }
            if let (true, Some(payload)) = (current.with_payload, payload) {
                record = record.payload(payload);
            }
            let error = match producer.send(record, Duration::from_secs(30)).await {
                Ok(delivery) => {
                    tracing::debug!(
                        topic = %current.topic,
                        partition = delivery.partition,
                        offset = delivery.offset,
                        "{} published",
                        current.what
                    );
                    if let Some((metrics, kind)) = &current.counts_as {
                        metrics.dead_lettered(kind.as_str());
                    }
                    if stalled {
                        tracing::info!(topic = %current.topic, "{} published after all; the partition goes on", current.what);
                        status.clear_stall(source_topic, source_partition);
                    }
                    return Finish::Finished;
                }
                Err((error, mut refused)) => {
                    current.headers = refused.detach_headers().unwrap_or_default();
                    error
                }
            };
            metrics.delivery_failed(&current.topic);
            let refused = refusal(&error);
            if refused == Some(Refusal::TooLarge) {
                let mut next = chain.next();
                if next.is_none() {
                    if let Some(then) = then.take() {
                        let original = original.clone().replace_headers(headers.as_ref().map(crate::headers::owned));
                        chain = then(&original).into_iter();
                        next = chain.next();
                    }
                }
                if let Some(next) = next {
                    tracing::warn!(
                        topic = %current.topic,
                        %error,
                        payload_bytes = payload.map_or(0, <[u8]>::len),
                        "{} is larger than the producer or broker accepts; publishing {} to `{}` instead",
                        current.what,
                        next.what,
                        next.topic
                    );
                    current = next;
                    continue;
                }
            }
            match refused {
                None => {
                    tracing::error!(topic = %current.topic, %error, "{} publish failed; the offset stays unfinished, trying again", current.what);
                }
                Some(refused) => {
                    let reason = format!(
                        "its {} to `{}` cannot be published: {error} ({})",
                        current.what,
                        current.topic,
                        match refused {
                            Refusal::TooLarge => "too large, and no smaller form is left",
                            Refusal::Permanent => "the broker refuses it until someone fixes the cause",
                        }
                    );
                    tracing::error!(
                        topic = %source_topic,
                        partition = source_partition,
                        offset = source_offset,
                        "{reason}; the partition is held at this message and it is tried again every {}",
                        humantime::format_duration(MAX_BACKOFF)
                    );
                    status.stall(source_topic, source_partition, source_offset, ErrorKind::Undeliverable, &reason);
                    stalled = true;
                    backoff = MAX_BACKOFF;
                }
            }
            if !wait(backoff, &cancel).await {
                return Finish::Interrupted;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    };
    Box::pin(publish.in_current_span())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_errors_are_classified() {
        let produce = |code| KafkaError::MessageProduction(code);
        assert_eq!(refusal(&produce(RDKafkaErrorCode::MessageSizeTooLarge)), Some(Refusal::TooLarge));
        assert_eq!(refusal(&produce(RDKafkaErrorCode::TopicAuthorizationFailed)), Some(Refusal::Permanent));
        assert_eq!(refusal(&produce(RDKafkaErrorCode::UnknownTopicOrPartition)), Some(Refusal::Permanent));
        assert_eq!(refusal(&produce(RDKafkaErrorCode::MessageTimedOut)), None, "transient: tried again");
        assert_eq!(refusal(&produce(RDKafkaErrorCode::NotEnoughReplicas)), None, "transient: tried again");
        assert_eq!(refusal(&produce(RDKafkaErrorCode::AllBrokersDown)), None, "transient: tried again");
    }
}
