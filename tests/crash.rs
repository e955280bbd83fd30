//! Crash safety and graceful shutdown across processes: a consumer killed with SIGKILL
//! mid-stream loses nothing; SIGTERM drains, commits and exits cleanly.
//!
//! The consumer is this same test binary, re-run as a child process in `crash_child` mode.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{committed_offsets, config, create_topic, end_offsets, produce_many, unbatched_producer, unique, ChildGuard};
use kafka_events::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

const EVENTS: usize = 2000;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Tick {
    #[validate(length(min = 1))]
    id: String,
}

/// Appends `id partition offset` to the file named by `CRASH_OUT`, after a little work.
#[kafka_handler(topic = "crash", dlq)]
async fn crash_record(event: Tick, ctx: MessageContext) -> Result<(), HandlerError> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    let path = std::env::var("CRASH_OUT").map_err(HandlerError::permanent)?;
    let line = format!("{} {} {}\n", event.id, ctx.partition(), ctx.offset());
    // One write of a short line to an O_APPEND file: lanes running at once never interleave.
    std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(line.as_bytes())?;
    Ok(())
}

/// The child process: runs the runtime until SIGTERM (or until it is killed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by `a_killed_consumer_loses_nothing_and_sigterm_drains` as a child process"]
async fn crash_child() {
    let Ok(run) = std::env::var("CRASH_RUN") else { return };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
    let mut config = config(&run, &["crash_record"]);
    if let Ok(debug) = std::env::var("CRASH_DEBUG") {
        config = config.with_consumer_property("debug", debug);
    }
    kafka_events::runtime::start(config).await.expect("runtime");
}

fn spawn_child(run: &str, out: &Path) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["crash_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("CRASH_RUN", run)
        .env("CRASH_OUT", out)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child")
}

/// Complete lines written so far: `(id, partition, offset)`.
fn handled(path: &Path) -> Vec<(String, i32, i64)> {
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

/// Waits (checking every 20 ms, up to 120 s) until `done` holds for the files' contents.
async fn wait_files(paths: &[&PathBuf], what: &str, done: impl Fn(&[(String, i32, i64)]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let all: Vec<_> = paths.iter().flat_map(|p| handled(p)).collect();
        if done(&all) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; {} lines so far", all.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_consumer_loses_nothing_and_sigterm_drains() {
    let run = unique("crash");
    let topic = format!("{run}.crash");
    create_topic(&topic, 3).await;
    create_topic(&format!("{topic}.dlq"), 3).await;
    let events: Vec<(String, Vec<u8>)> =
        (0..EVENTS).map(|i| (format!("k{i}"), serde_json::to_vec(&Tick { id: format!("t{i}") }).unwrap())).collect();
    produce_many(&unbatched_producer(), &topic, &events).await;
    let dir = std::env::temp_dir();
    let first_out = dir.join(format!("{run}-first.log"));
    let second_out = dir.join(format!("{run}-second.log"));

    let mut first = ChildGuard(Some(spawn_child(&run, &first_out)));
    wait_files(&[&first_out], "the first consumer to handle 400 events", |lines| lines.len() >= 400).await;
    let mut killed = first.0.take().unwrap();
    killed.kill().expect("SIGKILL");
    killed.wait().expect("reap");
    let before_kill = handled(&first_out);
    assert!(before_kill.len() < EVENTS, "killed mid-stream ({} of {EVENTS} handled)", before_kill.len());

    let mut second = ChildGuard(Some(spawn_child(&run, &second_out)));
    wait_files(&[&first_out, &second_out], "every event to be handled", |lines| {
        lines.iter().map(|(id, _, _)| id).collect::<BTreeSet<_>>().len() == EVENTS
    })
    .await;

    // Graceful stop: SIGTERM → drain, commit, leave the group, exit 0.
    let mut stopping = second.0.take().unwrap();
    let status = Command::new("kill").args(["-TERM", &stopping.id().to_string()]).status().expect("kill -TERM");
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || stopping.wait()).await.unwrap().expect("wait");
    assert!(exit.success(), "the runtime exits cleanly on SIGTERM: {exit:?}");

    let after = handled(&second_out);
    let ids: BTreeSet<&String> = before_kill.iter().chain(&after).map(|(id, _, _)| id).collect();
    assert_eq!(ids.len(), EVENTS, "no event lost");
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
            assert!(first_second <= last_first + 1, "partition {partition}: gap between {last_first} and {first_second}");
        }
    }
    let redelivered = before_kill.iter().filter(|(id, _, _)| per_child.contains_key(id)).count();
    println!("handled before SIGKILL: {}, redelivered after restart: {redelivered}", before_kill.len());
    let group = format!("{run}-svc-main");
    assert_eq!(committed_offsets(&group, &topic, 3), end_offsets(&topic, 3), "SIGTERM committed everything");
    let _ = std::fs::remove_file(first_out);
    let _ = std::fs::remove_file(second_out);
}
