-- Gold: the identity bridge, the unified customer 360, the RFM map, and
-- refresh_gold(). Definitions are the SPEC's Gold section and its precise
-- rules; text ordering is byte order (COLLATE "C") everywhere.

-- The tables and their column comments, generated from their declaration
-- in src/gold/spec.rs (golden360_internal.gold_columns()); the comments are
-- for DBAs and, copied onto api.customer_360, for the API's OpenAPI
-- description.
DO $$
DECLARE
    t text;
    c record;
BEGIN
    FOREACH t IN ARRAY ARRAY['identity_bridge', 'unified_customer_360', 'zip_coordinates'] LOOP
        EXECUTE format('CREATE TABLE gold.%I (%s, PRIMARY KEY (%I))', t,
            (SELECT string_agg(format('%I %s%s%s', g.column_name, g.sql_type,
                                      CASE WHEN g.byte_order THEN ' COLLATE "C"' ELSE '' END,
                                      CASE WHEN g.not_null THEN ' NOT NULL' ELSE '' END), ', ' ORDER BY g.ordinal)
               FROM golden360_internal.gold_columns(t) g),
            (SELECT g.column_name FROM golden360_internal.gold_columns(t) g WHERE g.ordinal = 1));
        FOR c IN SELECT * FROM golden360_internal.gold_columns(t) g WHERE g.description IS NOT NULL LOOP
            EXECUTE format('COMMENT ON COLUMN gold.%I.%I IS %L', t, c.column_name, c.description);
        END LOOP;
    END LOOP;
END
$$;
COMMENT ON TABLE gold.identity_bridge IS 'Every silver customer_id and the person (golden record) it belongs to';
COMMENT ON TABLE gold.unified_customer_360 IS 'One golden record per person (customer_unique_id in silver.customers)';
COMMENT ON TABLE gold.zip_coordinates IS
    'Each zip prefix''s mean point over silver.geolocation: the 360''s latitude and longitude';

-- Room on each page for one more version of its rows: the RFM rescores
-- of an incremental refresh (people whose ranks moved) change no indexed
-- column, so with the room they are HOT updates, which add no index
-- entries (measured: 1,500 rescores at scale 1 in 25 ms instead of 45).
ALTER TABLE gold.unified_customer_360 SET (fillfactor = 90);

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

CREATE TABLE golden360.gold_runs (
    run_id         bigint PRIMARY KEY,
    people         bigint NOT NULL,
    bridge_rows    bigint NOT NULL,
    written        bigint NOT NULL,
    removed        bigint NOT NULL,
    unchanged      bigint NOT NULL,
    bridge_written bigint NOT NULL,
    bridge_removed bigint NOT NULL,
    silver_run_id  bigint NOT NULL,
    millis         double precision NOT NULL,
    finished_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    mode           text NOT NULL DEFAULT 'full' CHECK (mode IN ('full', 'incremental')),
    recomputed     bigint NOT NULL DEFAULT 0,
    passes         integer NOT NULL DEFAULT 1 CHECK (passes >= 1)
);
COMMENT ON TABLE golden360.gold_runs IS
    'What each successful refresh_gold() did: golden records written (new or changed), removed (people gone from '
    'silver) and left unchanged, the same for bridge rows, the silver run it was built from, whether it '
    'recomputed everyone (full) or the people silver''s changes lead to (incremental; recomputed: how many), and '
    'in how many passes by customer_unique_id (more than 1 when a full build would not fit maintenance_work_mem)';

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

-- The 360's secondary indexes, for the API: customer_unique_id (unique;
-- source-id lookups) and a segment's people in the API's paging order
-- (biggest spenders first), which serves ?ltv_segment=eq.X alone and with
-- order=total_spend.desc,golden_id. The primary keys come with the tables.
-- refresh_gold() creates whichever is missing once its rows are written, so
-- the first refresh builds them by one sort each, as CREATE INDEX after a
-- load does, instead of inserting ~100k entries one by one into each.
-- CREATE INDEX takes a SHARE lock, which readers do not wait for.
CREATE FUNCTION golden360_internal.create_gold_indexes() RETURNS void
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

-- SECURITY DEFINER, as refresh_silver: EXECUTE is what an operator holds.
CREATE PROCEDURE golden360.refresh_gold()
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
