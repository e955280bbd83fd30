//! The AsyncAPI 3.0 form of a [`Description`](super::Description).
//!
//! Ids (channel, operation and message keys) use the characters AsyncAPI allows
//! (`[A-Za-z0-9_.-]`): topic names as they are, handler names with `::` written `.`.

use serde_json::{json, Map, Value};

use super::{Description, HandlerDescription, TopicDescription};
use crate::names::header as h;

/// The Kafka bindings version the document uses.
const BINDING_VERSION: &str = "0.5.0";

/// `name` with every character AsyncAPI refuses in an id replaced.
fn id(name: &str) -> String {
    name.replace("::", ".")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '_' })
        .collect()
}

/// A string header.
fn header(description: &str) -> Value {
    json!({ "type": "string", "description": description })
}

/// The headers every message may carry (the publisher adds them).
fn common_headers() -> Map<String, Value> {
    let mut headers = Map::new();
    headers.insert(h::MESSAGE_ID.into(), header("Unique id of the message (a UUIDv7 unless the publisher set one)."));
    headers.insert(
        h::CORRELATION_ID.into(),
        header("Correlation id, carried from a handler's input to everything it publishes."),
    );
    headers.insert(h::TRACEPARENT.into(), header("W3C trace context of the span that published the message."));
    headers
}

/// Where a retried or dead-lettered message came from.
const ORIGIN: [(&str, &str); 3] = [
    (h::ORIGINAL_TOPIC, "Topic the message was first consumed from."),
    (h::ORIGINAL_PARTITION, "Partition the message was first consumed from."),
    (h::ORIGINAL_OFFSET, "Offset the message had in its original partition."),
];

/// The common headers plus `extra` and [`ORIGIN`].
fn headers_with(extra: &[(&str, &str)]) -> Map<String, Value> {
    let mut headers = common_headers();
    for (name, description) in extra.iter().chain(&ORIGIN) {
        headers.insert((*name).into(), header(description));
    }
    headers
}

fn retry_headers() -> Map<String, Value> {
    headers_with(&[
        (h::RETRY_ATTEMPT, "Attempt number of the retry (1 is the first retry)."),
        (h::RETRY_AT, "When the retry becomes due (RFC 3339)."),
        (h::RETRY_DELAY, "Delay of the retry in milliseconds."),
        (h::RETRY_ERROR, "The error that sent the message here (at most 4 KiB)."),
    ])
}

fn dead_letter_headers() -> Map<String, Value> {
    headers_with(&[
        (h::DLQ_REASON, "Why the message was dead-lettered (at most 4 KiB)."),
        (h::DLQ_ERROR_KIND, "Kind of failure: decode, validation, permanent, retries-exhausted, missing-id, timeout, panic, …"),
        (h::DLQ_TIMESTAMP, "When the message was dead-lettered (RFC 3339, milliseconds)."),
        (h::RETRY_ATTEMPTS, "How many times the handler was called."),
        (h::DLQ_HANDLER, "The handler that dead-lettered it (module::path::fn_name)."),
        (
            h::DLQ_PAYLOAD_OMITTED,
            "Set when the original value, headers and large key were left out (the record was too large); the original stays readable at x-original-topic/partition/offset.",
        ),
    ])
}

/// The message of one handler's event on one of its channels.
fn message(handler: &HandlerDescription, headers: Map<String, Value>, what: &str) -> Value {
    let mut message = json!({
        "name": handler.event.type_name,
        "title": format!("{} ({what})", handler.event.type_name),
        "contentType": "application/json",
        "headers": { "type": "object", "properties": headers },
    });
    if let Some(schema) = &handler.event.schema {
        message["payload"] = schema.clone();
    }
    message
}

/// The last path segment of the event type: the message's key in its channel.
fn message_id(handler: &HandlerDescription) -> String {
    id(handler.event.type_name.rsplit("::").next().unwrap_or(&handler.event.type_name))
}

fn channel(topic: &TopicDescription, description: String, message_id: &str, message: Value) -> Value {
    let mut configuration = Map::new();
    if let Some(retention) = &topic.retention {
        if let Ok(retention) = humantime::parse_duration(retention) {
            configuration.insert("retention.ms".into(), json!(retention.as_millis() as u64));
        }
    }
    if let Some(cleanup) = &topic.cleanup {
        let policies: Vec<&str> = cleanup.split(',').map(str::trim).collect();
        configuration.insert("cleanup.policy".into(), json!(policies));
    }
    let mut kafka = json!({
        "topic": topic.name,
        "partitions": topic.partitions,
        "replicas": topic.replication_factor,
        "bindingVersion": BINDING_VERSION,
    });
    if !configuration.is_empty() {
        kafka["topicConfiguration"] = Value::Object(configuration);
    }
    json!({
        "address": topic.name,
        "description": description,
        "messages": { message_id: message },
        "bindings": { "kafka": kafka },
    })
}

fn operation(action: &str, channel: &str, message_id: &str, summary: String, group: Option<&str>) -> Value {
    let mut operation = json!({
        "action": action,
        "channel": { "$ref": format!("#/channels/{channel}") },
        "messages": [{ "$ref": format!("#/channels/{channel}/messages/{message_id}") }],
        "summary": summary,
    });
    if let Some(group) = group {
        operation["bindings"] = json!({
            "kafka": { "groupId": { "type": "string", "enum": [group] }, "bindingVersion": BINDING_VERSION }
        });
    }
    operation
}

pub(super) fn document(description: &Description) -> Value {
    let topic = |name: &str| description.topics.iter().find(|t| t.name == name);
    let mut channels = Map::new();
    let mut operations = Map::new();
    for handler in &description.handlers {
        let message_id = message_id(handler);
        let op = id(&handler.name);
        let on_failure = match &handler.dead_letter_topic {
            Some(dlq) => format!("final failures go to `{dlq}`"),
            None => "a final failure stalls the partition (no dead-letter topic)".into(),
        };
        if let Some(main) = topic(&handler.topic) {
            let channel_id = id(&main.name);
            let retry = &handler.retry;
            let text = format!(
                "Consumed by {} (group `{}`): up to {} retries ({} backoff from {}, at most {}, {}); {on_failure}.",
                handler.name, handler.group, retry.max, retry.backoff, retry.initial, retry.max_delay, retry.mode
            );
            channels.insert(
                channel_id.clone(),
                channel(main, text, &message_id, message(handler, common_headers(), "event")),
            );
            operations.insert(
                format!("{op}.receive"),
                operation(
                    "receive",
                    &channel_id,
                    &message_id,
                    format!("{} handles {}", handler.name, handler.event.type_name),
                    Some(&handler.group),
                ),
            );
        }
        if let Some(retry_topic) = handler.retry.topic.as_deref().and_then(topic) {
            let channel_id = id(&retry_topic.name);
            let group = handler.retry.group.as_deref();
            let text = format!(
                "Retries of {}: failed messages wait here until due, read by group `{}`.",
                handler.name,
                group.unwrap_or_default()
            );
            channels.insert(
                channel_id.clone(),
                channel(retry_topic, text, &message_id, message(handler, retry_headers(), "retry")),
            );
            let summary = format!("{} schedules a failed message for another attempt", handler.name);
            operations.insert(format!("{op}.retry.send"), operation("send", &channel_id, &message_id, summary, None));
            let summary = format!("{} retries a due message", handler.name);
            operations
                .insert(format!("{op}.retry.receive"), operation("receive", &channel_id, &message_id, summary, group));
        }
        if let Some(dlq) = handler.dead_letter_topic.as_deref().and_then(topic) {
            let channel_id = id(&dlq.name);
            let text = format!(
                "Dead letters of {}: the original message with why it failed; inspect with `kafka-events dlq peek`, replay with `kafka-events dlq replay`.",
                handler.name
            );
            channels.insert(
                channel_id.clone(),
                channel(dlq, text, &message_id, message(handler, dead_letter_headers(), "dead letter")),
            );
            let summary = format!("{} dead-letters a message that failed for good", handler.name);
            operations
                .insert(format!("{op}.dead-letter.send"), operation("send", &channel_id, &message_id, summary, None));
        }
    }
    let mut document = json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": description.service,
            "version": description.version,
            "description": format!(
                "Kafka event handlers of `{}`, described by kafka-events {} from the handlers compiled into it.",
                description.service,
                env!("CARGO_PKG_VERSION")
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
    });
    if !description.brokers.is_empty() {
        let servers: Map<String, Value> = description
            .brokers
            .iter()
            .enumerate()
            .map(|(i, host)| (format!("broker-{}", i + 1), json!({ "host": host, "protocol": "kafka" })))
            .collect();
        document["servers"] = Value::Object(servers);
    }
    document
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_use_only_the_characters_asyncapi_allows() {
        assert_eq!(super::id("app::orders::on_order"), "app.orders.on_order");
        assert_eq!(super::id("orders.created-v2_x"), "orders.created-v2_x");
        assert_eq!(super::id("Vec<Order>"), "Vec_Order_");
    }
}
