//! Surviving a panic: the one poison-tolerant lock, and [`contain`] for the code that must go on
//! after one.
//!
//! A panic while a mutex was held (a handler panic is caught and the runtime goes on) must not
//! turn every later lock into a second panic. The data behind these mutexes stays consistent
//! across a panic (counters, tables replaced whole), so the guard is taken as it is.
//!
//! A panic can come from code that is not ours: a log line is written by whatever `tracing`
//! subscriber the application installed, and `tracing_subscriber::fmt` panics when a write
//! fails and reporting that on stderr fails too (a closed log pipe). In a rebalance callback
//! that panic would leave the revocation unserved, and the consumer's close then waits for it
//! forever; in a callback librdkafka calls from C it would abort the process. Those callbacks,
//! and each step of a member's shutdown, run in [`contain`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, whether or not a panic poisoned it.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `f`; a panic in it ends `f` there and is swallowed (the panic hook has reported it),
/// so that the caller's next step runs. `None` when it panicked.
///
/// Only for code whose state stays consistent when cut short (each step of it does its work
/// before it logs, and every lock is [`lock`]).
pub(crate) fn contain<R>(f: impl FnOnce() -> R) -> Option<R> {
    catch_unwind(AssertUnwindSafe(f)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contained_panic_lets_the_caller_go_on_and_leaves_locks_usable() {
        let mutex = Mutex::new(1);
        let result = contain(|| {
            let _guard = lock(&mutex);
            panic!("a log write failed");
        });
        assert_eq!(result, None::<()>);
        assert_eq!(*lock(&mutex), 1, "the poisoned lock is still taken");
        assert_eq!(contain(|| 2), Some(2));
    }
}
