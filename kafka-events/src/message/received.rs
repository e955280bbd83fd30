//! A consumed message as the runtime holds it from its read to its outcome: still in
//! librdkafka's fetch buffer when its lane read it from the partition's own queue, so nothing of
//! it is copied unless a retry record, a dead letter or the handler's context keeps it.

use rdkafka::message::{Headers, Message, OwnedMessage, Timestamp};

use super::HeaderCopy;
use crate::native::Fetched;

/// One consumed message. `'q` is the partition queue it was read from (the lane owns the queue,
/// so a message can never outlive it).
pub(crate) enum Received<'q> {
    /// Read from the partition's own queue: librdkafka's copy, borrowed. `topic` is the lane's
    /// (librdkafka would look the name up and check its UTF-8 on every call); `headers` is the
    /// copy of its headers, `None` when it has none (looked up once: librdkafka parses a message
    /// without headers again on every call — a buffer allocated and freed each time).
    Queued { message: Fetched<'q>, topic: &'q str, headers: Option<HeaderCopy> },
    /// Routed by the poll thread from the consumer's own queue (a copy), or built by a test.
    Routed(OwnedMessage),
}

impl<'q> Received<'q> {
    /// A message read from the queue of `topic`'s partition.
    pub(crate) fn queued(mut message: Fetched<'q>, topic: &'q str) -> Self {
        // The record's header section copied in one piece; librdkafka's parse only where that
        // cannot be read.
        let headers = match message.header_section().and_then(HeaderCopy::from_record) {
            Some(headers) => headers,
            None => message.copy_headers(),
        };
        Self::Queued { message, topic, headers }
    }
}

impl From<OwnedMessage> for Received<'_> {
    fn from(message: OwnedMessage) -> Self {
        Self::Routed(message)
    }
}

/// What the runtime reads of a consumed message: rdkafka's `Message` without `payload_mut`
/// (an `unsafe` method this crate, which forbids `unsafe`, cannot implement), so that
/// [`Received`] and every rdkafka message pass through the same helpers.
pub(crate) trait Consumed {
    fn key(&self) -> Option<&[u8]>;
    fn payload(&self) -> Option<&[u8]>;
    fn topic(&self) -> &str;
    fn partition(&self) -> i32;
    fn offset(&self) -> i64;
    fn timestamp(&self) -> Timestamp;
    /// The value of the last header called `name`.
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// A copy of the headers (`None` when there are none).
    fn copied_headers(&self) -> Option<HeaderCopy>;
}

impl<M: Message> Consumed for M {
    fn key(&self) -> Option<&[u8]> {
        Message::key(self)
    }

    fn payload(&self) -> Option<&[u8]> {
        Message::payload(self)
    }

    fn topic(&self) -> &str {
        Message::topic(self)
    }

    fn partition(&self) -> i32 {
        Message::partition(self)
    }

    fn offset(&self) -> i64 {
        Message::offset(self)
    }

    fn timestamp(&self) -> Timestamp {
        Message::timestamp(self)
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        Message::headers(self)?.iter().filter(|h| h.key == name).last()?.value
    }

    fn copied_headers(&self) -> Option<HeaderCopy> {
        Message::headers(self).map(HeaderCopy::of)
    }
}

impl Consumed for Received<'_> {
    fn key(&self) -> Option<&[u8]> {
        match self {
            Self::Queued { message, .. } => message.key(),
            Self::Routed(message) => Message::key(message),
        }
    }

    fn payload(&self) -> Option<&[u8]> {
        match self {
            Self::Queued { message, .. } => message.payload(),
            Self::Routed(message) => Message::payload(message),
        }
    }

    fn topic(&self) -> &str {
        match self {
            Self::Queued { topic, .. } => topic,
            Self::Routed(message) => Message::topic(message),
        }
    }

    fn partition(&self) -> i32 {
        match self {
            Self::Queued { message, .. } => message.partition(),
            Self::Routed(message) => Message::partition(message),
        }
    }

    fn offset(&self) -> i64 {
        match self {
            Self::Queued { message, .. } => message.offset(),
            Self::Routed(message) => Message::offset(message),
        }
    }

    fn timestamp(&self) -> Timestamp {
        match self {
            Self::Queued { message, .. } => message.timestamp(),
            Self::Routed(message) => Message::timestamp(message),
        }
    }

    // Inlined: the runtime looks up a few headers of every message, most of which have none.
    #[inline]
    fn header(&self, name: &str) -> Option<&[u8]> {
        match self {
            Self::Queued { headers, .. } => headers.as_ref()?.last(name),
            Self::Routed(message) => message.header(name),
        }
    }

    fn copied_headers(&self) -> Option<HeaderCopy> {
        match self {
            Self::Queued { headers, .. } => headers.clone(),
            Self::Routed(message) => message.copied_headers(),
        }
    }
}
