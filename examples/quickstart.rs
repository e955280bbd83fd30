//! Quickstart: one typed handler on the embedded broker (or `KAFKA_BROKERS`), fed a handful of
//! valid, flaky, invalid and rejected events; prints what happened to each one — handled, or
//! dead-lettered with its reason, read back with `DeadLetters::peek` — and exits.
//!
//! ```sh
//! cargo run --example quickstart
//! RUST_LOG=info cargo run --example quickstart   # with the runtime's logs
//! ```

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use kafka_events::dlq::DeadLetters;
use kafka_events::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct OrderCreated {
    #[validate(length(min = 1))]
    id: String,
    #[validate(range(min = 0.01))]
    amount: f64,
}

/// Where the handlers report what they did, for the summary at the end.
static HANDLED: OnceLock<mpsc::UnboundedSender<(String, u32)>> = OnceLock::new();

#[kafka_handler(topic = "orders.created", retry(max = 3, initial = "100ms"), dlq)]
async fn on_order(event: OrderCreated, ctx: MessageContext) -> Result<(), HandlerError> {
    if event.amount > 10_000.0 {
        return Err(HandlerError::permanent(format!("amount {} is over the 10000 limit", event.amount)));
    }
    if event.id.starts_with("flaky") && ctx.attempt() < 3 {
        // Fails twice, then succeeds: retried in place with backoff.
        return Err(HandlerError::retryable(format!("payment service timed out (attempt {})", ctx.attempt())));
    }
    if let Some(tx) = HANDLED.get() {
        let _ = tx.send((event.id, ctx.attempt()));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `RUST_LOG=kafka_events=debug LOG_FORMAT=json cargo run --example quickstart` shows the
    // runtime's structured logs, one JSON object per line.
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error,librdkafka=off".into());
    if std::env::var("LOG_FORMAT").as_deref() == Ok("json") {
        tracing_subscriber::fmt().json().with_current_span(true).with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let (tx, mut handled_rx) = mpsc::unbounded_channel();
    HANDLED.set(tx).expect("set once");

    let runtime = kafka_events::runtime::launch(Config::from_env()?).await?;
    println!("kafka-events quickstart: broker {}", runtime.bootstrap_servers());
    let publisher = runtime.publisher();

    let valid = ["ord-1", "ord-2", "ord-3", "flaky-4"];
    for id in valid {
        let event = OrderCreated { id: id.into(), amount: 42.5 };
        publisher.publish_with("orders.created", &event, PublishOptions::new().key(id)).await?;
    }
    let bad: [(&str, Vec<u8>); 3] = [
        ("not-json-5", b"{this is not json".to_vec()),
        ("zero-amount-6", serde_json::to_vec(&OrderCreated { id: "zero-amount-6".into(), amount: 0.0 })?),
        ("too-big-7", serde_json::to_vec(&OrderCreated { id: "too-big-7".into(), amount: 50_000.0 })?),
    ];
    for (key, payload) in &bad {
        publisher.publish_bytes("orders.created", payload, PublishOptions::new().key(key)).await?;
    }
    println!("published {} events; waiting for their outcomes…\n", valid.len() + bad.len());

    let mut outcomes: BTreeMap<String, String> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while outcomes.len() < valid.len() {
        match tokio::time::timeout_at(deadline, handled_rx.recv()).await {
            Ok(Some((id, attempt))) => {
                outcomes.insert(id, format!("handled (attempt {attempt})"));
            }
            _ => break,
        }
    }
    // The dead letters, as operators read them (`kafka-events dlq peek` does the same).
    let dlq_config = runtime.config().clone().with_brokers(runtime.bootstrap_servers());
    let dead_letters = DeadLetters::connect(&dlq_config).await?;
    let dlq_topic = runtime.config().topic_name("orders.created.dlq");
    loop {
        let letters = dead_letters.peek(&dlq_topic, 100).await?;
        if letters.len() >= bad.len() || tokio::time::Instant::now() > deadline {
            for letter in letters {
                let key = letter.key.as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned();
                outcomes.insert(key, format!("dead-lettered: {}", letter.reason().unwrap_or_default()));
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await; // a dead letter has no event to await
    }
    for (id, outcome) in &outcomes {
        println!("  {id:<14} {outcome}");
    }
    runtime.shutdown().await?;
    let expected = valid.len() + bad.len();
    if outcomes.len() != expected {
        eprintln!("\nonly {} of {expected} events have an outcome", outcomes.len());
        std::process::exit(1);
    }
    println!("\nall {expected} events accounted for");
    Ok(())
}
