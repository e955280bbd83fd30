//! The final outcome of each message, reported as the processor reaches it — for
//! [`testing::Harness`](crate::testing) to await. Off (no cost but one `Option` check) unless a
//! harness installs an observer.

use std::sync::Arc;

use crate::error_kind::ErrorKind;
use crate::message::Origin;

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

/// Receives every outcome, at the message's [`Origin`] (a retried message reports its original
/// coordinates, so all its attempts are one message).
pub(crate) type Observer = Arc<dyn Fn(Origin, Outcome) + Send + Sync>;
