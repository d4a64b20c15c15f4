//! The SPEC's gold cross-checks, computed after the rows are written from
//! what silver and gold then hold: their own scans and plain counting,
//! sharing no state with the build (only the scan helper and the rule for
//! counted orders), so a slip in the build's per-person arithmetic
//! cannot vouch for itself.

use super::build::is_counted;
use crate::keys::{key_hash, KeyHashState};
use crate::pg::scan::HeapScan;
use crate::pg::types::SqlType::{Integer, Numeric, Text};
use crate::silver::spec::MONEY;
use pgrx::pg_sys;
use std::collections::HashSet;

pub struct Check {
    pub name: &'static str,
    pub passed: i64,
    pub failed: i64,
}

type Keys = HashSet<u128, KeyHashState>;

fn keys(capacity: usize) -> Keys {
    Keys::with_capacity_and_hasher(capacity, KeyHashState::default())
}

/// Every cross-check, in a fixed order.
pub fn run() -> Vec<Check> {
    let silver = SilverTotals::read();
    let gold = GoldTotals::read(silver.customer_ids as usize);
    let counts = |ok: bool| if ok { (1, 0) } else { (0, 1) };
    let checks = [
        ("golden_id_unique", (gold.golden_ids.len() as i64, gold.rows - gold.golden_ids.len() as i64)),
        ("customer_unique_id_unique", (gold.people.len() as i64, gold.rows - gold.people.len() as i64)),
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
struct SilverTotals {
    people: i64,
    customer_ids: i64,
    counted_orders: i64,
    counted_spend: i64,
}

impl SilverTotals {
    fn read() -> SilverTotals {
        let share = pg_sys::AccessShareLock;
        let mut scan = HeapScan::open("silver", "customers", share);
        let (mut customers, mut people) = (keys(scan.estimated_rows()), keys(scan.estimated_rows()));
        let [id, person] = ["customer_id", "customer_unique_id"].map(|c| scan.attr(c, Text));
        scan.for_each(|row| {
            customers.insert(key_hash(row.text(id)));
            people.insert(key_hash(row.text(person)));
        });
        scan.close();

        let mut scan = HeapScan::open("silver", "orders", share);
        let mut counted = keys(scan.estimated_rows());
        let [id, customer, status] = ["order_id", "customer_id", "order_status"].map(|c| scan.attr(c, Text));
        scan.for_each(|row| {
            if is_counted(row.text(status)) && customers.contains(&key_hash(row.text(customer))) {
                counted.insert(key_hash(row.text(id)));
            }
        });
        scan.close();

        let mut counted_spend = 0;
        let mut scan = HeapScan::open("silver", "order_payments", share);
        let [order, value] = [("order_id", Text), ("payment_value", MONEY)].map(|(c, ty)| scan.attr(c, ty));
        scan.for_each(|row| {
            if counted.contains(&key_hash(row.text(order))) {
                counted_spend += row.cents(value).unwrap_or(0);
            }
        });
        scan.close();
        SilverTotals {
            people: people.len() as i64,
            customer_ids: customers.len() as i64,
            counted_orders: counted.len() as i64,
            counted_spend,
        }
    }
}

/// Gold's side, as stored.
struct GoldTotals {
    rows: i64,
    golden_ids: Keys,
    people: Keys,
    spend: i64,
    orders: i64,
    bridge_rows: i64,
    bridge_linked: i64,
}

impl GoldTotals {
    /// `people_at_most`: sizes the key sets when gold has no statistics yet.
    fn read(people_at_most: usize) -> GoldTotals {
        let share = pg_sys::AccessShareLock;
        let mut scan = HeapScan::open("gold", "unified_customer_360", share);
        let n = scan.estimated_rows().max(people_at_most);
        let mut gold = GoldTotals { rows: 0, golden_ids: keys(n), people: keys(n), spend: 0, orders: 0, bridge_rows: 0, bridge_linked: 0 };
        let [golden_id, person, spend, orders] =
            [("golden_id", Text), ("customer_unique_id", Text), ("total_spend", Numeric(12, 2)), ("order_count", Integer)]
                .map(|(c, ty)| scan.attr(c, ty));
        scan.for_each(|row| {
            gold.rows += 1;
            gold.golden_ids.insert(key_hash(row.text(golden_id)));
            gold.people.insert(key_hash(row.text(person)));
            gold.spend += row.cents(spend).unwrap_or(0);
            gold.orders += i64::from(row.int4(orders).unwrap_or(0));
        });
        scan.close();

        let mut scan = HeapScan::open("gold", "identity_bridge", share);
        let golden_id = scan.attr("golden_id", Text);
        scan.for_each(|row| {
            gold.bridge_rows += 1;
            if gold.golden_ids.contains(&key_hash(row.text(golden_id))) {
                gold.bridge_linked += 1;
            }
        });
        scan.close();
        gold
    }
}
