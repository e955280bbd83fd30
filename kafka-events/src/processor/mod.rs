//! The one processor every handler shares: decode → validate → handler → outcome, then the
//! outcome's side effect (retry wait, dead-letter publish, stall) until the message is finished.
//!
//! Its result types, in the order a message meets them: an attempt ends in an `Attempt` (the
//! handler's result, how long it ran, whether it was a duplicate), whose error is a
//! [`Failure`](outcome::Failure) (input, handler error, panic, timeout); `decide` turns it into an
//! [`Outcome`](outcome::Outcome) (done, retry, dead-letter, stall); the message's processing
//! ends in a [`Finish`] the offset tracker reads (finished, interrupted, or publishing).

mod attempt;
mod batch;
mod claim;
mod input;
mod outcome;
mod publish;
pub(crate) mod transaction;

pub use input::Event;
#[doc(hidden)]
pub use input::{batch_only, call_batch, decode, invoke, HandlerOutput};

mod retry_topic;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::abi::Invocation;
use crate::circuit::{CircuitBreaker, Verdict};
use crate::client_context::TracingContext;
use crate::dlq::records::{dead_letter_headers, payload_omitted_headers, DeadLetterCause};
use crate::error_kind::ErrorKind;
use crate::handler::{HandlerError, MessageContext};
use crate::health::HealthBoard;
use crate::idempotency::{ClaimSlot, IdempotencyStore};
use crate::metrics::{HandlerMetrics, Metrics};
use crate::observe::{self, Observer};
use crate::publisher::Publisher;
use crate::received::{Consumed, Received};
use crate::registry::BoundHandler;
use attempt::Attempt;
use outcome::{decide, Failure, Outcome};
use publish::Outgoing;
use transaction::{GroupCell, TransactionSetup, Transactor};

/// A publish in flight; resolves to `Finished` once the broker acknowledged it.
pub(crate) type Publishing = std::pin::Pin<Box<dyn std::future::Future<Output = Finish> + Send + 'static>>;

/// How processing of one message ended.
pub(crate) enum Finish {
    /// The outcome is durable: the offset may be committed.
    Finished,
    /// Shutdown or revocation interrupted it; the offset stays unfinished and will be redelivered.
    Interrupted,
    /// The outcome is a retry or dead-letter record now being published. The lane goes on with
    /// its next message (publishes are pipelined) and finishes this offset when the future
    /// resolves to `Finished`.
    Publishing(Publishing),
}

/// What the runtime attaches to one handler: its metrics and, if it has one, its circuit
/// breaker. A lane resolves them once, not per message.
#[derive(Clone, Default)]
pub(crate) struct Instruments {
    pub(crate) metrics: Option<HandlerMetrics>,
    pub(crate) breaker: Option<Arc<CircuitBreaker>>,
}

/// Runs messages through their handler and routes the outcome.
pub(crate) struct Processor {
    producer: FutureProducer<TracingContext>,
    status: Arc<HealthBoard>,
    metrics: Arc<Metrics>,
    /// Receives every message's final outcome (a test harness); usually none.
    observer: Option<Observer>,
    /// Per handler topic.
    instruments: HashMap<String, Instruments>,
    /// Where `idempotent` handlers record processed events.
    store: Option<Arc<dyn IdempotencyStore>>,
    /// The shared publisher handlers reach through their context.
    publisher: Publisher,
    /// How lanes of `transactional` handlers create their producers.
    transactions: TransactionSetup,
}

impl Processor {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        producer: FutureProducer<TracingContext>,
        status: Arc<HealthBoard>,
        metrics: Arc<Metrics>,
        observer: Option<Observer>,
        instruments: HashMap<String, Instruments>,
        store: Option<Arc<dyn IdempotencyStore>>,
        publisher: Publisher,
        transactions: TransactionSetup,
    ) -> Self {
        Self { producer, status, metrics, observer, instruments, store, publisher, transactions }
    }

    /// The transactional producer of a `transactional` handler's partition (`None` for other
    /// handlers); `group` holds the consumer group's current metadata.
    pub(crate) fn transactor(&self, handler: &BoundHandler, partition: i32, group: &GroupCell) -> Option<Transactor> {
        handler
            .registration
            .transactional
            .then(|| Transactor::new(&self.transactions, &handler.topic, partition, group.clone()))
    }

    /// The runtime's metrics.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The instruments of the handler of `handler_topic`.
    pub(crate) fn instruments(&self, handler_topic: &str) -> Instruments {
        self.instruments.get(handler_topic).cloned().unwrap_or_default()
    }

    /// Processes `message` with `handler` until its outcome is durable or `cancel` fires.
    pub(crate) async fn process(
        &self,
        handler: &BoundHandler,
        instruments: &Instruments,
        message: &Received<'_>,
        cancel: &CancellationToken,
        transactor: Option<&Transactor>,
    ) -> Finish {
        let name = handler.name();
        let parent = crate::trace::parent_of(message);
        // A message from the retry topic carries its retry number and when it is due.
        let (attempt, due) = if handler.retry_topic.as_deref() == Some(message.topic()) {
            let (retry, due) = retry_topic::schedule_of(message);
            (retry + 1, due)
        } else {
            (1, None)
        };
        // Every field the span will show is given at its creation where it is known by then: a
        // log subscriber formats a span's fields as they come, and each later `record` is another
        // lookup and format. Strings are `Display`ed (no escaping pass). The trace ids come first
        // unless an OpenTelemetry layer makes them the span's own.
        let span = |trace: Option<&crate::trace::TraceContext>| {
            tracing::info_span!(
                "message",
                topic = %message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                key = message.key().map(|key| tracing::field::display(Lossy(key))),
                handler = %name,
                trace_id = trace.map(|trace| tracing::field::display(trace.trace_id())),
                span_id = trace.map(|trace| tracing::field::display(trace.span_id())),
                attempt,
                outcome = tracing::field::Empty,
            )
        };
        // With the `otel` feature, the span's own ids when an OpenTelemetry layer is installed
        // (known only once the span exists); else a child of the message's trace (a new trace
        // when it has none).
        #[cfg(feature = "otel")]
        let (span, trace) = {
            let span = span(None);
            let trace = crate::otel::adopt(&span, parent.as_ref()).unwrap_or_else(|| crate::trace::child_of(parent));
            record_ids(&span, &trace);
            (span, trace)
        };
        #[cfg(not(feature = "otel"))]
        let (span, trace) = {
            let trace = crate::trace::child_of(parent);
            (span(Some(&trace)), trace)
        };
        // A span no subscriber takes is dropped: with `tracing`'s `log` feature (sqlx turns it
        // on) a disabled span still checks the `log` crate's level on every enter and exit.
        let span = if span.is_disabled() { tracing::Span::none() } else { span };
        self.process_inner(handler, instruments, message, cancel, &trace, (attempt, due), transactor)
            .instrument(span)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn process_inner(
        &self,
        handler: &BoundHandler,
        instruments: &Instruments,
        message: &Received<'_>,
        cancel: &CancellationToken,
        trace: &crate::trace::TraceContext,
        (mut attempt, due): (u32, Option<SystemTime>),
        transactor: Option<&Transactor>,
    ) -> Finish {
        let span = tracing::Span::current();
        if let Some(due) = due {
            // A retried message: wait until it is due (the lane waits, not the handler; the poll
            // thread keeps polling, and the lane stops reading once its partition is at its cap).
            let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
            if !wait.is_zero() && !Box::pin(self::wait(wait, cancel)).await {
                return Finish::Interrupted;
            }
        }
        let metrics = instruments.metrics.as_ref();
        loop {
            // An open circuit holds the message here (the lane stops reading meanwhile).
            let once = || self.attempt_once(handler, message, attempt, trace, transactor);
            let Some(Attempt { result, duplicates, .. }) = attempt::admitted(instruments, cancel, once).await else {
                return Finish::Interrupted;
            };
            if duplicates > 0 {
                tracing::debug!(attempt, "already processed (idempotent): skipped");
                observe::report(self.observer.as_ref(), message, observe::Outcome::Duplicate);
                self.status.clear_stall(message.topic(), message.partition());
                return Finish::Finished;
            }
            let outcome = decide(result, attempt, &handler.retry, handler.dlq_topic.is_some());
            record(&span, "outcome", tracing::field::display(outcome.name()));
            match outcome {
                Outcome::Done => {
                    tracing::debug!(attempt, "handled");
                    observe::report(self.observer.as_ref(), message, observe::Outcome::Handled { attempts: attempt });
                    self.status.clear_stall(message.topic(), message.partition());
                    return Finish::Finished;
                }
                Outcome::Retry { delay, reason } => {
                    metrics.inspect(|m| m.retried());
                    if let Some(retry_topic) = handler.retry_topic.as_deref() {
                        tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, %reason, retry_topic, "handler failed; sent to the retry topic");
                        let chain = vec![Outgoing {
                            topic: retry_topic.to_string(),
                            what: "retry record",
                            with_payload: true,
                            headers: retry_topic::retry_headers(message, attempt, delay, &reason),
                            counts_as: None,
                        }];
                        // A retry record too large to publish cannot be retried: dead-letter it.
                        // Its forms are built only then (from the copy the publish keeps).
                        let then = handler.dlq_topic.as_deref().map(|dlq| {
                            let (dlq, name) = (dlq.to_string(), handler.name().to_string());
                            let counted = instruments.metrics.clone().map(|m| (m, ErrorKind::Undeliverable));
                            Box::new(move |original: &OwnedMessage| {
                                let reason = format!("{reason}; its retry record was larger than the producer or broker accepts, so it was dead-lettered instead of retried");
                                let letter = DeadLetterCause {
                                    kind: ErrorKind::Undeliverable,
                                    reason: &reason,
                                    attempts: attempt,
                                    handler: &name,
                                };
                                Self::dead_letter_forms(&dlq, original, &letter, counted).into()
                            }) as publish::Fallback
                        });
                        return self.publish(message, chain, then, cancel);
                    }
                    tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, %reason, "handler failed; retrying in place");
                    if !Box::pin(wait(delay, cancel)).await {
                        return Finish::Interrupted;
                    }
                }
                Outcome::DeadLetter { kind, reason } => {
                    return self.dead_letter(handler, instruments, message, kind, &reason, attempt, cancel);
                }
                Outcome::Stall { kind: ErrorKind::Fenced, reason, delay } => {
                    tracing::warn!(attempt, %reason, "fenced: waiting for the rebalance that hands this partition over");
                    let stalled = observe::Outcome::Stalled { kind: ErrorKind::Fenced, reason: reason.clone() };
                    observe::report(self.observer.as_ref(), message, stalled);
                    self.status.stall(
                        message.topic(),
                        message.partition(),
                        message.offset(),
                        ErrorKind::Fenced,
                        &reason,
                    );
                    if !Box::pin(wait(delay, cancel)).await {
                        return Finish::Interrupted;
                    }
                }
                Outcome::Stall { kind, reason, delay } => {
                    tracing::error!(
                        attempt,
                        error_kind = kind.as_str(),
                        %reason,
                        "message failed and the handler has no `dlq`: partition held at this offset; trying again in {}",
                        humantime::format_duration(delay)
                    );
                    self.status.stall(message.topic(), message.partition(), message.offset(), kind, &reason);
                    observe::report(self.observer.as_ref(), message, observe::Outcome::Stalled { kind, reason });
                    if !Box::pin(wait(delay, cancel)).await {
                        return Finish::Interrupted;
                    }
                }
            }
            attempt += 1;
            record(&span, "attempt", attempt);
        }
    }

    /// One attempt: decode, validate, claim the event (`idempotent`), run the handler in a Kafka
    /// transaction (`transactional`), catch a panic, then settle the claim and the transaction.
    async fn attempt_once(
        &self,
        handler: &BoundHandler,
        message: &Received<'_>,
        attempt: u32,
        trace: &crate::trace::TraceContext,
        transactor: Option<&Transactor>,
    ) -> Attempt {
        // A transactional handler's publisher joins this attempt's transaction.
        let publisher = match transactor {
            // Rare paths (transactions, claims, waits) are boxed: inline, each would enlarge every
            // message's future, which is moved on every start.
            Some(transactor) => match Box::pin(transactor.begin()).await {
                Ok(publisher) => publisher,
                Err(error) if transactor.is_fenced() => return Attempt::failed(fenced(&error)),
                Err(error) => {
                    return Attempt::failed(Failure::Handler(HandlerError::retryable(format!(
                        "cannot begin the Kafka transaction: {error}"
                    ))))
                }
            },
            None => self.publisher.clone(),
        };
        let mut outcome = self.run_handler(handler, message, attempt, trace, publisher).await;
        if let Some(transactor) = transactor {
            if outcome.result.is_ok() && outcome.duplicates == 0 {
                if let Err(error) =
                    Box::pin(transactor.commit(message.topic(), message.partition(), message.offset() + 1)).await
                {
                    outcome.result = Err(if transactor.is_fenced() {
                        fenced(&error)
                    } else {
                        Failure::Handler(HandlerError::retryable(format!(
                            "the Kafka transaction did not commit (its output was discarded): {error}"
                        )))
                    });
                }
            } else {
                Box::pin(transactor.abort()).await;
            }
        }
        outcome
    }

    async fn run_handler(
        &self,
        handler: &BoundHandler,
        message: &Received<'_>,
        attempt: u32,
        trace: &crate::trace::TraceContext,
        publisher: Publisher,
    ) -> Attempt {
        let slot = if handler.idempotency_scope.is_some() { ClaimSlot::open() } else { ClaimSlot::default() };
        let ctx = context(message, attempt, trace.clone(), slot.clone(), Some(publisher));
        let invoke = handler.registration.invoke;
        let Invocation { future, event_id } =
            match std::panic::catch_unwind(AssertUnwindSafe(|| invoke(message.payload(), ctx))) {
                Ok(Ok(invocation)) => invocation,
                Ok(Err(input)) => return Attempt::failed(Failure::Input(input)),
                // Decoding or validating panicked (`invoke` only builds the handler's future):
                // the handler itself never ran, so no call duration.
                Err(panic) => {
                    return Attempt {
                        result: Err(Failure::Panic(panic_message(&*panic))),
                        call: None,
                        duplicates: 0,
                        handled: 1,
                    }
                }
            };
        let claimed = match handler.idempotency_scope.as_deref() {
            None => false,
            Some(scope) => {
                let id = match claim::event_id(message, event_id) {
                    Ok(id) => id,
                    Err(input) => return Attempt::failed(Failure::Input(input)),
                };
                let Some(store) = self.store.as_deref() else {
                    return Attempt::failed(Failure::Handler(HandlerError::retryable("no idempotency store")));
                };
                match Box::pin(claim::claim(store, scope, std::slice::from_ref(&id))).await {
                    Err(error) => return Attempt::failed(Failure::Handler(HandlerError::retryable(error))),
                    Ok((runs, pending)) if !runs[0] => {
                        if let Err(error) = pending.abort().await {
                            tracing::debug!(%error, "releasing the claim of a duplicate");
                        }
                        return Attempt { result: Ok(()), call: None, duplicates: 1, handled: 0 };
                    }
                    Ok((_, pending)) => Box::pin(slot.put(pending)).await,
                }
                true
            }
        };
        let started = std::time::Instant::now();
        // What the handler publishes carries this message's correlation id (or its id).
        let correlation = correlation_of(message).map(str::to_string);
        let call = || crate::trace::scope(trace.clone(), correlation, AssertUnwindSafe(future).catch_unwind());
        let mut result = match within(handler.timeout, call).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(error))) => Err(Failure::Handler(error)),
            Ok(Err(panic)) => Err(Failure::Panic(panic_message(&*panic))),
            Err(limit) => Err(Failure::Timeout(limit)),
        };
        let call = Some(started.elapsed());
        if claimed {
            if let Err(error) = Box::pin(claim::settle(&slot, result.is_ok())).await {
                if result.is_ok() {
                    result = Err(Failure::Handler(error));
                }
            }
        }
        Attempt { result, call, duplicates: 0, handled: 1 }
    }

    /// Publishes `message` to its handler's DLQ with the failure's headers; the offset finishes
    /// once the broker acknowledged the dead letter. Only for handlers with a `dlq`: `decide()`
    /// dead-letters only then, and batch handlers require one.
    #[allow(clippy::too_many_arguments)]
    fn dead_letter(
        &self,
        handler: &BoundHandler,
        instruments: &Instruments,
        message: &Received<'_>,
        kind: ErrorKind,
        reason: &str,
        attempts: u32,
        cancel: &CancellationToken,
    ) -> Finish {
        let Some(dlq) = handler.dlq_topic.as_deref() else { unreachable!("only handlers with a `dlq` dead-letter") };
        instruments.metrics.as_ref().inspect(|m| m.dead_lettered(kind.as_str()));
        let reason = crate::headers::bounded_reason(reason);
        tracing::warn!(dlq, offset = message.offset(), error_kind = kind.as_str(), %reason, attempts, "dead-lettering");
        let letter = DeadLetterCause { kind, reason: &reason, attempts, handler: handler.name() };
        let chain = Self::dead_letter_forms(dlq, message, &letter, None).into();
        let publishing = self.publish(message, chain, None, cancel);
        // The outcome is reported once the dead letter is acknowledged.
        match (&self.observer, publishing) {
            (Some(observer), Finish::Publishing(publishing)) => {
                let (observer, at) = (observer.clone(), observe::coordinates(message));
                let dead = observe::Outcome::DeadLettered { kind, reason: reason.to_string(), attempts };
                Finish::Publishing(Box::pin(async move {
                    let finish = publishing.await;
                    if matches!(finish, Finish::Finished) {
                        observer(at, dead);
                    }
                    finish
                }))
            }
            (_, finish) => finish,
        }
    }

    /// Publishes the first form of `chain` the broker accepts; the message finishes once it is
    /// acknowledged (see [`publish`]).
    fn publish(
        &self,
        message: &Received<'_>,
        chain: Vec<Outgoing>,
        then: Option<publish::Fallback>,
        cancel: &CancellationToken,
    ) -> Finish {
        let (producer, status, metrics) = (self.producer.clone(), self.status.clone(), self.metrics.clone());
        Finish::Publishing(publish::publish_durably(producer, status, metrics, message, chain, then, cancel))
    }

    /// The forms of `message`'s dead letter, in the order [`publish::publish_durably`] tries
    /// them: the full copy, then — when that is too large — one without the payload.
    /// `counts_as`: see [`Outgoing::counts_as`].
    fn dead_letter_forms(
        dlq: &str,
        message: &impl Consumed,
        letter: &DeadLetterCause<'_>,
        counts_as: Option<(HandlerMetrics, ErrorKind)>,
    ) -> [Outgoing; 2] {
        let origin = crate::headers::origin(message);
        let why = format!(
            "with the original key, value ({} bytes) and headers the dead letter was larger than the producer or broker accepts; the original is at {}[{}]@{} until its retention",
            message.payload().map_or(0, <[u8]>::len),
            origin.topic,
            origin.partition,
            origin.offset
        );
        [
            Outgoing {
                topic: dlq.to_string(),
                what: "dead letter",
                with_payload: true,
                headers: dead_letter_headers(message, letter),
                counts_as: counts_as.clone(),
            },
            Outgoing {
                topic: dlq.to_string(),
                what: "dead letter without its payload",
                with_payload: false,
                headers: payload_omitted_headers(message, letter, &why),
                counts_as,
            },
        ]
    }
}

/// A message key in a span field: shown as (lossy) UTF-8, converted only when a subscriber or
/// logger formats it.
struct Lossy<'a>(&'a [u8]);

impl std::fmt::Display for Lossy<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        String::from_utf8_lossy(self.0).fmt(f)
    }
}

/// Records `value` as `field` of `span` when a subscriber takes the span. A disabled span's
/// `record` still formats the value for the `log` crate (`tracing`'s `log` feature, which sqlx
/// turns on) — hundreds of instructions per message for nothing when no logger listens either.
pub(crate) fn record(span: &tracing::Span, field: &str, value: impl tracing::Value) {
    if !span.is_disabled() {
        span.record(field, value);
    }
}

/// Records a message span's trace ids, both in one record (each is a lookup of the span by the
/// subscriber).
#[cfg(feature = "otel")]
fn record_ids(span: &tracing::Span, trace: &crate::trace::TraceContext) {
    if span.is_disabled() {
        return;
    }
    let Some(fields) = span.metadata().map(|metadata| metadata.fields()) else { return };
    let (Some(trace_id), Some(span_id)) = (fields.field("trace_id"), fields.field("span_id")) else { return };
    let (t, s) = (tracing::field::display(trace.trace_id()), tracing::field::display(trace.span_id()));
    span.record_all(
        &fields.value_set(&[(&trace_id, Some(&t as &dyn tracing::Value)), (&span_id, Some(&s as &dyn tracing::Value))]),
    );
}

/// Runs the future `start` makes within `limit` (if any); `Err(limit)` when it took longer — it
/// is then dropped (cancelled at its current `.await`). A closure, so that the future is stored
/// once, in this one (see [`attempt::admitted`]).
async fn within<F: std::future::Future>(
    limit: Option<Duration>,
    start: impl FnOnce() -> F,
) -> Result<F::Output, Duration> {
    match limit {
        None => Ok(start().await),
        Some(limit) => tokio::time::timeout(limit, start()).await.map_err(|_| limit),
    }
}

/// What an attempt tells the handler's circuit breaker: only failures a broken dependency
/// causes (retryable errors, panics, timeouts) count against it.
/// The correlation id what a handler publishes carries: its message's `x-correlation-id`, or
/// else its `x-message-id`.
fn correlation_of(message: &impl Consumed) -> Option<&str> {
    crate::headers::header_str(message, crate::names::header::CORRELATION_ID)
        .or_else(|| crate::headers::header_str(message, crate::names::header::MESSAGE_ID))
}

fn verdict(result: &Result<(), Failure>) -> Verdict {
    match result {
        Ok(()) => Verdict::Success,
        Err(Failure::Handler(error)) if !error.is_permanent() => Verdict::Failure,
        Err(Failure::Panic(_) | Failure::Timeout(_)) => Verdict::Failure,
        Err(_) => Verdict::Neutral,
    }
}

fn context(
    message: &Received<'_>,
    attempt: u32,
    trace: crate::trace::TraceContext,
    claim: ClaimSlot,
    publisher: Option<Publisher>,
) -> MessageContext {
    let origin = crate::headers::origin(message);
    MessageContext {
        topic: origin.topic,
        partition: origin.partition,
        offset: origin.offset,
        timestamp: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        headers: message.copied_headers().unwrap_or_default(),
        attempt,
        trace,
        claim,
        publisher,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Sleeps for `delay`; false when cancelled first.
async fn wait(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = cancel.cancelled() => false,
    }
}

/// A fenced transactional producer: the partition has a newer owner.
fn fenced(error: &rdkafka::error::KafkaError) -> Failure {
    Failure::Fenced(format!(
        "a newer instance owns this partition and fenced its transactional producer ({error}); the transaction was discarded and the message is left to the new owner"
    ))
}
