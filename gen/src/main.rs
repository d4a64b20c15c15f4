//! olist-gen: writes the nine Olist CSV files, Olist-shaped and deterministic,
//! with documented dirt so that silver has real work to do.
//!
//!     olist-gen --out DIR [--scale 1] [--seed 360] [--type-dirt]
//!     olist-gen --list-files   (file, table and header columns, tab-separated,
//!                               for scripts that load the files themselves)
//!
//! Every entity (customer, order, product, ...) draws from its own random
//! stream seeded by (seed, kind, index). A file is written in one pass over
//! indexes, and a fact another file needs (an order's items, to sum its
//! payments) is recomputed from the same stream, so memory does not grow with
//! `--scale`. Besides the nine files it writes `_generator.json`: the row
//! count of each file and how many rows of each kind of dirt went in, so tests
//! can check the pipeline against exact expectations.

use olist_model as olist;
use olist_model::calendar::{civil_from_days, SECS_PER_DAY};

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Olist's own sizes; `--scale 1` reproduces them.
mod size {
    pub const CUSTOMERS: f64 = 99_441.0;
    pub const PRODUCTS: f64 = 32_951.0;
    pub const SELLERS: f64 = 3_095.0;
    pub const GEOLOCATION: f64 = 1_000_163.0;
}

/// Dirt rates, each a probability per row of the file named. The README's
/// table of dirt is this list.
mod dirt {
    /// A customer row written twice (exact duplicate).
    pub const CUSTOMER_DUPLICATE: f64 = 0.003;
    /// A customer row with an empty customer_unique_id.
    pub const CUSTOMER_EMPTY_UNIQUE_ID: f64 = 0.0005;
    /// A customer with no order at all.
    pub const CUSTOMER_WITHOUT_ORDER: f64 = 0.005;
    /// An order status outside the eight known ones.
    pub const ORDER_UNKNOWN_STATUS: f64 = 0.002;
    /// A delivered order without delivered_customer_date.
    pub const ORDER_DELIVERED_WITHOUT_DATE: f64 = 0.002;
    /// An order delivered before it was purchased.
    pub const ORDER_DELIVERY_BEFORE_PURCHASE: f64 = 0.001;
    /// An order row written again later in the file with a newer status.
    pub const ORDER_DUPLICATE: f64 = 0.003;
    /// An order row with an empty order_id.
    pub const ORDER_EMPTY_ID: f64 = 0.0005;
    /// An item with price 0 or negative.
    pub const ITEM_NON_POSITIVE_PRICE: f64 = 0.001;
    /// An item of an order that does not exist (orphan).
    pub const ITEM_ORPHAN: f64 = 0.002;
    /// A payment with value 0 or negative.
    pub const PAYMENT_NON_POSITIVE: f64 = 0.001;
    /// A payment of an order that does not exist (orphan).
    pub const PAYMENT_ORPHAN: f64 = 0.002;
    /// An order with two or three reviews instead of one.
    pub const REVIEW_MULTIPLE: f64 = 0.01;
    /// A review score outside 1..5.
    pub const REVIEW_SCORE_OUT_OF_RANGE: f64 = 0.001;
    /// A review with an empty score.
    pub const REVIEW_SCORE_MISSING: f64 = 0.0005;
    /// A review score that is not a number; only with `--type-dirt`, since
    /// the SPEC's type-compliance threshold is 100%: one such row fails
    /// refresh_silver under quality_gate = error, as it should.
    pub const REVIEW_SCORE_NON_NUMERIC: f64 = 0.0005;
    /// A geolocation row that is an exact copy of the previous one.
    pub const GEO_DUPLICATE: f64 = 0.25;
    /// A geolocation point outside Brazil's box.
    pub const GEO_OUTSIDE_BRAZIL: f64 = 0.005;
}

// ---------------------------------------------------------------- randomness

/// SplitMix64: tiny, fast and stable forever, unlike a library RNG whose
/// algorithm may change between versions (the sample must not).
struct Rng(u64);

impl Rng {
    fn stream(seed: u64, kind: u64, index: u64) -> Rng {
        let mut r = Rng(seed ^ kind.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        r.0 ^= r.next().wrapping_add(index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Stream kinds: one per entity, so adding draws to one never shifts another.
mod kind {
    pub const CUSTOMER: u64 = 1;
    pub const PERSON: u64 = 2;
    pub const ORDER: u64 = 3;
    pub const PRODUCT: u64 = 4;
    pub const SELLER: u64 = 5;
    pub const GEO: u64 = 6;
    pub const ORPHAN: u64 = 7;
    pub const REVIEW: u64 = 8;
    pub const ID: u64 = 9;
    /// Follow-up batches' draws and new ids.
    pub const BATCH: u64 = 10;
}

/// A 32-hex-digit id like Olist's md5 ids, derived from (kind, index).
fn hex_id(seed: u64, kind: u64, index: u64) -> String {
    let mut r = Rng::stream(seed, kind::ID ^ (kind << 8), index);
    format!("{:016x}{:016x}", r.next(), r.next())
}

// ---------------------------------------------------------------- reference data

/// (city as Olist writes it, state, latitude, longitude, first zip prefix).
/// Accents and spacing vary on purpose: silver must normalise them.
const CITIES: &[(&str, &str, f64, f64, u32)] = &[
    ("são paulo", "SP", -23.55, -46.63, 1000),
    ("sao paulo", "SP", -23.55, -46.63, 1000),
    ("rio de janeiro", "RJ", -22.91, -43.17, 20000),
    ("belo horizonte", "MG", -19.92, -43.94, 30000),
    ("brasília", "DF", -15.79, -47.88, 70000),
    ("curitiba", "PR", -25.43, -49.27, 80000),
    ("porto alegre", "RS", -30.03, -51.23, 90000),
    ("salvador", "BA", -12.97, -38.50, 40000),
    ("fortaleza", "CE", -3.73, -38.52, 60000),
    ("recife", "PE", -8.05, -34.90, 50000),
    ("goiânia", "GO", -16.68, -49.25, 74000),
    ("florianópolis", "SC", -27.59, -48.55, 88000),
    ("niterói", "RJ", -22.88, -43.10, 24000),
    ("maceió", "AL", -9.67, -35.74, 57000),
    ("são luís", "MA", -2.53, -44.30, 65000),
    ("vitória", "ES", -20.32, -40.34, 29000),
    ("joão pessoa", "PB", -7.12, -34.86, 58000),
    ("belém", "PA", -1.46, -48.49, 66000),
    ("manaus", "AM", -3.12, -60.02, 69000),
    ("campinas", "SP", -22.91, -47.06, 13000),
    ("ribeirão preto", "SP", -21.18, -47.81, 14000),
    ("  santo  andré ", "sp", -23.66, -46.53, 9000),
    ("Mogi das Cruzes", "SP", -23.52, -46.19, 8700),
];

/// (Portuguese category, English). The last two have no translation row,
/// as in Olist, and must keep their Portuguese name in silver.
const CATEGORIES: &[(&str, &str)] = &[
    ("cama_mesa_banho", "bed_bath_table"),
    ("beleza_saude", "health_beauty"),
    ("esporte_lazer", "sports_leisure"),
    ("moveis_decoracao", "furniture_decor"),
    ("informatica_acessorios", "computers_accessories"),
    ("utilidades_domesticas", "housewares"),
    ("relogios_presentes", "watches_gifts"),
    ("telefonia", "telephony"),
    ("ferramentas_jardim", "garden_tools"),
    ("automotivo", "auto"),
    ("brinquedos", "toys"),
    ("cool_stuff", "cool_stuff"),
    ("perfumaria", "perfumery"),
    ("bebes", "baby"),
    ("eletronicos", "electronics"),
    ("papelaria", "stationery"),
    ("fashion_bolsas_e_acessorios", "fashion_bags_accessories"),
    ("pet_shop", "pet_shop"),
    ("moveis_escritorio", "office_furniture"),
    ("consoles_games", "consoles_games"),
    ("malas_acessorios", "luggage_accessories"),
    ("construcao_ferramentas_construcao", "construction_tools_construction"),
    ("eletrodomesticos", "home_appliances"),
    ("instrumentos_musicais", "musical_instruments"),
    ("eletroportateis", "small_appliances"),
    ("casa_construcao", "home_construction"),
    ("livros_interesse_geral", "books_general_interest"),
    ("alimentos", "food"),
    ("moveis_sala", "furniture_living_room"),
    ("casa_conforto", "home_confort"),
    ("bebidas", "drinks"),
    ("audio", "audio"),
    ("market_place", "market_place"),
    ("climatizacao", "air_conditioning"),
    ("pc_gamer", ""),
    ("portateis_cozinha_e_preparadores_de_alimentos", ""),
];

const STATUSES: &[(&str, f64)] = &[
    ("delivered", 0.970),
    ("shipped", 0.011),
    ("canceled", 0.006),
    ("unavailable", 0.006),
    ("invoiced", 0.003),
    ("processing", 0.003),
    ("created", 0.0005),
    ("approved", 0.0005),
];
const UNKNOWN_STATUSES: &[&str] = &["in_transit", "lost", "returned", "???"];
/// The payment types the generator draws: Olist's, but for not_defined
/// (three rows in the real data).
const PAYMENT_TYPES: &[&str] = {
    let all = olist_model::codes::PAYMENT_TYPES;
    all.split_at(all.len() - 1).0
};

const REVIEW_TITLES: &[&str] = &["", "", "", "Recomendo", "Ótimo", "Péssimo", "Bom", "produto ok"];
const REVIEW_MESSAGES: &[&str] = &[
    "",
    "",
    "",
    "Produto chegou antes do prazo, muito bom!",
    "Recomendo.\nEntrega rápida e produto de qualidade",
    "Não recebi o \"produto\", péssimo atendimento",
    "Comprei dois, chegou um; aguardando o outro,\r\nainda sem resposta",
    "Ótimo custo-benefício",
    "veio com defeito, mas trocaram rápido",
    "    ",
];

// ---------------------------------------------------------------- time

/// Seconds since 1970-01-01 → "YYYY-MM-DD HH:MM:SS" (proleptic Gregorian).
fn timestamp(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}

fn date_only(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02} 00:00:00")
}

/// Olist's purchase window: 2016-09-04 .. 2018-10-17.
const FIRST_PURCHASE: i64 = 1_472_947_200;
const LAST_PURCHASE: i64 = 1_539_734_400;
const DAY: i64 = SECS_PER_DAY;

// ---------------------------------------------------------------- entities

struct Sizes {
    customers: u64,
    products: u64,
    sellers: u64,
    geolocation: u64,
}

impl Sizes {
    fn at(scale: f64) -> Sizes {
        let n = |base: f64, min: u64| ((base * scale).round() as u64).max(min);
        Sizes {
            customers: n(size::CUSTOMERS, 20),
            products: n(size::PRODUCTS, 10),
            sellers: n(size::SELLERS, 3),
            geolocation: n(size::GEOLOCATION, 50),
        }
    }
}

/// One line item of an order, prices in cents.
struct Item {
    product: u64,
    seller: u64,
    price_cents: i64,
    freight_cents: i64,
}

/// Everything the files say about order `index`, recomputed wherever needed.
/// Order `index` belongs to customer `index` (Olist issues a customer_id per
/// order).
struct Order {
    exists: bool,
    status: &'static str,
    purchase: i64,
    approved: Option<i64>,
    carrier: Option<i64>,
    delivered: Option<i64>,
    estimated: i64,
    items: Vec<Item>,
}

fn order(seed: u64, sizes: &Sizes, index: u64) -> Order {
    let mut r = Rng::stream(seed, kind::ORDER, index);
    let exists = !r.chance(dirt::CUSTOMER_WITHOUT_ORDER);
    let mut status = "delivered";
    let mut roll = r.unit();
    for (s, p) in STATUSES {
        if roll < *p {
            status = s;
            break;
        }
        roll -= p;
    }
    let purchase = r.range(FIRST_PURCHASE, LAST_PURCHASE);
    let approved = (status != "created").then(|| purchase + r.range(600, 2 * DAY));
    let shipped = matches!(status, "delivered" | "shipped");
    let carrier = shipped.then(|| purchase + r.range(DAY, 6 * DAY));
    let delivered = (status == "delivered").then(|| purchase + r.range(3 * DAY, 30 * DAY));
    let estimated = (purchase / DAY + r.range(15, 40)) * DAY;
    let n_items = match r.unit() {
        x if x < 0.90 => 1,
        x if x < 0.97 => 2,
        x if x < 0.99 => 3,
        _ => r.range(4, 6) as usize,
    };
    let product = r.below(sizes.products);
    let seller = r.below(sizes.sellers);
    let items = (0..n_items)
        .map(|k| {
            // Repeat purchases of one product are common in Olist: the
            // second item is usually the same product.
            let same = k > 0 && r.chance(0.6);
            Item {
                product: if same { product } else { r.below(sizes.products) },
                seller: if same { seller } else { r.below(sizes.sellers) },
                price_cents: price_cents(&mut r),
                freight_cents: r.range(0, 6_000),
            }
        })
        .collect();
    Order { exists, status, purchase, approved, carrier, delivered, estimated, items }
}

/// A long-tailed price, 0.85 .. ~6,700 BRL: mostly under 200, 1% in the
/// thousands (Olist's shape), so every LTV segment has people.
fn price_cents(r: &mut Rng) -> i64 {
    let u = r.unit();
    let base = (85.0 + 20_000.0 * u * u * u * u) + r.unit() * 1500.0 * u * u * u;
    let tail = if r.chance(0.01) { 50_000.0 + r.unit() * 620_000.0 } else { 0.0 };
    (base + tail) as i64
}

/// Customer `index`: its person (customer_unique_id index) and address.
/// People are contiguous runs of customers; about 3% of people have 2 or 3.
struct Customer {
    person: u64,
    city: usize,
    zip: u32,
}

fn customer(seed: u64, index: u64) -> Customer {
    // A customer "continues" the previous person with a small chance; at
    // most three customers chain. The person index is the chain's first
    // customer, which maps to itself, so no running state is needed.
    let continues = |i: u64| i > 0 && Rng::stream(seed, kind::PERSON, i).chance(0.03);
    let person = if !continues(index) {
        index
    } else if !continues(index - 1) {
        index - 1
    } else if index >= 2 && !continues(index - 2) {
        index - 2
    } else {
        index
    };
    let mut r = Rng::stream(seed, kind::CUSTOMER, index);
    let city = r.below(CITIES.len() as u64) as usize;
    let zip = CITIES[city].4 + r.below(900) as u32;
    Customer { person, city, zip }
}

/// A zip prefix as Olist writes it: sometimes with a leading zero, sometimes not.
fn zip_text(r: &mut Rng, zip: u32) -> String {
    if r.chance(0.5) {
        format!("{zip:05}")
    } else {
        zip.to_string()
    }
}

/// Money as Olist writes it: "58.9", "58.90", "59", occasionally 3 decimals.
fn money_text(r: &mut Rng, cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let (whole, frac) = (cents.abs() / 100, cents.abs() % 100);
    if cents <= 0 {
        // Keep dirt exact: a third decimal could round 0 up to 0.01.
        return format!("{sign}{whole}.{frac:02}");
    }
    match r.below(20) {
        0 => format!("{sign}{whole}.{frac:02}"),
        1 if frac == 0 => format!("{sign}{whole}"),
        2 => format!("{sign}{whole}.{frac:02}{}", r.below(10)),
        _ if frac % 10 == 0 => format!("{sign}{whole}.{}", frac / 10),
        _ => format!("{sign}{whole}.{frac:02}"),
    }
}

// ---------------------------------------------------------------- rows

/// Counts of each kind of dirt (or, in a batch, of each kind of change).
type Counts = BTreeMap<&'static str, u64>;

fn note(counts: &mut Counts, what: &'static str) {
    *counts.entry(what).or_default() += 1;
}

type Record = Vec<String>;

/// Customer `i`'s row, and whether the file repeats it (exact duplicate).
fn customer_record(seed: u64, i: u64, dirt: &mut Counts) -> (Record, bool) {
    let c = customer(seed, i);
    let mut r = Rng::stream(seed, kind::CUSTOMER ^ 0x100, i);
    let unique = if r.chance(dirt::CUSTOMER_EMPTY_UNIQUE_ID) {
        note(dirt, "customer_empty_unique_id");
        String::new()
    } else {
        hex_id(seed, kind::PERSON, c.person)
    };
    let (city, state, ..) = CITIES[c.city];
    let record = vec![hex_id(seed, kind::CUSTOMER, i), unique, zip_text(&mut r, c.zip), city.to_string(), state.to_string()];
    let duplicate = r.chance(dirt::CUSTOMER_DUPLICATE);
    if duplicate {
        note(dirt, "customer_duplicate");
    }
    (record, duplicate)
}

fn ts(t: Option<i64>) -> String {
    t.map(timestamp).unwrap_or_default()
}

/// Order `i`'s row as the base export writes it (None: the customer has no
/// order), and whether the file repeats it at its end.
fn order_record(seed: u64, i: u64, o: &Order, dirt: &mut Counts) -> Option<(Record, bool)> {
    if !o.exists {
        return None;
    }
    let mut r = Rng::stream(seed, kind::ORDER ^ 0x100, i);
    let mut status = o.status.to_string();
    let mut delivered = o.delivered;
    if r.chance(dirt::ORDER_UNKNOWN_STATUS) {
        note(dirt, "order_unknown_status");
        status = r.pick(UNKNOWN_STATUSES).to_string();
    } else if o.status == "delivered" && r.chance(dirt::ORDER_DELIVERED_WITHOUT_DATE) {
        note(dirt, "order_delivered_without_date");
        delivered = None;
    } else if o.status == "delivered" && r.chance(dirt::ORDER_DELIVERY_BEFORE_PURCHASE) {
        note(dirt, "order_delivery_before_purchase");
        delivered = Some(o.purchase - r.range(DAY, 5 * DAY));
    } else if r.chance(0.01) {
        status = format!(" {} ", status.to_uppercase()); // valid after trim + lower
    }
    let order_id = if r.chance(dirt::ORDER_EMPTY_ID) {
        note(dirt, "order_empty_id");
        String::new()
    } else {
        hex_id(seed, kind::ORDER, i)
    };
    // Olist writes purchase-day estimates at midnight; some feeds use 'T'.
    let purchase = if r.chance(0.01) { timestamp(o.purchase).replace(' ', "T") } else { timestamp(o.purchase) };
    let record = vec![
        order_id,
        hex_id(seed, kind::CUSTOMER, i),
        status,
        purchase,
        ts(o.approved),
        ts(o.carrier),
        ts(delivered),
        date_only(o.estimated),
    ];
    let duplicate = r.chance(dirt::ORDER_DUPLICATE) && !record[0].is_empty();
    if duplicate {
        note(dirt, "order_duplicate");
    }
    Some((record, duplicate))
}

/// A clean order row: what a later export says about an order.
fn clean_order_record(order_id: String, customer_id: String, status: &str, o: &Order) -> Record {
    vec![
        order_id,
        customer_id,
        status.to_string(),
        timestamp(o.purchase),
        ts(o.approved),
        ts(o.carrier),
        ts(o.delivered),
        date_only(o.estimated),
    ]
}

fn item_records(seed: u64, i: u64, o: &Order, dirt: &mut Counts) -> Vec<Record> {
    let mut r = Rng::stream(seed, kind::ORDER ^ 0x200, i);
    let mut rows = Vec::with_capacity(o.items.len());
    for (k, item) in o.items.iter().enumerate() {
        let mut price = item.price_cents;
        if r.chance(dirt::ITEM_NON_POSITIVE_PRICE) {
            note(dirt, "item_non_positive_price");
            price = -r.range(0, 1) * price;
        }
        let order_id = if r.chance(dirt::ITEM_ORPHAN) {
            note(dirt, "item_orphan");
            hex_id(seed, kind::ORPHAN, i * 8 + k as u64)
        } else {
            hex_id(seed, kind::ORDER, i)
        };
        rows.push(vec![
            order_id,
            (k + 1).to_string(),
            hex_id(seed, kind::PRODUCT, item.product),
            hex_id(seed, kind::SELLER, item.seller),
            timestamp(o.purchase + 6 * DAY),
            money_text(&mut r, price),
            money_text(&mut r, item.freight_cents),
        ]);
    }
    rows
}

fn payment_records(seed: u64, i: u64, o: &Order, dirt: &mut Counts) -> Vec<Record> {
    let mut r = Rng::stream(seed, kind::ORDER ^ 0x300, i);
    let total: i64 = o.items.iter().map(|it| it.price_cents + it.freight_cents).sum();
    // Mostly one payment; sometimes a voucher covers part of it.
    let mut parts = vec![(*r.pick(PAYMENT_TYPES), total)];
    if r.chance(0.04) && total > 200 {
        let voucher = r.range(100, total - 100);
        parts = vec![("voucher", voucher), ("credit_card", total - voucher)];
    } else if r.chance(0.002) {
        parts[0].0 = "not_defined";
    }
    let mut rows = Vec::with_capacity(parts.len());
    for (seq, (kind_name, mut cents)) in parts.into_iter().enumerate() {
        if r.chance(dirt::PAYMENT_NON_POSITIVE) {
            note(dirt, "payment_non_positive");
            cents = -r.range(0, 1) * cents;
        }
        let order_id = if r.chance(dirt::PAYMENT_ORPHAN) {
            note(dirt, "payment_orphan");
            hex_id(seed, kind::ORPHAN ^ 0x40, i * 8 + seq as u64)
        } else {
            hex_id(seed, kind::ORDER, i)
        };
        let installments = if kind_name == "credit_card" { r.range(1, 10) } else { 1 };
        rows.push(vec![
            order_id,
            (seq + 1).to_string(),
            kind_name.to_string(),
            installments.to_string(),
            money_text(&mut r, cents),
        ]);
    }
    rows
}

fn review_records(seed: u64, i: u64, o: &Order, type_dirt: bool, dirt: &mut Counts) -> Vec<Record> {
    let mut r = Rng::stream(seed, kind::REVIEW, i);
    // Olist has a review for ~99% of orders.
    if !o.exists || r.chance(0.01) {
        return Vec::new();
    }
    let reviews = if r.chance(dirt::REVIEW_MULTIPLE) {
        note(dirt, "review_multiple_per_order");
        r.range(2, 3)
    } else {
        1
    };
    let base = o.delivered.or(o.carrier).unwrap_or(o.purchase) + DAY;
    let mut rows = Vec::new();
    for n in 0..reviews {
        let score = if r.chance(dirt::REVIEW_SCORE_OUT_OF_RANGE) {
            note(dirt, "review_score_out_of_range");
            r.pick(&["0", "6", "-1", "10"]).to_string()
        } else if r.chance(dirt::REVIEW_SCORE_MISSING) {
            note(dirt, "review_score_missing");
            String::new()
        } else if type_dirt && r.chance(dirt::REVIEW_SCORE_NON_NUMERIC) {
            note(dirt, "review_score_non_numeric");
            r.pick(&["cinco", "4.5", "n/a"]).to_string()
        } else {
            review_score(&mut r)
        };
        let created = (base / DAY + n) * DAY;
        let answered = created + r.range(3_600, 5 * DAY);
        rows.push(vec![
            hex_id(seed, kind::REVIEW, i * 4 + n as u64),
            hex_id(seed, kind::ORDER, i),
            score,
            r.pick(REVIEW_TITLES).to_string(),
            r.pick(REVIEW_MESSAGES).to_string(),
            timestamp(created),
            timestamp(answered),
        ]);
    }
    rows
}

/// Olist's skew: mostly 5s and 4s, a heavy tail of 1s.
fn review_score(r: &mut Rng) -> String {
    ["5", "5", "5", "5", "5", "4", "4", "3", "2", "1", "1"][r.below(11) as usize].to_string()
}

fn product_record(seed: u64, i: u64) -> Record {
    let mut r = Rng::stream(seed, kind::PRODUCT, i);
    let maybe = |r: &mut Rng, lo: i64, hi: i64| if r.chance(0.005) { String::new() } else { r.range(lo, hi).to_string() };
    // ~1.9% of Olist products have no category.
    let category = if r.chance(0.019) { String::new() } else { r.pick(CATEGORIES).0.to_string() };
    vec![
        hex_id(seed, kind::PRODUCT, i),
        category,
        maybe(&mut r, 5, 76),
        maybe(&mut r, 4, 3992),
        maybe(&mut r, 1, 20),
        maybe(&mut r, 0, 40_425),
        maybe(&mut r, 7, 105),
        maybe(&mut r, 2, 105),
        maybe(&mut r, 6, 118),
    ]
}

fn seller_record(seed: u64, i: u64) -> Record {
    let mut r = Rng::stream(seed, kind::SELLER, i);
    let (city, state, _, _, zip0) = *r.pick(CITIES);
    let zip = zip0 + r.below(900) as u32;
    vec![hex_id(seed, kind::SELLER, i), zip_text(&mut r, zip), city.to_string(), state.to_string()]
}

/// Geolocation row `i`: a copy of the previous row (`None`), or a point
/// and whether it lies outside Brazil.
fn geo_record(seed: u64, i: u64, allow_duplicate: bool) -> Option<(Record, bool)> {
    let mut r = Rng::stream(seed, kind::GEO, i);
    if allow_duplicate && r.chance(dirt::GEO_DUPLICATE) {
        return None;
    }
    let (city, state, lat, lng, zip0) = *r.pick(CITIES);
    let zip = zip0 + r.below(900) as u32;
    let outside = r.chance(dirt::GEO_OUTSIDE_BRAZIL);
    let (lat, lng) = if outside {
        (38.72 + r.unit(), -9.14 - r.unit()) // Lisbon: a classic Olist outlier
    } else {
        (lat + (r.unit() - 0.5) * 0.2, lng + (r.unit() - 0.5) * 0.2)
    };
    Some((vec![format!("{zip:05}"), lat.to_string(), lng.to_string(), city.trim().to_string(), state.to_uppercase()], outside))
}

// ---------------------------------------------------------------- writing

struct Out {
    dir: PathBuf,
    rows: BTreeMap<&'static str, u64>,
    dirt: Counts,
}

type Csv = csv::Writer<BufWriter<File>>;

fn source_file(table: &str) -> &'static olist::SourceFile {
    olist::SOURCE_FILES.iter().find(|f| f.table == table).expect("table names in this file are the registry's")
}

impl Out {
    /// A new file for `table` with its header. The translation file comes
    /// as Olist ships it: a UTF-8 BOM and CRLF line ends.
    fn file(&self, table: &str) -> std::io::Result<(Csv, &'static olist::SourceFile)> {
        let source = source_file(table);
        let mut raw = BufWriter::with_capacity(1 << 20, File::create(self.dir.join(source.file_name))?);
        let mut builder = csv::WriterBuilder::new();
        if table == "category_translation" {
            raw.write_all(b"\xEF\xBB\xBF")?;
            builder.terminator(csv::Terminator::CRLF);
        }
        let mut w = builder.from_writer(raw);
        w.write_record(source.columns)?;
        Ok((w, source))
    }
}

/// Write the base export's rows of `table` (the whole Olist-shaped file).
fn write_base(w: &mut Csv, table: &str, seed: u64, sizes: &Sizes, type_dirt: bool, dirt: &mut Counts) -> std::io::Result<u64> {
    let mut rows = 0u64;
    let mut put = |w: &mut Csv, record: &[String]| {
        rows += 1;
        w.write_record(record)
    };
    match table {
        "customers" => {
            for i in 0..sizes.customers {
                let (record, duplicate) = customer_record(seed, i, dirt);
                put(w, &record)?;
                if duplicate {
                    put(w, &record)?;
                }
            }
        }
        "orders" => {
            let mut late_duplicates = Vec::new();
            for i in 0..sizes.customers {
                if let Some((record, duplicate)) = order_record(seed, i, &order(seed, sizes, i), dirt) {
                    put(w, &record)?;
                    if duplicate {
                        late_duplicates.push(record);
                    }
                }
            }
            // Duplicates come at the end of the file, as a later export
            // appends them: the last row in the file wins.
            for record in late_duplicates {
                put(w, &record)?;
            }
        }
        "order_items" | "order_payments" | "order_reviews" => {
            for i in 0..sizes.customers {
                let o = order(seed, sizes, i);
                if !o.exists {
                    continue;
                }
                let records = match table {
                    "order_items" => item_records(seed, i, &o, dirt),
                    "order_payments" => payment_records(seed, i, &o, dirt),
                    _ => review_records(seed, i, &o, type_dirt, dirt),
                };
                for record in records {
                    put(w, &record)?;
                }
            }
        }
        "products" => {
            for i in 0..sizes.products {
                put(w, &product_record(seed, i))?;
            }
        }
        "sellers" => {
            for i in 0..sizes.sellers {
                put(w, &seller_record(seed, i))?;
            }
        }
        "geolocation" => {
            let mut previous: Option<Record> = None;
            for i in 0..sizes.geolocation {
                match (geo_record(seed, i, previous.is_some()), previous.as_ref()) {
                    (None, Some(record)) => {
                        note(dirt, "geolocation_exact_duplicate");
                        put(w, record)?;
                    }
                    (Some((record, outside)), _) => {
                        if outside {
                            note(dirt, "geolocation_outside_brazil");
                        }
                        put(w, &record)?;
                        // Only valid rows get repeated, so each kind of dirt counts exactly.
                        previous = (!outside).then_some(record);
                    }
                    (None, None) => unreachable!("a duplicate needs a previous row"),
                }
            }
        }
        "category_translation" => {
            for (pt, en) in CATEGORIES.iter().filter(|(_, en)| !en.is_empty()) {
                put(w, &[pt.to_string(), en.to_string()])?;
            }
        }
        other => unreachable!("no table {other}"),
    }
    Ok(rows)
}

fn write_summary(out: &Out, seed: u64, scale: f64, batch: Option<(u64, Shape, &Counts)>) -> std::io::Result<()> {
    let mut f = BufWriter::new(File::create(out.dir.join("_generator.json"))?);
    let obj = |m: &BTreeMap<&str, u64>| m.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect::<Vec<_>>().join(", ");
    let batch = match batch {
        Some((k, shape, changes)) => {
            format!(", \"batch\": {k}, \"shape\": \"{}\", \"changes\": {{{}}}", shape.name(), obj(changes))
        }
        None => String::new(),
    };
    writeln!(
        f,
        "{{\"seed\": {seed}, \"scale\": {scale}{batch}, \"rows\": {{{}}}, \"dirt\": {{{}}}}}",
        obj(&out.rows),
        obj(&out.dirt)
    )?;
    f.flush()
}

// ---------------------------------------------------------------- main

/// What a follow-up batch's directory holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    /// Only the files the batch changes, holding only its new and changed rows.
    Delta,
    /// All nine files as a daily full export: the base with every batch up
    /// to this one appended; files no batch so far changed are byte for
    /// byte the base's, so bronze skips them by SHA-256.
    Full,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Delta => "delta",
            Shape::Full => "full",
        }
    }
}

struct Args {
    out: PathBuf,
    scale: f64,
    seed: u64,
    type_dirt: bool,
    batch: Option<(u64, Shape)>,
}

const USAGE: &str =
    "usage: olist-gen --out DIR [--scale 1] [--seed 360] [--type-dirt] [--batch K [--full-export]] | olist-gen --list-files";

fn parse_args() -> Result<Args, String> {
    let mut out = None;
    let mut scale = 1.0;
    let mut seed = 360;
    let mut type_dirt = false;
    let mut batch = None;
    let mut full = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--out" => out = Some(PathBuf::from(value()?)),
            "--scale" => scale = value()?.parse().map_err(|e| format!("--scale: {e}"))?,
            "--seed" => seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--type-dirt" => type_dirt = true,
            "--batch" => batch = Some(value()?.parse::<u64>().map_err(|e| format!("--batch: {e}"))?),
            "--full-export" => full = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !(scale > 0.0 && scale <= 1000.0) {
        return Err("--scale must be in (0, 1000]".into());
    }
    if batch == Some(0) || batch.is_some_and(|k| k > batch::MAX_BATCH) {
        return Err(format!("--batch must be in 1..={}", batch::MAX_BATCH));
    }
    if full && batch.is_none() {
        return Err("--full-export needs --batch".into());
    }
    let batch = batch.map(|k| (k, if full { Shape::Full } else { Shape::Delta }));
    Ok(Args { out: out.ok_or("--out DIR is required")?, scale, seed, type_dirt, batch })
}

fn generate(args: &Args) -> std::io::Result<Out> {
    std::fs::create_dir_all(&args.out)?;
    let sizes = Sizes::at(args.scale);
    let mut out = Out { dir: args.out.clone(), rows: BTreeMap::new(), dirt: BTreeMap::new() };
    let seed = args.seed;
    let mut changes = Counts::new();
    for source in &olist::SOURCE_FILES {
        let table = source.table;
        let batches: Vec<u64> = match args.batch {
            None => Vec::new(),
            Some((k, Shape::Delta)) => vec![k],
            Some((k, Shape::Full)) => (1..=k).collect(),
        };
        let changed: Vec<u64> = batches.into_iter().filter(|&k| batch::changes(table, k)).collect();
        let with_base = !matches!(args.batch, Some((_, Shape::Delta)));
        if !with_base && changed.is_empty() {
            continue;
        }
        let (mut w, source) = out.file(table)?;
        let mut rows = 0;
        if with_base {
            rows += write_base(&mut w, table, seed, &sizes, args.type_dirt, &mut out.dirt)?;
        }
        for k in changed {
            // A full export reports the changes of its own batch only.
            let mut scratch = Counts::new();
            let counts = if Some(k) == args.batch.map(|b| b.0) { &mut changes } else { &mut scratch };
            rows += batch::write(&mut w, table, seed, &sizes, k, counts)?;
        }
        w.flush()?;
        out.rows.insert(source.file_name, rows);
    }
    write_summary(&out, seed, args.scale, args.batch.map(|(k, shape)| (k, shape, &changes)))?;
    Ok(out)
}

mod batch;

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--list-files") {
        for source in &olist::SOURCE_FILES {
            println!("{}\t{}\t{}", source.file_name, source.table, source.columns.join(","));
        }
        return ExitCode::SUCCESS;
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("olist-gen: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match generate(&args) {
        Ok(out) => {
            for (file, rows) in &out.rows {
                println!("{rows:>10}  {}", Path::new(&args.out).join(file).display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("olist-gen: writing {}: {e}", args.out.display());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate_into(name: &str, scale: f64, seed: u64) -> (PathBuf, Out) {
        let dir = std::env::temp_dir().join(format!("olist-gen-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let out = generate(&Args { out: dir.clone(), scale, seed, type_dirt: name == "dirt", batch: None }).unwrap();
        (dir, out)
    }

    fn records(path: &Path) -> Vec<csv::StringRecord> {
        csv::ReaderBuilder::new().has_headers(false).from_path(path).unwrap().records().map(Result::unwrap).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
        let (a, _) = generate_into("det-a", 0.01, 5);
        let (b, _) = generate_into("det-b", 0.01, 5);
        let (c, _) = generate_into("det-c", 0.01, 6);
        for source in &olist::SOURCE_FILES {
            let bytes = |dir: &Path| std::fs::read(dir.join(source.file_name)).unwrap();
            assert_eq!(bytes(&a), bytes(&b), "{}", source.file_name);
        }
        let customers = |dir: &Path| std::fs::read(dir.join("olist_customers_dataset.csv")).unwrap();
        assert_ne!(customers(&a), customers(&c));
        for dir in [a, b, c] {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn files_have_the_registry_headers_and_the_counted_rows() {
        let (dir, out) = generate_into("shape", 0.02, 1);
        for source in &olist::SOURCE_FILES {
            let all = records(&dir.join(source.file_name));
            let header: Vec<&str> = all[0].iter().collect();
            assert_eq!(header, source.columns, "{}", source.file_name);
            assert_eq!((all.len() - 1) as u64, out.rows[source.file_name], "{}", source.file_name);
            assert!(all.iter().all(|r| r.len() == source.columns.len()), "{}", source.file_name);
        }
        let translation = std::fs::read(dir.join("product_category_name_translation.csv")).unwrap();
        assert!(translation.starts_with(b"\xEF\xBB\xBFproduct_category_name,"));
        assert!(translation.ends_with(b"\r\n") && !translation.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn every_kind_of_dirt_is_there_and_people_have_several_ids() {
        let (dir, out) = generate_into("dirt", 0.2, 360);
        for kind in [
            "customer_duplicate",
            "customer_empty_unique_id",
            "order_unknown_status",
            "order_delivered_without_date",
            "order_delivery_before_purchase",
            "order_duplicate",
            "order_empty_id",
            "item_non_positive_price",
            "item_orphan",
            "payment_non_positive",
            "payment_orphan",
            "review_multiple_per_order",
            "review_score_out_of_range",
            "review_score_missing",
            "review_score_non_numeric",
            "geolocation_exact_duplicate",
            "geolocation_outside_brazil",
        ] {
            assert!(out.dirt.get(kind).copied().unwrap_or(0) > 0, "no {kind}");
        }
        let customers = records(&dir.join("olist_customers_dataset.csv"));
        let mut ids_per_person: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
        for r in customers.iter().skip(1).filter(|r| !r[1].is_empty()) {
            ids_per_person.entry(&r[1]).or_default().insert(&r[0]);
        }
        let several = ids_per_person.values().filter(|ids| ids.len() > 1).count() as f64;
        let share = several / ids_per_person.len() as f64;
        assert!((0.02..0.05).contains(&share), "{share} of people have several customer_ids");
        let reviews = std::fs::read_to_string(dir.join("olist_order_reviews_dataset.csv")).unwrap();
        assert!(reviews.contains("\"Recomendo.\nEntrega rápida"), "quoted multi-line comments");
        let cities = std::fs::read_to_string(dir.join("olist_customers_dataset.csv")).unwrap();
        assert!(cities.contains("são paulo") && cities.contains("florianópolis"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_full_export_is_the_base_with_every_delta_appended_and_batches_are_deterministic() {
        let at = |name: &str, batch: Option<(u64, Shape)>| {
            let dir = std::env::temp_dir().join(format!("olist-gen-test-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let out = generate(&Args { out: dir.clone(), scale: 0.02, seed: 7, type_dirt: false, batch }).unwrap();
            (dir, out)
        };
        let (base, _) = at("b0", None);
        let deltas: Vec<(PathBuf, Out)> = (1..=6).map(|k| at(&format!("d{k}"), Some((k, Shape::Delta)))).collect();
        let (again, _) = at("d3-again", Some((3, Shape::Delta)));
        let (full, _) = at("f6", Some((6, Shape::Full)));
        let summary = std::fs::read_to_string(deltas[5].0.join("_generator.json")).unwrap();
        for change in ["new_order", "status_update", "corrected_payment", "replacing_review", "address_correction",
                       "late_order_of_orphans", "invalid_newer_order", "invalid_newer_payment", "product_category_change",
                       "translation_change", "geolocation_exact_copy", "geolocation_new_point"] {
            assert!(summary.contains(&format!("\"{change}\": ")), "batch 6 has no {change}: {summary}");
        }
        for source in &olist::SOURCE_FILES {
            let body = |dir: &Path| -> Option<Vec<csv::StringRecord>> {
                dir.join(source.file_name).exists().then(|| records(&dir.join(source.file_name)).into_iter().skip(1).collect())
            };
            assert_eq!(body(&deltas[2].0), body(&again), "{}", source.file_name);
            let mut expected = body(&base).unwrap();
            for (k, (dir, _)) in deltas.iter().enumerate() {
                assert_eq!(body(dir).is_some(), batch::changes(source.table, k as u64 + 1), "{}", source.file_name);
                expected.extend(body(dir).unwrap_or_default());
            }
            assert_eq!(body(&full).unwrap(), expected, "{}", source.file_name);
        }
        for dir in [base, again, full].into_iter().chain(deltas.into_iter().map(|d| d.0)) {
            std::fs::remove_dir_all(dir).unwrap();
        }
    }

    #[test]
    fn timestamps_are_calendar_dates() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(timestamp(951_782_400 + 3_661), "2000-02-29 01:01:01");
        assert_eq!(timestamp(FIRST_PURCHASE), "2016-09-04 00:00:00");
    }
}
