-- CALL golden360.run_pipeline(source_dir): one recorded run. Its NOTICEs
-- carry milliseconds, so the call runs in a psql of its own whose output
-- has the times replaced by "N".
\set SHOW_CONTEXT never
SELECT current_database() AS db \gset
\setenv REGRESS_DB :db
ALTER DATABASE :"db" SET golden360.quality_gate = warn;
\! psql -X -q -v SHOW_CONTEXT=never -d "$REGRESS_DB" -c "CALL golden360.run_pipeline('/var/tmp/golden360-regress/olist')" 2>&1 | sed -E 's/[0-9]+(\.[0-9]+)? ms/N ms/'
SELECT run_id, status, source_dir, error, jsonb_array_length(steps) AS steps FROM golden360.pipeline_runs;
SELECT s->>'step' AS step, s->>'status' AS status, s->>'rows' AS rows, s->>'files_skipped' AS files_skipped,
       s->>'quarantined' AS quarantined, s->>'written' AS written
  FROM golden360.pipeline_runs, jsonb_array_elements(steps) s ORDER BY run_id, s->>'step';

-- A run that fails at bronze is recorded, then raised.
\! psql -X -q -v SHOW_CONTEXT=never -d "$REGRESS_DB" -c "CALL golden360.run_pipeline('/var/tmp/golden360-regress/none-such')" 2>&1 | sed -E 's/[0-9]+(\.[0-9]+)? ms/N ms/'
SELECT run_id, status, error FROM golden360.pipeline_runs ORDER BY run_id;

-- Not inside a transaction block, not with NULL.
BEGIN;
CALL golden360.run_pipeline('/var/tmp/golden360-regress/olist');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
ROLLBACK;
CALL golden360.run_pipeline(NULL);
\echo SQLSTATE :LAST_ERROR_SQLSTATE

-- pg_cron is not installed in this database: both say how to set it up.
SELECT golden360.pipeline_job_name();
SELECT golden360.schedule_pipeline('0 3 * * *', '/var/tmp/golden360-regress/olist');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT golden360.unschedule_pipeline();
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT golden360.assert_absolute_source_dir('relative');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
ALTER DATABASE :"db" RESET golden360.quality_gate;
