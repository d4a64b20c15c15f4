//! Silver: typed, validated, deduplicated Olist tables, with quarantine and
//! quality checks. Owns schema `silver`, `golden360.silver_rules`,
//! `golden360.quality_checks` (layer 'silver') and the procedure
//! `golden360.refresh_silver()` (sql/silver.sql): it bulk-loads a shadow
//! generation (`silver_next`) with `build_silver`, indexes, checks and gates
//! it, then swaps it with `silver` in the same transaction.
//!
//! The rules live in `spec.rs`; the SQL functions below expose them so the
//! DDL, the rule list and the quality checks derive from the same place.

use pgrx::prelude::*;

mod build;
pub(crate) mod parse;
mod spec;
#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// The SQL-facing functions, in schema `golden360`.
#[pg_schema]
pub mod golden360 {
    use super::build;
    use super::spec::{Ty, TABLES};
    use pgrx::prelude::*;

    /// The silver tables in build order, with their key columns (empty for
    /// geolocation, deduplicated on whole rows) and the bronze tables their
    /// content depends on (their own and, through reference rules, parents').
    #[pg_extern(immutable, parallel_safe)]
    fn silver_tables() -> TableIterator<
        'static,
        (name!(table_name, String), name!(build_order, i32), name!(key, Vec<String>), name!(inputs, Vec<String>)),
    > {
        TableIterator::new(TABLES.iter().enumerate().map(|(i, t)| {
            (
                t.table.to_string(),
                i as i32 + 1,
                t.key().iter().map(|k| k.to_string()).collect(),
                t.inputs().iter().map(|k| k.to_string()).collect(),
            )
        }))
    }

    /// Every silver column: its source in bronze, SQL type and nullability.
    #[pg_extern(immutable, parallel_safe)]
    fn silver_columns() -> TableIterator<
        'static,
        (
            name!(table_name, String),
            name!(ordinal, i32),
            name!(column_name, String),
            name!(bronze_column, String),
            name!(sql_type, String),
            name!(not_null, bool),
        ),
    > {
        TableIterator::new(TABLES.iter().flat_map(|t| {
            t.columns.iter().enumerate().map(move |(i, c)| {
                (
                    t.table.to_string(),
                    i as i32 + 1,
                    c.name.to_string(),
                    c.source.to_string(),
                    c.ty.sql_type().to_string(),
                    c.required.is_some() || c.ty == Ty::Comment,
                )
            })
        }))
    }

    /// Every silver rule in evaluation order: the list a DBA reads as
    /// `golden360.silver_rules`.
    #[pg_extern(immutable, parallel_safe)]
    fn silver_rule_list() -> TableIterator<
        'static,
        (
            name!(table_name, String),
            name!(ordinal, i32),
            name!(rule_name, String),
            name!(kind, String),
            name!(columns, Vec<String>),
            name!(description, String),
        ),
    > {
        TableIterator::new(TABLES.iter().flat_map(|t| {
            t.rules().into_iter().enumerate().map(move |(i, r)| {
                (
                    t.table.to_string(),
                    i as i32 + 1,
                    r.name,
                    r.kind.as_str().to_string(),
                    r.columns.iter().map(|c| c.to_string()).collect(),
                    r.description,
                )
            })
        }))
    }

    /// Build every silver table from bronze into the (emptied) tables of
    /// `target_schema`. Internal: called by `golden360.refresh_silver()`,
    /// which prepares the shadow generation, checks it and swaps it in.
    #[pg_extern(volatile, parallel_unsafe)]
    fn build_silver(
        run_id: i64,
        target_schema: &str,
    ) -> TableIterator<
        'static,
        (
            name!(table_name, String),
            name!(bronze_rows, i64),
            name!(silver_rows, i64),
            name!(duplicates, i64),
            name!(quarantined, i64),
            name!(millis, f64),
        ),
    > {
        let stats = build::build_all(run_id, target_schema);
        TableIterator::new(stats.into_iter().map(|s| {
            (s.table.to_string(), s.bronze_rows, s.silver_rows, s.duplicates, s.quarantined, s.millis)
        }))
    }
}
