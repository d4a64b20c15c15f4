//! Who an incremental gold refresh recomputes: the people that the silver
//! rows changed since the last refresh lead to. Silver logs each changed
//! row's `gold_link` value (and, for a replaced row, the old one) in
//! `golden360_internal.silver_changes`; this follows the links up to
//! customer_unique_ids:
//!
//! - customers: the person itself (before and after a move);
//! - orders: their customer's person (both customers of a moved order);
//! - items, payments, reviews: their order's;
//! - products: every order with an item of it;
//! - geolocation: every customer of the zip.

use crate::pg::scan::{Key, Lock, Selection};
use crate::pg::types::SqlType::{BigInt, Integer, Text};
use std::collections::BTreeSet;

const SHARE: Lock = Lock::Read;

/// What silver's change log asks of gold.
pub struct Pending {
    /// The newest silver run logged (0 for none): a refresh consumes the
    /// log up to it.
    pub up_to_run: i64,
    /// A full silver rebuild since the last gold refresh: recompute everyone.
    pub everyone: bool,
    pub people: Vec<Vec<u8>>,
    /// The zips whose geolocation points changed.
    pub zips: Vec<i32>,
}

type Ids = BTreeSet<Vec<u8>>;

fn keys(ids: &Ids) -> Vec<Key> {
    ids.iter().map(|id| Key::Text(id.clone())).collect()
}

/// Read `column` of the rows of silver.`table` whose `by` is one of `keys`.
fn follow(table: &str, by: &str, keys: Vec<Key>, column: &str, into: &mut Ids) {
    if keys.is_empty() {
        return;
    }
    let mut scan = Selection::keys("silver", table, by, keys, SHARE);
    let at = scan.attr(column, Text);
    scan.for_each(|row| {
        into.insert(row.text(at).to_vec());
    });
    scan.close();
}

pub fn pending() -> Pending {
    let mut scan = Selection::all("golden360_internal", "silver_changes", SHARE);
    let [run, table, link] = [("run_id", BigInt), ("table_name", Text), ("link", Text)].map(|(c, ty)| scan.attr(c, ty));
    let mut pending = Pending { up_to_run: 0, everyone: false, people: Vec::new(), zips: Vec::new() };
    let (mut people, mut customers, mut orders, mut products) = (Ids::new(), Ids::new(), Ids::new(), Ids::new());
    let mut zips: BTreeSet<i32> = BTreeSet::new();
    scan.for_each(|row| {
        pending.up_to_run = pending.up_to_run.max(row.int8(run).unwrap_or(0));
        let link = row.text(link).to_vec();
        match row.text(table) {
            b"*" => pending.everyone = true,
            b"customers" => drop(people.insert(link)),
            b"orders" => drop(customers.insert(link)),
            b"order_items" | b"order_payments" | b"order_reviews" => drop(orders.insert(link)),
            b"products" => drop(products.insert(link)),
            b"geolocation" => zips.extend(std::str::from_utf8(&link).ok().and_then(|z| z.parse::<i32>().ok())),
            _ => {}
        }
    });
    scan.close();
    if pending.everyone {
        return pending;
    }
    follow("order_items", "product_id", keys(&products), "order_id", &mut orders);
    follow("orders", "order_id", keys(&orders), "customer_id", &mut customers);
    pending.zips = zips.iter().copied().collect();
    if !zips.is_empty() {
        let mut scan = Selection::keys("silver", "customers", "customer_zip", zips.into_iter().map(Key::Int4).collect(), SHARE);
        let (zip_person, _) = (scan.attr("customer_unique_id", Text), scan.attr("customer_zip", Integer));
        scan.for_each(|row| {
            people.insert(row.text(zip_person).to_vec());
        });
        scan.close();
    }
    follow("customers", "customer_id", keys(&customers), "customer_unique_id", &mut people);
    pending.people = people.into_iter().collect();
    pending
}
