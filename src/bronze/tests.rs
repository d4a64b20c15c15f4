//! Bronze rules, one test each, against the real backend. Each test runs in
//! its own rolled-back transaction; failures are caught with a plpgsql
//! exception block (a real subtransaction), so a test can assert both the
//! error and that nothing was written.

#[pgrx::pg_schema]
mod tests {
    use olist_model::SOURCE_FILES;
    use crate::testing::*;
    use pgrx::prelude::*;
    use std::path::Path;

    fn bronze_rows() -> i64 {
        SOURCE_FILES.iter().map(|f| one::<i64>(&format!("SELECT count(*) FROM bronze.{}", f.table))).sum()
    }

    fn batches() -> i64 {
        one::<i64>("SELECT count(*) FROM golden360.bronze_batches")
    }

    #[pg_test]
    fn loads_every_file_once_and_skips_it_on_a_second_call() {
        let fx = Fixture::new("twice");
        let first = ingest(fx.path(), false);
        assert_eq!(first.len(), 9);
        assert!(first.iter().all(|(_, status, rows, rejected)| status == "loaded" && *rows == 2 && *rejected == 0));
        assert_eq!(bronze_rows(), 18);

        let second = ingest(fx.path(), false);
        assert!(second.iter().all(|(_, status, rows, _)| status == "skipped_duplicate" && *rows == 2), "{second:?}");
        assert_eq!(bronze_rows(), 18, "a second ingestion must add nothing");
        assert_eq!(batches(), 2, "each call is audited, even when it skips everything");
    }

    #[pg_test]
    fn the_same_files_in_another_directory_are_skipped() {
        let a = Fixture::new("dir-a");
        let b = Fixture::new("dir-b");
        ingest(a.path(), false);
        let again = ingest(b.path(), false);
        assert!(again.iter().all(|(_, status, ..)| status == "skipped_duplicate"), "{again:?}");
        assert_eq!(bronze_rows(), 18);
    }

    #[pg_test]
    fn a_changed_file_is_the_only_one_loaded_on_a_rerun() {
        let fx = Fixture::new("changed");
        ingest(fx.path(), false);
        fx.write("olist_sellers_dataset.csv", b"seller_id,seller_zip_code_prefix,seller_city,seller_state\ns9,01001,sao paulo,SP\n");
        let rerun = ingest(fx.path(), false);
        let loaded: Vec<_> = rerun.iter().filter(|r| r.1 == "loaded").map(|r| (r.0.as_str(), r.2)).collect();
        assert_eq!(loaded, vec![("olist_sellers_dataset.csv", 1)]);
        assert_eq!(one::<i64>("SELECT count(*) FROM bronze.sellers"), 3);
        assert_eq!(one::<i64>("SELECT count(DISTINCT _batch_id) FROM bronze.sellers"), 2);
    }

    #[pg_test]
    fn a_wrong_header_in_the_fifth_file_loads_nothing() {
        let fx = Fixture::new("bad-header");
        let fifth = &SOURCE_FILES[4];
        assert_eq!(fifth.file_name, "olist_order_reviews_dataset.csv");
        fx.write(fifth.file_name, b"review_id,order_id,score,review_comment_title\nr1,o1,5,\n");
        let error = ingest_error(fx.path(), false);
        assert!(error.starts_with("22P04 olist_order_reviews_dataset.csv has the wrong header"), "{error}");
        assert!(error.contains("expected columns: review_id,order_id,review_score,review_comment_title,review_comment_message,review_creation_date,review_answer_timestamp"), "{error}");
        assert!(error.contains("found columns:    review_id,order_id,score,review_comment_title"), "{error}");
        assert_eq!(bronze_rows(), 0);
        assert_eq!(batches(), 0);
        assert_eq!(one::<i64>("SELECT count(*) FROM golden360.bronze_files"), 0);
    }

    #[pg_test]
    fn an_empty_file_is_a_wrong_header() {
        let fx = Fixture::new("empty");
        fx.write("olist_sellers_dataset.csv", b"");
        let error = ingest_error(fx.path(), false);
        assert!(error.contains("olist_sellers_dataset.csv has the wrong header") && error.contains("(empty file)"), "{error}");
        assert_eq!(bronze_rows(), 0);
    }

    #[pg_test]
    fn a_missing_file_is_an_error_naming_it_unless_partial_is_allowed() {
        let fx = Fixture::new("partial");
        fx.remove("olist_geolocation_dataset.csv");
        fx.remove("olist_sellers_dataset.csv");
        let error = ingest_error(fx.path(), false);
        assert!(error.starts_with("58P01 ") && error.contains("is missing 2 of the nine Olist files"), "{error}");
        assert!(error.contains("missing: olist_sellers_dataset.csv, olist_geolocation_dataset.csv"), "{error}");
        assert_eq!(bronze_rows(), 0);
        assert_eq!(batches(), 0);

        let partial = ingest(fx.path(), true);
        assert_eq!(partial.len(), 7);
        assert_eq!(bronze_rows(), 14);
        let missing = one::<pgrx::JsonB>("SELECT metadata->'missing_files' FROM golden360.bronze_batches");
        assert_eq!(missing.0, serde_json::json!(["olist_sellers_dataset.csv", "olist_geolocation_dataset.csv"]));
    }

    #[pg_test]
    fn a_directory_with_none_of_the_files_is_an_error_even_when_partial() {
        let fx = Fixture::new("none");
        for source in &SOURCE_FILES {
            fx.remove(source.file_name);
        }
        let error = ingest_error(fx.path(), true);
        assert!(error.contains("is missing 9 of the nine Olist files") && error.contains("check the directory"), "{error}");
    }

    #[pg_test]
    fn bronze_tables_refuse_update_delete_and_truncate() {
        let fx = Fixture::new("append-only");
        ingest(fx.path(), false);
        // As after a commit: no deferred foreign-key checks pending, so a
        // TRUNCATE ... CASCADE gets as far as the append-only trigger.
        Spi::run("SET CONSTRAINTS ALL IMMEDIATE").unwrap();
        let mut tables: Vec<String> = SOURCE_FILES.iter().map(|f| format!("bronze.{}", f.table)).collect();
        tables.extend(["bronze.rejected_rows", "golden360.bronze_batches", "golden360.bronze_files"].map(String::from));
        for table in &tables {
            let column = one::<String>(&format!(
                "SELECT attname::text FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attnum = 1"
            ));
            for sql in [
                format!("UPDATE {table} SET {column} = {column}"),
                format!("DELETE FROM {table}"),
                format!("DELETE FROM {table} WHERE false"),
                format!("TRUNCATE {table} CASCADE"),
            ] {
                let error = error_of(&sql).unwrap_or_else(|| panic!("{sql} should have been refused"));
                assert!(error.starts_with("55000 ") && error.contains("bronze is append-only"), "{sql}: {error}");
            }
        }
        assert_eq!(bronze_rows(), 18);
    }

    #[pg_test]
    fn malformed_records_are_rejected_with_their_bytes_and_the_rest_loads() {
        let fx = Fixture::new("malformed");
        let mut content = b"seller_id,seller_zip_code_prefix,seller_city,seller_state\r\n".to_vec();
        content.extend_from_slice(b"s1,01001,sao paulo,SP\r\n"); // row 1: good
        content.extend_from_slice(b"s2,01002,sao paulo\r\n"); // row 2: 3 fields
        content.extend_from_slice(b"s3,01003,\"multi\nline\",SP,extra\r\n"); // row 3: 5 fields, spans 2 lines
        content.extend_from_slice(b"s4,01004,s\xe3o paulo,SP\r\n"); // row 4: Latin-1, not UTF-8
        content.extend_from_slice(b"s5,01005,nul\x00city,SP\r\n"); // row 5: NUL byte
        content.extend_from_slice(b"s6,01006,s\xc3\xa3o paulo,SP"); // row 6: good, no final newline
        fx.write("olist_sellers_dataset.csv", &content);
        let result = ingest(fx.path(), false);
        let sellers = result.iter().find(|r| r.0 == "olist_sellers_dataset.csv").unwrap();
        assert_eq!((sellers.2, sellers.3), (2, 4));

        assert_eq!(
            one::<String>("SELECT string_agg(seller_id || ':' || _row_number, ' ' ORDER BY _row_number) FROM bronze.sellers"),
            "s1:1 s6:6"
        );
        let rejected: Vec<(i64, i64, String, Vec<u8>)> = Spi::connect(|client| {
            client
                .select("SELECT row_number, line_number, reason, raw FROM bronze.rejected_rows ORDER BY row_number", None, &[])
                .unwrap()
                .map(|r| (r.get(1).unwrap().unwrap(), r.get(2).unwrap().unwrap(), r.get(3).unwrap().unwrap(), r.get(4).unwrap().unwrap()))
                .collect()
        });
        assert_eq!(
            rejected,
            vec![
                (2, 3, "wrong number of fields: expected 4, found 3".into(), b"s2,01002,sao paulo".to_vec()),
                (3, 4, "wrong number of fields: expected 4, found 5".into(), b"s3,01003,\"multi\nline\",SP,extra".to_vec()),
                (4, 6, "invalid UTF-8 in seller_city".into(), b"s4,01004,s\xe3o paulo,SP".to_vec()),
                (5, 7, "NUL byte in seller_city (PostgreSQL text cannot hold it)".into(), b"s5,01005,nul\x00city,SP".to_vec()),
            ]
        );
        assert_eq!(
            one::<i64>("SELECT (metadata->'files'->6->>'rejected')::bigint FROM golden360.bronze_batches"),
            4
        );
    }

    #[pg_test]
    fn fields_keep_their_exact_bytes() {
        let fx = Fixture::new("formats");
        // BOM + CRLF, as the real translation file.
        fx.write(
            "product_category_name_translation.csv",
            b"\xef\xbb\xbfproduct_category_name,product_category_name_english\r\nbeleza_saude,health_beauty\r\n pet_shop ,\r\n",
        );
        fx.write(
            "olist_order_reviews_dataset.csv",
            "review_id,order_id,review_score,review_comment_title,review_comment_message,review_creation_date,review_answer_timestamp\n\
             r1,o1,5,,\"Chegou antes do prazo, recomendo!\r\nNota \"\"10\"\"\",2018-01-18 00:00:00,2018-01-18 19:12:30\n\
             r2,o2, 4 ,Ótimo,,2018-01-19,\n"
                .as_bytes(),
        );
        ingest(fx.path(), false);
        assert_eq!(
            one::<String>("SELECT string_agg(format('[%s|%s]', product_category_name, product_category_name_english), '' ORDER BY _row_number) FROM bronze.category_translation"),
            "[beleza_saude|health_beauty][ pet_shop |]"
        );
        assert_eq!(
            one::<String>("SELECT review_comment_message FROM bronze.order_reviews WHERE review_id = 'r1'"),
            "Chegou antes do prazo, recomendo!\r\nNota \"10\""
        );
        assert_eq!(
            one::<String>("SELECT format('[%s|%s|%s|%s]', review_score, review_comment_title, review_comment_message, review_answer_timestamp) FROM bronze.order_reviews WHERE review_id = 'r2'"),
            "[ 4 |Ótimo||]"
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM bronze.order_reviews WHERE review_comment_message IS NULL"), 0);
    }

    #[pg_test]
    fn an_index_a_dba_adds_on_bronze_is_maintained() {
        let fx = Fixture::new("indexed");
        Spi::run("CREATE INDEX sellers_by_id ON bronze.sellers (seller_id)").unwrap();
        ingest(fx.path(), false);
        Spi::run("SET LOCAL enable_seqscan = off").unwrap();
        let plan = one::<pgrx::Json>("EXPLAIN (FORMAT JSON) SELECT count(*) FROM bronze.sellers WHERE seller_id = 'seller_id-2'").0;
        assert!(plan.to_string().contains("sellers_by_id"), "{plan}");
        assert_eq!(one::<i64>("SELECT count(*) FROM bronze.sellers WHERE seller_id = 'seller_id-2'"), 1);
    }

    #[pg_test]
    fn lineage_names_the_batch_file_row_and_time() {
        let fx = Fixture::new("lineage");
        let batch = one::<i64>(&format!("SELECT max(batch_id) FROM golden360.ingest_bronze({})", quote(fx.path())));
        assert_eq!(
            one::<String>("SELECT string_agg(format('%s/%s/%s', _batch_id, _source_file, _row_number), ' ' ORDER BY _row_number) FROM bronze.orders"),
            format!("{batch}/olist_orders_dataset.csv/1 {batch}/olist_orders_dataset.csv/2")
        );
        assert!(one::<bool>(
            "SELECT bool_and(o._ingested_at = b.started_at) FROM bronze.orders o JOIN golden360.bronze_batches b ON b.batch_id = o._batch_id"
        ));
    }

    #[pg_test]
    fn the_manifest_is_the_batch_metadata() {
        let fx = Fixture::new("manifest");
        let batch = one::<i64>(&format!("SELECT max(batch_id) FROM golden360.ingest_bronze({})", quote(fx.path())));
        let manifest = one::<pgrx::JsonB>(&format!("SELECT golden360.bronze_manifest({batch})")).0;
        assert_eq!(manifest["batch_id"], batch);
        assert_eq!(manifest["extension_version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(manifest["database_user"], one::<String>("SELECT current_user::text"));
        let files = manifest["files"].as_array().unwrap();
        assert_eq!(files.len(), 9);
        let customers = &files[0];
        assert_eq!(customers["name"], "olist_customers_dataset.csv");
        assert_eq!(customers["status"], "loaded");
        assert_eq!(customers["rows"], 2);
        let sha = one::<String>(&format!(
            "SELECT encode(sha256(pg_read_binary_file({})), 'hex')",
            quote(&format!("{}/olist_customers_dataset.csv", fx.path()))
        ));
        assert_eq!(customers["sha256"], sha.as_str());

        let error = error_of("SELECT golden360.bronze_manifest(-1)").unwrap();
        assert!(error.starts_with("P0002 bronze batch -1 does not exist"), "{error}");
    }

    #[pg_test]
    fn a_role_without_file_privileges_is_refused() {
        let fx = Fixture::new("privileges");
        Spi::run("CREATE ROLE g360_nobody; GRANT USAGE ON SCHEMA golden360 TO g360_nobody").unwrap();
        Spi::run("SET LOCAL ROLE g360_nobody").unwrap();
        let error = ingest_error(fx.path(), false);
        Spi::run("RESET ROLE").unwrap();
        assert!(error.starts_with("42501 permission denied for function ingest_bronze"), "{error}");

        // EXECUTE alone (a DBA's grant) does not let a role read server files.
        Spi::run("GRANT EXECUTE ON FUNCTION golden360.ingest_bronze(text, boolean) TO g360_nobody").unwrap();
        Spi::run("SET LOCAL ROLE g360_nobody").unwrap();
        let error = ingest_error(fx.path(), false);
        Spi::run("RESET ROLE").unwrap();
        assert!(error.starts_with("42501 permission denied to read server files"), "{error}");
        assert!(error.contains("GRANT golden360_loader TO"), "{error}");
        assert_eq!(bronze_rows(), 0);

        // golden360_loader carries everything ingestion needs.
        Spi::run("GRANT golden360_loader TO g360_nobody").unwrap();
        Spi::run("SET LOCAL ROLE g360_nobody").unwrap();
        let loaded = ingest(fx.path(), false);
        Spi::run("RESET ROLE").unwrap();
        assert_eq!(loaded.len(), 9);
        assert_eq!(bronze_rows(), 18);
        // The audit trail names the caller, though the rows were written as the owner.
        let batch = one::<i64>("SELECT max(batch_id) FROM golden360.bronze_batches");
        assert_eq!(
            one::<String>(&format!("SELECT golden360.bronze_manifest({batch})->>'database_user'")),
            "g360_nobody"
        );
        // And the caller may still not write bronze itself.
        Spi::run("SET LOCAL ROLE g360_nobody").unwrap();
        let error = error_of("INSERT INTO bronze.sellers SELECT * FROM bronze.sellers LIMIT 1").unwrap();
        Spi::run("RESET ROLE").unwrap();
        assert!(error.starts_with("42501 permission denied for table sellers"), "{error}");
    }

    #[pg_test]
    fn paths_must_be_absolute_existing_directories() {
        let fx = Fixture::new("paths");
        let error = ingest_error("relative/dir", false);
        assert!(error.starts_with("22023 source_dir \"relative/dir\" is not an absolute path"), "{error}");
        let error = ingest_error("/nonexistent/golden360", false);
        assert!(error.starts_with("58P01 cannot open source directory \"/nonexistent/golden360\""), "{error}");
        let error = ingest_error(&format!("{}/olist_orders_dataset.csv", fx.path()), false);
        assert!(error.contains("is not a directory"), "{error}");
    }

    #[pg_test]
    fn a_source_file_that_is_not_a_regular_file_is_refused() {
        let fx = Fixture::new("fifo");
        fx.remove("olist_orders_dataset.csv");
        let status = std::process::Command::new("mkfifo").arg(fx.dir.join("olist_orders_dataset.csv")).status().unwrap();
        assert!(status.success());
        let error = ingest_error(fx.path(), false);
        assert!(error.contains("olist_orders_dataset.csv\" is not a regular file"), "{error}");
    }

    #[pg_test]
    fn data_dir_confines_directories_and_symlinks() {
        let root = Fixture::new("root");
        let inside = root.dir.join("inside");
        let outside = Fixture::new("outside");
        std::fs::create_dir(&inside).unwrap();
        for source in &SOURCE_FILES {
            std::fs::copy(root.dir.join(source.file_name), inside.join(source.file_name)).unwrap();
        }
        Spi::run(&format!("SET LOCAL golden360.data_dir = {}", quote(inside.to_str().unwrap()))).unwrap();

        // '..' out of the data directory.
        let error = ingest_error(&format!("{}/..", inside.display()), false);
        assert!(error.starts_with("42501 ") && error.contains("is outside golden360.data_dir"), "{error}");
        // A symlinked directory inside pointing outside.
        let link = inside.join("escape");
        std::os::unix::fs::symlink(&outside.dir, &link).unwrap();
        let error = ingest_error(link.to_str().unwrap(), false);
        assert!(error.contains("is outside golden360.data_dir") && error.contains(outside.path()), "{error}");
        // A symlinked file inside: refused whatever it points at (files are
        // opened with O_NOFOLLOW).
        let sellers = inside.join("olist_sellers_dataset.csv");
        std::fs::remove_file(&sellers).unwrap();
        std::os::unix::fs::symlink(outside.dir.join("olist_sellers_dataset.csv"), &sellers).unwrap();
        let error = ingest_error(inside.to_str().unwrap(), false);
        assert!(error.starts_with("42501 source file") && error.contains("olist_sellers_dataset.csv\" is a symbolic link"), "{error}");
        assert_eq!(bronze_rows(), 0);

        // Inside, with a real file, it loads.
        std::fs::remove_file(&sellers).unwrap();
        std::fs::copy(outside.dir.join("olist_sellers_dataset.csv"), &sellers).unwrap();
        assert_eq!(ingest(inside.to_str().unwrap(), false).len(), 9);
    }

    #[pg_test]
    fn only_superusers_may_set_data_dir() {
        error_of("SELECT golden360.source_files()"); // loads the library, which defines the setting
        Spi::run("CREATE ROLE g360_setter; SET LOCAL ROLE g360_setter").unwrap();
        let error = error_of("SET golden360.data_dir = '/'").unwrap();
        Spi::run("RESET ROLE").unwrap();
        assert!(error.starts_with("42501 permission denied to set parameter \"golden360.data_dir\""), "{error}");
    }

    /// The real Olist copy beside the project: every record lands, and every
    /// sha256 equals PostgreSQL's own sha256 of the file's bytes.
    #[pg_test]
    fn the_real_olist_files_land_whole() {
        // scripts/test.sh sets G360_OLIST_REAL to a copy the server can read
        // when the checkout's parents are private.
        let dir = option_env!("G360_OLIST_REAL")
            .map(Path::new)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/olist"))
            .canonicalize()
            .expect("the real Olist copy (../shared/data/olist)");
        let result = ingest(dir.to_str().unwrap(), false);
        let expected = [
            ("olist_customers_dataset.csv", 99_441),
            ("olist_orders_dataset.csv", 16_818),
            ("olist_order_items_dataset.csv", 112_650),
            ("olist_order_payments_dataset.csv", 103_886),
            ("olist_order_reviews_dataset.csv", 8_225),
            ("olist_products_dataset.csv", 32_951),
            ("olist_sellers_dataset.csv", 3_095),
            ("olist_geolocation_dataset.csv", 45_928),
            ("product_category_name_translation.csv", 71),
        ];
        let got: Vec<(&str, i64, i64)> = result.iter().map(|r| (r.0.as_str(), r.2, r.3)).collect();
        assert_eq!(got, expected.iter().map(|&(f, n)| (f, n, 0)).collect::<Vec<_>>());
        for (source, (file, rows)) in SOURCE_FILES.iter().zip(expected) {
            assert_eq!(one::<i64>(&format!("SELECT count(*) FROM bronze.{}", source.table)), rows, "{file}");
            let path = quote(dir.join(file).to_str().unwrap());
            assert!(
                one::<bool>(&format!(
                    "SELECT sha256 = encode(sha256(pg_read_binary_file({path})), 'hex') FROM golden360.bronze_files WHERE file_name = '{file}'"
                )),
                "{file}: sha256 differs from PostgreSQL's"
            );
        }
    }
}
