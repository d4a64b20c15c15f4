//! Memory contexts for the layers' per-row work: a context whose
//! allocations last one row, and switching to a writer's batch context.
//! Either way the caller's context is current again when the call returns,
//! also when it unwinds with an error (the switch is undone in `Drop`).

use pgrx::{pg_sys, PgMemoryContexts};

/// `context` is current until this is dropped.
struct Switched {
    previous: pg_sys::MemoryContext,
}

impl Switched {
    /// # Safety
    /// `context` must be a live memory context that outlives the guard.
    unsafe fn to(context: pg_sys::MemoryContext) -> Switched {
        // SAFETY: the caller guarantees `context` is live.
        Switched { previous: unsafe { pg_sys::MemoryContextSwitchTo(context) } }
    }
}

impl Drop for Switched {
    fn drop(&mut self) {
        // SAFETY: `previous` was current when the guard was made, and the
        // contexts a step makes outlive its calls.
        unsafe { pg_sys::MemoryContextSwitchTo(self.previous) };
    }
}

/// Run `f` with `context` current.
///
/// # Safety
/// `context` must be a live memory context for the whole call.
pub(super) unsafe fn within<R>(context: pg_sys::MemoryContext, f: impl FnOnce() -> R) -> R {
    // SAFETY: the caller guarantees `context` is live.
    let _switched = unsafe { Switched::to(context) };
    f()
}

/// A memory context for one row's datums at a time.
pub struct RowContext(PgMemoryContexts);

impl RowContext {
    pub fn new(name: &str) -> RowContext {
        RowContext(PgMemoryContexts::new(name))
    }

    /// Run `f` with this context current, then free everything allocated in
    /// it. What `f` builds there must not outlive the call: it compares the
    /// datums, or hands them to a writer that copies them (`BulkInsert`).
    pub fn scoped<R>(&mut self, f: impl FnOnce() -> R) -> R {
        // SAFETY: the context is owned by `self`, so it lives for the call.
        let result = unsafe { within(self.0.value(), f) };
        // SAFETY: per this method's contract nothing allocated here is used
        // after `f` returned.
        unsafe { self.0.reset() };
        result
    }
}
