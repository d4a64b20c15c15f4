//! Operations: the `golden360.*` settings (GUCs). Every tunable the
//! extension reads is declared here, with its default and who may change it.

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;
use std::path::PathBuf;

/// `golden360.data_dir`: when set, ingestion reads only below this directory.
/// Superuser-only, so the role being confined cannot lift its own fence.
static DATA_DIR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

pub fn register_settings() {
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
