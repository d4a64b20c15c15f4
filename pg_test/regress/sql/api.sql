-- The API schema PostgREST serves: api.customer_360, the source-id
-- lookup and health, and who may reach them.
\set SHOW_CONTEXT never
SELECT (h->>'status') AS status, (h->>'last_successful_run') AS last_run, (h->>'running') AS running,
       (h->>'gold_rows') AS gold_rows
  FROM api.health() h;
SELECT customer_unique_id, order_count, total_spend, days_since_last_order = current_date - last_order_date AS days_ok
  FROM api.customer_by_source_id('c2');
SELECT customer_unique_id FROM api.customer_by_source_id('p3');
SELECT count(*) FROM api.customer_by_source_id('no-such-id');

-- Anonymous requests run as golden360_anon: health only.
SET ROLE golden360_anon;
SELECT (api.health())->>'status' AS status;
SELECT count(*) FROM api.customer_360;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT * FROM api.customer_by_source_id('c1');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;
-- The reader sees the records, not the tables behind them.
SET ROLE golden360_reader;
SELECT count(*) FROM api.customer_360;
SELECT count(*) FROM gold.unified_customer_360;
\echo SQLSTATE :LAST_ERROR_SQLSTATE
RESET ROLE;
