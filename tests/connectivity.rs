//! Start-up against brokers that are not there yet, or that refuse us: a broker that is down is
//! waited for (retried with backoff) and the runtime goes on when it comes up; a broker that
//! refuses authentication ends start-up at once with a clear error.

mod common;

use std::time::{Duration, Instant};

use common::{config, produce, unique, wait_for};
use kafka_events::embedded::EmbeddedBroker;
use kafka_events::prelude::*;
use kafka_events::Error;
use serde::{Deserialize, Serialize};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Ping {
    #[validate(length(min = 1))]
    id: String,
}

#[kafka_handler(topic = "patient", dlq)]
async fn patient(event: Ping, ctx: MessageContext) -> Result<(), HandlerError> {
    common::record_call(&ctx, &event.id, true);
    Ok(())
}

/// The broker is librdkafka's mock cluster hosted by this test, down when the runtime starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_waits_for_a_broker_that_is_down_and_goes_on_when_it_comes_up() {
    let broker = EmbeddedBroker::start().expect("mock cluster");
    let run = unique("patient");
    let topic = format!("{run}.patient");
    for name in [topic.clone(), format!("{topic}.retry"), format!("{topic}.dlq")] {
        broker.create_topic(&name, 1).expect("create topic");
    }
    broker.set_down(true).expect("down");
    let config = config(&run, &["patient"]).with_brokers(broker.bootstrap_servers()).with_topic_provisioning(false);
    let mut launching = tokio::spawn(kafka_events::runtime::launch(config));
    // While the broker is down, start-up keeps trying rather than failing.
    assert!(
        tokio::time::timeout(Duration::from_secs(3), &mut launching).await.is_err(),
        "start-up must wait for the broker, not fail"
    );
    broker.set_down(false).expect("up");
    let runtime = tokio::time::timeout(Duration::from_secs(60), launching)
        .await
        .expect("start-up finishes once the broker is up")
        .expect("task")
        .expect("launch");
    let producer = common::producer_for(broker.bootstrap_servers());
    produce(&producer, &topic, "k", &serde_json::to_vec(&Ping { id: "late".into() }).unwrap(), &[], None).await;
    wait_for(&topic, Duration::from_secs(60), |calls| calls.iter().any(|c| c.id == "late")).await;
    runtime.shutdown().await.expect("shutdown");
}

/// Starts `tansu broker` with `args` on a free loopback port, returning its guard and address;
/// `None` (saying so) when there is no `tansu` binary on the PATH.
fn spawn_tansu(args: &[&str], advertised_host: &str) -> Option<(common::ChildGuard, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let spawned = std::process::Command::new("tansu")
        .arg("broker")
        .args(args)
        .args(["--storage-engine", "memory://tansu/"])
        .args(["--listener-url", &format!("tcp://127.0.0.1:{port}")])
        .args(["--advertised-listener-url", &format!("tcp://{advertised_host}:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(tansu) = spawned else {
        eprintln!("SKIPPED: no `tansu` on the PATH to start a broker of its own");
        return None;
    };
    let guard = common::ChildGuard(Some(tansu));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not listen on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((guard, format!("{advertised_host}:{port}")))
}

/// A Tansu broker started by this test with `--authentication` (it has no users, so no
/// credentials are right). Skipped, saying so, when no `tansu` binary is on the PATH (a suite
/// run against your own Kafka cluster).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_fails_fast_with_a_clear_error_when_the_broker_refuses_authentication() {
    let Some((_tansu, address)) = spawn_tansu(&["--authentication"], "127.0.0.1") else { return };

    let run = unique("auth");
    let config = config(&run, &["patient"])
        .with_brokers(&address)
        .with_client_property("security.protocol", "SASL_PLAINTEXT")
        .with_client_property("sasl.mechanism", "PLAIN")
        .with_client_property("sasl.username", "alice")
        .with_client_property("sasl.password", "not-her-password");
    let started = Instant::now();
    let error = kafka_events::runtime::launch(config).await.expect_err("authentication is refused");
    let took = started.elapsed();
    println!("start-up failed after {took:?}: {error}");
    assert!(matches!(error, Error::Authentication { .. }), "{error:?}");
    assert!(took < Duration::from_secs(30), "fails fast, not after the start-up timeout: {took:?}");
    let message = error.to_string();
    assert!(message.contains("refused authentication") && message.contains("KAFKA_SASL_USERNAME"), "{message}");
    assert!(!message.contains("not-her-password"), "the password never appears: {message}");
}
