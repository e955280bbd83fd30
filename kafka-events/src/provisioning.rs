//! Topic provisioning: at start-up, every topic of the topology (handler topics, their
//! `.retry` and `.dlq`) is created when provisioning is on, with its plan's partitions,
//! retention and cleanup policy, then checked to exist in the cluster's metadata — once per
//! process (cached). Existing topics are never changed; nothing is created by producing.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::Config;
use crate::connection::Connection;
use crate::error::Error;
use crate::registry::TopicPlan;
use crate::sync::lock;

impl Connection {
    /// Creates the missing `topics` (when provisioning is on), then checks every one of them
    /// exists. Topics already checked are cached and never asked about again.
    pub(crate) async fn ensure_topics(&self, config: &Config, topics: &[TopicPlan]) -> Result<(), Error> {
        let missing: Vec<TopicPlan> = {
            let done = lock(&self.provisioned);
            topics.iter().filter(|t| !done.contains(&t.name)).cloned().collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        if config.provision_topics() {
            self.create_topics(config, &missing).await?;
        }
        self.await_metadata(config, &missing).await?;
        lock(&self.provisioned).extend(missing.into_iter().map(|t| t.name));
        Ok(())
    }

    async fn create_topics(&self, config: &Config, topics: &[TopicPlan]) -> Result<(), Error> {
        if let Some(broker) = &self.embedded {
            // The mock cluster takes no topic configs: retention does not apply in memory.
            for topic in topics {
                broker
                    .create_topic(&topic.name, topic.partitions)
                    .map_err(|e| Error::provisioning([format!("`{}`: {e}", topic.name)]))?;
            }
            return Ok(());
        }
        let replication = config.topic_replication();
        let retention_ms: Vec<Option<String>> =
            topics.iter().map(|t| t.retention.map(|r| r.as_millis().to_string())).collect();
        let new_topics: Vec<NewTopic<'_>> = topics
            .iter()
            .zip(&retention_ms)
            .map(|(plan, retention)| {
                let mut topic = NewTopic::new(&plan.name, plan.partitions, TopicReplication::Fixed(replication));
                if let Some(ms) = retention {
                    topic = topic.set("retention.ms", ms);
                }
                if let Some(policy) = &plan.cleanup {
                    topic = topic.set("cleanup.policy", policy);
                }
                topic
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results =
            self.admin.create_topics(&new_topics, &options).await.map_err(|e| Error::kafka("creating topics", e))?;
        let mut problems = Vec::new();
        for result in results {
            match result {
                Ok(topic) => tracing::info!(topic, "created topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => problems.push(format!("`{topic}`: {code}")),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::provisioning(problems))
        }
    }

    /// Waits (up to 15 s) until the cluster's metadata lists every topic with partitions.
    async fn await_metadata(&self, config: &Config, topics: &[TopicPlan]) -> Result<(), Error> {
        let producer = self.producer.clone();
        let plans = topics.to_vec();
        let wanted: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
        let provisioning = config.provision_topics();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let metadata = producer.client().fetch_metadata(None, Duration::from_secs(5));
                let missing: Vec<&String> = match &metadata {
                    Ok(metadata) => wanted
                        .iter()
                        .filter(|w| {
                            !metadata
                                .topics()
                                .iter()
                                .any(|t| t.name() == w.as_str() && t.error().is_none() && !t.partitions().is_empty())
                        })
                        .collect(),
                    Err(_) => wanted.iter().collect(),
                };
                if missing.is_empty() {
                    // Existing topics are never changed; a partition count other than the
                    // configured one is worth knowing (ordering and parallelism depend on it).
                    if let Ok(metadata) = &metadata {
                        for topic in metadata.topics() {
                            let Some(plan) = plans.iter().find(|p| p.name == topic.name()) else { continue };
                            if topic.partitions().len() != plan.partitions as usize {
                                tracing::warn!(
                                    topic = topic.name(),
                                    partitions = topic.partitions().len(),
                                    configured = plan.partitions,
                                    "topic exists with another partition count than configured; it is used as it is"
                                );
                            }
                        }
                    }
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    let hint = if provisioning {
                        "was created but never showed up in the cluster metadata"
                    } else {
                        "does not exist; create it, or set KAFKA_PROVISION_TOPICS=true"
                    };
                    let mut problems: Vec<String> = missing.iter().map(|t| format!("topic `{t}` {hint}")).collect();
                    if let Err(e) = metadata {
                        problems.push(format!("the brokers did not answer a metadata request: {e}"));
                    }
                    return Err(Error::provisioning(problems));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
        .await
        .map_err(|e| Error::provisioning([format!("metadata check panicked: {e}")]))?
    }
}
