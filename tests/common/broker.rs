//! The broker under test, raw: producing, reading, topics, end and committed offsets.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::{brokers, eventually, unique};

/// An idempotent producer to the broker under test, batching as producers do (`linger.ms=5`).
pub fn producer() -> FutureProducer {
    producer_for(&brokers())
}

/// [`producer`] for the brokers at `bootstrap`.
pub fn producer_for(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produces one message and waits for its acknowledgement.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
    headers: &[(&str, &str)],
    partition: Option<i32>,
) -> (i32, i64) {
    let mut owned = OwnedHeaders::new();
    for (k, v) in headers {
        owned = owned.insert(Header { key: k, value: Some(*v) });
    }
    let mut record = FutureRecord::to(topic).key(key).payload(payload).headers(owned);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    let delivery = producer.send(record, Duration::from_secs(30)).await.expect("produce");
    (delivery.partition, delivery.offset)
}

/// Reads every message of `topic` from the beginning until `count` have arrived (or 60 s pass).
pub fn read_topic(topic: &str, count: usize) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut messages = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while messages.len() < count && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            messages.push(m.detach());
        }
    }
    messages
}

/// High watermarks (end offsets) of every partition of `topic`.
pub fn end_offsets(topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("client");
    (0..partitions)
        .map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks").1)
        .collect()
}

/// Offsets committed by `group` for every partition of `topic` (-1 when none).
pub fn committed_offsets(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    committed_offsets_at(&brokers(), group, topic, partitions)
}

/// [`committed_offsets`] on the brokers at `bootstrap`.
pub fn committed_offsets_at(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().expect("client");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).expect("committed offsets");
    (0..partitions)
        .map(|p| match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

/// Waits (polling the broker, up to `timeout`) until `group` has committed the end offset of
/// every partition of `topic` — every message finished (an empty partition needs no commit).
pub async fn wait_committed(group: &str, topic: &str, partitions: i32, timeout: Duration) {
    let end = end_offsets(topic, partitions);
    eventually(&format!("{group} to commit every offset of {topic}"), timeout, || async {
        let committed = committed_offsets(group, topic, partitions);
        let done = committed.iter().zip(&end).all(|(c, e)| c == e || (*e == 0 && *c == -1));
        if done {
            Ok(())
        } else {
            Err(format!("committed {committed:?} of {end:?}"))
        }
    })
    .await
}

/// The value of header `name`, as text.
pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

pub fn key(message: &OwnedMessage) -> String {
    message.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default()
}

/// Creates `topic` with `partitions` partitions (no error if it exists).
pub async fn create_topic(topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("admin");
    let results = admin
        .create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("create topics");
    for result in results {
        if let Err((name, code)) = result {
            assert_eq!(code, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists, "creating {name}");
        }
    }
}

/// Produces many `(key, payload)` messages to `topic` at once (pipelined), then waits for every
/// acknowledgement; returns `(partition, offset)` of each, in order.
pub async fn produce_many(producer: &FutureProducer, topic: &str, messages: &[(String, Vec<u8>)]) -> Vec<(i32, i64)> {
    let records: Vec<Record> = messages.iter().map(|(key, payload)| (key.clone(), payload.clone(), vec![])).collect();
    produce_records(producer, topic, &records).await
}

/// A message to produce: key, payload, headers.
pub type Record = (String, Vec<u8>, Vec<(String, String)>);

/// [`produce_many`] with headers.
pub async fn produce_records(producer: &FutureProducer, topic: &str, records: &[Record]) -> Vec<(i32, i64)> {
    let mut pending = Vec::with_capacity(records.len());
    for (key, payload, headers) in records {
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (name, value) in headers {
            owned = owned.insert(Header { key: name, value: Some(value.as_str()) });
        }
        let record = FutureRecord::to(topic).key(key.as_str()).payload(payload.as_slice()).headers(owned);
        pending.push(producer.send_result(record).map_err(|(e, _)| e).expect("enqueue"));
    }
    let mut acks = Vec::with_capacity(pending.len());
    for delivery in pending {
        let delivery = delivery.await.expect("delivery future").map_err(|(e, _)| e).expect("produce");
        acks.push((delivery.partition, delivery.offset));
    }
    acks
}

/// Reads `topic` (one partition at a time, every partition) from the start to its end as a
/// consumer with `isolation.level`, returning every message; the end is the partition's EOF,
/// which for `read_committed` is the last stable offset.
pub fn read_to_end(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .create()
        .expect("reader");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning).expect("partition");
    }
    consumer.assign(&list).expect("assign");
    let mut messages = Vec::new();
    let mut at_end = std::collections::HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while at_end.len() < partitions as usize {
        assert!(std::time::Instant::now() < deadline, "reading {topic} to its end took over 60 s");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => messages.push(m.detach()),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    messages
}

/// The value of config `name` of `topic`, as the broker describes it.
pub async fn topic_config(topic: &str, name: &str) -> Option<String> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("admin");
    let results = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .expect("describe configs");
    let resource = results.into_iter().next()?.expect("describe topic");
    resource.get(name).and_then(|entry| entry.value.clone())
}

/// How many members each of `groups` has and its state (`EMPTY` once every member left, `DEAD`
/// for a group that does not exist), as Kafka's Java admin client describes them
/// (`tests/java/Groups.java`): librdkafka's DescribeGroups reports every `consumer`-protocol group
/// `Dead` with no members, so it cannot tell an empty group from a full one.
pub fn group_members(groups: &[&str]) -> Vec<(usize, String)> {
    let classpath_file = std::env::var("KAFKA_EVENTS_TEST_JAVA_CLASSPATH").expect(
        "KAFKA_EVENTS_TEST_JAVA_CLASSPATH is not set: run the suite with `scripts/test.sh` (it resolves Kafka's Java client)",
    );
    let classpath = std::fs::read_to_string(&classpath_file).expect("the classpath file");
    let root = env!("CARGO_MANIFEST_DIR");
    let output = std::process::Command::new("java")
        .arg(format!("-Dlog4j2.configurationFile={root}/scripts/kafka/log4j2.properties"))
        .args(["-cp", classpath.trim(), &format!("{root}/tests/java/Groups.java"), &brokers()])
        .args(groups)
        .output()
        .expect("run java");
    assert!(output.status.success(), "describing {groups:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let described: Vec<(usize, String)> = text
        .lines()
        .map(|line| {
            let mut parts = line.split(' ').skip(1);
            let members = parts.next().and_then(|m| m.parse().ok()).expect("members");
            (members, parts.next().unwrap_or_default().to_string())
        })
        .collect();
    assert_eq!(described.len(), groups.len(), "one line per group: {text}");
    described
}
