//! What the runtime knows about its own state, for [`Runtime::health`](crate::runtime::Runtime::health).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

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

/// A snapshot of the runtime's health.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// Partitions held at a failing message (see [`StalledPartition`]).
    pub stalled: Vec<StalledPartition>,
    /// Partitions currently assigned to this process by the main group.
    pub assigned_partitions: usize,
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
    stalled: Mutex<BTreeMap<(String, i32), StalledPartition>>,
    assigned: Mutex<usize>,
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
    }

    pub(crate) fn clear_stall(&self, topic: &str, partition: i32) {
        let mut stalled = self.stalled.lock().unwrap_or_else(|p| p.into_inner());
        if !stalled.is_empty() {
            stalled.remove(&(topic.to_string(), partition));
        }
    }

    pub(crate) fn set_assigned(&self, count: usize) {
        *self.assigned.lock().unwrap_or_else(|p| p.into_inner()) = count;
    }

    pub(crate) fn snapshot(&self) -> Health {
        Health {
            stalled: self.stalled.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect(),
            assigned_partitions: *self.assigned.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }
}
