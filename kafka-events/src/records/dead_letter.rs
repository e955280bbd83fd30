//! Dead-letter records: the original key, value and headers, plus diagnostic headers.

use std::time::SystemTime;

use rdkafka::message::OwnedHeaders;

use super::{republished_headers, Reason};
use crate::error_kind::ErrorKind;
use crate::message::{Consumed, Origin};
use crate::names::header;

/// Why a message is dead-lettered, and by which handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cause {
    pub(crate) kind: ErrorKind,
    pub(crate) reason: Reason,
    pub(crate) attempts: u32,
    pub(crate) handler: String,
}

/// The headers of the dead-letter copy of `message`: its own headers (minus any diagnostic
/// headers from an earlier trip through a retry or dead-letter topic) followed by the diagnostic
/// headers. The original coordinates survive a trip through the retry topic.
pub(super) fn headers(message: &impl Consumed, letter: &Cause) -> OwnedHeaders {
    diagnostics(letter, message, |added| republished_headers(message, added))
}

/// The headers of the dead letter that stands in for `message` when its full copy is larger
/// than the producer or broker accepts: only the diagnostic headers, and
/// `x-dlq-payload-omitted` saying why and where the original is. (The record itself carries no
/// value, no original headers, and the key only when it is small.)
pub(super) fn payload_omitted_headers(message: &impl Consumed, letter: &Cause) -> OwnedHeaders {
    let origin = Origin::of(message);
    let why = Reason::new(format!(
        "with the original key, value ({} bytes) and headers the dead letter was larger than the producer or broker accepts; the original is at {}[{}]@{} until its retention",
        message.payload().map_or(0, <[u8]>::len),
        origin.topic,
        origin.partition,
        origin.offset
    ));
    diagnostics(letter, message, |added| {
        let mut headers = OwnedHeaders::new_with_capacity(added.len() + 1);
        for (key, value) in added.iter().chain([&(header::DLQ_PAYLOAD_OMITTED, why.as_str())]) {
            headers = headers.insert(rdkafka::message::Header { key, value: Some(*value) });
        }
        headers
    })
}

/// Builds headers with the dead-letter diagnostics of `letter`.
fn diagnostics(
    letter: &Cause,
    message: &impl Consumed,
    build: impl FnOnce(&[(&str, &str)]) -> OwnedHeaders,
) -> OwnedHeaders {
    let origin = Origin::of(message);
    let partition = origin.partition.to_string();
    let offset = origin.offset.to_string();
    let attempts = letter.attempts.to_string();
    let timestamp = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    build(&[
        (header::ORIGINAL_TOPIC, &origin.topic),
        (header::ORIGINAL_PARTITION, &partition),
        (header::ORIGINAL_OFFSET, &offset),
        (header::DLQ_REASON, &letter.reason),
        (header::DLQ_ERROR_KIND, letter.kind.as_str()),
        (header::DLQ_TIMESTAMP, &timestamp),
        (header::RETRY_ATTEMPTS, &attempts),
        (header::DLQ_HANDLER, &letter.handler),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, Headers, OwnedMessage};
    use rdkafka::Timestamp;

    #[test]
    fn keeps_original_headers_and_replaces_old_diagnostics() {
        let original = OwnedHeaders::new()
            .insert(Header { key: "trace", value: Some("abc") })
            .insert(Header { key: header::DLQ_REASON, value: Some("old reason") });
        let message = OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(b"k".to_vec()),
            "orders".into(),
            Timestamp::NotAvailable,
            2,
            41,
            Some(original),
        );
        let letter =
            Cause { kind: ErrorKind::Decode, reason: "bad json".into(), attempts: 1, handler: "app::on_order".into() };
        let headers = headers(&message, &letter);
        let pairs: Vec<(String, String)> = headers
            .iter()
            .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
            .collect();
        assert_eq!(pairs[0], ("trace".into(), "abc".into()));
        let get = |k: &str| pairs.iter().filter(|(key, _)| key == k).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
        assert_eq!(get(header::DLQ_REASON), ["bad json"], "the old reason is replaced");
        assert_eq!(get(header::ORIGINAL_TOPIC), ["orders"]);
        assert_eq!(get(header::ORIGINAL_PARTITION), ["2"]);
        assert_eq!(get(header::ORIGINAL_OFFSET), ["41"]);
        assert_eq!(get(header::DLQ_ERROR_KIND), ["decode"]);
        assert_eq!(get(header::RETRY_ATTEMPTS), ["1"]);
        assert_eq!(get(header::DLQ_TIMESTAMP).len(), 1);
    }

    #[test]
    fn a_message_from_the_retry_topic_keeps_its_origin() {
        let retried = OwnedHeaders::new()
            .insert(Header { key: header::ORIGINAL_TOPIC, value: Some("orders") })
            .insert(Header { key: header::ORIGINAL_PARTITION, value: Some("1") })
            .insert(Header { key: header::ORIGINAL_OFFSET, value: Some("7") })
            .insert(Header { key: header::RETRY_ATTEMPT, value: Some("2") });
        let message =
            OwnedMessage::new(None, None, "orders.retry".into(), Timestamp::NotAvailable, 0, 99, Some(retried));
        let letter = Cause { kind: ErrorKind::RetriesExhausted, reason: "x".into(), attempts: 3, handler: "h".into() };
        let headers = headers(&message, &letter);
        let values: Vec<(String, String)> = headers
            .iter()
            .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
            .collect();
        assert!(values.contains(&(header::ORIGINAL_TOPIC.into(), "orders".into())));
        assert!(values.contains(&(header::ORIGINAL_OFFSET.into(), "7".into())));
        assert!(!values.iter().any(|(k, _)| k == header::RETRY_ATTEMPT), "retry headers are not carried into the DLQ");
    }
}
