//! `runtime::start` is never silent: without a subscriber of the application's, it installs a
//! default one (human-readable, or JSON with `LOG_FORMAT=json`, filtered by `RUST_LOG`); with
//! one, it installs nothing. Each case runs in a child process (a global subscriber is set once
//! per process).

use std::process::{Command, Stdio};

use kafka_events::Config;

/// The child: `start` with Kafka disabled, which logs that at `info` and returns.
#[tokio::test]
#[ignore = "run by the logging tests as a child process"]
async fn start_child() {
    if std::env::var_os("OWN_SUBSCRIBER").is_some() {
        tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default()).unwrap();
    }
    kafka_events::runtime::start(Config::from_vars([("KAFKA_ENABLED", "false")])).await.expect("start");
}

/// What the child wrote to stderr with `envs` set.
fn child_stderr(envs: &[(&str, &str)]) -> String {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args(["start_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env_remove("RUST_LOG")
        .env_remove("LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in envs {
        command.env(key, value);
    }
    let output = command.output().expect("run the child");
    assert!(output.status.success(), "the child failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const DISABLED: &str = "Kafka is disabled (KAFKA_ENABLED=false)";

#[test]
fn start_logs_to_stderr_by_default() {
    let text = child_stderr(&[]);
    let line = text.lines().find(|l| l.contains(DISABLED)).unwrap_or_else(|| panic!("no log line in {text:?}"));
    assert!(line.contains("INFO"), "{line}");
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let text = child_stderr(&[("LOG_FORMAT", "json")]);
    let line = text.lines().find(|l| l.contains(DISABLED)).unwrap_or_else(|| panic!("no log line in {text:?}"));
    let object: serde_json::Value = serde_json::from_str(line).expect("a JSON object");
    assert_eq!(object["level"], "INFO");
    assert!(object["fields"]["message"].as_str().unwrap().starts_with(DISABLED), "{object}");
}

#[test]
fn rust_log_filters_and_an_own_subscriber_replaces_the_default() {
    assert!(!child_stderr(&[("RUST_LOG", "warn")]).contains(DISABLED), "RUST_LOG=warn hides info lines");
    assert!(!child_stderr(&[("OWN_SUBSCRIBER", "1")]).contains(DISABLED), "the application's subscriber wins");
}
