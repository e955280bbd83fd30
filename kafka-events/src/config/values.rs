//! How setting values are written, for the fields of [`Settings`](super::settings::Settings)
//! whose text is not serde's: durations (`500ms`, `2s`, `7days`), comma-separated lists, socket
//! addresses, cleanup policies; and the two value types that never show a secret in `Debug`.
//!
//! Each `deserialize` fails with a message that starts with "is not …": the reader puts the value
//! itself in front of it (see `layers.rs`), so every problem reads "`soon` is not a duration …".

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn parse_duration<E: serde::de::Error>(text: &str) -> Result<Duration, E> {
    humantime::parse_duration(text.trim())
        .map_err(|e| E::custom(format!("is not a duration like `500ms` or `2s`: {e}")))
}

/// A [`Duration`] written as `500ms`, `2s`, `1h 30m`.
pub(super) mod duration {
    use super::*;

    pub(in crate::config) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        humantime::format_duration(*value).to_string().serialize(s)
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parse_duration(&String::deserialize(d)?)
    }
}

/// An optional [`Duration`], written as [`duration`] does.
pub(super) mod opt_duration {
    use super::*;

    pub(in crate::config) fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        value.map(|d| humantime::format_duration(d).to_string()).serialize(s)
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?.map(|text| parse_duration(&text)).transpose()
    }
}

/// An optional list written comma-separated (`a, b`); empty items are dropped.
pub(super) mod list {
    use super::*;

    pub(in crate::config) fn serialize<S: Serializer>(value: &Option<Vec<String>>, s: S) -> Result<S::Ok, S::Error> {
        value.as_ref().map(|items| items.join(",")).serialize(s)
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        Ok(Option::<String>::deserialize(d)?
            .map(|text| text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()))
    }
}

/// An optional socket address, `host:port`.
pub(super) mod address {
    use super::*;

    pub(in crate::config) fn serialize<S: Serializer>(
        value: &Option<std::net::SocketAddr>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        value.map(|a| a.to_string()).serialize(s)
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<std::net::SocketAddr>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| {
                text.trim().parse().map_err(|_| D::Error::custom("is not a socket address like `0.0.0.0:9464`"))
            })
            .transpose()
    }
}

/// What a cleanup policy that is none of [`kafka_events_rules::CLEANUP_POLICIES`] is not.
pub(super) const NOT_A_CLEANUP_POLICY: &str = "is not `delete`, `compact` or `compact,delete`";

/// An optional `cleanup.policy`, normalised by [`kafka_events_rules::cleanup_policy`].
pub(super) mod cleanup_policy {
    use super::*;

    pub(in crate::config) fn serialize<S: Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        value.serialize(s)
    }

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| kafka_events_rules::cleanup_policy(&text).ok_or_else(|| D::Error::custom(NOT_A_CLEANUP_POLICY)))
            .transpose()
    }
}

/// Whether a setting or librdkafka property by this name holds a secret: its value is never
/// shown (`Debug`, problems).
pub(super) fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "secret", "token", "key", "idempotency_store"].iter().any(|s| name.contains(s))
}

/// librdkafka properties (`session.timeout.ms` → `30000`) passed through to a client; `Debug`
/// redacts those that hold secrets (`sasl.password`, `ssl.key.password` …).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Properties(pub(crate) BTreeMap<String, String>);

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, if is_secret(k) { "[redacted]" } else { v.as_str() })))
            .finish()
    }
}

/// A store URL (`postgres://user:password@host/db`); `Debug` shows only the part after `@`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct StoreUrl(pub(crate) String);

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.rsplit_once('@') {
            Some((scheme_and_user, host)) => {
                let scheme = scheme_and_user.split_once("://").map_or("", |(scheme, _)| scheme);
                write!(f, "\"{scheme}://[redacted]@{host}\"")
            }
            None => write!(f, "{:?}", self.0),
        }
    }
}
