//! Scale-out: three processes of one service share `${SERVICE_NAME}-main` over a 6-partition
//! topic; stopping one (SIGTERM) hands its partitions to the others. Every id is handled;
//! revoked partitions drain and commit first, so an id is handled twice only where the broker
//! refused that commit — and then only below the refused offset, as the instance logged it.
//!
//! The broker is librdkafka's mock cluster, hosted by this test process on a loopback TCP port
//! and shared by the three child processes. Tansu 0.6 is not used here: in cooperative
//! rebalances it lets two members own one partition at once (measured: 463–542 of 3,000 ids
//! handled twice, all from one partition consumed in full by two members). Set
//! `SCALE_TEST_BROKERS=host:port` to run this test against a real Kafka cluster instead.
//!
//! Why refused commits are accounted for rather than forbidden: the mock cluster (librdkafka
//! 2.12.1, `rdkafka_mock_cgrp.c`) refuses every OffsetCommit with REBALANCE_IN_PROGRESS as soon as
//! any member has sent JoinGroup, whereas Apache Kafka accepts a commit of the current generation
//! while the group prepares a rebalance. When two members revoke in one cooperative round, the
//! one still draining when the other rejoins has its revocation commit refused on the mock, and
//! the next owner re-reads what it had handled since its last commit. The test reads each
//! instance's log for those refusals; a duplicate outside a refused range fails it.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    append_line, child_tracing, config, create_topic_at, handled_lines, produce_many, producer_for,
    spawn_child_with_stderr, terminate, unique, wait_lines, ChildGuard,
};
use kafka_events::embedded::EmbeddedBroker;
use kafka_events::prelude::*;
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
    // Topics are created by the parent (the mock cluster has no CreateTopics).
    let config = config(&run, &["scale_record"]).with_topic_layout(6, 1).with_topic_provisioning(false);
    kafka_events::runtime::start(config).await.expect("runtime");
}

/// Starts one instance; its log (warnings and errors) goes to `log`.
fn spawn(run: &str, brokers: &str, out: &Path, log: &Path) -> ChildGuard {
    let envs =
        [("SCALE_RUN", run), ("SCALE_OUT", out.to_str().unwrap()), ("KAFKA_BROKERS", brokers), ("RUST_LOG", "warn")];
    let stderr = std::fs::File::create(log).expect("child log file");
    ChildGuard(Some(spawn_child_with_stderr("scale_child", &envs, stderr.into())))
}

/// An id's record and the instances that handled it.
#[derive(Debug)]
struct Handled {
    partition: i32,
    offset: i64,
    by: Vec<usize>,
}

/// Revocation commits the broker refused, from an instance's log: `(partition, offset)` for each
/// partition whose finished messages below `offset` stayed uncommitted.
fn refused_revocation_commits(log: &Path, topic: &str) -> Vec<(i32, i64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut refused = Vec::new();
    for line in text.lines().filter(|l| l.contains("commit on revocation failed")) {
        let needle = format!("{topic}[");
        for (at, _) in line.match_indices(&needle) {
            let rest = &line[at + needle.len()..];
            let parsed = rest.split_once("]@").and_then(|(partition, tail)| {
                let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
                Some((partition.parse().ok()?, digits.parse().ok()?))
            });
            refused.push(parsed.unwrap_or_else(|| panic!("unreadable refused commit in {log:?}: {line}")));
        }
    }
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_the_main_group_and_hand_over_on_sigterm() {
    let run = unique("scale");
    let topic = format!("{run}.scale");
    let embedded;
    let brokers = match std::env::var("SCALE_TEST_BROKERS") {
        Ok(brokers) => {
            create_topic_at(&brokers, &topic, 6).await;
            create_topic_at(&brokers, &format!("{topic}.dlq"), 6).await;
            brokers
        }
        Err(_) => {
            embedded = EmbeddedBroker::start().expect("mock cluster");
            embedded.create_topic(&topic, 6).unwrap();
            embedded.create_topic(&format!("{topic}.dlq"), 6).unwrap();
            embedded.bootstrap_servers().to_string()
        }
    };
    let events: Vec<(String, Vec<u8>)> =
        (0..EVENTS).map(|i| (format!("k{i}"), serde_json::to_vec(&Tick { id: format!("t{i}") }).unwrap())).collect();
    produce_many(&producer_for(&brokers), &topic, &events).await;

    let outs: Vec<PathBuf> = (0..3).map(|i| std::env::temp_dir().join(format!("{run}-{i}.log"))).collect();
    let logs: Vec<PathBuf> = (0..3).map(|i| std::env::temp_dir().join(format!("{run}-{i}.stderr"))).collect();
    let mut children: Vec<ChildGuard> = Vec::new();
    for (out, log) in outs.iter().zip(&logs) {
        children.push(spawn(&run, &brokers, out, log));
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
    produce_many(&producer_for(&brokers), &topic, &more).await;

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
    let refused: Vec<Vec<(i32, i64)>> = logs.iter().map(|log| refused_revocation_commits(log, &topic)).collect();
    let twice: Vec<(&str, &Handled)> =
        handled_by.iter().filter(|(_, h)| h.by.len() > 1).map(|(id, h)| (*id, h)).collect();
    // A duplicate is explained when an instance that handled it had its revocation commit of
    // that partition refused at an offset past the record.
    let unexplained: Vec<&(&str, &Handled)> = twice
        .iter()
        .filter(|(_, h)| !h.by.iter().any(|i| refused[*i].iter().any(|(p, o)| *p == h.partition && *o > h.offset)))
        .collect();
    println!(
        "handled per instance: {:?}; partitions of the stopped one: {stopped_partitions:?}; handled twice: {} \
         ({} below a revocation commit the broker refused); refused revocation commits per instance: {refused:?}",
        per_instance.iter().map(Vec::len).collect::<Vec<_>>(),
        twice.len(),
        twice.len() - unexplained.len(),
    );
    assert!(
        unexplained.is_empty(),
        "revoked partitions drain and commit before they move, so no id is handled twice unless the broker \
         refused that commit: handled twice with no refused commit to explain it: {unexplained:?}; logs: {:?}",
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
