//! The lag monitor: every `KAFKA_EVENTS_LAG_INTERVAL` it asks the broker for the high watermark
//! and the group's committed offset of each partition this member owns, and reports
//! high − committed (or high − low when nothing is committed yet) in health and metrics. A
//! partition over `KAFKA_EVENTS_LAG_THRESHOLD` makes the runtime not ready and is logged.
//!
//! It runs on its own thread with its own client (no group membership: it never subscribes), so
//! slow broker answers never delay polling. Broker reachability is not its business: the probe
//! (`reachability.rs`) asks every second on a thread of its own.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::lanes::Lanes;
use super::offsets::TopicPartition;
use crate::health::{HealthBoard, PartitionLag};
use crate::sync::lock;

/// How long one broker question may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct LagMonitor {
    pub(crate) group: String,
    pub(crate) client: ClientConfig,
    pub(crate) lanes: Arc<Mutex<Lanes>>,
    pub(crate) status: Arc<HealthBoard>,
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
        let mut over: BTreeSet<TopicPartition> = BTreeSet::new();
        let mut progress: HashMap<TopicPartition, (Option<i64>, Instant)> = HashMap::new();
        let mut next = Instant::now();
        while !self.stop.is_cancelled() {
            if Instant::now() >= next {
                let mut lags = self.measure(&consumer);
                track_progress(&mut lags, &mut progress);
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
                // away while the others answer. Whether any broker answers is the probe's to
                // say (`reachability.rs`), not this query's.
                tracing::debug!(group = %self.group, %error, "lag: committed offsets unavailable");
                return Vec::new();
            }
        };
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
                Some(PartitionLag {
                    group: self.group.clone(),
                    topic,
                    partition,
                    high_watermark: high,
                    committed,
                    lag,
                    no_progress_seconds: None,
                })
            })
            .collect()
    }

    fn report(&self, lags: &[PartitionLag], over: &mut BTreeSet<TopicPartition>) {
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

/// Sets `no_progress_seconds` of each partition that has lag and whose committed offset has not
/// moved since an earlier measurement: how long it has stood still. `progress` remembers, per
/// partition, the committed offset last seen and since when.
fn track_progress(lags: &mut [PartitionLag], progress: &mut HashMap<TopicPartition, (Option<i64>, Instant)>) {
    let now = Instant::now();
    let mut seen = HashMap::with_capacity(lags.len());
    for lag in lags.iter_mut() {
        let tp = (lag.topic.clone(), lag.partition);
        let since = match progress.get(&tp) {
            Some((committed, since)) if *committed == lag.committed => *since,
            _ => now,
        };
        if lag.lag > 0 {
            lag.no_progress_seconds = Some(now.duration_since(since).as_secs_f64());
        }
        seen.insert(tp, (lag.committed, since));
    }
    *progress = seen;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(committed: Option<i64>, lag: i64) -> PartitionLag {
        PartitionLag {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            high_watermark: 100,
            committed,
            lag,
            no_progress_seconds: None,
        }
    }

    #[test]
    fn a_partition_with_lag_and_an_unmoving_offset_is_measured_as_standing_still() {
        let mut progress = HashMap::new();
        let mut first = [lag(Some(10), 90)];
        track_progress(&mut first, &mut progress);
        assert_eq!(first[0].no_progress_seconds, Some(0.0));
        std::thread::sleep(Duration::from_millis(20));
        let mut same = [lag(Some(10), 90)];
        track_progress(&mut same, &mut progress);
        assert!(same[0].no_progress_seconds.unwrap() >= 0.02, "{:?}", same[0].no_progress_seconds);
        let mut moved = [lag(Some(11), 89)];
        track_progress(&mut moved, &mut progress);
        assert!(moved[0].no_progress_seconds.unwrap() < 0.01, "moving again resets it");
        let mut caught_up = [lag(Some(100), 0)];
        track_progress(&mut caught_up, &mut progress);
        assert_eq!(caught_up[0].no_progress_seconds, None, "no lag: nothing to progress on");
    }
}
