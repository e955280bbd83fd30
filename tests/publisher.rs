//! The publisher against a real broker: keyed typed events land by key, every message gets a
//! unique time-ordered `x-message-id`, and a handler's output carries its input's correlation id.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::Duration;

use common::{config, header, key, read_topic, unique, wait_for};
use kafka_events::prelude::*;
use kafka_events::publisher::{PublishOptions, Publisher};
use serde::{Deserialize, Serialize};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Quote {
    #[validate(length(min = 1))]
    id: String,
    price: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_events_land_by_key_with_unique_time_ordered_message_ids() {
    let run = unique("publish");
    // The runtime provisions `quotes` (3 partitions) for the handler below; nothing consumes it.
    let runtime = kafka_events::runtime::launch(config(&run, &["relay"])).await.expect("launch");
    let publisher = runtime.publisher();
    let topic = format!("{run}.quotes");
    common::create_topic(&topic, 3).await;

    let mut deliveries = Vec::with_capacity(10_000);
    for chunk in (0..10_000u32).collect::<Vec<_>>().chunks(1000) {
        let sends = chunk.iter().map(|i| {
            let publisher = publisher.clone();
            async move {
                let quote = Quote { id: format!("q{i}"), price: *i };
                let options = PublishOptions::new().key(format!("sym-{}", i % 100));
                publisher.publish_with("quotes", &quote, options).await
            }
        });
        for delivery in futures_util::future::join_all(sends).await {
            deliveries.push(delivery.expect("delivered"));
        }
    }
    // 50 more, one after another, to check the ids' order.
    for i in 0..50u32 {
        let options = PublishOptions::new().key("seq");
        publisher.publish_with("quotes", &Quote { id: format!("s{i}"), price: i }, options).await.expect("publish");
    }
    let all = read_topic(&topic, 10_050);
    runtime.shutdown().await.expect("shutdown");
    let payload_id = |m: &rdkafka::message::OwnedMessage| {
        serde_json::from_slice::<Quote>(rdkafka::Message::payload(m).unwrap()).unwrap().id
    };
    let (sequential, messages): (Vec<_>, Vec<_>) = all.into_iter().partition(|m| payload_id(m).starts_with('s'));
    assert_eq!((messages.len(), sequential.len()), (10_000, 50));

    let mut partitions_of_key: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    for message in &messages {
        partitions_of_key.entry(key(message)).or_default().insert(rdkafka::Message::partition(message));
    }
    assert_eq!(partitions_of_key.len(), 100);
    assert!(partitions_of_key.values().all(|p| p.len() == 1), "each key lands on one partition: {partitions_of_key:?}");
    let used: BTreeSet<i32> = partitions_of_key.values().flatten().copied().collect();
    assert_eq!(used.len(), 3, "100 keys spread over the 3 partitions");
    let delivered: BTreeSet<(i32, i64)> = deliveries.iter().map(|d| (d.partition, d.offset)).collect();
    let stored: BTreeSet<(i32, i64)> =
        messages.iter().map(|m| (rdkafka::Message::partition(m), rdkafka::Message::offset(m))).collect();
    assert_eq!(delivered, stored, "each Delivery names where its message is");

    let ids: Vec<String> = messages.iter().map(|m| header(m, "x-message-id").expect("x-message-id")).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), 10_000, "message ids are unique");
    assert!(ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 7)), "UUIDv7");
    assert!(messages.iter().all(|m| header(m, "traceparent").is_some()));
    // Published one after another (one key: one partition, in order), ids sort in publishing order.
    let sequential_ids: Vec<String> = sequential.iter().map(|m| header(m, "x-message-id").unwrap()).collect();
    let mut sorted = sequential_ids.clone();
    sorted.sort();
    assert_eq!(sequential_ids, sorted, "x-message-id is time-ordered");
}

// --------------------------------------------------------------------------------- correlation

static RELAY_PUBLISHER: OnceLock<Publisher> = OnceLock::new();

/// Answers each quote request with a quote of its own.
#[kafka_handler(topic = "requests", dlq)]
async fn relay(event: Quote, ctx: MessageContext) -> Result<(), HandlerError> {
    let reply = Quote { id: format!("reply-{}", event.id), price: event.price + 1 };
    RELAY_PUBLISHER.get().expect("publisher").publish("replies", &reply).await?;
    common::record_call(&ctx, &event.id, true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handlers_output_carries_its_inputs_correlation_id() {
    let run = unique("correlate");
    let runtime = kafka_events::runtime::launch(config(&run, &["relay"])).await.expect("launch");
    let publisher = runtime.publisher();
    RELAY_PUBLISHER.set(publisher.clone()).expect("set once");
    let requests = format!("{run}.requests");
    let replies = format!("{run}.replies");
    common::create_topic(&replies, 1).await;

    let with = PublishOptions::new().header("x-correlation-id", "order-42");
    publisher.publish_with("requests", &Quote { id: "a".into(), price: 1 }, with).await.expect("publish");
    publisher.publish("requests", &Quote { id: "b".into(), price: 2 }).await.expect("publish");
    wait_for(&requests, Duration::from_secs(60), |calls| calls.len() >= 2).await;
    let sent = read_topic(&requests, 2);
    let output = read_topic(&replies, 2);
    runtime.shutdown().await.expect("shutdown");

    let reply = |id: &str| {
        output
            .iter()
            .find(|m| serde_json::from_slice::<Quote>(rdkafka::Message::payload(*m).unwrap()).unwrap().id == id)
            .unwrap_or_else(|| panic!("reply {id}"))
    };
    assert_eq!(header(reply("reply-a"), "x-correlation-id").as_deref(), Some("order-42"), "carried over");
    let b = sent
        .iter()
        .find(|m| serde_json::from_slice::<Quote>(rdkafka::Message::payload(*m).unwrap()).unwrap().id == "b")
        .unwrap();
    let b_id = header(b, "x-message-id").expect("b has an id");
    assert_eq!(header(b, "x-correlation-id"), None, "published outside a handler: no correlation id");
    assert_eq!(header(reply("reply-b"), "x-correlation-id"), Some(b_id.clone()), "without one, the input's id");
    assert_ne!(header(reply("reply-b"), "x-message-id"), Some(b_id), "the reply has an id of its own");
}
