//! The span every message runs in, and recording into it at no cost when nobody listens.

use crate::message::{Consumed, Received};
use crate::trace::TraceContext;

/// The span of `message`'s processing by `handler`, attempt `attempt`, and the trace context its
/// handler runs in (a child of the message's own `traceparent`, a new trace when it has none).
///
/// Every field the span will show is given at its creation where it is known by then: a log
/// subscriber formats a span's fields as they come, and each later `record` is another lookup
/// and format. Strings are `Display`ed (no escaping pass). The trace ids come first unless an
/// OpenTelemetry layer makes them the span's own.
pub(super) fn message_span(handler: &str, message: &Received<'_>, attempt: u32) -> (tracing::Span, TraceContext) {
    let parent = crate::trace::parent_of(message);
    let span = |trace: Option<&TraceContext>| {
        tracing::info_span!(
            "message",
            topic = %message.topic(),
            partition = message.partition(),
            offset = message.offset(),
            key = message.key().map(|key| tracing::field::display(Lossy(key))),
            handler = %handler,
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
