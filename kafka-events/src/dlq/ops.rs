//! DLQ operations: stats from watermarks (and a scan), peek, and replay through the
//! `${SERVICE_NAME}-admin` group.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::config::Config;
use crate::names::{admin_group, header};

/// How long a read waits for the next message before it decides there is none.
const IDLE: Duration = Duration::from_secs(5);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A DLQ operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DlqError {
    /// No brokers are configured (the embedded broker lives inside one process only).
    #[error("DLQ operations need a broker: set KAFKA_BROKERS (or --brokers)")]
    NoBrokers,
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The brokers did not answer.
    #[error("cannot reach the brokers at `{brokers}`: {source}")]
    Unreachable {
        /// The configured brokers.
        brokers: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// The topic does not exist.
    #[error("topic `{0}` does not exist")]
    TopicNotFound(String),
    /// A dead letter has no `x-original-topic` header and no `--to` was given.
    #[error("the message at `{topic}` partition {partition} offset {offset} has no `x-original-topic` header; pass a target topic (`--to <topic>`) to replay it")]
    MissingOriginalTopic {
        /// The DLQ topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
    },
    /// A dead letter published without the original's key, value and headers (they made it too
    /// large) stands for a record that is no longer in its original topic (retention deleted
    /// it), so there is nothing to replay. Nothing from it on was replayed.
    #[error("the dead letter at `{topic}` partition {partition} offset {offset} carries no payload ({why}), and its original `{original}` is no longer readable")]
    OriginalGone {
        /// The DLQ topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
        /// Its `x-dlq-payload-omitted` header.
        why: String,
        /// Where the original was: `topic[partition]@offset`.
        original: String,
    },
    /// A broker operation failed.
    #[error("{context}: {source}")]
    Kafka {
        /// What was being done.
        context: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
}

fn kafka(context: impl Into<String>) -> impl FnOnce(KafkaError) -> DlqError {
    let context = context.into();
    move |source| DlqError::Kafka { context, source }
}

/// Counts of one partition of a dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStats {
    /// The partition.
    pub partition: i32,
    /// Its low watermark (oldest offset still kept).
    pub low: i64,
    /// Its high watermark (next offset to be written).
    pub high: i64,
    /// When its oldest kept dead letter was written.
    pub oldest: Option<SystemTime>,
    /// When its newest dead letter was written.
    pub newest: Option<SystemTime>,
}

impl PartitionStats {
    /// Dead letters kept in this partition (high − low).
    pub fn count(&self) -> i64 {
        self.high - self.low
    }
}

/// What a dead-letter topic holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqStats {
    /// The topic.
    pub topic: String,
    /// Per partition, from the watermarks.
    pub partitions: Vec<PartitionStats>,
    /// Counts by `x-dlq-error-kind`, when the topic was scanned (`(none)` for records without one).
    pub by_kind: Option<BTreeMap<String, u64>>,
}

impl DlqStats {
    /// Dead letters kept over every partition.
    pub fn total(&self) -> i64 {
        self.partitions.iter().map(PartitionStats::count).sum()
    }
}

/// One dead letter as read back.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its partition in the DLQ topic.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// When it was written.
    pub timestamp: Option<SystemTime>,
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original value.
    pub value: Option<Vec<u8>>,
    /// Every header, in wire order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl DeadLetter {
    fn from_message(message: &OwnedMessage) -> Self {
        Self {
            partition: message.partition(),
            offset: message.offset(),
            timestamp: timestamp(message),
            key: message.key().map(<[u8]>::to_vec),
            value: message.payload().map(<[u8]>::to_vec),
            headers: message
                .headers()
                .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
                .unwrap_or_default(),
        }
    }

    /// The last header called `name`, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().rev().find(|(k, _)| k == name).and_then(|(_, v)| std::str::from_utf8(v.as_deref()?).ok())
    }
    /// `x-dlq-reason`.
    pub fn reason(&self) -> Option<&str> {
        self.header(header::DLQ_REASON)
    }
    /// `x-dlq-error-kind`.
    pub fn kind(&self) -> Option<&str> {
        self.header(header::DLQ_ERROR_KIND)
    }
    /// `x-original-topic`.
    pub fn original_topic(&self) -> Option<&str> {
        self.header(header::ORIGINAL_TOPIC)
    }
}

/// What to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Replay at most this many dead letters (all when `None`).
    pub limit: Option<usize>,
    /// Only report what would be replayed: publish nothing, commit nothing.
    pub dry_run: bool,
    /// Republish here instead of each record's `x-original-topic`.
    pub to: Option<String>,
}

/// One replayed (or, in a dry run, replayable) dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayItem {
    /// Its partition in the DLQ topic.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// Where it was (or would be) republished.
    pub target: String,
}

/// The result of a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// What was replayed, in order (or would be, in a dry run).
    pub items: Vec<ReplayItem>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Dead letters left after this run (from the watermarks when it started).
    pub remaining: i64,
}

/// Operations on dead-letter topics. Topic names are full names, as on the wire.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use kafka_events::dlq::{DeadLetters, ReplayOptions};
/// use kafka_events::Config;
///
/// let dead_letters = DeadLetters::connect(&Config::from_env()?).await?;
/// let stats = dead_letters.stats("orders.created.dlq", true).await?;
/// println!("{:?}", stats.by_kind); // e.g. {"decode": 3, "retries-exhausted": 1}
/// for letter in dead_letters.peek("orders.created.dlq", 10).await? {
///     println!("{:?}: {:?}", letter.kind(), letter.reason());
/// }
/// // After the fix is deployed: republish them to their original topic.
/// let report = dead_letters.replay("orders.created.dlq", ReplayOptions::default()).await?;
/// println!("replayed {}, {} left", report.items.len(), report.remaining);
/// # Ok(()) }
/// ```
///
/// The same operations from a shell: `kafka-events dlq stats|peek|replay` (feature `cli`).
pub struct DeadLetters {
    brokers: String,
    client: ClientConfig,
    admin_group: String,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters").field("brokers", &self.brokers).field("admin_group", &self.admin_group).finish()
    }
}

impl DeadLetters {
    /// Uses the brokers, service name (for `${SERVICE_NAME}-admin`) and client properties of
    /// `config`; checks the brokers answer.
    pub async fn connect(config: &Config) -> Result<Self, DlqError> {
        config.validate()?;
        let brokers = config.brokers().ok_or(DlqError::NoBrokers)?.to_string();
        // The runtime's producer settings: security properties, the partitioner (a replayed
        // record goes back to its key's partition) and the configured producer properties.
        let client = crate::connection::producer_config(config, &brokers);
        let this = Self { brokers, client, admin_group: admin_group(config.service_name()) };
        let probe = this.consumer(None)?;
        let brokers = this.brokers.clone();
        blocking(move || probe.fetch_metadata(None, METADATA_TIMEOUT).map(|_| ()))
            .await
            .map_err(|source| DlqError::Unreachable { brokers, source })?;
        Ok(this)
    }

    fn consumer(&self, group: Option<&str>) -> Result<BaseConsumer, DlqError> {
        let mut client = self.client.clone();
        client
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest");
        client.set("group.id", group.unwrap_or(&self.admin_group));
        client.create().map_err(kafka("creating a consumer"))
    }

    /// `(partition, low, high)` watermarks of every partition of `topic`, or
    /// [`DlqError::TopicNotFound`].
    fn watermarks(consumer: &BaseConsumer, topic: &str, brokers: &str) -> Result<Vec<(i32, i64, i64)>, DlqError> {
        let metadata = consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|source| DlqError::Unreachable { brokers: brokers.to_string(), source })?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        let partitions: Vec<i32> = match found {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                t.partitions().iter().map(|p| p.id()).collect()
            }
            _ => return Err(DlqError::TopicNotFound(topic.to_string())),
        };
        partitions
            .into_iter()
            .map(|p| {
                let (low, high) =
                    consumer.fetch_watermarks(topic, p, METADATA_TIMEOUT).map_err(kafka("reading watermarks"))?;
                Ok((p, low, high))
            })
            .collect()
    }

    /// Counts per partition from the watermarks, with the oldest and newest timestamps; with
    /// `scan`, reads every record and counts them by `x-dlq-error-kind` too.
    pub async fn stats(&self, topic: &str, scan: bool) -> Result<DlqStats, DlqError> {
        let consumer = self.consumer(None)?;
        let (topic, brokers) = (topic.to_string(), self.brokers.clone());
        blocking(move || {
            let mut partitions = Vec::new();
            for (partition, low, high) in Self::watermarks(&consumer, &topic, &brokers)? {
                let at = |offset: i64| {
                    read_range(&consumer, &topic, &[(partition, offset, offset + 1)], Some(1))
                        .map(|m| m.first().and_then(timestamp))
                };
                let (oldest, newest) = if high > low { (at(low)?, at(high - 1)?) } else { (None, None) };
                partitions.push(PartitionStats { partition, low, high, oldest, newest });
            }
            let by_kind = if scan {
                let ranges: Vec<(i32, i64, i64)> = partitions.iter().map(|p| (p.partition, p.low, p.high)).collect();
                let mut kinds = BTreeMap::new();
                for message in read_range(&consumer, &topic, &ranges, None)? {
                    let letter = DeadLetter::from_message(&message);
                    *kinds.entry(letter.kind().unwrap_or("(none)").to_string()).or_insert(0) += 1;
                }
                Some(kinds)
            } else {
                None
            };
            Ok(DlqStats { topic, partitions, by_kind })
        })
        .await
    }

    /// The first `limit` dead letters of `topic`, partition by partition from the oldest kept.
    pub async fn peek(&self, topic: &str, limit: usize) -> Result<Vec<DeadLetter>, DlqError> {
        let consumer = self.consumer(None)?;
        let (topic, brokers) = (topic.to_string(), self.brokers.clone());
        blocking(move || {
            let ranges = Self::watermarks(&consumer, &topic, &brokers)?;
            let messages = read_range(&consumer, &topic, &ranges, Some(limit))?;
            Ok(messages.iter().map(DeadLetter::from_message).collect())
        })
        .await
    }

    /// Republishes dead letters of `topic` to their `x-original-topic` (or `options.to`) without
    /// the runtime's retry and DLQ headers, through the `${SERVICE_NAME}-admin` group: each
    /// offset is committed only after its republish was acknowledged, so an interrupted replay
    /// re-run later replays at most the one record in flight again and skips nothing.
    pub async fn replay(&self, topic: &str, options: ReplayOptions) -> Result<ReplayReport, DlqError> {
        let consumer = self.consumer(Some(&self.admin_group))?;
        let producer: FutureProducer = {
            let mut client = self.client.clone();
            client.set("enable.idempotence", "true").set("acks", "all");
            client.create().map_err(kafka("creating the producer"))?
        };
        let (dlq, brokers) = (topic.to_string(), self.brokers.clone());
        // Where the admin group stands and where the topic ends, per partition.
        let (consumer, ranges) = blocking(move || {
            let watermarks = Self::watermarks(&consumer, &dlq, &brokers)?;
            let mut list = TopicPartitionList::new();
            for (p, _, _) in &watermarks {
                list.add_partition(&dlq, *p);
            }
            let committed = consumer
                .committed_offsets(list, METADATA_TIMEOUT)
                .map_err(kafka("reading the admin group's offsets"))?;
            let ranges: Vec<(i32, i64, i64)> = watermarks
                .into_iter()
                .map(|(p, low, high)| match committed.find_partition(&dlq, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => (p, o.max(low), high),
                    _ => (p, low, high),
                })
                .collect();
            Ok::<_, DlqError>((consumer, ranges))
        })
        .await?;
        let available: i64 = ranges.iter().map(|(_, start, high)| (high - start).max(0)).sum();
        let wanted = options.limit.map_or(available, |l| (l as i64).min(available)) as usize;
        let (dlq, to) = (topic.to_string(), options.to.clone());
        let (consumer, messages) = blocking(move || {
            let messages = read_range(&consumer, &dlq, &ranges, Some(wanted))?;
            Ok::<_, DlqError>((consumer, messages))
        })
        .await?;

        let mut items = Vec::new();
        for message in &messages {
            let mut letter = DeadLetter::from_message(message);
            let target = match (&to, letter.original_topic()) {
                (Some(to), _) => to.clone(),
                (None, Some(original)) => original.to_string(),
                (None, None) => {
                    return Err(DlqError::MissingOriginalTopic {
                        topic: topic.to_string(),
                        partition: letter.partition,
                        offset: letter.offset,
                    })
                }
            };
            if letter.header(header::DLQ_PAYLOAD_OMITTED).is_some() {
                // Published without the original's key, value and headers: take them from the
                // original record, still in its topic until retention.
                self.fill_from_original(topic, &mut letter).await?;
            }
            if !options.dry_run {
                let mut headers = OwnedHeaders::new();
                for (key, value) in letter.headers.iter().filter(|(k, _)| !header::DIAGNOSTIC.contains(&k.as_str())) {
                    headers = headers.insert(Header { key, value: value.as_deref() });
                }
                let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&target).headers(headers);
                if let Some(key) = &letter.key {
                    record = record.key(key);
                }
                if let Some(value) = &letter.value {
                    record = record.payload(value);
                }
                producer.send(record, Duration::from_secs(30)).await.map_err(|(source, _)| DlqError::Kafka {
                    context: format!(
                        "republishing `{topic}` partition {} offset {} to `{target}`",
                        letter.partition, letter.offset
                    ),
                    source,
                })?;
                let mut list = TopicPartitionList::new();
                list.add_partition_offset(topic, letter.partition, Offset::Offset(letter.offset + 1))
                    .map_err(kafka("building the commit"))?;
                consumer
                    .commit(&list, rdkafka::consumer::CommitMode::Sync)
                    .map_err(kafka("committing the replayed offset"))?;
            }
            items.push(ReplayItem { partition: letter.partition, offset: letter.offset, target });
        }
        let _ = producer.flush(Duration::from_secs(30));
        let remaining = if options.dry_run { available } else { available - items.len() as i64 };
        Ok(ReplayReport { items, dry_run: options.dry_run, remaining })
    }
}

/// Reads `[start, end)` of each `(partition, start, end)` of `topic` (at most `limit` messages in
/// all), partition by partition in offset order. Stops early when nothing arrives for a while.
impl DeadLetters {
    /// Replaces the key, value and headers of a payload-less dead letter with those of the
    /// original record at its `x-original-topic/partition/offset`.
    async fn fill_from_original(&self, dlq: &str, letter: &mut DeadLetter) -> Result<(), DlqError> {
        let coordinates = (|| {
            Some((
                letter.header(header::ORIGINAL_TOPIC)?.to_string(),
                letter.header(header::ORIGINAL_PARTITION)?.parse::<i32>().ok()?,
                letter.header(header::ORIGINAL_OFFSET)?.parse::<i64>().ok()?,
            ))
        })();
        let gone = |letter: &DeadLetter, original: String| DlqError::OriginalGone {
            topic: dlq.to_string(),
            partition: letter.partition,
            offset: letter.offset,
            why: letter.header(header::DLQ_PAYLOAD_OMITTED).unwrap_or_default().to_string(),
            original,
        };
        let Some((topic, partition, offset)) = coordinates else {
            return Err(gone(letter, "(no x-original-* headers)".into()));
        };
        let reader = self.consumer(None)?;
        let (read_topic, range) = (topic.clone(), [(partition, offset, offset + 1)]);
        let found = blocking(move || read_range(&reader, &read_topic, &range, Some(1))).await?;
        match found.into_iter().find(|m| m.offset() == offset) {
            Some(original) => {
                let original = DeadLetter::from_message(&original);
                letter.key = original.key;
                letter.value = original.value;
                letter.headers = original.headers;
                Ok(())
            }
            None => Err(gone(letter, format!("{topic}[{partition}]@{offset}"))),
        }
    }
}

fn read_range(
    consumer: &BaseConsumer,
    topic: &str,
    ranges: &[(i32, i64, i64)],
    limit: Option<usize>,
) -> Result<Vec<OwnedMessage>, DlqError> {
    let mut messages = Vec::new();
    for &(partition, start, end) in ranges {
        if start >= end || limit.is_some_and(|l| messages.len() >= l) {
            continue;
        }
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, partition, Offset::Offset(start)).map_err(kafka("building the assignment"))?;
        consumer.assign(&list).map_err(kafka("assigning the partition"))?;
        let mut last_seen = Instant::now();
        let mut next = start;
        while next < end && limit.is_none_or(|l| messages.len() < l) && last_seen.elapsed() < IDLE {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) if message.partition() == partition && message.offset() >= next => {
                    next = message.offset() + 1;
                    last_seen = Instant::now();
                    if message.offset() < end {
                        messages.push(message.detach());
                    }
                }
                Some(Err(error)) => {
                    return Err(DlqError::Kafka { context: format!("reading `{topic}`"), source: error })
                }
                _ => {}
            }
        }
    }
    consumer.unassign().map_err(kafka("unassigning"))?;
    Ok(messages)
}

fn timestamp(message: &OwnedMessage) -> Option<SystemTime> {
    let millis = message.timestamp().to_millis()?;
    UNIX_EPOCH.checked_add(Duration::from_millis(u64::try_from(millis).ok()?))
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.expect("DLQ operation panicked")
}
