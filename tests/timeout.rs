//! Handler time limits: a call over `timeout = "..."` is cancelled (its future dropped) and
//! counts as a retryable failure of kind `timeout`; once retries run out the message is
//! dead-lettered with kind `timeout`. Other messages of the partition go on. Written with the
//! `testing` harness, on the suite's broker.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{calls, config, create_topic, record_call, unique};
use kafka_events::prelude::*;
use kafka_events::testing::{Harness, Outcome};
use kafka_events::ErrorKind;
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
    create_topic(&format!("{run}.lookups"), 1).await; // one partition: the order below is the partition's
    let harness =
        Harness::start_with(config(&run, &["lookup"])).await.expect("launch").with_timeout(Duration::from_secs(60));
    let mut sent = Vec::new();
    for id in ["first", "slow-once", "always-slow", "last"] {
        sent.push(harness.publish_with("lookups", &Lookup { id: id.into() }, PublishOptions::new().key(id)).await);
    }
    let mut outcomes = Vec::new();
    for delivery in &sent {
        outcomes.push(harness.outcome(delivery).await);
    }
    let metrics = harness.runtime().metrics_text();
    harness.shutdown().await.expect("shutdown");

    let [first, slow_once, always_slow, last] = &outcomes[..] else { unreachable!() };
    assert_eq!(*first, Outcome::Handled { attempts: 1 });
    assert_eq!(*slow_once, Outcome::Handled { attempts: 2 }, "handled on its second attempt");
    assert_eq!(*last, Outcome::Handled { attempts: 1 });
    let Outcome::DeadLettered { kind, reason, attempts } = always_slow else { panic!("{always_slow:?}") };
    assert_eq!((*kind, *attempts), (ErrorKind::Timeout, 2));
    assert!(reason.contains("longer than its time limit of 300ms"), "{reason}");
    let done: Vec<String> =
        calls(&format!("{run}.lookups")).into_iter().filter(|c| c.succeeded).map(|c| c.id).collect();
    assert_eq!(done, ["first", "slow-once", "last"], "in partition order: in-place retries hold the partition");
    assert_eq!(CANCELLED.load(Ordering::SeqCst), 3, "three calls cancelled: slow-once once, always-slow twice");
    let timeouts: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("kafka_events_messages_failed_total{") && l.contains("kind=\"timeout\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(timeouts, 3.0, "{metrics}");
}
