//! The cap on messages one group member holds: read from a partition's queue and not yet
//! finished, whether waiting in its lane, waiting behind a message of the same key, being
//! handled, or having its retry or dead letter published. The offset trackers count into it;
//! lanes stop reading their partition's queue while it is full.
//!
//! Messages held by partitions *stuck* at their own cap are *excused*: such a partition (one
//! that has finished no message for a second, say, behind a message that never finishes) is
//! bounded by its own cap already, and counting it here would let a few stuck partitions fill
//! the member's cap and starve every healthy one. A partition at its cap that keeps finishing
//! messages is merely ahead and counts, so the member's cap bounds busy partitions.
//!
//! Lanes read in parallel, so several stuck partitions can fill the member's cap together while
//! none has reached its own cap: none would be excused and all would wait for each other. A lane
//! that holds messages and has waited for the budget a second without finishing any may become
//! the budget's *leader* and read on up to its own cap (where it steps down, and is excused);
//! lanes that progress, or hold nothing, wait for the budget to free.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;

/// No lane leads.
const NO_LEADER: u64 = 0;

/// Messages held by one group member, against its cap.
#[derive(Debug)]
pub(crate) struct Budget {
    held: AtomicUsize,
    peak: AtomicUsize,
    /// Held by lanes at their own cap.
    excused: AtomicUsize,
    /// The lane that may read past a full budget up to its own cap; [`NO_LEADER`]: none.
    leader: AtomicU64,
    /// Lanes waiting for the budget: woken when it may have freed.
    freed: Notify,
    cap: usize,
}

impl Budget {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            held: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            excused: AtomicUsize::new(0),
            leader: AtomicU64::new(NO_LEADER),
            freed: Notify::new(),
            cap,
        }
    }

    /// `n` more messages held.
    pub(crate) fn take(&self, n: usize) {
        let held = self.held.fetch_add(n, Ordering::Relaxed) + n;
        self.peak.fetch_max(held, Ordering::Relaxed);
    }

    /// `n` messages finished (or given up with their partition).
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let before = self.held.fetch_sub(n, Ordering::Relaxed);
        let excused = self.excused.load(Ordering::Relaxed);
        // Wake waiting lanes when the messages not excused fall under the cap.
        if before.saturating_sub(excused) >= self.cap && (before - n).saturating_sub(excused) < self.cap {
            self.freed.notify_waiters();
        }
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

    /// The cap is reached by the messages not excused.
    pub(crate) fn is_full(&self) -> bool {
        self.held().saturating_sub(self.excused.load(Ordering::Relaxed)) >= self.cap
    }

    /// Whether `lane` leads (or becomes the leader because there is none): it may read past a
    /// full budget up to its own cap.
    pub(crate) fn lead(&self, lane: u64) -> bool {
        match self.leader.compare_exchange(NO_LEADER, lane, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => true,
            Err(leader) => leader == lane,
        }
    }

    /// A lane reached its own cap holding `held`: those messages are excused, and if it led it
    /// steps down.
    pub(crate) fn excuse(&self, lane: u64, held: usize) {
        self.excused.fetch_add(held, Ordering::Relaxed);
        self.step_down(lane);
        self.freed.notify_waiters();
    }

    /// A lane is under its own cap again (or gone): the `held` it was excused count again.
    pub(crate) fn unexcuse(&self, held: usize) {
        self.excused.fetch_sub(held, Ordering::Relaxed);
    }

    /// `lane` no longer leads (it reached its cap, or ended).
    pub(crate) fn step_down(&self, lane: u64) {
        if self.leader.compare_exchange(lane, NO_LEADER, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.freed.notify_waiters();
        }
    }

    /// Resolves when the budget may have room again. Create it (and `enable` it) before
    /// checking, so a release in between is not missed.
    pub(crate) fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excused_messages_do_not_count_and_one_lane_leads_past_a_full_budget() {
        let budget = Budget::new(10);
        budget.take(10);
        assert!(budget.is_full());
        assert!(budget.lead(1), "the first lane to ask leads");
        assert!(!budget.lead(2), "one leader at a time");
        budget.take(2);
        budget.excuse(1, 7); // lane 1 is stuck at its own cap holding 7
        assert!(!budget.is_full(), "12 held, 7 excused");
        budget.unexcuse(7);
        assert!(budget.is_full());
        assert!(budget.lead(2), "lane 1 stepped down: lane 2 leads now");
        budget.release(12);
        assert_eq!((budget.held(), budget.peak()), (0, 12));
    }
}
