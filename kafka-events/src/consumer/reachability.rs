//! Broker reachability, for readiness: every second a metadata request for one topic of the
//! group (any broker may answer it; the whole cluster's metadata would grow with its topic
//! count, for the broker and for us) on a client of its own, on a thread of its own, so a frozen broker — connections open,
//! nothing answering — is noticed within seconds, and recovery as soon as one answers again.
//! librdkafka's "all brokers down" error (see the group context) marks it sooner when the
//! brokers are plainly gone.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;

use super::liveness::Liveness;

/// How often the brokers are asked.
const EVERY: Duration = Duration::from_secs(1);
/// How long one answer may take before the brokers count as not answering.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

pub(crate) struct Probe {
    pub(crate) group: String,
    /// The topic asked about: one the group consumes.
    pub(crate) topic: String,
    pub(crate) client: ClientConfig,
    pub(crate) liveness: Arc<Liveness>,
    pub(crate) stop: CancellationToken,
}

impl Probe {
    pub(crate) fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name(format!("kafka-events-probe-{}", self.group)).spawn(move || self.run())
    }

    fn run(self) {
        let consumer: BaseConsumer = match self.client.create() {
            Ok(consumer) => consumer,
            Err(error) => {
                tracing::error!(group = %self.group, %error, "broker probe cannot start; readiness relies on librdkafka's errors alone");
                return;
            }
        };
        while !self.stop.is_cancelled() {
            let asked = SystemTime::now();
            let topic = Some(self.topic.as_str()).filter(|t| !t.is_empty());
            match consumer.fetch_metadata(topic, ANSWER_WITHIN) {
                Ok(_) => self.liveness.broker_reachable(),
                // Unreachable since the question that went unanswered was asked.
                Err(error) => {
                    tracing::debug!(group = %self.group, %error, "no broker answered a metadata request");
                    self.liveness.broker_unreachable_since(asked);
                }
            }
            let wait = EVERY.saturating_sub(asked.elapsed().unwrap_or_default());
            // Sleep in small steps so that a stop is seen quickly.
            let until = std::time::Instant::now() + wait;
            while std::time::Instant::now() < until && !self.stop.is_cancelled() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
