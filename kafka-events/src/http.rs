//! The HTTP endpoint (axum): `/health/live`, `/health/ready` (JSON; 503 when not ready),
//! `/metrics` (Prometheus text), `/topology` and `/asyncapi.json` (the service's topology
//! document, see [`describe`](crate::describe)). Off unless `KAFKA_EVENTS_HTTP` is set.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::health::{GroupState, Health, HealthBoard, Readiness, ReadinessPolicy};
use crate::metrics::Metrics;

#[derive(Clone)]
struct Shared {
    status: Arc<HealthBoard>,
    metrics: Arc<Metrics>,
    policy: ReadinessPolicy,
    started: Instant,
    /// `/topology` and `/asyncapi.json`, rendered once.
    topology: Arc<str>,
    asyncapi: Arc<str>,
}

/// A running endpoint.
pub(crate) struct HttpServer {
    pub(crate) addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    pub(crate) async fn start(
        addr: SocketAddr,
        status: Arc<HealthBoard>,
        metrics: Arc<Metrics>,
        policy: ReadinessPolicy,
        description: &crate::describe::Description,
    ) -> Result<Self, Error> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| Error::Http { addr, source: e })?;
        let addr = listener.local_addr().map_err(|e| Error::Http { addr, source: e })?;
        use crate::describe::DescribeFormat;
        let topology: Arc<str> = description.render(DescribeFormat::Json).into();
        let asyncapi: Arc<str> = description.render(DescribeFormat::AsyncApi).into();
        let shared = Shared { status, metrics, policy, started: Instant::now(), topology, asyncapi };
        let app = Router::new()
            .route("/health/live", get(live))
            .route("/health/ready", get(ready))
            .route("/metrics", get(serve_metrics))
            .route("/topology", get(|State(shared): State<Shared>| async move { json_text(&shared.topology) }))
            .route("/asyncapi.json", get(|State(shared): State<Shared>| async move { json_text(&shared.asyncapi) }))
            .with_state(shared);
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move { stopped.cancelled().await });
            if let Err(error) = server.await {
                tracing::error!(%error, "HTTP endpoint failed");
            }
        });
        tracing::info!(%addr, "HTTP endpoint: /health/live, /health/ready, /metrics, /topology, /asyncapi.json");
        Ok(Self { addr, stop, task })
    }

    /// Stops accepting, lets requests in flight finish for up to a second, then drops them.
    pub(crate) async fn stop(mut self) {
        self.stop.cancel();
        if tokio::time::timeout(std::time::Duration::from_secs(1), &mut self.task).await.is_err() {
            self.task.abort();
        }
    }
}

/// A JSON document rendered once.
fn json_text(text: &Arc<str>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], text.to_string()).into_response()
}

/// The body of `/health/live` and `/health/ready`.
#[derive(Serialize)]
struct Report {
    status: &'static str,
    problems: Vec<String>,
    uptime_seconds: f64,
    groups: Vec<GroupReport>,
    stalled: Vec<StallReport>,
    lag: Vec<crate::health::PartitionLag>,
    circuits: Vec<crate::circuit::CircuitHealth>,
}

#[derive(Serialize)]
struct GroupReport {
    group: String,
    state: GroupState,
    assigned_partitions: usize,
    assignments: u64,
    revocations: u64,
    seconds_since_last_poll: Option<f64>,
    seconds_since_last_message: Option<f64>,
    buffered: usize,
    buffered_peak: usize,
    buffer_cap: usize,
    paused_partitions: usize,
    seconds_brokers_unreachable: Option<f64>,
}

#[derive(Serialize)]
struct StallReport {
    topic: String,
    partition: i32,
    offset: i64,
    kind: &'static str,
    reason: String,
}

fn report(health: &Health, verdict: Readiness, uptime: f64) -> Response {
    let code = if verdict.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = Report {
        status: if verdict.ready { "ok" } else { "unavailable" },
        problems: verdict.problems,
        uptime_seconds: uptime,
        groups: health
            .groups
            .iter()
            .map(|(group, g)| GroupReport {
                group: group.clone(),
                state: g.state,
                assigned_partitions: g.assigned_partitions,
                assignments: g.assignments,
                revocations: g.revocations,
                seconds_since_last_poll: g.since_last_poll.map(|d| d.as_secs_f64()),
                seconds_since_last_message: g.since_last_message.map(|d| d.as_secs_f64()),
                buffered: g.buffered,
                buffered_peak: g.buffered_peak,
                buffer_cap: g.buffer_cap,
                paused_partitions: g.paused_partitions,
                seconds_brokers_unreachable: g.brokers_unreachable_for.map(|d| d.as_secs_f64()),
            })
            .collect(),
        stalled: health
            .stalled
            .iter()
            .map(|s| StallReport {
                topic: s.topic.clone(),
                partition: s.partition,
                offset: s.offset,
                kind: s.kind.as_str(),
                reason: s.reason.clone(),
            })
            .collect(),
        lag: health.lag.clone(),
        circuits: health.circuits.clone(),
    };
    (code, Json(body)).into_response()
}

async fn live(State(shared): State<Shared>) -> Response {
    let health = shared.status.snapshot();
    let verdict = health.liveness(&shared.policy);
    report(&health, verdict, shared.started.elapsed().as_secs_f64())
}

async fn ready(State(shared): State<Shared>) -> Response {
    let health = shared.status.snapshot();
    let uptime = shared.started.elapsed();
    let verdict = health.readiness(&shared.policy, uptime);
    report(&health, verdict, uptime.as_secs_f64())
}

async fn serve_metrics(State(shared): State<Shared>) -> Response {
    let text = shared.metrics.encode(&shared.status.snapshot());
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}
