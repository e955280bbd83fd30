//! Bounded shutdown: a handler still running when `KAFKA_SHUTDOWN_TIMEOUT` runs out is
//! cancelled (its future dropped), its message is not committed, and the next run handles it
//! again; shutdown takes the timeout plus a small margin, whatever the handler does.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{committed_offsets, config, create_topic, produce, producer, record_call, unique, wait_for};
use kafka_events::prelude::*;
use serde::{Deserialize, Serialize};
use validator::Validate;

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Job {
    #[validate(length(min = 1))]
    id: String,
}

/// The first run: `slow` takes 45 s. Later runs: it is quick.
static FIRST_RUN: AtomicBool = AtomicBool::new(true);
/// Set when the slow handling's future was dropped before it finished.
static SLOW_DROPPED: AtomicBool = AtomicBool::new(false);

struct DropFlag;

impl Drop for DropFlag {
    fn drop(&mut self) {
        SLOW_DROPPED.store(true, Ordering::SeqCst);
    }
}

#[kafka_handler(topic = "long_jobs", dlq)]
async fn long_job(job: Job, ctx: MessageContext) -> Result<(), HandlerError> {
    if job.id == "slow" && FIRST_RUN.load(Ordering::SeqCst) {
        record_call(&ctx, &job.id, false);
        let flag = DropFlag;
        tokio::time::sleep(Duration::from_secs(45)).await;
        std::mem::forget(flag);
    }
    record_call(&ctx, &job.id, true);
    Ok(())
}

const TIMEOUT: Duration = Duration::from_secs(3);
/// What shutdown may take beyond `KAFKA_SHUTDOWN_TIMEOUT` (README: leaving the group, the final
/// commit and the producer's flush while brokers answer).
const MARGIN: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_still_running_at_the_deadline_is_cancelled_not_committed_and_redelivered() {
    let run = unique("shutdown");
    let topic = format!("{run}.long_jobs");
    create_topic(&topic, 1).await;
    let config = config(&run, &["long_job"]).with_shutdown_timeout(TIMEOUT);
    let runtime = kafka_events::runtime::launch(config.clone()).await.expect("launch");
    let producer = producer();
    for id in ["first", "slow", "after"] {
        produce(&producer, &topic, id, &serde_json::to_vec(&Job { id: id.into() }).unwrap(), &[], None).await;
    }
    wait_for(&topic, Duration::from_secs(60), |c| c.iter().any(|c| c.id == "slow")).await;

    let started = Instant::now();
    runtime.shutdown().await.expect("shutdown");
    let took = started.elapsed();
    println!("shutdown took {took:?} with a {TIMEOUT:?} timeout and a handler 45 s from finishing");
    assert!(took <= TIMEOUT + MARGIN, "shutdown within the timeout plus {MARGIN:?}: {took:?}");
    assert!(SLOW_DROPPED.load(Ordering::SeqCst), "the running handler was cancelled, not left running");
    let group = format!("{run}-svc-main");
    assert_eq!(committed_offsets(&group, &topic, 1), [1], "`first` committed; `slow` (offset 1) not");

    // The next run handles `slow` again, then `after`.
    FIRST_RUN.store(false, Ordering::SeqCst);
    let runtime = kafka_events::runtime::launch(config).await.expect("relaunch");
    let calls = wait_for(&topic, Duration::from_secs(60), |c| c.iter().any(|c| c.id == "after" && c.succeeded)).await;
    runtime.shutdown().await.expect("shutdown");
    let done: Vec<&str> = calls.iter().filter(|c| c.succeeded).map(|c| c.id.as_str()).collect();
    assert_eq!(done, ["first", "slow", "after"], "each handled to the end once, in order");
}
