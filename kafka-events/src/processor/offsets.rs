//! Per-partition offset tracking: an offset is committable once it and every offset before it
//! are finished (their outcome is durable).

use std::collections::BTreeSet;

/// Tracks the offsets of one partition from dispatch to a durable outcome.
///
/// The committable offset (the one Kafka stores: the next to read) is the lowest offset still in
/// flight, or one past the highest finished offset when nothing is in flight. It only ever moves
/// forward, so a crash replays at most the in-flight window.
#[derive(Debug, Default, Clone)]
pub struct OffsetTracker {
    in_flight: BTreeSet<i64>,
    next_after_finished: Option<i64>,
}

impl OffsetTracker {
    /// An offset was handed to a lane.
    pub fn begin(&mut self, offset: i64) {
        self.in_flight.insert(offset);
    }

    /// An offset that was begun but could not be handed over after all (its lane was full).
    pub fn withdraw(&mut self, offset: i64) {
        self.in_flight.remove(&offset);
    }

    /// An offset's outcome is durable (handled, or its dead letter acknowledged).
    pub fn finish(&mut self, offset: i64) {
        self.in_flight.remove(&offset);
        let next = offset + 1;
        if self.next_after_finished.is_none_or(|n| next > n) {
            self.next_after_finished = Some(next);
        }
    }

    /// The offset to commit now, if any message was finished. Offsets are dispatched in order,
    /// so everything below the lowest in-flight offset is finished (or was never a message).
    pub fn committable(&self) -> Option<i64> {
        let finished = self.next_after_finished?;
        Some(self.in_flight.first().copied().unwrap_or(finished))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_progress() {
        let mut t = OffsetTracker::default();
        assert_eq!(t.committable(), None);
        t.begin(10);
        assert_eq!(t.committable(), None, "nothing finished yet");
        t.finish(10);
        assert_eq!(t.committable(), Some(11));
        t.begin(11);
        t.begin(12);
        assert_eq!(t.committable(), Some(11));
        t.finish(11);
        assert_eq!(t.committable(), Some(12));
    }

    #[test]
    fn only_the_contiguous_prefix_is_committable() {
        let mut t = OffsetTracker::default();
        for o in 0..5 {
            t.begin(o);
        }
        t.finish(0);
        t.finish(2);
        t.finish(3);
        assert_eq!(t.committable(), Some(1), "1 is still in flight");
        t.finish(1);
        assert_eq!(t.committable(), Some(4));
        t.finish(4);
        assert_eq!(t.committable(), Some(5));
        assert!(t.in_flight.is_empty());
    }
}
