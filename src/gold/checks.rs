//! The SPEC's gold cross-checks, computed after the rows are written from
//! what silver and gold then hold: their own scans and plain counting,
//! sharing no state with the build (only the scan helper and the rule for
//! counted orders), so a slip in the build's per-person arithmetic
//! cannot vouch for itself.

use super::build::is_counted;
use crate::keys::{key_hash, KeyHashState};
use crate::pg::scan::{Key, Selection};
use crate::pg::types::SqlType::{Integer, Text};
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

/// The rows of `table` to check: all, or those whose `column` is one of `keys`.
fn rows(schema: &str, table: &str, column: &str, keys: Option<Vec<Key>>) -> Selection {
    match keys {
        None => Selection::all(schema, table, pg_sys::AccessShareLock),
        Some(keys) => Selection::keys(schema, table, column, keys, pg_sys::AccessShareLock),
    }
}

/// Every cross-check, in a fixed order: over everyone, or over `people`
/// (the ones an incremental refresh recomputed; their silver rows and
/// their gold and bridge rows).
pub fn run(people: Option<&[Vec<u8>]>) -> Vec<Check> {
    let silver = SilverTotals::read(people);
    let gold = GoldTotals::read(silver.customer_ids as usize, people, &silver.customer_id_list);
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
    /// The customer_ids, when checking some people only.
    customer_id_list: Option<Vec<Key>>,
    counted_orders: i64,
    counted_spend: i64,
}

impl SilverTotals {
    fn read(some: Option<&[Vec<u8>]>) -> SilverTotals {
        let texts = |ids: &[Vec<u8>]| ids.iter().map(|id| Key::Text(id.clone())).collect::<Vec<_>>();
        let mut scan = rows("silver", "customers", "customer_unique_id", some.map(texts));
        let (mut customers, mut people) = (keys(scan.estimated_rows()), keys(scan.estimated_rows()));
        let mut id_list = some.map(|_| Vec::new());
        let [id, person] = ["customer_id", "customer_unique_id"].map(|c| scan.attr(c, Text));
        scan.for_each(|row| {
            customers.insert(key_hash(row.text(id)));
            people.insert(key_hash(row.text(person)));
            if let Some(list) = id_list.as_mut() {
                list.push(row.text(id).to_vec());
            }
        });
        scan.close();

        let mut scan = rows("silver", "orders", "customer_id", id_list.as_deref().map(texts));
        let mut order_list = some.map(|_| Vec::new());
        let mut counted = keys(scan.estimated_rows());
        let [id, customer, status] = ["order_id", "customer_id", "order_status"].map(|c| scan.attr(c, Text));
        scan.for_each(|row| {
            if is_counted(row.text(status)) && customers.contains(&key_hash(row.text(customer))) {
                counted.insert(key_hash(row.text(id)));
                if let Some(list) = order_list.as_mut() {
                    list.push(row.text(id).to_vec());
                }
            }
        });
        scan.close();

        let mut counted_spend = 0;
        let mut scan = rows("silver", "order_payments", "order_id", order_list.as_deref().map(texts));
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
            customer_id_list: id_list.as_deref().map(texts),
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
    fn read(people_at_most: usize, some: Option<&[Vec<u8>]>, customer_ids: &Option<Vec<Key>>) -> GoldTotals {
        let people = some.map(|p| p.iter().map(|id| Key::Text(id.clone())).collect());
        let mut scan = rows("gold", "unified_customer_360", "customer_unique_id", people);
        let n = scan.estimated_rows().max(people_at_most);
        let mut gold = GoldTotals { rows: 0, golden_ids: keys(n), people: keys(n), spend: 0, orders: 0, bridge_rows: 0, bridge_linked: 0 };
        let [golden_id, person, spend, orders] =
            [("golden_id", Text), ("customer_unique_id", Text), ("total_spend", super::spec::SPEND), ("order_count", Integer)]
                .map(|(c, ty)| scan.attr(c, ty));
        scan.for_each(|row| {
            gold.rows += 1;
            gold.golden_ids.insert(key_hash(row.text(golden_id)));
            gold.people.insert(key_hash(row.text(person)));
            gold.spend += row.cents(spend).unwrap_or(0);
            gold.orders += i64::from(row.int4(orders).unwrap_or(0));
        });
        scan.close();

        let mut scan = rows("gold", "identity_bridge", "customer_id", customer_ids.clone());
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
