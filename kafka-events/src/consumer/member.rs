//! The state one group member's threads share — its lanes, its commits, its reports — and what
//! a rebalance does to it ([`Hooks`]): revoked lanes finish and their offsets are committed
//! while the partitions are still ours; assigned partitions get their queues split off and their
//! lanes started.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::TopicPartitionList;

use super::context::{Hooks, MemberConsumer};
use super::lanes::Lanes;
use super::liveness::Liveness;
use super::offsets::{OffsetList, TopicPartition};
use crate::health::HealthBoard;
use crate::metrics::Metrics;
use crate::sync::lock;

pub(crate) struct Member {
    pub(crate) group: String,
    pub(crate) lanes: Arc<Mutex<Lanes>>,
    pub(crate) status: Arc<HealthBoard>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) liveness: Arc<Liveness>,
    pub(crate) drain_timeout: Duration,
    /// Held by whoever commits: a revocation, shutdown, or the committer thread (see
    /// `commit.rs`).
    pub(crate) commit_gate: Mutex<()>,
    /// The consumer itself (set once it is in its `Arc`), to split partition queues off.
    pub(crate) consumer: OnceLock<Weak<MemberConsumer>>,
}

impl Hooks for Member {
    fn before(&self, consumer: &MemberConsumer, rebalance: &Rebalance<'_>) {
        self.before_rebalance(consumer, rebalance);
    }

    fn after(&self, consumer: &MemberConsumer, rebalance: &Rebalance<'_>) {
        self.after_rebalance(consumer, rebalance);
    }
}

impl Member {
    /// Commits `offsets`, waits for the broker's answer, counts it and, when it succeeded, records
    /// it with the lanes. Callers hold the member's commit gate.
    pub(crate) fn commit(&self, consumer: &MemberConsumer, offsets: &[(TopicPartition, i64)]) -> KafkaResult<()> {
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in offsets {
            list.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(*offset))?;
        }
        let result = consumer.commit(&list, CommitMode::Sync);
        self.metrics.committed(&self.group, result.is_ok());
        if result.is_ok() {
            tracing::debug!(group = %self.group, offsets = %OffsetList(offsets), "committed");
            lock(&self.lanes).committed(offsets);
        }
        result
    }

    /// Revocation: each revoked lane finishes the message in hand (bounded by the drain timeout),
    /// then the finished prefix is committed while the partitions are still ours. This runs on the
    /// consumer's own thread, so waiting here delays nothing but this group's poll; lanes of
    /// partitions that stay keep running.
    fn before_rebalance(&self, consumer: &MemberConsumer, rebalance: &Rebalance<'_>) {
        self.liveness.set_rebalancing(true);
        if let Rebalance::Assign(assigned) = rebalance {
            self.split_queues(assigned);
            return;
        }
        let Rebalance::Revoke(revoked) = rebalance else { return };
        let _gate = lock(&self.commit_gate);
        let partitions = partitions_of(revoked);
        let offsets = {
            let mut lanes = lock(&self.lanes);
            let offsets = lanes.revoke(&partitions, self.drain_timeout);
            self.status.rebalanced(&self.group, lanes.len(), true);
            self.metrics.rebalanced(&self.group, true);
            // A stalled partition that moves away is no longer this instance's to report.
            for (topic, partition) in &partitions {
                self.status.partition_moved(topic, *partition);
            }
            offsets
        };
        if offsets.is_empty() {
            tracing::info!(group = %self.group, partitions = ?partitions, "partitions revoked");
            return;
        }
        if consumer.assignment_lost() {
            tracing::info!(group = %self.group, partitions = ?partitions, "partitions revoked");
            tracing::warn!(group = %self.group, "assignment lost: finished offsets of revoked partitions cannot be committed; they will be redelivered");
            return;
        }
        let result = self.commit(consumer, &offsets);
        tracing::info!(group = %self.group, partitions = ?partitions, "partitions revoked");
        if let Err(error) = result {
            // Apache Kafka accepts a commit of the current generation while the group prepares a
            // rebalance, so this is rare there; librdkafka's mock cluster refuses every commit
            // once any member has rejoined (RebalanceInProgress).
            tracing::warn!(
                group = %self.group,
                %error,
                uncommitted = %OffsetList(&offsets),
                "commit on revocation failed; the next owner re-reads these partitions from their last committed offsets"
            );
        }
    }

    fn after_rebalance(&self, consumer: &MemberConsumer, rebalance: &Rebalance<'_>) {
        self.liveness.set_rebalancing(false);
        match rebalance {
            Rebalance::Assign(assigned) => {
                let partitions = partitions_of(assigned);
                {
                    let mut lanes = lock(&self.lanes);
                    if lanes.any_transactional() {
                        lanes.set_group(consumer.group_metadata());
                    }
                    for tp in partitions.iter().cloned() {
                        lanes.assign(tp);
                    }
                    self.status.rebalanced(&self.group, lanes.len(), false);
                    self.metrics.rebalanced(&self.group, false);
                }
                // A partition paused under an earlier assignment must not stay paused.
                let resumed = consumer.resume(assigned);
                tracing::info!(group = %self.group, partitions = ?partitions, "partitions assigned");
                if let Err(error) = resumed {
                    tracing::debug!(%error, "resume of newly assigned partitions");
                }
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => tracing::error!(group = %self.group, %error, "rebalance failed"),
        }
    }

    /// Splits the queue of each partition about to be assigned off the consumer's queue, for
    /// its lane. Done before the assignment starts fetching, librdkafka never forwards the
    /// partition's messages to the consumer's queue (a queue the application forwarded stays
    /// its own), so the lane sees every message of the partition, in order.
    fn split_queues(&self, assigned: &TopicPartitionList) {
        let Some(consumer) = self.consumer.get().and_then(std::sync::Weak::upgrade) else { return };
        let mut lanes = lock(&self.lanes);
        for (topic, partition) in partitions_of(assigned) {
            let split = consumer.split_partition_queue(&topic, partition);
            match split.and_then(|queue| Some((crate::native::BatchQueue::of(&consumer, &topic, partition)?, queue))) {
                Some(queue) => lanes.stage_queue((topic, partition), queue),
                None => {
                    tracing::warn!(group = %self.group, %topic, partition, "could not split the partition's queue off")
                }
            }
        }
    }
}

pub(crate) fn partitions_of(list: &TopicPartitionList) -> Vec<TopicPartition> {
    list.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()
}
