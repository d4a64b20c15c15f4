//! Scheduling the pipeline with the real pg_cron: the test cluster preloads
//! it with cron.database_name = 'golden360', the database used here.

use golden360_it::{connect, count, eventually, fresh_database, generate, ScratchDir};
use std::time::Duration;

/// Called by the one test below rather than run beside it: its CREATE
/// EXTENSION must not coincide with the scheduling (see there).
fn without_pg_cron_scheduling_says_what_is_missing() {
    let db = fresh_database("no_cron");
    let mut c = connect(&db);
    for sql in ["SELECT golden360.schedule_pipeline('* * * * *', '/srv/olist')", "SELECT golden360.unschedule_pipeline()"] {
        let error = c.query_one(sql, &[]).unwrap_err();
        let error = error.as_db_error().unwrap();
        assert_eq!(error.code(), &postgres::error::SqlState::UNDEFINED_OBJECT, "{sql}");
        assert_eq!(error.message(), format!("pg_cron is not installed in database {db}"));
        assert!(error.hint().unwrap().contains("shared_preload_libraries"));
    }
}

/// Without pg_cron, a clear error; with it, a `* * * * *` schedule runs the
/// pipeline within the next minute: a succeeded row in
/// cron.job_run_details and a matching pipeline run.
#[test]
fn a_scheduled_pipeline_runs_through_pg_cron() {
    without_pg_cron_scheduling_says_what_is_missing();
    let db = "golden360";
    let mut c = connect(db);
    let cron_db: String = c.query_one("SHOW cron.database_name", &[]).unwrap().get(0);
    assert_eq!(cron_db, db, "the test cluster's pg_cron database");
    c.batch_execute("DROP EXTENSION IF EXISTS golden360 CASCADE; CREATE EXTENSION golden360; CREATE EXTENSION IF NOT EXISTS pg_cron")
        .unwrap();
    let dir = ScratchDir::new("cron");
    generate(&dir.0, 0.01, 41);

    let bad = c.query_one("SELECT golden360.schedule_pipeline('every minute', $1)", &[&dir.path()]).unwrap_err();
    assert!(bad.as_db_error().unwrap().message().contains("invalid schedule"), "{bad}");
    let relative = c.query_one("SELECT golden360.schedule_pipeline('* * * * *', 'olist')", &[]).unwrap_err();
    assert!(relative.as_db_error().unwrap().message().contains("not an absolute path"), "{relative}");

    // pg_cron 1.4 learns of a new job through a cache invalidation. The
    // DDL above (CREATE EXTENSION) can overflow the cluster's invalidation
    // queue while its launcher sleeps; the launcher then skips the whole
    // queue, and would skip this job's invalidation too if it were already
    // queued. Give it a moment to catch up first.
    std::thread::sleep(Duration::from_secs(3));
    let first: i64 = c.query_one("SELECT golden360.schedule_pipeline('0 3 * * *', $1)", &[&dir.path()]).unwrap().get(0);
    let job: i64 = c.query_one("SELECT golden360.schedule_pipeline('* * * * *', $1)", &[&dir.path()]).unwrap().get(0);
    assert_eq!(job, first, "scheduling again replaces the schedule");
    assert_eq!(count(&mut c, "SELECT count(*) FROM cron.job WHERE jobname = 'golden360_pipeline'"), 1);
    let (schedule, command): (String, String) = {
        let row = c.query_one("SELECT schedule, command FROM cron.job WHERE jobid = $1", &[&job]).unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(schedule, "* * * * *");
    assert_eq!(command, format!("CALL golden360.run_pipeline('{}')", dir.path()));

    let status = eventually("pg_cron running the job", Duration::from_secs(150), || {
        c.query_opt("SELECT status, coalesce(return_message, '') FROM cron.job_run_details WHERE jobid = $1 AND end_time IS NOT NULL ORDER BY runid LIMIT 1", &[&job])
            .unwrap()
            .map(|row| (row.get::<_, String>(0), row.get::<_, String>(1)))
    });
    assert_eq!(status.0, "succeeded", "{}", status.1);
    let row = c
        .query_one("SELECT status, source_dir FROM golden360.pipeline_runs ORDER BY run_id LIMIT 1", &[])
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("succeeded".to_string(), dir.path().to_string()));
    assert!(count(&mut c, "SELECT count(*) FROM gold.unified_customer_360") > 0);

    let removed: bool = c.query_one("SELECT golden360.unschedule_pipeline()", &[]).unwrap().get(0);
    assert!(removed);
    assert_eq!(count(&mut c, "SELECT count(*) FROM cron.job WHERE jobname = 'golden360_pipeline'"), 0);
    let again: bool = c.query_one("SELECT golden360.unschedule_pipeline()", &[]).unwrap().get(0);
    assert!(!again, "nothing left to unschedule");
    // Leave the database as the other test binaries expect it.
    c.batch_execute("DROP EXTENSION golden360 CASCADE").unwrap();
}
