//! Sorting that spills: byte strings in memcmp order, sorted by
//! PostgreSQL's tuplesort (bytea `<`, with abbreviated keys), within
//! `maintenance_work_mem` as CREATE INDEX is, spilling to temporary files
//! beyond it. Its memory is PostgreSQL's, in contexts that
//! `pg_backend_memory_contexts` shows, and it checks for cancels as it
//! sorts and merges.

use pgrx::pg_sys;

/// Rows copied out of tuplesort are freed after this many.
const ROWS_PER_RESET: usize = 1024;

pub struct ByteSort {
    state: *mut pg_sys::Tuplesortstate,
    /// How many byte strings were put.
    len: usize,
    /// Where the sorted copies land while they are read.
    cx: pg_sys::MemoryContext,
    /// The bytea being put.
    buf: Vec<u8>,
}

impl ByteSort {
    /// A sort bounded by a `shares`th of `maintenance_work_mem` (sorts
    /// filled together share it), and by tuplesort's least, 64 kB.
    pub fn new(shares: usize) -> ByteSort {
        let shares = i32::try_from(shares.max(1)).unwrap_or(i32::MAX);
        // SAFETY: reads a GUC variable of this backend.
        let work_mem = (unsafe { pg_sys::maintenance_work_mem } / shares).max(64);
        // SAFETY: a datum sort of bytea by its `<` operator (no collation),
        // begun in the current context, which outlives this value (the
        // step's); ended in `sorted` or, on an error, by the abort. The
        // context made here is deleted with it.
        unsafe {
            let state = pg_sys::tuplesort_begin_datum(
                pg_sys::BYTEAOID,
                pg_sys::Oid::from(pg_sys::ByteaLessOperator),
                pg_sys::InvalidOid,
                false,
                work_mem,
                std::ptr::null_mut(),
                pg_sys::TUPLESORT_NONE as i32,
            );
            let cx = pg_sys::AllocSetContextCreateExtended(
                pg_sys::CurrentMemoryContext,
                c"golden360 sorted row".as_ptr(),
                pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
            );
            ByteSort { state, len: 0, cx, buf: Vec::new() }
        }
    }

    pub fn put(&mut self, bytes: &[u8]) {
        // The bytea is built in a reused buffer: putdatum copies it into the
        // sort's own memory.
        self.buf.clear();
        self.buf.extend_from_slice(&[0; pg_sys::VARHDRSZ]);
        self.buf.extend_from_slice(bytes);
        // SAFETY: `buf` starts with room for a 4-byte varlena header (the
        // allocator aligns it), set here to the bytea's length; the datum
        // is only read by putdatum, which copies it.
        unsafe {
            pgrx::set_varsize_4b(self.buf.as_mut_ptr().cast(), self.buf.len() as i32);
            pg_sys::tuplesort_putdatum(self.state, pg_sys::Datum::from(self.buf.as_ptr()), false);
        }
        self.len += 1;
    }

    /// How many byte strings were put.
    fn len(&self) -> usize {
        self.len
    }

    /// Sort, and hand each byte string to `f` in order.
    pub fn sorted(mut self, mut f: impl FnMut(&[u8])) {
        // SAFETY: the sort is live until tuplesort_end below; each datum
        // returned is a fresh bytea copy made in `cx` (PostgreSQL 15's
        // getdatum copies by-reference values into the current context),
        // read before `cx` is reset.
        unsafe {
            pg_sys::tuplesort_performsort(self.state);
            super::context::within(self.cx, || {
                let (mut value, mut is_null) = (pg_sys::Datum::from(0), false);
                let mut n = 0usize;
                while pg_sys::tuplesort_getdatum(self.state, true, &mut value, &mut is_null, std::ptr::null_mut()) {
                    if !is_null {
                        f(super::scan::varlena_bytes(value));
                    }
                    n += 1;
                    if n.is_multiple_of(ROWS_PER_RESET) {
                        pg_sys::MemoryContextReset(self.cx);
                    }
                }
            });
            pg_sys::tuplesort_end(self.state);
            self.state = std::ptr::null_mut();
        }
    }
}

/// `maintenance_work_mem` in bytes: what a build may hold for one sort,
/// in PostgreSQL's tuplesort or, where it fits, in Rust.
pub fn sort_budget_bytes() -> usize {
    // SAFETY: reads a GUC variable of this backend.
    usize::try_from(unsafe { pg_sys::maintenance_work_mem }).unwrap_or(0).saturating_mul(1024)
}

/// An integer's bytes in memcmp order: big-endian with the sign bit
/// flipped, so that they sort as the numbers do (inverted, they sort
/// greatest first).
pub fn ordered_bytes(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

/// The integer `ordered_bytes` encoded.
pub fn from_ordered_bytes(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// A record a `Sorter` orders: the same order in memory as its bytes give.
pub trait SortRecord: Sized {
    /// What reading a sorted record yields (a record may carry more than
    /// its bytes need to give back, e.g. a rank used only to order).
    type Read;
    /// Appends the record's bytes, whose memcmp order is the record order.
    fn encode(&self, buf: &mut Vec<u8>);
    /// The record read back from its bytes.
    fn decode(bytes: &[u8]) -> Self::Read;
    /// The record read back from memory.
    fn read(&self) -> Self::Read;
    /// The order of two records in memory: the order of their bytes.
    fn order(a: &Self, b: &Self) -> std::cmp::Ordering;
    /// The bytes the record holds on the heap besides its own size (a
    /// boxed rank, say): what a sort in memory counts against its budget.
    fn heap_bytes(&self) -> usize {
        0
    }
}

/// Records sorted in Rust while they fit both `maintenance_work_mem` and
/// half of `golden360.memory_limit` (fast, and within the same bounds);
/// otherwise through PostgreSQL's tuplesort (`ByteSort`), which holds that
/// much and spills to temporary files beyond it. The two give the same
/// order. The choice is made up front from the number of records
/// expected, and again as records arrive: a sort in memory whose records
/// outgrow its budget (more of them than expected, or records holding heap
/// bytes of their own) hands them to a tuplesort and goes on there, as
/// tuplesort itself switches to tapes (holding both for the moment of the
/// handover: at most about twice the budget).
pub enum Sorter<T> {
    InMemory {
        records: Vec<T>,
        /// The heap bytes the records hold besides the vector's.
        held: usize,
        budget: usize,
        shares: usize,
    },
    Spilling { sort: ByteSort, buf: Vec<u8> },
}

impl<T: SortRecord> Sorter<T> {
    /// A sorter for about `records` records, one of `concurrent` sorters
    /// filled together (they share the budget).
    pub fn for_records(records: usize, concurrent: usize) -> Sorter<T> {
        let shares = concurrent.max(1);
        let budget = sort_budget_bytes().min(crate::ops::memory_limit_bytes() / 2) / shares;
        if records.saturating_mul(std::mem::size_of::<T>()) <= budget {
            Sorter::InMemory { records: Vec::with_capacity(records), held: 0, budget, shares }
        } else {
            Sorter::Spilling { sort: ByteSort::new(shares), buf: Vec::with_capacity(128) }
        }
    }

    pub fn put(&mut self, record: T) {
        match self {
            Sorter::InMemory { records, held, budget, shares } => {
                *held += record.heap_bytes();
                records.push(record);
                if records.capacity() * std::mem::size_of::<T>() + *held > *budget {
                    let records = std::mem::take(records);
                    *self = Sorter::Spilling { sort: ByteSort::new(*shares), buf: Vec::with_capacity(128) };
                    records.into_iter().for_each(|r| self.put(r));
                }
            }
            Sorter::Spilling { sort, buf } => {
                buf.clear();
                record.encode(buf);
                sort.put(buf);
            }
        }
    }

    /// Whether the records went to PostgreSQL's tuplesort.
    #[cfg(any(test, feature = "pg_test"))]
    pub fn spills(&self) -> bool {
        matches!(self, Sorter::Spilling { .. })
    }

    /// Hand every record to `f`, in order.
    pub fn sorted(self, mut f: impl FnMut(T::Read)) {
        match self {
            Sorter::InMemory { mut records, .. } => {
                records.sort_unstable_by(T::order);
                records.iter().for_each(|r| f(r.read()));
            }
            Sorter::Spilling { sort, .. } => sort.sorted(|bytes| f(T::decode(bytes))),
        }
    }

    /// Hand every record to `f` with its ntile(`buckets`) among all the
    /// records: what numbering them in sorted order gives. In memory the
    /// records are not sorted but only split at the bucket boundaries
    /// (quickselect, linear in the records): a bucket's order within is
    /// not needed, and an incremental gold refresh ranks all of gold.
    pub fn ntiles(self, buckets: usize, mut f: impl FnMut(i16, T::Read)) {
        match self {
            Sorter::InMemory { mut records, .. } => ntiles_in_memory(&mut records, buckets, f),
            Sorter::Spilling { sort, .. } => {
                let (mut position, n) = (0, sort.len());
                sort.sorted(|bytes| {
                    f(ntile(position, n, buckets), T::decode(bytes));
                    position += 1;
                });
            }
        }
    }
}

/// `Sorter::ntiles` in memory: split at each bucket's end by quickselect.
fn ntiles_in_memory<T: SortRecord>(records: &mut [T], buckets: usize, mut f: impl FnMut(i16, T::Read)) {
    let n = records.len();
    let mut start = 0;
    for bucket in 1..=buckets {
        let end = bucket_end(bucket, n, buckets);
        if end > start && end < n {
            records[start..].select_nth_unstable_by(end - start, T::order);
        }
        records[start..end].iter().for_each(|r| f(bucket as i16, r.read()));
        start = end;
    }
}

/// PostgreSQL's ntile(buckets) of the row at `position` (0-based) of `n`:
/// the first n % buckets buckets hold one row more.
pub fn ntile(position: usize, n: usize, buckets: usize) -> i16 {
    let (per, extra) = (n / buckets, n % buckets);
    let big = extra * (per + 1);
    let bucket = if position < big { position / (per + 1) } else { extra + (position - big) / per };
    bucket as i16 + 1
}

/// Where ntile(`buckets`) bucket `bucket` (1-based) of `n` rows ends: the
/// position after its last row.
pub fn bucket_end(bucket: usize, n: usize, buckets: usize) -> usize {
    let (per, extra) = (n / buckets, n % buckets);
    bucket * per + bucket.min(extra)
}

impl Drop for ByteSort {
    fn drop(&mut self) {
        // On an error the transaction's abort frees the sort's memory and
        // temporary files; otherwise end what `sorted` did not.
        if !std::thread::panicking() {
            // SAFETY: a sort not yet ended, and the context made in `new`.
            unsafe {
                if !self.state.is_null() {
                    pg_sys::tuplesort_end(self.state);
                }
                pg_sys::MemoryContextDelete(self.cx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl SortRecord for u64 {
        type Read = u64;
        fn encode(&self, buf: &mut Vec<u8>) {
            buf.extend_from_slice(&self.to_be_bytes());
        }
        fn decode(bytes: &[u8]) -> u64 {
            u64::from_be_bytes(bytes.try_into().unwrap_or_default())
        }
        fn read(&self) -> u64 {
            *self
        }
        fn order(a: &u64, b: &u64) -> std::cmp::Ordering {
            a.cmp(b)
        }
    }

    /// Splitting at the bucket boundaries gives every record the bucket
    /// numbering the sorted records gives, for any count, including fewer
    /// records than buckets.
    #[test]
    fn ntiles_in_memory_number_as_sorted_records_do() {
        for n in 0..60u64 {
            for buckets in [1, 2, 5, 7] {
                // 0..n, scrambled.
                let mut records: Vec<u64> = (0..n).collect();
                for i in (1..records.len()).rev() {
                    records.swap(i, (i * 7919 + 13) % (i + 1));
                }
                let mut got = vec![0i16; n as usize];
                ntiles_in_memory(&mut records, buckets, |bucket, r| got[r as usize] = bucket);
                let want: Vec<i16> = (0..n as usize).map(|p| ntile(p, n as usize, buckets)).collect();
                assert_eq!(got, want, "n {n}, buckets {buckets}");
            }
        }
    }

    #[test]
    fn bucket_ends_follow_ntile() {
        for n in 0..40 {
            for buckets in 1..8 {
                let mut end = 0;
                for bucket in 1..=buckets {
                    while end < n && ntile(end, n, buckets) as usize == bucket {
                        end += 1;
                    }
                    assert_eq!(bucket_end(bucket, n, buckets), end, "n {n}, buckets {buckets}, bucket {bucket}");
                }
            }
        }
    }
}
