//! Batch handlers: `batch(max = N, linger = "...")` handles up to N messages of one partition in
//! one call.
//!
//! - Each message is decoded and validated on its own; one that fails is dead-lettered on its
//!   own (`decode`, `validation`, `missing-event-id`) and the rest of the batch is handled.
//! - With `idempotent`, the batch's ids are claimed together (one transaction with PostgreSQL,
//!   which the handler writes through); events processed before are left out of the call.
//! - Retries are per batch and in place: a failed call (retryable error or panic) is repeated
//!   with the same events after the backoff, up to `retry(max = N)`. When they run out, or the
//!   handler returns a permanent error, every event of the batch is dead-lettered on its own,
//!   with the batch's error as the reason.
//! - The batch's offsets finish only when its outcome is durable: the call returned `Ok` (and the
//!   claim committed), or the dead letters were acknowledged.

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::attempt::{self, Attempt};
use super::call::{context, panic_message, settled, within};
use super::outcome::{decide, Failure, Outcome};
use super::partition::PartitionProcessor;
use super::sink::Report;
use super::span::record;
use super::{claim, wait, Finish};
use crate::abi::{BatchSpec, Decoded, InputError};
use crate::handler::{BatchContext, HandlerError};
use crate::idempotency::ClaimSlot;
use crate::message::{correlation_of, Consumed, Received};
use crate::records::{Cause, Reason};

impl PartitionProcessor {
    /// Processes one batch of the batch handler `spec` (messages of this partition in offset
    /// order); returns how each message ended, in the same order.
    pub(crate) async fn process_batch(
        &self,
        spec: &BatchSpec,
        messages: &[Received<'_>],
        cancel: &CancellationToken,
    ) -> Vec<Finish> {
        let handler = &self.handler;
        let (Some(first), Some(last)) = (messages.first(), messages.last()) else { return Vec::new() };
        let span = tracing::info_span!(
            "batch",
            topic = %first.topic(),
            partition = first.partition(),
            first_offset = first.offset(),
            last_offset = last.offset(),
            size = messages.len(),
            handler = %handler.name(),
            trace_id = tracing::field::Empty,
        );
        self.batch_attempts(spec, messages, cancel).instrument(span).await
    }

    async fn batch_attempts(
        &self,
        spec: &BatchSpec,
        messages: &[Received<'_>],
        cancel: &CancellationToken,
    ) -> Vec<Finish> {
        let handler = &self.handler;
        let metrics = self.instruments.metrics.as_ref();
        let mut finishes: Vec<Option<Finish>> = messages.iter().map(|_| None).collect();
        // Decode and validate each message; the invalid ones are dead-lettered on their own. The
        // events decoded here go to the first call; only a retry decodes them again.
        let mut decoded: Vec<Option<Decoded>> = messages.iter().map(|_| None).collect();
        let mut valid: Vec<(usize, Option<String>)> = Vec::new();
        for (i, message) in messages.iter().enumerate() {
            let checked = (spec.decode)(message.payload()).and_then(|mut event| {
                let id = match handler.idempotency_scope {
                    Some(_) => Some(claim::event_id(message, event.event_id.take())?),
                    None => None,
                };
                Ok((event, id))
            });
            match checked {
                Ok((event, id)) => {
                    decoded[i] = Some(event);
                    valid.push((i, id));
                }
                Err(InputError { kind, reason }) => {
                    metrics.inspect(|m| m.failed(kind.as_str()));
                    let cause =
                        Cause { kind, reason: Reason::new(reason), attempts: 1, handler: handler.name().to_string() };
                    finishes[i] = Some(self.dead_letter(message, cause, cancel));
                }
            }
        }
        let mut attempt = 1u32;
        loop {
            if valid.is_empty() {
                break;
            }
            let mut run: Vec<usize> = Vec::new();
            let once = async {
                // With `idempotent`: claim the batch's ids; events processed before are finished.
                let slot = if handler.idempotency_scope.is_some() { ClaimSlot::open() } else { ClaimSlot::default() };
                let mut duplicates = 0;
                let mut claimed = false;
                if let (Some(scope), Some(store)) = (handler.idempotency_scope.as_deref(), self.shared.store.as_deref())
                {
                    let ids: Vec<String> = valid.iter().map(|(_, id)| id.clone().unwrap_or_default()).collect();
                    let (runs, pending) = match claim::claim(store, scope, &ids).await {
                        Ok(claim) => claim,
                        Err(error) => return Attempt::failed(Failure::Handler(HandlerError::retryable(error))),
                    };
                    duplicates = runs.iter().filter(|fresh| !**fresh).count();
                    if duplicates > 0 {
                        tracing::debug!(duplicates, "already processed (idempotent): skipped");
                    }
                    // Those processed before are finished; the rest stay for this and later attempts.
                    let mut fresh = runs.iter();
                    valid.retain(|(i, _)| {
                        let fresh = fresh.next().copied().unwrap_or(true);
                        if !fresh {
                            finishes[*i] = Some(Finish::Finished);
                            self.sink.report(&messages[*i], Report::Duplicate);
                        }
                        fresh
                    });
                    slot.put(pending).await;
                    claimed = true;
                }
                run = valid.iter().map(|(i, _)| *i).collect();
                if run.is_empty() {
                    if claimed {
                        let _ = claim::settle(&slot, false).await;
                    }
                    return Attempt { result: Ok(()), call: None, duplicates, handled: 0 };
                }
                metrics.inspect(|m| m.observe_batch(run.len()));
                let started = std::time::Instant::now();
                let mut result = self.call_batch(spec, messages, &mut decoded, &run, attempt, &slot).await;
                let call = Some(started.elapsed());
                if claimed {
                    if let Err(error) = claim::settle(&slot, result.is_ok()).await {
                        if result.is_ok() {
                            result = Err(Failure::Handler(error));
                        }
                    }
                }
                Attempt { result, call, duplicates, handled: run.len() }
            };
            let Some(Attempt { result, .. }) = attempt::admitted(&self.instruments, cancel, || once).await else {
                return interrupted(finishes);
            };
            if run.is_empty() && result.is_ok() {
                break;
            }
            match decide(result, attempt, &handler.retry, true) {
                Outcome::Done => {
                    tracing::debug!(attempt, handled = run.len(), "batch handled");
                    for i in run {
                        finishes[i] = Some(Finish::Finished);
                        self.sink.report(&messages[i], Report::Handled { attempts: attempt });
                    }
                    break;
                }
                Outcome::Retry { delay, reason } => {
                    self.sink.report(&messages[run[0]], Report::Retrying);
                    tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, %reason, size = run.len(), "batch failed; retrying it in place");
                    if !wait(delay, cancel).await {
                        return interrupted(finishes);
                    }
                }
                Outcome::DeadLetter { kind, reason } | Outcome::Stall { kind, reason, .. } => {
                    tracing::warn!(attempt, error_kind = kind.as_str(), %reason, size = run.len(), "batch failed; dead-lettering each of its events");
                    let cause = Cause { kind, reason, attempts: attempt, handler: handler.name().to_string() };
                    for i in run {
                        finishes[i] = Some(self.dead_letter(&messages[i], cause.clone(), cancel));
                    }
                    break;
                }
            }
            attempt += 1;
        }
        interrupted(finishes)
    }

    /// Calls the handler with the events at `run`: those `decoded` holds (the first attempt), or
    /// decoded anew (a retry: the first call consumed them).
    #[allow(clippy::too_many_arguments)]
    async fn call_batch(
        &self,
        spec: &BatchSpec,
        messages: &[Received<'_>],
        decoded: &mut [Option<Decoded>],
        run: &[usize],
        attempt: u32,
        slot: &ClaimSlot,
    ) -> Result<(), Failure> {
        let mut events: Vec<Decoded> = Vec::with_capacity(run.len());
        let mut contexts = Vec::with_capacity(run.len());
        for &i in run {
            let message = &messages[i];
            let event = match decoded[i].take() {
                Some(event) => event,
                None => (spec.decode)(message.payload()).map_err(Failure::Input)?,
            };
            events.push(event);
            let trace = crate::trace::child_of(crate::trace::parent_of(message));
            contexts.push(context(
                &self.labels.topic,
                message,
                attempt,
                trace,
                slot.clone(),
                Some(self.shared.publisher.clone()),
            ));
        }
        let ctx = BatchContext {
            topic: messages[run[0]].topic().to_string(),
            partition: messages[run[0]].partition(),
            messages: contexts,
            attempt,
            claim: slot.clone(),
        };
        let future = match std::panic::catch_unwind(AssertUnwindSafe(|| (spec.call)(events, ctx))) {
            Ok(future) => future,
            Err(panic) => return Err(Failure::Panic(panic_message(&*panic))),
        };
        // What the call publishes belongs to the batch's one trace and correlation id when all its
        // events share one; a batch of several traces starts a trace of its own, and one of several
        // correlation ids passes none on.
        let batch = run.iter().map(|&i| &messages[i]);
        let parents: Vec<_> = batch.clone().map(crate::trace::parent_of).collect();
        let shared_trace =
            parents.windows(2).all(|w| w[0].as_ref().map(|p| p.trace_id()) == w[1].as_ref().map(|p| p.trace_id()));
        let trace = crate::trace::child_of(if shared_trace { parents[0].clone() } else { None });
        let correlations: Vec<Option<&str>> = batch.map(correlation_of).collect();
        let correlation = correlations.windows(2).all(|w| w[0] == w[1]).then_some(correlations[0]).flatten();
        record(&tracing::Span::current(), "trace_id", tracing::field::display(trace.trace_id()));
        let call = || {
            crate::trace::scope(trace, correlation.map(str::to_string), None, AssertUnwindSafe(future).catch_unwind())
        };
        settled(within(self.handler.timeout, call).await)
    }
}

/// Messages without an outcome yet are left unfinished (redelivered to the partition's next owner).
fn interrupted(finishes: Vec<Option<Finish>>) -> Vec<Finish> {
    finishes.into_iter().map(|f| f.unwrap_or(Finish::Interrupted)).collect()
}
