//! The cap on messages one group member holds: polled and not yet finished, whether buffered
//! for a lane, waiting behind a message of the same key, being handled, or having its retry or
//! dead letter published. The offset trackers count into it; the poll thread pauses partitions
//! when it is reached and resumes them when it has drained to half.

//!
//! It also carries what the member's threads report about their liveness: when the poll thread
//! last polled, when a lane last received messages, whether a rebalance is under way.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Messages held by one group member, against its cap; and its liveness.
#[derive(Debug)]
pub(crate) struct Budget {
    held: AtomicUsize,
    peak: AtomicUsize,
    cap: usize,
    /// Milliseconds since the epoch; 0: never.
    last_poll: AtomicU64,
    last_message: AtomicU64,
    rebalancing: AtomicBool,
    stopped: AtomicBool,
    paused: AtomicUsize,
    /// Since when no broker answers (milliseconds since the epoch); 0: reachable.
    unreachable_since: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn since(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(now_ms().saturating_sub(ms)))
}

impl Budget {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            held: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            cap,
            last_poll: AtomicU64::new(0),
            last_message: AtomicU64::new(0),
            rebalancing: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            paused: AtomicUsize::new(0),
            unreachable_since: AtomicU64::new(0),
        }
    }

    /// The poll thread polled (once per burst).
    pub(crate) fn polled(&self) {
        self.last_poll.store(now_ms(), Ordering::Relaxed);
    }
    /// A lane received messages (once per batch).
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
    /// No broker answers (librdkafka reported all brokers down, or a lag query failed).
    pub(crate) fn broker_unreachable(&self) {
        let _ = self.unreachable_since.compare_exchange(0, now_ms(), Ordering::Relaxed, Ordering::Relaxed);
    }
    /// A broker answered.
    pub(crate) fn broker_reachable(&self) {
        if self.unreachable_since.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!("brokers reachable again");
        }
    }
    /// How long no broker has answered, if that is the case.
    pub(crate) fn unreachable_for(&self) -> Option<Duration> {
        since(self.unreachable_since.load(Ordering::Relaxed))
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

    /// One more message held.
    pub(crate) fn take(&self) {
        let held = self.held.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(held, Ordering::Relaxed);
    }

    /// `n` messages finished (or given up with their partition).
    pub(crate) fn release(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::Relaxed);
    }

    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The most messages held at once since start.
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// The cap is reached: every partition must pause.
    pub(crate) fn is_full(&self) -> bool {
        self.held() >= self.cap
    }

    /// Drained to half the cap: paused partitions may resume.
    pub(crate) fn has_drained(&self) -> bool {
        self.held() <= self.cap / 2
    }
}
