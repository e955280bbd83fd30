//! The PostgreSQL store: `processed_events`, claimed in a transaction the handler writes through.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use sqlx::postgres::{PgConnection, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::OwnedMappedMutexGuard;

use super::{Claim, ClaimSlot, IdempotencyStore, PendingClaim, StoreError, StoreFuture};

/// The schema the store needs: `processed_events (scope, event_id, processed_at)`.
/// [`PostgresStore::migrate`] applies it (idempotently, under an advisory lock); those who manage
/// their schema with their own migration tool can apply this text instead.
pub const MIGRATION: &str = include_str!("../../migrations/0001_processed_events.sql");

/// Serialises concurrent migrations of several instances starting at once.
const MIGRATION_LOCK: i64 = 0x6b61_666b_615f_6576; // "kafka_ev"

const CLAIM: &str = "INSERT INTO processed_events (scope, event_id) SELECT $1, unnest($2::text[]) \
                     ON CONFLICT (scope, event_id) DO NOTHING RETURNING event_id";

/// Records processed events in PostgreSQL. A claim is a transaction holding the new
/// `processed_events` rows; the handler writes its own rows in the same transaction
/// ([`MessageContext::transaction`](crate::MessageContext::transaction)), and both commit together
/// when it returns `Ok`. A second copy of an event claimed meanwhile waits on the row's unique
/// key, then finds it committed (and is skipped) or rolled back (and runs).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects a pool of up to `pool_size` connections to `url`.
    pub async fn connect(url: &str, pool_size: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| error(format!("cannot connect (check KAFKA_IDEMPOTENCY_STORE): {e}")))?;
        Ok(Self { pool })
    }

    /// A store on an existing pool (the application's own).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Its pool, for the application's own queries.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates `processed_events` when missing ([`MIGRATION`]). Safe to run from several
    /// instances at once and on every start.
    pub fn migrate(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(|e| error(format!("migration: {e}")))?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(|e| error(format!("migration lock: {e}")))?;
            // A query without arguments goes over the simple protocol, which runs several
            // statements (`sqlx::raw_sql` would too, but its future is not `Send` for all
            // lifetimes: rust-lang/rust#102211).
            sqlx::Executor::execute(&mut *tx, MIGRATION).await.map_err(|e| error(format!("migration: {e}")))?;
            tx.commit().await.map_err(|e| error(format!("migration commit: {e}")))
        })
    }
}

fn error(reason: String) -> StoreError {
    StoreError { store: "postgres", reason }
}

impl IdempotencyStore for PostgresStore {
    fn claim<'a>(&'a self, scope: &'a str, ids: &'a [String]) -> StoreFuture<'a, Claim> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(|e| error(format!("begin: {e}")))?;
            let inserted: Vec<String> = sqlx::query_scalar(CLAIM)
                .bind(scope)
                .bind(ids)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| error(format!("claiming {} event id(s): {e}", ids.len())))?;
            let inserted: std::collections::HashSet<String> = inserted.into_iter().collect();
            let fresh = ids.iter().map(|id| inserted.contains(id)).collect();
            Ok(Claim { fresh, pending: Box::new(PgClaim { tx }) })
        })
    }

    fn name(&self) -> &'static str {
        "postgres"
    }
}

struct PgClaim {
    tx: Transaction<'static, Postgres>,
}

impl PendingClaim for PgClaim {
    fn commit(self: Box<Self>) -> StoreFuture<'static, ()> {
        Box::pin(async move { self.tx.commit().await.map_err(|e| error(format!("commit: {e}"))) })
    }

    fn abort(self: Box<Self>) -> StoreFuture<'static, ()> {
        Box::pin(async move { self.tx.rollback().await.map_err(|e| error(format!("rollback: {e}"))) })
    }

    fn transaction(&mut self) -> Option<&mut Transaction<'static, Postgres>> {
        Some(&mut self.tx)
    }
}

/// The database transaction of an idempotent handling, borrowed by the handler: it derefs to a
/// [`PgConnection`], so `sqlx::query("INSERT ...").bind(x).execute(&mut *tx).await?` writes in it.
/// Drop it before the handler returns; the runtime commits it (with the `processed_events` row)
/// when the handler returns `Ok` and rolls it back otherwise. Do not commit it yourself.
pub struct DbTransaction(OwnedMappedMutexGuard<Option<Box<dyn PendingClaim>>, Transaction<'static, Postgres>>);

impl DbTransaction {
    /// The handling's transaction, or why there is none (the handler's context turns that into
    /// a permanent [`HandlerError`](crate::HandlerError)).
    pub(crate) fn borrow(slot: &ClaimSlot) -> Result<Self, &'static str> {
        const NONE: &str = "no database transaction: `transaction()` needs an `idempotent` handler with the PostgreSQL idempotency store (KAFKA_IDEMPOTENCY_STORE=postgres://...)";
        let slot = slot.0.clone().ok_or(NONE)?;
        let guard = slot.try_lock_owned().map_err(|_| {
            "the handling's database transaction is already borrowed; drop the first `DbTransaction` before taking it again"
        })?;
        tokio::sync::OwnedMutexGuard::try_map(guard, |slot| slot.as_mut().and_then(|pending| pending.transaction()))
            .map(Self)
            .map_err(|_| NONE)
    }
}

impl Deref for DbTransaction {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.0
    }
}

impl DerefMut for DbTransaction {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.0
    }
}

impl std::fmt::Debug for DbTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DbTransaction")
    }
}
