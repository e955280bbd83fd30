//! Ten SIGKILLs in a row while events flow, every id counted in PostgreSQL: a consumer process
//! whose handler inserts one row per event is killed ten times mid-stream and restarted; a last
//! one finishes and stops with SIGTERM. Every id has a row (nothing lost), and the extra rows —
//! events handled again after a kill — stay within what the runtime held.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::{
    child_tracing, config, create_table, create_topic, database, database_url, eventually, produce_many, producer,
    spawn_child, table_of, terminate, unique, ChildGuard,
};
use kafka_events::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

const EVENTS: usize = 20_000;
const KILLS: usize = 10;
/// The child's caps: a kill replays at most what it held.
const PARTITION_CAP: usize = 500;
const MEMBER_CAP: usize = 1500;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Payment {
    #[validate(length(min = 1))]
    id: String,
}

static POOL: OnceLock<sqlx::PgPool> = OnceLock::new();

/// One row per handling (no idempotency: a second handling is a second row).
#[kafka_handler(topic = "payments", dlq)]
async fn record_payment(event: Payment, ctx: MessageContext) -> Result<(), HandlerError> {
    let pool = POOL.get().ok_or_else(|| HandlerError::retryable("no pool"))?;
    sqlx::query(&format!("INSERT INTO {} (id, partition, position) VALUES ($1, $2, $3)", table_of(ctx.topic())))
        .bind(&event.id)
        .bind(ctx.partition())
        .bind(ctx.offset())
        .execute(pool)
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by `ten_sigkills_lose_no_event_counted_in_postgresql` as a child process"]
async fn kill_loop_child() {
    let Ok(run) = std::env::var("KILL_LOOP_RUN") else { return };
    child_tracing();
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(&database_url()).await.expect("pool");
    POOL.set(pool).expect("once");
    let config = config(&run, &["record_payment"])
        .with_topic_provisioning(false)
        .with_partition_buffer(PARTITION_CAP)
        .with_max_buffered(MEMBER_CAP);
    kafka_events::runtime::start(config).await.expect("runtime");
}

async fn counts(pool: &sqlx::PgPool, table: &str) -> (i64, i64) {
    sqlx::query_as(&format!("SELECT count(*), count(DISTINCT id) FROM {table}")).fetch_one(pool).await.expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_sigkills_lose_no_event_counted_in_postgresql() {
    let run = unique("killloop");
    let topic = format!("{run}.payments");
    create_topic(&topic, 3).await;
    create_topic(&format!("{topic}.dlq"), 3).await;
    create_topic(&format!("{topic}.retry"), 3).await;
    let pool = database().await;
    let table = table_of(&topic);
    create_table(&pool, &table, "id TEXT NOT NULL, partition INT NOT NULL, position BIGINT NOT NULL").await;
    let events: Vec<(String, Vec<u8>)> =
        (0..EVENTS).map(|i| (format!("k{i}"), serde_json::to_vec(&Payment { id: format!("p{i}") }).unwrap())).collect();
    produce_many(&producer(), &topic, &events).await;

    let child = || ChildGuard(Some(spawn_child("kill_loop_child", &[("KILL_LOOP_RUN", run.as_str())])));
    let step = EVENTS / (KILLS + 2);
    for kill in 1..=KILLS {
        let mut consumer = child();
        let (_, distinct_before) = counts(&pool, &table).await;
        // Rows are the database's state: polled.
        eventually(&format!("consumer {kill} to handle {step} more events"), Duration::from_secs(120), || async {
            let (_, distinct) = counts(&pool, &table).await;
            if distinct >= distinct_before + step as i64 {
                Ok(())
            } else {
                Err(format!("{distinct} distinct ids"))
            }
        })
        .await;
        let mut process = consumer.0.take().unwrap();
        process.kill().expect("SIGKILL");
        process.wait().expect("reap");
    }
    let (rows_at_last_kill, distinct_at_last_kill) = counts(&pool, &table).await;
    assert!(distinct_at_last_kill < EVENTS as i64, "the kills happened mid-stream");

    let mut last = child();
    eventually("every event to have its row", Duration::from_secs(180), || async {
        let (_, distinct) = counts(&pool, &table).await;
        if distinct == EVENTS as i64 {
            Ok(())
        } else {
            Err(format!("{distinct} distinct ids"))
        }
    })
    .await;
    let exit = terminate(last.0.take().unwrap()).await;
    assert!(exit.success(), "the last consumer stops cleanly: {exit:?}");
    let (rows, distinct) = counts(&pool, &table).await;
    let duplicates = rows - distinct;
    println!(
        "{KILLS} SIGKILLs: {distinct} of {EVENTS} ids, {rows} rows ({duplicates} handled again; {rows_at_last_kill} rows, {distinct_at_last_kill} ids at the last kill)"
    );
    assert_eq!(distinct, EVENTS as i64, "no event lost");
    assert!(duplicates <= (KILLS * MEMBER_CAP) as i64, "each kill replays at most what was held: {duplicates}");
    common::wait_committed(&format!("{run}-svc-main"), &topic, 3, Duration::from_secs(30)).await;
    sqlx::query(&format!("DROP TABLE {table}")).execute(&pool).await.expect("drop the table");
}
