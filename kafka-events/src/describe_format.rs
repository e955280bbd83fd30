//! The formats of the topology document (`KAFKA_EVENTS_DESCRIBE`), apart from [`describe`](crate::describe)
//! so that the configuration, which reads the setting, does not depend on the document.

/// How [`runtime::start`](crate::runtime::start) prints the topology instead of running
/// (`KAFKA_EVENTS_DESCRIBE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DescribeFormat {
    /// `json`: the [`Description`](crate::describe::Description).
    Json,
    /// `asyncapi`: the AsyncAPI 3.0 document.
    AsyncApi,
}

impl DescribeFormat {
    /// Parses `json` or `asyncapi`.
    pub fn parse(name: &str) -> Option<Self> {
        crate::names::by_name(name)
    }
}
