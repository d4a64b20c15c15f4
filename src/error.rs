//! Errors a DBA can act on: every failure the extension raises goes through
//! `raise`, with a SQLSTATE, a message naming what is wrong, and a hint.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Raise an ERROR. `detail` is optional context (expected vs found, a list);
/// `hint` says what to do about it.
#[track_caller]
pub fn raise(code: PgSqlErrorCode, message: impl Into<String>, detail: Option<String>, hint: &str) -> ! {
    let mut report = ErrorReport::new(code, message.into(), "golden360");
    if let Some(detail) = detail {
        report = report.set_detail(detail);
    }
    if !hint.is_empty() {
        report = report.set_hint(hint);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("an ERROR report does not return")
}

/// Raise the ERROR of an internal query that failed: "`what` failed: `e`",
/// SQLSTATE XX000, with `hint`.
#[track_caller]
pub fn spi_failed(what: &str, e: impl std::fmt::Display, hint: &str) -> ! {
    raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("{what} failed: {e}"), None, hint)
}
