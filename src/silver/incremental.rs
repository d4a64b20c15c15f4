//! An incremental refresh: silver brought up to date with the bronze
//! batches it has not seen yet, in place, reading only what those batches
//! can change. The result is a full rebuild's, row for row:
//!
//! - the rows of the new batches are typed and checked as a full build
//!   does; a valid row competes with the key's current silver row by the
//!   same rank (for reviews their own ordering, otherwise batch and row):
//!   bronze is append-only, so the best of "the current winner and the new
//!   rows" is the best of all rows;
//! - a row quarantined for a missing reference is checked again when its
//!   target arrived in this refresh (parents are applied before children,
//!   so an order that arrives makes its earlier orphan items valid, exactly
//!   as a full rebuild decides). A valid row never turns invalid: keys only
//!   accumulate, so a reference that held still holds;
//! - a translation that changed rewrites the category of the products
//!   that carry it.
//!
//! Memory is the new rows', not the data's, and at most about
//! `maintenance_work_mem`: rows that would need more are applied in passes
//! by key hash (`Pass`). Every row whose content changed
//! (not its lineage alone) is logged with its `gold_link` value in
//! `golden360_internal.silver_changes`, which is how gold finds the people
//! to recompute.

use super::build::{
    hash, lineage_row, sort_by_key_best_first, type_value, values_of, Context, Plan, QuarantineWriter, Rank, Ranked,
    SilverWriter, Value, MAX_COLUMNS,
};
use super::spec::{Check, TableSpec, Ty, TABLES, TRANSLATIONS};
use crate::error::spi_failed;
use crate::keys::Pass;
use crate::pg::bulk::{delete_rows, BulkInsert, RowBuf};
use crate::pg::relation::DAMAGED_HINT;
use crate::pg::scan::{Bound, BrinScan, HeapScan, IndexScan, Lock, Row, Tid};
use pgrx::prelude::*;
use crate::pg::snapshot::OwnWritesVisible;
use crate::pg::types::{column, Column, SqlType};
use olist_model::SOURCE_FILES;
use smallvec::SmallVec;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// What applying the new batches did to one table: changes to its counts.
pub struct TableDelta {
    pub table: &'static str,
    pub bronze_rows: i64,
    pub silver_rows: i64,
    pub duplicates: i64,
    pub quarantined: i64,
    /// Silver rows inserted or rewritten (a new key, a new winner, a new
    /// category name).
    pub written: i64,
    pub millis: f64,
}

/// `golden360_internal.silver_changes`' columns (its DDL is made from these).
pub const CHANGE_COLUMNS: [Column; 3] =
    [column("run_id", SqlType::BigInt), column("table_name", SqlType::Text), column("link", SqlType::Text)];

/// The schema an incremental refresh writes: the live one.
const LIVE: &str = "silver";

/// State carried from one table to the next.
struct State {
    context: Context,
    /// Per parent table, the key values it gained in this refresh.
    new_keys: HashMap<&'static str, HashSet<Vec<u8>>>,
    /// Category names whose translation changed in this refresh.
    retranslated: HashSet<Vec<u8>>,
}

/// Apply bronze batches `batches` (not yet in silver) to silver.
pub fn apply_all(run_id: i64, batches: &[i64]) -> Vec<TableDelta> {
    let visible = OwnWritesVisible::push();
    let mut state = State {
        context: Context { run_id, parent_keys: HashMap::new(), translations: HashMap::new() },
        new_keys: HashMap::new(),
        retranslated: HashSet::new(),
    };
    let mut deltas = Vec::with_capacity(TABLES.len());
    for spec in TABLES {
        if spec.columns.iter().any(|c| c.ty == Ty::EnglishCategory) {
            state.context.translations = read_translations();
        }
        deltas.push(apply_table(spec, batches, &mut state, &visible));
        visible.advance();
    }
    deltas
}

/// The bronze rows a refresh handles, copied out of their scans: every
/// CSV field of every row in one buffer (a daily full export brings
/// hundreds of thousands of rows; one allocation per field cost a quarter
/// of the refresh).
struct Candidates {
    bytes: Vec<u8>,
    /// Per row, `width` field ends in `bytes`.
    ends: Vec<usize>,
    /// Per row, its bronze `_batch_id` and `_row_number`.
    lineage: Vec<(i64, i64)>,
    /// CSV fields per row.
    width: usize,
    /// Per spec column, the position of its source field in the record.
    sources: Vec<usize>,
}

impl Candidates {
    fn new(spec: &TableSpec, record_names: &[&str]) -> Candidates {
        let sources = spec
            .columns
            .iter()
            .map(|c| record_names.iter().position(|&n| n == c.source).expect("a spec column names a CSV column"))
            .collect();
        Candidates { bytes: Vec::new(), ends: Vec::new(), lineage: Vec::new(), width: record_names.len(), sources }
    }

    fn push<'f>(&mut self, batch: i64, row: i64, record: impl IntoIterator<Item = &'f [u8]>) {
        for field in record {
            self.bytes.extend_from_slice(field);
            self.ends.push(self.bytes.len());
        }
        self.lineage.push((batch, row));
    }

    fn len(&self) -> usize {
        self.lineage.len()
    }

    fn field(&self, i: usize, f: usize) -> &[u8] {
        let at = i * self.width + f;
        let start = if at == 0 { 0 } else { self.ends[at - 1] };
        &self.bytes[start..self.ends[at]]
    }

    /// Row `i`'s CSV fields, in file order (the quarantine record).
    fn record(&self, i: usize) -> SmallVec<[&[u8]; MAX_COLUMNS]> {
        (0..self.width).map(|f| self.field(i, f)).collect()
    }

    /// Row `i`'s spec columns' source fields, in spec order.
    fn fields(&self, i: usize) -> SmallVec<[&[u8]; MAX_COLUMNS]> {
        self.sources.iter().map(|&f| self.field(i, f)).collect()
    }
}

/// Attribute indexes of a bronze table's columns.
struct BronzeAttrs {
    record: Vec<usize>,
    record_names: &'static [&'static str],
    batch: usize,
    row: usize,
}

impl BronzeAttrs {
    fn of(scan: &BrinScan, spec: &TableSpec) -> BronzeAttrs {
        let source = SOURCE_FILES.iter().find(|f| f.table == spec.table).expect("a bronze table per silver table");
        BronzeAttrs {
            record: source.columns.iter().map(|c| scan.attr(c, SqlType::Text)).collect(),
            record_names: source.columns,
            batch: scan.attr("_batch_id", SqlType::BigInt),
            row: scan.attr("_row_number", SqlType::BigInt),
        }
    }

    fn read(&self, row: &Row, into: &mut Candidates) {
        let (batch, number) = (row.int8(self.batch).unwrap_or_default(), row.int8(self.row).unwrap_or_default());
        into.push(batch, number, self.record.iter().map(|&i| row.text(i)));
    }
}

/// A silver row's value of column `attr`, declared as `ty` in the spec.
fn stored_value<'s>(row: &Row<'s>, attr: usize, ty: Ty) -> Value<'s> {
    if row.is_null(attr) {
        return Value::Null;
    }
    match ty {
        Ty::Integer | Ty::Zip => row.int4(attr).map_or(Value::Null, Value::Int),
        Ty::Money => row.cents(attr).map_or(Value::Null, Value::Money),
        Ty::Timestamp => row.int8(attr).map_or(Value::Null, Value::Timestamp),
        Ty::Double => row.float8(attr).map_or(Value::Null, Value::Double),
        _ => Value::Bytes(row.text(attr)),
    }
}

/// A value that outlives the row it was read from.
fn owned(value: Value) -> Value<'static> {
    match value {
        Value::Bytes(b) => Value::Owned(String::from_utf8_lossy(b).into_owned()),
        Value::Owned(s) => Value::Owned(s),
        Value::Null => Value::Null,
        Value::Int(v) => Value::Int(v),
        Value::Money(v) => Value::Money(v),
        Value::Timestamp(v) => Value::Timestamp(v),
        Value::Double(v) => Value::Double(v),
    }
}

/// The bound an index lookup on a column of this value uses.
fn bound<'a>(value: &'a Value) -> Option<Bound<'a>> {
    match value {
        Value::Int(v) => Some(Bound::Int4Eq(*v)),
        Value::Double(v) => Some(Bound::Float8Eq(*v)),
        Value::Bytes(_) | Value::Owned(_) => value.bytes().map(Bound::TextEq),
        _ => None,
    }
}

/// The current silver row of a key, as far as the refresh needs it.
struct Current {
    key: u128,
    tid: Tid,
    rank: Rank,
    /// The hash of its values (lineage excluded), as `Ranked::content`.
    content: u128,
    /// Its link value, as a range of `CurrentRows::links`.
    link: Option<(usize, usize)>,
}

/// The stored rows of the keys a refresh brings, in key order, to be
/// merged with the new rows (sorted the same way). A daily full export
/// brings every key: a vector sorted once, then walked, touches memory in
/// order where a map of a million entries missed the cache at every insert
/// and every lookup.
struct CurrentRows {
    rows: Vec<Current>,
    links: Vec<u8>,
    /// Where the merge stands.
    next: std::cell::Cell<usize>,
}

impl CurrentRows {
    /// The stored row of `key`; keys must be asked for in ascending order.
    fn take(&self, key: u128) -> Option<&Current> {
        let mut next = self.next.get();
        while self.rows.get(next).is_some_and(|c| c.key < key) {
            next += 1;
        }
        self.next.set(next);
        self.rows.get(next).filter(|c| c.key == key)
    }

    fn link(&self, current: &Current) -> Option<Link> {
        current.link.map(|(start, end)| Link::from_slice(&self.links[start..end]))
    }
}

/// A set of key hashes as one bit each in a table of about eight bits per
/// key: small enough to stay in cache, so a whole-table read can skip most
/// unwanted rows before it decodes them. A false "maybe" costs only that
/// row's decoding: the merge with the new rows drops it.
struct KeyFilter {
    bits: Vec<u64>,
    mask: u64,
}

impl KeyFilter {
    fn of(keys: impl ExactSizeIterator<Item = u128>) -> KeyFilter {
        let size = (keys.len().max(1) * 8).next_power_of_two().max(64) as u64;
        let mut filter = KeyFilter { bits: vec![0; (size / 64) as usize], mask: size - 1 };
        for key in keys {
            let bit = filter.bit(key);
            filter.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        filter
    }

    fn bit(&self, key: u128) -> u64 {
        (key as u64 ^ (key >> 64) as u64) & self.mask
    }

    fn may_hold(&self, key: u128) -> bool {
        let bit = self.bit(key);
        self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0
    }
}

/// One index lookup costs about as much as reading this many rows in a
/// sequential scan (measured at scale 1: ~6 µs against ~0.4 µs). More new
/// keys than a table's rows over this, and the refresh reads the table
/// whole instead of looking each key up: a daily full export re-delivers
/// every key.
const LOOKUP_COST_IN_ROWS: usize = 16;

fn scan_is_cheaper(lookups: usize, table_rows: usize) -> bool {
    lookups.saturating_mul(LOOKUP_COST_IN_ROWS) > table_rows
}

/// The stored rows of the keys in `valid` (sorted by key): looked up one by
/// one, or read in one pass of the table when that is cheaper.
fn current_rows(
    spec: &TableSpec,
    plan: &Plan,
    live: &mut IndexScan,
    valid: &[Ranked],
    rows: &Candidates,
    context: &Context,
    link: Option<usize>,
) -> CurrentRows {
    let value_attrs: Vec<usize> = spec.columns.iter().map(|c| live.attr(c.name, c.ty.sql_type())).collect();
    let (batch_attr, row_attr) = (live.attr("_batch_id", SqlType::BigInt), live.attr("_row_number", SqlType::BigInt));
    let filter = KeyFilter::of(valid.iter().map(|r| r.key));
    let mut found = CurrentRows { rows: Vec::new(), links: Vec::new(), next: Default::default() };
    let mut buf = Vec::new();
    let mut visit = |row: &Row| {
        // The key first: in a whole-table read most rows may not be wanted.
        let key: SmallVec<[Value; MAX_COLUMNS]> =
            plan.key.iter().map(|&c| stored_value(row, value_attrs[c], spec.columns[c].ty)).collect();
        let key = hash(&key.iter().collect::<SmallVec<[&Value; MAX_COLUMNS]>>(), &mut buf);
        if !filter.may_hold(key) {
            return;
        }
        let stored: SmallVec<[Value; MAX_COLUMNS]> =
            spec.columns.iter().zip(&value_attrs).map(|(c, &a)| stored_value(row, a, c.ty)).collect();
        let stored: SmallVec<[&Value; MAX_COLUMNS]> = stored.iter().collect();
        let (batch, number) = (row.int8(batch_attr).unwrap_or_default(), row.int8(row_attr).unwrap_or_default());
        let link = link.and_then(|l| link_value(stored[l])).map(|value| {
            found.links.extend_from_slice(&value);
            (found.links.len() - value.len(), found.links.len())
        });
        let (rank, content) = (rank_of(plan, &stored, batch, number), hash(&stored, &mut buf));
        found.rows.push(Current { key, tid: row.tid, rank, content, link });
    };
    let keys = valid.chunk_by(|a, b| a.key == b.key).count();
    if scan_is_cheaper(keys, live.estimated_rows()) {
        live.scan_all(&mut visit);
    } else {
        let lookup_columns: Vec<usize> = spec.lookup().iter().map(|c| spec.column(c)).collect();
        for group in valid.chunk_by(|a, b| a.key == b.key) {
            let typed = plan.type_row(&rows.fields(group[0].at as usize), context);
            let values = values_of(&typed);
            let bounds: Vec<Bound> = lookup_columns.iter().filter_map(|&c| bound(values[c])).collect();
            live.for_each(&bounds, &mut visit);
        }
    }
    // A lookup by a key's prefix (an order's items) finds its neighbours
    // too, so a row can come twice; keys are unique in silver.
    found.rows.sort_unstable_by_key(|c| c.key);
    found.rows.dedup_by_key(|c| c.key);
    found
}

/// Per row of `rows`, whether its value of column `at` (a reference to
/// `parent`) is a key of the live parent table. The rows' values are
/// hashed, sorted and merged with the parent's keys, looked up one by one
/// or read in one pass of the table when that is cheaper: a daily full
/// export refers to a million parents at scale 10, and a hash set of them
/// missed the cache at every insert and every probe.
fn references_found(
    spec: &TableSpec,
    at: usize,
    parent: &'static str,
    rows: &Candidates,
    context: &Context,
    buf: &mut Vec<u8>,
) -> Vec<bool> {
    let (source, ty) = (rows.sources[at], spec.columns[at].ty);
    let value = |i: usize| type_value(ty, rows.field(i, source), context).ok().filter(|v| v.bytes().is_some());
    // (hash, row) of every row with a value, in hash order.
    let mut refs: Vec<(u128, u32)> =
        (0..rows.len()).filter_map(|i| Some((hash(&[&value(i)?], buf), i as u32))).collect();
    refs.sort_unstable_by_key(|r| r.0);
    let distinct: Vec<(u128, u32)> = refs.chunk_by(|a, b| a.0 == b.0).map(|g| g[0]).collect();

    let parent_spec = TABLES.iter().find(|t| t.table == parent).expect("a declared parent");
    let mut lookup = IndexScan::open(LIVE, parent, &parent_spec.lookup(), Lock::Read);
    let mut present: Vec<u128> = Vec::new();
    if scan_is_cheaper(distinct.len(), lookup.estimated_rows()) {
        let filter = KeyFilter::of(distinct.iter().map(|r| r.0));
        let key = lookup.attr(parent_spec.lookup()[0], SqlType::Text);
        lookup.scan_all(|row| {
            let h = hash(&[&Value::Bytes(row.text(key))], buf);
            if filter.may_hold(h) {
                present.push(h);
            }
        });
        present.sort_unstable();
    } else {
        // In value order, so that neighbouring lookups share index pages.
        let mut wanted: Vec<(Value, u128)> =
            distinct.iter().filter_map(|&(h, i)| Some((value(i as usize)?, h))).collect();
        wanted.sort_unstable_by(|a, b| a.0.bytes().cmp(&b.0.bytes()));
        for (value, h) in &wanted {
            let mut exists = false;
            lookup.for_each(&[Bound::TextEq(value.bytes().unwrap_or_default())], |_| exists = true);
            if exists {
                present.push(*h);
            }
        }
        present.sort_unstable();
    }
    lookup.close();

    let mut found = vec![false; rows.len()];
    let mut next = 0;
    for &(h, i) in &refs {
        while present.get(next).is_some_and(|&p| p < h) {
            next += 1;
        }
        found[i as usize] = present.get(next) == Some(&h);
    }
    found
}

fn rank_of(plan: &Plan, values: &[&Value], batch: i64, row: i64) -> Rank {
    let prefer = (!plan.prefer.is_empty()).then(|| plan.prefer.iter().map(|&c| values[c].rank()).collect());
    Rank { prefer, batch, row }
}

/// What an in-place apply holds per row beyond its CSV bytes (its fields'
/// ends and lineage, its key, rank and content hashes, the stored row it
/// competes with, its reference answers), measured on a scale-10 full
/// export: 772 MiB for tables of a million rows.
const APPLY_BYTES_PER_ROW: i64 = 512;

/// How many passes by key hash `table`'s new rows in `batches` need: a
/// daily full export of a big shop may not fit `maintenance_work_mem` at
/// once. Keys compete only with their own rows and their stored row, so
/// passes give the result one pass would, holding a `count`th of the rows
/// each.
fn passes_for(table: &str, batches: &[i64]) -> u64 {
    let estimate = Spi::get_one_with_args::<i64>(
        "SELECT coalesce(sum(f.bytes + f.rows * $3), 0)::bigint FROM golden360.bronze_files f
          WHERE f.table_name = $1 AND f.batch_id = ANY ($2)",
        &[table.into(), batches.to_vec().into(), APPLY_BYTES_PER_ROW.into()],
    )
    .unwrap_or_else(|e| spi_failed("reading golden360.bronze_files", e, DAMAGED_HINT))
    .unwrap_or(0);
    Pass::count_for_bytes(u64::try_from(estimate).unwrap_or(0))
}

/// The dedup key hash of a row given by `field` (a record position's
/// bytes), as `Plan::key_hash` makes it from the typed row.
fn key_of<'a>(key_fields: &[(Ty, usize)], field: impl Fn(usize) -> &'a [u8], context: &Context, buf: &mut Vec<u8>) -> u128 {
    let key: SmallVec<[Value; MAX_COLUMNS]> =
        key_fields.iter().map(|&(ty, f)| type_value(ty, field(f), context).unwrap_or(Value::Null)).collect();
    let key: SmallVec<[&Value; MAX_COLUMNS]> = key.iter().collect();
    hash(&key, buf)
}

fn apply_table(spec: &'static TableSpec, batches: &[i64], state: &mut State, visible: &OwnWritesVisible) -> TableDelta {
    let started = Instant::now();
    let plan = Plan::new(spec);
    let mut changes = ChangeLog::open(state.context.run_id, spec.table);
    let mut delta =
        TableDelta { table: spec.table, bronze_rows: 0, silver_rows: 0, duplicates: 0, quarantined: 0, written: 0, millis: 0.0 };

    // The products whose category name got a new translation.
    if !state.retranslated.is_empty() {
        delta.written += retranslate(spec, state, &mut changes);
        // The new rows compete with the rewritten versions, not the old.
        visible.advance();
    }

    let count = if batches.is_empty() { 1 } else { passes_for(spec.table, batches) };
    // Logged once per table, after every pass: a link can come from rows
    // of several passes (an order's items).
    let mut links: Vec<Link> = Vec::new();
    for pass in Pass::all(count) {
        apply_pass(spec, &plan, batches, state, pass, &mut delta, &mut links);
        visible.advance();
    }
    links.sort_unstable();
    links.dedup();
    for l in &links {
        changes.push(l);
    }
    changes.finish();
    delta.millis = started.elapsed().as_secs_f64() * 1000.0;
    delta
}

/// One pass of `apply_table` over the rows whose keys `pass` holds; adds
/// its counts to `delta` and its changed rows' links to `links`.
fn apply_pass(
    spec: &'static TableSpec,
    plan: &Plan,
    batches: &[i64],
    state: &mut State,
    pass: Pass,
    delta: &mut TableDelta,
    links: &mut Vec<Link>,
) {
    let started = Instant::now();
    let link = spec.gold_link.map(|c| spec.column(c));
    let mut buf = Vec::new();

    // 1. The new batches' rows, and quarantined rows whose missing
    //    reference arrived in this refresh (read back from the bronze
    //    record the quarantine keeps whole); those of this pass's keys.
    let mut bronze = BrinScan::open("bronze", spec.table, "_batch_id", Lock::Read);
    let attrs = BronzeAttrs::of(&bronze, spec);
    let mut rows = Candidates::new(spec, attrs.record_names);
    // The dedup key's columns: their types, and their fields' places in the record.
    let key_fields: Vec<(Ty, usize)> = plan.key.iter().map(|&c| (spec.columns[c].ty, rows.sources[c])).collect();
    let context = &state.context;
    for &batch in batches {
        bronze.for_each_equal(batch, |row| {
            if pass.holds_by(|| key_of(&key_fields, |f| row.text(attrs.record[f]), context, &mut buf)) {
                attrs.read(row, &mut rows);
            }
        });
    }
    bronze.close();
    let fresh = rows.len() as i64;
    let mut rechecked_tids: Vec<Tid> = Vec::new();
    for rule in spec.rules {
        let Check::Exists { column, parent } = rule.check else { continue };
        let Some(arrived) = state.new_keys.get(parent).filter(|k| !k.is_empty()) else { continue };
        let source = spec.columns[spec.column(column)].source;
        let arrived: Vec<String> = arrived.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
        for (tid, batch, row, record) in quarantined_for(spec.table, &rule.name, source, arrived) {
            let field = |name: &str| record.get(name).and_then(|v| v.as_str()).unwrap_or_default().as_bytes();
            if pass.holds_by(|| key_of(&key_fields, |f| field(attrs.record_names[f]), context, &mut buf)) {
                rechecked_tids.push(tid);
                rows.push(batch, row, attrs.record_names.iter().map(|n| field(n)));
            }
        }
    }
    let read = started.elapsed();
    // Rows are typed where they are needed and not kept typed: a daily full
    // export brings a million rows a table at scale 10, and their typed
    // values took ten times their bytes.

    // 2. References: per row, whether the value it points at is a key of
    //    the parent table.
    let mut references: HashMap<usize, Vec<bool>> = HashMap::new();
    for rule in spec.rules {
        let Check::Exists { column, parent } = rule.check else { continue };
        let at = spec.column(column);
        references.insert(at, references_found(spec, at, parent, &rows, &state.context, &mut buf));
    }

    // 3. Verdicts: quarantined (first failing rule) or a candidate for its key.
    let mut failed: Vec<(usize, usize)> = Vec::new();
    let mut valid: Vec<Ranked> = Vec::new();
    for i in 0..rows.len() {
        let (batch, row) = rows.lineage[i];
        let fields = rows.fields(i);
        let typed = plan.type_row(&fields, &state.context);
        let exists = |column, _, _: &Value| references.get(&column).is_some_and(|found: &Vec<bool>| found[i]);
        match plan.first_failure(&fields, &typed, exists) {
            Some(rule) => failed.push((i, rule)),
            None => {
                let values = values_of(&typed);
                valid.push(Ranked {
                    key: plan.key_hash(&values, &mut buf),
                    rank: rank_of(plan, &values, batch, row),
                    at: i as u32,
                    content: hash(&values, &mut buf),
                });
            }
        }
    }
    sort_by_key_best_first(&mut valid);
    let checked = started.elapsed();

    // 4. Per key, the best new rows against the current silver row.
    let mut live = IndexScan::open(LIVE, spec.table, &spec.lookup(), Lock::Write);
    let stored = current_rows(spec, plan, &mut live, &valid, &rows, &state.context, link);
    let lookup_columns: Vec<usize> = spec.lookup().iter().map(|c| spec.column(c)).collect();
    let keeps_keys = spec.is_parent();
    let is_translation = spec.table == TRANSLATIONS;
    let (mut new_keys, mut duplicates) = (0i64, 0i64);
    let mut replaced: Vec<Tid> = Vec::new();
    let mut winners: Vec<usize> = Vec::new();
    for group in valid.chunk_by(|a, b| a.key == b.key) {
        let current = stored.take(group[0].key);
        // The new rows that outrank the stored one; the rest are duplicates.
        let above = group.iter().take_while(|r| current.as_ref().is_none_or(|c| r.rank > c.rank)).count();
        if above == 0 {
            duplicates += group.len() as i64;
            continue;
        }
        let keep = lineage_row(&group[..above], |r| r.content);
        let content_moved = current.as_ref().is_none_or(|c| c.content != group[0].content);
        if !content_moved && keep == above - 1 {
            // The same content re-delivered: the stored row keeps its lineage.
            duplicates += group.len() as i64;
            continue;
        }
        let winner = group[keep].at as usize;
        let typed = plan.type_row(&rows.fields(winner), &state.context);
        let values = values_of(&typed);
        let new_link = link.and_then(|l| link_value(values[l]));
        match current {
            None => {
                new_keys += 1;
                duplicates += group.len() as i64 - 1;
                links.extend(new_link);
                if keeps_keys {
                    if let Some(k) = values[lookup_columns[0]].bytes() {
                        state.new_keys.entry(spec.table).or_default().insert(k.to_vec());
                    }
                }
                if is_translation {
                    state.retranslated.extend(values[0].bytes().map(|b| b.to_vec()));
                }
            }
            Some(current) => {
                duplicates += group.len() as i64;
                replaced.push(current.tid);
                if content_moved {
                    links.extend(stored.link(current));
                    links.extend(new_link);
                    if is_translation {
                        state.retranslated.extend(values[0].bytes().map(|b| b.to_vec()));
                    }
                }
            }
        }
        winners.push(winner);
    }

    let compared = started.elapsed();
    // 5. Write: replaced winners and re-checked quarantine rows out, new
    //    winners and quarantined rows in.
    delete_rows(&live, &mut replaced);
    live.close();
    let rechecked = rechecked_tids.len() as i64;
    if !rechecked_tids.is_empty() {
        let quarantine = HeapScan::open(LIVE, "quarantine", Lock::Write);
        delete_rows(&quarantine, &mut rechecked_tids);
        quarantine.close();
    }
    let mut writer = SilverWriter::open(LIVE, spec).with_sorted_index_inserts();
    for &i in &winners {
        let (batch, row) = rows.lineage[i];
        writer.push(&values_of(&plan.type_row(&rows.fields(i), &state.context)), batch, row);
    }
    delta.written += writer.finish();
    if !failed.is_empty() {
        let mut quarantine = QuarantineWriter::open(LIVE);
        for &(i, rule) in &failed {
            let (batch, row) = rows.lineage[i];
            quarantine.push(state.context.run_id, spec, &plan.rules[rule], batch, row, &rows.record(i), attrs.record_names);
        }
        quarantine.insert.finish();
    }
    pgrx::debug1!(
        "golden360 silver.{}{}: {} rows read {:.0} ms, checked {:.0} ms, compared with silver {:.0} ms, written {:.0} ms",
        spec.table,
        if pass.count > 1 { format!(" (pass {} of {})", pass.index + 1, pass.count) } else { String::new() },
        rows.len(),
        read.as_secs_f64() * 1e3,
        (checked - read).as_secs_f64() * 1e3,
        (compared - checked).as_secs_f64() * 1e3,
        (started.elapsed() - compared).as_secs_f64() * 1e3
    );
    delta.bronze_rows += fresh;
    delta.silver_rows += new_keys;
    delta.duplicates += duplicates;
    delta.quarantined += failed.len() as i64 - rechecked;
}

/// The quarantine rows of `table` for `reason` whose field `source` is one
/// of `values`: (tid, batch, row, the bronze record).
fn quarantined_for(
    table: &str,
    reason: &str,
    source: &str,
    values: Vec<String>,
) -> Vec<(Tid, i64, i64, serde_json::Map<String, serde_json::Value>)> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT ctid, batch_id, row_number, record FROM silver.quarantine
              WHERE table_name = $1 AND reason = $2 AND record ->> $3 = ANY ($4)",
            None,
            &[table.into(), reason.into(), source.into(), values.into()],
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (Some(tid), Some(batch), Some(number), Some(pgrx::JsonB(serde_json::Value::Object(record)))) =
                (row.get::<Tid>(1)?, row.get::<i64>(2)?, row.get::<i64>(3)?, row.get::<pgrx::JsonB>(4)?)
            else {
                continue;
            };
            out.push((tid, batch, number, record));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .unwrap_or_else(|e| spi_failed("reading silver.quarantine", e, DAMAGED_HINT))
}

/// A link value (an id, or a zip) without an allocation of its own: a full
/// export looks up every stored row's.
type Link = SmallVec<[u8; 64]>;

/// A row's link value as the change log's text (the geolocation zip is
/// an integer).
fn link_value(value: &Value) -> Option<Link> {
    match value {
        Value::Int(v) => Some(SmallVec::from_slice(v.to_string().as_bytes())),
        other => other.bytes().map(SmallVec::from_slice),
    }
}

/// silver.category_translation as the Portuguese → English map.
fn read_translations() -> HashMap<Vec<u8>, String> {
    let mut scan = HeapScan::open(LIVE, TRANSLATIONS, Lock::Read);
    let [pt, en] = ["product_category_name", "product_category_name_english"].map(|c| scan.attr(c, SqlType::Text));
    let mut map = HashMap::new();
    scan.for_each(|row| {
        map.insert(row.text(pt).to_vec(), String::from_utf8_lossy(row.text(en)).into_owned());
    });
    scan.close();
    map
}

/// Rewrite the rows of `spec` (products) whose English category follows a
/// translation that changed: same lineage, the new category. Returns the
/// rows rewritten.
fn retranslate(spec: &'static TableSpec, state: &State, changes: &mut ChangeLog) -> i64 {
    let Some(english) = spec.columns.iter().position(|c| c.ty == Ty::EnglishCategory) else { return 0 };
    let name = spec
        .columns
        .iter()
        .position(|c| c.ty == Ty::Trimmed && c.source == spec.columns[english].source)
        .expect("products keep the Portuguese name beside the English one (spec test)");
    let mut scan = HeapScan::open(LIVE, spec.table, Lock::Write);
    let value_attrs: Vec<usize> = spec.columns.iter().map(|c| scan.attr(c.name, c.ty.sql_type())).collect();
    let (batch_attr, row_attr) = (scan.attr("_batch_id", SqlType::BigInt), scan.attr("_row_number", SqlType::BigInt));
    let mut rewritten: Vec<(Tid, Vec<Value<'static>>, i64, i64)> = Vec::new();
    scan.for_each(|row| {
        let Some(pt) = row.opt_text(value_attrs[name]) else { return };
        if !state.retranslated.contains(pt) {
            return;
        }
        let now = state.context.translations.get(pt).cloned().unwrap_or_else(|| String::from_utf8_lossy(pt).into_owned());
        if row.opt_text(value_attrs[english]) == Some(now.as_bytes()) {
            return;
        }
        let mut values: Vec<Value<'static>> =
            spec.columns.iter().zip(&value_attrs).map(|(c, &a)| owned(stored_value(row, a, c.ty))).collect();
        values[english] = Value::Owned(now);
        rewritten.push((row.tid, values, row.int8(batch_attr).unwrap_or_default(), row.int8(row_attr).unwrap_or_default()));
    });
    let mut tids: Vec<Tid> = rewritten.iter().map(|r| r.0).collect();
    delete_rows(&scan, &mut tids);
    scan.close();
    let mut writer = SilverWriter::open(LIVE, spec).with_sorted_index_inserts();
    let link = spec.gold_link.map(|c| spec.column(c));
    for (_, values, batch, row) in &rewritten {
        let refs: Vec<&Value> = values.iter().collect();
        writer.push(&refs, *batch, *row);
        if let Some(l) = link.and_then(|l| values[l].bytes()) {
            changes.push(l);
        }
    }
    writer.finish()
}

/// Appends `(run, table, link)` rows to golden360_internal.silver_changes.
struct ChangeLog {
    insert: Option<BulkInsert>,
    run_id: i64,
    table: &'static str,
    row: RowBuf,
}

impl ChangeLog {
    fn open(run_id: i64, table: &'static str) -> ChangeLog {
        ChangeLog { insert: None, run_id, table, row: RowBuf::new(CHANGE_COLUMNS.len()) }
    }

    fn push(&mut self, link: &[u8]) {
        let insert = self
            .insert
            .get_or_insert_with(|| BulkInsert::open_declared("golden360_internal", "silver_changes", &CHANGE_COLUMNS));
        let (run_id, table) = (self.run_id, self.table);
        self.row.build(|b| {
            b.int8(0, run_id);
            b.text(1, table.as_bytes());
            b.text(2, link);
        });
        insert.push_row(&mut self.row);
    }

    fn finish(self) {
        if let Some(insert) = self.insert {
            insert.finish();
        }
    }
}
