//! An idempotent batch handler writing to PostgreSQL, killed with SIGKILL mid-stream — once after
//! its database commits but before any Kafka commit, once while a batch's transaction is open —
//! then restarted: every row is there exactly once.
//!
//! The consumer is this same test binary, re-run as a child process in `batch_crash_child` mode.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{
    append_line, child_tracing, committed_offsets, config, count, create_table, create_topic, database, database_url,
    drop_run_data, eventually, produce_records, producer, spawn_child, table_of, terminate, unique, wait_committed,
    wait_lines, ChildGuard, Record,
};
use kafka_events::names::header as h;
use kafka_events::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

const EVENTS: usize = 3000;
const SENSORS: usize = 10;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Reading {
    #[validate(length(min = 1))]
    sensor: String,
    seq: i64,
    value: f64,
}

/// Writes the batch into the run's table (no unique key: only idempotency keeps duplicates
/// out) in the batch's transaction. With `CRASH_HANG_AT`, the batch holding that reading writes
/// its rows, tells the test through `CRASH_MARKER` and never returns: its transaction stays open.
#[kafka_handler(topic = "sensors", batch(max = 100, linger = "20ms"), idempotent, dlq)]
async fn sensor_rows(events: Vec<Reading>, ctx: BatchContext) -> Result<(), HandlerError> {
    let mut insert = sqlx::QueryBuilder::new(format!("INSERT INTO {} (sensor, seq, value) ", table_of(ctx.topic())));
    insert.push_values(&events, |mut row, e| {
        row.push_bind(&e.sensor).push_bind(e.seq).push_bind(e.value);
    });
    let mut tx = ctx.transaction()?;
    insert.build().execute(&mut *tx).await?;
    if let Ok(hang_at) = std::env::var("CRASH_HANG_AT") {
        if events.iter().any(|e| format!("{}/{}", e.sensor, e.seq) == hang_at) {
            append_line("CRASH_MARKER", &hang_at, ctx.partition(), ctx.messages()[0].offset())?;
            std::future::pending::<()>().await;
        }
    }
    Ok(())
}

/// The child process: runs `sensor_rows` until SIGTERM or SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the batch crash tests as a child process"]
async fn batch_crash_child() {
    let Ok(run) = std::env::var("CRASH_RUN") else { return };
    child_tracing();
    let commit_ms: u64 = std::env::var("CRASH_COMMIT_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let config = config(&run, &["sensor_rows"])
        .with_idempotency(&database_url())
        .with_commit_interval(Duration::from_millis(commit_ms));
    kafka_events::runtime::start(config).await.expect("runtime");
}

struct Run {
    run: String,
    topic: String,
    table: String,
    scope: String,
    group: String,
    pool: sqlx::PgPool,
}

/// A run's topic (3 partitions) holding every reading, with its table.
async fn prepare(name: &str) -> Run {
    let run = unique(name);
    let topic = format!("{run}.sensors");
    let table = table_of(&topic);
    let pool = database().await;
    create_table(&pool, &table, "sensor TEXT NOT NULL, seq BIGINT NOT NULL, value DOUBLE PRECISION").await;
    create_topic(&topic, 3).await;
    create_topic(&format!("{topic}.dlq"), 3).await;
    let records: Vec<Record> = (0..EVENTS)
        .map(|i| {
            let reading = Reading { sensor: format!("sensor-{}", i % SENSORS), seq: (i / SENSORS) as i64, value: 0.5 };
            let id = format!("{}/{}", reading.sensor, reading.seq);
            (reading.sensor.clone(), serde_json::to_vec(&reading).unwrap(), vec![(h::MESSAGE_ID.to_string(), id)])
        })
        .collect();
    produce_records(&producer(), &topic, &records).await;
    let scope = format!("{run}-svc/{topic}");
    let group = format!("{run}-svc-main");
    Run { run, topic, table, scope, group, pool }
}

impl Run {
    fn spawn(&self, envs: &[(&str, &str)]) -> ChildGuard {
        let mut all = vec![("CRASH_RUN", self.run.as_str())];
        all.extend_from_slice(envs);
        ChildGuard(Some(spawn_child("batch_crash_child", &all)))
    }

    async fn rows(&self) -> i64 {
        count(&self.pool, &format!("FROM {}", self.table), None).await
    }

    async fn processed(&self) -> i64 {
        count(&self.pool, "FROM processed_events WHERE scope = $1", Some(&self.scope)).await
    }

    /// Rows and `processed_events` rows in one statement, so one snapshot: a batch whose COMMIT
    /// the killed consumer had already sent may still land at the server, and two separate
    /// counts could straddle it.
    async fn rows_and_processed(&self) -> (i64, i64) {
        let sql = format!(
            "SELECT (SELECT count(*) FROM {}), (SELECT count(*) FROM processed_events WHERE scope = $1)",
            self.table
        );
        sqlx::query_as::<_, (i64, i64)>(&sql).bind(&self.scope).fetch_one(&self.pool).await.expect("counts")
    }

    /// Restarts the consumer, waits until it committed every offset, stops it with SIGTERM and
    /// checks every reading is in the table exactly once.
    async fn finish_and_check(&self) {
        let mut second = self.spawn(&[]);
        wait_committed(&self.group, &self.topic, 3, Duration::from_secs(180)).await;
        let exit = terminate(second.0.take().unwrap()).await;
        assert!(exit.success(), "the runtime exits cleanly on SIGTERM: {exit:?}");
        let distinct =
            count(&self.pool, &format!("FROM (SELECT DISTINCT sensor, seq FROM {}) d", self.table), None).await;
        assert_eq!(self.rows().await, EVENTS as i64, "exactly one row per reading: none lost, none twice");
        assert_eq!(distinct, EVENTS as i64);
        assert_eq!(self.processed().await, EVENTS as i64, "one processed_events row per reading");
        drop_run_data(&self.pool, &self.table, &self.scope).await;
    }
}

fn kill(mut child: ChildGuard) {
    let mut child = child.0.take().unwrap();
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_after_the_database_commit_and_before_the_kafka_commit() {
    let run = prepare("bcrashdb").await;
    // Kafka offsets are committed only every hour: everything the child writes to the database
    // is still uncommitted in Kafka when it is killed, and is all redelivered.
    let first = run.spawn(&[("CRASH_COMMIT_MS", "3600000")]);
    eventually("the first consumer to write half of the readings", Duration::from_secs(120), || async {
        match run.processed().await {
            n if n >= (EVENTS / 2) as i64 => Ok(()),
            n => Err(format!("{n} processed")),
        }
    })
    .await;
    kill(first);
    let (rows, processed) = run.rows_and_processed().await;
    assert_eq!(rows, processed, "rows and processed_events commit together");
    assert_eq!(committed_offsets(&run.group, &run.topic, 3), [-1; 3], "no Kafka offset was committed");
    println!("killed with {rows} readings in the database and no Kafka commit: all {EVENTS} are redelivered");
    run.finish_and_check().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_inside_a_batch_transaction() {
    let run = prepare("bcrashtx").await;
    let hang_at = format!("sensor-3/{}", EVENTS / SENSORS / 2);
    let marker = std::env::temp_dir().join(format!("{}-marker.log", run.run));
    let first = run.spawn(&[("CRASH_HANG_AT", &hang_at), ("CRASH_MARKER", marker.to_str().unwrap())]);
    wait_lines(&[&marker], "the batch to write its rows and hang", |lines| !lines.is_empty()).await;
    let hung = hung_rows(&run, &hang_at).await;
    assert_eq!(hung, 0, "the open batch's rows are not visible");
    kill(first);
    assert_eq!(hung_rows(&run, &hang_at).await, 0, "nor after the crash: the transaction was rolled back");
    let (rows, processed) = run.rows_and_processed().await;
    assert_eq!(rows, processed, "rows and processed_events commit together");
    println!("killed inside a batch with {rows} readings committed before it");
    run.finish_and_check().await;
    let _ = std::fs::remove_file(Path::new(&marker));
}

/// Rows of the reading the handler hung on.
async fn hung_rows(run: &Run, hang_at: &str) -> i64 {
    let (sensor, seq) = hang_at.split_once('/').unwrap();
    sqlx::query_scalar(&format!("SELECT count(*) FROM {} WHERE sensor = $1 AND seq = $2", run.table))
        .bind(sensor)
        .bind(seq.parse::<i64>().unwrap())
        .fetch_one(&run.pool)
        .await
        .expect("count")
}
