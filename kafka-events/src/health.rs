//! What the runtime knows about its own state, for [`Runtime::health`](crate::runtime::Runtime::health).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::consumer::budget::Budget;
use crate::handler::ErrorKind;

/// A partition held at one message because it failed and its handler has no `dlq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StalledPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the message that keeps failing; nothing after it is processed.
    pub offset: i64,
    /// Why it failed.
    pub kind: ErrorKind,
    /// The last error.
    pub reason: String,
    /// When it first stalled.
    pub since: SystemTime,
}

/// One consumer group's membership, as this process sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupHealth {
    /// Partitions currently assigned to this process.
    pub assigned_partitions: usize,
    /// How many times partitions were assigned to it.
    pub assignments: u64,
    /// How many times partitions were revoked from it (a member kicked out of its group for
    /// exceeding `max.poll.interval.ms` shows up here).
    pub revocations: u64,
    /// Messages held now: polled and not yet finished (buffered, waiting behind their key,
    /// being handled, or having their retry or dead letter published).
    pub buffered: usize,
    /// The most messages held at once since start; never above [`buffer_cap`](Self::buffer_cap).
    pub buffered_peak: usize,
    /// The cap (`KAFKA_MAX_BUFFERED`): reaching it pauses every partition of the group.
    pub buffer_cap: usize,
}

/// A snapshot of the runtime's health.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// Partitions held at a failing message (see [`StalledPartition`]).
    pub stalled: Vec<StalledPartition>,
    /// Every consumer group of this process (`-main`, `-retry`), by group id.
    pub groups: BTreeMap<String, GroupHealth>,
}

impl Health {
    /// Healthy when no partition is stalled.
    pub fn is_healthy(&self) -> bool {
        self.stalled.is_empty()
    }
}

/// Shared, updated by the lanes and the consumer thread.
#[derive(Debug, Default)]
pub(crate) struct Status {
    /// How many partitions are stalled: lets the hot path skip the lock when none is.
    stalled_count: AtomicUsize,
    stalled: Mutex<BTreeMap<(String, i32), StalledPartition>>,
    groups: Mutex<BTreeMap<String, GroupHealth>>,
    budgets: Mutex<BTreeMap<String, Arc<Budget>>>,
}

impl Status {
    pub(crate) fn stall(&self, topic: &str, partition: i32, offset: i64, kind: ErrorKind, reason: &str) {
        let mut stalled = self.stalled.lock().unwrap_or_else(|p| p.into_inner());
        let since = stalled
            .get(&(topic.to_string(), partition))
            .filter(|s| s.offset == offset)
            .map_or_else(SystemTime::now, |s| s.since);
        stalled.insert(
            (topic.to_string(), partition),
            StalledPartition { topic: topic.into(), partition, offset, kind, reason: reason.into(), since },
        );
        self.stalled_count.store(stalled.len(), Ordering::Release);
    }

    /// Called for every handled message: free unless some partition is stalled.
    pub(crate) fn clear_stall(&self, topic: &str, partition: i32) {
        if self.stalled_count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut stalled = self.stalled.lock().unwrap_or_else(|p| p.into_inner());
        stalled.remove(&(topic.to_string(), partition));
        self.stalled_count.store(stalled.len(), Ordering::Release);
    }

    /// Records a rebalance of `group`: `assigned` partitions now, after an assignment
    /// (`revoked == false`) or a revocation.
    pub(crate) fn rebalanced(&self, group: &str, assigned: usize, revoked: bool) {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        let entry = groups.entry(group.to_string()).or_default();
        entry.assigned_partitions = assigned;
        if revoked {
            entry.revocations += 1;
        } else {
            entry.assignments += 1;
        }
    }

    /// Reports `group`'s held messages from now on.
    pub(crate) fn track_budget(&self, group: &str, budget: Arc<Budget>) {
        self.budgets.lock().unwrap_or_else(|p| p.into_inner()).insert(group.to_string(), budget);
    }

    pub(crate) fn snapshot(&self) -> Health {
        let mut groups = self.groups.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (group, budget) in self.budgets.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let entry = groups.entry(group.clone()).or_default();
            entry.buffered = budget.held();
            entry.buffered_peak = budget.peak();
            entry.buffer_cap = budget.cap();
        }
        Health { stalled: self.stalled.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect(), groups }
    }
}
