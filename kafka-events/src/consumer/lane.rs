//! A lane: the task that reads one partition's messages from its queue ([`Source`]) and runs
//! them through the partition's own [`PartitionProcessor`].
//!
//! Up to the handler's `concurrency` messages run at once (all polled by this one task, so a
//! lane is as cheap as a task whatever N is); messages of one key never overlap and run in
//! offset order ([`KeyGate`]). Retry and dead-letter publishes are pipelined: the lane goes on
//! while they are acknowledged. Offsets finish in any order; the tracker commits only the
//! contiguous finished prefix.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use super::keys::KeyGate;
use super::offsets::OffsetTracker;
use super::source::{Change, Queue, Source};
use crate::abi::{BatchSpec, InvokeFn, Shape};
use crate::message::{Consumed, Received};
use crate::processor::{Finish, PartitionProcessor};
use crate::sync::lock;

/// Retry and dead-letter publishes one lane may have in flight before it waits for one.
const MAX_PUBLISHING: usize = 1024;

/// Runs until cancelled or dropped from the member's table. On cancel it starts nothing new,
/// lets the running messages finish (each stops at its next wait), waits for its publishes in
/// flight, and only then drops `queue` (which tells the consumer thread it has ended). Messages
/// read but not started, or waiting behind their key, are left unfinished: the next owner of
/// the partition reads them again. Every message borrows `queue` (its fetch buffer stays
/// librdkafka's), so the queue outlives them all.
pub(crate) async fn run_lane(processor: PartitionProcessor, queue: Queue, source: Source, cancel: CancellationToken) {
    match processor.handler().registration.shape {
        Shape::Single(invoke) => run_single_lane(&processor, invoke, &queue, source, cancel).await,
        Shape::Batch(spec) => run_batch_lane(&processor, &spec, &queue, source, cancel).await,
    }
}

/// The lane of a single-message handler (see the module docs).
///
/// A message whose processing finishes at its first poll — a handler that did not wait, the
/// common case of a busy partition — is settled at once, without a wait on the queue, the token
/// or the publishes; its offset joins the run's [`Finished`], handed to the tracker (one lock,
/// one budget update, one count) when the lane next reads its queue empty, every
/// [`FLUSH_EVERY`] messages, and always before the lane waits.
async fn run_single_lane(
    processor: &PartitionProcessor,
    invoke: InvokeFn,
    queue: &Queue,
    mut source: Source,
    cancel: CancellationToken,
) {
    let tracker = source.tracker.clone();
    let registration = processor.handler().registration;
    let concurrency = registration.concurrency.max(1) as usize;
    let mut gate = KeyGate::new(registration.concurrency, registration.keyless);
    let cancel_ref = &cancel;
    let start = |message| processor.process(invoke, message, cancel_ref);
    let slot = std::pin::pin!(None);
    let mut running = Running::new(concurrency, slot);
    // Received, not started yet (only while `concurrency` messages are running).
    let mut ready: VecDeque<Received<'_>> = VecDeque::new();
    let mut publishing = tokio::task::JoinSet::new();
    let mut finished = Finished::new(&tracker);
    // Registered once: a new wait each turn would register with the token every message.
    let mut cancelled = std::pin::pin!(cancel.cancelled());
    loop {
        // Looked at here, so that the wait below comes after the running message: a message
        // that finishes at once is taken without polling the token's wait (or the queue's).
        if cancel.is_cancelled() {
            break;
        }
        while publishing.try_join_next().is_some() {}
        while publishing.len() >= MAX_PUBLISHING {
            finished.flush();
            publishing.join_next().await;
        }
        if ready.is_empty() || finished.len() >= FLUSH_EVERY {
            // What the lane finished counts before it reads again (the partition's cap).
            finished.flush();
        }
        let stop = source.fill(queue, &mut ready);
        while running.len() < concurrency {
            let Some(message) = ready.pop_front() else { break };
            if let Some(message) = gate.admit(message) {
                running.push(start(message));
            }
        }
        if let Some((message, finish)) = running.poll_once().await {
            settle(&mut finished, message.offset(), finish, &mut publishing);
            if let Some(next) = gate.release(&message).filter(|_| !cancel.is_cancelled()) {
                running.push(start(next));
            }
            // A lane whose messages all finish at once never waits: it gives the worker back
            // to other tasks when its cooperative budget is spent.
            tokio::task::consume_budget().await;
            continue;
        }
        if finished.flush() {
            // Room freed since the queue was last read: read (and start) again before waiting.
            continue;
        }
        tokio::select! {
            biased;
            Some((message, finish)) = running.next(), if !running.is_empty() => {
                let (message, finish): (Received<'_>, Finish) = (message, finish);
                settle(&mut finished, message.offset(), finish, &mut publishing);
                // Once cancelled, the next message of the key is left unstarted (redelivered).
                if let Some(next) = gate.release(&message).filter(|_| !cancel.is_cancelled()) {
                    running.push(start(next));
                }
            }
            () = cancelled.as_mut() => break,
            Some(_) = publishing.join_next(), if !publishing.is_empty() => {}
            // Reads ahead up to the partition's cap even while every slot is busy.
            change = source.changed(stop) => match change {
                Change::Recheck => {}
                Change::Routed(batch) => ready.extend(batch.into_iter().map(Received::from)),
                Change::Closed => break,
            },
        }
    }
    while let Some((message, finish)) = running.next().await {
        settle(&mut finished, message.offset(), finish, &mut publishing);
    }
    finished.flush();
    while publishing.join_next().await.is_some() {}
}

/// Offsets a lane finished and has not handed to its tracker yet more than this: handed over.
const FLUSH_EVERY: usize = 64;

/// The offsets a lane finished since it last handed them to its partition's tracker.
struct Finished<'t> {
    tracker: &'t Arc<Mutex<OffsetTracker>>,
    offsets: Vec<i64>,
}

impl<'t> Finished<'t> {
    fn new(tracker: &'t Arc<Mutex<OffsetTracker>>) -> Self {
        Self { tracker, offsets: Vec::with_capacity(FLUSH_EVERY) }
    }

    fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Hands the finished offsets to the tracker; whether there were any.
    fn flush(&mut self) -> bool {
        if self.offsets.is_empty() {
            return false;
        }
        lock(self.tracker).finish_all(self.offsets.drain(..));
        true
    }
}

/// The messages a lane is running: one, polled in place in a slot of the lane's own future
/// (no allocation per message), for `concurrency = 1`; a `FuturesUnordered` otherwise — its
/// per-message bookkeeping is a tenth of a no-op handler's cost, and a partition-serial lane
/// never needs it.
enum Running<'s, F: std::future::Future> {
    One(std::pin::Pin<&'s mut Option<F>>),
    Many(FuturesUnordered<F>),
}

impl<'s, F: std::future::Future> Running<'s, F> {
    /// `slot` holds the running message when `concurrency` is 1.
    fn new(concurrency: usize, slot: std::pin::Pin<&'s mut Option<F>>) -> Self {
        if concurrency == 1 {
            Self::One(slot)
        } else {
            Self::Many(FuturesUnordered::new())
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::One(one) => usize::from(one.is_some()),
            Self::Many(many) => many.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, future: F) {
        match self {
            Self::One(one) => {
                debug_assert!(one.is_none(), "one message at a time");
                one.set(Some(future));
            }
            Self::Many(many) => many.push(future),
        }
    }

    /// A message that finishes at this poll (polled with the lane's own waker, so a message not
    /// finished yet wakes the lane as it would from [`Self::next`]); `None` when none does.
    async fn poll_once(&mut self) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            let done = match self {
                Self::One(one) => match one.as_mut().as_pin_mut().map(|future| future.poll(cx)) {
                    Some(std::task::Poll::Ready(output)) => {
                        one.set(None);
                        Some(output)
                    }
                    _ => None,
                },
                Self::Many(many) => match many.poll_next_unpin(cx) {
                    std::task::Poll::Ready(output) => output,
                    std::task::Poll::Pending => None,
                },
            };
            std::task::Poll::Ready(done)
        })
        .await
    }

    /// The next message to finish; `None` when none is running. Cancel-safe: a future not
    /// finished stays.
    async fn next(&mut self) -> Option<F::Output> {
        match self {
            Self::One(one) => {
                let output = one.as_mut().as_pin_mut()?.await;
                one.set(None);
                Some(output)
            }
            Self::Many(many) => many.next().await,
        }
    }
}

/// Records how a message ended: its offset finishes now (with the lane's run), never
/// (interrupted), or when its publish is acknowledged (pipelined in `publishing`).
fn settle(finished: &mut Finished<'_>, offset: i64, finish: Finish, publishing: &mut tokio::task::JoinSet<()>) {
    match finish {
        Finish::Finished => finished.offsets.push(offset),
        Finish::Interrupted => {}
        Finish::Publishing(publish) => {
            let tracker = finished.tracker.clone();
            publishing.spawn(async move {
                if let Finish::Finished = publish.await {
                    lock(&tracker).finish(offset);
                }
            });
        }
    }
}

/// The lane of a batch handler: gathers up to `max` messages — waiting at most `linger` after
/// the first — and processes them as one batch, one batch at a time (so each key keeps its
/// order across batches). Dead letters are pipelined as in [`run_lane`]. On cancel, the batch
/// being gathered is left unfinished (redelivered to the next owner); a batch being processed
/// stops at its next wait.
async fn run_batch_lane(
    processor: &PartitionProcessor,
    spec: &BatchSpec,
    queue: &Queue,
    mut source: Source,
    cancel: CancellationToken,
) {
    let (max, linger) = (spec.max.max(1) as usize, std::time::Duration::from_millis(spec.linger_ms));
    let tracker = source.tracker.clone();
    let mut received: VecDeque<Received<'_>> = VecDeque::new();
    let mut publishing = tokio::task::JoinSet::new();
    let mut finished = Finished::new(&tracker);
    // When the batch being gathered is due, counted from its first message.
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        while publishing.try_join_next().is_some() {}
        while publishing.len() >= MAX_PUBLISHING {
            publishing.join_next().await;
        }
        let stop = source.fill(queue, &mut received);
        if !received.is_empty() && due.is_none() {
            due = Some(tokio::time::Instant::now() + linger);
        }
        let ready = received.len() >= max || due.is_some_and(|due| due <= tokio::time::Instant::now());
        if ready && !received.is_empty() {
            let take = received.len().min(max);
            let batch: Vec<Received<'_>> = received.drain(..take).collect();
            due = None;
            let finishes = processor.process_batch(spec, &batch, &cancel).await;
            for (message, finish) in batch.iter().zip(finishes) {
                settle(&mut finished, message.offset(), finish, &mut publishing);
            }
            finished.flush();
            if cancel.is_cancelled() {
                break;
            }
            continue;
        }
        let sleep_until = due.unwrap_or_else(|| tokio::time::Instant::now() + std::time::Duration::from_secs(3600));
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Some(_) = publishing.join_next(), if !publishing.is_empty() => {}
            change = source.changed(stop) => match change {
                Change::Recheck => {}
                Change::Routed(batch) => received.extend(batch.into_iter().map(Received::from)),
                Change::Closed => break,
            },
            () = tokio::time::sleep_until(sleep_until), if due.is_some() => {}
        }
    }
    while publishing.join_next().await.is_some() {}
}
