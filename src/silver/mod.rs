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
mod incremental;
pub(crate) mod parse;
pub(crate) mod spec;
#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// The rule list, public: it backs the view `golden360.silver_rules`.
#[pg_schema]
pub mod golden360 {
    use super::spec::TABLES;
    use pgrx::prelude::*;

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
}

/// Internal functions (schema `golden360_internal`, which only the
/// extension's owner may use): the declarations the DDL is made from, and
/// the build.
#[pg_schema]
pub mod golden360_internal {
    use super::build;
    use super::spec::TABLES;
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
                    c.ty.sql_type().sql(),
                    c.not_null(),
                )
            })
        }))
    }

    /// golden360_internal.silver_changes' columns and their SQL types, for its DDL.
    #[pg_extern(immutable, parallel_safe)]
    fn silver_change_columns(
    ) -> TableIterator<'static, (name!(ordinal, i32), name!(column_name, String), name!(sql_type, String))> {
        TableIterator::new(
            super::incremental::CHANGE_COLUMNS.iter().enumerate().map(|(i, c)| (i as i32 + 1, c.name.to_string(), c.ty.sql())),
        )
    }

    /// Apply the bronze batches `batches` (ones silver has not seen) to
    /// the live silver tables in place: what each table's counts change by.
    /// Called by `golden360.refresh_silver()`, which checks and gates the
    /// result before it commits.
    #[pg_extern(volatile, parallel_unsafe)]
    fn apply_silver(
        run_id: i64,
        batches: Vec<i64>,
    ) -> TableIterator<
        'static,
        (
            name!(table_name, String),
            name!(bronze_rows, i64),
            name!(silver_rows, i64),
            name!(duplicates, i64),
            name!(quarantined, i64),
            name!(written, i64),
            name!(millis, f64),
        ),
    > {
        crate::memory::step_started();
        let deltas = super::incremental::apply_all(run_id, &batches);
        TableIterator::new(deltas.into_iter().map(|d| {
            (d.table.to_string(), d.bronze_rows, d.silver_rows, d.duplicates, d.quarantined, d.written, d.millis)
        }))
    }

    /// silver.quarantine's columns and their SQL types, for its DDL.
    #[pg_extern(immutable, parallel_safe)]
    fn quarantine_columns(
    ) -> TableIterator<'static, (name!(ordinal, i32), name!(column_name, String), name!(sql_type, String))> {
        TableIterator::new(
            build::QUARANTINE_COLUMNS.iter().enumerate().map(|(i, c)| (i as i32 + 1, c.name.to_string(), c.ty.sql())),
        )
    }

    /// Build every silver table from bronze into the (emptied) shadow
    /// generation `silver_next`. Called by `golden360.refresh_silver()`,
    /// which prepares the shadow, checks it and swaps it in.
    #[pg_extern(volatile, parallel_unsafe)]
    fn build_silver(
        run_id: i64,
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
        crate::memory::step_started();
        let stats = build::build_all(run_id);
        TableIterator::new(stats.into_iter().map(|s| {
            (s.table.to_string(), s.bronze_rows, s.silver_rows, s.duplicates, s.quarantined, s.millis)
        }))
    }
}
