//! Sensor metrics into PostgreSQL: a batch handler writes each batch of readings into `metrics`
//! and records their event ids in `processed_events` — in one database transaction — so a
//! redelivered reading (a crash before the offset commit, a producer retry) is never written
//! twice. Readings are keyed by sensor, so each sensor's readings keep their order.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo run --example sensor_metrics
//! ```
//!
//! Without `KAFKA_BROKERS` it runs on the embedded broker and demonstrates itself: it publishes
//! 1,000 readings of 10 sensors, every one of them twice, plus one invalid reading; prints what
//! landed in `metrics` and exits. With `KAFKA_BROKERS` it consumes `sensor_metrics` until Ctrl-C.
//!
//! Configuration: `DATABASE_URL` (the `metrics` table and `processed_events` live there), and
//! every `KAFKA_*` variable of kafka-events (see the README), e.g. `KAFKA_SERVICE_NAME`.

use std::time::Duration;

use kafka_events::prelude::*;
use kafka_events::PublishOptions;
use serde::{Deserialize, Serialize};
use validator::Validate;

/// The schema of the `metrics` table.
const MIGRATION: &str = include_str!("migrations/0001_metrics.sql");

/// One reading of one sensor, as the sensors publish it.
#[derive(Debug, Serialize, Deserialize, Validate)]
struct SensorMetric {
    /// Unique per reading: the idempotency key.
    #[validate(length(min = 1, max = 200))]
    event_id: String,
    #[validate(length(min = 1, max = 100))]
    sensor_id: String,
    #[validate(length(min = 1, max = 100))]
    metric: String,
    #[validate(range(min = -1_000_000.0, max = 1_000_000.0))]
    value: f64,
    /// Milliseconds since the epoch.
    recorded_at_ms: i64,
}

/// Up to 100 readings at once (waiting at most 100 ms for a batch to fill), one partition's
/// readings in order. `idempotent(id = "event_id")`: readings already in `processed_events` are
/// left out of the batch. A failed batch is retried whole (5 times, with backoff), then each
/// reading is dead-lettered; invalid readings are dead-lettered on their own.
#[kafka_handler(
    topic = "sensor_metrics",
    batch(max = 100, linger = "100ms"),
    idempotent(id = "event_id"),
    retry(max = 5),
    dlq
)]
async fn store_metrics(readings: Vec<SensorMetric>, ctx: BatchContext) -> Result<(), HandlerError> {
    let mut insert = sqlx::QueryBuilder::new("INSERT INTO metrics (event_id, sensor_id, metric, value, recorded_at) ");
    insert.push_values(&readings, |mut row, r| {
        row.push_bind(&r.event_id).push_bind(&r.sensor_id).push_bind(&r.metric).push_bind(r.value);
        row.push("to_timestamp(").push_bind_unseparated(r.recorded_at_ms as f64 / 1000.0).push_unseparated(")");
    });
    // The batch's transaction: it commits with the readings' processed_events rows when this
    // function returns Ok, and rolls back otherwise.
    let mut tx = ctx.transaction()?;
    insert.build().execute(&mut *tx).await?;
    tracing::info!(partition = ctx.partition(), readings = readings.len(), "batch stored");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,librdkafka=off".into());
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let database_url = std::env::var("DATABASE_URL")
        .map_err(|_| "set DATABASE_URL to a PostgreSQL database, e.g. postgres://postgres@127.0.0.1:5432/postgres")?;

    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&database_url).await?;
    sqlx::Executor::execute(&pool, MIGRATION).await?;

    let config = Config::from_env()?.with_idempotency(&database_url).with_handlers(["store_metrics"]);
    let demo = config.brokers().is_none();
    let runtime = kafka_events::runtime::launch(config).await?;
    if !demo {
        println!("sensor_metrics: consuming from {} until Ctrl-C", runtime.bootstrap_servers());
        return Ok(runtime.run_until_signal().await?);
    }

    // The demo: 1,000 readings of 10 sensors, each published twice, and one invalid reading.
    let run = uuid::Uuid::now_v7().simple().to_string();
    let publisher = runtime.publisher();
    let (sensors, per_sensor) = (10, 100);
    for round in 0..per_sensor {
        for sensor in 0..sensors {
            let reading = SensorMetric {
                event_id: format!("{run}-s{sensor}-{round}"),
                sensor_id: format!("{run}-s{sensor}"),
                metric: "temperature".into(),
                value: 20.0 + f64::from(round) / 10.0,
                recorded_at_ms: 1_700_000_000_000 + i64::from(round) * 1000,
            };
            let options = || PublishOptions::new().key(&reading.sensor_id);
            publisher.publish_with("sensor_metrics", &reading, options()).await?;
            publisher.publish_with("sensor_metrics", &reading, options()).await?;
        }
    }
    let invalid = SensorMetric {
        event_id: format!("{run}-bad"),
        sensor_id: String::new(),
        metric: "temperature".into(),
        value: 1.0,
        recorded_at_ms: 0,
    };
    publisher.publish("sensor_metrics", &invalid).await?;
    let expected = i64::from(sensors * per_sensor);
    println!("published {} readings (each twice) and 1 invalid one; waiting for them…", expected);

    let count = |sql: &'static str| {
        let (pool, run) = (pool.clone(), format!("{run}-%"));
        async move { sqlx::query_scalar::<_, i64>(sql).bind(run).fetch_one(&pool).await }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut rows = 0;
    while tokio::time::Instant::now() < deadline {
        rows = count("SELECT count(*) FROM metrics WHERE sensor_id LIKE $1").await?;
        let dead = kafka_events_metric(&runtime.metrics_text(), "kafka_events_messages_dead_lettered_total");
        let duplicates = kafka_events_metric(&runtime.metrics_text(), "kafka_events_duplicates_skipped_total");
        if rows >= expected && dead >= 1.0 && duplicates >= expected as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Per-sensor order: within each sensor, insertion order (id) follows recorded_at.
    let out_of_order = count(
        "SELECT count(*) FROM (SELECT recorded_at < lag(recorded_at) OVER (PARTITION BY sensor_id ORDER BY id) AS back \
         FROM metrics WHERE sensor_id LIKE $1) t WHERE back",
    )
    .await?;
    let text = runtime.metrics_text();
    runtime.shutdown().await?;
    println!("  rows in metrics:          {rows} (expected {expected})");
    println!("  copies skipped:           {}", kafka_events_metric(&text, "kafka_events_duplicates_skipped_total"));
    println!("  dead-lettered (invalid):  {}", kafka_events_metric(&text, "kafka_events_messages_dead_lettered_total"));
    println!("  readings out of order:    {out_of_order}");
    if rows != expected || out_of_order != 0 {
        eprintln!("\nunexpected result");
        std::process::exit(1);
    }
    println!("\nevery reading stored once, each sensor in order");
    Ok(())
}

/// The sum of a metric's samples in Prometheus text.
fn kafka_events_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
