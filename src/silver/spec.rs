//! The silver tables, declared once: their columns and types, the rules a
//! row must pass, and how duplicates are resolved. Everything else derives
//! from this: the silver DDL (`golden360_internal.silver_columns()`), the rule list a
//! DBA reads (`golden360.silver_rules`), the row checks, the quality checks.
//!
//! Rules are evaluated in the SPEC's order: presence (kinds `key` and
//! `not-null`), then `type`, then value (`business`), then reference
//! (`referential`); within a kind, in the order listed. A row failing several
//! is quarantined once, with the first.

use crate::pg::types::{column, Column, SqlType};

/// Silver's money: numeric(10,2), which `parse::money_cents` never exceeds.
pub const MONEY: SqlType = SqlType::Numeric(10, 2);

/// A rule's kind, which also sets its quality threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A key column is blank.
    Key,
    /// A column the rules need is blank.
    NotNull,
    /// A present value is not of its type.
    Type,
    /// A typed value breaks a business rule.
    Business,
    /// A row points at a parent that is not in silver.
    Referential,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Key => "key",
            Kind::NotNull => "not-null",
            Kind::Type => "type",
            Kind::Business => "business",
            Kind::Referential => "referential",
        }
    }
}

/// How a bronze field becomes a silver value. Blank text is NULL for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// An opaque id: kept byte for byte, never trimmed.
    Id,
    /// Text kept as it came.
    Text,
    /// Trimmed text (product category).
    Trimmed,
    /// A translation-file name: BOM stripped, trimmed.
    Translated,
    /// Trimmed, lower-cased (order_status, payment_type).
    Code,
    /// City or state: trimmed, spaces collapsed, Unicode upper case.
    Place,
    /// A review message: NULL becomes 'No comment provided'.
    Comment,
    /// The English category from silver.category_translation, else the
    /// Portuguese name; `source` is the Portuguese name.
    EnglishCategory,
    Integer,
    Zip,
    Money,
    Timestamp,
    Double,
}

impl Ty {
    /// Whether a present value can fail to be of this type.
    pub fn can_fail(self) -> bool {
        matches!(self, Ty::Integer | Ty::Zip | Ty::Money | Ty::Timestamp | Ty::Double)
    }

    /// The silver column's SQL type: the DDL, the readers and the writers
    /// all take it from here.
    pub fn sql_type(self) -> SqlType {
        match self {
            Ty::Integer | Ty::Zip => SqlType::Integer,
            Ty::Money => MONEY,
            Ty::Timestamp => SqlType::Timestamp,
            Ty::Double => SqlType::Double,
            _ => SqlType::Text,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Ty::Integer => "an integer [+-]?[0-9]{1,9}",
            Ty::Zip => "a zip prefix of digits only",
            Ty::Money => "an amount [+-]?[0-9]{1,8}(.[0-9]+)? (rounded half away from zero to cents)",
            Ty::Timestamp => "a real date YYYY-MM-DD, optionally with HH:MM:SS after a space or T",
            Ty::Double => "a number in decimal or exponent notation",
            _ => "text",
        }
    }
}

/// The text a blank review message becomes.
pub const NO_COMMENT: &str = "No comment provided";

/// A silver column and where it comes from.
#[derive(Debug)]
pub struct Col {
    pub name: &'static str,
    /// The bronze column it is read from.
    pub source: &'static str,
    pub ty: Ty,
    /// Must be present (non-blank): the kind of that presence rule.
    pub required: Option<Kind>,
}

impl Col {
    /// Never NULL in silver: required (present), or a comment (blank is '').
    pub fn not_null(&self) -> bool {
        self.required.is_some() || self.ty == Ty::Comment
    }
}

const fn col(name: &'static str, ty: Ty) -> Col {
    Col { name, source: name, ty, required: None }
}
const fn key(name: &'static str, ty: Ty) -> Col {
    Col { name, source: name, ty, required: Some(Kind::Key) }
}
const fn needed(name: &'static str, ty: Ty) -> Col {
    Col { name, source: name, ty, required: Some(Kind::NotNull) }
}

/// A value or reference rule on typed columns. Every comparison passes when
/// a value it needs is NULL, except `RequiredWhen`, whose point is presence.
#[derive(Debug)]
pub enum Check {
    Positive(&'static str),
    NonNegative(&'static str),
    OneOf(&'static str, &'static [&'static str]),
    /// Inclusive bounds.
    Between(&'static str, f64, f64),
    RequiredWhen { column: &'static str, when: &'static str, equals: &'static str },
    NotBefore { later: &'static str, earlier: &'static str },
    /// The column's value is a key of this (earlier built) silver table.
    Exists { column: &'static str, parent: &'static str },
}

#[derive(Debug)]
pub struct RuleSpec {
    pub name: &'static str,
    pub check: Check,
    pub description: &'static str,
}

/// Which row survives among rows with the same key.
#[derive(Debug)]
pub enum Dedup {
    /// Latest batch, then last row in the file, per key.
    Key(&'static [&'static str]),
    /// Per key, the row with the greatest `prefer` values (DESC, NULLs
    /// last, in order), then the latest batch and last row.
    KeyPreferring { key: &'static [&'static str], prefer: &'static [&'static str] },
    /// Rows equal in every column are duplicates.
    WholeRow,
}

#[derive(Debug)]
pub struct TableSpec {
    /// The bronze table read, and the silver table written.
    pub table: &'static str,
    pub columns: &'static [Col],
    pub rules: &'static [RuleSpec],
    pub dedup: Dedup,
    /// The column through which a change to one of its rows reaches the
    /// golden records (customers: the person; orders: the customer; an
    /// order's items, payments and reviews: the order; products: the
    /// product; geolocation: the zip). None: gold does not read the table.
    /// An incremental refresh logs these values for every row it changes.
    pub gold_link: Option<&'static str>,
}

/// One rule as evaluated and reported.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub kind: Kind,
    pub columns: Vec<&'static str>,
    pub description: String,
}

impl TableSpec {
    pub fn column(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("silver.{} has no column {name}", self.table))
    }

    /// The columns an existing row is looked up by (an index leads with
    /// them): the key, or for whole-row deduplication the columns that are
    /// never NULL (an exact duplicate equals the row in each; a NULL would
    /// match nothing through an index). sql/silver.sql builds that index
    /// from `silver_columns().not_null`, the same rule.
    pub fn lookup(&self) -> Vec<&'static str> {
        match self.key() {
            [] => self.columns.iter().filter(|c| c.not_null()).map(|c| c.name).collect(),
            key => key.to_vec(),
        }
    }

    /// Whether another table's reference rule points at this one (its
    /// keys are then what those rules look up).
    pub fn is_parent(&self) -> bool {
        TABLES.iter().any(|t| t.references(self.table))
    }

    /// Whether one of this table's reference rules points at `parent`.
    pub fn references(&self, parent: &str) -> bool {
        self.rules.iter().any(|r| matches!(r.check, Check::Exists { parent: p, .. } if p == parent))
    }

    /// Whether the table's build needs nothing of another's and nothing of
    /// it is needed by another: no reference rule either way, no
    /// translated column. Its pass 1 can then run beside the others' (in a
    /// background worker, `build::build_all`).
    pub fn stands_alone(&self) -> bool {
        !self.is_parent()
            && !self.rules.iter().any(|r| matches!(r.check, Check::Exists { .. }))
            && !self.columns.iter().any(|c| matches!(c.ty, Ty::EnglishCategory))
            && self.table != TRANSLATIONS
    }

    pub fn key(&self) -> &'static [&'static str] {
        match self.dedup {
            Dedup::Key(key) | Dedup::KeyPreferring { key, .. } => key,
            Dedup::WholeRow => &[],
        }
    }

    /// The silver table's declared columns: the spec's, then the lineage
    /// `_batch_id` and `_row_number`.
    pub fn declared_columns(&self) -> Vec<Column> {
        self.columns
            .iter()
            .map(|c| column(c.name, c.ty.sql_type()))
            .chain([column("_batch_id", SqlType::BigInt), column("_row_number", SqlType::BigInt)])
            .collect()
    }

    /// The bronze tables this silver table's content depends on: its own and,
    /// through its reference rules, its parents' (transitively).
    pub fn inputs(&self) -> Vec<&'static str> {
        let mut inputs = vec![self.table];
        for rule in self.rules {
            if let Check::Exists { parent, .. } = rule.check {
                let parent = TABLES.iter().find(|t| t.table == parent).expect("a declared parent");
                for input in parent.inputs() {
                    if !inputs.contains(&input) {
                        inputs.push(input);
                    }
                }
            }
        }
        inputs
    }

    /// Every rule of the table, in evaluation order.
    pub fn rules(&self) -> Vec<Rule> {
        let mut rules: Vec<Rule> = self
            .columns
            .iter()
            .filter_map(|c| {
                let kind = c.required?;
                Some(Rule {
                    name: format!("{}_present", c.name),
                    kind,
                    columns: vec![c.name],
                    description: format!("{} is not blank", c.name),
                })
            })
            .collect();
        rules.sort_by_key(|r| r.kind); // key before not-null
        rules.extend(self.columns.iter().filter(|c| c.ty.can_fail()).map(|c| Rule {
            name: format!("{}_type", c.name),
            kind: Kind::Type,
            columns: vec![c.name],
            description: format!("{} is {} when present", c.name, c.ty.describe()),
        }));
        let mut value_rules: Vec<Rule> = self
            .rules
            .iter()
            .map(|r| {
                let (kind, columns) = match r.check {
                    Check::Exists { column, .. } => (Kind::Referential, vec![column]),
                    Check::RequiredWhen { column, when, .. } => (Kind::Business, vec![column, when]),
                    Check::NotBefore { later, earlier } => (Kind::Business, vec![later, earlier]),
                    Check::Positive(c) | Check::NonNegative(c) | Check::OneOf(c, _) | Check::Between(c, ..) => {
                        (Kind::Business, vec![c])
                    }
                };
                Rule { name: r.name.to_string(), kind, columns, description: r.description.to_string() }
            })
            .collect();
        value_rules.sort_by_key(|r| r.kind); // business before referential, stable within
        rules.extend(value_rules);
        rules
    }
}

use olist_model::codes::{ORDER_STATUSES, PAYMENT_TYPES};

/// The table whose rows translate categories: products' English category
/// comes from it, so it is built (and applied) before them.
pub const TRANSLATIONS: &str = "category_translation";

/// The silver tables in build order: every parent before its children, the
/// translation before products.
pub const TABLES: &[TableSpec] = &[
    TableSpec {
        table: "customers",
        columns: &[
            key("customer_id", Ty::Id),
            key("customer_unique_id", Ty::Id),
            Col { name: "customer_zip", source: "customer_zip_code_prefix", ty: Ty::Zip, required: None },
            col("customer_city", Ty::Place),
            col("customer_state", Ty::Place),
        ],
        rules: &[],
        dedup: Dedup::Key(&["customer_id"]),
        gold_link: Some("customer_unique_id"),
    },
    TableSpec {
        table: "orders",
        columns: &[
            key("order_id", Ty::Id),
            needed("customer_id", Ty::Id),
            needed("order_status", Ty::Code),
            col("order_purchase_timestamp", Ty::Timestamp),
            col("order_approved_at", Ty::Timestamp),
            col("order_delivered_carrier_date", Ty::Timestamp),
            col("order_delivered_customer_date", Ty::Timestamp),
            col("order_estimated_delivery_date", Ty::Timestamp),
        ],
        rules: &[
            RuleSpec {
                name: "order_status_known",
                check: Check::OneOf("order_status", ORDER_STATUSES),
                description: "order_status is one of created, approved, invoiced, processing, shipped, \
                              delivered, canceled, unavailable",
            },
            RuleSpec {
                name: "delivered_has_delivery_date",
                check: Check::RequiredWhen {
                    column: "order_delivered_customer_date",
                    when: "order_status",
                    equals: "delivered",
                },
                description: "a delivered order has order_delivered_customer_date",
            },
            RuleSpec {
                name: "delivery_not_before_purchase",
                check: Check::NotBefore { later: "order_delivered_customer_date", earlier: "order_purchase_timestamp" },
                description: "order_delivered_customer_date >= order_purchase_timestamp (passes when either is NULL)",
            },
            RuleSpec {
                name: "customer_exists",
                check: Check::Exists { column: "customer_id", parent: "customers" },
                description: "customer_id is a customer in silver.customers",
            },
        ],
        dedup: Dedup::Key(&["order_id"]),
        gold_link: Some("customer_id"),
    },
    TableSpec {
        table: "order_items",
        columns: &[
            key("order_id", Ty::Id),
            key("order_item_id", Ty::Integer),
            col("product_id", Ty::Id),
            col("seller_id", Ty::Id),
            col("shipping_limit_date", Ty::Timestamp),
            needed("price", Ty::Money),
            needed("freight_value", Ty::Money),
        ],
        rules: &[
            RuleSpec { name: "price_positive", check: Check::Positive("price"), description: "price > 0" },
            RuleSpec {
                name: "freight_not_negative",
                check: Check::NonNegative("freight_value"),
                description: "freight_value >= 0",
            },
            RuleSpec {
                name: "order_exists",
                check: Check::Exists { column: "order_id", parent: "orders" },
                description: "order_id is an order in silver.orders",
            },
        ],
        dedup: Dedup::Key(&["order_id", "order_item_id"]),
        gold_link: Some("order_id"),
    },
    TableSpec {
        table: "order_payments",
        columns: &[
            key("order_id", Ty::Id),
            key("payment_sequential", Ty::Integer),
            needed("payment_type", Ty::Code),
            needed("payment_installments", Ty::Integer),
            needed("payment_value", Ty::Money),
        ],
        rules: &[
            RuleSpec {
                name: "payment_value_positive",
                check: Check::Positive("payment_value"),
                description: "payment_value > 0",
            },
            RuleSpec {
                name: "payment_type_known",
                check: Check::OneOf("payment_type", PAYMENT_TYPES),
                description: "payment_type is one of credit_card, boleto, voucher, debit_card, not_defined",
            },
            RuleSpec {
                name: "installments_not_negative",
                check: Check::NonNegative("payment_installments"),
                description: "payment_installments >= 0",
            },
            RuleSpec {
                name: "order_exists",
                check: Check::Exists { column: "order_id", parent: "orders" },
                description: "order_id is an order in silver.orders",
            },
        ],
        dedup: Dedup::Key(&["order_id", "payment_sequential"]),
        gold_link: Some("order_id"),
    },
    TableSpec {
        table: "order_reviews",
        columns: &[
            key("order_id", Ty::Id),
            col("review_id", Ty::Id),
            needed("review_score", Ty::Integer),
            col("review_comment_title", Ty::Text),
            col("review_comment_message", Ty::Comment),
            col("review_creation_date", Ty::Timestamp),
            col("review_answer_timestamp", Ty::Timestamp),
        ],
        rules: &[RuleSpec {
            name: "review_score_in_range",
            check: Check::Between("review_score", 1.0, 5.0),
            description: "review_score is between 1 and 5",
        }],
        dedup: Dedup::KeyPreferring {
            key: &["order_id"],
            prefer: &["review_answer_timestamp", "review_creation_date", "review_id"],
        },
        gold_link: Some("order_id"),
    },
    TableSpec {
        table: "category_translation",
        columns: &[
            key("product_category_name", Ty::Translated),
            needed("product_category_name_english", Ty::Translated),
        ],
        rules: &[],
        dedup: Dedup::Key(&["product_category_name"]),
        gold_link: None,
    },
    TableSpec {
        table: "products",
        columns: &[
            key("product_id", Ty::Id),
            col("product_category_name", Ty::Trimmed),
            Col { name: "product_category", source: "product_category_name", ty: Ty::EnglishCategory, required: None },
            col("product_name_lenght", Ty::Integer),
            col("product_description_lenght", Ty::Integer),
            col("product_photos_qty", Ty::Integer),
            col("product_weight_g", Ty::Integer),
            col("product_length_cm", Ty::Integer),
            col("product_height_cm", Ty::Integer),
            col("product_width_cm", Ty::Integer),
        ],
        rules: &[],
        dedup: Dedup::Key(&["product_id"]),
        gold_link: Some("product_id"),
    },
    TableSpec {
        table: "sellers",
        columns: &[
            key("seller_id", Ty::Id),
            Col { name: "seller_zip", source: "seller_zip_code_prefix", ty: Ty::Zip, required: None },
            col("seller_city", Ty::Place),
            col("seller_state", Ty::Place),
        ],
        rules: &[],
        dedup: Dedup::Key(&["seller_id"]),
        gold_link: None,
    },
    TableSpec {
        table: "geolocation",
        columns: &[
            Col { name: "zip", source: "geolocation_zip_code_prefix", ty: Ty::Zip, required: Some(Kind::NotNull) },
            Col { name: "lat", source: "geolocation_lat", ty: Ty::Double, required: Some(Kind::NotNull) },
            Col { name: "lng", source: "geolocation_lng", ty: Ty::Double, required: Some(Kind::NotNull) },
            Col { name: "city", source: "geolocation_city", ty: Ty::Text, required: None },
            Col { name: "state", source: "geolocation_state", ty: Ty::Text, required: None },
        ],
        rules: &[
            RuleSpec {
                name: "lat_inside_brazil",
                check: Check::Between("lat", -33.75, 5.30),
                description: "lat is inside Brazil's box, -33.75 to 5.30 inclusive",
            },
            RuleSpec {
                name: "lng_inside_brazil",
                check: Check::Between("lng", -74.00, -34.70),
                description: "lng is inside Brazil's box, -74.00 to -34.70 inclusive",
            },
        ],
        dedup: Dedup::WholeRow,
        gold_link: Some("zip"),
    },
];

#[cfg(test)]
pub fn table(name: &str) -> &'static TableSpec {
    TABLES.iter().find(|t| t.table == name).unwrap_or_else(|| panic!("no silver table {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use olist_model::SOURCE_FILES;

    #[test]
    fn every_silver_table_reads_existing_bronze_columns() {
        assert_eq!(TABLES.len(), SOURCE_FILES.len());
        for spec in TABLES {
            let source = SOURCE_FILES.iter().find(|f| f.table == spec.table).expect("a bronze table");
            for c in spec.columns {
                assert!(source.columns.contains(&c.source), "{}.{} reads {}", spec.table, c.name, c.source);
            }
            for name in spec.key() {
                spec.column(name);
            }
        }
    }

    #[test]
    fn rules_come_in_the_spec_order_and_have_unique_names() {
        for spec in TABLES {
            let rules = spec.rules();
            assert!(rules.windows(2).all(|w| w[0].kind <= w[1].kind), "{}", spec.table);
            let mut names: Vec<_> = rules.iter().map(|r| r.name.as_str()).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), rules.len(), "{}", spec.table);
        }
        let orders: Vec<String> = table("orders").rules().into_iter().map(|r| r.name).collect();
        assert_eq!(orders[..3], ["order_id_present", "customer_id_present", "order_status_present"]);
        assert_eq!(orders.last().unwrap(), "customer_exists");
    }

    #[test]
    fn inputs_follow_the_reference_rules() {
        let inputs = |t: &str| table(t).inputs();
        assert_eq!(inputs("customers"), ["customers"]);
        assert_eq!(inputs("orders"), ["orders", "customers"]);
        assert_eq!(inputs("order_items"), ["order_items", "orders", "customers"]);
        assert_eq!(inputs("order_reviews"), ["order_reviews"]);
    }

    #[test]
    fn parents_are_built_before_children() {
        for (i, spec) in TABLES.iter().enumerate() {
            for rule in spec.rules {
                if let Check::Exists { parent, .. } = rule.check {
                    assert!(TABLES[..i].iter().any(|t| t.table == parent), "{} before {}", parent, spec.table);
                }
            }
        }
    }
}
