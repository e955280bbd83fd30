//! Retry policies: how often a failed message is tried again and how long to wait in between.

use std::time::Duration;

/// How the delay grows from one attempt to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Backoff {
    /// `initial × 2^(retry − 1)`, capped at `max_delay`.
    Exponential,
    /// `initial × retry`, capped at `max_delay`.
    Linear,
    /// Always `initial`.
    Fixed,
}

impl Backoff {
    /// Parses `exponential`, `linear` or `fixed`.
    pub fn parse(name: &str) -> Option<Self> {
        crate::names::by_name(name)
    }
}

/// Where a failed message waits for its next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RetryMode {
    /// Republished to `<topic>.retry` and retried by the `${SERVICE_NAME}-retry` group when due.
    /// The partition keeps flowing; a retried message may be handled after later messages with
    /// the same key. The default.
    Topic,
    /// Retried by its lane after the backoff; the partition waits (order per partition is kept).
    InPlace,
}

impl RetryMode {
    /// Parses `topic` or `in_place`.
    pub fn parse(name: &str) -> Option<Self> {
        crate::names::by_name(name)
    }
}

/// Upper bound on `max`: more retries than this is almost certainly a typo.
pub const MAX_RETRIES: u32 = kafka_events_rules::MAX_RETRIES;

/// A retry policy: at most `max` retries after the first attempt, spaced by `backoff`.
///
/// The default is 3 retries through the retry topic, exponential from 200 ms, capped at 30 s,
/// with 10 % jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 means a failure is final at once.
    pub max: u32,
    /// How the delay grows.
    pub backoff: Backoff,
    /// Delay before the first retry.
    pub initial: Duration,
    /// Upper bound on any delay.
    pub max_delay: Duration,
    /// Each delay is moved at random by up to this fraction (0.0 to 1.0) either way, so that
    /// messages that failed together do not all come back at once.
    pub jitter: f64,
    /// Where the message waits.
    pub mode: RetryMode,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max: 3,
            backoff: Backoff::Exponential,
            initial: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            jitter: 0.1,
            mode: RetryMode::Topic,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based).
    pub fn delay(&self, retry: u32) -> Duration {
        let retry = retry.max(1);
        let delay = match self.backoff {
            Backoff::Fixed => self.initial,
            Backoff::Linear => self.initial.saturating_mul(retry),
            Backoff::Exponential => {
                let factor = 1u32.checked_shl(retry - 1).unwrap_or(u32::MAX);
                self.initial.saturating_mul(factor)
            }
        };
        delay.min(self.max_delay)
    }

    /// [`delay`](Self::delay) moved at random by up to `jitter` either way (never past `max_delay`).
    pub fn jittered_delay(&self, retry: u32) -> Duration {
        let delay = self.delay(retry);
        if self.jitter <= 0.0 {
            return delay;
        }
        let factor = 1.0 + self.jitter * (fastrand::f64() * 2.0 - 1.0);
        delay.mul_f64(factor.max(0.0)).min(self.max_delay)
    }

    /// Every problem with this policy, as readable sentences.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max > MAX_RETRIES {
            problems.push(format!("retry `max = {}` exceeds the limit of {MAX_RETRIES}", self.max));
        }
        if self.initial > self.max_delay {
            problems.push(format!(
                "retry `initial` ({}) is longer than `max_delay` ({})",
                humantime::format_duration(self.initial),
                humantime::format_duration(self.max_delay)
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            problems.push(format!("retry `jitter = {}` must be between 0.0 and 1.0", self.jitter));
        }
        if self.max_delay.is_zero() && self.max > 0 {
            problems.push("retry `max_delay` is zero".into());
        }
        problems
    }
}

/// A retry policy as written in `#[kafka_handler(retry(...))]`; unset fields take the
/// configured defaults.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrySpec {
    /// `max = N`
    pub max: Option<u32>,
    /// `backoff = "…"`
    pub backoff: Option<Backoff>,
    /// `initial = "…"`, in milliseconds
    pub initial_ms: Option<u64>,
    /// `max_delay = "…"`, in milliseconds
    pub max_delay_ms: Option<u64>,
    /// `jitter = 0.1`
    pub jitter: Option<f64>,
    /// `mode = "topic" | "in_place"`
    pub mode: Option<RetryMode>,
}

impl RetrySpec {
    /// Fills unset fields from `defaults`.
    pub fn resolve(&self, defaults: &RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            max: self.max.unwrap_or(defaults.max),
            backoff: self.backoff.unwrap_or(defaults.backoff),
            initial: self.initial_ms.map(Duration::from_millis).unwrap_or(defaults.initial),
            max_delay: self.max_delay_ms.map(Duration::from_millis).unwrap_or(defaults.max_delay),
            jitter: self.jitter.unwrap_or(defaults.jitter),
            mode: self.mode.unwrap_or(defaults.mode),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_configuration_writes_them() {
        assert_eq!(Backoff::parse("exponential"), Some(Backoff::Exponential));
        assert_eq!(Backoff::parse("linear"), Some(Backoff::Linear));
        assert_eq!(Backoff::parse("fixed"), Some(Backoff::Fixed));
        assert_eq!(Backoff::parse("Linear"), None);
        assert_eq!(RetryMode::parse("topic"), Some(RetryMode::Topic));
        assert_eq!(RetryMode::parse("in_place"), Some(RetryMode::InPlace));
        assert_eq!(RetryMode::parse("in-place"), None);
        use crate::describe_format::DescribeFormat;
        assert_eq!(DescribeFormat::parse("asyncapi"), Some(DescribeFormat::AsyncApi));
        assert_eq!(DescribeFormat::parse("json"), Some(DescribeFormat::Json));
        assert_eq!(DescribeFormat::parse("yaml"), None);
    }

    fn policy(backoff: Backoff) -> RetryPolicy {
        RetryPolicy {
            max: 5,
            backoff,
            initial: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            jitter: 0.0,
            mode: RetryMode::InPlace,
        }
    }

    #[test]
    fn exponential_doubles_and_caps() {
        let p = policy(Backoff::Exponential);
        let delays: Vec<u128> = (1..=6).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.delay(200), Duration::from_millis(1000), "no overflow on huge attempt numbers");
    }

    #[test]
    fn linear_and_fixed() {
        let linear: Vec<u128> = (1..=4).map(|n| policy(Backoff::Linear).delay(n).as_millis()).collect();
        assert_eq!(linear, [100, 200, 300, 400]);
        assert_eq!(policy(Backoff::Fixed).delay(9), Duration::from_millis(100));
    }

    #[test]
    fn problems_are_listed() {
        let p = RetryPolicy {
            max: 101,
            backoff: Backoff::Fixed,
            initial: Duration::from_secs(2),
            max_delay: Duration::from_secs(1),
            jitter: 0.0,
            mode: RetryMode::Topic,
        };
        let problems = p.problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(RetryPolicy { jitter: 1.5, ..RetryPolicy::default() }.problems()[0].contains("jitter"));
        assert!(problems[0].contains("exceeds the limit of 100"));
        assert!(problems[1].contains("longer than `max_delay`"));
        assert!(RetryPolicy::default().problems().is_empty());
    }

    #[test]
    fn spec_resolves_against_defaults() {
        let spec = RetrySpec {
            max: Some(7),
            backoff: None,
            initial_ms: Some(5),
            max_delay_ms: None,
            jitter: None,
            mode: Some(RetryMode::InPlace),
        };
        let p = spec.resolve(&RetryPolicy::default());
        assert_eq!(p.max, 7);
        assert_eq!(p.backoff, Backoff::Exponential);
        assert_eq!(p.initial, Duration::from_millis(5));
        assert_eq!(p.max_delay, Duration::from_secs(30));
        assert_eq!(p.mode, RetryMode::InPlace);
        assert_eq!(p.jitter, 0.1);
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_the_cap() {
        let p = RetryPolicy { jitter: 0.2, ..policy(Backoff::Fixed) };
        for _ in 0..1000 {
            let d = p.jittered_delay(1).as_millis();
            assert!((80..=120).contains(&d), "{d}");
        }
        let capped = RetryPolicy { jitter: 1.0, ..policy(Backoff::Exponential) };
        assert!((0..100).all(|_| capped.jittered_delay(10) <= capped.max_delay));
    }
}
