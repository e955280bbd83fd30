//! Start-up refuses a broken topology or configuration, naming every problem, before it touches
//! the network.

use kafka_events::prelude::*;
use kafka_events::Error;
use serde::Deserialize;
use validator::Validate;

#[derive(Debug, Deserialize, Validate)]
struct Payment {
    #[validate(length(min = 1))]
    id: String,
}

#[kafka_handler(topic = "payments.received")]
async fn first_payment_handler(_event: Payment) -> Result<(), HandlerError> {
    Ok(())
}

#[kafka_handler(topic = "payments.received", dlq)]
async fn second_payment_handler(_event: Payment) -> Result<(), HandlerError> {
    Ok(())
}

#[kafka_handler(topic = "refunds", dlq)]
async fn refunds(_event: Payment) -> Result<(), HandlerError> {
    Ok(())
}

fn dev() -> Config {
    // Brokers that do not exist: start-up must fail before connecting to anything.
    Config::development("startup-tests").with_brokers("127.0.0.1:1")
}

#[tokio::test]
async fn two_handlers_on_one_topic_fail_start_up_naming_both_sites() {
    let error = kafka_events::runtime::launch(dev()).await.expect_err("duplicate topic must fail");
    let Error::Topology(topology) = &error else { panic!("expected a topology error, got {error}") };
    assert_eq!(topology.problems.len(), 1, "{error}");
    let text = error.to_string();
    let first =
        format!("startup::first_payment_handler (tests/startup.rs:{})", line_of("async fn first_payment_handler") - 1);
    let second = format!(
        "startup::second_payment_handler (tests/startup.rs:{})",
        line_of("async fn second_payment_handler") - 1
    );
    assert!(text.contains("two handlers consume topic `payments.received`"), "{text}");
    assert!(text.contains(&first), "{text}\nexpected {first}");
    assert!(text.contains(&second), "{text}\nexpected {second}");
}

#[tokio::test]
async fn a_topic_made_invalid_by_the_prefix_names_the_handler() {
    let config = dev().with_topic_prefix("x".repeat(245)).with_handlers(["refunds"]);
    let error = kafka_events::runtime::launch(config).await.expect_err("topic too long");
    let text = error.to_string();
    assert!(text.contains("startup::refunds (tests/startup.rs:"), "{text}");
    assert!(text.contains("invalid topic: topic name is 252 characters long; the limit is 249"), "{text}");
    assert!(text.contains("invalid dead-letter topic"), "{text}");
}

#[tokio::test]
async fn invalid_configuration_lists_every_problem() {
    let config = Config::from_vars([
        ("KAFKA_EVENTS_PROFILE", "production"),
        ("KAFKA_BROKERS", "kafka-1:9092,kafka-2"),
        ("KAFKA_TOPIC_PARTITIONS", "0"),
        ("KAFKA_COMMIT_INTERVAL", "every now and then"),
    ]);
    let error = kafka_events::runtime::launch(config).await.expect_err("bad config");
    let Error::Config(config_error) = &error else { panic!("expected a config error, got {error}") };
    let keys: Vec<&str> = config_error.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["KAFKA_COMMIT_INTERVAL", "KAFKA_BROKERS", "SERVICE_NAME", "KAFKA_TOPIC_PARTITIONS"], "{error}");
    let text = error.to_string();
    assert!(text.starts_with("invalid configuration (4 problems):"), "{text}");
    assert!(text.contains("`kafka-2` is not `host:port`"), "{text}");
}

/// The line number of `needle` in this file.
fn line_of(needle: &str) -> usize {
    include_str!("startup.rs").lines().position(|l| l.contains(needle)).expect("needle") + 1
}

#[tokio::test]
async fn group_ids_that_embed_a_timestamp_or_a_uuid_are_refused() {
    for service in ["orders-1700000000123", "orders-0b5c5a1e-8f3d-4c2a-9e61-7d2f4a6b8c90"] {
        let error = kafka_events::runtime::launch(
            Config::development(service).with_brokers("127.0.0.1:1").with_handlers(["refunds"]),
        )
        .await
        .expect_err("dynamic group id");
        let text = error.to_string();
        assert!(text.contains("SERVICE_NAME: group id"), "{text}");
        assert!(text.contains("group ids must be static"), "{text}");
    }
    let missing = Config::from_vars([("KAFKA_EVENTS_PROFILE", "production"), ("KAFKA_BROKERS", "127.0.0.1:1")]);
    let error = kafka_events::runtime::launch(missing).await.expect_err("production without SERVICE_NAME");
    assert!(error.to_string().contains("SERVICE_NAME: required"), "{error}");
}
