//! What `deploy/` ships is checked against the runtime it deploys:
//!
//! - every metric the alert rules and the Grafana dashboard name is one a running runtime
//!   exports (a renamed metric fails here), the dashboard's queries parse (`promtool check
//!   rules`), and the alert rules pass their unit tests (`promtool test rules`);
//! - the Kubernetes Deployment runs the example service with a configuration the runtime
//!   accepts, probes on the endpoint it serves, a grace period above its shutdown timeout and
//!   memory requests above the benchmark's peak;
//! - the example service's topology, described with the Deployment's environment, is a valid
//!   AsyncAPI 3.0 document (the AsyncAPI parser from npm, `scripts/asyncapi`), with its events'
//!   JSON Schemas; the HTTP endpoint serves the same documents.
//!
//! `scripts/test.sh` installs promtool (Debian's `prometheus`) and the parser (`npm ci`).

mod common;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/order_service.rs"]
mod order_service;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use kafka_events::describe::{self, DescribeFormat};
use kafka_events::testing::Harness;
use kafka_events::Config;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Runs a tool the test command installs, failing with how to get it when it is missing.
fn run(program: &str, args: &[&str], install: &str) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .current_dir(repo("."))
        .output()
        .unwrap_or_else(|e| panic!("running `{program}`: {e}; {install} (scripts/test.sh does)"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn promtool(args: &[&str]) -> (bool, String) {
    run("promtool", args, "install Debian's `prometheus` package for promtool")
}

/// Every sample name a running runtime exports, from the `# TYPE` lines of its exposition
/// (registered families are described even before their first sample): counters as
/// `<name>_total`, histograms as `_bucket`, `_sum` and `_count`, gauges as they are.
async fn exported_metrics() -> BTreeSet<String> {
    let harness = Harness::start(["send_confirmation"]).await.expect("harness");
    let text = harness.runtime().metrics_text();
    harness.shutdown().await.expect("shutdown");
    let mut names = BTreeSet::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let mut parts = line.split_whitespace();
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}"))),
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    assert!(names.contains("kafka_events_messages_processed_total"), "{text}");
    names
}

/// The `kafka_events_*` names in a PromQL expression.
fn metrics_in(expr: &str) -> Vec<String> {
    let names = regex::Regex::new(r"\bkafka_events_[a-z_]+").unwrap();
    names.find_iter(expr).map(|m| m.as_str().to_string()).collect()
}

fn alert_rules() -> Vec<serde_yaml_ng::Value> {
    let rules: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read("deploy/prometheus/alerts.yml")).unwrap();
    rules["groups"].as_sequence().unwrap().iter().flat_map(|g| g["rules"].as_sequence().unwrap().clone()).collect()
}

/// The dashboard's queries, with Grafana's variables replaced by what Prometheus would get.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: serde_json::Value = serde_json::from_str(&read("deploy/grafana/kafka-events.json")).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$__rate_interval", "1m").replace("$job", ".*");
            queries.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_dashboard_use_only_exported_metrics() {
    let exported = exported_metrics().await;
    let rules = alert_rules();
    let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    for wanted in [
        "KafkaEventsConsumerLagHigh",
        "KafkaEventsErrorRateHigh",
        "KafkaEventsProducerSendFailures",
        "KafkaEventsDeadLettersArriving",
        "KafkaEventsPartitionStalled",
        "KafkaEventsCircuitOpen",
    ] {
        assert!(names.contains(&wanted), "alert {wanted} missing: {names:?}");
    }
    let mut unknown = Vec::new();
    for rule in &rules {
        let expr = rule["expr"].as_str().unwrap();
        assert!(!metrics_in(expr).is_empty(), "{expr}");
        unknown
            .extend(metrics_in(expr).into_iter().filter(|m| !exported.contains(m)).map(|m| (rule["alert"].clone(), m)));
        assert!(rule["labels"]["severity"].as_str().is_some(), "{rule:?}");
        assert!(
            rule["annotations"]["summary"].as_str().is_some() && rule["annotations"]["description"].as_str().is_some()
        );
    }
    let queries = dashboard_queries();
    assert!(queries.len() >= 16, "{queries:?}");
    for (panel, expr) in &queries {
        unknown
            .extend(metrics_in(expr).into_iter().filter(|m| !exported.contains(m)).map(|m| (panel.as_str().into(), m)));
    }
    assert!(unknown.is_empty(), "not exported by the runtime: {unknown:?}\nexported: {exported:?}");
    // The dashboard covers what the issue lists.
    let all: String = queries.iter().map(|(_, e)| e.as_str()).collect();
    for metric in [
        "kafka_events_messages_consumed_total",
        "kafka_events_handler_duration_seconds_bucket",
        "kafka_events_consumer_lag",
        "kafka_events_messages_retried_total",
        "kafka_events_messages_dead_lettered_total",
        "kafka_events_rebalances_total",
        "kafka_events_circuit_state",
        "kafka_events_publish_latency_seconds_bucket",
    ] {
        assert!(all.contains(metric), "the dashboard has no panel of {metric}");
    }
}

#[test]
fn the_checker_finds_a_metric_the_runtime_does_not_export() {
    let exported: BTreeSet<String> = ["kafka_events_consumer_lag".to_string()].into();
    let renamed = "sum by (group) (kafka_events_consumer_lag_messages) > 1000";
    let unknown: Vec<String> = metrics_in(renamed).into_iter().filter(|m| !exported.contains(m)).collect();
    assert_eq!(unknown, ["kafka_events_consumer_lag_messages"]);
}

#[test]
fn alert_rules_pass_their_promtool_unit_tests() {
    let (ok, text) = promtool(&["check", "rules", "deploy/prometheus/alerts.yml"]);
    assert!(ok, "{text}");
    let (ok, text) = promtool(&["test", "rules", "deploy/prometheus/alerts.test.yml"]);
    assert!(ok && text.contains("SUCCESS"), "{text}");
}

#[test]
fn the_dashboards_queries_are_valid_promql() {
    // Each query as a recording rule: `promtool check rules` parses every expression.
    let rules: Vec<serde_json::Value> = dashboard_queries()
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| serde_json::json!({ "record": format!("dashboard:query_{i}"), "expr": expr }))
        .collect();
    let file = std::env::temp_dir().join(format!("kafka-events-dashboard-{}.yml", std::process::id()));
    let document = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    std::fs::write(&file, serde_yaml_ng::to_string(&document).unwrap()).unwrap();
    let (ok, text) = promtool(&["check", "rules", file.to_str().unwrap()]);
    std::fs::remove_file(&file).ok();
    assert!(ok, "{text}");
}

// ------------------------------------------------------------------------------- Kubernetes

fn manifests() -> BTreeMap<String, serde_yaml_ng::Value> {
    let mut by_kind = BTreeMap::new();
    let kustomization: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read("deploy/kubernetes/kustomization.yaml")).unwrap();
    for resource in kustomization["resources"].as_sequence().unwrap() {
        let path = format!("deploy/kubernetes/{}", resource.as_str().unwrap());
        let manifest: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read(&path)).unwrap();
        by_kind.insert(manifest["kind"].as_str().unwrap().to_string(), manifest);
    }
    by_kind
}

/// The container's environment, `$(VAR)` references expanded as the kubelet does (a
/// `fieldRef` becomes a sample pod name).
fn container_env(container: &serde_yaml_ng::Value) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for var in container["env"].as_sequence().unwrap() {
        let name = var["name"].as_str().unwrap().to_string();
        let mut value = match var["value"].as_str() {
            Some(value) => value.to_string(),
            None => {
                assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"].as_str(), Some("metadata.name"), "{var:?}");
                "order-service-7d4b9c-x2x9k".into()
            }
        };
        for (known, known_value) in &env {
            value = value.replace(&format!("$({known})"), known_value.as_str());
        }
        env.insert(name, value);
    }
    env
}

/// Names the runtime reads (everything else in the environment is for the process or the log
/// subscriber).
fn runtime_settings(env: &BTreeMap<String, String>) -> Vec<(String, String)> {
    env.iter()
        .filter(|(name, _)| !["RUST_LOG", "LOG_FORMAT", "POD_NAME"].contains(&name.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn the_deployment_runs_the_example_service_as_the_runtime_expects() {
    let manifests = manifests();
    let deployment = &manifests["Deployment"];
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env = container_env(container);

    // A configuration the runtime accepts; every variable one it reads (as a config file,
    // where an unknown name is an error — a typo would otherwise be silently ignored).
    let settings = runtime_settings(&env);
    let file = std::env::temp_dir().join(format!("kafka-events-deploy-{}.toml", std::process::id()));
    let toml: String = settings.iter().map(|(k, v)| format!("{k} = {v:?}\n")).collect();
    std::fs::write(&file, toml).unwrap();
    let from_file = Config::from_sources(Some(&file), Vec::new());
    std::fs::remove_file(&file).ok();
    from_file.validate().unwrap_or_else(|e| panic!("the Deployment's environment: {e}"));
    let config = Config::from_vars(settings.clone());
    config.validate().unwrap();
    assert_eq!(config.profile(), kafka_events::Profile::Production);
    assert_eq!(config.client_id(), "order-service-7d4b9c-x2x9k", "client.id per pod");

    // One SERVICE_NAME, literal (not per pod): replicas share the consumer groups.
    assert_eq!(env["SERVICE_NAME"], "order-service");
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap();
    assert!(replicas >= 2 && replicas <= i64::from(config.topic_partitions()), "{replicas} replicas");

    // Probes on the endpoint the runtime serves.
    let port = env["KAFKA_EVENTS_HTTP"].rsplit(':').next().unwrap().parse::<i64>().unwrap();
    assert_eq!(container["ports"][0]["containerPort"].as_i64(), Some(port));
    let port_name = container["ports"][0]["name"].as_str().unwrap();
    for (probe, path) in
        [("startupProbe", "/health/live"), ("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")]
    {
        assert_eq!(container[probe]["httpGet"]["path"].as_str(), Some(path), "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"].as_str(), Some(port_name), "{probe}");
    }
    // The startup probe waits as long as start-up may wait for a broker.
    let startup = &container["startupProbe"];
    let startup_window = startup["periodSeconds"].as_u64().unwrap() * startup["failureThreshold"].as_u64().unwrap();
    assert!(startup_window > config.startup_timeout().as_secs(), "{startup_window} s");
    // The liveness window is at least the poll timeout the runtime itself applies.
    let live = &container["livenessProbe"];
    assert!(live["periodSeconds"].as_u64().unwrap() * live["failureThreshold"].as_u64().unwrap() >= 30);

    // SIGKILL comes after the shutdown has had its time, with a margin for the final commit.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace >= config.shutdown_timeout().as_secs() + 10, "grace {grace} s vs {:?}", config.shutdown_timeout());

    // Memory requests over the benchmark's peak RSS with the production profile's 1 MB fetches
    // (README, B4: 267 MB), limits above requests.
    let mib = |q: &str| q.strip_suffix("Mi").unwrap().parse::<u64>().unwrap();
    let requests = mib(container["resources"]["requests"]["memory"].as_str().unwrap());
    let limit = mib(container["resources"]["limits"]["memory"].as_str().unwrap());
    assert!(requests * 1024 * 1024 >= 267_000_000 && limit > requests, "{requests}Mi / {limit}Mi");
    assert!(container["resources"]["limits"]["cpu"].is_null(), "no CPU limit: throttling grows lag");

    // The scrape port and the Service agree; the PDB and Service select the Deployment's pods.
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"].as_str(),
        Some(&*port.to_string())
    );
    assert_eq!(manifests["Service"]["spec"]["ports"][0]["port"].as_i64(), Some(port));
    for selector in [
        &manifests["Service"]["spec"]["selector"],
        &manifests["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
    ] {
        for (key, value) in selector.as_mapping().unwrap() {
            assert_eq!(&labels[key.as_str().unwrap()], value);
        }
    }
}

// ------------------------------------------------------------------------- topology document

/// Validates `document` with the AsyncAPI parser; returns its report.
fn validate_asyncapi(document: &serde_json::Value) -> (bool, String) {
    assert!(
        repo("scripts/asyncapi/node_modules/@asyncapi/parser").exists(),
        "the AsyncAPI parser is not installed: `npm ci --prefix scripts/asyncapi` (scripts/test.sh does)"
    );
    let file =
        std::env::temp_dir().join(format!("kafka-events-asyncapi-{}-{}.json", std::process::id(), fastrand::u32(..)));
    std::fs::write(&file, serde_json::to_vec_pretty(document).unwrap()).unwrap();
    let result = run("node", &["scripts/asyncapi/validate.mjs", file.to_str().unwrap()], "install Node.js");
    std::fs::remove_file(&file).ok();
    result
}

/// The example service, configured as the Deployment configures it.
fn deployed_config() -> Config {
    let manifests = manifests();
    let env = container_env(&manifests["Deployment"]["spec"]["template"]["spec"]["containers"][0]);
    Config::from_vars(runtime_settings(&env))
}

#[test]
fn the_example_services_asyncapi_document_is_valid_and_complete() {
    let description = describe::describe(&deployed_config()).expect("describe");
    let document = description.to_asyncapi();
    let (ok, report) = validate_asyncapi(&document);
    println!("{report}");
    assert!(ok && report.contains("valid AsyncAPI 3.0.0: 5 channels, 6 operations"), "{report}\n{document:#}");

    // Every topic a channel with its partitions; groups as Kafka bindings; schemas as payloads.
    let channels = document["channels"].as_object().unwrap();
    let addresses: Vec<&str> = channels.values().map(|c| c["address"].as_str().unwrap()).collect();
    assert_eq!(
        addresses,
        ["orders.accepted", "orders.accepted.dlq", "orders.created", "orders.created.dlq", "orders.created.retry"]
    );
    assert_eq!(channels["orders.created"]["bindings"]["kafka"]["partitions"], 6);
    assert_eq!(channels["orders.created"]["bindings"]["kafka"]["replicas"], 3);
    // Operation ids are the handlers' paths (here `deploy::order_service::…`, as the example is
    // compiled into this test) with `.` for `::`.
    let op = |suffix: &str| {
        let operations = document["operations"].as_object().unwrap();
        operations
            .iter()
            .find(|(id, _)| id.ends_with(suffix))
            .map(|(_, op)| op.clone())
            .unwrap_or_else(|| panic!("{suffix}: {operations:?}"))
    };
    let receive = &op("order_service.on_order_created.receive");
    assert_eq!(receive["action"], "receive");
    assert_eq!(receive["bindings"]["kafka"]["groupId"]["enum"][0], "order-service-main");
    let retry = &op("order_service.on_order_created.retry.receive");
    assert_eq!(retry["bindings"]["kafka"]["groupId"]["enum"][0], "order-service-retry");
    assert_eq!(op("order_service.on_order_created.dead-letter.send")["action"], "send");
    let payload = &channels["orders.created"]["messages"]["OrderCreated"]["payload"];
    assert_eq!(payload["properties"]["amount"]["minimum"], 0.01, "validator constraints in the schema: {payload}");
    assert_eq!(payload["required"], serde_json::json!(["id", "customer", "amount"]));
    let dead_letter = &channels["orders.created.dlq"]["messages"]["OrderCreated"]["headers"]["properties"];
    assert!(dead_letter["x-dlq-reason"].is_object() && dead_letter["x-dlq-error-kind"].is_object());
    assert!(document["servers"]["broker-1"]["host"].as_str().unwrap().starts_with("kafka-0"));

    // The JSON form: handlers with their policies.
    let json: serde_json::Value = serde_json::from_str(&description.render(DescribeFormat::Json)).unwrap();
    let handlers = json["handlers"].as_array().unwrap();
    assert_eq!(handlers.len(), 2);
    let created = handlers.iter().find(|h| h["topic"] == "orders.created").unwrap();
    assert_eq!(created["retry"]["max"], 5);
    assert_eq!(created["retry"]["topic"], "orders.created.retry");
    assert_eq!(created["concurrency"], 8);
    assert_eq!(created["dead_letter_topic"], "orders.created.dlq");
    assert_eq!(created["event"]["type"], "OrderCreated");
    let accepted = handlers.iter().find(|h| h["topic"] == "orders.accepted").unwrap();
    assert_eq!(accepted["retry"]["mode"], "in_place");
    assert!(accepted["retry"]["topic"].is_null());
}

#[test]
fn a_broken_document_fails_the_validator() {
    let mut document = describe::describe(&deployed_config()).unwrap().to_asyncapi();
    for operation in document["operations"].as_object_mut().unwrap().values_mut() {
        operation.as_object_mut().unwrap().remove("action");
    }
    let (ok, report) = validate_asyncapi(&document);
    assert!(!ok && report.contains("action"), "{report}");
}

#[test]
fn without_schemars_an_event_has_no_schema_and_the_document_is_still_valid() {
    // What an event type without `JsonSchema` (or the feature off) gives: no schema
    // (`schema.rs` tests the probe itself).
    let mut description = describe::describe(&deployed_config()).unwrap();
    for handler in &mut description.handlers {
        handler.event.schema = None;
    }
    let document = description.to_asyncapi();
    assert!(document["channels"]["orders.created"]["messages"]["OrderCreated"].get("payload").is_none());
    let (ok, report) = validate_asyncapi(&document);
    assert!(ok, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_endpoint_serves_the_topology_and_asyncapi_documents() {
    let run = common::unique("described");
    let config =
        common::config(&run, &["on_order_created", "send_confirmation"]).with_http("127.0.0.1:0".parse().unwrap());
    let expected = describe::describe(&config).unwrap();
    let runtime = kafka_events::runtime::launch(config).await.expect("launch");
    let addr = runtime.http_addr().unwrap();
    let get = |path: &'static str| async move {
        let response = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        serde_json::from_str::<serde_json::Value>(&response.text().await.unwrap()).unwrap()
    };
    let topology = get("/topology").await;
    let asyncapi = get("/asyncapi.json").await;
    runtime.shutdown().await.unwrap();
    assert_eq!(topology, serde_json::to_value(&expected).unwrap());
    assert_eq!(asyncapi, expected.to_asyncapi());
    assert_eq!(topology["handlers"][1]["topic"], format!("{run}.orders.created"));
}

/// The example's own binary, built by `cargo test` (which builds every example) next to this
/// test's: `target/<profile>/examples/order_service`.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join("order_service");
    assert!(
        path.exists(),
        "{} is missing: `cargo test` builds it (or `cargo build --example order_service`)",
        path.display()
    );
    path
}

#[test]
fn kafka_events_describe_prints_the_document_from_the_users_binary_without_connecting() {
    // An unreachable broker: were it to connect, start-up would wait for it for minutes.
    let started = std::time::Instant::now();
    let output = Command::new(example_binary())
        .env_clear()
        .envs([
            ("KAFKA_EVENTS_DESCRIBE", "asyncapi"),
            ("SERVICE_NAME", "order-service"),
            ("KAFKA_BROKERS", "127.0.0.1:1"),
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).expect("only the document on stdout");
    assert_eq!(document["asyncapi"], "3.0.0");
    assert!(document["operations"].as_object().unwrap().contains_key("order_service.on_order_created.receive"));
    let (ok, report) = validate_asyncapi(&document);
    assert!(ok, "{report}");

    let output = Command::new(example_binary())
        .env_clear()
        .envs([("KAFKA_EVENTS_DESCRIBE", "yaml"), ("SERVICE_NAME", "order-service")])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("KAFKA_EVENTS_DESCRIBE") && error.contains("`yaml` is not `json` or `asyncapi`"), "{error}");
}
