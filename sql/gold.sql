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
-- A segment's people in the API's paging order (biggest spenders first):
-- serves ?ltv_segment=eq.X alone and with order=total_spend.desc,golden_id.
CREATE INDEX unified_customer_360_by_segment ON gold.unified_customer_360 (ltv_segment, total_spend DESC, golden_id);
COMMENT ON TABLE gold.unified_customer_360 IS 'One golden record per person (customer_unique_id in silver.customers)';

-- What each column means, for DBAs and, copied onto api.customer_360, for
-- the API's OpenAPI description. Money is BRL; "counted orders" are orders
-- whose status is not canceled or unavailable.
COMMENT ON COLUMN gold.unified_customer_360.golden_id IS
    'The person''s id: lower-case hex SHA-256 of customer_unique_id || canonical customer_id';
COMMENT ON COLUMN gold.unified_customer_360.customer_unique_id IS 'Olist''s id of the person';
COMMENT ON COLUMN gold.unified_customer_360.customer_id IS
    'Canonical customer_id: the one on the person''s earliest purchase (ties and no orders: the smallest)';
COMMENT ON COLUMN gold.unified_customer_360.customer_ids IS 'Every customer_id of the person (Olist issues one per order), sorted';
COMMENT ON COLUMN gold.unified_customer_360.order_count IS 'Counted orders: not canceled, not unavailable';
COMMENT ON COLUMN gold.unified_customer_360.canceled_order_count IS 'The person''s canceled or unavailable orders';
COMMENT ON COLUMN gold.unified_customer_360.total_spend IS 'Lifetime value: sum of the counted orders'' payments, BRL';
COMMENT ON COLUMN gold.unified_customer_360.avg_order_value IS 'total_spend / order_count, 2 places; 0 without counted orders';
COMMENT ON COLUMN gold.unified_customer_360.max_single_order IS 'Largest counted order value, BRL; 0 without counted orders';
COMMENT ON COLUMN gold.unified_customer_360.first_order_date IS 'Date of the first counted purchase; null without counted orders';
COMMENT ON COLUMN gold.unified_customer_360.last_order_date IS 'Date of the latest counted purchase; null without counted orders';
COMMENT ON COLUMN gold.unified_customer_360.total_items IS 'Order-item rows of counted orders';
COMMENT ON COLUMN gold.unified_customer_360.unique_products IS 'Distinct products bought in counted orders';
COMMENT ON COLUMN gold.unified_customer_360.favorite_category IS
    'Category (English, else Portuguese) with the most items in counted orders; ties: alphabetically first';
COMMENT ON COLUMN gold.unified_customer_360.product_diversity IS 'Distinct categories bought / order_count, 4 places';
COMMENT ON COLUMN gold.unified_customer_360.avg_review_score IS 'Mean review score (1-5) over all the person''s orders, 2 places';
COMMENT ON COLUMN gold.unified_customer_360.total_reviews IS 'Reviews over all the person''s orders';
COMMENT ON COLUMN gold.unified_customer_360.ltv_segment IS
    'VIP, High, Medium or Low by total_spend (thresholds: the golden360.ltv_* settings, default 5000/1000/200)';
COMMENT ON COLUMN gold.unified_customer_360.recency_score IS 'RFM recency 1-5 (5 = most recent); null without counted orders';
COMMENT ON COLUMN gold.unified_customer_360.frequency_score IS 'RFM frequency 1-5 (5 = most orders); null without counted orders';
COMMENT ON COLUMN gold.unified_customer_360.monetary_score IS 'RFM monetary 1-5 (5 = most spend); null without counted orders';
COMMENT ON COLUMN gold.unified_customer_360.rfm_segment IS 'RFM label (Champions, At Risk, ...) from golden360.rfm_segments';
COMMENT ON COLUMN gold.unified_customer_360.geographic_state IS 'State of the address on the person''s latest order';
COMMENT ON COLUMN gold.unified_customer_360.geographic_city IS 'City of the address on the person''s latest order';
COMMENT ON COLUMN gold.unified_customer_360.geographic_zip IS 'Zip-code prefix (5 digits) of that address';
COMMENT ON COLUMN gold.unified_customer_360.latitude IS 'Mean latitude of the zip prefix''s geolocation points; null when none';
COMMENT ON COLUMN gold.unified_customer_360.longitude IS 'Mean longitude of the zip prefix''s geolocation points; null when none';
COMMENT ON COLUMN gold.unified_customer_360.refreshed_at IS 'When this row was last computed';

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
-- people: the customer_unique_ids to compute, or NULL for everyone. The RFM
-- columns are left NULL: golden360.apply_rfm() scores everyone afterwards.
CREATE FUNCTION golden360.compute_customer_360(people text[] DEFAULT NULL)
RETURNS SETOF gold.unified_customer_360
LANGUAGE sql STABLE
-- No SET clause (it would stop the planner from inlining this query into
-- its caller, where a NULL `people` folds the filters away). refresh_gold
-- runs with jit = off: the estimates on these CTEs are far off, which pushed
-- the cost past jit_above_cost, and compiling took 2.9 s of a 3 s query.
AS $$
WITH person_order AS (
    SELECT c.customer_unique_id, o.order_id, o.customer_id, o.order_purchase_timestamp AS purchased_at,
           o.order_status NOT IN ('canceled', 'unavailable') AS counted
      FROM silver.orders o
      JOIN silver.customers c ON c.customer_id = o.customer_id
     WHERE people IS NULL OR c.customer_unique_id = ANY (people)
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
     WHERE people IS NULL OR c.customer_unique_id = ANY (people)
     ORDER BY c.customer_unique_id, o.order_purchase_timestamp ASC NULLS LAST, c.customer_id
),
latest AS (
    SELECT DISTINCT ON (c.customer_unique_id) c.customer_unique_id, c.customer_zip, c.customer_city, c.customer_state
      FROM silver.customers c
      LEFT JOIN silver.orders o ON o.customer_id = c.customer_id AND o.order_purchase_timestamp IS NOT NULL
     WHERE people IS NULL OR c.customer_unique_id = ANY (people)
     ORDER BY c.customer_unique_id, o.order_purchase_timestamp DESC NULLS LAST, c.customer_id
),
zip_point AS (
    SELECT zip, avg(lat) AS latitude, avg(lng) AS longitude
      FROM silver.geolocation
     WHERE people IS NULL OR zip IN (SELECT customer_zip FROM latest)
     GROUP BY zip
),
person AS (
    SELECT c.customer_unique_id, golden360.sorted_ids(array_agg(c.customer_id)) AS customer_ids
      FROM silver.customers c
     WHERE people IS NULL OR c.customer_unique_id = ANY (people)
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
)
SELECT rec.golden_id, rec.customer_unique_id, rec.customer_id, rec.customer_ids,
       rec.order_count, rec.canceled_order_count, rec.total_spend, rec.avg_order_value, rec.max_single_order,
       rec.first_order_date, rec.last_order_date, rec.total_items, rec.unique_products,
       rec.favorite_category, rec.product_diversity, rec.avg_review_score, rec.total_reviews,
       golden360.ltv_segment(rec.total_spend),
       NULL::smallint, NULL::smallint, NULL::smallint, NULL::text,
       rec.geographic_state, rec.geographic_city, rec.geographic_zip, rec.latitude, rec.longitude,
       now()
  FROM record rec
$$;

-- RFM scores of everyone with a counted order in `target` (gold, or a
-- build of it): three ntile(5), ascending, ties by golden_id in byte order;
-- the segment from golden360.rfm_segments. The one definition of scoring.
CREATE FUNCTION golden360.rfm_scores(target regclass)
RETURNS TABLE (golden_id text, recency smallint, frequency smallint, monetary smallint, segment text)
LANGUAGE plpgsql STABLE SET jit = off AS $$
BEGIN
    RETURN QUERY EXECUTE format($q$
        SELECT s.golden_id::text, s.r, s.f, s.m, seg.segment
          FROM (SELECT golden_id,
                       ntile(5) OVER (ORDER BY last_order_date, golden_id COLLATE "C")::smallint AS r,
                       ntile(5) OVER (ORDER BY order_count, golden_id COLLATE "C")::smallint AS f,
                       ntile(5) OVER (ORDER BY total_spend, golden_id COLLATE "C")::smallint AS m
                  FROM %s WHERE order_count > 0) s
          JOIN golden360.rfm_segments seg ON seg.recency = s.r AND seg.fm = (s.f + s.m + 1) / 2$q$, target);
END
$$;

-- Rescore `target`, writing only the rows whose scores change; returns how many.
CREATE FUNCTION golden360.apply_rfm(target regclass) RETURNS bigint
LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    written bigint;
BEGIN
    EXECUTE format($q$
        WITH changed AS (
            UPDATE %1$s g
               SET recency_score = s.recency, frequency_score = s.frequency, monetary_score = s.monetary,
                   rfm_segment = s.segment, refreshed_at = now()
              FROM golden360.rfm_scores(%1$L) s
             WHERE g.golden_id = s.golden_id
               AND (g.recency_score, g.frequency_score, g.monetary_score)
                   IS DISTINCT FROM (s.recency, s.frequency, s.monetary)
            RETURNING 1
        )
        SELECT count(*) FROM changed$q$, target) INTO written;
    RETURN written;
END
$$;

-- Keys (as text) of the rows of silver table t that differ between the live
-- generation and the previous one (silver_next), lineage columns aside: a
-- row added, removed or changed in content. Column lists come from the spec.
CREATE FUNCTION golden360.silver_changes(t text, key text) RETURNS SETOF text
LANGUAGE plpgsql STABLE SET jit = off AS $$
DECLARE
    cols text := (SELECT string_agg(format('%I', column_name), ', ' ORDER BY ordinal)
                    FROM golden360.silver_columns() WHERE table_name = t);
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT DISTINCT %1$I::text FROM ((SELECT %2$s FROM silver.%3$I EXCEPT SELECT %2$s FROM silver_next.%3$I)
                                          UNION ALL
                                          (SELECT %2$s FROM silver_next.%3$I EXCEPT SELECT %2$s FROM silver.%3$I)) d',
        key, cols, t);
END
$$;

-- The people whose golden record may differ between the previous silver
-- generation and the live one: through their customers, orders, items,
-- payments and reviews, on either side (a customer_id that moved changes
-- both its old and its new person). NULL means everyone: products,
-- translations or geolocation changed, which reach any record.
CREATE FUNCTION golden360.people_changed(previous_silver bigint) RETURNS text[]
LANGUAGE sql STABLE SET jit = off AS $$
    WITH new_files AS (
        -- Bronze files loaded after the previous silver generation was built.
        SELECT DISTINCT f.table_name FROM golden360.bronze_files f
         WHERE f.batch_id > (SELECT max(last_batch_id) FROM golden360.silver_runs WHERE run_id = previous_silver)
    ), diffed AS (
        -- A silver table can only have changed if one of its inputs (its own
        -- bronze, or a referential parent's: golden360.silver_tables()) got
        -- new files.
        SELECT t.table_name AS name FROM golden360.silver_tables() t
         WHERE EXISTS (SELECT FROM new_files WHERE table_name = ANY (t.inputs))
    ), changed_order AS (
        SELECT * FROM golden360.silver_changes('orders', 'order_id') WHERE 'orders' IN (SELECT * FROM diffed)
        UNION SELECT * FROM golden360.silver_changes('order_items', 'order_id') WHERE 'order_items' IN (SELECT * FROM diffed)
        UNION SELECT * FROM golden360.silver_changes('order_payments', 'order_id') WHERE 'order_payments' IN (SELECT * FROM diffed)
        UNION SELECT * FROM golden360.silver_changes('order_reviews', 'order_id') WHERE 'order_reviews' IN (SELECT * FROM diffed)
    ), changed_customer AS (
        SELECT * FROM golden360.silver_changes('customers', 'customer_id') WHERE 'customers' IN (SELECT * FROM diffed)
        UNION SELECT o.customer_id FROM silver.orders o WHERE o.order_id IN (SELECT * FROM changed_order)
        UNION SELECT o.customer_id FROM silver_next.orders o WHERE o.order_id IN (SELECT * FROM changed_order)
    )
    -- Products also depend on the translation (their English name), which
    -- the spec's inputs do not list: it is a lookup, not a reference rule.
    SELECT CASE
        WHEN (EXISTS (SELECT FROM new_files WHERE table_name IN ('products', 'category_translation'))
              AND EXISTS (SELECT FROM golden360.silver_changes('products', 'product_id')))
          OR ('category_translation' IN (SELECT * FROM diffed)
              AND EXISTS (SELECT FROM golden360.silver_changes('category_translation', 'product_category_name')))
          OR ('geolocation' IN (SELECT * FROM diffed)
              AND EXISTS (SELECT FROM golden360.silver_changes('geolocation', 'zip'))) THEN NULL
        ELSE coalesce((SELECT array_agg(DISTINCT p) FROM (
            SELECT customer_unique_id AS p FROM silver.customers WHERE customer_id IN (SELECT * FROM changed_customer)
            UNION ALL
            SELECT customer_unique_id FROM silver_next.customers WHERE customer_id IN (SELECT * FROM changed_customer)
        ) people), '{}')
    END
$$;

CREATE TABLE golden360.gold_runs (
    run_id        bigint PRIMARY KEY,
    mode          text   NOT NULL CHECK (mode IN ('full', 'incremental')),
    recomputed    bigint NOT NULL,
    rfm_updated   bigint NOT NULL,
    people        bigint NOT NULL,
    bridge_rows   bigint NOT NULL,
    silver_run_id bigint NOT NULL,
    millis        double precision NOT NULL,
    finished_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE golden360.gold_runs IS
    'What each successful refresh_gold() did: full or incremental, people recomputed, RFM rows rewritten, '
    'and the silver run it was built from';

CREATE PROCEDURE golden360.refresh_gold(full_rebuild boolean DEFAULT false)
LANGUAGE plpgsql
SET jit = off
AS $$
DECLARE
    run bigint;
    started timestamptz := clock_timestamp();
    failures text;
    -- The silver generations: live (silver) and previous (silver_next), and
    -- the one the current gold was built from.
    live_silver bigint := coalesce((SELECT max(run_id) FROM golden360.silver_runs), 0);
    previous_silver bigint := (SELECT max(run_id) FROM golden360.silver_runs WHERE run_id < live_silver);
    gold_silver bigint := (SELECT silver_run_id FROM golden360.gold_runs ORDER BY run_id DESC LIMIT 1);
    changed_people text[];
    recomputed bigint;
    rfm_updated bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(7368502) THEN
        RAISE EXCEPTION 'another golden360.refresh_gold() is running'
            USING ERRCODE = 'lock_not_available', HINT = 'Wait for it to finish; pg_stat_activity shows it.';
    END IF;
    run := nextval('golden360.run_seq');
    -- Incremental when gold was built from the live silver (nothing to do
    -- but RFM) or from the previous one (diff the two); otherwise full.
    IF NOT full_rebuild AND gold_silver = live_silver THEN
        changed_people := '{}';
    ELSIF NOT full_rebuild AND gold_silver = previous_silver THEN
        changed_people := golden360.people_changed(previous_silver);
    END IF;

    -- The new rows are built in a temporary table (no WAL, no indexes); a
    -- full build is scored there, so each gold row is written once.
    -- Left over from an earlier refresh in this same transaction (ON COMMIT
    -- DROP). Checked first: DROP ... IF EXISTS would send a NOTICE each run.
    IF to_regclass('pg_temp.gold_build') IS NOT NULL THEN
        DROP TABLE pg_temp.gold_build;
    END IF;
    IF changed_people IS NULL THEN
        -- No argument: the planner folds the per-person filters away.
        CREATE TEMP TABLE gold_build ON COMMIT DROP AS SELECT * FROM golden360.compute_customer_360();
    ELSE
        CREATE TEMP TABLE gold_build ON COMMIT DROP AS SELECT * FROM golden360.compute_customer_360(changed_people);
    END IF;
    GET DIAGNOSTICS recomputed = ROW_COUNT;

    -- Replace in place: readers keep their snapshot of the old rows until
    -- this commits; no lock stops them, and none of theirs stops this.
    IF changed_people IS NULL THEN
        DELETE FROM gold.unified_customer_360;
        DELETE FROM gold.identity_bridge;
    ELSE
        DELETE FROM gold.unified_customer_360 WHERE customer_unique_id = ANY (changed_people);
        DELETE FROM gold.identity_bridge WHERE customer_unique_id = ANY (changed_people)
            OR customer_id IN (SELECT customer_id FROM silver.customers WHERE customer_unique_id = ANY (changed_people));
    END IF;
    -- Key order makes the primary-key inserts sequential. A full build is
    -- scored as it is inserted, so each row is written once.
    IF changed_people IS NULL THEN
        INSERT INTO gold.unified_customer_360
        SELECT b.golden_id, b.customer_unique_id, b.customer_id, b.customer_ids, b.order_count,
               b.canceled_order_count, b.total_spend, b.avg_order_value, b.max_single_order, b.first_order_date,
               b.last_order_date, b.total_items, b.unique_products, b.favorite_category, b.product_diversity,
               b.avg_review_score, b.total_reviews, b.ltv_segment, s.recency, s.frequency, s.monetary, s.segment,
               b.geographic_state, b.geographic_city, b.geographic_zip, b.latitude, b.longitude, b.refreshed_at
          FROM pg_temp.gold_build b
          LEFT JOIN golden360.rfm_scores('pg_temp.gold_build') s ON s.golden_id = b.golden_id
         ORDER BY b.golden_id;
        rfm_updated := (SELECT count(*) FROM gold.unified_customer_360 WHERE recency_score IS NOT NULL);
    ELSE
        INSERT INTO gold.unified_customer_360 SELECT * FROM pg_temp.gold_build ORDER BY golden_id;
    END IF;
    INSERT INTO gold.identity_bridge (customer_id, customer_unique_id, golden_id)
    SELECT c.customer_id, c.customer_unique_id, g.golden_id
      FROM silver.customers c JOIN pg_temp.gold_build g USING (customer_unique_id)
     ORDER BY c.customer_id;
    -- After an incremental change, others' RFM scores may shift: rescore
    -- everyone, writing only the rows that change.
    IF changed_people IS NOT NULL THEN
        rfm_updated := golden360.apply_rfm('gold.unified_customer_360');
    END IF;

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

    INSERT INTO golden360.gold_runs (run_id, mode, recomputed, rfm_updated, people, bridge_rows, silver_run_id, millis)
    SELECT run, CASE WHEN changed_people IS NULL THEN 'full' ELSE 'incremental' END, recomputed, rfm_updated,
           (SELECT count(*) FROM gold.unified_customer_360), (SELECT count(*) FROM gold.identity_bridge),
           live_silver, extract(epoch FROM clock_timestamp() - started) * 1000;
    RAISE NOTICE 'gold run % (%): % people recomputed, % RFM rows rewritten; % people, % customer_ids', run,
        CASE WHEN changed_people IS NULL THEN 'full' ELSE 'incremental' END, recomputed, rfm_updated,
        (SELECT people FROM golden360.gold_runs WHERE run_id = run),
        (SELECT bridge_rows FROM golden360.gold_runs WHERE run_id = run);
END
$$;
COMMENT ON PROCEDURE golden360.refresh_gold(boolean) IS
    'Refresh gold from silver in one transaction: only the people whose silver rows changed since the silver '
    'generation gold was built from (everyone with full_rebuild => true, or when that generation is gone), then RFM '
    'for everyone; cross-checked; readers see the old gold until it commits';
