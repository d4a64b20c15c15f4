//! Installing the extension. A test binary of its own: cargo runs test
//! binaries one after another, so this may drop every test database and the
//! cluster-wide role without disturbing other tests.

use golden360_it::connect;
use std::sync::{Arc, Barrier};

/// CREATE EXTENSION in several databases at once, with the cluster-wide
/// roles not there yet: none of them may fail.
#[test]
fn the_extension_installs_in_several_databases_at_once() {
    let mut admin = connect("postgres");
    let stale: Vec<String> = admin
        .query("SELECT datname::text FROM pg_database WHERE datname LIKE 'g360\\_it\\_%'", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for name in stale {
        admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")).unwrap();
    }
    // The cluster-wide roles go too, so the installs below race to create
    // them; the cron test's database may still hold the extension.
    connect("golden360").batch_execute("DROP EXTENSION IF EXISTS golden360 CASCADE").unwrap();
    for role in [
        "golden360_authenticator",
        "golden360_anon",
        "golden360_reader",
        "golden360_operator",
        "golden360_loader",
        "golden360_monitor",
    ] {
        admin.batch_execute(&format!("DROP ROLE IF EXISTS {role}")).unwrap();
    }

    let names: Vec<String> = (0..4).map(|i| format!("g360_it_parallel_{i}")).collect();
    for name in &names {
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    }
    let barrier = Arc::new(Barrier::new(names.len()));
    let installs: Vec<_> = names
        .iter()
        .map(|name| {
            let (name, barrier) = (name.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut client = connect(&name);
                barrier.wait();
                client.batch_execute("CREATE EXTENSION golden360").map_err(|e| e.to_string())
            })
        })
        .collect();
    for (name, install) in names.iter().zip(installs) {
        assert_eq!(install.join().unwrap(), Ok(()), "{name}");
    }
    let loader_grants: Vec<String> = connect(&names[0])
        .query(
            "SELECT DISTINCT privilege_type::text FROM information_schema.role_table_grants WHERE grantee = 'golden360_loader'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(loader_grants, ["SELECT"], "golden360_loader reads bronze; only ingest_bronze writes it");
    let operator_is_loader: bool = connect(&names[0])
        .query_one("SELECT pg_has_role('golden360_operator', 'golden360_loader', 'MEMBER')", &[])
        .unwrap()
        .get(0);
    assert!(operator_is_loader, "an operator may ingest");
    let api_roles: i64 = connect(&names[0])
        .query_one(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
              WHERE u.rolname = 'golden360_authenticator' AND r.rolname IN ('golden360_anon', 'golden360_reader')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(api_roles, 2, "PostgREST's login may switch to the anonymous and reader roles");
}

