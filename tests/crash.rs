//! Crash safety and graceful shutdown across processes: a consumer killed with SIGKILL
//! mid-stream loses nothing; SIGTERM drains, commits and exits cleanly.
//!
//! The consumer is this same test binary, re-run as a child process in `crash_child` mode.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use common::{
    append_line, child_tracing, committed_offsets, config, create_topic, end_offsets, eventually, handled_lines,
    produce_many, producer, spawn_child, terminate, unique, wait_lines, ChildGuard,
};
use kafka_events::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

const EVENTS: usize = 2000;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Tick {
    #[validate(length(min = 1))]
    id: String,
}

/// Records `id partition offset` in the file named by `CRASH_OUT`, after a little work.
#[kafka_handler(topic = "crash", dlq)]
async fn crash_record(event: Tick, ctx: MessageContext) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    append_line("CRASH_OUT", &event.id, ctx.partition(), ctx.offset())?;
    Ok(())
}

/// Messages one partition may hold in the concurrent crash test.
const PARALLEL_PARTITION_CAP: usize = 100;

/// Like `crash_record`, 50 at a time per partition; the message at offset `CRASH_STUCK_OFFSET`
/// (in every partition) never finishes, as if its call to another service hung.
#[kafka_handler(topic = "crash_parallel", concurrency = 50, dlq)]
async fn crash_parallel(event: Tick, ctx: MessageContext) -> Result<(), HandlerError> {
    let stuck: Option<i64> = std::env::var("CRASH_STUCK_OFFSET").ok().and_then(|v| v.parse().ok());
    if stuck == Some(ctx.offset()) {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(Duration::from_micros(fastrand::u64(1000..10_000))).await;
    append_line("CRASH_OUT", &event.id, ctx.partition(), ctx.offset())?;
    Ok(())
}

/// The child process: runs the runtime (handler `CRASH_HANDLER`) until SIGTERM or SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the crash tests as a child process"]
async fn crash_child() {
    let Ok(run) = std::env::var("CRASH_RUN") else { return };
    child_tracing();
    let handler = std::env::var("CRASH_HANDLER").unwrap_or_else(|_| "crash_record".into());
    let mut config = config(&run, &[&handler]);
    if handler == "crash_parallel" {
        config = config.with_partition_buffer(PARALLEL_PARTITION_CAP);
    }
    kafka_events::runtime::start(config).await.expect("runtime");
}

fn spawn(run: &str, out: &Path) -> std::process::Child {
    spawn_child("crash_child", &[("CRASH_RUN", run), ("CRASH_OUT", out.to_str().unwrap())])
}

/// After the first consumer was killed: waits until the restarted `second` consumer has handled
/// every event the first did not, stops it with SIGTERM (drain, commit, leave the group, exit 0)
/// and returns its lines, asserting that no event was lost.
async fn finish_after_restart(
    second: std::process::Child,
    first_out: &Path,
    second_out: &Path,
) -> Vec<(String, i32, i64)> {
    let mut second = ChildGuard(Some(second));
    let (first_out, second_out) = (first_out.to_path_buf(), second_out.to_path_buf());
    wait_lines(&[&first_out, &second_out], "every event to be handled", |lines| {
        lines.iter().map(|(id, _, _)| id).collect::<BTreeSet<_>>().len() == EVENTS
    })
    .await;
    let exit = terminate(second.0.take().unwrap()).await;
    assert!(exit.success(), "the runtime exits cleanly on SIGTERM: {exit:?}");
    let (before, after) = (handled_lines(&first_out), handled_lines(&second_out));
    let ids: BTreeSet<&String> = before.iter().chain(&after).map(|(id, _, _)| id).collect();
    assert_eq!(ids.len(), EVENTS, "no event lost");
    after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumer_loses_nothing_and_sigterm_drains() {
    let run = unique("crash");
    let topic = format!("{run}.crash");
    create_topic(&topic, 3).await;
    create_topic(&format!("{topic}.dlq"), 3).await;
    let events: Vec<(String, Vec<u8>)> =
        (0..EVENTS).map(|i| (format!("k{i}"), serde_json::to_vec(&Tick { id: format!("t{i}") }).unwrap())).collect();
    produce_many(&producer(), &topic, &events).await;
    let dir = std::env::temp_dir();
    let first_out = dir.join(format!("{run}-first.log"));
    let second_out = dir.join(format!("{run}-second.log"));

    let mut first = ChildGuard(Some(spawn(&run, &first_out)));
    wait_lines(&[&first_out], "the first consumer to handle 400 events", |lines| lines.len() >= 400).await;
    let mut killed = first.0.take().unwrap();
    killed.kill().expect("SIGKILL");
    killed.wait().expect("reap");
    let before_kill = handled_lines(&first_out);
    assert!(before_kill.len() < EVENTS, "killed mid-stream ({} of {EVENTS} handled)", before_kill.len());

    let after = finish_after_restart(spawn(&run, &second_out), &first_out, &second_out).await;
    let mut per_child: HashMap<&String, usize> = HashMap::new();
    for (id, _, _) in &after {
        *per_child.entry(id).or_default() += 1;
    }
    assert!(per_child.values().all(|&n| n == 1), "the second consumer handled each event once");
    // Redelivery starts at the last committed offset: per partition, the second consumer's first
    // offset is at most one past the first consumer's last.
    for partition in 0..3 {
        let last_first = before_kill.iter().filter(|l| l.1 == partition).map(|l| l.2).max().unwrap_or(-1);
        let first_second = after.iter().filter(|l| l.1 == partition).map(|l| l.2).min();
        if let Some(first_second) = first_second {
            assert!(
                first_second <= last_first + 1,
                "partition {partition}: gap between {last_first} and {first_second}"
            );
        }
    }
    let redelivered = before_kill.iter().filter(|(id, _, _)| per_child.contains_key(id)).count();
    println!("handled before SIGKILL: {}, redelivered after restart: {redelivered}", before_kill.len());
    let group = format!("{run}-svc-main");
    assert_eq!(committed_offsets(&group, &topic, 3), end_offsets(&topic, 3), "SIGTERM committed everything");
    let _ = std::fs::remove_file(first_out);
    let _ = std::fs::remove_file(second_out);
}

/// With `concurrency = 50`, messages finish out of order; only the contiguous finished prefix is
/// committed. A message that never finishes holds each partition's commit at its offset while
/// the lane runs ahead up to its cap; SIGKILL then: the restart re-handles exactly the messages
/// finished past the stuck one — never more than the partition's cap — and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_concurrent_consumer_replays_at_most_its_held_window() {
    const STUCK: i64 = 200;
    let run = unique("crashpar");
    let topic = format!("{run}.crash_parallel");
    create_topic(&topic, 3).await;
    create_topic(&format!("{topic}.dlq"), 3).await;
    let events: Vec<(String, Vec<u8>)> =
        (0..EVENTS).map(|i| (format!("k{i}"), serde_json::to_vec(&Tick { id: format!("p{i}") }).unwrap())).collect();
    let acks = produce_many(&producer(), &topic, &events).await;
    assert!((0..3).all(|p| acks.iter().filter(|a| a.0 == p).count() as i64 > STUCK + PARALLEL_PARTITION_CAP as i64));
    let dir = std::env::temp_dir();
    let first_out = dir.join(format!("{run}-first.log"));
    let second_out = dir.join(format!("{run}-second.log"));
    let env = |out: &Path, stuck: &str| {
        spawn_child(
            "crash_child",
            &[
                ("CRASH_RUN", run.as_str()),
                ("CRASH_OUT", out.to_str().unwrap()),
                ("CRASH_HANDLER", "crash_parallel"),
                ("CRASH_STUCK_OFFSET", stuck),
            ],
        )
    };

    let mut first = ChildGuard(Some(env(&first_out, &STUCK.to_string())));
    let group = format!("{run}-svc-main");
    // Committed offsets are the broker's state, polled: each partition's commit reaches the
    // stuck message and stays there while the lane runs ahead.
    eventually("the first consumer to reach the stuck messages", Duration::from_secs(120), || async {
        let past_stuck = handled_lines(&first_out).iter().filter(|l| l.2 > STUCK).count();
        let committed = committed_offsets(&group, &topic, 3);
        if committed == [STUCK; 3] && past_stuck >= 150 {
            Ok(())
        } else {
            Err(format!("committed {committed:?}, {past_stuck} handled past the stuck offsets"))
        }
    })
    .await;
    let mut killed = first.0.take().unwrap();
    killed.kill().expect("SIGKILL");
    killed.wait().expect("reap");
    let before_kill = handled_lines(&first_out);
    assert_eq!(committed_offsets(&group, &topic, 3), [STUCK; 3], "nothing committed past the stuck message");
    for partition in 0..3 {
        let furthest = before_kill.iter().filter(|l| l.1 == partition).map(|l| l.2).max().unwrap();
        assert!(
            furthest < STUCK + PARALLEL_PARTITION_CAP as i64,
            "partition {partition}: the lane ran ahead to offset {furthest}, past its cap of {PARALLEL_PARTITION_CAP} held messages"
        );
    }

    let after = finish_after_restart(env(&second_out, "-1"), &first_out, &second_out).await;
    let second_ids: BTreeSet<&String> = after.iter().map(|(id, _, _)| id).collect();
    assert_eq!(second_ids.len(), after.len(), "the second consumer handled each event once");
    let replayed: BTreeSet<&String> = before_kill.iter().filter(|l| second_ids.contains(&l.0)).map(|l| &l.0).collect();
    let finished_past_commit: BTreeSet<&String> = before_kill.iter().filter(|l| l.2 > STUCK).map(|l| &l.0).collect();
    println!(
        "handled before SIGKILL: {} ({} past the stuck offsets), replayed after restart: {}",
        before_kill.len(),
        finished_past_commit.len(),
        replayed.len()
    );
    assert_eq!(replayed, finished_past_commit, "exactly the messages finished past the commit are replayed");
    assert!(replayed.len() < 3 * PARALLEL_PARTITION_CAP, "duplicates stay within the held cap");
    assert_eq!(committed_offsets(&group, &topic, 3), end_offsets(&topic, 3), "SIGTERM committed everything");
    let _ = std::fs::remove_file(first_out);
    let _ = std::fs::remove_file(second_out);
}
