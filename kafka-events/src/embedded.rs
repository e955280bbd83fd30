//! The embedded broker: librdkafka's in-process mock cluster, for development and examples.
//!
//! The mock cluster handle is not `Send`, so one thread owns it and takes requests over a channel.

use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::mocking::MockCluster;

enum Request {
    CreateTopic { name: String, partitions: i32, reply: mpsc::Sender<KafkaResult<()>> },
    SetDown { down: bool, reply: mpsc::Sender<KafkaResult<()>> },
}

/// An in-process Kafka-protocol broker (librdkafka's mock cluster). Data lives in memory and is
/// gone when it is dropped. It does not implement `CreateTopics`: create topics with
/// [`EmbeddedBroker::create_topic`].
pub struct EmbeddedBroker {
    bootstrap_servers: String,
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts a one-broker mock cluster on a loopback port.
    pub fn start() -> KafkaResult<Self> {
        let (ready_tx, ready_rx) = mpsc::channel::<KafkaResult<String>>();
        let (requests, incoming) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("kafka-events-embedded-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(cluster) => cluster,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                for request in incoming {
                    match request {
                        Request::CreateTopic { name, partitions, reply } => {
                            let _ = reply.send(cluster.create_topic(&name, partitions, 1));
                        }
                        Request::SetDown { down, reply } => {
                            let result = if down { cluster.broker_down(1) } else { cluster.broker_up(1) };
                            let _ = reply.send(result);
                        }
                    }
                }
            })
            .map_err(|_| KafkaError::MockCluster(rdkafka::types::RDKafkaErrorCode::Fail))?;
        let bootstrap_servers =
            ready_rx.recv().map_err(|_| KafkaError::MockCluster(rdkafka::types::RDKafkaErrorCode::Fail))??;
        Ok(Self { bootstrap_servers, requests: Some(requests), thread: Some(thread) })
    }

    /// Its `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    /// Creates `name` with `partitions` partitions (replication factor 1).
    pub fn create_topic(&self, name: &str, partitions: i32) -> KafkaResult<()> {
        self.ask(|reply| Request::CreateTopic { name: name.into(), partitions, reply })
    }

    /// Takes the broker down (connections are closed and refused; its data is kept) or brings it
    /// back up — for testing what clients do when the broker goes away.
    pub fn set_down(&self, down: bool) -> KafkaResult<()> {
        self.ask(|reply| Request::SetDown { down, reply })
    }

    fn ask(&self, request: impl FnOnce(mpsc::Sender<KafkaResult<()>>) -> Request) -> KafkaResult<()> {
        let failed = || KafkaError::MockCluster(rdkafka::types::RDKafkaErrorCode::Fail);
        let (reply, answer) = mpsc::channel();
        self.requests.as_ref().ok_or_else(failed)?.send(request(reply)).map_err(|_| failed())?;
        answer.recv().map_err(|_| failed())?
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker").field("bootstrap_servers", &self.bootstrap_servers).finish()
    }
}
