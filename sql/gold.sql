-- Gold: the identity bridge, the unified customer 360, the RFM map, and
-- refresh_gold(). Definitions are the SPEC's Gold section and its precise
-- rules; text ordering is byte order (COLLATE "C") everywhere.

CREATE TABLE gold.identity_bridge (
    customer_id        text COLLATE "C" PRIMARY KEY,
    customer_unique_id text COLLATE "C" NOT NULL,
    golden_id          text COLLATE "C" NOT NULL
);
COMMENT ON TABLE gold.identity_bridge IS 'Every silver customer_id and the person (golden record) it belongs to';

CREATE TABLE gold.unified_customer_360 (
    golden_id            text COLLATE "C" PRIMARY KEY,
    customer_unique_id   text COLLATE "C" NOT NULL UNIQUE,
    customer_id          text COLLATE "C" NOT NULL,
    customer_ids         text[] COLLATE "C" NOT NULL,
    order_count          integer NOT NULL,
    canceled_order_count integer NOT NULL,
    total_spend          numeric(12,2) NOT NULL,
    avg_order_value      numeric(12,2) NOT NULL,
    max_single_order     numeric(12,2) NOT NULL,
    first_order_date     date,
    last_order_date      date,
    total_items          integer NOT NULL,
    unique_products      integer NOT NULL,
    favorite_category    text COLLATE "C",
    product_diversity    numeric(10,4) NOT NULL,
    avg_review_score     numeric(3,2),
    total_reviews        integer NOT NULL,
    ltv_segment          text NOT NULL,
    recency_score        smallint,
    frequency_score      smallint,
    monetary_score       smallint,
    rfm_segment          text,
    geographic_state     text COLLATE "C",
    geographic_city      text COLLATE "C",
    geographic_zip       integer,
    latitude             double precision,
    longitude            double precision,
    refreshed_at         timestamptz NOT NULL
);
CREATE INDEX unified_customer_360_by_segment ON gold.unified_customer_360 (ltv_segment);
COMMENT ON TABLE gold.unified_customer_360 IS 'One golden record per person (customer_unique_id in silver.customers)';

-- The RFM map of the SPEC: R (recency score) and FM = (F + M) / 2 rounded
-- half up, to a segment. One row per cell, so a DBA can read (and tune) it.
CREATE TABLE golden360.rfm_segments (
    recency integer NOT NULL CHECK (recency BETWEEN 1 AND 5),
    fm      integer NOT NULL CHECK (fm BETWEEN 1 AND 5),
    segment text NOT NULL,
    PRIMARY KEY (recency, fm)
);
INSERT INTO golden360.rfm_segments (recency, fm, segment)
SELECT r, fm, CASE
        WHEN r = 5 THEN (ARRAY['New Customers', 'Potential Loyalists', 'Potential Loyalists', 'Champions', 'Champions'])[fm]
        WHEN r = 4 THEN (ARRAY['Promising', 'Potential Loyalists', 'Potential Loyalists', 'Loyal Customers', 'Loyal Customers'])[fm]
        WHEN r = 3 THEN (ARRAY['About to Sleep', 'About to Sleep', 'Need Attention', 'Loyal Customers', 'Loyal Customers'])[fm]
        ELSE (ARRAY['Hibernating', 'Hibernating', 'At Risk', 'At Risk', 'Cannot Lose Them'])[fm]
    END
  FROM generate_series(1, 5) r, generate_series(1, 5) fm;
SELECT pg_catalog.pg_extension_config_dump('golden360.rfm_segments', '');
COMMENT ON TABLE golden360.rfm_segments IS 'RFM segment by recency score and FM = (frequency + monetary) / 2 rounded half up';

INSERT INTO golden360.quality_thresholds VALUES
    ('cross-check', 1.00, false, 'gold cross-checks: uniqueness, one row per person, totals equal silver, bridge integrity');

-- The new gold rows, computed from silver: one per person. Payments, items
-- and reviews are aggregated per order (or per person) before they meet,
-- so nothing fans out.
CREATE FUNCTION golden360.compute_customer_360()
RETURNS SETOF gold.unified_customer_360
LANGUAGE sql STABLE
-- The planner's estimates for these aggregates are far off (no statistics
-- on CTEs), which pushes the cost past jit_above_cost: compiling took 2.9 s
-- of a 3 s query. Nothing here benefits from JIT.
SET jit = off
AS $$
WITH person_order AS (
    SELECT c.customer_unique_id, o.order_id, o.customer_id, o.order_purchase_timestamp AS purchased_at,
           o.order_status NOT IN ('canceled', 'unavailable') AS counted
      FROM silver.orders o
      JOIN silver.customers c ON c.customer_id = o.customer_id
),
order_value AS (
    SELECT order_id, sum(payment_value) AS value FROM silver.order_payments GROUP BY order_id
),
orders_per_person AS (
    SELECT po.customer_unique_id,
           count(*) FILTER (WHERE po.counted)                        AS order_count,
           count(*) FILTER (WHERE NOT po.counted)                    AS canceled_order_count,
           coalesce(sum(coalesce(v.value, 0)) FILTER (WHERE po.counted), 0) AS total_spend,
           coalesce(max(coalesce(v.value, 0)) FILTER (WHERE po.counted), 0) AS max_single_order,
           min(po.purchased_at) FILTER (WHERE po.counted)            AS first_purchase,
           max(po.purchased_at) FILTER (WHERE po.counted)            AS last_purchase
      FROM person_order po
      LEFT JOIN order_value v ON v.order_id = po.order_id
     GROUP BY po.customer_unique_id
),
counted_item AS (
    SELECT po.customer_unique_id, i.product_id, p.product_category AS category
      FROM person_order po
      JOIN silver.order_items i ON i.order_id = po.order_id
      LEFT JOIN silver.products p ON p.product_id = i.product_id
     WHERE po.counted
),
items_per_person AS (
    SELECT customer_unique_id,
           count(*)                          AS total_items,
           count(DISTINCT product_id)        AS unique_products,
           count(DISTINCT category)          AS categories
      FROM counted_item
     GROUP BY customer_unique_id
),
favorite AS (
    SELECT DISTINCT ON (customer_unique_id) customer_unique_id, category
      FROM (SELECT customer_unique_id, category, count(*) AS n
              FROM counted_item WHERE category IS NOT NULL GROUP BY 1, 2) c
     ORDER BY customer_unique_id, n DESC, category COLLATE "C"
),
reviews_per_person AS (
    SELECT po.customer_unique_id, round(avg(r.review_score), 2) AS avg_review_score, count(*) AS total_reviews
      FROM person_order po
      JOIN silver.order_reviews r ON r.order_id = po.order_id
     GROUP BY po.customer_unique_id
),
-- Earliest / latest purchase over all the person's orders (any status,
-- NULL timestamps ignored); ties and people without a dated order: the
-- smallest customer_id.
canonical AS (
    SELECT DISTINCT ON (c.customer_unique_id) c.customer_unique_id, c.customer_id
      FROM silver.customers c
      LEFT JOIN silver.orders o ON o.customer_id = c.customer_id AND o.order_purchase_timestamp IS NOT NULL
     ORDER BY c.customer_unique_id, o.order_purchase_timestamp ASC NULLS LAST, c.customer_id
),
latest AS (
    SELECT DISTINCT ON (c.customer_unique_id) c.customer_unique_id, c.customer_zip, c.customer_city, c.customer_state
      FROM silver.customers c
      LEFT JOIN silver.orders o ON o.customer_id = c.customer_id AND o.order_purchase_timestamp IS NOT NULL
     ORDER BY c.customer_unique_id, o.order_purchase_timestamp DESC NULLS LAST, c.customer_id
),
zip_point AS (
    SELECT zip, avg(lat) AS latitude, avg(lng) AS longitude FROM silver.geolocation GROUP BY zip
),
person AS (
    SELECT c.customer_unique_id, golden360.sorted_ids(array_agg(c.customer_id)) AS customer_ids
      FROM silver.customers c
     GROUP BY c.customer_unique_id
),
record AS (
    SELECT golden360.golden_id(p.customer_unique_id, k.customer_id) AS golden_id,
           p.customer_unique_id, k.customer_id, p.customer_ids,
           coalesce(o.order_count, 0)::integer AS order_count,
           coalesce(o.canceled_order_count, 0)::integer AS canceled_order_count,
           coalesce(o.total_spend, 0)::numeric(12,2) AS total_spend,
           CASE WHEN coalesce(o.order_count, 0) = 0 THEN 0
                ELSE round(o.total_spend / o.order_count, 2) END::numeric(12,2) AS avg_order_value,
           coalesce(o.max_single_order, 0)::numeric(12,2) AS max_single_order,
           o.first_purchase::date AS first_order_date,
           o.last_purchase::date AS last_order_date,
           coalesce(i.total_items, 0)::integer AS total_items,
           coalesce(i.unique_products, 0)::integer AS unique_products,
           f.category AS favorite_category,
           CASE WHEN coalesce(o.order_count, 0) = 0 THEN 0
                ELSE round(coalesce(i.categories, 0)::numeric / o.order_count, 4) END::numeric(10,4) AS product_diversity,
           r.avg_review_score,
           coalesce(r.total_reviews, 0)::integer AS total_reviews,
           l.customer_state AS geographic_state, l.customer_city AS geographic_city, l.customer_zip AS geographic_zip,
           z.latitude, z.longitude
      FROM person p
      JOIN canonical k USING (customer_unique_id)
      JOIN latest l USING (customer_unique_id)
      LEFT JOIN orders_per_person o USING (customer_unique_id)
      LEFT JOIN items_per_person i USING (customer_unique_id)
      LEFT JOIN favorite f USING (customer_unique_id)
      LEFT JOIN reviews_per_person r USING (customer_unique_id)
      LEFT JOIN zip_point z ON z.zip = l.customer_zip
),
scored AS (
    SELECT golden_id,
           ntile(5) OVER (ORDER BY last_order_date, golden_id) AS r,
           ntile(5) OVER (ORDER BY order_count, golden_id) AS f,
           ntile(5) OVER (ORDER BY total_spend, golden_id) AS m
      FROM record WHERE order_count > 0
)
SELECT rec.golden_id, rec.customer_unique_id, rec.customer_id, rec.customer_ids,
       rec.order_count, rec.canceled_order_count, rec.total_spend, rec.avg_order_value, rec.max_single_order,
       rec.first_order_date, rec.last_order_date, rec.total_items, rec.unique_products,
       rec.favorite_category, rec.product_diversity, rec.avg_review_score, rec.total_reviews,
       golden360.ltv_segment(rec.total_spend),
       s.r::smallint, s.f::smallint, s.m::smallint, seg.segment,
       rec.geographic_state, rec.geographic_city, rec.geographic_zip, rec.latitude, rec.longitude,
       now()
  FROM record rec
  LEFT JOIN scored s USING (golden_id)
  LEFT JOIN golden360.rfm_segments seg ON seg.recency = s.r AND seg.fm = (s.f + s.m + 1) / 2
$$;

CREATE TABLE golden360.gold_runs (
    run_id      bigint PRIMARY KEY,
    people      bigint NOT NULL,
    bridge_rows bigint NOT NULL,
    millis      double precision NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE golden360.gold_runs IS 'What each successful refresh_gold() did';

CREATE PROCEDURE golden360.refresh_gold()
LANGUAGE plpgsql
SET jit = off
AS $$
DECLARE
    run bigint;
    started timestamptz := clock_timestamp();
    failures text;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7368502) THEN
        RAISE EXCEPTION 'another golden360.refresh_gold() is running'
            USING ERRCODE = 'lock_not_available', HINT = 'Wait for it to finish; pg_stat_activity shows it.';
    END IF;
    run := nextval('golden360.run_seq');

    -- Replace gold in place: readers keep their snapshot of the old rows
    -- until this commits; no lock stops them, and none of theirs stops this.
    DELETE FROM gold.unified_customer_360;
    DELETE FROM gold.identity_bridge;
    -- Key order makes the primary-key inserts sequential.
    INSERT INTO gold.unified_customer_360 SELECT * FROM golden360.compute_customer_360() ORDER BY golden_id;
    INSERT INTO gold.identity_bridge (customer_id, customer_unique_id, golden_id)
    SELECT c.customer_id, c.customer_unique_id, g.golden_id
      FROM silver.customers c JOIN gold.unified_customer_360 g USING (customer_unique_id)
     ORDER BY c.customer_id;

    -- Cross-checks, each against silver computed independently.
    PERFORM golden360.record_check(run, 'gold', 'unified_customer_360', x.check_name, 'cross-check',
                                   x.passed, x.failed)
       FROM (
        SELECT 'golden_id_unique' AS check_name, count(DISTINCT golden_id) AS passed,
               count(*) - count(DISTINCT golden_id) AS failed FROM gold.unified_customer_360
        UNION ALL
        SELECT 'customer_unique_id_unique', count(DISTINCT customer_unique_id),
               count(*) - count(DISTINCT customer_unique_id) FROM gold.unified_customer_360
        UNION ALL
        SELECT 'one_row_per_person', least(g.n, s.n), abs(g.n - s.n)
          FROM (SELECT count(*) AS n FROM gold.unified_customer_360) g,
               (SELECT count(DISTINCT customer_unique_id) AS n FROM silver.customers) s
        UNION ALL
        SELECT 'total_spend_equals_counted_orders', 1, (g.total <> s.total)::int
          FROM (SELECT coalesce(sum(total_spend), 0) AS total FROM gold.unified_customer_360) g,
               (SELECT coalesce(sum(p.payment_value), 0) AS total
                  FROM silver.order_payments p
                  JOIN silver.orders o ON o.order_id = p.order_id
                  JOIN silver.customers c ON c.customer_id = o.customer_id
                 WHERE o.order_status NOT IN ('canceled', 'unavailable')) s
        UNION ALL
        SELECT 'order_count_equals_counted_orders', 1, (g.n <> s.n)::int
          FROM (SELECT coalesce(sum(order_count), 0) AS n FROM gold.unified_customer_360) g,
               (SELECT count(*) AS n FROM silver.orders o JOIN silver.customers c ON c.customer_id = o.customer_id
                 WHERE o.order_status NOT IN ('canceled', 'unavailable')) s
        UNION ALL
        SELECT 'bridge_points_at_golden_records', count(g.golden_id), count(*) - count(g.golden_id)
          FROM gold.identity_bridge b LEFT JOIN gold.unified_customer_360 g USING (golden_id)
        UNION ALL
        SELECT 'bridge_covers_every_customer_id', b.n, abs(c.n - b.n)
          FROM (SELECT count(*) AS n FROM gold.identity_bridge) b, (SELECT count(*) AS n FROM silver.customers) c
       ) x;

    SELECT string_agg(format('%s: %s failed', check_name, failed), E'\n' ORDER BY check_name)
      INTO failures
      FROM golden360.quality_checks
     WHERE run_id = run AND layer = 'gold' AND status = 'failed';
    IF failures IS NOT NULL THEN
        RAISE EXCEPTION 'gold cross-checks failed; the previous gold is kept'
            USING ERRCODE = 'check_violation', DETAIL = failures,
                  HINT = 'This points at a bug or at silver changing mid-refresh; please report it with the DETAIL.';
    END IF;

    INSERT INTO golden360.gold_runs (run_id, people, bridge_rows, millis)
    SELECT run, (SELECT count(*) FROM gold.unified_customer_360), (SELECT count(*) FROM gold.identity_bridge),
           extract(epoch FROM clock_timestamp() - started) * 1000;
    RAISE NOTICE 'gold run %: % people, % customer_ids', run,
        (SELECT people FROM golden360.gold_runs WHERE run_id = run),
        (SELECT bridge_rows FROM golden360.gold_runs WHERE run_id = run);
END
$$;
COMMENT ON PROCEDURE golden360.refresh_gold() IS
    'Rebuild gold from silver in one transaction and cross-check it; readers see the old gold until it commits';
