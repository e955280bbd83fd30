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
//! A message read stays in librdkafka's fetch buffer ([`Received::Queued`], borrowed from the
//! lane's [`Queue`]) until its outcome is durable: nothing is copied to hand it over.
//!
//! Messages that arrive on the consumer's own queue instead (librdkafka forwards a partition
//! queue that was split before the assignment, so this is only a safeguard) are routed by the
//! poll thread into `fallback`, begun at routing.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::message::OwnedMessage;

use crate::message::{Consumed, Received};
use crate::native::BatchQueue;
use tokio::sync::{mpsc, Notify};

use super::budget::Budget;
use super::context::GroupContext;
use super::liveness::Liveness;
use super::offsets::OffsetTracker;
use crate::circuit::CircuitBreaker;
use crate::sync::lock;

/// Messages read from the queue at once at most (one tracker lock and budget update each).
const READ_BATCH: usize = 256;

/// How much room a lane that reached its cap waits for before it reads again (at most half the
/// cap).
const REFILL: usize = READ_BATCH;

/// How often a lane behind an open circuit looks again (the circuit half-opens by time).
const CIRCUIT_RECHECK: Duration = Duration::from_millis(100);

/// A partition at its cap that has finished no message for this long is *stuck*: its held
/// messages are excused from the member's budget (see [`Budget`]). One that is merely ahead —
/// at its cap because it reads faster than it handles, but finishing messages — is not, so the
/// member's cap bounds busy partitions.
const STUCK_AFTER: Duration = Duration::from_secs(1);

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

/// A lane's partition queue and its topic: owned by the lane's task, and borrowed by every
/// message read from it, so it is the last thing of a lane to go.
///
/// A partition queue holds the consumer: whoever drops the last one closes it. Dropped, the
/// queue disconnects `ended` — after the partition queue (fields drop in order) — so the member
/// knows when no lane holds the consumer any more and its own thread can close it.
pub(crate) struct Queue {
    /// Our reference to the partition's queue, read a run at a time; dropped first, while the
    /// partition queue below still holds the consumer.
    batch: Option<BatchQueue>,
    /// The partition queue split off the consumer's: held for its wake-up callback and the
    /// consumer it keeps alive, never read through.
    _split: Option<PartitionQueue<GroupContext>>,
    topic: String,
    _ended: std_mpsc::Sender<()>,
}

impl Queue {
    /// `queue` (none when the partition's messages come through the consumer's queue) of a
    /// partition of `topic`, read through `batch` (our reference to the same queue), with
    /// `arrived` set and `wake` notified when a message is put in it after a read; `ended`
    /// disconnects when it is dropped.
    pub(crate) fn new(
        split: Option<(BatchQueue, PartitionQueue<GroupContext>)>,
        topic: String,
        wake: &Arc<Notify>,
        arrived: &Arc<AtomicBool>,
        ended: std_mpsc::Sender<()>,
    ) -> Self {
        let (batch, mut queue) = split.map_or((None, None), |(batch, queue)| (Some(batch), Some(queue)));
        if let Some(queue) = &mut queue {
            // librdkafka calls it at the first message put in the queue after each read.
            let (woken, arrived) = (wake.clone(), arrived.clone());
            queue.set_nonempty_callback(move || {
                arrived.store(true, Ordering::Release);
                woken.notify_one();
            });
        }
        Self { batch, _split: queue, topic, _ended: ended }
    }

    /// Whether the lane reads its partition's own queue (else the poll thread routes its
    /// messages to it).
    fn reads_own_queue(&self) -> bool {
        self.batch.is_some()
    }

    /// Reads up to `room` messages into `into`, a run at a time; how many.
    fn read<'q>(&'q self, room: usize, into: &mut VecDeque<Received<'q>>) -> usize {
        let Some(batch) = &self.batch else { return 0 };
        let before = into.len();
        loop {
            let want = room - (into.len() - before);
            let taken = batch.read(want, |message| match message {
                Ok(message) => into.push_back(Received::queued(message, &self.topic)),
                Err(error) => tracing::warn!(%error, "consumer error on a partition queue"),
            });
            if taken < want || into.len() - before >= room {
                break;
            }
        }
        into.len() - before
    }
}

/// One lane's input, beside its [`Queue`].
pub(crate) struct Source {
    /// Woken by librdkafka when a message is put in the queue after a read.
    pub(crate) wake: Arc<Notify>,
    /// Set by librdkafka (with `wake`) when a message is put in the queue after a read.
    pub(crate) arrived: Arc<AtomicBool>,
    /// Whether the last read left the queue empty (so it is read again once `arrived`).
    pub(crate) drained: bool,
    pub(crate) fallback: mpsc::Receiver<Vec<OwnedMessage>>,
    pub(crate) tracker: Arc<Mutex<OffsetTracker>>,
    pub(crate) budget: Arc<Budget>,
    pub(crate) cap: usize,
    /// This lane's id for the budget's leader.
    pub(crate) id: u64,
    /// What this lane is excused of the budget (held at its cap while stuck), 0 otherwise.
    pub(crate) excused: usize,
    /// Since when the lane, unable to read, has finished no message, and its finished count
    /// then. The time is read lazily (`None` until the lane finds no progress or waits): a lane
    /// at its cap passes here once per message, and a clock reading per message is measurable.
    pub(crate) stalled_since: Option<(Option<tokio::time::Instant>, u64)>,
    /// Whether this lane leads the budget (so only a leader touches the shared leader slot).
    pub(crate) leading: bool,
    /// Whether the lane reached its cap and has not had [`REFILL`] room since.
    pub(crate) topped: bool,
    /// Set while it does not read (cap, budget, circuit): the member's "paused partitions".
    pub(crate) waiting: Arc<AtomicBool>,
    pub(crate) liveness: Arc<Liveness>,
    pub(crate) breaker: Option<Arc<CircuitBreaker>>,
}

impl Source {
    /// Reads messages of `queue` into `into` (begun in the tracker) while the caps allow, and
    /// says why it stopped.
    pub(crate) fn fill<'q>(&mut self, queue: &'q Queue, into: &mut VecDeque<Received<'q>>) -> Stop {
        let stop = self.fill_inner(queue, into);
        self.waiting.store(stop != Stop::Empty, Ordering::Relaxed);
        stop
    }

    fn fill_inner<'q>(&mut self, queue: &'q Queue, into: &mut VecDeque<Received<'q>>) -> Stop {
        if self.breaker.as_ref().is_some_and(|b| b.blocks()) {
            return Stop::Circuit;
        }
        // The lane's own queue was read empty and nothing arrived since, and the lane neither
        // leads, nor is excused, nor sat at its cap: nothing to read and nothing to update (only
        // the lane's reads add to what it holds, so it cannot have reached its cap since; a lane
        // comes here after every message it finishes, and the tracker's lock is not needed to
        // say so). A lane fed by the poll thread (messages routed to it, begun there) always
        // looks at its counts.
        if self.drained
            && queue.reads_own_queue()
            && !self.leading
            && self.excused == 0
            && !self.topped
            && !self.arrived.load(Ordering::Acquire)
        {
            return Stop::Empty;
        }
        loop {
            let (held, finished) = {
                let tracker = lock(&self.tracker);
                (tracker.held(), tracker.finished())
            };
            // A lane that reached its cap reads again only once it has room for a batch: reading
            // one message per finish would cost a lock, a budget update and a clock reading each.
            let topped = held >= self.cap || (self.topped && held > self.cap - REFILL.min(self.cap / 2));
            self.topped = topped;
            if topped {
                // A leader reads no further than its cap; stuck there, it is excused.
                self.step_down();
                let stuck = self.stalled(finished);
                self.excuse(stuck.then_some(held));
                return Stop::AtCap;
            }
            self.excuse(None);
            if self.budget.is_full() {
                // A lane that cannot progress may lead past the full budget up to its own cap
                // (where it is excused); one that progresses, or holds nothing (it is starved,
                // not stuck), waits for the budget to free.
                if held == 0 {
                    self.stalled_since = None;
                    return Stop::Budget;
                }
                if !(self.stalled(finished) && self.budget.lead(self.id)) {
                    return Stop::Budget;
                }
                self.leading = true;
            } else {
                self.stalled_since = None;
                self.step_down();
            }
            // A queue read empty is looked at again only once librdkafka has put a message in it
            // since: a lane comes here after every message it finishes, and looking at an empty
            // queue costs as much as reading a message.
            if self.drained && !self.arrived.swap(false, Ordering::AcqRel) {
                return Stop::Empty;
            }
            self.drained = false;
            let room = (self.cap - held).min(READ_BATCH);
            let before = into.len();
            let read = queue.read(room, into);
            self.drained = read < room;
            if read == 0 {
                return Stop::Empty;
            }
            lock(&self.tracker).begin_all(into.range(before..).map(Consumed::offset));
            self.liveness.received();
            if read < room {
                return Stop::Empty;
            }
        }
    }

    /// Whether the lane, unable to read, has finished no message for [`STUCK_AFTER`] (the clock
    /// starts at the first look without progress, or again when it finished one since).
    fn stalled(&mut self, finished: u64) -> bool {
        match &mut self.stalled_since {
            Some((since, before)) if *before == finished => {
                let now = tokio::time::Instant::now();
                now.duration_since(*since.get_or_insert(now)) >= STUCK_AFTER
            }
            _ => {
                self.stalled_since = Some((None, finished));
                false
            }
        }
    }

    /// Gives up the budget's leadership, if this lane has it.
    fn step_down(&mut self) {
        if std::mem::take(&mut self.leading) {
            self.budget.step_down(self.id);
        }
    }

    /// Keeps the budget's excuse in step: `Some(held)` when stuck at the cap holding `held`.
    fn excuse(&mut self, stuck: Option<usize>) {
        match stuck {
            Some(held) if self.excused == 0 => {
                self.excused = held;
                self.budget.excuse(self.id, held);
            }
            None if self.excused > 0 => self.budget.unexcuse(std::mem::take(&mut self.excused)),
            _ => {}
        }
    }

    /// Resolves when reading may go on after `stop` (the lane's own finishes, which also free
    /// room, are awaited by the lane), or with messages routed to the fallback.
    pub(crate) async fn changed(&mut self, stop: Stop) -> Change {
        // When a blocked lane would count as stuck: look again then (once stuck, a lane that
        // could not lead waits for the budget's notification: a leader stepping down, an excuse).
        let stuck_at = self.stalled_since.as_mut().and_then(|(since, _)| {
            let now = tokio::time::Instant::now();
            let at = *since.get_or_insert(now) + STUCK_AFTER;
            (at > now).then_some(at)
        });
        let routed = |batch: Option<Vec<OwnedMessage>>| batch.map_or(Change::Closed, Change::Routed);
        match stop {
            Stop::Empty => tokio::select! {
                batch = self.fallback.recv() => routed(batch),
                () = self.wake.notified() => Change::Recheck,
            },
            Stop::AtCap => tokio::select! {
                batch = self.fallback.recv() => routed(batch),
                () = sleep_until(stuck_at) => Change::Recheck,
            },
            Stop::Circuit => tokio::select! {
                batch = self.fallback.recv() => routed(batch),
                () = tokio::time::sleep(CIRCUIT_RECHECK) => Change::Recheck,
            },
            Stop::Budget => {
                // Registered before looking, so a release in between is not missed.
                let freed = self.budget.freed();
                tokio::pin!(freed);
                freed.as_mut().enable();
                if !self.budget.is_full() {
                    return Change::Recheck;
                }
                tokio::select! {
                    batch = self.fallback.recv() => routed(batch),
                    () = freed => Change::Recheck,
                    () = sleep_until(stuck_at) => Change::Recheck,
                }
            }
        }
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        if self.excused > 0 {
            self.budget.unexcuse(self.excused);
        }
        self.step_down();
        self.waiting.store(false, Ordering::Relaxed);
    }
}
