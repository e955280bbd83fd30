//! Per-partition offset tracking: an offset is committable once it and every offset before it
//! are finished (their outcome is durable).

use std::collections::VecDeque;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;

use super::budget::Budget;

/// A topic and one of its partitions: the key of a lane, an offset or a queue.
pub(crate) type TopicPartition = (String, i32);

/// Tracks the offsets of one partition from the moment they are polled to a durable outcome.
///
/// Offsets may finish in any order (concurrent handlers, pipelined publishes). The committable
/// offset (the one Kafka stores: the next to read) is the lowest unfinished offset, or one past
/// the highest finished offset when none is unfinished; it only ever moves forward.
///
/// A message is *held* from the moment it is polled until the committable offset has passed it:
/// unfinished messages, and finished ones above an unfinished one. Those are exactly what a crash
/// after the next commit would replay, so capping them (the lane stops reading when they reach
/// its cap) bounds both memory and the replay: one message that never finishes cannot let its
/// partition run ahead without limit. Every held message counts against the group member's
/// [`Budget`]; dropping the tracker (its partition was revoked) gives back what it still held.
#[derive(Debug)]
pub(crate) struct OffsetTracker {
    /// Held offsets, ascending, each with whether it is finished. Offsets are read in order, so
    /// a new one goes at the back (an out-of-order one is inserted where it belongs).
    held: VecDeque<(i64, bool)>,
    next_after_finished: Option<i64>,
    budget: Arc<Budget>,
    /// `kafka_events_messages_consumed_total` of this partition: one per offset finished.
    finished: Counter,
}

impl OffsetTracker {
    pub(crate) fn new(budget: Arc<Budget>, finished: Counter) -> Self {
        Self { held: VecDeque::new(), next_after_finished: None, budget, finished }
    }

    /// An offset was read and is now held for its lane.
    pub(crate) fn begin(&mut self, offset: i64) {
        self.begin_all([offset]);
    }

    /// Offsets read together (one budget update for all of them).
    pub(crate) fn begin_all(&mut self, offsets: impl IntoIterator<Item = i64>) {
        let mut new = 0;
        for offset in offsets {
            match self.held.back() {
                Some((last, _)) if *last >= offset => {
                    if let Err(at) = self.held.binary_search_by_key(&offset, |(o, _)| *o) {
                        self.held.insert(at, (offset, false));
                        new += 1;
                    }
                }
                _ => {
                    self.held.push_back((offset, false));
                    new += 1;
                }
            }
        }
        self.budget.take(new);
    }

    /// An offset's outcome is durable (handled, or its retry or dead letter acknowledged).
    pub(crate) fn finish(&mut self, offset: i64) {
        self.finish_all([offset]);
    }

    /// Offsets whose outcome became durable together (one budget update and one count for all
    /// of them: a lane hands over what it finished in a run at once).
    pub(crate) fn finish_all(&mut self, offsets: impl IntoIterator<Item = i64>) {
        let (mut counted, mut released) = (0, 0);
        for offset in offsets {
            // Usually the oldest held message (a partition-serial lane finishes in order).
            let at = match self.held.front() {
                Some((first, _)) if *first == offset => Ok(0),
                _ => self.held.binary_search_by_key(&offset, |(o, _)| *o),
            };
            if let Ok(at) = at {
                if !self.held[at].1 {
                    self.held[at].1 = true;
                    counted += 1;
                }
            }
            while self.held.front().is_some_and(|(_, finished)| *finished) {
                self.held.pop_front();
                released += 1;
            }
            let next = offset + 1;
            if self.next_after_finished.is_none_or(|n| next > n) {
                self.next_after_finished = Some(next);
            }
        }
        if counted > 0 {
            self.finished.inc_by(counted);
        }
        self.budget.release(released);
    }

    /// The held offsets whose outcome is not durable yet, lowest first.
    pub(crate) fn unfinished(&self) -> Vec<i64> {
        self.held.iter().filter(|(_, finished)| !*finished).map(|(offset, _)| *offset).collect()
    }

    /// Offsets finished on this partition since its lane started (the `messages_consumed`
    /// counter of this lane).
    pub(crate) fn finished(&self) -> u64 {
        self.finished.get()
    }

    /// Messages of this partition held now (polled, not passed by the committable offset).
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// The offset to commit now, if any message was finished. Offsets are polled in order, so
    /// everything below the lowest held offset is finished (or was never a message).
    pub(crate) fn committable(&self) -> Option<i64> {
        let finished = self.next_after_finished?;
        Some(self.held.front().map_or(finished, |(offset, _)| *offset))
    }
}

impl Drop for OffsetTracker {
    fn drop(&mut self) {
        self.budget.release(self.held.len());
    }
}

/// `topic[partition]@offset, ...`, for the log.
pub(crate) struct OffsetList<'a>(pub(crate) &'a [(TopicPartition, i64)]);

impl std::fmt::Display for OffsetList<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, ((topic, partition), offset)) in self.0.iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{topic}[{partition}]@{offset}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> (OffsetTracker, Arc<Budget>) {
        let budget = Arc::new(Budget::new(100));
        (OffsetTracker::new(budget.clone(), Counter::default()), budget)
    }

    #[test]
    fn sequential_progress() {
        let (mut t, _) = tracker();
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
        let (mut t, _) = tracker();
        for o in 0..5 {
            t.begin(o);
        }
        t.finish(0);
        t.finish(2);
        t.finish(3);
        assert_eq!(t.committable(), Some(1), "1 is unfinished");
        assert_eq!(t.held(), 4, "2 and 3 are finished but held behind 1");
        t.finish(1);
        assert_eq!(t.committable(), Some(4));
        t.finish(4);
        assert_eq!(t.committable(), Some(5));
        assert_eq!(t.held(), 0);
    }

    #[test]
    fn an_offset_begun_out_of_order_or_twice_is_held_once_in_order() {
        let (mut t, budget) = tracker();
        t.begin_all([5, 7]);
        t.begin(6);
        t.begin(7);
        assert_eq!((t.held(), budget.held()), (3, 3));
        t.finish(5);
        t.finish(7);
        assert_eq!(t.committable(), Some(6), "6 is unfinished");
        t.finish(6);
        assert_eq!((t.committable(), t.held(), budget.held()), (Some(8), 0, 0));
    }

    #[test]
    fn held_offsets_count_against_the_budget_until_finished_or_dropped() {
        let (mut a, budget) = tracker();
        let mut b = OffsetTracker::new(budget.clone(), Counter::default());
        for o in 0..30 {
            a.begin(o);
        }
        for o in 0..20 {
            b.begin(o);
        }
        assert_eq!(budget.held(), 50);
        a.finish(3);
        assert_eq!(budget.held(), 50, "3 is finished but 0, 1 and 2 are not: a crash would replay it");
        a.finish(0);
        a.finish(0);
        assert_eq!(budget.held(), 49, "finishing twice releases once");
        a.finish(2);
        a.finish(1);
        assert_eq!(budget.held(), 46, "0 to 3 passed by the committable offset");
        assert_eq!(a.committable(), Some(4));
        drop(a);
        assert_eq!(budget.held(), 20, "a revoked partition gives back what it held");
        assert_eq!(budget.peak(), 50);
        assert!(!budget.is_full());
    }
}
