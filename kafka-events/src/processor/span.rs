//! Which message a log line is about: the coordinates the default subscriber's lines carry, or a
//! span per message under any other subscriber (see [`crate::logging`]).

use std::sync::Arc;

use crate::logging::lines_carry_messages;
use crate::message::{Consumed, Received};
use crate::trace::{Coordinates, Labels, TraceContext};

/// How a message's processing names the message in its log lines.
pub(super) enum Context {
    /// The default subscriber: its coordinates, carried in the message's task-local.
    Lines(Coordinates),
    /// Any other subscriber: a `message` span.
    Span(tracing::Span),
}

/// The log context of `message`'s processing (attempt `attempt`) by the lane `labels` names, and
/// the trace context its handler runs in (a child of the message's own `traceparent`, a new
/// trace when it has none).
pub(super) fn message_context(labels: &Arc<Labels>, message: &Received<'_>, attempt: u32) -> (Context, TraceContext) {
    let parent = crate::trace::parent_of(message);
    if lines_carry_messages() {
        let coordinates = Coordinates {
            labels: labels.clone(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            attempt: std::cell::Cell::new(attempt),
            outcome: std::cell::Cell::new(None),
        };
        return (Context::Lines(coordinates), crate::trace::child_of(parent));
    }
    // No subscriber takes `info` spans here (none installed, or one filtering them out): no span.
    // The `span!` macro would still build the span's fields for the `log` crate (`tracing`'s
    // `log` feature, which sqlx turns on) on every message.
    if !tracing::enabled!(target: "kafka_events::processor::span", tracing::Level::INFO) {
        return (Context::Span(tracing::Span::none()), crate::trace::child_of(parent));
    }
    let (span, trace) = message_span(labels, message, attempt, parent);
    (Context::Span(span), trace)
}

/// The `message` span. Every field the span will show is given at its creation where it is known
/// by then: a log subscriber formats a span's fields as they come, and each later `record` is
/// another lookup and format. Strings are `Display`ed (no escaping pass). The trace ids come
/// first unless an OpenTelemetry layer makes them the span's own.
fn message_span(
    labels: &Labels,
    message: &Received<'_>,
    attempt: u32,
    parent: Option<TraceContext>,
) -> (tracing::Span, TraceContext) {
    let span = |trace: Option<&TraceContext>| {
        tracing::info_span!(
            "message",
            topic = %labels.topic,
            partition = message.partition(),
            offset = message.offset(),
            key = message.key().map(|key| tracing::field::display(Lossy(key))),
            handler = %labels.handler,
            trace_id = trace.map(|trace| tracing::field::display(trace.trace_id())),
            span_id = trace.map(|trace| tracing::field::display(trace.span_id())),
            attempt,
            outcome = tracing::field::Empty,
        )
    };
    // With the `otel` feature, the span's own ids when an OpenTelemetry layer is installed
    // (known only once the span exists); else a child of the message's trace.
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
    (span, trace)
}

/// Notes the attempt now running, for the lines that follow.
pub(super) fn note_attempt(attempt: u32) {
    if crate::trace::with_message(|_, message| message.attempt.set(attempt)).is_none() && spans_possible() {
        record(&tracing::Span::current(), "attempt", attempt);
    }
}

/// Notes the outcome decided, for the lines that follow.
pub(super) fn note_outcome(outcome: &'static str) {
    if crate::trace::with_message(|_, message| message.outcome.set(Some(outcome))).is_none() && spans_possible() {
        record(&tracing::Span::current(), "outcome", tracing::field::display(outcome));
    }
}

/// Whether a subscriber was ever installed (without one there is no current span to look up).
fn spans_possible() -> bool {
    tracing::dispatcher::has_been_set()
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
pub(super) fn record(span: &tracing::Span, field: &str, value: impl tracing::Value) {
    if !span.is_disabled() {
        span.record(field, value);
    }
}

/// Records a message span's trace ids, both in one record (each is a lookup of the span by the
/// subscriber).
#[cfg(feature = "otel")]
fn record_ids(span: &tracing::Span, trace: &TraceContext) {
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
