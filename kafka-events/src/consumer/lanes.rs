//! The dispatcher: one lane (a task) per assigned partition, fed through a bounded buffer.
//!
//! Backpressure: every polled message is held (counted by its partition's offset tracker and
//! by the member's [`Budget`]) until its outcome is durable. A partition holding
//! `KAFKA_PARTITION_BUFFER` messages is paused; when the member holds `KAFKA_MAX_BUFFERED`,
//! all its partitions are paused. Paused partitions resume once they, and the member, have
//! drained to half (each resume restarts fetching, so the gap keeps a busy partition from
//! flapping).

use std::collections::HashMap;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::budget::Budget;
use super::lane::run_lane;
use super::offsets::OffsetTracker;
use crate::circuit::CircuitBreaker;
use crate::processor::transaction::GroupCell;
use crate::processor::Processor;
use crate::registry::Topology;
use crate::sync::lock;

/// A topic and one of its partitions: the key of a lane, an offset or a pause.
pub(crate) type TopicPartition = (String, i32);

struct Lane {
    /// Batches of messages for the lane, in offset order.
    buffer: mpsc::Sender<Vec<OwnedMessage>>,
    tracker: Arc<Mutex<OffsetTracker>>,
    cancel: CancellationToken,
    /// Disconnected when the lane's task has ended.
    ended: std_mpsc::Receiver<()>,
    /// Cancels the lane's task outright (its running handlers' futures are dropped) when it
    /// has not finished by the drain deadline.
    task: tokio::task::AbortHandle,
    /// Messages polled (and held) but not yet handed to the lane: [`Lanes::flush`] sends them
    /// as one batch after each poll burst, so the lane is woken once per burst, not per message.
    staged: Vec<OwnedMessage>,
    paused: bool,
    committed: Option<i64>,
    /// Its handler's circuit breaker: while it is open the partition stays paused.
    breaker: Option<Arc<CircuitBreaker>>,
}

/// What routing a message asks of the consumer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Held for its lane.
    Buffered,
    /// Held, and a cap is reached: pause these partitions.
    Pause(Vec<TopicPartition>),
    /// No lane owns this partition (revoked meanwhile): dropped, the owner re-reads it.
    Unowned,
}

pub(crate) struct Lanes {
    lanes: HashMap<TopicPartition, Lane>,
    topology: Arc<Topology>,
    processor: Arc<Processor>,
    runtime: tokio::runtime::Handle,
    /// Messages one partition may hold.
    partition_cap: usize,
    budget: Arc<Budget>,
    /// The group's metadata, for the transactions of `transactional` handlers.
    group: GroupCell,
    /// Messages held by partitions paused at their own cap, which the member-wide cap does not
    /// count (see [`Budget`]); measured once per poll burst.
    excused: usize,
}

impl Lanes {
    pub(crate) fn new(
        topology: Arc<Topology>,
        processor: Arc<Processor>,
        runtime: tokio::runtime::Handle,
        partition_cap: usize,
        budget: Arc<Budget>,
    ) -> Self {
        Self {
            lanes: HashMap::new(),
            topology,
            processor,
            runtime,
            partition_cap,
            budget,
            group: GroupCell::default(),
            excused: 0,
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

    /// Starts a lane for a newly assigned partition.
    pub(crate) fn assign(&mut self, tp: TopicPartition) {
        if self.lanes.contains_key(&tp) {
            return;
        }
        let Some(handler) = self.topology.handler_for(&tp.0).cloned() else {
            tracing::error!(topic = %tp.0, "assigned a partition of a topic without handler");
            return;
        };
        // Batches of held messages, so never fuller than the partition's cap.
        let (buffer, receiver) = mpsc::channel(self.partition_cap);
        let (ended_tx, ended) = std_mpsc::channel();
        let finished = self.processor.metrics().consumed(&tp.0, tp.1);
        let tracker = Arc::new(Mutex::new(OffsetTracker::new(self.budget.clone(), finished)));
        let cancel = CancellationToken::new();
        let breaker = self.processor.instruments(&handler.topic).breaker;
        let transactor = self.processor.transactor(&handler, tp.1, &self.group);
        let task = self.runtime.spawn(run_lane(
            handler,
            receiver,
            tracker.clone(),
            cancel.clone(),
            self.processor.clone(),
            transactor,
            ended_tx,
        ));
        let task = task.abort_handle();
        self.lanes.insert(
            tp,
            Lane { buffer, tracker, cancel, ended, task, staged: Vec::new(), paused: false, committed: None, breaker },
        );
    }

    /// Routes a polled message to its lane; it is held from now until its outcome is durable.
    pub(crate) fn route(&mut self, message: OwnedMessage) -> Route {
        let tp = (message.topic().to_string(), message.partition());
        let Some(lane) = self.lanes.get_mut(&tp) else {
            return Route::Unowned;
        };
        let held = {
            let mut tracker = lock(&lane.tracker);
            tracker.begin(message.offset());
            tracker.held()
        };
        lane.staged.push(message);
        if self.budget.is_full(self.excused) {
            let pause: Vec<TopicPartition> = self
                .lanes
                .iter_mut()
                .filter(|(_, lane)| !lane.paused)
                .map(|(tp, lane)| {
                    lane.paused = true;
                    tp.clone()
                })
                .collect();
            return if pause.is_empty() { Route::Buffered } else { Route::Pause(pause) };
        }
        if !lane.paused && held >= self.partition_cap {
            lane.paused = true;
            return Route::Pause(vec![tp]);
        }
        Route::Buffered
    }

    /// Hands each lane the messages staged for it since the last flush, as one batch; whether
    /// there were any.
    pub(crate) fn flush(&mut self) -> bool {
        let any = self.lanes.values().any(|l| !l.staged.is_empty());
        for lane in self.lanes.values_mut().filter(|l| !l.staged.is_empty()) {
            let batch = std::mem::take(&mut lane.staged);
            if let Err(full) = lane.buffer.try_send(batch) {
                // Full of batches (or the lane ended): kept, and tried again at the next flush.
                lane.staged = full.into_inner();
            }
        }
        any
    }

    /// Partitions whose handler's circuit has opened since the last call: they are paused.
    pub(crate) fn circuit_pauses(&mut self) -> Vec<TopicPartition> {
        self.lanes
            .iter_mut()
            .filter(|(_, lane)| !lane.paused && lane.breaker.as_ref().is_some_and(|b| b.blocks()))
            .map(|(tp, lane)| {
                lane.paused = true;
                tp.clone()
            })
            .collect()
    }

    /// How many partitions are paused now.
    pub(crate) fn paused(&self) -> usize {
        self.lanes.values().filter(|l| l.paused).count()
    }

    /// The paused partitions that have drained to half their cap, while the member has drained
    /// to half its own, and whose circuit is closed: they are resumed.
    pub(crate) fn refill(&mut self) -> Vec<TopicPartition> {
        let mut resume = Vec::new();
        let cap = self.partition_cap;
        self.excused =
            self.lanes.values().filter(|l| l.paused).map(|l| lock(&l.tracker).held()).filter(|held| *held >= cap).sum();
        if !self.lanes.values().any(|l| l.paused) || !self.budget.has_drained(self.excused) {
            return resume;
        }
        let low_water = self.partition_cap / 2;
        for (tp, lane) in self.lanes.iter_mut().filter(|(_, l)| l.paused) {
            if lane.breaker.as_ref().is_some_and(|b| b.blocks()) {
                continue;
            }
            if lock(&lane.tracker).held() <= low_water {
                lane.paused = false;
                resume.push(tp.clone());
            }
        }
        resume
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
        let stopped: Vec<(TopicPartition, Lane)> =
            partitions.iter().filter_map(|tp| self.lanes.remove_entry(tp)).collect();
        stop_and_collect(stopped.iter().map(|(tp, lane)| (tp, lane)), timeout)
    }

    /// Shutdown: stops every lane (each finishes the message in hand), waits for them up to
    /// `timeout`, and returns the offsets still to commit. The lanes stay in the table, so a
    /// commit that fails now is tried again by the revocation that closing the consumer runs.
    pub(crate) fn drain_all(&mut self, timeout: Duration) -> Vec<(TopicPartition, i64)> {
        stop_and_collect(self.lanes.iter(), timeout)
    }
}

/// Cancels `lanes` (each finishes the message in hand and its publishes in flight), waits for
/// them until `timeout`, aborts those still running then (their handlers' futures are dropped:
/// the work in hand is abandoned, never finished later), and returns their offsets not
/// committed yet — which never pass an unfinished message.
fn stop_and_collect<'a>(
    lanes: impl Iterator<Item = (&'a TopicPartition, &'a Lane)> + Clone,
    timeout: Duration,
) -> Vec<(TopicPartition, i64)> {
    for (_, lane) in lanes.clone() {
        lane.cancel.cancel();
    }
    let deadline = Instant::now() + timeout;
    let mut offsets = Vec::new();
    for (tp, lane) in lanes {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(std_mpsc::RecvTimeoutError::Timeout) = lane.ended.recv_timeout(left) {
            lane.task.abort();
            let unfinished = lock(&lane.tracker).unfinished();
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
            // The abort takes effect at the task's next await: a handler that blocks its thread
            // (synchronous I/O, a busy loop) is only stopped once it yields.
            let _ = lane.ended.recv_timeout(Duration::from_secs(1));
        }
        if let Some(offset) = lock(&lane.tracker).committable().filter(|o| lane.committed < Some(*o)) {
            offsets.push((tp.clone(), offset));
        }
    }
    offsets
}
