//! What happens to a message after an attempt: the one decision every handler shares.

use std::time::Duration;

use crate::abi::InputError;
use crate::error_kind::ErrorKind;
use crate::handler::HandlerError;
use crate::records::Reason;
use crate::retry::RetryPolicy;

/// How an attempt failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Decode or validation failed; the handler was not invoked.
    Input(InputError),
    /// The handler returned an error.
    Handler(HandlerError),
    /// The handler panicked.
    Panic(String),
    /// The transactional producer was fenced by a newer instance: the partition is not ours.
    Fenced(String),
    /// The call took longer than the handler's time limit and was cancelled.
    Timeout(std::time::Duration),
}

impl Failure {
    /// The `kind` label of `kafka_events_messages_failed_total`: the [`ErrorKind`] name where the
    /// failure is one already (an attempt's failure is not yet the message's: a retryable error
    /// or a panic may still succeed next time, so those two have names of their own).
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Self::Input(e) => e.kind.as_str(),
            Self::Handler(e) if e.is_permanent() => ErrorKind::Permanent.as_str(),
            Self::Handler(_) => "retryable",
            Self::Panic(_) => "panic",
            Self::Fenced(_) => ErrorKind::Fenced.as_str(),
            Self::Timeout(_) => ErrorKind::Timeout.as_str(),
        }
    }

    /// What went wrong, bounded.
    pub(crate) fn describe(&self) -> Reason {
        Reason::new(match self {
            Self::Input(e) => e.reason.clone(),
            Self::Handler(e) => e.to_string(),
            Self::Panic(msg) => format!("handler panicked: {msg}"),
            Self::Fenced(msg) => msg.clone(),
            Self::Timeout(limit) => format!(
                "the handler took longer than its time limit of {} and was cancelled",
                humantime::format_duration(*limit)
            ),
        })
    }
}

/// What the processor does next with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Handled: the offset is finished.
    Done,
    /// Try again after `delay`: through the retry topic, or in place (the partition waits).
    Retry { delay: Duration, reason: Reason },
    /// Publish to the dead-letter topic; the offset is finished once the broker acknowledges it.
    DeadLetter { kind: ErrorKind, reason: Reason },
    /// No dead-letter topic: hold the partition at this message, report it, and try again after
    /// `delay`. Nothing is dropped.
    Stall { kind: ErrorKind, reason: Reason, delay: Duration },
}

impl Outcome {
    /// The `outcome` field of the message's span.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Retry { .. } => "retry",
            Self::DeadLetter { .. } => "dead-letter",
            Self::Stall { .. } => "stall",
        }
    }
}

/// Decides the outcome of attempt number `attempt` (1-based).
pub(crate) fn decide(result: Result<(), Failure>, attempt: u32, policy: &RetryPolicy, has_dlq: bool) -> Outcome {
    let failure = match result {
        Ok(()) => return Outcome::Done,
        Err(failure) => failure,
    };
    let reason = failure.describe();
    let kind = match &failure {
        // Another instance owns the partition: neither a retry nor a dead letter is ours to
        // publish. Wait for the rebalance that revokes it here.
        Failure::Fenced(_) => {
            return Outcome::Stall {
                kind: ErrorKind::Fenced,
                reason,
                delay: policy.max_delay.max(Duration::from_secs(1)),
            }
        }
        Failure::Input(e) => e.kind,
        Failure::Handler(e) if e.is_permanent() => ErrorKind::Permanent,
        Failure::Handler(_) | Failure::Panic(_) | Failure::Timeout(_) => {
            if attempt <= policy.max {
                return Outcome::Retry { delay: policy.jittered_delay(attempt), reason };
            }
            if matches!(failure, Failure::Timeout(_)) {
                ErrorKind::Timeout
            } else {
                ErrorKind::RetriesExhausted
            }
        }
    };
    let reason = match kind {
        ErrorKind::RetriesExhausted | ErrorKind::Timeout => {
            Reason::new(format!("retries exhausted after {attempt} attempts: {reason}"))
        }
        _ => reason,
    };
    if has_dlq {
        Outcome::DeadLetter { kind, reason }
    } else {
        Outcome::Stall { kind, reason, delay: policy.max_delay.max(Duration::from_secs(1)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::{Backoff, RetryMode};

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max: 2,
            backoff: Backoff::Exponential,
            initial: Duration::from_millis(10),
            max_delay: Duration::from_secs(5),
            jitter: 0.0,
            mode: RetryMode::Topic,
        }
    }

    #[test]
    fn retryable_failures_retry_then_dead_letter() {
        let fail = || Err(Failure::Handler(HandlerError::retryable("db down")));
        let retry = |ms| Outcome::Retry { delay: Duration::from_millis(ms), reason: "db down".into() };
        assert_eq!(decide(fail(), 1, &policy(), true), retry(10));
        assert_eq!(decide(fail(), 2, &policy(), true), retry(20));
        assert_eq!(
            decide(fail(), 3, &policy(), true),
            Outcome::DeadLetter {
                kind: ErrorKind::RetriesExhausted,
                reason: "retries exhausted after 3 attempts: db down".into()
            }
        );
    }

    #[test]
    fn timeouts_are_retried_then_dead_lettered_as_timeouts() {
        let slow = || Err(Failure::Timeout(Duration::from_secs(10)));
        assert!(matches!(decide(slow(), 1, &policy(), true), Outcome::Retry { .. }));
        assert_eq!(
            decide(slow(), 3, &policy(), true),
            Outcome::DeadLetter {
                kind: ErrorKind::Timeout,
                reason: "retries exhausted after 3 attempts: the handler took longer than its time limit of 10s and was cancelled".into()
            }
        );
    }

    #[test]
    fn panics_are_retryable() {
        assert!(matches!(decide(Err(Failure::Panic("boom".into())), 1, &policy(), true), Outcome::Retry { .. }));
    }

    #[test]
    fn input_and_permanent_errors_are_never_retried() {
        let decode = Err(Failure::Input(InputError::decode("bad json")));
        assert_eq!(
            decide(decode, 1, &policy(), true),
            Outcome::DeadLetter { kind: ErrorKind::Decode, reason: "bad json".into() }
        );
        let permanent = Err(Failure::Handler(HandlerError::permanent("rejected")));
        assert_eq!(
            decide(permanent, 1, &policy(), true),
            Outcome::DeadLetter { kind: ErrorKind::Permanent, reason: "rejected".into() }
        );
    }

    #[test]
    fn a_fenced_producer_stalls_even_with_a_dlq_and_retries_left() {
        let fenced = Err(Failure::Fenced("fenced by a newer instance".into()));
        assert_eq!(
            decide(fenced, 1, &policy(), true),
            Outcome::Stall {
                kind: ErrorKind::Fenced,
                reason: "fenced by a newer instance".into(),
                delay: Duration::from_secs(5)
            }
        );
    }

    #[test]
    fn without_dlq_the_partition_stalls() {
        let out = decide(Err(Failure::Handler(HandlerError::permanent("no"))), 1, &policy(), false);
        assert_eq!(
            out,
            Outcome::Stall { kind: ErrorKind::Permanent, reason: "no".into(), delay: Duration::from_secs(5) }
        );
        assert_eq!(decide(Ok(()), 9, &policy(), false), Outcome::Done);
    }
}
