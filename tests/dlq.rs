//! DLQ operations against a real broker: stats, peek, replay through the `-admin` group
//! (limit, re-run, dry run) and clear errors.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{
    brokers, calls, config, create_topic, end_offsets, header, produce, producer, read_topic, record, unique, wait_for,
    Call,
};
use kafka_events::dlq::{DeadLetters, DlqError, ReplayOptions};
use kafka_events::names::header as h;
use kafka_events::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Invoice {
    #[validate(length(min = 1))]
    id: String,
}

/// Until the "fix is deployed", every invoice is rejected.
static FIXED: AtomicBool = AtomicBool::new(false);

#[kafka_handler(topic = "invoices", retry(max = 0), dlq)]
async fn invoices(invoice: Invoice, ctx: MessageContext) -> Result<(), HandlerError> {
    let fixed = FIXED.load(Ordering::SeqCst);
    record(
        ctx.topic(),
        Call {
            id: invoice.id,
            attempt: ctx.attempt(),
            partition: ctx.partition(),
            offset: ctx.offset(),
            succeeded: fixed,
            at: Instant::now(),
        },
    );
    if fixed {
        Ok(())
    } else {
        Err(HandlerError::permanent("tax service rejected the invoice"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_in_two_runs_republishes_each_dead_letter_once_and_dry_run_changes_nothing() {
    let run = unique("replay");
    // One partition: the dead letters keep the order of the invoices.
    let config = config(&run, &["invoices"]).with_topic_layout(1, 1);
    let runtime = kafka_events::runtime::launch(config.clone()).await.expect("launch");
    let topic = format!("{run}.invoices");
    let dlq_topic = format!("{topic}.dlq");
    let producer = producer();
    for i in 0..100 {
        let payload = serde_json::to_vec(&Invoice { id: format!("inv-{i}") }).unwrap();
        produce(&producer, &topic, &format!("k{i}"), &payload, &[("trace-id", &format!("t{i}"))], None).await;
    }
    assert_eq!(read_topic(&dlq_topic, 100).len(), 100, "all 100 dead-lettered");

    let dlq = DeadLetters::connect(&config).await.expect("connect");
    let stats = dlq.stats(&dlq_topic, true).await.expect("stats");
    assert_eq!(stats.total(), 100);
    assert_eq!(stats.by_kind.as_ref().unwrap().get("permanent"), Some(&100));
    assert!(stats.partitions[0].oldest.is_some() && stats.partitions[0].newest >= stats.partitions[0].oldest);
    let peeked = dlq.peek(&dlq_topic, 3).await.expect("peek");
    assert_eq!(peeked.len(), 3);
    assert_eq!(peeked[0].reason(), Some("tax service rejected the invoice"));
    assert_eq!(peeked[0].original_topic(), Some(topic.as_str()));

    // Dry run: reports, publishes nothing, commits nothing.
    let dry =
        dlq.replay(&dlq_topic, ReplayOptions { limit: Some(40), dry_run: true, to: None }).await.expect("dry run");
    assert_eq!(dry.items.len(), 40);
    assert!(dry.dry_run);
    assert_eq!(end_offsets(&topic, 1), [100], "a dry run publishes nothing");

    FIXED.store(true, Ordering::SeqCst);
    let first =
        dlq.replay(&dlq_topic, ReplayOptions { limit: Some(40), ..Default::default() }).await.expect("replay 40");
    assert_eq!(first.items.len(), 40, "the dry run committed nothing: the first real run starts at the beginning");
    assert_eq!(first.items[0].offset, 0);
    assert_eq!(first.remaining, 60);
    let second = dlq.replay(&dlq_topic, ReplayOptions::default()).await.expect("replay the rest");
    assert_eq!(second.items.len(), 60);
    assert_eq!(second.remaining, 0);
    let third = dlq.replay(&dlq_topic, ReplayOptions::default()).await.expect("nothing left");
    assert!(third.items.is_empty());

    let replayed: Vec<i64> = first.items.iter().chain(&second.items).map(|i| i.offset).collect();
    assert_eq!(replayed, (0..100).collect::<Vec<_>>(), "every dead letter replayed once, in order");
    assert!(first.items.iter().chain(&second.items).all(|i| i.target == topic));
    assert_eq!(end_offsets(&topic, 1), [200], "exactly 100 republished");

    let seen = wait_for(&topic, Duration::from_secs(60), |c| c.iter().filter(|c| c.succeeded).count() >= 100).await;
    runtime.shutdown().await.expect("shutdown");
    let fixed: BTreeSet<&str> = seen.iter().filter(|c| c.succeeded).map(|c| c.id.as_str()).collect();
    assert_eq!(fixed.len(), 100, "every invoice handled after the fix");
    assert_eq!(calls(&topic).iter().filter(|c| c.succeeded).count(), 100, "each exactly once");

    // Republished records carry the user's headers and none of the runtime's.
    let republished = read_topic(&topic, 200);
    let replayed_record = republished.iter().find(|m| rdkafka::Message::offset(*m) >= 100).expect("a replayed record");
    assert!(header(replayed_record, "trace-id").is_some());
    for name in h::DIAGNOSTIC {
        assert_eq!(header(replayed_record, name), None, "{name} stripped");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_errors_are_clear() {
    let run = unique("dlqerr");
    let config = Config::development(format!("{run}-svc")).with_brokers(brokers());
    let dlq = DeadLetters::connect(&config).await.expect("connect");

    let missing = dlq.stats(&format!("{run}.nope.dlq"), false).await.unwrap_err();
    assert!(matches!(missing, DlqError::TopicNotFound(_)), "{missing}");
    assert_eq!(missing.to_string(), format!("topic `{run}.nope.dlq` does not exist"));

    // A record that did not come from the runtime: no x-original-topic.
    let manual = format!("{run}.manual.dlq");
    create_topic(&manual, 1).await;
    let (_, offset) = produce(&producer(), &manual, "k", b"{}", &[], Some(0)).await;
    let error = dlq.replay(&manual, ReplayOptions::default()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("the message at `{manual}` partition 0 offset {offset} has no `x-original-topic` header; pass a target topic (`--to <topic>`) to replay it")
    );
    let target = format!("{run}.target");
    create_topic(&target, 1).await;
    let report = dlq
        .replay(&manual, ReplayOptions { to: Some(target.clone()), ..Default::default() })
        .await
        .expect("replay --to");
    assert_eq!(report.items.len(), 1);
    assert_eq!(end_offsets(&target, 1), [1]);

    let unreachable = DeadLetters::connect(&Config::development("svc").with_brokers("127.0.0.1:9")).await.unwrap_err();
    assert!(unreachable.to_string().starts_with("cannot reach the brokers at `127.0.0.1:9`"), "{unreachable}");
    let embedded = DeadLetters::connect(&Config::development("svc")).await.unwrap_err();
    assert!(matches!(embedded, DlqError::NoBrokers));
}
