//! Helpers for the integration tests in `tests/`: a fresh database with the
//! extension per test, and generated samples. The cluster is the one
//! `scripts/test.sh` starts (PGHOST, PGPORT, PGUSER from the environment).

use postgres::{Client, Config, NoTls};
use std::path::{Path, PathBuf};
use std::process::Command;

fn config(dbname: &str) -> Config {
    let mut config = Config::new();
    config
        .host(&std::env::var("PGHOST").unwrap_or_else(|_| "/tmp".into()))
        .port(std::env::var("PGPORT").ok().and_then(|p| p.parse().ok()).unwrap_or(5436))
        .user(&std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into()))
        .dbname(dbname);
    config
}

/// A connection to a database of this name.
pub fn connect(dbname: &str) -> Client {
    config(dbname).connect(NoTls).unwrap_or_else(|e| panic!("connecting to {dbname}: {e} (is the cluster started?)"))
}

/// A brand-new database `g360_it_<name>` with the extension installed.
pub fn fresh_database(name: &str) -> String {
    let dbname = format!("g360_it_{name}");
    let mut admin = connect("postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {dbname}")).unwrap();
    connect(&dbname).batch_execute("CREATE EXTENSION golden360").unwrap();
    dbname
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
pub fn database_with_sample(name: &str, scale: f64, seed: u64) -> (String, ScratchDir) {
    let db = fresh_database(name);
    let dir = ScratchDir::new(name);
    generate(&dir.0, scale, seed);
    connect(&db).query("SELECT * FROM golden360.ingest_bronze($1)", &[&dir.path()]).unwrap();
    (db, dir)
}
