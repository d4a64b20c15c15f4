-- Bronze: golden360.ingest_bronze(source_dir, allow_partial) and what it
-- records. The fixture (pg_test/regress/data, copied by scripts/test.sh to
-- /var/tmp/golden360-regress/olist) is nine small hand-written files.
\set SHOW_CONTEXT never
CREATE EXTENSION golden360;
SELECT extversion FROM pg_extension WHERE extname = 'golden360';

-- The nine files golden360 reads.
SELECT file_name, table_name, array_length(columns, 1) AS columns FROM golden360.source_files();

-- One batch: every file loaded.
SELECT file_name, rows, rejected, status, batch_id, left(sha256, 16) AS sha256_prefix, bytes
  FROM golden360.ingest_bronze('/var/tmp/golden360-regress/olist');

-- The same files again: nothing added, the earlier batch named.
SELECT file_name, rows, status, batch_id FROM golden360.ingest_bronze('/var/tmp/golden360-regress/olist');
SELECT batch_id, (metadata->'files'->0)->>'status' AS first_file, metadata->>'database_user' AS database_user,
       jsonb_array_length(metadata->'files') AS files
  FROM golden360.bronze_batches ORDER BY batch_id;

-- Bronze keeps the bytes as parsed: the quoted review with its newline,
-- the BOM gone from the translation header.
SELECT review_id, review_comment_message FROM bronze.order_reviews WHERE review_id = 'r1';
SELECT product_category_name, _row_number FROM bronze.category_translation ORDER BY _row_number;

-- The manifest of a batch, and of one that does not exist.
SELECT (golden360.bronze_manifest(1)->'files'->0) - 'sha256' AS customers_file;
SELECT golden360.bronze_manifest(-1);
\echo SQLSTATE :LAST_ERROR_SQLSTATE

-- Bad paths and directories.
SELECT * FROM golden360.ingest_bronze('relative/dir');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM golden360.ingest_bronze('/var/tmp/golden360-regress/none-such');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM golden360.ingest_bronze('/var/tmp/golden360-regress/olist/olist_orders_dataset.csv');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM golden360.ingest_bronze('/var/tmp/golden360-regress/partial');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT file_name, rows, status FROM golden360.ingest_bronze('/var/tmp/golden360-regress/partial', allow_partial => true);
SELECT * FROM golden360.ingest_bronze('/var/tmp/golden360-regress/bad-header', allow_partial => true);
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM golden360.ingest_bronze('/var/tmp/golden360-regress/symlinked', allow_partial => true);
\echo SQLSTATE :LAST_ERROR_SQLSTATE

-- A record with the wrong number of fields is rejected, with its bytes.
SELECT file_name, rows, rejected FROM golden360.ingest_bronze('/var/tmp/golden360-regress/ragged', allow_partial => true);
SELECT source_file, row_number, line_number, reason, convert_from(raw, 'UTF8') AS raw FROM bronze.rejected_rows;

-- Bronze is append-only.
UPDATE bronze.customers SET customer_city = 'x';
\echo SQLSTATE :LAST_ERROR_SQLSTATE
DELETE FROM golden360.bronze_batches;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
TRUNCATE bronze.rejected_rows;
\echo SQLSTATE :LAST_ERROR_SQLSTATE

-- Who may ingest: not the exporter's login; a loader may.
SET ROLE golden360_monitor;
SELECT * FROM golden360.ingest_bronze('/var/tmp/golden360-regress/olist');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_loader;
RESET client_min_messages;
CREATE ROLE regress_loader IN ROLE golden360_loader;
SET ROLE regress_loader;
SELECT count(*) FROM golden360.ingest_bronze('/var/tmp/golden360-regress/olist');
INSERT INTO bronze.customers SELECT * FROM bronze.customers LIMIT 1;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;
DROP OWNED BY regress_loader;
DROP ROLE regress_loader;
