//! Handler time limits: a call over `timeout = "..."` is cancelled (its future dropped) and
//! counts as a retryable failure of kind `timeout`; once retries run out the message is
//! dead-lettered with kind `timeout`. Other messages of the partition go on.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{calls, config, create_topic, header, produce, producer, read_topic, record_call, unique, wait_for};
use kafka_events::names::header as h;
use kafka_events::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Lookup {
    #[validate(length(min = 1))]
    id: String,
}

/// Calls cancelled in the middle of their sleep (their future dropped).
static CANCELLED: AtomicUsize = AtomicUsize::new(0);

struct CountDrop;

impl Drop for CountDrop {
    fn drop(&mut self) {
        CANCELLED.fetch_add(1, Ordering::SeqCst);
    }
}

/// `slow-once` hangs on its first attempt only; `always-slow` on every attempt.
#[kafka_handler(topic = "lookups", timeout = "300ms", retry(max = 1, initial = "10ms", mode = "in_place"), dlq)]
async fn lookup(event: Lookup, ctx: MessageContext) -> Result<(), HandlerError> {
    let hangs = event.id == "always-slow" || (event.id == "slow-once" && ctx.attempt() == 1);
    if hangs {
        record_call(&ctx, &event.id, false);
        let guard = CountDrop;
        tokio::time::sleep(Duration::from_secs(30)).await;
        std::mem::forget(guard);
    }
    record_call(&ctx, &event.id, true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_its_time_limit_is_cancelled_retried_and_dead_lettered_as_a_timeout() {
    let run = unique("timeout");
    let topic = format!("{run}.lookups");
    create_topic(&topic, 1).await;
    let runtime = kafka_events::runtime::launch(config(&run, &["lookup"])).await.expect("launch");
    let producer = producer();
    for id in ["first", "slow-once", "always-slow", "last"] {
        produce(&producer, &topic, id, &serde_json::to_vec(&Lookup { id: id.into() }).unwrap(), &[], None).await;
    }
    wait_for(&topic, Duration::from_secs(60), |c| c.iter().any(|c| c.id == "last" && c.succeeded)).await;
    let dead = read_topic(&format!("{topic}.dlq"), 1);
    let metrics = runtime.metrics_text();
    runtime.shutdown().await.expect("shutdown");

    let done: Vec<String> = calls(&topic).into_iter().filter(|c| c.succeeded).map(|c| c.id).collect();
    assert_eq!(done, ["first", "slow-once", "last"], "in order; the slow-once one on its second attempt");
    assert_eq!(CANCELLED.load(Ordering::SeqCst), 3, "three calls cancelled: slow-once once, always-slow twice");
    assert_eq!(dead.len(), 1);
    assert_eq!(common::key(&dead[0]), "always-slow");
    assert_eq!(header(&dead[0], h::DLQ_ERROR_KIND).as_deref(), Some("timeout"));
    let reason = header(&dead[0], h::DLQ_REASON).unwrap();
    assert!(reason.contains("longer than its time limit of 300ms"), "{reason}");
    let timeouts: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("kafka_events_messages_failed_total{") && l.contains("kind=\"timeout\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(timeouts, 3.0, "{metrics}");
}
