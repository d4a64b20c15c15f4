-- Who may execute and read what: the public surface, exactly as the
-- README's table "Who may call what" lists it (pg_test/tests/security.rs
-- compares the two). Functions are executable by PUBLIC unless revoked, so
-- everything is revoked first and then granted by name; a function added
-- later is the owner's alone until it is added here and to the README.
-- Runs last in CREATE EXTENSION.

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
-- schedule. refresh_silver, refresh_gold, rebuild and the run bookkeeping are
-- SECURITY DEFINER; run_pipeline commits between steps, which a definer
-- may not, so it runs as the caller and calls those.
GRANT USAGE ON SCHEMA golden360 TO golden360_operator;
GRANT EXECUTE ON PROCEDURE golden360.run_pipeline(text), golden360.refresh_silver(), golden360.refresh_gold(),
                           golden360.rebuild()
   TO golden360_operator;
GRANT EXECUTE ON FUNCTION golden360.pipeline_run_begin(text), golden360.pipeline_run_step(bigint, jsonb, text),
                          golden360.pipeline_run_end(bigint), golden360.assert_outside_transaction_block(text),
                          golden360.schedule_pipeline(text, text), golden360.unschedule_pipeline(),
                          golden360.assert_pg_cron(), golden360.pipeline_job_name(),
                          golden360.assert_absolute_source_dir(text), golden360.golden_id(text, text),
                          golden360.ltv_segment(numeric), golden360.rust_memory()
   TO golden360_operator;
GRANT SELECT ON golden360.pipeline_runs, golden360.silver_runs, golden360.gold_runs, golden360.quality_checks,
                golden360.quality_thresholds, golden360.rfm_segments, golden360.silver_batches,
                golden360.refresh_state
   TO golden360_operator;

-- golden360_monitor, the exporter's login (docker/exporter-queries.yaml):
-- statistics and the pipeline's own records, no customer data, no routine.
GRANT pg_monitor TO golden360_monitor;
GRANT USAGE ON SCHEMA golden360 TO golden360_monitor;
GRANT SELECT ON golden360.pipeline_runs, golden360.silver_runs, golden360.gold_runs, golden360.quality_checks,
                golden360.bronze_batches, golden360.bronze_files, golden360.silver_batches, golden360.refresh_state
   TO golden360_monitor;

-- The API's roles (sql/api.sql): anonymous requests may ask for health
-- only; a reader token reads the customer data.
GRANT EXECUTE ON FUNCTION api.health() TO golden360_anon, golden360_reader;
GRANT EXECUTE ON FUNCTION api.customer_by_source_id(text) TO golden360_reader;
