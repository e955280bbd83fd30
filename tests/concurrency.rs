//! Per-key parallelism and backpressure against a real broker: `concurrency = N` runs up to N
//! messages of a partition at once without ever overlapping or reordering one key, and the
//! messages the runtime holds never exceed its caps.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::{
    calls, committed_offsets, config, create_topic, end_offsets, eventually, produce_many, producer, record, unique,
    wait_for, Call,
};
use kafka_events::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Step {
    #[validate(length(min = 1))]
    id: String,
}

fn call(event: &Step, ctx: &MessageContext) -> Call {
    Call {
        id: event.id.clone(),
        attempt: ctx.attempt(),
        partition: ctx.partition(),
        offset: ctx.offset(),
        succeeded: true,
        at: std::time::Instant::now(),
    }
}

// ------------------------------------------------------------------ order per key, concurrency 50

const KEYED_EVENTS: usize = 10_000;
const KEYS: u32 = 100;
const CONCURRENCY: usize = 50;

/// Keys being handled right now; a key found here on entry is an overlap.
static ACTIVE_KEYS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
static OVERLAPS: AtomicUsize = AtomicUsize::new(0);
static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MAX_RUNNING: AtomicUsize = AtomicUsize::new(0);

#[kafka_handler(topic = "keyed", concurrency = 50, dlq)]
async fn keyed_step(event: Step, ctx: MessageContext) -> Result<(), HandlerError> {
    let key = ctx.key_str().expect("keyed").to_string();
    if !ACTIVE_KEYS.lock().unwrap().insert(key.clone()) {
        OVERLAPS.fetch_add(1, Ordering::SeqCst);
    }
    let running = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
    MAX_RUNNING.fetch_max(running, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_micros(fastrand::u64(0..3000))).await;
    RUNNING.fetch_sub(1, Ordering::SeqCst);
    // Recorded before the key is released: per key, the recorded order is the handling order.
    record(ctx.topic(), call(&event, &ctx));
    ACTIVE_KEYS.lock().unwrap().remove(&key);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_handlers_keep_order_per_key_and_never_overlap_a_key() {
    let run = unique("keyed");
    let topic = format!("{run}.keyed");
    create_topic(&topic, 1).await;
    let mut rng = fastrand::Rng::with_seed(7);
    let events: Vec<(String, Vec<u8>)> = (0..KEYED_EVENTS)
        .map(|i| (format!("key-{}", rng.u32(0..KEYS)), serde_json::to_vec(&Step { id: format!("s{i}") }).unwrap()))
        .collect();
    // Produced before the runtime starts: the whole backlog is there for it to run ahead.
    let acks = produce_many(&producer(), &topic, &events).await;
    let mut produced_per_key: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for ((key, _), (_, offset)) in events.iter().zip(&acks) {
        produced_per_key.entry(key).or_default().push(*offset);
    }

    let runtime = kafka_events::runtime::launch(config(&run, &["keyed_step"])).await.expect("launch");
    let seen = wait_for(&topic, Duration::from_secs(120), |c| c.len() >= KEYED_EVENTS).await;
    runtime.shutdown().await.expect("shutdown");

    let ids: HashSet<&str> = seen.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(seen.len(), KEYED_EVENTS, "each event handled once");
    assert_eq!(ids.len(), KEYED_EVENTS, "every event handled");
    assert_eq!(OVERLAPS.load(Ordering::SeqCst), 0, "two messages of one key never run at once");
    let key_of: BTreeMap<i64, &str> = acks.iter().zip(&events).map(|((_, o), (k, _))| (*o, k.as_str())).collect();
    let mut handled_per_key: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for call in &seen {
        handled_per_key.entry(key_of[&call.offset]).or_default().push(call.offset);
    }
    assert_eq!(handled_per_key, produced_per_key, "per key, handling order == offset order");
    let max_running = MAX_RUNNING.load(Ordering::SeqCst);
    println!("most handlers running at once: {max_running} (concurrency {CONCURRENCY})");
    assert!(max_running <= CONCURRENCY, "at most `concurrency` handlers run at once: {max_running}");
    assert!(max_running >= CONCURRENCY / 2, "messages of different keys run concurrently: at most {max_running}");
    let group = format!("{run}-svc-main");
    assert_eq!(committed_offsets(&group, &topic, 1), end_offsets(&topic, 1), "everything committed");
}

// ------------------------------------------------------------------------------- backpressure

const BLOCKED_EVENTS: usize = 100_000;
const PARTITION_CAP: usize = 4_000;
const GROUP_CAP: usize = 10_000;

static RELEASED: AtomicBool = AtomicBool::new(false);
static RELEASE: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Blocks every call until the test releases it.
#[kafka_handler(topic = "blocked", concurrency = 10, dlq)]
async fn blocked_step(event: Step, ctx: MessageContext) -> Result<(), HandlerError> {
    while !RELEASED.load(Ordering::SeqCst) {
        let released = RELEASE.notified();
        if RELEASED.load(Ordering::SeqCst) {
            break;
        }
        released.await;
    }
    record(ctx.topic(), call(&event, &ctx));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_messages_never_exceed_the_caps_while_a_handler_blocks() {
    let run = unique("blocked");
    let topic = format!("{run}.blocked");
    create_topic(&topic, 3).await;
    let events: Vec<(String, Vec<u8>)> = (0..BLOCKED_EVENTS)
        .map(|i| (format!("k{i}"), serde_json::to_vec(&Step { id: format!("b{i}") }).unwrap()))
        .collect();
    produce_many(&producer(), &topic, &events).await;

    let config = config(&run, &["blocked_step"]).with_partition_buffer(PARTITION_CAP).with_max_buffered(GROUP_CAP);
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    let group = format!("{run}-svc-main");
    // The runtime's own gauge; there is no event for "the cap is reached", so it is polled.
    // Every partition is stuck: each fills up to its own cap and stops. (A partition paused at
    // its own cap is not counted against the member's cap, so that stuck partitions never
    // starve healthy ones; here all three are stuck: 3 × 4,000 held.)
    let held = eventually("the runtime to fill up to its caps", Duration::from_secs(60), || async {
        let held = runtime.health().groups.get(&group).map(|g| g.buffered).unwrap_or_default();
        if held >= 3 * PARTITION_CAP {
            Ok(held)
        } else {
            Err(format!("{held} held"))
        }
    })
    .await;
    assert_eq!(held, 3 * PARTITION_CAP, "with every handler blocked, each partition fills up to its cap and stops");
    assert!(calls(&topic).is_empty(), "nothing handled while blocked");

    RELEASED.store(true, Ordering::SeqCst);
    RELEASE.notify_waiters();
    let seen = wait_for(&topic, Duration::from_secs(240), |c| c.len() >= BLOCKED_EVENTS).await;
    let health = runtime.health();
    runtime.shutdown().await.expect("shutdown");

    let group_health = &health.groups[&group];
    println!(
        "held at most {} messages (caps: {PARTITION_CAP} per partition, {GROUP_CAP} per member)",
        group_health.buffered_peak
    );
    assert_eq!(group_health.buffer_cap, GROUP_CAP);
    assert!(
        group_health.buffered_peak <= GROUP_CAP.max(3 * PARTITION_CAP),
        "never more than the member's cap or the stuck partitions' own caps: {}",
        group_health.buffered_peak
    );
    let ids: HashSet<&str> = seen.iter().map(|c| c.id.as_str()).collect();
    assert_eq!((seen.len(), ids.len()), (BLOCKED_EVENTS, BLOCKED_EVENTS), "every event handled once");
    assert_eq!(committed_offsets(&group, &topic, 3), end_offsets(&topic, 3), "everything committed");
}

// ------------------------------------------------------------- stuck partitions, healthy ones

/// Partitions 0-2 each start with a message that never finishes.
#[kafka_handler(topic = "mixed", dlq)]
async fn mixed_step(event: Step, ctx: MessageContext) -> Result<(), HandlerError> {
    if event.id.starts_with("stuck") {
        std::future::pending::<()>().await;
    }
    record(ctx.topic(), call(&event, &ctx));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_partitions_never_starve_the_healthy_ones() {
    const CAP: usize = 100;
    const HEALTHY: usize = 3000;
    let run = unique("mixed");
    let topic = format!("{run}.mixed");
    create_topic(&topic, 6).await;
    // Partitions 0-2: a stuck message, then 500 more each: they fill their caps behind it, and
    // together the whole member-wide cap of 3 × CAP. Then partitions 3-5 get 3,000 messages.
    let producer = producer();
    let send = |records: Vec<(i32, String)>| {
        let (producer, topic) = (producer.clone(), topic.clone());
        async move {
            let mut pending = Vec::new();
            for (partition, id) in records {
                let payload = serde_json::to_vec(&Step { id: id.clone() }).unwrap();
                let record =
                    rdkafka::producer::FutureRecord::to(&topic).key(&id).payload(&payload).partition(partition);
                pending.push(producer.send_result(record).map_err(|(e, _)| e).expect("enqueue"));
            }
            for delivery in pending {
                delivery.await.expect("delivery").map_err(|(e, _)| e).expect("produce");
            }
        }
    };
    let mut stuck = Vec::new();
    for p in 0..3 {
        stuck.push((p, format!("stuck-{p}")));
        stuck.extend((0..500).map(|i| (p, format!("behind-{p}-{i}"))));
    }
    send(stuck).await;
    let config = config(&run, &["mixed_step"])
        .with_partition_buffer(CAP)
        .with_max_buffered(3 * CAP)
        .with_shutdown_timeout(Duration::from_secs(1));
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    let group = format!("{run}-svc-main");
    eventually("the stuck partitions to fill their caps", Duration::from_secs(60), || async {
        let held = runtime.health().groups.get(&group).map(|g| g.buffered).unwrap_or_default();
        if held >= 3 * CAP {
            Ok(())
        } else {
            Err(format!("{held} held"))
        }
    })
    .await;
    send((0..HEALTHY).map(|i| (3 + (i % 3) as i32, format!("h{i}"))).collect()).await;
    let seen =
        wait_for(&topic, Duration::from_secs(60), |c| c.iter().filter(|c| c.id.starts_with('h')).count() >= HEALTHY)
            .await;
    let health = runtime.health();
    runtime.shutdown().await.expect("shutdown");

    let healthy: HashSet<&str> = seen.iter().filter(|c| c.id.starts_with('h')).map(|c| c.id.as_str()).collect();
    assert_eq!(healthy.len(), HEALTHY, "every message of the healthy partitions handled");
    assert!(seen.iter().all(|c| c.partition >= 3), "nothing behind a stuck message was handled");
    let group = &health.groups[&group];
    println!("held {} (peak {}) with three stuck partitions", group.buffered, group.buffered_peak);
    assert!(group.buffered_peak <= 3 * CAP + 3 * CAP, "the stuck partitions hold at most their own caps");
}

// ------------------------------------------------------- busy partitions, the member's cap binds

/// Slow but never stuck: every message finishes after 1 ms.
#[kafka_handler(topic = "busy", dlq)]
async fn busy_step(event: Step, ctx: MessageContext) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(1)).await;
    record(ctx.topic(), call(&event, &ctx));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_partitions_are_bounded_by_the_members_cap_not_only_their_own() {
    // Six partitions with 2,000 messages each and a partition cap that holds them all: only the
    // member's cap of 1,000 bounds what is held. A partition at its cap that keeps finishing
    // messages is not excused (only a stuck one is), so the member never holds more than its
    // cap plus one read (256 messages) per lane in flight.
    const PARTITIONS: usize = 6;
    const EVENTS: usize = 12_000;
    const GROUP_CAP: usize = 1_000;
    let run = unique("busy");
    let topic = format!("{run}.busy");
    create_topic(&topic, PARTITIONS as i32).await;
    let events: Vec<(String, Vec<u8>)> =
        (0..EVENTS).map(|i| (format!("k{i}"), serde_json::to_vec(&Step { id: format!("b{i}") }).unwrap())).collect();
    produce_many(&producer(), &topic, &events).await;
    let config = config(&run, &["busy_step"]).with_partition_buffer(EVENTS).with_max_buffered(GROUP_CAP);
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    let seen = wait_for(&topic, Duration::from_secs(120), |c| c.len() >= EVENTS).await;
    let health = runtime.health();
    runtime.shutdown().await.expect("shutdown");

    let group = &health.groups[&format!("{run}-svc-main")];
    println!("held at most {} messages (member cap {GROUP_CAP}, {PARTITIONS} partitions)", group.buffered_peak);
    assert!(group.buffered_peak >= GROUP_CAP, "the backlog reached the member's cap: {}", group.buffered_peak);
    assert!(
        group.buffered_peak <= GROUP_CAP + PARTITIONS * 256,
        "busy partitions count against the member's cap: held {}",
        group.buffered_peak
    );
    let ids: HashSet<&str> = seen.iter().map(|c| c.id.as_str()).collect();
    assert_eq!((seen.len(), ids.len()), (EVENTS, EVENTS), "every event handled once");
}
