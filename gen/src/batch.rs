//! Follow-up batches: what a later export adds to the base export of the
//! same seed and scale. Batch k is a pure function of (seed, scale, k), so
//! a sequence of batches can be replayed anywhere.
//!
//! Every batch holds about 1% new orders (by existing and new people, with
//! their items, payments and reviews, a few dated before the person's first
//! purchase) and, per kind, about 0.05% changed rows: status updates,
//! corrected payments, replacing reviews, address corrections, late orders
//! of earlier orphan items and payments, and an invalid newer version of a
//! valid order and of a valid payment. Every third batch also changes
//! product categories and a translation; every second one adds geolocation
//! points, half of them exact copies of existing ones.

use super::*;

/// Batches are numbered 1..=MAX_BATCH.
pub const MAX_BATCH: u64 = 1000;

/// Whether batch `k` changes `table`.
pub fn changes(table: &str, k: u64) -> bool {
    match table {
        "customers" | "orders" | "order_items" | "order_payments" | "order_reviews" => true,
        "products" | "category_translation" => k % 3 == 0,
        "geolocation" => k % 2 == 0,
        _ => false,
    }
}

/// The sizes of batch `k`.
struct Plan {
    k: u64,
    /// Customers (and orders) of the base export.
    base: u64,
    /// New customers, each with one new order.
    new: u64,
    /// Index of the batch's first new customer.
    first: u64,
    /// Rows per kind of change.
    per_kind: u64,
}

impl Plan {
    fn new(sizes: &Sizes, k: u64) -> Plan {
        let new = (sizes.customers / 100).max(4);
        Plan { k, base: sizes.customers, new, first: sizes.customers + (k - 1) * new, per_kind: (sizes.customers / 2000).max(2) }
    }

    /// The batch's own draws for one table.
    fn rng(&self, seed: u64, table: u64) -> Rng {
        Rng::stream(seed, kind::BATCH, self.k * 16 + table)
    }

    /// New customer `j`: its index, person, and whether the person already
    /// bought before (then some orders predate their first purchase).
    fn new_customer(&self, seed: u64, j: u64) -> (u64, u64, bool) {
        let index = self.first + j;
        let mut r = Rng::stream(seed, kind::BATCH ^ 0x100, index);
        if r.chance(0.4) {
            let person = customer(seed, r.below(self.base)).person;
            (index, person, r.chance(0.01))
        } else {
            (index, customer(seed, index).person, false)
        }
    }

    /// New customer `j`'s order; an early one is moved before every
    /// purchase of the base and of earlier batches.
    fn new_order(&self, seed: u64, sizes: &Sizes, j: u64) -> (u64, Order, bool) {
        let (index, _, early) = self.new_customer(seed, j);
        let mut o = order(seed, sizes, index);
        o.exists = true;
        if early {
            let shift = FIRST_PURCHASE - (self.k * 40 + j % 20) as i64 * DAY - o.purchase;
            o.purchase += shift;
            o.approved = o.approved.map(|t| t + shift);
            o.carrier = o.carrier.map(|t| t + shift);
            o.delivered = o.delivered.map(|t| t + shift);
            o.estimated += shift;
        }
        (index, o, early)
    }
}

/// Order ids that base items and payments reference but no base order has.
fn orphan_order_ids(seed: u64, sizes: &Sizes) -> Vec<String> {
    let mut scratch = Counts::new();
    let mut ids = Vec::new();
    for i in 0..sizes.customers {
        let o = order(seed, sizes, i);
        if !o.exists {
            continue;
        }
        let own = hex_id(seed, kind::ORDER, i);
        let records = item_records(seed, i, &o, &mut scratch).into_iter().chain(payment_records(seed, i, &o, &mut scratch));
        ids.extend(records.map(|mut r| std::mem::take(&mut r[0])).filter(|id| *id != own));
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The next base order at or after `from` (cyclically) that `accept`s.
fn next_order(seed: u64, sizes: &Sizes, from: u64, accept: impl Fn(&Order) -> bool) -> Option<(u64, Order)> {
    (0..sizes.customers).map(|d| (from + d) % sizes.customers).find_map(|i| {
        let o = order(seed, sizes, i);
        (o.exists && accept(&o)).then_some((i, o))
    })
}

/// Write batch `k`'s rows of `table`, counting each kind of change.
pub fn write(w: &mut Csv, table: &str, seed: u64, sizes: &Sizes, k: u64, changes: &mut Counts) -> std::io::Result<u64> {
    let plan = Plan::new(sizes, k);
    let mut rows = 0u64;
    let mut put = |w: &mut Csv, record: &[String], changes: &mut Counts, what: &'static str| {
        note(changes, what);
        rows += 1;
        w.write_record(record)
    };
    let mut dirt = Counts::new(); // new rows carry the base's dirt rates; not reported
    match table {
        "customers" => {
            for j in 0..plan.new {
                let (index, person, _) = plan.new_customer(seed, j);
                let mut r = Rng::stream(seed, kind::BATCH ^ 0x200, index);
                let c = customer(seed, index);
                let (city, state, ..) = CITIES[c.city];
                let what = if person < plan.base { "new_customer_of_existing_person" } else { "new_customer_of_new_person" };
                let record = [
                    hex_id(seed, kind::CUSTOMER, index),
                    hex_id(seed, kind::PERSON, person),
                    zip_text(&mut r, c.zip),
                    city.to_string(),
                    state.to_string(),
                ];
                put(w, &record, changes, what)?;
            }
            let mut r = plan.rng(seed, 1);
            for _ in 0..plan.per_kind {
                let i = r.below(plan.base);
                let (mut record, _) = customer_record(seed, i, &mut dirt);
                if record[1].is_empty() {
                    continue;
                }
                let (city, state, _, _, zip0) = CITIES[r.below(CITIES.len() as u64) as usize];
                record[2] = (zip0 + r.below(900) as u32).to_string();
                record[3] = city.to_string();
                record[4] = state.to_string();
                put(w, &record, changes, "address_correction")?;
            }
        }
        "orders" => {
            for j in 0..plan.new {
                let (index, o, early) = plan.new_order(seed, sizes, j);
                let record = clean_order_record(hex_id(seed, kind::ORDER, index), hex_id(seed, kind::CUSTOMER, index), o.status, &o);
                put(w, &record, changes, if early { "new_order_before_first_purchase" } else { "new_order" })?;
            }
            let mut r = plan.rng(seed, 2);
            let mut from = r.below(plan.base);
            for _ in 0..2 * plan.per_kind {
                let Some((i, mut o)) = next_order(seed, sizes, from, |o| o.status == "shipped") else { break };
                from = i + 1;
                o.delivered = o.carrier.map(|t| t + 3 * DAY);
                let record = clean_order_record(hex_id(seed, kind::ORDER, i), hex_id(seed, kind::CUSTOMER, i), "delivered", &o);
                put(w, &record, changes, "status_update")?;
            }
            if let Some((i, o)) = next_order(seed, sizes, r.below(plan.base), |o| o.status == "delivered") {
                let record = clean_order_record(hex_id(seed, kind::ORDER, i), hex_id(seed, kind::CUSTOMER, i), "lost", &o);
                put(w, &record, changes, "invalid_newer_order")?;
            }
            let orphans = orphan_order_ids(seed, sizes);
            let m = (plan.per_kind / 5).max(1) as usize;
            for id in orphans.iter().skip((k as usize - 1) * m).take(m) {
                let c = r.below(plan.base);
                let o = order(seed, sizes, c);
                let record = clean_order_record(id.clone(), hex_id(seed, kind::CUSTOMER, c), "delivered", &o);
                put(w, &record, changes, "late_order_of_orphans")?;
            }
        }
        "order_items" => {
            for j in 0..plan.new {
                let (index, o, _) = plan.new_order(seed, sizes, j);
                for record in item_records(seed, index, &o, &mut dirt) {
                    put(w, &record, changes, "new_item")?;
                }
            }
        }
        "order_payments" => {
            for j in 0..plan.new {
                let (index, o, _) = plan.new_order(seed, sizes, j);
                for record in payment_records(seed, index, &o, &mut dirt) {
                    put(w, &record, changes, "new_payment")?;
                }
            }
            let mut r = plan.rng(seed, 3);
            for _ in 0..plan.per_kind {
                let Some((i, _)) = next_order(seed, sizes, r.below(plan.base), |_| true) else { break };
                let cents = r.range(1_000, 50_000);
                let record = [hex_id(seed, kind::ORDER, i), "1".into(), "credit_card".into(), "1".into(), money_text(&mut r, cents)];
                put(w, &record, changes, "corrected_payment")?;
            }
            if let Some((i, _)) = next_order(seed, sizes, r.below(plan.base), |_| true) {
                let record = [hex_id(seed, kind::ORDER, i), "1".into(), "boleto".into(), "1".into(), "-5.00".into()];
                put(w, &record, changes, "invalid_newer_payment")?;
            }
        }
        "order_reviews" => {
            for j in 0..plan.new {
                let (index, o, _) = plan.new_order(seed, sizes, j);
                for record in review_records(seed, index, &o, false, &mut dirt) {
                    put(w, &record, changes, "new_review")?;
                }
            }
            let mut r = plan.rng(seed, 4);
            for n in 0..plan.per_kind {
                let Some((i, _)) = next_order(seed, sizes, r.below(plan.base), |_| true) else { break };
                // Answered after every base review and every earlier batch's.
                let created = LAST_PURCHASE + (60 + k) as i64 * DAY;
                let record = [
                    hex_id(seed, kind::BATCH ^ 0x300, k * plan.per_kind + n),
                    hex_id(seed, kind::ORDER, i),
                    review_score(&mut r),
                    r.pick(REVIEW_TITLES).to_string(),
                    r.pick(REVIEW_MESSAGES).to_string(),
                    timestamp(created),
                    timestamp(created + 3_600 * (1 + (n % 5) as i64)),
                ];
                put(w, &record, changes, "replacing_review")?;
            }
        }
        "products" => {
            let mut r = plan.rng(seed, 5);
            for _ in 0..5 {
                let mut record = product_record(seed, r.below(sizes.products));
                let others: Vec<&str> = CATEGORIES.iter().map(|c| c.0).filter(|c| *c != record[1]).collect();
                record[1] = r.pick(&others).to_string();
                put(w, &record, changes, "product_category_change")?;
            }
        }
        "category_translation" => {
            let (pt, en) = CATEGORIES[((k / 3) % CATEGORIES.len() as u64) as usize];
            let english = if en.is_empty() { format!("{pt}_en") } else { format!("{en}_v{k}") };
            put(w, &[pt.to_string(), english], changes, "translation_change")?;
        }
        "geolocation" => {
            let mut r = plan.rng(seed, 6);
            let points = (sizes.geolocation / 1000).max(10);
            // Exact copies of base rows: replay the base file up to them.
            let mut wanted: Vec<u64> = (0..points / 2).map(|_| r.below(sizes.geolocation)).collect();
            wanted.sort_unstable();
            let mut previous: Option<Record> = None;
            let mut next = wanted.iter().peekable();
            for i in 0..sizes.geolocation {
                let Some(&&want) = next.peek() else { break };
                let current = match geo_record(seed, i, previous.is_some()) {
                    None => previous.clone(),
                    Some((record, outside)) => {
                        previous = (!outside).then(|| record.clone());
                        (!outside).then_some(record)
                    }
                };
                while next.peek().is_some_and(|&&w| w == i) {
                    next.next();
                    if let Some(record) = &current {
                        put(w, record, changes, "geolocation_exact_copy")?;
                    }
                }
                debug_assert!(want >= i);
            }
            for _ in 0..points - points / 2 {
                let c = customer(seed, r.below(plan.base));
                let (city, state, lat, lng, _) = CITIES[c.city];
                let record = [
                    format!("{:05}", c.zip),
                    (lat + (r.unit() - 0.5) * 0.2).to_string(),
                    (lng + (r.unit() - 0.5) * 0.2).to_string(),
                    city.trim().to_string(),
                    state.to_uppercase(),
                ];
                put(w, &record, changes, "geolocation_new_point")?;
            }
        }
        _ => {}
    }
    Ok(rows)
}
