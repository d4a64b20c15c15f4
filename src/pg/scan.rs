//! Scans of golden360's own tables: sequential heap scans for the code that
//! reads whole tables (a full build), and btree index scans for the code
//! that reads only what changed (an incremental refresh); those read the
//! index alone when it holds every column asked for and the visibility map
//! marks the row's page all visible, as PostgreSQL's index-only scans do.
//! Each row is a slot's (or an index tuple's) datums; text and numeric
//! values are read in place.

use super::relation::{check_columns, column_index, own_table, require_privilege, Privilege};
use super::types::{Column, SqlType};
use crate::error::raise;
use pgrx::{pg_sys, PgSqlErrorCode};
use std::cell::Cell;

/// The lock a scan takes on its table, held to the end of the transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    /// AccessShareLock: the step only reads the table.
    Read,
    /// RowExclusiveLock: the step also writes or deletes the table's rows.
    Write,
}

impl Lock {
    fn mode(self) -> pg_sys::LOCKMODE {
        (match self {
            Lock::Read => pg_sys::AccessShareLock,
            Lock::Write => pg_sys::RowExclusiveLock,
        }) as pg_sys::LOCKMODE
    }
}

/// Where a row version is stored (block and line pointer): what a scan
/// hands out and a delete or rewrite takes back.
pub type Tid = pg_sys::ItemPointerData;

/// A heap scan of one table under the active snapshot.
pub struct HeapScan {
    rel: pg_sys::Relation,
    slot: *mut pg_sys::TupleTableSlot,
    row_cx: pg_sys::MemoryContext,
    name: String,
    columns: usize,
    /// The last attribute looked up: rows are decoded up to it.
    last_attr: Cell<usize>,
    /// The attributes looked up, as bits (all set once every column is
    /// wanted, or one past the 128th): what an index-only read must hold.
    wanted: Cell<u128>,
}

impl HeapScan {
    /// Open golden360's own table `schema.table` (see `relation::own_table`),
    /// locked in `lock` until the end of the transaction.
    pub fn open(schema: &str, table: &str, lock: Lock) -> HeapScan {
        let table = own_table(schema, table);
        HeapScan::open_oid(table.oid, table.name, lock)
    }

    /// Open any plain table by OID: for tests of the scan itself.
    #[cfg(any(test, feature = "pg_test"))]
    pub fn open_for_test(relid: pg_sys::Oid) -> HeapScan {
        HeapScan::open_oid(relid, "test table".into(), Lock::Read)
    }

    fn open_oid(relid: pg_sys::Oid, name: String, lock: Lock) -> HeapScan {
        // SAFETY: `relid` is a plain table (checked by own_table, or by the
        // test that made it); table_open locks it, and the slot and memory
        // context made here are released in `close` (or by the
        // transaction's abort on an error).
        unsafe {
            let rel = pg_sys::table_open(relid, lock.mode());
            HeapScan {
                rel,
                slot: pg_sys::table_slot_create(rel, std::ptr::null_mut()),
                row_cx: pg_sys::AllocSetContextCreateExtended(
                    pg_sys::CurrentMemoryContext,
                    c"golden360 scanned row".as_ptr(),
                    pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
                ),
                name,
                columns: (*(*rel).rd_att).natts as usize,
                last_attr: Cell::new(0),
                wanted: Cell::new(0),
            }
        }
    }

    /// The open relation, for the pg layer's own calls (the layers hand
    /// over the scan).
    pub(super) fn relation(&self) -> pg_sys::Relation {
        self.rel
    }

    /// The rows the table holds, estimated as the planner does: the density
    /// of the last VACUUM, ANALYZE or index build times the blocks it has
    /// now (a table never measured: a row per 100 bytes).
    pub fn estimated_rows(&self) -> usize {
        // SAFETY: the relation is open while `self` lives.
        let (blocks, pages, tuples) = unsafe {
            let class = (*self.rel).rd_rel;
            (
                pg_sys::RelationGetNumberOfBlocksInFork(self.rel, pg_sys::ForkNumber::MAIN_FORKNUM) as f64,
                f64::from((*class).relpages),
                f64::from((*class).reltuples),
            )
        };
        let density = if pages > 0.0 && tuples >= 0.0 { tuples / pages } else { f64::from(pg_sys::BLCKSZ) / 100.0 };
        (density * blocks) as usize
    }

    /// The attribute index of `column`, which must be of type `ty`: the
    /// accessor a caller then uses on it (`text`, `int4`, ...) reads that
    /// type. Rows are decoded up to the last attribute looked up.
    pub fn attr(&self, column: &str, ty: SqlType) -> usize {
        let i = column_index(self.rel, &self.name, column, ty);
        self.last_attr.set(self.last_attr.get().max(i));
        self.wanted.set(self.wanted.get() | 1u128.checked_shl(i as u32).unwrap_or(u128::MAX));
        i
    }

    /// Insist on exactly these columns and types, in order, and decode them all.
    pub fn expect_columns(&self, expected: &[Column]) {
        check_columns(self.rel, &self.name, expected);
        self.last_attr.set(self.columns.saturating_sub(1));
        self.wanted.set(u128::MAX);
    }

    /// Call `f(row)` for every visible row, in physical order (no
    /// synchronized scan, so two scans see the rows in the same order).
    /// Only the attributes looked up with `attr` (and those before them) are
    /// decoded.
    pub fn for_each(&mut self, mut f: impl FnMut(&Row)) {
        let last_attr = self.last_attr.get();
        // SAFETY: the relation is open and locked; the scan runs under the
        // active snapshot and ends before this returns; each row's datums are
        // valid until the next getnextslot, which is what `Row` borrows.
        unsafe {
            let scan =
                pg_sys::table_beginscan_strat(self.rel, pg_sys::GetActiveSnapshot(), 0, std::ptr::null_mut(), true, false);
            while pg_sys::table_scan_getnextslot(scan, pg_sys::ScanDirection::ForwardScanDirection, self.slot) {
                visit_slot(self.slot, last_attr, self.row_cx, &mut f);
            }
            pg_sys::table_endscan(scan);
        }
    }

    /// Whether no row is visible (a scan that stops at the first).
    pub fn is_empty(&mut self) -> bool {
        // SAFETY: as in `for_each`: the relation is open and locked, the
        // scan runs under the active snapshot and ends before this returns.
        unsafe {
            let scan =
                pg_sys::table_beginscan_strat(self.rel, pg_sys::GetActiveSnapshot(), 0, std::ptr::null_mut(), true, false);
            let found = pg_sys::table_scan_getnextslot(scan, pg_sys::ScanDirection::ForwardScanDirection, self.slot);
            pg_sys::table_endscan(scan);
            pg_sys::ExecClearTuple(self.slot);
            !found
        }
    }

    /// Release the scan; the lock stays until the end of the transaction.
    pub fn close(self) {
        // SAFETY: releases what `open_oid` made; the lock stays.
        unsafe {
            pg_sys::ExecDropSingleTupleTableSlot(self.slot);
            pg_sys::MemoryContextDelete(self.row_cx);
            pg_sys::table_close(self.rel, pg_sys::NoLock as pg_sys::LOCKMODE);
        }
    }
}

/// Hand the slot's row (decoded up to `last_attr`) to `f`, then free what
/// reading it allocated and honour a pending cancel and golden360.memory_limit.
///
/// # Safety
/// `slot` holds a row of an open relation; `row_cx` is a live context.
unsafe fn visit_slot(slot: *mut pg_sys::TupleTableSlot, last_attr: usize, row_cx: pg_sys::MemoryContext, f: &mut impl FnMut(&Row)) {
    pg_sys::slot_getsomeattrs_int(slot, last_attr as i32 + 1);
    let n = (*slot).tts_nvalid as usize;
    let row = Row {
        values: std::slice::from_raw_parts((*slot).tts_values, n),
        nulls: std::slice::from_raw_parts((*slot).tts_isnull, n),
        tid: (*slot).tts_tid,
        row_cx,
    };
    f(&row);
    if !(*row_cx).isReset {
        pg_sys::MemoryContextReset(row_cx);
    }
    pg_sys::check_for_interrupts!();
    crate::memory::check();
}

/// A condition on one leading column of an index, for `IndexScan`.
#[derive(Debug, Clone, Copy)]
// Each variant names its type and its operator; only `=` exists so far.
#[allow(clippy::enum_variant_names)]
pub enum Bound<'a> {
    TextEq(&'a [u8]),
    Int4Eq(i32),
    Float8Eq(f64),
}

impl Bound<'_> {
    /// (strategy, comparison function, the SQL type the column must have).
    fn operator(&self) -> (u32, u32, SqlType) {
        match self {
            Bound::TextEq(_) => (pg_sys::BTEqualStrategyNumber, pg_sys::F_TEXTEQ, SqlType::Text),
            Bound::Int4Eq(_) => (pg_sys::BTEqualStrategyNumber, pg_sys::F_INT4EQ, SqlType::Integer),
            Bound::Float8Eq(_) => (pg_sys::BTEqualStrategyNumber, pg_sys::F_FLOAT8EQ, SqlType::Double),
        }
    }
}

/// Scans of one table through its btree index on given leading columns,
/// under the active snapshot: the rows whose leading columns meet the
/// bounds of each `for_each` call.
pub struct IndexScan {
    heap: HeapScan,
    index: pg_sys::Relation,
    /// The leading columns' names (for messages) and type OIDs (a bound
    /// must be of its column's type).
    leading: Vec<(String, pg_sys::Oid)>,
    /// Key datums live here during one `for_each`.
    key_cx: pg_sys::MemoryContext,
    /// The scan, begun once and restarted for each lookup (a lookup per
    /// key is the incremental refresh's inner loop), with its key count and
    /// whether it returns index tuples (an index-only read).
    desc: Option<(pg_sys::IndexScanDesc, usize, bool)>,
    /// The table attribute (0-based) of each index column; None for an
    /// expression.
    index_columns: Vec<Option<usize>>,
    /// The visibility map page an index-only read last consulted.
    vm_buffer: pg_sys::Buffer,
    /// How rows are read for the attributes wanted (their bits): from the
    /// index where it can (`Some`), or always from the heap. Worked out
    /// once, not for every lookup.
    /// (Boxed: a `Selection` holds either this scan or a heap scan.)
    index_only: Option<(u128, Option<Box<IndexOnlyRead>>)>,
}

/// An index-only read's layout: the index column of each table attribute,
/// and the room a row's datums are gathered in.
struct IndexOnlyRead {
    position: Vec<Option<usize>>,
    index_values: Vec<pg_sys::Datum>,
    index_nulls: Vec<bool>,
    values: Vec<pg_sys::Datum>,
    nulls: Vec<bool>,
}

impl IndexScan {
    /// Open golden360's own table `schema.table` (locked in `lock`) and
    /// its btree index whose first columns are `leading`; an index missing
    /// or changed is a damaged installation, reported as such.
    pub fn open(schema: &str, table: &str, leading: &[&str], lock: Lock) -> IndexScan {
        let heap = HeapScan::open(schema, table, lock);
        let wanted: Vec<i16> = leading.iter().map(|c| column_number(heap.rel, &heap.name, c)).collect();
        let index = open_index(&heap, lock, pg_sys::BTREE_AM_OID, &wanted);
        let Some(index) = index else {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("{} has no btree index on ({})", heap.name, leading.join(", ")),
                None,
                super::relation::DAMAGED_HINT,
            )
        };
        // SAFETY: a fresh child of the current context, deleted in `close`.
        let key_cx = unsafe {
            pg_sys::AllocSetContextCreateExtended(
                pg_sys::CurrentMemoryContext,
                c"golden360 index scan keys".as_ptr(),
                pg_sys::ALLOCSET_SMALL_MINSIZE as usize,
                pg_sys::ALLOCSET_SMALL_INITSIZE as usize,
                pg_sys::ALLOCSET_SMALL_MAXSIZE as usize,
            )
        };
        let attributes = super::relation::attributes(heap.rel);
        let leading = leading
            .iter()
            .zip(&wanted)
            .map(|(c, &n)| (c.to_string(), attributes[n as usize - 1].as_ref().map_or(pg_sys::InvalidOid, |a| a.1)))
            .collect();
        // SAFETY: the index is open; rd_index is its pg_index row, whose
        // indkey holds indnatts attribute numbers (0 for an expression).
        let index_columns = unsafe {
            let form = (*index).rd_index;
            (0..(*form).indnatts as usize)
                .map(|i| {
                    let attnum = *(*form).indkey.values.as_ptr().add(i);
                    (attnum > 0).then(|| attnum as usize - 1)
                })
                .collect()
        };
        IndexScan {
            heap,
            index,
            leading,
            key_cx,
            desc: None,
            index_columns,
            vm_buffer: pg_sys::InvalidBuffer as pg_sys::Buffer,
            index_only: None,
        }
    }

    /// When every attribute looked up is a column of the index, the index
    /// position of each (by table attribute): rows can then be read from
    /// the index alone wherever the visibility map says a page is all
    /// visible, as PostgreSQL's index-only scans do.
    fn index_only_read(&self, wanted: u128) -> Option<Box<IndexOnlyRead>> {
        // SAFETY: reads this backend's isolation level. A serializable
        // transaction reads through the heap, which takes the predicate
        // locks on the rows it reads (an index-only read would have to
        // lock the page, which pgrx does not bind).
        let serializable = unsafe { pg_sys::XactIsoLevel } >= pg_sys::XACT_SERIALIZABLE as i32;
        if wanted == u128::MAX || serializable {
            return None;
        }
        let mut position: Vec<Option<usize>> = vec![None; self.heap.last_attr.get() + 1];
        for (i, column) in self.index_columns.iter().enumerate() {
            if let Some(p) = column.and_then(|c| position.get_mut(c)) {
                p.get_or_insert(i);
            }
        }
        let covered = (0..position.len()).all(|a| wanted & (1u128 << a) == 0 || position[a].is_some());
        let (n, width) = (self.index_columns.len(), position.len());
        covered.then(|| {
            Box::new(IndexOnlyRead {
                position,
                index_values: vec![pg_sys::Datum::from(0); n],
                index_nulls: vec![true; n],
                values: vec![pg_sys::Datum::from(0); width],
                nulls: vec![true; width],
            })
        })
    }

    /// As `HeapScan::attr`.
    pub fn attr(&self, column: &str, ty: SqlType) -> usize {
        self.heap.attr(column, ty)
    }

    /// As `HeapScan::estimated_rows`.
    pub fn estimated_rows(&self) -> usize {
        self.heap.estimated_rows()
    }

    /// Every visible row, read from the heap in physical order: when most
    /// of the table would be looked up anyway.
    pub fn scan_all(&mut self, f: impl FnMut(&Row)) {
        self.heap.for_each(f)
    }

    /// Call `f(row)` for every visible row whose leading index columns
    /// meet `bounds` (one per leading column, from the first), in index order.
    pub fn for_each(&mut self, bounds: &[Bound], mut f: impl FnMut(&Row)) {
        let fits = bounds.len() <= self.leading.len()
            && bounds.iter().zip(&self.leading).all(|(bound, (_, oid))| bound.operator().2.oid() == *oid);
        if !fits {
            let names: Vec<&str> = self.leading.iter().map(|(n, _)| n.as_str()).collect();
            raise(
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!("{} looked up by {:?} through its index on ({})", self.heap.name, bounds, names.join(", ")),
                None,
                super::relation::DAMAGED_HINT,
            );
        }
        let last_attr = self.heap.last_attr.get();
        // SAFETY: heap and index are open and locked; the key datums are
        // made in `key_cx`, which outlives the scan and is reset after it;
        // the scan runs under the active snapshot and ends before this
        // returns; rows are visited as in `HeapScan::for_each`.
        unsafe {
            let old = pg_sys::MemoryContextSwitchTo(self.key_cx);
            let mut keys: Vec<pg_sys::ScanKeyData> = bounds
                .iter()
                .enumerate()
                .map(|(i, bound)| {
                    let datum = match *bound {
                        Bound::TextEq(bytes) => pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
                            bytes.as_ptr() as *const std::ffi::c_char,
                            bytes.len() as i32,
                        )),
                        Bound::Int4Eq(v) => pg_sys::Datum::from(v),
                        // float8 is passed by value (USE_FLOAT8_BYVAL), as
                        // Row::float8 reads it.
                        Bound::Float8Eq(v) => pg_sys::Datum::from(v.to_bits()),
                    };
                    let (strategy, procedure, _) = bound.operator();
                    let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
                    pg_sys::ScanKeyInit(&mut key, (i + 1) as pg_sys::AttrNumber, strategy as u16, procedure.into(), datum);
                    key.sk_collation = *(*self.index).rd_indcollation.add(i);
                    key
                })
                .collect();
            pg_sys::MemoryContextSwitchTo(old);
            let wanted = self.heap.wanted.get();
            if self.index_only.as_ref().is_none_or(|(for_wanted, _)| *for_wanted != wanted) {
                self.index_only = Some((wanted, self.index_only_read(wanted)));
            }
            let mut read = self.index_only.take().and_then(|(_, read)| read);
            let scan = match self.desc {
                Some((scan, n, tuples)) if n == keys.len() && tuples == read.is_some() => scan,
                other => {
                    if let Some((old, _, _)) = other {
                        pg_sys::index_endscan(old);
                    }
                    // The active snapshot stays the same object for the
                    // scan's life (OwnWritesVisible advances it in place).
                    let scan = pg_sys::index_beginscan(self.heap.rel, self.index, pg_sys::GetActiveSnapshot(), keys.len() as i32, 0);
                    // Read by the rescan below: the AM keeps index tuples.
                    (*scan).xs_want_itup = read.is_some();
                    self.desc = Some((scan, keys.len(), read.is_some()));
                    scan
                }
            };
            pg_sys::index_rescan(scan, keys.as_mut_ptr(), keys.len() as i32, std::ptr::null_mut(), 0);
            match read.as_mut() {
                None => {
                    while pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, self.heap.slot) {
                        visit_slot(self.heap.slot, last_attr, self.heap.row_cx, &mut f);
                    }
                }
                Some(read) => self.read_index_only(scan, read, last_attr, &mut f),
            }
            self.index_only = Some((wanted, read));
            pg_sys::MemoryContextReset(self.key_cx);
        }
    }

    /// The rows of a restarted index-only scan: from the index tuple where
    /// the visibility map says the heap page is all visible (so the row is
    /// visible to every snapshot), else from the heap, whose tuple is
    /// fetched and checked under the scan's snapshot as usual. `position`
    /// maps each table attribute to its index column.
    ///
    /// # Safety
    /// `scan` was begun on this index with `xs_want_itup` and restarted.
    unsafe fn read_index_only(
        &mut self,
        scan: pg_sys::IndexScanDesc,
        read: &mut IndexOnlyRead,
        last_attr: usize,
        f: &mut impl FnMut(&Row),
    ) {
        // SAFETY (what the caller's contract gives): the heap, its slot and
        // the index are open and locked, and the scan is positioned by
        // index_getnext_tid; `vm_buffer` is this scan's pin on a visibility
        // map page (or none), released in `close`. As in nodeIndexonlyscan.c,
        // a page marked all visible holds only rows visible to every
        // snapshot, so the index tuple stands for the row. (A serializable
        // transaction never gets here: see `index_only_read`.)
        let IndexOnlyRead { position, index_values, index_nulls, values, nulls } = &mut *read;
        loop {
            let tid = pg_sys::index_getnext_tid(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tid.is_null() {
                break;
            }
            let block = (u32::from((*tid).ip_blkid.bi_hi) << 16) | u32::from((*tid).ip_blkid.bi_lo);
            let all_visible = u32::from(pg_sys::visibilitymap_get_status(self.heap.rel, block, &mut self.vm_buffer))
                & pg_sys::VISIBILITYMAP_ALL_VISIBLE
                != 0;
            if !all_visible || (*scan).xs_itup.is_null() {
                if pg_sys::index_fetch_heap(scan, self.heap.slot) {
                    visit_slot(self.heap.slot, last_attr, self.heap.row_cx, f);
                }
                continue;
            }
            // The tuple is the AM's copy, valid until the next one.
            pg_sys::index_deform_tuple((*scan).xs_itup, (*scan).xs_itupdesc, index_values.as_mut_ptr(), index_nulls.as_mut_ptr());
            for (a, p) in position.iter().enumerate() {
                if let Some(p) = *p {
                    values[a] = index_values[p];
                    nulls[a] = index_nulls[p];
                }
            }
            let row = Row { values, nulls, tid: *tid, row_cx: self.heap.row_cx };
            f(&row);
            if !(*self.heap.row_cx).isReset {
                pg_sys::MemoryContextReset(self.heap.row_cx);
            }
            pg_sys::check_for_interrupts!();
            crate::memory::check();
        }
    }

    /// Release the scan; the locks stay until the end of the transaction.
    pub fn close(self) {
        // SAFETY: releases what `open` and `for_each` made; the locks stay.
        unsafe {
            if self.vm_buffer != pg_sys::InvalidBuffer as pg_sys::Buffer {
                pg_sys::ReleaseBuffer(self.vm_buffer);
            }
            if let Some((scan, _, _)) = self.desc {
                pg_sys::index_endscan(scan);
            }
            pg_sys::index_close(self.index, pg_sys::NoLock as pg_sys::LOCKMODE);
            pg_sys::MemoryContextDelete(self.key_cx);
        }
        self.heap.close();
    }
}

/// The rows of an append-only table that hold one value of an int8 column
/// (bronze's `_batch_id`), found through a BRIN index on that column: a
/// batch's rows sit in a few block ranges at the end of the heap, and a
/// BRIN index costs its loads next to nothing (a btree on 1M rows doubled
/// the time of a bronze load). The bitmap is lossy, so every row of the
/// ranges it names is read and the value checked.
pub struct BrinScan {
    heap: HeapScan,
    index: pg_sys::Relation,
    column: usize,
}

impl BrinScan {
    /// Open golden360's own table `schema.table` and its BRIN index whose
    /// first column is `column` (an int8).
    pub fn open(schema: &str, table: &str, column: &str, lock: Lock) -> BrinScan {
        let heap = HeapScan::open(schema, table, lock);
        let wanted = column_number(heap.rel, &heap.name, column);
        let at = heap.attr(column, SqlType::BigInt);
        let index = open_index(&heap, lock, pg_sys::BRIN_AM_OID, &[wanted]);
        let Some(index) = index else {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("{} has no BRIN index on {column}", heap.name),
                None,
                super::relation::DAMAGED_HINT,
            )
        };
        BrinScan { heap, index, column: at }
    }

    /// As `HeapScan::attr`.
    pub fn attr(&self, column: &str, ty: SqlType) -> usize {
        self.heap.attr(column, ty)
    }

    /// Call `f(row)` for every visible row whose column equals `value`, in
    /// physical order.
    pub fn for_each_equal(&mut self, value: i64, mut f: impl FnMut(&Row)) {
        let (rel, slot, row_cx, column) = (self.heap.rel, self.heap.slot, self.heap.row_cx, self.column);
        let last_attr = self.heap.last_attr.get();
        // SAFETY: heap and index are open and locked; the bitmap, the index
        // scan and the heap scan are made and released here, under the
        // active snapshot, through the table AM's own bitmap-scan callbacks
        // (what table_beginscan_bm and table_scan_bitmap_next_* inline);
        // rows are visited as in HeapScan::for_each.
        unsafe {
            let mut key: pg_sys::ScanKeyData = std::mem::zeroed();
            pg_sys::ScanKeyInit(
                &mut key,
                1,
                pg_sys::BTEqualStrategyNumber as u16,
                pg_sys::F_INT8EQ.into(),
                pg_sys::Datum::from(value),
            );
            // BRIN's minmax looks the operators up by the argument's type.
            key.sk_subtype = pg_sys::INT8OID;
            let snapshot = pg_sys::GetActiveSnapshot();
            let index_scan = pg_sys::index_beginscan_bitmap(self.index, snapshot, 1);
            pg_sys::index_rescan(index_scan, &mut key, 1, std::ptr::null_mut(), 0);
            let bitmap = pg_sys::tbm_create(pg_sys::work_mem as std::ffi::c_long * 1024, std::ptr::null_mut());
            pg_sys::index_getbitmap(index_scan, bitmap);
            pg_sys::index_endscan(index_scan);
            let am = &*(*rel).rd_tableam;
            let (Some(begin), Some(next_block), Some(next_tuple), Some(end)) =
                (am.scan_begin, am.scan_bitmap_next_block, am.scan_bitmap_next_tuple, am.scan_end)
            else {
                raise(PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED, format!("{} cannot be scanned by bitmap", self.heap.name), None, "")
            };
            let flags = pg_sys::ScanOptions::SO_TYPE_BITMAPSCAN | pg_sys::ScanOptions::SO_ALLOW_PAGEMODE;
            let scan = begin(rel, snapshot, 0, std::ptr::null_mut(), std::ptr::null_mut(), flags);
            let pages = pg_sys::tbm_begin_iterate(bitmap);
            loop {
                let page = pg_sys::tbm_iterate(pages);
                if page.is_null() {
                    break;
                }
                if !next_block(scan, page) {
                    continue;
                }
                while next_tuple(scan, page, slot) {
                    visit_slot(slot, last_attr, row_cx, &mut |row: &Row| {
                        if row.int8(column) == Some(value) {
                            f(row)
                        }
                    });
                }
            }
            pg_sys::tbm_end_iterate(pages);
            end(scan);
            pg_sys::tbm_free(bitmap);
        }
    }

    pub fn close(self) {
        // SAFETY: the index was opened in `open`; the lock stays.
        unsafe { pg_sys::index_close(self.index, pg_sys::NoLock as pg_sys::LOCKMODE) };
        self.heap.close();
    }
}

/// A table one of the scans holds open. The pg layer's writers
/// (`bulk::delete_rows`) take the scan, not its relation: the layers never
/// hold a raw `Relation`, and a table is written only while it is open.
pub trait OpenTable {
    fn open_heap(&self) -> &HeapScan;

    /// Raise unless the current user holds `privilege` on the table.
    fn require_privilege(&self, privilege: Privilege) {
        let heap = self.open_heap();
        // SAFETY: the relation is open while the scan lives, so its OID can be read.
        let oid = unsafe { (*heap.rel).rd_id };
        require_privilege(oid, &heap.name, privilege);
    }
}

impl OpenTable for HeapScan {
    fn open_heap(&self) -> &HeapScan {
        self
    }
}

impl OpenTable for IndexScan {
    fn open_heap(&self) -> &HeapScan {
        &self.heap
    }
}

impl OpenTable for Selection {
    fn open_heap(&self) -> &HeapScan {
        self.heap()
    }
}

/// A key value to look rows up by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Text(Vec<u8>),
    Int4(i32),
}

impl Key {
    fn bound(&self) -> Bound<'_> {
        match self {
            Key::Text(bytes) => Bound::TextEq(bytes),
            Key::Int4(v) => Bound::Int4Eq(*v),
        }
    }
}

/// The rows of one table a step reads: all of them (a full refresh), or
/// those whose indexed column equals one of some keys (an incremental one,
/// reading only what changed). Both hand rows to the same callbacks.
pub enum Selection {
    All(HeapScan),
    Keys { scan: IndexScan, keys: Vec<Key> },
}

impl Selection {
    pub fn all(schema: &str, table: &str, lock: Lock) -> Selection {
        Selection::All(HeapScan::open(schema, table, lock))
    }

    /// The rows whose `column` (which an index leads with) is one of
    /// `keys`, each key once, in key order.
    pub fn keys(schema: &str, table: &str, column: &str, mut keys: Vec<Key>, lock: Lock) -> Selection {
        keys.sort_unstable();
        keys.dedup();
        Selection::Keys { scan: IndexScan::open(schema, table, &[column], lock), keys }
    }

    fn heap(&self) -> &HeapScan {
        match self {
            Selection::All(scan) => scan,
            Selection::Keys { scan, .. } => &scan.heap,
        }
    }

    /// Each attribute's storage (length, by value), as `Row::holds` needs it.
    pub fn storage(&self) -> Vec<(i16, bool)> {
        // SAFETY: the relation is open while `self` lives; the attributes
        // are copied out.
        unsafe { pgrx::PgTupleDesc::from_pg_unchecked((*self.heap().rel).rd_att) }
            .iter()
            .map(|a| (a.attlen, a.attbyval))
            .collect()
    }

    /// A size hint: the table's estimated rows, or the number of keys.
    pub fn estimated_rows(&self) -> usize {
        match self {
            Selection::All(scan) => scan.estimated_rows(),
            Selection::Keys { keys, .. } => keys.len(),
        }
    }

    pub fn attr(&self, column: &str, ty: SqlType) -> usize {
        self.heap().attr(column, ty)
    }

    pub fn expect_columns(&self, expected: &[Column]) {
        self.heap().expect_columns(expected)
    }

    pub fn for_each(&mut self, mut f: impl FnMut(&Row)) {
        match self {
            Selection::All(scan) => scan.for_each(f),
            Selection::Keys { scan, keys } => {
                for key in keys.iter() {
                    scan.for_each(&[key.bound()], &mut f);
                }
            }
        }
    }

    pub fn close(self) {
        match self {
            Selection::All(scan) => scan.close(),
            Selection::Keys { scan, .. } => scan.close(),
        }
    }
}

/// The first valid, non-partial index of access method `am` on the open
/// `heap` whose key columns start with the attribute numbers `leading`,
/// opened in `lock`; None when there is none.
fn open_index(heap: &HeapScan, lock: Lock, am: pg_sys::Oid, leading: &[i16]) -> Option<pg_sys::Relation> {
    // SAFETY: the heap is open and locked; RelationGetIndexList returns a
    // list this code frees; each index is opened with the heap's lock mode
    // (as the executor does) and closed unless it is the one returned.
    unsafe {
        let list = pg_sys::RelationGetIndexList(heap.rel);
        let oids: Vec<pg_sys::Oid> = if list.is_null() {
            Vec::new()
        } else {
            (0..(*list).length as usize).map(|i| (*(*list).elements.add(i)).oid_value).collect()
        };
        pg_sys::list_free(list);
        let mut found = None;
        for oid in oids {
            let index = pg_sys::index_open(oid, lock.mode());
            let form = &*(*index).rd_index;
            let keys = std::slice::from_raw_parts(form.indkey.values.as_ptr(), form.indnkeyatts as usize);
            let fits = (*(*index).rd_rel).relam == am
                && form.indisvalid
                && pg_sys::RelationGetIndexPredicate(index).is_null()
                && keys.len() >= leading.len()
                && keys[..leading.len()] == *leading;
            if fits && found.is_none() {
                found = Some(index);
            } else {
                pg_sys::index_close(index, lock.mode());
            }
        }
        found
    }
}

/// The attribute number (1-based) of `column` in `rel`, whatever its type.
fn column_number(rel: pg_sys::Relation, name: &str, column: &str) -> i16 {
    super::relation::attributes(rel)
        .iter()
        .position(|a| a.as_ref().is_some_and(|(n, ..)| n == column))
        .map(|i| i as i16 + 1)
        .unwrap_or_else(|| {
            raise(PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN, format!("{name} has no column {column}"), None, super::relation::DAMAGED_HINT)
        })
}

/// One row during a scan: valid only inside the callback.
pub struct Row<'s> {
    pub values: &'s [pg_sys::Datum],
    pub nulls: &'s [bool],
    pub tid: Tid,
    row_cx: pg_sys::MemoryContext,
}

impl<'s> Row<'s> {
    /// Whether this stored row holds the values `built` holds, column `skip`
    /// aside; `storage` is the table's (`Selection::storage`). By-value
    /// datums compare their type's own bytes (the upper bits may hold a sign
    /// extension or not), varlenas their contents.
    pub fn holds(&self, built: &super::bulk::RowBuf, storage: &[(i16, bool)], skip: Option<usize>) -> bool {
        let (datums, nulls) = built.values();
        (0..datums.len()).filter(|&c| Some(c) != skip).all(|c| match (self.is_null(c), nulls[c]) {
            (true, true) => true,
            (false, false) => {
                let (len, by_value) = storage[c];
                if by_value {
                    let mask = if len >= 8 { u64::MAX } else { (1u64 << (8 * len)) - 1 };
                    (self.values[c].value() as u64 ^ datums[c].value() as u64) & mask == 0
                } else if len == -1 {
                    // SAFETY: a non-NULL varlena datum that `built` holds
                    // until its next build.
                    self.text(c) == unsafe { varlena_bytes(datums[c]) }
                } else {
                    // Fixed-length by-reference columns are not compared.
                    false
                }
            }
            _ => false,
        })
    }

    pub fn is_null(&self, i: usize) -> bool {
        self.nulls[i]
    }

    /// The bytes of varlena attribute `i` ('' for NULL); compressed or
    /// toasted values (long review comments) are detoasted into the
    /// per-row context.
    pub fn text(&self, i: usize) -> &'s [u8] {
        if self.nulls[i] {
            return b"";
        }
        // SAFETY: attribute `i` is a varlena (the caller looked it up with
        // its declared type) and not NULL; a detoasted copy lives in the
        // per-row context, reset only after the callback returns.
        unsafe {
            if let Some(bytes) = plain_varlena_bytes(self.values[i]) {
                return bytes;
            }
            let old = pg_sys::MemoryContextSwitchTo(self.row_cx);
            let bytes = varlena_bytes(self.values[i]);
            pg_sys::MemoryContextSwitchTo(old);
            bytes
        }
    }

    pub fn opt_text(&self, i: usize) -> Option<&'s [u8]> {
        (!self.nulls[i]).then(|| self.text(i))
    }

    pub fn int2(&self, i: usize) -> Option<i16> {
        (!self.nulls[i]).then(|| self.values[i].value() as i16)
    }

    pub fn int4(&self, i: usize) -> Option<i32> {
        (!self.nulls[i]).then(|| self.values[i].value() as i32)
    }

    /// A timestamp (microseconds since 2000-01-01) or any other int8.
    pub fn int8(&self, i: usize) -> Option<i64> {
        (!self.nulls[i]).then(|| self.values[i].value() as i64)
    }

    pub fn float8(&self, i: usize) -> Option<f64> {
        (!self.nulls[i]).then(|| f64::from_bits(self.values[i].value() as u64))
    }

    /// A numeric with at most two decimals (silver money), in cents.
    pub fn cents(&self, i: usize) -> Option<i64> {
        let bytes = self.opt_text(i)?;
        Some(numeric_scaled(bytes, 2).unwrap_or_else(|| {
            raise(
                PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
                "a money value is not a finite amount with at most two decimals",
                None,
                "Silver holds numeric(10,2); check the column's type.",
            )
        }))
    }
}

/// The bytes of a varlena datum, its header removed. Plain varlenas are
/// read in place; compressed or toasted ones are detoasted into the current
/// memory context.
///
/// # Safety
/// `datum` must point to a varlena that outlives the returned slice.
pub unsafe fn varlena_bytes<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    match plain_varlena_bytes(datum) {
        Some(bytes) => bytes,
        None => pgrx::varlena::varlena_to_byte_slice(pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr())),
    }
}

/// The bytes of a varlena that is stored plainly (not compressed, not
/// toasted), read in place; None for any other.
/// # Safety
/// `datum` must point to a varlena that outlives the returned slice.
unsafe fn plain_varlena_bytes<'a>(datum: pg_sys::Datum) -> Option<&'a [u8]> {
    let p = datum.cast_mut_ptr::<u8>();
    let first = *p;
    if first & 0x01 == 0x01 && first != 0x01 {
        // 1-byte header: length (header included) in the upper 7 bits.
        return Some(std::slice::from_raw_parts(p.add(1), (first >> 1) as usize - 1));
    }
    if first & 0x03 == 0x00 {
        // 4-byte header, not compressed.
        let len = (u32::from_le_bytes(*(p as *const [u8; 4])) >> 2) as usize;
        return Some(std::slice::from_raw_parts(p.add(4), len - 4));
    }
    None
}

/// The value of a numeric's on-disk bytes (varlena header removed) times
/// 10^scale, if that is an integer that fits in i64; None for NaN,
/// infinities, more decimals than `scale`, or overflow.
/// Layout (utils/adt/numeric.c): a short header (sign, display scale,
/// weight in 16 bits) or a long one (sign and scale, then a 16-bit weight),
/// then base-10000 digits, the first of weight `weight`.
pub fn numeric_scaled(bytes: &[u8], scale: u32) -> Option<i64> {
    const SIGN_MASK: u16 = 0xC000;
    const NEG: u16 = 0x4000;
    const SHORT: u16 = 0x8000;
    const SHORT_SIGN: u16 = 0x2000;
    const SHORT_WEIGHT_SIGN: u16 = 0x0040;
    const SHORT_WEIGHT_MASK: u16 = 0x003F;
    let word = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let header = word(0)?;
    let (negative, weight, digits_at) = match header & SIGN_MASK {
        SHORT => {
            let magnitude = (header & SHORT_WEIGHT_MASK) as i32;
            let weight = if header & SHORT_WEIGHT_SIGN != 0 { magnitude - 64 } else { magnitude };
            (header & SHORT_SIGN != 0, weight, 2)
        }
        0 | NEG => (header & SIGN_MASK == NEG, word(2)? as i16 as i32, 4),
        _ => return None, // NaN, +/-Infinity
    };
    let digits = &bytes[digits_at..];
    let mut value: i128 = 0;
    for pair in digits.chunks_exact(2) {
        value = value.checked_mul(10_000)?.checked_add(i128::from(i16::from_le_bytes([pair[0], pair[1]])))?;
    }
    // The number is value * 10000^(weight - n + 1), n the count of digits.
    let n = (digits.len() / 2) as i32;
    let power10 = 4 * (weight - n + 1) + scale as i32;
    let scaled = if power10 >= 0 {
        value.checked_mul(10i128.checked_pow(power10 as u32)?)?
    } else {
        let divisor = 10i128.checked_pow(power10.unsigned_abs())?;
        if value % divisor != 0 {
            return None;
        }
        value / divisor
    };
    let scaled = if negative { -scaled } else { scaled };
    i64::try_from(scaled).ok()
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::{numeric_scaled, HeapScan, SqlType};
    use pgrx::prelude::*;

    /// The numeric decoder against PostgreSQL's own arithmetic, over short
    /// and long headers, signs, weights and scales.
    #[pg_test]
    fn numerics_decode_to_the_values_postgresql_computes() {
        Spi::run(
            "CREATE TABLE public.numeric_probe (v numeric, cents bigint);
             INSERT INTO public.numeric_probe
             SELECT v, CASE WHEN v = trunc(v, 2) AND abs(v) * 100 <= 9223372036854775807 THEN (v * 100)::bigint END
               FROM unnest(ARRAY[0, 0.01, -0.01, 0.1, 1, 1.5, 12.34, -12.34, 100, 10000, 10000.01, 99999999.99,
                                 -99999999.99, 123456789012.34, 0.001, 12.345, 1e-20, 1e15, 9e16, 1e17, 'NaN',
                                 '1.2300'::numeric, 5000.00, 5000.01, 199.99]::numeric[]) v",
        )
        .unwrap();
        // A snapshot that sees the rows just inserted (a SQL caller gets one
        // per statement).
        // SAFETY: a new command and snapshot for this test transaction.
        unsafe {
            pg_sys::CommandCounterIncrement();
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
        let relid = Spi::get_one::<pg_sys::Oid>("SELECT 'public.numeric_probe'::regclass::oid").unwrap().unwrap();
        let mut scan = HeapScan::open_for_test(relid);
        let (v, cents) = (scan.attr("v", SqlType::Numeric(0, 0)), scan.attr("cents", SqlType::BigInt));
        let mut seen = 0;
        scan.for_each(|row| {
            assert_eq!(numeric_scaled(row.text(v), 2), row.int8(cents), "row {seen}");
            seen += 1;
        });
        scan.close();
        // SAFETY: pops the snapshot pushed above.
        unsafe { pg_sys::PopActiveSnapshot() };
        assert_eq!(seen, 25);
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM public.numeric_probe WHERE cents IS NULL").unwrap(), Some(5));
    }
}
