//! Gold across connections and on whole data sets.

use golden360_it::{connect, count, database_with_sample, fresh_database, generate, real_olist_dir};
use std::time::{Duration, Instant};

fn cross_checks_passed(c: &mut postgres::Client) -> i64 {
    count(c, "SELECT count(*) FROM golden360.quality_checks WHERE layer = 'gold' AND status = 'passed' AND run_id = (SELECT max(run_id) FROM golden360.gold_runs)")
}

#[test]
fn cross_checks_hold_on_the_generated_sample_and_the_real_data() {
    let (db, _dir) = database_with_sample("gold_sample", 0.05, 8);
    let mut c = connect(&db);
    c.batch_execute("CALL golden360.refresh_silver(); CALL golden360.refresh_gold()").unwrap();
    assert_eq!(cross_checks_passed(&mut c), 7);
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM gold.unified_customer_360"),
        count(&mut c, "SELECT count(DISTINCT customer_unique_id) FROM silver.customers")
    );
    assert!(count(&mut c, "SELECT count(DISTINCT ltv_segment) FROM gold.unified_customer_360") >= 3);

    let db = fresh_database("gold_real");
    let mut c = connect(&db);
    c.query("SELECT * FROM golden360.ingest_bronze($1)", &[&real_olist_dir().to_str().unwrap()]).unwrap();
    c.batch_execute("SET golden360.quality_gate = warn; CALL golden360.refresh_silver(); CALL golden360.refresh_gold()").unwrap();
    assert_eq!(cross_checks_passed(&mut c), 7);
    assert_eq!(count(&mut c, "SELECT count(*) FROM gold.identity_bridge"), 99_441);
}

/// A refresh neither waits for a long-running reader nor blocks new ones;
/// the reader keeps its snapshot of the old gold, later readers see the new.
#[test]
fn a_refresh_does_not_wait_for_readers_and_swaps_atomically() {
    let (db, dir) = database_with_sample("gold_readers", 0.02, 9);
    let mut setup = connect(&db);
    setup.batch_execute("CALL golden360.refresh_silver(); CALL golden360.refresh_gold()").unwrap();
    let old_people = count(&mut setup, "SELECT count(*) FROM gold.unified_customer_360");
    generate(&dir.0, 0.03, 10); // a second batch: more people
    setup.query("SELECT * FROM golden360.ingest_bronze($1)", &[&dir.path()]).unwrap();
    setup.batch_execute("CALL golden360.refresh_silver()").unwrap();

    let mut long_reader = connect(&db);
    long_reader.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").unwrap();
    assert_eq!(count(&mut long_reader, "SELECT count(*) FROM gold.unified_customer_360"), old_people);

    let refresh_db = db.to_string();
    let refresh = std::thread::spawn(move || {
        let started = Instant::now();
        connect(&refresh_db).batch_execute("CALL golden360.refresh_gold()").map(|_| started.elapsed())
    });
    // The refresh commits a moment before its thread reports finished, so a
    // reader may already see the new gold; what it must never see is a
    // count that is neither the old nor the new one, nor old after new.
    let mut reader = connect(&db);
    let mut seen = Vec::new();
    while !refresh.is_finished() {
        let started = Instant::now();
        seen.push(count(&mut reader, "SELECT count(*) FROM gold.unified_customer_360"));
        assert!(started.elapsed() < Duration::from_millis(500), "a reader waited {:?}", started.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = refresh.join().unwrap().expect("the refresh completes while the long reader is still open");
    assert!(took < Duration::from_secs(30), "{took:?}");

    assert_eq!(count(&mut long_reader, "SELECT count(*) FROM gold.unified_customer_360"), old_people, "its snapshot is kept");
    long_reader.batch_execute("COMMIT").unwrap();
    let new_people = count(&mut reader, "SELECT count(*) FROM gold.unified_customer_360");
    assert!(new_people > old_people, "{new_people} > {old_people}");
    assert!(seen.first() == Some(&old_people), "readers during the refresh saw the old gold first: {seen:?}");
    let switched = seen.iter().position(|&n| n != old_people).unwrap_or(seen.len());
    assert!(seen[switched..].iter().all(|&n| n == new_people), "a reader saw a half-built gold: {seen:?} (old {old_people}, new {new_people})");
}

/// The first refresh also creates the 360's secondary indexes; neither
/// that nor its writes wait for a reader that has had gold open since
/// before, nor does a new reader wait for it. A lock wait would fail the
/// refresh at once (lock_timeout) instead of hanging the test.
#[test]
fn the_first_refresh_and_its_index_builds_do_not_wait_for_readers() {
    let (db, _dir) = database_with_sample("gold_first", 0.02, 9);
    let mut setup = connect(&db);
    setup.batch_execute("CALL golden360.refresh_silver()").unwrap();
    let mut long_reader = connect(&db);
    long_reader.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ").unwrap();
    assert_eq!(count(&mut long_reader, "SELECT count(*) FROM gold.unified_customer_360"), 0);

    let refresh_db = db.to_string();
    let refresh = std::thread::spawn(move || {
        connect(&refresh_db).batch_execute("SET lock_timeout = '5s'; CALL golden360.refresh_gold()")
    });
    let mut reader = connect(&db);
    while !refresh.is_finished() {
        let started = Instant::now();
        count(&mut reader, "SELECT count(*) FROM gold.unified_customer_360 WHERE ltv_segment = 'VIP'");
        assert!(started.elapsed() < Duration::from_millis(500), "a reader waited {:?}", started.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    refresh.join().unwrap().expect("the first refresh completes while a reader holds gold open");
    assert_eq!(count(&mut long_reader, "SELECT count(*) FROM gold.unified_customer_360"), 0, "its snapshot is kept");
    long_reader.batch_execute("COMMIT").unwrap();
    assert_eq!(
        count(&mut reader, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'gold' AND tablename = 'unified_customer_360'"),
        6,
        "the primary key, customer_unique_id, the segment order and the three RFM keys"
    );
    assert!(count(&mut reader, "SELECT count(*) FROM gold.unified_customer_360") > 0);
}
