//! The suite's PostgreSQL database: pool, per-run tables, counts.

/// The PostgreSQL database of the suite: `KAFKA_EVENTS_TEST_DATABASE_URL` (set by
/// `scripts/test.sh`, which starts PostgreSQL when it is not running).
pub fn database_url() -> String {
    std::env::var("KAFKA_EVENTS_TEST_DATABASE_URL").expect(
        "KAFKA_EVENTS_TEST_DATABASE_URL is not set: run the suite with `scripts/test.sh` (it starts PostgreSQL), or point it at a database",
    )
}

/// A small pool on [`database_url`], with the crate's `processed_events` migration applied (the
/// runtime applies it at start-up too), so a test can count processed events before any
/// runtime has started on a fresh database.
pub async fn database() -> sqlx::PgPool {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&database_url())
        .await
        .expect("connect to PostgreSQL");
    kafka_events::idempotency::PostgresStore::from_pool(pool.clone())
        .migrate()
        .await
        .expect("migrate processed_events");
    pool
}

/// A table name of the run's own, derived from one of its topics (`__run_abc.payments` →
/// `__run_abc_payments`), so handlers find their table from `ctx.topic()`.
pub fn table_of(topic: &str) -> String {
    topic.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

/// Creates the run's table `table` with `columns` (SQL column definitions).
pub async fn create_table(pool: &sqlx::PgPool, table: &str, columns: &str) {
    sqlx::query(&format!("CREATE TABLE {table} ({columns})")).execute(pool).await.expect("create the table");
}

/// Drops the run's table and its rows of `processed_events` (`scope`).
pub async fn drop_run_data(pool: &sqlx::PgPool, table: &str, scope: &str) {
    sqlx::query(&format!("DROP TABLE {table}")).execute(pool).await.expect("drop the table");
    sqlx::query("DELETE FROM processed_events WHERE scope = $1")
        .bind(scope)
        .execute(pool)
        .await
        .expect("clean up processed_events");
}

/// `SELECT count(*)` of `sql`'s rows (a `FROM ...` clause with optional `$1`).
pub async fn count(pool: &sqlx::PgPool, from: &str, bind: Option<&str>) -> i64 {
    let sql = format!("SELECT count(*) {from}");
    let query = sqlx::query_scalar::<_, i64>(&sql);
    let query = match bind {
        Some(value) => query.bind(value.to_string()),
        None => query,
    };
    query.fetch_one(pool).await.expect("count")
}
