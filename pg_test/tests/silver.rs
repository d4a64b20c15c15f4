//! Silver across connections and on whole data sets: conservation on the
//! generated sample and the real Olist copy, the gate, one refresh at a
//! time, readers never blocked for long, the swap atomic.

use golden360_it::{
    connect, count, database_with_sample, eventually, fresh_database, generate, generate_with, outcome, real_olist_dir, ScratchDir,
};
use std::time::{Duration, Instant};

fn quarantined(client: &mut postgres::Client, table: &str, reason: &str) -> i64 {
    client
        .query_one("SELECT count(*) FROM silver.quarantine WHERE table_name = $1 AND reason = $2", &[&table, &reason])
        .unwrap()
        .get(0)
}

/// A full build with a background worker (geolocation's pass 1 beside the
/// other tables) equals one without, table for table, in the quarantine and
/// the run's counts; and when the worker cannot see what the backend sees
/// (bronze loaded in the same, uncommitted transaction), the backend sifts
/// the table itself and the build is still the same.
#[test]
fn a_build_with_a_background_worker_equals_one_without() {
    let dir = ScratchDir::new("silver_workers");
    generate(&dir.0, 0.15, 12);
    let digests = |db: &str, sql: &str| {
        let (mut c, notices) = golden360_it::connect_collecting_notices(db);
        c.batch_execute(sql).unwrap();
        let said: Vec<String> = notices.lock().unwrap().iter().filter(|n| n.contains("silver.geolocation: ")).cloned().collect();
        (outcome(&mut c), said)
    };
    let path = dir.path();
    let ingest = format!("SELECT count(*) FROM golden360.ingest_bronze('{path}')");
    let (alone, with_worker, in_one_transaction) =
        (fresh_database("silver_workers_0"), fresh_database("silver_workers_1"), fresh_database("silver_workers_tx"));
    for db in [&alone, &with_worker] {
        connect(db).batch_execute(&ingest).unwrap();
    }
    let refresh = |workers: i32| {
        format!("SET golden360.quality_gate = warn; SET golden360.build_workers = {workers}; SET client_min_messages = debug1; CALL golden360.refresh_silver()")
    };
    let (expected, said_alone) = digests(&alone, &refresh(0));
    assert!(said_alone.is_empty(), "no worker: {said_alone:?}");
    let (got, said) = digests(&with_worker, &refresh(1));
    assert!(said.iter().any(|n| n.ends_with("pass 1 in a background worker")), "{said:?}");
    assert_eq!(got, expected);
    let (got, said) =
        digests(&in_one_transaction, &format!("BEGIN; {ingest}; {}; COMMIT", refresh(1)));
    assert!(said.iter().any(|n| n.contains("pass 1 here")), "{said:?}");
    assert_eq!(got, expected);
}

/// A cancelled build ends its background worker too: the cancel fails the
/// refresh with 57014 while the worker sifts, the worker is gone within a
/// second, silver is as it was, and the next build (with a worker again)
/// succeeds.
#[test]
fn a_cancelled_build_ends_its_background_worker() {
    let (db, _dir) = golden360_it::database_with_sample("silver_worker_cancel", 0.5, 13);
    let mut c = connect(&db);
    c.batch_execute("SET golden360.quality_gate = warn; CALL golden360.refresh_silver(); CALL golden360.refresh_gold()").unwrap();
    let before = outcome(&mut c);
    let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let mut admin = connect(&db);
    let workers = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'golden360'";
    let build = std::thread::spawn(move || {
        let result = c.batch_execute("SET golden360.build_workers = 1; CALL golden360.rebuild()");
        (c, result)
    });
    // The worker sifts for a few hundred milliseconds: look for it closely.
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(&mut admin, workers) == 0 {
        assert!(Instant::now() < deadline && !build.is_finished(), "no background worker seen");
        std::thread::sleep(Duration::from_millis(2));
    }
    admin.query("SELECT pg_cancel_backend($1)", &[&pid]).unwrap();
    let (mut c, result) = build.join().unwrap();
    assert_eq!(golden360_it::sqlstate(result), "57014");
    eventually("the worker gone", Duration::from_secs(1), || (count(&mut admin, workers) == 0).then_some(()));
    assert_eq!(outcome(&mut c), before, "silver (and gold) as they were");
    c.batch_execute("CALL golden360.rebuild()").unwrap();
    assert_eq!(outcome(&mut c), before, "the next build gives the same");
}

/// The default sample passes the gate; every row is accounted for, and each
/// kind of injected dirt lands in quarantine under its rule, exactly.
#[test]
fn the_generated_sample_is_conserved_and_its_dirt_quarantined() {
    let db = fresh_database("silver_sample");
    let dir = ScratchDir::new("silver_sample");
    let summary = generate(&dir.0, 0.05, 21);
    let dirt = |kind: &str| summary["dirt"][kind].as_i64().unwrap_or(0);
    let mut c = connect(&db);
    c.query("SELECT * FROM golden360.ingest_bronze($1)", &[&dir.path()]).unwrap();
    c.batch_execute("CALL golden360.refresh_silver()").expect("the default sample passes quality_gate = error");

    assert_eq!(count(&mut c, "SELECT count(*) FROM golden360.quality_checks WHERE check_name = 'conservation' AND status = 'passed'"), 9);
    assert_eq!(count(&mut c, "SELECT count(*) FROM golden360.quality_checks WHERE status = 'failed'"), 0);
    assert_eq!(quarantined(&mut c, "orders", "order_status_known"), dirt("order_unknown_status"));
    assert_eq!(quarantined(&mut c, "orders", "delivered_has_delivery_date"), dirt("order_delivered_without_date"));
    assert_eq!(quarantined(&mut c, "orders", "delivery_not_before_purchase"), dirt("order_delivery_before_purchase"));
    assert_eq!(quarantined(&mut c, "customers", "customer_unique_id_present"), dirt("customer_empty_unique_id"));
    assert_eq!(quarantined(&mut c, "order_items", "price_positive"), dirt("item_non_positive_price"));
    assert_eq!(quarantined(&mut c, "order_payments", "payment_value_positive"), dirt("payment_non_positive"));
    assert_eq!(quarantined(&mut c, "order_reviews", "review_score_in_range"), dirt("review_score_out_of_range"));
    assert_eq!(quarantined(&mut c, "order_reviews", "review_score_present"), dirt("review_score_missing"));
    assert_eq!(quarantined(&mut c, "geolocation", "lat_inside_brazil"), dirt("geolocation_outside_brazil"));
    assert_eq!(count(&mut c, "SELECT duplicates FROM golden360.silver_runs WHERE table_name = 'customers'"), dirt("customer_duplicate"));
    // Orphans, plus the items of orders that were themselves quarantined.
    assert!(quarantined(&mut c, "order_items", "order_exists") >= dirt("item_orphan"));
    assert!(count(&mut c, "SELECT count(*) FROM silver.order_items i WHERE NOT EXISTS (SELECT FROM silver.orders o WHERE o.order_id = i.order_id)") == 0);
}

/// Non-numeric review scores break the 100% type-compliance threshold.
#[test]
fn type_dirt_fails_the_gate_and_warn_lets_it_through() {
    let db = fresh_database("silver_type_dirt");
    let dir = ScratchDir::new("silver_type_dirt");
    let summary = generate_with(&dir.0, 0.05, 21, &["--type-dirt"]);
    let mut c = connect(&db);
    c.query("SELECT * FROM golden360.ingest_bronze($1)", &[&dir.path()]).unwrap();
    let error = c.batch_execute("CALL golden360.refresh_silver()").unwrap_err();
    let db_error = error.as_db_error().unwrap();
    assert!(db_error.message().starts_with("silver quality gate failed: order_reviews.review_score_type"), "{}", db_error.message());
    assert_eq!(count(&mut c, "SELECT count(*) FROM silver.order_reviews"), 0, "silver unchanged");
    c.batch_execute("SET golden360.quality_gate = warn; CALL golden360.refresh_silver()").unwrap();
    assert_eq!(quarantined(&mut c, "order_reviews", "review_score_type"), summary["dirt"]["review_score_non_numeric"].as_i64().unwrap());
}

/// The real Olist copy: 84% of items reference orders that are not there.
#[test]
fn the_real_olist_data_fails_on_references_and_warn_completes() {
    let db = fresh_database("silver_real");
    let mut c = connect(&db);
    c.query("SELECT * FROM golden360.ingest_bronze($1)", &[&real_olist_dir().to_str().unwrap()]).unwrap();
    let error = c.batch_execute("CALL golden360.refresh_silver()").unwrap_err();
    let db_error = error.as_db_error().unwrap();
    assert!(db_error.message().contains("order_items.order_exists"), "{}", db_error.message());
    assert!(db_error.detail().unwrap_or("").contains("order_payments.order_exists"), "{:?}", db_error.detail());
    assert_eq!(count(&mut c, "SELECT count(*) FROM silver.orders"), 0, "silver unchanged");

    c.batch_execute("SET golden360.quality_gate = warn; CALL golden360.refresh_silver()").unwrap();
    assert_eq!(count(&mut c, "SELECT count(*) FROM golden360.quality_checks WHERE check_name = 'conservation' AND status = 'passed'"), 9);
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM golden360.quality_checks WHERE kind = 'referential' AND status = 'failed'"),
        2,
        "order_items.order_exists and order_payments.order_exists"
    );
    assert_eq!(quarantined(&mut c, "order_payments", "payment_value_positive"), 9);
    // Olist itself has 8 delivered orders without a delivery date.
    assert_eq!(quarantined(&mut c, "orders", "delivered_has_delivery_date"), 8);
    assert_eq!(count(&mut c, "SELECT count(*) FROM silver.orders"), 16_810);
    assert_eq!(count(&mut c, "SELECT count(*) FROM silver.customers"), 99_441);
    // Two categories have no English name and keep their Portuguese one.
    assert_eq!(
        count(
            &mut c,
            "SELECT count(DISTINCT p.product_category) FROM silver.products p
              WHERE p.product_category_name IS NOT NULL
                AND NOT EXISTS (SELECT FROM silver.category_translation t WHERE t.product_category_name = p.product_category_name)
                AND p.product_category = p.product_category_name"
        ),
        2
    );
    let items_kept = count(&mut c, "SELECT count(*) FROM silver.order_items");
    let orphans = quarantined(&mut c, "order_items", "order_exists");
    assert_eq!(items_kept + orphans + count(&mut c, "SELECT count(*) FROM silver.quarantine WHERE table_name = 'order_items' AND reason <> 'order_exists'"), 112_650);
    assert!(orphans > 90_000, "{orphans} orphan items");
}

/// While a rebuilding refresh waits for a long-running reader to finish,
/// new readers are not held up for long, a second refresh fails at once,
/// and readers see the old silver until the new one is swapped in whole.
/// (An incremental refresh writes in place under ROW EXCLUSIVE and waits
/// for no reader; `golden360.incremental_limit = 0` makes this one rebuild.)
#[test]
fn a_refresh_runs_alone_does_not_block_readers_and_swaps_atomically() {
    let (db, dir) = database_with_sample("silver_concurrency", 0.02, 5);
    let mut setup = connect(&db);
    setup.batch_execute("CALL golden360.refresh_silver()").unwrap();
    let old_customers = count(&mut setup, "SELECT count(*) FROM silver.customers");
    // A second batch with more customers, so the generations differ.
    generate(&dir.0, 0.03, 6);
    setup.query("SELECT * FROM golden360.ingest_bronze($1)", &[&dir.path()]).unwrap();

    let mut long_reader = connect(&db);
    long_reader.batch_execute("BEGIN; SELECT count(*) FROM silver.customers").unwrap();

    let refresh_db = db.to_string();
    let refresh = std::thread::spawn(move || {
        let started = Instant::now();
        connect(&refresh_db)
            .batch_execute("SET golden360.incremental_limit = 0; CALL golden360.refresh_silver()")
            .map(|_| started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(1500)); // the build is done; the swap waits for long_reader

    let mut second = connect(&db);
    let started = Instant::now();
    let error = second.batch_execute("CALL golden360.refresh_silver()").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "the second refresh waited {:?}", started.elapsed());
    assert!(error.as_db_error().unwrap().message().contains("another golden360.refresh_silver() is running"));

    let mut reader = connect(&db);
    for _ in 0..10 {
        let started = Instant::now();
        let n = count(&mut reader, "SELECT count(*) FROM silver.customers");
        assert_eq!(n, old_customers, "readers see the old silver until the swap commits");
        assert!(started.elapsed() < Duration::from_millis(500), "a reader waited {:?}", started.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!refresh.is_finished(), "the swap should be waiting for the long-running reader");

    long_reader.batch_execute("COMMIT").unwrap();
    refresh.join().unwrap().expect("the refresh completes once the reader is done");
    let new_customers = count(&mut reader, "SELECT count(*) FROM silver.customers");
    assert!(new_customers > old_customers, "{new_customers} > {old_customers}");
    assert_eq!(
        count(&mut reader, "SELECT count(*) FROM silver.customers c WHERE NOT EXISTS (SELECT FROM silver.orders o WHERE o.customer_id = c.customer_id)")
            < new_customers,
        true
    );
}

/// Silver built with 1 MB of sort memory (its sort spills to temporary
/// files) under a 16 MB limit on the Rust heap equals silver built with
/// ample memory: every table, the quarantine and the counts.
#[test]
fn a_build_in_little_memory_spills_and_equals_one_in_ample_memory() {
    let dir = ScratchDir::new("silver_memory");
    generate(&dir.0, 0.2, 11);
    let (small, ample) = (fresh_database("silver_memory_small"), fresh_database("silver_memory_ample"));
    let (mut s, mut a) = (connect(&small), connect(&ample));
    for c in [&mut s, &mut a] {
        c.query("SELECT * FROM golden360.ingest_bronze($1)", &[&dir.path()]).unwrap();
        c.batch_execute("SET golden360.quality_gate = warn").unwrap();
    }
    let temp_files = "SELECT temp_files FROM pg_stat_database WHERE datname = current_database()";
    let before = count(&mut s, temp_files);
    s.batch_execute("SET maintenance_work_mem = '1MB'; SET golden360.memory_limit = '16MB'; CALL golden360.refresh_silver()")
        .unwrap();
    let peak: i64 = s.query_one("SELECT peak_bytes FROM golden360.rust_memory()", &[]).unwrap().get(0);
    assert!(peak < 16 << 20, "Rust heap peak {peak} bytes");
    a.batch_execute("CALL golden360.refresh_silver()").unwrap();
    let silver_rows = count(&mut a, "SELECT sum(silver_rows)::bigint FROM golden360.silver_runs");
    assert!(silver_rows > 200_000, "{silver_rows} silver rows: enough to outgrow 1 MB");
    assert_eq!(outcome(&mut s), outcome(&mut a));
    eventually("the sort's temporary files counted", Duration::from_secs(10), || {
        s.batch_execute("SELECT pg_stat_force_next_flush()").unwrap();
        (count(&mut connect(&small), temp_files) > before).then_some(())
    });
}
