//! What a group member's threads report about themselves, for liveness and readiness: when the
//! poll thread last polled, when a lane last received messages, whether a rebalance is under way,
//! how many partitions are paused, whether the brokers answer, whether the member has stopped.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::budget::Budget;
use crate::health::{GroupHealth, GroupState, MemberProbe};

/// One group member's liveness. Times are milliseconds since the epoch; 0: never.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    last_poll: AtomicU64,
    last_message: AtomicU64,
    rebalancing: AtomicBool,
    stopped: AtomicBool,
    paused: AtomicUsize,
    /// Since when no broker answers; 0: reachable.
    unreachable_since: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn since(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(now_ms().saturating_sub(ms)))
}

impl Liveness {
    /// The poll thread polled (once per burst).
    pub(crate) fn polled(&self) {
        self.last_poll.store(now_ms(), Ordering::Relaxed);
    }
    /// Lanes received messages (once per burst).
    pub(crate) fn received(&self) {
        self.last_message.store(now_ms(), Ordering::Relaxed);
    }
    pub(crate) fn set_rebalancing(&self, on: bool) {
        self.rebalancing.store(on, Ordering::Relaxed);
    }
    /// How many partitions the poll thread has paused now.
    pub(crate) fn set_paused(&self, partitions: usize) {
        self.paused.store(partitions, Ordering::Relaxed);
    }
    pub(crate) fn paused(&self) -> usize {
        self.paused.load(Ordering::Relaxed)
    }
    /// No broker answers (librdkafka reported all brokers down).
    pub(crate) fn broker_unreachable(&self) {
        self.broker_unreachable_since(SystemTime::now());
    }
    /// No broker answered a question asked at `asked`.
    pub(crate) fn broker_unreachable_since(&self, asked: SystemTime) {
        let ms = asked.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64).max(1);
        let _ = self.unreachable_since.compare_exchange(0, ms, Ordering::Relaxed, Ordering::Relaxed);
    }
    /// A broker answered.
    pub(crate) fn broker_reachable(&self) {
        if self.unreachable_since.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!("brokers reachable again");
        }
    }
    /// How long no broker has answered, if that is the case. Messages received after the
    /// brokers stopped answering prove they answer: then they are not reported unreachable.
    pub(crate) fn unreachable_for(&self) -> Option<Duration> {
        let unreachable = self.unreachable_since.load(Ordering::Relaxed);
        if unreachable > 0 && self.last_message.load(Ordering::Relaxed) > unreachable {
            return None;
        }
        since(unreachable)
    }
    pub(crate) fn set_stopped(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
    pub(crate) fn since_last_poll(&self) -> Option<Duration> {
        since(self.last_poll.load(Ordering::Relaxed))
    }
    pub(crate) fn since_last_message(&self) -> Option<Duration> {
        since(self.last_message.load(Ordering::Relaxed))
    }
    pub(crate) fn is_rebalancing(&self) -> bool {
        self.rebalancing.load(Ordering::Relaxed)
    }
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
}

/// What health reads of a group member: its held-message budget and its liveness.
pub(crate) struct Member {
    pub(crate) budget: Arc<Budget>,
    pub(crate) liveness: Arc<Liveness>,
}

impl MemberProbe for Member {
    fn report(&self, health: &mut GroupHealth) {
        let (budget, liveness) = (&self.budget, &self.liveness);
        health.buffered = budget.held();
        health.buffered_peak = budget.peak();
        health.buffer_cap = budget.cap();
        health.since_last_poll = liveness.since_last_poll();
        health.since_last_message = liveness.since_last_message();
        health.paused_partitions = liveness.paused();
        health.brokers_unreachable_for = liveness.unreachable_for();
        health.state = if liveness.is_stopped() {
            GroupState::Stopped
        } else if liveness.is_rebalancing() {
            GroupState::Rebalancing
        } else {
            GroupState::Running
        };
    }
}
