//! The cap on messages one group member holds: polled and not yet finished, whether buffered
//! for a lane, waiting behind a message of the same key, being handled, or having its retry or
//! dead letter published. The offset trackers count into it; the poll thread pauses partitions
//! when it is reached and resumes them when it has drained to half.
//!
//! Messages held by partitions paused at their own cap are *excused*: such a partition (one
//! that cannot progress, say, behind a message that never finishes) is bounded by its own cap
//! already, and counting it here would let a few stuck partitions fill the member's cap and
//! starve every healthy one.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Messages held by one group member, against its cap.
#[derive(Debug)]
pub(crate) struct Budget {
    held: AtomicUsize,
    peak: AtomicUsize,
    cap: usize,
}

impl Budget {
    pub(crate) fn new(cap: usize) -> Self {
        Self { held: AtomicUsize::new(0), peak: AtomicUsize::new(0), cap }
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

    /// The cap is reached by the messages not `excused`: every partition must pause.
    pub(crate) fn is_full(&self, excused: usize) -> bool {
        self.held().saturating_sub(excused) >= self.cap
    }

    /// The messages not `excused` have drained to half the cap: paused partitions may resume.
    pub(crate) fn has_drained(&self, excused: usize) -> bool {
        self.held().saturating_sub(excused) <= self.cap / 2
    }
}
