//! Sequential scans of golden360's own tables, for the Rust code that reads
//! whole tables (silver reads bronze, gold reads silver and gold): each row
//! is a slot's datums, text and numeric values are read in place.

use super::relation::{check_columns, column_index, own_table};
use super::types::{Column, SqlType};
use crate::error::raise;
use pgrx::{pg_sys, PgSqlErrorCode};
use std::cell::Cell;

/// A heap scan of one table under the active snapshot.
pub struct HeapScan {
    rel: pg_sys::Relation,
    slot: *mut pg_sys::TupleTableSlot,
    row_cx: pg_sys::MemoryContext,
    name: String,
    columns: usize,
    /// The last attribute looked up: rows are decoded up to it.
    last_attr: Cell<usize>,
}

impl HeapScan {
    /// Open golden360's own table `schema.table` (see `relation::own_table`),
    /// locked in `lockmode` until the end of the transaction.
    pub fn open(schema: &str, table: &str, lockmode: u32) -> HeapScan {
        let table = own_table(schema, table);
        HeapScan::open_oid(table.oid, table.name, lockmode)
    }

    /// Open any plain table by OID: for tests of the scan itself.
    #[cfg(any(test, feature = "pg_test"))]
    pub fn open_for_test(relid: pg_sys::Oid) -> HeapScan {
        HeapScan::open_oid(relid, "test table".into(), pg_sys::AccessShareLock)
    }

    fn open_oid(relid: pg_sys::Oid, name: String, lockmode: u32) -> HeapScan {
        // SAFETY: `relid` is a plain table (checked by own_table, or by the
        // test that made it); table_open locks it, and the slot and memory
        // context made here are released in `close` (or by the
        // transaction's abort on an error).
        unsafe {
            let rel = pg_sys::table_open(relid, lockmode as pg_sys::LOCKMODE);
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
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn relation(&self) -> pg_sys::Relation {
        self.rel
    }

    /// The planner's row estimate (0 before the first ANALYZE), to size
    /// maps ahead of a scan.
    pub fn estimated_rows(&self) -> usize {
        // SAFETY: the relation is open while `self` lives.
        unsafe { (*(*self.rel).rd_rel).reltuples.max(0.0) as usize }
    }

    /// The attribute index of `column`, which must be of type `ty`: the
    /// accessor a caller then uses on it (`text`, `int4`, ...) reads that
    /// type. Rows are decoded up to the last attribute looked up.
    pub fn attr(&self, column: &str, ty: SqlType) -> usize {
        let i = column_index(self.rel, &self.name, column, ty);
        self.last_attr.set(self.last_attr.get().max(i));
        i
    }

    /// Insist on exactly these columns and types, in order, and decode them all.
    pub fn expect_columns(&self, expected: &[Column]) {
        check_columns(self.rel, &self.name, expected);
        self.last_attr.set(self.columns.saturating_sub(1));
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
                pg_sys::slot_getsomeattrs_int(self.slot, last_attr as i32 + 1);
                let n = (*self.slot).tts_nvalid as usize;
                let row = Row {
                    values: std::slice::from_raw_parts((*self.slot).tts_values, n),
                    nulls: std::slice::from_raw_parts((*self.slot).tts_isnull, n),
                    tid: (*self.slot).tts_tid,
                    row_cx: self.row_cx,
                };
                f(&row);
                if !(*self.row_cx).isReset {
                    pg_sys::MemoryContextReset(self.row_cx);
                }
                pg_sys::check_for_interrupts!();
            }
            pg_sys::table_endscan(scan);
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

/// One row during a scan: valid only inside the callback.
pub struct Row<'s> {
    pub values: &'s [pg_sys::Datum],
    pub nulls: &'s [bool],
    pub tid: pg_sys::ItemPointerData,
    row_cx: pg_sys::MemoryContext,
}

impl<'s> Row<'s> {
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
