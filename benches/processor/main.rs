//! The benchmark harness: every scenario side by side in one process, against one broker.
//!
//! - B0: a raw rust-rdkafka `BaseConsumer` loop (the baseline), and B0+decode (serde + validate);
//! - B1: a kafka-events no-op typed handler (decode + validate + lanes + offset tracking +
//!   commits), against B0 (target ≥ 0.9×);
//! - B2: a 5 ms async handler on 1 partition with 1,000 distinct keys: partition-serial
//!   (`concurrency = 1`) against key-parallel (`concurrency = 200`) and against the Little's-law
//!   bound (in-flight ÷ mean latency) (targets ≥ 50× serial, ≥ 0.8× bound);
//! - B3: 10 % of the messages fail once and go through the retry topic, against B1 (target ≥ 0.8×);
//! - B4: a 1,000,000-message backlog through the no-op handler with the default caps: peak RSS
//!   (target ≤ 150 MB for what the consumer adds);
//! - B6: B1's handler on 64 partitions with one member, against B1's 3 (target ≥ 0.8×);
//! - B5 (with `DATABASE_URL`): PostgreSQL writes — a plain insert per message (the baseline), an
//!   `idempotent` handler, an `idempotent` batch handler.
//!
//! Each row: msgs/s, handler latency p50/p99, CPU time per message (the whole process), peak
//! RSS, ratio to its baseline. B0 runs with librdkafka tuned for throughput
//! ([`CONSUMER_SETTINGS`]); the runtime's scenarios with the runtime's own defaults, untuned, as
//! a user gets them.
//!
//! ```sh
//! cargo bench --bench processor                               # embedded broker (mock cluster)
//! KAFKA_BROKERS=127.0.0.1:19092 cargo bench --bench processor  # a real broker (e.g. Apache Kafka)
//! BENCH_MESSAGES=200000 BENCH_B4_MESSAGES=1000000 BENCH_ONLY=B2,B4 cargo bench --bench processor
//! ```

mod broker;
mod database;
mod measure;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use kafka_events::embedded::EmbeddedBroker;
use kafka_events::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use validator::Validate;

use broker::Bench;
use measure::{Latencies, Meter, Probe, Usage};

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Reading {
    #[validate(length(min = 1))]
    sensor: String,
    #[validate(range(min = -100.0, max = 100.0))]
    value: f64,
    seq: u64,
}

/// librdkafka consumer settings of B0's raw loop, as librdkafka's documentation suggests for
/// throughput: fetch without backing off while the local queue is being drained, keep a deep
/// prefetch queue, fetch 1 MB per partition. The runtime's scenarios use its defaults.
const CONSUMER_SETTINGS: &[(&str, &str)] = &[
    ("fetch.queue.backoff.ms", "10"),
    ("queued.min.messages", "100000"),
    ("fetch.wait.max.ms", "100"),
    ("max.partition.fetch.bytes", "1048576"),
];

static B1: Meter = Meter::new();
static B2_SERIAL: Meter = Meter::new();
static B2_PARALLEL: Meter = Meter::new();
static B2_PAUSING: Meter = Meter::new();
static B3: Meter = Meter::new();
static B4: Meter = Meter::new();
static B6: Meter = Meter::new();

#[kafka_handler(topic = "b1", dlq)]
async fn noop(reading: Reading) -> Result<(), HandlerError> {
    handle(&B1, &reading, Duration::ZERO).await;
    Ok(())
}

#[kafka_handler(topic = "b2_serial", dlq)]
async fn slow_serial(reading: Reading) -> Result<(), HandlerError> {
    handle(&B2_SERIAL, &reading, SLOW).await;
    Ok(())
}

#[kafka_handler(topic = "b2_parallel", concurrency = 200, dlq)]
async fn slow_parallel(reading: Reading) -> Result<(), HandlerError> {
    handle(&B2_PARALLEL, &reading, SLOW).await;
    Ok(())
}

/// `slow_parallel` with the default partition cap: the lane stops reading at the cap and reads
/// again as messages finish (no pause and resume).
#[kafka_handler(topic = "b2_pausing", concurrency = 200, dlq)]
async fn slow_pausing(reading: Reading) -> Result<(), HandlerError> {
    handle(&B2_PAUSING, &reading, SLOW).await;
    Ok(())
}

/// Every tenth reading fails once and comes back through the retry topic (1 ms backoff).
#[kafka_handler(topic = "b3", retry(max = 3, initial = "1ms", max_delay = "1ms", jitter = 0.0, mode = "topic"), dlq)]
async fn flaky(reading: Reading, ctx: MessageContext) -> Result<(), HandlerError> {
    let started = Instant::now();
    if reading.seq.is_multiple_of(10) && ctx.attempt() == 1 {
        B3.failed(started);
        return Err(HandlerError::retryable("transient"));
    }
    B3.succeeded(started);
    Ok(())
}

/// B1's handler on 64 partitions: what a lane per partition costs as partitions grow.
#[kafka_handler(topic = "b6", dlq)]
async fn noop_wide(reading: Reading) -> Result<(), HandlerError> {
    handle(&B6, &reading, Duration::ZERO).await;
    Ok(())
}

#[kafka_handler(topic = "b4", dlq)]
async fn backlog(reading: Reading) -> Result<(), HandlerError> {
    handle(&B4, &reading, Duration::ZERO).await;
    Ok(())
}

/// The 5 ms of I/O-bound work of the B2 handlers.
const SLOW: Duration = Duration::from_millis(5);

/// A handler body: `work` of (simulated, asynchronous) I/O, then one success for `meter`.
async fn handle(meter: &Meter, reading: &Reading, work: Duration) {
    let started = Instant::now();
    if !work.is_zero() {
        tokio::time::sleep(work).await;
    }
    std::hint::black_box(reading);
    meter.succeeded(started);
}

/// One row of a table.
struct Row {
    name: String,
    messages: u64,
    seconds: f64,
    latency: (u64, u64, f64),
    usage: Usage,
}

impl Row {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }
    fn print(&self, baseline: Option<&Row>, note: &str) {
        let mb = |b: u64| b as f64 / 1_048_576.0;
        let ratio = baseline.map_or_else(|| "1.00 (baseline)".into(), |b| format!("{:.2}", self.rate() / b.rate()));
        println!(
            "| {} | {} | {:.0} | {} | {} | {:.2} | {:.0} (+{:.0}) | {ratio}{note} |",
            self.name,
            self.messages,
            self.rate(),
            self.latency.0,
            self.latency.1,
            self.usage.cpu.as_secs_f64() * 1e6 / self.messages as f64,
            mb(self.usage.rss_peak),
            mb(self.usage.rss_peak.saturating_sub(self.usage.rss_start)),
        );
    }
}

fn header(title: &str) {
    println!();
    println!("{title}");
    println!();
    println!("| scenario | messages | msgs/s | handler p50 µs | handler p99 µs | CPU µs/msg | peak RSS MB (+ during) | ratio |");
    println!("|---|---|---|---|---|---|---|---|");
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn selected(scenario: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|s| s.trim().eq_ignore_ascii_case(scenario)))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // With RUST_LOG, the subscriber `runtime::start` installs by default (fmt on stderr, colours
    // only on a terminal, message spans formatted only when a line is logged inside them): what a
    // service logging at `info` pays per message. `BENCH_PLAIN_FMT=1`: plain
    // `tracing_subscriber::fmt` instead, which formats every message's span (the baseline).
    if std::env::var_os("RUST_LOG").is_some() {
        if std::env::var_os("BENCH_PLAIN_FMT").is_some() {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .init();
        } else {
            kafka_events::logging::install_default();
        }
    }
    let messages = env_u64("BENCH_MESSAGES", 100_000);
    let backlog_messages = env_u64("BENCH_B4_MESSAGES", 1_000_000);
    let (serial_messages, parallel_messages) =
        (env_u64("BENCH_B2_SERIAL", 1_000), env_u64("BENCH_B2_PARALLEL", 40_000));
    let embedded = match std::env::var("KAFKA_BROKERS") {
        Ok(_) => None,
        Err(_) => Some(EmbeddedBroker::start().expect("embedded broker")),
    };
    let bench = Bench::new(embedded.as_ref());
    println!(
        "broker: {}; {} cores; B0's consumer settings: {}; the runtime's: its defaults",
        if embedded.is_some() {
            "embedded librdkafka mock cluster (in this process)".to_string()
        } else {
            bench.brokers.clone()
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        CONSUMER_SETTINGS.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
    );

    if let Ok(solo) = std::env::var("BENCH_SOLO") {
        solo_mode(&bench, &solo, messages).await;
        return;
    }
    run_selected(&bench, embedded.as_ref(), messages, backlog_messages, serial_messages, parallel_messages).await;
    bench.delete_topics().await;
}

/// Runs the scenarios `BENCH_ONLY` selects (all by default), printing a table for each.
async fn run_selected(
    bench: &Bench<'_>,
    embedded: Option<&EmbeddedBroker>,
    messages: u64,
    backlog_messages: u64,
    serial_messages: u64,
    parallel_messages: u64,
) {
    if selected("B0") || selected("B1") {
        let topic = bench.topic("b1", 3, true).await;
        bench.produce(&topic, messages, 1000).await;
        let b0 = raw_consume(bench, &topic, messages, false);
        let b0_decode = raw_consume(bench, &topic, messages, true);
        let b1 = framework(bench, "noop", &B1, messages, None).await;
        header("B0/B1: framework overhead (3 partitions, JSON readings of ~50 bytes)");
        b0.print(None, "");
        b0_decode.print(Some(&b0), "");
        b1.print(Some(&b0), " (target ≥ 0.90)");
        if selected("B3") {
            let topic = bench.topic("b3", 3, true).await;
            bench.produce(&topic, messages, 1000).await;
            let b3 = framework(bench, "flaky", &B3, messages, None).await;
            header("B3: the retry path (10 % fail once, through the retry topic and the -retry group) against B1");
            b1.print(None, "");
            b3.print(Some(&b1), " (target ≥ 0.80)");
        }
        if selected("B6") {
            let partitions = env_u64("BENCH_B6_PARTITIONS", 64) as i32;
            let topic = bench.topic("b6", partitions, true).await;
            bench.produce(&topic, messages, 1000).await;
            let b6 = framework(bench, "noop_wide", &B6, messages, None).await;
            header(&format!(
                "B6: B1's no-op handler on {partitions} partitions (one member, a lane each) against B1's 3"
            ));
            b1.print(None, "");
            b6.print(Some(&b1), " (target ≥ 0.80)");
        }
    }

    if selected("B2") {
        let serial_topic = bench.topic("b2_serial", 1, true).await;
        let parallel_topic = bench.topic("b2_parallel", 1, true).await;
        let pausing_topic = bench.topic("b2_pausing", 1, true).await;
        bench.produce(&serial_topic, serial_messages, 1000).await;
        bench.produce(&parallel_topic, parallel_messages, 1000).await;
        bench.produce(&pausing_topic, parallel_messages, 1000).await;
        let serial = framework(bench, "slow_serial", &B2_SERIAL, serial_messages, None).await;
        // A partition cap that holds the whole backlog: this row measures concurrency alone.
        let roomy = |c: Config| c.with_partition_buffer(100_000).with_max_buffered(100_000);
        let parallel = framework(bench, "slow_parallel", &B2_PARALLEL, parallel_messages, Some(&roomy)).await;
        let defaults = |c: Config| c.with_partition_buffer(5000).with_max_buffered(20_000);
        let pausing = framework(bench, "slow_pausing", &B2_PAUSING, parallel_messages, Some(&defaults)).await;
        let bound = 200.0 / (parallel.latency.2 / 1e6);
        header("B2: 5 ms async handler, 1 partition, 1,000 distinct keys");
        serial.print(None, "");
        parallel.print(Some(&serial), " (target ≥ 50)");
        pausing.print(Some(&serial), "");
        println!(
            "\nB2 Little's-law bound: 200 in flight ÷ {:.2} ms mean handler latency = {bound:.0} msgs/s; key-parallel reaches {:.2} of it (target ≥ 0.80); with the default cap (the lane stops reading at 5,000 held) {:.2}",
            parallel.latency.2 / 1000.0,
            parallel.rate() / bound,
            pausing.rate() / bound,
        );
    }

    if selected("B5") {
        database::run(bench, env_u64("BENCH_B5_MESSAGES", 20_000)).await;
    }

    if selected("B4") {
        // librdkafka's mock cluster keeps at most 5 MB per partition (older batches are deleted):
        // 24 partitions hold a 1,000,000-reading backlog.
        let partitions = env_u64("BENCH_B4_PARTITIONS", 24) as i32;
        let topic = bench.topic("b4", partitions, true).await;
        let started = Instant::now();
        bench.produce(&topic, backlog_messages, 1000).await;
        println!(
            "\nproduced the B4 backlog of {backlog_messages} to {partitions} partitions in {:.1?}",
            started.elapsed()
        );
        // The default caps, whatever BENCH_BUFFER says.
        let config = |c: Config| c.with_partition_buffer(5000).with_max_buffered(20_000);
        let b4 = framework(bench, "backlog", &B4, backlog_messages, Some(&config)).await;
        header("B4: a backlog through the no-op handler with the default caps (KAFKA_PARTITION_BUFFER=5000, KAFKA_MAX_BUFFERED=20000)");
        b4.print(None, "");
        println!(
            "\nB4 resident memory: {:.0} MB before the runtime started, {:.0} MB at peak: the runtime added {:.0} MB (target ≤ 150 MB){}",
            b4.usage.rss_start as f64 / 1_048_576.0,
            b4.usage.rss_peak as f64 / 1_048_576.0,
            b4.usage.rss_peak.saturating_sub(b4.usage.rss_start) as f64 / 1_048_576.0,
            if embedded.is_some() { "; the mock broker in this process holds the backlog itself, hence the starting figure" } else { "" },
        );
    }
}

/// One step of `benches/processor/instructions.sh`, which counts instructions per message with
/// callgrind: `produce` the topic of scenario `BENCH_FOR` of this `BENCH_RUN` (B1's, B3's or
/// B6's; all three without it; not measured), or consume it with one scenario alone — `B0`,
/// `B0D` (B0+decode), `B1`, `B3` or `B6` — print its row and delete the run's topics (kept with
/// `BENCH_KEEP`; `delete` deletes them).
async fn solo_mode(bench: &Bench<'_>, solo: &str, messages: u64) {
    let topic = format!("{}.b1", bench.run);
    let row = match solo {
        "produce" => {
            let b6_partitions = env_u64("BENCH_B6_PARTITIONS", 64) as i32;
            let wanted = match std::env::var("BENCH_FOR").as_deref() {
                Ok("B3") => "b3",
                Ok("B6") => "b6",
                Ok(_) => "b1",
                Err(_) => "",
            };
            for (name, partitions) in [("b1", 3), ("b3", 3), ("b6", b6_partitions)] {
                if wanted.is_empty() || wanted == name {
                    let topic = bench.topic(name, partitions, true).await;
                    bench.produce(&topic, messages, 1000).await;
                }
            }
            return;
        }
        "B0" => raw_consume(bench, &topic, messages, false),
        "B0D" => raw_consume(bench, &topic, messages, true),
        "B1" => framework(bench, "noop", &B1, messages, None).await,
        "B3" => framework(bench, "flaky", &B3, messages, None).await,
        "B6" => framework(bench, "noop_wide", &B6, messages, None).await,
        "delete" => {
            bench.delete_topics().await;
            return;
        }
        other => panic!("BENCH_SOLO={other}: produce, B0, B0D, B1, B3, B6 or delete"),
    };
    header(&format!("BENCH_SOLO={solo}"));
    row.print(None, "");
    // The line `benches/peers/run.sh` reads from every consumer it compares.
    println!("consumed {} messages in {:.3} s", row.messages, row.seconds);
    // `benches/peers/run.sh` runs several consumers on one topic and deletes it at the end.
    if std::env::var("BENCH_KEEP").is_err() {
        bench.delete_topics().await;
    }
}

/// B0: a plain consume loop with one commit at the end, timed first message → last; with
/// `decode`, each payload is also decoded and validated as the handler's type.
fn raw_consume(bench: &Bench<'_>, topic: &str, messages: u64, decode: bool) -> Row {
    static RAW: Latencies = Latencies::new();
    static RAW_DECODE: Latencies = Latencies::new();
    let latencies = if decode { &RAW_DECODE } else { &RAW };
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &bench.brokers)
        .set("group.id", format!("{topic}-raw-{decode}{}", std::env::var("BENCH_GROUP").unwrap_or_default()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    for (key, value) in CONSUMER_SETTINGS {
        config.set(*key, *value);
    }
    let probe = Probe::start();
    let consumer: BaseConsumer = config.create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut received = 0u64;
    let mut first = None;
    while received < messages {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            let started = Instant::now();
            first.get_or_insert(started);
            let payload = rdkafka::Message::payload(&message);
            if decode {
                let reading: Reading = serde_json::from_slice(payload.unwrap_or_default()).unwrap();
                reading.validate().unwrap();
                std::hint::black_box(reading);
            } else {
                std::hint::black_box(payload);
            }
            latencies.record(started.elapsed());
            received += 1;
        }
    }
    let elapsed = first.map(|f| f.elapsed()).unwrap_or_default();
    consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync).unwrap();
    drop(consumer);
    let name = if decode {
        "B0+decode: the same loop, serde_json decode + validate each message"
    } else {
        "B0 raw rust-rdkafka BaseConsumer loop"
    };
    Row {
        name: name.into(),
        messages,
        seconds: elapsed.as_secs_f64(),
        latency: latencies.summary(),
        usage: probe.stop(),
    }
}

/// The runtime running one handler until `meter` has counted `messages` successes; throughput
/// is timed from its first handler call to its last success.
async fn framework(
    bench: &Bench<'_>,
    handler: &str,
    meter: &Meter,
    messages: u64,
    adjust: Option<&dyn Fn(Config) -> Config>,
) -> Row {
    // `BENCH_GROUP` (benches/peers/run.sh) tells apart several runs on one topic.
    let group = std::env::var("BENCH_GROUP").map_or_else(|_| handler.to_string(), |g| format!("{handler}-{g}"));
    let mut config = Config::development(format!("{}-{group}", bench.run))
        .with_handlers([handler])
        .with_brokers(&bench.brokers)
        .with_topic_prefix(format!("{}.", bench.run))
        .with_topic_provisioning(false);
    if let Some(buffer) = std::env::var("BENCH_BUFFER").ok().and_then(|v| v.parse().ok()) {
        config = config.with_partition_buffer(buffer).with_max_buffered(buffer * 3);
    }
    // Extra consumer properties for experiments: BENCH_PROPS=key=value,key=value.
    for (key, value) in std::env::var("BENCH_PROPS").unwrap_or_default().split(',').filter_map(|p| p.split_once('=')) {
        config = config.with_consumer_property(key, value);
    }
    if let Some(adjust) = adjust {
        config = adjust(config);
    }
    let probe = Probe::start();
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    while meter.handled.load(Ordering::Acquire) < messages {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    runtime.shutdown().await.expect("shutdown");
    let usage = probe.stop();
    let name = match handler {
        "noop" => "B1 kafka-events no-op typed handler",
        "noop_wide" => "B6 the no-op handler on many partitions",
        "slow_serial" => "B2 partition-serial (concurrency 1)",
        "slow_parallel" => "B2 key-parallel (concurrency 200, partition cap 100,000)",
        "slow_pausing" => "B2 key-parallel (concurrency 200, default partition cap 5,000)",
        "flaky" => "B3 10 % fail once, retried through the retry topic",
        "backlog" => "B4 no-op handler over the backlog",
        "db_plain" => "B5 one INSERT per message (autocommit)",
        "db_idempotent" => "B5 idempotent: claim + INSERT in one transaction per message",
        "db_batch" => "B5 idempotent batches (max 500): claim + one multi-row INSERT per batch",
        other => other,
    };
    Row { name: name.into(), messages, seconds: meter.window().as_secs_f64(), latency: meter.latency.summary(), usage }
}
