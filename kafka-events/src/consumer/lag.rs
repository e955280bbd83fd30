//! The lag monitor: every `KAFKA_EVENTS_LAG_INTERVAL` it asks the broker for the high watermark
//! and the group's committed offset of each partition this member owns, and reports
//! high − committed (or high − low when nothing is committed yet) in health and metrics. A
//! partition over `KAFKA_EVENTS_LAG_THRESHOLD` makes the runtime not ready and is logged.
//!
//! It runs on its own thread with its own client (no group membership: it never subscribes), so
//! slow broker answers never delay polling. Its queries double as the broker reachability probe
//! readiness uses (together with librdkafka's "all brokers down" error).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::lanes::{Lanes, Tp};
use super::lock;
use crate::health::{PartitionLag, Status};

/// How long one broker question may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct LagMonitor {
    pub(crate) group: String,
    pub(crate) client: ClientConfig,
    pub(crate) lanes: Arc<Mutex<Lanes>>,
    pub(crate) status: Arc<Status>,
    pub(crate) liveness: Arc<super::liveness::Liveness>,
    pub(crate) interval: Duration,
    pub(crate) threshold: i64,
    pub(crate) stop: CancellationToken,
}

impl LagMonitor {
    pub(crate) fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new().name(format!("kafka-events-lag-{}", self.group)).spawn(move || self.run())
    }

    fn run(self) {
        let mut client = self.client.clone();
        // The group id only names whose committed offsets are read; this client never joins.
        client.set("group.id", &self.group).set("enable.auto.commit", "false");
        let consumer: BaseConsumer = match client.create() {
            Ok(consumer) => consumer,
            Err(error) => {
                tracing::error!(group = %self.group, %error, "lag monitor cannot start; lag is not reported");
                return;
            }
        };
        let mut over: BTreeSet<Tp> = BTreeSet::new();
        let mut next = Instant::now();
        while !self.stop.is_cancelled() {
            if Instant::now() >= next {
                let lags = self.measure(&consumer);
                self.report(&lags, &mut over);
                self.status.set_lag(&self.group, lags);
                next = Instant::now() + self.interval;
            }
            std::thread::sleep(Duration::from_millis(50).min(self.interval));
        }
    }

    fn measure(&self, consumer: &BaseConsumer) -> Vec<PartitionLag> {
        let assigned = lock(&self.lanes).assigned();
        if assigned.is_empty() {
            // Nothing to measure: still find out whether a broker answers.
            self.probe(consumer);
            return Vec::new();
        }
        let mut list = TopicPartitionList::new();
        for (topic, partition) in &assigned {
            list.add_partition(topic, *partition);
        }
        let committed = match consumer.committed_offsets(list, QUERY_TIMEOUT) {
            Ok(committed) => committed,
            Err(error) => {
                // Only the group coordinator answers this; it may be the one broker that went
                // away while the others answer (until the coordinator moves). Unreachable means
                // no broker answers at all.
                tracing::debug!(group = %self.group, %error, "lag: committed offsets unavailable");
                self.probe(consumer);
                return Vec::new();
            }
        };
        self.liveness.broker_reachable();
        assigned
            .into_iter()
            .filter_map(|(topic, partition)| {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, partition, QUERY_TIMEOUT)
                    .inspect_err(|error| tracing::debug!(%topic, partition, %error, "lag: watermarks unavailable"))
                    .ok()?;
                let committed = match committed.find_partition(&topic, partition).map(|e| e.offset()) {
                    Some(Offset::Offset(offset)) => Some(offset),
                    _ => None,
                };
                let lag = (high - committed.unwrap_or(low).max(low)).max(0);
                Some(PartitionLag { group: self.group.clone(), topic, partition, high_watermark: high, committed, lag })
            })
            .collect()
    }

    /// Whether any broker answers a metadata request.
    fn probe(&self, consumer: &BaseConsumer) {
        match consumer.fetch_metadata(None, QUERY_TIMEOUT) {
            Ok(_) => self.liveness.broker_reachable(),
            Err(_) => self.liveness.broker_unreachable(),
        }
    }

    fn report(&self, lags: &[PartitionLag], over: &mut BTreeSet<Tp>) {
        for lag in lags {
            let tp = (lag.topic.clone(), lag.partition);
            let is_over = self.threshold > 0 && lag.lag > self.threshold;
            if is_over && over.insert(tp.clone()) {
                tracing::warn!(group = %self.group, topic = %lag.topic, partition = lag.partition, lag = lag.lag, threshold = self.threshold, "consumer lag over the threshold");
            } else if !is_over && over.remove(&tp) {
                tracing::info!(group = %self.group, topic = %lag.topic, partition = lag.partition, lag = lag.lag, "consumer lag back under the threshold");
            }
        }
    }
}
