//! Exactly-once consume → produce for `transactional` handlers: what the handler publishes
//! through its context and the input's offset commit happen in one Kafka transaction.
//!
//! Each partition's lane has its own transactional producer, `transactional.id =
//! <service>-<topic>-<partition>`: when the partition moves to another instance, that instance's
//! producer (same id) fences this one, so a zombie cannot commit output for input it no longer
//! owns. Messages of a transactional handler run one at a time per partition.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::client_context::TracingContext;
use crate::config::Config;
use crate::publisher::Publisher;

/// How long a transaction operation (init, commit, abort, sending offsets) may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The consumer group's current metadata (member id and generation), replaced at every
/// rebalance: offsets sent to a transaction must carry the generation of the moment, or the
/// coordinator refuses them (a partition kept across a cooperative rebalance keeps its lane).
pub(crate) type GroupCell = Arc<std::sync::RwLock<Option<Arc<ConsumerGroupMetadata>>>>;

/// What a lane needs to create its transactional producer.
#[derive(Clone)]
pub(crate) struct TransactionSetup {
    pub(crate) client: ClientConfig,
    pub(crate) config: Config,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
}

/// The transactional producer of one partition's lane.
pub(crate) struct Transactor {
    client: ClientConfig,
    config: Config,
    metrics: Arc<crate::metrics::Metrics>,
    transactional_id: String,
    group: GroupCell,
    /// Created (and `init_transactions`ed) on first use; dropped after a fatal error, so the next
    /// transaction starts with a fresh one.
    producer: tokio::sync::Mutex<Option<FutureProducer<TracingContext>>>,
    /// Set when a newer instance fenced this producer: the partition is someone else's now, and
    /// initialising the same `transactional.id` again would fence the new owner in turn. Stays
    /// set for this lane's life (a new assignment makes a new lane).
    fenced: std::sync::atomic::AtomicBool,
}

/// Whether `error` says a newer producer with our `transactional.id` exists.
fn is_fencing(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(error.rdkafka_error_code(), Some(Code::Fenced | Code::ProducerFenced | Code::InvalidProducerEpoch))
}

impl Transactor {
    pub(crate) fn new(setup: &TransactionSetup, topic: &str, partition: i32, group: GroupCell) -> Self {
        let transactional_id = crate::names::transactional_id(setup.config.service_name(), topic, partition);
        Self {
            client: setup.client.clone(),
            config: setup.config.clone(),
            metrics: setup.metrics.clone(),
            transactional_id,
            group,
            producer: tokio::sync::Mutex::new(None),
            fenced: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether a newer instance fenced this lane's producer (see [`Transactor::begin`]).
    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(std::sync::atomic::Ordering::Acquire)
    }

    fn note(&self, error: &KafkaError) {
        if is_fencing(error) {
            self.fenced.store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// Begins a transaction; returns the publisher whose records join it. Once fenced, it
    /// refuses without creating a producer: the partition's new owner must not be fenced back.
    pub(crate) async fn begin(&self) -> Result<Publisher, KafkaError> {
        if self.is_fenced() {
            return Err(KafkaError::Global(rdkafka::types::RDKafkaErrorCode::Fenced));
        }
        let result = self.begin_inner().await;
        if let Err(error) = &result {
            self.note(error);
        }
        result
    }

    async fn begin_inner(&self) -> Result<Publisher, KafkaError> {
        let mut slot = self.producer.lock().await;
        let producer = match slot.as_ref() {
            Some(producer) => producer.clone(),
            None => {
                let mut client = self.client.clone();
                client.set("transactional.id", &self.transactional_id);
                let producer: FutureProducer<TracingContext> = client.create_with_context(TracingContext::default())?;
                let init = producer.clone();
                blocking(move || init.init_transactions(TIMEOUT)).await?;
                tracing::debug!(transactional_id = %self.transactional_id, "transactional producer ready");
                slot.insert(producer).clone()
            }
        };
        if let Err(error) = producer.begin_transaction() {
            *slot = None;
            return Err(error);
        }
        Ok(Publisher::new(producer, self.config.clone(), self.metrics.clone()))
    }

    /// Commits the transaction together with the input offset `next_offset` of
    /// `topic`/`partition` (the next message to read). On failure the transaction is aborted.
    pub(crate) async fn commit(&self, topic: &str, partition: i32, next_offset: i64) -> Result<(), KafkaError> {
        let mut slot = self.producer.lock().await;
        let Some(producer) = slot.clone() else {
            return Err(KafkaError::Global(rdkafka::types::RDKafkaErrorCode::State));
        };
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(topic, partition, Offset::Offset(next_offset))?;
        let group = self.group.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(group) = group else {
            abort(&producer).await.ok();
            return Err(KafkaError::Global(rdkafka::types::RDKafkaErrorCode::State));
        };
        let committing = producer.clone();
        let result = blocking(move || {
            committing.send_offsets_to_transaction(&offsets, &group, TIMEOUT)?;
            committing.commit_transaction(TIMEOUT)
        })
        .await;
        if let Err(error) = &result {
            self.note(error);
            tracing::warn!(transactional_id = %self.transactional_id, %error, "transaction commit failed; aborting it");
            if abort(&producer).await.is_err() {
                *slot = None;
            }
        }
        result
    }

    /// Aborts the transaction: nothing published in it becomes visible to `read_committed`
    /// consumers.
    pub(crate) async fn abort(&self) {
        let mut slot = self.producer.lock().await;
        if let Some(producer) = slot.clone() {
            if let Err(error) = abort(&producer).await {
                tracing::warn!(transactional_id = %self.transactional_id, %error, "transaction abort failed; the producer is recreated");
                *slot = None;
            }
        }
    }
}

async fn abort(producer: &FutureProducer<TracingContext>) -> Result<(), KafkaError> {
    let producer = producer.clone();
    blocking(move || producer.abort_transaction(TIMEOUT)).await
}

/// librdkafka's transaction calls block: run them off the async workers.
async fn blocking(call: impl FnOnce() -> Result<(), KafkaError> + Send + 'static) -> Result<(), KafkaError> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|_| Err(KafkaError::Global(rdkafka::types::RDKafkaErrorCode::Fail)))
}
