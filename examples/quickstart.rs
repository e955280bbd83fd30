//! Quickstart: two typed handlers on the embedded broker (or `KAFKA_BROKERS`), fed a handful of
//! valid, invalid and failing events; prints what happened to each one and exits.
//!
//! ```sh
//! cargo run --example quickstart
//! RUST_LOG=info cargo run --example quickstart   # with the runtime's logs
//! ```

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use kafka_events::prelude::*;
use kafka_events::{names::header, PublishOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;
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
    let dead_letters =
        read_dead_letters(runtime.bootstrap_servers(), &runtime.config().topic_name("orders.created.dlq"), bad.len());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while outcomes.len() < valid.len() {
        match tokio::time::timeout_at(deadline, handled_rx.recv()).await {
            Ok(Some((id, attempt))) => {
                outcomes.insert(id, format!("handled (attempt {attempt})"));
            }
            _ => break,
        }
    }
    for (key, reason) in dead_letters.await?? {
        outcomes.insert(key, format!("dead-lettered: {reason}"));
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

/// Reads `count` dead letters (key and `x-dlq-reason`) with a plain consumer.
fn read_dead_letters(
    bootstrap: &str,
    topic: &str,
    count: usize,
) -> tokio::task::JoinHandle<Result<Vec<(String, String)>, String>> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "quickstart-dlq-reader")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| e.to_string())?;
        consumer.subscribe(&[&topic]).map_err(|e| e.to_string())?;
        let mut letters = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while letters.len() < count && std::time::Instant::now() < deadline {
            if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
                let key = message.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
                let reason = message
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == header::DLQ_REASON).and_then(|h| h.value))
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                letters.push((key, reason));
            }
        }
        Ok(letters)
    })
}
