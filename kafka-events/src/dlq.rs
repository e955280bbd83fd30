//! Dead-letter records: the original key, value and headers, plus diagnostic headers.

use std::time::SystemTime;

use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};

use crate::handler::ErrorKind;
use crate::names::header;

/// Why and where a message is dead-lettered.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetter<'a> {
    pub kind: ErrorKind,
    pub reason: &'a str,
    pub attempts: u32,
    pub handler: &'a str,
}

/// The headers of the dead-letter copy of `message`: its own headers (minus any diagnostic
/// headers from an earlier trip through the DLQ) followed by the diagnostic headers.
pub(crate) fn dead_letter_headers(message: &OwnedMessage, letter: &DeadLetter<'_>) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for h in original.iter() {
            if !header::DIAGNOSTIC.contains(&h.key) {
                headers = headers.insert(Header { key: h.key, value: h.value });
            }
        }
    }
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let attempts = letter.attempts.to_string();
    let timestamp = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let diagnostics: [(&str, &str); 8] = [
        (header::ORIGINAL_TOPIC, message.topic()),
        (header::ORIGINAL_PARTITION, &partition),
        (header::ORIGINAL_OFFSET, &offset),
        (header::DLQ_REASON, letter.reason),
        (header::DLQ_ERROR_KIND, letter.kind.as_str()),
        (header::DLQ_TIMESTAMP, &timestamp),
        (header::RETRY_ATTEMPTS, &attempts),
        (header::DLQ_HANDLER, letter.handler),
    ];
    for (key, value) in diagnostics {
        headers = headers.insert(Header { key, value: Some(value) });
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    #[test]
    fn keeps_original_headers_and_replaces_old_diagnostics() {
        let original = OwnedHeaders::new()
            .insert(Header { key: "trace", value: Some("abc") })
            .insert(Header { key: header::DLQ_REASON, value: Some("old reason") });
        let message = OwnedMessage::new(Some(b"{}".to_vec()), Some(b"k".to_vec()), "orders".into(), Timestamp::NotAvailable, 2, 41, Some(original));
        let letter = DeadLetter { kind: ErrorKind::Decode, reason: "bad json", attempts: 1, handler: "app::on_order" };
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
}
