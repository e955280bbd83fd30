//! Child processes: a test binary re-run as a consumer instance, its output files, its end.

use std::time::Duration;

use super::eventually;

/// Kills the child process when dropped, so a failing test leaves no consumer behind.
pub struct ChildGuard(pub Option<std::process::Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A child process's logs: to stderr (inherited by the test), `warn` unless `RUST_LOG` says.
pub fn child_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Re-runs this test binary as a child process that runs only the ignored test `child_test`,
/// with `envs` set (the child reads them to know what to do).
pub fn spawn_child(child_test: &str, envs: &[(&str, &str)]) -> std::process::Child {
    spawn_child_with_stderr(child_test, envs, std::process::Stdio::inherit())
}

/// [`spawn_child`] with the child's stderr (its log) sent to `stderr`.
pub fn spawn_child_with_stderr(
    child_test: &str,
    envs: &[(&str, &str)],
    stderr: std::process::Stdio,
) -> std::process::Child {
    let mut command = std::process::Command::new(std::env::current_exe().expect("test binary"));
    command
        .args([child_test, "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .stdout(std::process::Stdio::null())
        .stderr(stderr);
    for (key, value) in envs {
        command.env(key, value);
    }
    command.spawn().expect("spawn child")
}

/// Appends one `id partition offset` line to the file named by `$var` (one write of a short
/// line to an O_APPEND file, so concurrent lanes never interleave).
pub fn append_line(var: &str, id: &str, partition: i32, offset: i64) -> std::io::Result<()> {
    use std::io::Write;
    let path = std::env::var(var).map_err(std::io::Error::other)?;
    let line = format!("{id} {partition} {offset}\n");
    std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(line.as_bytes())
}

/// Complete lines written so far to `path`: `(id, partition, offset)`.
pub fn handled_lines(path: &std::path::Path) -> Vec<(String, i32, i64)> {
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

/// Waits (checking every 10 ms, up to 120 s) until `done` holds for the lines of `paths`. The
/// children write these files; there is no event to await across processes.
pub async fn wait_lines(paths: &[&std::path::PathBuf], what: &str, done: impl Fn(&[(String, i32, i64)]) -> bool) {
    eventually(what, Duration::from_secs(120), || async {
        let all: Vec<_> = paths.iter().flat_map(|p| handled_lines(p)).collect();
        if done(&all) {
            Ok(())
        } else {
            Err(format!("{} lines so far", all.len()))
        }
    })
    .await
}

/// Sends SIGTERM to `child` and waits for it to exit.
pub async fn terminate(mut child: std::process::Child) -> std::process::ExitStatus {
    let status =
        std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill -TERM");
    assert!(status.success());
    tokio::task::spawn_blocking(move || child.wait()).await.unwrap().expect("wait")
}
