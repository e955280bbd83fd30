//! The one processor every handler shares: decode → validate → handler → outcome, then the
//! outcome's effect (retry wait, retry record, dead letter, stall) until the message is finished.
//!
//! Each lane owns one [`PartitionProcessor`] for its partition: the handler, its instruments
//! (metrics, circuit breaker), its transactional producer when it is `transactional`, and one
//! outcome [`Sink`](sink::Sink). [`Processors`] holds what all of them share (the producer, the
//! publisher, the idempotency store) and makes them.
//!
//! One message, in the order it meets these files: `partition.rs` sets up its span and runs the
//! attempt loop; each attempt goes through `attempt.rs` (circuit breaker, counting), `call.rs`
//! (transaction, idempotency claim, the handler's call); `outcome.rs` decides (pure);
//! `partition.rs` turns the decision into its effect and reports it through `sink.rs`, once; a
//! retry record or dead letter ([`crate::records`]) is published by `publish.rs`, whose
//! acknowledgement finishes the offset and reports through the same sink. Batch handlers take
//! the same steps in `batch.rs`.
//!
//! Its result types, in that order: an attempt ends in an `Attempt` (the handler's result, how
//! long it ran, whether it was a duplicate), whose error is a [`Failure`](outcome::Failure);
//! `decide` turns it into an [`Outcome`](outcome::Outcome) (done, retry, dead-letter, stall);
//! the message's processing ends in a [`Finish`] the offset tracker reads.

mod attempt;
mod batch;
mod call;
mod claim;
mod input;
mod outcome;
mod partition;
mod publish;
mod sink;
mod span;
pub(crate) mod transaction;

pub use input::Event;
#[doc(hidden)]
pub use input::{call_batch, decode, invoke, HandlerOutput};
pub(crate) use partition::PartitionProcessor;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;

use crate::circuit::CircuitBreaker;
use crate::client_context::TracingContext;
use crate::health::HealthBoard;
use crate::idempotency::IdempotencyStore;
use crate::metrics::{HandlerMetrics, Metrics};
use crate::observe::Observer;
use crate::publisher::Publisher;
use crate::registry::BoundHandler;
use sink::Sink;
use transaction::{GroupCell, TransactionSetup, Transactor};

/// A publish in flight; resolves to `Finished` once the broker acknowledged it.
pub(crate) type Publishing = std::pin::Pin<Box<dyn std::future::Future<Output = Finish> + Send + 'static>>;

/// How processing of one message ended.
pub(crate) enum Finish {
    /// The outcome is durable: the offset may be committed.
    Finished,
    /// Shutdown or revocation interrupted it; the offset stays unfinished and will be redelivered.
    Interrupted,
    /// The outcome is a retry or dead-letter record now being published. The lane goes on with
    /// its next message (publishes are pipelined) and finishes this offset when the future
    /// resolves to `Finished`.
    Publishing(Publishing),
}

/// What the runtime attaches to one handler: its metrics and, if it has one, its circuit
/// breaker.
#[derive(Clone, Default)]
pub(crate) struct Instruments {
    pub(crate) metrics: Option<HandlerMetrics>,
    pub(crate) breaker: Option<Arc<CircuitBreaker>>,
}

/// What every partition's processor shares, and where lanes get theirs.
pub(crate) struct Processors {
    producer: FutureProducer<TracingContext>,
    status: Arc<HealthBoard>,
    metrics: Arc<Metrics>,
    /// Receives every message's final outcome (a test harness); usually none.
    observer: Option<Observer>,
    /// Per handler topic.
    instruments: HashMap<String, Instruments>,
    /// Where `idempotent` handlers record processed events.
    store: Option<Arc<dyn IdempotencyStore>>,
    /// The shared publisher handlers reach through their context.
    publisher: Publisher,
    /// How lanes of `transactional` handlers create their producers.
    transactions: TransactionSetup,
}

impl Processors {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        producer: FutureProducer<TracingContext>,
        status: Arc<HealthBoard>,
        metrics: Arc<Metrics>,
        observer: Option<Observer>,
        instruments: HashMap<String, Instruments>,
        store: Option<Arc<dyn IdempotencyStore>>,
        publisher: Publisher,
        transactions: TransactionSetup,
    ) -> Self {
        Self { producer, status, metrics, observer, instruments, store, publisher, transactions }
    }

    /// The runtime's metrics.
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The processor of `handler`'s partition `partition` of `topic` (its own topic or its retry
    /// topic); `group` holds the consumer group's current metadata (for the transactions of a
    /// `transactional` handler).
    pub(crate) fn for_partition(
        self: &Arc<Self>,
        handler: BoundHandler,
        topic: &str,
        partition: i32,
        group: &GroupCell,
    ) -> PartitionProcessor {
        let instruments = self.instruments.get(&handler.topic).cloned().unwrap_or_default();
        let transactor = handler
            .registration
            .transactional
            .then(|| Transactor::new(&self.transactions, &handler.topic, partition, group.clone()));
        let sink =
            Sink::new(self.status.clone(), instruments.metrics.clone(), self.metrics.clone(), self.observer.clone());
        PartitionProcessor::new(self.clone(), handler, instruments, transactor, Arc::new(sink), topic)
    }
}

/// Sleeps for `delay`; false when cancelled first.
async fn wait(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = cancel.cancelled() => false,
    }
}
