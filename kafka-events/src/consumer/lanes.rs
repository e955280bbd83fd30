//! The dispatcher: one lane (a task) per assigned partition, fed through a bounded buffer.
//! When a lane's buffer is full its partition is paused, and resumed once the lane drains.

use std::collections::{HashMap, VecDeque};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::processor::offsets::OffsetTracker;
use crate::processor::{Finish, Processor};
use crate::registry::{BoundHandler, Topology};

/// A topic and partition.
pub(crate) type Tp = (String, i32);

struct Lane {
    buffer: mpsc::Sender<OwnedMessage>,
    tracker: Arc<Mutex<OffsetTracker>>,
    cancel: CancellationToken,
    /// Disconnected when the lane's task has ended.
    ended: std_mpsc::Receiver<()>,
    /// Messages polled while the buffer was full, in offset order.
    parked: VecDeque<OwnedMessage>,
    paused: bool,
    committed: Option<i64>,
}

/// What routing a message asks of the consumer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Buffered for its lane.
    Buffered,
    /// The lane is full: pause this partition.
    Pause(Tp),
    /// No lane owns this partition (revoked meanwhile): dropped, the owner re-reads it.
    Unowned,
}

pub(crate) struct Lanes {
    lanes: HashMap<Tp, Lane>,
    topology: Arc<Topology>,
    processor: Arc<Processor>,
    runtime: tokio::runtime::Handle,
    buffer: usize,
}

impl Lanes {
    pub(crate) fn new(
        topology: Arc<Topology>,
        processor: Arc<Processor>,
        runtime: tokio::runtime::Handle,
        buffer: usize,
    ) -> Self {
        Self { lanes: HashMap::new(), topology, processor, runtime, buffer }
    }

    pub(crate) fn len(&self) -> usize {
        self.lanes.len()
    }

    /// Starts a lane for a newly assigned partition.
    pub(crate) fn assign(&mut self, tp: Tp) {
        if self.lanes.contains_key(&tp) {
            return;
        }
        let Some(handler) = self.topology.handler_for(&tp.0).cloned() else {
            tracing::error!(topic = %tp.0, "assigned a partition of a topic without handler");
            return;
        };
        let (buffer, receiver) = mpsc::channel(self.buffer);
        let (ended_tx, ended) = std_mpsc::channel();
        let tracker = Arc::new(Mutex::new(OffsetTracker::default()));
        let cancel = CancellationToken::new();
        self.runtime.spawn(run_lane(
            handler,
            receiver,
            tracker.clone(),
            cancel.clone(),
            self.processor.clone(),
            ended_tx,
        ));
        self.lanes.insert(
            tp,
            Lane { buffer, tracker, cancel, ended, parked: VecDeque::new(), paused: false, committed: None },
        );
    }

    /// Routes a polled message to its lane.
    pub(crate) fn route(&mut self, message: OwnedMessage) -> Route {
        let tp = (message.topic().to_string(), message.partition());
        let Some(lane) = self.lanes.get_mut(&tp) else {
            return Route::Unowned;
        };
        if lane.paused || !lane.parked.is_empty() {
            lane.parked.push_back(message);
            return Route::Buffered;
        }
        match hand_over(lane, message) {
            Ok(()) => Route::Buffered,
            Err(message) => {
                lane.parked.push_back(message);
                lane.paused = true;
                Route::Pause(tp)
            }
        }
    }

    /// Moves parked messages into lanes whose buffer has drained to half full; returns the
    /// partitions to resume. The half-full threshold keeps a busy partition from flapping
    /// between paused and resumed on every message (each resume restarts fetching).
    pub(crate) fn refill(&mut self) -> Vec<Tp> {
        let mut resume = Vec::new();
        let low_water = self.buffer.div_ceil(2);
        for (tp, lane) in self.lanes.iter_mut().filter(|(_, l)| l.paused && l.buffer.capacity() >= low_water) {
            while let Some(message) = lane.parked.pop_front() {
                if let Err(message) = hand_over(lane, message) {
                    lane.parked.push_front(message);
                    break;
                }
            }
            if lane.parked.is_empty() {
                lane.paused = false;
                resume.push(tp.clone());
            }
        }
        resume
    }

    /// Offsets that advanced since they were last committed.
    pub(crate) fn committable(&self) -> Vec<(Tp, i64)> {
        self.lanes
            .iter()
            .filter_map(|(tp, lane)| {
                let offset = lock(&lane.tracker).committable()?;
                (lane.committed < Some(offset)).then(|| (tp.clone(), offset))
            })
            .collect()
    }

    /// Records a successful commit.
    pub(crate) fn committed(&mut self, offsets: &[(Tp, i64)]) {
        for (tp, offset) in offsets {
            if let Some(lane) = self.lanes.get_mut(tp) {
                lane.committed = lane.committed.max(Some(*offset));
            }
        }
    }

    /// Stops the lanes of `partitions` (each finishes the message in hand, buffered messages are
    /// left for the next owner), waits for them up to `timeout`, and returns the offsets still to
    /// commit for them.
    pub(crate) fn revoke(&mut self, partitions: &[Tp], timeout: Duration) -> Vec<(Tp, i64)> {
        let stopped: Vec<(Tp, Lane)> = partitions.iter().filter_map(|tp| self.lanes.remove_entry(tp)).collect();
        stop_and_collect(stopped.iter().map(|(tp, lane)| (tp, lane)), timeout)
    }

    /// Shutdown: stops every lane (each finishes the message in hand), waits for them up to
    /// `timeout`, and returns the offsets still to commit. The lanes stay in the table, so a
    /// commit that fails now is tried again by the revocation that closing the consumer runs.
    pub(crate) fn drain_all(&mut self, timeout: Duration) -> Vec<(Tp, i64)> {
        stop_and_collect(self.lanes.iter(), timeout)
    }
}

/// Cancels `lanes` (each finishes the message in hand and its publishes in flight), waits for
/// them until `timeout`, and returns their offsets not committed yet.
fn stop_and_collect<'a>(lanes: impl Iterator<Item = (&'a Tp, &'a Lane)> + Clone, timeout: Duration) -> Vec<(Tp, i64)> {
    for (_, lane) in lanes.clone() {
        lane.cancel.cancel();
    }
    let deadline = Instant::now() + timeout;
    let mut offsets = Vec::new();
    for (tp, lane) in lanes {
        let left = deadline.saturating_duration_since(Instant::now());
        if let Err(std_mpsc::RecvTimeoutError::Timeout) = lane.ended.recv_timeout(left) {
            tracing::warn!(topic = %tp.0, partition = tp.1, "in-flight message did not finish within {}; it will be redelivered", humantime::format_duration(timeout));
        }
        if let Some(offset) = lock(&lane.tracker).committable().filter(|o| lane.committed < Some(*o)) {
            offsets.push((tp.clone(), offset));
        }
    }
    offsets
}

/// Gives `message` to its lane's buffer, tracking its offset from then on; hands it back when the
/// buffer is full.
fn hand_over(lane: &mut Lane, message: OwnedMessage) -> Result<(), OwnedMessage> {
    let offset = message.offset();
    // Begin before sending: the lane may finish the offset before `try_send` even returns.
    lock(&lane.tracker).begin(offset);
    lane.buffer.try_send(message).map_err(|e| {
        lock(&lane.tracker).withdraw(offset);
        e.into_inner()
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Retry and dead-letter publishes one lane may have in flight before it waits for one.
const MAX_PUBLISHING: usize = 1024;

/// A lane: takes its partition's messages in order and runs each through the processor.
/// Retry and dead-letter publishes are pipelined: the lane goes on while they are acknowledged,
/// and the offset tracker finishes each offset when its publish is durable. On stop, the lane
/// waits for the publishes in flight before it reports that it has ended.
async fn run_lane(
    handler: BoundHandler,
    mut buffer: mpsc::Receiver<OwnedMessage>,
    tracker: Arc<Mutex<OffsetTracker>>,
    cancel: CancellationToken,
    processor: Arc<Processor>,
    _ended: std_mpsc::Sender<()>,
) {
    let mut publishing = tokio::task::JoinSet::new();
    loop {
        while publishing.try_join_next().is_some() {}
        while publishing.len() >= MAX_PUBLISHING {
            publishing.join_next().await;
        }
        let message = tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            message = buffer.recv() => match message {
                Some(message) => message,
                None => break,
            },
        };
        let offset = message.offset();
        match processor.process(&handler, &message, &cancel).await {
            Finish::Finished => lock(&tracker).finish(offset),
            Finish::Interrupted => break,
            Finish::Publishing(publish) => {
                let tracker = tracker.clone();
                publishing.spawn(async move {
                    if let Finish::Finished = publish.await {
                        lock(&tracker).finish(offset);
                    }
                });
            }
        }
    }
    while publishing.join_next().await.is_some() {}
}
