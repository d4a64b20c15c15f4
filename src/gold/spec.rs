//! Gold's two tables, declared once: each column's name, type,
//! nullability, collation and description. The DDL and the column
//! comments (sql/gold.sql, through `golden360_internal.gold_columns()`),
//! the API view's comments (copied from gold's), the writer's row layout
//! and the readers' type checks all derive from here. The first column of
//! each table is its primary key.

use crate::pg::types::{column, Column, SqlType};

/// Money in gold: numeric(12,2). A person's total beyond it is an error.
pub const SPEND: SqlType = SqlType::Numeric(12, 2);
pub const DIVERSITY: SqlType = SqlType::Numeric(10, 4);
pub const SCORE: SqlType = SqlType::Numeric(3, 2);

pub struct GoldColumn {
    pub column: Column,
    pub not_null: bool,
    /// Text compared and sorted in byte order (COLLATE "C").
    pub byte_order: bool,
    /// The column comment; empty for none.
    pub description: &'static str,
}

const NOT_NULL: bool = true;
const NULLABLE: bool = false;
const BYTE_ORDER: bool = true;
const DEFAULT_ORDER: bool = false;

const fn gold(name: &'static str, ty: SqlType, not_null: bool, byte_order: bool, description: &'static str) -> GoldColumn {
    GoldColumn { column: column(name, ty), not_null, byte_order, description }
}

/// The columns alone, for the writer and the readers' checks.
const fn columns<const N: usize>(spec: &[GoldColumn; N]) -> [Column; N] {
    let mut out = [column("", SqlType::Text); N];
    let mut i = 0;
    while i < N {
        out[i] = spec[i].column;
        i += 1;
    }
    out
}

/// gold.unified_customer_360. Money is BRL; "counted orders" are orders
/// whose status is not canceled or unavailable.
pub const CUSTOMER_360: [GoldColumn; 28] = [
    gold("golden_id", SqlType::Text, NOT_NULL, BYTE_ORDER,
         "The person's id: lower-case hex SHA-256 of customer_unique_id || canonical customer_id"),
    gold("customer_unique_id", SqlType::Text, NOT_NULL, BYTE_ORDER,
         "Olist's id of the person"),
    gold("customer_id", SqlType::Text, NOT_NULL, BYTE_ORDER,
         "Canonical customer_id: the one on the person's earliest purchase (ties and no orders: the smallest)"),
    gold("customer_ids", SqlType::TextArray, NOT_NULL, BYTE_ORDER,
         "Every customer_id of the person (Olist issues one per order), sorted"),
    gold("order_count", SqlType::Integer, NOT_NULL, DEFAULT_ORDER,
         "Counted orders: not canceled, not unavailable"),
    gold("canceled_order_count", SqlType::Integer, NOT_NULL, DEFAULT_ORDER,
         "The person's canceled or unavailable orders"),
    gold("total_spend", SPEND, NOT_NULL, DEFAULT_ORDER,
         "Lifetime value: sum of the counted orders' payments, BRL"),
    gold("avg_order_value", SPEND, NOT_NULL, DEFAULT_ORDER,
         "total_spend / order_count, 2 places; 0 without counted orders"),
    gold("max_single_order", SPEND, NOT_NULL, DEFAULT_ORDER,
         "Largest counted order value, BRL; 0 without counted orders"),
    gold("first_order_date", SqlType::Date, NULLABLE, DEFAULT_ORDER,
         "Date of the first counted purchase; null without counted orders"),
    gold("last_order_date", SqlType::Date, NULLABLE, DEFAULT_ORDER,
         "Date of the latest counted purchase; null without counted orders"),
    gold("total_items", SqlType::Integer, NOT_NULL, DEFAULT_ORDER,
         "Order-item rows of counted orders"),
    gold("unique_products", SqlType::Integer, NOT_NULL, DEFAULT_ORDER,
         "Distinct products bought in counted orders"),
    gold("favorite_category", SqlType::Text, NULLABLE, BYTE_ORDER,
         "Category (English, else Portuguese) with the most items in counted orders; ties: alphabetically first"),
    gold("product_diversity", DIVERSITY, NOT_NULL, DEFAULT_ORDER,
         "Distinct categories bought / order_count, 4 places"),
    gold("avg_review_score", SCORE, NULLABLE, DEFAULT_ORDER,
         "Mean review score (1-5) over all the person's orders, 2 places"),
    gold("total_reviews", SqlType::Integer, NOT_NULL, DEFAULT_ORDER,
         "Reviews over all the person's orders"),
    gold("ltv_segment", SqlType::Text, NOT_NULL, BYTE_ORDER,
         "VIP, High, Medium or Low by total_spend (thresholds: the golden360.ltv_* settings, default 5000/1000/200)"),
    gold("recency_score", SqlType::SmallInt, NULLABLE, DEFAULT_ORDER,
         "RFM recency 1-5 (5 = most recent); null without counted orders"),
    gold("frequency_score", SqlType::SmallInt, NULLABLE, DEFAULT_ORDER,
         "RFM frequency 1-5 (5 = most orders); null without counted orders"),
    gold("monetary_score", SqlType::SmallInt, NULLABLE, DEFAULT_ORDER,
         "RFM monetary 1-5 (5 = most spend); null without counted orders"),
    gold("rfm_segment", SqlType::Text, NULLABLE, DEFAULT_ORDER,
         "RFM label (Champions, At Risk, ...) from golden360.rfm_segments"),
    gold("geographic_state", SqlType::Text, NULLABLE, BYTE_ORDER,
         "State of the address on the person's latest order"),
    gold("geographic_city", SqlType::Text, NULLABLE, BYTE_ORDER,
         "City of the address on the person's latest order"),
    gold("geographic_zip", SqlType::Integer, NULLABLE, DEFAULT_ORDER,
         "Zip-code prefix (5 digits) of that address"),
    gold("latitude", SqlType::Double, NULLABLE, DEFAULT_ORDER,
         "Mean latitude of the zip prefix's geolocation points; null when none"),
    gold("longitude", SqlType::Double, NULLABLE, DEFAULT_ORDER,
         "Mean longitude of the zip prefix's geolocation points; null when none"),
    gold("refreshed_at", SqlType::TimestampTz, NOT_NULL, DEFAULT_ORDER,
         "When this row's values were computed: the refresh that last changed them (a refresh that computes the same values leaves the row as it is)"),
];
pub const CUSTOMER_360_COLUMNS: [Column; 28] = columns(&CUSTOMER_360);

/// The position of each column of gold.unified_customer_360 (a test
/// checks the names against `CUSTOMER_360`).
#[derive(Debug, Clone, Copy)]
pub enum C360 {
    GoldenId,
    CustomerUniqueId,
    CustomerId,
    CustomerIds,
    OrderCount,
    CanceledOrderCount,
    TotalSpend,
    AvgOrderValue,
    MaxSingleOrder,
    FirstOrderDate,
    LastOrderDate,
    TotalItems,
    UniqueProducts,
    FavoriteCategory,
    ProductDiversity,
    AvgReviewScore,
    TotalReviews,
    LtvSegment,
    RecencyScore,
    FrequencyScore,
    MonetaryScore,
    RfmSegment,
    GeographicState,
    GeographicCity,
    GeographicZip,
    Latitude,
    Longitude,
    RefreshedAt,
}

impl C360 {
    pub const fn at(self) -> usize {
        self as usize
    }
}

/// gold.identity_bridge: every silver customer_id and its person.
pub const BRIDGE: [GoldColumn; 3] = [
    gold("customer_id", SqlType::Text, NOT_NULL, BYTE_ORDER, ""),
    gold("customer_unique_id", SqlType::Text, NOT_NULL, BYTE_ORDER, ""),
    gold("golden_id", SqlType::Text, NOT_NULL, BYTE_ORDER, ""),
];
pub const BRIDGE_COLUMNS: [Column; 3] = columns(&BRIDGE);

#[derive(Debug, Clone, Copy)]
pub enum Bridge {
    CustomerId,
    CustomerUniqueId,
    GoldenId,
}

impl Bridge {
    pub const fn at(self) -> usize {
        self as usize
    }
}

/// gold.zip_coordinates: each zip prefix's mean point, which the 360's
/// latitude and longitude are; kept so an incremental refresh reads one
/// row per zip instead of all its points (hundreds per zip at scale 10).
pub const ZIP_COORDINATES: [GoldColumn; 4] = [
    gold("zip", SqlType::Integer, NOT_NULL, DEFAULT_ORDER, "Zip-code prefix (5 digits)"),
    gold("latitude", SqlType::Double, NOT_NULL, DEFAULT_ORDER,
         "Mean latitude of the prefix's points in silver.geolocation (summed exactly, so independent of their order)"),
    gold("longitude", SqlType::Double, NOT_NULL, DEFAULT_ORDER,
         "Mean longitude of the prefix's points in silver.geolocation (summed exactly, so independent of their order)"),
    gold("points", SqlType::Integer, NOT_NULL, DEFAULT_ORDER, "How many points of silver.geolocation the prefix has"),
];
pub const ZIP_COORDINATES_COLUMNS: [Column; 4] = columns(&ZIP_COORDINATES);

/// A table's declaration by name, for the DDL.
pub fn table(name: &str) -> Option<&'static [GoldColumn]> {
    match name {
        "unified_customer_360" => Some(&CUSTOMER_360),
        "identity_bridge" => Some(&BRIDGE),
        "zip_coordinates" => Some(&ZIP_COORDINATES),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snake(name: &str) -> String {
        let mut out = String::new();
        for (i, ch) in name.chars().enumerate() {
            if ch.is_uppercase() && i > 0 {
                out.push('_');
            }
            out.extend(ch.to_lowercase());
        }
        out
    }

    #[test]
    fn positions_name_their_columns() {
        let all = [
            C360::GoldenId,
            C360::CustomerUniqueId,
            C360::CustomerId,
            C360::CustomerIds,
            C360::OrderCount,
            C360::CanceledOrderCount,
            C360::TotalSpend,
            C360::AvgOrderValue,
            C360::MaxSingleOrder,
            C360::FirstOrderDate,
            C360::LastOrderDate,
            C360::TotalItems,
            C360::UniqueProducts,
            C360::FavoriteCategory,
            C360::ProductDiversity,
            C360::AvgReviewScore,
            C360::TotalReviews,
            C360::LtvSegment,
            C360::RecencyScore,
            C360::FrequencyScore,
            C360::MonetaryScore,
            C360::RfmSegment,
            C360::GeographicState,
            C360::GeographicCity,
            C360::GeographicZip,
            C360::Latitude,
            C360::Longitude,
            C360::RefreshedAt,
        ];
        assert_eq!(all.len(), CUSTOMER_360.len());
        for (i, c) in all.iter().enumerate() {
            assert_eq!(c.at(), i);
            assert_eq!(snake(&format!("{c:?}")), CUSTOMER_360[i].column.name);
        }
        for (i, c) in [Bridge::CustomerId, Bridge::CustomerUniqueId, Bridge::GoldenId].iter().enumerate() {
            assert_eq!(snake(&format!("{c:?}")), BRIDGE[c.at()].column.name);
            assert_eq!(c.at(), i);
        }
    }
}
