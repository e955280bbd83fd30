//! Idempotent handlers against a real broker and a real PostgreSQL: every event sent twice has
//! its effect once; a failed attempt's rows are rolled back; an event without an id is
//! dead-lettered with the reason.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{
    calls, config, count, create_table, create_topic, database, database_url, drop_run_data, header, key, metric_sum,
    produce_records, producer, read_topic, record_call, table_of, unique, wait_committed, wait_for, Record,
};
use kafka_events::names::header as h;
use kafka_events::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Payment {
    #[validate(length(min = 1))]
    id: String,
    amount: i64,
}

/// Writes the payment into the run's own table, in the transaction that records the event in
/// `processed_events`. The table has no unique key: only idempotency keeps duplicates out.
#[kafka_handler(topic = "payments", idempotent, concurrency = 8, dlq)]
async fn record_payment(event: Payment, ctx: MessageContext) -> Result<(), HandlerError> {
    let sql = format!("INSERT INTO {} (id, amount) VALUES ($1, $2)", table_of(ctx.topic()));
    let mut tx = ctx.transaction()?;
    sqlx::query(&sql).bind(&event.id).bind(event.amount).execute(&mut *tx).await?;
    Ok(())
}

const EVENTS: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_sent_twice_have_their_effect_once() {
    let run = unique("idem");
    let topic = format!("{run}.payments");
    let table = table_of(&topic);
    let pool = database().await;
    create_table(&pool, &table, "id TEXT NOT NULL, amount BIGINT NOT NULL").await;
    create_topic(&topic, 3).await;
    create_topic(&format!("{topic}.dlq"), 3).await;

    // Every event twice with the same `x-message-id`. The copy has another key, so it usually
    // lands in another partition and runs at the same time as the first (for even ids: right
    // after it) or long after it (odd ids: after every first copy). One more message has no id.
    let payment = |i: usize| serde_json::to_vec(&Payment { id: format!("pay-{i}"), amount: i as i64 }).unwrap();
    let with_id =
        |key: String, i: usize| -> Record { (key, payment(i), vec![(h::MESSAGE_ID.into(), format!("evt-{i}"))]) };
    let mut records: Vec<Record> = Vec::with_capacity(2 * EVENTS + 1);
    for i in 0..EVENTS {
        records.push(with_id(format!("k{i}"), i));
        if i % 2 == 0 {
            records.push(with_id(format!("copy{i}"), i));
        }
    }
    records.extend((0..EVENTS).filter(|i| i % 2 == 1).map(|i| with_id(format!("copy{i}"), i)));
    records.push(("no-id".into(), payment(EVENTS), vec![]));
    produce_records(&producer(), &topic, &records).await;

    let runtime = kafka_events::runtime::launch(config(&run, &["record_payment"]).with_idempotency(&database_url()))
        .await
        .expect("launch");
    let group = format!("{run}-svc-main");
    wait_committed(&group, &topic, 3, Duration::from_secs(600)).await;
    let metrics = runtime.metrics_text();
    runtime.shutdown().await.expect("shutdown");

    let rows = count(&pool, &format!("FROM {table}"), None).await;
    let distinct = count(&pool, &format!("FROM (SELECT DISTINCT id FROM {table}) d"), None).await;
    let scope = format!("{run}-svc/{topic}");
    let processed = count(&pool, "FROM processed_events WHERE scope = $1", Some(&scope)).await;
    println!("{} messages: {rows} rows, {processed} processed_events", records.len());
    assert_eq!(rows, EVENTS as i64, "exactly one row per event in the user's table");
    assert_eq!(distinct, EVENTS as i64, "every event has its row");
    assert_eq!(processed, EVENTS as i64, "exactly one processed_events row per event");
    assert_eq!(metric_sum(&metrics, "kafka_events_duplicates_skipped_total"), EVENTS as f64, "each copy counted");

    let dead = read_topic(&format!("{topic}.dlq"), 1);
    assert_eq!(dead.len(), 1, "the message without an id is dead-lettered");
    assert_eq!(key(&dead[0]), "no-id");
    assert_eq!(header(&dead[0], h::DLQ_ERROR_KIND).as_deref(), Some("missing-event-id"));
    let reason = header(&dead[0], h::DLQ_REASON).unwrap_or_default();
    assert!(reason.contains(h::MESSAGE_ID), "the reason names the header: {reason}");
    drop_run_data(&pool, &table, &scope).await;
}

// ---------------------------------------------------------------- failures roll back

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Charge {
    id: String,
    amount: i64,
}

/// The id is the payload's `id`. Writes its row, then: `flaky-*` fails on the first attempt,
/// `boom-*` panics on the first attempt — after writing, so only a rollback keeps the row out.
#[kafka_handler(topic = "charges", idempotent(id = "id"), retry(max = 3, initial = "10ms"), dlq)]
async fn record_charge(event: Charge, ctx: MessageContext) -> Result<(), HandlerError> {
    let sql = format!("INSERT INTO {} (id, attempt) VALUES ($1, $2)", table_of(ctx.topic()));
    {
        let mut tx = ctx.transaction()?;
        sqlx::query(&sql).bind(&event.id).bind(ctx.attempt() as i32).execute(&mut *tx).await?;
    }
    let first = ctx.attempt() == 1;
    record_call(&ctx, &event.id, !(first && (event.id.starts_with("flaky") || event.id.starts_with("boom"))));
    if first && event.id.starts_with("flaky") {
        return Err(HandlerError::retryable("the ledger timed out"));
    }
    if first && event.id.starts_with("boom") {
        panic!("a bug on the first attempt");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_leaves_no_row_and_an_event_without_id_is_dead_lettered() {
    let run = unique("idemfail");
    let topic = format!("{run}.charges");
    let table = table_of(&topic);
    let pool = database().await;
    create_table(&pool, &table, "id TEXT NOT NULL, attempt INT NOT NULL").await;
    let charge = |id: &str| serde_json::to_vec(&Charge { id: id.into(), amount: 5 }).unwrap();
    let ids = ["ok-1", "flaky-2", "boom-3", "ok-1", "ok-4", "flaky-2", ""];
    let records: Vec<Record> = ids.iter().map(|id| (format!("key-{id}"), charge(id), vec![])).collect();
    let runtime = kafka_events::runtime::launch(config(&run, &["record_charge"]).with_idempotency(&database_url()))
        .await
        .expect("launch");
    produce_records(&producer(), &topic, &records).await;
    let distinct: BTreeSet<&str> = ids.iter().copied().filter(|id| !id.is_empty()).collect();
    wait_for(&topic, Duration::from_secs(60), |c| c.iter().filter(|c| c.succeeded).count() >= distinct.len()).await;
    let dead = read_topic(&format!("{topic}.dlq"), 1);
    let group = format!("{run}-svc-main");
    wait_committed(&group, &topic, 3, Duration::from_secs(60)).await;
    runtime.shutdown().await.expect("shutdown");

    let rows: Vec<(String, i32)> =
        sqlx::query_as(&format!("SELECT id, attempt FROM {table} ORDER BY id")).fetch_all(&pool).await.expect("rows");
    let rows: BTreeMap<String, i32> = rows.into_iter().collect();
    assert_eq!(rows.len(), distinct.len(), "one row per distinct event: {rows:?}");
    assert_eq!(rows["ok-1"], 1);
    assert_eq!(rows["flaky-2"], 2, "the failed first attempt's row was rolled back");
    assert_eq!(rows["boom-3"], 2, "the panicking first attempt's row was rolled back");
    let calls = calls(&topic);
    let succeeded: Vec<&str> = calls.iter().filter(|c| c.succeeded).map(|c| c.id.as_str()).collect();
    assert_eq!(succeeded.len(), distinct.len(), "each event succeeded once, copies skipped: {succeeded:?}");

    assert_eq!(dead.len(), 1);
    assert_eq!(key(&dead[0]), "key-");
    assert_eq!(header(&dead[0], h::DLQ_ERROR_KIND).as_deref(), Some("missing-event-id"));
    drop_run_data(&pool, &table, &format!("{run}-svc/{topic}")).await;
}

// ---------------------------------------------------------------- the in-memory store

#[kafka_handler(topic = "visits", idempotent, dlq)]
async fn count_visit(event: Payment, ctx: MessageContext) -> Result<(), HandlerError> {
    record_call(&ctx, &event.id, true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_skips_copies_within_one_process() {
    let run = unique("idemmem");
    let topic = format!("{run}.visits");
    let runtime =
        kafka_events::runtime::launch(config(&run, &["count_visit"]).with_idempotency("memory")).await.expect("launch");
    let visit = |i: usize| serde_json::to_vec(&Payment { id: format!("v{i}"), amount: 1 }).unwrap();
    let records: Vec<Record> = (0..1000)
        .flat_map(|i| {
            let id = vec![(h::MESSAGE_ID.to_string(), format!("visit-{i}"))];
            [(format!("a{i}"), visit(i), id.clone()), (format!("b{i}"), visit(i), id)]
        })
        .collect();
    produce_records(&producer(), &topic, &records).await;
    let group = format!("{run}-svc-main");
    wait_committed(&group, &topic, 3, Duration::from_secs(120)).await;
    let metrics = runtime.metrics_text();
    runtime.shutdown().await.expect("shutdown");
    let calls = calls(&topic);
    let ids: BTreeSet<&str> = calls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), 1000, "every event handled");
    assert_eq!(calls.len(), 1000, "and only once");
    assert_eq!(metric_sum(&metrics, "kafka_events_duplicates_skipped_total"), 1000.0);
}
