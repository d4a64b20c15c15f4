//! Prometheus metrics: the real prometheus-postgres-exporter with the
//! project's queries file, logged in as golden360_monitor.

use golden360_it::{
    cluster_address, connect, count, eventually, free_port, fresh_database, generate, project_dir, KillOnDrop, ScratchDir,
};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Exporter {
    _process: KillOnDrop,
    url: String,
}

impl Exporter {
    fn start(dbname: &str) -> Exporter {
        let port = free_port();
        let (host, pgport) = cluster_address();
        let dsn = format!("host={host} port={pgport} user=golden360_monitor dbname={dbname} sslmode=disable");
        let child = Command::new(std::env::var("G360_EXPORTER").unwrap_or_else(|_| "prometheus-postgres-exporter".into()))
            .arg(format!("--extend.query-path={}", project_dir().join("docker/exporter-queries.yaml").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--disable-default-metrics")
            .env("DATA_SOURCE_NAME", dsn)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus-postgres-exporter");
        Exporter { _process: KillOnDrop(child), url: format!("http://127.0.0.1:{port}/metrics") }
    }

    /// The golden360_* samples, as (name with labels, value).
    fn scrape(&self) -> Vec<(String, f64)> {
        eventually(&format!("golden360_ metrics at {}", self.url), Duration::from_secs(20), || {
            let text = ureq::get(&self.url).call().ok()?.into_string().unwrap();
            let samples: Vec<(String, f64)> = text
                .lines()
                .filter(|l| l.starts_with("golden360_"))
                .map(|l| {
                    let (name, value) = l.rsplit_once(' ').unwrap();
                    (name.to_string(), value.parse().unwrap())
                })
                .collect();
            (!samples.is_empty()).then_some(samples)
        })
    }
}

/// The value of the sample whose name starts with `metric` and carries
/// every label given.
fn sample(samples: &[(String, f64)], metric: &str, labels: &[&str]) -> f64 {
    samples
        .iter()
        .find(|(name, _)| {
            (name == metric || name.starts_with(&format!("{metric}{{"))) && labels.iter().all(|l| name.contains(l))
        })
        .unwrap_or_else(|| panic!("{metric} {labels:?} not among {samples:?}"))
        .1
}

#[test]
fn the_exporter_reports_the_pipeline_layers_and_failures() {
    let db = fresh_database("metrics");
    let dir = ScratchDir::new("metrics");
    generate(&dir.0, 0.01, 51);
    let mut c = connect(&db);
    c.batch_execute(&format!("CALL golden360.run_pipeline('{}')", dir.path())).unwrap();

    let exporter = Exporter::start(&db);
    let samples = exporter.scrape();
    assert_eq!(sample(&samples, "golden360_pipeline_last_run_failed", &[]), 0.0);
    assert_eq!(sample(&samples, "golden360_pipeline_runs_total", &["status=\"succeeded\""]), 1.0);
    assert!(sample(&samples, "golden360_pipeline_last_success_age_seconds", &[]) < 60.0);
    let people = count(&mut c, "SELECT count(*) FROM gold.unified_customer_360") as f64;
    assert_eq!(sample(&samples, "golden360_gold_people", &[]), people);
    assert_eq!(sample(&samples, "golden360_gold_passes", &[]), 1.0);
    assert_eq!(sample(&samples, "golden360_pipeline_step_rows", &["step=\"gold\""]), people);
    let customers = count(&mut c, "SELECT count(*) FROM silver.customers") as f64;
    assert_eq!(sample(&samples, "golden360_silver_silver_rows", &["table_name=\"customers\""]), customers);
    let quarantined = count(&mut c, "SELECT count(*) FROM silver.quarantine") as f64;
    let reported: f64 = samples.iter().filter(|(n, _)| n.starts_with("golden360_silver_quarantined{")).map(|(_, v)| v).sum();
    assert_eq!(reported, quarantined);
    assert_eq!(sample(&samples, "golden360_quality_failed", &["layer=\"gold\""]), 0.0);
    assert_eq!(sample(&samples, "golden360_bronze_files", &[]), 9.0);

    // A failed run shows at the next scrape.
    assert!(c.batch_execute("CALL golden360.run_pipeline('/nonexistent')").is_err());
    let samples = exporter.scrape();
    assert_eq!(sample(&samples, "golden360_pipeline_last_run_failed", &[]), 1.0);
    assert_eq!(sample(&samples, "golden360_pipeline_runs_total", &["status=\"failed\""]), 1.0);
}
