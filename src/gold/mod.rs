//! Gold: the identity bridge and the unified customer 360. Owns schema
//! `gold`, `golden360.rfm_segments`, the LTV thresholds (settings in
//! `ops`) and the procedure `golden360.refresh_gold()` (sql/gold.sql), which
//! rebuilds gold from silver in one transaction and cross-checks it.
//!
//! Rust computes `golden_id`; everything else is set-based SQL.

use pgrx::prelude::*;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// The SQL-facing functions, in schema `golden360`.
#[pg_schema]
pub mod golden360 {
    use pgrx::prelude::*;
    use sha2::{Digest, Sha256};

    /// A person's golden id: lower-case hex SHA-256 of the UTF-8 string
    /// `customer_unique_id || canonical_customer_id`.
    #[pg_extern(immutable, parallel_safe, strict)]
    pub fn golden_id(customer_unique_id: &str, canonical_customer_id: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(customer_unique_id.as_bytes());
        hasher.update(canonical_customer_id.as_bytes());
        hex::encode(hasher.finalize())
    }

    /// `ids` sorted in byte order (COLLATE "C"). PostgreSQL 15 sorts each
    /// group separately for `array_agg(... ORDER BY ...)`, which costs more
    /// than the whole rest of the 360 when groups are this small.
    #[pg_extern(immutable, parallel_safe, strict)]
    pub fn sorted_ids(mut ids: Vec<String>) -> Vec<String> {
        ids.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        ids
    }

    /// The LTV segment of a total spend under the current thresholds
    /// (`golden360.ltv_*` settings): VIP above the VIP threshold, High from
    /// the high threshold up to it, Medium from the medium threshold, else Low.
    #[pg_extern(stable, parallel_safe, strict)]
    pub fn ltv_segment(total_spend: pgrx::AnyNumeric) -> &'static str {
        let spend: f64 = total_spend.try_into().unwrap_or(f64::MAX);
        crate::ops::ltv_segment(spend)
    }
}
