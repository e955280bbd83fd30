//! Per-key ordering inside a partition: with `concurrency = N`, up to N messages of a partition
//! run at once, but a message waits while an earlier message with the same key is running, so
//! messages of one key never overlap and run in offset order.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use crate::abi::Keyless;
use crate::message::Consumed;

/// The keys running in one lane, each with the messages waiting behind it.
pub(crate) struct KeyGate<M> {
    /// Off for `concurrency = 1`: one message at a time is ordered already.
    enabled: bool,
    keyless: Keyless,
    /// Key (`None`: keyless, when keyless messages are ordered) → messages waiting behind the
    /// running one, in offset order.
    running: HashMap<Option<Vec<u8>>, VecDeque<M>>,
}

impl<M: Consumed> KeyGate<M> {
    pub(crate) fn new(concurrency: u32, keyless: Keyless) -> Self {
        Self { enabled: concurrency > 1, keyless, running: HashMap::new() }
    }

    fn slot(&self, message: &M) -> Option<Option<Vec<u8>>> {
        if !self.enabled {
            return None;
        }
        match (message.key(), self.keyless) {
            (None, Keyless::Unordered) => None,
            (key, _) => Some(key.map(<[u8]>::to_vec)),
        }
    }

    /// A message taken from the lane's buffer: returned when it may run now, kept (behind the
    /// running message of its key) otherwise.
    pub(crate) fn admit(&mut self, message: M) -> Option<M> {
        let Some(key) = self.slot(&message) else { return Some(message) };
        match self.running.entry(key) {
            Entry::Occupied(mut waiting) => {
                waiting.get_mut().push_back(message);
                None
            }
            Entry::Vacant(slot) => {
                slot.insert(VecDeque::new());
                Some(message)
            }
        }
    }

    /// `message` finished running: returns the next message of its key, which may run now.
    pub(crate) fn release(&mut self, message: &M) -> Option<M> {
        let key = self.slot(message)?;
        let Entry::Occupied(mut waiting) = self.running.entry(key) else { return None };
        let next = waiting.get_mut().pop_front();
        if next.is_none() {
            waiting.remove();
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::message::OwnedMessage;
    use rdkafka::Timestamp;

    use super::*;

    fn message(offset: i64, key: Option<&str>) -> OwnedMessage {
        OwnedMessage::new(
            None,
            key.map(|k| k.as_bytes().to_vec()),
            "t".into(),
            Timestamp::NotAvailable,
            0,
            offset,
            None,
        )
    }

    fn offsets(messages: impl IntoIterator<Item = Option<OwnedMessage>>) -> Vec<Option<i64>> {
        messages.into_iter().map(|m| m.map(|m| m.offset())).collect()
    }

    #[test]
    fn same_key_waits_and_runs_in_offset_order() {
        let mut gate = KeyGate::new(10, Keyless::Ordered);
        let a0 = gate.admit(message(0, Some("a"))).unwrap();
        assert!(gate.admit(message(1, Some("b"))).is_some(), "another key runs at once");
        assert!(gate.admit(message(2, Some("a"))).is_none(), "a is running");
        assert!(gate.admit(message(3, Some("a"))).is_none());
        let a2 = gate.release(&a0).unwrap();
        assert_eq!(a2.offset(), 2);
        let a3 = gate.release(&a2).unwrap();
        assert_eq!(a3.offset(), 3);
        assert!(gate.release(&a3).is_none());
        assert_eq!(offsets([gate.admit(message(4, Some("a")))]), [Some(4)], "a is free again");
    }

    #[test]
    fn keyless_messages_are_one_sequence_unless_declared_unordered() {
        let mut ordered = KeyGate::new(10, Keyless::Ordered);
        assert_eq!(offsets([ordered.admit(message(0, None)), ordered.admit(message(1, None))]), [Some(0), None]);
        let mut unordered = KeyGate::new(10, Keyless::Unordered);
        assert_eq!(offsets([unordered.admit(message(0, None)), unordered.admit(message(1, None))]), [Some(0), Some(1)]);
        assert!(unordered.release(&message(0, None)).is_none());
    }

    #[test]
    fn concurrency_one_passes_everything_through() {
        let mut gate = KeyGate::new(1, Keyless::Ordered);
        assert_eq!(offsets([gate.admit(message(0, Some("a"))), gate.admit(message(1, Some("a")))]), [Some(0), Some(1)]);
        assert!(gate.running.is_empty());
    }
}
