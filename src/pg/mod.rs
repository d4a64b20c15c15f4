//! The PostgreSQL-facing layer: every raw `pg_sys` call of the extension's
//! data path lives here, behind safe wrappers whose guards close and
//! restore in `Drop`. The layers (bronze, silver, gold) use these only.
//!
//! - `types`: the SQL types golden360's tables declare, as type OIDs and typmods
//!   (and `Datum`, `Oid`: the two PostgreSQL types the layers name);
//! - `relation`: finding golden360's *own* tables (extension members, plain
//!   tables, exactly the declared columns) and checking privileges;
//! - `owner`: running a step as the extension's owner with a safe search_path;
//! - `scan`: sequential heap scans and btree index scans that read datums in place,
//!   under a `Lock` the layer names;
//! - `bulk`: COPY-style multi-inserts, tuple deletes and row building;
//! - `sort`: byte strings sorted by tuplesort within `maintenance_work_mem`, spilling beyond it;
//! - `context`: memory contexts for one row's datums, and a writer's batch context;
//! - `helper`: helper threads for work that touches no PostgreSQL state,
//!   spawned with signals blocked and waited for with cancel checks (and the
//!   cancel check itself);
//! - `rust_heap`: the Rust heap listed among the backend's memory contexts;
//! - `worker`: a step's independent part run in a background worker, its
//!   input and output in dynamic shared memory;
//! - `snapshot`: seeing the refresh's own writes under the statement's
//!   snapshot, the transaction's start time, and whether it is a block.

pub mod bulk;
pub mod context;
pub mod helper;
pub mod owner;
pub mod relation;
pub mod rust_heap;
pub mod scan;
pub mod snapshot;
pub mod sort;
pub mod types;
pub mod worker;

/// The boundary, checked on the sources: the layers name no `pg_sys` (a
/// raw call or a raw type that escaped this module), and every `unsafe`
/// block says, in its own `// SAFETY:` note, why it is sound.
#[cfg(test)]
mod boundary {
    use std::path::{Path, PathBuf};

    fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("a source directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                sources(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    /// The code part of a line (comments aside).
    fn code(line: &str) -> &str {
        line.split("//").next().unwrap_or_default()
    }

    #[test]
    fn the_layers_name_no_pg_sys() {
        let mut files = Vec::new();
        for layer in ["bronze", "silver", "gold"] {
            sources(&src().join(layer), &mut files);
        }
        files.extend(["lib.rs", "ops.rs", "keys.rs"].map(|f| src().join(f)));
        let mut escaped = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).expect("a source file");
            for (n, line) in text.lines().enumerate() {
                if code(line).contains("pg_sys") {
                    escaped.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
        assert!(files.len() > 20, "the layers' files were not found: {files:?}");
        assert!(escaped.is_empty(), "pg_sys outside src/pg (wrap it there):\n{}", escaped.join("\n"));
        // The check can fail: this module's own files do name it.
        let scan = std::fs::read_to_string(src().join("pg/scan.rs")).expect("scan.rs");
        assert!(scan.lines().any(|l| code(l).contains("pg_sys::table_open")));
    }

    #[test]
    fn every_unsafe_block_has_its_own_safety_note() {
        let mut files = Vec::new();
        sources(&src(), &mut files);
        let (mut blocks, mut unexplained) = (0, Vec::new());
        for file in &files {
            let text = std::fs::read_to_string(file).expect("a source file");
            // The note must come after the previous unsafe block and at most
            // this many lines above (a statement may span a few).
            const WITHIN: usize = 12;
            let (mut last_note, mut last_block): (Option<usize>, Option<usize>) = (None, None);
            for (n, line) in text.lines().enumerate() {
                if line.contains("SAFETY:") {
                    last_note = Some(n);
                }
                let code = code(line);
                let is_block = code.match_indices("unsafe").any(|(at, _)| {
                    let before_ok = code[..at].chars().last().is_none_or(|c| !c.is_alphanumeric() && c != '_');
                    code[at + "unsafe".len()..].trim_start().starts_with('{') && before_ok
                });
                if is_block {
                    blocks += 1;
                    let explained = last_note.is_some_and(|note| n - note <= WITHIN && last_block.is_none_or(|b| note > b));
                    if !explained {
                        unexplained.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                    }
                    last_block = Some(n);
                }
            }
        }
        assert!(blocks > 50, "only {blocks} unsafe blocks found: the scan is broken");
        assert!(unexplained.is_empty(), "unsafe blocks without their own // SAFETY: note:\n{}", unexplained.join("\n"));
    }
}
