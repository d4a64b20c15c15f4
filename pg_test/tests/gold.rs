//! Gold across connections and on whole data sets.

use golden360_it::{connect, count, database_with_sample, fresh_database, generate, outcome, real_olist_dir, ScratchDir};
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

fn rust_heap_peak(c: &mut postgres::Client) -> i64 {
    c.query_one("SELECT peak_bytes FROM golden360.rust_memory()", &[]).unwrap().get(0)
}

/// (mode, written, removed, bridge_written, bridge_removed) of the last gold run.
fn last_gold_run(c: &mut postgres::Client) -> (String, i64, i64, i64, i64) {
    let r = c
        .query_one(
            "SELECT mode, written, removed, bridge_written, bridge_removed FROM golden360.gold_runs ORDER BY run_id DESC LIMIT 1",
            &[],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

/// Gold's full build in 1 MB of `maintenance_work_mem` runs in passes by
/// customer_unique_id, each holding a share of the people (the ranking
/// spills), and equals a build in one pass: every record, the bridge, the
/// RFM boundaries, the zips. A rebuild in passes over it rewrites nothing.
/// After customer_ids move to other people (whose pass may come before or
/// after their old person's) and the people they leave are gone, a rebuild
/// in passes writes and removes what one pass does.
#[test]
fn a_full_build_in_little_memory_runs_in_passes_and_equals_one_in_ample_memory() {
    let dir = ScratchDir::new("gold_passes");
    generate(&dir.0, 0.1, 23);
    let (small, ample) = (fresh_database("gold_passes_small"), fresh_database("gold_passes_ample"));
    let (mut s, mut a) = (connect(&small), connect(&ample));
    for c in [&mut s, &mut a] {
        c.query("SELECT * FROM golden360.ingest_bronze($1)", &[&dir.path()]).unwrap();
        c.batch_execute("SET golden360.quality_gate = warn; CALL golden360.refresh_silver()").unwrap();
    }
    s.batch_execute("SET maintenance_work_mem = '1MB'; CALL golden360.refresh_gold()").unwrap();
    a.batch_execute("CALL golden360.refresh_gold()").unwrap();
    let (small_peak, ample_peak) = (rust_heap_peak(&mut s), rust_heap_peak(&mut a));
    // What stays is per zip (the geolocation's sums), not per person.
    assert!(small_peak * 2 < ample_peak, "Rust heap peak in passes {small_peak} bytes, in one pass {ample_peak}");
    let passes = "SELECT passes::bigint FROM golden360.gold_runs ORDER BY run_id DESC LIMIT 1";
    let (small_passes, ample_passes) = (count(&mut s, passes), count(&mut a, passes));
    assert!(small_passes >= 4 && ample_passes == 1, "passes: {small_passes} in 1 MB, {ample_passes} in 512 MB");
    let people = count(&mut a, "SELECT count(*) FROM gold.unified_customer_360");
    assert!(people > 9_000, "{people} people: enough to need several passes in 1 MB");
    assert_eq!(outcome(&mut s), outcome(&mut a));

    // The cross-checks over everyone ran in passes too, and agree.
    let checks = "SELECT check_name, passed, failed FROM golden360.quality_checks
                   WHERE layer = 'gold' AND run_id = (SELECT max(run_id) FROM golden360.gold_runs) ORDER BY 1";
    let rows = |c: &mut postgres::Client| -> Vec<(String, i64, i64)> {
        c.query(checks, &[]).unwrap().iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect()
    };
    let in_one = rows(&mut a);
    assert_eq!(in_one.len(), 7);
    assert!(in_one.iter().all(|(_, passed, failed)| *passed > 0 && *failed == 0), "{in_one:?}");
    assert_eq!(rows(&mut s), in_one);

    let full = "SELECT golden360_internal.gold_refresh(true)";
    s.batch_execute(full).unwrap();
    assert_eq!(last_gold_run(&mut s), ("full".into(), 0, 0, 0, 0));

    // Twenty single-customer people give their customer_id to twenty
    // others, and so leave gold.
    let moves = "WITH single AS (
                     SELECT min(customer_id) AS customer_id, customer_unique_id FROM silver.customers
                      GROUP BY customer_unique_id HAVING count(*) = 1 ORDER BY customer_unique_id LIMIT 40),
                 pairs AS (
                     SELECT customer_id, lead(customer_unique_id) OVER (ORDER BY customer_unique_id) AS receiver,
                            row_number() OVER (ORDER BY customer_unique_id) AS n
                       FROM single)
                 UPDATE silver.customers c SET customer_unique_id = p.receiver
                   FROM pairs p WHERE c.customer_id = p.customer_id AND p.n % 2 = 1";
    for c in [&mut s, &mut a] {
        assert_eq!(c.execute(moves, &[]).unwrap(), 20);
        c.batch_execute(full).unwrap();
    }
    let (in_passes, in_one) = (last_gold_run(&mut s), last_gold_run(&mut a));
    assert_eq!(in_passes, in_one);
    // The receivers' golden_ids move too where the customer_id brought an
    // earlier purchase, and their other bridge rows with them.
    assert!(in_one.1 >= 20 && in_one.2 == 20 && in_one.3 >= 20 && in_one.4 == 0, "{in_one:?}");
    assert_eq!(outcome(&mut s), outcome(&mut a));

    // A wrong spend and a bridge row pointing at no record fail their
    // checks in passes as in one pass.
    let failures = "SELECT check_name, failed FROM golden360_internal.gold_cross_checks(NULL) WHERE failed > 0 ORDER BY 1";
    for c in [&mut s, &mut a] {
        c.batch_execute(
            "UPDATE gold.unified_customer_360 SET total_spend = total_spend + 1
              WHERE golden_id = (SELECT min(golden_id) FROM gold.unified_customer_360 WHERE order_count > 0);
             UPDATE gold.identity_bridge SET golden_id = repeat('0', 64)
              WHERE customer_id = (SELECT max(customer_id) FROM gold.identity_bridge)",
        )
        .unwrap();
        let failed: Vec<(String, i64)> = c.query(failures, &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(failed, [("bridge_points_at_golden_records".to_string(), 1), ("total_spend_equals_counted_orders".to_string(), 1)]);
    }
}
