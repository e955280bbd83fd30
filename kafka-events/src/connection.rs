//! The one producer and the one admin client of a process (topic provisioning, which uses
//! them, is `provisioning.rs`).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::client_context::{is_auth_failure, TracingContext};
use crate::config::Config;
use crate::embedded::EmbeddedBroker;
use crate::error::Error;

/// The Kafka connection of a process: where the brokers are, one idempotent producer, one admin
/// client, and the embedded broker when no brokers are configured.
pub(crate) struct Connection {
    bootstrap_servers: String,
    pub(crate) producer: FutureProducer<TracingContext>,
    pub(crate) admin: AdminClient<TracingContext>,
    /// Shared with the producer and the admin client.
    context: TracingContext,
    /// Topics [`provisioning`](crate::provisioning) has checked.
    pub(crate) provisioned: Mutex<HashSet<String>>,
    // Declared last: dropped after the clients that talk to it.
    pub(crate) embedded: Option<EmbeddedBroker>,
}

impl Connection {
    pub(crate) fn open(config: &Config) -> Result<Self, Error> {
        let embedded = match config.brokers() {
            Some(_) => None,
            None => Some(EmbeddedBroker::start().map_err(|e| Error::kafka("starting the embedded broker", e))?),
        };
        let bootstrap_servers = match (&embedded, config.brokers()) {
            (Some(broker), _) => broker.bootstrap_servers().to_string(),
            (None, Some(brokers)) => brokers.to_string(),
            (None, None) => unreachable!("an embedded broker is started when no brokers are configured"),
        };
        if embedded.is_some() {
            tracing::info!(bootstrap = %bootstrap_servers, "no KAFKA_BROKERS: started the embedded broker (in-memory, development only)");
        }
        let context = TracingContext::default();
        let producer: FutureProducer<TracingContext> = producer_config(config, &bootstrap_servers)
            .create_with_context(context.clone())
            .map_err(|e| Error::kafka("creating the producer", e))?;
        let admin: AdminClient<TracingContext> = producer_config(config, &bootstrap_servers)
            .create_with_context(context.clone())
            .map_err(|e| Error::kafka("creating the admin client", e))?;
        Ok(Self { bootstrap_servers, producer, admin, context, provisioned: Mutex::new(HashSet::new()), embedded })
    }

    pub(crate) fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// Waits until a broker answers: tries a metadata request, and while none answers tries
    /// again with exponential backoff (0.5 s doubling to 30 s), logging each failure, for up to
    /// `KAFKA_STARTUP_TIMEOUT`. A broker that refuses our credentials ends it at once.
    pub(crate) async fn await_brokers(&self, config: &Config) -> Result<(), Error> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(500);
        loop {
            let producer = self.producer.clone();
            let mut request =
                tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, Duration::from_secs(5)));
            // librdkafka reports a refused login or handshake through the error callback long
            // before the metadata request times out: stop as soon as it does.
            let answer = loop {
                tokio::select! {
                    answer = &mut request => break Some(answer),
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {
                        if self.context.auth_failure().is_some() {
                            break None;
                        }
                    }
                }
            };
            let answer = match answer {
                Some(answer) => answer.map_err(|e| Error::provisioning([format!("metadata request panicked: {e}")]))?,
                None => Err(KafkaError::MetadataFetch(RDKafkaErrorCode::Authentication)),
            };
            let auth = self.context.auth_failure();
            match (answer, auth) {
                (_, Some(reason)) => {
                    return Err(Error::Authentication { brokers: self.bootstrap_servers.clone(), reason })
                }
                (Err(error), None) if is_auth_failure(&error) => {
                    return Err(Error::Authentication {
                        brokers: self.bootstrap_servers.clone(),
                        reason: error.to_string(),
                    })
                }
                (Ok(_), None) => {
                    if started.elapsed() > Duration::from_secs(1) {
                        tracing::info!(brokers = %self.bootstrap_servers, "brokers answer; starting");
                    }
                    return Ok(());
                }
                (Err(error), None) => {
                    if started.elapsed() + backoff > config.startup_timeout() {
                        return Err(Error::Unreachable {
                            brokers: self.bootstrap_servers.clone(),
                            waited: started.elapsed(),
                            reason: error.to_string(),
                        });
                    }
                    tracing::warn!(
                        brokers = %self.bootstrap_servers,
                        %error,
                        "no broker answers at start-up; trying again in {}",
                        humantime::format_duration(backoff)
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    /// The producer's client configuration (for the transactional producers of `transactional`
    /// handlers).
    pub(crate) fn producer_config(&self, config: &Config) -> ClientConfig {
        producer_config(config, &self.bootstrap_servers)
    }

    /// The settings every client of this process shares (brokers, client id).
    pub(crate) fn base_config(&self, config: &Config) -> ClientConfig {
        base_config(config, &self.bootstrap_servers)
    }
}

fn base_config(config: &Config, bootstrap_servers: &str) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", bootstrap_servers).set("client.id", config.client_id());
    for (key, value) in config.client_properties() {
        client.set(key, value);
    }
    client
}

/// librdkafka's name of the partitioner that matches Kafka's Java client: murmur2 of the key
/// (keyless records go to a random partition). librdkafka's own default, `consistent_random`,
/// hashes keys with CRC32 and would put a key on another partition than Java or KafkaJS do.
const JAVA_COMPATIBLE_PARTITIONER: &str = "murmur2_random";

/// The producer's settings: idempotent, `acks=all`, and the Java client's partitioner
/// (`murmur2_random`: murmur2 of the key, as Kafka's Java client and KafkaJS hash it), so a
/// keyed event lands on the same partition whichever of them publishes it; then the configured
/// producer properties, which may override any of these.
pub(crate) fn producer_config(config: &Config, bootstrap_servers: &str) -> ClientConfig {
    let mut client = base_config(config, bootstrap_servers);
    client.set("enable.idempotence", "true").set("acks", "all").set("partitioner", JAVA_COMPATIBLE_PARTITIONER);
    for (key, value) in config.producer_properties() {
        client.set(key, value);
    }
    client
}
