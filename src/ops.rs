//! Operations: the `golden360.*` settings (GUCs). Every tunable the
//! extension reads is declared here, with its default and who may change it.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::PostgresGucEnum;
use std::ffi::CString;
use std::path::PathBuf;

/// `golden360.data_dir`: when set, ingestion reads only below this directory.
/// Superuser-only, so the role being confined cannot lift its own fence.
static DATA_DIR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// `golden360.quality_gate`: what a failed quality threshold does to a run.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum QualityGate {
    /// The run fails and the layer keeps its previous contents.
    #[name = c"error"]
    Error,
    /// The run completes; the check is recorded as failed and a WARNING raised.
    #[name = c"warn"]
    Warn,
}

static QUALITY_GATE: GucSetting<QualityGate> = GucSetting::<QualityGate>::new(QualityGate::Error);

/// LTV segment thresholds on total_spend (BRL): VIP > vip; High >= high and
/// <= vip; Medium >= medium and < high; Low below.
static LTV_VIP_ABOVE: GucSetting<f64> = GucSetting::<f64>::new(5000.0);
static LTV_HIGH_FROM: GucSetting<f64> = GucSetting::<f64>::new(1000.0);
static LTV_MEDIUM_FROM: GucSetting<f64> = GucSetting::<f64>::new(200.0);

/// The segment of a total spend under the current settings.
pub fn ltv_segment(spend: f64) -> &'static str {
    if spend > LTV_VIP_ABOVE.get() {
        "VIP"
    } else if spend >= LTV_HIGH_FROM.get() {
        "High"
    } else if spend >= LTV_MEDIUM_FROM.get() {
        "Medium"
    } else {
        "Low"
    }
}

pub fn register_settings() {
    GucRegistry::define_enum_guc(
        c"golden360.quality_gate",
        c"What a failed quality threshold does: error (fail the run, keep the previous data) or warn.",
        c"Thresholds are in golden360.quality_thresholds; results in golden360.quality_checks.",
        &QUALITY_GATE,
        GucContext::Userset,
        GucFlags::default(),
    );
    for (name, description, setting) in [
        (c"golden360.ltv_vip_above", c"total_spend above which a person is VIP.", &LTV_VIP_ABOVE),
        (c"golden360.ltv_high_from", c"total_spend from which a person is High (up to the VIP threshold).", &LTV_HIGH_FROM),
        (c"golden360.ltv_medium_from", c"total_spend from which a person is Medium (below High).", &LTV_MEDIUM_FROM),
    ] {
        GucRegistry::define_float_guc(
            name,
            description,
            c"Used by golden360.refresh_gold() for gold.unified_customer_360.ltv_segment.",
            setting,
            0.0,
            1e12,
            GucContext::Userset,
            GucFlags::default(),
        );
    }
    GucRegistry::define_string_guc(
        c"golden360.data_dir",
        c"Directory that golden360.ingest_bronze may read from (empty: any absolute path).",
        c"When set, source directories and files must resolve (after following symlinks and '..') \
          to a path inside it.",
        &DATA_DIR,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// The confinement root, if `golden360.data_dir` is set to a non-empty value.
pub fn data_dir() -> Option<PathBuf> {
    DATA_DIR
        .get()
        .and_then(|dir| dir.into_string().ok())
        .filter(|dir| !dir.trim().is_empty())
        .map(PathBuf::from)
}

#[pgrx::pg_schema]
pub mod golden360 {
    use crate::error::raise;
    use pgrx::prelude::*;

    /// Raise a clear error when called inside BEGIN ... COMMIT: `what`
    /// commits as it goes (so a failed run stays recorded), which PostgreSQL
    /// only allows for a CALL that is a transaction of its own.
    #[pg_extern(volatile, parallel_unsafe)]
    fn assert_outside_transaction_block(what: &str) {
        // SAFETY: reads the backend's transaction state; no arguments.
        if unsafe { pg_sys::IsTransactionBlock() } {
            raise(
                PgSqlErrorCode::ERRCODE_ACTIVE_SQL_TRANSACTION,
                format!("{what} cannot run inside a transaction block"),
                None,
                &format!("Run CALL {what} on its own, not between BEGIN and COMMIT."),
            );
        }
    }
}
