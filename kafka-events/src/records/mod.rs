//! Every record the runtime writes from a consumed message — a retry record, a dead letter, a
//! dead letter without its payload — and the order they are tried in when the producer or broker
//! refuses one as too large ([`retry_chain`], [`dead_letter_chain`]). A record's headers are
//! built from the message only when it is tried, so the forms a publish almost never needs cost
//! nothing. The reason a record carries is bounded once, when it becomes a [`Reason`].
//!
//! Reading a message is [`crate::message`]'s; publishing these records durably is
//! `processor::publish`'s.

mod dead_letter;
mod reason;
mod retry;

use std::sync::Arc;
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};

pub(crate) use dead_letter::Cause;
pub(crate) use reason::Reason;
pub(crate) use retry::schedule_of;

use crate::error_kind::ErrorKind;
use crate::message::Consumed;
use crate::names::header;

/// One record to publish for a message: where it goes and what it is.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) topic: String,
    pub(crate) form: Form,
}

/// What a [`Record`] carries.
#[derive(Debug, Clone)]
pub(crate) enum Form {
    /// The message again, as retry number `attempt`, due `delay` after it is built.
    Retry { attempt: u32, delay: Duration, reason: Reason },
    /// The message's dead letter: with the original key, value and headers, or — when that is
    /// too large — only the diagnostics (and a small key).
    DeadLetter { cause: Arc<Cause>, with_payload: bool },
}

impl Record {
    /// `retry record`, `dead letter`, … (for logs).
    pub(crate) fn what(&self) -> &'static str {
        match self.form {
            Form::Retry { .. } => "retry record",
            Form::DeadLetter { with_payload: true, .. } => "dead letter",
            Form::DeadLetter { with_payload: false, .. } => "dead letter without its payload",
        }
    }

    /// Whether the original key and value go with it (else only a small key).
    pub(crate) fn with_payload(&self) -> bool {
        !matches!(self.form, Form::DeadLetter { with_payload: false, .. })
    }

    /// The dead letter this record is, if it is one: what its acknowledgement reports.
    pub(crate) fn dead_letter(&self) -> Option<&Cause> {
        match &self.form {
            Form::DeadLetter { cause, .. } => Some(cause),
            Form::Retry { .. } => None,
        }
    }

    /// The record's headers, built from `message` now.
    pub(crate) fn headers(&self, message: &impl Consumed) -> OwnedHeaders {
        match &self.form {
            Form::Retry { attempt, delay, reason } => retry::headers(message, *attempt, *delay, reason),
            Form::DeadLetter { cause, with_payload: true } => dead_letter::headers(message, cause),
            Form::DeadLetter { cause, with_payload: false } => dead_letter::payload_omitted_headers(message, cause),
        }
    }
}

/// The records tried for a message that goes to the retry topic, in order: its retry record;
/// when that is too large and the handler has a `dlq`, its dead letter (kind `undeliverable`),
/// then that dead letter without its payload.
pub(crate) fn retry_chain(
    retry_topic: &str,
    dlq: Option<&str>,
    attempt: u32,
    delay: Duration,
    reason: Reason,
    handler: &str,
) -> Vec<Record> {
    let fallback = dlq.map(|dlq| {
        let reason = Reason::new(format!(
            "{reason}; its retry record was larger than the producer or broker accepts, so it was dead-lettered instead of retried"
        ));
        dead_letter_chain(dlq, Cause { kind: ErrorKind::Undeliverable, reason, attempts: attempt, handler: handler.to_string() })
    });
    let retry = Record { topic: retry_topic.to_string(), form: Form::Retry { attempt, delay, reason } };
    std::iter::once(retry).chain(fallback.into_iter().flatten()).collect()
}

/// The records tried for a message's dead letter, in order: the full copy, then one without the
/// payload (the original stays readable in its topic until its retention).
pub(crate) fn dead_letter_chain(dlq: &str, cause: Cause) -> Vec<Record> {
    let cause = Arc::new(cause);
    [true, false]
        .map(|with_payload| Record {
            topic: dlq.to_string(),
            form: Form::DeadLetter { cause: cause.clone(), with_payload },
        })
        .into()
}

/// The message's own headers, without any the runtime added on an earlier trip, followed by
/// `added`.
fn republished_headers(message: &impl Consumed, added: &[(&str, &str)]) -> OwnedHeaders {
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
    fn a_retry_falls_back_to_its_dead_letter_forms_only_with_a_dlq() {
        let reason = || Reason::new("db down".to_string());
        let chain = retry_chain("orders.retry", Some("orders.dlq"), 2, Duration::from_secs(1), reason(), "app::h");
        let shape: Vec<(&str, &str)> = chain.iter().map(|r| (r.topic.as_str(), r.what())).collect();
        assert_eq!(
            shape,
            [
                ("orders.retry", "retry record"),
                ("orders.dlq", "dead letter"),
                ("orders.dlq", "dead letter without its payload")
            ]
        );
        let cause = chain[1].dead_letter().expect("a dead letter");
        assert_eq!(cause.kind, ErrorKind::Undeliverable);
        assert!(cause.reason.starts_with("db down; its retry record was larger"), "{}", cause.reason);
        assert_eq!(cause.attempts, 2);
        assert!(chain[0].dead_letter().is_none() && chain[0].with_payload() && !chain[2].with_payload());
        let alone = retry_chain("orders.retry", None, 1, Duration::ZERO, reason(), "app::h");
        assert_eq!(alone.len(), 1, "without a dlq nothing stands in for a retry record");
    }
}
