//! Helper threads inside a backend, for work that touches no PostgreSQL
//! state (hashing and parsing a file). PostgreSQL is single-threaded: only
//! the backend's own thread may call into it, and its signal handlers
//! (cancel, terminate, timeouts, latches) must run there. So a helper is
//! spawned with every signal blocked (it inherits the mask it was spawned
//! under, which is then restored), and the backend waits for it in short
//! slices, checking for a cancel between them, so `pg_cancel_backend` takes
//! effect however long the helper's work is.
//!
//! How many a step may use is `golden360.helper_threads` (`ops`).

use crate::error::raise;
use pgrx::{pg_sys, PgSqlErrorCode};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::{Scope, ScopedJoinHandle};
use std::time::Duration;

/// Raise a pending cancel or terminate here, on the backend's thread.
pub fn check_for_interrupts() {
    pg_sys::check_for_interrupts!();
}

/// Sets its flag when dropped, so that the helpers reading it stop however
/// the backend's side ends: done, failed or cancelled.
pub struct Stop<'a>(pub &'a AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

/// How long the backend waits for a helper between two cancel checks.
const SLICE: Duration = Duration::from_millis(10);

/// The backend thread's signal mask, blocked whole until dropped.
struct SignalsBlocked {
    previous: libc::sigset_t,
}

impl SignalsBlocked {
    fn now() -> SignalsBlocked {
        // SAFETY: plain sigset manipulation on locals; pthread_sigmask only
        // changes this thread's mask, and the previous one is kept to restore.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous);
            SignalsBlocked { previous }
        }
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask `now` saved, on the same thread.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut()) };
    }
}

/// Start `work` on a helper thread of `scope`, with every signal blocked
/// in it. Fails with 53000 if the system has no thread to give.
pub fn spawn<'scope, 'env, T: Send + 'scope>(
    scope: &'scope Scope<'scope, 'env>,
    name: &str,
    work: impl FnOnce() -> T + Send + 'scope,
) -> ScopedJoinHandle<'scope, T> {
    let spawned = {
        let _blocked = SignalsBlocked::now();
        std::thread::Builder::new().name(name.to_string()).spawn_scoped(scope, work)
    };
    spawned.unwrap_or_else(|e| {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_RESOURCES,
            format!("could not start a golden360 helper thread ({name}): {e}"),
            None,
            "SET golden360.helper_threads = 0 runs every step on the backend's own thread.",
        )
    })
}

/// The next message from a helper, or None once it hung up; a cancel
/// raises its ERROR while waiting.
pub fn receive<T>(from: &Receiver<T>) -> Option<T> {
    loop {
        match from.recv_timeout(SLICE) {
            Ok(message) => return Some(message),
            Err(RecvTimeoutError::Timeout) => {
                pg_sys::check_for_interrupts!();
            }
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// What the helper returned, once it has; a cancel raises its ERROR while
/// waiting, and a helper that panicked fails the step with XX000.
pub fn join<T>(helper: ScopedJoinHandle<'_, T>) -> T {
    while !helper.is_finished() {
        pg_sys::check_for_interrupts!();
        std::thread::sleep(Duration::from_millis(1));
    }
    let name = helper.thread().name().unwrap_or("helper").to_string();
    helper.join().unwrap_or_else(|_| {
        raise(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("the golden360 helper thread {name} failed"),
            None,
            "Nothing of this step was kept. SET golden360.helper_threads = 0 runs it without helpers.",
        )
    })
}
