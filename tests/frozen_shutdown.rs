//! A broker that freezes during shutdown cannot hold it: shutdown gives up on its consumers at
//! `KAFKA_SHUTDOWN_TIMEOUT` + 3 s with an error. A Kafka node of the test's own, in a test
//! binary of its own so that it never runs beside `freeze.rs`'s node (test binaries run one after
//! another): in one run where both shared a binary, `freeze.rs`'s test did not see data flow
//! again within its minute after the thaw.

mod common;

use std::time::{Duration, Instant};

use common::{unique, wait_for};
use kafka_events::prelude::*;
use rdkafka::producer::FutureRecord;
use serde::{Deserialize, Serialize};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Tick {
    #[validate(length(min = 1))]
    id: String,
}

#[kafka_handler(topic = "ticks", dlq)]
async fn tick(event: Tick, ctx: MessageContext) -> Result<(), HandlerError> {
    common::record_call(&ctx, &event.id, true);
    Ok(())
}

/// A broker that freezes (SIGSTOP) during shutdown cannot hold it: no final commit or
/// LeaveGroup is answered, and shutdown gives up on the consumers at `KAFKA_SHUTDOWN_TIMEOUT` +
/// 3 s with an error naming the group — not the 60 s of librdkafka's socket timeout, not for
/// ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_frozen_during_shutdown_cannot_hold_it_past_its_deadline() {
    const TIMEOUT: Duration = Duration::from_secs(2);
    let run = unique("frozenstop");
    let root = std::env::temp_dir().join(format!("{run}-kafka"));
    let (nodes, bootstrap) = common::kafka_node::cluster(&root, 1).await;
    let topic = format!("{run}.ticks");
    let config =
        common::config(&run, &["tick"]).with_brokers(&bootstrap).with_topic_layout(3, 1).with_shutdown_timeout(TIMEOUT);
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    let producer = common::producer_for(&bootstrap);
    for i in 0..30 {
        let payload = serde_json::to_vec(&Tick { id: format!("f{i}") }).unwrap();
        producer.send(FutureRecord::to(&topic).key("k").payload(&payload), Duration::from_secs(30)).await.unwrap();
    }
    // Handled, not committed yet (the commit interval is 200 ms): the final commit has work.
    wait_for(&topic, Duration::from_secs(60), |c| c.len() >= 30).await;
    nodes[0].signal("-STOP");
    let started = Instant::now();
    let result = runtime.shutdown().await;
    let took = started.elapsed();
    nodes[0].signal("-CONT");
    drop(nodes);
    let _ = std::fs::remove_dir_all(&root);
    println!("shutdown with the broker frozen took {took:?} ({TIMEOUT:?} timeout): {result:?}");
    assert!(took <= TIMEOUT + Duration::from_secs(5), "within the timeout plus 5 s: {took:?}");
    match result {
        Err(kafka_events::Error::Consumer { group, reason }) => {
            assert!(group.starts_with(&run), "names the group: {group}");
            assert!(reason.contains("abandoned at the shutdown deadline"), "says it was abandoned: {reason}");
        }
        other => panic!("shutdown reports the abandoned consumer: {other:?}"),
    }
}
