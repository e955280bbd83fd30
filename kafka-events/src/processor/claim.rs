//! The idempotency step of the pipeline: an event's id, its claim in the store, and settling the
//! claim once the handler returned.

use crate::abi::InputError;
use crate::handler::HandlerError;
use crate::idempotency::{ClaimSlot, IdempotencyStore, PendingClaim, StoreError};
use crate::message::Consumed;
use crate::names::header;

/// The id of an event for an `idempotent` handler: the payload field `idempotent(id = "...")`
/// names (already read, `from_payload`), or else the `x-message-id` header.
pub(super) fn event_id(message: &impl Consumed, from_payload: Option<String>) -> Result<String, InputError> {
    match from_payload {
        Some(id) if id.trim().is_empty() => {
            Err(InputError::missing_id("the event's id field (`idempotent(id = ...)`) is empty"))
        }
        Some(id) => Ok(id),
        None => crate::message::header_str(message, header::MESSAGE_ID)
            .filter(|id| !id.trim().is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                InputError::missing_id(format!(
                    "the handler is `idempotent` and the message has no `{}` header; publish it with one (every kafka-events Publisher does) or name a payload field with `idempotent(id = \"field\")`",
                    header::MESSAGE_ID
                ))
            }),
    }
}

/// Claims `ids` (in any order, possibly repeated) for `scope`. Returns, for each position, whether
/// the handler should run it: not processed before, and the first occurrence of its id here.
pub(super) async fn claim(
    store: &dyn IdempotencyStore,
    scope: &str,
    ids: &[String],
) -> Result<(Vec<bool>, Box<dyn PendingClaim>), StoreError> {
    // Distinct and sorted: concurrent claims of overlapping batches take their ids in one order.
    let mut distinct: Vec<String> = ids.to_vec();
    distinct.sort();
    distinct.dedup();
    let claim = store.claim(scope, &distinct).await?;
    let mut fresh: std::collections::HashSet<&str> =
        distinct.iter().zip(&claim.fresh).filter(|(_, fresh)| **fresh).map(|(id, _)| id.as_str()).collect();
    // `remove` makes only the first occurrence of a fresh id run.
    let runs = ids.iter().map(|id| fresh.remove(id.as_str())).collect();
    Ok((runs, claim.pending))
}

/// Settles the claim the handler ran under: commits it when the handler succeeded (a failed
/// commit fails the attempt: nothing was recorded, the event will run again), aborts it otherwise.
pub(super) async fn settle(slot: &ClaimSlot, succeeded: bool) -> Result<(), HandlerError> {
    let Some(pending) = slot.take() else {
        return Err(HandlerError::retryable(
            "the handler still holds its database transaction after returning (a `DbTransaction` moved into a task?); drop it before the handler returns",
        ));
    };
    if succeeded {
        pending.commit().await.map_err(HandlerError::retryable)
    } else {
        if let Err(error) = pending.abort().await {
            tracing::warn!(%error, "aborting the idempotency claim failed; the store releases it when its transaction ends");
        }
        Ok(())
    }
}
