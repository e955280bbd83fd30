//! The circuit breaker against a real broker: after N consecutive failures the handler is not
//! called and its partition is paused; after the reset time one message probes; success closes
//! the circuit and the partition flows again.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{config, create_topic, eventually, produce, producer, unique, wait_for};
use kafka_events::circuit::CircuitState;
use kafka_events::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Request {
    #[validate(length(min = 1))]
    id: String,
}

/// The dependency the handler calls.
static DEPENDENCY_UP: AtomicBool = AtomicBool::new(false);

const RESET: Duration = Duration::from_secs(1);

#[kafka_handler(
    topic = "fragile",
    retry(max = 100, initial = "10ms", max_delay = "10ms", jitter = 0.0, mode = "in_place"),
    circuit(failures = 3, reset = "1s"),
    dlq
)]
async fn fragile(event: Request, ctx: MessageContext) -> Result<(), HandlerError> {
    let up = DEPENDENCY_UP.load(Ordering::SeqCst);
    common::record_call(&ctx, &event.id, up);
    if up {
        Ok(())
    } else {
        Err(HandlerError::retryable("the dependency is down"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_stops_calls_pauses_the_partition_and_probes_after_the_reset() {
    let run = unique("circuit");
    let topic = format!("{run}.fragile");
    create_topic(&topic, 1).await;
    let runtime = kafka_events::runtime::launch(config(&run, &["fragile"])).await.expect("launch");
    let producer = producer();
    for i in 0..5 {
        produce(
            &producer,
            &topic,
            &format!("k{i}"),
            &serde_json::to_vec(&Request { id: format!("r{i}") }).unwrap(),
            &[],
            Some(0),
        )
        .await;
    }

    // Three failures open the circuit; the health shows it open and the partition paused
    // (polled: the consumer pauses on its next poll burst).
    wait_for(&topic, Duration::from_secs(60), |calls| calls.len() >= 3).await;
    let main = format!("{run}-svc-main");
    eventually("the circuit open and the partition paused", Duration::from_secs(10), || async {
        let health = runtime.health();
        let open = health.circuits.iter().any(|c| c.state != CircuitState::Closed);
        let paused = health.groups.get(&main).map(|g| g.paused_partitions).unwrap_or_default();
        if open && paused == 1 {
            Ok(())
        } else {
            Err(format!("{health:?}"))
        }
    })
    .await;

    // The probe comes after the reset time, with no call in between; it fails: open again.
    let calls = wait_for(&topic, Duration::from_secs(30), |calls| calls.len() >= 4).await;
    assert!(calls[3].at - calls[2].at >= RESET, "no call while open: {:?}", calls[3].at - calls[2].at);
    assert!(calls.iter().take(4).all(|c| c.id == "r0" && !c.succeeded), "{calls:?}");
    DEPENDENCY_UP.store(true, Ordering::SeqCst);

    // The second probe succeeds after another reset: closed, and the rest flows.
    let calls = wait_for(&topic, Duration::from_secs(30), |calls| {
        calls.iter().filter(|c| c.succeeded).map(|c| &c.id).collect::<BTreeSet<_>>().len() == 5
    })
    .await;
    assert!(calls[4].at - calls[3].at >= RESET, "the failed probe reopened the circuit for a full reset");
    assert_eq!(calls.len(), 9, "3 failures, 2 probes, 4 more messages: {calls:?}");
    let health = eventually("the partition resumed", Duration::from_secs(10), || async {
        let health = runtime.health();
        if health.groups.get(&main).is_some_and(|g| g.paused_partitions == 0) {
            Ok(health)
        } else {
            Err(format!("{health:?}"))
        }
    })
    .await;
    let circuit = &health.circuits[0];
    assert_eq!((circuit.state, circuit.opened), (CircuitState::Closed, 2));
    let metrics = runtime.metrics_text();
    assert!(
        metrics.lines().any(|l| l.starts_with("kafka_events_circuit_opened_total{") && l.ends_with(" 2")),
        "{metrics}"
    );
    runtime.shutdown().await.expect("shutdown");
}
