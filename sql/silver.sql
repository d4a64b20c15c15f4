-- Silver: the typed tables (generated from the spec in src/silver/spec.rs,
-- exposed as golden360.silver_tables() and golden360.silver_columns()),
-- quarantine, quality thresholds and checks, and refresh_silver().
--
-- Two generations of every silver table: `silver` (live, indexed) and
-- `silver_next` (the shadow a refresh bulk-loads without indexes). A refresh
-- swaps them through `silver_swap`, so both stay members of the extension.

CREATE SCHEMA silver_next;
COMMENT ON SCHEMA silver_next IS 'golden360: the shadow generation of silver a refresh loads (internal)';
CREATE SCHEMA silver_swap;
COMMENT ON SCHEMA silver_swap IS 'golden360: empty; used while swapping silver generations (internal)';

DO $$
DECLARE
    t record;
    generation text;
BEGIN
    FOREACH generation IN ARRAY ARRAY['silver', 'silver_next'] LOOP
        FOR t IN SELECT * FROM golden360_internal.silver_tables() ORDER BY build_order LOOP
            EXECUTE format('CREATE TABLE %I.%I (%s, _batch_id bigint NOT NULL, _row_number bigint NOT NULL)',
                generation, t.table_name,
                (SELECT string_agg(format('%I %s%s%s', c.column_name, c.sql_type,
                                          CASE WHEN c.sql_type = 'text' THEN ' COLLATE "C"' ELSE '' END,
                                          CASE WHEN c.not_null THEN ' NOT NULL' ELSE '' END), ', ' ORDER BY c.ordinal)
                   FROM golden360_internal.silver_columns() c WHERE c.table_name = t.table_name));
            EXECUTE format('COMMENT ON TABLE %I.%I IS %L', generation, t.table_name,
                format('Typed, validated, deduplicated rows of bronze.%s (rules: golden360.silver_rules)', t.table_name));
        END LOOP;
        EXECUTE format('CREATE TABLE %I.quarantine (%s)', generation,
            (SELECT string_agg(format('%I %s%s NOT NULL', c.column_name, c.sql_type,
                                      CASE WHEN c.sql_type = 'text' THEN ' COLLATE "C"' ELSE '' END), ', ' ORDER BY c.ordinal)
               FROM golden360_internal.quarantine_columns() c));
        EXECUTE format('COMMENT ON TABLE %I.quarantine IS %L', generation,
            'Bronze rows that failed a silver rule in the last refresh: the first failing rule (reason), its kind, '
            'the source batch and row, and the whole bronze record');
    END LOOP;
    -- Keys of the live generation; a refresh copies every index and key of
    -- the live tables (a DBA's included) onto the shadow before swapping.
    FOR t IN SELECT * FROM golden360_internal.silver_tables() WHERE cardinality(key) > 0 LOOP
        EXECUTE format('ALTER TABLE silver.%I ADD PRIMARY KEY (%s)', t.table_name,
            (SELECT string_agg(format('%I', k), ', ') FROM unnest(t.key) k));
    END LOOP;
    -- A table deduplicated on whole rows is looked up by its columns that
    -- are never NULL (an incremental refresh finds a new row's exact
    -- duplicates there: for a geolocation point, by its zip, lat and lng,
    -- not among every point of its zip). Named after the first column;
    -- TableSpec::lookup() in src/silver/spec.rs is the same rule.
    FOR t IN SELECT s.table_name, min(c.column_name) FILTER (WHERE c.ordinal = 1) AS first_column,
                    string_agg(format('%I', c.column_name), ', ' ORDER BY c.ordinal) FILTER (WHERE c.not_null) AS columns
               FROM golden360_internal.silver_tables() s
               JOIN golden360_internal.silver_columns() c ON c.table_name = s.table_name
              WHERE cardinality(s.key) = 0
              GROUP BY s.table_name LOOP
        EXECUTE format('CREATE INDEX %I ON silver.%I (%s)', t.table_name || '_by_' || t.first_column, t.table_name,
                       t.columns);
    END LOOP;
END
$$;

-- What gold looks rows up by (an incremental gold refresh reads the
-- changed people's rows only: by person, customer, order and product).
CREATE INDEX customers_by_person ON silver.customers (customer_unique_id);
CREATE INDEX customers_by_zip ON silver.customers (customer_zip);
CREATE INDEX orders_by_customer ON silver.orders (customer_id);
CREATE INDEX order_items_by_product ON silver.order_items (product_id);
CREATE INDEX quarantine_by_reason ON silver.quarantine (table_name, reason);

CREATE VIEW golden360.silver_rules AS SELECT * FROM golden360.silver_rule_list();
COMMENT ON VIEW golden360.silver_rules IS
    'Every silver rule in evaluation order (presence, type, value, reference): a failing row is '
    'quarantined once, with the first rule it fails';

CREATE SEQUENCE golden360.run_seq;

-- The thresholds, by check kind. A check passes when its pass rate is above
-- min_pass_rate (strict) or at least min_pass_rate (not strict).
CREATE TABLE golden360.quality_thresholds (
    kind          text PRIMARY KEY,
    min_pass_rate numeric NOT NULL CHECK (min_pass_rate BETWEEN 0 AND 1),
    strict        boolean NOT NULL,
    description   text NOT NULL
);
INSERT INTO golden360.quality_thresholds VALUES
    ('uniqueness',   1.00, false, 'primary-key uniqueness 100%'),
    ('key',          0.99, true,  'critical fields non-null > 99% (key columns)'),
    ('not-null',     0.99, true,  'critical fields non-null > 99%'),
    ('type',         1.00, false, 'type compliance 100%'),
    ('business',     0.99, true,  'business rules > 99%'),
    ('referential',  0.99, true,  'referential integrity > 99% (a business rule)'),
    ('conservation', 1.00, false, 'bronze rows = silver rows + duplicates removed + quarantined');
SELECT pg_catalog.pg_extension_config_dump('golden360.quality_thresholds', '');

CREATE TABLE golden360.quality_checks (
    run_id     bigint  NOT NULL,
    layer      text    NOT NULL,
    table_name text    NOT NULL,
    check_name text    NOT NULL,
    kind       text    NOT NULL,
    passed     bigint  NOT NULL,
    failed     bigint  NOT NULL,
    pass_rate  numeric NOT NULL,
    threshold  numeric NOT NULL,
    status     text    NOT NULL CHECK (status IN ('passed', 'failed')),
    checked_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (run_id, layer, table_name, check_name)
);
COMMENT ON TABLE golden360.quality_checks IS
    'One row per check per run; pass_rate = passed / (passed + failed); status against golden360.quality_thresholds';

CREATE TABLE golden360.silver_runs (
    run_id      bigint NOT NULL,
    table_name  text   NOT NULL,
    bronze_rows bigint NOT NULL,
    silver_rows bigint NOT NULL,
    duplicates  bigint NOT NULL,
    quarantined bigint NOT NULL,
    millis      double precision NOT NULL,
    last_batch_id bigint NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    mode        text NOT NULL DEFAULT 'full' CHECK (mode IN ('full', 'incremental')),
    PRIMARY KEY (run_id, table_name)
);
COMMENT ON TABLE golden360.silver_runs IS
    'Per table, what each successful refresh_silver() did: its counts after the run (bronze rows = silver rows + '
    'duplicates + quarantined), how long the table took, the newest bronze batch it saw, and whether it rebuilt '
    'silver from all of bronze (full) or applied the new batches (incremental)';

-- The bronze batches silver holds, and the run that applied each: an
-- incremental refresh applies the others, and the rule checks measure them.
CREATE TABLE golden360.silver_batches (
    batch_id bigint PRIMARY KEY,
    run_id   bigint NOT NULL
);
COMMENT ON TABLE golden360.silver_batches IS
    'Every bronze batch silver has applied, with the refresh_silver() run that applied it';

-- What an incremental refresh continues from, per layer: the fingerprint
-- of the rules and settings the layer was last built under. A refresh that
-- finds another fingerprint (a new version, a changed setting or rule
-- table) rebuilds the layer in full; deleting the row forces that too.
CREATE TABLE golden360.refresh_state (
    layer       text PRIMARY KEY CHECK (layer IN ('silver', 'gold')),
    fingerprint text NOT NULL,
    run_id      bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE golden360.refresh_state IS
    'Per layer, the run an incremental refresh continues from and the fingerprint of the rules and settings it was '
    'built under; delete a layer''s row to make its next refresh a full rebuild';

-- Silver's rules and columns, and the extension version: a change of any
-- of them makes the next refresh a full one.
CREATE FUNCTION golden360_internal.silver_fingerprint() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT md5(concat_ws('|',
        (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'golden360'),
        (SELECT string_agg(r::text, ';' ORDER BY r.table_name, r.ordinal) FROM golden360.silver_rule_list() r),
        (SELECT string_agg(c::text, ';' ORDER BY c.table_name, c.ordinal) FROM golden360_internal.silver_columns() c)))
$$;

-- The silver rows each refresh changed, by the value that links them to
-- golden records (golden360_internal.silver_tables' gold_link): how gold
-- finds the people to recompute. A full rebuild logs table '*'. Gold
-- deletes what it has consumed.
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

-- Records one check's outcome against its kind's threshold.
CREATE FUNCTION golden360_internal.record_check(run bigint, layer text, table_name text, check_name text,
                                       kind text, passed bigint, failed bigint)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO golden360.quality_checks
        (run_id, layer, table_name, check_name, kind, passed, failed, pass_rate, threshold, status)
    SELECT run, layer, table_name, check_name, kind, passed, failed, r.rate, t.min_pass_rate,
           CASE WHEN r.rate > t.min_pass_rate OR (NOT t.strict AND r.rate = t.min_pass_rate)
                THEN 'passed' ELSE 'failed' END
      FROM golden360.quality_thresholds t,
           LATERAL (SELECT CASE WHEN passed + failed = 0 THEN 1.0
                                ELSE round(passed::numeric / (passed + failed), 6) END AS rate) r
     WHERE t.kind = record_check.kind
$$;

-- The tables a refresh rebuilds and swaps: every silver table and quarantine.
CREATE FUNCTION golden360_internal.silver_generation_tables() RETURNS SETOF text
LANGUAGE sql IMMUTABLE AS $$
    SELECT table_name FROM golden360_internal.silver_tables() UNION ALL SELECT 'quarantine'
$$;

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
CREATE FUNCTION golden360_internal.lock_holders(tables regclass[], mode text) RETURNS text
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

-- Lock `tables` in `mode`, waiting at most golden360.lock_timeout; then
-- fail with 55P03 naming the sessions in the way. Every wait of a refresh
-- goes through here (or is bounded by lock_timeout, set to the same).
CREATE FUNCTION golden360_internal.lock_tables(tables regclass[], mode text, what text) RETURNS void
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

-- A second refresh of the same layer fails at once: the run table of the
-- layer, locked in a self-exclusive mode no other role can take.
CREATE FUNCTION golden360_internal.lock_layer(run_table regclass, what text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE NOWAIT', run_table);
EXCEPTION WHEN lock_not_available THEN
    RAISE EXCEPTION 'another % is running', what
        USING ERRCODE = 'lock_not_available',
              DETAIL = golden360_internal.lock_holders(ARRAY[run_table], 'SHARE ROW EXCLUSIVE'),
              HINT = 'Wait for it to finish; pg_stat_activity shows it.';
END
$$;

-- Empty the shadow and drop its indexes (the previous generation's), so
-- the load needs no index maintenance.
CREATE FUNCTION golden360_internal.reset_silver_shadow() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    c record;
BEGIN
    FOR t IN SELECT * FROM golden360_internal.silver_generation_tables() LOOP
        FOR c IN SELECT conname FROM pg_constraint
                  WHERE conrelid = format('silver_next.%I', t)::regclass AND contype IN ('p', 'u') LOOP
            EXECUTE format('ALTER TABLE silver_next.%I DROP CONSTRAINT %I', t, c.conname);
        END LOOP;
        FOR c IN SELECT indexrelid::regclass AS idx FROM pg_index
                  WHERE indrelid = format('silver_next.%I', t)::regclass LOOP
            EXECUTE format('DROP INDEX %s', c.idx);
        END LOOP;
        EXECUTE format('TRUNCATE silver_next.%I', t);
    END LOOP;
END
$$;

-- Give the shadow the live tables' keys and indexes (a DBA's included),
-- built in bulk after the load.
CREATE FUNCTION golden360_internal.copy_silver_indexes() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    c record;
BEGIN
    FOR t IN SELECT * FROM golden360_internal.silver_generation_tables() LOOP
        FOR c IN SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
                  WHERE conrelid = format('silver.%I', t)::regclass AND contype IN ('p', 'u') LOOP
            EXECUTE format('ALTER TABLE silver_next.%I ADD CONSTRAINT %I %s', t, c.conname, c.def);
        END LOOP;
        FOR c IN SELECT pg_get_indexdef(x.indexrelid) AS def FROM pg_index x
                  WHERE x.indrelid = format('silver.%I', t)::regclass
                    AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = x.indexrelid) LOOP
            EXECUTE regexp_replace(c.def, ' ON silver\.', ' ON silver_next.');
        END LOOP;
    END LOOP;
END
$$;

-- A DBA's grants (table and column) and row-level security on the live
-- tables, given to the shadow before the swap, so they survive a refresh.
CREATE FUNCTION golden360_internal.copy_silver_privileges() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    live oid;
    shadow oid;
    g record;
    p record;
    who text;
BEGIN
    FOR t IN SELECT * FROM golden360_internal.silver_generation_tables() LOOP
        live := format('silver.%I', t)::regclass;
        shadow := format('silver_next.%I', t)::regclass;
        -- The shadow holds the generation before last's: clear it first.
        FOR g IN SELECT DISTINCT NULL::name AS col, a.grantee FROM pg_class c, aclexplode(c.relacl) a
                  WHERE c.oid = shadow AND a.grantee <> c.relowner
                 UNION
                 SELECT DISTINCT att.attname, a.grantee FROM pg_attribute att, aclexplode(att.attacl) a
                  WHERE att.attrelid = shadow AND att.attnum > 0 LOOP
            who := CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(g.grantee::regrole::text) END;
            EXECUTE format('REVOKE ALL %s ON silver_next.%I FROM %s',
                           CASE WHEN g.col IS NULL THEN '' ELSE format('(%I)', g.col) END, t, who);
        END LOOP;
        FOR g IN SELECT NULL::name AS col, a.grantee, a.privilege_type, a.is_grantable
                   FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = live AND a.grantee <> c.relowner
                 UNION ALL
                 SELECT att.attname, a.grantee, a.privilege_type, a.is_grantable
                   FROM pg_attribute att, aclexplode(att.attacl) a WHERE att.attrelid = live AND att.attnum > 0 LOOP
            who := CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(g.grantee::regrole::text) END;
            EXECUTE format('GRANT %s%s ON silver_next.%I TO %s%s', g.privilege_type,
                           CASE WHEN g.col IS NULL THEN '' ELSE format(' (%I)', g.col) END, t, who,
                           CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
        FOR p IN SELECT polname FROM pg_policy WHERE polrelid = shadow LOOP
            EXECUTE format('DROP POLICY %I ON silver_next.%I', p.polname, t);
        END LOOP;
        FOR p IN SELECT * FROM pg_policies WHERE schemaname = 'silver' AND tablename = t LOOP
            EXECUTE format('CREATE POLICY %I ON silver_next.%I AS %s FOR %s TO %s%s%s', p.policyname, t, p.permissive,
                           p.cmd, (SELECT string_agg(CASE WHEN r = 'public' THEN 'PUBLIC' ELSE quote_ident(r) END, ', ')
                                     FROM unnest(p.roles) r),
                           CASE WHEN p.qual IS NULL THEN '' ELSE format(' USING (%s)', p.qual) END,
                           CASE WHEN p.with_check IS NULL THEN '' ELSE format(' WITH CHECK (%s)', p.with_check) END);
        END LOOP;
        EXECUTE format('ALTER TABLE silver_next.%I %s ROW LEVEL SECURITY, %s ROW LEVEL SECURITY', t,
                       CASE WHEN (SELECT relrowsecurity FROM pg_class WHERE oid = live) THEN 'ENABLE' ELSE 'DISABLE' END,
                       CASE WHEN (SELECT relforcerowsecurity FROM pg_class WHERE oid = live) THEN 'FORCE' ELSE 'NO FORCE' END);
    END LOOP;
END
$$;

-- Swap the live and shadow generations. The AccessExclusive locks wait at
-- most golden360.lock_timeout (a reader arriving meanwhile waits behind
-- each short attempt); transactions already reading silver are waited for.
-- Waiting readers see the new tables once this commits.
CREATE FUNCTION golden360_internal.swap_silver_generations() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    t text;
BEGIN
    PERFORM golden360_internal.lock_tables(
        (SELECT array_agg(format('%I.%I', g, x)::regclass)
           FROM golden360_internal.silver_generation_tables() x, unnest(ARRAY['silver', 'silver_next']) g),
        'ACCESS EXCLUSIVE', 'golden360.refresh_silver()');
    FOR t IN SELECT * FROM golden360_internal.silver_generation_tables() LOOP
        EXECUTE format('ALTER TABLE silver.%I SET SCHEMA silver_swap', t);
        EXECUTE format('ALTER TABLE silver_next.%I SET SCHEMA silver', t);
        EXECUTE format('ALTER TABLE silver_swap.%I SET SCHEMA silver_next', t);
    END LOOP;
END
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

-- SECURITY DEFINER: it runs as the extension's owner, the only role that
-- may write silver; EXECUTE on it is what golden360_operator is granted.
CREATE PROCEDURE golden360.refresh_silver()
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
