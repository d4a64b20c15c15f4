//! Bronze: lands the nine Olist CSV files unmodified, idempotently, with an
//! audit trail. Owns `golden360.ingest_bronze`, `golden360.source_files`, the
//! tables of schema `bronze`, `golden360.bronze_batches` and the idempotency
//! index `golden360.bronze_files`.
//!
//! One call is one batch and one transaction's worth of work: every check
//! (privileges, confinement, completeness, headers, hashes) runs before the
//! first row is written, and any error afterwards rolls the whole batch back.

mod csv;
mod loader;
mod source;
#[cfg(any(test, feature = "pg_test"))]
mod tests;

use crate::error::raise;
use olist_model::SOURCE_FILES;
use crate::pg::owner::AsExtensionOwner;
use pgrx::prelude::*;
use pgrx::{JsonB, PgSqlErrorCode};
use serde_json::json;

/// Ingestions lock the idempotency index in this mode (self-conflicting,
/// and compatible with readers), so two concurrent calls cannot both decide
/// a file is new: the second waits, then skips. Only the owner may take it.
const INGEST_LOCK: &str = "LOCK TABLE golden360.bronze_files IN SHARE ROW EXCLUSIVE MODE";

/// Per-file result of an ingestion, as returned to the caller.
struct FileResult {
    file_name: &'static str,
    table: &'static str,
    sha256: String,
    bytes: u64,
    rows: i64,
    rejected: i64,
    status: &'static str,
    /// The batch that holds this content (this one, or an earlier one).
    loaded_in: i64,
}

/// The SQL-facing functions, in schema `golden360`.
#[pg_schema]
pub mod golden360 {
    use super::*;

    /// The nine files golden360 reads, their bronze tables and header columns.
    #[pg_extern(immutable, parallel_safe)]
    fn source_files() -> TableIterator<'static, (name!(file_name, String), name!(table_name, String), name!(columns, Vec<String>))> {
        TableIterator::new(SOURCE_FILES.iter().map(|f| {
            (f.file_name.to_string(), f.table.to_string(), f.columns.iter().map(|c| c.to_string()).collect())
        }))
    }

    /// ingest_bronze's path rule, for callers that check a directory before
    /// any ingestion (golden360.schedule_pipeline).
    #[pg_extern(immutable, parallel_safe)]
    fn assert_absolute_source_dir(source_dir: Option<&str>) {
        source::require_absolute(source_dir);
    }

    /// Ingest the Olist CSV files of `source_dir` into bronze as one batch.
    #[pg_extern(volatile, parallel_unsafe)]
    fn ingest_bronze(source_dir: &str, allow_partial: default!(bool, false)) -> TableIterator<
        'static,
        (
            name!(file_name, String),
            name!(sha256, String),
            name!(bytes, i64),
            name!(rows, i64),
            name!(status, String),
            name!(batch_id, i64),
            name!(rejected, i64),
        ),
    > {
        // The caller's right to read server files, checked as the caller;
        // everything after runs as the extension's owner, the only role
        // that may write bronze and its audit trail.
        source::require_read_privilege();
        crate::memory::step_started();
        let caller = Spi::get_one::<String>("SELECT current_user::text").ok().flatten().unwrap_or_default();
        let owner = AsExtensionOwner::enter();
        let dir = source::SourceDir::open(source_dir);
        let (present, missing) = dir.inventory();
        if !missing.is_empty() && (!allow_partial || present.is_empty()) {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_FILE,
                format!("{} is missing {} of the nine Olist files", dir.real.display(), missing.len()),
                Some(format!("missing: {}", missing.join(", "))),
                if present.is_empty() {
                    "None of the Olist files is there: check the directory."
                } else {
                    "Add the missing files, or load the others with golden360.ingest_bronze(dir, allow_partial => true)."
                },
            );
        }

        Spi::run(INGEST_LOCK).unwrap_or_else(|e| spi_failed(e));
        let (batch_id, started_at) = Spi::get_two::<i64, TimestampWithTimeZone>(
            "SELECT nextval('golden360.bronze_batch_seq'), clock_timestamp()",
        )
        .ok()
        .and_then(|(id, at)| Some((id?, at?)))
        .unwrap_or_else(|| raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "could not start a bronze batch", None, ""));

        // Every header is checked and every file hashed before anything loads,
        // so a bad fifth file costs seconds, not a rolled-back load.
        for (source, handle) in &present {
            source::check_header(source, &handle.real, &mut loader::records(handle));
        }
        let hashes = source::sha256_files(&present.iter().map(|(_, handle)| handle).collect::<Vec<_>>());
        let planned: Vec<_> =
            present.iter().zip(hashes).map(|((source, handle), (sha256, bytes))| (source, handle, sha256, bytes)).collect();

        let lineage = loader::Lineage { batch_id, ingested_at: started_at.into_datum().expect("a timestamptz datum") };
        let results: Vec<FileResult> = planned
            .into_iter()
            .map(|(source, handle, sha256, bytes)| match known_file(&sha256) {
                Some((loaded_in, rows, rejected)) => FileResult {
                    file_name: source.file_name,
                    table: source.table,
                    sha256,
                    bytes,
                    rows,
                    rejected,
                    status: "skipped_duplicate",
                    loaded_in,
                },
                None => {
                    let loaded = loader::load(source, handle, &sha256, &lineage);
                    FileResult {
                        file_name: source.file_name,
                        table: source.table,
                        sha256: loaded.sha256,
                        bytes: loaded.bytes,
                        rows: loaded.rows,
                        rejected: loaded.rejected,
                        status: "loaded",
                        loaded_in: batch_id,
                    }
                }
            })
            .collect();

        record_batch(batch_id, &dir.real.display().to_string(), started_at, allow_partial, &missing, &results, &caller);
        // Summarise the block ranges just filled in each table's BRIN index
        // on _batch_id, so that an incremental silver refresh reads this
        // batch's ranges, not every range never summarised (the pages were
        // just written: reading them again costs little).
        for r in results.iter().filter(|r| r.status == "loaded") {
            Spi::run(&format!(
                "SELECT pg_catalog.brin_summarize_new_values('bronze.{}_by_batch'::pg_catalog.regclass)",
                r.table
            ))
            .unwrap_or_else(|e| spi_failed(e));
        }
        drop(owner);
        TableIterator::new(results.into_iter().map(move |r| {
            (r.file_name.to_string(), r.sha256, r.bytes as i64, r.rows, r.status.to_string(), batch_id, r.rejected)
        }))
    }
}

/// (batch, rows, rejected) of an earlier load of this exact content.
fn known_file(sha256: &str) -> Option<(i64, i64, i64)> {
    Spi::get_three_with_args::<i64, i64, i64>(
        "SELECT batch_id, rows, rejected FROM golden360.bronze_files WHERE sha256 = $1",
        &[sha256.into()],
    )
    .ok()
    .and_then(|(batch, rows, rejected)| Some((batch?, rows?, rejected?)))
}

/// Write the batch's audit row (with its metadata.json) and index the files
/// it loaded by SHA-256.
fn record_batch(
    batch_id: i64,
    source_dir: &str,
    started_at: TimestampWithTimeZone,
    allow_partial: bool,
    missing: &[&str],
    results: &[FileResult],
    database_user: &str,
) {
    let files: Vec<_> = results
        .iter()
        .map(|r| {
            json!({
                "name": r.file_name, "table": format!("bronze.{}", r.table), "sha256": r.sha256,
                "bytes": r.bytes, "rows": r.rows, "rejected": r.rejected, "status": r.status,
                "loaded_in_batch": r.loaded_in,
            })
        })
        .collect();
    let metadata = json!({
        "batch_id": batch_id,
        "source_dir": source_dir,
        "extension_version": env!("CARGO_PKG_VERSION"),
        "allow_partial": allow_partial,
        "missing_files": missing,
        "files": files,
        "database_user": database_user,
    });
    Spi::run_with_args(
        "INSERT INTO golden360.bronze_batches (batch_id, source_dir, started_at, finished_at, metadata) \
         VALUES ($1, $2, $3, clock_timestamp(), $4)",
        &[batch_id.into(), source_dir.into(), started_at.into(), JsonB(metadata).into()],
    )
    .unwrap_or_else(|e| spi_failed(e));
    for r in results.iter().filter(|r| r.status == "loaded") {
        Spi::run_with_args(
            "INSERT INTO golden360.bronze_files (sha256, batch_id, file_name, table_name, bytes, rows, rejected) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                r.sha256.as_str().into(),
                batch_id.into(),
                r.file_name.into(),
                r.table.into(),
                (r.bytes as i64).into(),
                r.rows.into(),
                r.rejected.into(),
            ],
        )
        .unwrap_or_else(|e| spi_failed(e));
    }
}

#[track_caller]
fn spi_failed(e: pgrx::spi::SpiError) -> ! {
    crate::error::spi_failed("golden360 bronze bookkeeping", e, "")
}
