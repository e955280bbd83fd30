//! The recorder handlers write their invocations to, and tests await.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

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
