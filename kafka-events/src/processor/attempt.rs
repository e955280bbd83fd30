//! One attempt, single or batch, under the handler's circuit breaker and counted in its metrics:
//! the step both attempt loops (`PartitionProcessor::process` and `process_batch`) share.
//! What follows an attempt — `decide`, then a retry, dead letter or stall — differs by shape (a
//! batch retries in place and dead-letters each event) and stays with each loop.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::call::verdict;
use super::outcome::Failure;
use super::Instruments;
use crate::circuit::Verdict;

/// How one attempt went.
pub(super) struct Attempt {
    pub(super) result: Result<(), Failure>,
    /// How long the handler ran, when it was called.
    pub(super) call: Option<Duration>,
    /// Events an `idempotent` handler skipped: processed before.
    pub(super) duplicates: usize,
    /// Events the handler was called with (0 when every event was a duplicate).
    pub(super) handled: usize,
}

impl Attempt {
    /// An attempt that failed before the handler was called.
    pub(super) fn failed(failure: Failure) -> Self {
        Self { result: Err(failure), call: None, duplicates: 0, handled: 0 }
    }
}

/// Runs `attempt` once the circuit breaker admits it (an open circuit holds it here; `None` when
/// `cancel` fires meanwhile), then records its verdict with the breaker and counts it: calls'
/// duration, events handled or the failure's kind, duplicates skipped.
///
/// `attempt` is a closure so that its future is created here: it then shares this future's
/// memory with the breaker's wait, where a future passed in would be stored twice (the caller
/// keeps the moved-from slot) — every message's future would carry ~1 KB more to move.
pub(super) async fn admitted<F>(
    instruments: &Instruments,
    cancel: &CancellationToken,
    attempt: impl FnOnce() -> F,
) -> Option<Attempt>
where
    F: Future<Output = Attempt>,
{
    let breaker = instruments.breaker.as_deref();
    let permit = match breaker {
        Some(breaker) => Some(breaker.admit(cancel).await?),
        None => None,
    };
    let attempt = attempt().await;
    if let (Some(breaker), Some(permit)) = (breaker, permit) {
        let called = attempt.handled > 0 || attempt.result.is_err();
        breaker.record(permit, if called { verdict(&attempt.result) } else { Verdict::Neutral });
    }
    if let Some(metrics) = &instruments.metrics {
        if attempt.duplicates > 0 {
            metrics.duplicates(attempt.duplicates);
        }
        if let Some(elapsed) = attempt.call {
            metrics.observe_call(elapsed);
        }
        match &attempt.result {
            Ok(()) => metrics.processed_many(attempt.handled),
            Err(failure) => metrics.failed(failure.kind_name()),
        }
    }
    Some(attempt)
}
