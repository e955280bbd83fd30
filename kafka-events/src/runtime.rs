//! Starting and stopping: discovery, validation, connection, the main group, shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::circuit::CircuitBreaker;
use crate::config::Config;
use crate::connection::Connection;
use crate::consumer::{GroupMember, MemberSpec};
use crate::error::Error;
use crate::health::{Health, HealthBoard};
use crate::http::HttpServer;
use crate::metrics::Metrics;
use crate::names::{main_group, retry_group};
use crate::processor::{Instruments, Processors};
use crate::publisher::Publisher;
use crate::registry::Topology;
use crate::sync::contain;

/// Starts every handler and runs until SIGINT or SIGTERM, then shuts down gracefully.
///
/// Fails at start-up, before touching the network, when the configuration or the handler
/// topology is invalid, listing every problem.
///
/// With `KAFKA_ENABLED=false` it starts nothing, logs so, and returns `Ok(())`. With
/// `KAFKA_EVENTS_DESCRIBE=json|asyncapi` it prints the service's topology document (see
/// [`describe`](crate::describe)) to stdout and returns `Ok(())` without connecting.
///
/// Unless the application installed a `tracing` subscriber first, `start` installs one, so a
/// stalled partition, a dead letter or a refused start-up is never silent: human-readable lines
/// on stderr (`LOG_FORMAT=json`: one JSON object per line), filtered by `RUST_LOG` (default
/// `info,librdkafka=warn`). A line that cannot be written (the reader of a pipe went away) is
/// dropped: the subscriber reports nothing about it, since that report would fail too. To opt out, install your own subscriber (or
/// `tracing::subscriber::NoSubscriber`) before calling `start`. [`launch`] installs none.
pub async fn start(config: Config) -> Result<(), Error> {
    if let Some(format) = config.describe() {
        // A document on stdout, nothing else: no log subscriber, no connection.
        println!("{}", crate::describe::describe(&config)?.render(format));
        return Ok(());
    }
    if crate::logging::install_default() {
        tracing::debug!("installed the default log subscriber (install your own before `start` to replace it)");
    }
    // Signals are caught from here on: one that comes while the runtime starts is never met by
    // the default action (which kills the process where it stands, members joined or not).
    let mut signals = Signals::listen()?;
    let launched = tokio::select! {
        biased;
        launched = launch(config) => launched,
        // `launch` waits only before it starts any consumer (for the store, the brokers, topic
        // provisioning, the HTTP listener): stopping it there leaves nothing to shut down.
        received = signals.recv() => {
            received?;
            contain(|| tracing::info!("shutdown signal received while starting: stopped before any consumer started"));
            return Ok(());
        }
    };
    match launched {
        Err(Error::Disabled) => {
            tracing::info!("Kafka is disabled (KAFKA_ENABLED=false): no consumer or producer started");
            Ok(())
        }
        result => result?.run_until(signals).await,
    }
}

/// Starts every handler and returns at once with a [`Runtime`] handle; the caller decides when
/// to [`shut down`](Runtime::shutdown).
pub async fn launch(config: Config) -> Result<Runtime, Error> {
    config.validate()?;
    if !config.enabled() {
        return Err(Error::Disabled);
    }
    let topology = Arc::new(Topology::discover(&config)?);
    for handler in topology.handlers() {
        tracing::info!(
            handler = %handler.name(),
            topic = %handler.topic,
            retry = %describe_retry(handler),
            dlq = handler.dlq_topic.as_deref().unwrap_or("none: a failing message stalls its partition"),
            "handler registered"
        );
    }
    // The idempotency store first: a database that cannot be reached fails start-up before any
    // consumer joins a group.
    let store = crate::idempotency::connect(config.idempotency()).await.map_err(Error::Idempotency)?;
    let connection = Arc::new(Connection::open(&config)?);
    connection.await_brokers(&config).await?;
    connection.ensure_topics(&config, &topology.topic_plans(&config)).await?;

    let metrics = Arc::new(Metrics::new());
    let status = Arc::new(HealthBoard::new());
    let instruments: HashMap<String, Instruments> = topology
        .handlers()
        .map(|h| {
            let breaker = h.circuit.map(|policy| {
                let opened = metrics.circuit_opened(&h.topic, h.name());
                Arc::new(CircuitBreaker::new(policy, h.name(), &h.topic, opened))
            });
            (h.topic.clone(), Instruments { metrics: Some(metrics.for_handler(&h.topic, h.name())), breaker })
        })
        .collect();
    status.track_circuits(instruments.values().filter_map(|i| i.breaker.clone()));
    let transactions = crate::processor::transaction::TransactionSetup {
        client: connection.producer_config(&config),
        config: config.clone(),
        metrics: metrics.clone(),
    };
    let processors = Arc::new(Processors::new(
        connection.producer.clone(),
        status.clone(),
        metrics.clone(),
        config.observer.clone(),
        instruments,
        store.clone(),
        Publisher::new(connection.producer.clone(), config.clone(), metrics.clone()),
        transactions,
    ));
    let http = match config.http() {
        Some(addr) => {
            let description = crate::describe::Description::of(&topology, &config);
            Some(
                HttpServer::start(addr, status.clone(), metrics.clone(), config.readiness_policy(), &description)
                    .await?,
            )
        }
        None => None,
    };
    let spec = |group: String, topics: Vec<String>| MemberSpec {
        group,
        topics,
        client: connection.base_config(&config),
        topology: topology.clone(),
        processors: processors.clone(),
        status: status.clone(),
        metrics: metrics.clone(),
    };
    let main_topics = topology.topics().into_iter().map(String::from).collect();
    let mut members = vec![GroupMember::start(spec(main_group(config.service_name()), main_topics), &config)?];
    let retry_topics: Vec<String> = topology.retry_topics().into_iter().map(String::from).collect();
    if !retry_topics.is_empty() {
        match GroupMember::start(spec(retry_group(config.service_name()), retry_topics), &config) {
            Ok(member) => members.push(member),
            Err(error) => {
                let deadline = tokio::time::Instant::now() + config.shutdown_timeout() + crate::consumer::CLOSE_MARGIN;
                for member in &members {
                    member.signal_stop();
                }
                for member in members {
                    let _ = member.join(deadline).await;
                }
                if let Some(http) = http {
                    http.stop().await;
                }
                return Err(error);
            }
        }
    }
    Ok(Runtime { config, connection, topology, status, metrics, members, http, store })
}

/// A running runtime. Stop it with [`Runtime::shutdown`]; dropping it without shutting down
/// leaves the consumer running until the process exits.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use kafka_events::Config;
///
/// let runtime = kafka_events::runtime::launch(Config::from_env()?).await?;
/// let ready = runtime.health().readiness(&runtime.config().readiness_policy(), std::time::Duration::from_secs(60));
/// println!("ready: {} {:?}; metrics:\n{}", ready.ready, ready.problems, runtime.metrics_text());
/// tokio::signal::ctrl_c().await?;
/// runtime.shutdown().await?; // finishes in-flight messages, commits, leaves the groups
/// # Ok(()) }
/// ```
pub struct Runtime {
    config: Config,
    connection: Arc<Connection>,
    topology: Arc<Topology>,
    status: Arc<HealthBoard>,
    metrics: Arc<Metrics>,
    members: Vec<GroupMember>,
    http: Option<HttpServer>,
    store: Option<Arc<dyn crate::idempotency::IdempotencyStore>>,
}

impl Runtime {
    /// A publisher sharing the runtime's producer.
    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.connection.producer.clone(), self.config.clone(), self.metrics.clone())
    }

    /// The current health: stalled partitions, and per consumer group its state, assignment,
    /// held messages and time since its last poll. [`Health::readiness`] and
    /// [`Health::liveness`] turn it into the verdicts `/health/ready` and `/health/live` serve.
    pub fn health(&self) -> Health {
        self.status.snapshot()
    }

    /// Every metric in the Prometheus text format — what `/metrics` serves — for those who
    /// run their own HTTP server.
    pub fn metrics_text(&self) -> String {
        self.metrics.encode(&self.status.snapshot())
    }

    /// Where the HTTP endpoint listens (the actual port when it was configured as 0).
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().map(|h| h.addr)
    }

    /// The `bootstrap.servers` in use (the embedded broker's address when no brokers are set).
    pub fn bootstrap_servers(&self) -> &str {
        self.connection.bootstrap_servers()
    }

    /// The idempotency store `idempotent` handlers record processed events in, if one is
    /// configured.
    pub fn idempotency_store(&self) -> Option<&Arc<dyn crate::idempotency::IdempotencyStore>> {
        self.store.as_ref()
    }

    /// The handlers this runtime drives.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Creates `topic` (prefix applied) as provisioning creates handler topics, if it is missing,
    /// and waits until the brokers know it.
    #[cfg(feature = "testing")]
    pub(crate) async fn ensure_topic(&self, topic: &str) -> Result<(), Error> {
        let plan = crate::registry::TopicPlan {
            name: self.config.topic_name(topic),
            kind: crate::registry::TopicKind::Handler,
            partitions: self.config.topic_partitions(),
            retention: None,
            cleanup: None,
        };
        self.connection.ensure_topics(&self.config, &[plan]).await
    }

    /// Waits for SIGINT (Ctrl-C) or SIGTERM, then shuts down.
    pub async fn run_until_signal(self) -> Result<(), Error> {
        let signals = Signals::listen()?;
        self.run_until(signals).await
    }

    async fn run_until(self, mut signals: Signals) -> Result<(), Error> {
        signals.recv().await?;
        // A log line must not stop the shutdown, whatever the subscriber does (see crate::sync).
        contain(|| tracing::info!("shutdown signal received"));
        self.shutdown().await
    }

    /// Graceful shutdown: stop fetching, let in-flight messages finish, commit what finished,
    /// leave the groups, flush the producer — all within `KAFKA_SHUTDOWN_TIMEOUT` plus 4 s
    /// (committing and leaving take well under a second while brokers answer). Messages still
    /// running at the deadline are cancelled (their handlers' futures dropped), never committed,
    /// and logged with the offsets that will be redelivered. A consumer that has not closed
    /// `KAFKA_SHUTDOWN_TIMEOUT` + 3 s after the call (librdkafka waiting on brokers that do not
    /// answer) is abandoned — its thread goes on in the background and ends with the process —
    /// and shutdown returns [`Error::Consumer`] naming its group, what it was doing and the
    /// offsets it had not committed.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        let started = tokio::time::Instant::now();
        let timeout = self.config.shutdown_timeout();
        let deadline = started + timeout + crate::consumer::CLOSE_MARGIN;
        // Both groups stop fetching at once, then each drains, commits and leaves.
        let members = std::mem::take(&mut self.members);
        for member in &members {
            member.signal_stop();
        }
        // Every member is joined (each logs its own failure); the first failure is returned.
        let mut result = Ok(());
        for member in members {
            let joined = member.join(deadline).await;
            if result.is_ok() {
                result = joined;
            }
        }
        if let Some(http) = self.http.take() {
            http.stop().await;
        }
        let producer = self.connection.producer.clone();
        // One budget for the whole shutdown: the flush gets what the drain left (at least 1 s).
        let timeout =
            (started + timeout).saturating_duration_since(tokio::time::Instant::now()).max(Duration::from_secs(1));
        let flushed = tokio::task::spawn_blocking(move || rdkafka::producer::Producer::flush(&producer, timeout)).await;
        contain(|| match flushed {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "producer flush did not complete"),
            Err(error) => tracing::warn!(%error, "producer flush panicked"),
        });
        contain(|| tracing::info!("stopped"));
        result
    }

    /// Whether every consumer thread has ended (they only end on shutdown or a fatal error).
    pub fn is_stopped(&self) -> bool {
        self.members.iter().all(GroupMember::is_finished)
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("bootstrap_servers", &self.bootstrap_servers())
            .field("topics", &self.topology.topics())
            .finish_non_exhaustive()
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, caught from [`Signals::listen`] on: one received before
/// [`Signals::recv`] is awaited is kept for it.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn listen() -> Result<Self, Error> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt()).map_err(Error::Signal)?,
                terminate: signal(SignalKind::terminate()).map_err(Error::Signal)?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    async fn recv(&mut self) -> Result<(), Error> {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => Ok(()),
                _ = self.terminate.recv() => Ok(()),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.map_err(Error::Signal)
        }
    }
}

/// `3 retries, exponential 200ms..30s, through orders.retry` — how a handler retries, for the log.
fn describe_retry(handler: &crate::registry::BoundHandler) -> String {
    let policy = &handler.retry;
    if policy.max == 0 {
        return "none".into();
    }
    let route = handler.retry_topic.as_deref().map_or_else(|| "in place".to_string(), |t| format!("through {t}"));
    let backoff = format!("{:?}", policy.backoff).to_lowercase();
    let (initial, max_delay) =
        (humantime::format_duration(policy.initial), humantime::format_duration(policy.max_delay));
    format!("{} retries, {backoff} {initial}..{max_delay}, {route}", policy.max)
}
