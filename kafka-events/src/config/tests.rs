//! Unit tests of reading and validating configurations.

use super::settings::SECURITY_VARS;
use super::*;

#[test]
fn every_bad_variable_is_named_in_one_error() {
    let config = Config::from_vars([
        ("KAFKA_EVENTS_PROFILE", "production"),
        ("KAFKA_TOPIC_PARTITIONS", "three"),
        ("KAFKA_COMMIT_INTERVAL", "soon"),
        ("KAFKA_RETRY_BACKOFF", "random"),
        ("KAFKA_AUTO_OFFSET_RESET", "middle"),
        ("KAFKA_PROVISION_TOPICS", "maybe"),
    ]);
    let err = config.validate().unwrap_err();
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            // Values that cannot be read, in the order of their names,
            "KAFKA_COMMIT_INTERVAL",
            "KAFKA_PROVISION_TOPICS",
            "KAFKA_RETRY_BACKOFF",
            "KAFKA_TOPIC_PARTITIONS",
            // then what the settings read mean together.
            "KAFKA_BROKERS",
            "SERVICE_NAME",
            "KAFKA_AUTO_OFFSET_RESET"
        ],
        "{err}"
    );
    assert!(err.to_string().starts_with("invalid configuration (7 problems):"), "{err}");
}

#[test]
fn development_from_env_defaults() {
    let config = Config::from_vars([("SERVICE_NAME", "orders"), ("KAFKA_BROKERS", "127.0.0.1:9092,kafka-2:9093")]);
    config.validate().unwrap();
    assert_eq!(config.profile(), Profile::Development);
    assert_eq!(config.client_id(), "orders");
    assert_eq!(config.brokers(), Some("127.0.0.1:9092,kafka-2:9093"));
    assert!(config.provision_topics());
    let embedded = Config::from_vars(Vec::<(String, String)>::new());
    embedded.validate().unwrap();
    assert_eq!(embedded.brokers(), None);
    assert_eq!(embedded.service_name(), "kafka-events-dev");
}

#[test]
fn bad_brokers_and_auto_commit_are_refused() {
    let err = Config::development("svc")
        .with_brokers("localhost,:9092,host:99999")
        .with_consumer_property("enable.auto.commit", "true")
        .validate()
        .unwrap_err();
    assert_eq!(err.problems.len(), 4, "{err}");
    assert!(err.to_string().contains("`localhost` is not `host:port`"));
    assert!(err.to_string().contains("auto-commit would commit"));
}

#[test]
fn service_names_that_make_dynamic_group_ids_are_refused() {
    for service in ["dlq-reprocess-1700000000000", "orders-6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"] {
        let err = Config::development(service).validate().unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].key, "SERVICE_NAME");
        assert!(err.problems[0].reason.contains("group ids must be static"), "{err}");
    }
    let err = Config::from_vars([("KAFKA_EVENTS_PROFILE", "production"), ("KAFKA_BROKERS", "k:9092")])
        .validate()
        .unwrap_err();
    assert_eq!(err.problems[0].key, "SERVICE_NAME", "production requires SERVICE_NAME: {err}");
}

#[test]
fn secrets_are_redacted_in_debug() {
    let config = Config::development("svc").with_producer_property("sasl.password", "hunter2");
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("[redacted]"));
}

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn write_file(text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("kafka-events-config-{}.toml", fastrand::u64(..)));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn file_then_environment_then_builder() {
    let path = write_file(
        r#"
        SERVICE_NAME = "orders"
        KAFKA_BROKERS = ["kafka-1:9092", "kafka-2:9092"]
        kafka_commit_interval = "2s"
        KAFKA_TOPIC_PARTITIONS = 6
        KAFKA_PROVISION_TOPICS = false

        [consumer]
        "session.timeout.ms" = 20000

        [producer]
        "linger.ms" = 10
        "#,
    );
    let env = vars(&[("KAFKA_COMMIT_INTERVAL", "500ms"), ("KAFKA_PRODUCER_LINGER_MS", "1"), ("HOME", "/root")]);
    let config = Config::from_sources(Some(&path), env).with_partition_buffer(42);
    config.validate().expect("valid");
    assert_eq!(config.service_name(), "orders", "from the file");
    assert_eq!(config.brokers(), Some("kafka-1:9092,kafka-2:9092"), "arrays are joined");
    assert_eq!(config.commit_interval(), Duration::from_millis(500), "the environment wins over the file");
    assert_eq!(config.topic_partitions(), 6);
    assert!(!config.provision_topics());
    assert_eq!(config.consumer_properties()["session.timeout.ms"], "20000");
    assert_eq!(config.producer_properties()["linger.ms"], "1", "environment over file for properties too");
    assert_eq!(config.partition_buffer(), 42, "builder methods override both");
    let _ = std::fs::remove_file(path);
}

#[test]
fn a_bad_config_file_is_named_with_every_problem() {
    let path =
        write_file("SERVICE_NAME = \"orders\"\nKAFKA_BROKRES = \"kafka:9092\"\nKAFKA_COMMIT_INTERVAL = \"soon\"\n");
    let err = Config::from_sources(Some(&path), vec![]).validate().unwrap_err();
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"KAFKA_BROKRES"), "a typo is an unknown setting: {err}");
    assert!(keys.contains(&"KAFKA_COMMIT_INTERVAL"), "{err}");
    let missing = Config::from_sources(Some(std::path::Path::new("/nonexistent/kafka.toml")), vec![]);
    let err = missing.validate().unwrap_err();
    assert!(err.problems[0].key.starts_with("KAFKA_EVENTS_CONFIG"), "{err}");
    assert!(err.to_string().contains("cannot read it"), "{err}");
    let _ = std::fs::remove_file(path);
}

#[test]
fn security_settings_are_checked_and_secrets_never_shown() {
    let config = Config::from_vars(vars(&[
        ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
        ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-1"),
        ("KAFKA_SASL_USERNAME", "svc"),
        ("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem"),
    ]));
    let err = config.validate().unwrap_err();
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["KAFKA_SASL_MECHANISM", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_CA_LOCATION"], "{err}");

    let config = Config::from_vars(vars(&[
        ("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
        ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
        ("KAFKA_SASL_USERNAME", "svc"),
        ("KAFKA_SASL_PASSWORD", "s3cr3t-value"),
    ]));
    config.validate().expect("valid");
    assert_eq!(config.client_properties()["sasl.mechanism"], "SCRAM-SHA-512");
    assert!(!format!("{config:?}").contains("s3cr3t-value"), "{config:?}");
}

#[test]
fn the_consumer_group_protocol_leaves_session_and_assignment_to_the_broker() {
    let production = [("KAFKA_EVENTS_PROFILE", "production"), ("SERVICE_NAME", "orders"), ("KAFKA_BROKERS", "k:9092")];
    let classic = Config::from_vars(vars(&production));
    assert_eq!(classic.group_protocol(), GroupProtocol::Classic);
    assert_eq!(classic.consumer_properties()["session.timeout.ms"], "30000");
    let mut with_consumer = production.to_vec();
    with_consumer.push(("KAFKA_GROUP_PROTOCOL", "consumer"));
    let consumer = Config::from_vars(vars(&with_consumer));
    assert_eq!(consumer.group_protocol(), GroupProtocol::Consumer);
    assert!(!consumer.consumer_properties().contains_key("session.timeout.ms"), "the profile's default is dropped");
    consumer.validate().expect("valid");
    with_consumer.push(("KAFKA_CONSUMER_HEARTBEAT_INTERVAL_MS", "500"));
    let err = Config::from_vars(vars(&with_consumer)).validate().unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(err.problems[0].key, "consumer property `heartbeat.interval.ms`");
    assert!(err.problems[0].reason.contains("the broker decides it"), "{err}");
    let err = Config::from_vars(vars(&[("KAFKA_GROUP_PROTOCOL", "eager")])).validate().unwrap_err();
    assert_eq!(
        (err.problems[0].key.as_str(), err.problems[0].reason.as_str()),
        ("KAFKA_GROUP_PROTOCOL", "`eager` is not `classic` or `consumer`")
    );
}

#[test]
fn production_has_the_seed_defaults_and_kafka_can_be_disabled() {
    let config = Config::production("orders", "kafka:9092");
    assert_eq!(config.producer_properties()["compression.type"], "snappy");
    assert_eq!(config.producer_properties()["linger.ms"], "5");
    assert_eq!(config.consumer_properties()["session.timeout.ms"], "30000");
    assert!(!Config::from_vars(vars(&[("KAFKA_ENABLED", "false")])).enabled());
    let err = Config::from_vars(vars(&[("KAFKA_ENABLED", "perhaps")])).validate().unwrap_err();
    assert_eq!(err.problems[0].key, "KAFKA_ENABLED");
}

/// The variables in the first column of a Markdown table's rows (`| `A`, `B` | ... |`).
fn table_variables(text: &str, row_prefix: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.trim_start().strip_prefix(row_prefix))
        .filter_map(|row| row.split(" | ").next())
        .flat_map(|cell| cell.split('`').skip(1).step_by(2).map(str::to_string).collect::<Vec<_>>())
        .filter(|name| name.starts_with("KAFKA_") || name == "SERVICE_NAME")
        .collect()
}

/// The variable table is written twice, on [`Config`] (docs) and in README's Configuration
/// section; every variable the reader looks at must be in both, and neither may list one the
/// reader ignores.
#[test]
fn every_variable_read_is_documented_on_config_and_in_the_readme() {
    let mut read: std::collections::BTreeSet<String> = settings::Settings::keys()
        .into_iter()
        .map(|key| {
            if ["KAFKA_CONSUMER", "KAFKA_PRODUCER", "KAFKA_CLIENT"].contains(&key.as_str()) {
                key + "_*"
            } else {
                key
            }
        })
        .collect();
    read.extend(SECURITY_VARS.iter().map(|(var, _)| var.to_string()));
    read.insert("KAFKA_EVENTS_CONFIG".into()); // read by `from_env`, before the rest
    let readme = include_str!("../../../README.md");
    let readme = &readme[readme.find("## Configuration").expect("README has a Configuration section")..];
    let readme = &readme[..readme[3..].find("\n## ").map_or(readme.len(), |end| end + 3)];
    for (place, documented) in [
        ("the docs of `Config`", table_variables(include_str!("mod.rs"), "/// | ")),
        ("README", table_variables(readme, "| ")),
    ] {
        let missing: Vec<&String> = read.iter().filter(|v| !documented.contains(*v)).collect();
        assert!(missing.is_empty(), "read but not documented in {place}: {missing:?}");
        let unread: Vec<&String> = documented.iter().filter(|v| !read.contains(*v)).collect();
        assert!(unread.is_empty(), "documented in {place} but never read: {unread:?}");
    }
}

#[test]
fn every_unreadable_value_says_what_it_is_and_the_rest_is_still_read() {
    let config = Config::from_vars([
        ("KAFKA_TOPIC_PARTITIONS", "three"),
        ("KAFKA_COMMIT_INTERVAL", "soon"),
        ("KAFKA_RETRY_BACKOFF", "random"),
        ("KAFKA_PROVISION_TOPICS", "maybe"),
        ("KAFKA_EVENTS_HTTP", "localhost"),
        ("KAFKA_TOPIC_CLEANUP_POLICY", "forever"),
        ("KAFKA_MAX_BUFFERED", "7"),
        ("KAFKA_ENABLED", "yes"),
        ("SERVICE_NAME", "2024"),
        ("KAFKA_EVENTS_PROFILE", "dev"),
    ]);
    let err = config.validate().unwrap_err();
    let problems: Vec<(&str, &str)> = err.problems.iter().map(|p| (p.key.as_str(), p.reason.as_str())).collect();
    assert_eq!(
        problems,
        [
            ("KAFKA_COMMIT_INTERVAL", "`soon` is not a duration like `500ms` or `2s`: expected number at 0"),
            ("KAFKA_EVENTS_HTTP", "`localhost` is not a socket address like `0.0.0.0:9464`"),
            ("KAFKA_PROVISION_TOPICS", "`maybe` is not a boolean (true/false)"),
            ("KAFKA_RETRY_BACKOFF", "`random` is not `exponential`, `linear` or `fixed`"),
            ("KAFKA_TOPIC_CLEANUP_POLICY", "`forever` is not `delete`, `compact` or `compact,delete`"),
            ("KAFKA_TOPIC_PARTITIONS", "`three` is not a valid number"),
        ],
        "{err}"
    );
    // Each unreadable value keeps its default; every other value is read.
    assert_eq!(config.topic_partitions(), 3);
    assert_eq!(config.commit_interval(), Duration::from_secs(1));
    assert_eq!(config.max_buffered(), 7);
    assert!(config.enabled(), "`yes` is a boolean");
    assert_eq!(config.service_name(), "2024", "a number where text is expected is text");
    assert_eq!(config.profile(), Profile::Development);
}

#[test]
fn a_store_url_with_a_password_is_never_shown() {
    let config = Config::from_vars([
        ("KAFKA_IDEMPOTENCY_STORE", "postgres://svc:hunter2@db:5432/app"),
        ("KAFKA_IDEMPOTENCY_POOL_SIZE", "0"),
    ]);
    let shown = format!("{config:?} {}", config.validate().unwrap_err());
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("KAFKA_IDEMPOTENCY_POOL_SIZE: must be at least 1"), "{shown}");
    let err = Config::from_vars([("KAFKA_IDEMPOTENCY_STORE", "mysql://svc:hunter2@db/app")]).validate().unwrap_err();
    assert_eq!(err.problems[0].key, "KAFKA_IDEMPOTENCY_STORE");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn the_profile_chooses_the_defaults_wherever_it_is_set() {
    let path = write_file("kafka_events_profile = \"production\"\nSERVICE_NAME = \"orders\"\n");
    let config = Config::from_sources(Some(&path), vars(&[("KAFKA_BROKERS", "k:9092")]));
    config.validate().expect("valid");
    assert_eq!(config.profile(), Profile::Production);
    assert!(!config.provision_topics(), "production's default");
    assert_eq!(config.topic_replication(), 3, "production's default");
    assert_eq!(config.producer_properties()["compression.type"], "snappy");
    let err = Config::from_vars([("KAFKA_EVENTS_PROFILE", "staging")]).validate().unwrap_err();
    assert_eq!(
        err.problems[0].to_string(),
        "KAFKA_EVENTS_PROFILE: `staging` is not `dev`, `development`, `prod` or `production`"
    );
    let _ = std::fs::remove_file(path);
}
