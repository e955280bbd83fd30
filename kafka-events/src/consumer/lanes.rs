//! The lanes of one group member: one task per assigned partition, reading the partition's own
//! queue ([`Source`]).
//!
//! Backpressure: every message read is held (counted by its partition's offset tracker and by
//! the member's [`Budget`]) until its outcome is durable. A lane stops reading while its
//! partition holds `KAFKA_PARTITION_BUFFER` messages, while the member holds
//! `KAFKA_MAX_BUFFERED` (partitions at their own cap excused), or while its handler's circuit is
//! open; librdkafka stops fetching a partition whose queue is full, so nothing is paused and a
//! slow partition costs the others nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::base_consumer::PartitionQueue;

use crate::native::BatchQueue;
use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::budget::Budget;
use super::context::GroupContext;
use super::lane::run_lane;
use super::liveness::Liveness;
use super::offsets::{OffsetTracker, TopicPartition};
use super::source::{Queue, Source};
use crate::circuit::CircuitBreaker;
use crate::processor::transaction::GroupCell;
use crate::processor::Processors;
use crate::registry::Topology;
use crate::sync::lock;

/// Batches the poll thread may have queued for one lane (safeguard path only).
const FALLBACK_BATCHES: usize = 64;

struct Lane {
    /// Messages that reached the consumer's own queue instead of the partition's (see
    /// [`Source`]), in offset order.
    fallback: mpsc::Sender<Vec<OwnedMessage>>,
    tracker: Arc<Mutex<OffsetTracker>>,
    cancel: CancellationToken,
    /// Disconnected when the lane's task has ended (its [`Queue`], the last thing it drops, is
    /// gone).
    ended: std_mpsc::Receiver<()>,
    /// Cancels the lane's task outright (its running handlers' futures are dropped) when it
    /// has not finished by the drain deadline.
    task: tokio::task::AbortHandle,
    /// Set once the task was aborted.
    aborted: AtomicBool,
    /// Fallback messages routed since the last flush, sent as one batch.
    staged: Vec<OwnedMessage>,
    /// Set while the lane does not read (cap, budget or circuit).
    waiting: Arc<AtomicBool>,
    /// Its handler's circuit breaker: while it is open the lane does not read.
    breaker: Option<Arc<CircuitBreaker>>,
    committed: Option<i64>,
}

pub(crate) struct Lanes {
    lanes: HashMap<TopicPartition, Lane>,
    /// Queues split off before an assignment, taken by the lanes `assign` starts: our reference
    /// for reading runs first, so that it drops before the partition queue (which holds the
    /// consumer).
    queues: HashMap<TopicPartition, (BatchQueue, PartitionQueue<GroupContext>)>,
    topology: Arc<Topology>,
    processors: Arc<Processors>,
    runtime: tokio::runtime::Handle,
    /// Messages one partition may hold.
    partition_cap: usize,
    budget: Arc<Budget>,
    liveness: Arc<Liveness>,
    /// The group's metadata, for the transactions of `transactional` handlers.
    group: GroupCell,
    /// The id of the next lane (ids start at 1; the budget's "no leader" is 0).
    next_id: u64,
}

impl Lanes {
    pub(crate) fn new(
        topology: Arc<Topology>,
        processors: Arc<Processors>,
        runtime: tokio::runtime::Handle,
        partition_cap: usize,
        budget: Arc<Budget>,
        liveness: Arc<Liveness>,
    ) -> Self {
        Self {
            lanes: HashMap::new(),
            queues: HashMap::new(),
            topology,
            processors,
            runtime,
            partition_cap,
            budget,
            liveness,
            group: GroupCell::default(),
            next_id: 1,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lanes.len()
    }

    /// The partitions this member owns now.
    pub(crate) fn assigned(&self) -> Vec<TopicPartition> {
        self.lanes.keys().cloned().collect()
    }

    /// Whether any handler is `transactional` (its lanes need the group's metadata).
    pub(crate) fn any_transactional(&self) -> bool {
        self.topology.handlers().any(|h| h.registration.transactional)
    }

    /// Records the group's metadata after a rebalance (a new generation).
    pub(crate) fn set_group(&self, group: Option<rdkafka::consumer::ConsumerGroupMetadata>) {
        *self.group.write().unwrap_or_else(|p| p.into_inner()) = group.map(Arc::new);
    }

    /// Keeps the queue split off for a partition about to be assigned, for its lane.
    pub(crate) fn stage_queue(&mut self, tp: TopicPartition, queue: (BatchQueue, PartitionQueue<GroupContext>)) {
        self.queues.insert(tp, queue);
    }

    /// Starts a lane for a newly assigned partition, reading the queue staged for it.
    pub(crate) fn assign(&mut self, tp: TopicPartition) {
        let queue = self.queues.remove(&tp);
        if self.lanes.contains_key(&tp) {
            return;
        }
        let Some(handler) = self.topology.handler_for(&tp.0).cloned() else {
            tracing::error!(topic = %tp.0, "assigned a partition of a topic without handler");
            return;
        };
        if queue.is_none() {
            tracing::warn!(topic = %tp.0, partition = tp.1, "no queue of its own for this partition: its messages come through the consumer's queue");
        }
        let (fallback, receiver) = mpsc::channel(FALLBACK_BATCHES);
        let (ended_tx, ended) = std_mpsc::channel();
        let finished = self.processors.metrics().consumed(&tp.0, tp.1);
        let tracker = Arc::new(Mutex::new(OffsetTracker::new(self.budget.clone(), finished)));
        let cancel = CancellationToken::new();
        let waiting = Arc::new(AtomicBool::new(false));
        let wake = Arc::new(tokio::sync::Notify::new());
        let arrived = Arc::new(AtomicBool::new(false));
        let queue = Queue::new(queue, tp.0.clone(), &wake, &arrived, ended_tx);
        let processor = self.processors.for_partition(handler, &tp.0, tp.1, &self.group);
        let breaker = processor.breaker().cloned();
        let source = Source {
            wake,
            arrived,
            drained: false,
            fallback: receiver,
            tracker: tracker.clone(),
            budget: self.budget.clone(),
            cap: self.partition_cap,
            id: self.next_id,
            excused: 0,
            stalled_since: None,
            leading: false,
            topped: false,
            waiting: waiting.clone(),
            liveness: self.liveness.clone(),
            breaker: breaker.clone(),
        };
        self.next_id += 1;
        let task = self.runtime.spawn(run_lane(processor, queue, source, cancel.clone()));
        let task = task.abort_handle();
        let lane = Lane {
            fallback,
            tracker,
            cancel,
            ended,
            task,
            aborted: AtomicBool::new(false),
            staged: Vec::new(),
            waiting,
            breaker,
            committed: None,
        };
        self.lanes.insert(tp, lane);
    }

    /// Routes a message that came through the consumer's own queue to its lane (held from now
    /// until its outcome is durable); false when no lane owns its partition (revoked meanwhile:
    /// the owner re-reads it).
    pub(crate) fn route(&mut self, message: OwnedMessage) -> bool {
        let tp = (message.topic().to_string(), message.partition());
        let Some(lane) = self.lanes.get_mut(&tp) else {
            return false;
        };
        lock(&lane.tracker).begin(message.offset());
        lane.staged.push(message);
        true
    }

    /// Hands each lane the messages routed to it since the last flush, as one batch.
    pub(crate) fn flush(&mut self) {
        for lane in self.lanes.values_mut().filter(|l| !l.staged.is_empty()) {
            let batch = std::mem::take(&mut lane.staged);
            if let Err(full) = lane.fallback.try_send(batch) {
                // Full of batches (or the lane ended): kept, and tried again at the next flush.
                lane.staged = full.into_inner();
            }
        }
    }

    /// How many partitions are not being read now (at their cap, waiting for the member's
    /// budget, or behind an open circuit).
    pub(crate) fn paused(&self) -> usize {
        // A lane behind an open circuit may be waiting for its message in hand, not at `fill`:
        // the breaker says so directly.
        self.lanes
            .values()
            .filter(|l| l.waiting.load(Ordering::Relaxed) || l.breaker.as_ref().is_some_and(|b| b.blocks()))
            .count()
    }

    /// Offsets that advanced since they were last committed.
    pub(crate) fn committable(&self) -> Vec<(TopicPartition, i64)> {
        self.lanes
            .iter()
            .filter_map(|(tp, lane)| {
                let offset = lock(&lane.tracker).committable()?;
                (lane.committed < Some(offset)).then(|| (tp.clone(), offset))
            })
            .collect()
    }

    /// Records a successful commit.
    pub(crate) fn committed(&mut self, offsets: &[(TopicPartition, i64)]) {
        for (tp, offset) in offsets {
            if let Some(lane) = self.lanes.get_mut(tp) {
                lane.committed = lane.committed.max(Some(*offset));
            }
        }
    }

    /// Stops the lanes of `partitions` (each finishes the message in hand, buffered messages are
    /// left for the next owner), waits for them up to `timeout`, and returns the offsets still to
    /// commit for them.
    pub(crate) fn revoke(&mut self, partitions: &[TopicPartition], timeout: Duration) -> Vec<(TopicPartition, i64)> {
        for tp in partitions {
            self.queues.remove(tp);
        }
        let stopped: Vec<(TopicPartition, Lane)> =
            partitions.iter().filter_map(|tp| self.lanes.remove_entry(tp)).collect();
        stop_and_collect(stopped.iter().map(|(tp, lane)| (tp, lane)), timeout)
    }

    /// Shutdown: stops every lane (each finishes the message in hand), waits for them up to
    /// `timeout`, and returns the offsets still to commit. The lanes stay in the table, so a
    /// commit that fails now is tried again by the revocation that closing the consumer runs
    /// (which waits for none of them again). Queues staged for an assignment that never came
    /// are dropped: after this, only a lane still running holds the consumer.
    pub(crate) fn drain_all(&mut self, timeout: Duration) -> Vec<(TopicPartition, i64)> {
        self.queues.clear();
        stop_and_collect(self.lanes.iter(), timeout)
    }
}

/// Cancels `lanes` (each finishes the message in hand and its publishes in flight), waits for
/// them until `timeout`, aborts those still running then (their handlers' futures are dropped:
/// the work in hand is abandoned, never finished later), and returns their offsets not
/// committed yet — which never pass an unfinished message. A lane aborted once (by a shutdown
/// that timed out) is not waited for again. The cancelled lanes are logged once all the work is
/// done (see [`crate::sync::contain`]).
fn stop_and_collect<'a>(
    lanes: impl Iterator<Item = (&'a TopicPartition, &'a Lane)> + Clone,
    timeout: Duration,
) -> Vec<(TopicPartition, i64)> {
    for (_, lane) in lanes.clone() {
        lane.cancel.cancel();
    }
    let deadline = Instant::now() + timeout;
    let mut offsets = Vec::new();
    let mut cancelled = Vec::new();
    for (tp, lane) in lanes {
        let left = deadline.saturating_duration_since(Instant::now());
        if !lane.aborted.load(Ordering::Relaxed) {
            if let Err(std_mpsc::RecvTimeoutError::Timeout) = lane.ended.recv_timeout(left) {
                lane.task.abort();
                lane.aborted.store(true, Ordering::Relaxed);
                cancelled.push((tp, lock(&lane.tracker).unfinished()));
                // The abort takes effect at the task's next await: a handler that blocks its
                // thread (synchronous I/O, a busy loop) is only stopped once it yields.
                let _ = lane.ended.recv_timeout(Duration::from_secs(1));
            }
        }
        if let Some(offset) = lock(&lane.tracker).committable().filter(|o| lane.committed < Some(*o)) {
            offsets.push((tp.clone(), offset));
        }
    }
    for (tp, unfinished) in cancelled {
        let from = unfinished.first().copied();
        tracing::warn!(
            topic = %tp.0,
            partition = tp.1,
            redelivered_from = from,
            unfinished = ?&unfinished[..unfinished.len().min(20)],
            unfinished_count = unfinished.len(),
            "in-flight messages did not finish within {}: cancelled; this partition will be redelivered from offset {} (the unfinished offsets and everything after them)",
            humantime::format_duration(timeout),
            from.map_or_else(|| "?".to_string(), |o| o.to_string()),
        );
    }
    offsets
}
