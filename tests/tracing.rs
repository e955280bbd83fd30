//! W3C trace context end to end, against a real broker: the publisher writes `traceparent`, the
//! consuming handler's span and context carry the same trace id, and what a handler publishes
//! continues that trace with the handler's span as the parent.
//!
//! This test binary installs its own tracing subscriber (a layer that records the fields of every
//! `message` span), so it lives in a file of its own.

mod common;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::{config, header, read_topic, unique, wait_for};
use kafka_events::prelude::*;
use kafka_events::publisher::Publisher;
use kafka_events::trace::TraceContext;
use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;
use validator::Validate;

#[derive(Debug, Clone, Serialize, Deserialize, Validate)]
struct Hop {
    #[validate(length(min = 1))]
    id: String,
}

/// The fields of one `message` span, as the subscriber saw them.
#[derive(Debug, Default, Clone)]
struct SpanFields {
    topic: String,
    trace_id: String,
    span_id: String,
}

impl Visit for SpanFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "topic" => self.topic = value.into(),
            "trace_id" => self.trace_id = value.into(),
            "span_id" => self.span_id = value.into(),
            _ => {}
        }
    }
    // The runtime gives its string fields as `Display` values: they arrive here.
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

static SPANS: Mutex<Vec<SpanFields>> = Mutex::new(Vec::new());

struct CaptureMessageSpans;

/// Keeps each `message` span's fields (set at creation or recorded later) and collects them in
/// `SPANS` when the span closes.
impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for CaptureMessageSpans {
    fn on_new_span(&self, attrs: &tracing::span::Attributes<'_>, id: &tracing::span::Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() == "message" {
            let mut fields = SpanFields::default();
            attrs.record(&mut fields);
            ctx.span(id).expect("new span").extensions_mut().insert(fields);
        }
    }
    fn on_record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<SpanFields>() {
                values.record(fields);
            }
        }
    }
    fn on_close(&self, id: tracing::span::Id, ctx: Context<'_, S>) {
        if let Some(fields) = ctx.span(&id).and_then(|span| span.extensions().get::<SpanFields>().cloned()) {
            SPANS.lock().unwrap().push(fields);
        }
    }
}

/// What each handler saw: (topic, trace context).
static SEEN: Mutex<Vec<(String, TraceContext)>> = Mutex::new(Vec::new());
static PUBLISHER: OnceLock<Publisher> = OnceLock::new();

fn seen(ctx: &MessageContext, id: &str) {
    SEEN.lock().unwrap().push((ctx.topic().to_string(), ctx.trace().clone()));
    common::record_call(ctx, id, true);
}

/// Handles a hop and publishes the next one.
#[kafka_handler(topic = "traced", dlq)]
async fn first_hop(event: Hop, ctx: MessageContext) -> Result<(), HandlerError> {
    PUBLISHER.get().expect("publisher").publish("traced_next", &event).await?;
    seen(&ctx, &event.id);
    Ok(())
}

#[kafka_handler(topic = "traced_next", dlq)]
async fn second_hop(event: Hop, ctx: MessageContext) -> Result<(), HandlerError> {
    seen(&ctx, &event.id);
    Ok(())
}

fn traceparent_of(topic: &str) -> TraceContext {
    let message = read_topic(topic, 1).pop().expect("the published message");
    TraceContext::parse(&header(&message, "traceparent").expect("a traceparent header")).expect("valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_written_by_the_publisher_runs_through_a_chain_of_handlers() {
    tracing_subscriber::registry().with(CaptureMessageSpans).init();
    let run = unique("traced");
    let runtime = kafka_events::runtime::launch(config(&run, &["first_hop", "second_hop"])).await.expect("launch");
    PUBLISHER.set(runtime.publisher()).expect("set once");
    let (first, second) = (format!("{run}.traced"), format!("{run}.traced_next"));

    runtime.publisher().publish("traced", &Hop { id: "hop-1".into() }).await.expect("publish");
    wait_for(&second, Duration::from_secs(60), |calls| !calls.is_empty()).await;
    runtime.shutdown().await.expect("shutdown");

    let published = traceparent_of(&first);
    let seen = SEEN.lock().unwrap().clone();
    let handled = |topic: &str| seen.iter().find(|(t, _)| t == topic).map(|(_, trace)| trace.clone()).unwrap();
    let (first_ctx, second_ctx) = (handled(&first), handled(&second));
    assert_eq!(first_ctx.trace_id(), published.trace_id(), "the handler continues the publisher's trace");
    assert_ne!(first_ctx.span_id(), published.span_id(), "with a span of its own");

    let republished = traceparent_of(&second);
    assert_eq!(republished.trace_id(), published.trace_id(), "what the handler publishes stays in the trace");
    assert_eq!(republished.span_id(), first_ctx.span_id(), "with the handler's span as its parent");
    assert_eq!(second_ctx.trace_id(), published.trace_id(), "the chain of handlers is one trace");

    let spans = SPANS.lock().unwrap().clone();
    let span = |topic: &str| spans.iter().find(|s| s.topic == topic).cloned().expect("a message span");
    assert_eq!(span(&first).trace_id, published.trace_id(), "the trace id is on the consuming handler's span");
    assert_eq!(span(&first).span_id, first_ctx.span_id());
    assert_eq!(span(&second).trace_id, published.trace_id());
}
