//! The edges the `unsafe` blocks of `native.rs` guard, against the embedded broker: what a run
//! reads (null keys and values, headers with and without a value), an empty queue, messages
//! held past their partition's revocation, and a run dropped unhandled — after each, the consumer
//! still closes (librdkafka's close waits for every message it handed out).

use std::sync::{mpsc, Arc};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, DefaultConsumerContext};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::{layout_is_audited, unparsed_headers, BatchQueue, Fetched, AUDITED_VERSION, MAX_RUN};
use crate::embedded::EmbeddedBroker;

const TOPIC: &str = "native-runs";

/// Headers as owned pairs, collected the way the runtime's header copy is.
struct Headers(Vec<(String, Option<Vec<u8>>)>);

impl<'h> FromIterator<(&'h str, Option<&'h [u8]>)> for Headers {
    fn from_iter<I: IntoIterator<Item = (&'h str, Option<&'h [u8]>)>>(headers: I) -> Self {
        Self(headers.into_iter().map(|(name, value)| (name.to_string(), value.map(<[u8]>::to_vec))).collect())
    }
}
const WAIT: Duration = Duration::from_secs(30);

/// The embedded broker with `count` messages on partition 0 of [`TOPIC`]: every third with a
/// null key, every fifth a tombstone, every message two headers (the second without a value).
fn broker_with(count: usize) -> EmbeddedBroker {
    broker_with_headers(count, |_| true)
}

/// As [`broker_with`], the headers only on the messages `headed` picks.
fn broker_with_headers(count: usize, headed: impl Fn(usize) -> bool) -> EmbeddedBroker {
    let broker = EmbeddedBroker::start().expect("embedded broker");
    broker.create_topic(TOPIC, 1).expect("topic");
    let producer: BaseProducer =
        ClientConfig::new().set("bootstrap.servers", broker.bootstrap_servers()).create().expect("producer");
    for i in 0..count {
        let key = format!("k{i}");
        let payload = format!("{{\"n\":{i}}}");
        let headers =
            OwnedHeaders::new()
                .insert(Header { key: "n", value: Some(&i.to_string()) })
                .insert(Header::<&str> { key: "empty", value: None });
        let mut record = BaseRecord::<str, str>::to(TOPIC).partition(0);
        if headed(i) {
            record = record.headers(headers);
        }
        if i % 3 != 0 {
            record = record.key(&key);
        }
        if i % 5 != 0 {
            record = record.payload(&payload);
        }
        producer.send(record).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(WAIT).expect("flush");
    broker
}

/// A consumer assigned partition 0 of [`TOPIC`] from the start, its partition queue split off
/// (so messages wait there) with `nonempty` signalled when it fills, and our reference to it.
struct Reader {
    // Dropped in this order, as the runtime's `Queue` does: our reference, then the split queue,
    // then the consumer.
    batch: BatchQueue,
    _split: rdkafka::consumer::base_consumer::PartitionQueue<DefaultConsumerContext>,
    nonempty: mpsc::Receiver<()>,
    consumer: Arc<BaseConsumer>,
}

fn reader(broker: &EmbeddedBroker) -> Reader {
    let consumer: Arc<BaseConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap_servers())
            .set("group.id", "native-tests")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer"),
    );
    let mut split = consumer.split_partition_queue(TOPIC, 0).expect("split");
    let (tx, nonempty) = mpsc::channel();
    split.set_nonempty_callback(move || {
        let _ = tx.send(());
    });
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(TOPIC, 0, Offset::Beginning).expect("offset");
    consumer.assign(&assignment).expect("assign");
    let batch = BatchQueue::of(&consumer, TOPIC, 0).expect("the partition's queue");
    Reader { batch, _split: split, nonempty, consumer }
}

impl Reader {
    /// Reads runs until `count` messages have been read (the consumer polled meanwhile, as the
    /// runtime's poll thread does, so fetching goes on), waiting for the queue's wake-up.
    fn read(&self, count: usize) -> Vec<Fetched<'_>> {
        let mut read = Vec::new();
        let deadline = std::time::Instant::now() + WAIT;
        while read.len() < count {
            assert!(std::time::Instant::now() < deadline, "read {} of {count}", read.len());
            let _ = self.consumer.poll(Duration::ZERO);
            let taken = self.batch.read(count - read.len(), |message| read.push(message.expect("no consumer error")));
            if taken == 0 {
                let _ = self.nonempty.recv_timeout(Duration::from_millis(100));
            }
        }
        read
    }
}

/// Closes `consumer` on another thread; whether it closed within [`WAIT`] (librdkafka's close
/// hangs while a message it handed out is alive).
fn closes(reader: Reader) -> bool {
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        drop(reader);
        let _ = done_tx.send(());
    });
    done.recv_timeout(WAIT).is_ok()
}

#[test]
fn a_run_is_read_in_offset_order_with_null_keys_tombstones_and_headers() {
    let broker = broker_with(40);
    let reader = reader(&broker);
    let mut run = reader.read(40);
    assert_eq!(run.len(), 40);
    for (i, message) in run.iter_mut().enumerate() {
        assert_eq!((message.partition(), message.offset()), (0, i as i64));
        let key = format!("k{i}");
        assert_eq!(message.key(), (i % 3 != 0).then_some(key.as_bytes()), "message {i}");
        let payload = format!("{{\"n\":{i}}}");
        assert_eq!(message.payload(), (i % 5 != 0).then_some(payload.as_bytes()), "message {i}");
        assert!(matches!(message.timestamp(), rdkafka::message::Timestamp::CreateTime(t) if t > 0));
        let Headers(headers) = message.copy_headers().expect("headers");
        assert_eq!(headers, [("n".to_string(), Some(i.to_string().into_bytes())), ("empty".to_string(), None)]);
    }
    drop(run);
    assert!(closes(reader), "the consumer closes once every message is dropped");
}

#[test]
fn an_empty_queue_reads_nothing_at_once_and_a_run_is_capped() {
    let broker = broker_with(MAX_RUN + 10);
    let reader = reader(&broker);
    let all = reader.read(MAX_RUN + 10);
    assert_eq!(all.last().map(Fetched::offset), Some((MAX_RUN + 9) as i64));
    let started = std::time::Instant::now();
    assert_eq!(reader.batch.read(MAX_RUN, |_| panic!("nothing is left")), 0);
    assert!(started.elapsed() < Duration::from_secs(1), "a read never waits");
    drop(all);
    assert!(closes(reader));
}

#[test]
fn messages_outlive_the_revocation_of_their_partition() {
    let broker = broker_with(20);
    let reader = reader(&broker);
    let held = reader.read(20);
    reader.consumer.unassign().expect("unassign");
    // The partition is no longer assigned; the messages read before are still whole.
    for (i, message) in held.iter().enumerate() {
        assert_eq!(message.offset(), i as i64);
        let payload = format!("{{\"n\":{i}}}");
        assert_eq!(message.payload(), (i % 5 != 0).then_some(payload.as_bytes()));
    }
    drop(held);
    assert!(closes(reader));
}

#[test]
fn a_run_dropped_unhandled_releases_every_message() {
    let broker = broker_with(30);
    let reader = reader(&broker);
    let mut run = reader.read(30);
    // Half handled, the rest dropped as a lane does on shutdown mid-run.
    run.truncate(15);
    drop(run);
    assert!(closes(reader), "every message of the dropped run was released");
}

#[test]
fn the_private_layout_read_is_of_the_audited_librdkafka() {
    let (version, name) = rdkafka::util::get_rdkafka_version();
    assert_eq!(
        version, AUDITED_VERSION,
        "librdkafka {name} is linked: re-read `rd_kafka_msg_t` in its src/rdkafka_msg.h against `MsgPrefix`, then move AUDITED_VERSION"
    );
    assert!(layout_is_audited());
}

/// A zigzag varint, as Kafka's record format writes counts and lengths.
fn varint(n: i64, out: &mut Vec<u8>) {
    let mut zigzag = ((n << 1) ^ (n >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// The header section a record with `headers` carries: the count, then each name and value
/// with their lengths (`-1` for no value).
fn record_section(headers: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut section = Vec::new();
    varint(headers.len() as i64, &mut section);
    for (name, value) in headers {
        varint(name.len() as i64, &mut section);
        section.extend_from_slice(name.as_bytes());
        varint(value.map_or(-1, |v| v.len() as i64), &mut section);
        section.extend_from_slice(value.unwrap_or_default());
    }
    section
}

#[test]
fn a_records_header_section_is_read_as_fetched() {
    // Every other message headed (a header with a value, one without); the rest with none.
    let broker = broker_with_headers(30, |i| i % 2 == 0);
    let reader = reader(&broker);
    let mut run = reader.read(30);
    for (i, message) in run.iter_mut().enumerate() {
        assert!(unparsed_headers(message.message, false).is_none(), "unaudited: always the public call");
        let n = i.to_string();
        let produced: &[(&str, Option<&[u8]>)] =
            if i % 2 == 0 { &[("n", Some(n.as_bytes())), ("empty", None)] } else { &[] };
        // Read from the private layout first (librdkafka's parse would take the section's place):
        // exactly the bytes Kafka's record format gives the produced headers, and what
        // librdkafka's own parse of them finds.
        let section = message.header_section().map(<[u8]>::to_vec).expect("every record has a header section");
        assert_eq!(section, record_section(produced), "message {i}");
        let parsed = message.copy_headers::<Headers>().map(|Headers(h)| h).unwrap_or_default();
        let produced: Vec<_> =
            produced.iter().map(|(name, value)| (name.to_string(), value.map(<[u8]>::to_vec))).collect();
        assert_eq!(parsed, produced, "message {i}");
        // Headers librdkafka parsed are cached in the message: the section is then left to the
        // public call (which answers from its cache).
        assert_eq!(message.header_section().is_none(), i % 2 == 0, "message {i}");
    }
    drop(run);
    assert!(closes(reader));
}
