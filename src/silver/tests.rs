//! Silver rules against the real backend: one crafted row per rule, typing,
//! dedup, reviews, and the quality gate. Each test is one rolled-back
//! transaction; refresh_silver() runs inside it.

#[pgrx::pg_schema]
mod tests {
    use crate::testing::*;
    use pgrx::prelude::*;
    use std::collections::BTreeSet;

    /// Valid rows for every file: (file, header-less CSV lines).
    const BASELINE: &[(&str, &[&str])] = &[
        ("olist_customers_dataset.csv", &["c1,u1,01001,são paulo,SP", "c2,u2,4038,  rio  de janeiro ,rj"]),
        (
            "olist_orders_dataset.csv",
            &[
                "o1,c1,delivered,2018-01-01 10:00:00,2018-01-01 11:00:00,2018-01-02 10:00:00,2018-01-05 10:00:00,2018-01-20 00:00:00",
                "o2,c2, SHIPPED ,2018-02-01T09:00:00,,,,2018-02-20",
            ],
        ),
        (
            "olist_order_items_dataset.csv",
            &["o1,1,p1,s1,2018-01-03 10:00:00,58.9,13.29", "o2,1,p2,s1,2018-02-03 10:00:00,12.345,0"],
        ),
        ("olist_order_payments_dataset.csv", &["o1,1,credit_card,2,72.19", "o2,1,boleto,1,12.35"]),
        ("olist_order_reviews_dataset.csv", &["r1,o1,5,,,2018-01-06 00:00:00,2018-01-07 10:00:00"]),
        ("olist_products_dataset.csv", &["p1,beleza_saude,40,287,1,225,16,10,14", "p2, pc_gamer ,,,,,,,"]),
        ("olist_sellers_dataset.csv", &["s1,01001,sao paulo,SP"]),
        ("olist_geolocation_dataset.csv", &["01001,-23.55,-46.63,sao paulo,SP", "01001,-23.55,-46.63,sao paulo,SP"]),
        ("product_category_name_translation.csv", &["beleza_saude,health_beauty"]),
    ];

    /// A fixture of the baseline plus `extra` lines appended to some files.
    fn fixture(name: &str, extra: &[(&str, &str)]) -> Fixture {
        let fx = Fixture::new(name);
        for (file, lines) in BASELINE {
            let source = olist_model::SOURCE_FILES.iter().find(|f| f.file_name == *file).unwrap();
            let mut content = String::new();
            if source.table == "category_translation" {
                content.push('\u{feff}');
            }
            content.push_str(&source.columns.join(","));
            content.push_str("\r\n");
            for line in lines.iter().copied().chain(extra.iter().filter(|(f, _)| f == file).map(|(_, l)| *l)) {
                content.push_str(line);
                content.push_str("\r\n");
            }
            fx.write(file, content.as_bytes());
        }
        fx
    }

    fn refresh(gate: &str) {
        Spi::run(&format!("SET LOCAL golden360.quality_gate = {gate}")).unwrap();
        Spi::run("CALL golden360.refresh_silver()").unwrap();
    }

    fn text(sql: &str) -> String {
        one::<String>(sql)
    }

    /// Every rule: a row breaking it (and nothing before it) is quarantined
    /// with that rule as reason; the baseline's good rows are in silver.
    #[pg_test]
    fn every_rule_quarantines_the_row_that_breaks_it() {
        let o = "olist_orders_dataset.csv";
        let i = "olist_order_items_dataset.csv";
        let p = "olist_order_payments_dataset.csv";
        let r = "olist_order_reviews_dataset.csv";
        let g = "olist_geolocation_dataset.csv";
        let pr = "olist_products_dataset.csv";
        let cases: &[(&str, &str, &str)] = &[
            ("olist_customers_dataset.csv", ",u9,1000,x,SP", "customer_id_present"),
            ("olist_customers_dataset.csv", "c9,  ,1000,x,SP", "customer_unique_id_present"),
            ("olist_customers_dataset.csv", "c8,u8,10a0,x,SP", "customer_zip_type"),
            (o, ",c1,shipped,2018-01-01,,,,2018-01-20", "order_id_present"),
            (o, "o9,,shipped,2018-01-01,,,,2018-01-20", "customer_id_present"),
            (o, "o8,c1, ,2018-01-01,,,,2018-01-20", "order_status_present"),
            (o, "o7,c1,shipped,2018-02-30,,,,2018-03-01", "order_purchase_timestamp_type"),
            (o, "o6,c1,shipped,2018-01-01,yesterday,,,2018-03-01", "order_approved_at_type"),
            (o, "o5,c1,shipped,2018-01-01,,2018-13-01,,2018-03-01", "order_delivered_carrier_date_type"),
            (o, "o4,c1,shipped,2018-01-01,,,2018-01-01 25:00:00,2018-03-01", "order_delivered_customer_date_type"),
            (o, "o3,c1,shipped,2018-01-01,,,,20180301", "order_estimated_delivery_date_type"),
            (o, "o10,c1,lost,2018-01-01,,,,2018-03-01", "order_status_known"),
            (o, "o11,c1,delivered,2018-01-01,,,,2018-03-01", "delivered_has_delivery_date"),
            (o, "o12,c1,delivered,2018-01-10,,,2018-01-05,2018-03-01", "delivery_not_before_purchase"),
            (o, "o13,c404,shipped,2018-01-01,,,,2018-03-01", "customer_exists"),
            (i, ",1,p1,s1,2018-01-03,1,1", "order_id_present"),
            (i, "o1,,p1,s1,2018-01-03,1,1", "order_item_id_present"),
            (i, "o1,2,p1,s1,2018-01-03,,1", "price_present"),
            (i, "o1,3,p1,s1,2018-01-03,1,", "freight_value_present"),
            (i, "o1,x4,p1,s1,2018-01-03,1,1", "order_item_id_type"),
            (i, "o1,5,p1,s1,03/01/2018,1,1", "shipping_limit_date_type"),
            (i, "o1,6,p1,s1,2018-01-03,R$5,1", "price_type"),
            (i, "o1,7,p1,s1,2018-01-03,1,1.2.3", "freight_value_type"),
            (i, "o1,8,p1,s1,2018-01-03,0.001,1", "price_positive"),
            (i, "o1,9,p1,s1,2018-01-03,1,-0.01", "freight_not_negative"),
            (i, "o404,1,p1,s1,2018-01-03,1,1", "order_exists"),
            (p, ",1,boleto,1,1", "order_id_present"),
            (p, "o1,,boleto,1,1", "payment_sequential_present"),
            (p, "o1,2,,1,1", "payment_type_present"),
            (p, "o1,3,boleto,,1", "payment_installments_present"),
            (p, "o1,4,boleto,1,", "payment_value_present"),
            (p, "o1,x5,boleto,1,1", "payment_sequential_type"),
            (p, "o1,6,boleto,one,1", "payment_installments_type"),
            (p, "o1,7,boleto,1,1e2", "payment_value_type"),
            (p, "o1,8,boleto,1,0", "payment_value_positive"),
            (p, "o1,9,pix,1,1", "payment_type_known"),
            (p, "o1,10,boleto,-1,1", "installments_not_negative"),
            (p, "o404,1,boleto,1,1", "order_exists"),
            (r, "r9,,5,,,2018-01-06,2018-01-07", "order_id_present"),
            (r, "r8,o2,,,,2018-01-06,2018-01-07", "review_score_present"),
            (r, "r7,o2,cinco,,,2018-01-06,2018-01-07", "review_score_type"),
            (r, "r6,o2,4,,,2018-01-32,2018-01-07", "review_creation_date_type"),
            (r, "r5,o2,4,,,2018-01-06,tomorrow", "review_answer_timestamp_type"),
            (r, "r4,o2,6,,,2018-01-06,2018-01-07", "review_score_in_range"),
            ("product_category_name_translation.csv", ",food", "product_category_name_present"),
            ("product_category_name_translation.csv", "bebidas, ", "product_category_name_english_present"),
            (pr, ",beleza_saude,1,1,1,1,1,1,1", "product_id_present"),
            (pr, "p9,x,a,1,1,1,1,1,1", "product_name_lenght_type"),
            (pr, "p8,x,1,b,1,1,1,1,1", "product_description_lenght_type"),
            (pr, "p7,x,1,1,1.5,1,1,1,1", "product_photos_qty_type"),
            (pr, "p6,x,1,1,1,1e3,1,1,1", "product_weight_g_type"),
            (pr, "p5,x,1,1,1,1,ten,1,1", "product_length_cm_type"),
            (pr, "p4,x,1,1,1,1,1,-,1", "product_height_cm_type"),
            (pr, "p3,x,1,1,1,1,1,1,9999999999", "product_width_cm_type"),
            ("olist_sellers_dataset.csv", ",01001,x,SP", "seller_id_present"),
            ("olist_sellers_dataset.csv", "s9,0100-1,x,SP", "seller_zip_type"),
            (g, ",-23.5,-46.6,x,SP", "zip_present"),
            (g, "01002,,-46.6,x,SP", "lat_present"),
            (g, "01003,-23.5, ,x,SP", "lng_present"),
            (g, "0100x,-23.5,-46.6,x,SP", "zip_type"),
            (g, "01004,inf,-46.6,x,SP", "lat_type"),
            (g, "01005,-23.5,NaN,x,SP", "lng_type"),
            (g, "01006,38.7,-46.6,x,SP", "lat_inside_brazil"),
            (g, "01007,-23.5,-9.1,x,SP", "lng_inside_brazil"),
        ];
        let fx = fixture("rules", &cases.iter().map(|(f, l, _)| (*f, *l)).collect::<Vec<_>>());
        ingest(fx.path(), false);
        refresh("warn");

        let mut covered = BTreeSet::new();
        for (file, line, reason) in cases {
            let source = olist_model::SOURCE_FILES.iter().find(|f| f.file_name == *file).unwrap();
            let baseline = BASELINE.iter().find(|(f, _)| f == file).unwrap().1.len();
            let appended = cases.iter().filter(|(f, ..)| f == file).position(|(_, l, _)| l == line).unwrap();
            let row = baseline + appended + 1;
            let got = Spi::get_one::<String>(&format!(
                "SELECT reason FROM silver.quarantine WHERE table_name = '{}' AND row_number = {row}",
                source.table
            ))
            .unwrap();
            assert_eq!(got.as_deref(), Some(*reason), "{}: {line}", source.table);
            covered.insert(format!("{}.{reason}", source.table));
        }
        let rules: BTreeSet<String> = Spi::connect(|c| {
            c.select("SELECT table_name || '.' || rule_name FROM golden360.silver_rules", None, &[])
                .unwrap()
                .map(|r| r.get::<String>(1).unwrap().unwrap())
                .collect()
        });
        assert_eq!(covered, rules, "every rule in golden360.silver_rules has a case here");
        assert_eq!(one::<i64>("SELECT count(*) FROM silver.quarantine"), cases.len() as i64);
        // The quarantined record is the whole bronze row.
        assert_eq!(
            text("SELECT record->>'review_score' FROM silver.quarantine WHERE reason = 'review_score_type'"),
            "cinco"
        );
        for (table, rows) in [
            ("customers", 2),
            ("orders", 2),
            ("order_items", 2),
            ("order_payments", 2),
            ("order_reviews", 1),
            ("products", 2),
            ("sellers", 1),
            ("geolocation", 1),
            ("category_translation", 1),
        ] {
            assert_eq!(one::<i64>(&format!("SELECT count(*) FROM silver.{table}")), rows, "silver.{table}");
        }
    }

    #[pg_test]
    fn values_are_typed_by_the_precise_rules() {
        let fx = fixture("typing", &[]);
        ingest(fx.path(), false);
        refresh("error");
        assert_eq!(text("SELECT string_agg(customer_zip::text, ',' ORDER BY customer_id) FROM silver.customers"), "1001,4038");
        assert_eq!(
            text("SELECT string_agg(customer_city || '/' || customer_state, ',' ORDER BY customer_id) FROM silver.customers"),
            "SÃO PAULO/SP,RIO DE JANEIRO/RJ"
        );
        // Unicode upper-casing does not depend on the database's collation:
        // PostgreSQL's own upper() under "C" leaves the ã alone.
        assert_eq!(text("SELECT upper('são paulo' COLLATE \"C\")"), "SãO PAULO");
        assert_eq!(
            text("SELECT string_agg(price::text || '+' || freight_value::text, ',' ORDER BY order_id) FROM silver.order_items"),
            "58.90+13.29,12.35+0.00"
        );
        assert_eq!(
            text("SELECT order_status || ' ' || order_purchase_timestamp::text || ' ' || order_estimated_delivery_date::text FROM silver.orders WHERE order_id = 'o2'"),
            "shipped 2018-02-01 09:00:00 2018-02-20 00:00:00"
        );
        assert_eq!(
            text("SELECT string_agg(format('%s:%s:%s', product_category_name, product_category, coalesce(product_weight_g::text, 'null')), ',' ORDER BY product_id) FROM silver.products"),
            "beleza_saude:health_beauty:225,pc_gamer:pc_gamer:null"
        );
        assert_eq!(text("SELECT product_category_name FROM silver.category_translation"), "beleza_saude");
        assert_eq!(text("SELECT review_comment_message FROM silver.order_reviews"), "No comment provided");
        assert_eq!(one::<i64>("SELECT duplicates FROM golden360.silver_runs WHERE table_name = 'geolocation'"), 1);
        assert!(one::<bool>("SELECT bool_and(status = 'passed') FROM golden360.quality_checks"));
    }

    /// A row delivered again unchanged (here spelt differently, typed the
    /// same) keeps the lineage of its first delivery; a value that comes
    /// back after a change takes the lineage of its return. An incremental
    /// refresh and a rebuild agree, and the counts are the same either way.
    #[pg_test]
    fn an_unchanged_row_keeps_the_lineage_of_its_first_delivery() {
        let fx = fixture("lineage", &[("olist_customers_dataset.csv", "l1,u1,01001,campinas,SP\nl2,u2,01001,niterói,RJ")]);
        ingest(fx.path(), false);
        refresh("warn");
        let header = "customer_id,customer_unique_id,customer_zip_code_prefix,customer_city,customer_state\n";
        for rows in ["l1,u1,1001, Campinas ,SP\nl2,u2,13000,curitiba,PR\n", "l1,u1,01001,campinas,SP\nl2,u2,01001,niterói,RJ\n"] {
            fx.write("olist_customers_dataset.csv", format!("{header}{rows}").as_bytes());
            ingest(fx.path(), false);
            refresh("warn");
        }
        let lineage = "SELECT string_agg(format('%s:%s:%s', customer_id, customer_city,
                              (SELECT count(*) FROM golden360.bronze_batches b WHERE b.batch_id <= c._batch_id)), ',' ORDER BY customer_id)
                         FROM silver.customers c WHERE customer_id LIKE 'l_'";
        let counts = "SELECT format('%s/%s/%s/%s', bronze_rows, silver_rows, duplicates, quarantined)
                        FROM golden360.silver_runs WHERE table_name = 'customers' ORDER BY run_id DESC LIMIT 1";
        assert_eq!(one::<String>("SELECT mode FROM golden360.silver_runs ORDER BY run_id DESC LIMIT 1"), "incremental");
        assert_eq!(text(lineage), "l1:CAMPINAS:1,l2:NITERÓI:3");
        let incremental = text(counts);
        Spi::run("SELECT golden360_internal.silver_refresh(true)").unwrap();
        assert_eq!(one::<String>("SELECT mode FROM golden360.silver_runs ORDER BY run_id DESC LIMIT 1"), "full");
        assert_eq!(text(lineage), "l1:CAMPINAS:1,l2:NITERÓI:3");
        assert_eq!(text(counts), incremental);
        assert_eq!(incremental, "8/4/4/0");
    }

    #[pg_test]
    fn the_latest_valid_row_wins_across_and_within_batches() {
        let fx = fixture("dedup", &[("olist_customers_dataset.csv", "c1,u1,01001,campinas,SP")]);
        ingest(fx.path(), false);
        // Batch 2: c1 moves again (valid); c2's new row is invalid and must
        // not replace its valid batch-1 row.
        fx.write(
            "olist_customers_dataset.csv",
            "customer_id,customer_unique_id,customer_zip_code_prefix,customer_city,customer_state\n\
             c1,u1,13000,curitiba,PR\nc2,u2,zip?,niterói,RJ\n"
                .as_bytes(),
        );
        let second = ingest(fx.path(), false);
        assert_eq!(second.iter().filter(|r| r.1 == "loaded").count(), 1);
        refresh("warn");
        assert_eq!(
            text("SELECT string_agg(format('%s:%s:%s', customer_id, customer_city, _batch_id = (SELECT max(batch_id) FROM golden360.bronze_batches)), ',' ORDER BY customer_id) FROM silver.customers"),
            "c1:CURITIBA:t,c2:RIO DE JANEIRO:f"
        );
        assert_eq!(
            text("SELECT format('%s/%s/%s', bronze_rows, duplicates, quarantined) FROM golden360.silver_runs WHERE table_name = 'customers'"),
            "5/2/1"
        );
        assert_eq!(text("SELECT reason FROM silver.quarantine"), "customer_zip_type");
    }

    #[pg_test]
    fn the_latest_review_of_an_order_is_kept() {
        let r = "olist_order_reviews_dataset.csv";
        let fx = fixture(
            "reviews",
            &[
                (r, "r2,o1,1,Ruim,\"chegou quebrado, péssimo\",2018-01-08 00:00:00,2018-01-09 10:00:00"),
                (r, "r3,o1,3,,ok,2018-01-10 00:00:00,"),
                (r, "r4,o2,4,,,2018-02-10,2018-02-11 10:00:00"),
            ],
        );
        ingest(fx.path(), false);
        refresh("error");
        // o1: r2 has the latest answer timestamp; r3's NULL answer sorts last.
        assert_eq!(
            text("SELECT string_agg(format('%s=%s:%s', order_id, review_id, review_comment_message), ',' ORDER BY order_id) FROM silver.order_reviews"),
            "o1=r2:chegou quebrado, péssimo,o2=r4:No comment provided"
        );
        assert_eq!(one::<i64>("SELECT duplicates FROM golden360.silver_runs WHERE table_name = 'order_reviews'"), 2);
    }

    #[pg_test]
    fn conservation_holds_and_is_recorded_for_every_table() {
        let fx = fixture("conservation", &[("olist_order_items_dataset.csv", "o404,1,p1,s1,2018-01-03,1,1")]);
        ingest(fx.path(), false);
        refresh("warn");
        assert_eq!(
            one::<i64>("SELECT count(*) FROM golden360.quality_checks WHERE check_name = 'conservation' AND status = 'passed' AND failed = 0"),
            9
        );
        assert!(one::<bool>(
            "SELECT bool_and(s.bronze_rows = s.silver_rows + s.duplicates + s.quarantined) FROM golden360.silver_runs s"
        ));
    }

    /// A new batch of 20 orders, one with an unknown status: 95% of the
    /// run's input passes, under the 99% business threshold. Then a refresh
    /// with no new batch passes: the accepted batch does not fail it again.
    #[pg_test]
    fn the_quality_gate_fails_the_run_and_keeps_silver_or_warns() {
        let fx = fixture("gate", &[]);
        ingest(fx.path(), false);
        refresh("error");
        let before = text("SELECT string_agg(order_id, ',' ORDER BY order_id) FROM silver.orders");

        let mut orders = String::from(
            "order_id,customer_id,order_status,order_purchase_timestamp,order_approved_at,\
             order_delivered_carrier_date,order_delivered_customer_date,order_estimated_delivery_date\n",
        );
        for n in 1..=20 {
            let status = if n == 20 { "in_transit" } else { "shipped" };
            orders.push_str(&format!("o{n},c1,{status},2018-03-01,,,,2018-03-20\n"));
        }
        fx.write("olist_orders_dataset.csv", orders.as_bytes());
        ingest(fx.path(), false);

        Spi::run("SET LOCAL golden360.quality_gate = error").unwrap();
        let error = error_of("CALL golden360.refresh_silver()").expect("the gate should fail the run");
        assert!(
            error.starts_with("23514 silver quality gate failed: orders.order_status_known (pass rate 95.0000%, threshold > 99.0000%)"),
            "{error}"
        );
        assert_eq!(text("SELECT string_agg(order_id, ',' ORDER BY order_id) FROM silver.orders"), before, "silver unchanged");

        refresh("warn");
        assert_eq!(one::<i64>("SELECT count(*) FROM silver.orders"), 19);
        let latest = "SELECT format('%s %s %s', status, passed, failed) FROM golden360.quality_checks \
                      WHERE check_name = 'order_status_known' AND run_id = (SELECT max(run_id) FROM golden360.quality_checks)";
        assert_eq!(text(latest), "failed 19 1");

        // The accepted batch is not measured again: a later batch passes
        // under error on its own rows.
        fx.write(
            "olist_orders_dataset.csv",
            b"order_id,customer_id,order_status,order_purchase_timestamp,order_approved_at,\
              order_delivered_carrier_date,order_delivered_customer_date,order_estimated_delivery_date\n\
              o21,c1,shipped,2018-03-02,,,,2018-03-20\n",
        );
        ingest(fx.path(), false);
        refresh("error");
        assert_eq!(text(latest), "passed 1 0");
        assert_eq!(one::<i64>("SELECT count(*) FROM silver.quarantine WHERE reason = 'order_status_known'"), 1);
    }

    /// A sort in memory whose records hold more heap than their count
    /// promised (reviews' preference values are boxed, with their text)
    /// hands them to PostgreSQL's tuplesort once they outgrow the budget,
    /// and gives the order a sort in memory gives.
    #[pg_test]
    fn a_sort_whose_records_outgrow_its_budget_spills_in_the_same_order() {
        use crate::pg::sort::{SortRecord, Sorter};
        use crate::silver::build::{sort_by_key_best_first, Rank, RankValue, Ranked};
        Spi::run("SET LOCAL maintenance_work_mem = '1MB'").unwrap();
        let records = |n: u32, text: bool| {
            (0..n).map(move |i| Ranked {
                key: u128::from(i % 97),
                rank: Rank {
                    prefer: text.then(|| {
                        vec![Some(RankValue::Bytes(format!("{:0>200}", i * 7919 % 10007).into_bytes())), None].into()
                    }),
                    batch: 1,
                    row: i64::from(i),
                },
                at: i,
                content: u128::from(i),
            })
        };
        for text in [false, true] {
            // 10,000 records of their own size (80 bytes) fit 1 MB.
            let mut sort = Sorter::<Ranked>::for_records(10_000, 1);
            assert!(!sort.spills());
            for r in records(10_000, text) {
                sort.put(r);
            }
            assert_eq!(sort.spills(), text, "with 200 bytes of text each they do not");
            let mut got = Vec::new();
            sort.sorted(|r| got.push(r));
            let mut want: Vec<Ranked> = records(10_000, text).collect();
            sort_by_key_best_first(&mut want);
            assert_eq!(got, want.iter().map(SortRecord::read).collect::<Vec<_>>(), "text {text}");
        }
    }
}
