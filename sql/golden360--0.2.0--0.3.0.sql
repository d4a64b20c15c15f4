-- golden360 0.2.0 -> 0.3.0: incremental refreshes (issue 10).
-- refresh_silver() applies only the bronze batches silver has not seen and
-- refresh_gold() recomputes only the people they lead to; golden360.rebuild()
-- is the full rebuild. New: indexes on bronze's lineage and on what the
-- incremental steps look rows up by, the tables silver_batches and
-- refresh_state, silver's change log, run modes. Nothing is dropped but two
-- internal functions whose signatures changed; bronze, silver, gold and the
-- run history stay as they are. The first refresh after the upgrade is a
-- full one (the version is part of each layer's fingerprint).
\echo Use "ALTER EXTENSION golden360 UPDATE" to load this file. \quit

-- New and changed internal functions of the Rust library.

DROP FUNCTION golden360_internal.build_gold();
DROP FUNCTION golden360_internal.gold_cross_checks();

CREATE  FUNCTION golden360_internal."silver_change_columns"() RETURNS TABLE (
	"ordinal" INT,  /* i32 */
	"column_name" TEXT,  /* String */
	"sql_type" TEXT  /* String */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'silver_change_columns_wrapper';

CREATE  FUNCTION golden360_internal."apply_silver"(
	"run_id" bigint, /* i64 */
	"batches" bigint[] /* Vec < i64 > */
) RETURNS TABLE (
	"table_name" TEXT,  /* String */
	"bronze_rows" bigint,  /* i64 */
	"silver_rows" bigint,  /* i64 */
	"duplicates" bigint,  /* i64 */
	"quarantined" bigint,  /* i64 */
	"written" bigint,  /* i64 */
	"millis" double precision  /* f64 */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'apply_silver_wrapper';

CREATE  FUNCTION golden360_internal."build_gold"(
	"everyone" bool /* bool */
) RETURNS TABLE (
	"mode" TEXT,  /* & '_ str */
	"recomputed" bigint,  /* i64 */
	"written" bigint,  /* i64 */
	"removed" bigint,  /* i64 */
	"bridge_written" bigint,  /* i64 */
	"bridge_removed" bigint,  /* i64 */
	"added" bigint,  /* i64 */
	"bridge_added" bigint,  /* i64 */
	"up_to_run" bigint,  /* i64 */
	"people" TEXT[],  /* :: std :: option :: Option < Vec < String > > */
	"passes" bigint  /* i64 */
)
STRICT
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'build_gold_wrapper';

CREATE  FUNCTION golden360_internal."gold_cross_checks"(
	"people" TEXT[] /* :: std :: option :: Option < Vec < String > > */
) RETURNS TABLE (
	"check_name" TEXT,  /* & '_ str */
	"passed" bigint,  /* i64 */
	"failed" bigint  /* i64 */
)
STABLE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'gold_cross_checks_wrapper';

CREATE  FUNCTION golden360_internal."gold_columns"(
	"table_name" TEXT /* & str */
) RETURNS TABLE (
	"ordinal" INT,  /* i32 */
	"column_name" TEXT,  /* String */
	"sql_type" TEXT,  /* String */
	"not_null" bool,  /* bool */
	"byte_order" bool,  /* bool */
	"description" TEXT  /* Option < String > */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'gold_columns_wrapper';

-- Bronze: a batch's rows (BRIN: contiguous at the heap's end, next to
-- free to maintain).
DO $$
DECLARE
    f record;
BEGIN
    FOR f IN SELECT * FROM golden360.source_files() LOOP
        EXECUTE format('CREATE INDEX %I ON bronze.%I USING brin (_batch_id)', f.table_name || '_by_batch',
                       f.table_name);
    END LOOP;
END
$$;

-- Silver: the new lookup indexes, on the live generation and on the
-- shadow when it holds the previous generation (then it has its indexes).
DO $$
DECLARE
    generation text;
BEGIN
    FOREACH generation IN ARRAY ARRAY['silver', 'silver_next'] LOOP
        IF EXISTS (SELECT FROM pg_catalog.pg_index WHERE indrelid = format('%I.customers', generation)::regclass) THEN
            EXECUTE format('CREATE INDEX customers_by_zip ON %I.customers (customer_zip)', generation);
            EXECUTE format('CREATE INDEX order_items_by_product ON %I.order_items (product_id)', generation);
            -- A new point's exact duplicates, found by its zip, lat and lng;
            -- gold re-sums a zip's points from this index alone.
            EXECUTE format('CREATE INDEX geolocation_by_zip ON %I.geolocation (zip, lat, lng)', generation);
        END IF;
    END LOOP;
END
$$;

ALTER TABLE golden360.silver_runs
    ADD COLUMN mode text NOT NULL DEFAULT 'full' CHECK (mode IN ('full', 'incremental'));
COMMENT ON TABLE golden360.silver_runs IS
    'Per table, what each successful refresh_silver() did: its counts after the run (bronze rows = silver rows + '
    'duplicates + quarantined), how long the table took, the newest bronze batch it saw, and whether it rebuilt '
    'silver from all of bronze (full) or applied the new batches (incremental)';
ALTER TABLE golden360.gold_runs
    ADD COLUMN mode text NOT NULL DEFAULT 'full' CHECK (mode IN ('full', 'incremental')),
    ADD COLUMN recomputed bigint NOT NULL DEFAULT 0,
    ADD COLUMN passes integer NOT NULL DEFAULT 1 CHECK (passes >= 1);
COMMENT ON TABLE golden360.gold_runs IS
    'What each successful refresh_gold() did: golden records written (new or changed), removed (people gone from '
    'silver) and left unchanged, the same for bridge rows, the silver run it was built from, whether it '
    'recomputed everyone (full) or the people silver''s changes lead to (incremental; recomputed: how many), and '
    'in how many passes by customer_unique_id (more than 1 when a full build would not fit maintenance_work_mem)';

CREATE TABLE golden360.silver_batches (
    batch_id bigint PRIMARY KEY,
    run_id   bigint NOT NULL
);
COMMENT ON TABLE golden360.silver_batches IS
    'Every bronze batch silver has applied, with the refresh_silver() run that applied it';
-- The batches 0.2.0's last refresh saw are in silver, and were measured by
-- its rule checks.
INSERT INTO golden360.silver_batches
SELECT b.batch_id, r.run_id
  FROM golden360.bronze_batches b,
       (SELECT run_id, last_batch_id FROM golden360.silver_runs ORDER BY run_id DESC LIMIT 1) r
 WHERE b.batch_id <= r.last_batch_id;

CREATE TABLE golden360.refresh_state (
    layer       text PRIMARY KEY CHECK (layer IN ('silver', 'gold')),
    fingerprint text NOT NULL,
    run_id      bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE golden360.refresh_state IS
    'Per layer, the run an incremental refresh continues from and the fingerprint of the rules and settings it was '
    'built under; delete a layer''s row to make its next refresh a full rebuild';

DO $$
BEGIN
    EXECUTE format('CREATE TABLE golden360_internal.silver_changes (%s)',
        (SELECT string_agg(format('%I %s%s NOT NULL', c.column_name, c.sql_type,
                                  CASE WHEN c.sql_type = 'text' THEN ' COLLATE "C"' ELSE '' END), ', ' ORDER BY c.ordinal)
           FROM golden360_internal.silver_change_columns() c));
END
$$;
COMMENT ON TABLE golden360_internal.silver_changes IS
    'Silver rows changed by each refresh_silver() run that gold has not consumed yet: table and gold link value';

-- The old refreshes' bodies moved into these; their own SET jit went with them.

-- Each zip prefix's mean point (declared in src/gold/spec.rs); the first
-- gold refresh after the upgrade, a full one, fills it.
DO $$
DECLARE
    c record;
BEGIN
    EXECUTE format('CREATE TABLE gold.zip_coordinates (%s, PRIMARY KEY (zip))',
        (SELECT string_agg(format('%I %s%s%s', g.column_name, g.sql_type,
                                  CASE WHEN g.byte_order THEN ' COLLATE "C"' ELSE '' END,
                                  CASE WHEN g.not_null THEN ' NOT NULL' ELSE '' END), ', ' ORDER BY g.ordinal)
           FROM golden360_internal.gold_columns('zip_coordinates') g));
    FOR c IN SELECT * FROM golden360_internal.gold_columns('zip_coordinates') g WHERE g.description IS NOT NULL LOOP
        EXECUTE format('COMMENT ON COLUMN gold.zip_coordinates.%I IS %L', c.column_name, c.description);
    END LOOP;
END
$$;
COMMENT ON TABLE gold.zip_coordinates IS
    'Each zip prefix''s mean point over silver.geolocation: the 360''s latitude and longitude';

-- Silver's rules and columns, and the extension version: a change of any
-- of them makes the next refresh a full one.
CREATE FUNCTION golden360_internal.silver_fingerprint() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT md5(concat_ws('|',
        (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'golden360'),
        (SELECT string_agg(r::text, ';' ORDER BY r.table_name, r.ordinal) FROM golden360.silver_rule_list() r),
        (SELECT string_agg(c::text, ';' ORDER BY c.table_name, c.ordinal) FROM golden360_internal.silver_columns() c)))
$$;

-- One silver refresh, as the extension's owner. Incremental (the default)
-- when silver was built under the current fingerprint: the bronze batches
-- not yet applied are applied to the live tables in place, by
-- apply_silver(). Full otherwise, or when asked: every table is rebuilt
-- from all of bronze into the shadow generation, which is swapped in.
-- Either way the checks run on the result before it commits, and a failed
-- gate leaves silver as it was.
CREATE FUNCTION golden360_internal.silver_refresh(rebuild boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off  -- its check queries are cheap; JIT compilation is not
AS $$
DECLARE
    run bigint;
    t record;
    failures text;
    first_failure text;
    newest_batch bigint;
    new_batches bigint[];
    previous bigint;
    incremental boolean;
    generation text;
    stats_target text;
    duplicate_keys boolean := false;
    saved_lock_timeout text := current_setting('lock_timeout');
    wanted_fingerprint text := golden360_internal.silver_fingerprint();
BEGIN
    -- One refresh at a time; a second one fails at once rather than queueing.
    PERFORM golden360_internal.lock_layer('golden360.silver_runs', 'golden360.refresh_silver()');
    -- Every wait from here on is bounded: the ones named below with a
    -- message naming the blocker, any other by lock_timeout itself.
    PERFORM set_config('lock_timeout', golden360_internal.lock_timeout_ms()::text, true);
    PERFORM golden360_internal.lock_tables(
        (SELECT array_agg(format('bronze.%I', x)::regclass) FROM golden360_internal.silver_tables() s(x)),
        'ACCESS SHARE', 'golden360.refresh_silver()');
    previous := (SELECT s.run_id FROM golden360.refresh_state s
                  WHERE s.layer = 'silver' AND s.fingerprint = wanted_fingerprint);
    incremental := NOT rebuild AND previous IS NOT NULL
        AND (SELECT count(*) FROM golden360.silver_runs r WHERE r.run_id = previous)
          = (SELECT count(*) FROM golden360_internal.silver_tables());
    -- The batches to apply, and the ones the rule checks measure: bronze is
    -- immutable, so a batch accepted once under 'warn' must not fail every
    -- later run.
    new_batches := ARRAY(SELECT b.batch_id FROM golden360.bronze_batches b
                          WHERE NOT EXISTS (SELECT FROM golden360.silver_batches s WHERE s.batch_id = b.batch_id)
                          ORDER BY 1);
    newest_batch := coalesce((SELECT max(batch_id) FROM golden360.bronze_batches), 0);
    -- Batches that re-deliver most of the data are cheaper to rebuild from.
    incremental := incremental
        AND (SELECT coalesce(sum(f.rows), 0) FROM golden360.bronze_files f WHERE f.batch_id = ANY (new_batches))
         <= current_setting('golden360.incremental_limit')::float8
          * (SELECT coalesce(sum(f.rows), 0) FROM golden360.bronze_files f
              WHERE f.batch_id IN (SELECT s.batch_id FROM golden360.silver_batches s));
    run := nextval('golden360.run_seq');

    -- Nothing new in bronze (no batch, or only files skipped as already
    -- loaded): silver stays as it is, and the run says so.
    IF incremental AND NOT EXISTS (SELECT FROM golden360.bronze_files f WHERE f.batch_id = ANY (new_batches)) THEN
        INSERT INTO golden360.silver_runs
            (run_id, table_name, bronze_rows, silver_rows, duplicates, quarantined, millis, last_batch_id, mode)
        SELECT run, p.table_name, p.bronze_rows, p.silver_rows, p.duplicates, p.quarantined, 0, newest_batch, 'incremental'
          FROM golden360.silver_runs p WHERE p.run_id = previous;
        INSERT INTO golden360.silver_batches SELECT unnest(new_batches), run;
        UPDATE golden360.refresh_state s SET run_id = run, updated_at = clock_timestamp() WHERE s.layer = 'silver';
        PERFORM set_config('lock_timeout', saved_lock_timeout, true);
        RAISE NOTICE 'silver run % (incremental): no new bronze rows; silver unchanged, % rows', run,
            (SELECT sum(silver_rows) FROM golden360.silver_runs WHERE run_id = run);
        RETURN;
    END IF;

    IF incremental THEN
        -- In place: readers keep their snapshot of the rows replaced until
        -- this commits, and ROW EXCLUSIVE stops none of them.
        generation := 'silver';
        PERFORM golden360_internal.lock_tables(
            (SELECT array_agg(format('silver.%I', x)::regclass) FROM golden360_internal.silver_generation_tables() x),
            'ROW EXCLUSIVE', 'golden360.refresh_silver()');
        INSERT INTO golden360.silver_runs
            (run_id, table_name, bronze_rows, silver_rows, duplicates, quarantined, millis, last_batch_id, mode)
        SELECT run, d.table_name, p.bronze_rows + d.bronze_rows, p.silver_rows + d.silver_rows,
               p.duplicates + d.duplicates, p.quarantined + d.quarantined, d.millis, newest_batch, 'incremental'
          FROM golden360_internal.apply_silver(run, new_batches) d
          JOIN golden360.silver_runs p ON p.run_id = previous AND p.table_name = d.table_name;
    ELSE
        -- Build the new generation in the shadow; silver stays as it is for
        -- readers until the swap at the very end.
        generation := 'silver_next';
        PERFORM golden360_internal.lock_tables(
            (SELECT array_agg(format('silver_next.%I', x)::regclass) FROM golden360_internal.silver_generation_tables() x),
            'ACCESS EXCLUSIVE', 'golden360.refresh_silver()');
        PERFORM golden360_internal.reset_silver_shadow();
        INSERT INTO golden360.silver_runs
            (run_id, table_name, bronze_rows, silver_rows, duplicates, quarantined, millis, last_batch_id, mode)
        SELECT run, b.*, newest_batch, 'full' FROM golden360_internal.build_silver(run) b;
        INSERT INTO golden360_internal.silver_changes VALUES (run, '*', '');
    END IF;

    -- Rule checks measure this run's input, the rows of the batches it
    -- applied: failed = those rows quarantined for the rule.
    EXECUTE format(
        'SELECT count(golden360_internal.record_check($1, ''silver'', r.table_name, r.rule_name, r.kind,
                                                       coalesce(n.rows, 0) - coalesce(q.failed, 0), coalesce(q.failed, 0)))
           FROM golden360.silver_rules r
           LEFT JOIN (SELECT table_name, sum(rows)::bigint AS rows FROM golden360.bronze_files
                       WHERE batch_id = ANY ($2) GROUP BY 1) n ON n.table_name = r.table_name
           LEFT JOIN (SELECT table_name, reason, count(*) AS failed FROM %I.quarantine
                       WHERE batch_id = ANY ($2) GROUP BY 1, 2) q
                  ON q.table_name = r.table_name AND q.reason = r.rule_name', generation)
        USING run, new_batches;

    -- Keys and indexes of a new generation, built in bulk. A duplicate key
    -- (a dedup bug) makes a primary key fail; that is the uniqueness check,
    -- recorded below. In place, the live primary keys refuse a duplicate
    -- as it is written, failing the refresh.
    IF NOT incremental THEN
        BEGIN
            PERFORM golden360_internal.copy_silver_indexes();
        EXCEPTION WHEN unique_violation THEN
            duplicate_keys := true;
        END;
    END IF;

    -- Conservation: bronze rows = silver rows + duplicates + quarantined.
    -- A full build counts every side afresh. An incremental one must not
    -- cost what all the data costs: bronze as the loader counted it, per
    -- file (golden360.bronze_files), silver and duplicates as the runs
    -- accumulated them, the quarantine counted; what it catches is a batch
    -- row the refresh lost or counted twice. golden360.rebuild() counts all.
    FOR t IN SELECT s.table_name, s.duplicates, s.silver_rows, k.key
               FROM golden360.silver_runs s JOIN golden360_internal.silver_tables() k USING (table_name)
              WHERE s.run_id = run LOOP
        EXECUTE format(
            'SELECT golden360_internal.record_check($1, ''silver'', $2, ''conservation'', ''conservation'', accounted, abs(bronze - accounted))
               FROM (SELECT %3$s AS bronze,
                            %4$s + $3 + (SELECT count(*) FROM %2$I.quarantine WHERE table_name = $2) AS accounted) c',
            t.table_name, generation,
            CASE WHEN incremental THEN '(SELECT coalesce(sum(f.rows), 0)::bigint FROM golden360.bronze_files f WHERE f.table_name = $2)'
                 ELSE format('(SELECT count(*) FROM bronze.%I)', t.table_name) END,
            CASE WHEN incremental THEN '$4' ELSE format('(SELECT count(*) FROM silver_next.%I)', t.table_name) END)
            USING run, t.table_name, t.duplicates, t.silver_rows;
        IF cardinality(t.key) > 0 AND NOT duplicate_keys THEN
            PERFORM golden360_internal.record_check(run, 'silver', t.table_name, 'primary_key_unique', 'uniqueness',
                                           t.silver_rows, 0);
        ELSIF cardinality(t.key) > 0 THEN
            EXECUTE format(
                'SELECT golden360_internal.record_check($1, ''silver'', $2, ''primary_key_unique'', ''uniqueness'',
                                               count(*) FILTER (WHERE n = 1), coalesce(sum(n) FILTER (WHERE n > 1), 0)::bigint)
                   FROM (SELECT count(*) AS n FROM silver_next.%I GROUP BY %s) g',
                t.table_name, (SELECT string_agg(format('%I', k), ', ') FROM unnest(t.key) k))
                USING run, t.table_name;
        END IF;
    END LOOP;

    SELECT string_agg(format('%s.%s: pass rate %s%%, threshold %s%s%%', c.table_name, c.check_name,
                             round(c.pass_rate * 100, 4), CASE WHEN q.strict THEN '> ' ELSE '' END,
                             round(c.threshold * 100, 4)),
                      E'\n' ORDER BY c.table_name, c.check_name),
           min(format('%s.%s (pass rate %s%%, threshold %s%s%%)', c.table_name, c.check_name,
                      round(c.pass_rate * 100, 4), CASE WHEN q.strict THEN '> ' ELSE '' END,
                      round(c.threshold * 100, 4)))
      INTO failures, first_failure
      FROM golden360.quality_checks c JOIN golden360.quality_thresholds q USING (kind)
     WHERE c.run_id = run AND c.layer = 'silver' AND c.status = 'failed';

    IF failures IS NOT NULL THEN
        IF current_setting('golden360.quality_gate') = 'error' THEN
            RAISE EXCEPTION 'silver quality gate failed: %', first_failure
                USING ERRCODE = 'check_violation',
                      DETAIL = 'failed checks:' || E'\n' || failures,
                      HINT = 'Silver is unchanged. To see the failing rows, SET golden360.quality_gate = warn, '
                          || 'refresh, and look in silver.quarantine; that run records these checks as failed.';
        END IF;
        RAISE WARNING 'silver quality checks failed (golden360.quality_gate = warn, run % kept): %', run, first_failure
            USING DETAIL = failures;
    END IF;

    IF NOT incremental THEN
        -- Statistics for the planner from the first query on: a small
        -- sample (3,000 rows) gives row counts and rough distributions at a
        -- tenth of the default cost; autovacuum refines them later, and
        -- keeps them as incremental refreshes change silver.
        stats_target := current_setting('default_statistics_target');
        PERFORM set_config('default_statistics_target', '10', true);
        FOR t IN SELECT x AS table_name FROM golden360_internal.silver_generation_tables() x LOOP
            EXECUTE format('ANALYZE silver_next.%I', t.table_name);
        END LOOP;
        PERFORM set_config('default_statistics_target', stats_target, true);
        PERFORM golden360_internal.copy_silver_privileges();
        PERFORM golden360_internal.swap_silver_generations();
    END IF;
    INSERT INTO golden360.silver_batches SELECT unnest(new_batches), run;
    INSERT INTO golden360.refresh_state AS s (layer, fingerprint, run_id) VALUES ('silver', wanted_fingerprint, run)
        ON CONFLICT (layer) DO UPDATE SET fingerprint = excluded.fingerprint, run_id = excluded.run_id,
                                          updated_at = clock_timestamp();
    PERFORM set_config('lock_timeout', saved_lock_timeout, true);
    IF incremental THEN
        RAISE NOTICE 'silver run % (incremental): % new bronze rows from % batch(es); '
                     'now % rows in silver, % duplicates removed, % quarantined', run,
            (SELECT sum(r.bronze_rows) FROM golden360.silver_runs r WHERE r.run_id = run)
              - (SELECT sum(p.bronze_rows) FROM golden360.silver_runs p WHERE p.run_id = previous),
            cardinality(new_batches),
            (SELECT sum(silver_rows) FROM golden360.silver_runs WHERE run_id = run),
            (SELECT sum(duplicates) FROM golden360.silver_runs WHERE run_id = run),
            (SELECT sum(quarantined) FROM golden360.silver_runs WHERE run_id = run);
    ELSE
        RAISE NOTICE 'silver run %: % rows in silver, % duplicates removed, % quarantined', run,
            (SELECT sum(silver_rows) FROM golden360.silver_runs WHERE run_id = run),
            (SELECT sum(duplicates) FROM golden360.silver_runs WHERE run_id = run),
            (SELECT sum(quarantined) FROM golden360.silver_runs WHERE run_id = run);
    END IF;
END
$$;

-- The settings and rule tables gold is computed under, and the extension
-- version: a change of any makes the next refresh recompute everyone.
CREATE FUNCTION golden360_internal.gold_fingerprint() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT md5(concat_ws('|',
        (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'golden360'),
        current_setting('golden360.ltv_vip_above', true), current_setting('golden360.ltv_high_from', true),
        current_setting('golden360.ltv_medium_from', true),
        (SELECT string_agg(r::text, ';' ORDER BY r.recency, r.fm) FROM golden360.rfm_segments r)))
$$;

-- Room on each page for one more version of its rows: the RFM rescores
-- of an incremental refresh (people whose ranks moved) change no indexed
-- column, so with the room they are HOT updates, which add no index
-- entries (measured: 1,500 rescores at scale 1 in 25 ms instead of 45).
-- Pages written from now on keep the room (VACUUM FULL gives it to all).
ALTER TABLE gold.unified_customer_360 SET (fillfactor = 90);

-- The RFM ranking's columns and indexes, and where its buckets began: an
-- incremental refresh walks from there instead of ranking everyone. The
-- first refresh after the upgrade (a full one) fills the table.
CREATE FUNCTION golden360_internal."rfm_rank_columns"() RETURNS TABLE (
	"dimension" INT,  /* i32 */
	"column_name" TEXT,  /* String */
	"index_name" TEXT,  /* String */
	"ranked" TEXT  /* & '_ str */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rfm_rank_columns_wrapper';

CREATE OR REPLACE FUNCTION golden360_internal.create_gold_indexes() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    c record;
BEGIN
    IF to_regclass('gold.unified_customer_360_customer_unique_id_key') IS NULL THEN
        CREATE UNIQUE INDEX unified_customer_360_customer_unique_id_key
            ON gold.unified_customer_360 (customer_unique_id);
    END IF;
    IF to_regclass('gold.unified_customer_360_by_segment') IS NULL THEN
        CREATE INDEX unified_customer_360_by_segment
            ON gold.unified_customer_360 (ltv_segment, total_spend DESC, golden_id);
    END IF;
    -- Each RFM dimension's key, over the people it ranks: an incremental
    -- refresh walks them from the stored bucket boundaries (ties by
    -- golden_id through the primary key). One column each, so that they
    -- stay small (equal keys deduplicated) and cheap to keep up.
    FOR c IN SELECT * FROM golden360_internal.rfm_rank_columns() LOOP
        IF to_regclass(format('gold.%I', c.index_name)) IS NULL THEN
            EXECUTE format('CREATE INDEX %I ON gold.unified_customer_360 (%I) WHERE %s',
                           c.index_name, c.column_name, c.ranked);
        END IF;
    END LOOP;
END
$$;

-- Where each RFM dimension's buckets 2 to 5 began after the last refresh
-- (the first person of each: their key and golden_id), among how many
-- ranked people: the next incremental refresh walks gold's RFM indexes
-- from here instead of ranking everyone. Every refresh rewrites it; when
-- empty (or not matching gold) the next refresh ranks everyone.
CREATE TABLE golden360_internal.rfm_boundaries (
    dimension smallint NOT NULL CHECK (dimension BETWEEN 1 AND 3),
    boundary  smallint NOT NULL CHECK (boundary BETWEEN 1 AND 4),
    sort_key  bigint NOT NULL,
    golden_id text COLLATE "C" NOT NULL,
    ranked    bigint NOT NULL CHECK (ranked >= 5),
    PRIMARY KEY (dimension, boundary)
);
COMMENT ON TABLE golden360_internal.rfm_boundaries IS
    'The first person of RFM buckets 2-5 per dimension (1 recency, 2 frequency, 3 monetary; sort_key: days since '
    '2000-01-01, orders, cents) after the last gold refresh, and how many people were ranked';
-- Gold that 0.2.0 filled gets the new indexes now, by one sort each (an
-- empty gold gets them from its first refresh, as a fresh install does).
DO $$
BEGIN
    IF EXISTS (SELECT FROM gold.unified_customer_360) THEN
        PERFORM golden360_internal.create_gold_indexes();
    END IF;
END
$$;

-- Rewrite the RFM scores of people an incremental refresh did not
-- recompute but whose ranks moved (a new person shifts the boundaries).
-- A few thousand rows by primary key: without the SETs the planner
-- hashes all of gold to find them.
CREATE FUNCTION golden360_internal.rescore_rfm(golden_ids text[], r smallint[], f smallint[], m smallint[],
                                               segments text[]) RETURNS void
LANGUAGE sql
SET enable_hashjoin = off
SET enable_mergejoin = off
AS $$
    UPDATE gold.unified_customer_360 g
       SET recency_score = u.r, frequency_score = u.f, monetary_score = u.m, rfm_segment = u.segment,
           refreshed_at = pg_catalog.now()
      FROM ROWS FROM (pg_catalog.unnest(golden_ids), pg_catalog.unnest(r), pg_catalog.unnest(f), pg_catalog.unnest(m),
                      pg_catalog.unnest(segments)) u(golden_id, r, f, m, segment)
     WHERE g.golden_id = u.golden_id
$$;

-- One gold refresh, as the extension's owner: everyone's records when
-- asked, after a full silver rebuild, or when the settings or rule tables
-- changed (the fingerprint); otherwise the records of the people silver's
-- logged changes lead to. Only records that differ are written, in place:
-- readers keep their snapshot of the old rows until this commits, and no
-- lock stops them or this.
CREATE FUNCTION golden360_internal.gold_refresh(rebuild boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    run bigint;
    started timestamptz := clock_timestamp();
    failures text;
    built record;
    previous record;
    everyone boolean;
    people bigint;
    bridge_rows bigint;
    wanted_fingerprint text;
    saved_lock_timeout text := current_setting('lock_timeout');
BEGIN
    PERFORM golden360_internal.lock_layer('golden360.gold_runs', 'golden360.refresh_gold()');
    PERFORM set_config('lock_timeout', golden360_internal.lock_timeout_ms()::text, true);
    -- SHARE: silver holds still while gold reads it twice (the build, then
    -- the cross-checks); a silver refresh waits for this one.
    PERFORM golden360_internal.lock_tables(
        (SELECT array_agg(format('silver.%I', x)::regclass) FROM golden360_internal.silver_tables() s(x))
            || 'golden360_internal.silver_changes'::regclass,
        'SHARE', 'golden360.refresh_gold()');
    PERFORM golden360_internal.lock_tables(ARRAY['gold.unified_customer_360', 'gold.identity_bridge']::regclass[],
                                           'ROW EXCLUSIVE', 'golden360.refresh_gold()');
    wanted_fingerprint := golden360_internal.gold_fingerprint();
    SELECT g.* INTO previous FROM golden360.gold_runs g
     WHERE g.run_id = (SELECT s.run_id FROM golden360.refresh_state s
                        WHERE s.layer = 'gold' AND s.fingerprint = wanted_fingerprint);
    everyone := rebuild OR previous.run_id IS NULL;
    run := nextval('golden360.run_seq');
    -- Silver changed nothing since: gold stays as it is, and the run says so.
    IF NOT everyone AND NOT EXISTS (SELECT FROM golden360_internal.silver_changes) THEN
        INSERT INTO golden360.gold_runs (run_id, people, bridge_rows, written, removed, unchanged, bridge_written,
                                         bridge_removed, silver_run_id, millis, mode, recomputed)
        VALUES (run, previous.people, previous.bridge_rows, 0, 0, previous.people, 0, 0,
                coalesce((SELECT max(run_id) FROM golden360.silver_runs), 0),
                extract(epoch FROM clock_timestamp() - started) * 1000, 'incremental', 0);
        UPDATE golden360.refresh_state s SET run_id = run, updated_at = clock_timestamp() WHERE s.layer = 'gold';
        PERFORM set_config('lock_timeout', saved_lock_timeout, true);
        RAISE NOTICE 'gold run % (incremental): no silver change; % people (0 written, 0 removed, % unchanged), '
                     '% customer_ids', run, previous.people, previous.people, previous.bridge_rows;
        RETURN;
    END IF;
    SELECT * INTO built FROM golden360_internal.build_gold(everyone);
    PERFORM golden360_internal.create_gold_indexes();

    -- Cross-checks: what gold now holds against silver, read afresh, for
    -- the people this refresh computed.
    PERFORM golden360_internal.record_check(run, 'gold', 'unified_customer_360', c.check_name, 'cross-check',
                                            c.passed, c.failed)
       FROM golden360_internal.gold_cross_checks(built.people) c;

    SELECT string_agg(format('%s: %s failed', check_name, failed), E'\n' ORDER BY check_name)
      INTO failures
      FROM golden360.quality_checks
     WHERE run_id = run AND layer = 'gold' AND status = 'failed';
    IF failures IS NOT NULL THEN
        RAISE EXCEPTION 'gold cross-checks failed; the previous gold is kept'
            USING ERRCODE = 'check_violation', DETAIL = failures,
                  HINT = 'This points at a bug or at silver changing mid-refresh; please report it with the DETAIL.';
    END IF;

    DELETE FROM golden360_internal.silver_changes WHERE run_id <= built.up_to_run;
    IF built.mode = 'full' THEN
        people := built.recomputed;
        bridge_rows := (SELECT count(*) FROM gold.identity_bridge);
    ELSE
        people := previous.people + built.added - built.removed;
        bridge_rows := previous.bridge_rows + built.bridge_added - built.bridge_removed;
    END IF;
    INSERT INTO golden360.gold_runs (run_id, people, bridge_rows, written, removed, unchanged, bridge_written,
                                     bridge_removed, silver_run_id, millis, mode, recomputed, passes)
    VALUES (run, people, bridge_rows, built.written, built.removed, people - built.written, built.bridge_written,
            built.bridge_removed, coalesce((SELECT max(run_id) FROM golden360.silver_runs), 0),
            extract(epoch FROM clock_timestamp() - started) * 1000, built.mode, built.recomputed,
            greatest(built.passes, 1));
    INSERT INTO golden360.refresh_state AS s (layer, fingerprint, run_id) VALUES ('gold', wanted_fingerprint, run)
        ON CONFLICT (layer) DO UPDATE SET fingerprint = excluded.fingerprint, run_id = excluded.run_id,
                                          updated_at = clock_timestamp();
    PERFORM set_config('lock_timeout', saved_lock_timeout, true);
    IF built.mode = 'full' THEN
        RAISE NOTICE 'gold run %: % people (% written, % removed, % unchanged), % customer_ids%', run,
            people, built.written, built.removed, people - built.written, bridge_rows,
            CASE WHEN built.passes > 1
                 THEN format(', in %s passes by customer_unique_id (maintenance_work_mem %s)', built.passes,
                             current_setting('maintenance_work_mem'))
                 ELSE '' END;
    ELSE
        RAISE NOTICE 'gold run % (incremental, % people recomputed): % people (% written, % removed, % unchanged), '
                     '% customer_ids', run, built.recomputed, people, built.written, built.removed,
                     people - built.written, bridge_rows;
    END IF;
END
$$;

-- SECURITY DEFINER: it runs as the extension's owner, the only role that
-- may write silver; EXECUTE on it is what golden360_operator is granted.
CREATE OR REPLACE PROCEDURE golden360.refresh_silver()
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM golden360_internal.silver_refresh(false);
END
$$;
COMMENT ON PROCEDURE golden360.refresh_silver() IS
    'Bring silver up to date with bronze: type, validate (golden360.silver_rules), quarantine, deduplicate, check '
    'quality. Applies only the bronze batches silver has not seen (a full rebuild when the rules or version changed; '
    'golden360.rebuild() forces one); atomic: readers see the previous silver until it commits';

-- SECURITY DEFINER, as refresh_silver: EXECUTE is what an operator holds.
CREATE OR REPLACE PROCEDURE golden360.refresh_gold()
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM golden360_internal.gold_refresh(false);
END
$$;
COMMENT ON PROCEDURE golden360.refresh_gold() IS
    'Bring gold up to date with silver in one transaction: the records of the people silver''s changes lead to '
    '(everyone after a full silver rebuild or a change of settings or golden360.rfm_segments) are computed, only '
    'those that differ are written; cross-checked; readers see the old gold until it commits';

-- The full rebuild, one call: silver from all of bronze, then every
-- golden record from silver. What an incremental refresh is equal to.
CREATE PROCEDURE golden360.rebuild()
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM golden360_internal.silver_refresh(true);
    PERFORM golden360_internal.gold_refresh(true);
END
$$;
COMMENT ON PROCEDURE golden360.rebuild() IS
    'Rebuild silver from all of bronze and recompute every golden record, in one transaction (what refresh_silver() '
    'and refresh_gold() compute incrementally); readers see the previous silver and gold until it commits';

-- Refreshes cancel an autovacuum in their way, as PostgreSQL does for
-- a lock wait longer than deadlock_timeout (sql/silver.sql).
-- The table lock modes that conflict with taking `mode` (PostgreSQL's
-- conflict table, for the modes golden360 takes).
CREATE FUNCTION golden360_internal.conflicting_lock_modes(mode text) RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
SELECT CASE upper(mode)
    WHEN 'ACCESS SHARE' THEN ARRAY['AccessExclusiveLock']
    WHEN 'ROW EXCLUSIVE' THEN ARRAY['ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock']
    WHEN 'SHARE' THEN ARRAY['RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
                            'AccessExclusiveLock']
    WHEN 'SHARE ROW EXCLUSIVE' THEN ARRAY['RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareLock',
                                          'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock']
    ELSE ARRAY['AccessShareLock', 'RowShareLock', 'RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareLock',
               'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'] END
$$;

-- The granted locks of other sessions on `tables` (in this database) that
-- conflict with taking the lock mode `wanted`: whom a refresh's lock would
-- wait for. (Not named `mode`: in the query that name is pg_locks' column.)
CREATE FUNCTION golden360_internal.conflicting_locks(tables regclass[], wanted text)
RETURNS TABLE (pid integer, mode text, relation regclass)
LANGUAGE sql STABLE AS $$
SELECT l.pid, l.mode, l.relation::regclass
  FROM pg_catalog.pg_locks l
 WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
   AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
   AND l.relation = ANY (tables)
   AND l.mode = ANY (golden360_internal.conflicting_lock_modes(wanted))
$$;

-- Who holds those locks and what they are doing: the DETAIL of a refresh
-- that could not get its lock.
CREATE OR REPLACE FUNCTION golden360_internal.lock_holders(tables regclass[], mode text) RETURNS text
LANGUAGE sql STABLE AS $$
SELECT coalesce(
    string_agg(DISTINCT format('pid %s (user %s, %s%s) holds %s on %s; its last query: %s',
                               a.pid, a.usename, a.state,
                               CASE WHEN a.state LIKE 'idle in transaction%'
                                    THEN format(' since %s', to_char(a.state_change, 'YYYY-MM-DD HH24:MI:SS TZ')) ELSE '' END,
                               l.mode, l.relation, left(a.query, 200)), E'\n'),
    'no session holds a conflicting lock any more')
  FROM golden360_internal.conflicting_locks(tables, lock_holders.mode) l
  JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
$$;

-- Cancel the autovacuum workers whose locks on `tables` conflict with
-- `wanted`, as PostgreSQL itself does for a lock wait longer than
-- deadlock_timeout: lock_tables' short attempts never wait that long, so
-- without this a vacuum of a big silver table would make a refresh fail.
-- A vacuum that prevents wraparound is left to finish. Returns how many
-- were asked to stop.
CREATE FUNCTION golden360_internal.cancel_autovacuum_in_the_way(tables regclass[], wanted text) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    worker integer;
    cancelled integer := 0;
BEGIN
    FOR worker IN
        SELECT DISTINCT a.pid
          FROM golden360_internal.conflicting_locks(tables, wanted) l
          JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
         WHERE a.backend_type = 'autovacuum worker'
           AND a.query LIKE 'autovacuum:%' AND a.query NOT LIKE '%to prevent wraparound%'
    LOOP
        BEGIN
            IF pg_catalog.pg_cancel_backend(worker) THEN
                cancelled := cancelled + 1;
            END IF;
        EXCEPTION WHEN insufficient_privilege THEN
            NULL; -- an owner that may not signal it waits for it, as before
        END;
    END LOOP;
    RETURN cancelled;
END
$$;

CREATE OR REPLACE FUNCTION golden360_internal.lock_tables(tables regclass[], mode text, what text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    deadline timestamptz := clock_timestamp() + golden360_internal.lock_timeout_ms() * interval '1 ms';
    list text := (SELECT string_agg(t::text, ', ') FROM unnest(tables) t);
BEGIN
    LOOP
        -- NOWAIT, then a pause: the wait never queues readers behind it,
        -- and a cancel always ends it. (Waits bounded by lock_timeout were
        -- ended by a signal that a pg_cancel_backend arriving with it
        -- merged into, so a cancel could be taken for a lock timeout and
        -- the refresh go on waiting.)
        BEGIN
            EXECUTE format('LOCK TABLE %s IN %s MODE NOWAIT', list, mode);
            RETURN;
        EXCEPTION WHEN lock_not_available THEN
            PERFORM golden360_internal.cancel_autovacuum_in_the_way(tables, mode);
            IF clock_timestamp() >= deadline THEN
                RAISE EXCEPTION '% could not lock % within golden360.lock_timeout (%)', what, list,
                                current_setting('golden360.lock_timeout')
                    USING ERRCODE = 'lock_not_available',
                          DETAIL = golden360_internal.lock_holders(tables, mode),
                          HINT = 'Nothing was changed. Let the blocking session finish, or end it with '
                              || 'pg_cancel_backend(pid) (pg_terminate_backend(pid) for an idle transaction); '
                              || 'golden360.lock_timeout sets how long a refresh waits.';
            END IF;
        END;
        PERFORM pg_catalog.pg_sleep(0.02);
    END LOOP;
END
$$;

-- This session's Rust heap against golden360.memory_limit (src/memory.rs).
CREATE  FUNCTION golden360."rust_memory"() RETURNS TABLE (
	"in_use_bytes" bigint,  /* i64 */
	"peak_bytes" bigint,  /* i64 */
	"limit_bytes" bigint  /* i64 */
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'rust_memory_wrapper';

-- PostgREST caches the schema; tell it when the api schema changes (here,
-- and on any later DDL touching api). Not on a Citus worker: there the
-- extension's commands arrive from the coordinator inside Citus's two-phase
-- commit, which refuses a transaction that sent NOTIFY, and no PostgREST
-- listens on a worker. Citus names its internal sessions so.
CREATE FUNCTION golden360_internal.notify_postgrest() RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT starts_with(current_setting('application_name'), 'citus_internal gpid=') THEN
        NOTIFY pgrst, 'reload schema';
    END IF;
END
$$;
CREATE OR REPLACE FUNCTION golden360_internal.notify_api_change() RETURNS event_trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (TG_EVENT = 'ddl_command_end'
        AND EXISTS (SELECT FROM pg_event_trigger_ddl_commands() WHERE schema_name = 'api'))
       OR (TG_EVENT = 'sql_drop'
        AND EXISTS (SELECT FROM pg_event_trigger_dropped_objects() WHERE schema_name = 'api'))
    THEN
        PERFORM golden360_internal.notify_postgrest();
    END IF;
END
$$;

-- Who may call what (sql/grants.sql): the new routines are the owner's,
-- but for rebuild() and rust_memory(), an operator's like the refreshes.
REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA golden360, golden360_internal FROM PUBLIC;
GRANT EXECUTE ON PROCEDURE golden360.rebuild() TO golden360_operator;
GRANT EXECUTE ON FUNCTION golden360.rust_memory() TO golden360_operator;
GRANT SELECT ON golden360.silver_batches, golden360.refresh_state TO golden360_operator, golden360_monitor;
