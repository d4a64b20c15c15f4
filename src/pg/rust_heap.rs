//! The Rust heap as PostgreSQL shows memory: a memory context named
//! `golden360 Rust heap`, a child of `TopMemoryContext`, whose figures are
//! the bytes `crate::memory` counts. `pg_backend_memory_contexts` lists it
//! in the session itself, and `pg_log_backend_memory_contexts(pid)` writes
//! it to the server log for any backend, a refresh running in another
//! session included, beside the contexts PostgreSQL's own work uses.
//!
//! *Choice:* the context accounts for the memory; it does not hand it out.
//! The bytes come from the system allocator, as before. Backing Rust's
//! allocations with palloc instead would copy a vector at every growth
//! (PostgreSQL 15 has no repalloc that returns NULL instead of raising an
//! ERROR, which an allocator must not do) and would keep freed small
//! chunks in the context for the backend's life. Nobody pallocs in it:
//! its allocation methods refuse.

use pgrx::pg_sys;
use std::ffi::{c_void, CStr};
use std::sync::atomic::{AtomicPtr, Ordering::Relaxed};

/// The name the context is listed under.
pub const NAME: &CStr = c"golden360 Rust heap";

static CONTEXT: AtomicPtr<pg_sys::MemoryContextData> = AtomicPtr::new(std::ptr::null_mut());

static METHODS: pg_sys::MemoryContextMethods = pg_sys::MemoryContextMethods {
    alloc: Some(refuse_alloc),
    free_p: Some(ignore_free),
    realloc: Some(refuse_realloc),
    reset: Some(nothing_to_reset),
    delete_context: Some(delete),
    get_chunk_space: Some(no_chunk_space),
    is_empty: Some(is_empty),
    stats: Some(stats),
};

/// Make the context, once per process (from `_PG_init`, where an ERROR of
/// the allocation is a plain ERROR).
pub fn register() {
    if !CONTEXT.load(Relaxed).is_null() {
        return;
    }
    // SAFETY: TopMemoryContext lives as long as the process; the node is
    // zeroed and sized for MemoryContextData, which MemoryContextCreate
    // fills in and links under its parent. METHODS is static.
    unsafe {
        let node = pg_sys::MemoryContextAllocZero(pg_sys::TopMemoryContext, std::mem::size_of::<pg_sys::MemoryContextData>())
            as pg_sys::MemoryContext;
        pg_sys::MemoryContextCreate(node, pg_sys::NodeTag::T_AllocSetContext, &METHODS, pg_sys::TopMemoryContext, NAME.as_ptr());
        CONTEXT.store(node, Relaxed);
    }
}

/// Set the context's `mem_allocated` (what MemoryContextMemAllocated sums)
/// to the bytes held now, whenever PostgreSQL asks for the context's stats:
/// nothing in PostgreSQL sums it otherwise, so the per-row safe points need
/// not keep it up to date.
fn publish(bytes: usize) {
    let context = CONTEXT.load(Relaxed);
    if !context.is_null() {
        // SAFETY: the node lives as long as the process, and a backend
        // runs one thread.
        unsafe { (*context).mem_allocated = bytes };
    }
}

unsafe extern "C-unwind" fn refuse_alloc(_: pg_sys::MemoryContext, _: pg_sys::Size) -> *mut c_void {
    // NULL is palloc's out-of-memory answer; nothing is ever made current here.
    std::ptr::null_mut()
}

unsafe extern "C-unwind" fn refuse_realloc(_: pg_sys::MemoryContext, _: *mut c_void, _: pg_sys::Size) -> *mut c_void {
    std::ptr::null_mut()
}

unsafe extern "C-unwind" fn ignore_free(_: pg_sys::MemoryContext, _: *mut c_void) {}

unsafe extern "C-unwind" fn nothing_to_reset(_: pg_sys::MemoryContext) {}

unsafe extern "C-unwind" fn no_chunk_space(_: pg_sys::MemoryContext, _: *mut c_void) -> pg_sys::Size {
    0
}

unsafe extern "C-unwind" fn is_empty(_: pg_sys::MemoryContext) -> bool {
    crate::memory::in_use() == 0
}

unsafe extern "C-unwind" fn delete(context: pg_sys::MemoryContext) {
    // Only at process exit, if ever: Rust frees its own memory.
    CONTEXT.store(std::ptr::null_mut(), Relaxed);
    // SAFETY: `register` pallocated the node in TopMemoryContext.
    unsafe { pg_sys::pfree(context.cast()) };
}

/// What `pg_backend_memory_contexts` and the memory-context log report:
/// the bytes held as one block with no free space, and, when printing, the
/// step's peak and the limit beside them.
unsafe extern "C-unwind" fn stats(
    context: pg_sys::MemoryContext,
    printfunc: pg_sys::MemoryStatsPrintFunc,
    passthru: *mut c_void,
    totals: *mut pg_sys::MemoryContextCounters,
    print_to_stderr: bool,
) {
    let held = crate::memory::in_use();
    publish(held);
    if let Some(print) = printfunc {
        let line = format!(
            "{held} bytes held by Rust; peak of the last step {}; golden360.memory_limit {}\0",
            crate::memory::peak(),
            crate::ops::memory_limit_bytes()
        );
        // SAFETY: PostgreSQL's own printer, called as its contexts call it,
        // with a NUL-terminated line that outlives the call.
        unsafe { print(context, passthru, line.as_ptr().cast(), print_to_stderr) };
    }
    if !totals.is_null() {
        // SAFETY: PostgreSQL passes its counters to add to, or NULL.
        unsafe {
            (*totals).nblocks += 1;
            (*totals).totalspace += held;
        }
    }
}
