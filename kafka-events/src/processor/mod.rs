//! The one processor every handler shares: decode → validate → handler → outcome, then the
//! outcome's side effect (retry wait, dead-letter publish, stall) until the message is finished.

mod input;
pub(crate) mod offsets;
mod outcome;

pub use input::Event;
#[doc(hidden)]
pub use input::{invoke, HandlerOutput};

mod retry;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use rdkafka::message::{Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::circuit::{CircuitBreaker, Verdict};
use crate::connection::TracingContext;
use crate::dlq::records::{dead_letter_headers, DeadLetter};
use crate::handler::MessageContext;
use crate::health::Status;
use crate::metrics::HandlerMetrics;
use crate::registry::BoundHandler;
use outcome::{decide, Failure, Outcome};

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
    status: Arc<Status>,
    /// Per handler topic.
    instruments: HashMap<String, Instruments>,
}

impl Processor {
    pub(crate) fn new(
        producer: FutureProducer<TracingContext>,
        status: Arc<Status>,
        instruments: HashMap<String, Instruments>,
    ) -> Self {
        Self { producer, status, instruments }
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
        message: &OwnedMessage,
        cancel: &CancellationToken,
    ) -> Finish {
        let name = handler.name();
        let parent =
            crate::headers::header_str(message, crate::trace::TRACEPARENT).and_then(crate::trace::TraceContext::parse);
        let span = tracing::info_span!(
            "message",
            topic = message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            key = message.key().map(String::from_utf8_lossy).as_deref(),
            handler = %name,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            attempt = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        // With an OpenTelemetry layer, the span's own ids; else a child of the message's trace
        // (a new trace when it has none).
        #[cfg(feature = "otel")]
        let adopted = crate::otel::adopt(&span, parent.as_ref());
        #[cfg(not(feature = "otel"))]
        let adopted = None;
        let trace = adopted
            .unwrap_or_else(|| parent.map_or_else(crate::trace::TraceContext::new_root, |parent| parent.child()));
        span.record("trace_id", trace.trace_id());
        span.record("span_id", trace.span_id());
        self.process_inner(handler, instruments, name, message, cancel, &trace).instrument(span).await
    }

    async fn process_inner(
        &self,
        handler: &BoundHandler,
        instruments: &Instruments,
        name: &str,
        message: &OwnedMessage,
        cancel: &CancellationToken,
        trace: &crate::trace::TraceContext,
    ) -> Finish {
        let span = tracing::Span::current();
        let from_retry_topic = handler.retry_topic.as_deref() == Some(message.topic());
        let mut attempt = 1u32;
        if from_retry_topic {
            // A retried message: wait until it is due (the lane waits, not the handler; the poll
            // thread keeps polling and pauses this partition once its buffer is full).
            let (retry, due) = retry::schedule_of(message);
            attempt = retry + 1;
            if let Some(due) = due {
                let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
                if !wait.is_zero() && !self::wait(wait, cancel).await {
                    return Finish::Interrupted;
                }
            }
        }
        let (metrics, breaker) = (instruments.metrics.as_ref(), instruments.breaker.as_deref());
        loop {
            span.record("attempt", attempt);
            // An open circuit holds the message here (the consumer pauses the partition).
            let permit = match breaker {
                Some(breaker) => match breaker.admit(cancel).await {
                    Some(permit) => Some(permit),
                    None => return Finish::Interrupted,
                },
                None => None,
            };
            let (result, call) = attempt_once(handler, message, attempt, trace).await;
            if let (Some(breaker), Some(permit)) = (breaker, permit) {
                breaker.record(permit, verdict(&result));
            }
            if let Some(metrics) = metrics {
                if let Some(elapsed) = call {
                    metrics.observe_call(elapsed);
                }
                match &result {
                    Ok(()) => metrics.processed(),
                    Err(failure) => metrics.failed(failure.kind_name()),
                }
            }
            let outcome = decide(result, attempt, &handler.retry, handler.dlq_topic.is_some());
            span.record("outcome", outcome.name());
            match outcome {
                Outcome::Done => {
                    tracing::debug!(attempt, "handled");
                    self.status.clear_stall(message.topic(), message.partition());
                    return Finish::Finished;
                }
                Outcome::Retry { delay, reason } => {
                    metrics.inspect(|m| m.retried());
                    if let Some(retry_topic) = handler.retry_topic.as_deref() {
                        tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, %reason, retry_topic, "handler failed; sent to the retry topic");
                        let headers = retry::retry_headers(message, attempt, delay, &reason);
                        return Finish::Publishing(self.publish_durably(
                            retry_topic,
                            message,
                            headers,
                            "retry",
                            cancel,
                        ));
                    }
                    tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, %reason, "handler failed; retrying in place");
                    if !wait(delay, cancel).await {
                        return Finish::Interrupted;
                    }
                }
                Outcome::DeadLetter { kind, reason } => {
                    let Some(dlq) = handler.dlq_topic.as_deref() else {
                        unreachable!("decide() dead-letters only when a DLQ is configured")
                    };
                    metrics.inspect(|m| m.dead_lettered(kind.as_str()));
                    let letter = DeadLetter { kind, reason: &reason, attempts: attempt, handler: name };
                    tracing::warn!(dlq, error_kind = kind.as_str(), %reason, attempts = attempt, "dead-lettering");
                    let headers = dead_letter_headers(message, &letter);
                    return Finish::Publishing(self.publish_durably(dlq, message, headers, "dead-letter", cancel));
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
                    if !wait(delay, cancel).await {
                        return Finish::Interrupted;
                    }
                }
            }
            attempt += 1;
        }
    }

    /// Republishes `message` (key and value unchanged) to `topic` with `headers`; the returned
    /// future resolves once the broker acknowledged it, trying again with backoff while the
    /// broker refuses; only cancellation (during a backoff) stops it, leaving the offset
    /// unfinished so the message is redelivered. (Only handlers without `dlq` stall, so a
    /// dead letter never has a stall to clear.)
    fn publish_durably(
        &self,
        topic: &str,
        message: &OwnedMessage,
        headers: OwnedHeaders,
        what: &'static str,
        cancel: &CancellationToken,
    ) -> Publishing {
        let producer = self.producer.clone();
        let status = self.status.clone();
        let cancel = cancel.clone();
        let topic = topic.to_string();
        let (key, payload) = (message.key().map(<[u8]>::to_vec), message.payload().map(<[u8]>::to_vec));
        let publish = async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(headers.clone());
                if let Some(key) = &key {
                    record = record.key(key);
                }
                if let Some(payload) = &payload {
                    record = record.payload(payload);
                }
                match producer.send(record, Duration::from_secs(30)).await {
                    Ok(delivery) => {
                        tracing::debug!(
                            topic,
                            partition = delivery.partition,
                            offset = delivery.offset,
                            "{what} published"
                        );
                        return Finish::Finished;
                    }
                    Err((error, _)) => {
                        status.metrics.delivery_failed(&topic);
                        tracing::error!(topic, %error, "{what} publish failed; the offset stays unfinished, trying again");
                        if !wait(backoff, &cancel).await {
                            return Finish::Interrupted;
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        };
        Box::pin(publish.in_current_span())
    }
}

/// What an attempt tells the handler's circuit breaker: only failures a broken dependency
/// causes (retryable errors, panics) count against it.
fn verdict(result: &Result<(), Failure>) -> Verdict {
    match result {
        Ok(()) => Verdict::Success,
        Err(Failure::Handler(error)) if !error.is_permanent() => Verdict::Failure,
        Err(Failure::Panic(_)) => Verdict::Failure,
        Err(_) => Verdict::Neutral,
    }
}

/// One attempt: decode, validate, run the handler, catch a panic. Also returns how long the
/// handler ran, when it was called (decode and validation failures do not call it).
async fn attempt_once(
    handler: &BoundHandler,
    message: &OwnedMessage,
    attempt: u32,
    trace: &crate::trace::TraceContext,
) -> (Result<(), Failure>, Option<Duration>) {
    let ctx = context(message, attempt, trace.clone());
    let invoke = handler.registration.invoke;
    let started = std::time::Instant::now();
    let future = match std::panic::catch_unwind(AssertUnwindSafe(|| invoke(message.payload(), ctx))) {
        Ok(Ok(future)) => future,
        Ok(Err(input)) => return (Err(Failure::Input(input)), None),
        Err(panic) => return (Err(Failure::Panic(panic_message(&*panic))), Some(started.elapsed())),
    };
    // What the handler publishes carries this message's correlation id (or its id).
    let correlation = crate::headers::header_str(message, crate::names::header::CORRELATION_ID)
        .or_else(|| crate::headers::header_str(message, crate::names::header::MESSAGE_ID))
        .map(str::to_string);
    let future = crate::publisher::with_correlation(correlation, AssertUnwindSafe(future).catch_unwind());
    let result = match crate::trace::scope(trace.clone(), future).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(Failure::Handler(error)),
        Err(panic) => Err(Failure::Panic(panic_message(&*panic))),
    };
    (result, Some(started.elapsed()))
}

fn context(message: &OwnedMessage, attempt: u32, trace: crate::trace::TraceContext) -> MessageContext {
    let origin = crate::headers::origin(message);
    MessageContext {
        topic: origin.topic,
        partition: origin.partition,
        offset: origin.offset,
        timestamp: message.timestamp().to_millis(),
        key: message.key().map(<[u8]>::to_vec),
        headers: message
            .headers()
            .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default(),
        attempt,
        trace,
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
