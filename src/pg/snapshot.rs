//! Seeing one's own writes: an incremental refresh reads the tables it
//! has just changed (a child table's reference rule looks up the parent
//! rows written a moment ago). `OwnWritesVisible` pushes a private copy of
//! the active snapshot, which keeps the statement's view of every other
//! transaction, and `advance` moves its command id past the writes so far.
//! Also the transaction's start time, which stamps what a refresh writes.

use pgrx::pg_sys;

pub use pg_sys::TimestampTz;

pub struct OwnWritesVisible {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl OwnWritesVisible {
    pub fn push() -> OwnWritesVisible {
        // SAFETY: a statement is running, so there is an active snapshot to
        // copy; the copy is popped in Drop.
        unsafe { pg_sys::PushCopiedSnapshot(pg_sys::GetActiveSnapshot()) };
        OwnWritesVisible { _not_send: std::marker::PhantomData }
    }

    /// Make every write so far visible to the scans that follow.
    pub fn advance(&self) {
        // SAFETY: the active snapshot is this guard's private copy, which
        // UpdateActiveSnapshotCommandId requires.
        unsafe {
            pg_sys::CommandCounterIncrement();
            pg_sys::UpdateActiveSnapshotCommandId();
        }
    }
}

/// When the current transaction began (what `now()` returns).
pub fn transaction_started_at() -> TimestampTz {
    // SAFETY: reads the backend's transaction state; no arguments.
    unsafe { pg_sys::GetCurrentTransactionStartTimestamp() }
}

/// Whether the current statement runs inside BEGIN ... COMMIT (a CALL
/// that commits as it goes cannot).
pub fn in_transaction_block() -> bool {
    // SAFETY: reads the backend's transaction state; no arguments.
    unsafe { pg_sys::IsTransactionBlock() }
}

impl Drop for OwnWritesVisible {
    fn drop(&mut self) {
        // On an error the transaction's abort unwinds the snapshot stack.
        if !std::thread::panicking() {
            // SAFETY: pops the copy pushed in `push`; scans are balanced, so
            // it is on top.
            unsafe { pg_sys::PopActiveSnapshot() };
        }
    }
}
