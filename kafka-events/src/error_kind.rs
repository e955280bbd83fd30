//! Why a message failed: the kinds written to `x-dlq-error-kind`, counted in metrics and
//! reported for stalled partitions.

use std::fmt;

/// Why a message failed, as written to `x-dlq-error-kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The payload is not valid JSON for the handler's type (or is missing). Never retried.
    Decode,
    /// The payload decoded but failed `Validate`. Never retried.
    Validation,
    /// The handler returned a permanent error. Never retried.
    Permanent,
    /// The handler kept returning retryable errors (or panicking) until its retries ran out.
    RetriesExhausted,
    /// An `idempotent` handler got a message with no event id (no `x-message-id` header, or the
    /// id field is empty). Never retried.
    MissingEventId,
    /// A `transactional` handler's producer was fenced by a newer instance with the same
    /// `transactional.id`: the partition belongs to another instance now. Never retried nor
    /// dead-lettered: the message waits here (reported as stalled) until the rebalance revokes
    /// the partition, and its new owner handles it.
    Fenced,
    /// The message's retry record could not be published because, with its payload, it is
    /// larger than the producer or broker accepts: it was dead-lettered instead of retried. As
    /// a stall kind: neither its retry record nor its dead letter can be published (the broker
    /// refuses them for good: authorization, unknown topic, too large without a `dlq`); the
    /// partition is held at it, reported, and the publish tried again every 30 s.
    Undeliverable,
    /// The handler kept exceeding its time limit (`timeout = "..."` or `KAFKA_HANDLER_TIMEOUT`)
    /// until its retries ran out; each call over the limit was cancelled.
    Timeout,
}

impl ErrorKind {
    /// The stable name written to `x-dlq-error-kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decode => "decode",
            Self::Validation => "validation",
            Self::Permanent => "permanent",
            Self::RetriesExhausted => "retries-exhausted",
            Self::MissingEventId => "missing-event-id",
            Self::Fenced => "fenced",
            Self::Undeliverable => "undeliverable",
            Self::Timeout => "timeout",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
