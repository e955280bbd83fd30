//! Dead-letter records: the original key, value and headers, plus diagnostic headers.

use std::time::SystemTime;

use rdkafka::message::OwnedHeaders;

use crate::error_kind::ErrorKind;
use crate::headers::{bounded_reason, origin, republished_headers};
use crate::names::header;
use crate::received::Consumed;

/// Why and where a message is dead-lettered.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetterCause<'a> {
    pub kind: ErrorKind,
    pub reason: &'a str,
    pub attempts: u32,
    pub handler: &'a str,
}

/// The headers of the dead-letter copy of `message`: its own headers (minus any diagnostic
/// headers from an earlier trip through a retry or dead-letter topic) followed by the diagnostic
/// headers. The original coordinates survive a trip through the retry topic.
pub(crate) fn dead_letter_headers(message: &impl Consumed, letter: &DeadLetterCause<'_>) -> OwnedHeaders {
    diagnostics(letter, message, |added| republished_headers(message, added))
}

/// The headers of the dead letter that stands in for `message` when its full copy is larger
/// than the producer or broker accepts: only the diagnostic headers, and
/// `x-dlq-payload-omitted` saying `why`. (The record itself carries no value, no original
/// headers, and the key only when it is small.)
pub(crate) fn payload_omitted_headers(
    message: &impl Consumed,
    letter: &DeadLetterCause<'_>,
    why: &str,
) -> OwnedHeaders {
    let why = bounded_reason(why);
    diagnostics(letter, message, |added| {
        let mut headers = OwnedHeaders::new_with_capacity(added.len() + 1);
        for (key, value) in added.iter().chain([&(header::DLQ_PAYLOAD_OMITTED, why.as_ref())]) {
            headers = headers.insert(rdkafka::message::Header { key, value: Some(*value) });
        }
        headers
    })
}

/// Builds headers with the dead-letter diagnostics of `letter` (reason bounded).
fn diagnostics(
    letter: &DeadLetterCause<'_>,
    message: &impl Consumed,
    build: impl FnOnce(&[(&str, &str)]) -> OwnedHeaders,
) -> OwnedHeaders {
    let origin = origin(message);
    let partition = origin.partition.to_string();
    let offset = origin.offset.to_string();
    let attempts = letter.attempts.to_string();
    let timestamp = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let reason = bounded_reason(letter.reason);
    build(&[
        (header::ORIGINAL_TOPIC, &origin.topic),
        (header::ORIGINAL_PARTITION, &partition),
        (header::ORIGINAL_OFFSET, &offset),
        (header::DLQ_REASON, &reason),
        (header::DLQ_ERROR_KIND, letter.kind.as_str()),
        (header::DLQ_TIMESTAMP, &timestamp),
        (header::RETRY_ATTEMPTS, &attempts),
        (header::DLQ_HANDLER, letter.handler),
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
            DeadLetterCause { kind: ErrorKind::Decode, reason: "bad json", attempts: 1, handler: "app::on_order" };
        let headers = dead_letter_headers(&message, &letter);
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
        let letter = DeadLetterCause { kind: ErrorKind::RetriesExhausted, reason: "x", attempts: 3, handler: "h" };
        let headers = dead_letter_headers(&message, &letter);
        let values: Vec<(String, String)> = headers
            .iter()
            .map(|h| (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
            .collect();
        assert!(values.contains(&(header::ORIGINAL_TOPIC.into(), "orders".into())));
        assert!(values.contains(&(header::ORIGINAL_OFFSET.into(), "7".into())));
        assert!(!values.iter().any(|(k, _)| k == header::RETRY_ATTEMPT), "retry headers are not carried into the DLQ");
    }
}
