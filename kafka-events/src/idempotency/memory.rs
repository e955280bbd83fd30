//! The in-memory store: bounded, per process. For tests and for a single instance that accepts
//! forgetting on restart (and past its capacity, the oldest ids).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::{Claim, IdempotencyStore, PendingClaim, StoreFuture};

/// Remembers the last `capacity` processed ids (of all scopes) in memory.
///
/// It survives nothing: after a restart, or once an id is older than the last `capacity`, a
/// redelivered event is processed again. Use [`PostgresStore`](super::PostgresStore) (feature
/// `postgres`) where that matters.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    states: HashMap<Key, State>,
    /// Processed ids, oldest first: evicted beyond `capacity`.
    done: VecDeque<Key>,
    capacity: usize,
}

type Key = (String, String);

#[derive(Debug)]
enum State {
    /// Claimed by a handling in progress; waiters are woken when it commits or aborts.
    InFlight(Arc<Notify>),
    Done,
}

impl MemoryStore {
    /// A store remembering up to `capacity` processed ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        let inner = Inner { states: HashMap::new(), done: VecDeque::new(), capacity: capacity.max(1) };
        Self { inner: Arc::new(Mutex::new(inner)) }
    }

    /// How many processed ids it remembers now.
    pub fn len(&self) -> usize {
        lock(&self.inner).done.len()
    }

    /// Whether it remembers none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl IdempotencyStore for MemoryStore {
    fn claim<'a>(&'a self, scope: &'a str, ids: &'a [String]) -> StoreFuture<'a, Claim> {
        Box::pin(async move {
            // Built as ids are claimed, so a claim dropped half-way releases what it took.
            let mut pending = MemoryClaim { inner: self.inner.clone(), claimed: Vec::new(), settled: false };
            let mut fresh = Vec::with_capacity(ids.len());
            for id in ids {
                let key = (scope.to_string(), id.clone());
                loop {
                    let notify = {
                        let mut inner = lock(&self.inner);
                        match inner.states.get(&key) {
                            None => {
                                inner.states.insert(key.clone(), State::InFlight(Arc::new(Notify::new())));
                                pending.claimed.push(key.clone());
                                fresh.push(true);
                                break;
                            }
                            Some(State::Done) => {
                                fresh.push(false);
                                break;
                            }
                            Some(State::InFlight(notify)) => notify.clone(),
                        }
                    };
                    let notified = notify.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    // Settled between the unlock and `enable`: look again rather than wait.
                    let settled = !matches!(lock(&self.inner).states.get(&key), Some(State::InFlight(n)) if Arc::ptr_eq(n, &notify));
                    if !settled {
                        notified.await;
                    }
                }
            }
            Ok(Claim { fresh, pending: Box::new(pending) })
        })
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

struct MemoryClaim {
    inner: Arc<Mutex<Inner>>,
    claimed: Vec<Key>,
    settled: bool,
}

impl MemoryClaim {
    fn settle(&mut self, commit: bool) {
        self.settled = true;
        let mut inner = lock(&self.inner);
        for key in self.claimed.drain(..) {
            let previous = if commit {
                inner.done.push_back(key.clone());
                inner.states.insert(key, State::Done)
            } else {
                inner.states.remove(&key)
            };
            if let Some(State::InFlight(notify)) = previous {
                notify.notify_waiters();
            }
        }
        while inner.done.len() > inner.capacity {
            if let Some(oldest) = inner.done.pop_front() {
                inner.states.remove(&oldest);
            }
        }
    }
}

impl PendingClaim for MemoryClaim {
    fn commit(mut self: Box<Self>) -> StoreFuture<'static, ()> {
        self.settle(true);
        Box::pin(async { Ok(()) })
    }

    fn abort(mut self: Box<Self>) -> StoreFuture<'static, ()> {
        self.settle(false);
        Box::pin(async { Ok(()) })
    }
}

impl Drop for MemoryClaim {
    fn drop(&mut self) {
        if !self.settled {
            self.settle(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_string()).collect()
    }

    #[tokio::test]
    async fn committed_ids_are_duplicates_aborted_ones_are_not() {
        let store = MemoryStore::new(10);
        let claim = store.claim("s", &ids(&["a", "b"])).await.unwrap();
        assert_eq!(claim.fresh, [true, true]);
        claim.pending.commit().await.unwrap();
        let claim = store.claim("s", &ids(&["a", "c"])).await.unwrap();
        assert_eq!(claim.fresh, [false, true]);
        claim.pending.abort().await.unwrap();
        let claim = store.claim("s", &ids(&["c"])).await.unwrap();
        assert_eq!(claim.fresh, [true], "an aborted claim leaves no record");
        drop(claim);
        assert_eq!(store.claim("other", &ids(&["a"])).await.unwrap().fresh, [true], "scopes are separate");
        assert_eq!(store.len(), 2);
    }

    #[tokio::test]
    async fn a_second_claim_waits_for_the_first() {
        let store = MemoryStore::new(10);
        use futures_util::FutureExt;
        let first = store.claim("s", &ids(&["a"])).await.unwrap();
        let second_ids = ids(&["a"]);
        let mut second = store.claim("s", &second_ids);
        assert!((&mut second).now_or_never().is_none(), "waits while the first claim is pending");
        first.pending.commit().await.unwrap();
        assert_eq!(second.await.unwrap().fresh, [false], "then sees it processed");
    }

    #[tokio::test]
    async fn capacity_evicts_the_oldest() {
        let store = MemoryStore::new(2);
        for id in ["a", "b", "c"] {
            store.claim("s", &ids(&[id])).await.unwrap().pending.commit().await.unwrap();
        }
        assert_eq!(store.len(), 2);
        assert_eq!(store.claim("s", &ids(&["a", "b", "c"])).await.unwrap().fresh, [true, false, false]);
    }
}
