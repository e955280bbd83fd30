//! `runtime::start` is never silent: without a subscriber of the application's, it installs a
//! default one (human-readable, or JSON with `LOG_FORMAT=json`, filtered by `RUST_LOG`); with
//! one, it installs nothing. Under that default a handler's line carries its message's
//! coordinates, and a message whose handler logs nothing writes nothing. Each case runs in a
//! child process (a global subscriber is set once per process).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use kafka_events::prelude::*;
use kafka_events::Config;
use serde::Deserialize;
use validator::Validate;

/// The child: `start` with Kafka disabled, which logs that at `info` and returns.
#[tokio::test]
#[ignore = "run by the logging tests as a child process"]
async fn start_child() {
    if std::env::var_os("OWN_SUBSCRIBER").is_some() {
        tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default()).unwrap();
    }
    kafka_events::runtime::start(Config::from_vars([("KAFKA_ENABLED", "false")])).await.expect("start");
}

/// What the child `start_child` wrote to stderr with `envs` set.
fn child_stderr(envs: &[(&str, &str)]) -> String {
    child_stderr_of("start_child", envs)
}

/// What the child test `child` wrote to stderr with `envs` set.
fn child_stderr_of(child: &str, envs: &[(&str, &str)]) -> String {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args([child, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
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

#[derive(Debug, Deserialize, Validate)]
struct Note {
    #[validate(length(min = 1))]
    id: String,
    loud: bool,
}

#[kafka_handler(topic = "notes")]
async fn note(event: Note, ctx: MessageContext) -> Result<(), HandlerError> {
    if event.loud {
        tracing::info!(id = %event.id, "noted");
    }
    common::record_call(&ctx, &event.id, true);
    Ok(())
}

/// The child: the default subscriber, a runtime on the suite's broker, six events of which the
/// handler logs a line for two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the logging tests as a child process"]
async fn message_lines_child() {
    assert!(kafka_events::logging::install_default(), "no subscriber before this one");
    let run = std::env::var("RUN").expect("RUN");
    let runtime = kafka_events::runtime::launch(common::config(&run, &["note"])).await.expect("launch");
    let topic = format!("{run}.notes");
    let producer = common::producer();
    for i in 0..6 {
        let payload = serde_json::json!({ "id": format!("n-{i}"), "loud": i % 3 == 0 }).to_string();
        common::produce(&producer, &topic, &format!("k-{i}"), payload.as_bytes(), &[], None).await;
    }
    common::wait_for(&topic, Duration::from_secs(60), |calls| calls.len() >= 6).await;
    runtime.shutdown().await.expect("shutdown");
}

#[test]
fn a_handlers_line_carries_its_messages_coordinates_and_a_quiet_message_writes_nothing() {
    let run = common::unique("notes");
    let brokers = common::brokers();
    let text =
        child_stderr_of("message_lines_child", &[("RUN", &run), ("KAFKA_BROKERS", &brokers), ("RUST_LOG", "info")]);
    let topic = format!("{run}.notes");
    let noted: Vec<&str> = text.lines().filter(|line| line.contains("noted")).collect();
    assert_eq!(noted.len(), 2, "one line per loud event: {text}");
    for line in &noted {
        assert!(line.contains(&format!("message{{topic={topic} partition=")), "{line}");
        for field in [" offset=", " handler=logging::note", " trace_id=", " span_id=", " attempt=1"] {
            assert!(line.contains(field), "{field} missing in {line}");
        }
    }
    for i in [0, 3] {
        let line = noted.iter().find(|line| line.contains(&format!("id=n-{i}"))).expect("the loud event's line");
        assert!(line.contains(&format!(" key=k-{i} ")), "the line carries its own message's key: {line}");
    }
    for i in [1, 2, 4, 5] {
        assert!(!text.contains(&format!("key=k-{i}")), "a quiet message wrote nothing: {text}");
    }
}
