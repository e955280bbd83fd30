//! What the runtime knows about its own state, for [`Runtime::health`](crate::runtime::Runtime::health).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::error_kind::ErrorKind;
use crate::sync::lock;

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
    /// How many rebalances left it owning partitions (an empty assignment does not count).
    pub assignments: u64,
    /// How many times partitions were revoked from it (a member kicked out of its group for
    /// exceeding `max.poll.interval.ms` shows up here).
    pub revocations: u64,
    /// Messages held now: polled and not yet finished (buffered, waiting behind their key,
    /// being handled, or having their retry or dead letter published).
    pub buffered: usize,
    /// The most messages held at once since start; never above [`buffer_cap`](Self::buffer_cap).
    pub buffered_peak: usize,
    /// The cap (`KAFKA_MAX_BUFFERED`): at it the group's lanes stop reading (partitions stuck at their
    /// own cap excused).
    pub buffer_cap: usize,
    /// Running, rebalancing or stopped.
    pub state: GroupState,
    /// Time since the group's poll thread last polled (it polls at least every 50 ms unless a
    /// rebalance callback is waiting for in-flight messages).
    pub since_last_poll: Option<Duration>,
    /// Time since a lane of the group last received messages.
    pub since_last_message: Option<Duration>,
    /// Partitions not being read now: at a cap, or their handler's circuit is open. (Nothing is
    /// paused at the broker: librdkafka stops fetching a partition whose queue is full.)
    pub paused_partitions: usize,
    /// How long no broker has answered this group's clients, when that is the case.
    pub brokers_unreachable_for: Option<Duration>,
}

/// Consumer lag of one partition, as the lag monitor last measured it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PartitionLag {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The broker's high watermark (the offset the next record will get).
    pub high_watermark: i64,
    /// The group's committed offset, if it has one.
    pub committed: Option<i64>,
    /// `high_watermark − committed` (or − the low watermark when nothing is committed).
    pub lag: i64,
    /// With lag, how long the committed offset has not moved (seconds, as of the last
    /// measurement); `None` without lag. Over `KAFKA_EVENTS_PROGRESS_TIMEOUT` the runtime is
    /// not ready: a handler stuck on a message, or a broker that stopped serving the partition.
    pub no_progress_seconds: Option<f64>,
}

/// What a consumer group member is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupState {
    /// Polling and processing.
    #[default]
    Running,
    /// Inside a rebalance callback (revoked lanes are finishing their messages).
    Rebalancing,
    /// Its poll thread has ended (shutdown or a fatal error).
    Stopped,
}

/// When the runtime counts as ready (see [`Health::readiness`]).
#[derive(Debug, Clone, Copy)]
pub struct ReadinessPolicy {
    /// A poll thread silent for longer than this makes the runtime not live and not ready.
    pub poll_timeout: Duration,
    /// How long after start a main group without any assignment is still ready.
    pub startup_grace: Duration,
    /// A partition lagging by more messages than this makes the runtime not ready (0: never).
    pub lag_threshold: i64,
    /// A partition with lag whose committed offset has not moved for longer than this makes
    /// the runtime not ready (zero: never).
    pub progress_timeout: Duration,
}

/// The verdict of [`Health::readiness`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Ready to take traffic.
    pub ready: bool,
    /// Why not, one line per problem.
    pub problems: Vec<String>,
}

/// A snapshot of the runtime's health.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Health {
    /// Partitions held at a failing message (see [`StalledPartition`]).
    pub stalled: Vec<StalledPartition>,
    /// Every consumer group of this process (`-main`, `-retry`), by group id.
    pub groups: BTreeMap<String, GroupHealth>,
    /// Lag of every partition this process owns, as last measured (every
    /// `KAFKA_EVENTS_LAG_INTERVAL`).
    pub lag: Vec<PartitionLag>,
    /// Every handler's circuit breaker (handlers without one are not listed).
    pub circuits: Vec<crate::circuit::CircuitHealth>,
}

impl Health {
    /// Healthy when no partition is stalled.
    pub fn is_healthy(&self) -> bool {
        self.stalled.is_empty()
    }

    /// Live while every poll thread runs and has polled within `policy.poll_timeout`.
    pub fn liveness(&self, policy: &ReadinessPolicy) -> Readiness {
        let mut problems = Vec::new();
        for (group, health) in &self.groups {
            match (health.state, health.since_last_poll) {
                (GroupState::Stopped, _) => problems.push(format!("group `{group}`: its poll thread has stopped")),
                (_, Some(silent)) if silent > policy.poll_timeout => problems.push(format!(
                    "group `{group}`: no poll for {} (limit {})",
                    humantime::format_duration(round_ms(silent)),
                    humantime::format_duration(policy.poll_timeout)
                )),
                _ => {}
            }
        }
        Readiness { ready: problems.is_empty(), problems }
    }

    /// Ready when live, brokers answer, no partition is stalled or lags over the threshold, and
    /// the main group (`…-main`) has had an
    /// assignment — or the runtime started less than `policy.startup_grace` ago.
    pub fn readiness(&self, policy: &ReadinessPolicy, uptime: Duration) -> Readiness {
        let mut problems = self.liveness(policy).problems;
        for (group, health) in &self.groups {
            if let Some(down) = health.brokers_unreachable_for {
                problems.push(format!(
                    "group `{group}`: no broker has answered for {}",
                    humantime::format_duration(round_ms(down))
                ));
            }
        }
        for stall in &self.stalled {
            problems.push(format!(
                "partition {}[{}] is stalled at offset {}: {}",
                stall.topic, stall.partition, stall.offset, stall.reason
            ));
        }
        for lag in self.lag.iter().filter(|l| policy.lag_threshold > 0 && l.lag > policy.lag_threshold) {
            problems.push(format!(
                "group `{}`: partition {}[{}] lags {} messages (threshold {})",
                lag.group, lag.topic, lag.partition, lag.lag, policy.lag_threshold
            ));
        }
        for lag in &self.lag {
            let still = lag.no_progress_seconds.map(Duration::from_secs_f64);
            if !policy.progress_timeout.is_zero() && still.is_some_and(|s| s > policy.progress_timeout) {
                problems.push(format!(
                    "group `{}`: partition {}[{}] has made no progress for {} with {} messages of lag (limit {})",
                    lag.group,
                    lag.topic,
                    lag.partition,
                    humantime::format_duration(round_ms(still.unwrap_or_default())),
                    lag.lag,
                    humantime::format_duration(policy.progress_timeout)
                ));
            }
        }
        if uptime > policy.startup_grace {
            for (group, health) in self.groups.iter().filter(|(g, _)| crate::names::is_main_group(g)) {
                if health.assignments == 0 {
                    problems.push(format!(
                        "group `{group}`: no partition assigned {} after start",
                        humantime::format_duration(round_ms(uptime))
                    ));
                }
            }
        }
        Readiness { ready: problems.is_empty(), problems }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// A group member's live figures, read each time health is: implemented by the consumer, so
/// health reads the member without depending on it.
pub(crate) trait MemberProbe: Send + Sync {
    /// Writes the member's held messages, poll and message times, paused partitions, broker
    /// reachability and state into `health`.
    fn report(&self, health: &mut GroupHealth);
}

/// What the runtime reports about itself as it runs — stalls, rebalances, lag, members,
/// circuits — posted by the lanes and the consumer threads; [`Health`] is a snapshot of it.
pub(crate) struct HealthBoard {
    /// How many partitions are stalled: lets the hot path skip the lock when none is.
    stalled_count: AtomicUsize,
    stalled: Mutex<BTreeMap<(String, i32), StalledPartition>>,
    groups: Mutex<BTreeMap<String, GroupHealth>>,
    /// Per group: its held-message budget and its liveness.
    members: Mutex<BTreeMap<String, Arc<dyn MemberProbe>>>,
    lag: Mutex<BTreeMap<String, Vec<PartitionLag>>>,
    circuits: Mutex<Vec<Arc<crate::circuit::CircuitBreaker>>>,
}

impl HealthBoard {
    pub(crate) fn new() -> Self {
        Self {
            stalled_count: AtomicUsize::new(0),
            stalled: Mutex::default(),
            groups: Mutex::default(),
            members: Mutex::default(),
            lag: Mutex::default(),
            circuits: Mutex::default(),
        }
    }

    pub(crate) fn stall(&self, topic: &str, partition: i32, offset: i64, kind: ErrorKind, reason: &str) {
        let mut stalled = lock(&self.stalled);
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

    /// Called for every finished message: ends the stall of its partition when it is the
    /// stalled message. Free unless some partition is stalled.
    pub(crate) fn clear_stall(&self, topic: &str, partition: i32, offset: i64) {
        // Only the stalled message's own outcome ends its stall: another message of the partition
        // (another key with `concurrency`, or one read on while a publish is held) says nothing
        // about it.
        self.remove_stall(topic, partition, |stalled| stalled.offset == offset);
    }

    /// Forgets the stall of a partition that moved to another instance.
    pub(crate) fn partition_moved(&self, topic: &str, partition: i32) {
        self.remove_stall(topic, partition, |_| true);
    }

    fn remove_stall(&self, topic: &str, partition: i32, which: impl FnOnce(&StalledPartition) -> bool) {
        if self.stalled_count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut stalled = lock(&self.stalled);
        let key = (topic.to_string(), partition);
        if stalled.get(&key).is_some_and(which) {
            stalled.remove(&key);
        }
        self.stalled_count.store(stalled.len(), Ordering::Release);
    }

    /// Records a rebalance of `group`: `assigned` partitions now, after an assignment
    /// (`revoked == false`) or a revocation.
    pub(crate) fn rebalanced(&self, group: &str, assigned: usize, revoked: bool) {
        let mut groups = lock(&self.groups);
        let entry = groups.entry(group.to_string()).or_default();
        entry.assigned_partitions = assigned;
        if revoked {
            entry.revocations += 1;
        } else if assigned > 0 {
            // An empty assignment (more members than partitions) is not an assignment.
            entry.assignments += 1;
        }
    }

    /// Reports `group`'s held messages and liveness from now on.
    pub(crate) fn track_member(&self, group: &str, member: Arc<dyn MemberProbe>) {
        lock(&self.members).insert(group.to_string(), member);
    }

    /// Reports these circuit breakers from now on.
    pub(crate) fn track_circuits(&self, breakers: impl IntoIterator<Item = Arc<crate::circuit::CircuitBreaker>>) {
        lock(&self.circuits).extend(breakers);
    }

    /// The lag monitor's latest measurement for `group`.
    pub(crate) fn set_lag(&self, group: &str, lags: Vec<PartitionLag>) {
        lock(&self.lag).insert(group.to_string(), lags);
    }

    pub(crate) fn snapshot(&self) -> Health {
        let mut groups = lock(&self.groups).clone();
        for (group, member) in lock(&self.members).iter() {
            member.report(groups.entry(group.clone()).or_default());
        }
        Health {
            stalled: lock(&self.stalled).values().cloned().collect(),
            groups,
            lag: lock(&self.lag).values().flatten().cloned().collect(),
            circuits: lock(&self.circuits).iter().map(|b| b.health()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ReadinessPolicy {
        ReadinessPolicy {
            poll_timeout: Duration::from_secs(60),
            startup_grace: Duration::from_secs(60),
            lag_threshold: 0,
            progress_timeout: Duration::from_secs(300),
        }
    }

    fn health(lag: Vec<PartitionLag>, groups: BTreeMap<String, GroupHealth>) -> Health {
        Health { stalled: vec![], groups, lag, circuits: vec![] }
    }

    #[test]
    fn a_partition_standing_still_with_lag_past_the_timeout_is_not_ready() {
        let lag = |still: Option<f64>| PartitionLag {
            group: "svc-main".into(),
            topic: "orders".into(),
            partition: 2,
            high_watermark: 50,
            committed: Some(40),
            lag: 10,
            no_progress_seconds: still,
        };
        let uptime = Duration::from_secs(1);
        assert!(health(vec![lag(Some(299.0))], BTreeMap::new()).readiness(&policy(), uptime).ready);
        let verdict = health(vec![lag(Some(301.0))], BTreeMap::new()).readiness(&policy(), uptime);
        assert!(!verdict.ready);
        assert_eq!(
            verdict.problems,
            ["group `svc-main`: partition orders[2] has made no progress for 5m 1s with 10 messages of lag (limit 5m)"]
        );
        let off = ReadinessPolicy { progress_timeout: Duration::ZERO, ..policy() };
        assert!(health(vec![lag(Some(1e6))], BTreeMap::new()).readiness(&off, uptime).ready, "0: never");
    }

    #[test]
    fn an_empty_assignment_is_not_an_assignment() {
        let status = HealthBoard::new();
        status.rebalanced("svc-main", 0, false);
        let groups = status.groups.lock().unwrap().clone();
        assert_eq!(groups["svc-main"].assignments, 0);
        let verdict = health(vec![], groups).readiness(&policy(), Duration::from_secs(61));
        assert_eq!(verdict.problems, ["group `svc-main`: no partition assigned 1m 1s after start"]);
        status.rebalanced("svc-main", 3, false);
        assert_eq!(status.groups.lock().unwrap()["svc-main"].assignments, 1);
    }

    #[test]
    fn only_the_stalled_message_or_a_move_ends_a_stall() {
        let status = HealthBoard::new();
        let stalled = |status: &HealthBoard| lock(&status.stalled).values().map(|s| s.offset).collect::<Vec<_>>();
        status.stall("orders", 1, 40, ErrorKind::Permanent, "no dlq");
        status.clear_stall("orders", 1, 41);
        assert_eq!(stalled(&status), [40], "another message of the partition finished: still held at 40");
        status.clear_stall("orders", 2, 40);
        assert_eq!(stalled(&status), [40]);
        status.clear_stall("orders", 1, 40);
        assert!(stalled(&status).is_empty());
        status.stall("orders", 1, 40, ErrorKind::Undeliverable, "refused");
        status.partition_moved("orders", 1);
        assert!(stalled(&status).is_empty(), "a partition that moved away is not ours to report");
        assert_eq!(status.stalled_count.load(Ordering::Acquire), 0);
    }
}
