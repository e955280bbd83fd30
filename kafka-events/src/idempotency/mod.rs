//! Idempotent handlers: `#[kafka_handler(topic = "...", idempotent)]` records every event it
//! processed in an [`IdempotencyStore`] and skips an event already recorded, so a redelivered
//! message (a crash before the offset commit, a producer retry, a replay) has no effect twice.
//!
//! How one event goes through an idempotent handler:
//!
//! 1. Its id is the payload field named by `idempotent(id = "field")`, or else its `x-message-id`
//!    header (every [`Publisher`](crate::Publisher) sets one). A message with neither is a
//!    permanent error (`x-dlq-error-kind: missing-event-id`).
//! 2. The store *claims* the id: it is recorded as in progress, unless it is recorded already —
//!    then the handler is not called, the offset is finished and
//!    `kafka_events_duplicates_skipped_total` counts it. Two copies handled at the same time
//!    cannot both claim it: the second waits for the first to commit or abort.
//! 3. The handler runs. With the PostgreSQL store the claim is an open database transaction,
//!    which the handler reaches through [`MessageContext::transaction`](crate::MessageContext::transaction)
//!    (or [`BatchContext::transaction`](crate::BatchContext::transaction)) to write its own rows.
//! 4. `Ok`: the claim commits — with PostgreSQL, the handler's rows and the `processed_events` row
//!    in one transaction, so the effect on the database is exactly once. An error (or panic)
//!    aborts the claim (rolling the handler's rows back) and the message follows its retry and
//!    dead-letter policy as usual.
//!
//! The store is chosen by `KAFKA_IDEMPOTENCY_STORE` (`memory`, or a `postgres://` URL with the
//! `postgres` feature) or [`Config::with_idempotency_store`](crate::Config::with_idempotency_store);
//! a topology with an idempotent handler and no store fails at start-up.
//!
//! The claim types, from the store outwards: a store's [`claim`](IdempotencyStore::claim)
//! returns a [`Claim`] (which ids are fresh) holding a [`PendingClaim`] (what commits or aborts
//! it: a database transaction, or reserved ids in memory); while the handler runs, the pending
//! claim sits in a `ClaimSlot` its context shares with the processor, so the handler can write
//! through the same transaction ([`DbTransaction`] with PostgreSQL).

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
pub(crate) mod setting;

pub(crate) use setting::IdempotencySetting;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{DbTransaction, PostgresStore, MIGRATION};

/// A future returned by a store.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where idempotent handlers record the events they processed.
///
/// Implementations must make [`claim`](IdempotencyStore::claim) exclusive: while one claim of an
/// id is pending, another claim of it waits for the first to be committed (then it is a
/// duplicate) or aborted (then it is fresh).
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `ids` (distinct, sorted — the runtime passes them so, which keeps the lock order
    /// of concurrent claims consistent) for `scope`. The returned [`Claim`] says which were not
    /// processed yet; it must be committed or aborted.
    fn claim<'a>(&'a self, scope: &'a str, ids: &'a [String]) -> StoreFuture<'a, Claim>;

    /// A short name for logs and metrics: `memory`, `postgres`.
    fn name(&self) -> &'static str;
}

/// The result of [`IdempotencyStore::claim`].
pub struct Claim {
    /// For each claimed id, in order: `true` when it was not processed yet (the handler runs it).
    pub fresh: Vec<bool>,
    /// What commits or aborts the claim.
    pub pending: Box<dyn PendingClaim>,
}

impl fmt::Debug for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim").field("fresh", &self.fresh).finish_non_exhaustive()
    }
}

/// A claim in progress: the ids are reserved until it is committed or aborted. Dropping it
/// without either aborts it.
pub trait PendingClaim: Send {
    /// Records the fresh ids as processed (with PostgreSQL: commits the transaction, and with it
    /// whatever the handler wrote through it).
    fn commit(self: Box<Self>) -> StoreFuture<'static, ()>;
    /// Releases the fresh ids unrecorded (with PostgreSQL: rolls the transaction back).
    fn abort(self: Box<Self>) -> StoreFuture<'static, ()>;
    /// The database transaction the claim runs in, if the store has one.
    #[cfg(feature = "postgres")]
    fn transaction(&mut self) -> Option<&mut sqlx::Transaction<'static, sqlx::Postgres>> {
        None
    }
}

/// Why a store operation failed. Retryable: the message is tried again under its retry policy.
#[derive(Debug, thiserror::Error)]
#[error("idempotency store ({store}): {reason}")]
pub struct StoreError {
    /// Which store.
    pub store: &'static str,
    /// What went wrong.
    pub reason: String,
}

/// The claim of the message (or batch) being handled, shared between the processor and the
/// handler's context: the processor puts it in before the handler runs and takes it back after.
/// Handlers that are not `idempotent` get an unused slot ([`ClaimSlot::default`]), which costs no
/// allocation per message.
#[derive(Clone, Default)]
pub(crate) struct ClaimSlot(pub(crate) Option<SharedClaim>);

/// The claim a handler's context and the processor share.
pub(crate) type SharedClaim = Arc<tokio::sync::Mutex<Option<Box<dyn PendingClaim>>>>;

impl fmt::Debug for ClaimSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClaimSlot")
    }
}

impl ClaimSlot {
    /// A slot for an `idempotent` handler's claim.
    pub(crate) fn open() -> Self {
        Self(Some(Arc::default()))
    }

    /// Puts the claim in (an [`open`](Self::open) slot).
    pub(crate) async fn put(&self, pending: Box<dyn PendingClaim>) {
        let Some(slot) = &self.0 else { unreachable!("a claim is put only in an open slot") };
        *slot.lock().await = Some(pending);
    }

    /// Takes the claim back once the handler returned. `None` when the handler still holds the
    /// transaction guard (it moved it into a task that outlived it).
    pub(crate) fn take(&self) -> Option<Box<dyn PendingClaim>> {
        self.0.as_ref()?.try_lock().ok().and_then(|mut slot| slot.take())
    }
}

/// A store as configured: `memory` or a PostgreSQL URL.
pub(crate) async fn connect(setting: &IdempotencySetting) -> Result<Option<Arc<dyn IdempotencyStore>>, StoreError> {
    match setting {
        IdempotencySetting::None => Ok(None),
        IdempotencySetting::Memory { capacity } => Ok(Some(Arc::new(MemoryStore::new(*capacity)))),
        IdempotencySetting::Store(store) => Ok(Some(store.clone())),
        #[cfg(feature = "postgres")]
        IdempotencySetting::Postgres { url, pool_size } => {
            let store = PostgresStore::connect(url, *pool_size).await?;
            store.migrate().await?;
            Ok(Some(Arc::new(store)))
        }
        #[cfg(not(feature = "postgres"))]
        IdempotencySetting::Postgres { .. } => Err(StoreError {
            store: "postgres",
            reason: "this build lacks the `postgres` feature of kafka-events".into(),
        }),
    }
}
