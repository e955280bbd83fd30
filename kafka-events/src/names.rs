//! Names on the wire: retry and dead-letter topics, consumer group ids, `transactional.id`s,
//! idempotency scopes and header names.
//!
//! Other systems read these names (dashboards, replay tools, the TypeScript services this crate
//! replaces), so they are stable and live in this one module.

/// Header names written and read by the runtime.
pub mod header {
    /// W3C trace context of the span that published the message (see [`trace`](crate::trace)).
    pub const TRACEPARENT: &str = "traceparent";
    /// Unique id of a message.
    pub const MESSAGE_ID: &str = "x-message-id";
    /// Correlation id carried from a handler's input to its output.
    pub const CORRELATION_ID: &str = "x-correlation-id";
    /// Attempt number of a retried message (1 is the first retry).
    pub const RETRY_ATTEMPT: &str = "x-retry-attempt";
    /// When a retried message becomes due (RFC 3339).
    pub const RETRY_AT: &str = "x-retry-at";
    /// Delay of a retried message in milliseconds.
    pub const RETRY_DELAY: &str = "x-retry-delay";
    /// Topic the message was first consumed from.
    pub const ORIGINAL_TOPIC: &str = "x-original-topic";
    /// Partition the message was first consumed from.
    pub const ORIGINAL_PARTITION: &str = "x-original-partition";
    /// Offset the message had in its original partition.
    pub const ORIGINAL_OFFSET: &str = "x-original-offset";
    /// Human-readable reason a message was dead-lettered.
    pub const DLQ_REASON: &str = "x-dlq-reason";
    /// Machine-readable kind of failure of a dead-lettered message (see [`ErrorKind`](crate::ErrorKind)).
    pub const DLQ_ERROR_KIND: &str = "x-dlq-error-kind";
    /// When a message was dead-lettered (RFC 3339, milliseconds).
    pub const DLQ_TIMESTAMP: &str = "x-dlq-timestamp";
    /// How many times the handler was invoked before the message was dead-lettered.
    pub const RETRY_ATTEMPTS: &str = "x-retry-attempts";
    /// Name of the handler that dead-lettered the message (`module::path::fn_name`).
    pub const DLQ_HANDLER: &str = "x-dlq-handler";
    /// The error that sent a message to the retry topic.
    pub const RETRY_ERROR: &str = "x-retry-error";
    /// On a dead letter published without the original key (when over 1 KiB), value and
    /// headers, because with them it was larger than the producer or broker accepts: why. The
    /// original stays readable at `x-original-topic/partition/offset` until its retention.
    pub const DLQ_PAYLOAD_OMITTED: &str = "x-dlq-payload-omitted";

    /// The longest reason (`x-dlq-reason`, `x-retry-error`, and the runtime's logs of a failed
    /// message) in bytes; a longer one is cut at a character boundary and ends with a marker
    /// saying how long it was. Decode and validation errors may quote the offending value, which
    /// can be as large as the message itself.
    pub const MAX_REASON_BYTES: usize = 4096;

    /// Every header the runtime adds to a dead-lettered or retried message. A replay strips them.
    pub const DIAGNOSTIC: &[&str] = &[
        RETRY_ATTEMPT,
        RETRY_AT,
        RETRY_DELAY,
        ORIGINAL_TOPIC,
        ORIGINAL_PARTITION,
        ORIGINAL_OFFSET,
        DLQ_REASON,
        DLQ_ERROR_KIND,
        DLQ_TIMESTAMP,
        RETRY_ATTEMPTS,
        DLQ_HANDLER,
        RETRY_ERROR,
        DLQ_PAYLOAD_OMITTED,
    ];
}

/// Default suffix of dead-letter topics.
pub const DEFAULT_DLQ_SUFFIX: &str = ".dlq";

/// Default suffix of retry topics.
pub const DEFAULT_RETRY_SUFFIX: &str = ".retry";

/// The retry topic of `topic` (already prefixed): `<topic><retry suffix>`, `orders.retry`.
pub fn retry_topic(topic: &str, suffix: &str) -> String {
    format!("{topic}{suffix}")
}

/// The default dead-letter topic of `topic` (already prefixed): `<topic><dlq suffix>`,
/// `orders.dlq`.
pub fn dlq_topic(topic: &str, suffix: &str) -> String {
    format!("{topic}{suffix}")
}

/// The `transactional.id` of a `transactional` handler's producer for one partition of its
/// topic: `<service>-<topic>-<partition>`. Stable across restarts, so a new owner of the
/// partition fences the producer of its previous owner.
pub fn transactional_id(service: &str, topic: &str, partition: i32) -> String {
    format!("{service}-{topic}-{partition}")
}

/// The scope of a handler's event ids in the idempotency store: `<service>/<topic>`.
pub fn idempotency_scope(service: &str, topic: &str) -> String {
    format!("{service}/{topic}")
}

/// Id of the main consumer group of a service: `${SERVICE_NAME}-main`.
pub fn main_group(service: &str) -> String {
    format!("{service}{MAIN_GROUP_SUFFIX}")
}

const MAIN_GROUP_SUFFIX: &str = "-main";

/// Whether `group` is a main consumer group ([`main_group`]).
pub fn is_main_group(group: &str) -> bool {
    group.ends_with(MAIN_GROUP_SUFFIX)
}

/// Id of the group that consumes the retry topics: `${SERVICE_NAME}-retry`.
pub fn retry_group(service: &str) -> String {
    format!("{service}-retry")
}

/// Id of the group of one-off operations such as DLQ replay: `${SERVICE_NAME}-admin`.
pub fn admin_group(service: &str) -> String {
    format!("{service}-admin")
}

/// Refuses a group id that cannot be static: one embedding a timestamp (a run of 10 or more
/// digits) or a random id (a UUID or 32 hex digits). Such ids give every start or every instance
/// a group of its own, so instances stop sharing work and offsets are lost between restarts.
pub fn check_group_id(id: &str) -> Result<(), String> {
    let digits = longest_run(id, |c| c.is_ascii_digit());
    if digits >= 10 {
        return Err(format!(
            "group id `{id}` embeds what looks like a timestamp ({digits} digits in a row); group ids must be static so every instance shares the group and its offsets"
        ));
    }
    if looks_like_uuid(id) || longest_run(id, |c| c.is_ascii_hexdigit()) >= 32 {
        return Err(format!(
            "group id `{id}` embeds what looks like a random id (a UUID); group ids must be static so every instance shares the group and its offsets"
        ));
    }
    Ok(())
}

fn longest_run(text: &str, class: impl Fn(char) -> bool) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in text.chars() {
        run = if class(c) { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

fn looks_like_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.windows(36).any(|w| {
        w.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
    })
}

/// Checks a Kafka topic name the way the broker does: 1 to 249 characters of `[a-zA-Z0-9._-]`,
/// and neither `.` nor `..`. `#[kafka_handler]` applies the same rule at compile time (both use
/// `kafka-events-rules`).
pub use kafka_events_rules::check_topic_name;

/// The value of a unit-variant enum called `name` as it is written in configuration (its serde
/// name: `Backoff`'s `linear`, `RetryMode`'s `in_place`…), so that one list of names serves the
/// settings reader and the `parse` functions.
pub(crate) fn by_name<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    use serde::de::IntoDeserializer;
    T::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(name)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(check_topic_name("orders.created").is_ok());
        assert!(check_topic_name("a-b_c.9").is_ok());
        assert!(check_topic_name("").unwrap_err().contains("empty"));
        assert!(check_topic_name("..").unwrap_err().contains("reserved"));
        assert!(check_topic_name("orders created").unwrap_err().contains("` `"));
        assert!(check_topic_name(&"x".repeat(250)).unwrap_err().contains("249"));
    }

    #[test]
    fn group_names() {
        assert_eq!(main_group("orders"), "orders-main");
        assert_eq!(retry_group("orders"), "orders-retry");
        assert_eq!(admin_group("orders"), "orders-admin");
    }

    #[test]
    fn dynamic_group_ids_are_refused() {
        assert!(check_group_id("orders-main").is_ok());
        assert!(check_group_id("orders-v2-main").is_ok());
        assert!(check_group_id("billing-2024-main").is_ok(), "a year is not a timestamp");
        assert!(check_group_id("dlq-reprocess-1700000000000").unwrap_err().contains("timestamp"));
        assert!(check_group_id("svc-1700000000-main").unwrap_err().contains("timestamp"));
        assert!(check_group_id("svc-3f2b8c1e-9d4a-4b7e-8f60-2a1c5e7d9b01-main").unwrap_err().contains("random id"));
        assert!(check_group_id("svc-3f2b8c1e9d4a4b7e8f602a1c5e7d9b01").unwrap_err().contains("random id"));
    }
}
