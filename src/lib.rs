//! Golden 360: a medallion pipeline inside PostgreSQL. Nine Olist CSV files
//! become bronze (raw, audited), silver (typed, validated) and gold (one
//! golden record per customer), served over HTTP by PostgREST.
//!
//! This file only wires the modules and the SQL files together.

use pgrx::prelude::*;

::pgrx::pg_module_magic!(name, version);

mod bronze;
mod error;
mod gold;
mod keys;
mod memory;
mod ops;
mod pg;
mod silver;
#[cfg(any(test, feature = "pg_test"))]
mod testing;

extension_sql_file!("../sql/bootstrap.sql", name = "bootstrap", bootstrap);
extension_sql_file!("../sql/bronze_tables.sql", name = "bronze_tables", requires = [bronze::golden360::source_files]);
extension_sql_file!(
    "../sql/silver.sql",
    name = "silver",
    requires = [
        "bronze_tables",
        ops::golden360_internal::lock_timeout_ms,
        silver::golden360_internal::silver_tables,
        silver::golden360_internal::silver_columns,
        silver::golden360_internal::quarantine_columns,
        silver::golden360_internal::silver_change_columns,
        silver::golden360::silver_rule_list,
        silver::golden360_internal::build_silver,
        silver::golden360_internal::apply_silver
    ]
);

extension_sql_file!(
    "../sql/gold.sql",
    name = "gold",
    requires = [
        "silver",
        gold::golden360::golden_id,
        gold::golden360::ltv_segment,
        gold::golden360_internal::build_gold,
        gold::golden360_internal::gold_columns,
        gold::golden360_internal::gold_cross_checks,
        gold::golden360_internal::rfm_rank_columns
    ]
);

extension_sql_file!(
    "../sql/pipeline.sql",
    name = "pipeline",
    requires = [
        "gold",
        ops::golden360::assert_outside_transaction_block,
        bronze::golden360::assert_absolute_source_dir
    ]
);
extension_sql_file!("../sql/api.sql", name = "api", requires = ["pipeline"]);
// Last: who may execute what. Everything not granted there is the owner's.
extension_sql_file!("../sql/grants.sql", name = "grants", finalize);

/// Every Rust allocation is counted, and bounded by golden360.memory_limit.
#[global_allocator]
static ALLOCATOR: memory::Accounting = memory::Accounting;

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    pg::rust_heap::register();
    ops::register_settings();
    #[cfg(golden360_coverage)]
    coverage::write_profiles_where_the_report_reads();
}

/// Coverage builds only (scripts/coverage.sh): every backend that loads the
/// library writes its counters to the file the build was told, whatever
/// environment its server was started with.
#[cfg(golden360_coverage)]
mod coverage {
    extern "C" {
        fn __llvm_profile_set_filename(name: *const std::ffi::c_char);
    }
    const PROFILE: &str = concat!(env!("G360_COVERAGE_PROFILE"), "\0");

    pub fn write_profiles_where_the_report_reads() {
        // SAFETY: a static NUL-terminated pattern the profile runtime keeps.
        unsafe { __llvm_profile_set_filename(PROFILE.as_ptr().cast()) };
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
