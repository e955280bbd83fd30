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
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::sink::{Report, Sink};
use super::{wait, Finish, Publishing};
use crate::client_context::TracingContext;
use crate::message::{Consumed, Kept};
use crate::records::Record;

/// A key up to this size stays on a dead letter published without its payload (it keeps the
/// dead letter on its key's partition); a larger one is dropped with the value.
const SMALL_KEY: usize = 1024;

/// The longest wait between two tries, and the wait after a refusal no retry can fix.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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

/// Publishes the first record of `chain` the broker accepts (see the module docs), each built
/// from `message` when it is tried; resolves to `Finished` once one is acknowledged — reported
/// through `sink` — or `Interrupted` when `cancel` fires while it waits (the offset then stays
/// unfinished and the message is redelivered).
pub(crate) fn publish_durably(
    producer: FutureProducer<TracingContext>,
    sink: Arc<Sink>,
    message: Kept,
    chain: Vec<Record>,
    cancel: &CancellationToken,
) -> Publishing {
    let cancel = cancel.clone();
    let publish = async move {
        let (key, payload) = (message.key(), message.payload());
        let mut chain = chain.into_iter();
        let Some(mut current) = chain.next() else { return Finish::Finished };
        let mut headers = current.headers(&message);
        let mut backoff = Duration::from_millis(100);
        let mut stalled = false;
        loop {
            // The headers go with the record; a refused record gives them back.
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&current.topic).headers(std::mem::take(&mut headers));
            let key = key.filter(|k| current.with_payload() || k.len() <= SMALL_KEY);
            if let Some(key) = key {
                record = record.key(key);
            }
            if let (true, Some(payload)) = (current.with_payload(), payload) {
                record = record.payload(payload);
            }
            let error = match producer.send(record, Duration::from_secs(30)).await {
                Ok(delivery) => {
                    tracing::debug!(
                        topic = %current.topic,
                        partition = delivery.partition,
                        offset = delivery.offset,
                        "{} published",
                        current.what()
                    );
                    if stalled {
                        tracing::info!(topic = %current.topic, "{} published after all; the partition goes on", current.what());
                    }
                    let report = match current.dead_letter() {
                        Some(cause) => {
                            Report::DeadLettered { kind: cause.kind, reason: &cause.reason, attempts: cause.attempts }
                        }
                        None => Report::RetryPublished,
                    };
                    sink.report(&message, report);
                    return Finish::Finished;
                }
                Err((error, mut refused)) => {
                    headers = refused.detach_headers().unwrap_or_default();
                    error
                }
            };
            sink.delivery_failed(&current.topic);
            let refused = refusal(&error);
            if refused == Some(Refusal::TooLarge) {
                if let Some(next) = chain.next() {
                    tracing::warn!(
                        topic = %current.topic,
                        %error,
                        payload_bytes = payload.map_or(0, <[u8]>::len),
                        "{} is larger than the producer or broker accepts; publishing {} to `{}` instead",
                        current.what(),
                        next.what(),
                        next.topic
                    );
                    current = next;
                    headers = current.headers(&message);
                    continue;
                }
            }
            match refused {
                None => {
                    tracing::error!(topic = %current.topic, %error, "{} publish failed; the offset stays unfinished, trying again", current.what());
                }
                Some(refused) => {
                    let reason = format!(
                        "its {} to `{}` cannot be published: {error} ({})",
                        current.what(),
                        current.topic,
                        match refused {
                            Refusal::TooLarge => "too large, and no smaller form is left",
                            Refusal::Permanent => "the broker refuses it until someone fixes the cause",
                        }
                    );
                    tracing::error!(
                        topic = %message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        "{reason}; the partition is held at this message and it is tried again every {}",
                        humantime::format_duration(MAX_BACKOFF)
                    );
                    sink.report(&message, Report::Undeliverable { reason: &reason });
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
