//! Readiness tells the truth when the broker freezes: a Kafka node of the test's own is
//! stopped with SIGSTOP for 15 s (connections stay open, nothing answers) while events flow.
//! `/health/ready` must turn 503 within seconds of the freeze, be 200 again within seconds of
//! SIGCONT, never be 503 while data flows, and every event must be handled.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, record_call, unique, wait_for};
use kafka_events::prelude::*;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Tick {
    #[validate(length(min = 1))]
    id: String,
}

#[kafka_handler(topic = "ticks", dlq)]
async fn tick(event: Tick, ctx: MessageContext) -> Result<(), HandlerError> {
    record_call(&ctx, &event.id, true);
    Ok(())
}

const FROZEN: Duration = Duration::from_secs(15);
/// How soon readiness must follow the broker, either way.
const WITHIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_a_frozen_broker_within_seconds_and_every_event_is_handled() {
    let run = unique("freeze");
    let root = std::env::temp_dir().join(format!("{run}-kafka"));
    let (nodes, bootstrap) = common::kafka_node::cluster(&root, 1).await;
    let topic = format!("{run}.ticks");
    let config = common::config(&run, &["tick"])
        .with_brokers(&bootstrap)
        .with_topic_layout(3, 1)
        .with_http("127.0.0.1:0".parse().unwrap())
        .with_lag_monitor(Duration::from_secs(1), 0);
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    let addr = runtime.http_addr().expect("HTTP endpoint");

    // Readiness sampled every 100 ms; events produced every 50 ms, throughout.
    let sampler = common::readiness::Sampler::start(addr);
    let stop = Arc::new(AtomicBool::new(false));
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "300000")
        .create()
        .expect("producer");
    let producing = {
        let (stop, topic) = (stop.clone(), topic.clone());
        tokio::spawn(async move {
            let mut pending = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Acquire) {
                let payload = serde_json::to_vec(&Tick { id: format!("t{n}") }).unwrap();
                let record = FutureRecord::to(&topic).key("k").payload(&payload);
                pending.push(producer.send_result(record).map_err(|(e, _)| e).expect("enqueue"));
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for delivery in pending {
                delivery.await.expect("delivery").map_err(|(e, _)| e).expect("acknowledged");
            }
            n
        })
    };

    wait_for(&topic, Duration::from_secs(60), |c| c.len() >= 40).await;
    sampler.until(200, "ready before the freeze", Duration::from_secs(30)).await;
    nodes[0].signal("-STOP");
    let frozen_at = Instant::now();
    tokio::time::sleep(FROZEN).await;
    nodes[0].signal("-CONT");
    let thawed_at = Instant::now();
    let handled_before_end = common::calls(&topic).len();
    eventually("data to flow again", Duration::from_secs(60), || async {
        let handled = common::calls(&topic).len();
        if handled > handled_before_end + 20 {
            Ok(())
        } else {
            Err(format!("{handled} handled"))
        }
    })
    .await;
    sampler.until(200, "ready again", Duration::from_secs(60)).await;
    stop.store(true, Ordering::Release);
    let samples = sampler.stop().await;
    let produced = producing.await.expect("every event acknowledged");
    let calls = wait_for(&topic, Duration::from_secs(60), |c| {
        c.iter().map(|c| c.id.as_str()).collect::<HashSet<_>>().len() >= produced
    })
    .await;
    runtime.shutdown().await.expect("shutdown");
    drop(nodes);
    let _ = std::fs::remove_dir_all(&root);

    let first_503 = samples.iter().find(|s| s.1 != 200 && s.0 >= frozen_at).map(|s| s.0 - frozen_at);
    let last_503 = samples.iter().filter(|s| s.1 != 200).map(|s| s.0).max();
    let ready_again = samples.iter().find(|s| s.1 == 200 && s.0 >= thawed_at).map(|s| s.0 - thawed_at);
    println!(
        "frozen for {FROZEN:?}: first 503 {first_503:?} after the freeze, ready again {ready_again:?} after the thaw \
         (last 503 {:?} after it); {produced} events, {} calls",
        last_503.map(|at| at.saturating_duration_since(thawed_at)),
        calls.len()
    );
    let first_503 = first_503.expect("not ready while the broker was frozen");
    assert!(first_503 <= WITHIN, "not ready within {WITHIN:?} of the freeze: {first_503:?}");
    let ready_again = ready_again.expect("ready again after the thaw");
    assert!(ready_again <= WITHIN, "ready again within {WITHIN:?} of the thaw: {ready_again:?}");
    for (at, status, body) in samples.iter().filter(|s| s.1 != 200) {
        assert!(*at >= frozen_at, "503 before the freeze: {status} {body}");
        assert!(body.contains("no broker has answered"), "the reason is the broker: {body}");
    }
    let ids: HashSet<&str> = calls.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), produced, "every event handled");
}
