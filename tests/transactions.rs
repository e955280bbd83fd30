//! Exactly-once consume → produce: a `transactional` handler's output and its input offset are
//! committed in one Kafka transaction.
//!
//! - Apache Kafka (`KAFKA_BROKERS`): what a `read_committed` consumer sees — no output of a
//!   failed handling, the output of a successful one together with its offset, never before —
//!   and zombie fencing: an instance frozen with its transaction open loses its partition to a
//!   second one, whose producer (same `transactional.id`) fences it; the zombie's output never
//!   becomes visible, even after it wakes up and tries to commit.
//! - librdkafka's mock cluster, for what the real broker cannot be made to do: a failed
//!   `EndTxn` (injected) makes the handling run again in a new transaction. The mock accepts
//!   transactions without their effects (no markers; the last stable offset is the high
//!   watermark), so it proves only the runtime's side.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{
    brokers, calls, committed_offsets, committed_offsets_at, config, create_topic, eventually, header, key,
    producer_for, read_to_end, record_call, unique, wait_for,
};
use kafka_events::names::header as h;
use kafka_events::prelude::*;
use kafka_events::PublishOptions;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Order {
    #[validate(length(min = 1))]
    id: String,
    fail: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Invoice {
    order: String,
}

/// Released by the test: the handling of order `o5` waits on it after publishing its invoice.
static HOLD: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Publishes an invoice for the order through the transactional publisher; then fails when the
/// order says so (after publishing: the invoice must never become visible).
#[kafka_handler(topic = "orders", transactional, retry(max = 3, initial = "10ms"), dlq)]
async fn invoice_order(event: Order, ctx: MessageContext) -> Result<(), HandlerError> {
    let publisher = ctx.publisher().ok_or_else(|| HandlerError::permanent("no publisher in the context"))?;
    let invoice = Invoice { order: event.id.clone() };
    publisher.publish_with("invoices", &invoice, PublishOptions::new().key(&event.id)).await?;
    record_call(&ctx, &event.id, !event.fail);
    if event.id == "o5" {
        HOLD.notified().await;
    }
    if event.fail {
        return Err(HandlerError::permanent(format!("order {} cannot be invoiced", event.id)));
    }
    Ok(())
}

fn ids(messages: &[rdkafka::message::OwnedMessage]) -> Vec<String> {
    messages.iter().map(key).collect()
}

/// Produces orders `<prefix>0..<prefix>{n-1}` in order; those in `failing` say `fail`.
async fn produce_orders(bootstrap: &str, topic: &str, prefix: &str, n: usize, failing: &[usize]) {
    let producer = producer_for(bootstrap);
    for i in 0..n {
        let order = Order { id: format!("{prefix}{i}"), fail: failing.contains(&i) };
        let payload = serde_json::to_vec(&order).unwrap();
        let record = FutureRecord::to(topic).key(&order.id).payload(&payload);
        producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e).expect("produce");
    }
}

// ---------------------------------------------------------------- the mock cluster

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_handling_is_one_transaction_and_a_failed_commit_runs_it_again() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let run = unique("txnmock");
    let (orders, invoices, dlq) = (format!("{run}.orders"), format!("{run}.invoices"), format!("{run}.orders.dlq"));
    for topic in [&orders, &invoices, &dlq] {
        cluster.create_topic(topic, 1, 1).expect("create topic");
    }
    // The first EndTxn (the commit of m0's transaction) fails fatally: the producer is
    // unusable and the handling counts as failed.
    cluster.request_errors(RDKafkaApiKey::EndTxn, &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_TXN_STATE]);
    let config = Config::development(format!("{run}-svc"))
        .with_brokers(bootstrap.clone())
        .with_topic_prefix(format!("{run}."))
        .with_handlers(["invoice_order"])
        .with_topic_provisioning(false)
        .with_shutdown_timeout(Duration::from_secs(10));
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    produce_orders(&bootstrap, &orders, "m", 6, &[3]).await;
    wait_for(&orders, Duration::from_secs(60), |c| c.iter().any(|c| c.id == "m5")).await;
    let dead = read_to_end(&bootstrap, &dlq, 1, "read_committed");
    runtime.shutdown().await.expect("shutdown");

    let calls = calls(&orders);
    let m0: Vec<u32> = calls.iter().filter(|c| c.id == "m0").map(|c| c.attempt).collect();
    assert_eq!(m0, [1, 2], "m0 ran again after its commit failed, in a new transaction");
    let once: Vec<&str> = calls.iter().filter(|c| c.id != "m0").map(|c| c.id.as_str()).collect();
    assert_eq!(once, ["m1", "m2", "m3", "m4", "m5"], "the others ran once each, in order");
    // The mock keeps every record (it filters nothing): one invoice per attempt.
    let written = ids(&read_to_end(&bootstrap, &invoices, 1, "read_uncommitted"));
    assert_eq!(written, ["m0", "m0", "m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(ids(&dead), ["m3"], "the failed order is dead-lettered");
    assert_eq!(header(&dead[0], h::DLQ_ERROR_KIND).as_deref(), Some("permanent"));
    assert_eq!(committed_offsets_at(&bootstrap, &format!("{run}-svc-main"), &orders, 1), [6]);
}

// ---------------------------------------------------------------- a broker with transactions

/// Whether the broker at `bootstrap` commits a transaction; `Err` says why not.
async fn broker_commits_transactions(bootstrap: &str, topic: &str) -> Result<(), rdkafka::error::KafkaError> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", unique("probe"))
        .create()
        .expect("producer");
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout)?;
    producer.begin_transaction()?;
    producer.send(FutureRecord::to(topic).key("probe").payload("probe"), timeout).await.map_err(|(e, _)| e)?;
    producer.commit_transaction(timeout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_consumers_see_output_with_its_offset_and_never_a_failed_one() {
    let run = unique("txn");
    let (orders, invoices) = (format!("{run}.orders"), format!("{run}.invoices"));
    create_topic(&invoices, 1).await;
    let bootstrap = brokers();
    let probe = format!("{run}.probe");
    create_topic(&probe, 1).await;
    if let Err(error) = broker_commits_transactions(&bootstrap, &probe).await {
        panic!("the broker at {bootstrap} cannot commit a transaction: {error}");
    }
    create_topic(&orders, 1).await;
    create_topic(&format!("{orders}.dlq"), 1).await;
    // The regular offset commit runs once an hour: offsets that reach the broker sooner were
    // committed by a transaction.
    let config = config(&run, &["invoice_order"]).with_commit_interval(Duration::from_secs(3600));
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    let group = format!("{run}-svc-main");
    produce_orders(&bootstrap, &orders, "o", 10, &[3, 7]).await;

    // o5's invoice is published and its handler holds: its transaction is open.
    wait_for(&orders, Duration::from_secs(60), |c| c.iter().any(|c| c.id == "o5")).await;
    let visible = ids(&read_to_end(&bootstrap, &invoices, 1, "read_committed"));
    assert_eq!(visible, ["o0", "o1", "o2", "o4"], "only committed transactions' invoices are visible");
    assert_eq!(committed_offsets(&group, &orders, 1), [5], "and the input offset stops before o5 too");
    let written = ids(&read_to_end(&bootstrap, &invoices, 1, "read_uncommitted"));
    assert!(written.contains(&"o5".to_string()), "o5's invoice is written, uncommitted: {written:?}");

    HOLD.notify_one();
    wait_for(&orders, Duration::from_secs(60), |c| c.len() >= 10).await;
    eventually("the last transaction to commit offset 10", Duration::from_secs(60), || async {
        match committed_offsets(&group, &orders, 1) {
            offsets if offsets == [10] => Ok(()),
            offsets => Err(format!("committed {offsets:?}")),
        }
    })
    .await;
    let visible = ids(&read_to_end(&bootstrap, &invoices, 1, "read_committed"));
    let written = ids(&read_to_end(&bootstrap, &invoices, 1, "read_uncommitted"));
    let dead = read_to_end(&bootstrap, &format!("{orders}.dlq"), 1, "read_committed");
    runtime.shutdown().await.expect("shutdown");

    assert_eq!(
        visible,
        ["o0", "o1", "o2", "o4", "o5", "o6", "o8", "o9"],
        "each successful order's invoice, once, in order; none of the failed ones"
    );
    let written: BTreeSet<String> = written.into_iter().collect();
    assert!(written.contains("o3") && written.contains("o7"), "the failed orders' invoices were written, then aborted");
    assert_eq!(ids(&dead), ["o3", "o7"], "the failed orders are dead-lettered");
    assert_eq!(calls(&orders).len(), 10, "each order handled once");
}

// ---------------------------------------------------------------- zombie fencing

#[derive(Debug, Serialize, Deserialize)]
struct Receipt {
    order: String,
    /// Which instance published it: `zombie` (the child) or `successor` (this process).
    by: String,
}

/// Publishes a receipt naming this instance, records the call, then — in the child started as
/// the zombie — waits 3 s with the transaction open: the test freezes the child meanwhile.
#[kafka_handler(topic = "zombie_orders", transactional, retry(max = 3, initial = "10ms"), dlq)]
async fn receipt_once(event: Order, ctx: MessageContext) -> Result<(), HandlerError> {
    let publisher = ctx.publisher().ok_or_else(|| HandlerError::permanent("no publisher in the context"))?;
    let by = std::env::var("ZOMBIE_OUT").map_or("successor", |_| "zombie").to_string();
    publisher
        .publish_with(
            "receipts",
            &Receipt { order: event.id.clone(), by: by.clone() },
            PublishOptions::new().key(&event.id),
        )
        .await?;
    if by == "zombie" {
        common::append_line("ZOMBIE_OUT", &event.id, ctx.partition(), ctx.offset())?;
        tokio::time::sleep(Duration::from_secs(3)).await;
    } else {
        record_call(&ctx, &event.id, true);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by `a_frozen_instance_is_fenced_and_its_output_never_becomes_visible` as a child process"]
async fn zombie_child() {
    let Ok(run) = std::env::var("ZOMBIE_RUN") else { return };
    common::child_tracing();
    kafka_events::runtime::start(config(&run, &["receipt_once"])).await.expect("runtime");
}

fn receipts(messages: &[rdkafka::message::OwnedMessage]) -> Vec<(String, String)> {
    messages
        .iter()
        .map(|m| {
            let receipt: Receipt = serde_json::from_slice(rdkafka::Message::payload(m).unwrap()).unwrap();
            (receipt.order, receipt.by)
        })
        .collect()
}

fn signal(child: &std::process::Child, signal: &str) {
    let status = std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().expect("kill");
    assert!(status.success(), "kill {signal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_instance_is_fenced_and_its_output_never_becomes_visible() {
    let run = unique("zombie");
    let (orders, receipts_topic) = (format!("{run}.zombie_orders"), format!("{run}.receipts"));
    for topic in [&orders, &receipts_topic, &format!("{orders}.dlq")] {
        create_topic(topic, 1).await;
    }
    let bootstrap = brokers();
    let out = std::env::temp_dir().join(format!("{run}.zombie"));
    let log = std::env::temp_dir().join(format!("{run}.zombie.stderr"));
    let mut zombie = common::ChildGuard(Some(common::spawn_child_with_stderr(
        "zombie_child",
        &[("ZOMBIE_RUN", &run), ("ZOMBIE_OUT", out.to_str().unwrap()), ("KAFKA_BROKERS", &bootstrap)],
        std::fs::File::create(&log).expect("log file").into(),
    )));
    produce_orders(&bootstrap, &orders, "z", 1, &[]).await;
    // The zombie has published its receipt inside an open transaction: freeze it there.
    common::wait_lines(&[&out], "the first instance to handle z0", |lines| !lines.is_empty()).await;
    signal(zombie.0.as_ref().unwrap(), "-STOP");

    // A second instance joins; once the frozen one's session (6 s) expires, it owns the
    // partition, initialises the same transactional.id (fencing the zombie and aborting its
    // open transaction), handles z0 again and commits.
    let runtime = kafka_events::runtime::launch(config(&run, &["receipt_once"])).await.expect("launch");
    wait_for(&orders, Duration::from_secs(60), |c| c.iter().any(|c| c.id == "z0")).await;
    let group = format!("{run}-svc-main");
    eventually("the successor to commit z0", Duration::from_secs(60), || async {
        match committed_offsets(&group, &orders, 1) {
            offsets if offsets == [1] => Ok(()),
            offsets => Err(format!("committed {offsets:?}")),
        }
    })
    .await;

    // The zombie wakes up, finishes its handler and tries to commit: it learns it was fenced and
    // leaves the message to the new owner, without initialising its transactional id again
    // (which would fence the successor in turn).
    signal(zombie.0.as_ref().unwrap(), "-CONT");
    eventually("the zombie to notice it was fenced", Duration::from_secs(60), || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("fenced: waiting for the rebalance") {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await;
    let exit = common::terminate(zombie.0.take().unwrap()).await;
    println!("the zombie exited: {exit:?}");
    let zombie_attempts = common::handled_lines(&out).len();

    // The successor goes on working.
    produce_orders(&bootstrap, &orders, "y", 1, &[]).await;
    wait_for(&orders, Duration::from_secs(60), |c| c.iter().any(|c| c.id == "y0")).await;
    eventually("the successor to commit y0", Duration::from_secs(60), || async {
        match committed_offsets(&group, &orders, 1) {
            offsets if offsets == [2] => Ok(()),
            offsets => Err(format!("committed {offsets:?}")),
        }
    })
    .await;
    let visible = receipts(&read_to_end(&bootstrap, &receipts_topic, 1, "read_committed"));
    let written = receipts(&read_to_end(&bootstrap, &receipts_topic, 1, "read_uncommitted"));
    runtime.shutdown().await.expect("shutdown");
    let zombie_log = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&log);

    println!("zombie attempts: {zombie_attempts}; written: {written:?}; visible: {visible:?}");
    let successor = |order: &str| (order.to_string(), "successor".to_string());
    assert_eq!(visible, [successor("z0"), successor("y0")], "only the successor's receipts are visible, once each");
    assert!(
        written.contains(&("z0".to_string(), "zombie".to_string())),
        "the zombie's receipt was written, then aborted: {written:?}"
    );
    let successor_calls: Vec<String> = calls(&orders).into_iter().map(|c| c.id).collect();
    assert_eq!(successor_calls, ["z0", "y0"], "the successor handled each order once: it was never fenced back");
    assert_eq!(zombie_attempts, 1, "the zombie did not try again after it was fenced; its log: {zombie_log}");
    assert!(!zombie_log.contains("dead-lettering"), "nor did it dead-letter the message: {zombie_log}");
}
