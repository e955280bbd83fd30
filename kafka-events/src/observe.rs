//! The final outcome of each message, reported as the processor reaches it — for
//! [`testing::Harness`](crate::testing) to await. Off (no cost but one `Option` check) unless a
//! harness installs an observer.

use std::sync::Arc;

use crate::error_kind::ErrorKind;

/// How a message ended, as [`testing::Harness::outcome`](crate::testing) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The handler returned `Ok` on attempt `attempts` (above 1: it was retried first).
    Handled {
        /// The attempt that succeeded.
        attempts: u32,
    },
    /// An `idempotent` handler skipped it: its event was processed before.
    Duplicate,
    /// It was dead-lettered, and the broker acknowledged the dead letter.
    DeadLettered {
        /// Why (`x-dlq-error-kind`).
        kind: ErrorKind,
        /// The error (`x-dlq-reason`).
        reason: String,
        /// Attempts made.
        attempts: u32,
    },
    /// It failed and its handler has no `dlq`: its partition is held at it.
    Stalled {
        /// Why.
        kind: ErrorKind,
        /// The error.
        reason: String,
    },
}

/// Where a message was first produced — a retried message reports its original coordinates
/// (`x-original-*`), so all its attempts are one message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Coordinates {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

/// Receives every outcome.
pub(crate) type Observer = Arc<dyn Fn(Coordinates, Outcome) + Send + Sync>;

/// Where `message` was first produced.
pub(crate) fn coordinates(message: &impl crate::received::Consumed) -> Coordinates {
    let origin = crate::headers::origin(message);
    Coordinates { topic: origin.topic, partition: origin.partition, offset: origin.offset }
}

/// Reports `outcome` of `message` to `observer`, if there is one.
pub(crate) fn report(observer: Option<&Observer>, message: &impl crate::received::Consumed, outcome: Outcome) {
    if let Some(observer) = observer {
        observer(coordinates(message), outcome);
    }
}
