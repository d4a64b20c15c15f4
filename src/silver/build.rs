//! Building silver from bronze, one table at a time in `spec::TABLES` order.
//!
//! Per table, two scans of the bronze heap, in the same order (one snapshot,
//! no synchronized scan):
//! 1. every row is typed and checked; each valid row's dedup key (a 128-bit
//!    hash), rank, position and content hash go into one sort (`Sorter`):
//!    in Rust when the table's records fit `maintenance_work_mem`, else
//!    PostgreSQL's tuplesort (`pg::sort::ByteSort`), which holds that much
//!    and spills to temporary files beyond it, as CREATE INDEX does. Read
//!    back best first per key, it gives each key's row (`lineage_row`'s
//!    rule), marked in a bitmap of positions: one bit per bronze row. A row
//!    that fails is remembered with its first failing rule (a map as big as
//!    the quarantine);
//! 2. a failed row goes to quarantine with its rule, a marked row is typed
//!    again and written to silver, any other valid row is a duplicate.
//!    Writes go through `bulk::BulkInsert`.
//!
//! Keys of parent tables are kept (as hashes) for the children's reference
//! rules; the translation map for products.

use super::parse;
use super::spec::{Check, Dedup, Kind, Rule, TableSpec, Ty, MONEY, NO_COMMENT, TABLES, TRANSLATIONS};
use crate::ops;
use crate::pg::bulk::{BulkInsert, RowBuf};
use crate::pg::worker::{self, Job};
use crate::pg::types::{column, Column, Datum, SqlType};
use crate::error::raise;
use crate::keys::{key_hash, KeyHashState};
use olist_model::SOURCE_FILES;
use crate::pg::scan::{HeapScan, Lock, Row};
use crate::pg::sort::{ordered_bytes, SortRecord, Sorter};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use smallvec::SmallVec;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// What building one table did.
pub struct TableStats {
    pub table: &'static str,
    pub bronze_rows: i64,
    pub silver_rows: i64,
    pub duplicates: i64,
    pub quarantined: i64,
    pub millis: f64,
}

/// The schema of the shadow generation, which every build writes into.
const SHADOW: &str = "silver_next";

/// Bronze rows from which sifting a table in a background worker pays for
/// the worker's start (tens of milliseconds) and its hand-over.
const WORKER_SIFT_FROM_ROWS: usize = 100_000;

/// Build every silver table from bronze into the shadow generation, which
/// the caller has emptied in this transaction. With `golden360.build_workers`
/// above 0, the biggest table that stands alone (geolocation) is sifted
/// (pass 1) in a background worker while this backend builds the others;
/// its writing pass runs here, in this transaction, as every other's.
pub fn build_all(run_id: i64) -> Vec<TableStats> {
    let mut context = Context { run_id, parent_keys: HashMap::new(), translations: HashMap::new() };
    let mut quarantine = QuarantineWriter::open(SHADOW);
    let mut aside = (ops::build_workers() > 0)
        .then(|| {
            TABLES
                .iter()
                .filter(|spec| spec.stands_alone())
                .map(|spec| (spec, rows_loaded(spec.table)))
                .filter(|&(_, rows)| rows >= WORKER_SIFT_FROM_ROWS)
                .max_by_key(|&(_, rows)| rows)
        })
        .flatten()
        .and_then(|(spec, rows)| SiftAside::start(spec, rows, run_id));
    // Two sorts run at once while the worker sifts: each gets half of
    // maintenance_work_mem.
    let shares = if aside.is_some() { 2 } else { 1 };
    let is_aside = |spec: &TableSpec| aside.as_ref().is_some_and(|a| a.spec.table == spec.table);
    let (later, now): (Vec<&'static TableSpec>, Vec<&'static TableSpec>) = TABLES.iter().partition(|spec| is_aside(spec));
    let mut stats = Vec::with_capacity(TABLES.len());
    for (i, &spec) in now.iter().enumerate() {
        stats.push(build_table(spec, &mut context, &mut quarantine, None, shares));
        // A parent's keys are held until its last child is built, not to the end.
        context.parent_keys.retain(|parent, _| now[i + 1..].iter().chain(&later).any(|t| t.references(parent)));
    }
    // The table set aside comes last, so that its worker has the time of
    // all the others.
    for spec in later {
        let sifted = aside.take().and_then(SiftAside::finish);
        pgrx::debug1!(
            "golden360 silver.{}: pass 1 {}",
            spec.table,
            if sifted.is_some() { "in a background worker" } else { "here: the background worker's could not be used" }
        );
        stats.push(build_table(spec, &mut context, &mut quarantine, sifted, shares));
    }
    quarantine.insert.finish();
    stats
}

/// The backend's settings a sifting worker takes over: the sort's budget
/// and the Rust heap's limit.
const ADOPTED_SETTINGS: [&str; 2] = ["maintenance_work_mem", "golden360.memory_limit"];

/// A table's pass 1 running in a background worker.
struct SiftAside {
    spec: &'static TableSpec,
    /// The rows this backend's snapshot sees, as the loader counted them.
    rows: usize,
    job: Job,
}

impl SiftAside {
    /// The worker sees the batches this backend sees (its own snapshot may
    /// see more), under this backend's sort and memory settings.
    fn start(spec: &'static TableSpec, rows: usize, run_id: i64) -> Option<SiftAside> {
        let batches: Vec<i64> = Spi::connect(|client| {
            client
                .select("SELECT batch_id FROM golden360.bronze_batches", None, &[])
                .map(|rows| rows.filter_map(|r| r.get::<i64>(1).ok().flatten()).collect())
                .unwrap_or_default()
        });
        let settings: serde_json::Map<String, serde_json::Value> = ADOPTED_SETTINGS
            .iter()
            .filter_map(|&name| {
                let value = Spi::get_one_with_args::<String>("SELECT current_setting($1)", &[name.into()]).ok().flatten()?;
                Some((name.to_string(), value.into()))
            })
            .collect();
        let input = serde_json::json!({ "table": spec.table, "run_id": run_id, "batches": batches, "settings": settings }).to_string();
        // The output's room: the bitmap, and failures up to 1 row in 16
        // (more and the backend sifts the table itself).
        let capacity = 16 + rows.div_ceil(64) * 8 + (rows / 16 + 1024) * 5;
        let Some(job) = Job::start("golden360_silver_sift", &format!("golden360 silver sift {}", spec.table), input.as_bytes(), capacity)
        else {
            pgrx::debug1!("golden360 silver.{}: no background worker slot free (max_worker_processes)", spec.table);
            return None;
        };
        Some(SiftAside { spec, rows, job })
    }

    /// What the worker sifted, if it finished and saw exactly the rows this
    /// backend sees; else None, and the table is sifted here.
    fn finish(self) -> Option<Sifted> {
        let sifted = self.job.finish().and_then(|bytes| Sifted::decode(&bytes))?;
        (sifted.bronze_rows as usize == self.rows).then_some(sifted)
    }
}

/// The background worker's entry point: sift the table the backend named,
/// under its settings and its batches.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn golden360_silver_sift(argument: Datum) {
    worker::serve(argument, |input| {
        let Ok(job) = serde_json::from_slice::<serde_json::Value>(input) else { return Vec::new() };
        let Some(spec) = TABLES.iter().find(|t| Some(t.table) == job["table"].as_str()) else { return Vec::new() };
        for (name, value) in job["settings"].as_object().into_iter().flatten() {
            if let (true, Some(value)) = (ADOPTED_SETTINGS.contains(&name.as_str()), value.as_str()) {
                worker::adopt_setting(name, value);
            }
        }
        let batches: HashSet<i64> = job["batches"].as_array().into_iter().flatten().filter_map(|b| b.as_i64()).collect();
        let context = Context { run_id: job["run_id"].as_i64().unwrap_or_default(), parent_keys: HashMap::new(), translations: HashMap::new() };
        sift(spec, &context, 2, Some(&batches)).encode()
    });
}

/// State carried from earlier tables to later ones.
pub(super) struct Context {
    pub(super) run_id: i64,
    /// Key hashes of each parent table built so far (for `Check::Exists` in
    /// a full build).
    pub(super) parent_keys: HashMap<&'static str, HashSet<u128, KeyHashState>>,
    /// Portuguese → English category names, from silver.category_translation.
    pub(super) translations: HashMap<Vec<u8>, String>,
}

/// A typed silver value; text borrows the bronze bytes where it can.
#[derive(Debug, Clone)]
pub(super) enum Value<'a> {
    Null,
    Bytes(&'a [u8]),
    Owned(String),
    Int(i32),
    Money(i64),
    Timestamp(i64),
    Double(f64),
}

impl Value<'_> {
    pub(super) fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            Value::Owned(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
    fn number(&self) -> Option<f64> {
        match *self {
            Value::Int(v) => Some(f64::from(v)),
            Value::Money(c) => Some(c as f64 / 100.0),
            Value::Double(v) => Some(v),
            _ => None,
        }
    }
    /// Append a canonical encoding, for hashing keys and whole rows.
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.push(0),
            Value::Bytes(_) | Value::Owned(_) => {
                let b = self.bytes().unwrap_or_default();
                out.push(1);
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
            Value::Int(v) => {
                out.push(2);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Value::Money(v) | Value::Timestamp(v) => {
                out.push(3);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Value::Double(v) => {
                out.push(4);
                let v = if *v == 0.0 { 0.0f64 } else { *v }; // -0.0 equals 0.0
                out.extend_from_slice(&v.to_bits().to_le_bytes());
            }
        }
    }
    pub(super) fn rank(&self) -> Option<RankValue> {
        match self {
            Value::Null => None,
            Value::Int(v) => Some(RankValue::Int(i64::from(*v))),
            Value::Money(v) | Value::Timestamp(v) => Some(RankValue::Int(*v)),
            Value::Double(v) => {
                // IEEE bits ordered as integers: flip the magnitude of negatives.
                let bits = v.to_bits() as i64;
                Some(RankValue::Int(bits ^ ((bits >> 63) & i64::MAX)))
            }
            Value::Bytes(_) | Value::Owned(_) => Some(RankValue::Bytes(self.bytes().unwrap_or_default().to_vec())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum RankValue {
    /// Timestamps, integers, cents, and doubles mapped to an order-preserving i64.
    Int(i64),
    Bytes(Vec<u8>),
}

/// Greater wins. `Option`'s order puts NULL lowest: DESC, NULLs last.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Rank {
    /// Only reviews have preference columns; boxed, so other tables' sort
    /// records stay small.
    pub(super) prefer: Option<Box<[Option<RankValue>]>>,
    pub(super) batch: i64,
    pub(super) row: i64,
}

/// Which of a key's valid rows (best first; `content` hashes a row's typed
/// values) silver stores: the best's content, with the lineage of the
/// earliest row of the unbroken run at the top that carries that same
/// content. The content is the latest row's, as the dedup rule says; a
/// re-delivery of an unchanged row (a daily full export) moves nothing, so
/// the lineage says where the current content first arrived. Rows of equal
/// content rank next to each other (equal content, equal preference
/// columns), and a later batch ranks above every earlier one, so the
/// incremental refresh, comparing new rows with the stored one, keeps the
/// same row as a rebuild.
pub(super) fn lineage_row<T>(best_first: &[T], content: impl Fn(&T) -> u128) -> usize {
    let top = content(&best_first[0]);
    best_first.iter().take_while(|r| content(r) == top).count() - 1
}

impl Rank {
    /// Append an encoding whose byte order (memcmp, as the spilling sort
    /// compares) is this rank's order reversed: best first. Preference
    /// values: present before NULL (NULLs last), each greater first (integers
    /// with the sign flipped and every bit inverted; text inverted byte by
    /// byte with 0xFF after it, which no inverted byte of text equals, since
    /// text holds no NUL); then batch and row, greater first.
    pub(super) fn encode_best_first(&self, out: &mut Vec<u8>) {
        let descending = |v: i64| ordered_bytes(v).map(|b| !b);
        for value in self.prefer.iter().flatten() {
            match value {
                Some(RankValue::Int(v)) => {
                    out.push(0);
                    out.extend_from_slice(&descending(*v));
                }
                Some(RankValue::Bytes(b)) => {
                    out.push(0);
                    out.extend(b.iter().map(|byte| !byte));
                    out.push(0xFF);
                }
                None => out.push(1),
            }
        }
        out.extend_from_slice(&descending(self.batch));
        out.extend_from_slice(&descending(self.row));
    }
}

/// A typed row's values, a value not of its type read as NULL (only valid
/// rows are read this way, and they have none).
pub(super) fn values_of<'v, 'a>(typed: &'v [Result<Value<'a>, ()>]) -> SmallVec<[&'v Value<'a>; MAX_COLUMNS]> {
    typed.iter().map(|v| v.as_ref().unwrap_or(&Value::Null)).collect()
}

pub(super) fn hash(values: &[&Value], buf: &mut Vec<u8>) -> u128 {
    buf.clear();
    for v in values {
        v.encode(buf);
    }
    key_hash(buf)
}

/// A rule bound to column positions.
enum Compiled {
    Present(usize),
    Type(usize),
    Positive(usize),
    NonNegative(usize),
    OneOf(usize, &'static [&'static str]),
    Between(usize, f64, f64),
    RequiredWhen { column: usize, when: usize, equals: &'static str },
    NotBefore { later: usize, earlier: usize },
    Exists { column: usize, parent: &'static str },
}

/// A table's rules and columns, bound to positions once.
pub(super) struct Plan {
    pub(super) spec: &'static TableSpec,
    pub(super) rules: Vec<Rule>,
    compiled: Vec<Compiled>,
    pub(super) key: Vec<usize>,
    pub(super) prefer: Vec<usize>,
}

impl Plan {
    pub(super) fn new(spec: &'static TableSpec) -> Plan {
        let rules = spec.rules();
        let column = |name: &str| spec.column(name);
        let compiled = rules
            .iter()
            .map(|rule| match rule.kind {
                Kind::Key | Kind::NotNull => Compiled::Present(column(rule.columns[0])),
                Kind::Type => Compiled::Type(column(rule.columns[0])),
                Kind::Business | Kind::Referential => {
                    let check = &spec.rules.iter().find(|r| r.name == rule.name).expect("a declared rule").check;
                    match *check {
                        Check::Positive(c) => Compiled::Positive(column(c)),
                        Check::NonNegative(c) => Compiled::NonNegative(column(c)),
                        Check::OneOf(c, list) => Compiled::OneOf(column(c), list),
                        Check::Between(c, lo, hi) => Compiled::Between(column(c), lo, hi),
                        Check::RequiredWhen { column: c, when, equals } => {
                            Compiled::RequiredWhen { column: column(c), when: column(when), equals }
                        }
                        Check::NotBefore { later, earlier } => {
                            Compiled::NotBefore { later: column(later), earlier: column(earlier) }
                        }
                        Check::Exists { column: c, parent } => Compiled::Exists { column: column(c), parent },
                    }
                }
            })
            .collect();
        let (key, prefer) = match spec.dedup {
            Dedup::Key(key) => (key.iter().map(|c| column(c)).collect(), Vec::new()),
            Dedup::KeyPreferring { key, prefer } => {
                (key.iter().map(|c| column(c)).collect(), prefer.iter().map(|c| column(c)).collect())
            }
            Dedup::WholeRow => ((0..spec.columns.len()).collect(), Vec::new()),
        };
        Plan { spec, rules, compiled, key, prefer }
    }

    /// Type every column; `Err(())` marks a present value not of its type.
    #[inline(always)]
    pub(super) fn type_row<'a>(&self, raw: &[&'a [u8]], context: &Context) -> SmallVec<[Result<Value<'a>, ()>; MAX_COLUMNS]> {
        self.spec.columns.iter().zip(raw).map(|(c, field)| type_value(c.ty, field, context)).collect()
    }

    /// The dedup key of a valid row.
    pub(super) fn key_hash(&self, values: &[&Value], buf: &mut Vec<u8>) -> u128 {
        let key: SmallVec<[&Value; MAX_COLUMNS]> = self.key.iter().map(|&c| values[c]).collect();
        hash(&key, buf)
    }

    /// The index of the first rule the typed row fails, if any; `exists`
    /// says whether the value of a column (its position) that references a
    /// parent table is one of its keys.
    #[inline(always)]
    pub(super) fn first_failure(
        &self,
        raw: &[&[u8]],
        typed: &[Result<Value, ()>],
        mut exists: impl FnMut(usize, &'static str, &Value) -> bool,
    ) -> Option<usize> {
        let value = |c: usize| typed[c].as_ref().unwrap_or(&Value::Null);
        self.compiled.iter().position(|rule| {
            let passes = match *rule {
                Compiled::Present(c) => !parse::is_blank(raw[c]),
                Compiled::Type(c) => typed[c].is_ok(),
                Compiled::Positive(c) => value(c).number().is_none_or(|v| v > 0.0),
                Compiled::NonNegative(c) => value(c).number().is_none_or(|v| v >= 0.0),
                Compiled::OneOf(c, list) => value(c).bytes().is_none_or(|b| list.iter().any(|s| s.as_bytes() == b)),
                Compiled::Between(c, lo, hi) => value(c).number().is_none_or(|v| lo <= v && v <= hi),
                Compiled::RequiredWhen { column, when, equals } => {
                    value(when).bytes() != Some(equals.as_bytes()) || !matches!(value(column), Value::Null)
                }
                Compiled::NotBefore { later, earlier } => match (value(later), value(earlier)) {
                    (Value::Timestamp(l), Value::Timestamp(e)) => l >= e,
                    _ => true,
                },
                Compiled::Exists { column, parent } => exists(column, parent, value(column)),
            };
            !passes
        })
    }
}

/// One field typed as a column of type `ty`; `Err(())` marks a present
/// value not of its type.
#[inline(always)]
pub(super) fn type_value<'a>(ty: Ty, field: &'a [u8], context: &Context) -> Result<Value<'a>, ()> {
    let trimmed = parse::trim(field);
    if trimmed.is_empty() {
        return match ty {
            Ty::Comment => Ok(Value::Bytes(NO_COMMENT.as_bytes())),
            _ => Ok(Value::Null),
        };
    }
    // Bronze holds valid UTF-8 only (it rejects the rest).
    let text = || std::str::from_utf8(trimmed).unwrap_or_default();
    match ty {
        Ty::Id | Ty::Text | Ty::Comment => Ok(Value::Bytes(field)),
        Ty::Trimmed => Ok(Value::Bytes(trimmed)),
        Ty::Translated => Ok(Value::Bytes(parse::without_bom(field))),
        Ty::Code => Ok(Value::Owned(parse::code(text()))),
        Ty::Place => Ok(Value::Owned(parse::place(text()))),
        Ty::EnglishCategory => {
            Ok(Value::Owned(context.translations.get(trimmed).cloned().unwrap_or_else(|| text().to_string())))
        }
        Ty::Integer => parse::integer(trimmed).map(Value::Int).ok_or(()),
        Ty::Zip => parse::zip(trimmed).map(Value::Int).ok_or(()),
        Ty::Money => parse::money_cents(trimmed).map(Value::Money).ok_or(()),
        Ty::Timestamp => parse::timestamp(trimmed).map(Value::Timestamp).ok_or(()),
        Ty::Double => parse::double(trimmed).map(Value::Double).ok_or(()),
    }
}

/// What pass 1 over a bronze table found: how many rows it saw, which of
/// them silver keeps (a bit per row, by scan position), and the first rule
/// each failed row breaks.
pub(super) struct Sifted {
    bronze_rows: u32,
    winners: Vec<u64>,
    winner_count: usize,
    failed: HashMap<u32, u8, KeyHashState>,
}

impl Sifted {
    /// Bytes, for a background worker's output: counts, then the failures
    /// as (position, rule), then the winner bitmap.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.failed.len() * 5 + self.winners.len() * 8);
        out.extend_from_slice(&self.bronze_rows.to_le_bytes());
        out.extend_from_slice(&(self.winner_count as u64).to_le_bytes());
        out.extend_from_slice(&(self.failed.len() as u32).to_le_bytes());
        for (&at, &rule) in &self.failed {
            out.extend_from_slice(&at.to_le_bytes());
            out.push(rule);
        }
        self.winners.iter().for_each(|w| out.extend_from_slice(&w.to_le_bytes()));
        out
    }

    fn decode(bytes: &[u8]) -> Option<Sifted> {
        let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        let bronze_rows = u32_at(0)?;
        let winner_count = u64::from_le_bytes(bytes.get(4..12)?.try_into().ok()?) as usize;
        let failures = u32_at(12)? as usize;
        let mut failed: HashMap<u32, u8, KeyHashState> = HashMap::default();
        let mut at = 16;
        for _ in 0..failures {
            failed.insert(u32_at(at)?, *bytes.get(at + 4)?);
            at += 5;
        }
        let words = (bronze_rows as usize).div_ceil(64);
        let winners = bytes.get(at..at + words * 8)?.chunks_exact(8).map(|w| u64::from_le_bytes(w.try_into().unwrap_or_default())).collect();
        Some(Sifted { bronze_rows, winners, winner_count, failed })
    }

    fn is_winner(&self, at: u32) -> bool {
        self.winners[at as usize / 64] & (1 << (at % 64)) != 0
    }
}

/// Pass 1 over bronze.`spec.table`: every row typed and checked; each valid
/// row's (key, rank, position, content) goes into a sort that spills beyond
/// its share of maintenance_work_mem (`sort_shares` sorts run at once); a
/// row that fails a rule is remembered with its rule. Where the key is the
/// whole row (geolocation, the biggest table) the key is the content. Only
/// the rows of `batches` count, when given (a worker's snapshot, taken
/// after the backend's, may see batches committed since).
fn sift(spec: &'static TableSpec, context: &Context, sort_shares: usize, batches: Option<&HashSet<i64>>) -> Sifted {
    let plan = Plan::new(spec);
    let mut scan = BronzeScan::open(spec);
    let mut buf = Vec::new();
    let whole_row = matches!(spec.dedup, Dedup::WholeRow);
    let mut sort = Sorter::<Ranked>::for_records(rows_loaded(spec.table), sort_shares);
    let mut failed: HashMap<u32, u8, KeyHashState> = HashMap::default();
    let mut position = 0u32;
    scan.for_each(|scanned| {
        if batches.is_some_and(|b| !b.contains(&scanned.batch)) {
            return;
        }
        let at = position;
        position += 1;
        let raw = &scanned.fields[..];
        let typed = plan.type_row(raw, context);
        let exists =
            |_, parent, value: &Value| context.parent_keys.get(parent).is_some_and(|keys| keys.contains(&hash(&[value], &mut buf)));
        if let Some(rule) = plan.first_failure(raw, &typed, exists) {
            failed.insert(at, rule as u8);
            return;
        }
        let values = values_of(&typed);
        let prefer = (!plan.prefer.is_empty()).then(|| plan.prefer.iter().map(|&c| values[c].rank()).collect());
        let rank = Rank { prefer, batch: scanned.batch, row: scanned.row_number };
        let key = plan.key_hash(&values, &mut buf);
        let content = if whole_row { key } else { hash(&values, &mut buf) };
        sort.put(Ranked { key, rank, at, content });
    });
    scan.close();

    // Each key's rows come best first; the one silver keeps is the last of
    // the unbroken run at the top with the best's content (`lineage_row`).
    let mut winners = vec![0u64; (position as usize).div_ceil(64)];
    let mut winner_count = 0usize;
    // One key's (position, content), best first.
    let mut group: Vec<(u32, u128)> = Vec::new();
    let mut group_key: Option<u128> = None;
    let mut keep = |group: &mut Vec<(u32, u128)>| {
        if !group.is_empty() {
            let kept = group[lineage_row(group, |g| g.1)].0;
            winners[kept as usize / 64] |= 1 << (kept % 64);
            winner_count += 1;
            group.clear();
        }
    };
    sort.sorted(|(key, at, content)| {
        if group_key != Some(key) {
            keep(&mut group);
            group_key = Some(key);
        }
        group.push((at, content));
    });
    keep(&mut group);
    Sifted { bronze_rows: position, winners, winner_count, failed }
}

/// Build one table: pass 1 (`sift`, or what a background worker sifted),
/// then pass 2.
fn build_table(
    spec: &'static TableSpec,
    context: &mut Context,
    quarantine: &mut QuarantineWriter,
    sifted: Option<Sifted>,
    sort_shares: usize,
) -> TableStats {
    let started = Instant::now();
    let sifted = sifted.unwrap_or_else(|| sift(spec, context, sort_shares, None));
    let plan = Plan::new(spec);
    let mut scan = BronzeScan::open(spec);
    let record_names = scan.record_names;
    let mut buf = Vec::new();
    let (bronze_rows, winner_count) = (i64::from(sifted.bronze_rows), sifted.winner_count);
    let failed = &sifted.failed;
    let is_winner = |at: u32| sifted.is_winner(at);

    // Pass 2: write winners and quarantine.
    let mut writer = SilverWriter::open(SHADOW, spec);
    let keeps_keys = spec.is_parent();
    // Sized once: a set growing by doubling would hold both tables at its last growth.
    let mut keys: HashSet<u128, KeyHashState> =
        HashSet::with_capacity_and_hasher(if keeps_keys { winner_count } else { 0 }, KeyHashState::default());
    let (mut duplicates, mut quarantined) = (0i64, 0i64);
    let mut written_winners = 0usize;
    let mut position = 0u32;
    scan.for_each(|scanned| {
        let at = position;
        position += 1;
        if let Some(&rule) = failed.get(&at) {
            let rule = &plan.rules[usize::from(rule)];
            quarantine.push(context.run_id, spec, rule, scanned.batch, scanned.row_number, &scanned.record(), record_names);
            quarantined += 1;
            return;
        }
        if at >= bronze_rows as u32 || !is_winner(at) {
            duplicates += 1;
            return;
        }
        written_winners += 1;
        let typed = plan.type_row(&scanned.fields[..], context);
        let values = values_of(&typed);
        if keeps_keys {
            keys.insert(plan.key_hash(&values, &mut buf));
        }
        if spec.table == TRANSLATIONS {
            if let (Some(pt), Some(en)) = (values[0].bytes(), values[1].bytes()) {
                context.translations.insert(pt.to_vec(), String::from_utf8_lossy(en).into_owned());
            }
        }
        writer.push(&values, scanned.batch, scanned.row_number);
    });
    if i64::from(position) != bronze_rows || written_winners != winner_count {
        scan_order_changed(spec);
    }
    let silver_rows = writer.finish();
    scan.close();
    if keeps_keys {
        context.parent_keys.insert(spec.table, keys);
    }
    TableStats {
        table: spec.table,
        bronze_rows,
        silver_rows,
        duplicates,
        quarantined,
        millis: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// A valid row competing for its key: its dedup key, rank, position (in
/// the bronze scan, or among an incremental refresh's new rows) and content
/// (the hash of its typed values).
pub(super) struct Ranked {
    pub(super) key: u128,
    pub(super) rank: Rank,
    pub(super) at: u32,
    pub(super) content: u128,
}

/// Sort `rows` by key, each key's rows best first: the order both builds
/// read them in (the spilling sort's bytes give the same order).
pub(super) fn sort_by_key_best_first(rows: &mut [Ranked]) {
    rows.sort_unstable_by(<Ranked as SortRecord>::order);
}

/// The sort that picks each key's row hands the records back by key, best
/// first (`pg::sort::Sorter`: in Rust or spilling). A record's bytes are its
/// key (big-endian) and its rank best first (`Rank::encode_best_first`),
/// then its position and content: reading one gives (key, position,
/// content).
impl SortRecord for Ranked {
    type Read = (u128, u32, u128);

    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.key.to_be_bytes());
        self.rank.encode_best_first(buf);
        buf.extend_from_slice(&self.at.to_be_bytes());
        buf.extend_from_slice(&self.content.to_le_bytes());
    }

    fn decode(bytes: &[u8]) -> (u128, u32, u128) {
        let n = bytes.len();
        let field = |from: usize, to: usize| bytes.get(from..to).unwrap_or_default();
        let key = u128::from_be_bytes(field(0, 16).try_into().unwrap_or_default());
        let at = u32::from_be_bytes(field(n.saturating_sub(20), n.saturating_sub(16)).try_into().unwrap_or_default());
        let content = u128::from_le_bytes(field(n.saturating_sub(16), n).try_into().unwrap_or_default());
        (key, at, content)
    }

    fn read(&self) -> (u128, u32, u128) {
        (self.key, self.at, self.content)
    }

    fn order(a: &Ranked, b: &Ranked) -> std::cmp::Ordering {
        a.key.cmp(&b.key).then_with(|| b.rank.cmp(&a.rank))
    }

    /// Reviews' preference values, boxed, and their text: about twice the
    /// record's own size, which the sort's budget must see.
    fn heap_bytes(&self) -> usize {
        self.rank.prefer.as_deref().map_or(0, |values| {
            std::mem::size_of_val(values)
                + values.iter().map(|v| if let Some(RankValue::Bytes(b)) = v { b.capacity() } else { 0 }).sum::<usize>()
        })
    }
}

/// The rows bronze.`table` holds, as the loader counted them
/// (`golden360.bronze_files`): what the sort will hold.
fn rows_loaded(table: &str) -> usize {
    Spi::get_one_with_args::<i64>(
        "SELECT coalesce(sum(rows), 0)::bigint FROM golden360.bronze_files WHERE table_name = $1",
        &[table.into()],
    )
    .ok()
    .flatten()
    .and_then(|n| usize::try_from(n).ok())
    .unwrap_or(usize::MAX)
}

/// The widest silver or bronze table has 9 columns.
pub(super) const MAX_COLUMNS: usize = 10;

/// One bronze row during a scan: valid only inside the callback.
struct ScannedRow<'r, 's> {
    row: &'r Row<'s>,
    /// The spec columns' source fields, in spec order.
    fields: SmallVec<[&'s [u8]; MAX_COLUMNS]>,
    record_attrs: &'r [usize],
    batch: i64,
    row_number: i64,
}

impl<'s> ScannedRow<'_, 's> {
    /// Every CSV field of the bronze row, in file order.
    fn record(&self) -> SmallVec<[&'s [u8]; MAX_COLUMNS]> {
        self.record_attrs.iter().map(|&i| self.row.text(i)).collect()
    }
}

/// The two passes over a bronze table disagreed: a bug, or bronze changed
/// under a snapshot, which append-only bronze should make impossible.
fn scan_order_changed(spec: &TableSpec) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("the two scans of bronze.{} did not see the same rows", spec.table),
        None,
        "Nothing was changed. Run the refresh again; if this persists, please report it.",
    )
}

/// A heap scan of one bronze table, handing each row's source fields (in
/// the spec's column order) and lineage to a callback.
struct BronzeScan {
    scan: HeapScan,
    /// Attribute index of each spec column's source field.
    sources: Vec<usize>,
    /// Attribute index of every CSV column, for the quarantine record.
    record: Vec<usize>,
    record_names: &'static [&'static str],
    batch_attr: usize,
    row_attr: usize,
}

impl BronzeScan {
    fn open(spec: &TableSpec) -> BronzeScan {
        let source = SOURCE_FILES.iter().find(|f| f.table == spec.table).expect("a bronze table per silver table");
        let scan = HeapScan::open("bronze", spec.table, Lock::Read);
        BronzeScan {
            sources: spec.columns.iter().map(|c| scan.attr(c.source, SqlType::Text)).collect(),
            record: source.columns.iter().map(|c| scan.attr(c, SqlType::Text)).collect(),
            record_names: source.columns,
            batch_attr: scan.attr("_batch_id", SqlType::BigInt),
            row_attr: scan.attr("_row_number", SqlType::BigInt),
            scan,
        }
    }

    /// Call `f(row)` for every visible row. `row.fields` holds the spec
    /// columns' source bytes; `row.record()` decodes every CSV field (only a
    /// quarantined row needs them).
    fn for_each(&mut self, mut f: impl FnMut(&ScannedRow)) {
        let (sources, record, batch_attr, row_attr) = (&self.sources, &self.record, self.batch_attr, self.row_attr);
        self.scan.for_each(|row| {
            let scanned = ScannedRow {
                row,
                fields: sources.iter().map(|&i| row.text(i)).collect(),
                record_attrs: record,
                batch: row.int8(batch_attr).unwrap_or_default(),
                row_number: row.int8(row_attr).unwrap_or_default(),
            };
            f(&scanned);
        });
    }

    fn close(self) {
        self.scan.close();
    }
}

/// Writes typed rows into silver.<table>: the spec's columns, then
/// `_batch_id`, `_row_number` (the DDL is generated from the spec).
pub(super) struct SilverWriter {
    insert: BulkInsert,
    spec: &'static TableSpec,
    row: RowBuf,
}

impl SilverWriter {
    pub(super) fn open(schema: &str, spec: &'static TableSpec) -> SilverWriter {
        let expected = spec.declared_columns();
        let insert = BulkInsert::open_declared(schema, spec.table, &expected);
        SilverWriter { insert, spec, row: RowBuf::new(expected.len()) }
    }

    /// Index entries added at `finish`, each index's in key order: for an
    /// incremental refresh, whose few thousand new rows land on random
    /// leaves of indexes that are already full (nothing reads the table
    /// between the first push and `finish`).
    pub(super) fn with_sorted_index_inserts(mut self) -> SilverWriter {
        self.insert = self.insert.sorted_index_inserts();
        self
    }

    pub(super) fn push(&mut self, values: &[&Value], batch: i64, row: i64) {
        let n = self.spec.columns.len();
        // Numerics are allocated where the batch is freed.
        let row_buf = &mut self.row;
        self.insert.in_batch_context(|| {
            row_buf.build(|b| {
                for (i, v) in values.iter().enumerate() {
                    match v {
                        Value::Null => b.null(i),
                        Value::Bytes(_) | Value::Owned(_) => b.text(i, v.bytes().unwrap_or_default()),
                        Value::Int(x) => b.int4(i, *x),
                        Value::Timestamp(x) => b.int8(i, *x),
                        Value::Double(x) => b.float8(i, *x),
                        Value::Money(cents) => b.numeric(i, *cents, MONEY),
                    }
                }
                b.int8(n, batch);
                b.int8(n + 1, row);
            })
        });
        self.insert.push_row(&mut self.row);
    }

    pub(super) fn finish(self) -> i64 {
        self.insert.finish()
    }
}

/// Writes silver.quarantine rows: the run, table, batch, row, the failed
/// rule and its kind, and the whole bronze record as jsonb.
pub(super) struct QuarantineWriter {
    pub(super) insert: BulkInsert,
}

/// silver.quarantine's columns, in order (its DDL is made from these).
pub const QUARANTINE_COLUMNS: [Column; 7] = [
    column("run_id", SqlType::BigInt),
    column("table_name", SqlType::Text),
    column("batch_id", SqlType::BigInt),
    column("row_number", SqlType::BigInt),
    column("reason", SqlType::Text),
    column("kind", SqlType::Text),
    column("record", SqlType::Jsonb),
];

impl QuarantineWriter {
    pub(super) fn open(schema: &str) -> QuarantineWriter {
        let insert = BulkInsert::open_declared(schema, "quarantine", &QUARANTINE_COLUMNS);
        QuarantineWriter { insert }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn push(
        &mut self,
        run_id: i64,
        spec: &TableSpec,
        rule: &Rule,
        batch: i64,
        row: i64,
        record: &[&[u8]],
        names: &[&str],
    ) {
        let object: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .zip(record)
            .map(|(name, bytes)| (name.to_string(), serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())))
            .collect();
        // The datums live in the batch context until the push copies them.
        let mut datums = self.insert.in_batch_context(|| {
            [
                Datum::from(run_id),
                spec.table.into_datum().expect("text"),
                Datum::from(batch),
                Datum::from(row),
                rule.name.as_str().into_datum().expect("text"),
                rule.kind.as_str().into_datum().expect("text"),
                pgrx::JsonB(serde_json::Value::Object(object)).into_datum().expect("jsonb"),
            ]
        });
        self.insert.push(&mut datums, &mut [false; 7]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_order_like_the_values() {
        let rank = |v: f64| Value::Double(v).rank();
        let values = [-1e9, -2.5, -0.5, 0.0, 0.5, 2.5, 1e9];
        for pair in values.windows(2) {
            assert!(rank(pair[0]) < rank(pair[1]), "{pair:?}");
        }
        assert!(Value::Null.rank() < Value::Timestamp(i64::MIN).rank(), "NULL ranks lowest: DESC, NULLs last");
        assert!(Value::Timestamp(1).rank() < Value::Timestamp(2).rank());
    }

    /// The spilling sort orders ranks by their encodings' bytes: that order
    /// must be the ranks' own, reversed.
    #[test]
    fn rank_encodings_sort_best_first() {
        let texts: [&[u8]; 5] = [b"", b"a", b"ab", b"b", b"\xc3\xa9"];
        let mut ranks = Vec::new();
        for t in [None, Some(-5i64), Some(0), Some(7), Some(i64::MAX), Some(i64::MIN)] {
            for text in texts.iter().map(|b| Some(RankValue::Bytes(b.to_vec()))).chain([None]) {
                for (batch, row) in [(1, 1), (1, 2), (2, 1)] {
                    let prefer = Some(vec![t.map(RankValue::Int), text.clone()].into_boxed_slice());
                    ranks.push(Rank { prefer, batch, row });
                }
            }
        }
        let mut by_rank = ranks.clone();
        by_rank.sort_by(|a, b| b.cmp(a));
        let encode = |r: &Rank| {
            let mut out = Vec::new();
            r.encode_best_first(&mut out);
            out
        };
        let mut by_bytes = ranks;
        by_bytes.sort_by_key(encode);
        assert_eq!(by_rank, by_bytes);
    }
}
