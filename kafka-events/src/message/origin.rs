//! Where a message first came from, and the header lookups by name the runtime makes.

use super::Consumed;
use crate::names::header;

/// Where a message was first consumed from: its `x-original-*` headers when it went through a
/// retry topic already, else its own coordinates. All the attempts of one message — through the
/// retry topic or in place — share it; the dead letter carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    /// The topic it was first produced to.
    pub(crate) topic: String,
    /// Its partition there.
    pub(crate) partition: i32,
    /// Its offset there.
    pub(crate) offset: i64,
}

impl Origin {
    /// The origin of `message`.
    pub(crate) fn of(message: &impl Consumed) -> Self {
        Self::retried(message).unwrap_or_else(|| Self {
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
        })
    }

    /// The origin `message`'s `x-original-*` headers name, if it went through a retry topic.
    pub(crate) fn retried(message: &impl Consumed) -> Option<Self> {
        Some(Self {
            topic: header_str(message, header::ORIGINAL_TOPIC)?.to_string(),
            partition: header_str(message, header::ORIGINAL_PARTITION)?.parse().ok()?,
            offset: header_str(message, header::ORIGINAL_OFFSET)?.parse().ok()?,
        })
    }
}

/// The value of the last header called `name`, if it is UTF-8.
pub(crate) fn header_str<'a>(message: &'a impl Consumed, name: &str) -> Option<&'a str> {
    message.header(name).and_then(|value| std::str::from_utf8(value).ok())
}

/// The correlation id what a handler publishes carries: its message's `x-correlation-id`, or
/// else its `x-message-id`.
pub(crate) fn correlation_of(message: &impl Consumed) -> Option<&str> {
    header_str(message, header::CORRELATION_ID).or_else(|| header_str(message, header::MESSAGE_ID))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
    use rdkafka::Timestamp;

    #[test]
    fn the_origin_survives_a_trip_through_the_retry_topic() {
        let own = OwnedMessage::new(None, None, "orders".into(), Timestamp::NotAvailable, 2, 40, None);
        assert_eq!(Origin::of(&own), Origin { topic: "orders".into(), partition: 2, offset: 40 });
        let headers = OwnedHeaders::new()
            .insert(Header { key: header::ORIGINAL_TOPIC, value: Some("orders") })
            .insert(Header { key: header::ORIGINAL_PARTITION, value: Some("2") })
            .insert(Header { key: header::ORIGINAL_OFFSET, value: Some("40") });
        let retried =
            OwnedMessage::new(None, None, "orders.retry".into(), Timestamp::NotAvailable, 0, 7, Some(headers));
        assert_eq!(Origin::of(&retried), Origin::of(&own));
        let broken = OwnedHeaders::new().insert(Header { key: header::ORIGINAL_TOPIC, value: Some("orders") });
        let partial = OwnedMessage::new(None, None, "orders.retry".into(), Timestamp::NotAvailable, 0, 7, Some(broken));
        assert_eq!(Origin::of(&partial).topic, "orders.retry", "incomplete headers: its own coordinates");
    }

    #[test]
    fn the_correlation_id_falls_back_to_the_message_id() {
        let with = |headers: OwnedHeaders| {
            OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, Some(headers))
        };
        let id = OwnedHeaders::new().insert(Header { key: header::MESSAGE_ID, value: Some("m-1") });
        assert_eq!(correlation_of(&with(id.clone())), Some("m-1"));
        let both = id.insert(Header { key: header::CORRELATION_ID, value: Some("c-1") });
        assert_eq!(correlation_of(&with(both)), Some("c-1"));
    }
}
