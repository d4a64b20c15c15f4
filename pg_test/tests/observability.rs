//! The production front and observability, for real: Caddy in front of
//! PostgREST over HTTPS with its latency histogram, Prometheus (Debian's)
//! scraping the exporter and Caddy with the project's rules, every
//! dashboard query answering, and the alert rules' unit tests.

use golden360_it::{connect, eventually, fresh_database, generate, project_dir, ScratchDir, ScriptStack};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn database_with_a_run(name: &str) -> golden360_it::TestDatabase {
    let db = fresh_database(name);
    let dir = ScratchDir::new(name);
    generate(&dir.0, 0.02, 61);
    let mut c = connect(&db);
    c.batch_execute("SET golden360.quality_gate = warn").unwrap();
    c.execute("CALL golden360.run_pipeline($1)", &[&dir.path()]).unwrap();
    db
}

/// The sum of a Caddy histogram's _count samples with these labels.
fn requests(metrics: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("caddy_http_request_duration_seconds_count{") && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

#[test]
fn caddy_serves_the_api_over_https_compressed_and_records_latency() {
    let db = database_with_a_run("obs_caddy");
    let stack = ScriptStack::start(&db, &["api.sh", "metrics.sh"], Some("observability-test-secret-at-least-32-chars"));
    let before = requests(&stack.caddy_metrics(), &["code=\"200\""]);
    let (status, _, body) = stack.https("/rpc/health", &[]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"], "ok");
    let auth = format!("Authorization: Bearer {}", stack.token("golden360_reader"));
    let (status, headers, _) = stack.https("/customer_360?limit=200", &[&auth, "Accept-Encoding: gzip"]);
    assert_eq!(status, 200);
    assert!(headers.contains("content-encoding: gzip"), "compressed: {headers}");
    let (status, _, _) = stack.https("/customer_360?limit=1", &[]);
    assert_eq!(status, 401, "no token, no data, through Caddy too");
    // Plain HTTP is refused, and the certificate is the local CA's only.
    let plain = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"])
        .arg(format!("http://localhost:{}/rpc/health", stack.var("G360_HTTPS_PORT")))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "400", "HTTP to the HTTPS port");
    let untrusted = Command::new("curl").args(["-s", "-o", "/dev/null", "--max-time", "5"]).arg(format!("https://localhost:{}/rpc/health", stack.var("G360_HTTPS_PORT"))).status().unwrap();
    assert!(!untrusted.success(), "the system's trust store does not vouch for the local CA");

    let metrics = stack.caddy_metrics();
    let after = requests(&metrics, &["code=\"200\""]);
    assert!(after >= before + 2.0, "the histogram counted the requests: {before} → {after}");
    assert!(requests(&metrics, &["code=\"401\""]) >= 1.0);
    assert!(metrics.contains("caddy_http_request_duration_seconds_bucket{"), "a histogram, with buckets");
}

#[test]
fn prometheus_scrapes_every_target_and_every_dashboard_panel_has_data() {
    let db = database_with_a_run("obs_prometheus");
    let stack = ScriptStack::start(&db, &["api.sh", "metrics.sh"], Some("observability-test-secret-at-least-32-chars"));
    // All targets up.
    let targets = eventually("every Prometheus target up", Duration::from_secs(30), || {
        let reply = stack.prometheus("/api/v1/targets");
        let active = reply["data"]["activeTargets"].as_array().cloned().unwrap_or_default();
        (active.len() >= 2 && active.iter().all(|t| t["health"] == "up")).then_some(active)
    });
    let jobs: Vec<&str> = targets.iter().map(|t| t["labels"]["job"].as_str().unwrap()).collect();
    assert!(jobs.contains(&"golden360") && jobs.contains(&"caddy"), "{jobs:?}");
    // The rules are loaded: every alert of docker/alerts.yml, and the recording rule.
    let rules = stack.prometheus("/api/v1/rules");
    let names: Vec<String> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()))
        .collect();
    for rule in ["Golden360PipelineFailed", "Golden360DataStale", "Golden360QualityChecksFailing", "Golden360ApiP95OverTarget",
                 "Golden360ExporterDown", "golden360:api_request_duration_seconds:p95_5m"] {
        assert!(names.iter().any(|n| n == rule), "{rule} not among {names:?}");
    }

    // Some API traffic through Caddy, successes and refusals, over a few scrapes.
    let auth = format!("Authorization: Bearer {}", stack.token("golden360_reader"));
    for round in 0..6 {
        stack.https("/rpc/health", &[]);
        stack.https("/customer_360?limit=5", &[&auth]);
        stack.https("/customer_360?ltv_segment=eq.Medium&limit=50", &[&auth]);
        stack.https("/customer_360?limit=1", &[]);
        if round < 5 {
            std::thread::sleep(Duration::from_millis(700));
        }
    }

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project_dir().join("docker/grafana/dashboards/golden360.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<(String, String)> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap().to_string();
            p["targets"].as_array().unwrap().iter().map(move |t| (title.clone(), t["expr"].as_str().unwrap().to_string()))
        })
        .collect();
    assert!(exprs.len() >= 14, "{exprs:?}");
    for (title, expr) in &exprs {
        let result = eventually(&format!("data for panel {title:?}: {expr}"), Duration::from_secs(30), || {
            let result = stack.query(expr);
            (!result.as_array().unwrap().is_empty()).then_some(result)
        });
        assert!(!result.as_array().unwrap().is_empty());
    }
    // The recording rule measured the traffic: a latency, below the design's 100 ms here.
    let p95 = eventually("the API P95 recorded", Duration::from_secs(30), || {
        let result = stack.query("golden360:api_request_duration_seconds:p95_5m");
        result[0]["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite())
    });
    assert!(p95 > 0.0 && p95 < 1.0, "{p95}");
}

#[test]
fn the_alert_rules_pass_their_unit_tests() {
    let docker = project_dir().join("docker");
    let check = Command::new("promtool").arg("check").arg("rules").arg(docker.join("alerts.yml")).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let test = Command::new("promtool").args(["test", "rules", "alerts.test.yml"]).current_dir(&docker).output().unwrap();
    let output = format!("{}{}", String::from_utf8_lossy(&test.stdout), String::from_utf8_lossy(&test.stderr));
    assert!(test.status.success() && output.contains("SUCCESS"), "{output}");
    // The tests cover every alert.
    let tests = std::fs::read_to_string(docker.join("alerts.test.yml")).unwrap();
    let alerts = std::fs::read_to_string(docker.join("alerts.yml")).unwrap();
    for line in alerts.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(tests.contains(&format!("alertname: {line}")), "{line} has no promtool test");
    }
    assert!(Path::new(&docker.join("prometheus.yml")).exists());
}

/// Headless Chromium (Debian's), as the test harness runs it: no sandbox
/// as root, no background networking on this closed machine, a fresh
/// profile. The local CA is not in its trust store, so certificate errors
/// are ignored for this one client (TLS itself is tested with curl).
fn chromium(profile: &Path, args: &[&str], url: &str) -> std::process::Output {
    Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .args(["--ignore-certificate-errors", "--virtual-time-budget=15000", "--window-size=1280,1400"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium (scripts/setup.sh installs it)")
}

#[test]
fn swagger_ui_lists_the_endpoints_in_a_real_browser() {
    let db = database_with_a_run("obs_swagger");
    let stack = ScriptStack::start(&db, &["api.sh", "metrics.sh"], Some("observability-test-secret-at-least-32-chars"));
    let url = format!("https://localhost:{}/", stack.var("G360_DOCS_PORT"));
    let profile = ScratchDir::new("obs_swagger_profile");
    let dom = chromium(&profile.0, &["--dump-dom"], &url);
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(html.contains("swagger-ui"), "the page is Swagger UI: {}", &html[..html.len().min(500)]);
    for endpoint in ["/customer_360", "/rpc/customer_by_source_id", "/rpc/health"] {
        assert!(html.contains(endpoint), "Swagger UI lists {endpoint}");
    }
    assert!(html.contains("Golden 360"), "with the API's description");
    let shot = profile.0.join("swagger-ui.png");
    let out = chromium(&profile.0, &[&format!("--screenshot={}", shot.display())], &url);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a real screenshot: {} bytes", png.len());
    if let Ok(keep) = std::env::var("G360_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}

/// The cluster logs in PostgreSQL's jsonlog: a pipeline run's start, steps
/// and end are lines that carry its run id, in the message and in the
/// session's application_name, and every line parses as JSON.
#[test]
fn a_pipeline_run_can_be_followed_in_the_json_log() {
    let log = std::env::var("G360_PGLOG").expect("G360_PGLOG: the cluster's jsonlog file");
    assert!(log.ends_with(".json"), "{log}");
    let from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) as usize;
    let db = database_with_a_run("obs_jsonlog");
    let run: i64 = connect(&db).query_one("SELECT max(run_id) FROM golden360.pipeline_runs", &[]).unwrap().get(0);
    let application_name = format!("golden360 run {run}");
    let lines: Vec<serde_json::Value> = eventually("the run's end in the log", Duration::from_secs(10), || {
        let text = std::fs::read(&log).unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&text[from.min(text.len())..])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .filter(|l: &serde_json::Value| l["dbname"] == &*db && l["application_name"] == application_name.as_str())
            .collect();
        lines.iter().any(|l| l["message"].as_str().unwrap_or_default().ends_with(": succeeded")).then_some(lines)
    });
    let messages: Vec<&str> = lines.iter().map(|l| l["message"].as_str().unwrap()).collect();
    let prefix = format!("golden360 pipeline run {run}: ");
    assert!(messages.iter().any(|m| m.starts_with(&format!("{prefix}started"))), "{messages:?}");
    for step in ["bronze", "silver", "gold"] {
        assert!(messages.iter().any(|m| m.starts_with(&format!("{prefix}step {step} succeeded"))), "{step}: {messages:?}");
    }
    assert!(lines.iter().all(|l| l["error_severity"] == "LOG" && l["timestamp"].is_string() && l["pid"].is_number()));
}
