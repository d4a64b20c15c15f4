//! Bronze across connections and commits: what a single rolled-back
//! transaction cannot show.

use golden360_it::{connect, fresh_database, generate, sha256sum, ScratchDir};
use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

const INGEST: &str = "SELECT file_name, status, rows, rejected, sha256 FROM golden360.ingest_bronze($1)";

/// The generated sample lands whole: every table has the generator's row
/// count, nothing is rejected, every sha256 equals `sha256sum`'s.
#[test]
fn the_generated_sample_lands_whole() {
    let db = fresh_database("sample");
    let dir = ScratchDir::new("sample");
    let summary = generate(&dir.0, 0.01, 7);
    let mut client = connect(&db);
    let rows = client.query(INGEST, &[&dir.path()]).unwrap();
    assert_eq!(rows.len(), 9);
    for row in &rows {
        let file: String = row.get(0);
        let status: String = row.get(1);
        let loaded: i64 = row.get(2);
        let rejected: i64 = row.get(3);
        let sha: String = row.get(4);
        assert_eq!(status, "loaded", "{file}");
        assert_eq!(loaded, summary["rows"][&file].as_i64().unwrap(), "{file}");
        assert_eq!(rejected, 0, "{file}");
        assert_eq!(sha, sha256sum(&dir.0.join(&file)), "{file}");
    }
    let tables: Vec<(String, String)> = client
        .query("SELECT file_name, table_name FROM golden360.source_files()", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (file, table) in tables {
        let count: i64 = client.query_one(&format!("SELECT count(*) FROM bronze.{table}"), &[]).unwrap().get(0);
        assert_eq!(count, summary["rows"][&file].as_i64().unwrap(), "bronze.{table}");
    }
}

/// Two sessions ingesting the same directory at once: each file is loaded
/// exactly once, the other session reports it skipped.
#[test]
fn concurrent_ingestions_load_each_file_once() {
    let db = fresh_database("concurrent");
    let dir = Arc::new(ScratchDir::new("concurrent"));
    let summary = generate(&dir.0, 0.01, 11);
    let barrier = Arc::new(Barrier::new(2));
    let sessions: Vec<_> = (0..2)
        .map(|_| {
            let (db, dir, barrier) = (db.to_string(), dir.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut client = connect(&db);
                barrier.wait();
                client
                    .query(INGEST, &[&dir.path()])
                    .unwrap()
                    .iter()
                    .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut statuses: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for session in sessions {
        for (file, status) in session.join().unwrap() {
            statuses.entry(file).or_default().push(status);
        }
    }
    for (file, mut seen) in statuses {
        seen.sort();
        assert_eq!(seen, ["loaded", "skipped_duplicate"], "{file}");
    }
    let mut client = connect(&db);
    let customers: i64 = client.query_one("SELECT count(*) FROM bronze.customers", &[]).unwrap().get(0);
    assert_eq!(customers, summary["rows"]["olist_customers_dataset.csv"].as_i64().unwrap());
    let batches: i64 = client.query_one("SELECT count(*) FROM golden360.bronze_batches", &[]).unwrap().get(0);
    assert_eq!(batches, 2);
}

/// A batch is invisible to other sessions until it commits, then whole.
#[test]
fn a_batch_is_invisible_until_it_commits() {
    let db = fresh_database("visibility");
    let dir = ScratchDir::new("visibility");
    let summary = generate(&dir.0, 0.01, 13);
    let expected = summary["rows"]["olist_geolocation_dataset.csv"].as_i64().unwrap();
    let mut writer = connect(&db);
    let mut reader = connect(&db);
    let count = |c: &mut postgres::Client| -> i64 { c.query_one("SELECT count(*) FROM bronze.geolocation", &[]).unwrap().get(0) };

    let mut tx = writer.transaction().unwrap();
    tx.query(INGEST, &[&dir.path()]).unwrap();
    assert_eq!(count(&mut reader), 0, "uncommitted rows visible to another session");
    tx.commit().unwrap();
    assert_eq!(count(&mut reader), expected);
}

/// A failed ingestion leaves nothing behind, seen from another session after
/// the failure: no bronze row, no batch, no file in the idempotency index.
#[test]
fn a_failed_ingestion_leaves_nothing_behind() {
    let db = fresh_database("failed");
    let dir = ScratchDir::new("failed");
    generate(&dir.0, 0.01, 17);
    std::fs::write(dir.0.join("olist_order_reviews_dataset.csv"), "review_id,order_id\nr1,o1\n").unwrap();
    let mut client = connect(&db);
    let error = client.query(INGEST, &[&dir.path()]).unwrap_err();
    let message = error.as_db_error().unwrap().message().to_string();
    assert!(message.contains("olist_order_reviews_dataset.csv has the wrong header"), "{message}");

    let mut other = connect(&db);
    let leftovers: i64 = other
        .query_one(
            "SELECT (SELECT count(*) FROM bronze.customers) + (SELECT count(*) FROM bronze.geolocation)
                  + (SELECT count(*) FROM golden360.bronze_batches) + (SELECT count(*) FROM golden360.bronze_files)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0);
}


/// DROP EXTENSION removes every schema and function it created.
#[test]
fn drop_extension_leaves_nothing_behind() {
    let db = fresh_database("drop");
    let mut client = connect(&db);
    client.batch_execute("DROP EXTENSION golden360 CASCADE").unwrap();
    let leftovers: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_namespace
                      WHERE nspname IN ('golden360', 'bronze', 'silver', 'silver_next', 'silver_swap', 'gold', 'api'))
                  + (SELECT count(*) FROM pg_proc WHERE proname IN ('ingest_bronze', 'source_files', 'bronze_manifest'))
                  + (SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'golden360%')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0);
    client.batch_execute("CREATE EXTENSION golden360").unwrap(); // and it installs again
}

/// Parsing ahead on helper threads stores exactly what the backend's own
/// thread stores: every bronze row with its lineage (but the clock), every
/// rejected record, every file's hash and counts, on a sample whose files
/// span many hand-over batches and whose sellers file (over the megabyte
/// from which files are parsed ahead) ends in malformed and over-long
/// records.
#[test]
fn parsing_ahead_on_a_helper_thread_stores_what_the_backend_alone_stores() {
    let dir = ScratchDir::new("helper_threads");
    generate(&dir.0, 0.05, 31);
    let sellers = dir.0.join("olist_sellers_dataset.csv");
    let mut tail = std::fs::read(&sellers).unwrap();
    tail.extend_from_slice(b"short,1\n\"unterminated");
    tail.extend(std::iter::repeat_n(b'x', 3 << 20));
    std::fs::write(&sellers, tail).unwrap();
    let stored = |threads: i32| {
        let db = fresh_database(&format!("helper_threads_{threads}"));
        let mut c = connect(&db);
        c.batch_execute(&format!("SET golden360.helper_threads = {threads}")).unwrap();
        let files: Vec<(String, String, i64, i64, String)> = c
            .query(INGEST, &[&dir.path()])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect();
        let mut digests = BTreeMap::new();
        let tables: Vec<String> =
            c.query("SELECT table_name FROM golden360.source_files()", &[]).unwrap().iter().map(|r| r.get(0)).collect();
        for table in tables.iter().map(|t| format!("bronze.{t}")).chain(["bronze.rejected_rows".to_string()]) {
            let digest: String = c
                .query_one(
                    &format!(
                        "SELECT count(*) || ':' || md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) \
                           FROM (SELECT (to_jsonb(t) - '_ingested_at')::text AS r FROM {table} t) rows"
                    ),
                    &[],
                )
                .unwrap()
                .get(0);
            digests.insert(table, digest);
        }
        (files, digests)
    };
    let (alone, with_helper) = (stored(0), stored(2));
    assert_eq!(alone.0, with_helper.0, "ingest_bronze's report");
    assert_eq!(alone.1, with_helper.1, "the rows stored");
    let sellers_report = alone.0.iter().find(|f| f.0 == "olist_sellers_dataset.csv").unwrap();
    assert_eq!(sellers_report.3, 2, "the malformed and the over-long record are rejected");
}

/// A helper thread the system will not give (the backend's RLIMIT_NPROC
/// lowered below what its OS user already runs) fails the ingest with
/// 53000 and a hint that works: nothing of the batch is stored, the server
/// does not restart, and the same session then ingests with
/// `helper_threads = 0`, on the backend's own thread.
#[test]
fn a_helper_thread_the_system_refuses_fails_with_53000_and_stores_nothing() {
    let server = golden360_it::SameServer::now();
    let dir = ScratchDir::new("helper_refused");
    generate(&dir.0, 0.05, 33);
    let parsed_ahead = std::fs::read_dir(&dir.0).unwrap().any(|f| f.unwrap().metadata().unwrap().len() >= 1 << 20);
    assert!(parsed_ahead, "a file of at least 1 MiB, which ingest parses on a helper thread");
    let db = fresh_database("helper_refused");
    let mut c = connect(&db);
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    // As the backend's own user: lowering another process's limit needs
    // the same uid (root here lacks CAP_SYS_RESOURCE).
    let owner = std::fs::metadata(format!("/proc/{pid}")).unwrap();
    let (uid, gid) = (std::os::unix::fs::MetadataExt::uid(&owner), std::os::unix::fs::MetadataExt::gid(&owner));
    let limited = std::process::Command::new("setpriv")
        .args([format!("--reuid={uid}"), format!("--regid={gid}"), "--clear-groups".into(), "prlimit".into()])
        .args([format!("--pid={pid}"), "--nproc=1:1".into()])
        .status()
        .unwrap();
    assert!(limited.success(), "prlimit on the backend");
    c.batch_execute("SET golden360.helper_threads = 1").unwrap();
    let error = c.query(INGEST, &[&dir.path()]).unwrap_err();
    let error = error.as_db_error().expect("an error from the server");
    assert_eq!(error.code().code(), "53000", "{error:?}");
    assert!(error.message().starts_with("could not start a golden360 helper thread"), "{}", error.message());
    assert!(error.hint().unwrap_or_default().contains("golden360.helper_threads = 0"), "{:?}", error.hint());
    let stored: i64 = c
        .query_one(
            "SELECT (SELECT count(*) FROM golden360.bronze_batches) + (SELECT count(*) FROM golden360.bronze_files) \
                  + (SELECT count(*) FROM bronze.geolocation) + (SELECT count(*) FROM bronze.customers)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, 0, "nothing of the failed batch is stored");
    server.check("a refused helper thread");

    c.batch_execute("SET golden360.helper_threads = 0").unwrap();
    let files = c.query(INGEST, &[&dir.path()]).unwrap();
    assert_eq!(files.len(), 9);
    assert!(files.iter().all(|f| f.get::<_, String>(1) == "loaded"), "every file loads on the backend's own thread");
}
