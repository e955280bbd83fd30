//! Records sent to the retry topic: when they are due and which retry they are.

use std::time::{Duration, SystemTime};

use rdkafka::message::OwnedHeaders;

use super::{republished_headers, Reason};
use crate::message::{header_str, Consumed, Origin};
use crate::names::header;

/// The headers of the retry copy of `message` after attempt number `attempt` failed: retry number
/// `attempt` is due `delay` from now.
pub(super) fn headers(message: &impl Consumed, attempt: u32, delay: Duration, reason: &Reason) -> OwnedHeaders {
    let origin = Origin::of(message);
    let partition = origin.partition.to_string();
    let offset = origin.offset.to_string();
    let retry = attempt.to_string();
    let due = humantime::format_rfc3339_millis(ceil_to_millis(SystemTime::now() + delay)).to_string();
    let delay_ms = delay.as_millis().to_string();
    republished_headers(
        message,
        &[
            (header::ORIGINAL_TOPIC, &origin.topic),
            (header::ORIGINAL_PARTITION, &partition),
            (header::ORIGINAL_OFFSET, &offset),
            (header::RETRY_ATTEMPT, &retry),
            (header::RETRY_AT, &due),
            (header::RETRY_DELAY, &delay_ms),
            (header::RETRY_ERROR, reason),
        ],
    )
}

/// `x-retry-at` carries milliseconds: round up, so a retry is never due before its delay.
fn ceil_to_millis(at: SystemTime) -> SystemTime {
    let sub_millis = at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos() % 1_000_000).unwrap_or(0);
    if sub_millis == 0 {
        at
    } else {
        at + Duration::from_nanos(u64::from(1_000_000 - sub_millis))
    }
}

/// Which retry a message from the retry topic is (`x-retry-attempt`, at least 1) and when it is
/// due (`x-retry-at`; `None` when missing or unreadable: due now).
pub(crate) fn schedule_of(message: &impl Consumed) -> (u32, Option<SystemTime>) {
    let retry = header_str(message, header::RETRY_ATTEMPT).and_then(|v| v.parse().ok()).unwrap_or(1u32).max(1);
    let due = header_str(message, header::RETRY_AT).and_then(|v| humantime::parse_rfc3339_weak(v).ok());
    (retry, due)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, Headers, Message, OwnedMessage};
    use rdkafka::Timestamp;

    #[test]
    fn retry_headers_round_trip() {
        let original = OwnedHeaders::new().insert(Header { key: "trace", value: Some("t") });
        let message = OwnedMessage::new(None, None, "orders".into(), Timestamp::NotAvailable, 2, 40, Some(original));
        let before = SystemTime::now();
        let headers = headers(&message, 2, Duration::from_secs(5), &"timeout".into());
        let retried =
            OwnedMessage::new(None, None, "orders.retry".into(), Timestamp::NotAvailable, 0, 3, Some(headers.clone()));
        let (retry, due) = schedule_of(&retried);
        assert_eq!(retry, 2);
        let due = due.unwrap();
        assert!(due >= before + Duration::from_secs(5), "never due before its delay");
        assert!(due <= SystemTime::now() + Duration::from_millis(5001));
        let keys: Vec<&str> = headers.iter().map(|h| h.key).collect();
        assert_eq!(keys[0], "trace");
        assert_eq!(header_str(&retried, header::ORIGINAL_OFFSET), Some("40"));
        assert_eq!(header_str(&retried, header::RETRY_DELAY), Some("5000"));
        assert_eq!(header_str(&retried, header::RETRY_ERROR), Some("timeout"));
        // A second trip keeps the first origin and replaces the retry headers.
        let again = super::headers(&retried, 3, Duration::from_secs(1), &"again".into());
        let twice = OwnedMessage::new(None, None, "orders.retry".into(), Timestamp::NotAvailable, 0, 9, Some(again));
        assert_eq!(header_str(&twice, header::ORIGINAL_TOPIC), Some("orders"));
        assert_eq!(schedule_of(&twice).0, 3);
        assert_eq!(twice.headers().unwrap().iter().filter(|h| h.key == header::RETRY_ATTEMPT).count(), 1);
    }
}
