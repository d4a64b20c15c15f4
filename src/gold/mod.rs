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
mod rfm;
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

    /// The columns the RFM scores rank by, in score order, each with the
    /// name of its index on gold and the condition for being ranked (the
    /// index's predicate), for `golden360_internal.create_gold_indexes()`.
    #[pg_extern(immutable, parallel_safe)]
    fn rfm_rank_columns(
    ) -> TableIterator<'static, (name!(dimension, i32), name!(column_name, String), name!(index_name, String), name!(ranked, &'static str))>
    {
        TableIterator::new(super::rfm::DIMENSIONS.iter().enumerate().map(|(d, (column, _))| {
            let name = super::spec::CUSTOMER_360[column.at()].column.name;
            (d as i32 + 1, name.to_string(), format!("unified_customer_360_rfm_{name}"), super::rfm::RANKED)
        }))
    }

    /// Bring gold up to date with silver, writing only the records (and
    /// bridge rows) that differ: for everyone when `everyone` is set or
    /// silver was rebuilt in full since, else for the people silver's
    /// logged changes lead to. Called by `golden360.refresh_gold()`, which
    /// serialises refreshes, cross-checks the result (for `people`: those
    /// computed, NULL for everyone) and consumes the log up to `up_to_run`;
    /// on its own it does neither.
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
            name!(people, Option<Vec<String>>),
            name!(passes, i64),
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
        let people = match scope {
            super::build::Scope::Everyone => None,
            super::build::Scope::People { people, .. } => {
                Some(people.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect())
            }
        };
        TableIterator::once((
            mode,
            o.people,
            o.written,
            o.removed,
            o.bridge_written,
            o.bridge_removed,
            o.added,
            o.bridge_added,
            pending.up_to_run,
            people,
            o.passes,
        ))
    }

    /// The SPEC's gold cross-checks on what silver and gold hold now:
    /// (check, passed, failed), over everyone (`people` NULL) or over these
    /// customer_unique_ids, the ones `build_gold` computed.
    /// `golden360.refresh_gold()` records them and fails on any failure.
    #[pg_extern(stable)]
    fn gold_cross_checks(
        people: Option<Vec<String>>,
    ) -> TableIterator<'static, (name!(check_name, &'static str), name!(passed, i64), name!(failed, i64))> {
        let people: Option<Vec<Vec<u8>>> = people.map(|p| p.into_iter().map(String::into_bytes).collect());
        TableIterator::new(super::checks::run(people.as_deref()).into_iter().map(|c| (c.name, c.passed, c.failed)))
    }
}
