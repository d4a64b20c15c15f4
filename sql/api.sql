-- The HTTP API: what PostgREST serves (db-schemas = api), and the roles it
-- acts as. Only this schema is reachable through PostgREST; bronze, silver,
-- gold and golden360 are not granted to its roles at all.
--
--   golden360_authenticator  PostgREST logs in as it; no data rights of its own
--   golden360_anon           requests without a JWT: api.health() only
--   golden360_reader         requests with a JWT whose role claim names it: the customer data

CREATE SCHEMA api;
COMMENT ON SCHEMA api IS
    'Golden 360: one golden record per customer. Send a JWT (HS256) whose role claim is golden360_reader; '
    'without one only /rpc/health answers.';

-- Granted once per cluster (a repeated GRANT would print a NOTICE).
DO $$
BEGIN
    IF NOT pg_has_role('golden360_authenticator', 'golden360_anon', 'MEMBER')
       OR NOT pg_has_role('golden360_authenticator', 'golden360_reader', 'MEMBER') THEN
        GRANT golden360_anon, golden360_reader TO golden360_authenticator;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA api TO golden360_anon, golden360_reader;

-- A plain view (no SET, no function calls on the row) so PostgREST's
-- filters reach gold's indexes; it reads gold with its owner's rights.
CREATE VIEW api.customer_360 AS
SELECT g.*, current_date - g.last_order_date AS days_since_last_order
  FROM gold.unified_customer_360 g;
GRANT SELECT ON api.customer_360 TO golden360_reader;
COMMENT ON VIEW api.customer_360 IS
    'The unified customer 360: one golden record per person. One customer: ?golden_id=eq.<id> with '
    'Accept: application/vnd.pgrst.object+json. A segment: ?ltv_segment=eq.VIP&order=total_spend.desc&limit=50.';
COMMENT ON COLUMN api.customer_360.days_since_last_order IS
    'current_date - last_order_date, computed when read; null without counted orders';
-- The gold columns' descriptions, copied so they are written once.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT a.attname, col_description(a.attrelid, a.attnum) AS description
               FROM pg_attribute a
              WHERE a.attrelid = 'gold.unified_customer_360'::regclass AND a.attnum > 0 AND NOT a.attisdropped
    LOOP
        EXECUTE format('COMMENT ON COLUMN api.customer_360.%I IS %L', c.attname, c.description);
    END LOOP;
END
$$;

-- SECURITY DEFINER: the reader may not read gold.identity_bridge itself.
CREATE FUNCTION api.customer_by_source_id(id text) RETURNS SETOF api.customer_360
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT c.*
  FROM api.customer_360 c
 WHERE c.golden_id = coalesce(
        (SELECT b.golden_id FROM gold.identity_bridge b WHERE b.customer_id = id),
        (SELECT g.golden_id FROM gold.unified_customer_360 g WHERE g.customer_unique_id = id))
$$;
COMMENT ON FUNCTION api.customer_by_source_id(text) IS
    'The golden record of a source id: any of the person''s customer_ids, or their customer_unique_id. '
    'An empty list when the id is unknown.';

CREATE FUNCTION api.health() RETURNS json
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
CREATE FUNCTION golden360_internal.notify_api_change() RETURNS event_trigger
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
CREATE EVENT TRIGGER golden360_api_ddl ON ddl_command_end EXECUTE FUNCTION golden360_internal.notify_api_change();
CREATE EVENT TRIGGER golden360_api_drop ON sql_drop EXECUTE FUNCTION golden360_internal.notify_api_change();
SELECT golden360_internal.notify_postgrest();
