//! Operations: the `golden360.*` settings (GUCs). Every tunable the
//! extension reads is declared here, with its default and who may change it.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::PostgresGucEnum;
use std::ffi::CString;
use std::path::PathBuf;

/// `golden360.data_dir`: when set, ingestion reads only below this directory.
/// Superuser-only, so the role being confined cannot lift its own fence.
static DATA_DIR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `golden360.max_record_bytes`: a CSV record longer than this is rejected
/// (into bronze.rejected_rows, with a capped copy) instead of buffered:
/// what ingestion holds in memory for one record never exceeds it.
/// Superuser-only: it bounds a backend's memory.
static MAX_RECORD_BYTES: GucSetting<i32> = GucSetting::<i32>::new(1 << 20);

/// `golden360.memory_limit` (kB): the most Rust heap one step (an ingest,
/// a silver or a gold refresh) may hold in a backend before it stops with
/// SQLSTATE 53200 (`memory.rs`). Superuser-only: it bounds a backend's
/// memory. The default holds scale 10 (about 1 GB for a full silver build)
/// with room to spare.
static MEMORY_LIMIT_KB: GucSetting<i32> = GucSetting::<i32>::new(4 << 20);

/// `golden360.helper_threads`: how many threads a step may run beside the
/// backend's own for work that touches no PostgreSQL state (`pg::helper`):
/// ingest parses and hashes each file ahead of the writer on one. 0 keeps
/// all work on the backend's thread. Superuser-only: it spends the server's
/// cores.
static HELPER_THREADS: GucSetting<i32> = GucSetting::<i32>::new(1);

/// `golden360.build_workers`: how many background workers a full build may
/// start (`pg::worker`): silver's sifts its biggest stand-alone table
/// (geolocation) in one while the backend builds the rest. 0: none.
/// Superuser-only: it spends the server's cores and worker slots
/// (max_worker_processes).
static BUILD_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(1);

/// `golden360.lock_timeout` (ms): how long a refresh waits for any lock
/// before it fails with SQLSTATE 55P03 naming the session in its way.
static LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// `golden360.incremental_limit`: how many times the rows silver has seen
/// new batches may hold for refresh_silver to apply them in place. Applying
/// in place costs about what a rebuild costs per row, but only for the new
/// rows (an unchanged re-delivered row costs its comparison); a rebuild
/// reads all of bronze, history included, and makes gold recompute
/// everyone. A daily full export re-delivers up to all of it (geolocation
/// included) on its first day and less after; beyond twice as much, a
/// rebuild is cheaper and holds less in memory.
static INCREMENTAL_LIMIT: GucSetting<f64> = GucSetting::<f64>::new(2.0);

/// `golden360.quality_gate`: what a failed quality threshold does to a run.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum QualityGate {
    /// The run fails and the layer keeps its previous contents.
    #[name = c"error"]
    Error,
    /// The run completes; the check is recorded as failed and a WARNING raised.
    #[name = c"warn"]
    Warn,
}

static QUALITY_GATE: GucSetting<QualityGate> = GucSetting::<QualityGate>::new(QualityGate::Error);

/// LTV segment thresholds on total_spend (BRL): VIP > vip; High >= high and
/// <= vip; Medium >= medium and < high; Low below.
static LTV_VIP_ABOVE: GucSetting<f64> = GucSetting::<f64>::new(5000.0);
static LTV_HIGH_FROM: GucSetting<f64> = GucSetting::<f64>::new(1000.0);
static LTV_MEDIUM_FROM: GucSetting<f64> = GucSetting::<f64>::new(200.0);

/// The segment of a total spend under the current settings.
pub fn ltv_segment(spend: f64) -> &'static str {
    if spend > LTV_VIP_ABOVE.get() {
        "VIP"
    } else if spend >= LTV_HIGH_FROM.get() {
        "High"
    } else if spend >= LTV_MEDIUM_FROM.get() {
        "Medium"
    } else {
        "Low"
    }
}

pub fn lock_timeout_ms() -> i32 {
    LOCK_TIMEOUT_MS.get()
}

pub fn memory_limit_bytes() -> usize {
    usize::try_from(MEMORY_LIMIT_KB.get()).unwrap_or(4 << 20).saturating_mul(1024)
}

pub fn build_workers() -> usize {
    usize::try_from(BUILD_WORKERS.get()).unwrap_or(0)
}

pub fn helper_threads() -> usize {
    usize::try_from(HELPER_THREADS.get()).unwrap_or(0)
}

pub fn max_record_bytes() -> usize {
    usize::try_from(MAX_RECORD_BYTES.get()).unwrap_or(1 << 20)
}

pub fn register_settings() {
    GucRegistry::define_int_guc(
        c"golden360.max_record_bytes",
        c"Longest CSV record golden360.ingest_bronze stores; a longer one goes to bronze.rejected_rows.",
        c"Bounds the memory one record may take while it is parsed (an unterminated quote, say).",
        &MAX_RECORD_BYTES,
        1024,
        1 << 30,
        GucContext::Suset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"golden360.build_workers",
        c"Background workers a golden360 full build may start (silver: geolocation's pass 1 beside the other tables).",
        c"0 runs all of a build in the backend. Each takes a max_worker_processes slot while it runs.",
        &BUILD_WORKERS,
        0,
        8,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"golden360.helper_threads",
        c"Threads a golden360 step may run beside the backend's own (ingest: parsing and hashing a file ahead of the writer).",
        c"0 runs all of a step on the backend's thread.",
        &HELPER_THREADS,
        0,
        64,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"golden360.lock_timeout",
        c"How long refresh_silver, refresh_gold and run_pipeline wait for a lock before failing (SQLSTATE 55P03).",
        c"The error names the session holding the lock and what it is doing.",
        &LOCK_TIMEOUT_MS,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"golden360.memory_limit",
        c"Most Rust heap one golden360 step may hold in a backend.",
        c"A step that needs more stops with SQLSTATE 53200 and keeps nothing; golden360.rust_memory() shows the peak.",
        &MEMORY_LIMIT_KB,
        1024,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_float_guc(
        c"golden360.incremental_limit",
        c"How many times the rows silver has seen new batches may hold for refresh_silver to apply them in place.",
        c"Bigger batches make refresh_silver rebuild silver from all of bronze; 0 always rebuilds.",
        &INCREMENTAL_LIMIT,
        0.0,
        1e6,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"golden360.quality_gate",
        c"What a failed quality threshold does: error (fail the run, keep the previous data) or warn.",
        c"Thresholds are in golden360.quality_thresholds; results in golden360.quality_checks.",
        &QUALITY_GATE,
        GucContext::Userset,
        GucFlags::default(),
    );
    for (name, description, setting) in [
        (c"golden360.ltv_vip_above", c"total_spend above which a person is VIP.", &LTV_VIP_ABOVE),
        (c"golden360.ltv_high_from", c"total_spend from which a person is High (up to the VIP threshold).", &LTV_HIGH_FROM),
        (c"golden360.ltv_medium_from", c"total_spend from which a person is Medium (below High).", &LTV_MEDIUM_FROM),
    ] {
        GucRegistry::define_float_guc(
            name,
            description,
            c"Used by golden360.refresh_gold() for gold.unified_customer_360.ltv_segment.",
            setting,
            0.0,
            1e12,
            GucContext::Userset,
            GucFlags::default(),
        );
    }
    GucRegistry::define_string_guc(
        c"golden360.data_dir",
        c"Directory that golden360.ingest_bronze may read from (empty: any absolute path).",
        c"When set, source directories and files must resolve (after following symlinks and '..') \
          to a path inside it.",
        &DATA_DIR,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// The confinement root, if `golden360.data_dir` is set to a non-empty value.
pub fn data_dir() -> Option<PathBuf> {
    DATA_DIR
        .get()
        .and_then(|dir| dir.into_string().ok())
        .filter(|dir| !dir.trim().is_empty())
        .map(PathBuf::from)
}

#[pgrx::pg_schema]
pub mod golden360 {
    use crate::error::raise;
    use pgrx::prelude::*;

    /// Raise a clear error when called inside BEGIN ... COMMIT: `what`
    /// commits as it goes (so a failed run stays recorded), which PostgreSQL
    /// only allows for a CALL that is a transaction of its own.
    #[pg_extern(volatile, parallel_unsafe)]
    fn assert_outside_transaction_block(what: &str) {
        if crate::pg::snapshot::in_transaction_block() {
            raise(
                PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
                format!("{what} cannot run inside a transaction block"),
                None,
                &format!("Run CALL {what} on its own, not between BEGIN and COMMIT."),
            );
        }
    }
}

/// Settings for the plpgsql procedures. Reading a golden360 setting from
/// SQL needs the library loaded (which defines it): calling these loads it.
#[pgrx::pg_schema]
pub mod golden360_internal {
    use pgrx::prelude::*;

    /// `golden360.lock_timeout`, in milliseconds.
    #[pg_extern(stable, parallel_safe)]
    fn lock_timeout_ms() -> i32 {
        super::lock_timeout_ms()
    }
}
