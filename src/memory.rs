//! The Rust heap, accounted and bounded. The builds keep their maps, sort
//! records and candidate rows in Rust's allocator, outside PostgreSQL's
//! allocators, where a failed allocation aborts the backend (and so makes
//! the postmaster restart every session). This module counts every byte of
//! it in this backend, and `pg::rust_heap` lists the count among the
//! backend's memory contexts (`pg_backend_memory_contexts`,
//! `pg_log_backend_memory_contexts`) as `golden360 Rust heap`. The per-row safe points of the scans and the writers
//! (`check`) stop a step with SQLSTATE 53200 once it holds more than
//! `golden360.memory_limit`, long before the machine runs out: the error
//! unwinds the step, which frees what it held, and the transaction rolls
//! back as for any other error.

use crate::error::raise;
use pgrx::PgSqlErrorCode;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The system allocator, counting.
pub struct Accounting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

#[inline(always)]
fn grew(bytes: usize) {
    let now = IN_USE.fetch_add(bytes, Relaxed) + bytes;
    // A backend runs one thread: a plain store keeps the peak exact there
    // at a fraction of an atomic maximum's cost on every allocation.
    if now > PEAK.load(Relaxed) {
        PEAK.store(now, Relaxed);
    }
}

#[inline(always)]
fn shrank(bytes: usize) {
    IN_USE.fetch_sub(bytes, Relaxed);
}

// SAFETY: every call is forwarded to `System` with the caller's own
// arguments; the counters are only arithmetic beside it.
unsafe impl GlobalAlloc for Accounting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is System's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

/// Bytes the Rust heap holds in this backend now.
pub fn in_use() -> usize {
    IN_USE.load(Relaxed)
}

/// The most the Rust heap held since `step_started` (or the backend began).
pub fn peak() -> usize {
    PEAK.load(Relaxed)
}

/// A step (ingest, silver, gold) begins: its peak starts from what is held now.
pub fn step_started() {
    PEAK.store(in_use(), Relaxed);
}

/// A safe point: stop the step once the Rust heap holds more than
/// `golden360.memory_limit`.
#[inline(always)]
pub fn check() {
    let limit = crate::ops::memory_limit_bytes();
    let now = in_use();
    if now > limit {
        over_limit(now, limit);
    }
}

#[cold]
#[inline(never)]
fn over_limit(now: usize, limit: usize) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_OUT_OF_MEMORY,
        format!("golden360 needs more memory than golden360.memory_limit ({}) for this step", mib(limit)),
        Some(format!("The step held {} of Rust heap when it stopped; nothing it did is kept.", mib(now))),
        "Raise golden360.memory_limit (a superuser setting, e.g. ALTER SYSTEM SET golden360.memory_limit = '8GB'; \
         SELECT pg_reload_conf();) if the server has the memory, then run the step again.",
    )
}

fn mib(bytes: usize) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[pgrx::pg_schema]
pub mod golden360 {
    use pgrx::prelude::*;

    /// This session's Rust heap: bytes held now, the most held since the
    /// last refresh step began (after a CALL: that step's peak), and the
    /// limit (`golden360.memory_limit`).
    #[pg_extern(volatile, parallel_safe)]
    fn rust_memory() -> TableIterator<'static, (name!(in_use_bytes, i64), name!(peak_bytes, i64), name!(limit_bytes, i64))> {
        let as_i64 = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        TableIterator::once((as_i64(super::in_use()), as_i64(super::peak()), as_i64(crate::ops::memory_limit_bytes())))
    }
}
