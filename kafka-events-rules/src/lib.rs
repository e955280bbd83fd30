//! The rules [kafka-events](https://docs.rs/kafka-events) applies twice: at compile time, where
//! `#[kafka_handler]` checks the names and limits written in the attribute, and at start-up, where
//! the runtime checks the configured names (a topic prefix, a DLQ suffix) and settings. A
//! proc-macro crate cannot export functions to the crate that re-exports it, so both depend on
//! this one: each rule is written once and both give the same error, word for word.
//!
//! Users never need this crate directly; `kafka_events::names` and `kafka_events::retry`
//! re-export what they may call.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The most retries `retry(max = N)` or `KAFKA_RETRY_MAX` may ask for.
pub const MAX_RETRIES: u32 = 100;

/// The longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME: usize = 249;

/// Checks `name` against Kafka's rules for topic names: not empty, not `.` or `..`, at most
/// [`MAX_TOPIC_NAME`] characters, only ASCII letters, digits, `.`, `_` and `-`. The error says
/// what is wrong, without the name of the setting (the caller adds it).
pub fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name `{name}` is reserved"));
    }
    if name.len() > MAX_TOPIC_NAME {
        return Err(format!("topic name is {} characters long; the limit is {MAX_TOPIC_NAME}", name.len()));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!(
            "topic name `{name}` contains `{bad}`; only ASCII letters, digits, `.`, `_` and `-` are allowed"
        ));
    }
    Ok(())
}

/// The `cleanup.policy` values a provisioned topic may have (Kafka takes both orders of the
/// pair).
pub const CLEANUP_POLICIES: &[&str] = &["delete", "compact", "compact,delete", "delete,compact"];

/// `value` as a `cleanup.policy` (spaces dropped); `None` when it is not one of
/// [`CLEANUP_POLICIES`].
pub fn cleanup_policy(value: &str) -> Option<String> {
    let value = value.replace(' ', "");
    CLEANUP_POLICIES.contains(&value.as_str()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafkas_rules() {
        for ok in ["orders.created", "a-b_c.D9", &"x".repeat(249)] {
            assert_eq!(check_topic_name(ok), Ok(()), "{ok}");
        }
        let refused = [
            ("", "topic name is empty"),
            (".", "topic name `.` is reserved"),
            ("..", "topic name `..` is reserved"),
            (
                "orders created",
                "topic name `orders created` contains ` `; only ASCII letters, digits, `.`, `_` and `-` are allowed",
            ),
            (
                "orders/created",
                "topic name `orders/created` contains `/`; only ASCII letters, digits, `.`, `_` and `-` are allowed",
            ),
            (
                "zamówienia",
                "topic name `zamówienia` contains `ó`; only ASCII letters, digits, `.`, `_` and `-` are allowed",
            ),
        ];
        for (name, error) in refused {
            assert_eq!(check_topic_name(name).unwrap_err(), error, "{name:?}");
        }
        assert_eq!(
            check_topic_name(&"x".repeat(250)).unwrap_err(),
            "topic name is 250 characters long; the limit is 249"
        );
    }

    #[test]
    fn cleanup_policies_are_accepted_without_spaces_or_refused() {
        assert_eq!(cleanup_policy("delete").as_deref(), Some("delete"));
        assert_eq!(cleanup_policy("compact").as_deref(), Some("compact"));
        assert_eq!(cleanup_policy("compact, delete").as_deref(), Some("compact,delete"));
        assert_eq!(cleanup_policy("delete,compact").as_deref(), Some("delete,compact"));
        assert_eq!(cleanup_policy("compacted"), None);
        assert_eq!(cleanup_policy(""), None);
    }
}
