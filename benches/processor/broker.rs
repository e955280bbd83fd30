//! The broker side of the benchmark: topics named for this run, and a fast producer.

use kafka_events::embedded::EmbeddedBroker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

use crate::Reading;

pub struct Bench<'a> {
    pub brokers: String,
    /// Prefix of every topic and group of this run (letters only: group ids must not look like
    /// timestamps).
    pub run: String,
    embedded: Option<&'a EmbeddedBroker>,
}

impl<'a> Bench<'a> {
    pub fn new(embedded: Option<&'a EmbeddedBroker>) -> Self {
        let brokers = match embedded {
            Some(broker) => broker.bootstrap_servers().to_string(),
            None => std::env::var("KAFKA_BROKERS").unwrap(),
        };
        // BENCH_RUN: a run shared by processes (the instruction counts produce in one process
        // and consume in another).
        let run = std::env::var("BENCH_RUN")
            .unwrap_or_else(|_| format!("bench{}", std::process::id()))
            .chars()
            .map(|c| if c.is_ascii_digit() { char::from(b'a' + c as u8 - b'0') } else { c })
            .collect();
        Self { brokers, run, embedded }
    }

    /// Creates `<run>.<name>` with its `.dlq` and `.retry` topics; returns its full name.
    pub async fn topic(&self, name: &str, partitions: i32, with_retry_and_dlq: bool) -> String {
        let topic = format!("{}.{name}", self.run);
        let mut names = vec![topic.clone()];
        if with_retry_and_dlq {
            names.extend([format!("{topic}.dlq"), format!("{topic}.retry")]);
        }
        match self.embedded {
            Some(broker) => names.iter().for_each(|n| broker.create_topic(n, partitions).unwrap()),
            None => {
                let admin: AdminClient<DefaultClientContext> =
                    ClientConfig::new().set("bootstrap.servers", &self.brokers).create().unwrap();
                let topics: Vec<NewTopic<'_>> =
                    names.iter().map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1))).collect();
                for result in admin.create_topics(&topics, &AdminOptions::new()).await.unwrap() {
                    result.unwrap();
                }
            }
        }
        topic
    }

    /// Deletes every topic of this run (`<run>.…`, with the retry and dead-letter topics the
    /// runtime used), so that repeated runs do not pile partitions up on the broker (a few
    /// hundred runs made a development node run out of file descriptors).
    pub async fn delete_topics(&self) {
        if self.embedded.is_some() {
            return;
        }
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", &self.brokers).create().unwrap();
        let metadata = admin.inner().fetch_metadata(None, std::time::Duration::from_secs(10)).unwrap();
        let prefix = format!("{}.", self.run);
        let names: Vec<&str> =
            metadata.topics().iter().map(|topic| topic.name()).filter(|name| name.starts_with(&prefix)).collect();
        if names.is_empty() {
            return;
        }
        for result in admin.delete_topics(&names, &AdminOptions::new()).await.unwrap() {
            if let Err((topic, error)) = result {
                eprintln!("could not delete the benchmark topic {topic}: {error}");
            }
        }
    }

    /// Produces `messages` readings keyed by one of `keys` sensors, batched as producers do.
    pub async fn produce(&self, topic: &str, messages: u64, keys: u64) {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("linger.ms", "20")
            .set("queue.buffering.max.messages", "1000000");
        let producer: FutureProducer = config.create().unwrap();
        // `BENCH_HEADERS=1`: each message carries the headers the runtime's publisher writes
        // (`traceparent`, `x-message-id`, `x-correlation-id`), as messages between services do.
        let with_headers = std::env::var("BENCH_HEADERS").is_ok_and(|v| v == "1");
        let mut pending = Vec::with_capacity(10_000);
        for seq in 0..messages {
            let sensor = format!("s-{}", seq % keys);
            let payload = serde_json::to_vec(&Reading { sensor: sensor.clone(), value: 21.5, seq }).unwrap();
            let mut record = FutureRecord::to(topic).key(&sensor).payload(&payload);
            if with_headers {
                let id = format!("{seq:032x}");
                let traceparent = format!("00-{seq:032x}-{seq:016x}-01");
                record = record.headers(
                    OwnedHeaders::new_with_capacity(3)
                        .insert(Header { key: "traceparent", value: Some(&traceparent) })
                        .insert(Header { key: "x-message-id", value: Some(&id) })
                        .insert(Header { key: "x-correlation-id", value: Some(&id) }),
                );
            }
            pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
            if pending.len() == 10_000 {
                for delivery in pending.drain(..) {
                    delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
                }
            }
        }
        for delivery in pending {
            delivery.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
    }
}
