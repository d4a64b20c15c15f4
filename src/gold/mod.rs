//! Gold: the identity bridge and the unified customer 360. Owns schema
//! `gold`, `golden360.rfm_segments`, the LTV thresholds (settings in
//! `ops`) and the procedure `golden360.refresh_gold()` (sql/gold.sql), which
//! brings gold up to date with silver in one transaction and cross-checks it.
//!
//! Rust computes the records (`build.rs`) and, separately, the
//! cross-checks (`checks.rs`); SQL holds the tables, the RFM map, and the
//! procedure that records the checks and gates on them.

use pgrx::prelude::*;

mod build;
mod changes;
mod checks;
pub(crate) mod spec;
#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// Public functions, in schema `golden360`.
#[pg_schema]
pub mod golden360 {
    use pgrx::prelude::*;
    use sha2::{Digest, Sha256};

    /// A person's golden id: lower-case hex SHA-256 of the UTF-8 string
    /// `customer_unique_id || canonical_customer_id`.
    #[pg_extern(immutable, parallel_safe, strict)]
    pub fn golden_id(customer_unique_id: &str, canonical_customer_id: &str) -> String {
        hex::encode(golden_id_digest(customer_unique_id.as_bytes(), canonical_customer_id.as_bytes()))
    }

    /// The SHA-256 behind a golden id.
    pub fn golden_id_digest(customer_unique_id: &[u8], canonical_customer_id: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(customer_unique_id);
        hasher.update(canonical_customer_id);
        hasher.finalize().into()
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

/// Internal functions (schema `golden360_internal`, which only the
/// extension's owner may use).
#[pg_schema]
pub mod golden360_internal {
    use pgrx::prelude::*;

    /// The columns of gold table `table_name` (`identity_bridge` or
    /// `unified_customer_360`) as `src/gold/spec.rs` declares them, for the
    /// DDL and the column comments; the first is the primary key.
    #[pg_extern(immutable, parallel_safe, strict)]
    fn gold_columns(
        table_name: &str,
    ) -> TableIterator<
        'static,
        (
            name!(ordinal, i32),
            name!(column_name, String),
            name!(sql_type, String),
            name!(not_null, bool),
            name!(byte_order, bool),
            name!(description, Option<String>),
        ),
    > {
        let columns = super::spec::table(table_name).unwrap_or_else(|| {
            crate::error::raise(
                pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("gold has no table {table_name}"),
                None,
                "The gold tables are identity_bridge and unified_customer_360.",
            )
        });
        TableIterator::new(columns.iter().enumerate().map(|(i, c)| {
            (
                i as i32 + 1,
                c.column.name.to_string(),
                c.column.ty.sql(),
                c.not_null,
                c.byte_order,
                (!c.description.is_empty()).then(|| c.description.to_string()),
            )
        }))
    }

    /// Bring gold up to date with silver, writing only the records (and
    /// bridge rows) that differ: for everyone when `everyone` is set or
    /// silver was rebuilt in full since, else for the people silver's
    /// logged changes lead to. Called by `golden360.refresh_gold()`, which
    /// serialises refreshes, cross-checks the result and consumes the log
    /// up to `up_to_run`; on its own it does neither.
    #[pg_extern]
    fn build_gold(
        everyone: bool,
    ) -> TableIterator<
        'static,
        (
            name!(mode, &'static str),
            name!(recomputed, i64),
            name!(written, i64),
            name!(removed, i64),
            name!(bridge_written, i64),
            name!(bridge_removed, i64),
            name!(added, i64),
            name!(bridge_added, i64),
            name!(up_to_run, i64),
        ),
    > {
        crate::memory::step_started();
        let pending = super::changes::pending();
        let (mode, scope) = if everyone || pending.everyone {
            ("full", super::build::Scope::Everyone)
        } else {
            ("incremental", super::build::Scope::People { people: pending.people, zips: pending.zips })
        };
        let o = super::build::refresh(&scope);
        TableIterator::once((mode, o.people, o.written, o.removed, o.bridge_written, o.bridge_removed, o.added, o.bridge_added, pending.up_to_run))
    }

    /// The SPEC's gold cross-checks on what silver and gold hold now:
    /// (check, passed, failed), over everyone or, as `build_gold` chose,
    /// over the people silver's logged changes lead to.
    /// `golden360.refresh_gold()` records them and fails on any failure.
    #[pg_extern(stable)]
    fn gold_cross_checks(
        everyone: bool,
    ) -> TableIterator<'static, (name!(check_name, &'static str), name!(passed, i64), name!(failed, i64))> {
        // A full check needs no change log; an incremental one checks the
        // people build_gold computed from it.
        let people = if everyone {
            None
        } else {
            let pending = super::changes::pending();
            (!pending.everyone).then_some(pending.people)
        };
        TableIterator::new(super::checks::run(people.as_deref()).into_iter().map(|c| (c.name, c.passed, c.failed)))
    }
}
