//! The working core against a real broker: every event id counted end to end.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{
    calls, committed_offsets, config, end_offsets, header, key, produce, producer, read_topic, record, unique,
    wait_for, Call,
};
use kafka_events::names::header as h;
use kafka_events::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Order {
    #[validate(length(min = 1))]
    id: String,
    #[validate(range(min = 0.01))]
    amount: f64,
}

fn order(id: &str, amount: f64) -> Vec<u8> {
    serde_json::to_vec(&Order { id: id.into(), amount }).unwrap()
}

fn call(event: &Order, ctx: &MessageContext, succeeded: bool) -> Call {
    Call {
        id: event.id.clone(),
        attempt: ctx.attempt(),
        partition: ctx.partition(),
        offset: ctx.offset(),
        succeeded,
        at: std::time::Instant::now(),
    }
}

// ---------------------------------------------------------------- 1,000 events, 3 partitions

#[kafka_handler(topic = "count", dlq)]
async fn count_orders(event: Order, ctx: MessageContext) -> Result<(), HandlerError> {
    record(ctx.topic(), call(&event, &ctx, true));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_events_are_each_handled_once_and_committed() {
    let run = unique("count");
    let runtime = kafka_events::runtime::launch(config(&run, &["count_orders"])).await.expect("launch");
    let topic = format!("{run}.count");
    let producer = producer();
    for i in 0..1000 {
        produce(&producer, &topic, &format!("key-{i}"), &order(&format!("id-{i}"), 1.0), &[], None).await;
    }
    let seen = wait_for(&topic, Duration::from_secs(90), |c| c.len() >= 1000).await;
    runtime.shutdown().await.expect("shutdown");

    let seen_after = calls(&topic);
    assert_eq!(seen_after.len(), 1000, "no invocation beyond the 1,000 events");
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for c in &seen {
        *per_id.entry(c.id.as_str()).or_default() += 1;
    }
    assert_eq!(per_id.len(), 1000, "every id handled");
    assert!(per_id.values().all(|&n| n == 1), "each id exactly once");
    let partitions: std::collections::BTreeSet<i32> = seen.iter().map(|c| c.partition).collect();
    assert_eq!(partitions.len(), 3, "keys spread over the 3 partitions");
    let group = format!("{run}-svc-main");
    assert_eq!(committed_offsets(&group, &topic, 3), end_offsets(&topic, 3), "committed offsets equal end offsets");
}

// ---------------------------------------------------------------- dead letters

#[kafka_handler(topic = "strict", retry(max = 2, initial = "20ms", mode = "in_place"), dlq)]
async fn strict_orders(event: Order, ctx: MessageContext) -> Result<(), HandlerError> {
    let outcome = if event.id.starts_with("reject") {
        Err(HandlerError::permanent(format!("order {} is rejected", event.id)))
    } else if event.id.starts_with("always-fails") {
        Err(HandlerError::retryable("inventory service unavailable"))
    } else {
        Ok(())
    };
    record(ctx.topic(), call(&event, &ctx, outcome.is_ok()));
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_failures_are_dead_lettered_with_diagnostics() {
    let run = unique("strict");
    let runtime = kafka_events::runtime::launch(config(&run, &["strict_orders"])).await.expect("launch");
    let topic = format!("{run}.strict");
    let dlq = format!("{topic}.dlq");
    let producer = producer();
    let cases: [(&str, Vec<u8>); 5] = [
        ("k-json", b"{\"id\": \"broken".to_vec()),
        ("k-invalid", order("", 0.0)),
        ("k-reject", order("reject-1", 5.0)),
        ("k-always", order("always-fails-1", 5.0)),
        ("k-ok", order("ok-1", 5.0)),
    ];
    let mut origin = BTreeMap::new();
    for (key, payload) in &cases {
        let at = produce(&producer, &topic, key, payload, &[("trace-id", key), ("tenant", "acme")], Some(0)).await;
        origin.insert(key.to_string(), at);
    }

    let letters = read_topic(&dlq, 4);
    // The last message on the partition is `ok-1`: once it is handled, every earlier one is done.
    wait_for(&topic, Duration::from_secs(60), |c| c.iter().any(|c| c.id == "ok-1")).await;
    runtime.shutdown().await.expect("shutdown");

    assert_eq!(letters.len(), 4, "four dead letters");
    let by_key: BTreeMap<String, &rdkafka::message::OwnedMessage> = letters.iter().map(|m| (key(m), m)).collect();
    let expected_kind = [
        ("k-json", "decode"),
        ("k-invalid", "validation"),
        ("k-reject", "permanent"),
        ("k-always", "retries-exhausted"),
    ];
    for (k, kind) in expected_kind {
        let letter = by_key.get(k).unwrap_or_else(|| panic!("no dead letter for {k}"));
        let (_, payload) = cases.iter().find(|(key, _)| *key == k).unwrap();
        assert_eq!(rdkafka::Message::payload(*letter), Some(payload.as_slice()), "{k}: original value kept");
        assert_eq!(header(letter, "trace-id").as_deref(), Some(k), "{k}: original headers kept");
        assert_eq!(header(letter, "tenant").as_deref(), Some("acme"));
        assert_eq!(header(letter, h::DLQ_ERROR_KIND).as_deref(), Some(kind), "{k}");
        assert_eq!(header(letter, h::ORIGINAL_TOPIC).as_deref(), Some(topic.as_str()));
        let (partition, offset) = origin[k];
        assert_eq!(header(letter, h::ORIGINAL_PARTITION), Some(partition.to_string()));
        assert_eq!(header(letter, h::ORIGINAL_OFFSET), Some(offset.to_string()));
        assert!(header(letter, h::DLQ_TIMESTAMP).is_some_and(|t| t.ends_with('Z')), "{k}: timestamp");
        assert_eq!(header(letter, h::DLQ_HANDLER).as_deref(), Some("core::strict_orders"));
        assert!(!header(letter, h::DLQ_REASON).unwrap_or_default().is_empty(), "{k}: reason");
    }
    assert!(header(by_key["k-json"], h::DLQ_REASON).unwrap().contains("invalid JSON"));
    assert!(header(by_key["k-invalid"], h::DLQ_REASON).unwrap().contains("failed validation"));
    assert_eq!(header(by_key["k-reject"], h::DLQ_REASON).as_deref(), Some("order reject-1 is rejected"));
    assert_eq!(
        header(by_key["k-always"], h::DLQ_REASON).as_deref(),
        Some("retries exhausted after 3 attempts: inventory service unavailable")
    );
    assert_eq!(header(by_key["k-always"], h::RETRY_ATTEMPTS).as_deref(), Some("3"));
    assert_eq!(header(by_key["k-reject"], h::RETRY_ATTEMPTS).as_deref(), Some("1"), "permanent: not retried");

    // Decode and validation failures never reach the handler; the permanent error is not retried.
    let invocations: Vec<(String, u32)> = calls(&topic).into_iter().map(|c| (c.id, c.attempt)).collect();
    assert_eq!(
        invocations,
        [
            ("reject-1".into(), 1),
            ("always-fails-1".into(), 1),
            ("always-fails-1".into(), 2),
            ("always-fails-1".into(), 3),
            ("ok-1".into(), 1)
        ]
    );
    let group = format!("{run}-svc-main");
    assert_eq!(committed_offsets(&group, &topic, 3)[0], origin["k-ok"].1 + 1, "dead-lettered offsets are committed");
}

// ---------------------------------------------------------------- retry in place, panics

#[kafka_handler(topic = "flaky", retry(max = 3, initial = "20ms", mode = "in_place"))]
async fn flaky_orders(event: Order, ctx: MessageContext) -> Result<(), HandlerError> {
    let succeed = ctx.attempt() >= 3;
    record(ctx.topic(), call(&event, &ctx, succeed));
    if !succeed && event.id.starts_with("panic") {
        panic!("handler bug on attempt {}", ctx.attempt());
    }
    if succeed {
        Ok(())
    } else {
        Err(std::io::Error::other("connection reset"))?
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_failing_twice_is_invoked_three_times_and_committed() {
    let run = unique("flaky");
    let runtime = kafka_events::runtime::launch(config(&run, &["flaky_orders"])).await.expect("launch");
    let topic = format!("{run}.flaky");
    let producer = producer();
    let (partition, offset) = produce(&producer, &topic, "a", &order("fails-twice", 1.0), &[], Some(1)).await;
    produce(&producer, &topic, "b", &order("panic-twice", 1.0), &[], Some(2)).await;
    wait_for(&topic, Duration::from_secs(60), |c| c.iter().filter(|c| c.succeeded).count() == 2).await;
    runtime.shutdown().await.expect("shutdown");

    for id in ["fails-twice", "panic-twice"] {
        let attempts: Vec<(u32, bool)> =
            calls(&topic).iter().filter(|c| c.id == id).map(|c| (c.attempt, c.succeeded)).collect();
        assert_eq!(attempts, [(1, false), (2, false), (3, true)], "{id}");
    }
    let group = format!("{run}-svc-main");
    let committed = committed_offsets(&group, &topic, 3);
    assert_eq!(committed[partition as usize], offset + 1);
    assert_eq!(committed[1..], end_offsets(&topic, 3)[1..], "both used partitions fully committed");
}

// ---------------------------------------------------------------- no dlq: the partition stalls

#[kafka_handler(topic = "stall", retry(max = 1, initial = "10ms", max_delay = "1s", mode = "in_place"))]
async fn stalling_orders(event: Order, ctx: MessageContext) -> Result<(), HandlerError> {
    let poison = event.id == "poison";
    record(ctx.topic(), call(&event, &ctx, !poison));
    if poison {
        return Err(HandlerError::permanent("cannot ever handle this"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_dlq_a_failing_message_stalls_its_partition_and_is_not_committed() {
    let run = unique("stall");
    let runtime = kafka_events::runtime::launch(config(&run, &["stalling_orders"])).await.expect("launch");
    let topic = format!("{run}.stall");
    let producer = producer();
    produce(&producer, &topic, "a", &order("before", 1.0), &[], Some(0)).await;
    let (_, poison_offset) = produce(&producer, &topic, "a", &order("poison", 1.0), &[], Some(0)).await;
    produce(&producer, &topic, "a", &order("after", 1.0), &[], Some(0)).await;
    produce(&producer, &topic, "b", &order("other-partition", 1.0), &[], Some(1)).await;

    // Attempt 1 fails permanently → stall; it is tried again after `max_delay` (attempt 2).
    wait_for(&topic, Duration::from_secs(60), |c| {
        c.iter().filter(|c| c.id == "poison").count() >= 2 && c.iter().any(|c| c.id == "other-partition")
    })
    .await;
    let health = runtime.health();
    assert!(!health.is_healthy());
    assert_eq!(health.stalled.len(), 1);
    assert_eq!((health.stalled[0].partition, health.stalled[0].offset), (0, poison_offset));
    assert_eq!(health.stalled[0].reason, "cannot ever handle this");
    runtime.shutdown().await.expect("shutdown");

    assert!(!calls(&topic).iter().any(|c| c.id == "after"), "nothing after the stalled message is handled");
    let group = format!("{run}-svc-main");
    let committed = committed_offsets(&group, &topic, 3);
    assert_eq!(committed[0], poison_offset, "committed up to, not past, the stalled message");
    assert_eq!(committed[1], 1, "other partitions are not held");
}
