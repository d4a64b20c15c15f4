//! Helpers for the integration tests in `tests/`: a fresh database with the
//! extension per test, and generated samples. The cluster is the one
//! `scripts/test.sh` starts (PGHOST, PGPORT, PGUSER from the environment).

use postgres::{Client, Config, NoTls};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The test cluster's socket directory and port (PGHOST, PGPORT).
pub fn cluster_address() -> (String, u16) {
    (
        std::env::var("PGHOST").unwrap_or_else(|_| "/tmp".into()),
        std::env::var("PGPORT").ok().and_then(|p| p.parse().ok()).unwrap_or(5436),
    )
}

/// Connection settings for a database of this name on the test cluster.
pub fn config(dbname: &str) -> Config {
    let (host, port) = cluster_address();
    let mut config = Config::new();
    config
        .host(&host)
        .port(port)
        .user(&std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into()))
        .dbname(dbname);
    config
}

/// Poll `probe` every 100 ms until it gives a value; fail naming `what`
/// once `within` has passed.
pub fn eventually<T>(what: &str, within: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A free TCP port on the loopback interface, for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process (a server a test started) killed when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A connection to a database of this name.
/// A connection that keeps the NOTICEs (and, under client_min_messages,
/// DEBUG lines) it receives.
pub fn connect_collecting_notices(dbname: &str) -> (Client, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let notices = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = notices.clone();
    let mut config = config(dbname);
    config.notice_callback(move |notice| sink.lock().unwrap().push(notice.message().to_string()));
    (config.connect(postgres::NoTls).unwrap(), notices)
}

pub fn connect(dbname: &str) -> Client {
    config(dbname).connect(NoTls).unwrap_or_else(|e| panic!("connecting to {dbname}: {e} (is the cluster started?)"))
}

/// A brand-new database `g360_it_<name>` with the extension installed.
pub fn fresh_database(name: &str) -> TestDatabase {
    let dbname = format!("g360_it_{name}");
    let mut admin = connect("postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {dbname}")).unwrap();
    connect(&dbname).batch_execute("CREATE EXTENSION golden360").unwrap();
    TestDatabase(dbname)
}

/// The name of a test's database, dropped with it when the test passes: a
/// suite that kept all of them filled the disk of a small CI machine. A
/// failed test's database stays, to be looked at.
pub struct TestDatabase(String);

impl TestDatabase {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for TestDatabase {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TestDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept database {} of a failed test", self.0);
            return;
        }
        if let Ok(mut admin) = config("postgres").connect(NoTls) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
        }
    }
}

/// A scratch directory the postgres OS user can read, removed on drop.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    pub fn new(name: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(format!("g360-it-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        ScratchDir(dir)
    }
    pub fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run the sample generator into `dir`; returns its `_generator.json`.
pub fn generate(dir: &Path, scale: f64, seed: u64) -> serde_json::Value {
    generate_with(dir, scale, seed, &[])
}

/// `generate` with extra generator flags (e.g. `--type-dirt`).
pub fn generate_with(dir: &Path, scale: f64, seed: u64, flags: &[&str]) -> serde_json::Value {
    let generator = std::env::var("G360_OLIST_GEN").expect("G360_OLIST_GEN: path of the olist-gen binary");
    let status = Command::new(generator)
        .args(["--out", dir.to_str().unwrap(), "--scale", &scale.to_string(), "--seed", &seed.to_string()])
        .args(flags)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "olist-gen failed");
    serde_json::from_str(&std::fs::read_to_string(dir.join("_generator.json")).unwrap()).unwrap()
}

/// `sha256sum` of a file, as the coreutils command prints it.
pub fn sha256sum(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// The real Olist copy beside the project (`../shared/data/olist`).
pub fn real_olist_dir() -> PathBuf {
    let dir = std::env::var("G360_OLIST_REAL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/olist"));
    dir.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// One bigint from a query.
pub fn count(client: &mut Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
}

/// A fresh database with the generated sample (scale, seed) ingested into
/// bronze; returns the database name and the sample's directory.
pub fn database_with_sample(name: &str, scale: f64, seed: u64) -> (TestDatabase, ScratchDir) {
    let db = fresh_database(name);
    let dir = ScratchDir::new(name);
    generate(&dir.0, scale, seed);
    connect(&db).query("SELECT * FROM golden360.ingest_bronze($1)", &[&dir.path()]).unwrap();
    (db, dir)
}

/// The project's root directory (where `scripts/` and `docker/` are).
pub fn project_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// A PostgREST process serving one database's api schema with the project's
/// configuration file (`docker/postgrest.conf`), on ports of its own;
/// stopped on drop.
pub struct Postgrest {
    _process: KillOnDrop,
    pub base: String,
    pub admin: String,
    secret: String,
    agent: ureq::Agent,
}

/// What came back from an HTTP request.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

impl Postgrest {
    pub fn start(dbname: &str) -> Postgrest {
        let binary = std::env::var("G360_POSTGREST").expect("G360_POSTGREST: path of the postgrest binary");
        let (port, admin_port) = (free_port(), free_port());
        let secret = format!("golden360-integration-test-secret-{port}");
        let log = std::env::temp_dir().join(format!("g360-it-postgrest-{port}.log"));
        let (host, pgport) = cluster_address();
        let child = Command::new(binary)
            .arg(project_dir().join("docker/postgrest.conf"))
            .env("PGRST_DB_URI", format!("postgresql:///{dbname}?host={host}&port={pgport}&user=golden360_authenticator"))
            .env("PGRST_JWT_SECRET", &secret)
            .env("PGRST_SERVER_PORT", port.to_string())
            .env("PGRST_ADMIN_SERVER_PORT", admin_port.to_string())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .expect("starting postgrest");
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
        let server = Postgrest {
            _process: KillOnDrop(child),
            base: format!("http://127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            secret,
            agent,
        };
        eventually(&format!("PostgREST ready (log: {})", log.display()), Duration::from_secs(20), || {
            (server.admin_get("/ready").status == 200).then_some(())
        });
        server
    }

    /// The JWT secret this server checks signatures with.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// A JWT minted by `scripts/api.sh token` with this server's secret, or
    /// with another secret (a forged token).
    pub fn token(&self, role: &str) -> String {
        self.token_signed_with(role, self.secret(), 3600)
    }

    pub fn token_signed_with(&self, role: &str, secret: &str, seconds: i64) -> String {
        let out = Command::new(project_dir().join("scripts/api.sh"))
            .args(["token", role, &seconds.to_string()])
            .env("G360_JWT_SECRET", secret)
            .output()
            .unwrap();
        assert!(out.status.success(), "api.sh token: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// GET base + path with these headers; any status is a reply.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request(&format!("{}{path}", self.base), headers)
    }

    /// GET on the admin port (`/live`, `/ready`).
    pub fn admin_get(&self, path: &str) -> Reply {
        self.request(&format!("{}{path}", self.admin), &[])
    }

    fn request(&self, url: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.agent.get(url);
        for (name, value) in headers {
            request = request.set(name, value);
        }
        let response = match request.call() {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(ureq::Error::Transport(e)) => {
                return Reply { status: 0, headers: vec![], body: e.to_string() };
            }
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .map(|name| {
                let value = response.header(&name).unwrap_or_default().to_string();
                (name, value)
            })
            .collect();
        Reply { status, headers, body: response.into_string().unwrap() }
    }
}

/// The server a probe runs against, and proof that it is still the same
/// server afterwards: the postmaster did not restart (no backend crashed,
/// which makes it reinitialise), and its log reports no backend killed by
/// a signal since the probe began.
pub struct SameServer {
    started: String,
    log: Option<PathBuf>,
    log_from: u64,
}

impl SameServer {
    pub fn now() -> SameServer {
        let started = connect("postgres")
            .query_one("SELECT pg_postmaster_start_time()::text", &[])
            .unwrap()
            .get(0);
        let log = std::env::var("G360_PGLOG").ok().map(PathBuf::from);
        let log_from = log.as_ref().and_then(|l| std::fs::metadata(l).ok()).map_or(0, |m| m.len());
        SameServer { started, log, log_from }
    }

    /// Fails unless the server is the one `now` saw, with no crash logged.
    pub fn check(&self, probe: &str) {
        let started: String = connect("postgres").query_one("SELECT pg_postmaster_start_time()::text", &[]).unwrap().get(0);
        assert_eq!(started, self.started, "{probe}: the postmaster restarted");
        let Some(log) = &self.log else { panic!("G360_PGLOG: the test cluster's log file") };
        let text = std::fs::read(log).unwrap_or_default();
        let since = String::from_utf8_lossy(&text[(self.log_from as usize).min(text.len())..]).into_owned();
        for sign in ["terminated by signal", "was terminated by", "server process (PID", "all server processes terminated"] {
            assert!(!since.contains(sign), "{probe}: the log says {sign:?}:\n{since}");
        }
    }
}

/// The SQLSTATE of a failed statement (panics if it succeeded).
pub fn sqlstate(result: Result<impl std::fmt::Debug, postgres::Error>) -> String {
    match result {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no SQLSTATE: {e}")),
    }
}

/// A login role of this name (made if missing) that is a member of `groups`.
pub fn login_role(name: &str, groups: &[&str]) {
    let mut admin = connect("postgres");
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE {name} LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        ))
        .unwrap();
    for group in groups {
        admin.batch_execute(&format!("GRANT {group} TO {name}")).unwrap();
    }
}

/// A connection to `dbname` logged in as `user`.
pub fn connect_as(dbname: &str, user: &str) -> Client {
    let mut config = config(dbname);
    config.user(user);
    config.connect(NoTls).unwrap_or_else(|e| panic!("connecting to {dbname} as {user}: {e}"))
}

/// The project's own scripts (api.sh: PostgREST and Caddy; metrics.sh: the
/// exporter and Prometheus) with a run directory of their own, on free
/// ports, against the test cluster (its socket linked in); stopped on drop.
pub struct ScriptStack {
    pub run: ScratchDir,
    env: Vec<(&'static str, String)>,
    started: Vec<&'static str>,
}

impl ScriptStack {
    /// Start `scripts` (each with `start`) against database `db`; with
    /// `secret`, as the JWT secret, else the scripts make their own file.
    pub fn start(db: &str, scripts: &[&'static str], secret: Option<&str>) -> ScriptStack {
        let run = ScratchDir::new(&format!("stack-{db}"));
        let (socket_dir, pgport) = cluster_address();
        std::os::unix::fs::symlink(&socket_dir, run.0.join("socket")).unwrap();
        let port = || free_port().to_string();
        let env = vec![
            ("G360_RUN", run.path().to_string()),
            ("G360_PGPORT", pgport.to_string()),
            ("G360_API_DB", db.to_string()),
            ("G360_METRICS_DB", db.to_string()),
            ("G360_API_PORT", port()),
            ("G360_API_ADMIN_PORT", port()),
            ("G360_HTTPS_PORT", port()),
            ("G360_DOCS_PORT", port()),
            ("G360_CADDY_ADMIN_PORT", port()),
            ("G360_METRICS_PORT", port()),
            ("G360_PROMETHEUS_PORT", port()),
            ("G360_SCRAPE_INTERVAL", "1s".to_string()),
        ];
        let mut env = env;
        env.extend(secret.map(|s| ("G360_JWT_SECRET", s.to_string())));
        let mut stack = ScriptStack { run, env, started: Vec::new() };
        for &script in scripts {
            stack.started.push(script);
            let out = stack.script(script, &["start"]);
            assert!(out.status.success(), "{script} start: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        stack
    }

    pub fn script(&self, script: &str, args: &[&str]) -> std::process::Output {
        let mut command = Command::new(project_dir().join("scripts").join(script));
        if !self.env.iter().any(|(n, _)| *n == "G360_JWT_SECRET") {
            command.env_remove("G360_JWT_SECRET");
        }
        command.args(args).envs(self.env.iter().cloned()).output().unwrap()
    }

    pub fn var(&self, name: &str) -> &str {
        &self.env.iter().find(|(n, _)| *n == name).unwrap().1
    }

    pub fn ca(&self) -> String {
        self.run.0.join("caddy/pki/authorities/local/root.crt").to_str().unwrap().to_string()
    }

    /// curl over HTTPS through Caddy, trusting only the local CA: (status, headers, body).
    pub fn https(&self, path: &str, headers: &[&str]) -> (u16, String, String) {
        let url = format!("https://localhost:{}{path}", self.var("G360_HTTPS_PORT"));
        let mut command = Command::new("curl");
        command.args(["-sS", "--cacert", &self.ca(), "-D", "-", "-o", "-", "--max-time", "20"]);
        for h in headers {
            command.args(["-H", h]);
        }
        let out = command.arg(&url).output().unwrap();
        assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, head.to_lowercase(), body.to_string())
    }

    pub fn token(&self, role: &str) -> String {
        let out = self.script("api.sh", &["token", role]);
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn caddy_metrics(&self) -> String {
        ureq::get(&format!("http://127.0.0.1:{}/metrics", self.var("G360_CADDY_ADMIN_PORT"))).call().unwrap().into_string().unwrap()
    }

    pub fn prometheus(&self, path: &str) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}{path}", self.var("G360_PROMETHEUS_PORT"));
        serde_json::from_str(&ureq::get(&url).call().unwrap().into_string().unwrap()).unwrap()
    }

    pub fn query(&self, expr: &str) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.var("G360_PROMETHEUS_PORT"));
        let reply = ureq::get(&url).query("query", expr).call().unwrap().into_string().unwrap();
        let value: serde_json::Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(value["status"], "success", "{expr}: {reply}");
        value["data"]["result"].clone()
    }
}

impl Drop for ScriptStack {
    fn drop(&mut self) {
        for script in self.started.iter().rev() {
            let _ = self.script(script, &["stop"]);
        }
    }
}

/// What a refresh produced, comparable across databases: every silver
/// table, the quarantine (without run ids), the last silver run's counts,
/// gold without refreshed_at, the bridge, the RFM bucket boundaries the
/// next refresh starts from, and the zips' mean points. (name, rows:md5).
pub fn outcome(c: &mut postgres::Client) -> Vec<(String, String)> {
    let mut queries: Vec<(String, String)> = c
        .query("SELECT table_name FROM golden360_internal.silver_tables() ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| {
            let t: String = r.get(0);
            (t.clone(), format!("SELECT x::text FROM silver.{t} x"))
        })
        .collect();
    queries.push(("quarantine".into(), "SELECT (table_name, batch_id, row_number, reason, kind, record)::text FROM silver.quarantine".into()));
    queries.push((
        "silver_runs".into(),
        "SELECT (table_name, bronze_rows, silver_rows, duplicates, quarantined)::text FROM golden360.silver_runs
          WHERE run_id = (SELECT max(run_id) FROM golden360.silver_runs)"
            .into(),
    ));
    queries.push(("gold".into(), "SELECT (to_jsonb(g) - 'refreshed_at')::text FROM gold.unified_customer_360 g".into()));
    queries.push(("bridge".into(), "SELECT b::text FROM gold.identity_bridge b".into()));
    queries.push(("rfm_boundaries".into(), "SELECT r::text FROM golden360_internal.rfm_boundaries r".into()));
    queries.push(("zip_coordinates".into(), "SELECT z::text FROM gold.zip_coordinates z".into()));
    queries
        .into_iter()
        .map(|(name, sql)| {
            let digest: String = c
                .query_one(&format!("SELECT count(*) || ':' || coalesce(md5(string_agg(v, '|' ORDER BY v)), '') FROM ({sql}) s(v)"), &[])
                .unwrap()
                .get(0);
            (name, digest)
        })
        .collect()
}

