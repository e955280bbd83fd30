//! The one poison-tolerant lock: a panic while a mutex was held (a handler panic is caught and
//! the runtime goes on) must not turn every later lock into a second panic. The data behind
//! these mutexes stays consistent across a panic (counters, tables replaced whole), so the
//! guard is taken as it is.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, whether or not a panic poisoned it.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
