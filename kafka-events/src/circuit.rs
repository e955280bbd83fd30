//! Circuit breakers, one per handler: after `failures` consecutive failed calls (retryable errors
//! or panics — the kind a dependency being down causes) the circuit opens. While it is open the
//! handler is not called: its lanes wait instead of burning retries, and stop reading their
//! partitions. After `reset` one message probes (half-open): success closes the circuit and the
//! lanes read on; failure opens it again for another `reset`.
//!
//! `#[kafka_handler(..., circuit(failures = 5, reset = "30s"))]` per handler;
//! `KAFKA_CIRCUIT_FAILURES` / `KAFKA_CIRCUIT_RESET` for every handler without one (off by
//! default).

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::sync::lock;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// When a circuit opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitPolicy {
    /// Consecutive failed calls that open the circuit.
    pub failures: u32,
    /// How long it stays open before one message probes.
    pub reset: Duration,
}

/// `circuit(...)` as written in the attribute; unset fields take the configured defaults.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitSpec {
    pub failures: Option<u32>,
    pub reset_ms: Option<u64>,
}

impl CircuitSpec {
    pub(crate) fn resolve(&self, default: CircuitPolicy) -> CircuitPolicy {
        CircuitPolicy {
            failures: self.failures.unwrap_or(default.failures),
            reset: self.reset_ms.map_or(default.reset, Duration::from_millis),
        }
    }
}

/// A circuit's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// No calls until the reset time has passed.
    Open,
    /// One probe call is running; the others wait for its result.
    HalfOpen,
}

/// One handler's circuit, as health reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CircuitHealth {
    /// The handler (`module::path::fn_name`).
    pub handler: String,
    /// Its topic.
    pub topic: String,
    /// The state now.
    pub state: CircuitState,
    /// Consecutive failed calls counted while closed.
    pub consecutive_failures: u32,
    /// How many times it opened since start.
    pub opened: u64,
    /// When it last changed state.
    #[serde(skip)]
    pub since: SystemTime,
}

/// What a call tells the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The handler succeeded.
    Success,
    /// A retryable error or a panic.
    Failure,
    /// Says nothing about the dependency (bad input, a permanent error).
    Neutral,
}

#[derive(Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// The breaker of one handler, shared by all its lanes.
#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    policy: CircuitPolicy,
    handler: String,
    topic: String,
    inner: Mutex<(Inner, SystemTime, u64)>,
    changed: watch::Sender<u64>,
    opened: prometheus_client::metrics::counter::Counter,
}

/// Permission to call the handler; `probe` when it is the half-open probe.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Permit {
    probe: bool,
}

impl CircuitBreaker {
    pub(crate) fn new(
        policy: CircuitPolicy,
        handler: &str,
        topic: &str,
        opened: prometheus_client::metrics::counter::Counter,
    ) -> Self {
        Self {
            policy,
            handler: handler.into(),
            topic: topic.into(),
            inner: Mutex::new((Inner::Closed { failures: 0 }, SystemTime::now(), 0)),
            changed: watch::channel(0).0,
            opened,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Inner, SystemTime, u64)> {
        lock(&self.inner)
    }

    fn set(&self, state: &mut (Inner, SystemTime, u64), inner: Inner) {
        state.0 = inner;
        state.1 = SystemTime::now();
        self.changed.send_modify(|v| *v += 1);
    }

    /// Waits until the handler may be called; `None` when `cancel` fires first.
    pub(crate) async fn admit(&self, cancel: &CancellationToken) -> Option<Permit> {
        let mut changes = self.changed.subscribe();
        loop {
            let wait_until = {
                let mut state = self.lock();
                match state.0 {
                    Inner::Closed { .. } => return Some(Permit { probe: false }),
                    Inner::Open { until } if Instant::now() >= until => {
                        self.set(&mut state, Inner::HalfOpen);
                        tracing::info!(handler = %self.handler, "circuit half-open: one message probes");
                        return Some(Permit { probe: true });
                    }
                    Inner::Open { until } => Some(until),
                    Inner::HalfOpen => None,
                }
            };
            changes.borrow_and_update();
            let sleep = async {
                match wait_until {
                    Some(until) => tokio::time::sleep_until(until).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return None,
                () = sleep => {}
                _ = changes.changed() => {}
            }
        }
    }

    /// Records what a call admitted by `permit` tells about the dependency.
    pub(crate) fn record(&self, permit: Permit, verdict: Verdict) {
        let mut state = self.lock();
        match (verdict, &state.0) {
            (Verdict::Success, Inner::Closed { failures: 0 }) => {}
            (Verdict::Success, Inner::Closed { .. }) => state.0 = Inner::Closed { failures: 0 },
            (Verdict::Success, _) => {
                tracing::info!(handler = %self.handler, "circuit closed: the probe succeeded");
                self.set(&mut state, Inner::Closed { failures: 0 });
            }
            (Verdict::Failure, Inner::Closed { failures }) => {
                let failures = failures + 1;
                if failures >= self.policy.failures {
                    self.open(&mut state, &format!("{failures} consecutive failures"));
                } else {
                    state.0 = Inner::Closed { failures };
                }
            }
            (Verdict::Failure, Inner::HalfOpen) if permit.probe => self.open(&mut state, "the probe failed"),
            // A call admitted before the circuit opened: it is open already.
            (Verdict::Failure, _) => {}
            // A probe that says nothing (bad input): the next message probes at once.
            (Verdict::Neutral, Inner::HalfOpen) if permit.probe => {
                self.set(&mut state, Inner::Open { until: Instant::now() })
            }
            (Verdict::Neutral, _) => {}
        }
    }

    fn open(&self, state: &mut (Inner, SystemTime, u64), why: &str) {
        tracing::warn!(
            handler = %self.handler,
            reset = %humantime::format_duration(self.policy.reset),
            "circuit opened after {why}: the handler is not called and its partitions are not read until the reset time"
        );
        state.2 += 1;
        self.opened.inc();
        self.set(state, Inner::Open { until: Instant::now() + self.policy.reset });
    }

    /// Open or half-open: its lanes do not read.
    pub(crate) fn blocks(&self) -> bool {
        !matches!(self.lock().0, Inner::Closed { .. })
    }

    pub(crate) fn health(&self) -> CircuitHealth {
        let state = self.lock();
        let (kind, failures) = match state.0 {
            Inner::Closed { failures } => (CircuitState::Closed, failures),
            Inner::Open { .. } => (CircuitState::Open, 0),
            Inner::HalfOpen => (CircuitState::HalfOpen, 0),
        };
        CircuitHealth {
            handler: self.handler.clone(),
            topic: self.topic.clone(),
            state: kind,
            consecutive_failures: failures,
            opened: state.2,
            since: state.1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, reset_ms: u64) -> CircuitBreaker {
        CircuitBreaker::new(
            CircuitPolicy { failures, reset: Duration::from_millis(reset_ms) },
            "h",
            "t",
            prometheus_client::metrics::counter::Counter::default(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_probes_after_reset_and_closes() {
        let b = breaker(3, 1000);
        let cancel = CancellationToken::new();
        for _ in 0..2 {
            let p = b.admit(&cancel).await.unwrap();
            b.record(p, Verdict::Failure);
        }
        let p = b.admit(&cancel).await.unwrap();
        b.record(p, Verdict::Success);
        assert_eq!(b.health().state, CircuitState::Closed, "a success resets the count");
        for _ in 0..3 {
            let p = b.admit(&cancel).await.unwrap();
            b.record(p, Verdict::Failure);
        }
        assert_eq!(b.health().state, CircuitState::Open);
        assert!(b.blocks());
        let started = tokio::time::Instant::now();
        let probe = b.admit(&cancel).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(1000), "the probe waits for the reset time");
        assert!(probe.probe);
        assert_eq!(b.health().state, CircuitState::HalfOpen);
        b.record(probe, Verdict::Failure);
        assert_eq!((b.health().state, b.health().opened), (CircuitState::Open, 2));
        let probe = b.admit(&cancel).await.unwrap();
        b.record(probe, Verdict::Success);
        assert_eq!(b.health().state, CircuitState::Closed);
        assert!(!b.blocks());
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_calls_are_cancellable() {
        let b = breaker(1, 60_000);
        let cancel = CancellationToken::new();
        let p = b.admit(&cancel).await.unwrap();
        b.record(p, Verdict::Failure);
        cancel.cancel();
        assert!(b.admit(&cancel).await.is_none());
    }
}
