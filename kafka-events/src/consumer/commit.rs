//! Committing finished offsets.
//!
//! A member's own committer thread commits every commit interval, so a coordinator that does
//! not answer (a frozen or failing broker: a commit can wait for `socket.timeout.ms`) never
//! stops the poll thread from polling, serving rebalances and reporting liveness. librdkafka
//! reports no result of a manual asynchronous commit to rust-rdkafka's event API, so the
//! committer commits synchronously, off the poll thread. A revocation and shutdown commit
//! synchronously themselves, holding the member's commit gate: the committer takes the same gate
//! before it reads the offsets to commit, so it never commits an older offset after them.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::error::KafkaError;

use super::context::MemberConsumer;
use super::member::Member;
use crate::sync::lock;

/// The thread that commits a member's finished offsets every interval.
pub(crate) struct Committer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Committer {
    pub(crate) fn start(
        consumer: Arc<MemberConsumer>,
        member: Arc<Member>,
        interval: Duration,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("kafka-events-commit-{}", member.group))
            .spawn(move || run(&consumer, &member, &stopped, interval))?;
        Ok(Self { stop, thread })
    }

    /// Stops the thread after the commit under way, if one is.
    pub(crate) fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

fn run(consumer: &MemberConsumer, member: &Member, stopped: &mpsc::Receiver<()>, interval: Duration) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
        let _gate = lock(&member.commit_gate);
        let offsets = lock(&member.lanes).committable();
        if offsets.is_empty() {
            continue;
        }
        match member.commit(consumer, &offsets) {
            Ok(()) => {}
            // A rebalance in progress rejects commits until the member has rejoined: expected
            // while instances come and go, and the revocation hook commits what it must.
            Err(error) if during_rebalance(&error) => {
                tracing::debug!(group = %member.group, %error, "commit deferred: the group is rebalancing")
            }
            Err(error) => {
                tracing::warn!(group = %member.group, %error, "commit failed; trying again at the next interval")
            }
        }
    }
}

/// The group is rebalancing: commits are refused until the member has rejoined.
fn during_rebalance(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::{IllegalGeneration, RebalanceInProgress};
    matches!(error.rdkafka_error_code(), Some(RebalanceInProgress | IllegalGeneration))
}
