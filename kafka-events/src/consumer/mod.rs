//! A consumer group member: one OS thread polls the group's consumer for its events
//! (rebalances, errors) and starts a lane per assigned partition; each lane reads its
//! partition's own queue (split off before the assignment, see `source.rs`); a committer
//! thread commits finished offsets.
//!
//! The poll loop runs on its own thread (not a tokio task) so that rebalance callbacks may wait
//! for in-flight messages without stalling the async runtime, whatever its flavour.

mod budget;
mod commit;
mod context;
mod keys;
mod lag;
mod lane;
mod lanes;
mod liveness;
mod member;
mod offsets;
mod reachability;
mod source;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, GroupProtocol};
use crate::error::Error;
use crate::health::HealthBoard;
use crate::metrics::Metrics;
use crate::processor::Processors;
use crate::registry::Topology;
use crate::sync::{contain, lock};
use budget::Budget;
use commit::Committer;
use context::{GroupContext, Hooks, MemberConsumer};
use lanes::Lanes;
use liveness::Liveness;
use member::Member;

/// The runtime's librdkafka fetch and prefetch defaults, per partition (see
/// [`GroupMember::start`]).
pub(crate) const PREFETCH: &[(&str, &str)] = &[
    ("queued.min.messages", "3000"),
    ("queued.max.messages.kbytes", "4096"),
    ("max.partition.fetch.bytes", "262144"),
    ("fetch.queue.backoff.ms", "10"),
    ("fetch.wait.max.ms", "10"),
];

/// How long a member may take past `KAFKA_SHUTDOWN_TIMEOUT` to commit and leave its group
/// before shutdown abandons it (see [`GroupMember::join`]). Both take well under a second while
/// the brokers answer.
pub(crate) const CLOSE_MARGIN: Duration = Duration::from_secs(3);

/// A running group member. Dropping it does not stop it: call [`GroupMember::signal_stop`] and
/// [`GroupMember::join`].
pub(crate) struct GroupMember {
    group: String,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
    /// Sent by the poll thread as its last act: whether it closed the consumer cleanly. Dropped
    /// unsent only if the thread died of a panic outside [`contain`].
    ended: Option<oneshot::Receiver<Result<(), String>>>,
    /// What the stopping poll thread is doing, for the report when it misses its deadline.
    progress: Arc<Mutex<Progress>>,
    lag_monitor: Option<JoinHandle<()>>,
    probe: Option<JoinHandle<()>>,
}

/// Everything a member needs.
pub(crate) struct MemberSpec {
    pub group: String,
    /// The topics it subscribes to.
    pub topics: Vec<String>,
    pub client: ClientConfig,
    pub topology: Arc<Topology>,
    pub processors: Arc<Processors>,
    pub status: Arc<HealthBoard>,
    pub metrics: Arc<Metrics>,
}

impl GroupMember {
    /// Creates the consumer, subscribes to every topic of the topology and starts polling.
    pub(crate) fn start(spec: MemberSpec, config: &Config) -> Result<Self, Error> {
        let lag_client = spec.client.clone();
        let mut client = spec.client;
        client
            .set("group.id", &spec.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", config.auto_offset_reset())
            .set("group.protocol", config.group_protocol().as_str())
            .set("enable.partition.eof", "false");
        if config.group_protocol() == GroupProtocol::Classic {
            client.set("partition.assignment.strategy", "cooperative-sticky");
        }
        // Every partition has a queue of its own, so librdkafka's prefetch limits apply per
        // partition (its defaults, 100,000 messages / 64 MB, assume one queue for all). A
        // partition's queue holds about `queued.min.messages` plus one fetch (256 KB): enough to
        // keep a lane busy, and librdkafka's own overhead per queued message (a few hundred
        // bytes) is what bounds memory (B4: 24 partitions added ~60 MB, ~170 MB with 1 MB
        // fetches). A drained queue is fetched again within 10 ms (librdkafka waits 1 s), and a
        // broker answers a fetch within 10 ms when it has nothing new for some partition, so a
        // drained partition never waits behind another's long poll (B1 on Kafka: 135k–390k
        // msgs/s with 100 ms, 460k–525k with 10 ms, in single runs). The price: an idle consumer
        // asks each broker every 10 ms. `KAFKA_CONSUMER_*` (and the production profile's 1 MB
        // fetches) override each.
        for (key, value) in PREFETCH {
            client.set(*key, *value);
        }
        for (key, value) in config.consumer_properties() {
            client.set(key, value);
        }
        let budget = Arc::new(Budget::new(config.max_buffered()));
        let liveness = Arc::new(Liveness::default());
        spec.status.track_member(
            &spec.group,
            Arc::new(liveness::Member { budget: budget.clone(), liveness: liveness.clone() }),
        );
        let lanes = Arc::new(Mutex::new(Lanes::new(
            spec.topology.clone(),
            spec.processors,
            tokio::runtime::Handle::current(),
            config.partition_buffer(),
            budget.clone(),
            liveness.clone(),
        )));
        let member = Arc::new(Member {
            group: spec.group.clone(),
            lanes: lanes.clone(),
            status: spec.status.clone(),
            metrics: spec.metrics.clone(),
            liveness: liveness.clone(),
            drain_timeout: config.shutdown_timeout(),
            commit_gate: Mutex::default(),
            consumer: std::sync::OnceLock::new(),
        });
        let context =
            GroupContext { group: spec.group.clone(), liveness: liveness.clone(), hooks: std::sync::OnceLock::new() };
        let consumer: MemberConsumer = client
            .create_with_context(context)
            .map_err(|e| Error::kafka(format!("creating the consumer of group `{}`", spec.group), e))?;
        // Before it subscribes: rebalances are served by its polls, from the poll thread on.
        let hooks: Arc<dyn Hooks> = member.clone();
        let _ = consumer.context().hooks.set(hooks);
        let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| Error::kafka(format!("subscribing group `{}` to {topics:?}", spec.group), e))?;
        tracing::info!(group = %spec.group, topics = ?topics, "subscribed");

        let stop = CancellationToken::new();
        let probe = reachability::Probe {
            group: spec.group.clone(),
            topic: spec.topics.first().cloned().unwrap_or_default(),
            client: lag_client.clone(),
            liveness: liveness.clone(),
            stop: stop.clone(),
        }
        .spawn()
        .map_err(|e| Error::Consumer {
            group: spec.group.clone(),
            reason: format!("cannot start its broker probe: {e}"),
        })?;
        let lag_monitor = lag::LagMonitor {
            group: spec.group.clone(),
            client: lag_client,
            lanes: lanes.clone(),
            status: spec.status.clone(),
            interval: config.lag_interval(),
            threshold: config.readiness_policy().lag_threshold,
            stop: stop.clone(),
        }
        .spawn()
        .map_err(|e| Error::Consumer {
            group: spec.group.clone(),
            reason: format!("cannot start its lag monitor: {e}"),
        })?;
        let consumer = Arc::new(consumer);
        // Rebalances (served by the poll thread, which starts below) split each assigned
        // partition's queue off through this.
        let _ = member.consumer.set(Arc::downgrade(&consumer));
        let committer = Committer::start(consumer.clone(), member.clone(), config.commit_interval()).map_err(|e| {
            Error::Consumer { group: spec.group.clone(), reason: format!("cannot start its committer: {e}") }
        })?;
        let (ended_tx, ended) = oneshot::channel();
        let progress = Arc::new(Mutex::new(Progress::default()));
        let poll = PollLoop {
            consumer,
            member,
            committer: Some(committer),
            stop: stop.clone(),
            progress: progress.clone(),
            ended: ended_tx,
            classic: config.group_protocol() == GroupProtocol::Classic,
        };
        let thread = std::thread::Builder::new()
            .name(format!("kafka-events-{}", spec.group))
            .spawn(move || poll.run())
            .map_err(|e| Error::Consumer {
                group: spec.group.clone(),
                reason: format!("cannot start its thread: {e}"),
            })?;
        Ok(Self {
            group: spec.group,
            stop,
            thread: Some(thread),
            ended: Some(ended),
            progress,
            lag_monitor: Some(lag_monitor),
            probe: Some(probe),
        })
    }

    /// Signals the member to stop: stop fetching, finish in-flight messages, commit, leave the
    /// group. Returns at once; [`GroupMember::join`] waits.
    pub(crate) fn signal_stop(&self) {
        self.stop.cancel();
    }

    /// Waits until the member's poll thread has finished, committed and left the group, or
    /// until `deadline` (the shutdown's: `KAFKA_SHUTDOWN_TIMEOUT` plus [`CLOSE_MARGIN`] after
    /// the signal). A member that misses it is abandoned — its thread goes on closing in the
    /// background and ends with the process — with an error naming the group, what it was doing
    /// and the offsets it had not committed: whatever librdkafka does, shutdown never waits
    /// longer. The lag monitor and the broker probe see the stop on their own and end after
    /// their query in flight; shutdown does not wait for them (a query to brokers that do not
    /// answer may take seconds).
    pub(crate) async fn join(mut self, deadline: tokio::time::Instant) -> Result<(), Error> {
        drop((self.lag_monitor.take(), self.probe.take()));
        let Some(ended) = self.ended.take() else { return Ok(()) };
        let group = self.group.clone();
        match tokio::time::timeout_at(deadline, ended).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(reason))) => Err(Error::Consumer { group, reason }),
            Ok(Err(_)) => Err(Error::Consumer { group, reason: "its poll thread panicked".into() }),
            Err(_) => {
                let progress = lock(&self.progress).to_string();
                contain(|| {
                    tracing::error!(
                        group = %group,
                        "the consumer did not stop by the shutdown deadline (KAFKA_SHUTDOWN_TIMEOUT + {}): abandoned while {progress}; the broker drops the member when its session times out",
                        humantime::format_duration(CLOSE_MARGIN),
                    )
                });
                Err(Error::Consumer { group, reason: format!("abandoned at the shutdown deadline while {progress}") })
            }
        }
    }

    /// Whether the member's thread has ended.
    pub(crate) fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

/// How long one poll of the consumer's queue waits for an event.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

struct PollLoop {
    /// Shared with the committer thread, which ends before the consumer is closed, and with
    /// the lanes' partition queues.
    consumer: Arc<MemberConsumer>,
    /// What the member's threads share (the commit of what finished).
    member: Arc<Member>,
    committer: Option<Committer>,
    stop: CancellationToken,
    progress: Arc<Mutex<Progress>>,
    ended: oneshot::Sender<Result<(), String>>,
    /// Whether the group uses the classic protocol (see [`PollLoop::shut_down`]).
    classic: bool,
}

impl PollLoop {
    /// Serves the consumer until stopped, then shuts the member down. A panic while serving (a
    /// log line, see [`crate::sync`]) ends the serving, never the shutdown.
    fn run(self) {
        contain(|| self.serve());
        self.shut_down();
    }

    /// Serves the consumer's events (rebalance callbacks run in here) until stopped. Messages
    /// reach the lanes through their partitions' queues; one that comes through this queue
    /// instead is routed to its lane.
    fn serve(&self) {
        while !self.stop.is_cancelled() {
            match self.consumer.poll(POLL_TIMEOUT) {
                None => {}
                Some(Ok(message)) => {
                    let message = message.detach();
                    let (topic, partition) = (message.topic().to_string(), message.partition());
                    if lock(&self.member.lanes).route(message) {
                        tracing::debug!(group = %self.member.group, %topic, partition, "a message came through the consumer's queue, not its partition's");
                    } else {
                        tracing::debug!(group = %self.member.group, %topic, partition, "dropped a message of a partition no longer assigned");
                    }
                }
                Some(Err(error)) => tracing::warn!(group = %self.member.group, %error, "consumer error"),
            }
            self.member.liveness.polled();
            let paused = {
                let mut lanes = lock(&self.member.lanes);
                lanes.flush();
                lanes.paused()
            };
            self.member.liveness.set_paused(paused);
        }
    }

    /// Finishes in-flight work, commits, leaves the group and destroys the consumer — each step
    /// [`contain`]ed, so that one that panics never skips the close — then reports how it ended.
    fn shut_down(mut self) {
        let deadline = Instant::now() + self.member.drain_timeout + CLOSE_MARGIN;
        contain(|| tracing::info!(group = %self.member.group, "stopping: finishing in-flight messages"));
        if let Some(committer) = self.committer.take() {
            contain(|| committer.stop());
        }
        // Every lane ends here or is aborted (its queue, holding the consumer, then goes too).
        let offsets = contain(|| lock(&self.member.lanes).drain_all(self.member.drain_timeout)).unwrap_or_default();
        lock(&self.progress).step("committing", &offsets);
        let uncommitted = if offsets.is_empty() {
            Vec::new()
        } else {
            match contain(|| self.member.commit(&self.consumer, &offsets)) {
                Some(Ok(())) => Vec::new(),
                // E.g. RebalanceInProgress while another instance joins: closing the consumer
                // revokes every partition, and the revocation hook commits these offsets again.
                Some(Err(error)) => {
                    contain(
                        || tracing::info!(group = %self.member.group, %error, "final commit deferred to the revocation on close"),
                    );
                    offsets
                }
                None => offsets,
            }
        };
        lock(&self.progress).step("leaving the group", &uncommitted);
        // librdkafka 2.12 closes a classic-protocol member that holds no partitions without a
        // LeaveGroup (terminating, its cooperative revocation of an empty assignment returns
        // before the leave), so the group keeps it until its session times out and every
        // rebalance meanwhile waits for it. Unsubscribing first takes the path that leaves.
        if self.classic && lock(&self.member.lanes).len() == 0 {
            contain(|| self.consumer.unsubscribe());
        }
        let PollLoop { consumer, member, ended, .. } = self;
        let (group, liveness) = (member.group.clone(), member.liveness.clone());
        // The member (the consumer's hooks hold it too) keeps only a weak reference to the
        // consumer: this thread's is the last one once the lanes are gone.
        drop(member);
        let closed = close(consumer, &group, deadline);
        liveness.set_stopped();
        match &closed {
            Ok(()) => contain(|| tracing::info!(group = %group, "left the group")),
            Err(reason) => contain(|| tracing::warn!(group = %group, "{reason}")),
        };
        let _ = ended.send(closed);
    }
}

/// Closes the consumer on the member's poll thread: librdkafka serves the final revocation
/// through the rebalance hooks (which commit what the lanes finished), leaves the group, and the
/// consumer is destroyed.
///
/// Normally every lane has ended and dropped its partition queue, so this thread holds the
/// consumer's last reference and dropping it closes it (rust-rdkafka's drop polls until the
/// close completes). A lane whose handler blocks its thread past the drain deadline still holds
/// a queue and the messages it read: the consumer is closed explicitly then, polled until
/// closed or `deadline`, and never destroyed (destroying it would wait for those messages, and
/// the lane's last drop would close it a second time — which waits forever): the process ends
/// it.
fn close(consumer: Arc<MemberConsumer>, group: &str, deadline: Instant) -> Result<(), String> {
    let shared = match Arc::try_unwrap(consumer) {
        Ok(consumer) => {
            contain(|| drop(consumer));
            return Ok(());
        }
        Err(shared) => shared,
    };
    let closed = match shared.close_queue() {
        Ok(()) => {
            while !shared.closed() && Instant::now() < deadline {
                contain(|| drop(shared.poll(POLL_TIMEOUT)));
            }
            shared.closed()
        }
        Err(error) => {
            contain(|| tracing::warn!(group, %error, "closing the consumer"));
            false
        }
    };
    std::mem::forget(shared);
    Err(if closed {
        "left the group with a lane still running past the deadline (a handler that blocks its thread): its consumer is not destroyed; it ends with the process".to_string()
    } else {
        "the consumer did not close in time while a lane still ran past the deadline (a handler that blocks its thread): it ends with the process; the broker drops the member when its session times out".to_string()
    })
}

/// What a stopping member is doing (see [`GroupMember::join`]).
#[derive(Debug)]
struct Progress {
    step: &'static str,
    uncommitted: Vec<(offsets::TopicPartition, i64)>,
}

impl Default for Progress {
    fn default() -> Self {
        Self { step: "finishing in-flight messages", uncommitted: Vec::new() }
    }
}

impl Progress {
    fn step(&mut self, step: &'static str, uncommitted: &[(offsets::TopicPartition, i64)]) {
        self.step = step;
        self.uncommitted = uncommitted.to_vec();
    }
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.uncommitted.is_empty() {
            write!(f, "{} (every finished offset committed)", self.step)
        } else {
            write!(f, "{}; not committed: {}", self.step, offsets::OffsetList(&self.uncommitted))
        }
    }
}
