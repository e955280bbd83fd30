//! A service's topology as a document, without connecting to a broker: the topics its handlers
//! consume, their retry and dead-letter topics, consumer groups, retry policies, concurrency and
//! how topics are provisioned — as JSON ([`Description`]) and as an AsyncAPI 3.0 document
//! ([`Description::to_asyncapi`]). An event type that derives `schemars::JsonSchema` (feature
//! `schemars`) carries its JSON Schema; without it the message has no schema.
//!
//! Three ways to get it:
//! - `KAFKA_EVENTS_DESCRIBE=json` or `=asyncapi` in the environment of your own binary:
//!   [`runtime::start`](crate::runtime::start) prints the document to stdout and returns
//!   without connecting (e.g. in CI: `KAFKA_EVENTS_DESCRIBE=asyncapi ./orders > asyncapi.json`);
//! - `GET /topology` and `GET /asyncapi.json` on the HTTP endpoint (`KAFKA_EVENTS_HTTP`);
//! - in code:
//!
//! ```no_run
//! # fn example() -> Result<(), kafka_events::Error> {
//! let config = kafka_events::Config::from_env()?;
//! let description = kafka_events::describe::describe(&config)?;
//! println!("{}", serde_json::to_string_pretty(&description.to_asyncapi()).unwrap());
//! # Ok(()) }
//! ```

use serde::Serialize;

use crate::config::Config;
use crate::error::Error;
use crate::registry::{BoundHandler, TopicKind, Topology};
use crate::retry::{Backoff, RetryMode};

mod asyncapi;

pub use crate::describe_format::DescribeFormat;

/// A service's handlers and the topics and groups they use.
#[derive(Debug, Clone, Serialize)]
pub struct Description {
    /// `SERVICE_NAME`.
    pub service: String,
    /// The version of the service's event API, `info.version` of the AsyncAPI document.
    /// `"unversioned"` unless you set it.
    pub version: String,
    /// The brokers (`KAFKA_BROKERS`), or none for the embedded broker.
    pub brokers: Vec<String>,
    /// The consumer groups: `main` reads the handlers' topics, `retry` their retry topics.
    pub groups: Groups,
    /// Every handler, sorted by topic.
    pub handlers: Vec<HandlerDescription>,
    /// Every topic the service reads or writes, and how it is created when missing.
    pub topics: Vec<TopicDescription>,
    /// Whether missing topics are created at start-up (`KAFKA_PROVISION_TOPICS`).
    pub provisions_topics: bool,
}

/// The consumer groups of a service (one each, shared by all replicas).
#[derive(Debug, Clone, Serialize)]
pub struct Groups {
    /// `${SERVICE_NAME}-main`.
    pub main: String,
    /// `${SERVICE_NAME}-retry`.
    pub retry: String,
}

/// One handler.
#[derive(Debug, Clone, Serialize)]
pub struct HandlerDescription {
    /// `module::path::fn_name`.
    pub name: String,
    /// `file:line` of the fn.
    pub site: String,
    /// The topic it consumes (prefix applied).
    pub topic: String,
    /// The group that reads `topic`.
    pub group: String,
    /// The event type and its schema.
    pub event: EventDescription,
    /// Its effective retry policy.
    pub retry: RetryDescription,
    /// Where exhausted and permanent failures go; `None`: a final failure stalls the partition.
    pub dead_letter_topic: Option<String>,
    /// Messages of one partition handled at once (never two of one key).
    pub concurrency: u32,
    /// With `concurrency` above 1: `ordered` or `unordered` keyless messages.
    pub keyless: &'static str,
    /// `batch(max, linger)`, when it is a batch handler.
    pub batch: Option<BatchDescription>,
    /// Skips events already processed.
    pub idempotent: bool,
    /// Publishes and commits its input in one Kafka transaction.
    pub transactional: bool,
    /// The longest one call may take (humantime), if limited.
    pub timeout: Option<String>,
    /// Its circuit breaker, if it has one.
    pub circuit: Option<CircuitDescription>,
}

/// A handler's event type.
#[derive(Debug, Clone, Serialize)]
pub struct EventDescription {
    /// The type as written in the handler's signature.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its JSON Schema (draft-07), when it derives `schemars::JsonSchema` and the `schemars`
    /// feature is on.
    pub schema: Option<serde_json::Value>,
}

/// A handler's effective retry policy.
#[derive(Debug, Clone, Serialize)]
pub struct RetryDescription {
    /// Retries after the first attempt.
    pub max: u32,
    /// `exponential`, `linear` or `fixed`.
    pub backoff: &'static str,
    /// The first delay (humantime).
    pub initial: String,
    /// The longest delay (humantime).
    pub max_delay: String,
    /// Random spread of each delay, as a fraction.
    pub jitter: f64,
    /// `topic` (through the retry topic) or `in_place`.
    pub mode: &'static str,
    /// The retry topic, in `topic` mode with retries.
    pub topic: Option<String>,
    /// The group that reads the retry topic.
    pub group: Option<String>,
}

/// `batch(max, linger)`.
#[derive(Debug, Clone, Serialize)]
pub struct BatchDescription {
    /// Events per call at most.
    pub max: u32,
    /// How long a batch waits to fill after its first event (humantime).
    pub linger: String,
}

/// A circuit breaker.
#[derive(Debug, Clone, Serialize)]
pub struct CircuitDescription {
    /// Consecutive failed calls that open it.
    pub failures: u32,
    /// How long it stays open (humantime).
    pub reset: String,
}

/// One topic of the service.
#[derive(Debug, Clone, Serialize)]
pub struct TopicDescription {
    /// The topic (prefix applied).
    pub name: String,
    /// `handler`, `retry` or `dead-letter`.
    pub kind: &'static str,
    /// Partitions it is created with.
    pub partitions: i32,
    /// Replication factor it is created with.
    pub replication_factor: i32,
    /// `retention.ms` it is created with (humantime), if set.
    pub retention: Option<String>,
    /// `cleanup.policy` it is created with, if set.
    pub cleanup: Option<String>,
}

/// Describes the handlers `config` selects, validated as at start-up (an invalid topology is
/// the same error), without connecting to anything.
pub fn describe(config: &Config) -> Result<Description, Error> {
    config.validate()?;
    let topology = Topology::discover(config)?;
    Ok(Description::of(&topology, config))
}

fn duration(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl Description {
    pub(crate) fn of(topology: &Topology, config: &Config) -> Self {
        let groups = Groups {
            main: crate::names::main_group(config.service_name()),
            retry: crate::names::retry_group(config.service_name()),
        };
        let handlers = topology.handlers().map(|h| HandlerDescription::of(h, &groups)).collect();
        let topics = topology
            .topic_plans(config)
            .into_iter()
            .map(|plan| TopicDescription {
                name: plan.name,
                kind: match plan.kind {
                    TopicKind::Handler => "handler",
                    TopicKind::Retry => "retry",
                    TopicKind::DeadLetter => "dead-letter",
                },
                partitions: plan.partitions,
                replication_factor: config.topic_replication(),
                retention: plan.retention.map(duration),
                cleanup: plan.cleanup,
            })
            .collect();
        Self {
            service: config.service_name().to_string(),
            version: "unversioned".into(),
            brokers: config.brokers().map(|b| b.split(',').map(|s| s.trim().to_string()).collect()).unwrap_or_default(),
            groups,
            handlers,
            topics,
            provisions_topics: config.provision_topics(),
        }
    }

    /// The AsyncAPI 3.0 document of the service: a channel per topic (handler, retry,
    /// dead-letter), a `receive` operation per handler and retry topic, a `send` operation per
    /// retry and dead-letter topic, Kafka bindings (topic, partitions, group ids), and each
    /// event's JSON Schema as its message payload when it has one.
    pub fn to_asyncapi(&self) -> serde_json::Value {
        asyncapi::document(self)
    }

    /// The document in `format`, pretty-printed.
    pub fn render(&self, format: DescribeFormat) -> String {
        let value = match format {
            DescribeFormat::Json => serde_json::to_value(self).expect("a description is plain data"),
            DescribeFormat::AsyncApi => self.to_asyncapi(),
        };
        serde_json::to_string_pretty(&value).expect("a JSON value always serializes")
    }
}

impl HandlerDescription {
    fn of(handler: &BoundHandler, groups: &Groups) -> Self {
        let registration = handler.registration;
        let retry = &handler.retry;
        let event = registration.event.map_or_else(
            || EventDescription { type_name: "unknown".into(), schema: None },
            |event| EventDescription { type_name: event.name.to_string(), schema: (event.schema)() },
        );
        Self {
            name: handler.name().to_string(),
            site: format!("{}:{}", registration.file, registration.line),
            topic: handler.topic.clone(),
            group: groups.main.clone(),
            event,
            retry: RetryDescription {
                max: retry.max,
                backoff: match retry.backoff {
                    Backoff::Linear => "linear",
                    Backoff::Fixed => "fixed",
                    _ => "exponential",
                },
                initial: duration(retry.initial),
                max_delay: duration(retry.max_delay),
                jitter: retry.jitter,
                mode: if retry.mode == RetryMode::InPlace { "in_place" } else { "topic" },
                topic: handler.retry_topic.clone(),
                group: handler.retry_topic.as_ref().map(|_| groups.retry.clone()),
            },
            dead_letter_topic: handler.dlq_topic.clone(),
            concurrency: registration.concurrency.max(1),
            keyless: match registration.keyless {
                crate::abi::Keyless::Ordered => "ordered",
                crate::abi::Keyless::Unordered => "unordered",
            },
            batch: registration.batch().map(|b| BatchDescription {
                max: b.max,
                linger: duration(std::time::Duration::from_millis(b.linger_ms)),
            }),
            idempotent: registration.idempotent,
            transactional: registration.transactional,
            timeout: handler.timeout.map(duration),
            circuit: handler.circuit.map(|c| CircuitDescription { failures: c.failures, reset: duration(c.reset) }),
        }
    }
}
