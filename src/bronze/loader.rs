//! Streaming CSV → bronze table, the way COPY does it but with lineage and
//! per-row rejection: records are parsed by the csv crate from a reader that
//! hashes as it goes and written through `bulk::BulkInsert`.
//!
//! Memory stays flat whatever the file size: one record buffer, one varlena
//! scratch buffer, and the bulk writer's per-batch memory context.

use super::source::{self, HashingReader};
use crate::bulk::{self, BulkInsert, RowBuf};
use crate::error::raise;
use crate::olist::SourceFile;
use pgrx::prelude::*;
use pgrx::{pg_sys, PgSqlErrorCode, PgTupleDesc};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A rejected record keeps at most this many raw bytes (bytea's limit is
/// 1 GB; a runaway unterminated quote can swallow the rest of a file).
const MAX_RAW_BYTES: u64 = 1 << 20;

/// Lineage stamped on every row of a batch.
pub struct Lineage {
    pub batch_id: i64,
    pub ingested_at: pg_sys::Datum,
}

/// What loading one file produced.
pub struct Loaded {
    pub rows: i64,
    pub rejected: i64,
    pub sha256: String,
    pub bytes: u64,
}

/// Where each attribute of the bronze table gets its value from.
#[derive(Clone, Copy)]
enum Column {
    Csv(usize),
    BatchId,
    SourceFile,
    RowNumber,
    IngestedAt,
    Dropped,
}

/// Load `path` into `bronze.<source.table>`. Fails (and so rolls the whole
/// batch back) on I/O errors or if the bytes parsed are not the bytes whose
/// SHA-256 was recorded before loading.
pub fn load(source: &SourceFile, path: &Path, expected_sha256: &str, lineage: &Lineage) -> Loaded {
    let mut target = BulkTarget::open(source);
    let mut reader = source::csv_reader(HashingReader::new(source::open(path)));
    source::check_header(source, path, &mut reader);
    // A second handle reads back the raw bytes of the rare rejected record.
    let raw_file = source::open(path);

    let source_file_datum = source.file_name.into_datum().expect("a text datum");
    let mut record = csv::ByteRecord::new();
    let mut row_number: i64 = 0;
    let mut rows: i64 = 0;
    let mut rejected: i64 = 0;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => source::io_error(path, e),
        }
        row_number += 1;
        match rejection(source, &record) {
            None => {
                target.push(&record, |column| match column {
                    Column::BatchId => lineage.batch_id.into(),
                    Column::SourceFile => source_file_datum,
                    Column::RowNumber => row_number.into(),
                    Column::IngestedAt => lineage.ingested_at,
                    Column::Csv(_) | Column::Dropped => unreachable!("filled by push"),
                });
                rows += 1;
            }
            Some(reason) => {
                let start = record.position().map(|p| (p.byte(), p.line())).unwrap_or((0, 0));
                let end = reader.position().byte();
                reject(source, &raw_file, path, lineage.batch_id, row_number, start, end, &reason);
                rejected += 1;
            }
        }
    }
    target.finish();

    let (sha256, bytes) = reader.into_inner().finish();
    if sha256 != expected_sha256 {
        raise(
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{} changed while it was being ingested", source.file_name),
            Some(format!("sha256 before loading: {expected_sha256}\nsha256 of the bytes loaded: {sha256}")),
            "Let the writer finish, then ingest again; nothing of this batch was loaded.",
        );
    }
    Loaded { rows, rejected, sha256, bytes }
}

/// Why a record cannot be stored as a bronze row, if it cannot.
fn rejection(source: &SourceFile, record: &csv::ByteRecord) -> Option<String> {
    if record.len() != source.columns.len() {
        return Some(format!(
            "wrong number of fields: expected {}, found {}",
            source.columns.len(),
            record.len()
        ));
    }
    let all = record.as_slice();
    if all.is_ascii() && !all.contains(&0) {
        return None; // the common case, checked in one pass over the bytes
    }
    for (field, column) in record.iter().zip(source.columns) {
        if std::str::from_utf8(field).is_err() {
            return Some(format!("invalid UTF-8 in {column}"));
        }
        if field.contains(&0) {
            return Some(format!("NUL byte in {column} (PostgreSQL text cannot hold it)"));
        }
    }
    None
}

/// Record a rejected record with its exact bytes (without its line ending).
#[allow(clippy::too_many_arguments)]
fn reject(
    source: &SourceFile,
    raw_file: &std::fs::File,
    path: &Path,
    batch_id: i64,
    row_number: i64,
    (start, start_line): (u64, u64),
    end: u64,
    reason: &str,
) {
    let mut raw = vec![0u8; end.saturating_sub(start).min(MAX_RAW_BYTES) as usize];
    raw_file.read_exact_at(&mut raw, start).unwrap_or_else(|e| source::io_error(path, e));
    // The parser consumes a CRLF's LF, and blank lines, at the start of the
    // next record: strip them, counting the lines they close.
    let lead = raw.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
    let line = start_line + raw[..lead].iter().filter(|&&b| b == b'\n').count() as u64;
    let mut raw = raw.split_off(lead);
    let mut reason = reason.to_string();
    if end - start > MAX_RAW_BYTES {
        reason.push_str(&format!(" (raw truncated to {MAX_RAW_BYTES} of {} bytes)", end - start));
    } else {
        while matches!(raw.last(), Some(b'\r' | b'\n')) {
            raw.pop();
        }
    }
    Spi::run_with_args(
        "INSERT INTO bronze.rejected_rows (batch_id, source_file, row_number, line_number, reason, raw) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            batch_id.into(),
            source.file_name.into(),
            row_number.into(),
            (line as i64).into(),
            reason.as_str().into(),
            raw.as_slice().into(),
        ],
    )
    .unwrap_or_else(|e| raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("recording a rejected row: {e}"), None, ""));
}

/// A bronze table opened for bulk insertion, with the recipe that turns a
/// CSV record and its lineage into the table's row.
struct BulkTarget {
    insert: BulkInsert,
    columns: Vec<Column>,
    row: RowBuf,
}

impl BulkTarget {
    fn open(source: &SourceFile) -> BulkTarget {
        let name = format!("bronze.{}", source.table);
        let relid = bulk::relation_oid("bronze", source.table).unwrap_or_else(|| missing_table(source));
        let insert = BulkInsert::open(relid, &name);
        let columns = map_columns(source, insert.tuple_desc());
        let row = RowBuf::new(columns.len());
        BulkTarget { insert, columns, row }
    }

    /// Buffer one row: CSV fields become text (heap_form_tuple copies them),
    /// lineage comes from `lineage`; a dropped column is NULL.
    fn push(&mut self, record: &csv::ByteRecord, lineage: impl Fn(Column) -> pg_sys::Datum) {
        let columns = &self.columns;
        self.row.build(|b| {
            for (i, column) in columns.iter().enumerate() {
                match *column {
                    Column::Csv(k) => b.text(i, record.get(k).unwrap_or_default()),
                    Column::Dropped => b.null(i),
                    other => b.datum(i, lineage(other)),
                }
            }
        });
        self.insert.push_row(&mut self.row);
    }

    fn finish(self) {
        self.insert.finish();
    }
}

/// Map the table's attributes to CSV positions and lineage, and insist the
/// table still has exactly the registry's columns.
fn map_columns(source: &SourceFile, tupdesc: pg_sys::TupleDesc) -> Vec<Column> {
    let desc = unsafe { PgTupleDesc::from_pg_unchecked(tupdesc) };
    let mut seen = vec![false; source.columns.len()];
    let columns: Vec<Column> = desc
        .iter()
        .map(|att| {
            if att.is_dropped() {
                return Column::Dropped;
            }
            let name = att.name();
            match name {
                "_batch_id" => Column::BatchId,
                "_source_file" => Column::SourceFile,
                "_row_number" => Column::RowNumber,
                "_ingested_at" => Column::IngestedAt,
                _ => match source.columns.iter().position(|c| *c == name) {
                    Some(k) => {
                        seen[k] = true;
                        Column::Csv(k)
                    }
                    None => missing_table(source),
                },
            }
        })
        .collect();
    let lineage = columns.iter().filter(|c| !matches!(c, Column::Csv(_) | Column::Dropped)).count();
    if seen.contains(&false) || lineage != 4 {
        missing_table(source);
    }
    columns
}

fn missing_table(source: &SourceFile) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
        format!("bronze.{} is missing or does not have the columns golden360 created", source.table),
        Some(format!("expected the columns {} plus _batch_id, _source_file, _row_number, _ingested_at", source.columns.join(", "))),
        "Reinstall the extension (DROP EXTENSION golden360 CASCADE; CREATE EXTENSION golden360) or restore the table.",
    )
}
