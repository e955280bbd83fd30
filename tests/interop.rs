//! Side by side with the clients of the services being replaced: Kafka's Java client (and
//! KafkaJS, which partitions the same way) and the runtime must agree on where a key goes, and
//! a Java consumer must read what the production profile publishes.
//!
//! The Java side is `tests/java/Interop.java`, run with the `kafka-clients` jar of the test
//! broker's Maven classpath (`KAFKA_EVENTS_TEST_JAVA_CLASSPATH`, set by `scripts/test.sh`).

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::{brokers, config, create_topic, producer_for, unique};
use kafka_events::prelude::*;
use kafka_events::PublishOptions;
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};
use validator::Validate;

const PARTITIONS: i32 = 6;

#[derive(Debug, Serialize, Deserialize, Validate, PartialEq)]
struct Order {
    #[validate(length(min = 1))]
    id: String,
    amount: u32,
}

/// Registered only so that the runtime has a handler to run; these tests publish.
#[kafka_handler(topic = "interop_sink", retry(mode = "in_place"))]
async fn interop_sink(_event: Order) -> Result<(), HandlerError> {
    Ok(())
}

/// Runs `tests/java/Interop.java` with `args`; returns its standard output, one line per record.
fn java(args: &[&str]) -> Vec<String> {
    let classpath_file = std::env::var("KAFKA_EVENTS_TEST_JAVA_CLASSPATH").expect(
        "KAFKA_EVENTS_TEST_JAVA_CLASSPATH is not set: run the suite with `scripts/test.sh` (it resolves Kafka's Java client)",
    );
    let classpath = std::fs::read_to_string(&classpath_file).expect("the classpath file");
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("java")
        .arg(format!("-Dlog4j2.configurationFile={root}/scripts/kafka/log4j2.properties"))
        .args(["-cp", classpath.trim(), &format!("{root}/tests/java/Interop.java")])
        .args(args)
        .output()
        .expect("run java");
    assert!(output.status.success(), "java {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8").lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_event_lands_on_the_partition_kafkas_java_client_picks_for_its_key() {
    let run = unique("partitioner");
    let (java_topic, rust_topic) = (format!("{run}.java"), format!("{run}.rust"));
    create_topic(&java_topic, PARTITIONS).await;
    create_topic(&rust_topic, PARTITIONS).await;
    let keys: Vec<String> = (0..300).map(|i| format!("customer-{i}")).collect();

    let mut args = vec!["produce", &brokers(), &java_topic].into_iter().map(String::from).collect::<Vec<_>>();
    args.extend(keys.iter().cloned());
    let java_partition: BTreeMap<String, i32> = java(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .iter()
        .map(|line| {
            let (key, partition) = line.split_once(' ').expect("`KEY PARTITION`");
            (key.to_string(), partition.parse().expect("partition"))
        })
        .collect();
    assert_eq!(java_partition.len(), keys.len(), "the Java client published every key");

    let runtime = kafka_events::runtime::launch(config(&run, &["interop_sink"])).await.expect("launch");
    let publisher = runtime.publisher();
    let mut runtime_partition = BTreeMap::new();
    for (i, key) in keys.iter().enumerate() {
        let order = Order { id: key.clone(), amount: i as u32 };
        let delivery = publisher.publish_with("rust", &order, PublishOptions::new().key(key)).await.expect("publish");
        runtime_partition.insert(key.clone(), delivery.partition);
    }
    runtime.shutdown().await.expect("shutdown");
    let differing: Vec<_> = keys.iter().filter(|k| java_partition[*k] != runtime_partition[*k]).collect();
    assert!(
        differing.is_empty(),
        "{} of {} keys land elsewhere than with Java: {differing:?}",
        differing.len(),
        keys.len()
    );

    // librdkafka's own default partitioner (CRC32) would not have agreed: what this test guards.
    let raw = producer_for(&brokers());
    let mut crc32_differs = 0;
    for key in &keys {
        let record = FutureRecord::to(&rust_topic).key(key).payload("x");
        let delivery = raw.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).expect("produce");
        crc32_differs += usize::from(delivery.partition != java_partition[key]);
    }
    println!("librdkafka's default partitioner puts {crc32_differs} of {} keys elsewhere than Java", keys.len());
    assert!(crc32_differs > 0, "librdkafka's default partitioner differs from Java's for some keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_java_consumer_reads_what_the_production_profile_publishes() {
    let run = unique("javaconsumer");
    let topic = format!("{run}.orders");
    create_topic(&topic, 3).await;
    create_topic(&format!("{run}.interop_sink"), 1).await;
    // The production profile as a service would run it (snappy compression, acks=all,
    // idempotence), provisioning nothing: the topics exist.
    let config = Config::production(format!("{run}-svc"), brokers())
        .with_topic_prefix(format!("{run}."))
        .with_handlers(["interop_sink"]);
    assert!(format!("{config:?}").contains("\"compression.type\": \"snappy\""), "{config:?}");
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    let publisher = runtime.publisher();
    let orders: Vec<Order> = (0..200).map(|i| Order { id: format!("o{i}"), amount: i * 10 }).collect();
    for order in &orders {
        let options = PublishOptions::new().key(&order.id).header("x-source", "kafka-events");
        publisher.publish_with("orders", order, options).await.expect("publish");
    }
    runtime.shutdown().await.expect("shutdown");

    let lines = java(&["consume", &brokers(), &topic, &orders.len().to_string()]);
    assert_eq!(lines.len(), orders.len(), "the Java consumer read every record: {lines:?}");
    let mut read: BTreeMap<String, Order> = BTreeMap::new();
    for line in &lines {
        let mut fields = line.splitn(4, ' ');
        let (key, _partition, value, headers) =
            (fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap_or(""));
        assert!(headers.contains("x-source=kafka-events;"), "headers arrive: {line}");
        assert!(headers.contains("x-message-id="), "the message id arrives: {line}");
        let order: Order = serde_json::from_str(value).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(order.id, key, "{line}");
        read.insert(key.to_string(), order);
    }
    for order in &orders {
        assert_eq!(read.get(&order.id), Some(order), "{} read back unchanged", order.id);
    }
}
