//! What each scenario reports besides throughput: handler latency percentiles (hdrhistogram),
//! CPU time of the whole process (getrusage) and its peak resident memory (sampled from
//! /proc/self/statm every 2 ms while the scenario runs).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Handler latencies of one scenario, in microseconds.
pub struct Latencies(OnceLock<Mutex<Histogram<u64>>>);

impl Latencies {
    pub const fn new() -> Self {
        Self(OnceLock::new())
    }
    fn histogram(&self) -> &Mutex<Histogram<u64>> {
        self.0.get_or_init(|| Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram")))
    }
    pub fn record(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).clamp(1, 60_000_000);
        self.histogram().lock().unwrap().record(micros).expect("in bounds");
    }
    /// (p50, p99, mean) in microseconds.
    pub fn summary(&self) -> (u64, u64, f64) {
        let h = self.histogram().lock().unwrap();
        (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.mean())
    }
}

/// Messages handled by one scenario and the window from its first handler call to its last,
/// kept in atomics (nanoseconds since the first call's clock reading): a lock per message would
/// add to the figure a cost B0's loop does not have.
pub struct Meter {
    pub handled: AtomicU64,
    base: OnceLock<Instant>,
    first: AtomicU64,
    last: AtomicU64,
    pub latency: Latencies,
}

impl Meter {
    pub const fn new() -> Self {
        Self {
            handled: AtomicU64::new(0),
            base: OnceLock::new(),
            first: AtomicU64::new(u64::MAX),
            last: AtomicU64::new(0),
            latency: Latencies::new(),
        }
    }
    /// Nanoseconds from the base (the first reading any call gave) to `at`.
    fn since_base(&self, at: Instant) -> u64 {
        let base = *self.base.get_or_init(|| at);
        u64::try_from(at.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
    }
    /// A handler call began at `started` and succeeded now.
    pub fn succeeded(&self, started: Instant) {
        let now = Instant::now();
        self.latency.record(now - started);
        self.first.fetch_min(self.since_base(started), Ordering::Relaxed);
        self.last.fetch_max(self.since_base(now), Ordering::Relaxed);
        self.handled.fetch_add(1, Ordering::Release);
    }
    /// A handler call began at `started` and failed (counts towards the window only).
    pub fn failed(&self, started: Instant) {
        self.first.fetch_min(self.since_base(started), Ordering::Relaxed);
    }
    pub fn window(&self) -> Duration {
        let (first, last) = (self.first.load(Ordering::Acquire), self.last.load(Ordering::Acquire));
        assert!(first <= last, "handled");
        Duration::from_nanos(last - first)
    }
}

/// CPU time (user + system) this process has used so far.
pub fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a whole `rusage` into the pointer on success (checked).
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0, "getrusage");
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Resident memory of this process now, in bytes.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// CPU time and resident memory over one scenario.
pub struct Probe {
    cpu_start: Duration,
    rss_start: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<()>,
}

/// What a probe saw.
pub struct Usage {
    pub cpu: Duration,
    pub rss_start: u64,
    pub rss_peak: u64,
}

impl Probe {
    pub fn start() -> Self {
        let rss_start = rss_bytes();
        let peak = Arc::new(AtomicU64::new(rss_start));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Self { cpu_start: cpu_time(), rss_start, peak, stop, sampler }
    }
    pub fn stop(self) -> Usage {
        let cpu = cpu_time() - self.cpu_start;
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.join().unwrap();
        Usage { cpu, rss_start: self.rss_start, rss_peak: self.peak.load(Ordering::Relaxed).max(rss_bytes()) }
    }
}
