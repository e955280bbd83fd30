//! Poison messages of many kinds, sizes up to the broker's limit included, mixed with thousands
//! of valid events: every valid id is handled exactly once, every poison message is
//! dead-lettered exactly once with the right kind, every offset is committed — nothing stops
//! the line. Dead letters that would be larger than the producer accepts (a value near the
//! limit, huge headers, a huge key) are published without the original's key, value and headers
//! and say so; their reasons are bounded; a replay takes such a record's payload from its
//! original topic.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::{brokers, calls, config, create_topic, header, read_topic, record_call, unique, wait_committed, wait_for};
use kafka_events::dlq::{DeadLetters, ReplayOptions};
use kafka_events::names::header as h;
use kafka_events::prelude::*;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use serde::{Deserialize, Serialize};
use validator::Validate;

const VALID: usize = 3000;
const EACH_POISON: usize = 5;
const PARTITIONS: i32 = 3;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Meal {
    #[validate(length(min = 1, max = 64))]
    id: String,
    #[validate(range(min = 0, max = 100000))]
    grams: i64,
}

#[kafka_handler(topic = "meals", retry(max = 1, initial = "10ms"), dlq)]
async fn eat(meal: Meal, ctx: MessageContext) -> Result<(), HandlerError> {
    if meal.id.starts_with("permanent-") {
        record_call(&ctx, &meal.id, false);
        return Err(HandlerError::permanent(format!("{} cannot be eaten", meal.id)));
    }
    if meal.id.starts_with("panic-") {
        record_call(&ctx, &meal.id, false);
        panic!("{} made the handler panic", meal.id);
    }
    if meal.id.starts_with("flaky-") && ctx.attempt() == 1 {
        record_call(&ctx, &meal.id, false);
        return Err(HandlerError::retryable("the kitchen is busy"));
    }
    record_call(&ctx, &meal.id, true);
    Ok(())
}

/// One poison message: what it is called, its key, payload and headers, the kind its dead letter
/// must carry, and whether the dead letter must be the payload-less stand-in.
struct Poison {
    name: &'static str,
    key: Vec<u8>,
    payload: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    kind: &'static str,
    payload_omitted: bool,
}

/// A `Meal` whose `grams` is a string of `len` characters: serde's error quotes all of it.
fn bad_number(len: usize) -> Vec<u8> {
    format!("{{\"id\": \"n\", \"grams\": \"{}\"}}", "x".repeat(len)).into_bytes()
}

/// A valid `Meal` padded with an unknown field (serde ignores it) to `len` bytes.
fn padded(id: &str, len: usize) -> Vec<u8> {
    let head = format!("{{\"id\": \"{id}\", \"grams\": 1, \"pad\": \"");
    let mut json = head.into_bytes();
    json.resize(len - 2, b'x');
    json.extend_from_slice(b"\"}");
    json
}

fn meal(id: &str, grams: i64) -> Vec<u8> {
    serde_json::to_vec(&Meal { id: id.into(), grams }).unwrap()
}

/// Kind `n` of the poison messages, copy `i`.
fn poison(n: usize, i: usize) -> Poison {
    let plain = |name, payload: Option<Vec<u8>>, kind| Poison {
        name,
        key: format!("{name}-{i}").into_bytes(),
        payload,
        headers: vec![],
        kind,
        payload_omitted: false,
    };
    match n {
        0 => plain("not-json", Some(b"{not json".to_vec()), "decode"),
        1 => plain("tombstone", None, "decode"),
        2 => plain("null", Some(b"null".to_vec()), "decode"),
        3 => plain("missing-fields", Some(b"{}".to_vec()), "decode"),
        4 => plain("invalid-utf8", Some(b"{\"id\": \"\xff\xfe\", \"grams\": 1}".to_vec()), "decode"),
        5 => plain("deep-nesting", Some("[".repeat(100_000).into_bytes()), "decode"),
        6 => plain("negative", Some(meal(&format!("negative-{i}"), -5)), "validation"),
        // Records within a few KB of the broker's limit (`message.max.bytes` 1,048,588 per
        // batch) whose decode error quotes a long string: with the bounded reason and the
        // diagnostic headers added, their dead letters are over the limit.
        7 => Poison {
            payload: Some(bad_number(1_045_970)),
            payload_omitted: true,
            ..plain("near-limit", None, "decode")
        },
        // validator quotes the 500,000-character id: the reason is bounded, the copy fits.
        8 => plain("validation-huge", Some(meal(&"y".repeat(500_000), 1)), "validation"),
        // 1,008,000 bytes of headers: copied onto the dead letter they make it too large.
        9 => Poison {
            payload: Some(bad_number(38_000)),
            headers: (0..9).map(|n| (format!("x-bulk-{n}"), vec![b'h'; 112_000])).collect(),
            payload_omitted: true,
            ..plain("huge-headers", None, "decode")
        },
        // A 600,000-byte key and a 446,000-byte invalid value.
        10 => Poison {
            key: vec![b'k'; 600_000],
            payload: Some(bad_number(446_000)),
            payload_omitted: true,
            ..plain("huge-key", None, "decode")
        },
        11 => plain("permanent", Some(meal(&format!("permanent-{i}"), 1)), "permanent"),
        12 => plain("panic", Some(meal(&format!("panic-{i}"), 1)), "retries-exhausted"),
        // A valid event within 200 bytes of the broker's limit whose handler panics: its retry
        // record (the payload plus the retry headers) is too large, so it is dead-lettered — as
        // a stand-in without the payload — instead of retried.
        13 => Poison {
            payload: Some(padded(&format!("panic-big-{i}"), 1_048_300)),
            payload_omitted: true,
            ..plain("retry-near-limit", None, "undeliverable")
        },
        _ => unreachable!(),
    }
}

const KINDS: usize = 14;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_of_every_kind_and_size_is_dead_lettered_and_every_valid_event_handled() {
    let run = unique("poison");
    let topic = format!("{run}.meals");
    let dlq = format!("{topic}.dlq");
    let config = config(&run, &["eat"]).with_topic_layout(PARTITIONS, 1);
    let runtime = kafka_events::runtime::launch(config.clone()).await.expect("launch");

    // Valid events (every 10th one fails once and comes back through the retry topic) with the
    // poison spread among them.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.max.bytes", "1048576")
        .create()
        .expect("producer");
    let mut poisons: HashMap<(i32, i64), Poison> = HashMap::new();
    let mut pending = Vec::new();
    for v in 0..VALID {
        let id = if v % 10 == 0 { format!("flaky-{v}") } else { format!("v{v}") };
        let payload = meal(&id, 250);
        let key = format!("k{v}");
        let record: FutureRecord<'_, str, [u8]> =
            FutureRecord::to(&topic).key(key.as_str()).payload(payload.as_slice());
        pending.push(producer.send_result(record).map_err(|(e, _)| e).expect("enqueue"));
        if v % (VALID / (KINDS * EACH_POISON)) == 0 && v / (VALID / (KINDS * EACH_POISON)) < KINDS * EACH_POISON {
            let n = v / (VALID / (KINDS * EACH_POISON));
            let bad = poison(n % KINDS, n / KINDS);
            let mut headers = OwnedHeaders::new();
            for (name, value) in &bad.headers {
                headers = headers.insert(Header { key: name, value: Some(value) });
            }
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&topic).key(bad.key.as_slice()).headers(headers);
            if let Some(payload) = &bad.payload {
                record = record.payload(payload.as_slice());
            }
            let delivery = producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).expect("poison");
            poisons.insert((delivery.partition, delivery.offset), bad);
        }
    }
    for delivery in pending {
        delivery.await.expect("delivery").map_err(|(e, _)| e).expect("produced");
    }
    assert_eq!(poisons.len(), KINDS * EACH_POISON);

    wait_for(&topic, Duration::from_secs(180), |c| c.iter().filter(|c| c.succeeded).count() >= VALID).await;
    let dead = read_topic(&dlq, poisons.len());
    wait_committed(&format!("{run}-svc-main"), &topic, PARTITIONS, Duration::from_secs(60)).await;
    let metrics = runtime.metrics_text();
    let undeliverable: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("kafka_events_messages_dead_lettered_total{") && l.contains("kind=\"undeliverable\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(undeliverable, EACH_POISON as f64, "dead letters standing in for retries are counted");

    // Every valid id exactly once; every flaky one after one failure.
    let mut succeeded: BTreeMap<String, usize> = BTreeMap::new();
    for call in calls(&topic).into_iter().filter(|c| c.succeeded) {
        *succeeded.entry(call.id).or_default() += 1;
    }
    assert_eq!(succeeded.len(), VALID, "every valid id handled");
    assert!(succeeded.values().all(|n| *n == 1), "each once");

    // Every poison message dead-lettered once, with its kind; the oversized ones as stand-ins.
    assert_eq!(dead.len(), poisons.len(), "one dead letter per poison message");
    let mut seen: HashMap<(i32, i64), usize> = HashMap::new();
    for letter in &dead {
        let at = (
            header(letter, h::ORIGINAL_PARTITION).unwrap().parse::<i32>().unwrap(),
            header(letter, h::ORIGINAL_OFFSET).unwrap().parse::<i64>().unwrap(),
        );
        let bad = poisons.get(&at).unwrap_or_else(|| panic!("a dead letter for {at:?}, which is no poison"));
        *seen.entry(at).or_default() += 1;
        let name = bad.name;
        assert_eq!(header(letter, h::DLQ_ERROR_KIND).as_deref(), Some(bad.kind), "{name}");
        let reason = header(letter, h::DLQ_REASON).expect("reason");
        assert!(reason.len() <= h::MAX_REASON_BYTES, "{name}: reason of {} bytes", reason.len());
        let omitted = header(letter, h::DLQ_PAYLOAD_OMITTED);
        if bad.payload_omitted {
            let why = omitted.unwrap_or_else(|| panic!("{name}: the stand-in says why"));
            assert!(why.contains("larger than the producer or broker accepts"), "{name}: {why}");
            assert!(letter.payload().is_none(), "{name}: no value");
            assert!(header(letter, "x-bulk-0").is_none(), "{name}: none of the original headers");
            assert!(letter.key().is_none_or(|k| k.len() <= 1024), "{name}: no large key");
        } else {
            assert!(omitted.is_none(), "{name}: a full copy");
            assert_eq!(letter.payload(), bad.payload.as_deref(), "{name}: the original value");
            assert_eq!(letter.key(), Some(bad.key.as_slice()), "{name}: the original key");
        }
    }
    assert_eq!(seen.len(), poisons.len(), "every poison message dead-lettered");
    println!(
        "{VALID} valid events handled once each; {} poison messages of {KINDS} kinds dead-lettered ({} as stand-ins without payload)",
        dead.len(),
        dead.iter().filter(|l| header(l, h::DLQ_PAYLOAD_OMITTED).is_some()).count()
    );

    // A replay takes the stand-ins' payloads from the original topic. (An operator replaying
    // records this large raises the producer's limit, as here.)
    let replayed_topic = format!("{run}.replayed");
    create_topic(&replayed_topic, 1).await;
    let admin = DeadLetters::connect(&config.clone().with_producer_property("message.max.bytes", "1048576"))
        .await
        .expect("connect");
    let options = ReplayOptions { to: Some(replayed_topic.clone()), ..ReplayOptions::default() };
    let report = admin.replay(&dlq, options).await.expect("replay");
    assert_eq!(report.items.len(), poisons.len(), "every dead letter replayed");
    let replayed = read_topic(&replayed_topic, poisons.len());
    let near_limit: Vec<_> = replayed.iter().filter(|m| m.payload().is_some_and(|p| p.len() > 1_000_000)).collect();
    assert_eq!(near_limit.len(), 2 * EACH_POISON, "the near-limit values came back from the original topic");
    runtime.shutdown().await.expect("shutdown");
}

/// The dead-letter topic disappears after start-up (deleted by someone): the dead letter cannot
/// be published. The partition is held at the message and says so in health; once the topic
/// exists again, the dead letter goes out and the partition goes on.
#[kafka_handler(topic = "orphans", dlq)]
async fn orphan(meal: Meal, ctx: MessageContext) -> Result<(), HandlerError> {
    record_call(&ctx, &meal.id, true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_the_broker_refuses_for_good_holds_its_partition_visibly_until_fixed() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let run = unique("orphans");
    let topic = format!("{run}.orphans");
    let dlq = format!("{topic}.dlq");
    // librdkafka gives up on a topic missing from the metadata after this long.
    let config = config(&run, &["orphan"])
        .with_topic_layout(1, 1)
        .with_producer_property("topic.metadata.propagation.max.ms", "1000");
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("admin");
    for result in admin.delete_topics(&[&dlq], &AdminOptions::new()).await.expect("delete") {
        result.map_err(|(t, e)| format!("{t}: {e}")).expect("deleted");
    }
    let producer = common::producer();
    common::produce(&producer, &topic, "bad", b"{not json", &[], None).await;
    common::produce(&producer, &topic, "good", &meal("good", 1), &[], None).await;

    let stall = common::eventually("the partition to be reported stalled", Duration::from_secs(60), || async {
        match runtime.health().stalled.into_iter().find(|s| s.topic == topic) {
            Some(stall) => Ok(stall),
            None => Err("not stalled yet".to_string()),
        }
    })
    .await;
    println!("stalled: {} ({})", stall.reason, stall.kind);
    assert_eq!(stall.kind.as_str(), "undeliverable");
    assert_eq!(stall.offset, 0, "held at the message whose dead letter cannot be published");
    assert!(stall.reason.contains(&dlq), "{}", stall.reason);
    assert!(!runtime.health().readiness(&Config::development("x").readiness_policy(), Duration::ZERO).ready);
    let group = format!("{run}-svc-main");
    assert!(common::committed_offsets(&group, &topic, 1)[0] <= 0, "nothing committed past the held message");

    // An operator re-creates the topic: within the 30 s retry the dead letter goes out.
    create_topic(&dlq, 1).await;
    let dead = read_topic(&dlq, 1);
    assert_eq!(dead.len(), 1);
    assert_eq!(header(&dead[0], h::DLQ_ERROR_KIND).as_deref(), Some("decode"));
    wait_for(&topic, Duration::from_secs(60), |c| c.iter().any(|c| c.id == "good")).await;
    common::eventually("the stall to clear", Duration::from_secs(30), || async {
        if runtime.health().stalled.iter().any(|s| s.topic == topic) {
            Err("still stalled".to_string())
        } else {
            Ok(())
        }
    })
    .await;
    wait_committed(&group, &topic, 1, Duration::from_secs(30)).await;
    runtime.shutdown().await.expect("shutdown");
}
