//! The SPEC's gold cross-checks, computed after the rows are written from
//! what silver and gold then hold: their own scans and plain counting,
//! sharing no state with the build (only the scan helper and the rule for
//! counted orders), so a slip in the build's per-person arithmetic
//! cannot vouch for itself.

use super::build::{estimated_customers, is_counted};
use crate::keys::{key_hash, KeyHashState, Pass};
use crate::pg::scan::{Key, Lock, Selection};
use crate::pg::types::SqlType::{Integer, Text};
use crate::silver::spec::MONEY;
use std::collections::HashMap;

pub struct Check {
    pub name: &'static str,
    pub passed: i64,
    pub failed: i64,
}

/// 128-bit key hashes gathered in scan order, then sorted: counting the
/// distinct ones and finding which probes are among them go by sorting and
/// merging, which walk memory in order; a hash set of a million keys (scale
/// 10) missed the CPU's caches at every insert and probe, which made the
/// checks grow 21x for 10x the data.
struct KeySet(Vec<u128>);

impl KeySet {
    fn with_capacity(n: usize) -> KeySet {
        KeySet(Vec::with_capacity(n))
    }

    fn push(&mut self, key: u128) {
        self.0.push(key);
    }

    /// Sorted and deduplicated.
    fn seal(mut self) -> Sealed {
        self.0.sort_unstable();
        self.0.dedup();
        Sealed(self.0)
    }
}

/// Distinct keys, sorted.
struct Sealed(Vec<u128>);

impl Sealed {
    fn len(&self) -> i64 {
        self.0.len() as i64
    }

    /// Call `found` with each probe whose key is one of these (probes are
    /// sorted by key on the way).
    fn each_member<T>(&self, mut probes: Vec<(u128, T)>, mut found: impl FnMut(T)) {
        probes.sort_unstable_by_key(|p| p.0);
        let mut keys = self.0.iter().peekable();
        for (key, value) in probes {
            while keys.next_if(|&&k| k < key).is_some() {}
            if keys.peek() == Some(&&key) {
                found(value);
            }
        }
    }
}

/// What the checks over everyone hold per silver customer in their key
/// sets (five sets of 128-bit hashes), measured: 102 MiB at scale 10 for
/// 993,894 customers.
const CHECK_BYTES_PER_CUSTOMER: u64 = 128;

/// The rows of `table` to check: all, or those whose `column` is one of `keys`.
fn rows(schema: &str, table: &str, column: &str, keys: Option<Vec<Key>>) -> Selection {
    match keys {
        None => Selection::all(schema, table, Lock::Read),
        Some(keys) => Selection::keys(schema, table, column, keys, Lock::Read),
    }
}

/// Every cross-check, in a fixed order: over everyone, or over `people`
/// (the ones an incremental refresh recomputed; their silver rows and
/// their gold and bridge rows).
///
/// Over everyone, the key sets would grow with the data: when they would
/// not fit `maintenance_work_mem`, the checks run in passes by a hash of
/// customer_unique_id (`Pass`, as gold's build), each over its people's
/// silver and gold rows, and the totals are summed. A person's rows are all
/// in one pass, so each check means what it does in one, with two edges: a
/// golden_id shared by people of two passes is not seen (gold's primary
/// key on golden_id rules it out), and a bridge row pointing at another
/// pass's person counts as pointing at no record (it is wrong either way:
/// a customer_id's golden_id is its own person's).
pub fn run(people: Option<&[Vec<u8>]>) -> Vec<Check> {
    let passes = match people {
        Some(_) => 1,
        None => Pass::count_for_bytes((estimated_customers() as u64).saturating_mul(CHECK_BYTES_PER_CUSTOMER)),
    };
    let (mut silver, mut gold) = (SilverTotals::default(), GoldTotals::default());
    for pass in Pass::all(passes) {
        let s = SilverTotals::read(people, pass);
        let g = GoldTotals::read(s.customer_ids as usize, people, &s.customer_id_list, pass);
        silver.add(s);
        gold.add(g);
    }
    let counts = |ok: bool| if ok { (1, 0) } else { (0, 1) };
    let checks = [
        ("golden_id_unique", (gold.golden_ids, gold.rows - gold.golden_ids)),
        ("customer_unique_id_unique", (gold.people, gold.rows - gold.people)),
        ("one_row_per_person", (gold.rows.min(silver.people), (gold.rows - silver.people).abs())),
        ("total_spend_equals_counted_orders", counts(gold.spend == silver.counted_spend)),
        ("order_count_equals_counted_orders", counts(gold.orders == silver.counted_orders)),
        ("bridge_points_at_golden_records", (gold.bridge_linked, gold.bridge_rows - gold.bridge_linked)),
        ("bridge_covers_every_customer_id", (gold.bridge_rows, (silver.customer_ids - gold.bridge_rows).abs())),
    ];
    checks.into_iter().map(|(name, (passed, failed))| Check { name, passed, failed }).collect()
}

/// Silver's side: people, customer_ids, and the counted orders (of a known
/// customer) with the sum of their payments, in cents.
#[derive(Default)]
struct SilverTotals {
    people: i64,
    customer_ids: i64,
    /// The customer_ids, when checking some people only.
    customer_id_list: Option<Vec<Key>>,
    counted_orders: i64,
    counted_spend: i64,
}

impl SilverTotals {
    /// Of `some` people (None: everyone) those in `pass`.
    fn read(some: Option<&[Vec<u8>]>, pass: Pass) -> SilverTotals {
        let texts = |ids: &[Vec<u8>]| ids.iter().map(|id| Key::Text(id.clone())).collect::<Vec<_>>();
        let mut scan = rows("silver", "customers", "customer_unique_id", some.map(texts));
        let (mut customers, mut people) = (KeySet::with_capacity(scan.estimated_rows()), KeySet::with_capacity(scan.estimated_rows()));
        let mut id_list = some.map(|_| Vec::new());
        let [id, person] = ["customer_id", "customer_unique_id"].map(|c| scan.attr(c, Text));
        scan.for_each(|row| {
            if !pass.holds_key(row.text(person)) {
                return;
            }
            customers.push(key_hash(row.text(id)));
            people.push(key_hash(row.text(person)));
            if let Some(list) = id_list.as_mut() {
                list.push(row.text(id).to_vec());
            }
        });
        scan.close();
        let (customers, people) = (customers.seal(), people.seal());

        // Counted orders of a known customer: (customer, order), kept where
        // the customer is one; 32 bytes an order. Checking some people
        // only, their orders' ids are kept too, for reading their payments.
        let mut scan = rows("silver", "orders", "customer_id", id_list.as_deref().map(texts));
        let mut candidates = Vec::with_capacity(scan.estimated_rows());
        let mut ids_of_some: HashMap<u128, Vec<u8>, KeyHashState> = HashMap::default();
        let [id, customer, status] = ["order_id", "customer_id", "order_status"].map(|c| scan.attr(c, Text));
        scan.for_each(|row| {
            if is_counted(row.text(status)) {
                candidates.push((key_hash(row.text(customer)), key_hash(row.text(id))));
                if some.is_some() {
                    ids_of_some.insert(key_hash(row.text(id)), row.text(id).to_vec());
                }
            }
        });
        scan.close();
        let mut counted = KeySet::with_capacity(candidates.len());
        customers.each_member(candidates, |order| counted.push(order));
        let counted = counted.seal();
        let order_list = some.map(|_| counted.0.iter().filter_map(|order| ids_of_some.remove(order)).collect::<Vec<_>>());

        let mut counted_spend = 0;
        let mut scan = rows("silver", "order_payments", "order_id", order_list.as_deref().map(texts));
        let mut payments = Vec::with_capacity(scan.estimated_rows());
        let [order, value] = [("order_id", Text), ("payment_value", MONEY)].map(|(c, ty)| scan.attr(c, ty));
        scan.for_each(|row| payments.push((key_hash(row.text(order)), row.cents(value).unwrap_or(0))));
        scan.close();
        counted.each_member(payments, |cents| counted_spend += cents);
        SilverTotals {
            people: people.len(),
            customer_ids: customers.len(),
            counted_orders: counted.len(),
            counted_spend,
            customer_id_list: id_list.as_deref().map(texts),
        }
    }

    fn add(&mut self, pass: SilverTotals) {
        self.people += pass.people;
        self.customer_ids += pass.customer_ids;
        self.counted_orders += pass.counted_orders;
        self.counted_spend += pass.counted_spend;
        // Listed only for some people, who are checked in one pass.
        self.customer_id_list = pass.customer_id_list;
    }
}

/// Gold's side, as stored: its rows, their distinct golden_ids and
/// people, spend and orders; the bridge's rows and those whose golden_id
/// is one of those rows' (in a pass: of that pass's people).
#[derive(Default)]
struct GoldTotals {
    rows: i64,
    golden_ids: i64,
    people: i64,
    spend: i64,
    orders: i64,
    bridge_rows: i64,
    bridge_linked: i64,
}

impl GoldTotals {
    /// `people_at_most`: sizes the key sets when gold has no statistics yet.
    fn read(people_at_most: usize, some: Option<&[Vec<u8>]>, customer_ids: &Option<Vec<Key>>, pass: Pass) -> GoldTotals {
        let people = some.map(|p| p.iter().map(|id| Key::Text(id.clone())).collect());
        let mut scan = rows("gold", "unified_customer_360", "customer_unique_id", people);
        let n = (scan.estimated_rows() / pass.count as usize).max(people_at_most);
        let mut gold = GoldTotals::default();
        let (mut golden_ids, mut persons) = (KeySet::with_capacity(n), KeySet::with_capacity(n));
        let [golden_id, person, spend, orders] =
            [("golden_id", Text), ("customer_unique_id", Text), ("total_spend", super::spec::SPEND), ("order_count", Integer)]
                .map(|(c, ty)| scan.attr(c, ty));
        scan.for_each(|row| {
            if !pass.holds_key(row.text(person)) {
                return;
            }
            gold.rows += 1;
            golden_ids.push(key_hash(row.text(golden_id)));
            persons.push(key_hash(row.text(person)));
            gold.spend += row.cents(spend).unwrap_or(0);
            gold.orders += i64::from(row.int4(orders).unwrap_or(0));
        });
        scan.close();
        let (golden_ids, persons) = (golden_ids.seal(), persons.seal());

        let mut scan = rows("gold", "identity_bridge", "customer_id", customer_ids.clone());
        let mut pointed_at = Vec::with_capacity(n);
        let [golden_id, person] = ["golden_id", "customer_unique_id"].map(|c| scan.attr(c, Text));
        scan.for_each(|row| {
            if !pass.holds_key(row.text(person)) {
                return;
            }
            gold.bridge_rows += 1;
            pointed_at.push((key_hash(row.text(golden_id)), ()));
        });
        scan.close();
        golden_ids.each_member(pointed_at, |()| gold.bridge_linked += 1);
        gold.golden_ids = golden_ids.len();
        gold.people = persons.len();
        gold
    }

    fn add(&mut self, pass: GoldTotals) {
        self.rows += pass.rows;
        self.golden_ids += pass.golden_ids;
        self.people += pass.people;
        self.spend += pass.spend;
        self.orders += pass.orders;
        self.bridge_rows += pass.bridge_rows;
        self.bridge_linked += pass.bridge_linked;
    }
}
