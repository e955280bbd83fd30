//! Broker failures, counted: a three-node Apache Kafka cluster (KRaft, three JVMs on loopback,
//! started by this test with `scripts/kafka.sh`), topics with replication factor 3 and
//! `min.insync.replicas=2`. While 100,000 events flow through a handler that records every id,
//! the leader of a busy partition is killed with SIGKILL and later restarted; then the whole
//! cluster is killed, left down for 15 s, and started again from its data on disk.
//!
//! Counted: every id handled (none lost), duplicates within what the runtime held, the runtime
//! recovering without a restart, and `/health/ready` answering 503 only while no broker
//! answers (sampled every 100 ms throughout).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{eventually, unique};
use kafka_events::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use validator::Validate;

const EVENTS: usize = 100_000;
const PARTITIONS: i32 = 6;
/// Messages the runtime may hold (polled, not yet committed) across its partitions: what a
/// failure can make it handle again.
const HELD: usize = 12_000;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Event {
    #[validate(length(min = 1))]
    id: String,
}

/// How often each id was handled, and how many calls there were.
fn handled() -> &'static (Mutex<HashMap<String, u32>>, AtomicUsize) {
    static HANDLED: OnceLock<(Mutex<HashMap<String, u32>>, AtomicUsize)> = OnceLock::new();
    HANDLED.get_or_init(|| (Mutex::new(HashMap::with_capacity(EVENTS)), AtomicUsize::new(0)))
}

#[kafka_handler(topic = "failover", dlq)]
async fn failover_record(event: Event) -> Result<(), HandlerError> {
    let (ids, calls) = handled();
    *ids.lock().unwrap().entry(event.id).or_default() += 1;
    calls.fetch_add(1, Ordering::Release);
    Ok(())
}

/// The broker id leading `partition` of `topic`.
fn leader(bootstrap: &str, topic: &str, partition: i32) -> i32 {
    let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("client");
    let metadata = client.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    metadata.topics()[0].partitions().iter().find(|p| p.id() == partition).expect("partition").leader()
}

async fn handled_at_least(count: usize, what: &str) {
    eventually(what, Duration::from_secs(300), || async {
        let calls = handled().1.load(Ordering::Acquire);
        if calls >= count {
            Ok(())
        } else {
            Err(format!("{calls} calls"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_when_a_leader_dies_and_when_the_whole_cluster_restarts() {
    let run = unique("failover");
    let root = std::env::temp_dir().join(format!("{run}-cluster"));
    let (mut nodes, bootstrap) = common::kafka_node::cluster(&root, 3).await;
    println!("three-node cluster at {bootstrap}");
    let topic = format!("{run}.failover");

    let config = common::config(&run, &["failover_record"])
        .with_brokers(&bootstrap)
        .with_topic_layout(PARTITIONS, 3)
        .with_partition_buffer(HELD / PARTITIONS as usize)
        .with_max_buffered(HELD)
        .with_http("127.0.0.1:0".parse().unwrap())
        // Lag is not what this test reads from readiness: only broker reachability.
        .with_lag_monitor(Duration::from_secs(1), 0);
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    let sampler = common::readiness::Sampler::start(runtime.http_addr().expect("HTTP endpoint"));

    // Events flow: 1,000 every 200 ms, each chunk acknowledged (acks=all) before the next; the
    // producer waits through outages (message.timeout.ms 5 min).
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "300000")
        .create()
        .expect("producer");
    let produce_topic = topic.clone();
    let producing = tokio::spawn(async move {
        for chunk in 0..EVENTS / 1000 {
            let pending: Vec<_> = (chunk * 1000..(chunk + 1) * 1000)
                .map(|i| {
                    let payload = serde_json::to_vec(&Event { id: format!("e{i}") }).unwrap();
                    let key = format!("k{}", i % 997);
                    let record = FutureRecord::to(&produce_topic).key(&key).payload(&payload);
                    producer.send_result(record).map_err(|(e, _)| e).expect("enqueue")
                })
                .collect();
            for delivery in pending {
                delivery.await.expect("delivery").map_err(|(e, _)| e).expect("acknowledged");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });

    // 1. SIGKILL the leader of partition 0 while events flow; it stays down a while.
    handled_at_least(15_000, "15,000 events handled").await;
    let victim = leader(&bootstrap, &topic, 0);
    let victim_index = nodes.iter().position(|n| n.id as i32 == victim).expect("leader is a node");
    nodes[victim_index].kill();
    println!("killed node {victim}, the leader of partition 0");
    let after_kill = handled().1.load(Ordering::Acquire);
    handled_at_least(after_kill + 15_000, "15,000 more events with a node down").await;
    nodes[victim_index].start();
    nodes[victim_index].started().await;
    println!("node {victim} is back");

    // 2. The whole cluster down for 15 s, then started again from its data.
    handled_at_least(55_000, "55,000 events handled").await;
    // The outage starts with the first kill: a probe may see "no broker answered" as soon as the
    // last node is gone, before this loop returns.
    let down_at = Instant::now();
    for node in &mut nodes {
        node.kill();
    }
    println!("the whole cluster is down");
    tokio::time::sleep(Duration::from_secs(15)).await;
    for node in &mut nodes {
        node.start();
    }
    for node in &mut nodes {
        node.started().await;
    }
    let up_at = Instant::now();
    println!("the cluster is back after {:?}", up_at - down_at);

    producing.await.expect("every event acknowledged by the cluster");
    eventually("every id to be handled", Duration::from_secs(300), || async {
        let distinct = handled().0.lock().unwrap().len();
        if distinct >= EVENTS {
            Ok(())
        } else {
            Err(format!("{distinct} distinct ids"))
        }
    })
    .await;
    sampler.until(200, "readiness 200 after recovery", Duration::from_secs(60)).await;
    let samples = sampler.stop().await;
    runtime.shutdown().await.expect("shutdown");

    let ids = handled().0.lock().unwrap().clone();
    let calls = handled().1.load(Ordering::Acquire);
    let missing: Vec<String> = (0..EVENTS).map(|i| format!("e{i}")).filter(|id| !ids.contains_key(id)).collect();
    let duplicates = calls - ids.len();
    let not_ready: Vec<&common::readiness::Sample> = samples.iter().filter(|s| s.1 != 200).collect();
    let first_503 = not_ready.iter().map(|s| s.0).filter(|at| *at >= down_at).min();
    let last_503 = not_ready.iter().map(|s| s.0).max();
    println!(
        "handled {} ids in {calls} calls ({duplicates} duplicates); readiness: {} samples, {} not ready, first {:?} after the cluster went down, last {:?} after it was back",
        ids.len(),
        samples.len(),
        not_ready.len(),
        first_503.map(|at| at - down_at),
        last_503.map(|at| at.saturating_duration_since(up_at)),
    );
    assert!(missing.is_empty(), "{} ids never handled: {:?}", missing.len(), &missing[..missing.len().min(20)]);
    assert_eq!(ids.len(), EVENTS, "no id other than the produced ones");
    assert!(duplicates <= HELD, "duplicates ({duplicates}) stay within what the runtime held ({HELD})");
    let first_503 = first_503.expect("not ready while no broker answered");
    assert!(first_503 - down_at < Duration::from_secs(10), "not ready within seconds: {:?}", first_503 - down_at);
    for (at, status, body) in &not_ready {
        assert!(
            *at >= down_at && *at <= up_at + Duration::from_secs(30),
            "503 only while no broker answered (and shortly after): {status} {:?} before the outage: {body}",
            down_at.saturating_duration_since(*at)
        );
        assert!(body.contains("no broker has answered"), "{body}");
    }
    drop(nodes);
    let _ = std::fs::remove_dir_all(root);
}
