//! Scale-out: three processes of one service share `${SERVICE_NAME}-main` over a 6-partition
//! topic; stopping one (SIGTERM) hands its partitions to the others. Every id is handled, and
//! none twice: revoked partitions drain and commit before they move. Run once with each consumer
//! group protocol Apache Kafka 4 offers: `classic` (cooperative-sticky, the default) and
//! `consumer` (KIP-848, the broker assigns).
//!
//! (Until the suite ran on Apache Kafka this test ran on librdkafka's mock cluster, which refuses
//! every offset commit once any member rejoins, so revocation commits could be refused and
//! duplicates had to be accounted for. Kafka accepts a commit of the current generation while the
//! group rebalances: no duplicate is allowed here.)

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    append_line, child_tracing, config, create_topic, handled_lines, produce_many, producer, spawn_child_with_stderr,
    terminate, unique, wait_lines, ChildGuard,
};
use kafka_events::prelude::*;
use kafka_events::GroupProtocol;
use serde::{Deserialize, Serialize};
use validator::Validate;

const EVENTS: usize = 3000;
/// Produced after one instance was stopped.
const AFTER_STOP: usize = 600;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Tick {
    #[validate(length(min = 1))]
    id: String,
}

#[kafka_handler(topic = "scale", retry(max = 1, mode = "in_place"), dlq)]
async fn scale_record(event: Tick, ctx: MessageContext) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(3)).await;
    append_line("SCALE_OUT", &event.id, ctx.partition(), ctx.offset())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by `three_instances_share_the_main_group_and_hand_over_on_sigterm` as a child process"]
async fn scale_child() {
    let Ok(run) = std::env::var("SCALE_RUN") else { return };
    child_tracing();
    let protocol = match std::env::var("SCALE_GROUP_PROTOCOL").as_deref() {
        Ok("consumer") => GroupProtocol::Consumer,
        _ => GroupProtocol::Classic,
    };
    // Topics are created by the parent.
    let config = config(&run, &["scale_record"])
        .with_topic_layout(6, 1)
        .with_topic_provisioning(false)
        .with_group_protocol(protocol);
    kafka_events::runtime::start(config).await.expect("runtime");
}

/// Starts one instance; its log (warnings and errors) goes to `log`.
fn spawn(run: &str, protocol: &str, out: &Path, log: &Path) -> ChildGuard {
    let envs = [
        ("SCALE_RUN", run),
        ("SCALE_OUT", out.to_str().unwrap()),
        ("SCALE_GROUP_PROTOCOL", protocol),
        ("RUST_LOG", "warn"),
    ];
    let stderr = std::fs::File::create(log).expect("child log file");
    ChildGuard(Some(spawn_child_with_stderr("scale_child", &envs, stderr.into())))
}

/// An id's record and the instances that handled it (printed when an id is handled twice).
#[derive(Debug)]
#[allow(dead_code)]
struct Handled {
    partition: i32,
    offset: i64,
    by: Vec<usize>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_the_main_group_and_hand_over_on_sigterm() {
    scale_out("classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_hand_over_with_the_kip_848_consumer_group_protocol() {
    scale_out("consumer").await;
}

async fn scale_out(protocol: &str) {
    let run = unique(&format!("scale{protocol}"));
    let topic = format!("{run}.scale");
    create_topic(&topic, 6).await;
    create_topic(&format!("{topic}.dlq"), 6).await;
    let events: Vec<(String, Vec<u8>)> =
        (0..EVENTS).map(|i| (format!("k{i}"), serde_json::to_vec(&Tick { id: format!("t{i}") }).unwrap())).collect();
    produce_many(&producer(), &topic, &events).await;

    let outs: Vec<PathBuf> = (0..3).map(|i| std::env::temp_dir().join(format!("{run}-{i}.log"))).collect();
    let logs: Vec<PathBuf> = (0..3).map(|i| std::env::temp_dir().join(format!("{run}-{i}.stderr"))).collect();
    let mut children: Vec<ChildGuard> = Vec::new();
    for (out, log) in outs.iter().zip(&logs) {
        children.push(spawn(&run, protocol, out, log));
    }
    // All three get partitions and work.
    for out in &outs {
        wait_lines(&[out], "every instance to handle events", |lines| !lines.is_empty()).await;
    }
    let before_stop: Vec<Vec<(String, i32, i64)>> = outs.iter().map(|o| handled_lines(o)).collect();

    let exit = terminate(children[0].0.take().unwrap()).await;
    assert!(exit.success(), "the stopped instance exits cleanly: {exit:?}");
    let stopped_partitions: BTreeSet<i32> = handled_lines(&outs[0]).iter().map(|l| l.1).collect();
    // More events after the stop: those on the stopped instance's partitions can only be handled
    // if the others took those partitions over.
    let more: Vec<(String, Vec<u8>)> = (EVENTS..EVENTS + AFTER_STOP)
        .map(|i| (format!("k{i}"), serde_json::to_vec(&Tick { id: format!("t{i}") }).unwrap()))
        .collect();
    produce_many(&producer(), &topic, &more).await;

    let paths: Vec<&PathBuf> = outs.iter().collect();
    wait_lines(&paths, "every event to be handled", |lines| {
        lines.iter().map(|l| &l.0).collect::<BTreeSet<_>>().len() == EVENTS + AFTER_STOP
    })
    .await;
    for child in &mut children[1..] {
        let exit = terminate(child.0.take().unwrap()).await;
        assert!(exit.success());
    }

    let per_instance: Vec<Vec<(String, i32, i64)>> = outs.iter().map(|o| handled_lines(o)).collect();
    // Where each id was handled: its record and which instances handled it.
    let mut handled_by: HashMap<&str, Handled> = HashMap::new();
    for (instance, lines) in per_instance.iter().enumerate() {
        for (id, partition, offset) in lines {
            let entry = handled_by.entry(id.as_str());
            entry.or_insert(Handled { partition: *partition, offset: *offset, by: Vec::new() }).by.push(instance);
        }
    }
    assert_eq!(handled_by.len(), EVENTS + AFTER_STOP, "every id handled");
    let twice: Vec<(&str, &Handled)> =
        handled_by.iter().filter(|(_, h)| h.by.len() > 1).map(|(id, h)| (*id, h)).collect();
    println!(
        "{protocol}: handled per instance: {:?}; partitions of the stopped one: {stopped_partitions:?}; handled twice: {}",
        per_instance.iter().map(Vec::len).collect::<Vec<_>>(),
        twice.len(),
    );
    assert!(
        twice.is_empty(),
        "revoked partitions drain and commit before they move, so no id is handled twice: {twice:?}; logs: {:?}",
        logs.iter().map(|l| std::fs::read_to_string(l).unwrap_or_default()).collect::<Vec<_>>()
    );
    let partitions_before: Vec<BTreeSet<i32>> =
        before_stop.iter().map(|lines| lines.iter().map(|l| l.1).collect()).collect();
    assert!(
        partitions_before.iter().all(|p| !p.is_empty()),
        "all three instances had partitions: {partitions_before:?}"
    );
    let moved: BTreeSet<i32> =
        per_instance[1..].iter().flatten().map(|l| l.1).filter(|p| stopped_partitions.contains(p)).collect();
    assert!(!moved.is_empty(), "the stopped instance's partitions were taken over");
    for file in outs.iter().chain(&logs) {
        let _ = std::fs::remove_file(file);
    }
}
