//! Background workers for a step's independent parts: a backend hands a
//! job (bytes in, bytes out) to a dynamic background worker that runs this
//! library's code in a process of its own, on another core, in its own
//! transaction, connected to the same database as the same user, while the
//! backend goes on with the rest of the step.
//!
//! The job's input and output travel in a dynamic shared memory segment the
//! backend creates (freed with its transaction, whatever happens). The
//! backend waits for the worker in 10 ms slices with a cancel check between
//! them; dropped before the worker ended (an error, a cancel), the job
//! terminates it. A worker that fails, dies or finds its output too big
//! reports no output, and the caller does the part itself: a worker only
//! ever saves time. How many a step may start is `golden360.build_workers`.

use pgrx::bgworkers::{BackgroundWorkerBuilder, BgWorkerStartTime};
use pgrx::pg_sys;
use std::ffi::CString;

extern "C-unwind" {
    /// PostgreSQL's SIGTERM handler for backends (postgres.c): it sets
    /// ProcDiePending, which the next cancel check turns into a FATAL exit.
    /// Declared here, unwrapped, because a signal handler is called by the
    /// kernel, not through pgrx's error boundary.
    #[link_name = "die"]
    fn postgres_die(signal: std::ffi::c_int);
}

/// Where a job stands, in the segment's first word.
const RUNNING: u32 = 0;
const DONE: u32 = 1;
const OUTPUT_TOO_BIG: u32 = 2;

/// The segment's header, then the input, then room for the output.
#[repr(C)]
struct Header {
    state: u32,
    database: pg_sys::Oid,
    user: pg_sys::Oid,
    input_len: u64,
    output_capacity: u64,
    output_len: u64,
}

/// A job running (or done) in a background worker.
pub struct Job {
    segment: *mut pg_sys::dsm_segment,
    handle: *mut pg_sys::BackgroundWorkerHandle,
    ended: bool,
}

impl Job {
    /// Run `function` (a `serve` entry point this library exports) in a
    /// background worker, with `input` and room for `output_capacity` bytes
    /// of output. None when no worker slot is free.
    pub fn start(function: &str, name: &str, input: &[u8], output_capacity: usize) -> Option<Job> {
        let size = std::mem::size_of::<Header>() + input.len() + output_capacity;
        // SAFETY: a fresh segment of `size` bytes, owned by the current
        // resource owner (so released when the transaction ends, also on
        // error); the header and input are written inside it.
        let segment = unsafe {
            let segment = pg_sys::dsm_create(size, 0);
            let base = pg_sys::dsm_segment_address(segment) as *mut u8;
            base.cast::<Header>().write(Header {
                state: RUNNING,
                database: pg_sys::MyDatabaseId,
                user: pg_sys::GetUserId(),
                input_len: input.len() as u64,
                output_capacity: output_capacity as u64,
                output_len: 0,
            });
            std::ptr::copy_nonoverlapping(input.as_ptr(), base.add(std::mem::size_of::<Header>()), input.len());
            segment
        };
        // SAFETY: the segment was just created.
        let dsm_handle = unsafe { pg_sys::dsm_segment_handle(segment) };
        let builder = BackgroundWorkerBuilder::new(name)
            .set_type("golden360")
            .set_library("golden360")
            .set_function(function)
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(None)
            .set_argument(Some(pg_sys::Datum::from(dsm_handle)))
            // SAFETY: reading this backend's pid.
            .set_notify_pid(unsafe { pg_sys::MyProcPid });
        let mut worker: pg_sys::BackgroundWorker = (&builder).into();
        let mut handle: *mut pg_sys::BackgroundWorkerHandle = std::ptr::null_mut();
        // SAFETY: `worker` is a complete registration; PostgreSQL sets
        // `handle` when it returns true.
        if unsafe { pg_sys::RegisterDynamicBackgroundWorker(&mut worker, &mut handle) } {
            Some(Job { segment, handle, ended: false })
        } else {
            // SAFETY: nobody else attached to the segment.
            unsafe { pg_sys::dsm_detach(segment) };
            None
        }
    }

    fn header(&self) -> *mut Header {
        // SAFETY: the segment is attached while `self` lives.
        unsafe { pg_sys::dsm_segment_address(self.segment) as *mut Header }
    }

    /// Wait until the worker ended; its output if it finished the job.
    pub fn finish(mut self) -> Option<Vec<u8>> {
        loop {
            let mut pid: pg_sys::pid_t = 0;
            // SAFETY: `handle` came from RegisterDynamicBackgroundWorker.
            let status = unsafe { pg_sys::GetBackgroundWorkerPid(self.handle, &mut pid) };
            if status == pg_sys::BgwHandleStatus::BGWH_STOPPED || status == pg_sys::BgwHandleStatus::BGWH_POSTMASTER_DIED {
                break;
            }
            // SAFETY: waiting on this backend's own latch, which the
            // postmaster sets when the worker's state changes (notify_pid).
            unsafe {
                pg_sys::WaitLatch(
                    pg_sys::MyLatch,
                    (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
                    10,
                    pg_sys::PG_WAIT_EXTENSION,
                );
                pg_sys::ResetLatch(pg_sys::MyLatch);
            }
            pg_sys::check_for_interrupts!();
        }
        self.ended = true;
        // SAFETY: the worker has exited, so the header and output are
        // final; the output lies within the segment (the worker wrote at
        // most output_capacity bytes after the input).
        unsafe {
            let header = &*self.header();
            if header.state != DONE {
                return None;
            }
            let output = (self.header() as *const u8).add(std::mem::size_of::<Header>() + header.input_len as usize);
            Some(std::slice::from_raw_parts(output, header.output_len as usize).to_vec())
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: the handle (pallocated, freed with the step's memory) and
        // the segment are this job's; a worker still
        // running is told to stop (it may no longer attach to a segment the
        // backend has left, and it writes nothing but the segment).
        unsafe {
            if !self.ended {
                pg_sys::TerminateBackgroundWorker(self.handle);
            }
            pg_sys::dsm_detach(self.segment);
        }
    }
}

/// The worker's side, from a `#[pg_guard]` entry point: connect as the
/// backend's user to its database, and in one transaction turn the input
/// into the output. SIGTERM (the backend's Drop, or a shutdown) ends the
/// worker at its next cancel check, as it ends a backend.
pub fn serve(argument: pg_sys::Datum, job: impl FnOnce(&[u8]) -> Vec<u8>) {
    // SAFETY: a background worker's start: its signal handlers, then its
    // connection, then the segment whose handle the backend passed (it
    // outlives this worker: the backend waits for it or terminates it
    // before detaching). The transaction brackets the job's PostgreSQL
    // calls; the output is written within the segment's capacity.
    unsafe {
        pg_sys::pqsignal(pg_sys::SIGTERM as i32, Some(postgres_die));
        pg_sys::BackgroundWorkerUnblockSignals();
        let segment = pg_sys::dsm_attach(argument.value() as pg_sys::dsm_handle);
        if segment.is_null() {
            return; // the backend is gone
        }
        let base = pg_sys::dsm_segment_address(segment) as *mut u8;
        let header = base.cast::<Header>();
        pg_sys::BackgroundWorkerInitializeConnectionByOid((*header).database, (*header).user, 0);
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        let input_at = base.add(std::mem::size_of::<Header>());
        let input = std::slice::from_raw_parts(input_at, (*header).input_len as usize);
        let output = job(input);
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
        if output.len() as u64 > (*header).output_capacity {
            (*header).state = OUTPUT_TOO_BIG;
        } else {
            std::ptr::copy_nonoverlapping(output.as_ptr(), input_at.add((*header).input_len as usize), output.len());
            (*header).output_len = output.len() as u64;
            (*header).state = DONE;
        }
        pg_sys::dsm_detach(segment);
    }
}

/// Set a setting in this worker as the backend had it (the worker starts
/// from the server's configuration, not the backend's session).
pub fn adopt_setting(name: &str, value: &str) {
    let (Ok(name), Ok(value)) = (CString::new(name), CString::new(value)) else { return };
    // SAFETY: valid C strings for the call; a superuser-level session
    // setting, as the backend that started the job had it.
    unsafe {
        pg_sys::SetConfigOption(name.as_ptr(), value.as_ptr(), pg_sys::GucContext::PGC_SUSET, pg_sys::GucSource::PGC_S_SESSION)
    };
}
