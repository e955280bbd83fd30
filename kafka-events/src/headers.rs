//! Reading and writing the runtime's headers on the records it republishes.

use std::borrow::Cow;

use rdkafka::message::{Header, OwnedHeaders};

use crate::header_copy::HeaderCopy;
use crate::names::header;
use crate::received::Consumed;

/// Where a message was first consumed from: its `x-original-*` headers when it went through a
/// retry topic already, else its own coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

pub(crate) fn origin(message: &impl Consumed) -> Origin {
    let from_headers = (|| {
        Some(Origin {
            topic: header_str(message, header::ORIGINAL_TOPIC)?.to_string(),
            partition: header_str(message, header::ORIGINAL_PARTITION)?.parse().ok()?,
            offset: header_str(message, header::ORIGINAL_OFFSET)?.parse().ok()?,
        })
    })();
    from_headers.unwrap_or_else(|| Origin {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
    })
}

/// The value of the last header called `name`, if it is UTF-8.
pub(crate) fn header_str<'a>(message: &'a impl Consumed, name: &str) -> Option<&'a str> {
    message.header(name).and_then(|value| std::str::from_utf8(value).ok())
}

/// `headers` as librdkafka headers, for a record.
pub(crate) fn owned(headers: &HeaderCopy) -> OwnedHeaders {
    let mut owned = OwnedHeaders::new_with_capacity(headers.len());
    for (key, value) in headers.iter() {
        owned = owned.insert(Header { key, value });
    }
    owned
}

/// `reason` cut to [`header::MAX_REASON_BYTES`] (at a character boundary, with a marker saying
/// how long it was), so that a reason quoting a large payload never makes a record too large.
pub(crate) fn bounded_reason(reason: &str) -> Cow<'_, str> {
    if reason.len() <= header::MAX_REASON_BYTES {
        return Cow::Borrowed(reason);
    }
    let marker = format!(" … [cut: {} bytes in all]", reason.len());
    let mut end = header::MAX_REASON_BYTES - marker.len();
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{marker}", &reason[..end]))
}

/// The message's own headers, without any the runtime added on an earlier trip, followed by
/// `added`.
pub(crate) fn republished_headers(message: &impl Consumed, added: &[(&str, &str)]) -> OwnedHeaders {
    let original = message.copied_headers().unwrap_or_default();
    let mut headers = OwnedHeaders::new_with_capacity(original.len() + added.len());
    for (key, value) in original.iter() {
        if !header::DIAGNOSTIC.contains(&key) {
            headers = headers.insert(Header { key, value });
        }
    }
    for (key, value) in added {
        headers = headers.insert(Header { key, value: Some(*value) });
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded_at_a_character_boundary_with_a_marker() {
        assert_eq!(bounded_reason("short"), "short");
        let long = format!("invalid type: string \"{}\"", "é".repeat(600_000));
        let cut = bounded_reason(&long);
        assert!(cut.len() <= header::MAX_REASON_BYTES, "{}", cut.len());
        assert!(cut.starts_with("invalid type: string \"éé"));
        assert!(cut.ends_with(&format!(" … [cut: {} bytes in all]", long.len())), "{}", &cut[cut.len() - 60..]);
        let exact = "x".repeat(header::MAX_REASON_BYTES);
        assert_eq!(bounded_reason(&exact), exact.as_str(), "a reason at the limit is kept whole");
    }
}
