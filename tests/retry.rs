//! Non-blocking retries through `<topic>.retry` and the `${SERVICE_NAME}-retry` group, against a
//! real broker; every event id counted.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{
    calls, committed_offsets, config, end_offsets, header, key, produce, produce_many, producer, read_topic, record,
    topic_config, unique, wait_for, Call,
};
use kafka_events::names::header as h;
use kafka_events::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Job {
    #[validate(length(min = 1))]
    id: String,
    /// How many attempts fail before one succeeds.
    failures: u32,
}

fn job(id: &str, failures: u32) -> Vec<u8> {
    serde_json::to_vec(&Job { id: id.into(), failures }).unwrap()
}

/// Fails the first `failures` attempts with a retryable error, then succeeds.
async fn fail_then_succeed(job: Job, ctx: MessageContext) -> Result<(), HandlerError> {
    let succeed = ctx.attempt() > job.failures;
    record(
        ctx.topic(),
        Call {
            id: job.id,
            attempt: ctx.attempt(),
            partition: ctx.partition(),
            offset: ctx.offset(),
            succeeded: succeed,
            at: Instant::now(),
        },
    );
    if succeed {
        Ok(())
    } else {
        Err(HandlerError::retryable("downstream timed out"))
    }
}

#[kafka_handler(topic = "transient", retry(max = 5, initial = "100ms", max_delay = "400ms", mode = "topic"), dlq)]
async fn transient(job: Job, ctx: MessageContext) -> Result<(), HandlerError> {
    fail_then_succeed(job, ctx).await
}

#[kafka_handler(topic = "delayed", retry(max = 1, initial = "2s", max_delay = "2s", jitter = 0.0, mode = "topic"), dlq)]
async fn delayed(job: Job, ctx: MessageContext) -> Result<(), HandlerError> {
    fail_then_succeed(job, ctx).await
}

#[kafka_handler(topic = "long", retry(max = 1, initial = "9s", max_delay = "9s", jitter = 0.0, mode = "topic"), dlq)]
async fn long_delay(job: Job, ctx: MessageContext) -> Result<(), HandlerError> {
    fail_then_succeed(job, ctx).await
}

#[kafka_handler(topic = "exhausted", retry(max = 2, initial = "50ms", jitter = 0.0, mode = "topic"), dlq)]
async fn exhausted(job: Job, ctx: MessageContext) -> Result<(), HandlerError> {
    fail_then_succeed(job, ctx).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_through_the_retry_topic_until_each_id_succeeds_once() {
    let run = unique("transient");
    let runtime = kafka_events::runtime::launch(config(&run, &["transient"])).await.expect("launch");
    let topic = format!("{run}.transient");
    // 1,000 events; 300 of them fail 1, 2 or 3 times first.
    let failures = |i: usize| if i < 300 { (i % 3 + 1) as u32 } else { 0 };
    let events: Vec<(String, Vec<u8>)> =
        (0..1000).map(|i| (format!("k{i}"), job(&format!("e{i}"), failures(i)))).collect();
    produce_many(&producer(), &topic, &events).await;

    wait_for(&topic, Duration::from_secs(120), |c| c.iter().filter(|c| c.succeeded).count() >= 1000).await;
    runtime.shutdown().await.expect("shutdown");

    let mut per_id: HashMap<String, (u32, u32)> = HashMap::new();
    for c in calls(&topic) {
        let entry = per_id.entry(c.id).or_default();
        entry.0 += 1;
        entry.1 += u32::from(c.succeeded);
    }
    assert_eq!(per_id.len(), 1000, "every id handled");
    for i in 0..1000 {
        let (invocations, successes) = per_id[&format!("e{i}")];
        assert_eq!(successes, 1, "e{i} succeeded exactly once");
        assert_eq!(invocations, failures(i) + 1, "e{i}: invocations = failures + 1");
    }
    assert_eq!(end_offsets(&format!("{topic}.dlq"), 3), [0, 0, 0], "nothing dead-lettered");
    let retried: i64 = end_offsets(&format!("{topic}.retry"), 3).iter().sum();
    assert_eq!(retried, 600, "one retry record per failure (100×1 + 100×2 + 100×3)");
    assert_eq!(committed_offsets(&format!("{run}-svc-main"), &topic, 3), end_offsets(&topic, 3));
    assert_eq!(
        committed_offsets(&format!("{run}-svc-retry"), &format!("{topic}.retry"), 3),
        end_offsets(&format!("{topic}.retry"), 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_waits_its_delay_while_every_partition_keeps_flowing() {
    let run = unique("delayed");
    let runtime = kafka_events::runtime::launch(config(&run, &["delayed"])).await.expect("launch");
    let topic = format!("{run}.delayed");
    let producer = producer();
    produce(&producer, &topic, "slow", &job("slow", 1), &[], Some(0)).await;
    let failed = wait_for(&topic, Duration::from_secs(60), |c| c.iter().any(|c| c.id == "slow")).await;
    let t0 = failed[0].at;
    for i in 0..30 {
        produce(&producer, &topic, &format!("k{i}"), &job(&format!("other-{i}"), 0), &[], Some(i % 3)).await;
    }
    let seen = wait_for(&topic, Duration::from_secs(60), |c| c.iter().any(|c| c.id == "slow" && c.succeeded)).await;
    runtime.shutdown().await.expect("shutdown");

    let t1 = seen.iter().find(|c| c.id == "slow" && c.succeeded).unwrap().at;
    assert!(t1 - t0 >= Duration::from_secs(2), "retried after {:?}, before its 2 s delay", t1 - t0);
    let others: Vec<&Call> = seen.iter().filter(|c| c.id.starts_with("other-")).collect();
    assert_eq!(others.len(), 30, "all other events handled while the retry waited");
    for partition in 0..3 {
        assert!(
            others.iter().any(|c| c.partition == partition && c.at > t0 && c.at < t1),
            "partition {partition} flowed during the wait"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_delay_longer_than_max_poll_interval_keeps_the_retry_group_member() {
    let run = unique("long");
    // librdkafka requires max.poll.interval.ms >= session.timeout.ms (6 s in these tests).
    let config = config(&run, &["long_delay"]).with_consumer_property("max.poll.interval.ms", "6000");
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    let topic = format!("{run}.long");
    produce(&producer(), &topic, "k", &job("patient", 1), &[], None).await;
    let seen = wait_for(&topic, Duration::from_secs(90), |c| c.iter().any(|c| c.succeeded)).await;
    let health = runtime.health();
    runtime.shutdown().await.expect("shutdown");

    assert_eq!(seen.len(), 2);
    assert!(seen[1].at - seen[0].at >= Duration::from_secs(9), "waited {:?}", seen[1].at - seen[0].at);
    let retry_group = &health.groups[&format!("{run}-svc-retry")];
    assert_eq!(retry_group.revocations, 0, "the retry member was never kicked out: {health:?}");
    assert!(retry_group.assigned_partitions > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_land_in_the_dlq_with_their_origin_and_attempt_count() {
    let run = unique("exhausted");
    let config = config(&run, &["exhausted"]).with_topic_cleanup_policy("compact,delete");
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    let topic = format!("{run}.exhausted");
    let producer = producer();
    let mut origins = HashMap::new();
    for i in 0..3 {
        let at = produce(
            &producer,
            &topic,
            &format!("key-{i}"),
            &job(&format!("doomed-{i}"), 99),
            &[("trace-id", "abc")],
            None,
        )
        .await;
        origins.insert(format!("key-{i}"), at);
    }
    let letters = read_topic(&format!("{topic}.dlq"), 3);
    runtime.shutdown().await.expect("shutdown");

    assert_eq!(letters.len(), 3);
    for letter in &letters {
        let (partition, offset) = origins[&key(letter)];
        assert_eq!(header(letter, h::RETRY_ATTEMPTS).as_deref(), Some("3"), "1 attempt + 2 retries");
        assert_eq!(header(letter, h::DLQ_ERROR_KIND).as_deref(), Some("retries-exhausted"));
        assert_eq!(
            header(letter, h::ORIGINAL_TOPIC).as_deref(),
            Some(topic.as_str()),
            "origin survives the retry topic"
        );
        assert_eq!(header(letter, h::ORIGINAL_PARTITION), Some(partition.to_string()));
        assert_eq!(header(letter, h::ORIGINAL_OFFSET), Some(offset.to_string()));
        assert_eq!(header(letter, "trace-id").as_deref(), Some("abc"));
        assert_eq!(header(letter, h::RETRY_ATTEMPT), None, "retry bookkeeping is not carried into the DLQ");
    }
    let per_id = calls(&topic).into_iter().fold(HashMap::<String, u32>::new(), |mut m, c| {
        *m.entry(c.id).or_default() += 1;
        m
    });
    assert!(per_id.values().all(|&n| n == 3), "{per_id:?}");
    // Provisioned with the seeds' retention: 90 days for dead letters, 7 days for retries.
    assert_eq!(topic_config(&format!("{topic}.dlq"), "retention.ms").await.as_deref(), Some("7776000000"));
    assert_eq!(topic_config(&format!("{topic}.retry"), "retention.ms").await.as_deref(), Some("604800000"));
    // KAFKA_TOPIC_CLEANUP_POLICY applies to the handler's topic only.
    assert_eq!(topic_config(&topic, "cleanup.policy").await.as_deref(), Some("compact,delete"));
}
