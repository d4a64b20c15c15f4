//! Bulk insertion into a table, the way COPY FROM does it: tuples are formed
//! in a per-batch memory context, written through the table AM's
//! multi-insert with a bulk-insert buffer strategy, then their index entries
//! are added. Used by bronze (CSV rows), silver and gold (typed rows, built
//! with `RowBuf`).
//!
//! Writing this way bypasses the executor's INSERT checks, so `open` does the
//! privilege check itself and refuses tables with triggers or constraints it
//! would not honour.
//!
//! With `sorted_index_inserts`, index entries are not added row by row but
//! at `finish`, each btree index's in its own key order (sorted as CREATE
//! INDEX sorts them): inserting in key order appends at the right edge of
//! the tree instead of descending to a random leaf for every row, which is
//! what makes loading into a table with several indexes cheap.

use super::relation::{check_columns, own_table, require_privilege, OwnTable, Privilege};
use super::scan::{OpenTable, Tid};
use super::types::{Column, SqlType};
use crate::error::raise;
use pgrx::{pg_sys, PgSqlErrorCode};

/// Flush thresholds, COPY's own (copyfrom.c MAX_BUFFERED_TUPLES/BYTES).
const MAX_BUFFERED_TUPLES: usize = 1000;
const MAX_BUFFERED_BYTES: usize = 65_535;

/// A table opened for bulk insertion. Call `finish` when done; on an error
/// the transaction's abort releases everything.
pub struct BulkInsert {
    rel: pg_sys::Relation,
    slots: Vec<*mut pg_sys::TupleTableSlot>,
    /// The memory context `open` ran in: the slots' (made as rows come).
    open_cx: pg_sys::MemoryContext,
    buffered: usize,
    buffered_bytes: usize,
    bistate: pg_sys::BulkInsertState,
    cid: pg_sys::CommandId,
    batch_cx: pg_sys::MemoryContext,
    estate: *mut pg_sys::EState,
    result_rel: *mut pg_sys::ResultRelInfo,
    not_null: Vec<usize>,
    name: String,
    inserted: i64,
    /// Per index, when inserting sorted: its sort (btree), or None (other
    /// access methods: inserted at each flush, in row order).
    sorts: Option<Vec<Option<*mut pg_sys::Tuplesortstate>>>,
}

impl BulkInsert {
    /// Open one of golden360's own tables for insertion by the current user.
    pub fn open(table: &OwnTable) -> BulkInsert {
        let (relid, name) = (table.oid, table.name.as_str());
        require_privilege(relid, name, Privilege::Insert);
        // SAFETY: `relid` is one of golden360's own plain tables (own_table);
        // table_open locks it until the transaction ends. Everything made
        // here (slots, executor state, memory context) is released in
        // `finish`, or by the transaction's abort on an error.
        unsafe {
            let rel = pg_sys::table_open(relid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            let rd_rel = &*(*rel).rd_rel;
            if rd_rel.relhastriggers && has_row_insert_triggers(rel) {
                raise(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!("{name} has an INSERT trigger; golden360 bulk-loads it without firing triggers"),
                    None,
                    "Drop the trigger; golden360 owns this table.",
                );
            }
            let tupdesc = (*rel).rd_att;
            let constraints = (*tupdesc).constr;
            if !constraints.is_null() && (*constraints).num_check > 0 {
                raise(
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!("{name} has a CHECK constraint; golden360 bulk-loads it and enforces its own rules"),
                    None,
                    "Drop the constraint; golden360 owns this table.",
                );
            }
            let not_null = pgrx::PgTupleDesc::from_pg_unchecked(tupdesc)
                .iter()
                .enumerate()
                .filter(|(_, att)| att.attnotnull && !att.is_dropped())
                .map(|(i, _)| i)
                .collect();
            // Slots are made as rows arrive: a refresh opens many inserts
            // that take a handful of rows, and each slot pins the tuple
            // descriptor in the resource owner.
            let slots = Vec::new();
            let estate = pg_sys::CreateExecutorState();
            let result_rel =
                pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>()) as *mut pg_sys::ResultRelInfo;
            (*result_rel).type_ = pg_sys::NodeTag::T_ResultRelInfo;
            pg_sys::InitResultRelInfo(result_rel, rel, 1, std::ptr::null_mut(), 0);
            pg_sys::ExecOpenIndices(result_rel, false);
            BulkInsert {
                rel,
                slots,
                open_cx: pg_sys::CurrentMemoryContext,
                buffered: 0,
                buffered_bytes: 0,
                bistate: pg_sys::GetBulkInsertState(),
                cid: pg_sys::GetCurrentCommandId(true),
                batch_cx: pg_sys::AllocSetContextCreateExtended(
                    pg_sys::CurrentMemoryContext,
                    c"golden360 bulk insert batch".as_ptr(),
                    pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
                ),
                estate,
                result_rel,
                not_null,
                name: name.to_string(),
                inserted: 0,
                sorts: None,
            }
        }
    }

    /// Open golden360's own table `schema.table` and insist on exactly the
    /// `columns` declared for it (rows are built positionally).
    pub fn open_declared(schema: &str, table: &str, columns: &[Column]) -> BulkInsert {
        let table = own_table(schema, table);
        let insert = BulkInsert::open(&table);
        check_columns(insert.rel, &table.name, columns);
        insert
    }

    /// Add index entries at `finish`, each index's in its key order (see
    /// the module comment). Unique indexes still raise on a duplicate, then.
    /// Tables with an exclusion or deferrable constraint keep row-by-row
    /// inserts, whose checks those need.
    pub fn sorted_index_inserts(mut self) -> BulkInsert {
        // SAFETY: the relation and its indexes are open (ExecOpenIndices in
        // `open`); the sorts made here are ended in insert_sorted_entries.
        unsafe {
            let indexes = self.indexes();
            if indexes.iter().any(|&(index, info)| !(*info).ii_ExclusionOps.is_null() || !(*(*index).rd_index).indimmediate) {
                return self;
            }
            // The sorts are filled together, so they share the budget (as
            // ByteSort's shares do): the entries of a step's writes are
            // held within maintenance_work_mem, spilling beyond it.
            let btrees = indexes.iter().filter(|&&(index, _)| (*(*index).rd_rel).relam == pg_sys::BTREE_AM_OID).count();
            let work_mem = (pg_sys::maintenance_work_mem / i32::try_from(btrees.max(1)).unwrap_or(i32::MAX)).max(64);
            self.sorts = Some(
                indexes
                    .iter()
                    .map(|&(index, _)| {
                        ((*(*index).rd_rel).relam == pg_sys::BTREE_AM_OID).then(|| {
                            pg_sys::tuplesort_begin_index_btree(
                                self.rel,
                                index,
                                false,
                                false,
                                work_mem,
                                std::ptr::null_mut(),
                                pg_sys::TUPLESORT_NONE as i32,
                            )
                        })
                    })
                    .collect(),
            );
        }
        self
    }

    /// The open indexes and their IndexInfo.
    /// # Safety
    /// The relation's indexes must be open (they are from `open` to `finish`).
    unsafe fn indexes(&self) -> Vec<(pg_sys::Relation, *mut pg_sys::IndexInfo)> {
        let n = (*self.result_rel).ri_NumIndices as usize;
        (0..n)
            .map(|i| (*(*self.result_rel).ri_IndexRelationDescs.add(i), *(*self.result_rel).ri_IndexRelationInfo.add(i)))
            .collect()
    }

    /// Hand slot's index entries to each index's sort, or insert them now
    /// for an index that is not sorted. Mirrors ExecInsertIndexTuples.
    /// # Safety
    /// `slot` holds a tuple just inserted into this relation.
    unsafe fn queue_index_entries(&mut self, slot: *mut pg_sys::TupleTableSlot) {
        let Some(sorts) = &self.sorts else { return };
        let econtext = pg_sys::MakePerTupleExprContext(self.estate);
        (*econtext).ecxt_scantuple = slot;
        let mut values = [pg_sys::Datum::from(0); pg_sys::INDEX_MAX_KEYS as usize];
        let mut isnull = [false; pg_sys::INDEX_MAX_KEYS as usize];
        for (&(index, info), &sort) in self.indexes().iter().zip(sorts) {
            if !(*info).ii_ReadyForInserts {
                continue;
            }
            if !(*info).ii_Predicate.is_null() {
                if (*info).ii_PredicateState.is_null() {
                    (*info).ii_PredicateState = pg_sys::ExecPrepareQual((*info).ii_Predicate, self.estate);
                }
                if !pg_sys::ExecQual((*info).ii_PredicateState, econtext) {
                    continue;
                }
            }
            pg_sys::FormIndexDatum(info, slot, self.estate, values.as_mut_ptr(), isnull.as_mut_ptr());
            match sort {
                Some(sort) => {
                    pg_sys::tuplesort_putindextuplevalues(sort, index, &mut (*slot).tts_tid, values.as_mut_ptr(), isnull.as_mut_ptr())
                }
                None => {
                    pg_sys::index_insert(
                        index,
                        values.as_mut_ptr(),
                        isnull.as_mut_ptr(),
                        &mut (*slot).tts_tid,
                        self.rel,
                        unique_check(index),
                        false,
                        info,
                    );
                }
            }
        }
    }

    /// Insert every sorted index's entries, in key order.
    /// # Safety
    /// Called once, from `finish`, while the indexes are still open.
    unsafe fn insert_sorted_entries(&mut self) {
        let Some(sorts) = self.sorts.take() else { return };
        let mut values = [pg_sys::Datum::from(0); pg_sys::INDEX_MAX_KEYS as usize];
        let mut isnull = [false; pg_sys::INDEX_MAX_KEYS as usize];
        for (&(index, info), sort) in self.indexes().iter().zip(sorts) {
            let Some(sort) = sort else { continue };
            pg_sys::tuplesort_performsort(sort);
            let check = unique_check(index);
            let old = pg_sys::MemoryContextSwitchTo(self.batch_cx);
            for n in 1.. {
                let entry = pg_sys::tuplesort_getindextuple(sort, true);
                if entry.is_null() {
                    break;
                }
                pg_sys::index_deform_tuple(entry, (*index).rd_att, values.as_mut_ptr(), isnull.as_mut_ptr());
                pg_sys::index_insert(index, values.as_mut_ptr(), isnull.as_mut_ptr(), &mut (*entry).t_tid, self.rel, check, false, info);
                if n % MAX_BUFFERED_TUPLES == 0 {
                    pg_sys::MemoryContextReset(self.batch_cx);
                    pg_sys::check_for_interrupts!();
                }
            }
            pg_sys::MemoryContextSwitchTo(old);
            pg_sys::MemoryContextReset(self.batch_cx);
            pg_sys::tuplesort_end(sort);
        }
    }

    /// Each attribute's name and type OID (None for a dropped column).
    pub fn attributes(&self) -> Vec<Option<(String, pg_sys::Oid)>> {
        super::relation::attributes(self.rel).into_iter().map(|a| a.map(|(name, oid, _)| (name, oid))).collect()
    }

    pub fn tuple_desc(&self) -> pg_sys::TupleDesc {
        // SAFETY: the relation is open while `self` lives.
        unsafe { (*self.rel).rd_att }
    }

    /// Run `f` with the current batch's memory context current: what it
    /// allocates (numerics, jsonb) lives until the next flush, after the row
    /// it belongs to is formed.
    pub fn in_batch_context<R>(&self, f: impl FnOnce() -> R) -> R {
        // SAFETY: the batch context lives as long as the writer.
        unsafe { super::context::within(self.batch_cx, f) }
    }

    /// Buffer the row `row` last built.
    pub fn push_row(&mut self, row: &mut RowBuf) {
        self.push(&mut row.datums, &mut row.nulls);
    }

    /// Buffer one row. By-reference datums must stay valid until this call
    /// returns: heap_form_tuple copies them into the batch context.
    pub fn push(&mut self, values: &mut [pg_sys::Datum], nulls: &mut [bool]) {
        crate::memory::check();
        if let Some(&i) = self.not_null.iter().find(|&&i| nulls[i]) {
            // A bug in golden360, not bad input: rules run before rows get here.
            raise(
                PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
                format!("golden360 tried to write NULL into NOT NULL column {} of {}", i + 1, self.name),
                None,
                "Please report this; nothing of this run was kept.",
            );
        }
        // SAFETY: `values` and `nulls` have one entry per attribute of the
        // relation (RowBuf and the callers are built from its declaration,
        // checked by check_columns); the tuple is formed in the batch
        // context and owned by the slot until the next flush. A new slot is
        // made in the context that held the ones `open` used to make, so
        // `finish` drops them all alike.
        unsafe {
            let old = pg_sys::MemoryContextSwitchTo(self.batch_cx);
            let tuple = pg_sys::heap_form_tuple(self.tuple_desc(), values.as_mut_ptr(), nulls.as_mut_ptr());
            pg_sys::MemoryContextSwitchTo(old);
            self.buffered_bytes += (*tuple).t_len as usize;
            if self.buffered == self.slots.len() {
                // In the context `open` ran in, which lives until `finish`.
                let old = pg_sys::MemoryContextSwitchTo(self.open_cx);
                self.slots.push(pg_sys::MakeSingleTupleTableSlot(self.tuple_desc(), &pg_sys::TTSOpsHeapTuple));
                pg_sys::MemoryContextSwitchTo(old);
            }
            // shouldFree: the slot owns the tuple, so the AM uses it in place.
            pg_sys::ExecStoreHeapTuple(tuple, self.slots[self.buffered], true);
        }
        self.buffered += 1;
        if self.buffered == MAX_BUFFERED_TUPLES || self.buffered_bytes >= MAX_BUFFERED_BYTES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.buffered == 0 {
            return;
        }
        // SAFETY: the first `buffered` slots hold tuples formed for this
        // relation; the AM inserts them, then the batch context is reset.
        unsafe {
            let old = pg_sys::MemoryContextSwitchTo(self.batch_cx);
            let n = self.buffered as i32;
            pg_sys::table_multi_insert(self.rel, self.slots.as_mut_ptr(), n, self.cid, 0, self.bistate);
            if self.sorts.is_some() {
                for i in 0..self.buffered {
                    self.queue_index_entries(self.slots[i]);
                }
            } else if (*self.result_rel).ri_NumIndices > 0 {
                for &slot in &self.slots[..self.buffered] {
                    // A unique index raises on a duplicate key here.
                    pg_sys::ExecInsertIndexTuples(
                        self.result_rel,
                        slot,
                        self.estate,
                        false,
                        false,
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                    );
                }
            }
            pg_sys::MemoryContextSwitchTo(old);
            for &slot in &self.slots[..self.buffered] {
                pg_sys::ExecClearTuple(slot);
            }
            pg_sys::MemoryContextReset(self.batch_cx);
            if !(*self.estate).es_per_tuple_exprcontext.is_null() {
                pg_sys::MemoryContextReset((*(*self.estate).es_per_tuple_exprcontext).ecxt_per_tuple_memory);
            }
        }
        self.inserted += self.buffered as i64;
        self.buffered = 0;
        self.buffered_bytes = 0;
        pg_sys::check_for_interrupts!();
    }

    /// Flush, release, and make the rows visible to later commands of this
    /// transaction. Returns the number of rows inserted.
    pub fn finish(mut self) -> i64 {
        self.flush();
        // SAFETY: releases, once, what `open` made, in reverse order.
        unsafe {
            self.insert_sorted_entries();
            pg_sys::ExecCloseIndices(self.result_rel);
            pg_sys::FreeExecutorState(self.estate);
            pg_sys::table_finish_bulk_insert(self.rel, 0);
            pg_sys::FreeBulkInsertState(self.bistate);
            for &slot in &self.slots {
                pg_sys::ExecDropSingleTupleTableSlot(slot);
            }
            pg_sys::MemoryContextDelete(self.batch_cx);
            // Keep the lock until commit, as any writer does.
            pg_sys::table_close(self.rel, pg_sys::NoLock as pg_sys::LOCKMODE);
            pg_sys::CommandCounterIncrement();
        }
        self.inserted
    }
}

/// The uniqueness check an insert into `index` makes (immediate constraints
/// only; see `sorted_index_inserts`).
/// # Safety
/// `index` is an open index relation.
unsafe fn unique_check(index: pg_sys::Relation) -> pg_sys::IndexUniqueCheck::Type {
    if (*(*index).rd_index).indisunique {
        pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES
    } else {
        pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO
    }
}

/// # Safety
/// `rel` is an open relation.
unsafe fn has_row_insert_triggers(rel: pg_sys::Relation) -> bool {
    let triggers = (*rel).trigdesc;
    !triggers.is_null() && ((*triggers).trig_insert_before_row || (*triggers).trig_insert_after_row)
}

/// Append `bytes` as a text varlena (4-byte header) to `buf`, 4-byte aligned;
/// returns its offset. Build a row's fields this way, then take pointers
/// once the buffer no longer grows.
pub fn push_varlena(buf: &mut Vec<u8>, bytes: &[u8]) -> usize {
    // VARSIZE_4B's layout on little-endian machines (size << 2).
    const _: () = assert!(cfg!(target_endian = "little"), "varlena headers are built little-endian");
    let at = buf.len().next_multiple_of(4);
    buf.resize(at, 0);
    buf.extend_from_slice(&(((bytes.len() + pg_sys::VARHDRSZ) as u32) << 2).to_le_bytes());
    buf.extend_from_slice(bytes);
    at
}

/// One row's datums, built column by column. Text is gathered into one
/// buffer and pointed to once the buffer stops growing; numerics and arrays
/// are allocated in the current memory context.
pub struct RowBuf {
    datums: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
    scratch: Vec<u8>,
    /// (column, offset in scratch) of each text value.
    texts: Vec<(usize, usize)>,
    /// (column, range in `elements`) of each text[] value.
    arrays: Vec<(usize, std::ops::Range<usize>)>,
    elements: Vec<usize>,
}

impl RowBuf {
    pub fn new(columns: usize) -> RowBuf {
        RowBuf {
            datums: vec![pg_sys::Datum::from(0); columns],
            nulls: vec![true; columns],
            scratch: Vec::with_capacity(1024),
            texts: Vec::new(),
            arrays: Vec::new(),
            elements: Vec::new(),
        }
    }

    /// Build a row: `fill` sets every column (unset ones are NULL).
    pub fn build(&mut self, fill: impl FnOnce(&mut RowBuf)) {
        self.scratch.clear();
        self.texts.clear();
        self.arrays.clear();
        self.elements.clear();
        self.nulls.fill(true);
        fill(self);
        let base = self.scratch.as_ptr();
        for &(column, at) in &self.texts {
            // SAFETY: `at` is an offset push_varlena returned into `scratch`,
            // which no longer grows for this row.
            self.datums[column] = pg_sys::Datum::from(unsafe { base.add(at) });
        }
        for (column, range) in &self.arrays {
            // SAFETY: as above, for each element.
            let mut items: Vec<pg_sys::Datum> =
                self.elements[range.clone()].iter().map(|&at| pg_sys::Datum::from(unsafe { base.add(at) })).collect();
            // SAFETY: `items` holds that many text datums, which
            // construct_array_builtin copies into a new array in the
            // current memory context.
            let array = unsafe { pg_sys::construct_array_builtin(items.as_mut_ptr(), items.len() as i32, pg_sys::TEXTOID) };
            self.datums[*column] = pg_sys::Datum::from(array);
        }
    }

    /// A datum the caller made (by value, or valid until the row is pushed).
    pub fn datum(&mut self, column: usize, datum: pg_sys::Datum) {
        self.set(column, datum);
    }

    fn set(&mut self, column: usize, datum: pg_sys::Datum) {
        self.datums[column] = datum;
        self.nulls[column] = false;
    }

    pub fn null(&mut self, column: usize) {
        self.nulls[column] = true;
    }

    pub fn text(&mut self, column: usize, bytes: &[u8]) {
        self.texts.push((column, push_varlena(&mut self.scratch, bytes)));
        self.nulls[column] = false;
    }

    pub fn opt_text(&mut self, column: usize, bytes: Option<&[u8]>) {
        match bytes {
            Some(b) => self.text(column, b),
            None => self.null(column),
        }
    }

    pub fn text_array<'b>(&mut self, column: usize, items: impl Iterator<Item = &'b [u8]>) {
        let start = self.elements.len();
        for item in items {
            self.elements.push(push_varlena(&mut self.scratch, item));
        }
        self.arrays.push((column, start..self.elements.len()));
        self.nulls[column] = false;
    }

    pub fn int2(&mut self, column: usize, v: i16) {
        self.set(column, pg_sys::Datum::from(v));
    }

    pub fn int4(&mut self, column: usize, v: i32) {
        self.set(column, pg_sys::Datum::from(v));
    }

    pub fn float8(&mut self, column: usize, v: f64) {
        self.set(column, pg_sys::Datum::from(v.to_bits()));
    }

    pub fn date(&mut self, column: usize, days: Option<i32>) {
        match days {
            Some(d) => self.set(column, pg_sys::Datum::from(d)),
            None => self.null(column),
        }
    }

    /// A bigint, timestamp or timestamptz.
    pub fn int8(&mut self, column: usize, v: i64) {
        self.set(column, pg_sys::Datum::from(v));
    }

    /// `scaled` / 10^s as a value of the column's type `ty`, numeric(p, s).
    /// A value the typmod cannot hold is an error (22003), never stored: the
    /// bulk path skips the executor's typmod coercion.
    pub fn numeric(&mut self, column: usize, scaled: i64, ty: SqlType) {
        let SqlType::Numeric(_, scale) = ty else {
            raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("column {} is not numeric", column + 1), None, "")
        };
        if !ty.holds(scaled) {
            raise(
                PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
                format!("value {} is out of range for {} (column {})", decimal(scaled, scale), ty.sql(), column + 1),
                None,
                "Nothing was written. The column's precision cannot hold this value; check the source data.",
            );
        }
        // SAFETY: builds a numeric in the current memory context from plain integers.
        let numeric = unsafe { pg_sys::int64_div_fast_to_numeric(scaled, i32::from(scale)) };
        self.set(column, pg_sys::Datum::from(numeric));
    }

    /// The datums and NULL flags of the row last built.
    pub fn values(&self) -> (&[pg_sys::Datum], &[bool]) {
        (&self.datums, &self.nulls)
    }
}

/// `scaled` / 10^scale written out in decimal, for messages.
pub fn decimal(scaled: i64, scale: u16) -> String {
    let divisor = 10i128.pow(u32::from(scale));
    let (value, sign) = (i128::from(scaled).abs(), if scaled < 0 { "-" } else { "" });
    if scale == 0 {
        return format!("{sign}{value}");
    }
    format!("{sign}{}.{:0width$}", value / divisor, value % divisor, width = usize::from(scale))
}

/// Delete rows of a table a scan holds open by their tids (rows this transaction's
/// scans saw), after checking the current user may; then make the deletes
/// visible to what follows (CommandCounterIncrement), so unique keys are
/// free for the inserts that replace them.
pub fn delete_rows(table: &impl OpenTable, tids: &mut [Tid]) {
    table.require_privilege(Privilege::Delete);
    let rel = table.open_heap().relation();
    // SAFETY: each tid names a row of `rel` visible to the active snapshot,
    // deleted once (callers collect distinct tids); simple_table_tuple_delete
    // raises on a concurrent update, which golden360's layer locks exclude.
    unsafe {
        for tid in tids.iter_mut() {
            pg_sys::simple_table_tuple_delete(rel, tid, pg_sys::GetActiveSnapshot());
        }
        pg_sys::CommandCounterIncrement();
    }
}
