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
    child_command(child_test, envs).stdout(std::process::Stdio::null()).stderr(stderr).spawn().expect("spawn child")
}

/// This test binary, to run only the ignored test `child_test`, with `envs` set.
fn child_command(child_test: &str, envs: &[(&str, &str)]) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().expect("test binary"));
    command.args([child_test, "--exact", "--ignored", "--nocapture", "--test-threads=1"]);
    for (key, value) in envs {
        command.env(key, value);
    }
    command
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
    signal(child.id(), "TERM");
    tokio::task::spawn_blocking(move || child.wait()).await.unwrap().expect("wait")
}

/// A child process's log (its stdout and stderr, one pipe as with `2>&1`), read line by line on
/// a thread of its own, so a test can await what the child says.
pub struct ChildLog {
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every line received so far, for failure messages.
    pub seen: Vec<String>,
}

impl ChildLog {
    /// Waits up to `timeout` for a line containing `needle` (counting lines already read past
    /// it, not before); returns it. `None` when the time ran out or the pipe closed first.
    pub async fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv()).await.ok()??;
            self.seen.push(line.clone());
            if line.contains(needle) {
                return Some(line);
            }
        }
    }

    /// [`ChildLog::wait_for`], panicking with the log when the line does not come.
    pub async fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        match self.wait_for(needle, timeout).await {
            Some(line) => line,
            None => panic!("the child did not log `{needle}` within {timeout:?}; its log:\n{}", self.tail()),
        }
    }

    /// Every line read so far and still queued.
    pub fn all(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// The last 60 lines of [`ChildLog::all`], for a failure message.
    pub fn tail(&mut self) -> String {
        self.all();
        let from = self.seen.len().saturating_sub(60);
        self.seen[from..].join("\n")
    }
}

/// [`spawn_child`] with the child's stdout and stderr in one pipe that this process reads. With
/// `close_at`, the reader stops at the first line containing it and closes the pipe — as a log
/// shipper that goes away, or `| grep -m1 …`, does — and every later write of the child fails.
/// `RUST_LOG` is not passed on: the child logs at the runtime's default level.
pub fn spawn_child_logged(
    child_test: &str,
    envs: &[(&str, &str)],
    close_at: Option<&'static str>,
) -> (std::process::Child, ChildLog) {
    use std::io::BufRead;
    let (reader, writer) = std::io::pipe().expect("pipe");
    let mut command = child_command(child_test, envs);
    command.env_remove("RUST_LOG").stdout(writer.try_clone().expect("pipe")).stderr(writer);
    let child = command.spawn().expect("spawn child");
    // The child holds the write ends now; this process's copies are dropped with `command`.
    drop(command);
    let (sender, lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(reader);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            let text = line.trim_end().to_string();
            let last = close_at.is_some_and(|at| text.contains(at));
            let _ = sender.send(text);
            if last {
                // Dropping the reader closes the pipe's last read end.
                return;
            }
            line.clear();
        }
    });
    (child, ChildLog { lines, seen: Vec::new() })
}

/// Sends `signal` (e.g. `TERM`) to the process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{signal} {pid}");
}

/// Waits up to `timeout` for `child` to exit (on a thread, so nothing polls); on time-out it is
/// killed with SIGKILL and `None` returned.
pub async fn exit_within(child: std::process::Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let pid = child.id();
    let (sender, exited) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut child = child;
        let _ = sender.send(child.wait());
    });
    match tokio::time::timeout(timeout, exited).await {
        Ok(status) => Some(status.expect("waiter").expect("wait")),
        Err(_) => {
            signal(pid, "KILL");
            None
        }
    }
}
