//! Streaming CSV → bronze table, the way COPY does it but with lineage and
//! per-row rejection: records are parsed (`csv::Records`) from positional
//! reads of the checked descriptor, hashed as they pass, and written
//! through `bulk::BulkInsert`.
//!
//! Memory stays flat whatever the file size: one input buffer, one record
//! buffer of at most `golden360.max_record_bytes`, and the bulk writer's
//! per-batch memory context.

use super::csv::{Batch, Next, Record, RecordSource, Records, Span};
use super::source::{self, HashingReader, PositionalReader, SourceHandle};
use crate::error::raise;
use olist_model::SourceFile;
use crate::ops;
use crate::pg::bulk::{BulkInsert, RowBuf};
use crate::pg::helper;
use crate::pg::relation::{own_table, DAMAGED_HINT};
use crate::pg::types::{Datum, Oid, SqlType};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

/// A rejected record keeps at most this many raw bytes (bytea's limit is
/// 1 GB; a runaway unterminated quote can swallow the rest of a file).
const MAX_RAW_BYTES: u64 = 1 << 20;

/// Lineage stamped on every row of a batch.
pub struct Lineage {
    pub batch_id: i64,
    pub ingested_at: Datum,
}

/// What loading one file produced.
pub struct Loaded {
    pub rows: i64,
    pub rejected: i64,
    pub sha256: String,
    pub bytes: u64,
}

/// The lineage columns of every bronze table, after the CSV columns.
pub const LINEAGE: [(&str, SqlType); 4] = [
    ("_batch_id", SqlType::BigInt),
    ("_source_file", SqlType::Text),
    ("_row_number", SqlType::BigInt),
    ("_ingested_at", SqlType::TimestampTz),
];

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

/// A parsed record for the reader of one file.
pub fn records(handle: &SourceHandle) -> Records<HashingReader<PositionalReader<'_>>> {
    Records::new(HashingReader::new(PositionalReader::new(&handle.file)), ops::max_record_bytes())
}

/// Load the file behind `handle` into `bronze.<source.table>`. Fails (and
/// so rolls the whole batch back) on I/O errors or if the bytes parsed are
/// not the bytes whose SHA-256 was recorded before loading. With
/// `golden360.helper_threads` above 0 a file of a megabyte or more is read,
/// hashed and parsed on a helper thread, a few batches ahead of the
/// backend, which writes.
pub fn load(source: &SourceFile, handle: &SourceHandle, expected_sha256: &str, lineage: &Lineage) -> Loaded {
    let ahead = ops::helper_threads() > 0 && handle.file.metadata().is_ok_and(|m| m.len() >= PARSE_AHEAD_FROM_BYTES);
    let (rows, rejected, (sha256, bytes)) = if !ahead {
        let mut reader = records(handle);
        source::check_header(source, &handle.real, &mut reader);
        let (rows, rejected) = write_records(source, handle, &mut reader, lineage);
        (rows, rejected, reader.into_inner().finish())
    } else {
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let mut ahead = Ahead::start(scope, &handle.file, &stop);
            source::check_header(source, &handle.real, &mut ahead);
            let (rows, rejected) = write_records(source, handle, &mut ahead, lineage);
            (rows, rejected, ahead.finish(&handle.real))
        })
    };
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

/// Files from this size are parsed ahead on a helper thread: for a
/// smaller one (a daily delta's), starting the thread costs what it saves.
const PARSE_AHEAD_FROM_BYTES: u64 = 1 << 20;

/// A batch handed over holds about this many bytes of fields: big enough
/// that handing over costs nothing per row, small enough that the two
/// batches in flight are a rounding error of a backend's memory.
const AHEAD_BATCH_BYTES: usize = 256 << 10;

/// Records parsed on a helper thread, a bounded number of batches ahead.
/// Dropped (the load done, failed or cancelled), it tells the helper to
/// stop, and the scope it was started in waits for the helper to end.
struct Ahead<'scope> {
    batches: Receiver<io::Result<Batch>>,
    current: Batch,
    at: usize,
    _stop: helper::Stop<'scope>,
    helper: Option<ScopedJoinHandle<'scope, Option<(String, u64)>>>,
}

impl<'scope> Ahead<'scope> {
    fn start<'env>(scope: &'scope Scope<'scope, 'env>, file: &'scope File, stop: &'scope AtomicBool) -> Ahead<'scope> {
        let (hand_over, batches) = sync_channel(2);
        let max_record_bytes = ops::max_record_bytes();
        let helper = helper::spawn(scope, "golden360 ingest parser", move || {
            parse_ahead(Records::new(HashingReader::new(PositionalReader::stopped_by(file, stop)), max_record_bytes), &hand_over)
        });
        Ahead { batches, current: Batch::default(), at: 0, _stop: helper::Stop(stop), helper: Some(helper) }
    }

    /// The SHA-256 and size of every byte the helper parsed, once all its
    /// records were taken.
    fn finish(mut self, path: &Path) -> (String, u64) {
        let helper = self.helper.take().expect("finished once");
        helper::join(helper).unwrap_or_else(|| source::io_error(path, "the parser stopped before the end of the file"))
    }
}

impl RecordSource for Ahead<'_> {
    fn next(&mut self) -> io::Result<Next<'_>> {
        while self.at >= self.current.len() {
            match helper::receive(&self.batches) {
                Some(Ok(batch)) => (self.current, self.at) = (batch, 0),
                Some(Err(e)) => return Err(e),
                None => return Ok(Next::End),
            }
        }
        self.at += 1;
        Ok(self.current.get(self.at - 1).expect("a record of the batch"))
    }
}

/// The helper's side: parse `records` into batches and hand each over;
/// returns the hash of the bytes read, or None after an error (handed
/// over) or when the backend stopped listening.
fn parse_ahead<R: io::Read>(mut records: Records<HashingReader<R>>, hand_over: &SyncSender<io::Result<Batch>>) -> Option<(String, u64)> {
    loop {
        let mut batch = Batch::default();
        let ended = loop {
            match records.next() {
                Err(e) => {
                    let _ = hand_over.send(Err(e));
                    return None;
                }
                Ok(Next::End) => break true,
                Ok(next) => batch.push(&next),
            }
            if batch.bytes() >= AHEAD_BATCH_BYTES {
                break false;
            }
        };
        if hand_over.send(Ok(batch)).is_err() {
            return None;
        }
        if ended {
            return Some(records.into_inner().finish());
        }
    }
}

/// Write every record `reader` gives after the header into the table:
/// (rows stored, records rejected).
fn write_records(source: &SourceFile, handle: &SourceHandle, reader: &mut impl RecordSource, lineage: &Lineage) -> (i64, i64) {
    let mut target = BulkTarget::open(source);
    let source_file_datum = source.file_name.into_datum().expect("a text datum");
    let mut row_number: i64 = 0;
    let mut rows: i64 = 0;
    let mut rejected: i64 = 0;
    loop {
        let next = reader.next().unwrap_or_else(|e| source::io_error(&handle.real, e));
        let (reason, span) = match next {
            Next::End => break,
            Next::Record(record) => {
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
                        continue;
                    }
                    Some(reason) => (reason, record.span),
                }
            }
            Next::TooLong(span) => {
                row_number += 1;
                (
                    format!(
                        "record longer than golden360.max_record_bytes ({} bytes) or with more than {} fields",
                        ops::max_record_bytes(),
                        super::csv::MAX_FIELDS
                    ),
                    span,
                )
            }
        };
        reject(source, handle, lineage.batch_id, row_number, span, &reason);
        rejected += 1;
    }
    target.finish();
    (rows, rejected)
}

/// Why a record cannot be stored as a bronze row, if it cannot.
fn rejection(source: &SourceFile, record: &Record) -> Option<String> {
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
    for (field, column) in record.fields().zip(source.columns) {
        if std::str::from_utf8(field).is_err() {
            return Some(format!("invalid UTF-8 in {column}"));
        }
        if field.contains(&0) {
            return Some(format!("NUL byte in {column} (PostgreSQL text cannot hold it)"));
        }
    }
    None
}

/// Record a rejected record with its exact bytes (without its line ending),
/// read back from the same descriptor; at most MAX_RAW_BYTES of them.
fn reject(source: &SourceFile, handle: &SourceHandle, batch_id: i64, row_number: i64, span: Span, reason: &str) {
    let Span { start, end, line: start_line } = span;
    let mut raw = vec![0u8; end.saturating_sub(start).min(MAX_RAW_BYTES) as usize];
    handle.file.read_exact_at(&mut raw, start).unwrap_or_else(|e| source::io_error(&handle.real, e));
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
        let table = own_table("bronze", source.table);
        let insert = BulkInsert::open(&table);
        let columns = map_columns(source, &insert.attributes());
        let row = RowBuf::new(columns.len());
        BulkTarget { insert, columns, row }
    }

    /// Buffer one row: CSV fields become text (heap_form_tuple copies them),
    /// lineage comes from `lineage`; a dropped column is NULL.
    fn push(&mut self, record: &Record, lineage: impl Fn(Column) -> Datum) {
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
/// table still has exactly the registry's columns, of the declared types.
fn map_columns(source: &SourceFile, attributes: &[Option<(String, Oid)>]) -> Vec<Column> {
    let mut seen = vec![false; source.columns.len()];
    let mut lineage_seen = 0;
    let columns: Vec<Column> = attributes
        .iter()
        .map(|attribute| {
            let Some((name, type_oid)) = attribute else { return Column::Dropped };
            let (column, ty) = match LINEAGE.iter().position(|(n, _)| n == name) {
                Some(k) => {
                    lineage_seen += 1;
                    ([Column::BatchId, Column::SourceFile, Column::RowNumber, Column::IngestedAt][k], LINEAGE[k].1)
                }
                None => match source.columns.iter().position(|c| c == name) {
                    Some(k) => {
                        seen[k] = true;
                        (Column::Csv(k), SqlType::Text)
                    }
                    None => missing_table(source),
                },
            };
            if *type_oid != ty.oid() {
                missing_table(source);
            }
            column
        })
        .collect();
    if seen.contains(&false) || lineage_seen != LINEAGE.len() {
        missing_table(source);
    }
    columns
}

fn missing_table(source: &SourceFile) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
        format!("bronze.{} does not have the columns golden360 created", source.table),
        Some(format!(
            "expected the text columns {} plus _batch_id bigint, _source_file text, _row_number bigint, _ingested_at timestamptz",
            source.columns.join(", ")
        )),
        DAMAGED_HINT,
    )
}
