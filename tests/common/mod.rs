//! Helpers shared by the integration tests: broker address, unique names, a raw producer and
//! reader, committed offsets, and a recorder that handlers write to and tests await.
#![allow(dead_code)]

pub mod kafka_node;
pub mod readiness;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_events::Config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::watch;

/// The broker under test: `KAFKA_BROKERS` (set by `scripts/test.sh`, which starts Apache Kafka).
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect(
        "KAFKA_BROKERS is not set: run the suite with `scripts/test.sh` (it starts a broker), or point KAFKA_BROKERS at a Kafka cluster",
    )
}

/// A name no other test run uses: `__<test>_<letters>`. Letters, not digits: the runtime refuses
/// group ids that embed a timestamp, and the group ids derive from this name.
pub fn unique(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let mut n = nanos ^ (u128::from(std::process::id()) << 64);
    let mut letters = String::new();
    while n > 0 {
        letters.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
    }
    format!("__{test}_{letters}")
}

/// A development config against the test broker, with its own topic prefix and service name,
/// running only `handlers`.
pub fn config(run: &str, handlers: &[&str]) -> Config {
    // `RUST_LOG=kafka_events=debug scripts/test.sh …` shows the runtime's logs.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    Config::development(format!("{run}-svc"))
        .with_brokers(brokers())
        .with_topic_prefix(format!("{run}."))
        .with_handlers(handlers.iter().copied())
        .with_commit_interval(Duration::from_millis(200))
        .with_shutdown_timeout(Duration::from_secs(10))
        .with_consumer_property("session.timeout.ms", "6000")
        .with_consumer_property("heartbeat.interval.ms", "500")
}

/// An idempotent producer to the broker under test, batching as producers do (`linger.ms=5`).
pub fn producer() -> FutureProducer {
    producer_for(&brokers())
}

/// [`producer`] for the brokers at `bootstrap`.
pub fn producer_for(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Produces one message and waits for its acknowledgement.
pub async fn produce(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
    headers: &[(&str, &str)],
    partition: Option<i32>,
) -> (i32, i64) {
    let mut owned = OwnedHeaders::new();
    for (k, v) in headers {
        owned = owned.insert(Header { key: k, value: Some(*v) });
    }
    let mut record = FutureRecord::to(topic).key(key).payload(payload).headers(owned);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    let delivery = producer.send(record, Duration::from_secs(30)).await.expect("produce");
    (delivery.partition, delivery.offset)
}

/// Reads every message of `topic` from the beginning until `count` have arrived (or 60 s pass).
pub fn read_topic(topic: &str, count: usize) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut messages = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while messages.len() < count && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            messages.push(m.detach());
        }
    }
    messages
}

/// High watermarks (end offsets) of every partition of `topic`.
pub fn end_offsets(topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("client");
    (0..partitions)
        .map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks").1)
        .collect()
}

/// Offsets committed by `group` for every partition of `topic` (-1 when none).
pub fn committed_offsets(group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    committed_offsets_at(&brokers(), group, topic, partitions)
}

/// [`committed_offsets`] on the brokers at `bootstrap`.
pub fn committed_offsets_at(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().expect("client");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(list, Duration::from_secs(10)).expect("committed offsets");
    (0..partitions)
        .map(|p| match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => -1,
        })
        .collect()
}

/// Waits (polling the broker, up to `timeout`) until `group` has committed the end offset of
/// every partition of `topic` — every message finished (an empty partition needs no commit).
pub async fn wait_committed(group: &str, topic: &str, partitions: i32, timeout: Duration) {
    let end = end_offsets(topic, partitions);
    eventually(&format!("{group} to commit every offset of {topic}"), timeout, || async {
        let committed = committed_offsets(group, topic, partitions);
        let done = committed.iter().zip(&end).all(|(c, e)| c == e || (*e == 0 && *c == -1));
        if done {
            Ok(())
        } else {
            Err(format!("committed {committed:?} of {end:?}"))
        }
    })
    .await
}

/// The value of header `name`, as text.
pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

pub fn key(message: &OwnedMessage) -> String {
    message.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default()
}

/// What handlers did, per topic: every invocation in order, with its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub id: String,
    pub attempt: u32,
    pub partition: i32,
    pub offset: i64,
    pub succeeded: bool,
    /// When the handler was invoked.
    pub at: std::time::Instant,
}

type Calls = HashMap<String, Vec<Call>>;

fn recorder() -> &'static (Mutex<Calls>, watch::Sender<u64>) {
    static RECORDER: OnceLock<(Mutex<Calls>, watch::Sender<u64>)> = OnceLock::new();
    RECORDER.get_or_init(|| (Mutex::new(HashMap::new()), watch::channel(0).0))
}

/// Records one handler invocation (called from handlers).
pub fn record(topic: &str, call: Call) {
    let (calls, changed) = recorder();
    calls.lock().unwrap().entry(topic.to_string()).or_default().push(call);
    changed.send_modify(|n| *n += 1);
}

/// Records that a handler was invoked with `ctx` for event `id` (called from handlers).
pub fn record_call(ctx: &kafka_events::MessageContext, id: &str, succeeded: bool) {
    record(
        ctx.topic(),
        Call {
            id: id.to_string(),
            attempt: ctx.attempt(),
            partition: ctx.partition(),
            offset: ctx.offset(),
            succeeded,
            at: std::time::Instant::now(),
        },
    );
}

/// Polls `probe` every 10 ms until it returns `Ok`, for state that has no event to await (the
/// broker's committed offsets, the runtime's gauges, an HTTP endpoint); panics after `timeout`
/// naming `what` and the last `Err` the probe described.
pub async fn eventually<T, Fut>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "timed out after {timeout:?} waiting for {what}; last: {last}"
                )
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every invocation recorded for `topic`.
pub fn calls(topic: &str) -> Vec<Call> {
    recorder().0.lock().unwrap().get(topic).cloned().unwrap_or_default()
}

/// Waits until `done(calls of topic)` holds; panics after `timeout` with what was seen.
pub async fn wait_for(topic: &str, timeout: Duration, done: impl Fn(&[Call]) -> bool) -> Vec<Call> {
    let mut changed = recorder().1.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seen = calls(topic);
        if done(&seen) {
            return seen;
        }
        if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
            panic!("timed out after {timeout:?} waiting on `{topic}`; {} calls recorded", seen.len());
        }
    }
}

/// Creates `topic` with `partitions` partitions (no error if it exists).
pub async fn create_topic(topic: &str, partitions: i32) {
    create_topic_at(&brokers(), topic, partitions).await
}

/// [`create_topic`] on the brokers at `bootstrap`.
pub async fn create_topic_at(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin");
    let results = admin
        .create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("create topics");
    for result in results {
        if let Err((name, code)) = result {
            assert_eq!(code, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists, "creating {name}");
        }
    }
}

/// Produces many `(key, payload)` messages to `topic` at once (pipelined), then waits for every
/// acknowledgement; returns `(partition, offset)` of each, in order.
pub async fn produce_many(producer: &FutureProducer, topic: &str, messages: &[(String, Vec<u8>)]) -> Vec<(i32, i64)> {
    let records: Vec<Record> = messages.iter().map(|(key, payload)| (key.clone(), payload.clone(), vec![])).collect();
    produce_records(producer, topic, &records).await
}

/// A message to produce: key, payload, headers.
pub type Record = (String, Vec<u8>, Vec<(String, String)>);

/// [`produce_many`] with headers.
pub async fn produce_records(producer: &FutureProducer, topic: &str, records: &[Record]) -> Vec<(i32, i64)> {
    let mut pending = Vec::with_capacity(records.len());
    for (key, payload, headers) in records {
        let mut owned = OwnedHeaders::new_with_capacity(headers.len());
        for (name, value) in headers {
            owned = owned.insert(Header { key: name, value: Some(value.as_str()) });
        }
        let record = FutureRecord::to(topic).key(key.as_str()).payload(payload.as_slice()).headers(owned);
        pending.push(producer.send_result(record).map_err(|(e, _)| e).expect("enqueue"));
    }
    let mut acks = Vec::with_capacity(pending.len());
    for delivery in pending {
        let delivery = delivery.await.expect("delivery future").map_err(|(e, _)| e).expect("produce");
        acks.push((delivery.partition, delivery.offset));
    }
    acks
}

/// The PostgreSQL database of the suite: `KAFKA_EVENTS_TEST_DATABASE_URL` (set by
/// `scripts/test.sh`, which starts PostgreSQL when it is not running).
pub fn database_url() -> String {
    std::env::var("KAFKA_EVENTS_TEST_DATABASE_URL").expect(
        "KAFKA_EVENTS_TEST_DATABASE_URL is not set: run the suite with `scripts/test.sh` (it starts PostgreSQL), or point it at a database",
    )
}

/// A small pool on [`database_url`], with the crate's `processed_events` migration applied (the
/// runtime applies it at start-up too), so a test can count processed events before any
/// runtime has started on a fresh database.
pub async fn database() -> sqlx::PgPool {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&database_url())
        .await
        .expect("connect to PostgreSQL");
    kafka_events::idempotency::PostgresStore::from_pool(pool.clone())
        .migrate()
        .await
        .expect("migrate processed_events");
    pool
}

/// A table name of the run's own, derived from one of its topics (`__run_abc.payments` →
/// `__run_abc_payments`), so handlers find their table from `ctx.topic()`.
pub fn table_of(topic: &str) -> String {
    topic.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

/// Creates the run's table `table` with `columns` (SQL column definitions).
pub async fn create_table(pool: &sqlx::PgPool, table: &str, columns: &str) {
    sqlx::query(&format!("CREATE TABLE {table} ({columns})")).execute(pool).await.expect("create the table");
}

/// Drops the run's table and its rows of `processed_events` (`scope`).
pub async fn drop_run_data(pool: &sqlx::PgPool, table: &str, scope: &str) {
    sqlx::query(&format!("DROP TABLE {table}")).execute(pool).await.expect("drop the table");
    sqlx::query("DELETE FROM processed_events WHERE scope = $1")
        .bind(scope)
        .execute(pool)
        .await
        .expect("clean up processed_events");
}

/// `SELECT count(*)` of `sql`'s rows (a `FROM ...` clause with optional `$1`).
pub async fn count(pool: &sqlx::PgPool, from: &str, bind: Option<&str>) -> i64 {
    let sql = format!("SELECT count(*) {from}");
    let query = sqlx::query_scalar::<_, i64>(&sql);
    let query = match bind {
        Some(value) => query.bind(value.to_string()),
        None => query,
    };
    query.fetch_one(pool).await.expect("count")
}

/// The sum of every sample of the metric `name` in the Prometheus text `metrics`.
pub fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Reads `topic` (one partition at a time, every partition) from the start to its end as a
/// consumer with `isolation.level`, returning every message; the end is the partition's EOF,
/// which for `read_committed` is the last stable offset.
pub fn read_to_end(bootstrap: &str, topic: &str, partitions: i32, isolation: &str) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", isolation)
        .create()
        .expect("reader");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Beginning).expect("partition");
    }
    consumer.assign(&list).expect("assign");
    let mut messages = Vec::new();
    let mut at_end = std::collections::HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while at_end.len() < partitions as usize {
        assert!(std::time::Instant::now() < deadline, "reading {topic} to its end took over 60 s");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => messages.push(m.detach()),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    messages
}

/// Kills the child process when dropped, so a failing test leaves no consumer behind.
pub struct ChildGuard(pub Option<std::process::Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The value of config `name` of `topic`, as the broker describes it.
pub async fn topic_config(topic: &str, name: &str) -> Option<String> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("admin");
    let results = admin
        .describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .expect("describe configs");
    let resource = results.into_iter().next()?.expect("describe topic");
    resource.get(name).and_then(|entry| entry.value.clone())
}

/// A child process's logs: to stderr (inherited by the test), `warn` unless `RUST_LOG` says.
pub fn child_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Re-runs this test binary as a child process that runs only the ignored test `child_test`,
/// with `envs` set (the child reads them to know what to do).
pub fn spawn_child(child_test: &str, envs: &[(&str, &str)]) -> std::process::Child {
    spawn_child_with_stderr(child_test, envs, std::process::Stdio::inherit())
}

/// [`spawn_child`] with the child's stderr (its log) sent to `stderr`.
pub fn spawn_child_with_stderr(
    child_test: &str,
    envs: &[(&str, &str)],
    stderr: std::process::Stdio,
) -> std::process::Child {
    let mut command = std::process::Command::new(std::env::current_exe().expect("test binary"));
    command
        .args([child_test, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .stdout(std::process::Stdio::null())
        .stderr(stderr);
    for (key, value) in envs {
        command.env(key, value);
    }
    command.spawn().expect("spawn child")
}

/// Appends one `id partition offset` line to the file named by `$var` (one write of a short
/// line to an O_APPEND file, so concurrent lanes never interleave).
pub fn append_line(var: &str, id: &str, partition: i32, offset: i64) -> std::io::Result<()> {
    use std::io::Write;
    let path = std::env::var(var).map_err(std::io::Error::other)?;
    let line = format!("{id} {partition} {offset}\n");
    std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(line.as_bytes())
}

/// Complete lines written so far to `path`: `(id, partition, offset)`.
pub fn handled_lines(path: &std::path::Path) -> Vec<(String, i32, i64)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|line| {
            let mut parts = line.split(' ');
            let id = parts.next().unwrap().to_string();
            (id, parts.next().unwrap().parse().unwrap(), parts.next().unwrap().parse().unwrap())
        })
        .collect()
}

/// Waits (checking every 10 ms, up to 120 s) until `done` holds for the lines of `paths`. The
/// children write these files; there is no event to await across processes.
pub async fn wait_lines(paths: &[&std::path::PathBuf], what: &str, done: impl Fn(&[(String, i32, i64)]) -> bool) {
    eventually(what, Duration::from_secs(120), || async {
        let all: Vec<_> = paths.iter().flat_map(|p| handled_lines(p)).collect();
        if done(&all) {
            Ok(())
        } else {
            Err(format!("{} lines so far", all.len()))
        }
    })
    .await
}

/// Sends SIGTERM to `child` and waits for it to exit.
pub async fn terminate(mut child: std::process::Child) -> std::process::ExitStatus {
    let status =
        std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill -TERM");
    assert!(status.success());
    tokio::task::spawn_blocking(move || child.wait()).await.unwrap().expect("wait")
}
