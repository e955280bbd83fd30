//! The HTTP endpoint against a real broker: `/metrics` counts exactly what happened,
//! `/health/ready` reports the groups and turns 503 when a partition stalls, `/health/live`
//! stays 200.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{config, create_topic, eventually, produce, produce_many, producer, unique, wait_for};
use kafka_events::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Job {
    #[validate(length(min = 1))]
    id: String,
    /// `ok`, `flaky` (fails its first attempt) or `fatal` (a permanent error).
    mode: String,
}

fn job(id: &str, mode: &str) -> Vec<u8> {
    serde_json::to_vec(&Job { id: id.into(), mode: mode.into() }).unwrap()
}

fn localhost_any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{addr}{path}")).await.expect("GET");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// The sum of the samples of `name` whose labels include every `key="value"` in `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

// ------------------------------------------------------------------------------------ metrics

#[kafka_handler(topic = "metered", retry(max = 3, initial = "10ms", max_delay = "10ms", jitter = 0.0), dlq)]
async fn metered(event: Job, ctx: MessageContext) -> Result<(), HandlerError> {
    let failure = match event.mode.as_str() {
        "flaky" if ctx.attempt() == 1 => Some(HandlerError::retryable("flaky on its first attempt")),
        "fatal" => Some(HandlerError::permanent("fatal")),
        _ => None,
    };
    common::record_call(&ctx, &event.id, failure.is_none());
    failure.map_or(Ok(()), Err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_what_happened() {
    let run = unique("metered");
    let config = config(&run, &["metered"]).with_http(localhost_any_port());
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    let addr = runtime.http_addr().expect("HTTP endpoint on");
    let topic = format!("{run}.metered");
    let producer = producer();
    let mut sends = Vec::new();
    for i in 0..480 {
        sends.push((format!("ok-{i}"), job(&format!("ok-{i}"), "ok")));
    }
    for i in 0..20 {
        sends.push((format!("flaky-{i}"), job(&format!("flaky-{i}"), "flaky")));
    }
    for i in 0..10 {
        sends.push((format!("fatal-{i}"), job(&format!("fatal-{i}"), "fatal")));
    }
    for i in 0..5 {
        sends.push((format!("junk-{i}"), b"{not json".to_vec()));
    }
    // Messages per partition of the handler's topic, and of its retry topic (the flaky ones).
    let mut per_partition = std::collections::BTreeMap::<i32, f64>::new();
    for (key, payload) in &sends {
        let (partition, _) = produce(&producer, &topic, key, payload, &[], None).await;
        *per_partition.entry(partition).or_default() += 1.0;
    }
    // A handler-less publish through the runtime's publisher: 7 acknowledged, 1 refused (too large).
    create_topic(&format!("{run}.metered.audit"), 1).await;
    let publisher = runtime.publisher();
    for i in 0..7 {
        publisher.publish("metered.audit", &serde_json::json!({ "n": i })).await.expect("publish");
    }
    let too_large = vec![b'x'; 2_000_000];
    publisher
        .publish_bytes("metered.audit", &too_large, PublishOptions::new())
        .await
        .expect_err("over message.max.bytes");
    // 480 + 20 × 2 + 10 handler calls; the 5 undecodable messages never reach the handler.
    wait_for(&topic, Duration::from_secs(90), |calls| calls.len() >= 530).await;
    let handler = "operability::metered";
    let labels = [("topic", topic.as_str()), ("handler", handler)];
    // The counters are bumped right after the handler returns; the scrape may come first.
    let text = eventually("the counters of every handled message", Duration::from_secs(30), || async {
        let (status, text) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        let processed = sample(&text, "kafka_events_messages_processed_total", &labels);
        let dead_lettered = sample(&text, "kafka_events_messages_dead_lettered_total", &labels);
        let consumed = sample(&text, "kafka_events_messages_consumed_total", &[]);
        if processed >= 500.0 && dead_lettered >= 15.0 && consumed >= 535.0 {
            Ok(text)
        } else {
            Err(format!("processed {processed}, dead-lettered {dead_lettered}, consumed {consumed}"))
        }
    })
    .await;
    runtime.shutdown().await.expect("shutdown");

    let count = |name: &str, extra: &[(&str, &str)]| {
        let all: Vec<(&str, &str)> = labels.iter().copied().chain(extra.iter().copied()).collect();
        sample(&text, name, &all)
    };
    assert_eq!(count("kafka_events_messages_processed_total", &[]), 500.0, "{text}");
    assert_eq!(count("kafka_events_messages_failed_total", &[("kind", "retryable")]), 20.0);
    assert_eq!(count("kafka_events_messages_failed_total", &[("kind", "permanent")]), 10.0);
    assert_eq!(count("kafka_events_messages_failed_total", &[("kind", "decode")]), 5.0);
    assert_eq!(count("kafka_events_messages_failed_total", &[]), 35.0);
    assert_eq!(count("kafka_events_messages_retried_total", &[]), 20.0);
    assert_eq!(count("kafka_events_messages_dead_lettered_total", &[("kind", "permanent")]), 10.0);
    assert_eq!(count("kafka_events_messages_dead_lettered_total", &[("kind", "decode")]), 5.0);
    assert_eq!(count("kafka_events_handler_duration_seconds_count", &[]), 530.0, "one observation per handler call");
    let main = format!("{run}-svc-main");
    assert!(sample(&text, "kafka_events_rebalances_total", &[("group", &main), ("kind", "assigned")]) >= 1.0);
    assert!(sample(&text, "kafka_events_commits_total", &[("group", &main)]) >= 1.0);
    assert!(text.contains("# TYPE kafka_events_handler_duration_seconds histogram"), "{text}");
    // Throughput per topic and partition: each message read once its outcome is durable.
    for (partition, sent) in &per_partition {
        let partition = partition.to_string();
        let consumed =
            sample(&text, "kafka_events_messages_consumed_total", &[("topic", &topic), ("partition", &partition)]);
        assert_eq!(consumed, *sent, "partition {partition}: {text}");
    }
    assert_eq!(per_partition.values().sum::<f64>(), 515.0);
    let retry_topic = format!("{topic}.retry");
    assert_eq!(sample(&text, "kafka_events_messages_consumed_total", &[("topic", &retry_topic)]), 20.0, "{text}");
    // Publishes: counted, their latency observed once each, the refused one a failure.
    let audit = [("topic", format!("{run}.metered.audit"))];
    let audit: Vec<(&str, &str)> = audit.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(sample(&text, "kafka_events_messages_published_total", &audit), 7.0, "{text}");
    assert_eq!(sample(&text, "kafka_events_publish_latency_seconds_count", &audit), 7.0);
    assert!(sample(&text, "kafka_events_publish_latency_seconds_sum", &audit) > 0.0);
    assert_eq!(sample(&text, "kafka_events_publish_failures_total", &audit), 1.0);
}

// ---------------------------------------------------------------------------------- readiness

#[kafka_handler(topic = "guarded", retry(max = 0))]
async fn guarded(event: Job, ctx: MessageContext) -> Result<(), HandlerError> {
    common::record_call(&ctx, &event.id, event.mode != "fatal");
    if event.mode == "fatal" {
        return Err(HandlerError::permanent("cannot be handled"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reports_the_groups_and_turns_503_when_a_partition_stalls() {
    let run = unique("ready");
    let config = config(&run, &["guarded"]).with_http(localhost_any_port());
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    let addr = runtime.http_addr().expect("HTTP endpoint on");
    let topic = format!("{run}.guarded");
    let producer = producer();
    produce(&producer, &topic, "a", &job("first", "ok"), &[], Some(0)).await;
    wait_for(&topic, Duration::from_secs(60), |calls| calls.iter().any(|c| c.id == "first")).await;

    let (status, body) = get(addr, "/health/ready").await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    let main = format!("{run}-svc-main");
    let group = report["groups"].as_array().unwrap().iter().find(|g| g["group"] == main.as_str()).expect("main group");
    assert_eq!(group["state"], "running");
    assert_eq!(group["assigned_partitions"], 3);
    assert!(group["seconds_since_last_poll"].as_f64().unwrap() < 5.0, "{body}");

    produce(&producer, &topic, "a", &job("poison", "fatal"), &[], Some(0)).await;
    wait_for(&topic, Duration::from_secs(60), |calls| calls.iter().any(|c| c.id == "poison")).await;
    // The stall is recorded right after the handler returns.
    let (body, _) = wait_status(addr, "/health/ready", 503, Duration::from_secs(30)).await;
    println!("/health/ready with a stalled partition: {body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["status"], "unavailable");
    assert_eq!(report["stalled"][0]["topic"], topic.as_str());
    assert_eq!(report["stalled"][0]["partition"], 0);
    assert_eq!(report["stalled"][0]["kind"], "permanent");
    assert!(report["problems"][0].as_str().unwrap().contains("stalled"), "{body}");
    let (live, body) = get(addr, "/health/live").await;
    assert_eq!(live, 200, "a stalled partition does not make the process dead: {body}");
    let (_, text) = get(addr, "/metrics").await;
    let stalled = [("topic", topic.as_str()), ("partition", "0"), ("kind", "permanent")];
    assert_eq!(sample(&text, "kafka_events_partition_stalled", &stalled), 1.0, "{text}");
    assert_eq!(sample(&text, "kafka_events_partition_stalled", &[]), 1.0, "no other partition is stalled: {text}");
    runtime.shutdown().await.expect("shutdown");
}

// ----------------------------------------------------------------------------------------- lag

static LAG_RELEASED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static LAG_RELEASE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Holds every message until the test releases it.
#[kafka_handler(topic = "lagging", dlq)]
async fn lagging(event: Job, ctx: MessageContext) -> Result<(), HandlerError> {
    use std::sync::atomic::Ordering;
    while !LAG_RELEASED.load(Ordering::SeqCst) {
        let released = LAG_RELEASE.notified();
        if LAG_RELEASED.load(Ordering::SeqCst) {
            break;
        }
        released.await;
    }
    common::record_call(&ctx, &event.id, true);
    Ok(())
}

/// Polls the runtime's health until `done` holds for its lag (the monitor measures on its own
/// schedule; there is no event to await).
async fn wait_lag(runtime: &kafka_events::runtime::Runtime, what: &str, done: impl Fn(i64) -> bool) -> i64 {
    eventually(what, Duration::from_secs(60), || async {
        let lag: i64 = runtime.health().lag.iter().map(|l| l.lag).sum();
        if done(lag) {
            Ok(lag)
        } else {
            Err(format!("lag {lag}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_reported_makes_the_runtime_not_ready_and_drops_to_zero_after_catching_up() {
    let run = unique("lag");
    let topic = format!("{run}.lagging");
    create_topic(&topic, 1).await;
    let config =
        config(&run, &["lagging"]).with_http(localhost_any_port()).with_lag_monitor(Duration::from_millis(200), 1000);
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    let addr = runtime.http_addr().expect("HTTP endpoint on");
    let events: Vec<(String, Vec<u8>)> = (0..2000).map(|i| (format!("k{i}"), job(&format!("lag-{i}"), "ok"))).collect();
    produce_many(&producer(), &topic, &events).await;

    // The handler holds the first message: nothing is committed, so all 2,000 are lag.
    let lag = wait_lag(&runtime, "lag 2,000", |lag| lag == 2000).await;
    assert_eq!(lag, 2000);
    let health = runtime.health();
    let main: Vec<_> = health.lag.iter().filter(|l| l.topic == topic).collect();
    assert_eq!(main.len(), 1, "{:?}", health.lag);
    assert_eq!((main[0].partition, main[0].high_watermark, main[0].committed), (0, 2000, None));
    assert!(health.lag.iter().filter(|l| l.topic != topic).all(|l| l.lag == 0), "the retry topic is empty");
    let (status, body) = get(addr, "/health/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("lags 2000 messages (threshold 1000)"), "{body}");
    let (_, metrics) = get(addr, "/metrics").await;
    assert_eq!(sample(&metrics, "kafka_events_consumer_lag", &[("topic", &topic)]), 2000.0, "{metrics}");

    LAG_RELEASED.store(true, std::sync::atomic::Ordering::SeqCst);
    LAG_RELEASE.notify_waiters();
    wait_for(&topic, Duration::from_secs(60), |calls| calls.len() >= 2000).await;
    wait_lag(&runtime, "lag 0 after catching up", |lag| lag == 0).await;
    let (status, body) = get(addr, "/health/ready").await;
    assert_eq!(status, 200, "{body}");
    runtime.shutdown().await.expect("shutdown");
}

// ------------------------------------------------------------------------- broker down and up

#[kafka_handler(topic = "resilient", dlq)]
async fn resilient(event: Job, ctx: MessageContext) -> Result<(), HandlerError> {
    common::record_call(&ctx, &event.id, true);
    Ok(())
}

/// Polls `path` until it answers `status` (the runtime notices broker changes on its own
/// schedule); returns the body and how long it took.
async fn wait_status(addr: SocketAddr, path: &str, status: u16, within: Duration) -> (String, Duration) {
    let started = tokio::time::Instant::now();
    let body = eventually(&format!("{path} to answer {status}"), within, || async {
        let (now, body) = get(addr, path).await;
        if now == status {
            Ok(body)
        } else {
            Err(format!("{now} {body}"))
        }
    })
    .await;
    (body, started.elapsed())
}

/// The broker is librdkafka's mock cluster, hosted by this test on a loopback port: it can be
/// taken down and brought back with its data. The suite's Kafka node is shared by every test
/// running in parallel, so it is not the one taken down; `tests/failover.rs` kills and restarts
/// the nodes of a three-node Kafka cluster of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_while_the_broker_is_down_and_the_runtime_recovers_when_it_is_back() {
    let broker = kafka_events::embedded::EmbeddedBroker::start().expect("mock cluster");
    let run = unique("resilient");
    let topic = format!("{run}.resilient");
    for name in [topic.clone(), format!("{topic}.retry"), format!("{topic}.dlq")] {
        broker.create_topic(&name, 1).expect("create topic");
    }
    let config = config(&run, &["resilient"])
        .with_brokers(broker.bootstrap_servers())
        .with_topic_provisioning(false)
        .with_http(localhost_any_port())
        .with_lag_monitor(Duration::from_millis(200), 1000);
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    let addr = runtime.http_addr().expect("HTTP endpoint on");
    let producer = common::producer_for(broker.bootstrap_servers());

    produce(&producer, &topic, "a", &job("before", "ok"), &[], None).await;
    wait_for(&topic, Duration::from_secs(60), |calls| calls.iter().any(|c| c.id == "before")).await;
    wait_status(addr, "/health/ready", 200, Duration::from_secs(30)).await;

    broker.set_down(true).expect("broker down");
    let (body, took) = wait_status(addr, "/health/ready", 503, Duration::from_secs(30)).await;
    println!("not ready {took:?} after the broker went down");
    assert!(body.contains("no broker has answered"), "{body}");
    let (live, body) = get(addr, "/health/live").await;
    assert_eq!(live, 200, "the process itself is fine: {body}");

    broker.set_down(false).expect("broker up");
    let (_, took) = wait_status(addr, "/health/ready", 200, Duration::from_secs(60)).await;
    println!("ready again {took:?} after the broker came back");
    produce(&producer, &topic, "a", &job("after", "ok"), &[], None).await;
    wait_for(&topic, Duration::from_secs(60), |calls| calls.iter().any(|c| c.id == "after")).await;
    runtime.shutdown().await.expect("shutdown");
}
