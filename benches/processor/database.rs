//! B5: handlers writing to PostgreSQL (needs `DATABASE_URL`): one plain insert per message (the
//! baseline), an `idempotent` handler inserting in its claim's transaction, and an `idempotent`
//! batch handler (`batch(max = 500)`) inserting each batch with one statement.

use std::sync::OnceLock;
use std::time::Instant;

use kafka_events::prelude::*;

use super::{framework, header, Bench, Reading};
use crate::measure::Meter;

static PLAIN: Meter = Meter::new();
static IDEMPOTENT: Meter = Meter::new();
static BATCH: Meter = Meter::new();

/// The pool of the plain handler and the table every B5 handler writes to.
static DB: OnceLock<(sqlx::PgPool, String)> = OnceLock::new();

fn table() -> &'static str {
    &DB.get().expect("B5 database").1
}

#[kafka_handler(topic = "b5_plain", dlq)]
async fn db_plain(reading: Reading) -> Result<(), HandlerError> {
    let started = Instant::now();
    let (pool, table) = DB.get().expect("B5 database");
    sqlx::query(&format!("INSERT INTO {table} (sensor, seq, value) VALUES ($1, $2, $3)"))
        .bind(&reading.sensor)
        .bind(reading.seq as i64)
        .bind(reading.value)
        .execute(pool)
        .await?;
    PLAIN.succeeded(started);
    Ok(())
}

#[kafka_handler(topic = "b5_idempotent", idempotent(id = "seq"), dlq)]
async fn db_idempotent(reading: Reading, ctx: MessageContext) -> Result<(), HandlerError> {
    let started = Instant::now();
    let mut tx = ctx.transaction()?;
    sqlx::query(&format!("INSERT INTO {} (sensor, seq, value) VALUES ($1, $2, $3)", table()))
        .bind(&reading.sensor)
        .bind(reading.seq as i64)
        .bind(reading.value)
        .execute(&mut *tx)
        .await?;
    IDEMPOTENT.succeeded(started);
    Ok(())
}

#[kafka_handler(topic = "b5_batch", batch(max = 500, linger = "50ms"), idempotent(id = "seq"), dlq)]
async fn db_batch(readings: Vec<Reading>, ctx: BatchContext) -> Result<(), HandlerError> {
    let started = Instant::now();
    let mut insert = sqlx::QueryBuilder::new(format!("INSERT INTO {} (sensor, seq, value) ", table()));
    insert.push_values(&readings, |mut row, r| {
        row.push_bind(&r.sensor).push_bind(r.seq as i64).push_bind(r.value);
    });
    let mut tx = ctx.transaction()?;
    insert.build().execute(&mut *tx).await?;
    for _ in &readings {
        BATCH.succeeded(started);
    }
    Ok(())
}

/// Runs B5 and prints its table; says why when `DATABASE_URL` is not set.
pub async fn run(bench: &Bench<'_>, messages: u64) {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        println!("\nB5 skipped: set DATABASE_URL to a PostgreSQL database to measure the database handlers");
        return;
    };
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(3).connect(&url).await.expect("PostgreSQL");
    let table = format!("{}_b5", bench.run.replace(|c: char| !c.is_ascii_alphanumeric(), "_")).to_lowercase();
    sqlx::query(&format!("CREATE TABLE {table} (sensor TEXT NOT NULL, seq BIGINT NOT NULL, value DOUBLE PRECISION)"))
        .execute(&pool)
        .await
        .expect("create the B5 table");
    DB.set((pool.clone(), table.clone())).expect("B5 runs once");
    for name in ["b5_plain", "b5_idempotent", "b5_batch"] {
        let topic = bench.topic(name, 3, true).await;
        bench.produce(&topic, messages, 1000).await;
    }
    let store = |c: Config| c.with_idempotency(&url);
    let plain = framework(bench, "db_plain", &PLAIN, messages, None).await;
    let idempotent = framework(bench, "db_idempotent", &IDEMPOTENT, messages, Some(&store)).await;
    let batch = framework(bench, "db_batch", &BATCH, messages, Some(&store)).await;
    header("B5: PostgreSQL writes, 3 partitions (one insert per message vs idempotent vs idempotent batches of ≤ 500)");
    plain.print(None, "");
    idempotent.print(Some(&plain), "");
    batch.print(Some(&plain), "");
    let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&pool).await.unwrap();
    println!("\nB5 rows written: {rows} (3 × {messages})");
    sqlx::query(&format!("DROP TABLE {table}")).execute(&pool).await.expect("drop the B5 table");
}
