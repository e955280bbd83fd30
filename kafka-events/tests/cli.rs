//! The `kafka-events` command against a real broker (`KAFKA_BROKERS`, set by `scripts/test.sh`).

use std::process::{Command, Output};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect("KAFKA_BROKERS is not set: run the suite with `scripts/test.sh`")
}

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kafka-events"))
        .args(args)
        .env("KAFKA_BROKERS", brokers())
        .env("SERVICE_NAME", "cli-tests")
        .output()
        .expect("run kafka-events")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn dlq_commands_read_a_dead_letter_topic_and_fail_clearly() {
    // A name of letters only, unique to this run.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let letters: String = nanos.to_string().bytes().map(|d| char::from(b'a' + (d - b'0'))).collect();
    let topic = format!("__cli_{letters}.orders.dlq");
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
    admin.create_topics(&[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))], &AdminOptions::new()).await.unwrap();
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", brokers()).create().unwrap();
    let headers = OwnedHeaders::new()
        .insert(Header { key: "x-original-topic", value: Some("orders") })
        .insert(Header { key: "x-dlq-reason", value: Some("amount is negative") })
        .insert(Header { key: "x-dlq-error-kind", value: Some("validation") });
    producer
        .send(FutureRecord::to(&topic).key("k-1").payload("{\"amount\":-1}").headers(headers), Duration::from_secs(10))
        .await
        .unwrap();

    let stats = cli(&["dlq", "stats", &topic, "--scan"]);
    assert!(stats.status.success(), "{}", text(&stats.stderr));
    let out = text(&stats.stdout);
    assert!(out.contains(&format!("% {topic}: 1 dead letters in 1 partitions")), "{out}");
    assert!(out.contains("1  validation"), "{out}");

    let peek = cli(&["dlq", "peek", &topic, "-n", "1"]);
    let out = text(&peek.stdout);
    assert!(out.contains("key:    k-1"), "{out}");
    assert!(out.contains("reason: amount is negative (validation)"), "{out}");
    assert!(out.contains("value:  {\"amount\":-1}"), "{out}");

    let dry = cli(&["dlq", "replay", &topic, "--dry-run"]);
    let out = text(&dry.stdout);
    assert!(out.contains("would replay [0] @0 -> orders"), "{out}");
    assert!(out.contains("% dry run: would replay 1 dead letters"), "{out}");

    let missing = cli(&["dlq", "stats", "no.such.topic.dlq"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(text(&missing.stderr).trim(), "error: topic `no.such.topic.dlq` does not exist");

    let usage = cli(&["dlq", "replay"]);
    assert_eq!(usage.status.code(), Some(2), "clap usage error");
    assert!(text(&usage.stderr).contains("<TOPIC>"));
}
