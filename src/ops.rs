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

pub fn register_settings() {
    GucRegistry::define_enum_guc(
        c"golden360.quality_gate",
        c"What a failed quality threshold does: error (fail the run, keep the previous data) or warn.",
        c"Thresholds are in golden360.quality_thresholds; results in golden360.quality_checks.",
        &QUALITY_GATE,
        GucContext::Userset,
        GucFlags::default(),
    );
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
