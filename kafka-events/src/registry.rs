//! Discovery of every `#[kafka_handler]` in the program and validation of the topology they form.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::abi::{DlqSpec, HandlerRegistration};
use crate::config::Config;
use crate::names::{self, check_topic_name};
use crate::problems::{Problem, Problems};
use crate::retry::{RetryMode, RetryPolicy};

inventory::collect!(HandlerRegistration);

/// Every registered handler, sorted by topic then by qualified name (inventory's order is
/// unspecified, so the runtime never depends on it).
pub fn registered() -> Vec<&'static HandlerRegistration> {
    let mut all: Vec<&'static HandlerRegistration> = inventory::iter::<HandlerRegistration>.into_iter().collect();
    all.sort_by(|a, b| (a.topic, a.module_path, a.name).cmp(&(b.topic, b.module_path, b.name)));
    all
}

/// A handler bound to the configuration: its real topic names and its effective retry policy.
#[derive(Debug, Clone)]
pub struct BoundHandler {
    pub(crate) registration: &'static HandlerRegistration,
    /// `module::path::fn_name`, built once (it names every message's span).
    name: String,
    /// The topic it consumes (with the configured prefix).
    pub topic: String,
    /// Where its dead letters go, if anywhere.
    pub dlq_topic: Option<String>,
    /// Where its failed messages wait for their next attempt, when it retries through a topic.
    pub retry_topic: Option<String>,
    /// Its effective retry policy.
    pub retry: RetryPolicy,
    /// Its circuit breaker's policy, if it has one.
    pub circuit: Option<crate::circuit::CircuitPolicy>,
    /// Where its processed event ids are recorded (`<service>/<topic>`), when it is `idempotent`.
    pub idempotency_scope: Option<String>,
    /// The longest one call may take (`timeout = "..."`, else `KAFKA_HANDLER_TIMEOUT`).
    pub timeout: Option<std::time::Duration>,
}

impl BoundHandler {
    /// `module::path::fn_name`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The validated set of handlers one runtime drives, keyed by topic.
#[derive(Debug, Clone)]
pub struct Topology {
    handlers: BTreeMap<String, BoundHandler>,
}

impl Topology {
    /// Discovers every registered handler and validates them against `config`.
    pub fn discover(config: &Config) -> Result<Self, TopologyError> {
        Self::build(&registered(), config)
    }

    /// Validates `registrations` against `config`, listing every problem at once.
    pub(crate) fn build(
        registrations: &[&'static HandlerRegistration],
        config: &Config,
    ) -> Result<Self, TopologyError> {
        let mut problems = Vec::new();
        let selected: Vec<&'static HandlerRegistration> = match config.handler_filter() {
            None => registrations.to_vec(),
            Some(filter) => {
                for wanted in filter {
                    if !registrations.iter().any(|r| selects(wanted, r)) {
                        let known: Vec<String> = registrations.iter().map(|r| r.qualified_name()).collect();
                        problems.push(format!(
                            "handler `{wanted}` is selected in the configuration but not registered (registered: {})",
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ));
                    }
                }
                registrations.iter().copied().filter(|r| filter.iter().any(|w| selects(w, r))).collect()
            }
        };
        if selected.is_empty() && problems.is_empty() {
            problems.push(
                "no handlers to run: annotate an `async fn` with `#[kafka_handler(topic = \"...\")]` in this binary"
                    .into(),
            );
        }

        let mut by_topic: BTreeMap<String, BoundHandler> = BTreeMap::new();
        for registration in selected {
            let topic = config.topic_name(registration.topic);
            let topic_valid = match check_topic_name(&topic) {
                Ok(()) => true,
                Err(reason) => {
                    problems.push(format!("{}: invalid topic: {reason}", registration.site()));
                    false
                }
            };
            let dlq_topic = match registration.dlq {
                DlqSpec::Disabled => None,
                DlqSpec::Default => Some(names::dlq_topic(&topic, config.dlq_suffix())),
                DlqSpec::Topic(custom) => Some(config.topic_name(custom)),
            };
            if let Some(dlq) = &dlq_topic {
                if let Err(reason) = check_topic_name(dlq) {
                    problems.push(format!("{}: invalid dead-letter topic: {reason}", registration.site()));
                } else if *dlq == topic {
                    problems
                        .push(format!("{}: dead-letter topic `{dlq}` is the handler's own topic", registration.site()));
                }
            }
            let mut retry = match &registration.retry {
                Some(spec) => spec.resolve(&config.default_retry()),
                None => config.default_retry(),
            };
            // A batch is retried as a whole and a transaction around the same input: in place.
            if registration.batch().is_some() || registration.transactional {
                retry.mode = RetryMode::InPlace;
            }
            if registration.idempotent && !config.idempotency().is_configured() {
                problems.push(format!(
                    "{}: handler is `idempotent` but no idempotency store is configured; set KAFKA_IDEMPOTENCY_STORE to a `postgres://` URL (or `memory` for a single process)",
                    registration.site()
                ));
            }
            for problem in retry.problems() {
                problems.push(format!("{}: {problem}", registration.site()));
            }
            if let Some(existing) = by_topic.get(&topic) {
                problems.push(format!(
                    "two handlers consume topic `{topic}`: {} and {}; a topic has exactly one handler",
                    existing.registration.site(),
                    registration.site()
                ));
                continue;
            }
            let retry_topic = (retry.mode == RetryMode::Topic && retry.max > 0)
                .then(|| names::retry_topic(&topic, config.retry_suffix()));
            if let Some(retry_topic) = retry_topic.as_ref().filter(|_| topic_valid) {
                if let Err(reason) = check_topic_name(retry_topic) {
                    problems.push(format!("{}: invalid retry topic: {reason}", registration.site()));
                }
            }
            let name = registration.qualified_name();
            let circuit = match registration.circuit {
                Some(spec) => Some(spec.resolve(config.default_circuit())),
                None => config.circuit_enabled().then(|| config.default_circuit()),
            };
            if let Some(circuit) = circuit.filter(|c| c.failures == 0 || c.reset.is_zero()) {
                problems.push(format!(
                    "{}: circuit breaker needs failures ≥ 1 and a reset longer than 0, got failures = {} and reset = {}",
                    registration.site(),
                    circuit.failures,
                    humantime::format_duration(circuit.reset)
                ));
            }
            by_topic.insert(
                topic.clone(),
                BoundHandler {
                    registration,
                    name,
                    idempotency_scope: registration
                        .idempotent
                        .then(|| names::idempotency_scope(config.service_name(), &topic)),
                    topic,
                    dlq_topic,
                    retry_topic,
                    retry,
                    circuit,
                    timeout: registration.timeout_ms.map(std::time::Duration::from_millis).or(config.handler_timeout()),
                },
            );
        }
        // A handler consuming another handler's retry or dead-letter topic would handle that
        // handler's failures as its own events (and its retries twice).
        for consumer in by_topic.values() {
            for owner in by_topic.values() {
                let kind = if owner.retry_topic.as_deref() == Some(consumer.topic.as_str()) {
                    "retry"
                } else if owner.dlq_topic.as_deref() == Some(consumer.topic.as_str()) && owner.topic != consumer.topic {
                    "dead-letter"
                } else {
                    continue;
                };
                problems.push(format!(
                    "{}: its topic `{}` is the {kind} topic of {}; give it another topic (a DLQ is read with `kafka-events dlq`, not a handler)",
                    consumer.registration.site(),
                    consumer.topic,
                    owner.registration.site()
                ));
            }
        }
        if problems.is_empty() {
            Ok(Self { handlers: by_topic })
        } else {
            Err(TopologyError { problems: problems.into_iter().map(TopologyProblem).collect() })
        }
    }

    /// The handler of `topic`.
    pub fn handler(&self, topic: &str) -> Option<&BoundHandler> {
        self.handlers.get(topic)
    }

    /// The handler that consumes `topic`, as its main topic or as its retry topic.
    pub fn handler_for(&self, topic: &str) -> Option<&BoundHandler> {
        self.handlers.get(topic).or_else(|| self.handlers.values().find(|h| h.retry_topic.as_deref() == Some(topic)))
    }

    /// Every retry topic (the `${SERVICE_NAME}-retry` group subscribes to them), sorted.
    pub fn retry_topics(&self) -> Vec<&str> {
        self.handlers.values().filter_map(|h| h.retry_topic.as_deref()).collect()
    }

    /// Every topic the runtime needs — handler, retry and dead-letter topics — with how to create
    /// it: the handler's `provision(...)` over the configured defaults (a handler's retry and
    /// dead-letter topics get its partition count).
    pub fn topic_plans(&self, config: &Config) -> Vec<TopicPlan> {
        let (topic_retention, retry_retention, dlq_retention) = config.retention();
        let mut plans: Vec<TopicPlan> = self
            .handlers
            .values()
            .flat_map(|h| {
                let spec = h.registration.provision.unwrap_or_default();
                let partitions = spec.partitions.unwrap_or(config.topic_partitions());
                let plan = |name: String, kind: TopicKind, retention: Option<Duration>, cleanup: Option<String>| {
                    TopicPlan { name, kind, partitions, retention, cleanup }
                };
                std::iter::once(plan(
                    h.topic.clone(),
                    TopicKind::Handler,
                    spec.retention_ms.map(Duration::from_millis).or(topic_retention),
                    spec.cleanup.map(str::to_string).or_else(|| config.cleanup_policy().map(str::to_string)),
                ))
                .chain(h.retry_topic.clone().map(|t| plan(t, TopicKind::Retry, retry_retention, None)))
                .chain(h.dlq_topic.clone().map(|t| plan(t, TopicKind::DeadLetter, dlq_retention, None)))
            })
            .collect();
        plans.sort_by(|a, b| a.name.cmp(&b.name));
        plans.dedup_by(|a, b| a.name == b.name);
        plans
    }

    /// Every handler, sorted by topic.
    pub fn handlers(&self) -> impl Iterator<Item = &BoundHandler> {
        self.handlers.values()
    }

    /// Every topic the main group subscribes to, sorted.
    pub fn topics(&self) -> Vec<&str> {
        self.handlers.keys().map(String::as_str).collect()
    }
}

/// How the runtime creates one topic it needs (existing topics are never changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPlan {
    /// The topic (prefix applied).
    pub name: String,
    /// What it is for.
    pub kind: TopicKind,
    /// Partitions.
    pub partitions: i32,
    /// `retention.ms`, when set.
    pub retention: Option<Duration>,
    /// `cleanup.policy`, when set.
    pub cleanup: Option<String>,
}

/// What a topic is for; decides its retention when it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TopicKind {
    /// A handler's own topic.
    Handler,
    /// A retry topic.
    Retry,
    /// A dead-letter topic.
    DeadLetter,
}

fn selects(wanted: &str, registration: &HandlerRegistration) -> bool {
    wanted == registration.name || wanted == registration.qualified_name()
}

/// One problem of the handler topology, naming the handler's site (module path, file and line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyProblem(pub String);

impl fmt::Display for TopologyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Problem for TopologyProblem {
    const HEADING: &'static str = "invalid handler topology";
}

/// The handlers in this program do not form a valid topology; every problem is listed.
pub type TopologyError = Problems<TopologyProblem>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::InputError;
    use crate::handler::MessageContext;
    use crate::retry::RetrySpec;

    fn never(_: Option<&[u8]>, _: MessageContext) -> Result<crate::abi::Invocation, InputError> {
        Err(InputError::decode("unused"))
    }
    const NEVER: crate::abi::Shape = crate::abi::Shape::Single(never);

    static A: HandlerRegistration = HandlerRegistration::new("a", "app::orders", "src/orders.rs", 10, "orders", NEVER);
    static B: HandlerRegistration =
        HandlerRegistration::new("b", "app::billing", "src/billing.rs", 20, "orders", NEVER);
    static C: HandlerRegistration =
        HandlerRegistration::new("c", "app::c", "src/c.rs", 30, "bad topic", NEVER).retry(RetrySpec {
            max: Some(500),
            backoff: None,
            initial_ms: None,
            max_delay_ms: None,
            jitter: None,
            mode: None,
        });
    static D: HandlerRegistration =
        HandlerRegistration::new("d", "app::d", "src/d.rs", 40, "payments", NEVER).dlq(DlqSpec::Default);

    #[test]
    fn every_problem_is_named_with_its_site() {
        let err = Topology::build(&[&A, &B, &C], &Config::development("svc")).unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        let text = err.to_string();
        assert!(text.contains("two handlers consume topic `orders`: app::orders::a (src/orders.rs:10) and app::billing::b (src/billing.rs:20)"), "{text}");
        assert!(text.contains("app::c::c (src/c.rs:30): invalid topic"), "{text}");
        assert!(text.contains("app::c::c (src/c.rs:30): retry `max = 500` exceeds"), "{text}");
    }

    static E: HandlerRegistration = HandlerRegistration::new("e", "app::e", "src/e.rs", 50, "payments.retry", NEVER);
    static F: HandlerRegistration = HandlerRegistration::new("f", "app::f", "src/f.rs", 60, "payments.dlq", NEVER);

    #[test]
    fn a_handler_of_another_handlers_retry_or_dead_letter_topic_is_refused_naming_both() {
        let err = Topology::build(&[&D, &E, &F], &Config::development("svc")).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 2, "{text}");
        assert!(
            text.contains(
                "app::e::e (src/e.rs:50): its topic `payments.retry` is the retry topic of app::d::d (src/d.rs:40)"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "app::f::f (src/f.rs:60): its topic `payments.dlq` is the dead-letter topic of app::d::d (src/d.rs:40)"
            ),
            "{text}"
        );
        assert!(Topology::build(&[&D], &Config::development("svc")).is_ok());
    }

    #[test]
    fn prefix_and_dlq_names() {
        let config = Config::development("svc").with_topic_prefix("staging.");
        let topology = Topology::build(&[&A, &D], &config).unwrap();
        assert_eq!(topology.topics(), ["staging.orders", "staging.payments"]);
        let d = topology.handler("staging.payments").unwrap();
        assert_eq!(d.dlq_topic.as_deref(), Some("staging.payments.dlq"));
        assert_eq!(d.retry, RetryPolicy::default());
        assert_eq!(d.retry_topic.as_deref(), Some("staging.payments.retry"));
        assert!(topology.handler("staging.orders").unwrap().dlq_topic.is_none());
        assert_eq!(topology.handler_for("staging.payments.retry").unwrap().topic, "staging.payments");
        assert_eq!(topology.retry_topics(), ["staging.orders.retry", "staging.payments.retry"]);
        let in_place = Config::development("svc")
            .with_default_retry(RetryPolicy { mode: RetryMode::InPlace, ..RetryPolicy::default() });
        let topology = Topology::build(&[&A], &in_place).unwrap();
        assert!(topology.retry_topics().is_empty(), "in-place handlers have no retry topic");
    }

    #[test]
    fn handler_filter_selects_and_reports_unknown_names() {
        let config = Config::development("svc").with_handlers(["b", "nope"]);
        let err = Topology::build(&[&A, &B], &config).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(err.problems[0].0.contains("handler `nope` is selected"), "{err}");
        let config = Config::development("svc").with_handlers(["app::billing::b"]);
        let topology = Topology::build(&[&A, &B], &config).unwrap();
        assert_eq!(topology.handler("orders").unwrap().name(), "app::billing::b");
    }

    #[test]
    fn empty_topology_is_an_error() {
        let err = Topology::build(&[], &Config::development("svc")).unwrap_err();
        assert!(err.to_string().contains("no handlers to run"), "{err}");
    }
}
