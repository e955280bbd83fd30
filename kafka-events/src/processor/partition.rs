//! The processor of one partition: owned by its lane, it runs each message's attempts and turns
//! each decision into its effect — decide → effect → report, once per decision.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::attempt::{self, Attempt};
use super::outcome::{decide, Outcome};
use super::sink::{Report, Sink};
use super::span::{message_context, note_attempt, note_outcome, Context};
use super::transaction::Transactor;
use super::{publish, wait, Finish, Instruments, Processors};
use crate::abi::InvokeFn;
use crate::circuit::CircuitBreaker;
use crate::error_kind::ErrorKind;
use crate::message::{correlation_of, Consumed, Kept, Received};
use crate::records::{self, Cause, Record};
use crate::registry::BoundHandler;
use crate::trace::Labels;

/// One partition's processor (see the [module docs](super)).
pub(crate) struct PartitionProcessor {
    pub(super) shared: Arc<Processors>,
    pub(super) handler: BoundHandler,
    pub(super) instruments: Instruments,
    /// The partition's transactional producer, when the handler is `transactional`.
    pub(super) transactor: Option<Transactor>,
    pub(super) sink: Arc<Sink>,
    /// What names this partition's messages in log lines.
    pub(super) labels: Arc<Labels>,
}

/// What follows a decision.
enum Effect {
    /// The message's processing ended (or goes on in a publish).
    Finish(Finish),
    /// Try again after this wait.
    Again(Duration),
}

impl PartitionProcessor {
    pub(super) fn new(
        shared: Arc<Processors>,
        handler: BoundHandler,
        instruments: Instruments,
        transactor: Option<Transactor>,
        sink: Arc<Sink>,
        topic: &str,
    ) -> Self {
        let labels = Arc::new(Labels { topic: topic.into(), handler: handler.name().to_string() });
        Self { shared, handler, instruments, transactor, sink, labels }
    }

    /// The handler this processor runs.
    pub(crate) fn handler(&self) -> &BoundHandler {
        &self.handler
    }

    /// The handler's circuit breaker, if it has one.
    pub(crate) fn breaker(&self) -> Option<&Arc<CircuitBreaker>> {
        self.instruments.breaker.as_ref()
    }

    /// Processes `message` with the single-message handler `invoke` until its outcome is
    /// durable or `cancel` fires, and gives it back with how it finished. It takes the message
    /// (rather than a borrow the lane would keep beside it) so that the lane runs this future
    /// itself: every async layer around it would store it once more (rustc keeps an awaited
    /// future and the one it was moved from apart), and the whole is moved on every start.
    pub(crate) async fn process<'q>(
        &self,
        invoke: InvokeFn,
        message: Received<'q>,
        cancel: &CancellationToken,
    ) -> (Received<'q>, Finish) {
        let message_ref = &message;
        // A message from the retry topic carries its retry number and when it is due.
        let (attempt, due) = if self.handler.retry_topic.as_deref() == Some(message_ref.topic()) {
            let (retry, due) = records::schedule_of(message_ref);
            (retry + 1, due)
        } else {
            (1, None)
        };
        let (context, trace) = message_context(&self.labels, message_ref, attempt);
        // What the handler publishes carries this message's correlation id (or its id).
        let correlation = correlation_of(message_ref).map(str::to_string);
        let (coordinates, span) = match context {
            Context::Lines(coordinates) => (Some(coordinates), tracing::Span::none()),
            Context::Span(span) => (None, span),
        };
        // One future, awaited once: two arms awaiting differently wrapped futures, or the inner
        // future kept in a local, would each take room of their own in this future.
        let finish = crate::trace::scope(
            trace.clone(),
            correlation,
            coordinates,
            self.attempts(invoke, message_ref, cancel, &trace, attempt, due),
        )
        .instrument(span)
        .await;
        (message, finish)
    }

    async fn attempts(
        &self,
        invoke: InvokeFn,
        message: &Received<'_>,
        cancel: &CancellationToken,
        trace: &crate::trace::TraceContext,
        mut attempt: u32,
        due: Option<SystemTime>,
    ) -> Finish {
        if let Some(due) = due {
            // A retried message: wait until it is due (the lane waits, not the handler; the poll
            // thread keeps polling, and the lane stops reading once its partition is at its cap).
            let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
            if !wait.is_zero() && !Box::pin(self::wait(wait, cancel)).await {
                return Finish::Interrupted;
            }
        }
        loop {
            // An open circuit holds the message here (the lane stops reading meanwhile).
            let once = || self.attempt_once(invoke, message, attempt, trace);
            let Some(Attempt { result, duplicates, .. }) = attempt::admitted(&self.instruments, cancel, once).await
            else {
                return Finish::Interrupted;
            };
            let effect = if duplicates > 0 {
                tracing::debug!(attempt, "already processed (idempotent): skipped");
                self.sink.report(message, Report::Duplicate);
                Effect::Finish(Finish::Finished)
            } else {
                let outcome = decide(result, attempt, &self.handler.retry, self.handler.dlq_topic.is_some());
                note_outcome(outcome.name());
                self.effect(message, outcome, attempt, cancel)
            };
            match effect {
                Effect::Finish(finish) => return finish,
                Effect::Again(delay) => {
                    if !Box::pin(wait(delay, cancel)).await {
                        return Finish::Interrupted;
                    }
                }
            }
            attempt += 1;
            note_attempt(attempt);
        }
    }

    /// The effect of a decision on a single message, logged and reported. It only starts what
    /// takes time (a publish; a wait, which the attempt loop runs), so the message's future
    /// carries none of it.
    fn effect(&self, message: &Received<'_>, outcome: Outcome, attempt: u32, cancel: &CancellationToken) -> Effect {
        let handler = &self.handler;
        match outcome {
            Outcome::Done => {
                tracing::debug!(attempt, "handled");
                self.sink.report(message, Report::Handled { attempts: attempt });
                Effect::Finish(Finish::Finished)
            }
            Outcome::Retry { delay, reason } => {
                self.sink.report(message, Report::Retrying);
                let delay_ms = delay.as_millis() as u64;
                match handler.retry_topic.as_deref() {
                    Some(retry_topic) => {
                        tracing::warn!(attempt, delay_ms, %reason, retry_topic, "handler failed; sent to the retry topic");
                        let dlq = handler.dlq_topic.as_deref();
                        let chain = records::retry_chain(retry_topic, dlq, attempt, delay, reason, handler.name());
                        Effect::Finish(self.publish(message, chain, cancel))
                    }
                    None => {
                        tracing::warn!(attempt, delay_ms, %reason, "handler failed; retrying in place");
                        Effect::Again(delay)
                    }
                }
            }
            Outcome::DeadLetter { kind, reason } => {
                let cause = Cause { kind, reason, attempts: attempt, handler: handler.name().to_string() };
                Effect::Finish(self.dead_letter(message, cause, cancel))
            }
            Outcome::Stall { kind, reason, delay } => {
                if kind == ErrorKind::Fenced {
                    tracing::warn!(attempt, %reason, "fenced: waiting for the rebalance that hands this partition over");
                } else {
                    tracing::error!(
                        attempt,
                        error_kind = kind.as_str(),
                        %reason,
                        "message failed and the handler has no `dlq`: partition held at this offset; trying again in {}",
                        humantime::format_duration(delay)
                    );
                }
                self.sink.report(message, Report::Stalled { kind, reason: &reason });
                Effect::Again(delay)
            }
        }
    }

    /// Publishes `message`'s dead letter; the offset finishes, and the dead letter is reported,
    /// once the broker acknowledged it. Only for handlers with a `dlq`: `decide()` dead-letters
    /// only then, and batch handlers require one.
    pub(super) fn dead_letter(&self, message: &impl Consumed, cause: Cause, cancel: &CancellationToken) -> Finish {
        let Some(dlq) = self.handler.dlq_topic.as_deref() else {
            // The registry refuses such a handler; never lose the message if one slipped through.
            let reason = format!("{} (no dead-letter topic to publish it to)", cause.reason);
            tracing::error!(offset = message.offset(), %reason, "cannot dead-letter");
            self.sink.report(message, Report::Undeliverable { reason: &reason });
            return Finish::Interrupted;
        };
        tracing::warn!(
            dlq,
            offset = message.offset(),
            error_kind = cause.kind.as_str(),
            reason = %cause.reason,
            attempts = cause.attempts,
            "dead-lettering"
        );
        self.publish(message, records::dead_letter_chain(dlq, cause), cancel)
    }

    /// Publishes the first record of `chain` the broker accepts (see [`publish`]); the message
    /// finishes once it is acknowledged.
    fn publish(&self, message: &impl Consumed, chain: Vec<Record>, cancel: &CancellationToken) -> Finish {
        let producer = self.shared.producer.clone();
        let publishing = publish::publish_durably(producer, self.sink.clone(), Kept::of(message), chain, cancel);
        // Its lines name the message too: the publish runs on after this task has moved on.
        Finish::Publishing(crate::trace::carried(publishing))
    }
}
