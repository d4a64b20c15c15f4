-- Gold: CALL golden360.refresh_gold(), the identity bridge and the 360.
\set SHOW_CONTEXT never
CALL golden360.refresh_gold();

SELECT customer_id, customer_unique_id, left(golden_id, 12) AS golden_id FROM gold.identity_bridge ORDER BY 1;
SELECT customer_unique_id, customer_id, customer_ids, order_count, canceled_order_count, total_spend,
       avg_order_value, max_single_order, first_order_date, last_order_date
  FROM gold.unified_customer_360 ORDER BY customer_unique_id;
SELECT customer_unique_id, total_items, unique_products, favorite_category, product_diversity,
       avg_review_score, total_reviews, ltv_segment
  FROM gold.unified_customer_360 ORDER BY customer_unique_id;
SELECT customer_unique_id, recency_score, frequency_score, monetary_score, rfm_segment,
       geographic_state, geographic_city, geographic_zip, round(latitude::numeric, 4) AS latitude
  FROM gold.unified_customer_360 ORDER BY customer_unique_id;

-- The golden_id is SHA-256 of customer_unique_id || canonical customer_id.
SELECT golden360.golden_id('p1', 'c1') = (SELECT golden_id FROM gold.unified_customer_360 WHERE customer_unique_id = 'p1');
SELECT golden360.golden_id('p1', 'c1') = encode(sha256(convert_to('p1c1', 'UTF8')), 'hex');

-- LTV segments under the thresholds (settings).
SELECT v, golden360.ltv_segment(v) FROM unnest(ARRAY[199.99, 200, 999.99, 1000, 5000, 5000.01]::numeric[]) v;
SET golden360.ltv_medium_from = 100;
SELECT golden360.ltv_segment(150);
RESET golden360.ltv_medium_from;

-- A second refresh, with silver unchanged, has nobody to recompute; a
-- rebuild computes everyone again, writes none of them, and cross-checks.
CALL golden360.refresh_gold();
SELECT golden360_internal.gold_refresh(true);
SELECT people, written, removed, unchanged, bridge_written, mode FROM golden360.gold_runs ORDER BY run_id;
SELECT check_name, passed, failed, status FROM golden360.quality_checks
 WHERE layer = 'gold' AND run_id = (SELECT max(run_id) FROM golden360.gold_runs) ORDER BY 1;
