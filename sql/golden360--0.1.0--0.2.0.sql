-- golden360 0.1.0 -> 0.2.0: least privilege (issue 9).
-- Internal functions move to schema golden360_internal, which only the
-- owner may use; nothing is executable by PUBLIC; bronze and the audit
-- tables are written only by ingest_bronze (as the owner); refreshes are
-- SECURITY DEFINER, serialised by locks no other role can take, and wait
-- at most golden360.lock_timeout; api.health no longer counts gold.
-- No table is dropped or rewritten: bronze, silver, gold and the run
-- history stay as they are.
\echo Use "ALTER EXTENSION golden360 UPDATE" to load this file. \quit

CREATE SCHEMA golden360_internal;
COMMENT ON SCHEMA golden360_internal IS 'golden360: internal functions, usable by the extension''s owner only';

-- The extension's roles. Roles are cluster-wide, so each may already exist
-- from another database, or be created at this very moment by another
-- database's CREATE EXTENSION: a check-then-create would race, so create
-- and tolerate the duplicate. What each may call: sql/grants.sql.
--   golden360_loader   who may ingest besides superusers (NOLOGIN group: GRANT golden360_loader TO alice)
--   golden360_operator who may run the pipeline and its steps (a loader too)
--   golden360_authenticator, golden360_anon, golden360_reader   the API's (sql/api.sql)
--   golden360_monitor  the metrics exporter's login (no password: the DBA sets one)
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM (VALUES
            ('golden360_loader', 'NOLOGIN'),
            ('golden360_operator', 'NOLOGIN'),
            ('golden360_authenticator', 'LOGIN NOINHERIT'),
            ('golden360_anon', 'NOLOGIN'),
            ('golden360_reader', 'NOLOGIN'),
            ('golden360_monitor', 'LOGIN')) AS roles(name, options)
    LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I %s', r.name, r.options);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
    -- Granted once per cluster (a repeated GRANT prints a NOTICE; two at
    -- once may collide on the catalog's unique index).
    IF NOT pg_has_role('golden360_operator', 'golden360_loader', 'MEMBER') THEN
        BEGIN
            GRANT golden360_loader TO golden360_operator;
        EXCEPTION WHEN unique_violation THEN
            NULL;
        END;
    END IF;
END
$$;


-- Internal functions keep their bodies; they only change schema.
ALTER FUNCTION golden360.refuse_bronze_change() SET SCHEMA golden360_internal;
ALTER FUNCTION golden360.make_append_only(regclass) SET SCHEMA golden360_internal;
ALTER FUNCTION golden360.record_check(bigint, text, text, text, text, bigint, bigint) SET SCHEMA golden360_internal;
ALTER FUNCTION golden360.silver_tables() SET SCHEMA golden360_internal;
ALTER FUNCTION golden360.silver_columns() SET SCHEMA golden360_internal;
ALTER FUNCTION golden360.silver_generation_tables() SET SCHEMA golden360_internal;
ALTER FUNCTION golden360.reset_silver_shadow() SET SCHEMA golden360_internal;
ALTER FUNCTION golden360.copy_silver_indexes() SET SCHEMA golden360_internal;
ALTER FUNCTION golden360.swap_silver_generations() SET SCHEMA golden360_internal;
ALTER FUNCTION golden360.build_gold() SET SCHEMA golden360_internal;
ALTER FUNCTION golden360.gold_cross_checks() SET SCHEMA golden360_internal;
ALTER FUNCTION golden360.create_gold_indexes() SET SCHEMA golden360_internal;
ALTER FUNCTION golden360.notify_api_change() SET SCHEMA golden360_internal;

-- Gone: the grants check (loaders need no grants on bronze now), the
-- advisory run lock, and the build that took a target schema.
DROP FUNCTION golden360.assert_can_ingest();
DROP FUNCTION golden360.pipeline_run_in_progress();
DROP FUNCTION golden360.pipeline_lock_key();
DROP FUNCTION golden360.build_silver(bigint, text);

CREATE FUNCTION golden360_internal."build_silver"(
	"run_id" bigint /* i64 */
) RETURNS TABLE (
	"table_name" TEXT,  /* String */
	"bronze_rows" bigint,  /* i64 */
	"silver_rows" bigint,  /* i64 */
	"duplicates" bigint,  /* i64 */
	"quarantined" bigint,  /* i64 */
	"millis" double precision  /* f64 */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'build_silver_wrapper';

CREATE FUNCTION golden360_internal."quarantine_columns"() RETURNS TABLE (
	"ordinal" INT,  /* i32 */
	"column_name" TEXT,  /* String */
	"sql_type" TEXT  /* String */
)
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'quarantine_columns_wrapper';

CREATE FUNCTION golden360_internal."lock_timeout_ms"() RETURNS INT /* i32 */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'lock_timeout_ms_wrapper';

-- Bodies that name a moved function, or changed.

CREATE OR REPLACE FUNCTION golden360_internal.make_append_only(target regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION golden360_internal.refuse_bronze_change()', target);
    EXECUTE format('CREATE TRIGGER append_only_truncate BEFORE TRUNCATE ON %s '
                   'FOR EACH STATEMENT EXECUTE FUNCTION golden360_internal.refuse_bronze_change()', target);
END
$$;
COMMENT ON FUNCTION golden360_internal.make_append_only(regclass) IS
    'Refuses UPDATE, DELETE and TRUNCATE on a table (used on every bronze table).';

-- The tables a refresh rebuilds and swaps: every silver table and quarantine.
CREATE OR REPLACE FUNCTION golden360_internal.silver_generation_tables() RETURNS SETOF text
LANGUAGE sql IMMUTABLE AS $$
    SELECT table_name FROM golden360_internal.silver_tables() UNION ALL SELECT 'quarantine'
$$;

-- Empty the shadow and drop its indexes (the previous generation's), so
-- the load needs no index maintenance.
CREATE OR REPLACE FUNCTION golden360_internal.reset_silver_shadow() RETURNS void
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
CREATE OR REPLACE FUNCTION golden360_internal.copy_silver_indexes() RETURNS void
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

-- Swap the live and shadow generations. The AccessExclusive locks wait at
-- most golden360.lock_timeout (a reader arriving meanwhile waits behind
-- each short attempt); transactions already reading silver are waited for.
-- Waiting readers see the new tables once this commits.
CREATE OR REPLACE FUNCTION golden360_internal.swap_silver_generations() RETURNS void
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


-- New.

-- Who holds a lock on these tables that conflicts with `mode`, and what
-- they are doing: the DETAIL of a refresh that could not get its lock.
CREATE FUNCTION golden360_internal.lock_holders(tables regclass[], mode text) RETURNS text
LANGUAGE sql STABLE AS $$
SELECT coalesce(
    string_agg(DISTINCT format('pid %s (user %s, %s%s) holds %s on %s; its last query: %s',
                               a.pid, a.usename, a.state,
                               CASE WHEN a.state LIKE 'idle in transaction%'
                                    THEN format(' since %s', to_char(a.state_change, 'YYYY-MM-DD HH24:MI:SS TZ')) ELSE '' END,
                               l.mode, l.relation::regclass, left(a.query, 200)), E'\n'),
    'no session holds a conflicting lock any more')
  FROM pg_catalog.pg_locks l
  JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
   AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
   AND l.relation = ANY (tables)
   AND l.mode = ANY (CASE upper(mode)
        WHEN 'ACCESS SHARE' THEN ARRAY['AccessExclusiveLock']
        WHEN 'ROW EXCLUSIVE' THEN ARRAY['ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock']
        WHEN 'SHARE' THEN ARRAY['RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
                                'AccessExclusiveLock']
        WHEN 'SHARE ROW EXCLUSIVE' THEN ARRAY['RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareLock',
                                              'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock']
        ELSE ARRAY['AccessShareLock', 'RowShareLock', 'RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareLock',
                   'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock'] END)
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
        BEGIN
            -- Rolled back with the attempt when it fails.
            PERFORM set_config('lock_timeout', '100ms', true);
            EXECUTE format('LOCK TABLE %s IN %s MODE', list, mode);
            PERFORM set_config('lock_timeout', golden360_internal.lock_timeout_ms()::text, true);
            RETURN;
        EXCEPTION WHEN lock_not_available THEN
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

-- One run at a time, across the run's commits. No lock survives a commit
-- but a session-level advisory lock, and any login may take any advisory
-- key; so the run itself is the lock: a run row marked running whose
-- backend is alive (the same pid, started before the run). Starting a run
-- checks for one under a lock on pipeline_runs that only the owner (this
-- SECURITY DEFINER function) can take.
CREATE FUNCTION golden360.pipeline_run_begin(source_dir text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    other record;
    run bigint;
BEGIN
    LOCK TABLE golden360.pipeline_runs IN SHARE ROW EXCLUSIVE MODE;
    SELECT r.run_id, r.started_at, r.source_dir, r.backend_pid INTO other
      FROM golden360.pipeline_runs r
      JOIN pg_catalog.pg_stat_activity a ON a.pid = r.backend_pid AND a.backend_start <= r.started_at
     WHERE r.status = 'running' AND r.backend_pid <> pg_backend_pid()
     ORDER BY r.run_id DESC LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'golden360.run_pipeline() is already running: run % (started %, from %, backend pid %)',
            other.run_id, to_char(other.started_at, 'YYYY-MM-DD HH24:MI:SS TZ'), other.source_dir, other.backend_pid
            USING ERRCODE = 'lock_not_available',
                  HINT = 'Wait for it to finish (golden360.pipeline_runs shows its steps), '
                         'or stop it with pg_cancel_backend(pid).';
    END IF;
    -- Any other run still marked running lost its session.
    UPDATE golden360.pipeline_runs
       SET status = 'abandoned', finished_at = clock_timestamp(),
           error = 'its session ended before the run finished'
     WHERE status = 'running';
    INSERT INTO golden360.pipeline_runs (source_dir) VALUES (source_dir) RETURNING run_id INTO run;
    RETURN run;
END
$$;
COMMENT ON FUNCTION golden360.pipeline_run_begin(text) IS
    'Used by run_pipeline: records a new run, or fails (55P03) while another session''s run is in progress';

-- Append a step to the caller's own running run; a failed step ends it.
CREATE FUNCTION golden360.pipeline_run_step(run bigint, step jsonb, failure text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE golden360.pipeline_runs r
       SET steps = r.steps || step,
           status = CASE WHEN failure IS NULL THEN r.status ELSE 'failed' END,
           finished_at = CASE WHEN failure IS NULL THEN NULL ELSE clock_timestamp() END,
           error = failure
     WHERE r.run_id = run AND r.status = 'running' AND r.backend_pid = pg_backend_pid();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pipeline run % is not this session''s running run', run
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Only golden360.run_pipeline() records steps, in the session that started the run.';
    END IF;
END
$$;
COMMENT ON FUNCTION golden360.pipeline_run_step(bigint, jsonb, text) IS
    'Used by run_pipeline: records a step of the calling session''s own running run (failure ends it)';

CREATE FUNCTION golden360.pipeline_run_end(run bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE golden360.pipeline_runs SET status = 'succeeded', finished_at = clock_timestamp()
     WHERE run_id = run AND status = 'running' AND backend_pid = pg_backend_pid();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pipeline run % is not this session''s running run', run
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Only golden360.run_pipeline() ends a run, in the session that started it.';
    END IF;
END
$$;
COMMENT ON FUNCTION golden360.pipeline_run_end(bigint) IS
    'Used by run_pipeline: marks the calling session''s own running run succeeded';


-- The procedures, now SECURITY DEFINER (refreshes) or built on the run records above.

-- SECURITY DEFINER: it runs as the extension's owner, the only role that
-- may write silver; EXECUTE on it is what golden360_operator is granted.
CREATE OR REPLACE PROCEDURE golden360.refresh_silver()
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off  -- its check queries are cheap; JIT compilation is not
AS $$
DECLARE
    run bigint;
    t record;
    failures text;
    first_failure text;
    seen_batch bigint;
    newest_batch bigint;
    stats_target text;
    duplicate_keys boolean := false;
    saved_lock_timeout text := current_setting('lock_timeout');
BEGIN
    -- One refresh at a time; a second one fails at once rather than queueing.
    PERFORM golden360_internal.lock_layer('golden360.silver_runs', 'golden360.refresh_silver()');
    -- Every wait from here on is bounded: the ones named below with a
    -- message naming the blocker, any other by lock_timeout itself.
    PERFORM set_config('lock_timeout', golden360_internal.lock_timeout_ms()::text, true);
    PERFORM golden360_internal.lock_tables(
        (SELECT array_agg(format('bronze.%I', x)::regclass) FROM golden360_internal.silver_tables() s(x)),
        'ACCESS SHARE', 'golden360.refresh_silver()');
    PERFORM golden360_internal.lock_tables(
        (SELECT array_agg(format('silver_next.%I', x)::regclass) FROM golden360_internal.silver_generation_tables() x),
        'ACCESS EXCLUSIVE', 'golden360.refresh_silver()');
    seen_batch := coalesce((SELECT max(last_batch_id) FROM golden360.silver_runs), 0);
    newest_batch := coalesce((SELECT max(batch_id) FROM golden360.bronze_batches), 0);
    run := nextval('golden360.run_seq');

    -- Build the new generation in the shadow; silver stays as it is for
    -- readers until the swap at the very end.
    PERFORM golden360_internal.reset_silver_shadow();
    INSERT INTO golden360.silver_runs
        (run_id, table_name, bronze_rows, silver_rows, duplicates, quarantined, millis, last_batch_id)
    SELECT run, b.*, newest_batch FROM golden360_internal.build_silver(run) b;

    -- Rule checks measure this run's input: the rows of the bronze batches
    -- that arrived since the last successful refresh (bronze is immutable,
    -- so a batch accepted once under 'warn' must not fail every later run).
    -- failed = those rows quarantined for the rule.
    PERFORM golden360_internal.record_check(run, 'silver', r.table_name, r.rule_name, r.kind,
                                   coalesce(n.rows, 0) - coalesce(q.failed, 0), coalesce(q.failed, 0))
       FROM golden360.silver_rules r
       LEFT JOIN (SELECT table_name, sum(rows)::bigint AS rows FROM golden360.bronze_files
                   WHERE batch_id > seen_batch GROUP BY 1) n ON n.table_name = r.table_name
       LEFT JOIN (SELECT table_name, reason, count(*) AS failed FROM silver_next.quarantine
                   WHERE batch_id > seen_batch GROUP BY 1, 2) q
              ON q.table_name = r.table_name AND q.reason = r.rule_name;

    -- Keys and indexes, built in bulk. A duplicate key (a dedup bug) makes a
    -- primary key fail; that is the uniqueness check, recorded below.
    BEGIN
        PERFORM golden360_internal.copy_silver_indexes();
    EXCEPTION WHEN unique_violation THEN
        duplicate_keys := true;
    END;

    -- Conservation, counted independently of the build; key uniqueness.
    FOR t IN SELECT s.table_name, s.duplicates, s.silver_rows, k.key
               FROM golden360.silver_runs s JOIN golden360_internal.silver_tables() k USING (table_name)
              WHERE s.run_id = run LOOP
        EXECUTE format(
            'SELECT golden360_internal.record_check($1, ''silver'', $2, ''conservation'', ''conservation'', accounted, abs(bronze - accounted))
               FROM (SELECT (SELECT count(*) FROM bronze.%1$I) AS bronze,
                            (SELECT count(*) FROM silver_next.%1$I) + $3
                          + (SELECT count(*) FROM silver_next.quarantine WHERE table_name = $2) AS accounted) c',
            t.table_name) USING run, t.table_name, t.duplicates;
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

    -- Statistics for the planner from the first query on: a small sample
    -- (3,000 rows) gives row counts and rough distributions at a tenth of
    -- the default cost; autovacuum refines them later.
    stats_target := current_setting('default_statistics_target');
    PERFORM set_config('default_statistics_target', '10', true);
    FOR t IN SELECT x AS table_name FROM golden360_internal.silver_generation_tables() x LOOP
        EXECUTE format('ANALYZE silver_next.%I', t.table_name);
    END LOOP;
    PERFORM set_config('default_statistics_target', stats_target, true);
    PERFORM golden360_internal.copy_silver_privileges();
    PERFORM golden360_internal.swap_silver_generations();
    PERFORM set_config('lock_timeout', saved_lock_timeout, true);
    RAISE NOTICE 'silver run %: % rows in silver, % duplicates removed, % quarantined', run,
        (SELECT sum(silver_rows) FROM golden360.silver_runs WHERE run_id = run),
        (SELECT sum(duplicates) FROM golden360.silver_runs WHERE run_id = run),
        (SELECT sum(quarantined) FROM golden360.silver_runs WHERE run_id = run);
END
$$;
COMMENT ON PROCEDURE golden360.refresh_silver() IS
    'Rebuild silver from all of bronze: type, validate (golden360.silver_rules), quarantine, deduplicate, '
    'check quality; atomic: readers see the previous silver until it commits';

-- SECURITY DEFINER, as refresh_silver: EXECUTE is what an operator holds.
CREATE OR REPLACE PROCEDURE golden360.refresh_gold()
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
DECLARE
    run bigint;
    started timestamptz := clock_timestamp();
    failures text;
    built record;
    saved_lock_timeout text := current_setting('lock_timeout');
BEGIN
    PERFORM golden360_internal.lock_layer('golden360.gold_runs', 'golden360.refresh_gold()');
    PERFORM set_config('lock_timeout', golden360_internal.lock_timeout_ms()::text, true);
    PERFORM golden360_internal.lock_tables(
        (SELECT array_agg(format('silver.%I', x)::regclass) FROM golden360_internal.silver_tables() s(x)),
        'ACCESS SHARE', 'golden360.refresh_gold()');
    PERFORM golden360_internal.lock_tables(ARRAY['gold.unified_customer_360', 'gold.identity_bridge']::regclass[],
                                           'ROW EXCLUSIVE', 'golden360.refresh_gold()');
    run := nextval('golden360.run_seq');
    -- Every record is computed from silver; only those that differ from
    -- gold are written, in place: readers keep their snapshot of the old
    -- rows until this commits, and no lock stops them or this.
    SELECT * INTO built FROM golden360_internal.build_gold();
    PERFORM golden360_internal.create_gold_indexes();

    -- Cross-checks: what gold now holds against silver, read afresh.
    PERFORM golden360_internal.record_check(run, 'gold', 'unified_customer_360', c.check_name, 'cross-check',
                                            c.passed, c.failed)
       FROM golden360_internal.gold_cross_checks() c;

    SELECT string_agg(format('%s: %s failed', check_name, failed), E'\n' ORDER BY check_name)
      INTO failures
      FROM golden360.quality_checks
     WHERE run_id = run AND layer = 'gold' AND status = 'failed';
    IF failures IS NOT NULL THEN
        RAISE EXCEPTION 'gold cross-checks failed; the previous gold is kept'
            USING ERRCODE = 'check_violation', DETAIL = failures,
                  HINT = 'This points at a bug or at silver changing mid-refresh; please report it with the DETAIL.';
    END IF;

    INSERT INTO golden360.gold_runs (run_id, people, bridge_rows, written, removed, unchanged, bridge_written,
                                     bridge_removed, silver_run_id, millis)
    VALUES (run, built.people, built.customer_ids, built.written, built.removed, built.unchanged, built.bridge_written,
            built.bridge_removed, coalesce((SELECT max(run_id) FROM golden360.silver_runs), 0),
            extract(epoch FROM clock_timestamp() - started) * 1000);
    PERFORM set_config('lock_timeout', saved_lock_timeout, true);
    RAISE NOTICE 'gold run %: % people (% written, % removed, % unchanged), % customer_ids', run,
        built.people, built.written, built.removed, built.unchanged, built.customer_ids;
END
$$;
COMMENT ON PROCEDURE golden360.refresh_gold() IS
    'Bring gold up to date with silver in one transaction: every golden record and bridge row is computed, only '
    'those that differ are written; cross-checked; readers see the old gold until it commits';

CREATE OR REPLACE PROCEDURE golden360.run_pipeline(source_dir text)
LANGUAGE plpgsql
AS $$
DECLARE
    run bigint;
    step text;
    step_started timestamptz;
    step_rows bigint;
    step_facts jsonb;
    step_ms numeric;
    failed boolean := false;
    failure_state text;
    failure_message text;
    failure_detail text;
    failure_hint text;
    saved_application_name text;
BEGIN
    PERFORM golden360.assert_outside_transaction_block('golden360.run_pipeline(source_dir)');
    IF source_dir IS NULL THEN
        RAISE EXCEPTION 'source_dir is NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'Pass the directory that holds the nine Olist CSV files, as the server sees it.';
    END IF;
    -- Called from a function, a CALL cannot end transactions. Find that out
    -- here, before a run is recorded as running.
    COMMIT;
    run := golden360.pipeline_run_begin(source_dir);
    COMMIT;
    -- The server log follows the run: its lines carry the run id, and so
    -- does every line this session logs meanwhile (application_name, a
    -- field of PostgreSQL's jsonlog), until the run ends.
    saved_application_name := current_setting('application_name');
    PERFORM set_config('application_name', format('golden360 run %s', run), false);
    RAISE LOG 'golden360 pipeline run %: started, source_dir %', run, source_dir;

    FOREACH step IN ARRAY ARRAY['bronze', 'silver', 'gold'] LOOP
        step_started := clock_timestamp();
        step_rows := NULL;
        step_facts := '{}';
        BEGIN
            CASE step
            WHEN 'bronze' THEN
                SELECT coalesce(sum(i.rows) FILTER (WHERE i.status = 'loaded'), 0),
                       jsonb_build_object('batch_id', max(i.batch_id),
                                          'files_loaded', count(*) FILTER (WHERE i.status = 'loaded'),
                                          'files_skipped', count(*) FILTER (WHERE i.status <> 'loaded'),
                                          'rejected', coalesce(sum(i.rejected), 0))
                  INTO step_rows, step_facts
                  FROM golden360.ingest_bronze(source_dir) i;
            WHEN 'silver' THEN
                CALL golden360.refresh_silver();
                SELECT sum(s.silver_rows), jsonb_build_object('silver_run_id', max(s.run_id),
                                                              'quarantined', sum(s.quarantined),
                                                              'duplicates', sum(s.duplicates))
                  INTO step_rows, step_facts
                  FROM golden360.silver_runs s
                 WHERE s.run_id = (SELECT max(run_id) FROM golden360.silver_runs);
            WHEN 'gold' THEN
                CALL golden360.refresh_gold();
                SELECT g.people, jsonb_build_object('gold_run_id', g.run_id, 'written', g.written,
                                                    'removed', g.removed, 'unchanged', g.unchanged)
                  INTO step_rows, step_facts
                  FROM golden360.gold_runs g ORDER BY g.run_id DESC LIMIT 1;
            END CASE;
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            -- The step's work is rolled back; the steps before it stay.
            GET STACKED DIAGNOSTICS failure_state = RETURNED_SQLSTATE, failure_message = MESSAGE_TEXT,
                                    failure_detail = PG_EXCEPTION_DETAIL, failure_hint = PG_EXCEPTION_HINT;
            failed := true;
        END;
        step_ms := round((extract(epoch FROM clock_timestamp() - step_started) * 1000)::numeric, 1);
        PERFORM golden360.pipeline_run_step(run,
            jsonb_build_object('step', step, 'status', CASE WHEN failed THEN 'failed' ELSE 'succeeded' END,
                               'rows', step_rows, 'ms', step_ms) || step_facts,
            CASE WHEN failed THEN failure_message END);
        COMMIT;
        RAISE LOG 'golden360 pipeline run %: step % %, % rows, % ms', run, step,
            CASE WHEN failed THEN 'failed' ELSE 'succeeded' END, step_rows, step_ms;
        IF failed THEN
            RAISE LOG 'golden360 pipeline run %: failed at step %: %', run, step, failure_message;
            PERFORM set_config('application_name', saved_application_name, false);
            RAISE EXCEPTION 'golden360 pipeline run % failed at step %: %', run, step, failure_message
                USING ERRCODE = failure_state,
                      DETAIL = coalesce(nullif(failure_detail, ''), format('source_dir: %s', source_dir)),
                      HINT = coalesce(nullif(failure_hint, ''), 'golden360.pipeline_runs has the run''s steps.');
        END IF;
        RAISE NOTICE 'pipeline run %: step % done, % rows, % ms', run, step, step_rows, step_ms;
    END LOOP;

    PERFORM golden360.pipeline_run_end(run);
    COMMIT;
    RAISE LOG 'golden360 pipeline run %: succeeded', run;
    PERFORM set_config('application_name', saved_application_name, false);
    RAISE NOTICE 'pipeline run % succeeded in % ms', run,
        (SELECT round((extract(epoch FROM finished_at - started_at) * 1000)::numeric)
           FROM golden360.pipeline_runs WHERE run_id = run);
END
$$;
COMMENT ON PROCEDURE golden360.run_pipeline(text) IS
    'Ingest source_dir into bronze, refresh silver, refresh gold; recorded in golden360.pipeline_runs (also when '
    'it fails). Each step commits when done. One run at a time; CALL it on its own, not inside BEGIN ... COMMIT. '
    'Callable by superusers and golden360_operator.';

CREATE OR REPLACE FUNCTION api.health() RETURNS json
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT json_build_object(
    'database', 'ok',
    'status', CASE WHEN r.run_id IS NULL THEN 'no successful run yet' ELSE 'ok' END,
    'last_successful_run', r.run_id,
    'last_successful_run_finished_at', r.finished_at,
    'last_successful_run_age_seconds', round(extract(epoch FROM now() - r.finished_at)),
    'running', EXISTS (SELECT FROM golden360.pipeline_runs WHERE status = 'running'),
    'gold_rows', g.people,
    'gold_refreshed_at', g.finished_at)
  FROM (SELECT NULL) AS always_one_row
  LEFT JOIN LATERAL (
        SELECT run_id, finished_at FROM golden360.pipeline_runs
         WHERE status = 'succeeded' ORDER BY finished_at DESC LIMIT 1) r ON true
  -- The last refresh's count, not count(*) over gold: anonymous callers
  -- reach this, so its cost must not grow with the data.
  LEFT JOIN LATERAL (
        SELECT people, finished_at FROM golden360.gold_runs ORDER BY run_id DESC LIMIT 1) g ON true
$$;
COMMENT ON FUNCTION api.health() IS
    'Is the service up and the data fresh: the database answers, the last successful pipeline run and its age '
    'in seconds, whether a run is in progress, the number of golden records (as of the last gold refresh). '
    'Needs no token.';


CREATE INDEX pipeline_runs_running ON golden360.pipeline_runs (run_id) WHERE status = 'running';


-- Loaders no longer write bronze or the audit tables themselves.
REVOKE INSERT ON ALL TABLES IN SCHEMA bronze FROM golden360_loader;
REVOKE INSERT ON golden360.bronze_batches, golden360.bronze_files FROM golden360_loader;
REVOKE USAGE ON SEQUENCE golden360.bronze_batch_seq FROM golden360_loader;
REVOKE SELECT ON ALL TABLES IN SCHEMA bronze FROM golden360_loader;
REVOKE SELECT ON golden360.bronze_batches, golden360.bronze_files FROM golden360_loader;

-- The public surface, as sql/grants.sql grants it on a fresh install.

REVOKE ALL ON SCHEMA golden360_internal FROM PUBLIC;
REVOKE EXECUTE ON ALL ROUTINES IN SCHEMA golden360, golden360_internal, api FROM PUBLIC;

-- golden360_loader: ingest files into bronze. ingest_bronze checks the
-- caller's right to read server files (pg_read_server_files, or superuser)
-- and then writes bronze as the extension's owner: no role but the owner
-- may write bronze or its audit tables by hand.
GRANT pg_read_server_files TO golden360_loader;
GRANT USAGE ON SCHEMA golden360, bronze TO golden360_loader;
GRANT SELECT ON ALL TABLES IN SCHEMA bronze TO golden360_loader;
GRANT SELECT ON golden360.bronze_batches, golden360.bronze_files TO golden360_loader;
GRANT EXECUTE ON FUNCTION golden360.ingest_bronze(text, boolean), golden360.bronze_manifest(bigint),
                          golden360.source_files(), golden360.silver_rule_list()
   TO golden360_loader;
GRANT SELECT ON golden360.silver_rules TO golden360_loader;

-- golden360_operator (a loader too): run the pipeline, its steps and its
-- schedule. refresh_silver, refresh_gold and the run bookkeeping are
-- SECURITY DEFINER; run_pipeline commits between steps, which a definer
-- may not, so it runs as the caller and calls those.
GRANT USAGE ON SCHEMA golden360 TO golden360_operator;
GRANT EXECUTE ON PROCEDURE golden360.run_pipeline(text), golden360.refresh_silver(), golden360.refresh_gold()
   TO golden360_operator;
GRANT EXECUTE ON FUNCTION golden360.pipeline_run_begin(text), golden360.pipeline_run_step(bigint, jsonb, text),
                          golden360.pipeline_run_end(bigint), golden360.assert_outside_transaction_block(text),
                          golden360.schedule_pipeline(text, text), golden360.unschedule_pipeline(),
                          golden360.assert_pg_cron(), golden360.pipeline_job_name(),
                          golden360.assert_absolute_source_dir(text), golden360.golden_id(text, text),
                          golden360.ltv_segment(numeric)
   TO golden360_operator;
GRANT SELECT ON golden360.pipeline_runs, golden360.silver_runs, golden360.gold_runs, golden360.quality_checks,
                golden360.quality_thresholds, golden360.rfm_segments
   TO golden360_operator;

-- golden360_monitor, the exporter's login (docker/exporter-queries.yaml):
-- statistics and the pipeline's own records, no customer data, no routine.
GRANT pg_monitor TO golden360_monitor;
GRANT USAGE ON SCHEMA golden360 TO golden360_monitor;
GRANT SELECT ON golden360.pipeline_runs, golden360.silver_runs, golden360.gold_runs, golden360.quality_checks,
                golden360.bronze_batches, golden360.bronze_files
   TO golden360_monitor;

-- The API's roles (sql/api.sql): anonymous requests may ask for health
-- only; a reader token reads the customer data.
GRANT EXECUTE ON FUNCTION api.health() TO golden360_anon, golden360_reader;
GRANT EXECUTE ON FUNCTION api.customer_by_source_id(text) TO golden360_reader;
