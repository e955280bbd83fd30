//! OpenTelemetry (feature `otel`).
//!
//! With a [`tracing_opentelemetry`] layer in the subscriber, every message span joins the trace
//! of the message's `traceparent` as a child of the publishing span, and the ids the handler sees
//! ([`MessageContext::trace`](crate::MessageContext::trace)) and the publisher writes are the
//! OpenTelemetry span's own — so the exported spans of a chain of handlers form one trace.
//! Without such a layer nothing changes.
//!
//! [`init`] sets all of this up for the common case: JSON logs to stdout (filtered by
//! `RUST_LOG`) and spans exported over OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (default `http://localhost:4318`).

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::trace::TraceContext;

/// Keeps the exporter running; dropping it flushes and shuts the exporter down.
#[must_use = "dropping the guard shuts the exporter down"]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("kafka-events: OpenTelemetry shutdown: {error}");
        }
    }
}

/// Installs the global tracing subscriber: JSON logs (`RUST_LOG`, default `info`) and an
/// OpenTelemetry layer exporting spans of service `service_name` over OTLP/HTTP.
pub fn init(service_name: &str) -> Result<OtelGuard, Box<dyn std::error::Error + Send + Sync>> {
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
    let provider = SdkTracerProvider::builder()
        .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(service_name.to_string()).build())
        .with_batch_exporter(exporter)
        .build();
    let tracer = provider.tracer("kafka-events");
    tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with(tracing_subscriber::fmt::layer().json())
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init()?;
    Ok(OtelGuard { provider })
}

/// Makes `span` a child of `parent` in the OpenTelemetry tracer, when one is installed, and
/// returns the span's own OpenTelemetry ids; `None` without an OpenTelemetry layer.
pub(crate) fn adopt(span: &tracing::Span, parent: Option<&TraceContext>) -> Option<TraceContext> {
    // No layer, nothing to adopt: asked with an empty parent first (the real one replaces it
    // below), so that a message's ids are not parsed from hex for a tracer that is not there.
    if span.is_disabled() || span.set_parent(opentelemetry::Context::new()).is_err() {
        return None;
    }
    if let Some(parent) = parent {
        let remote = SpanContext::new(
            TraceId::from_hex(parent.trace_id()).ok()?,
            SpanId::from_hex(parent.span_id()).ok()?,
            if parent.sampled() { TraceFlags::SAMPLED } else { TraceFlags::default() },
            true,
            TraceState::default(),
        );
        span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote)).ok()?;
    }
    let context = span.context();
    let own = context.span().span_context().clone();
    own.is_valid()
        .then(|| TraceContext::from_parts(&own.trace_id().to_string(), &own.span_id().to_string(), own.is_sampled()))
        .flatten()
}
