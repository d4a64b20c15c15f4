-- The pipeline: bronze -> silver -> gold in one recorded call, and its
-- pg_cron schedule. Each step commits when it is done, so a DBA watching
-- golden360.pipeline_runs sees progress, and a failed run stays recorded
-- (status, step, error) although its CALL ends in an error.

CREATE TABLE golden360.pipeline_runs (
    run_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    status      text NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'succeeded', 'failed', 'abandoned')),
    source_dir  text NOT NULL,
    steps       jsonb NOT NULL DEFAULT '[]',
    error       text,
    backend_pid integer NOT NULL DEFAULT pg_backend_pid(),
    CHECK ((status = 'running') = (finished_at IS NULL))
);
CREATE INDEX pipeline_runs_succeeded ON golden360.pipeline_runs (finished_at) WHERE status = 'succeeded';
CREATE INDEX pipeline_runs_running ON golden360.pipeline_runs (run_id) WHERE status = 'running';
COMMENT ON TABLE golden360.pipeline_runs IS
    'Every golden360.run_pipeline() call. steps: one object per step done or failed, in order: step, status, '
    'rows, ms, and the bronze batch / silver run / gold run it made. error: the failed step''s message. '
    'abandoned: its session ended mid-run (crash, terminated backend).';

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

CREATE PROCEDURE golden360.run_pipeline(source_dir text)
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

-- pg_cron is optional: reached through dynamic SQL, so the extension
-- installs without it and these functions say what is missing.
CREATE FUNCTION golden360.assert_pg_cron() RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
        RAISE EXCEPTION 'pg_cron is not installed in database %', current_database()
            USING ERRCODE = 'undefined_object',
                  HINT = format('Add pg_cron to shared_preload_libraries, set cron.database_name = %L, '
                                'restart PostgreSQL, then CREATE EXTENSION pg_cron.', current_database());
    END IF;
END
$$;

CREATE FUNCTION golden360.pipeline_job_name() RETURNS text
LANGUAGE sql IMMUTABLE AS $$SELECT 'golden360_pipeline'$$;

CREATE FUNCTION golden360.schedule_pipeline(cron text, source_dir text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    job bigint;
BEGIN
    PERFORM golden360.assert_pg_cron();
    PERFORM golden360.assert_absolute_source_dir(source_dir);
    -- Same job name: a second call replaces the schedule, it never adds one.
    EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO job
      USING golden360.pipeline_job_name(), cron, format('CALL golden360.run_pipeline(%L)', source_dir);
    RETURN job;
END
$$;
COMMENT ON FUNCTION golden360.schedule_pipeline(text, text) IS
    'Run golden360.run_pipeline(source_dir) on a pg_cron schedule (e.g. ''0 3 * * *''); replaces an earlier '
    'schedule; returns the cron job id. Runs show in cron.job_run_details and golden360.pipeline_runs.';

CREATE FUNCTION golden360.unschedule_pipeline() RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    scheduled boolean;
BEGIN
    PERFORM golden360.assert_pg_cron();
    EXECUTE 'SELECT EXISTS (SELECT FROM cron.job WHERE jobname = $1 AND username = current_user)'
       INTO scheduled USING golden360.pipeline_job_name();
    IF scheduled THEN
        EXECUTE 'SELECT cron.unschedule($1)' USING golden360.pipeline_job_name();
    END IF;
    RETURN scheduled;
END
$$;
COMMENT ON FUNCTION golden360.unschedule_pipeline() IS
    'Remove the pipeline''s pg_cron schedule; false when there was none';
