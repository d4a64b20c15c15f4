//! Upgrading in place: every earlier release in RELEASES is built from its
//! commit (cached), installed into a private copy of the PostgreSQL
//! installation with a cluster of its own, created and run; then the
//! current build is installed over it and `ALTER EXTENSION golden360
//! UPDATE` run. The upgraded schema must equal a fresh install's (a
//! normalised `pg_dump --binary-upgrade --schema-only`, which lists every
//! extension member with its grants), the data must be intact, and the
//! next pipeline run must give what a fresh install gives.
//!
//! This also fails when the SQL surface changed without an upgrade script:
//! the release plus its upgrade path would then differ from a fresh install.

use golden360_it::{generate, outcome, project_dir, KillOnDrop, ScratchDir};
use postgres::{Client, NoTls};
use std::path::{Path, PathBuf};
use std::process::Command;

const PG: &str = "/usr/lib/postgresql/15";
const SHARE: &str = "/usr/share/postgresql/15";

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// (version, commit) of every release, and the current version.
fn releases() -> (Vec<(String, String)>, String) {
    let list = std::fs::read_to_string(project_dir().join("RELEASES")).unwrap();
    let releases = list
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next().unwrap().to_string(), parts.next().unwrap().to_string())
        })
        .collect();
    let manifest = std::fs::read_to_string(project_dir().join("Cargo.toml")).unwrap();
    let current = manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \"").map(|v| v.trim_end_matches('"').to_string()))
        .unwrap();
    (releases, current)
}

/// A copy of the PostgreSQL installation (relocatable: it finds its share
/// and lib directories next to its binaries) and a cluster running from it.
struct PrivateCluster {
    root: PathBuf,
    socket: PathBuf,
    port: u16,
    _server: Option<KillOnDrop>,
}

impl PrivateCluster {
    fn new(name: &str) -> PrivateCluster {
        let root = PathBuf::from(format!("/var/tmp/g360-it-upgrade-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (from, to) in [(PG, "usr/lib/postgresql"), (SHARE, "usr/share/postgresql")] {
            std::fs::create_dir_all(root.join(to)).unwrap();
            run(Command::new("cp").args(["-a", from]).arg(root.join(to)));
        }
        std::fs::create_dir_all(root.join("socket")).unwrap();
        run(Command::new("chown").args(["-R", "postgres"]).arg(&root));
        let port = golden360_it::free_port();
        let cluster = PrivateCluster { socket: root.join("socket"), root, port, _server: None };
        run(cluster.as_postgres("initdb").args(["-A", "trust", "-U", "postgres", "-D"]).arg(cluster.root.join("data")));
        cluster
    }

    fn as_postgres(&self, tool: &str) -> Command {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(self.root.join(format!("usr/lib/postgresql/15/bin/{tool}")));
        command
    }

    /// Copy a package tree (usr/lib/..., usr/share/...) over the installation.
    fn install(&self, package: &Path) {
        run(Command::new("cp").args(["-a", "--remove-destination"]).arg(format!("{}/usr", package.display())).arg(&self.root));
    }

    /// The files the current build installed into the system PostgreSQL.
    fn install_current_build(&self) {
        let lib = self.root.join("usr/lib/postgresql/15/lib");
        std::fs::copy(format!("{PG}/lib/golden360.so"), lib.join("golden360.so")).unwrap();
        let extension = self.root.join("usr/share/postgresql/15/extension");
        for entry in std::fs::read_dir(format!("{SHARE}/extension")).unwrap() {
            let entry = entry.unwrap();
            if entry.file_name().to_string_lossy().starts_with("golden360") {
                std::fs::copy(entry.path(), extension.join(entry.file_name())).unwrap();
            }
        }
    }

    fn start(&mut self) {
        self._server = None;
        let child = self
            .as_postgres("postgres")
            .arg("-D")
            .arg(self.root.join("data"))
            .args(["-c", "listen_addresses=", "-c", &format!("port={}", self.port)])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.socket.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(self.root.join("postgres.log")).unwrap())
            .spawn()
            .unwrap();
        self._server = Some(KillOnDrop(child));
        golden360_it::eventually("the private cluster accepting connections", std::time::Duration::from_secs(30), || {
            self.try_connect("postgres").ok().map(|_| ())
        });
    }

    /// Stop the server (a fast shutdown, as an upgrade's restart would).
    fn stop(&mut self) {
        let _ = self.as_postgres("pg_ctl").arg("-D").arg(self.root.join("data")).args(["-m", "fast", "-w", "stop"]).output();
        self._server = None;
    }

    fn try_connect(&self, db: &str) -> Result<Client, postgres::Error> {
        postgres::Config::new()
            .host_path(&self.socket)
            .port(self.port)
            .user("postgres")
            .dbname(db)
            .connect(NoTls)
    }

    fn connect(&self, db: &str) -> Client {
        self.try_connect(db).unwrap()
    }

    /// The schema of `db` as pg_dump --binary-upgrade lists it (every
    /// extension member, with its grants), without what differs between any
    /// two databases: OIDs, the extension's version, the dump's own
    /// settings, and the order of grants within one ACL (the order they
    /// were granted in).
    fn schema(&self, db: &str) -> Vec<String> {
        let dump = run(Command::new(format!("{PG}/bin/pg_dump"))
            .args(["--binary-upgrade", "--schema-only", "-U", "postgres", "-p", &self.port.to_string()])
            .arg("-h")
            .arg(&self.socket)
            .arg(db));
        let mut entries: Vec<String> = dump
            .split("\n--\n-- Name: ")
            .skip(1)
            .map(|entry| {
                let mut lines: Vec<&str> = entry
                    .lines()
                    .filter(|l| {
                        !l.contains("binary_upgrade_set_next")
                            && !l.contains("binary_upgrade_set_missing")
                            // A column added to a table with rows keeps a
                            // "missing value" for them: how, not what.
                            && *l != "-- set missing value."
                            && !l.starts_with("SET ")
                            && !l.starts_with("\\restrict")
                            && !l.starts_with("\\unrestrict")
                            && !l.starts_with("WHERE oid = ")
                            && !l.starts_with("-- Dumped")
                            && !l.trim().is_empty()
                            && *l != "--"
                    })
                    .collect();
                if entry.contains("; Type: ACL;") {
                    lines[1..].sort();
                }
                lines.join("\n")
            })
            // An ACL that grants nothing but its owner's defaults, spelled
            // out ('{postgres=rwU/postgres}') or implicit (NULL), is the same.
            .filter(|entry| {
                !(entry.contains("; Type: ACL;")
                    && entry.lines().skip(1).all(|l| l.contains("binary_upgrade_set_record_init_privs")))
            })
            .map(|entry| {
                // binary_upgrade_create_empty_extension('golden360', ..., 'VERSION', '{OIDs}', ...)
                match entry.find("binary_upgrade_create_empty_extension") {
                    Some(_) => entry.split('\n').map(|l| l.split("'{").next().unwrap().to_string()).collect::<Vec<_>>().join("\n"),
                    None => entry,
                }
            })
            .collect();
        entries.sort();
        entries
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Row count and an md5 of every row, in a stable order, of each table of
/// golden360 that holds data, with the columns hashed (all of them, or the
/// ones `columns_of` names for the table: those an older version had, so
/// a column an upgrade adds does not hide a change to the others).
fn fingerprint(c: &mut Client, columns_of: Option<&[(String, i64, String, String)]>) -> Vec<(String, i64, String, String)> {
    let tables: Vec<(String, String)> = c
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname),
                    (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a
                      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.relkind = 'r' AND n.nspname IN ('bronze', 'silver', 'gold', 'golden360') ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    tables
        .into_iter()
        .map(|(t, all)| {
            let columns = columns_of
                .and_then(|old| old.iter().find(|(name, ..)| *name == t).map(|(.., cols)| cols.clone()))
                .unwrap_or(all);
            let row = c
                .query_one(
                    &format!("SELECT count(*), coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), '') FROM (SELECT {columns} FROM {t}) x"),
                    &[],
                )
                .unwrap();
            (t, row.get(0), row.get(1), columns)
        })
        .collect()
}

#[test]
fn every_release_upgrades_in_place_to_what_a_fresh_install_is() {
    let (releases, current) = releases();
    assert!(releases.iter().any(|(v, _)| *v != current), "RELEASES lists the releases before {current}");
    // A release of the current version is checked too: its install must
    // be what today's build installs, or the SQL changed without a new
    // version and its upgrade script.
    let sample = ScratchDir::new("upgrade_sample");
    generate(&sample.0, 0.05, 91);

    for (version, _commit) in &releases {
        let package = run(Command::new(project_dir().join("scripts/release-build.sh")).arg(version));
        let mut cluster = PrivateCluster::new(version);
        cluster.install(Path::new(package.trim()));
        cluster.start();
        let mut admin = cluster.connect("postgres");
        admin.batch_execute("CREATE DATABASE upgraded").unwrap();
        admin.batch_execute("CREATE DATABASE fresh").unwrap();
        let mut old = cluster.connect("upgraded");
        old.batch_execute(&format!("CREATE EXTENSION golden360 VERSION '{version}'")).unwrap();
        old.batch_execute("SET golden360.quality_gate = warn").unwrap();
        old.execute("CALL golden360.run_pipeline($1)", &[&sample.path()]).unwrap();
        let before = fingerprint(&mut old, None);
        assert!(before.iter().any(|(t, rows, ..)| t == "gold.unified_customer_360" && *rows > 0), "{version} made gold");
        drop(old);

        // A package upgrade: new files, a restart, then ALTER EXTENSION.
        cluster.stop();
        cluster.install_current_build();
        cluster.start();
        let mut upgraded = cluster.connect("upgraded");
        upgraded.batch_execute("ALTER EXTENSION golden360 UPDATE").unwrap();
        let now: String = upgraded.query_one("SELECT extversion FROM pg_extension WHERE extname = 'golden360'", &[]).unwrap().get(0);
        assert_eq!(now, current, "{version} upgrades to {current}");
        // New tables may come with an upgrade; every old one keeps its rows.
        let after = fingerprint(&mut upgraded, Some(&before));
        let kept: Vec<_> = after.iter().filter(|(t, ..)| before.iter().any(|(b, ..)| b == t)).cloned().collect();
        assert_eq!(kept, before, "{version} → {current}: every table's rows are kept as they were");

        // A fresh install that ran the same pipeline once, so that what a
        // run leaves (the gold indexes its first refresh makes, the silver
        // generation swapped into silver_next, sequence positions) is alike.
        let mut fresh = cluster.connect("fresh");
        fresh.batch_execute("CREATE EXTENSION golden360; SET golden360.quality_gate = warn").unwrap();
        fresh.execute("CALL golden360.run_pipeline($1)", &[&sample.path()]).unwrap();
        let (got, want) = (cluster.schema("upgraded"), cluster.schema("fresh"));
        let missing: Vec<&String> = want.iter().filter(|e| !got.contains(e)).collect();
        let extra: Vec<&String> = got.iter().filter(|e| !want.contains(e)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{version} + upgrade scripts differs from a fresh {current}:\n--- only in the fresh install:\n{}\n--- only in the upgraded one:\n{}",
            missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n\n"),
            extra.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n\n")
        );

        // The next run works, and gives what a fresh install gives.
        for c in [&mut upgraded, &mut fresh] {
            c.batch_execute("SET golden360.quality_gate = warn").unwrap();
            c.execute("CALL golden360.run_pipeline($1)", &[&sample.path()]).unwrap();
        }
        assert_eq!(outcome(&mut upgraded), outcome(&mut fresh), "{version}: the run after the upgrade");
        for c in [&mut upgraded, &mut fresh] {
            let runs: i64 = c.query_one("SELECT count(*) FROM golden360.pipeline_runs WHERE status = 'succeeded'", &[]).unwrap().get(0);
            assert_eq!(runs, 2, "the run history is kept");
        }
    }
}
