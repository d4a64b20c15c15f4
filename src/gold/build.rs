//! Building gold from silver: the silver rows of the people in scope read
//! into compact per-person tallies (ids become numbers; money stays in
//! integer cents), the 360 and the RFM scores computed in memory, then gold
//! and the bridge brought to that result by writing only the rows that
//! differ.
//!
//! The scope is everyone (a full refresh: one scan of each silver table)
//! or the people silver's changes touch (an incremental one: their rows
//! only, through indexes). Both run the same per-person code, so an
//! incremental record is a full rebuild's by construction. RFM scores are
//! ranks over everyone: an incremental refresh ranks the people it
//! recomputed among everyone else's stored values (one scan of gold into
//! sorts that spill beyond their budget, so its memory stays bounded) and
//! rewrites the others whose scores moved.
//!
//! A full refresh whose people would not fit `maintenance_work_mem` runs
//! in passes by a hash of customer_unique_id (`refresh_everyone_in_passes`),
//! each computing and writing its share of the people.

use super::golden360::golden_id_digest;
use crate::pg::bulk::{decimal, delete_rows, BulkInsert, RowBuf};
use crate::pg::relation::Privilege;
use super::spec::{Bridge, BRIDGE_COLUMNS, C360, CUSTOMER_360_COLUMNS, DIVERSITY, SCORE, SPEND, ZIP_COORDINATES_COLUMNS};
use crate::pg::types::{Column, SqlType};
use crate::error::raise;
use crate::keys::{key_hash, Interner, KeyHashState, Pass};
use crate::pg::context::RowContext;
use crate::pg::scan::{HeapScan, Key, Lock, OpenTable, Row, Selection, Tid};
use crate::pg::snapshot::{transaction_started_at, OwnWritesVisible, TimestampTz};
use super::rfm::{self, rescore, Boundaries, Ranked, RankingOfEveryone, RfmMap};
use crate::silver::parse::date_of;
use pgrx::PgSqlErrorCode;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

pub use olist_model::codes::is_counted;

/// What a refresh did.
#[derive(Default)]
pub struct Outcome {
    /// People whose records were computed (everyone, in a full refresh).
    pub people: i64,
    /// Golden records inserted or rewritten (RFM rescores included).
    pub written: i64,
    /// Golden records of people no longer in silver.
    pub removed: i64,
    /// Of the written records, those of people gold did not hold before.
    pub added: i64,
    pub bridge_added: i64,
    pub bridge_written: i64,
    pub bridge_removed: i64,
    /// Passes by customer_unique_id the people were computed in (1: at
    /// once; 0: nobody to compute).
    pub passes: i64,
}

impl Outcome {
    /// This outcome and a (pass's) computing of `people` people that
    /// brought the records and the bridge as `records` and `bridge` say.
    fn with(self, people: usize, records: &Synced, bridge: &Synced) -> Outcome {
        Outcome {
            people: self.people + people as i64,
            written: self.written + records.written,
            removed: self.removed + records.removed,
            added: self.added + records.added,
            bridge_added: self.bridge_added + bridge.added,
            bridge_written: self.bridge_written + bridge.written,
            bridge_removed: self.bridge_removed + bridge.removed,
            passes: self.passes + 1,
        }
    }
}

/// Whose golden records a refresh computes.
pub enum Scope {
    Everyone,
    /// These customer_unique_ids (present in silver or not any more), and
    /// the zips whose geolocation points changed.
    People { people: Vec<Vec<u8>>, zips: Vec<i32> },
}

impl Scope {
    /// The silver rows of `table` this scope reads: all, or those whose
    /// `column` is one of `keys()`.
    fn rows(&self, table: &str, column: &str, keys: impl FnOnce() -> Vec<Key>) -> Selection {
        match self {
            Scope::Everyone => Selection::all("silver", table, SHARE),
            Scope::People { .. } => Selection::keys("silver", table, column, keys(), SHARE),
        }
    }

    /// The people in scope as lookup keys (none for everyone: that scope
    /// reads whole tables).
    fn people_keys(&self) -> Vec<Key> {
        match self {
            Scope::People { people, .. } => people.iter().map(|p| Key::Text(p.clone())).collect(),
            Scope::Everyone => Vec::new(),
        }
    }

    /// The stored rows a sync compares: all of them, or those of these keys.
    fn stored(&self, keys: impl FnOnce() -> Vec<Key>) -> Stored {
        match self {
            Scope::Everyone => Stored::All,
            Scope::People { .. } => Stored::Keys(keys()),
        }
    }
}

/// The stored rows of a gold table a sync reads and compares its target with.
enum Stored {
    All,
    Keys(Vec<Key>),
    /// None: the table held nothing when this build began, so what it
    /// holds now is the earlier passes' rows, which are theirs and right.
    /// A first load in passes so reads no pass's rows again.
    EarlierPassesOnly,
}

pub fn refresh(scope: &Scope) -> Outcome {
    if matches!(scope, Scope::People { people, zips } if people.is_empty() && zips.is_empty()) {
        // Nobody changed, so nobody's rank did either.
        return Outcome::default();
    }
    if matches!(scope, Scope::Everyone) {
        let customers = estimated_customers();
        let passes = passes_for_everyone(customers);
        if passes > 1 {
            return refresh_everyone_in_passes(passes, customers);
        }
    }
    let started = Instant::now();
    let segments = RfmMap::load();
    let silver = Silver::read_orders_part(scope, Pass::WHOLE).read_the_rest(scope, None);
    let silver_read = started.elapsed();
    let (gold, ranked) = Gold::compute(&silver, |records, tally| rfm::score(records, tally, scope));
    let computed = started.elapsed();
    let refreshed_at = transaction_started_at();
    let mut records = sync(
        &GoldRows { silver: &silver, gold: &gold, segments: &segments, refreshed_at },
        scope.stored(|| scope.people_keys()),
        Pass::WHOLE,
    );
    let synced = started.elapsed();
    records.written += rescore(&ranked.moved, &segments);
    Boundaries::store(ranked.boundaries.as_ref());
    let rescored = started.elapsed();
    let customer_keys = || (0..silver.customers.len() as u32).map(|c| Key::Text(silver.customers.get(c).to_vec())).collect();
    let bridge = sync(&BridgeRows::new(&silver, &gold), scope.stored(customer_keys), Pass::WHOLE);
    pgrx::debug1!(
        "golden360 gold: read silver {:.0} ms, computed {:.0} ms (RFM ranks {}), wrote {:.0} ms \
         (records {:.0} ms, RFM rescores {:.0} ms)",
        silver_read.as_secs_f64() * 1e3,
        (computed - silver_read).as_secs_f64() * 1e3,
        if ranked.read_everyone { "by reading everyone" } else { "by walking from the stored boundaries" },
        (started.elapsed() - computed).as_secs_f64() * 1e3,
        (synced - computed).as_secs_f64() * 1e3,
        (rescored - synced).as_secs_f64() * 1e3
    );
    Outcome::default().with(gold.records.len(), &records, &bridge)
}

/// How many rows silver.customers holds, as the planner estimates them:
/// what a full build and the full cross-checks size their passes by.
pub(super) fn estimated_customers() -> usize {
    let customers = Selection::all("silver", "customers", SHARE);
    let estimate = customers.estimated_rows();
    customers.close();
    estimate
}

/// What a full build holds per silver customer for its people (the maps
/// of customers, people, orders and products, the tallies, the records,
/// the bridge's order; the ranking aside), measured at scale 10: 566 MiB
/// at once for 993,894 customers, 167 of them the ranking's.
const BUILD_BYTES_PER_CUSTOMER: u64 = 450;

/// How many passes by customer_unique_id a full build of `customers`
/// customers needs to hold its people and the ranking within
/// `maintenance_work_mem` (see `Pass`). In passes the ranking holds at
/// most half of it (it spills beyond), and each pass the rest.
fn passes_for_everyone(customers: usize) -> u64 {
    let budget = crate::pg::sort::sort_budget_bytes().max(1) as u64;
    let people = (customers as u64).saturating_mul(BUILD_BYTES_PER_CUSTOMER);
    let ranking = rfm::ranking_bytes(customers) as u64;
    if people.saturating_add(ranking) <= budget {
        return 1;
    }
    people.div_ceil(budget - ranking.min(budget / 2)).max(2)
}

/// A full build in passes, each computing the people whose
/// customer_unique_id hash falls in it and bringing their gold and bridge
/// rows to that result; a pass holds a `count`th of the people. RFM scores
/// are ranks among everyone, so a first sweep reads what they rank by
/// (customers, orders, payments) pass by pass into the ranking's sorts,
/// which spill beyond their budget; the second computes and writes, each
/// person scored from where the buckets begin, starting with the pass the
/// first sweep ended on, whose orders it still holds. The zip means are
/// summed once. The result is the one-pass build's, row for row.
fn refresh_everyone_in_passes(count: u64, customers: usize) -> Outcome {
    let started = Instant::now();
    let segments = RfmMap::load();
    let zip_means = zip_means_of_everyone();
    let mut ranking = RankingOfEveryone::new(customers);
    let mut last_read = None;
    for pass in Pass::all(count) {
        // One pass's read at a time.
        drop(last_read.take());
        let read = Silver::read_orders_part(&Scope::Everyone, pass);
        let (records, _) = Gold::records(&read.silver);
        for r in &records {
            ranking.put(&read.silver.tally[r.person as usize], r.golden_id);
        }
        last_read = Some(read);
    }
    let scorer = ranking.finish();
    let ranked = started.elapsed();

    // A later pass must not see the rows an earlier one deleted (a
    // customer_id that moved to a person of another pass).
    let visible = OwnWritesVisible::push();
    let refreshed_at = transaction_started_at();
    let mut outcome = Outcome::default();
    let (records_were_empty, bridge_was_empty) = (is_empty(GoldRows::TABLE), is_empty(BridgeRows::TABLE));
    let stored = |was_empty: bool| if was_empty { Stored::EarlierPassesOnly } else { Stored::All };
    // The last pass's orders are still in memory: it is written first.
    let mut passes: Vec<Pass> = Pass::all(count).collect();
    passes.rotate_right(1);
    for pass in passes {
        let read = match last_read.take() {
            Some(read) if read.pass == pass => read,
            _ => Silver::read_orders_part(&Scope::Everyone, pass),
        };
        let silver = read.read_the_rest(&Scope::Everyone, Some(&zip_means));
        let (gold, _) = Gold::compute(&silver, |records, tally| {
            for r in records.iter_mut() {
                r.rfm = scorer.scores(&tally[r.person as usize], r.golden_id);
            }
            Ranked { moved: Vec::new(), boundaries: None, read_everyone: true }
        });
        let records = sync(&GoldRows { silver: &silver, gold: &gold, segments: &segments, refreshed_at }, stored(records_were_empty), pass);
        visible.advance();
        let bridge = sync(&BridgeRows::new(&silver, &gold), stored(bridge_was_empty), pass);
        visible.advance();
        outcome = outcome.with(gold.records.len(), &records, &bridge);
    }
    Boundaries::store(scorer.boundaries().as_ref());
    pgrx::debug1!(
        "golden360 gold: {count} passes by customer_unique_id: ranked {:.0} ms, computed and wrote {:.0} ms",
        ranked.as_secs_f64() * 1e3,
        (started.elapsed() - ranked).as_secs_f64() * 1e3
    );
    outcome
}

struct Customer {
    person: u32,
    zip: Option<i32>,
    city: Option<u32>,
    state: Option<u32>,
}

struct Order {
    customer: u32,
    counted: bool,
    purchased: Option<i64>,
    /// Sum of its payments, in cents.
    value: i64,
}

/// Everything gold needs from silver, per person.
#[derive(Default, Clone)]
pub(super) struct Tally {
    pub(super) order_count: u32,
    canceled: u32,
    /// In cents.
    pub(super) spend: i64,
    max_order: i64,
    first: Option<i64>,
    /// The latest counted purchase.
    pub(super) last: Option<i64>,
    items: u32,
    unique_products: u32,
    categories: u32,
    /// Category number of the favourite.
    favorite: Option<u32>,
    review_sum: i64,
    reviews: u32,
    /// (purchase, customer) of the earliest and the latest dated purchase
    /// of any status.
    earliest: Option<(i64, u32)>,
    latest: Option<(i64, u32)>,
}

struct Silver {
    /// customer_id → customer number (the index into `customer`).
    customers: Interner,
    customer: Vec<Customer>,
    /// customer_unique_id → person number (the index into `tally`).
    people: Interner,
    tally: Vec<Tally>,
    /// Cities and states.
    places: Interner,
    categories: Interner,
    /// The mean point of each zip the people in scope live in.
    zip_means: HashMap<i32, (f64, f64), KeyHashState>,
}

pub(super) const SHARE: Lock = Lock::Read;
use crate::silver::spec::MONEY;
use SqlType::{Double, Integer, Text, Timestamp};

/// Each zip's mean point.
type ZipMeans = HashMap<i32, (f64, f64), KeyHashState>;

/// Silver read as far as the RFM ranking needs (the people, their
/// customers and their orders' tallies, from customers, orders and
/// payments), with the orders the rest of the read looks items and
/// reviews up by.
struct OrdersRead {
    silver: Silver,
    orders: Interner,
    order: Vec<Order>,
    pass: Pass,
    started: Instant,
    marks: Vec<std::time::Duration>,
}

impl OrdersRead {
    /// The rest of what the records need: items, products, reviews, and
    /// the zip means (summed here unless given, as a build in passes sums
    /// them once).
    fn read_the_rest(self, scope: &Scope, zip_means: Option<&ZipMeans>) -> Silver {
        let OrdersRead { mut silver, orders, order, started, mut marks, .. } = self;
        silver.read_items(scope, &orders, &order);
        marks.push(started.elapsed());
        silver.read_reviews(scope, &orders, &order);
        marks.push(started.elapsed());
        match zip_means {
            Some(zip_means) => silver.zip_means = zip_means.clone(),
            None => silver.read_geolocation(scope),
        }
        marks.push(started.elapsed());
        let ms: Vec<String> = marks.windows(2).map(|w| format!("{:.0}", (w[1] - w[0]).as_secs_f64() * 1e3)).collect();
        pgrx::debug1!("golden360 gold: silver read ms (customers, orders, payments, items, reviews, geolocation): {}", ms.join(", "));
        silver
    }
}

impl Silver {
    /// The silver rows of the people in `scope` whose customer_unique_id
    /// falls in `pass`, as far as the ranking needs (see `OrdersRead`).
    fn read_orders_part(scope: &Scope, pass: Pass) -> OrdersRead {
        let mut silver = Silver {
            customers: Interner::default(),
            customer: Vec::new(),
            people: Interner::default(),
            tally: Vec::new(),
            places: Interner::default(),
            categories: Interner::default(),
            zip_means: HashMap::default(),
        };
        let started = Instant::now();
        let mut marks = vec![std::time::Duration::ZERO];
        silver.read_customers(scope, pass);
        marks.push(started.elapsed());
        let (orders, mut order) = silver.read_orders(scope, pass);
        marks.push(started.elapsed());
        read_payments(scope, &orders, &mut order);
        silver.tally_orders(&order);
        marks.push(started.elapsed());
        OrdersRead { silver, orders, order, pass, started, marks }
    }

    fn read_customers(&mut self, scope: &Scope, pass: Pass) {
        let mut scan = scope.rows("customers", "customer_unique_id", || scope.people_keys());
        // Olist ids are 32 characters.
        let n = scan.estimated_rows() / pass.count as usize;
        self.customers = Interner::with_capacity(n, 32);
        self.people = Interner::with_capacity(n, 32);
        self.customer.reserve(n);
        self.tally.reserve(n);
        let [id, person, zip, city, state] =
            [("customer_id", Text), ("customer_unique_id", Text), ("customer_zip", Integer), ("customer_city", Text), ("customer_state", Text)]
                .map(|(c, ty)| scan.attr(c, ty));
        scan.for_each(|row| {
            if !pass.holds_key(row.text(person)) {
                return;
            }
            let number = self.customers.intern(row.text(id));
            if number as usize == self.customer.len() {
                let person = self.people.intern(row.text(person));
                if person as usize == self.tally.len() {
                    self.tally.push(Tally::default());
                }
                self.customer.push(Customer {
                    person,
                    zip: row.int4(zip),
                    city: row.opt_text(city).map(|b| self.places.intern(b)),
                    state: row.opt_text(state).map(|b| self.places.intern(b)),
                });
            }
        });
        scan.close();
    }

    /// order_id → order number, and the orders by number.
    fn read_orders(&self, scope: &Scope, pass: Pass) -> (Interner, Vec<Order>) {
        let mut scan = scope.rows("orders", "customer_id", || ids(&self.customers));
        let n = scan.estimated_rows() / pass.count as usize;
        let mut order = Vec::with_capacity(n);
        let mut orders = Interner::with_capacity(n, 32);
        let [id, customer, status, purchased] =
            [("order_id", Text), ("customer_id", Text), ("order_status", Text), ("order_purchase_timestamp", Timestamp)]
                .map(|(c, ty)| scan.attr(c, ty));
        scan.for_each(|row| {
            // The customer_exists rule makes a miss impossible; an order of
            // nobody would belong to no golden record anyway.
            let Some(customer) = self.customers.find(row.text(customer)) else { return };
            if orders.intern(row.text(id)) as usize == order.len() {
                order.push(Order {
                    customer,
                    counted: is_counted(row.text(status)),
                    purchased: row.int8(purchased),
                    value: 0,
                });
            }
        });
        scan.close();
        (orders, order)
    }

    fn tally_orders(&mut self, order: &[Order]) {
        for o in order {
            let t = &mut self.tally[self.customer[o.customer as usize].person as usize];
            if let Some(at) = o.purchased {
                let id = |c: u32| self.customers.get(c);
                // Ties on the purchase time: the smallest customer_id.
                if t.earliest.is_none_or(|(e, c)| (at, id(o.customer)) < (e, id(c))) {
                    t.earliest = Some((at, o.customer));
                }
                if t.latest.is_none_or(|(l, c)| at > l || (at == l && id(o.customer) < id(c))) {
                    t.latest = Some((at, o.customer));
                }
            }
            if o.counted {
                t.order_count += 1;
                t.spend += o.value;
                t.max_order = t.max_order.max(o.value);
                if let Some(at) = o.purchased {
                    t.first = Some(t.first.map_or(at, |f| f.min(at)));
                    t.last = Some(t.last.map_or(at, |l| l.max(at)));
                }
            } else {
                t.canceled += 1;
            }
        }
    }

    /// Items of counted orders: their count, distinct products, and per
    /// category (English, else Portuguese; products without one count
    /// only as items and products) the count of item rows.
    fn read_items(&mut self, scope: &Scope, orders: &Interner, order: &[Order]) {
        let mut products = Interner::default();
        let mut bought: Vec<(u32, u32)> = Vec::new(); // (person, product)
        let mut scan = scope.rows("order_items", "order_id", || ids(orders));
        let [order_id, product] = ["order_id", "product_id"].map(|c| scan.attr(c, Text));
        scan.for_each(|row| {
            let Some(o) = orders.find(row.text(order_id)).map(|o| &order[o as usize]) else { return };
            if !o.counted {
                return;
            }
            let person = self.customer[o.customer as usize].person;
            self.tally[person as usize].items += 1;
            if let Some(product) = row.opt_text(product) {
                bought.push((person, products.intern(product)));
            }
        });
        scan.close();

        let mut category_of: Vec<Option<u32>> = vec![None; products.len()];
        let mut scan = scope.rows("products", "product_id", || ids(&products));
        let [id, category] = [("product_id", Text), ("product_category", Text)].map(|(c, ty)| scan.attr(c, ty));
        scan.for_each(|row| {
            if let Some(p) = products.find(row.text(id)) {
                category_of[p as usize] = row.opt_text(category).map(|b| self.categories.intern(b));
            }
        });
        scan.close();
        // Favourite-category ties go to the byte-order first: number the
        // categories in that order.
        let mut by_name: Vec<u32> = (0..self.categories.len() as u32).collect();
        by_name.sort_unstable_by(|&a, &b| self.categories.get(a).cmp(self.categories.get(b)));
        let mut rank = vec![0u32; by_name.len()];
        for (r, &c) in by_name.iter().enumerate() {
            rank[c as usize] = r as u32;
        }

        let in_category: Vec<(u32, u32)> = bought // (person, category rank)
            .iter()
            .filter_map(|&(person, p)| category_of[p as usize].map(|c| (person, rank[c as usize])))
            .collect();
        let mut in_category = in_category;
        bought.sort_unstable();
        bought.dedup();
        for &(person, _) in &bought {
            self.tally[person as usize].unique_products += 1;
        }
        in_category.sort_unstable();
        let mut best: Option<(u32, u32, u32)> = None; // (person, items, rank)
        for run in in_category.chunk_by(|a, b| a == b) {
            let (person, r) = run[0];
            let t = &mut self.tally[person as usize];
            t.categories += 1;
            // Runs come by person, then rank: a strictly larger count wins,
            // so an equal one later (a greater name) does not.
            let n = run.len() as u32;
            if best.is_none_or(|(p, most, _)| p != person || n > most) {
                best = Some((person, n, r));
                t.favorite = Some(by_name[r as usize]);
            }
        }
    }

    /// Reviews of all the person's orders, of any status.
    fn read_reviews(&mut self, scope: &Scope, orders: &Interner, order: &[Order]) {
        let mut scan = scope.rows("order_reviews", "order_id", || ids(orders));
        let [order_id, score] = [("order_id", Text), ("review_score", Integer)].map(|(c, ty)| scan.attr(c, ty));
        scan.for_each(|row| {
            let Some(o) = orders.find(row.text(order_id)).map(|o| &order[o as usize]) else { return };
            let Some(score) = row.int4(score) else { return };
            let t = &mut self.tally[self.customer[o.customer as usize].person as usize];
            t.review_sum += i64::from(score);
            t.reviews += 1;
        });
        scan.close();
    }

    /// The mean points of the zips the people live in. A full refresh sums
    /// every point and rewrites gold.zip_coordinates; an incremental one
    /// re-sums only the zips whose points changed, stores them, and reads
    /// the other zips' means from gold.zip_coordinates.
    fn read_geolocation(&mut self, scope: &Scope) {
        let Scope::People { zips, .. } = scope else {
            self.zip_means = zip_means_of_everyone();
            return;
        };
        let changed: Vec<Key> = zips.iter().copied().map(Key::Int4).collect();
        let mut sums: HashMap<i32, PointSum, KeyHashState> = HashMap::default();
        if !changed.is_empty() {
            sums = sum_points(Selection::keys("silver", "geolocation", "zip", changed.clone(), SHARE));
            store_zip_coordinates(Some(changed), &sums);
        }
        let wanted: Vec<Key> = self.customer.iter().filter_map(|c| c.zip).filter(|z| !zips.contains(z)).map(Key::Int4).collect();
        let mut scan = Selection::keys("gold", "zip_coordinates", "zip", wanted, SHARE);
        scan.expect_columns(&ZIP_COORDINATES_COLUMNS);
        let [zip, lat, lng] = [ZipC::Zip, ZipC::Latitude, ZipC::Longitude].map(|c| c as usize);
        scan.for_each(|row| {
            if let (Some(zip), Some(lat), Some(lng)) = (row.int4(zip), row.float8(lat), row.float8(lng)) {
                self.zip_means.insert(zip, (lat, lng));
            }
        });
        scan.close();
        self.zip_means.extend(sums.iter().map(|(&zip, points)| (zip, points.mean())));
    }
}

/// Every zip's mean point, from all of silver.geolocation, with
/// gold.zip_coordinates rewritten to them.
fn zip_means_of_everyone() -> ZipMeans {
    let sums = sum_points(Selection::all("silver", "geolocation", SHARE));
    store_zip_coordinates(None, &sums);
    sums.iter().map(|(&zip, points)| (zip, points.mean())).collect()
}

/// The points of the geolocation rows `scan` reads, summed by zip.
fn sum_points(mut scan: Selection) -> HashMap<i32, PointSum, KeyHashState> {
    let mut sums: HashMap<i32, PointSum, KeyHashState> = HashMap::default();
    let [zip, lat, lng] = [("zip", Integer), ("lat", Double), ("lng", Double)].map(|(c, ty)| scan.attr(c, ty));
    scan.for_each(|row| {
        if let (Some(zip), Some(lat), Some(lng)) = (row.int4(zip), row.float8(lat), row.float8(lng)) {
            sums.entry(zip).or_default().add(lat, lng);
        }
    });
    scan.close();
    sums
}

/// The sum of a zip's points, exact: each coordinate in fixed point with
/// 64 fractional bits, summed as integers. The mean is then the same
/// whatever order the points are read in (a float sum is not), so an
/// incremental refresh, which reads a zip's points through an index, and
/// a rebuild, which scans silver in whatever physical order it has, agree
/// to the last bit.
#[derive(Default, Clone, Copy)]
struct PointSum {
    lat: i128,
    lng: i128,
    points: u32,
}

/// 2^64: the fixed-point scale of `PointSum`.
const FIXED: f64 = 18_446_744_073_709_551_616.0;

impl PointSum {
    fn add(&mut self, lat: f64, lng: f64) {
        // Exact scaling by a power of two, then truncation: every
        // coordinate inside Brazil's box keeps all its 52 mantissa bits.
        self.lat += (lat * FIXED) as i128;
        self.lng += (lng * FIXED) as i128;
        self.points += 1;
    }

    fn mean(&self) -> (f64, f64) {
        let n = f64::from(self.points);
        (self.lat as f64 / FIXED / n, self.lng as f64 / FIXED / n)
    }
}

/// Positions in gold.zip_coordinates.
#[derive(Clone, Copy)]
enum ZipC {
    Zip,
    Latitude,
    Longitude,
    Points,
}

/// Bring gold.zip_coordinates to `sums` for the zips `changed` (None: for
/// every zip, the table rewritten): their rows deleted, the ones with
/// points inserted.
fn store_zip_coordinates(changed: Option<Vec<Key>>, sums: &HashMap<i32, PointSum, KeyHashState>) {
    let mut scan = match changed {
        None => Selection::all("gold", "zip_coordinates", Lock::Write),
        Some(zips) => Selection::keys("gold", "zip_coordinates", "zip", zips, Lock::Write),
    };
    scan.expect_columns(&ZIP_COORDINATES_COLUMNS);
    let mut stale = Vec::new();
    scan.for_each(|row| stale.push(row.tid));
    delete_rows(&scan, &mut stale);
    scan.close();
    let mut insert = BulkInsert::open_declared("gold", "zip_coordinates", &ZIP_COORDINATES_COLUMNS);
    let mut row = RowBuf::new(ZIP_COORDINATES_COLUMNS.len());
    let mut zips: Vec<(&i32, &PointSum)> = sums.iter().collect();
    zips.sort_unstable_by_key(|(zip, _)| **zip);
    for (&zip, points) in zips {
        let (lat, lng) = points.mean();
        row.build(|b| {
            b.int4(ZipC::Zip as usize, zip);
            b.float8(ZipC::Latitude as usize, lat);
            b.float8(ZipC::Longitude as usize, lng);
            b.int4(ZipC::Points as usize, points.points as i32);
        });
        insert.push_row(&mut row);
    }
    insert.finish();
}

/// Every key of an interner, as lookup keys.
fn ids(interner: &Interner) -> Vec<Key> {
    (0..interner.len() as u32).map(|i| Key::Text(interner.get(i).to_vec())).collect()
}

fn read_payments(scope: &Scope, orders: &Interner, order: &mut [Order]) {
    let mut scan = scope.rows("order_payments", "order_id", || ids(orders));
    let [order_id, value] = [("order_id", Text), ("payment_value", MONEY)].map(|(c, ty)| scan.attr(c, ty));
    scan.for_each(|row: &Row| {
        if let (Some(o), Some(cents)) = (orders.find(row.text(order_id)), row.cents(value)) {
            order[o as usize].value += cents;
        }
    });
    scan.close();
}

/// One golden record, by numbers into `Silver`.
pub(super) struct Record {
    /// The index into the tallies.
    pub(super) person: u32,
    pub(super) golden_id: [u8; 32],
    canonical: u32,
    /// The customer whose address the record carries.
    address: u32,
    /// Range of the person's customers in `Gold::customers_by_person`.
    customers: std::ops::Range<usize>,
    pub(super) rfm: Option<[i16; 3]>,
}

struct Gold {
    /// In customer_unique_id byte order: the order gold's rows are written
    /// in. Not golden_id order: people next to each other in golden_id
    /// order are the ones whose frequency scores move together (most have
    /// one order, and ties go by golden_id), and on one page their rescores
    /// would not find room for HOT updates. Each index's entries are
    /// sorted before insertion anyway (`bulk.rs`).
    records: Vec<Record>,
    /// Customer numbers, by person, then customer_id in byte order.
    customers_by_person: Vec<u32>,
    /// Person number → index into `records`.
    record_of: Vec<u32>,
}

impl Gold {
    /// The records of the people in `silver`, scored by `rank` (among
    /// everyone: for an incremental scope, with the others as gold holds
    /// them), in the order they are written; also what ranking found
    /// besides (the others whose scores moved).
    fn compute(silver: &Silver, rank: impl FnOnce(&mut [Record], &[Tally]) -> Ranked) -> (Gold, Ranked) {
        let (mut records, customers_by_person) = Gold::records(silver);
        let ranked = rank(&mut records, &silver.tally);
        records.sort_unstable_by(|a, b| silver.people.get(a.person).cmp(silver.people.get(b.person)));
        let mut record_of = vec![0u32; records.len()];
        for (i, r) in records.iter().enumerate() {
            record_of[r.person as usize] = i as u32;
        }
        (Gold { records, customers_by_person, record_of }, ranked)
    }

    /// The people's records, unscored, by person number; and their
    /// customers by person (see `customers_by_person`).
    fn records(silver: &Silver) -> (Vec<Record>, Vec<u32>) {
        let id = |c: u32| silver.customers.get(c);
        let mut sorted: Vec<(u32, &[u8], u32)> =
            silver.customer.iter().enumerate().map(|(c, row)| (row.person, id(c as u32), c as u32)).collect();
        sorted.sort_unstable();
        let customers_by_person: Vec<u32> = sorted.into_iter().map(|(_, _, c)| c).collect();
        let mut records = Vec::with_capacity(silver.tally.len());
        let mut at = 0;
        for (person, t) in silver.tally.iter().enumerate() {
            let start = at;
            while at < customers_by_person.len() && silver.customer[customers_by_person[at] as usize].person == person as u32 {
                at += 1;
            }
            // Without a dated purchase: the smallest customer_id.
            let smallest = customers_by_person[start];
            let canonical = t.earliest.map_or(smallest, |(_, c)| c);
            records.push(Record {
                person: person as u32,
                golden_id: golden_id_digest(silver.people.get(person as u32), id(canonical)),
                canonical,
                address: t.latest.map_or(smallest, |(_, c)| c),
                customers: start..at,
                rfm: None,
            });
        }
        (records, customers_by_person)
    }
}

/// The digest that a golden_id's 64 hex digits spell. By table lookup: the
/// RFM ranking of an incremental refresh reads every golden_id in gold,
/// and a digit-by-digit decoder took a third of that scan.
pub(super) fn digest_of_hex(text: &[u8]) -> Option<[u8; 32]> {
    const NOT_HEX: u8 = 0xFF;
    static VALUE: [u8; 256] = {
        let mut table = [NOT_HEX; 256];
        let mut i = 0;
        while i < 16 {
            table[b"0123456789abcdef"[i] as usize] = i as u8;
            table[b"0123456789ABCDEF"[i] as usize] = i as u8;
            i += 1;
        }
        table
    };
    if text.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    // A digit's value fits 4 bits; NOT_HEX sets the high ones.
    let mut high_bits = 0u8;
    for (byte, pair) in digest.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (VALUE[pair[0] as usize], VALUE[pair[1] as usize]);
        high_bits |= (high | low) & 0xF0;
        *byte = (high << 4) | low;
    }
    (high_bits == 0).then_some(digest)
}

/// Lower-case hex of a digest, without allocating.
pub(super) fn hex_digits(digest: &[u8; 32]) -> [u8; 64] {
    let mut out = [0u8; 64];
    // Infallible: the output is exactly twice the input.
    let _ = hex::encode_to_slice(digest, &mut out);
    out
}

/// `numerator / denominator` rounded half away from zero to `places`
/// decimals, as an integer scaled by 10^places.
fn rounded_ratio(numerator: i64, denominator: i64, places: u32) -> i64 {
    let scaled = i128::from(numerator) * 10i128.pow(places);
    let d = i128::from(denominator);
    let q = (2 * scaled.abs() + d) / (2 * d);
    (if scaled < 0 { -q } else { q }) as i64
}

/// The rows a gold table should hold, and how to match them to the rows it
/// holds: by a natural key.
trait TargetRows {
    const TABLE: &'static str;
    const COLUMNS: &'static [Column];
    const KEY: usize;
    /// The customer_unique_id, which says a row's pass (`Pass`).
    const PERSON: usize;
    /// A column left out of the comparison (when the row was computed).
    const STAMP: Option<usize>;
    fn len(&self) -> usize;
    fn find(&self, key: &[u8]) -> Option<usize>;
    fn fill(&self, i: usize, row: &mut RowBuf);
}

struct GoldRows<'a> {
    silver: &'a Silver,
    gold: &'a Gold,
    segments: &'a RfmMap,
    refreshed_at: TimestampTz,
}

impl TargetRows for GoldRows<'_> {
    const TABLE: &'static str = "unified_customer_360";
    const COLUMNS: &'static [Column] = &CUSTOMER_360_COLUMNS;
    const KEY: usize = C360::CustomerUniqueId.at();
    const PERSON: usize = C360::CustomerUniqueId.at();
    const STAMP: Option<usize> = Some(C360::RefreshedAt.at());

    fn len(&self) -> usize {
        self.gold.records.len()
    }

    fn find(&self, customer_unique_id: &[u8]) -> Option<usize> {
        let person = self.silver.people.find(customer_unique_id)?;
        Some(self.gold.record_of[person as usize] as usize)
    }

    fn fill(&self, i: usize, row: &mut RowBuf) {
        let (silver, r) = (self.silver, &self.gold.records[i]);
        let t = &silver.tally[r.person as usize];
        let address = &silver.customer[r.address as usize];
        let counted = i64::from(t.order_count);
        row.text(C360::GoldenId.at(), &hex_digits(&r.golden_id));
        row.text(C360::CustomerUniqueId.at(), silver.people.get(r.person));
        row.text(C360::CustomerId.at(), silver.customers.get(r.canonical));
        row.text_array(C360::CustomerIds.at(), self.gold.customers_by_person[r.customers.clone()].iter().map(|&c| silver.customers.get(c)));
        row.int4(C360::OrderCount.at(), t.order_count as i32);
        row.int4(C360::CanceledOrderCount.at(), t.canceled as i32);
        // RowBuf::numeric would refuse it too; this says whose spend it is.
        if !SPEND.holds(t.spend) {
            raise(
                PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
                format!(
                    "total_spend of customer_unique_id {} would be {}, beyond gold's {}",
                    String::from_utf8_lossy(silver.people.get(r.person)),
                    decimal(t.spend, 2),
                    SPEND.sql()
                ),
                Some("The sum of the person's counted orders' silver payments does not fit the column.".into()),
                "Gold is unchanged. Check that person's payments in silver.order_payments; the bronze rows behind \
                 them are in bronze.order_payments.",
            );
        }
        row.numeric(C360::TotalSpend.at(), t.spend, SPEND);
        row.numeric(C360::AvgOrderValue.at(), if counted == 0 { 0 } else { rounded_ratio(t.spend, counted, 0) }, SPEND);
        row.numeric(C360::MaxSingleOrder.at(), t.max_order, SPEND);
        row.date(C360::FirstOrderDate.at(), t.first.map(date_of));
        row.date(C360::LastOrderDate.at(), t.last.map(date_of));
        row.int4(C360::TotalItems.at(), t.items as i32);
        row.int4(C360::UniqueProducts.at(), t.unique_products as i32);
        row.opt_text(C360::FavoriteCategory.at(), t.favorite.map(|c| silver.categories.get(c)));
        row.numeric(C360::ProductDiversity.at(), if counted == 0 { 0 } else { rounded_ratio(i64::from(t.categories), counted, 4) }, DIVERSITY);
        match t.reviews {
            0 => row.null(C360::AvgReviewScore.at()),
            n => row.numeric(C360::AvgReviewScore.at(), rounded_ratio(t.review_sum, i64::from(n), 2), SCORE),
        }
        row.int4(C360::TotalReviews.at(), t.reviews as i32);
        row.text(C360::LtvSegment.at(), crate::ops::ltv_segment(t.spend as f64 / 100.0).as_bytes());
        match r.rfm {
            Some(scores) => {
                for (column, score) in [C360::RecencyScore, C360::FrequencyScore, C360::MonetaryScore].iter().zip(scores) {
                    row.int2(column.at(), score);
                }
                row.text(C360::RfmSegment.at(), self.segments.segment(scores).as_bytes());
            }
            None => [C360::RecencyScore, C360::FrequencyScore, C360::MonetaryScore, C360::RfmSegment]
                .iter()
                .for_each(|c| row.null(c.at())),
        }
        row.opt_text(C360::GeographicState.at(), address.state.map(|s| silver.places.get(s)));
        row.opt_text(C360::GeographicCity.at(), address.city.map(|c| silver.places.get(c)));
        match address.zip {
            Some(zip) => row.int4(C360::GeographicZip.at(), zip),
            None => row.null(C360::GeographicZip.at()),
        }
        match address.zip.and_then(|z| silver.zip_means.get(&z)) {
            Some(&(lat, lng)) => {
                row.float8(C360::Latitude.at(), lat);
                row.float8(C360::Longitude.at(), lng);
            }
            None => [C360::Latitude, C360::Longitude].iter().for_each(|c| row.null(c.at())),
        }
        row.int8(C360::RefreshedAt.at(), self.refreshed_at);
    }
}

/// Every silver customer_id and its person's golden_id, in customer_id
/// byte order (the primary key's).
struct BridgeRows<'a> {
    silver: &'a Silver,
    gold: &'a Gold,
    by_id: Vec<u32>,
    position: Vec<u32>,
}

impl<'a> BridgeRows<'a> {
    fn new(silver: &'a Silver, gold: &'a Gold) -> BridgeRows<'a> {
        let mut by_id: Vec<u32> = (0..silver.customer.len() as u32).collect();
        by_id.sort_unstable_by(|&a, &b| silver.customers.get(a).cmp(silver.customers.get(b)));
        let mut position = vec![0u32; by_id.len()];
        for (i, &c) in by_id.iter().enumerate() {
            position[c as usize] = i as u32;
        }
        BridgeRows { silver, gold, by_id, position }
    }
}

impl TargetRows for BridgeRows<'_> {
    const TABLE: &'static str = "identity_bridge";
    const COLUMNS: &'static [Column] = &BRIDGE_COLUMNS;
    const KEY: usize = Bridge::CustomerId.at();
    const PERSON: usize = Bridge::CustomerUniqueId.at();
    const STAMP: Option<usize> = None;

    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn find(&self, customer_id: &[u8]) -> Option<usize> {
        self.silver.customers.find(customer_id).map(|c| self.position[c as usize] as usize)
    }

    fn fill(&self, i: usize, row: &mut RowBuf) {
        let c = self.by_id[i];
        let person = self.silver.customer[c as usize].person;
        let record = &self.gold.records[self.gold.record_of[person as usize] as usize];
        row.text(Bridge::CustomerId.at(), self.silver.customers.get(c));
        row.text(Bridge::CustomerUniqueId.at(), self.silver.people.get(person));
        row.text(Bridge::GoldenId.at(), &hex_digits(&record.golden_id));
    }
}

/// Which of `ids` silver.customers holds, as key hashes.
fn customer_ids_in_silver(ids: Vec<Key>) -> HashSet<u128, KeyHashState> {
    let mut scan = Selection::keys("silver", "customers", "customer_id", ids, SHARE);
    let id = scan.attr("customer_id", Text);
    let mut found = HashSet::default();
    scan.for_each(|row| {
        found.insert(key_hash(row.text(id)));
    });
    scan.close();
    found
}

/// What bringing one table to its target rows did.
struct Synced {
    written: i64,
    removed: i64,
    /// Written rows whose key the table did not hold.
    added: i64,
}

/// Make gold.<table> hold exactly `target`'s rows: a row equal to its
/// target (all columns but the stamp) stays as it is; a changed row is
/// deleted and its new version inserted; rows whose key is gone are
/// deleted. Deletes come first, so unique keys are free for the inserts.
/// In a pass of several (`target` holds that pass's people only), the
/// stored rows of other passes' people are left to their pass.
fn sync<T: TargetRows>(target: &T, stored: Stored, pass: Pass) -> Synced {
    let started = Instant::now();
    let mut scan = match stored {
        Stored::All => Selection::all("gold", T::TABLE, Lock::Write),
        Stored::Keys(keys) => Selection::keys("gold", T::TABLE, T::COLUMNS[T::KEY].name, keys, Lock::Write),
        Stored::EarlierPassesOnly => return insert_all(target, started),
    };
    scan.expect_columns(T::COLUMNS);
    scan.require_privilege(Privilege::Delete);
    let storage = scan.storage();
    let mut row_cx = RowContext::new("golden360 gold row");
    let mut buf = RowBuf::new(T::COLUMNS.len());
    let mut kept = vec![false; target.len()];
    let mut doomed: Vec<Tid> = Vec::new();
    let (mut removed, mut rewritten) = (0, 0);
    let mut unplaced: Vec<(Tid, Vec<u8>)> = Vec::new();
    scan.for_each(|row| {
        match target.find(row.text(T::KEY)) {
            Some(i) if !kept[i] => {
                let same = row_cx.scoped(|| {
                    buf.build(|b| target.fill(i, b));
                    row.holds(&buf, &storage, T::STAMP)
                });
                if same {
                    kept[i] = true;
                } else {
                    doomed.push(row.tid);
                    rewritten += 1;
                }
            }
            Some(_) => doomed.push(row.tid),
            None if !pass.holds_key(row.text(T::PERSON)) => {}
            // Its key (a customer_id) may have moved to a person of a later
            // pass, which will rewrite the row: see below.
            None if pass.count > 1 && T::KEY != T::PERSON => unplaced.push((row.tid, row.text(T::KEY).to_vec())),
            None => {
                doomed.push(row.tid);
                removed += 1;
            }
        }
    });
    if !unplaced.is_empty() {
        let still_customers = customer_ids_in_silver(unplaced.iter().map(|(_, id)| Key::Text(id.clone())).collect());
        for (tid, id) in unplaced {
            if !still_customers.contains(&key_hash(&id)) {
                doomed.push(tid);
                removed += 1;
            }
        }
    }
    delete_rows(&scan, &mut doomed);
    scan.close();

    let written = insert(target, |i| !kept[i], started);
    Synced { written, removed, added: written - rewritten }
}

/// A sync of a table that holds none of the target's people's rows: every
/// target row inserted.
fn insert_all<T: TargetRows>(target: &T, started: Instant) -> Synced {
    let written = insert(target, |_| true, started);
    Synced { written, removed: 0, added: written }
}

/// Insert the target rows `wanted`; `started` is when the sync began (for
/// its timings).
fn insert<T: TargetRows>(target: &T, wanted: impl Fn(usize) -> bool, started: Instant) -> i64 {
    let compared = Instant::now();
    let mut row_cx = RowContext::new("golden360 gold row");
    let mut buf = RowBuf::new(T::COLUMNS.len());
    let mut insert = BulkInsert::open_declared("gold", T::TABLE, T::COLUMNS).sorted_index_inserts();
    for i in (0..target.len()).filter(|&i| wanted(i)) {
        // The push copies the row's datums out of the row context.
        row_cx.scoped(|| {
            buf.build(|b| target.fill(i, b));
            insert.push_row(&mut buf);
        });
    }
    let heap_written = Instant::now();
    let written = insert.finish();
    pgrx::debug1!(
        "golden360 gold.{}: compared and deleted {:.0} ms, heap {:.0} ms, indexes {:.0} ms",
        T::TABLE,
        (compared - started).as_secs_f64() * 1e3,
        (heap_written - compared).as_secs_f64() * 1e3,
        heap_written.elapsed().as_secs_f64() * 1e3
    );
    written
}

/// Whether gold.`table` holds no row.
fn is_empty(table: &str) -> bool {
    let mut scan = HeapScan::open("gold", table, SHARE);
    let empty = scan.is_empty();
    scan.close();
    empty
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_ids_decode_to_their_digest_and_nothing_else_does() {
        let digest: [u8; 32] = std::array::from_fn(|i| (i * 37 + 5) as u8);
        let text = hex_digits(&digest);
        assert_eq!(digest_of_hex(&text), Some(digest));
        assert_eq!(digest_of_hex(text.to_ascii_uppercase().as_slice()), Some(digest));
        assert_eq!(digest_of_hex(&text[..62]), None);
        for bad in [b'g', b' ', b'/', b':', b'@', b'G', 0xC3] {
            let mut wrong = text;
            wrong[17] = bad;
            assert_eq!(digest_of_hex(&wrong), None, "{bad}");
        }
    }

}
