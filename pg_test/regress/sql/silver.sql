-- Silver: CALL golden360.refresh_silver(), the rules, quarantine and the
-- quality gate.
\set SHOW_CONTEXT never

-- The rules, in evaluation order (first four).
SELECT table_name, ordinal, rule_name, kind FROM golden360.silver_rules WHERE table_name = 'orders' ORDER BY ordinal;

-- A handful of rows is 1 bad row in 6: the default gate fails the run and
-- keeps silver as it was (empty).
CALL golden360.refresh_silver();
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT count(*) AS customers FROM silver.customers;

-- Under 'warn' the run completes, with a WARNING for each failed check.
SET golden360.quality_gate = warn;
CALL golden360.refresh_silver();
SELECT table_name, bronze_rows, silver_rows, duplicates, quarantined FROM golden360.silver_runs ORDER BY table_name;
SELECT table_name, row_number, reason, kind FROM silver.quarantine ORDER BY table_name, row_number;

-- Typed and cleaned: zips as integers, places upper-cased (Unicode),
-- categories translated, the review kept by answer time.
SELECT customer_id, customer_unique_id, customer_zip, customer_city, customer_state FROM silver.customers ORDER BY 1;
SELECT product_id, product_category_name, product_category FROM silver.products ORDER BY 1;
SELECT order_id, review_id, review_score, review_comment_message FROM silver.order_reviews ORDER BY 1;
SELECT order_id, payment_sequential, payment_type, payment_value FROM silver.order_payments ORDER BY 1, 2;
SELECT zip, lat, lng FROM silver.geolocation ORDER BY zip, lat;

-- The checks of this run, failed ones first.
SELECT table_name, check_name, passed, failed, pass_rate, status
  FROM golden360.quality_checks WHERE layer = 'silver' AND status = 'failed' ORDER BY 1, 2;
SELECT status, count(*) FROM golden360.quality_checks WHERE layer = 'silver' GROUP BY 1 ORDER BY 1;
RESET golden360.quality_gate;
