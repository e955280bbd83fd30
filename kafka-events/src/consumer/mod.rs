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
mod offsets;
mod reachability;
mod source;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, GroupProtocol};
use crate::error::Error;
use crate::health::HealthBoard;
use crate::metrics::Metrics;
use crate::processor::Processor;
use crate::registry::Topology;
use crate::sync::lock;
use budget::Budget;
use commit::{commit, Committer};
use context::GroupContext;
use lanes::Lanes;
use liveness::Liveness;

/// The runtime's librdkafka fetch and prefetch defaults, per partition (see
/// [`GroupMember::start`]).
pub(crate) const PREFETCH: &[(&str, &str)] = &[
    ("queued.min.messages", "3000"),
    ("queued.max.messages.kbytes", "4096"),
    ("max.partition.fetch.bytes", "262144"),
    ("fetch.queue.backoff.ms", "10"),
    ("fetch.wait.max.ms", "10"),
];

/// A running group member. Dropping it does not stop it: call [`GroupMember::stop`].
pub(crate) struct GroupMember {
    group: String,
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
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
    pub processor: Arc<Processor>,
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
            spec.processor,
            tokio::runtime::Handle::current(),
            config.partition_buffer(),
            budget.clone(),
            liveness.clone(),
        )));
        let context = GroupContext {
            group: spec.group.clone(),
            lanes: lanes.clone(),
            status: spec.status.clone(),
            metrics: spec.metrics.clone(),
            liveness: liveness.clone(),
            drain_timeout: config.shutdown_timeout(),
            commit_gate: Mutex::default(),
            consumer: std::sync::OnceLock::new(),
        };
        let consumer: BaseConsumer<GroupContext> = client
            .create_with_context(context)
            .map_err(|e| Error::kafka(format!("creating the consumer of group `{}`", spec.group), e))?;
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
        let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
        let committer = Committer::start(consumer.clone(), config.commit_interval()).map_err(|e| Error::Consumer {
            group: spec.group.clone(),
            reason: format!("cannot start its committer: {e}"),
        })?;
        let poll = PollLoop {
            consumer,
            committer: Some(committer),
            lanes,
            stop: stop.clone(),
            drain_timeout: config.shutdown_timeout(),
            group: spec.group.clone(),
            liveness,
        };
        let thread = std::thread::Builder::new()
            .name(format!("kafka-events-{}", spec.group))
            .spawn(move || poll.run())
            .map_err(|e| Error::Consumer {
                group: spec.group.clone(),
                reason: format!("cannot start its thread: {e}"),
            })?;
        Ok(Self { group: spec.group, stop, thread: Some(thread), lag_monitor: Some(lag_monitor), probe: Some(probe) })
    }

    /// Signals the member to stop: stop fetching, finish in-flight messages, commit, leave the
    /// group. Returns at once; [`GroupMember::join`] waits.
    pub(crate) fn signal_stop(&self) {
        self.stop.cancel();
    }

    /// Waits for the member's poll thread to end. The lag monitor and the broker probe see the
    /// stop on their own and end after their query in flight; shutdown does not wait for them
    /// (a query to brokers that do not answer may take seconds).
    pub(crate) async fn join(mut self) -> Result<(), Error> {
        drop((self.lag_monitor.take(), self.probe.take()));
        let Some(thread) = self.thread.take() else { return Ok(()) };
        let group = self.group.clone();
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|e| Error::Consumer { group: group.clone(), reason: e.to_string() })?
            .map_err(|_| Error::Consumer { group, reason: "its poll thread panicked".into() })
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
    consumer: Arc<BaseConsumer<GroupContext>>,
    committer: Option<Committer>,
    lanes: Arc<Mutex<Lanes>>,
    stop: CancellationToken,
    drain_timeout: Duration,
    group: String,
    liveness: Arc<Liveness>,
}

impl PollLoop {
    /// Serves the consumer's events (rebalance callbacks run in here) until stopped. Messages
    /// reach the lanes through their partitions' queues; one that comes through this queue
    /// instead is routed to its lane.
    fn run(self) {
        while !self.stop.is_cancelled() {
            match self.consumer.poll(POLL_TIMEOUT) {
                None => {}
                Some(Ok(message)) => {
                    let message = message.detach();
                    let (topic, partition) = (message.topic().to_string(), message.partition());
                    if lock(&self.lanes).route(message) {
                        tracing::debug!(group = %self.group, %topic, partition, "a message came through the consumer's queue, not its partition's");
                    } else {
                        tracing::debug!(group = %self.group, %topic, partition, "dropped a message of a partition no longer assigned");
                    }
                }
                Some(Err(error)) => tracing::warn!(group = %self.group, %error, "consumer error"),
            }
            self.liveness.polled();
            let paused = {
                let mut lanes = lock(&self.lanes);
                lanes.flush();
                lanes.paused()
            };
            self.liveness.set_paused(paused);
        }
        self.shut_down();
    }

    /// Finish in-flight work, commit, leave the group (dropping the consumer closes it).
    fn shut_down(mut self) {
        tracing::info!(group = %self.group, "stopping: finishing in-flight messages");
        if let Some(committer) = self.committer.take() {
            committer.stop();
        }
        let offsets = lock(&self.lanes).drain_all(self.drain_timeout);
        if !offsets.is_empty() {
            match commit(&self.consumer, &offsets) {
                Ok(()) => {}
                // E.g. RebalanceInProgress while another instance joins: closing the consumer
                // revokes every partition, and the revocation hook commits these offsets again.
                Err(error) => {
                    tracing::info!(group = %self.group, %error, "final commit deferred to the revocation on close")
                }
            }
        }
        let (group, liveness) = (self.group.clone(), self.liveness.clone());
        drop(self);
        liveness.set_stopped();
        tracing::info!(group = %group, "left the group");
    }
}
