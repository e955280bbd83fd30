//! SIGTERM at any moment ends the process within its bound, loses nothing and leaves both groups
//! empty — whatever happens to the process's log on the way out.
//!
//! The consumer is this test binary re-run as a child process (`signals_child`) that runs
//! `kafka_events::runtime::start`, as README's first program does, with both groups (`-main`,
//! and `-retry`: every id ending in 7 fails its first attempt and comes back through the retry
//! topic). Its stdout and stderr go to one pipe this process reads, to await what it logs.
//!
//! - The log reader goes away right after the child logs "shutdown signal received" (as a log
//!   shipper that ends, or `| grep -m1`, does): every later write of the child fails. With the
//!   runtime's default subscriber and with the `tracing_subscriber::fmt()` most applications
//!   install (which reports its own failed writes on stderr, and panics when that fails too).
//! - A soak of SIGTERMs at random moments — right after start-up, idle, while messages flow,
//!   during a rebalance with a second instance — with the `classic` and the `consumer` group
//!   protocol. `KAFKA_EVENTS_SOAK_SIGTERMS` sets how many (default 24; 100 for a long soak).
//!
//! Each exit must come within `KAFKA_SHUTDOWN_TIMEOUT` plus README's margin of the signal, with
//! status 0; both groups have no member afterwards (described by Kafka's Java admin client,
//! `tests/java/Groups.java`: librdkafka cannot describe `consumer`-protocol groups); at the end
//! every id produced has been handled (counted in the files the children write) and the main group's commits reach the end
//! of every partition.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{
    append_line, committed_offsets, config, create_topic, end_offsets, exit_within, group_members, handled_lines,
    produce_many, producer, signal, spawn_child_logged, unique, wait_lines, ChildGuard, ChildLog,
};
use kafka_events::prelude::*;
use kafka_events::GroupProtocol;
use serde::{Deserialize, Serialize};
use validator::Validate;

/// The child's `KAFKA_SHUTDOWN_TIMEOUT`.
const SHUTDOWN: Duration = Duration::from_secs(3);
/// README: from the signal to exit takes at most `KAFKA_SHUTDOWN_TIMEOUT` plus this.
const MARGIN: Duration = Duration::from_secs(5);
const PARTITIONS: i32 = 3;
/// How long a child may take to join its groups (a consumer-protocol join takes a few heartbeats).
const JOIN: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize, Deserialize, Validate)]
struct Beat {
    #[validate(length(min = 1))]
    id: String,
}

/// Records `id partition offset` in `SIGNALS_OUT` once handled; ids ending in 7 fail their
/// first attempt (retryable), so they are handled by the `-retry` group.
#[kafka_handler(topic = "signals", retry(max = 3, initial = "50ms", max_delay = "200ms", jitter = 0.0), dlq)]
async fn on_beat(event: Beat, ctx: MessageContext) -> Result<(), HandlerError> {
    if event.id.ends_with('7') && ctx.attempt() == 1 {
        return Err(HandlerError::retryable("ids ending in 7 fail their first attempt"));
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    append_line("SIGNALS_OUT", &event.id, ctx.partition(), ctx.offset())?;
    Ok(())
}

/// The child process: README's first program, until SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the signal tests as a child process"]
async fn signals_child() {
    let Ok(run) = std::env::var("SIGNALS_RUN") else { return };
    if std::env::var("SIGNALS_SUBSCRIBER").as_deref() == Ok("fmt") {
        // What most applications install: lines on stdout, its own write errors on stderr.
        tracing_subscriber::fmt().with_env_filter("info,librdkafka=warn").with_ansi(false).init();
    }
    let protocol = match std::env::var("SIGNALS_PROTOCOL").as_deref() {
        Ok("consumer") => GroupProtocol::Consumer,
        _ => GroupProtocol::Classic,
    };
    let config = config(&run, &["on_beat"])
        .with_group_protocol(protocol)
        .with_topic_provisioning(false)
        .with_shutdown_timeout(SHUTDOWN);
    // Installs the runtime's default subscriber unless one is installed already.
    let result = kafka_events::runtime::start(config).await;
    // Exits as `main` returning would, before the test harness reports on its stdout (the pipe
    // may be closed: the harness would fail then, not the program).
    if let Err(error) = result {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "Error: {error}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

/// One service: its topics, the file its instances write, the ids produced so far.
struct Service {
    run: String,
    protocol: &'static str,
    out: PathBuf,
    produced: BTreeSet<String>,
    next: usize,
}

impl Service {
    async fn new(name: &str, protocol: &'static str) -> Self {
        let run = unique(name);
        let topic = format!("{run}.signals");
        for topic in [topic.clone(), format!("{topic}.retry"), format!("{topic}.dlq")] {
            create_topic(&topic, PARTITIONS).await;
        }
        let out = std::env::temp_dir().join(format!("{run}.handled"));
        Self { run, protocol, out, produced: BTreeSet::new(), next: 0 }
    }

    fn topic(&self) -> String {
        format!("{}.signals", self.run)
    }

    fn group(&self, kind: &str) -> String {
        format!("{}-svc-{kind}", self.run)
    }

    /// Starts an instance; its log reader closes the pipe at `close_at`.
    fn spawn(&self, subscriber: &str, close_at: Option<&'static str>) -> Instance {
        let (child, log) = spawn_child_logged(
            "signals_child",
            &[
                ("SIGNALS_RUN", self.run.as_str()),
                ("SIGNALS_OUT", self.out.to_str().unwrap()),
                ("SIGNALS_PROTOCOL", self.protocol),
                ("SIGNALS_SUBSCRIBER", subscriber),
            ],
            close_at,
        );
        Instance { pid: child.id(), child: ChildGuard(Some(child)), log }
    }

    /// Produces `count` new ids.
    async fn produce(&mut self, count: usize) {
        let events: Vec<(String, Vec<u8>)> = (self.next..self.next + count)
            .map(|i| (format!("k{i}"), serde_json::to_vec(&Beat { id: format!("b{i}") }).unwrap()))
            .collect();
        self.next += count;
        self.produced.extend(events.iter().map(|(_, payload)| serde_json::from_slice::<Beat>(payload).unwrap().id));
        produce_many(&producer(), &self.topic(), &events).await;
    }

    fn handled(&self) -> BTreeSet<String> {
        handled_lines(&self.out).into_iter().map(|(id, _, _)| id).collect()
    }

    /// Waits until `count` of the ids produced so far have been handled.
    async fn wait_handled(&self, count: usize) {
        let produced = self.produced.clone();
        wait_lines(&[&self.out], &format!("{count} ids handled"), move |lines| {
            lines.iter().filter(|(id, _, _)| produced.contains(id)).map(|(id, _, _)| id).collect::<BTreeSet<_>>().len()
                >= count
        })
        .await;
    }

    /// Both groups have no member (asserted right after every instance exited: a member that
    /// did not leave stays until its session times out).
    fn assert_groups_empty(&self, phase: &str) {
        let (main, retry) = (self.group("main"), self.group("retry"));
        for (kind, (members, state)) in ["main", "retry"].iter().zip(group_members(&[&main, &retry])) {
            assert_eq!(members, 0, "{phase} ({}): group `{kind}` still has members (state {state})", self.protocol);
        }
    }

    /// The control for [`Service::assert_groups_empty`]: while an instance runs, the broker's
    /// description of each group (for either protocol) lists it.
    fn assert_groups_joined(&self) {
        let (main, retry) = (self.group("main"), self.group("retry"));
        for (kind, (members, state)) in ["main", "retry"].iter().zip(group_members(&[&main, &retry])) {
            assert!(members >= 1, "{} group `{kind}` lists no member while one runs (state {state})", self.protocol);
        }
    }

    /// A last instance handles whatever is left; then every id produced has been handled and
    /// the main group has committed every partition to its end.
    async fn assert_nothing_lost(&self) {
        let mut last = self.spawn("default", None);
        last.assigned(self).await;
        self.wait_handled(self.produced.len()).await;
        last.terminate("final").await;
        let handled = self.handled();
        let missing: Vec<&String> = self.produced.difference(&handled).collect();
        assert!(missing.is_empty(), "{}: {} ids never handled: {missing:?}", self.protocol, missing.len());
        let topic = self.topic();
        assert_eq!(
            committed_offsets(&self.group("main"), &topic, PARTITIONS),
            end_offsets(&topic, PARTITIONS),
            "{}: the main group committed every partition to its end",
            self.protocol
        );
        self.assert_groups_empty("final");
        let _ = std::fs::remove_file(&self.out);
    }
}

struct Instance {
    pid: u32,
    child: ChildGuard,
    log: ChildLog,
}

impl Drop for Instance {
    /// A test failing while this instance runs: its whole log, for the reader.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let path = std::env::temp_dir().join(format!("signals-{}.log", self.pid));
            if std::fs::write(&path, self.log.all()).is_ok() {
                eprintln!("log of instance {} in {path:?}", self.pid);
            }
        }
    }
}

impl Instance {
    /// Waits until the instance has joined both groups and holds partitions of each.
    async fn assigned(&mut self, service: &Service) {
        let mut waiting: Vec<String> = ["main", "retry"].map(|kind| service.group(kind)).into();
        while !waiting.is_empty() {
            let line = self.log.expect("partitions assigned group=", JOIN).await;
            waiting.retain(|group| !line.contains(&format!("group={group} ")));
        }
    }

    /// SIGTERM, then the exit within the bound with status 0; returns how long it took.
    async fn terminate(&mut self, phase: &str) -> Duration {
        self.stop(phase, false).await
    }

    /// [`Instance::terminate`], also accepting the runtime's abandoned close (status 1 and its
    /// error, still within the bound), which is counted in [`ABANDONED`]. For a member stopped
    /// in the middle of a rebalance: its LeaveGroup can go unanswered behind its own JoinGroup,
    /// which the coordinator parks until the round completes (README, "Shutdown").
    async fn terminate_mid_rebalance(&mut self, phase: &str) -> Duration {
        self.stop(phase, true).await
    }

    async fn stop(&mut self, phase: &str, may_abandon: bool) -> Duration {
        let child = self.child.0.take().expect("running");
        let signalled = Instant::now();
        signal(self.pid, "TERM");
        let status = exit_within(child, SHUTDOWN + MARGIN).await;
        let took = signalled.elapsed();
        if status.is_some_and(|s| s.success()) {
            return took;
        }
        if may_abandon && status.is_some_and(|s| s.code() == Some(1)) && self.log.all().contains(ABANDON_ERROR) {
            ABANDONED.fetch_add(1, Ordering::Relaxed);
            return took;
        }
        // The whole log, for the failure's reader (the message shows its end).
        let path = std::env::temp_dir().join(format!("signals-{}.log", self.pid));
        let _ = std::fs::write(&path, self.log.all());
        match status {
            Some(status) => panic!("{phase}: exit status {status:?}; log in {path:?}, its end:\n{}", self.log.tail()),
            None => panic!(
                "{phase}: still running {took:?} after SIGTERM (bound {:?}), killed; log in {path:?}, its end:\n{}",
                SHUTDOWN + MARGIN,
                self.log.tail()
            ),
        }
    }
}

/// What `runtime::start` returns when it had to abandon a consumer's close at the deadline.
const ABANDON_ERROR: &str = "abandoned at the shutdown deadline";

/// Closes abandoned at the deadline (accepted only mid-rebalance).
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// When in its life an instance gets its SIGTERM.
#[derive(Debug, Clone, Copy)]
enum Moment {
    /// Within 300 ms of subscribing, before or while it joins.
    StartUp,
    /// Joined, nothing to do.
    Idle,
    /// While messages flow (and retries wait in the retry topic).
    Flowing,
    /// While the group rebalances to give a second instance its share.
    Rebalance,
}

const MOMENTS: [Moment; 4] = [Moment::StartUp, Moment::Idle, Moment::Flowing, Moment::Rebalance];

/// Runs one SIGTERM at `moment`; returns how long each exit took.
async fn sigterm_at(service: &mut Service, moment: Moment) -> Vec<Duration> {
    let phase = format!("{moment:?}");
    let mut first = service.spawn("default", None);
    match moment {
        Moment::StartUp => {
            first.log.expect(&format!("subscribed group={}", service.group("main")), JOIN).await;
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..300))).await;
            vec![first.terminate(&phase).await]
        }
        Moment::Idle => {
            first.assigned(service).await;
            service.assert_groups_joined();
            vec![first.terminate(&phase).await]
        }
        Moment::Flowing => {
            first.assigned(service).await;
            let before = service.handled().len();
            service.produce(600).await;
            service.wait_handled(before + 60).await;
            vec![first.terminate(&phase).await]
        }
        Moment::Rebalance => {
            first.assigned(service).await;
            service.produce(300).await;
            let mut second = service.spawn("default", None);
            // Cooperative (classic) and broker-side (consumer) assignors both move partitions
            // from the first instance to the second: the first revokes some, and stops then.
            first.log.expect(&format!("partitions revoked group={}", service.group("main")), JOIN).await;
            let took = first.terminate_mid_rebalance(&phase).await;
            second.assigned(service).await;
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..500))).await;
            vec![took, second.terminate(&phase).await]
        }
    }
}

fn soak_count() -> usize {
    std::env::var("KAFKA_EVENTS_SOAK_SIGTERMS").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterms_at_random_moments_exit_within_the_bound_lose_nothing_and_leave_the_groups() {
    let seed = fastrand::u64(..);
    fastrand::seed(seed);
    let mut services = [Service::new("soakcl", "classic").await, Service::new("soakco", "consumer").await];
    let count = soak_count();
    let mut slowest = [Duration::ZERO; 4];
    println!("{count} SIGTERMs, seed {seed}");
    for i in 0..count {
        let service = &mut services[i % 2];
        let index = (i / 2 + fastrand::usize(0..MOMENTS.len())) % MOMENTS.len();
        let moment = MOMENTS[index];
        let took = sigterm_at(service, moment).await;
        service.assert_groups_empty(&format!("{moment:?}"));
        println!("{i:>3} {:<8} {:<9} exits after {took:.2?}", service.protocol, format!("{moment:?}"));
        slowest[index] = slowest[index].max(took.into_iter().max().unwrap_or_default());
    }
    for service in &services {
        service.assert_nothing_lost().await;
    }
    for (moment, took) in MOMENTS.iter().zip(slowest) {
        println!("slowest exit {moment:?}: {took:.2?} (bound {:?})", SHUTDOWN + MARGIN);
    }
    println!("closes abandoned at the deadline mid-rebalance: {}", ABANDONED.load(Ordering::Relaxed));
}

/// The reader of the process's log goes away right after the shutdown line, while messages are
/// in flight: the process still finishes them, commits, leaves both groups and exits in time.
async fn log_reader_gone_at_shutdown(protocol: &'static str, subscriber: &str) {
    let mut service = Service::new(&format!("closedlog{subscriber}"), protocol).await;
    let mut instance = service.spawn(subscriber, Some("shutdown signal received"));
    instance.assigned(&service).await;
    service.assert_groups_joined();
    service.produce(600).await;
    service.wait_handled(60).await;
    instance.terminate(&format!("log reader gone, {subscriber} subscriber")).await;
    service.assert_groups_empty("log reader gone");
    service.assert_nothing_lost().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_reader_gone_at_shutdown_does_not_hold_the_exit_with_the_default_subscriber() {
    log_reader_gone_at_shutdown("classic", "default").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_reader_gone_at_shutdown_does_not_hold_the_exit_with_an_application_fmt_subscriber() {
    log_reader_gone_at_shutdown("consumer", "fmt").await;
}
