//! Framework overhead: the same backlog consumed by a raw rust-rdkafka loop (B0) and by a
//! kafka-events no-op typed handler (B1: JSON decode + validate + lanes + offset tracking +
//! commits), side by side in one process against one broker; and the retry path (B3: 10 % of
//! the messages fail once and go through the retry topic) against B1.
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

/// Successful invocations of one scenario, and the time from its first invocation to its last.
struct Meter {
    handled: AtomicU64,
    window: Mutex<Option<(Instant, Instant)>>,
}

impl Meter {
    const fn new() -> Self {
        Self { handled: AtomicU64::new(0), window: Mutex::new(None) }
    }
    fn invoked(&self) {
        let now = Instant::now();
        let mut window = self.window.lock().unwrap();
        let (first, _) = window.get_or_insert((now, now));
        *window = Some((*first, now));
    }
    fn succeeded(&self) {
        self.handled.fetch_add(1, Ordering::Relaxed);
    }
}

static B1: Meter = Meter::new();
static B3: Meter = Meter::new();

#[kafka_handler(topic = "bench", dlq)]
async fn noop(reading: Reading) -> Result<(), HandlerError> {
    std::hint::black_box(&reading);
    B1.invoked();
    B1.succeeded();
    Ok(())
}

/// Every tenth reading fails once and comes back through the retry topic (1 ms backoff).
#[kafka_handler(
    topic = "bench_retry",
    retry(max = 3, initial = "1ms", max_delay = "1ms", jitter = 0.0, mode = "topic"),
    dlq
)]
async fn flaky(reading: Reading, ctx: MessageContext) -> Result<(), HandlerError> {
    B3.invoked();
    if reading.seq.is_multiple_of(10) && ctx.attempt() == 1 {
        return Err(HandlerError::retryable("transient"));
    }
    B3.succeeded();
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
    let run: String = format!("bench{}", std::process::id())
        .chars()
        .map(|c| if c.is_ascii_digit() { char::from(b'a' + c as u8 - b'0') } else { c })
        .collect();
    let topic = format!("{run}.bench");
    let retry_topic = format!("{run}.bench_retry");
    for t in [&topic, &retry_topic] {
        let names = [t.clone(), format!("{t}.dlq"), format!("{t}.retry")];
        match &embedded {
            Some(broker) => names.iter().for_each(|n| broker.create_topic(n, PARTITIONS).unwrap()),
            None => {
                let admin: AdminClient<DefaultClientContext> =
                    ClientConfig::new().set("bootstrap.servers", &brokers).create().unwrap();
                let topics: Vec<NewTopic<'_>> =
                    names.iter().map(|n| NewTopic::new(n, PARTITIONS, TopicReplication::Fixed(1))).collect();
                admin.create_topics(&topics, &AdminOptions::new()).await.unwrap();
            }
        }
    }

    let produced = Instant::now();
    produce(&brokers, &topic, messages).await;
    produce(&brokers, &retry_topic, messages).await;
    println!(
        "produced {messages} messages in {:.2?} to {PARTITIONS} partitions of `{topic}` ({})",
        produced.elapsed(),
        if embedded.is_some() { "embedded mock cluster" } else { brokers.as_str() }
    );

    let b0 = raw_consume(&brokers, &topic, messages, false);
    let b0_decode = raw_consume(&brokers, &topic, messages, true);
    let b1 = framework_consume(&brokers, &run, "noop", &B1, messages).await;
    let b3 = framework_consume(&brokers, &run, "flaky", &B3, messages).await;
    println!();
    println!("| scenario | messages | seconds | msgs/s | ratio to B0 |");
    println!("|---|---|---|---|---|");
    println!(
        "| B0 raw rust-rdkafka BaseConsumer loop | {messages} | {:.3} | {:.0} | 1.00 |",
        b0.as_secs_f64(),
        messages as f64 / b0.as_secs_f64()
    );
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
    println!();
    println!("| scenario | messages | seconds | msgs/s | ratio to B1 |");
    println!("|---|---|---|---|---|");
    println!(
        "| B1 all succeed | {messages} | {:.3} | {:.0} | 1.00 |",
        b1.as_secs_f64(),
        messages as f64 / b1.as_secs_f64()
    );
    println!(
        "| B3 10 % fail once, retried through the retry topic | {messages} | {:.3} | {:.0} | {:.2} |",
        b3.as_secs_f64(),
        messages as f64 / b3.as_secs_f64(),
        b1.as_secs_f64() / b3.as_secs_f64()
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

/// The runtime with one handler, timed from its first invocation to its last success.
async fn framework_consume(brokers: &str, run: &str, handler: &str, meter: &Meter, messages: u64) -> Duration {
    let config = Config::development(format!("{run}-{handler}"))
        .with_handlers([handler])
        .with_brokers(brokers)
        .with_topic_prefix(format!("{run}."))
        .with_topic_provisioning(false)
        .with_partition_buffer(std::env::var("BENCH_BUFFER").ok().and_then(|v| v.parse().ok()).unwrap_or(5000));
    let config =
        std::env::var("BENCH_PROPS").unwrap_or_default().split(',').filter(|p| !p.is_empty()).fold(config, |c, p| {
            let (k, v) = p.split_once('=').unwrap();
            c.with_consumer_property(k, v)
        });
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    while meter.handled.load(Ordering::Relaxed) < messages {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    runtime.shutdown().await.expect("shutdown");
    let (first, last) = meter.window.lock().unwrap().expect("handled");
    last - first
}
