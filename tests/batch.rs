//! Batch handlers against a real broker: invalid messages dead-lettered on their own, the rest
//! handled in batches of at most `max`, per-key order kept across batches, offsets committed;
//! a failing batch retried as a whole, then dead-lettered event by event; what a batch call
//! publishes carries the batch's trace and correlation id when its events share one, a trace of
//! its own and no correlation id otherwise.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use common::{
    brokers, calls, config, create_topic, header, key, produce_many, produce_records, producer, read_to_end,
    read_topic, record_call, unique, wait_committed, wait_for,
};
use kafka_events::names::header as h;
use kafka_events::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Reading {
    #[validate(length(min = 1))]
    sensor: String,
    seq: u64,
    #[validate(range(min = -100.0, max = 100.0))]
    value: f64,
}

impl Reading {
    fn id(&self) -> String {
        format!("{}/{}", self.sensor, self.seq)
    }
}

/// The size of every call of each batch handler topic.
static BATCH_SIZES: Mutex<Vec<(String, usize)>> = Mutex::new(Vec::new());

fn sizes(topic: &str) -> Vec<usize> {
    BATCH_SIZES.lock().unwrap().iter().filter(|(t, _)| t == topic).map(|(_, n)| *n).collect()
}

const MAX: usize = 200;

#[kafka_handler(topic = "readings", batch(max = 200, linger = "20ms"), dlq)]
async fn store_readings(events: Vec<Reading>, ctx: BatchContext) -> Result<(), HandlerError> {
    assert_eq!(events.len(), ctx.len(), "one context per event");
    BATCH_SIZES.lock().unwrap().push((ctx.topic().to_string(), events.len()));
    for (event, message) in events.iter().zip(ctx.messages()) {
        record_call(message, &event.id(), true);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_readings_with_fifty_invalid_are_handled_in_batches() {
    const EVENTS: usize = 5000;
    const SENSORS: usize = 40;
    let run = unique("batch");
    let topic = format!("{run}.readings");
    create_topic(&topic, 3).await;
    create_topic(&format!("{topic}.dlq"), 3).await;
    // Every 100th message is invalid: half not JSON, half out of range. Keyed by sensor, so one
    // sensor's readings are one partition's sequence.
    let mut messages: Vec<(String, Vec<u8>)> = Vec::with_capacity(EVENTS);
    let mut invalid = BTreeSet::new();
    for i in 0..EVENTS {
        let sensor = format!("sensor-{}", i % SENSORS);
        let seq = (i / SENSORS) as u64;
        let payload = match i % 200 {
            50 => {
                invalid.insert(format!("{sensor}/{seq}"));
                b"{\"sensor\": \"truncated".to_vec()
            }
            150 => {
                invalid.insert(format!("{sensor}/{seq}"));
                serde_json::to_vec(&Reading { sensor: sensor.clone(), seq, value: 1000.0 }).unwrap()
            }
            _ => serde_json::to_vec(&Reading { sensor: sensor.clone(), seq, value: (i % 50) as f64 }).unwrap(),
        };
        // The key is the reading's id, so a dead letter's id is readable without its payload.
        messages.push((format!("{sensor}/{seq}"), payload));
    }
    assert_eq!(invalid.len(), 50);
    let runtime = kafka_events::runtime::launch(config(&run, &["store_readings"])).await.expect("launch");
    produce_to_sensor_partitions(&producer(), &topic, &messages).await;

    let seen = wait_for(&topic, Duration::from_secs(180), |c| c.len() >= EVENTS - 50).await;
    let dead = read_topic(&format!("{topic}.dlq"), 50);
    wait_committed(&format!("{run}-svc-main"), &topic, 3, Duration::from_secs(60)).await;
    runtime.shutdown().await.expect("shutdown");

    let seen_after = calls(&topic);
    assert_eq!(seen_after.len(), EVENTS - 50, "4,950 handled, none twice");
    let handled: BTreeSet<&str> = seen_after.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(handled.len(), EVENTS - 50, "each valid reading exactly once");
    assert!(
        handled.is_disjoint(&invalid.iter().map(String::as_str).collect()),
        "no invalid reading reached the handler"
    );

    let sizes = sizes(&topic);
    assert_eq!(sizes.iter().sum::<usize>(), EVENTS - 50);
    assert!(sizes.iter().all(|&n| (1..=MAX).contains(&n)), "every batch within 1..={MAX}: {sizes:?}");
    assert!(sizes.iter().any(|&n| n > 1), "messages were batched: {sizes:?}");
    println!(
        "{} batches, largest {}, mean {:.1}",
        sizes.len(),
        sizes.iter().max().unwrap(),
        (EVENTS - 50) as f64 / sizes.len() as f64
    );

    // Per-sensor order across batches: each sensor's readings were handled in sequence order.
    let mut last: HashMap<&str, u64> = HashMap::new();
    for call in &seen {
        let (sensor, seq) = call.id.split_once('/').unwrap();
        let seq: u64 = seq.parse().unwrap();
        if let Some(previous) = last.insert(sensor, seq) {
            assert!(seq > previous, "{sensor}: reading {seq} handled after {previous}");
        }
    }

    assert_eq!(dead.len(), 50, "50 dead letters");
    let dead_ids: BTreeSet<String> = dead.iter().map(key).collect();
    assert_eq!(dead_ids, invalid, "exactly the invalid readings were dead-lettered");
    let kinds: HashMap<String, usize> = dead.iter().fold(HashMap::new(), |mut kinds, m| {
        *kinds.entry(header(m, h::DLQ_ERROR_KIND).unwrap_or_default()).or_default() += 1;
        kinds
    });
    assert_eq!(kinds.get("decode"), Some(&25), "{kinds:?}");
    assert_eq!(kinds.get("validation"), Some(&25), "{kinds:?}");
    assert!(dead.iter().all(|m| header(m, h::DLQ_REASON).is_some_and(|r| !r.is_empty())), "each with its reason");
}

/// Produces `(id, payload)` messages with each sensor's readings in one partition (the sensor
/// number modulo 3), in order.
async fn produce_to_sensor_partitions(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    messages: &[(String, Vec<u8>)],
) {
    use rdkafka::producer::FutureRecord;
    let mut pending = Vec::with_capacity(messages.len());
    for (id, payload) in messages {
        let sensor: i32 = id.split_once('/').unwrap().0.trim_start_matches("sensor-").parse().unwrap();
        let record = FutureRecord::to(topic).key(id.as_str()).payload(payload.as_slice()).partition(sensor % 3);
        pending.push(producer.send_result(record).map_err(|(e, _)| e).expect("enqueue"));
    }
    for delivery in pending {
        delivery.await.expect("delivery").map_err(|(e, _)| e).expect("produce");
    }
}

// ---------------------------------------------------------------- failing batches

/// A batch with `flaky` fails once (retryable), then succeeds; a batch with `poison` fails
/// permanently: each of its events is dead-lettered.
#[kafka_handler(topic = "ledger", batch(max = 50, linger = "10ms"), retry(max = 2, initial = "10ms"), dlq)]
async fn post_ledger(events: Vec<Reading>, ctx: BatchContext) -> Result<(), HandlerError> {
    let has = |what: &str| events.iter().any(|e| e.sensor == what);
    if has("poison") {
        return Err(HandlerError::permanent("the ledger rejects this batch"));
    }
    let failing = has("flaky") && ctx.attempt() == 1;
    for (event, message) in events.iter().zip(ctx.messages()) {
        record_call(message, &event.id(), !failing);
    }
    if failing {
        return Err(HandlerError::retryable("the ledger timed out"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_retried_whole_then_dead_lettered_event_by_event() {
    const EVENTS: usize = 300;
    let run = unique("batchfail");
    let topic = format!("{run}.ledger");
    create_topic(&topic, 1).await;
    create_topic(&format!("{topic}.dlq"), 1).await;
    let messages: Vec<(String, Vec<u8>)> = (0..EVENTS)
        .map(|i| {
            let sensor = match i {
                100 => "flaky".to_string(),
                200 => "poison".to_string(),
                _ => format!("s{i}"),
            };
            let reading = Reading { sensor, seq: i as u64, value: 1.0 };
            (reading.id(), serde_json::to_vec(&reading).unwrap())
        })
        .collect();
    // All produced before the runtime starts, so batches fill up to `max`.
    produce_many(&producer(), &topic, &messages).await;
    let runtime = kafka_events::runtime::launch(config(&run, &["post_ledger"])).await.expect("launch");
    wait_committed(&format!("{run}-svc-main"), &topic, 1, Duration::from_secs(120)).await;
    runtime.shutdown().await.expect("shutdown");

    let calls = calls(&topic);
    let succeeded: BTreeSet<&str> = calls.iter().filter(|c| c.succeeded).map(|c| c.id.as_str()).collect();
    assert_eq!(succeeded.len(), calls.iter().filter(|c| c.succeeded).count(), "no event succeeded twice");
    let flaky =
        calls.iter().filter(|c| c.id.starts_with("flaky")).map(|c| (c.attempt, c.succeeded)).collect::<Vec<_>>();
    assert_eq!(flaky, [(1, false), (2, true)], "the flaky batch was called twice, then succeeded");
    let failed_batch: BTreeSet<&str> = calls.iter().filter(|c| !c.succeeded).map(|c| c.id.as_str()).collect();
    assert!(failed_batch.is_subset(&succeeded), "the retried batch's events all succeeded on attempt 2");

    // Offsets finish only once their dead letters are acknowledged: the DLQ is complete.
    let dead = read_to_end(&brokers(), &format!("{topic}.dlq"), 1, "read_committed");
    let dead_ids: BTreeSet<String> = dead.iter().map(key).collect();
    assert!(dead_ids.contains("poison/200"), "{dead_ids:?}");
    assert!(dead.len() > 1 && dead.len() <= 50, "the poison batch's events, each on its own: {}", dead.len());
    assert!(dead.iter().all(|m| header(m, h::DLQ_ERROR_KIND).as_deref() == Some("permanent")));
    assert!(dead.iter().all(|m| header(m, h::DLQ_REASON).as_deref() == Some("the ledger rejects this batch")));
    // Every event either succeeded or was dead-lettered; none both, none lost.
    let all: BTreeSet<String> = messages.iter().map(|(id, _)| id.clone()).collect();
    let outcome: BTreeSet<String> = succeeded.iter().map(|s| s.to_string()).chain(dead_ids.iter().cloned()).collect();
    assert_eq!(outcome, all, "every event has exactly one outcome");
    assert_eq!(succeeded.len() + dead_ids.len(), EVENTS);
}

#[derive(Debug, Serialize, Deserialize)]
struct Summary {
    ids: Vec<String>,
}

#[kafka_handler(topic = "forwarded", batch(max = 10, linger = "200ms"), dlq)]
async fn summarise(events: Vec<Reading>, ctx: BatchContext) -> Result<(), HandlerError> {
    BATCH_SIZES.lock().unwrap().push((ctx.topic().to_string(), events.len()));
    for (event, message) in events.iter().zip(ctx.messages()) {
        record_call(message, &event.id(), true);
    }
    let publisher = ctx.messages()[0].publisher().expect("a publisher");
    publisher.publish("summaries", &Summary { ids: events.iter().map(Reading::id).collect() }).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_publishes_in_its_events_trace_and_correlation_when_they_share_one() {
    use kafka_events::trace::TraceContext;
    let run = unique("batchtrace");
    let topic = format!("{run}.forwarded");
    create_topic(&topic, 1).await;
    create_topic(&format!("{topic}.dlq"), 1).await;
    create_topic(&format!("{run}.summaries"), 1).await;
    let shared = TraceContext::new_root();
    let record = |i: usize, correlation: String, traceparent: String| {
        let reading = Reading { sensor: format!("s{i}"), seq: i as u64, value: 1.0 };
        let headers = vec![(h::CORRELATION_ID.to_string(), correlation), ("traceparent".to_string(), traceparent)];
        (reading.id(), serde_json::to_vec(&reading).unwrap(), headers)
    };
    // Ten events of one trace and one correlation id, then ten of ten traces and ids.
    let mut records: Vec<_> = (0..10).map(|i| record(i, "corr-shared".into(), shared.child().traceparent())).collect();
    records.extend((10..20).map(|i| record(i, format!("corr-{i}"), TraceContext::new_root().traceparent())));
    // Produced before the runtime starts, so batches are cut by `max` in offset order.
    produce_records(&producer(), &topic, &records).await;
    let runtime = kafka_events::runtime::launch(config(&run, &["summarise"])).await.expect("launch");
    wait_committed(&format!("{run}-svc-main"), &topic, 1, Duration::from_secs(60)).await;
    runtime.shutdown().await.expect("shutdown");

    let handled: BTreeSet<String> = calls(&topic).into_iter().map(|c| c.id).collect();
    assert_eq!(handled.len(), 20, "every event handled once");
    let summaries = read_topic(&format!("{run}.summaries"), sizes(&topic).len());
    assert_eq!(summaries.len(), sizes(&topic).len(), "one summary per call");
    let input_traces: BTreeSet<String> =
        records.iter().map(|r| TraceContext::parse(&r.2[1].1).unwrap().trace_id().to_string()).collect();
    let mut shared_batches = 0;
    for summary in &summaries {
        let ids = serde_json::from_slice::<Summary>(rdkafka::Message::payload(summary).unwrap()).unwrap().ids;
        let trace = TraceContext::parse(&header(summary, "traceparent").expect("traceparent")).expect("valid");
        let correlation = header(summary, h::CORRELATION_ID);
        let all_shared = ids.iter().all(|id| id.split('/').nth(1).unwrap().parse::<usize>().unwrap() < 10);
        if all_shared {
            shared_batches += 1;
            assert_eq!(trace.trace_id(), shared.trace_id(), "a batch of one trace publishes in it: {ids:?}");
            assert_eq!(correlation.as_deref(), Some("corr-shared"), "{ids:?}");
        } else {
            assert!(!input_traces.contains(trace.trace_id()), "a mixed batch starts a trace of its own: {ids:?}");
            assert_eq!(correlation, None, "a mixed batch's output carries no one event's correlation id: {ids:?}");
        }
    }
    assert!(shared_batches >= 1, "the first ten events formed at least one batch of their own");
}
