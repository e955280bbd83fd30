//! Helpers shared by the integration tests, by concern: the broker under test, raw
//! (`broker.rs`), the recorder handlers write to and tests await (`calls.rs`), PostgreSQL
//! (`database.rs`), child processes (`child.rs`), Kafka nodes a test starts itself
//! (`kafka_node.rs`) and a readiness sampler (`readiness.rs`). This file: names, the config every
//! test starts from, and `eventually`.
#![allow(dead_code)]

mod broker;
mod calls;
mod child;
mod database;
pub mod kafka_node;
pub mod readiness;

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use {broker::*, calls::*, child::*, database::*};

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_events::Config;

/// The broker under test: `KAFKA_BROKERS` (set by `scripts/test.sh`, which starts Apache Kafka).
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect(
        "KAFKA_BROKERS is not set: run the suite with `scripts/test.sh` (it starts a broker), or point KAFKA_BROKERS at a Kafka cluster",
    )
}

/// A name no other test run uses: `__<test>_<letters>`. Letters, not digits: the runtime refuses
/// group ids that embed a timestamp, and the group ids derive from this name.
pub fn unique(test: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let mut n = nanos ^ (u128::from(std::process::id()) << 64);
    let mut letters = String::new();
    while n > 0 {
        letters.push(char::from(b'a' + (n % 26) as u8));
        n /= 26;
    }
    format!("__{test}_{letters}")
}

/// A development config against the test broker, with its own topic prefix and service name,
/// running only `handlers`.
pub fn config(run: &str, handlers: &[&str]) -> Config {
    // `RUST_LOG=kafka_events=debug scripts/test.sh …` shows the runtime's logs.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    Config::development(format!("{run}-svc"))
        .with_brokers(brokers())
        .with_topic_prefix(format!("{run}."))
        .with_handlers(handlers.iter().copied())
        .with_commit_interval(Duration::from_millis(200))
        .with_shutdown_timeout(Duration::from_secs(10))
        .with_consumer_property("session.timeout.ms", "6000")
        .with_consumer_property("heartbeat.interval.ms", "500")
}

/// Polls `probe` every 10 ms until it returns `Ok`, for state that has no event to await (the
/// broker's committed offsets, the runtime's gauges, an HTTP endpoint); panics after `timeout`
/// naming `what` and the last `Err` the probe described.
pub async fn eventually<T, Fut>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "timed out after {timeout:?} waiting for {what}; last: {last}"
                )
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The sum of every sample of the metric `name` in the Prometheus text `metrics`.
pub fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
