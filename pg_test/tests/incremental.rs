//! Incremental refreshes against full rebuilds: a sequence of follow-up
//! batches (deltas and full exports, every kind of change the generator
//! makes) applied one by one must leave silver, the quarantine, the run
//! counts, gold and the bridge exactly as a rebuild of the same bronze;
//! a refresh rewrites no row it does not change; a failed gate leaves
//! silver and gold as they were.

use golden360_it::{connect, count, fresh_database, generate, generate_with, outcome, sqlstate, ScratchDir, TestDatabase};
use postgres::Client;

const SCALE: f64 = 0.05;
const SEED: u64 = 31;

fn ingest(c: &mut Client, dir: &str) {
    c.query("SELECT * FROM golden360.ingest_bronze($1, true)", &[&dir]).unwrap();
}

/// A fresh database `name` with `dir` ingested and refreshed (under the
/// warn gate), and a session on it.
fn refreshed_database(name: &str, dir: &ScratchDir) -> (TestDatabase, Client) {
    let db = fresh_database(name);
    let mut c = connect(&db);
    c.batch_execute("SET golden360.quality_gate = warn").unwrap();
    ingest(&mut c, dir.path());
    c.batch_execute("CALL golden360.refresh_silver(); CALL golden360.refresh_gold()").unwrap();
    (db, c)
}

fn last_modes(c: &mut Client) -> (String, String) {
    let silver: String = c.query_one("SELECT mode FROM golden360.silver_runs ORDER BY run_id DESC LIMIT 1", &[]).unwrap().get(0);
    let gold: String = c.query_one("SELECT mode FROM golden360.gold_runs ORDER BY run_id DESC LIMIT 1", &[]).unwrap().get(0);
    (silver, gold)
}

/// Gold's rows by golden_id: (ctid, refreshed_at, every other column).
fn gold_rows(c: &mut Client) -> std::collections::BTreeMap<String, (String, String, String)> {
    c.query(
        "SELECT golden_id, ctid::text, refreshed_at::text, (to_jsonb(g) - 'refreshed_at')::text FROM gold.unified_customer_360 g",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
    .collect()
}

/// Nine batches, mixed deltas and full exports, into one database; after
/// each, a second database holding the same bronze is rebuilt in full and
/// the two must be equal, table by table. Each refresh of the first must
/// have been incremental, and must have rewritten only golden records
/// whose values changed.
#[test]
fn every_batch_of_a_sequence_leaves_what_a_rebuild_of_the_same_bronze_leaves() {
    let base = ScratchDir::new("incremental_base");
    generate(&base.0, SCALE, SEED);
    let (inc, rebuilt) = (fresh_database("incremental"), fresh_database("incremental_rebuilt"));
    let (mut a, mut b) = (connect(&inc), connect(&rebuilt));
    for c in [&mut a, &mut b] {
        c.batch_execute("SET golden360.quality_gate = warn").unwrap();
        ingest(c, base.path());
    }
    a.batch_execute("CALL golden360.refresh_silver(); CALL golden360.refresh_gold()").unwrap();
    b.batch_execute("CALL golden360.rebuild()").unwrap();
    assert_eq!(outcome(&mut a), outcome(&mut b), "the base");

    let mut kinds = std::collections::BTreeSet::new();
    for (k, full_export) in [(1, false), (2, false), (3, true), (4, false), (5, false), (6, true), (7, false), (8, false), (9, false)] {
        let dir = ScratchDir::new(&format!("incremental_batch_{k}"));
        let k_text = k.to_string();
        let mut flags = vec!["--batch", k_text.as_str()];
        if full_export {
            flags.push("--full-export");
        }
        let summary = generate_with(&dir.0, SCALE, SEED, &flags);
        kinds.extend(summary["changes"].as_object().unwrap().keys().cloned());
        let before = gold_rows(&mut a);
        for c in [&mut a, &mut b] {
            ingest(c, dir.path());
        }
        a.batch_execute("CALL golden360.refresh_silver(); CALL golden360.refresh_gold()").unwrap();
        b.batch_execute("CALL golden360.rebuild()").unwrap();
        assert_eq!(last_modes(&mut a), ("incremental".into(), "incremental".into()), "batch {k}");
        assert_eq!(last_modes(&mut b), ("full".into(), "full".into()));
        if full_export {
            // Re-delivered rows equal the stored ones: they keep their
            // lineage, so only what changed carries the new batch.
            let batch = count(&mut a, "SELECT max(batch_id) FROM golden360.bronze_batches");
            let moved = count(&mut a, &format!("SELECT count(*) FROM silver.orders WHERE _batch_id = {batch}"));
            let orders = count(&mut a, "SELECT count(*) FROM silver.orders");
            let delivered = count(&mut a, &format!("SELECT count(*) FROM bronze.orders WHERE _batch_id = {batch}"));
            assert!(delivered > orders / 2 && moved * 10 < orders, "batch {k}: {moved} of {orders} orders moved, {delivered} delivered");
        }
        let (got, want) = (outcome(&mut a), outcome(&mut b));
        for ((name, g), (_, w)) in got.iter().zip(&want) {
            assert_eq!(g, w, "batch {k}{}: {name} differs from a rebuild", if full_export { " (full export)" } else { "" });
        }

        // A record is rewritten (new tuple, new refreshed_at) only when a
        // value of it changed.
        let after = gold_rows(&mut a);
        let mut rewritten = 0;
        for (id, (tid, at, values)) in &after {
            match before.get(id) {
                Some((old_tid, old_at, old_values)) if old_tid == tid => {
                    assert_eq!((old_at, old_values), (at, values), "batch {k}: {id} changed in place?");
                }
                Some((_, _, old_values)) => {
                    rewritten += 1;
                    assert_ne!(old_values, values, "batch {k}: {id} was rewritten with the same values");
                }
                None => {}
            }
        }
        let written = count(&mut a, "SELECT written FROM golden360.gold_runs ORDER BY run_id DESC LIMIT 1");
        let new = after.keys().filter(|id| !before.contains_key(*id)).count() as i64;
        assert_eq!(written, rewritten + new, "batch {k}: gold_runs.written counts the rewritten and new records");
        assert!(rewritten > 0 && (after.len() as i64) > 2 * written, "batch {k}: {written} of {} written", after.len());
    }
    for kind in [
        "new_order",
        "new_order_before_first_purchase",
        "status_update",
        "corrected_payment",
        "replacing_review",
        "address_correction",
        "late_order_of_orphans",
        "invalid_newer_order",
        "invalid_newer_payment",
        "product_category_change",
        "translation_change",
        "geolocation_exact_copy",
        "geolocation_new_point",
    ] {
        assert!(kinds.contains(kind), "the sequence had no {kind}");
    }
    // Late orders made earlier orphans valid: fewer of the base's items and
    // payments wait for their order than after the base alone.
    let waiting = "SELECT count(*) FROM silver.quarantine
                    WHERE table_name IN ('order_items', 'order_payments') AND reason = 'order_exists' AND batch_id = 1";
    let base_only = {
        let db = fresh_database("incremental_base_only");
        let mut c = connect(&db);
        c.batch_execute("SET golden360.quality_gate = warn").unwrap();
        ingest(&mut c, base.path());
        c.batch_execute("CALL golden360.refresh_silver()").unwrap();
        count(&mut c, waiting)
    };
    assert!(count(&mut a, waiting) < base_only, "{} of {base_only} orphans still wait", count(&mut a, waiting));
}

/// A refresh after no new batch changes nothing and writes no record.
#[test]
fn a_refresh_without_a_new_batch_changes_nothing() {
    let base = ScratchDir::new("incremental_idle");
    generate(&base.0, SCALE, SEED);
    let (_db, mut c) = refreshed_database("incremental_idle", &base);
    let (before, rows) = (outcome(&mut c), gold_rows(&mut c));
    c.batch_execute("CALL golden360.refresh_silver(); CALL golden360.refresh_gold()").unwrap();
    assert_eq!(last_modes(&mut c), ("incremental".into(), "incremental".into()));
    assert_eq!(outcome(&mut c), before);
    assert_eq!(gold_rows(&mut c), rows, "no tuple was rewritten");
    assert_eq!(count(&mut c, "SELECT written + removed + recomputed FROM golden360.gold_runs ORDER BY run_id DESC LIMIT 1"), 0);
    assert_eq!(count(&mut c, "SELECT count(*) FROM golden360_internal.silver_changes"), 0, "gold consumed the change log");
}

/// A batch that fails the gate (quality_gate = error) leaves silver and
/// gold as they were and stays pending: bronze keeps it. Accepted under
/// warn with the next good batch, both apply, equal to a rebuild.
#[test]
fn a_failed_gate_in_a_sequence_changes_nothing_and_the_next_refresh_applies_on_top() {
    let base = ScratchDir::new("incremental_gate_base");
    generate(&base.0, SCALE, SEED);
    let (inc, rebuilt) = (fresh_database("incremental_gate"), fresh_database("incremental_gate_rebuilt"));
    let (mut a, mut b) = (connect(&inc), connect(&rebuilt));
    for c in [&mut a, &mut b] {
        ingest(c, base.path());
    }
    a.batch_execute("CALL golden360.refresh_silver(); CALL golden360.refresh_gold()").unwrap();
    let good_before = outcome(&mut a);

    // A delta whose one order has a purchase time that is no timestamp: the
    // type rule's threshold is 100%.
    let bad = ScratchDir::new("incremental_gate_bad");
    let header = "order_id,customer_id,order_status,order_purchase_timestamp,order_approved_at,\
                  order_delivered_carrier_date,order_delivered_customer_date,order_estimated_delivery_date";
    std::fs::write(bad.0.join("olist_orders_dataset.csv"), format!("{header}\nbad-order,bad-customer,delivered,yesterday,,,,2018-01-01\n")).unwrap();
    for c in [&mut a, &mut b] {
        ingest(c, bad.path());
    }
    let failed = a.batch_execute("CALL golden360.refresh_silver()");
    assert_eq!(sqlstate(failed), "23514", "the gate fails");
    a.batch_execute("CALL golden360.refresh_gold()").unwrap();
    assert_eq!(outcome(&mut a), good_before, "silver and gold are as they were");
    assert_eq!(count(&mut a, "SELECT count(*) FROM golden360.silver_batches"), 1, "the bad batch is pending");

    let next = ScratchDir::new("incremental_gate_next");
    generate_with(&next.0, SCALE, SEED, &["--batch", "1"]);
    for c in [&mut a, &mut b] {
        ingest(c, next.path());
        c.batch_execute("SET golden360.quality_gate = warn").unwrap();
    }
    a.batch_execute("CALL golden360.refresh_silver(); CALL golden360.refresh_gold()").unwrap();
    b.batch_execute("CALL golden360.rebuild()").unwrap();
    assert_eq!(last_modes(&mut a), ("incremental".into(), "incremental".into()));
    assert_eq!(outcome(&mut a), outcome(&mut b));
    assert_eq!(count(&mut a, "SELECT count(*) FROM silver.quarantine WHERE reason = 'order_purchase_timestamp_type'"), 1);
}

/// A change of settings or of the RFM map since the last refresh makes
/// gold recompute everyone; a new version or changed rules make silver
/// rebuild (the fingerprints in golden360.refresh_state).
#[test]
fn changed_settings_make_the_next_refresh_a_full_one() {
    let base = ScratchDir::new("incremental_settings");
    generate(&base.0, SCALE, SEED);
    let (_db, mut c) = refreshed_database("incremental_settings", &base);
    c.batch_execute("SET golden360.ltv_vip_above = 100; CALL golden360.refresh_gold()").unwrap();
    assert_eq!(last_modes(&mut c).1, "full");
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM gold.unified_customer_360 WHERE ltv_segment = 'VIP' AND total_spend <= 100"),
        0
    );
    assert!(count(&mut c, "SELECT count(*) FROM gold.unified_customer_360 WHERE ltv_segment = 'VIP'") > 0);
    c.batch_execute("CALL golden360.refresh_gold()").unwrap();
    assert_eq!(last_modes(&mut c).1, "incremental", "the same settings again");
    c.batch_execute("UPDATE golden360.rfm_segments SET segment = 'Sleepers' WHERE segment = 'Hibernating'; CALL golden360.refresh_gold()")
        .unwrap();
    assert_eq!(last_modes(&mut c).1, "full");
    assert_eq!(count(&mut c, "SELECT count(*) FROM gold.unified_customer_360 WHERE rfm_segment = 'Hibernating'"), 0);
    c.batch_execute("DELETE FROM golden360.refresh_state WHERE layer = 'silver'; CALL golden360.refresh_silver()").unwrap();
    let silver_mode = |c: &mut Client| -> String {
        c.query_one("SELECT mode FROM golden360.silver_runs ORDER BY run_id DESC LIMIT 1", &[]).unwrap().get(0)
    };
    assert_eq!(silver_mode(&mut c), "full");

    // golden360.incremental_limit: a full export holds a third or more of
    // the rows silver has seen; under a limit of 0.1, refresh_silver rebuilds.
    let export = ScratchDir::new("incremental_settings_export");
    generate_with(&export.0, SCALE, SEED, &["--batch", "1", "--full-export"]);
    ingest(&mut c, export.path());
    c.batch_execute("SET golden360.incremental_limit = 0.1; CALL golden360.refresh_silver()").unwrap();
    assert_eq!(silver_mode(&mut c), "full");
}

/// One delta per kind of change, on three people: each changes exactly
/// the values it should, of exactly the people it should; every other
/// record keeps its tuple and refreshed_at. At the end the result is what
/// golden360.rebuild() computes from the same bronze.
#[test]
fn each_kind_of_change_rewrites_only_the_people_it_touches() {
    let db = fresh_database("incremental_focused");
    let mut c = connect(&db);
    let write = |dir: &ScratchDir, file: &str, rows: &str| {
        let source = olist_model::SOURCE_FILES.iter().find(|f| f.file_name == file).unwrap();
        std::fs::write(dir.0.join(file), format!("{}\n{rows}", source.columns.join(","))).unwrap();
    };
    let base = ScratchDir::new("incremental_focused_base");
    write(&base, "olist_customers_dataset.csv", "c1,P1,1000,sao paulo,SP\nc2,P2,2000,rio,RJ\nc3,P3,3000,recife,PE\n");
    write(
        &base,
        "olist_orders_dataset.csv",
        "o1,c1,delivered,2018-01-01 10:00:00,,,2018-01-05 10:00:00,2018-01-20\n\
         o2,c2,delivered,2018-02-01 10:00:00,,,2018-02-05 10:00:00,2018-02-20\n\
         o3,c3,delivered,2018-03-01 10:00:00,,,2018-03-05 10:00:00,2018-03-20\n",
    );
    write(
        &base,
        "olist_order_items_dataset.csv",
        "o1,1,p1,s1,2018-01-02 10:00:00,8.00,2.00\no2,1,p2,s1,2018-02-02 10:00:00,18.00,2.00\n\
         o3,1,p3,s1,2018-03-02 10:00:00,28.00,2.00\no9,1,p1,s1,2018-04-02 10:00:00,4.00,1.00\n",
    );
    write(&base, "olist_order_payments_dataset.csv", "o1,1,boleto,1,10.00\no2,1,boleto,1,20.00\no3,1,boleto,1,30.00\no9,1,boleto,1,5.00\n");
    write(&base, "olist_order_reviews_dataset.csv", "r1,o1,3,,ok,2018-01-06 00:00:00,2018-01-07 10:00:00\n");
    write(&base, "olist_products_dataset.csv", "p1,cama_mesa_banho,,,,,,,\np2,pc_gamer,,,,,,,\np3,climatizacao,,,,,,,\n");
    write(&base, "olist_sellers_dataset.csv", "s1,1000,sao paulo,SP\n");
    write(&base, "olist_geolocation_dataset.csv", "1000,-23.5,-46.6,sao paulo,SP\n2000,-22.9,-43.2,rio,RJ\n3000,-8.0,-34.9,recife,PE\n");
    write(&base, "product_category_name_translation.csv", "cama_mesa_banho,bed_bath_table\nclimatizacao,air_conditioning\n");
    c.batch_execute("SET golden360.quality_gate = warn").unwrap();
    ingest(&mut c, base.path());
    c.batch_execute("CALL golden360.refresh_silver(); CALL golden360.refresh_gold()").unwrap();

    let person = |c: &mut Client, who: &str, column: &str| -> String {
        c.query_one(&format!("SELECT coalesce({column}::text, 'NULL') FROM gold.unified_customer_360 WHERE customer_unique_id = $1"), &[&who])
            .unwrap()
            .get(0)
    };
    let stamps = |c: &mut Client| -> std::collections::BTreeMap<String, (String, String)> {
        c.query("SELECT customer_unique_id, ctid::text, refreshed_at::text FROM gold.unified_customer_360", &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect()
    };
    type Check = (&'static str, &'static str, &'static str);
    let steps: [(&str, &str, &str, &[Check], bool); 6] = [
        ("translation", "product_category_name_translation.csv", "cama_mesa_banho,bedding\n",
         &[("P1", "favorite_category", "bedding")], true),
        ("category", "olist_products_dataset.csv", "p3,cama_mesa_banho,,,,,,,\n",
         &[("P3", "favorite_category", "bedding")], true),
        ("geolocation", "olist_geolocation_dataset.csv", "2000,-23.1,-43.2,rio,RJ\n",
         &[("P2", "round(latitude::numeric, 6)", "-23.000000")], true),
        ("review", "olist_order_reviews_dataset.csv", "r2,o1,5,,great,2018-01-08 00:00:00,2018-01-09 10:00:00\n",
         &[("P1", "avg_review_score", "5.00"), ("P1", "total_reviews", "1")], true),
        ("address", "olist_customers_dataset.csv", "c2,P2,3000,recife,PE\n",
         &[("P2", "geographic_city", "RECIFE"), ("P2", "round(latitude::numeric, 6)", "-8.000000")], true),
        // The orphan item and payment of o9 become valid: P3 has two orders.
        ("late order", "olist_orders_dataset.csv", "o9,c3,delivered,2018-04-01 10:00:00,,,2018-04-05 10:00:00,2018-04-20\n",
         &[("P3", "order_count", "2"), ("P3", "total_spend", "35.00"), ("P3", "total_items", "2")], false),
    ];
    for (what, file, rows, checks, others_untouched) in steps {
        let dir = ScratchDir::new(&format!("incremental_focused_{}", what.replace(' ', "_")));
        write(&dir, file, rows);
        let before = stamps(&mut c);
        ingest(&mut c, dir.path());
        c.batch_execute("CALL golden360.refresh_silver(); CALL golden360.refresh_gold()").unwrap();
        assert_eq!(last_modes(&mut c), ("incremental".into(), "incremental".into()), "{what}");
        let after = stamps(&mut c);
        for (who, column, value) in checks {
            assert_eq!(person(&mut c, who, column), *value, "{what}: {who}.{column}");
            assert_ne!(before[*who], after[*who], "{what}: {who} rewritten");
        }
        if others_untouched {
            for (who, stamp) in &after {
                if !checks.iter().any(|(w, ..)| w == who) {
                    assert_eq!(&before[who], stamp, "{what}: {who} was rewritten");
                }
            }
        }
    }
    assert_eq!(
        count(&mut c, "SELECT count(*) FROM silver.quarantine WHERE record ->> 'order_id' = 'o9'"),
        0,
        "o9's item and payment left the quarantine"
    );
    let incremental = outcome(&mut c);
    c.batch_execute("CALL golden360.rebuild()").unwrap();
    assert_eq!(outcome(&mut c), incremental, "a rebuild of the same bronze");
}

/// An incremental refresh ranks the people it recomputed among everyone
/// else for RFM. With 1 MB of sort memory that ranking goes through
/// PostgreSQL's tuplesort (temporary files) instead of Rust memory that
/// grows with the number of people, and gold still equals a rebuild.
/// A ranking over everyone (no stored boundaries to walk from) in 1 MB of
/// `maintenance_work_mem` spills to temporary files, and equals a rebuild.
#[test]
fn an_incremental_rfm_ranking_in_little_memory_spills_and_equals_a_rebuild() {
    let base = ScratchDir::new("incremental_rank_base");
    generate(&base.0, 0.2, 41);
    let delta = ScratchDir::new("incremental_rank_delta");
    generate_with(&delta.0, 0.2, 41, &["--batch", "1"]);
    let (small, rebuilt) = (fresh_database("incremental_rank_small"), fresh_database("incremental_rank_rebuilt"));
    let (mut s, mut r) = (connect(&small), connect(&rebuilt));
    for c in [&mut s, &mut r] {
        c.batch_execute("SET golden360.quality_gate = warn").unwrap();
        ingest(c, base.path());
    }
    s.batch_execute("CALL golden360.refresh_silver(); CALL golden360.refresh_gold()").unwrap();
    ingest(&mut s, delta.path());
    s.batch_execute("CALL golden360.refresh_silver()").unwrap();
    let people = count(&mut s, "SELECT count(*) FROM gold.unified_customer_360 WHERE order_count > 0");
    assert!(people > 15_000, "{people} ranked people: enough to outgrow 1 MB three times over");
    // Without stored boundaries the refresh ranks everyone, as the first
    // one after an upgrade does.
    s.batch_execute("DELETE FROM golden360_internal.rfm_boundaries").unwrap();
    let temp_files = "SELECT temp_files FROM pg_stat_database WHERE datname = current_database()";
    s.batch_execute("SELECT pg_stat_force_next_flush()").unwrap();
    let before = count(&mut connect(&small), temp_files);
    s.batch_execute("SET maintenance_work_mem = '1MB'; CALL golden360.refresh_gold(); RESET maintenance_work_mem").unwrap();
    assert_eq!(last_modes(&mut s), ("incremental".into(), "incremental".into()));
    golden360_it::eventually("the ranking's temporary files counted", std::time::Duration::from_secs(10), || {
        s.batch_execute("SELECT pg_stat_force_next_flush()").unwrap();
        (count(&mut connect(&small), temp_files) > before).then_some(())
    });
    ingest(&mut r, delta.path());
    r.batch_execute("CALL golden360.rebuild()").unwrap();
    assert_eq!(outcome(&mut s), outcome(&mut r));
}

/// A daily full export applied in place in little memory: with
/// maintenance_work_mem at 1 MB, each table's re-delivered rows are applied
/// in passes by key hash, each holding a fraction of them. Silver, the
/// quarantine, the run counts, gold and the bridge equal a rebuild's, as
/// they do after the same export applied in one pass, and the passes held
/// less than half of what one pass holds.
#[test]
fn a_full_export_in_little_memory_applies_in_passes_and_equals_a_rebuild() {
    let base = ScratchDir::new("incremental_passes_base");
    generate(&base.0, SCALE, SEED);
    let export = ScratchDir::new("incremental_passes_export");
    generate_with(&export.0, SCALE, SEED, &["--batch", "1", "--full-export"]);
    let (small, roomy, rebuilt) =
        (fresh_database("incremental_passes_small"), fresh_database("incremental_passes_roomy"), fresh_database("incremental_passes_rebuilt"));
    let (mut s, mut r, mut b) = (connect(&small), connect(&roomy), connect(&rebuilt));
    for c in [&mut s, &mut r, &mut b] {
        c.batch_execute("SET golden360.quality_gate = warn").unwrap();
        ingest(c, base.path());
        c.batch_execute("CALL golden360.refresh_silver(); CALL golden360.refresh_gold()").unwrap();
        ingest(c, export.path());
    }
    let peak = "SELECT peak_bytes FROM golden360.rust_memory()";
    s.batch_execute("SET maintenance_work_mem = '1MB'; CALL golden360.refresh_silver(); RESET maintenance_work_mem").unwrap();
    let small_peak = count(&mut s, peak);
    r.batch_execute("CALL golden360.refresh_silver()").unwrap();
    let roomy_peak = count(&mut r, peak);
    for c in [&mut s, &mut r] {
        c.batch_execute("CALL golden360.refresh_gold()").unwrap();
        assert_eq!(last_modes(c), ("incremental".into(), "incremental".into()));
    }
    b.batch_execute("CALL golden360.rebuild()").unwrap();
    let want = outcome(&mut b);
    for (who, got) in [("in passes", outcome(&mut s)), ("in one pass", outcome(&mut r))] {
        for ((name, g), (_, w)) in got.iter().zip(&want) {
            assert_eq!(g, w, "the export applied {who}: {name} differs from a rebuild");
        }
    }
    assert!(small_peak * 2 < roomy_peak, "peak Rust heap: {small_peak} bytes in passes, {roomy_peak} in one pass");
}

/// A gold refresh re-sums the points of each zip whose points changed from
/// silver's index on (zip, lat, lng) alone wherever the visibility map
/// says a page is all visible, and from the heap elsewhere. After a VACUUM
/// and a batch of new points, the index's statistics show tuples read
/// with and without a heap fetch, and silver and gold equal a rebuild.
#[test]
fn a_zip_re_sum_reads_the_index_alone_where_pages_are_all_visible() {
    let base = ScratchDir::new("incremental_index_only_base");
    generate(&base.0, SCALE, SEED);
    // Batch 2 of the generator's cycle brings new geolocation points.
    let delta = ScratchDir::new("incremental_index_only_delta");
    let summary = generate_with(&delta.0, SCALE, SEED, &["--batch", "2"]);
    assert!(summary["changes"]["geolocation_new_point"].as_u64().unwrap_or(0) > 0, "{summary}");
    let (_db, mut c) = refreshed_database("incremental_index_only", &base);
    // A statement of its own: VACUUM refuses a multi-statement string.
    c.batch_execute("VACUUM silver.geolocation").unwrap();
    let index_reads = |c: &mut Client| -> (i64, i64) {
        c.batch_execute("SELECT pg_stat_clear_snapshot()").unwrap();
        let row = c
            .query_one("SELECT idx_tup_read, idx_tup_fetch FROM pg_stat_user_indexes WHERE indexrelid = 'silver.geolocation_by_zip'::regclass", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    let (read_before, fetched_before) = index_reads(&mut c);
    ingest(&mut c, delta.path());
    c.batch_execute("CALL golden360.refresh_silver(); CALL golden360.refresh_gold()").unwrap();
    // Statistics reach shared memory when the session next goes idle.
    c.batch_execute("SELECT pg_stat_force_next_flush()").unwrap();
    let (read, fetched) = index_reads(&mut c);
    // Both ways were taken: the index alone for the vacuumed pages, the
    // heap for those the batch's new points were written to (and for
    // silver's comparison, which reads whole rows).
    let (read, fetched) = (read - read_before, fetched - fetched_before);
    assert!(fetched > 0 && read > fetched, "{read} index tuples read, {fetched} fetched from the heap");
    assert_eq!(last_modes(&mut c), ("incremental".into(), "incremental".into()));

    let incremental = outcome(&mut c);
    c.batch_execute("CALL golden360.rebuild()").unwrap();
    assert_eq!(outcome(&mut c), incremental, "a rebuild of the same bronze");
}

/// `refresh_gold()`, and the sequential scans of gold it made.
fn refresh_gold_counting_scans(c: &mut Client) -> i64 {
    // pg_stat_xact_* shows this backend's counts not yet flushed, the
    // previous transactions' included: flush them first.
    c.batch_execute("SELECT pg_stat_force_next_flush()").unwrap();
    let mut t = c.transaction().unwrap();
    // On a gold this small the planner would rather scan than use an
    // index; the extension's own scan of everyone is not planned.
    t.batch_execute("SET LOCAL enable_seqscan = off; CALL golden360.refresh_gold()").unwrap();
    let scans = t
        .query_one("SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relid = 'gold.unified_customer_360'::regclass", &[])
        .unwrap()
        .get(0);
    t.commit().unwrap();
    scans
}

/// An incremental refresh ranks its people among everyone else without
/// reading everyone: it walks gold's RFM indexes from the boundaries the
/// last refresh stored, so no sequential scan of gold runs, and the result
/// (the boundaries it stores included) equals a rebuild. Boundaries that
/// do not describe gold (a person's key changed behind the refresh's back,
/// one gone) make it rank everyone instead, with the same result.
#[test]
fn an_incremental_ranking_walks_from_the_stored_boundaries_and_equals_a_rebuild() {
    let base = ScratchDir::new("incremental_walk_base");
    generate(&base.0, SCALE, SEED);
    let (_db, mut c) = refreshed_database("incremental_walk", &base);
    assert_eq!(count(&mut c, "SELECT count(*) FROM golden360_internal.rfm_boundaries"), 12);
    for k in 1..=3 {
        let dir = ScratchDir::new(&format!("incremental_walk_batch_{k}"));
        generate_with(&dir.0, SCALE, SEED, &["--batch", &k.to_string()]);
        ingest(&mut c, dir.path());
        c.batch_execute("CALL golden360.refresh_silver()").unwrap();
        let boundaries = "SELECT string_agg(r::text, ';' ORDER BY dimension, boundary) FROM golden360_internal.rfm_boundaries r";
        let before: String = c.query_one(boundaries, &[]).unwrap().get(0);
        let scans = refresh_gold_counting_scans(&mut c);
        assert_eq!(scans, 0, "batch {k}: gold was scanned");
        assert_eq!(last_modes(&mut c), ("incremental".into(), "incremental".into()));
        let after: String = c.query_one(boundaries, &[]).unwrap().get(0);
        assert_ne!(before, after, "batch {k}: the new people moved no boundary?");
        let incremental = outcome(&mut c);
        let rebuilt = fresh_database(&format!("incremental_walk_rebuilt_{k}"));
        let mut r = connect(&rebuilt);
        r.batch_execute("SET golden360.quality_gate = warn").unwrap();
        ingest(&mut r, base.path());
        for j in 1..=k {
            let dir = ScratchDir::new(&format!("incremental_walk_again_{k}_{j}"));
            generate_with(&dir.0, SCALE, SEED, &["--batch", &j.to_string()]);
            ingest(&mut r, dir.path());
        }
        r.batch_execute("CALL golden360.rebuild()").unwrap();
        assert_eq!(incremental, outcome(&mut r), "batch {k}");
    }

    // Boundaries that do not hold: one points at nobody, another's key is
    // wrong. Either way the refresh ranks everyone (a scan of gold).
    for (k, tamper) in [
        (4, "UPDATE golden360_internal.rfm_boundaries SET golden_id = repeat('0', 64) WHERE dimension = 3 AND boundary = 2"),
        (5, "UPDATE golden360_internal.rfm_boundaries SET sort_key = sort_key + 1 WHERE dimension = 1 AND boundary = 4"),
    ] {
        c.batch_execute(tamper).unwrap();
        let dir = ScratchDir::new(&format!("incremental_walk_batch_{k}"));
        generate_with(&dir.0, SCALE, SEED, &["--batch", &k.to_string()]);
        ingest(&mut c, dir.path());
        c.batch_execute("CALL golden360.refresh_silver()").unwrap();
        let scans = refresh_gold_counting_scans(&mut c);
        assert_eq!(scans, 1, "batch {k}: everyone ranked, in one scan");
        let incremental = outcome(&mut c);
        c.batch_execute("CALL golden360.rebuild()").unwrap();
        assert_eq!(incremental, outcome(&mut c), "batch {k}, after {tamper}");
    }
}
