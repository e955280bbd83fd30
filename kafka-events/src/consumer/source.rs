//! Where a lane reads its partition's messages: the partition's own librdkafka queue, split off
//! the consumer's queue before the partition is assigned, so fetched messages go straight to
//! the lane that handles them — no thread copies and routes every message of the member.
//!
//! A lane reads while its partition holds fewer than its cap and the member's budget has room
//! (see [`Budget`]); otherwise it simply stops reading. librdkafka then stops fetching the
//! partition once its queue holds `queued.min.messages` or `queued.max.messages.kbytes`, so
//! memory stays bounded without pausing the partition, and a slow or stuck partition never
//! costs another one anything.
//!
//! Messages that arrive on the consumer's own queue instead (librdkafka forwards a partition
//! queue that was split before the assignment, so this is only a safeguard) are routed by the
//! poll thread into `fallback`, begun at routing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::{mpsc, Notify};

use super::budget::Budget;
use super::context::GroupContext;
use super::liveness::Liveness;
use super::offsets::OffsetTracker;
use crate::circuit::CircuitBreaker;
use crate::sync::lock;

/// Messages read from the queue at once at most (one tracker lock and budget update each).
const READ_BATCH: usize = 256;

/// How often a lane behind an open circuit looks again (the circuit half-opens by time).
const CIRCUIT_RECHECK: Duration = Duration::from_millis(100);

/// Why a lane stopped reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// It read everything there was.
    Empty,
    /// Its partition holds its cap: its own finishes free room.
    AtCap,
    /// The member's budget is full.
    Budget,
    /// Its handler's circuit is open.
    Circuit,
}

/// What [`Source::changed`] saw.
pub(crate) enum Change {
    /// Look again (messages arrived, the budget freed, time passed).
    Recheck,
    /// Messages the poll thread routed (already begun).
    Routed(Vec<OwnedMessage>),
    /// The lane was dropped from the member's table: end.
    Closed,
}

/// One lane's input.
pub(crate) struct Source {
    pub(crate) queue: Option<PartitionQueue<GroupContext>>,
    /// Woken by librdkafka when the queue becomes non-empty.
    pub(crate) wake: Arc<Notify>,
    pub(crate) fallback: mpsc::Receiver<Vec<OwnedMessage>>,
    pub(crate) tracker: Arc<Mutex<OffsetTracker>>,
    pub(crate) budget: Arc<Budget>,
    pub(crate) cap: usize,
    /// This lane's id for the budget's leader.
    pub(crate) id: u64,
    /// What this lane is excused of the budget (held at its cap), 0 when not at its cap.
    pub(crate) excused: usize,
    /// Set while it does not read (cap, budget, circuit): the member's "paused partitions".
    pub(crate) waiting: Arc<AtomicBool>,
    pub(crate) liveness: Arc<Liveness>,
    pub(crate) breaker: Option<Arc<CircuitBreaker>>,
}

impl Source {
    /// Creates a source whose queue wakes `wake`.
    pub(crate) fn wake_on_messages(queue: &mut Option<PartitionQueue<GroupContext>>) -> Arc<Notify> {
        let wake = Arc::new(Notify::new());
        if let Some(queue) = queue {
            let woken = wake.clone();
            queue.set_nonempty_callback(move || woken.notify_one());
        }
        wake
    }

    /// Reads messages into `into` (begun in the tracker) while the caps allow, and says why it
    /// stopped.
    pub(crate) fn fill(&mut self, into: &mut VecDeque<OwnedMessage>) -> Stop {
        let stop = self.fill_inner(into);
        self.waiting.store(stop != Stop::Empty, Ordering::Relaxed);
        stop
    }

    fn fill_inner(&mut self, into: &mut VecDeque<OwnedMessage>) -> Stop {
        if self.breaker.as_ref().is_some_and(|b| b.blocks()) {
            return Stop::Circuit;
        }
        loop {
            let held = lock(&self.tracker).held();
            self.reconcile(held);
            if held >= self.cap {
                return Stop::AtCap;
            }
            if !self.budget.admits(self.id) {
                return Stop::Budget;
            }
            let Some(queue) = &self.queue else { return Stop::Empty };
            let room = (self.cap - held).min(READ_BATCH);
            let mut read = Vec::with_capacity(room.min(16));
            while read.len() < room {
                match queue.poll(Duration::ZERO) {
                    Some(Ok(message)) => read.push(message.detach()),
                    Some(Err(error)) => tracing::warn!(%error, "consumer error on a partition queue"),
                    None => break,
                }
            }
            if read.is_empty() {
                return Stop::Empty;
            }
            let complete = read.len() < room;
            lock(&self.tracker).begin_all(read.iter().map(Message::offset));
            self.liveness.received();
            into.extend(read);
            if complete {
                return Stop::Empty;
            }
        }
    }

    /// Keeps the budget's excuse in step with whether the partition is at its cap.
    fn reconcile(&mut self, held: usize) {
        if held >= self.cap && self.excused == 0 {
            self.excused = held;
            self.budget.excuse(self.id, held);
        } else if held < self.cap && self.excused > 0 {
            self.budget.unexcuse(std::mem::take(&mut self.excused));
        }
    }

    /// Resolves when reading may go on after `stop` (the lane's own finishes, which also free
    /// room, are awaited by the lane), or with messages routed to the fallback.
    pub(crate) async fn changed(&mut self, stop: Stop) -> Change {
        let freed = self.budget.freed();
        tokio::pin!(freed);
        freed.as_mut().enable();
        let budget_full = stop == Stop::Budget && !self.budget.admits(self.id);
        tokio::select! {
            batch = self.fallback.recv() => batch.map_or(Change::Closed, Change::Routed),
            () = self.wake.notified(), if stop == Stop::Empty => Change::Recheck,
            () = freed, if budget_full => Change::Recheck,
            () = std::future::ready(()), if stop == Stop::Budget && !budget_full => Change::Recheck,
            () = tokio::time::sleep(CIRCUIT_RECHECK), if stop == Stop::Circuit => Change::Recheck,
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        if self.excused > 0 {
            self.budget.unexcuse(self.excused);
        }
        self.budget.step_down(self.id);
        self.waiting.store(false, Ordering::Relaxed);
    }
}
