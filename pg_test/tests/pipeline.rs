//! `CALL golden360.run_pipeline(source_dir)`: recorded runs, progress
//! NOTICEs, failures that stay recorded, and one run at a time.

use golden360_it::{connect, connect_collecting_notices, count, eventually, fresh_database, generate, ScratchDir};
use postgres::Client;
use std::time::{Duration, Instant};

fn call_pipeline(c: &mut Client, dir: &str) -> Result<u64, postgres::Error> {
    c.execute("CALL golden360.run_pipeline($1)", &[&dir])
}

fn last_run(c: &mut Client) -> (i64, String, serde_json::Value, Option<String>) {
    let row = c
        .query_one("SELECT run_id, status, steps::text, error FROM golden360.pipeline_runs ORDER BY run_id DESC LIMIT 1", &[])
        .unwrap();
    (row.get(0), row.get(1), serde_json::from_str(row.get(2)).unwrap(), row.get(3))
}

#[test]
fn a_run_records_every_step_and_reports_progress() {
    let db = fresh_database("pipeline_ok");
    let dir = ScratchDir::new("pipeline_ok");
    generate(&dir.0, 0.01, 31);
    let (mut c, notices) = connect_collecting_notices(&db);
    call_pipeline(&mut c, dir.path()).unwrap();

    let (run, status, steps, error) = last_run(&mut c);
    assert_eq!(status, "succeeded");
    assert_eq!(error, None);
    let steps = steps.as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(names, ["bronze", "silver", "gold"]);
    assert!(steps.iter().all(|s| s["status"] == "succeeded" && s["ms"].as_f64().unwrap() >= 0.0));
    assert_eq!(steps[0]["rows"].as_i64(), Some(count(&mut c, "SELECT sum(rows)::bigint FROM golden360.bronze_files")));
    assert_eq!(steps[0]["files_loaded"].as_i64(), Some(9));
    assert_eq!(steps[1]["rows"].as_i64(), Some(count(&mut c, "SELECT sum(silver_rows)::bigint FROM golden360.silver_runs")));
    assert_eq!(steps[2]["rows"].as_i64(), Some(count(&mut c, "SELECT count(*) FROM gold.unified_customer_360")));
    assert!(count(&mut c, "SELECT count(*) FROM golden360.pipeline_runs WHERE finished_at > started_at") == 1);

    let notices = notices.lock().unwrap().clone(); // not held: the callback locks it on the next NOTICE
    for (step, rows) in names.iter().zip(steps) {
        let expected = format!("pipeline run {run}: step {step} done, {} rows, ", rows["rows"]);
        assert!(notices.iter().any(|n| n.starts_with(&expected) && n.ends_with(" ms")), "{expected}… in {notices:?}");
    }

    // Again on the same files: bronze skips them all, the run still succeeds.
    call_pipeline(&mut c, dir.path()).unwrap();
    let (_, status, steps, _) = last_run(&mut c);
    assert_eq!(status, "succeeded");
    assert_eq!((steps[0]["rows"].as_i64(), steps[0]["files_skipped"].as_i64()), (Some(0), Some(9)));
}

/// A step that fails: its CALL errors naming the run and step, the run is
/// recorded as failed with the error, the steps before it stay committed,
/// the layer that failed keeps what it had, and the next run may start.
#[test]
fn a_failed_step_is_recorded_and_leaves_the_earlier_steps_in_place() {
    let db = fresh_database("pipeline_fail");
    let mut c = connect(&db);

    // Bronze fails: the directory has none of the files.
    let empty = ScratchDir::new("pipeline_fail_empty");
    let error = call_pipeline(&mut c, empty.path()).unwrap_err();
    let db_error = error.as_db_error().unwrap();
    assert!(db_error.message().contains("failed at step bronze"), "{db_error:?}");
    assert!(db_error.message().contains("missing 9 of the nine Olist files"), "{db_error:?}");
    let (run, status, steps, recorded) = last_run(&mut c);
    assert!(db_error.message().starts_with(&format!("golden360 pipeline run {run} ")));
    assert_eq!(status, "failed");
    assert_eq!(steps.as_array().unwrap().len(), 1);
    assert_eq!(steps[0]["status"], "failed");
    assert!(recorded.unwrap().contains("missing 9 of the nine Olist files"));

    // Silver fails its quality gate: bronze's batch stays, silver stays empty.
    let dir = ScratchDir::new("pipeline_fail");
    generate(&dir.0, 0.01, 32);
    c.batch_execute("UPDATE golden360.quality_thresholds SET min_pass_rate = 1.0").unwrap();
    let error = call_pipeline(&mut c, dir.path()).unwrap_err();
    let message = error.as_db_error().unwrap().message().to_string();
    assert!(message.contains("failed at step silver") && message.contains("quality gate"), "{message}");
    let (_, status, steps, recorded) = last_run(&mut c);
    assert_eq!(status, "failed");
    assert_eq!((steps[0]["status"].as_str(), steps[1]["status"].as_str()), (Some("succeeded"), Some("failed")));
    assert!(recorded.unwrap().contains("quality gate"));
    assert_eq!(count(&mut c, "SELECT count(*) FROM golden360.bronze_files"), 9, "bronze committed");
    assert_eq!(count(&mut c, "SELECT count(*) FROM golden360.silver_runs"), 0);
    assert_eq!(count(&mut c, "SELECT count(*) FROM silver.customers"), 0);
    assert_eq!(count(&mut c, "SELECT count(*) FROM gold.unified_customer_360"), 0);

    // The lock went with the failure: the next run starts and succeeds.
    c.batch_execute("SET golden360.quality_gate = warn").unwrap();
    call_pipeline(&mut c, dir.path()).unwrap();
    assert_eq!(last_run(&mut c).1, "succeeded");
}

#[test]
fn a_run_inside_a_transaction_block_is_refused_and_not_recorded() {
    let db = fresh_database("pipeline_txn");
    let mut c = connect(&db);
    c.batch_execute("BEGIN").unwrap();
    let error = c.execute("CALL golden360.run_pipeline('/tmp')", &[]).unwrap_err();
    let db_error = error.as_db_error().unwrap();
    assert_eq!(db_error.code(), &postgres::error::SqlState::ACTIVE_SQL_TRANSACTION);
    assert!(db_error.message().contains("cannot run inside a transaction block"));
    assert!(db_error.hint().unwrap().contains("not between BEGIN and COMMIT"));
    c.batch_execute("ROLLBACK").unwrap();
    assert_eq!(count(&mut c, "SELECT count(*) FROM golden360.pipeline_runs"), 0);

    let error = c.execute("CALL golden360.run_pipeline(NULL)", &[]).unwrap_err();
    assert_eq!(error.as_db_error().unwrap().code(), &postgres::error::SqlState::NULL_VALUE_NOT_ALLOWED);

    // From a function (where a CALL cannot commit): an error, and no lock
    // left behind for the rest of the session.
    c.batch_execute("CREATE FUNCTION run_from_a_function() RETURNS void LANGUAGE plpgsql AS $$BEGIN CALL golden360.run_pipeline('/tmp'); END$$")
        .unwrap();
    let error = c.execute("SELECT run_from_a_function()", &[]).unwrap_err();
    assert_eq!(error.as_db_error().unwrap().code(), &postgres::error::SqlState::INVALID_TRANSACTION_TERMINATION);
    assert_eq!(count(&mut c, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"), 0);
    assert_eq!(count(&mut c, "SELECT count(*) FROM golden360.pipeline_runs"), 0);
}

/// While one run is in progress a second fails at once, naming it; a run
/// whose session is killed is marked abandoned by the next; a cancelled
/// run is recorded as failed.
#[test]
fn one_run_at_a_time_and_interrupted_runs_are_recorded() {
    let db = fresh_database("pipeline_concurrency");
    let dir = ScratchDir::new("pipeline_concurrency");
    generate(&dir.0, 0.05, 33);
    // Hold runs at a known point: the silver step waits for this lock on
    // the shadow it rebuilds (for golden360.lock_timeout, here a minute).
    connect("postgres").batch_execute(&format!("ALTER DATABASE {db} SET golden360.lock_timeout = '60s'")).unwrap();
    let mut blocker = connect(&db);
    blocker.batch_execute("BEGIN; LOCK TABLE silver_next.customers IN ACCESS SHARE MODE").unwrap();

    let start_run = |db: &str, dir: &str| {
        let (db, dir) = (db.to_string(), dir.to_string());
        std::thread::spawn(move || {
            let mut c = connect(&db);
            let pid: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
            (pid, call_pipeline(&mut c, &dir).map_err(|e| e.as_db_error().map(|d| d.message().to_string())))
        })
    };
    let mut c = connect(&db);
    // The newest run marked running, once there is one after `newer_than`.
    let wait_for_running = |c: &mut Client, newer_than: i64| {
        eventually("a run marked running", Duration::from_secs(30), || {
            c.query_opt(
                "SELECT run_id, backend_pid FROM golden360.pipeline_runs WHERE status = 'running' AND run_id > $1",
                &[&newer_than],
            )
            .unwrap()
            .map(|row| (row.get::<_, i64>(0), row.get::<_, i32>(1)))
        })
    };

    // 1. A second run while the first is in progress.
    let first = start_run(&db, dir.path());
    let (run, pid) = wait_for_running(&mut c, 0);
    let started = Instant::now();
    let error = call_pipeline(&mut c, dir.path()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "the second call waited {:?}", started.elapsed());
    let message = error.as_db_error().unwrap().message().to_string();
    assert!(message.contains(&format!("already running: run {run} ")), "{message}");
    assert!(message.contains(&format!("backend pid {pid}")), "{message}");

    // 2. The first run's session is killed mid-run (it waits on the lock).
    c.execute("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
    assert!(first.join().unwrap().1.is_err());
    assert_eq!(last_run(&mut c).1, "running", "nobody could record its end");

    // 3. The next run marks it abandoned; it is cancelled while waiting.
    let third = start_run(&db, dir.path());
    let (third_run, third_pid) = wait_for_running(&mut c, run);
    let status: String = c.query_one("SELECT status FROM golden360.pipeline_runs WHERE run_id = $1", &[&run]).unwrap().get(0);
    assert_eq!(status, "abandoned");
    // Cancel it once it waits at the silver step, not before: between its
    // NOWAIT attempts at the lock it sleeps.
    eventually("the third run waiting on the silver step's lock", Duration::from_secs(30), || {
        let waits = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {third_pid} AND (wait_event_type = 'Lock' OR wait_event = 'PgSleep')"
        );
        (count(&mut c, &waits) > 0).then_some(())
    });
    c.execute("SELECT pg_cancel_backend($1)", &[&third_pid]).unwrap();
    let (_, result) = third.join().unwrap();
    let message = result.unwrap_err().unwrap();
    assert!(message.contains(&format!("run {third_run} failed at step silver")), "{message}");
    let (last, status, _, error) = last_run(&mut c);
    assert_eq!((last, status.as_str()), (third_run, "failed"));
    assert!(error.unwrap().contains("canceling statement"));

    // 4. With the blocker gone, a run completes.
    blocker.batch_execute("COMMIT").unwrap();
    call_pipeline(&mut c, dir.path()).unwrap();
    assert_eq!(last_run(&mut c).1, "succeeded");
}
