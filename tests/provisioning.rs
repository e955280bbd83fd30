//! Topic provisioning against a real broker: a handler's `provision(...)` decides how its topic
//! is created, over the configured defaults.

mod common;

use std::time::Duration;

use common::{brokers, config, topic_config, unique};
use kafka_events::prelude::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde::Deserialize;
use validator::Validate;

#[derive(Debug, Deserialize, Validate)]
struct Entry {
    #[validate(length(min = 1))]
    id: String,
}

#[kafka_handler(topic = "ledger", provision(partitions = 5, retention = "2days", cleanup = "compact"), dlq)]
async fn ledger(event: Entry) -> Result<(), HandlerError> {
    let _ = event.id;
    Ok(())
}

fn partitions_of(topic: &str) -> usize {
    let client: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("client");
    let metadata = client.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    metadata.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handlers_provision_settings_decide_how_its_topics_are_created() {
    let run = unique("ledger");
    let runtime = kafka_events::runtime::launch(config(&run, &["ledger"])).await.expect("launch");
    runtime.shutdown().await.expect("shutdown");
    let topic = format!("{run}.ledger");
    assert_eq!(partitions_of(&topic), 5, "provision(partitions = 5), not KAFKA_TOPIC_PARTITIONS (3)");
    assert_eq!(topic_config(&topic, "cleanup.policy").await.as_deref(), Some("compact"));
    assert_eq!(topic_config(&topic, "retention.ms").await.as_deref(), Some("172800000"));
    let dlq = format!("{topic}.dlq");
    assert_eq!(partitions_of(&dlq), 5, "its dead-letter topic gets its partition count");
    assert_eq!(topic_config(&dlq, "retention.ms").await.as_deref(), Some("7776000000"), "DLQ keeps 90 days");
    assert_ne!(topic_config(&dlq, "cleanup.policy").await.as_deref(), Some("compact"), "DLQs are never compacted");
}
