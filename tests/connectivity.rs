//! Start-up against brokers that are not there yet, or that want to know who we are: a broker
//! that is down is waited for (retried with backoff) and the runtime goes on when it comes up;
//! SASL/SCRAM and TLS work with the right credentials and CA (the suite's Kafka listens with
//! both), and a wrong password or CA ends start-up at once with a clear error that never shows
//! the password.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
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

// ---------------------------------------------------------------- SASL/SCRAM and TLS

/// Everything the runtime logs in this test binary (every level), so a test can check what
/// never appears in it. Installed once: the tests of this file share one global subscriber.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || Capture(writer.clone()))
            .try_init();
        logs
    })
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An environment variable `scripts/test.sh` sets for the secured listeners of its broker;
/// `None` (saying so) against a cluster of your own that did not set it.
fn secured(var: &str) -> Option<String> {
    let value = std::env::var(var).ok();
    if value.is_none() {
        eprintln!("SKIPPED: {var} is not set (scripts/test.sh sets it for the Kafka it starts)");
    }
    value
}

/// A config read from the documented variables, as a service would be configured.
fn secured_config(run: &str, vars: &[(&str, &str)]) -> Config {
    let mut all = vec![("SERVICE_NAME", format!("{run}-svc")), ("KAFKA_TOPIC_PREFIX", format!("{run}."))];
    all.extend(vars.iter().map(|(k, v)| (*k, v.to_string())));
    Config::from_vars(all)
        .with_handlers(["patient"])
        .with_commit_interval(Duration::from_millis(200))
        .with_startup_timeout(Duration::from_secs(60))
}

/// SCRAM-SHA-512 over SASL_PLAINTEXT as `user` with `password`.
fn scram_config(run: &str, brokers: &str, user: &str, password: &str) -> Config {
    secured_config(
        run,
        &[
            ("KAFKA_BROKERS", brokers),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", user),
            ("KAFKA_SASL_PASSWORD", password),
        ],
    )
}

/// Launches `config`, publishes one event through the runtime's own producer (over the same
/// secured listener) and waits for the handler to receive it.
async fn handles_an_event(run: &str, config: Config) {
    let runtime = kafka_events::runtime::launch(config).await.expect("launch over the secured listener");
    let topic = format!("{run}.patient");
    runtime.publisher().publish("patient", &Ping { id: "secured".into() }).await.expect("publish");
    wait_for(&topic, Duration::from_secs(60), |calls| calls.iter().any(|c| c.id == "secured")).await;
    runtime.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_with_the_right_password_provisions_consumes_and_publishes() {
    let logs = captured_logs();
    let (Some(brokers), Some(user), Some(password)) = (
        secured("KAFKA_EVENTS_TEST_SASL_BROKERS"),
        secured("KAFKA_EVENTS_TEST_SASL_USER"),
        secured("KAFKA_EVENTS_TEST_SASL_PASSWORD"),
    ) else {
        return;
    };
    let run = unique("scram");
    let config = scram_config(&run, &brokers, &user, &password);
    handles_an_event(&run, config).await;
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(!logs.contains(&password), "the password never appears in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_ends_start_up_at_once_and_is_never_shown() {
    let logs = captured_logs();
    let (Some(brokers), Some(user)) =
        (secured("KAFKA_EVENTS_TEST_SASL_BROKERS"), secured("KAFKA_EVENTS_TEST_SASL_USER"))
    else {
        return;
    };
    let wrong = "not-the-password-8d1f";
    let run = unique("badpass");
    let config = scram_config(&run, &brokers, &user, wrong);
    assert!(!format!("{config:?}").contains(wrong), "Debug redacts the password");
    let started = Instant::now();
    let error = kafka_events::runtime::launch(config).await.expect_err("authentication is refused");
    let took = started.elapsed();
    println!("start-up failed after {took:?}: {error}");
    assert!(matches!(error, Error::Authentication { .. }), "{error:?}");
    assert!(took < Duration::from_secs(5), "fails as soon as the broker refuses, not after a timeout: {took:?}");
    let message = error.to_string();
    assert!(message.contains("refused authentication") && message.contains("KAFKA_SASL_PASSWORD"), "{message}");
    assert!(!message.contains(wrong) && !format!("{error:?}").contains(wrong), "not in the error: {message}");
    let logs = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    assert!(logs.contains("Authentication failed"), "librdkafka's reason is logged");
    assert!(!logs.contains(wrong), "the password never appears in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_brokers_ca_works() {
    let (Some(brokers), Some(ca)) = (secured("KAFKA_EVENTS_TEST_SSL_BROKERS"), secured("KAFKA_EVENTS_TEST_SSL_CA"))
    else {
        return;
    };
    let run = unique("tls");
    let config = secured_config(
        &run,
        &[("KAFKA_BROKERS", &brokers), ("KAFKA_SECURITY_PROTOCOL", "SSL"), ("KAFKA_SSL_CA_LOCATION", &ca)],
    );
    handles_an_event(&run, config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_ca_that_did_not_sign_the_brokers_certificate_fails_with_a_clear_error() {
    let (Some(brokers), Some(wrong_ca)) =
        (secured("KAFKA_EVENTS_TEST_SSL_BROKERS"), secured("KAFKA_EVENTS_TEST_WRONG_CA"))
    else {
        return;
    };
    let run = unique("wrongca");
    let config = secured_config(
        &run,
        &[("KAFKA_BROKERS", &brokers), ("KAFKA_SECURITY_PROTOCOL", "SSL"), ("KAFKA_SSL_CA_LOCATION", &wrong_ca)],
    );
    let started = Instant::now();
    let error = kafka_events::runtime::launch(config).await.expect_err("the handshake fails");
    let took = started.elapsed();
    println!("start-up failed after {took:?}: {error}");
    assert!(matches!(error, Error::Authentication { .. }), "{error:?}");
    assert!(took < Duration::from_secs(5), "fails as soon as the handshake fails: {took:?}");
    let message = error.to_string();
    assert!(message.contains("certificate verify failed"), "says why: {message}");
    assert!(message.contains("KAFKA_SSL_CA_LOCATION"), "says what to check: {message}");
}
