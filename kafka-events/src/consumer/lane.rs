//! A lane: the task that runs one partition's messages through the processor.
//!
//! Up to the handler's `concurrency` messages run at once (all polled by this one task, so a
//! lane is as cheap as a task whatever N is); messages of one key never overlap and run in
//! offset order ([`KeyGate`]). Retry and dead-letter publishes are pipelined: the lane goes on
//! while they are acknowledged. Offsets finish in any order; the tracker commits only the
//! contiguous finished prefix.

use std::collections::VecDeque;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};

use futures_util::stream::{FuturesUnordered, StreamExt};
use rdkafka::message::{Message, OwnedMessage};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::keys::KeyGate;
use super::lock;
use crate::processor::offsets::OffsetTracker;
use crate::processor::{Finish, Processor};
use crate::registry::BoundHandler;

/// Retry and dead-letter publishes one lane may have in flight before it waits for one.
const MAX_PUBLISHING: usize = 1024;

/// Runs until cancelled or its buffer closes. On cancel it starts nothing new, lets the running
/// messages finish (each stops at its next wait), waits for its publishes in flight, and only
/// then drops `_ended` (which tells the consumer thread it has ended). Messages still buffered or
/// waiting behind their key are left unfinished: the next owner of the partition reads them.
pub(crate) async fn run_lane(
    handler: BoundHandler,
    mut buffer: mpsc::Receiver<Vec<OwnedMessage>>,
    tracker: Arc<Mutex<OffsetTracker>>,
    cancel: CancellationToken,
    processor: Arc<Processor>,
    _ended: std_mpsc::Sender<()>,
) {
    let concurrency = handler.registration.concurrency.max(1) as usize;
    let mut gate = KeyGate::new(handler.registration.concurrency, handler.registration.keyless);
    let instruments = processor.instruments(&handler.topic);
    let (handler, instruments, processor, cancel_ref) = (&handler, &instruments, &*processor, &cancel);
    let start = |message: OwnedMessage| async move {
        let finish = processor.process(handler, instruments, &message, cancel_ref).await;
        (message, finish)
    };
    let mut running = FuturesUnordered::new();
    // Received, not started yet (only while `concurrency` messages are running).
    let mut ready: VecDeque<OwnedMessage> = VecDeque::new();
    let mut publishing = tokio::task::JoinSet::new();
    let settle = |offset: i64, finish: Finish, publishing: &mut tokio::task::JoinSet<()>| match finish {
        Finish::Finished => lock(&tracker).finish(offset),
        Finish::Interrupted => {}
        Finish::Publishing(publish) => {
            let tracker = tracker.clone();
            publishing.spawn(async move {
                if let Finish::Finished = publish.await {
                    lock(&tracker).finish(offset);
                }
            });
        }
    };
    loop {
        while publishing.try_join_next().is_some() {}
        while publishing.len() >= MAX_PUBLISHING {
            publishing.join_next().await;
        }
        while running.len() < concurrency {
            let Some(message) = ready.pop_front() else { break };
            if let Some(message) = gate.admit(message) {
                running.push(start(message));
            }
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Some((message, finish)) = running.next(), if !running.is_empty() => {
                let (message, finish): (OwnedMessage, Finish) = (message, finish);
                settle(message.offset(), finish, &mut publishing);
                if let Some(next) = gate.release(&message) {
                    running.push(start(next));
                }
            }
            batch = buffer.recv(), if ready.is_empty() => match batch {
                Some(batch) => ready.extend(batch),
                None => break,
            },
        }
    }
    while let Some((message, finish)) = running.next().await {
        settle(message.offset(), finish, &mut publishing);
    }
    while publishing.join_next().await.is_some() {}
}
