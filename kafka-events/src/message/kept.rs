//! A consumed message kept past its lane: what a retry record or dead letter in flight is built
//! from while the lane reads on.

use rdkafka::message::Timestamp;

use super::{Consumed, HeaderCopy};

/// An owned copy of a consumed message: key, value, coordinates and its [`HeaderCopy`] (shared,
/// not copied again). Built once per retry record or dead letter published.
#[derive(Debug, Clone)]
pub(crate) struct Kept {
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    topic: String,
    partition: i32,
    offset: i64,
    timestamp: Timestamp,
    headers: Option<HeaderCopy>,
}

impl Kept {
    /// A copy of `message`.
    pub(crate) fn of(message: &impl Consumed) -> Self {
        Self {
            key: message.key().map(<[u8]>::to_vec),
            payload: message.payload().map(<[u8]>::to_vec),
            topic: message.topic().to_string(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp: message.timestamp(),
            headers: message.copied_headers(),
        }
    }
}

impl Consumed for Kept {
    fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    fn payload(&self) -> Option<&[u8]> {
        self.payload.as_deref()
    }

    fn topic(&self) -> &str {
        &self.topic
    }

    fn partition(&self) -> i32 {
        self.partition
    }

    fn offset(&self) -> i64 {
        self.offset
    }

    fn timestamp(&self) -> Timestamp {
        self.timestamp
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.as_ref()?.last(name)
    }

    fn copied_headers(&self) -> Option<HeaderCopy> {
        self.headers.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};

    #[test]
    fn a_kept_copy_reads_like_the_original() {
        let headers = OwnedHeaders::new()
            .insert(Header { key: "a", value: Some("1") })
            .insert(Header { key: "a", value: Some("2") });
        let original = OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(b"k".to_vec()),
            "orders".into(),
            Timestamp::CreateTime(7),
            3,
            41,
            Some(headers),
        );
        let kept = Kept::of(&original);
        assert_eq!((kept.key(), kept.payload()), (Some(&b"k"[..]), Some(&b"{}"[..])));
        assert_eq!((kept.topic(), kept.partition(), kept.offset()), ("orders", 3, 41));
        assert_eq!(kept.timestamp(), Timestamp::CreateTime(7));
        assert_eq!(kept.header("a"), Some(&b"2"[..]), "the last of a repeated name");
        assert_eq!(kept.copied_headers(), original.copied_headers());
        let bare = Kept::of(&OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, None));
        assert_eq!((bare.key(), bare.payload(), bare.header("a")), (None, None, None));
    }
}
