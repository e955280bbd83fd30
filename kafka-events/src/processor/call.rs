//! One attempt of a single-message handler: begin its Kafka transaction (`transactional`),
//! decode and validate, claim the event (`idempotent`), call the handler under its time limit
//! catching a panic, then settle the claim and the transaction. And the pieces a batch's call
//! shares with it.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;

use super::attempt::Attempt;
use super::claim;
use super::outcome::Failure;
use super::partition::PartitionProcessor;
use crate::abi::{Invocation, InvokeFn};
use crate::circuit::Verdict;
use crate::handler::{HandlerError, MessageContext};
use crate::idempotency::ClaimSlot;
use crate::message::{Consumed, Origin, Received};
use crate::publisher::Publisher;
use crate::trace::TraceContext;

impl PartitionProcessor {
    /// One attempt at `message` (see the module docs).
    pub(super) async fn attempt_once(
        &self,
        invoke: InvokeFn,
        message: &Received<'_>,
        attempt: u32,
        trace: &TraceContext,
    ) -> Attempt {
        // A transactional handler's publisher joins this attempt's transaction.
        let publisher = match &self.transactor {
            // Rare paths (transactions, claims, waits) are boxed: inline, each would enlarge every
            // message's future, which is moved on every start.
            Some(transactor) => match Box::pin(transactor.begin()).await {
                Ok(publisher) => publisher,
                Err(error) if transactor.is_fenced() => return Attempt::failed(fenced(&error)),
                Err(error) => {
                    return Attempt::failed(Failure::Handler(HandlerError::retryable(format!(
                        "cannot begin the Kafka transaction: {error}"
                    ))))
                }
            },
            None => self.shared.publisher.clone(),
        };
        let mut outcome = self.call(invoke, message, attempt, trace, publisher).await;
        if let Some(transactor) = &self.transactor {
            if outcome.result.is_ok() && outcome.duplicates == 0 {
                if let Err(error) =
                    Box::pin(transactor.commit(message.topic(), message.partition(), message.offset() + 1)).await
                {
                    outcome.result = Err(if transactor.is_fenced() {
                        fenced(&error)
                    } else {
                        Failure::Handler(HandlerError::retryable(format!(
                            "the Kafka transaction did not commit (its output was discarded): {error}"
                        )))
                    });
                }
            } else {
                Box::pin(transactor.abort()).await;
            }
        }
        outcome
    }

    async fn call(
        &self,
        invoke: InvokeFn,
        message: &Received<'_>,
        attempt: u32,
        trace: &TraceContext,
        publisher: Publisher,
    ) -> Attempt {
        let handler = &self.handler;
        let slot = if handler.idempotency_scope.is_some() { ClaimSlot::open() } else { ClaimSlot::default() };
        let ctx = context(&self.labels.topic, message, attempt, trace.clone(), slot.clone(), Some(publisher));
        let Invocation { future, event_id } =
            match std::panic::catch_unwind(AssertUnwindSafe(|| invoke(message.payload(), ctx))) {
                Ok(Ok(invocation)) => invocation,
                Ok(Err(input)) => return Attempt::failed(Failure::Input(input)),
                // Decoding or validating panicked (`invoke` only builds the handler's future):
                // the handler itself never ran, so no call duration.
                Err(panic) => {
                    return Attempt {
                        result: Err(Failure::Panic(panic_message(&*panic))),
                        call: None,
                        duplicates: 0,
                        handled: 1,
                    }
                }
            };
        let claimed = match handler.idempotency_scope.as_deref() {
            None => false,
            Some(scope) => {
                let id = match claim::event_id(message, event_id) {
                    Ok(id) => id,
                    Err(input) => return Attempt::failed(Failure::Input(input)),
                };
                let Some(store) = self.shared.store.as_deref() else {
                    return Attempt::failed(Failure::Handler(HandlerError::retryable("no idempotency store")));
                };
                match Box::pin(claim::claim(store, scope, std::slice::from_ref(&id))).await {
                    Err(error) => return Attempt::failed(Failure::Handler(HandlerError::retryable(error))),
                    Ok((runs, pending)) if !runs[0] => {
                        if let Err(error) = pending.abort().await {
                            tracing::debug!(%error, "releasing the claim of a duplicate");
                        }
                        return Attempt { result: Ok(()), call: None, duplicates: 1, handled: 0 };
                    }
                    Ok((_, pending)) => Box::pin(slot.put(pending)).await,
                }
                true
            }
        };
        let started = std::time::Instant::now();
        // The handler runs in its message's trace scope (`PartitionProcessor::process`).
        let call = || AssertUnwindSafe(future).catch_unwind();
        let mut result = settled(within(handler.timeout, call).await);
        let call = Some(started.elapsed());
        if claimed {
            if let Err(error) = Box::pin(claim::settle(&slot, result.is_ok())).await {
                if result.is_ok() {
                    result = Err(Failure::Handler(error));
                }
            }
        }
        Attempt { result, call, duplicates: 0, handled: 1 }
    }
}

/// How a call ended: its result or its panic ([`within`] its time limit, else the limit).
pub(super) type Called = Result<Result<Result<(), HandlerError>, Box<dyn std::any::Any + Send>>, Duration>;

/// A call's result as a [`Failure`]: what it returned, its panic, or its time limit.
pub(super) fn settled(called: Called) -> Result<(), Failure> {
    match called {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(error))) => Err(Failure::Handler(error)),
        Ok(Err(panic)) => Err(Failure::Panic(panic_message(&*panic))),
        Err(limit) => Err(Failure::Timeout(limit)),
    }
}

/// Runs the future `start` makes within `limit` (if any); `Err(limit)` when it took longer — it
/// is then dropped (cancelled at its current `.await`). A closure, so that the future is stored
/// once, in this one (see [`super::attempt::admitted`]).
pub(super) async fn within<F: std::future::Future>(
    limit: Option<Duration>,
    start: impl FnOnce() -> F,
) -> Result<F::Output, Duration> {
    match limit {
        None => Ok(start().await),
        Some(limit) => tokio::time::timeout(limit, start()).await.map_err(|_| limit),
    }
}

/// What an attempt tells the handler's circuit breaker: only failures a broken dependency
/// causes (retryable errors, panics, timeouts) count against it.
pub(super) fn verdict(result: &Result<(), Failure>) -> Verdict {
    match result {
        Ok(()) => Verdict::Success,
        Err(Failure::Handler(error)) if !error.is_permanent() => Verdict::Failure,
        Err(Failure::Panic(_) | Failure::Timeout(_)) => Verdict::Failure,
        Err(_) => Verdict::Neutral,
    }
}

/// The context a handler's call gets for `message`, read from the queue of `topic`.
pub(super) fn context(
    topic: &std::sync::Arc<str>,
    message: &Received<'_>,
    attempt: u32,
    trace: TraceContext,
    claim: ClaimSlot,
    publisher: Option<Publisher>,
) -> MessageContext {
    let (topic, partition, offset) = match Origin::retried(message) {
        Some(origin) => (origin.topic.into(), origin.partition, origin.offset),
        None => (topic.clone(), message.partition(), message.offset()),
    };
    MessageContext {
        topic,
        partition,
        offset,
        timestamp: message.timestamp().to_millis(),
        key: message.key().map(crate::message::Key::from_slice),
        headers: message.copied_headers().unwrap_or_default(),
        attempt,
        trace,
        claim,
        publisher,
    }
}

pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// A fenced transactional producer: the partition has a newer owner.
fn fenced(error: &rdkafka::error::KafkaError) -> Failure {
    Failure::Fenced(format!(
        "a newer instance owns this partition and fenced its transactional producer ({error}); the transaction was discarded and the message is left to the new owner"
    ))
}
