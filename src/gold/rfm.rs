//! RFM scores: three independent ntile(5) over the people with a counted
//! order, ascending by last order date, order count and spend, ties by
//! golden_id in byte order; the segment from `golden360.rfm_segments`.
//!
//! A full refresh ranks everyone, in `Sorter`s that spill beyond their
//! budget. An incremental one recomputes a few people among everyone else,
//! whose keys did not change: the others keep their order among
//! themselves, so one's bucket can change only where a bucket boundary
//! moved past it. Each refresh stores where each dimension's buckets 2 to 5
//! begin (`golden360_internal.rfm_boundaries`: a person's key and
//! golden_id) and how many people were ranked. The next one counts the
//! recomputed people who left and joined below each old boundary, which
//! says where the new boundary is, and walks gold's index on that
//! dimension's key (ties in golden_id order, through the primary key) from
//! the old boundary to the new one: the others it passes are the only ones
//! whose scores can move. Its cost is the change's, not
//! gold's size. Without usable boundaries (the first refresh after an
//! upgrade, fewer than five people, a boundary whose record is not where
//! they say) it ranks everyone, reading gold in one scan, as it did before.

use super::build::{digest_of_hex, Record, Scope, Tally, SHARE};
use super::spec::{C360, CUSTOMER_360};
use crate::error::raise;
use crate::keys::{key_hash, KeyHashState};
use crate::pg::scan::{Key, Row, Selection};
use crate::pg::sort::{bucket_end, from_ordered_bytes, ordered_bytes, SortRecord, Sorter};
use crate::pg::types::SqlType::{self, Text};
use crate::silver::parse::date_of;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode;
use std::collections::{HashMap, HashSet};

/// The dimensions, in score order (recency, frequency, monetary): the
/// column each ranks by and the column its score is stored in. The
/// ranking's index on gold (`golden360_internal.create_gold_indexes()`)
/// is made from this list too.
pub const DIMENSIONS: [(C360, C360); 3] = [
    (C360::LastOrderDate, C360::RecencyScore),
    (C360::OrderCount, C360::FrequencyScore),
    (C360::TotalSpend, C360::MonetaryScore),
];
const BUCKETS: usize = 5;
const BOUNDARIES: usize = BUCKETS - 1;

/// Who is ranked: gold's records with a counted order (the ranking's
/// indexes are partial on this too).
pub const RANKED: &str = "order_count > 0";

/// The keys a person is ranked by: the last order's date in days since
/// 2000-01-01 (NULL, for counted orders without a purchase time, last, as
/// in PostgreSQL's ascending order), counted orders, spend in cents.
fn keys_of(t: &Tally) -> [i64; 3] {
    [t.last.map_or(i64::MAX, |at| i64::from(date_of(at))), i64::from(t.order_count), t.spend]
}

/// A person's place in one dimension's order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct Place {
    key: i64,
    golden_id: [u8; 32],
}

/// Where each dimension's buckets 2..=5 begin among `ranked` people: the
/// first place of each.
#[derive(Clone, PartialEq, Debug)]
pub struct Boundaries {
    ranked: usize,
    first_of: [[Place; BOUNDARIES]; 3],
}

impl Boundaries {
    fn bucket(&self, dimension: usize, place: &Place) -> i16 {
        bucket_of(place, &self.first_of[dimension])
    }

    fn scores(&self, keys: [i64; 3], golden_id: [u8; 32]) -> [i16; 3] {
        std::array::from_fn(|d| self.bucket(d, &Place { key: keys[d], golden_id }))
    }

    /// The boundaries the last refresh stored, if they are whole.
    fn load() -> Option<Boundaries> {
        let rows: Vec<(i16, i16, i64, String, i64)> = Spi::connect(|client| {
            client
                .select(
                    "SELECT dimension, boundary, sort_key, golden_id, ranked FROM golden360_internal.rfm_boundaries",
                    None,
                    &[],
                )?
                .map(|row| -> Result<_, pgrx::spi::Error> {
                    Ok((
                        row.get::<i16>(1)?.unwrap_or(0),
                        row.get::<i16>(2)?.unwrap_or(0),
                        row.get::<i64>(3)?.unwrap_or(0),
                        row.get::<String>(4)?.unwrap_or_default(),
                        row.get::<i64>(5)?.unwrap_or(0),
                    ))
                })
                .collect::<Result<_, _>>()
        })
        .unwrap_or_else(|e| spi_failed("reading golden360_internal.rfm_boundaries", e));
        let ranked = usize::try_from(rows.first()?.4).ok()?;
        let mut first_of = [[None; BOUNDARIES]; 3];
        for (dimension, boundary, key, golden_id, n) in rows {
            let slot = first_of.get_mut(usize::try_from(dimension - 1).ok()?)?.get_mut(usize::try_from(boundary - 1).ok()?)?;
            if n as usize != ranked || slot.is_some() {
                return None;
            }
            *slot = Some(Place { key, golden_id: digest_of_hex(golden_id.as_bytes())? });
        }
        (ranked >= BUCKETS).then_some(Boundaries { ranked, first_of: whole(first_of)? })
    }

    /// Make `golden360_internal.rfm_boundaries` hold `boundaries` (none:
    /// the next refresh ranks everyone).
    pub fn store(boundaries: Option<&Boundaries>) {
        let (mut dimension, mut boundary, mut key, mut golden_id) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let ranked = boundaries.map_or(0, |b| b.ranked as i64);
        for (d, row) in boundaries.iter().flat_map(|b| b.first_of.iter().enumerate()) {
            for (j, place) in row.iter().enumerate() {
                dimension.push(d as i16 + 1);
                boundary.push(j as i16 + 1);
                key.push(place.key);
                golden_id.push(hex::encode(place.golden_id));
            }
        }
        Spi::connect_mut(|client| {
            client.update("DELETE FROM golden360_internal.rfm_boundaries", None, &[])?;
            client.update(
                "INSERT INTO golden360_internal.rfm_boundaries (dimension, boundary, sort_key, golden_id, ranked)
                 SELECT d, b, k, g, $5 FROM ROWS FROM (unnest($1::int2[]), unnest($2::int2[]), unnest($3::int8[]),
                                                       unnest($4::text[])) u(d, b, k, g)",
                None,
                &[dimension.into(), boundary.into(), key.into(), golden_id.into(), ranked.into()],
            )?;
            Ok::<_, pgrx::spi::Error>(())
        })
        .unwrap_or_else(|e| spi_failed("writing golden360_internal.rfm_boundaries", e));
    }
}

/// The bucket of `place` in a dimension whose buckets but the first begin
/// at `first_places`: one more than the beginnings at or below it.
fn bucket_of<'a>(place: &Place, first_places: impl IntoIterator<Item = &'a Place>) -> i16 {
    1 + first_places.into_iter().filter(|&b| place >= b).count() as i16
}

/// Every place, if none is missing.
fn whole(places: [[Option<Place>; BOUNDARIES]; 3]) -> Option<[[Place; BOUNDARIES]; 3]> {
    let mut out = [[Place { key: 0, golden_id: [0; 32] }; BOUNDARIES]; 3];
    for (d, row) in places.iter().enumerate() {
        for (j, place) in row.iter().enumerate() {
            out[d][j] = (*place)?;
        }
    }
    Some(out)
}

#[track_caller]
fn spi_failed(what: &str, e: pgrx::spi::Error) -> ! {
    crate::error::spi_failed(
        what,
        e,
        "Gold is unchanged. DELETE FROM golden360_internal.rfm_boundaries makes the next refresh rank everyone; \
         CALL golden360.rebuild() recomputes all of gold.",
    )
}

/// What ranking did besides scoring the records: the others whose scores
/// moved, and the boundaries to store for the next refresh.
pub struct Ranked {
    pub moved: Vec<Moved>,
    pub boundaries: Option<Boundaries>,
    /// Whether everyone was read (no usable boundaries), for the log.
    pub read_everyone: bool,
}

/// Score `records` (RFM set for those with a counted order) among
/// everyone: for an incremental scope, by walking from the stored
/// boundaries where they are usable, else by ranking everyone.
pub fn score(records: &mut [Record], tally: &[Tally], scope: &Scope) -> Ranked {
    let scored: Vec<usize> = (0..records.len()).filter(|&i| tally[records[i].person as usize].order_count > 0).collect();
    if let Scope::People { people, .. } = scope {
        if let Some((scores, moved, boundaries)) = walk_from_boundaries(records, tally, people, &scored) {
            for (&i, s) in scored.iter().zip(scores) {
                records[i].rfm = Some(s);
            }
            return Ranked { moved, boundaries: Some(boundaries), read_everyone: false };
        }
    }
    let (moved, boundaries) = rank_everyone(records, tally, scope, &scored);
    Ranked { moved, boundaries, read_everyone: true }
}

/// The walk: the recomputed people's new scores, the others whose scores
/// moved, and the new boundaries; None where the stored boundaries cannot
/// be used (then everyone is ranked).
fn walk_from_boundaries(
    records: &[Record],
    tally: &[Tally],
    people: &[Vec<u8>],
    scored: &[usize],
) -> Option<(Vec<[i16; 3]>, Vec<Moved>, Boundaries)> {
    let old = Boundaries::load()?;
    // A boundary on a NULL last_order_date would start the walk among the
    // NULLs; rare enough to rank everyone instead.
    if old.first_of.iter().flatten().any(|p| p.key == i64::MAX) || !boundaries_hold(&old) {
        return None;
    }
    let (left_ids, left) = stored_places(people);
    let keys: Vec<[i64; 3]> = scored.iter().map(|&i| keys_of(&tally[records[i].person as usize])).collect();
    let joined: [Vec<Place>; 3] = std::array::from_fn(|d| {
        let mut places: Vec<Place> =
            scored.iter().zip(&keys).map(|(&i, k)| Place { key: k[d], golden_id: records[i].golden_id }).collect();
        places.sort_unstable();
        places
    });
    let ranked = old.ranked.checked_sub(left[0].len())? + scored.len();
    if ranked < BUCKETS {
        return None;
    }
    let mut new = Boundaries { ranked, first_of: old.first_of };
    let mut passed: HashMap<[u8; 32], Other, KeyHashState> = HashMap::default();
    let (mut read, mut queries) = (0, 0);
    for d in 0..3 {
        for j in 0..BOUNDARIES {
            let from = old.first_of[d][j];
            let below = |places: &[Place]| places.partition_point(|p| p < &from);
            // How many of the new order are below `from`: the old order's
            // (its boundary's position) less those who left, plus those
            // who joined.
            let position = bucket_end(j + 1, old.ranked, BUCKETS).checked_sub(below(&left[d]))? + below(&joined[d]);
            let target = bucket_end(j + 1, ranked, BUCKETS);
            let mut others = Others::new(d, from, position <= target, &left_ids);
            new.first_of[d][j] = walk(&mut others, &joined[d], from, position, target, &mut passed)?;
            (read, queries) = (read + others.read, queries + others.queries);
        }
    }
    pgrx::debug1!("golden360 gold: the RFM walks read {read} of gold's {} ranked people in {queries} queries", old.ranked);
    let scores = scored.iter().zip(keys).map(|(&i, k)| new.scores(k, records[i].golden_id)).collect();
    let moved = passed
        .into_values()
        .filter_map(|o| {
            let scores = new.scores(o.keys, o.golden_id);
            (o.stored != scores.map(Some)).then_some(Moved { golden_id: o.golden_id, scores })
        })
        .collect();
    Some((scores, moved, new))
}

/// From `from`, with `position` places of the new order below it, to the
/// place at position `target`, the new boundary: upwards through the
/// places at or above `from`, or downwards through those below it (the way
/// `others` reads), merging the others (from gold's index) with the
/// recomputed people (`joined`). The others passed on the way, the new
/// boundary included, are the only ones whose bucket can have changed.
fn walk(
    others: &mut Others,
    joined: &[Place],
    from: Place,
    position: usize,
    target: usize,
    passed: &mut HashMap<[u8; 32], Other, KeyHashState>,
) -> Option<Place> {
    let split = joined.partition_point(|p| p < &from);
    let (up, dimension) = (others.up, others.dimension);
    let joined: Box<dyn Iterator<Item = &Place>> =
        if up { Box::new(joined[split..].iter()) } else { Box::new(joined[..split].iter().rev()) };
    let mut joined = joined.peekable();
    // The position of the next place taken: upwards `from`'s own, downwards
    // the one below it.
    let mut next = if up { position } else { position - 1 };
    loop {
        let other = others.peek(next.abs_diff(target) + 1)?;
        let (place, is_other) = match (other, joined.peek()) {
            (Some(o), Some(&&j)) if others.before(&j, &o.place(dimension)) => (j, false),
            (Some(o), _) => (o.place(dimension), true),
            (None, Some(&&j)) => (j, false),
            // Fewer places that way than the count says: the boundaries do
            // not describe gold.
            (None, None) => return None,
        };
        if is_other {
            let o = others.pop();
            passed.insert(o.golden_id, o);
        } else {
            joined.next();
        }
        if next == target {
            return Some(place);
        }
        next = if up { next + 1 } else { next - 1 };
    }
}

/// A person gold holds and the walk passed: keys and stored scores.
#[derive(Clone, Copy)]
struct Other {
    golden_id: [u8; 32],
    keys: [i64; 3],
    stored: [Option<i16>; 3],
}

impl Other {
    fn place(&self, dimension: usize) -> Place {
        Place { key: self.keys[dimension], golden_id: self.golden_id }
    }
}

/// Gold's ranked people in one dimension's order, from a place upwards
/// (from it) or downwards (from below it), the recomputed people (`left`)
/// skipped; read in chunks through the dimension's index on its key. A
/// chunk holds whole groups of equal keys, sorted by golden_id here; a
/// group too big for a chunk (most people have one order) is read in
/// golden_id order on its own, from the primary key. Upwards in a
/// dimension whose column may be NULL, the NULLs come last.
struct Others<'a> {
    dimension: usize,
    up: bool,
    next: Next,
    done: bool,
    rows: std::collections::VecDeque<Other>,
    left: &'a HashSet<[u8; 32], KeyHashState>,
    /// Rows read and queries run, for the log.
    read: usize,
    queries: usize,
}

/// Where the next chunk starts.
#[derive(Clone, Copy)]
enum Next {
    /// The groups from the one of `key` on.
    Groups { key: i64, first: FirstGroup },
    /// Within one big group (`None`: the NULLs), from a golden_id on
    /// (whether it is included), or from the group's start.
    Within { key: Option<i64>, from: Option<([u8; 32], bool)> },
}

/// What of the group of `Next::Groups`' key a chunk reads.
#[derive(Clone, Copy)]
enum FirstGroup {
    /// Its places beyond this golden_id (and it, when the flag says so).
    From([u8; 32], bool),
    Whole,
    /// None: the chunk starts with the next group.
    Beyond,
}

impl<'a> Others<'a> {
    fn new(dimension: usize, from: Place, up: bool, left: &'a HashSet<[u8; 32], KeyHashState>) -> Others<'a> {
        let next = Next::Groups { key: from.key, first: FirstGroup::From(from.golden_id, up) };
        Others { dimension, up, next, done: false, rows: Default::default(), left, read: 0, queries: 0 }
    }

    /// The next other, reading a chunk of about `wanted` more when needed;
    /// Some(None) at the end; None when gold holds a malformed golden_id.
    fn peek(&mut self, wanted: usize) -> Option<Option<Other>> {
        loop {
            while self.rows.front().is_some_and(|o| self.left.contains(&o.golden_id)) {
                self.rows.pop_front();
            }
            if !self.rows.is_empty() || self.done {
                return Some(self.rows.front().copied());
            }
            self.fetch(wanted.saturating_add(16).clamp(32, 1 << 16))?;
        }
    }

    fn pop(&mut self) -> Other {
        // Only called after `peek` returned a row.
        self.rows.pop_front().unwrap_or(Other { golden_id: [0; 32], keys: [0; 3], stored: [None; 3] })
    }

    /// Whether `a` comes before `b` in the walk's direction.
    fn before(&self, a: &Place, b: &Place) -> bool {
        if self.up { a < b } else { a > b }
    }

    fn fetch(&mut self, chunk: usize) -> Option<()> {
        let d = self.dimension;
        let (column, ty) = rank_column(d);
        let select = others_sql();
        let direction = if self.up { "ASC" } else { "DESC" };
        let limit = chunk as i64;
        match self.next {
            Next::Groups { key, first } => {
                let op = match (self.up, matches!(first, FirstGroup::Beyond)) {
                    (true, false) => ">=",
                    (true, true) => ">",
                    (false, false) => "<=",
                    (false, true) => "<",
                };
                let query = format!("{select} AND g.{column} {op} {} ORDER BY g.{column} {direction} LIMIT $2", param_sql(ty, 1));
                let mut rows = self.query(&query, vec![key.into(), limit.into()])?;
                rows.sort_unstable_by(|a, b| {
                    let (a, b) = (a.place(d), b.place(d));
                    if self.up { a.cmp(&b) } else { b.cmp(&a) }
                });
                let last = rows.last().map(|o| o.keys[d]);
                match last {
                    Some(last) if rows.len() == chunk => {
                        // The last group may go on beyond the chunk: read it
                        // again next, whole, or on its own if it fills one.
                        let from = match first {
                            FirstGroup::From(id, inclusive) if last == key => Some((id, inclusive)),
                            _ => None,
                        };
                        rows.retain(|o| o.keys[d] != last);
                        self.next = if rows.is_empty() {
                            Next::Within { key: Some(last), from }
                        } else {
                            Next::Groups { key: last, first: FirstGroup::Whole }
                        };
                    }
                    _ => self.next_after_groups(),
                }
                if let FirstGroup::From(id, inclusive) = first {
                    let start = Place { key, golden_id: id };
                    rows.retain(|o| {
                        let place = o.place(d);
                        o.keys[d] != key || self.before(&start, &place) || (inclusive && place == start)
                    });
                }
                self.rows.extend(rows);
            }
            Next::Within { key, from } => {
                let mut args: Vec<pgrx::datum::DatumWithOid> = vec![limit.into()];
                let mut condition = match key {
                    Some(k) => {
                        args.push(k.into());
                        format!("g.{column} = {}", param_sql(ty, 2))
                    }
                    None => format!("g.{column} IS NULL"),
                };
                if let Some((id, inclusive)) = from {
                    args.push(hex::encode(id).into());
                    let op = match (self.up, inclusive) {
                        (true, true) => ">=",
                        (true, false) => ">",
                        (false, true) => "<=",
                        (false, false) => "<",
                    };
                    condition += &format!(" AND g.golden_id {op} ${}", args.len());
                }
                let query = format!("{select} AND {condition} ORDER BY g.golden_id {direction} LIMIT $1");
                let rows = self.query(&query, args)?;
                match (rows.last(), key) {
                    (Some(last), _) if rows.len() == chunk => {
                        self.next = Next::Within { key, from: Some((last.golden_id, false)) }
                    }
                    (_, Some(k)) => self.next = Next::Groups { key: k, first: FirstGroup::Beyond },
                    (_, None) => self.done = true,
                }
                self.rows.extend(rows);
            }
        }
        Some(())
    }

    /// After the last group of keys: upwards, the NULLs of a column that
    /// may hold them; otherwise the end.
    fn next_after_groups(&mut self) {
        if self.up && !CUSTOMER_360[DIMENSIONS[self.dimension].0.at()].not_null {
            self.next = Next::Within { key: None, from: None };
        } else {
            self.done = true;
        }
    }

    /// Run one chunk's query; None when gold holds a malformed golden_id.
    fn query(&mut self, query: &str, args: Vec<pgrx::datum::DatumWithOid>) -> Option<Vec<Other>> {
        let rows = read_others(query, args)?;
        self.read += rows.len();
        self.queries += 1;
        Some(rows)
    }
}

/// `SELECT` of gold's ranked people (alias `g`) as `read_others` reads
/// them: golden_id, the three keys, the three stored scores.
fn others_sql() -> String {
    format!(
        "SELECT g.golden_id, {}, {} FROM gold.unified_customer_360 g WHERE {RANKED}",
        key_list(),
        DIMENSIONS.map(|(_, score)| CUSTOMER_360[score.at()].column.name).join(", ")
    )
}

/// The rows of `query`, an `others_sql()` with conditions; None when gold
/// holds a malformed golden_id.
fn read_others(query: &str, args: Vec<pgrx::datum::DatumWithOid>) -> Option<Vec<Other>> {
    let rows: Vec<WalkedRow> = Spi::connect(|client| {
        client
            .select(query, None, &args)?
            .map(|row| -> Result<_, pgrx::spi::Error> {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    [row.get::<i64>(2)?, row.get::<i64>(3)?, row.get::<i64>(4)?],
                    [row.get::<i16>(5)?, row.get::<i16>(6)?, row.get::<i16>(7)?],
                ))
            })
            .collect::<Result<_, _>>()
    })
    .unwrap_or_else(|e| spi_failed("reading gold's RFM order", e));
    rows.into_iter()
        // A NULL key is a NULL date, last.
        .map(|(id, keys, stored)| Some(Other { golden_id: digest_of_hex(id.as_bytes())?, keys: keys.map(|k| k.unwrap_or(i64::MAX)), stored }))
        .collect()
}

/// A row a walk read: golden_id, the three keys, the stored scores.
type WalkedRow = (String, [Option<i64>; 3], [Option<i16>; 3]);

/// Dimension `d`'s column: name and type.
fn rank_column(d: usize) -> (&'static str, SqlType) {
    let column = CUSTOMER_360[DIMENSIONS[d].0.at()].column;
    (column.name, column.ty)
}

/// SQL for the three ranking keys of a row of gold (alias `g`), as
/// `keys_of` computes them (NULL aside), named so that none shadows a
/// column in an ORDER BY.
fn key_list() -> String {
    (0..3)
        .map(|d| {
            let (column, ty) = rank_column(d);
            let key = match ty {
                SqlType::Date => format!("(g.{column} - DATE '2000-01-01')"),
                SqlType::Numeric(_, scale) => format!("(g.{column} * 1e{scale})"),
                _ => format!("g.{column}"),
            };
            format!("{key}::int8 AS rank_key_{d}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// SQL for parameter `$n`, a ranking key, as a value of the column's type.
fn param_sql(ty: SqlType, n: usize) -> String {
    match ty {
        SqlType::Date => format!("(DATE '2000-01-01' + ${n}::int4)"),
        SqlType::Numeric(_, scale) => format!("(${n}::numeric / 1e{scale})"),
        _ => format!("${n}::{}", ty.sql()),
    }
}

/// Whether each stored boundary is a ranked record of gold with that key:
/// the walk starts from them.
fn boundaries_hold(b: &Boundaries) -> bool {
    let ids: Vec<String> = b.first_of.iter().flatten().map(|p| hex::encode(p.golden_id)).collect();
    let Some(found) = read_others(&format!("{} AND g.golden_id = ANY($1)", others_sql()), vec![ids.into()]) else {
        return false;
    };
    let found: HashMap<[u8; 32], [i64; 3]> = found.into_iter().map(|o| (o.golden_id, o.keys)).collect();
    b.first_of.iter().enumerate().all(|(d, row)| row.iter().all(|p| found.get(&p.golden_id).is_some_and(|k| k[d] == p.key)))
}

/// The recomputed people's places as gold holds them (those ranked), by
/// dimension, sorted; and their golden_ids.
fn stored_places(people: &[Vec<u8>]) -> (HashSet<[u8; 32], KeyHashState>, [Vec<Place>; 3]) {
    let mut scan = Selection::keys(
        "gold",
        "unified_customer_360",
        CUSTOMER_360[C360::CustomerUniqueId.at()].column.name,
        people.iter().map(|p| Key::Text(p.clone())).collect(),
        SHARE,
    );
    let columns = RankColumns::of(&scan);
    let (mut ids, mut places) = (HashSet::default(), [Vec::new(), Vec::new(), Vec::new()]);
    scan.for_each(|row| {
        let Some(stored) = columns.read(row) else { return };
        ids.insert(stored.golden_id);
        for (d, p) in places.iter_mut().enumerate() {
            p.push(stored.place(d));
        }
    });
    scan.close();
    for p in &mut places {
        p.sort_unstable();
    }
    (ids, places)
}

/// Where a scan of gold finds what the ranking reads of a record.
struct RankColumns {
    golden_id: usize,
    order_count: usize,
    keys: [(usize, SqlType); 3],
    scores: [usize; 3],
}

impl RankColumns {
    fn of(scan: &Selection) -> RankColumns {
        let attr = |c: C360| {
            let column = CUSTOMER_360[c.at()].column;
            (scan.attr(column.name, column.ty), column.ty)
        };
        RankColumns {
            golden_id: attr(C360::GoldenId).0,
            order_count: attr(C360::OrderCount).0,
            keys: DIMENSIONS.map(|(c, _)| attr(c)),
            scores: DIMENSIONS.map(|(_, score)| attr(score).0),
        }
    }

    /// A record's golden_id, keys (as `keys_of` makes them) and stored
    /// scores; None when it is not ranked (no counted order).
    fn read(&self, row: &Row) -> Option<Other> {
        if row.int4(self.order_count).unwrap_or(0) <= 0 {
            return None;
        }
        let text = row.text(self.golden_id);
        let golden_id = digest_of_hex(text).unwrap_or_else(|| malformed_golden_id(text));
        let keys = self.keys.map(|(a, ty)| match ty {
            SqlType::Numeric(..) => row.cents(a),
            _ => row.int4(a).map(i64::from),
        });
        // A NULL key is a NULL date, last.
        Some(Other { golden_id, keys: keys.map(|k| k.unwrap_or(i64::MAX)), stored: self.scores.map(|a| row.int2(a)) })
    }
}

fn malformed_golden_id(text: &[u8]) -> ! {
    raise(
        PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
        format!("gold.unified_customer_360 holds a golden_id that is not 64 hex digits: {:?}", String::from_utf8_lossy(text)),
        None,
        "Rebuild gold: CALL golden360.rebuild();",
    )
}

/// The RFM map (`golden360.rfm_segments`): segment by recency score and
/// FM = (F + M) / 2 rounded half up.
pub struct RfmMap {
    cells: [[Option<String>; BUCKETS]; BUCKETS],
}

impl RfmMap {
    pub fn load() -> RfmMap {
        let mut cells: [[Option<String>; BUCKETS]; BUCKETS] = Default::default();
        Spi::connect(|client| {
            let rows = client.select("SELECT recency, fm, segment FROM golden360.rfm_segments", None, &[])?;
            for row in rows {
                if let (Some(r), Some(fm), Some(segment)) = (row.get::<i32>(1)?, row.get::<i32>(2)?, row.get::<String>(3)?) {
                    // The table's CHECK constraints keep both in 1..=5.
                    cells[(r - 1) as usize][(fm - 1) as usize] = Some(segment);
                }
            }
            Ok::<_, pgrx::spi::Error>(())
        })
        .unwrap_or_else(|e| crate::error::spi_failed("reading golden360.rfm_segments", e, ""));
        let missing: Vec<String> = (0..BUCKETS)
            .flat_map(|r| (0..BUCKETS).map(move |fm| (r, fm)))
            .filter(|&(r, fm)| cells[r][fm].is_none())
            .map(|(r, fm)| format!("recency {}, fm {}", r + 1, fm + 1))
            .collect();
        if !missing.is_empty() {
            raise(
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("golden360.rfm_segments has no segment for {} of its {} cells", missing.len(), BUCKETS * BUCKETS),
                Some(format!("missing: {}", missing.join("; "))),
                "Insert the missing cells, e.g. INSERT INTO golden360.rfm_segments VALUES (1, 1, 'Hibernating');",
            );
        }
        RfmMap { cells }
    }

    pub fn segment(&self, scores: [i16; 3]) -> &str {
        let [r, f, m] = scores.map(usize::try_from).map(|s| s.unwrap_or(1));
        let fm = (f + m).div_ceil(2);
        self.cells[r - 1][fm - 1].as_deref().unwrap_or_default()
    }
}

/// Rank everyone: `records` and, for an incremental scope, everyone else
/// with a counted order as gold holds them (read in one scan, straight
/// into the sorts); returns those others whose scores moved, the only ones
/// kept, and where the buckets begin. The sorts are `Sorter`s, so the
/// ranking's memory is bounded whatever the number of people.
fn rank_everyone(records: &mut [Record], tally: &[Tally], scope: &Scope, scored: &[usize]) -> (Vec<Moved>, Option<Boundaries>) {
    let others = match scope {
        Scope::Everyone => None,
        Scope::People { people, .. } => Some((people, Selection::all("gold", "unified_customer_360", SHARE))),
    };
    let expected = scored.len() + others.as_ref().map_or(0, |(_, scan)| scan.estimated_rows());
    let mut sorts: [Sorter<Ranking>; 3] = std::array::from_fn(|_| Sorter::for_records(expected, 3));
    for &i in scored {
        let keys = keys_of(&tally[records[i].person as usize]);
        for (dimension, key) in keys.into_iter().enumerate() {
            sorts[dimension].put(Ranking { key, golden_id: records[i].golden_id, who: Who::Recomputed(i as u32) });
        }
    }
    let mut ranked = scored.len();
    if let Some((people, scan)) = others {
        ranked += rank_the_others(people, scan, &mut sorts);
    }
    let mut scores = vec![[0i16; 3]; records.len()];
    let mut moved: HashMap<[u8; 32], [i16; 3], KeyHashState> = HashMap::default();
    // The first (least) place of each bucket but the first.
    let mut first_of: [[Option<Place>; BOUNDARIES]; 3] = [[None; BOUNDARIES]; 3];
    for (dimension, sort) in sorts.into_iter().enumerate() {
        ntiles_noting_boundaries(sort, &mut first_of[dimension], |score, ranking| {
            match ranking.who {
                Who::Recomputed(i) => scores[i as usize][dimension] = score,
                // A stored NULL moves in its own dimension's pass, so every
                // score of a moved person is set by the end.
                Who::Other(stored) if stored[dimension] != Some(score) => {
                    moved.entry(ranking.golden_id).or_insert(stored.map(|s| s.unwrap_or(0)))[dimension] = score;
                }
                Who::Other(_) => {}
            }
        });
    }
    for &i in scored {
        records[i].rfm = Some(scores[i]);
    }
    let boundaries = Scorer { ranked, first_of }.boundaries();
    (moved.into_iter().map(|(golden_id, scores)| Moved { golden_id, scores }).collect(), boundaries)
}

/// One dimension's sort in ntile order: each ranking with its score, and
/// in `first_of` the first (least) place of each bucket but the first.
fn ntiles_noting_boundaries(sort: Sorter<Ranking>, first_of: &mut [Option<Place>; BOUNDARIES], mut f: impl FnMut(i16, Ranking)) {
    sort.ntiles(BUCKETS, |score, ranking| {
        let place = Place { key: ranking.key, golden_id: ranking.golden_id };
        if let Some(first) = (score as usize).checked_sub(2).and_then(|j| first_of.get_mut(j)) {
            if first.is_none_or(|f| place < f) {
                *first = Some(place);
            }
        }
        f(score, ranking);
    });
}

/// Everyone ranked a pass at a time, for a full build in passes
/// (`build::refresh`): each pass puts its people in, and once all are in,
/// where each bucket begins says anyone's scores. The sorts are `Sorter`s,
/// which spill beyond their budget, so what the ranking holds is bounded
/// too.
pub struct RankingOfEveryone {
    sorts: [Sorter<Ranking>; 3],
    ranked: usize,
}

impl RankingOfEveryone {
    /// For about `people` people, within half of the sort budget: the
    /// passes hold the rest.
    pub fn new(people: usize) -> RankingOfEveryone {
        RankingOfEveryone { sorts: std::array::from_fn(|_| Sorter::for_records(people, 2 * 3)), ranked: 0 }
    }

    /// One person, ranked if they have a counted order.
    pub fn put(&mut self, tally: &Tally, golden_id: [u8; 32]) {
        if tally.order_count == 0 {
            return;
        }
        for (sort, key) in self.sorts.iter_mut().zip(keys_of(tally)) {
            // Nobody is looked up by position: the places are what count.
            sort.put(Ranking { key, golden_id, who: Who::Recomputed(0) });
        }
        self.ranked += 1;
    }

    pub fn finish(self) -> Scorer {
        let mut first_of = [[None; BOUNDARIES]; 3];
        for (dimension, sort) in self.sorts.into_iter().enumerate() {
            ntiles_noting_boundaries(sort, &mut first_of[dimension], |_, _| {});
        }
        Scorer { ranked: self.ranked, first_of }
    }
}

/// What ranking `people` people holds in memory: three sorts.
pub fn ranking_bytes(people: usize) -> usize {
    people.saturating_mul(3 * std::mem::size_of::<Ranking>())
}

/// Anyone's scores among everyone ranked: from where each bucket begins.
/// With fewer people than buckets, the last buckets have no first place
/// (and no one in them), which the count below gives too.
pub struct Scorer {
    ranked: usize,
    first_of: [[Option<Place>; BOUNDARIES]; 3],
}

impl Scorer {
    /// The scores of a person that was ranked (None without a counted
    /// order, as the ranking leaves them).
    pub fn scores(&self, tally: &Tally, golden_id: [u8; 32]) -> Option<[i16; 3]> {
        let keys = keys_of(tally);
        (tally.order_count > 0).then(|| {
            std::array::from_fn(|d| {
                bucket_of(&Place { key: keys[d], golden_id }, self.first_of[d].iter().flatten())
            })
        })
    }

    /// What to store for the next refresh's walk: none with fewer than
    /// five people, when some buckets are empty.
    pub fn boundaries(&self) -> Option<Boundaries> {
        whole(self.first_of).filter(|_| self.ranked >= BUCKETS).map(|first_of| Boundaries { ranked: self.ranked, first_of })
    }
}

/// Everyone gold holds with a counted order but `people`, into the sorts,
/// with their stored scores; returns how many.
fn rank_the_others(people: &[Vec<u8>], mut scan: Selection, sorts: &mut [Sorter<Ranking>; 3]) -> usize {
    let skip: std::collections::HashSet<u128, KeyHashState> = people.iter().map(|p| key_hash(p)).collect();
    let person = scan.attr(CUSTOMER_360[C360::CustomerUniqueId.at()].column.name, Text);
    let columns = RankColumns::of(&scan);
    let mut others = 0;
    scan.for_each(|row| {
        let Some(stored) = columns.read(row).filter(|_| !skip.contains(&key_hash(row.text(person)))) else { return };
        for (dimension, key) in stored.keys.into_iter().enumerate() {
            sorts[dimension].put(Ranking { key, golden_id: stored.golden_id, who: Who::Other(stored.stored) });
        }
        others += 1;
    });
    scan.close();
    others
}

/// One person's place in one RFM dimension: ordered by key, then golden_id.
#[derive(Clone, Copy)]
struct Ranking {
    key: i64,
    golden_id: [u8; 32],
    who: Who,
}

#[derive(Clone, Copy)]
enum Who {
    /// A person this refresh computed: the index into the records.
    Recomputed(u32),
    /// Anyone else, with the scores gold holds for them.
    Other([Option<i16>; 3]),
}

/// A stored score that is NULL in a spilled record.
const NO_SCORE: i16 = i16::MIN;

/// Bytes: the key (`ordered_bytes`), the golden_id, then who (a tag and 6
/// bytes).
impl SortRecord for Ranking {
    type Read = Ranking;

    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&ordered_bytes(self.key));
        buf.extend_from_slice(&self.golden_id);
        match self.who {
            Who::Recomputed(i) => {
                buf.push(0);
                buf.extend_from_slice(&i.to_le_bytes());
                buf.extend_from_slice(&[0, 0]);
            }
            Who::Other(stored) => {
                buf.push(1);
                for s in stored {
                    buf.extend_from_slice(&s.unwrap_or(NO_SCORE).to_le_bytes());
                }
            }
        }
    }

    fn decode(bytes: &[u8]) -> Ranking {
        let field = |from: usize, to: usize| bytes.get(from..to).unwrap_or_default();
        let key = from_ordered_bytes(field(0, 8).try_into().unwrap_or_default());
        let golden_id: [u8; 32] = field(8, 40).try_into().unwrap_or_default();
        let payload = field(41, 47);
        let who = if field(40, 41) == [0] {
            Who::Recomputed(u32::from_le_bytes(payload.get(0..4).unwrap_or_default().try_into().unwrap_or_default()))
        } else {
            let score = |k: usize| {
                let s = i16::from_le_bytes(payload.get(2 * k..2 * k + 2).unwrap_or_default().try_into().unwrap_or_default());
                (s != NO_SCORE).then_some(s)
            };
            Who::Other([score(0), score(1), score(2)])
        };
        Ranking { key, golden_id, who }
    }

    fn read(&self) -> Ranking {
        *self
    }

    fn order(a: &Ranking, b: &Ranking) -> std::cmp::Ordering {
        a.key.cmp(&b.key).then_with(|| a.golden_id.cmp(&b.golden_id))
    }
}

/// A person not recomputed whose RFM scores moved: the new scores.
pub struct Moved {
    golden_id: [u8; 32],
    scores: [i16; 3],
}

/// Rewrite the RFM scores and segment of the people whose scores moved;
/// returns how many.
pub fn rescore(moved: &[Moved], segments: &RfmMap) -> i64 {
    if moved.is_empty() {
        return 0;
    }
    let ids: Vec<String> = moved.iter().map(|m| hex::encode(m.golden_id)).collect();
    let column = |d: usize| -> Vec<i16> { moved.iter().map(|m| m.scores[d]).collect() };
    let labels: Vec<String> = moved.iter().map(|m| segments.segment(m.scores).to_string()).collect();
    Spi::run_with_args(
        "SELECT golden360_internal.rescore_rfm($1, $2, $3, $4, $5)",
        &[ids.into(), column(0).into(), column(1).into(), column(2).into(), labels.into()],
    )
    .unwrap_or_else(|e| crate::error::spi_failed("rewriting RFM scores", e, ""));
    moved.len() as i64
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::*;
    use crate::pg::sort::ntile;

    /// The scores a build in passes gives (from where each bucket begins,
    /// found by ranking everyone pass by pass) are ntile(5)'s over
    /// everyone, with fewer people than buckets too; a person without a
    /// counted order has none. In 1 MB the ranking spills.
    #[pg_test]
    fn scores_from_where_the_buckets_begin_are_ntiles_over_everyone() {
        for memory in ["512MB", "1MB"] {
            Spi::run(&format!("SET LOCAL maintenance_work_mem = '{memory}'")).unwrap();
            for people in [1usize, 3, 4, 5, 6, 23, 20_000] {
                let tallies: Vec<(Tally, [u8; 32])> = (0..people)
                    .map(|i| {
                        let mut t = Tally::default();
                        t.order_count = (i % 4) as u32;
                        t.spend = ((i * 37) % 11) as i64 * 100;
                        // Some counted orders without a purchase time.
                        t.last = (i % 5 != 0).then_some(((i * 13) % 7) as i64 * 86_400_000_000);
                        let mut id = [0u8; 32];
                        id[..8].copy_from_slice(&((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes());
                        (t, id)
                    })
                    .collect();
                let mut ranking = RankingOfEveryone::new(people);
                for (t, id) in &tallies {
                    ranking.put(t, *id);
                }
                let scorer = ranking.finish();
                let ranked: Vec<&(Tally, [u8; 32])> = tallies.iter().filter(|(t, _)| t.order_count > 0).collect();
                let mut expected = vec![[0i16; 3]; ranked.len()];
                for (d, _) in DIMENSIONS.iter().enumerate() {
                    let mut order: Vec<usize> = (0..ranked.len()).collect();
                    order.sort_by_key(|&i| Place { key: keys_of(&ranked[i].0)[d], golden_id: ranked[i].1 });
                    for (position, &i) in order.iter().enumerate() {
                        expected[i][d] = ntile(position, ranked.len(), BUCKETS);
                    }
                }
                let got: Vec<[i16; 3]> = ranked.iter().map(|(t, id)| scorer.scores(t, *id).unwrap()).collect();
                assert_eq!(got, expected, "{people} people in {memory}");
                assert!(tallies.iter().filter(|(t, _)| t.order_count == 0).all(|(t, id)| scorer.scores(t, *id).is_none()));
                assert_eq!(scorer.boundaries().is_some(), ranked.len() >= BUCKETS, "{people} people");
            }
        }
    }


    /// A ranking's bytes sort as the ranking does (key as a signed number,
    /// then golden_id), and read back as they were put.
    #[test]
    fn rankings_sort_by_their_bytes_and_read_back() {
        let mut rankings = Vec::new();
        for (n, key) in [i64::MIN, -3, 0, 1, 17_532, i64::MAX].into_iter().enumerate() {
            for id in [[0u8; 32], [7u8; 32], [255u8; 32]] {
                let who = if n % 2 == 0 { Who::Recomputed(n as u32 * 1000 + 7) } else { Who::Other([Some(1), None, Some(5)]) };
                rankings.push(Ranking { key, golden_id: id, who });
            }
        }
        rankings.reverse();
        let encode = |r: &Ranking| {
            let mut out = Vec::new();
            r.encode(&mut out);
            out
        };
        let mut by_bytes = rankings.clone();
        by_bytes.sort_by_key(encode);
        let mut by_value = rankings;
        by_value.sort_unstable_by(Ranking::order);
        let fields = |r: &Ranking| {
            let who = match r.who {
                Who::Recomputed(i) => (0, i64::from(i), [None; 3]),
                Who::Other(s) => (1, 0, s),
            };
            (r.key, r.golden_id, who)
        };
        assert_eq!(by_bytes.iter().map(fields).collect::<Vec<_>>(), by_value.iter().map(fields).collect::<Vec<_>>());
        for r in &by_value {
            assert_eq!(fields(&Ranking::decode(&encode(r))), fields(r));
        }
    }}
