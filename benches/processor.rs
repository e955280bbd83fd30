//! Framework overhead: the same backlog consumed by a raw rust-rdkafka loop (B0) and by a
//! kafka-events no-op typed handler (B1: JSON decode + validate + lanes + offset tracking +
//! commits), side by side in one process against one broker.
//!
//! ```sh
//! cargo bench --bench processor                               # embedded broker (mock cluster)
//! KAFKA_BROKERS=127.0.0.1:19092 cargo bench --bench processor  # a real broker (e.g. Tansu)
//! BENCH_MESSAGES=200000 cargo bench --bench processor
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_events::embedded::EmbeddedBroker;
use kafka_events::prelude::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Reading {
    #[validate(length(min = 1))]
    sensor: String,
    #[validate(range(min = -100.0, max = 100.0))]
    value: f64,
    seq: u64,
}

static HANDLED: AtomicU64 = AtomicU64::new(0);
static WINDOW: Mutex<Option<(Instant, Instant)>> = Mutex::new(None);

fn mark() {
    let now = Instant::now();
    let mut window = WINDOW.lock().unwrap();
    let (first, _) = window.get_or_insert((now, now));
    *window = Some((*first, now));
}

#[kafka_handler(topic = "bench", dlq)]
async fn noop(reading: Reading) -> Result<(), HandlerError> {
    std::hint::black_box(&reading);
    mark();
    HANDLED.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

const PARTITIONS: i32 = 3;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let messages: u64 = std::env::var("BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let embedded = match std::env::var("KAFKA_BROKERS") {
        Ok(_) => None,
        Err(_) => Some(EmbeddedBroker::start().expect("embedded broker")),
    };
    let brokers = match &embedded {
        Some(broker) => broker.bootstrap_servers().to_string(),
        None => std::env::var("KAFKA_BROKERS").unwrap(),
    };
    let run = format!("bench{}", std::process::id());
    let topic = format!("{run}.bench");
    match &embedded {
        Some(broker) => {
            broker.create_topic(&topic, PARTITIONS).unwrap();
            broker.create_topic(&format!("{topic}.dlq"), PARTITIONS).unwrap();
            broker.create_topic(&format!("{topic}.retry"), PARTITIONS).unwrap();
        }
        None => {
            let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
            let (dlq, retry) = (format!("{topic}.dlq"), format!("{topic}.retry"));
            let topics = [&topic, &dlq, &retry].map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)));
            admin.create_topics(&topics, &AdminOptions::new()).await.unwrap();
        }
    }

    let produced = Instant::now();
    produce(&brokers, &topic, messages).await;
    println!("produced {messages} messages in {:.2?} to {PARTITIONS} partitions of `{topic}` ({})", produced.elapsed(), if embedded.is_some() { "embedded mock cluster" } else { brokers.as_str() });

    let b0 = raw_consume(&brokers, &topic, messages, false);
    let b0_decode = raw_consume(&brokers, &topic, messages, true);
    let b1 = framework_consume(&brokers, &run, messages).await;
    println!();
    println!("| scenario | messages | seconds | msgs/s | ratio to B0 |");
    println!("|---|---|---|---|---|");
    println!("| B0 raw rust-rdkafka BaseConsumer loop | {messages} | {:.3} | {:.0} | 1.00 |", b0.as_secs_f64(), messages as f64 / b0.as_secs_f64());
    println!(
        "| B0+decode: the same loop, serde_json decode + validate each message | {messages} | {:.3} | {:.0} | {:.2} |",
        b0_decode.as_secs_f64(),
        messages as f64 / b0_decode.as_secs_f64(),
        b0.as_secs_f64() / b0_decode.as_secs_f64()
    );
    println!(
        "| B1 kafka-events no-op typed handler | {messages} | {:.3} | {:.0} | {:.2} |",
        b1.as_secs_f64(),
        messages as f64 / b1.as_secs_f64(),
        b0.as_secs_f64() / b1.as_secs_f64()
    );
}

async fn produce(brokers: &str, topic: &str, messages: u64) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let mut pending = Vec::with_capacity(10_000);
    for seq in 0..messages {
        let payload = serde_json::to_vec(&Reading { sensor: format!("s-{}", seq % 1000), value: 21.5, seq }).unwrap();
        let key = format!("s-{}", seq % 1000);
        let record = FutureRecord::to(topic).key(&key).payload(&payload);
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

/// B0: a plain consume loop with one commit at the end, timed first message → last; with
/// `decode`, each payload is also decoded and validated as the handler's type.
fn raw_consume(brokers: &str, topic: &str, messages: u64, decode: bool) -> Duration {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-raw-{decode}"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut received = 0u64;
    let mut first = None;
    while received < messages {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            let payload = rdkafka::Message::payload(&message);
            if decode {
                let reading: Reading = serde_json::from_slice(payload.unwrap_or_default()).unwrap();
                reading.validate().unwrap();
                std::hint::black_box(reading);
            } else {
                std::hint::black_box(payload);
            }
            received += 1;
        }
    }
    let elapsed = first.map(|f| f.elapsed()).unwrap_or_default();
    consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync).unwrap();
    elapsed
}

/// B1: the runtime with the no-op handler, timed first invocation → last.
async fn framework_consume(brokers: &str, run: &str, messages: u64) -> Duration {
    let config = Config::development(format!("{run}-svc"))
        .with_brokers(brokers)
        .with_topic_prefix(format!("{run}."))
        .with_topic_provisioning(false)
        .with_partition_buffer(std::env::var("BENCH_BUFFER").ok().and_then(|v| v.parse().ok()).unwrap_or(5000));
    let config = std::env::var("BENCH_PROPS").unwrap_or_default().split(',').filter(|p| !p.is_empty()).fold(config, |c, p| {
        let (k, v) = p.split_once('=').unwrap();
        c.with_consumer_property(k, v)
    });
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    while HANDLED.load(Ordering::Relaxed) < messages {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    runtime.shutdown().await.expect("shutdown");
    let (first, last) = WINDOW.lock().unwrap().expect("handled");
    last - first
}
