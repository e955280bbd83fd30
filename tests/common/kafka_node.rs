//! Apache Kafka nodes a test starts, kills, freezes and restarts itself (for broker failures
//! the suite's shared broker must not suffer): KRaft nodes formatted and run by
//! `scripts/kafka.sh`, on free loopback ports.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One KRaft node (broker + controller in one JVM).
pub struct KafkaNode {
    pub id: u32,
    pub dir: PathBuf,
    /// Its plaintext listener's port.
    pub port: u16,
    process: Option<Child>,
}

fn script() -> String {
    format!("{}/scripts/kafka.sh", env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl KafkaNode {
    fn log(&self) -> PathBuf {
        self.dir.join("kafka.log")
    }

    /// Starts the JVM (heap kept small: several may share the machine).
    pub fn start(&mut self) {
        let log = std::fs::File::create(self.log()).expect("node log");
        let process = Command::new(script())
            .args(["run", self.dir.to_str().unwrap()])
            .env("KAFKA_HEAP_OPTS", "-Xms128m -Xmx384m")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start a Kafka node");
        self.process = Some(process);
    }

    /// Waits until the node logs that it has started.
    pub async fn started(&mut self) {
        let (log, id) = (self.log(), self.id);
        super::eventually(&format!("Kafka node {id} to start"), Duration::from_secs(120), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let exited = self.process.as_mut().and_then(|p| p.try_wait().ok().flatten());
            async move {
                assert!(exited.is_none(), "Kafka node {id} exited: {exited:?}\n{text}");
                if text.contains("Kafka Server started") {
                    Ok(())
                } else {
                    Err("not yet".to_string())
                }
            }
        })
        .await;
    }

    /// SIGKILL: no controlled shutdown, no flush beyond what the OS already has.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().expect("kill -9");
            process.wait().expect("wait");
        }
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to the running JVM.
    pub fn signal(&self, signal: &str) {
        let pid = self.process.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }
}

impl Drop for KafkaNode {
    fn drop(&mut self) {
        if let Some(process) = self.process.as_ref() {
            // A frozen JVM must be thawed to die cleanly.
            let _ = Command::new("kill").args(["-CONT", &process.id().to_string()]).status();
        }
        self.kill();
    }
}

/// Formats `count` nodes forming one cluster under `root` and starts them; returns them and
/// their bootstrap list.
pub async fn cluster(root: &std::path::Path, count: usize) -> (Vec<KafkaNode>, String) {
    let ports: Vec<(u16, u16)> = (0..count).map(|_| (free_port(), free_port())).collect();
    let voters: Vec<String> = ports.iter().enumerate().map(|(i, (_, c))| format!("{}@127.0.0.1:{c}", i + 1)).collect();
    let voters = voters.join(",");
    let cluster_id = "a2Fma2EtZXZlbnRzLXRlc3Q"; // 16 bytes, base64url: one id for every node
    let mut nodes = Vec::new();
    for (i, (port, controller)) in ports.iter().enumerate() {
        let dir = root.join(format!("node{}", i + 1));
        let id = (i + 1) as u32;
        let status = Command::new(script())
            .args(["node", dir.to_str().unwrap(), &id.to_string(), &voters, &port.to_string(), &controller.to_string()])
            .env("KAFKA_CLUSTER_ID", cluster_id)
            .stdout(Stdio::null())
            .status()
            .expect("format a Kafka node");
        assert!(status.success(), "formatting node {id} failed");
        let mut node = KafkaNode { id, dir, port: *port, process: None };
        node.start();
        nodes.push(node);
    }
    for node in &mut nodes {
        node.started().await;
    }
    let bootstrap = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect::<Vec<_>>().join(",");
    (nodes, bootstrap)
}
