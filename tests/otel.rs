//! Feature `otel` against a real broker: with an OpenTelemetry layer installed, the message span
//! is exported as a child of the span that published the message (its `traceparent`), and the
//! handler sees the exported span's own ids.
//!
//! This test binary installs its own global subscriber, so it lives in a file of its own.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::{config, header, read_topic, unique, wait_for};
use kafka_events::prelude::*;
use kafka_events::trace::TraceContext;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde::{Deserialize, Serialize};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Ping {
    #[validate(length(min = 1))]
    id: String,
}

static SEEN: Mutex<Option<TraceContext>> = Mutex::new(None);

#[kafka_handler(topic = "exported", dlq)]
async fn exported(event: Ping, ctx: MessageContext) -> Result<(), HandlerError> {
    *SEEN.lock().unwrap() = Some(ctx.trace().clone());
    common::record_call(&ctx, &event.id, true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_spans_are_exported_as_children_of_the_publishing_span() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test"))).init();

    let run = unique("otel");
    let runtime = kafka_events::runtime::launch(config(&run, &["exported"])).await.expect("launch");
    let topic = format!("{run}.exported");
    runtime.publisher().publish("exported", &Ping { id: "p1".into() }).await.expect("publish");
    wait_for(&topic, Duration::from_secs(60), |calls| !calls.is_empty()).await;
    runtime.shutdown().await.expect("shutdown");
    provider.force_flush().expect("flush");

    let message = read_topic(&topic, 1).pop().expect("the published message");
    let published = TraceContext::parse(&header(&message, "traceparent").expect("traceparent")).expect("valid");
    let spans = exporter.get_finished_spans().expect("exported spans");
    let span = spans
        .iter()
        .find(|s| {
            s.name == "message"
                && s.attributes.iter().any(|kv| kv.key.as_str() == "topic" && kv.value.as_str() == topic)
        })
        .unwrap_or_else(|| panic!("no exported message span for {topic}: {spans:?}"));
    assert_eq!(span.span_context.trace_id().to_string(), published.trace_id(), "the publisher's trace");
    assert_eq!(span.parent_span_id.to_string(), published.span_id(), "child of the publishing span");
    let seen = SEEN.lock().unwrap().clone().expect("handled");
    assert_eq!(seen.trace_id(), published.trace_id());
    assert_eq!(seen.span_id(), span.span_context.span_id().to_string(), "the handler sees the exported span's ids");
}
