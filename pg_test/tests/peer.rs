//! The extension against an independent computation: the SPEC's silver and
//! gold as plain SQL (`bench/peer/sql`, the benchmark's peer), run on the
//! same files in a schema of the same database, must give the same silver
//! tables, the same quarantine (row and rule) and the same golden records
//! and bridge, row for row.

use golden360_it::{cluster_address, connect, count, fresh_database, generate, generate_with, project_dir, real_olist_dir, ScratchDir};
use olist_model::SOURCE_FILES;
use postgres::Client;
use std::path::Path;
use std::process::Command;

/// Run the plain-SQL pipeline on `batches` (directories, in delivery
/// order) into schema `peer` of `db`, through the benchmark's own runner
/// (`bench/peer/sql_peer.py`: it loads each batch, skipping a file an
/// earlier batch landed as bronze does by SHA-256).
fn run_peer(db: &str, batches: &[&Path]) {
    let runner = project_dir().join("bench/peer/sql_peer.py");
    let (host, port) = cluster_address();
    let out = Command::new("python3")
        .env("PGHOST", host)
        .env("PGPORT", port.to_string())
        .arg(&runner)
        .args(["postgres-schema", db, "peer"])
        .args(batches)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", runner.display()));
    assert!(out.status.success(), "the peer failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Rows of `ours` not in `theirs` and the other way round (with
/// multiplicity), over the peer table's columns; doubles compared to 1e-9,
/// as the extension sums coordinates in fixed point.
fn differences(c: &mut Client, ours: &str, theirs: &str) -> i64 {
    let (schema, table) = theirs.split_once('.').unwrap();
    let columns: Vec<String> = c
        .query(
            "SELECT CASE WHEN data_type = 'double precision' AND table_name LIKE 'g\\_%'
                         THEN format('round(%I::numeric, 9) AS %I', column_name, column_name)
                         ELSE quote_ident(column_name) END
               FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            &[&schema, &table],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!columns.is_empty(), "{theirs} has columns");
    let list = columns.join(", ");
    let diff = |a: &str, b: &str| format!("(SELECT {list} FROM {a} EXCEPT ALL SELECT {list} FROM {b})");
    let sql = format!("SELECT count(*) FROM ({} UNION ALL {}) d", diff(ours, theirs), diff(theirs, ours));
    let n = count(c, &sql);
    if n > 0 {
        let sample: Vec<String> = c
            .query(&format!("SELECT 'ours: ' || d::text FROM {} d LIMIT 3", diff(ours, theirs)), &[])
            .unwrap()
            .iter()
            .chain(c.query(&format!("SELECT 'peer: ' || d::text FROM {} d LIMIT 3", diff(theirs, ours)), &[]).unwrap().iter())
            .map(|r| r.get(0))
            .collect();
        eprintln!("{ours} vs {theirs}: {n} rows differ, e.g.\n  {}", sample.join("\n  "));
    }
    n
}

/// Everything the two computed, compared: returns the comparisons that differ.
fn compare(c: &mut Client) -> Vec<String> {
    let mut differ = Vec::new();
    let mut check = |c: &mut Client, ours: &str, theirs: &str| {
        if differences(c, ours, theirs) > 0 {
            differ.push(format!("{ours} vs {theirs}"));
        }
    };
    for file in &SOURCE_FILES {
        check(c, &format!("silver.{}", file.table), &format!("peer.s_{}", file.table));
    }
    c.batch_execute(
        "CREATE VIEW peer.ours_quarantine AS
             SELECT q.table_name, b.batch, q.row_number AS rn, q.reason
               FROM silver.quarantine q
               JOIN (SELECT batch_id, row_number() OVER (ORDER BY batch_id) AS batch FROM golden360.bronze_batches) b
                 USING (batch_id);
         CREATE VIEW peer.ours_duplicates AS SELECT table_name, duplicates FROM golden360.silver_runs
                                              WHERE run_id = (SELECT max(run_id) FROM golden360.silver_runs);
         CREATE VIEW peer.peer_duplicates AS SELECT table_name, valid_rows - silver_rows AS duplicates FROM peer.s_counts;",
    )
    .unwrap();
    check(c, "peer.ours_quarantine", "peer.s_quarantine");
    check(c, "peer.ours_duplicates", "peer.peer_duplicates");
    check(c, "gold.unified_customer_360", "peer.g_customer_360");
    check(c, "gold.identity_bridge", "peer.g_bridge");
    differ
}

/// Ingest `dir` as the next batch and refresh (incrementally after the
/// first), then compare with the peer run on all the batches so far.
fn assert_same_as_the_peer(c: &mut Client, batches: &[&Path], what: &str) {
    c.batch_execute("SET golden360.quality_gate = warn").unwrap();
    let dir = batches.last().unwrap().to_str().unwrap();
    c.query("SELECT * FROM golden360.ingest_bronze($1, true)", &[&dir]).unwrap();
    c.batch_execute("CALL golden360.refresh_silver(); CALL golden360.refresh_gold()").unwrap();
    let db: String = c.query_one("SELECT current_database()::text", &[]).unwrap().get(0);
    run_peer(&db, batches);
    let people = count(c, "SELECT count(*) FROM peer.g_customer_360");
    assert!(people > 1000, "{what}: the peer computed {people} golden records");
    let differ = compare(c);
    assert!(differ.is_empty(), "{what}: the extension and the plain-SQL peer differ in {differ:?} (rows on stderr)");
}

/// On a generated sample with every kind of dirt, type dirt included.
#[test]
fn silver_and_gold_equal_the_plain_sql_peer_on_a_dirty_sample() {
    let db = fresh_database("peer_sample");
    let dir = ScratchDir::new("peer_sample");
    generate_with(&dir.0, 0.05, 91, &["--type-dirt"]);
    assert_same_as_the_peer(&mut connect(&db), &[&dir.0], "a dirty sample");
}

/// On the real Olist copy.
#[test]
fn silver_and_gold_equal_the_plain_sql_peer_on_the_real_data() {
    let db = fresh_database("peer_real");
    assert_same_as_the_peer(&mut connect(&db), &[&real_olist_dir()], "the real data");
}

/// After each batch of a sequence applied incrementally (deltas of every
/// kind of change, and full exports whose unchanged files bronze skips),
/// the extension equals the peer computing everything afresh from all the
/// batches: the incremental path against a computation that shares none of
/// its code.
#[test]
fn every_incremental_refresh_of_a_sequence_equals_the_plain_sql_peer_on_all_batches() {
    let db = fresh_database("peer_sequence");
    let mut c = connect(&db);
    let base = ScratchDir::new("peer_sequence_base");
    generate(&base.0, 0.03, 93);
    let mut dirs = vec![base];
    let paths = |dirs: &[ScratchDir]| dirs.iter().map(|d| d.0.clone()).collect::<Vec<_>>();
    let check = |c: &mut Client, dirs: &[ScratchDir], what: &str| {
        let paths = paths(dirs);
        assert_same_as_the_peer(c, &paths.iter().map(|p| p.as_path()).collect::<Vec<_>>(), what);
    };
    check(&mut c, &dirs, "the base");
    for (k, full_export) in [(1, false), (2, false), (3, true), (4, false), (5, false), (6, false), (7, true)] {
        let dir = ScratchDir::new(&format!("peer_sequence_{k}"));
        let k_text = k.to_string();
        let mut flags = vec!["--batch", k_text.as_str()];
        if full_export {
            flags.push("--full-export");
        }
        generate_with(&dir.0, 0.03, 93, &flags);
        dirs.push(dir);
        check(&mut c, &dirs, &format!("batch {k}"));
    }
    let (silver, gold): (String, String) = c
        .query_one(
            "SELECT (SELECT mode FROM golden360.silver_runs ORDER BY run_id DESC LIMIT 1),
                    (SELECT mode FROM golden360.gold_runs ORDER BY run_id DESC LIMIT 1)",
            &[],
        )
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((silver.as_str(), gold.as_str()), ("incremental", "incremental"), "the last refreshes were incremental");
}
