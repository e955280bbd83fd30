//! Where a message's outcome is reported, once: the handler's metrics, the health board's stalled
//! partitions and the observer a test harness installs. Every path — a handled message, a
//! duplicate, a stall, a retry, a dead letter acknowledged after its publish — reports through
//! [`Sink::report`], so what one outcome changes is written in one place.

use std::sync::Arc;

use crate::error_kind::ErrorKind;
use crate::health::HealthBoard;
use crate::message::{Consumed, Origin};
use crate::metrics::{HandlerMetrics, Metrics};
use crate::observe::{self, Observer};
use crate::records::Reason;

/// What happened to a message.
#[derive(Debug)]
pub(crate) enum Report<'a> {
    /// The handler succeeded on attempt `attempts`.
    Handled { attempts: u32 },
    /// An `idempotent` handler skipped it: processed before.
    Duplicate,
    /// It will be tried again (in place or through the retry topic).
    Retrying,
    /// Its retry record was acknowledged: its partition goes on.
    RetryPublished,
    /// Its dead letter was acknowledged.
    DeadLettered { kind: ErrorKind, reason: &'a Reason, attempts: u32 },
    /// It failed and holds its partition (no `dlq`, or fenced); it is tried again later.
    Stalled { kind: ErrorKind, reason: &'a Reason },
    /// Its retry record or dead letter is refused for good: its partition is held at it and the
    /// publish is tried again later.
    Undeliverable { reason: &'a str },
}

/// The reporting end of one partition's processor.
pub(crate) struct Sink {
    status: Arc<HealthBoard>,
    /// The handler's metrics (none in a few unit-level set-ups).
    metrics: Option<HandlerMetrics>,
    /// The runtime's metrics (delivery failures are counted per topic).
    runtime: Arc<Metrics>,
    /// A test harness's observer; usually none.
    observer: Option<Observer>,
}

impl Sink {
    pub(crate) fn new(
        status: Arc<HealthBoard>,
        metrics: Option<HandlerMetrics>,
        runtime: Arc<Metrics>,
        observer: Option<Observer>,
    ) -> Self {
        Self { status, metrics, runtime, observer }
    }

    /// Reports what happened to `message` (as consumed: a message from the retry topic is held
    /// on its own partition there, and reported to the observer at its [`Origin`]).
    pub(crate) fn report(&self, message: &impl Consumed, report: Report<'_>) {
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        let observed = match report {
            Report::Handled { attempts } => {
                self.status.clear_stall(topic, partition, offset);
                Some(observe::Outcome::Handled { attempts })
            }
            Report::Duplicate => {
                self.status.clear_stall(topic, partition, offset);
                Some(observe::Outcome::Duplicate)
            }
            Report::Retrying => {
                self.metrics.as_ref().inspect(|m| m.retried());
                None
            }
            Report::RetryPublished => {
                self.status.clear_stall(topic, partition, offset);
                None
            }
            Report::DeadLettered { kind, reason, attempts } => {
                self.metrics.as_ref().inspect(|m| m.dead_lettered(kind.as_str()));
                self.status.clear_stall(topic, partition, offset);
                Some(observe::Outcome::DeadLettered { kind, reason: reason.to_string(), attempts })
            }
            Report::Stalled { kind, reason } => {
                self.status.stall(topic, partition, offset, kind, reason);
                Some(observe::Outcome::Stalled { kind, reason: reason.to_string() })
            }
            Report::Undeliverable { reason } => {
                self.status.stall(topic, partition, offset, ErrorKind::Undeliverable, reason);
                None
            }
        };
        if let (Some(observer), Some(outcome)) = (&self.observer, observed) {
            observer(Origin::of(message), outcome);
        }
    }

    /// Counts a publish the producer or broker refused (transient or not).
    pub(crate) fn delivery_failed(&self, topic: &str) {
        self.runtime.delivery_failed(topic);
    }
}
