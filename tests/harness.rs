//! Testing handlers the way a user does, with `kafka_events::testing` only (feature `testing`):
//! a unit test calls a handler with a built context; integration tests run chosen handlers on the
//! embedded broker and await each message's outcome — handled (after retries), dead-lettered
//! with its kind, stalled — and read what a handler published.

use kafka_events::prelude::*;
use kafka_events::testing::{self, Harness, Outcome};
use kafka_events::{ErrorKind, PublishOptions};
use serde::{Deserialize, Serialize};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct OrderCreated {
    #[validate(length(min = 1))]
    id: String,
    #[validate(range(min = 0.01))]
    amount: f64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct OrderAccepted {
    id: String,
}

/// Fails until its third attempt for ids starting with `flaky`; refuses amounts over 1,000; else
/// publishes `orders.accepted`.
#[kafka_handler(topic = "orders", retry(max = 3, initial = "10ms"), dlq)]
async fn accept_order(event: OrderCreated, ctx: MessageContext) -> Result<(), HandlerError> {
    if event.id.starts_with("flaky") && ctx.attempt() < 3 {
        return Err(HandlerError::retryable("payment service timed out"));
    }
    if event.amount > 1_000.0 {
        return Err(HandlerError::permanent(format!("amount {} is over the limit", event.amount)));
    }
    if let Some(publisher) = ctx.publisher() {
        publisher.publish("orders.accepted", &OrderAccepted { id: event.id }).await?;
    }
    Ok(())
}

/// No `dlq`: a failing message holds its partition.
#[kafka_handler(topic = "audit", retry(max = 1, initial = "10ms"))]
async fn audit(_event: OrderCreated, _ctx: MessageContext) -> Result<(), HandlerError> {
    Err(HandlerError::permanent("the audit log is read-only"))
}

/// Written as many services write handlers: `anyhow`, with context.
#[kafka_handler(topic = "lookups", retry(max = 1, initial = "10ms"), dlq)]
async fn look_up(event: OrderCreated, _ctx: MessageContext) -> anyhow::Result<()> {
    use anyhow::Context;
    let _: u32 = event.id.parse().with_context(|| format!("looking up order {}", event.id))?;
    Ok(())
}

/// `Box<dyn Error + Send + Sync>` works too.
#[kafka_handler(topic = "boxed", dlq)]
async fn boxed(_event: OrderCreated, _ctx: MessageContext) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anyhow_errors_are_retryable_and_keep_their_context() {
    let harness = Harness::start(["look_up", "boxed"]).await.expect("harness");
    let found = harness.publish("lookups", &OrderCreated { id: "42".into(), amount: 1.0 }).await;
    let missing = harness.publish("lookups", &OrderCreated { id: "ord-x".into(), amount: 1.0 }).await;
    let boxed = harness.publish("boxed", &OrderCreated { id: "b".into(), amount: 1.0 }).await;
    assert_eq!(harness.outcome(&found).await, Outcome::Handled { attempts: 1 });
    assert_eq!(harness.outcome(&boxed).await, Outcome::Handled { attempts: 1 });
    assert_eq!(
        harness.outcome(&missing).await,
        Outcome::DeadLettered {
            kind: ErrorKind::RetriesExhausted,
            reason: "retries exhausted after 2 attempts: looking up order ord-x: invalid digit found in string".into(),
            attempts: 2,
        }
    );
    harness.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_handler_is_a_function_a_unit_test_calls_with_a_built_context() {
    let ctx = testing::context("orders").key("ord-1").header("x-correlation-id", "c-1").attempt(3).build();
    assert_eq!(ctx.key_str(), Some("ord-1"));
    assert_eq!(ctx.correlation_id(), Some("c-1"));
    accept_order(OrderCreated { id: "flaky-1".into(), amount: 5.0 }, ctx).await.expect("third attempt succeeds");

    let first_try = testing::context("orders").build();
    let error = accept_order(OrderCreated { id: "flaky-2".into(), amount: 5.0 }, first_try).await.unwrap_err();
    assert!(error.is_retryable(), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_has_an_outcome_the_test_awaits() {
    let harness = Harness::start(["accept_order"]).await.expect("harness");
    harness.create_topic("orders.accepted").await.expect("the output topic");

    let ok = harness.publish("orders", &OrderCreated { id: "ord-1".into(), amount: 5.0 }).await;
    let flaky = harness.publish("orders", &OrderCreated { id: "flaky-2".into(), amount: 5.0 }).await;
    let too_big = harness.publish("orders", &OrderCreated { id: "ord-3".into(), amount: 5_000.0 }).await;
    let invalid = harness.publish("orders", &OrderCreated { id: "".into(), amount: 5.0 }).await;
    let not_json = harness.publish_bytes("orders", b"{not json", PublishOptions::new().key("ord-5")).await;

    assert_eq!(harness.outcome(&ok).await, Outcome::Handled { attempts: 1 });
    assert_eq!(harness.outcome(&flaky).await, Outcome::Handled { attempts: 3 });
    let kind_of = |outcome: Outcome| match outcome {
        Outcome::DeadLettered { kind, .. } => kind,
        other => panic!("expected a dead letter, got {other:?}"),
    };
    assert_eq!(kind_of(harness.outcome(&too_big).await), ErrorKind::Permanent);
    assert_eq!(kind_of(harness.outcome(&invalid).await), ErrorKind::Validation);
    assert_eq!(kind_of(harness.outcome(&not_json).await), ErrorKind::Decode);

    let accepted = harness.published("orders.accepted", 2).await;
    let mut ids: Vec<String> = accepted.iter().map(|m| m.json::<OrderAccepted>().unwrap().id).collect();
    ids.sort();
    assert_eq!(ids, ["flaky-2", "ord-1"]);
    let dead = harness.published("orders.dlq", 3).await;
    assert!(dead.iter().any(|m| m.header("x-dlq-reason") == Some("amount 5000 is over the limit")), "{dead:?}");
    harness.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_harness_runs_only_its_handlers_and_reports_a_stall() {
    let harness = Harness::start(["audit"]).await.expect("harness");
    let sent = harness.publish("audit", &OrderCreated { id: "a-1".into(), amount: 1.0 }).await;
    match harness.outcome(&sent).await {
        Outcome::Stalled { kind, reason } => {
            assert_eq!(kind, ErrorKind::Permanent);
            assert_eq!(reason, "the audit log is read-only");
        }
        other => panic!("expected a stall, got {other:?}"),
    }
    assert_eq!(harness.runtime().health().stalled.len(), 1);
    harness.shutdown().await.expect("shutdown");
}
