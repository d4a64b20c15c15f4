//! The HTTP API: the real PostgREST 12.0.2 with the project's configuration
//! in front of a database that ran the pipeline on a generated sample.

use golden360_it::{connect, count, eventually, fresh_database, generate, Postgrest, ScratchDir};
use serde_json::Value;
use std::sync::OnceLock;
use std::time::Duration;

const OBJECT: (&str, &str) = ("Accept", "application/vnd.pgrst.object+json");

/// One database for the whole file: the pipeline run once on a sample (a
/// static, so never dropped: it outlives the tests that share it).
fn database() -> &'static str {
    static DB: OnceLock<golden360_it::TestDatabase> = OnceLock::new();
    DB.get_or_init(|| {
        let db = fresh_database("api");
        let dir = ScratchDir::new("api");
        generate(&dir.0, 0.02, 21);
        connect(&db).batch_execute(&format!("CALL golden360.run_pipeline('{}')", dir.path())).unwrap();
        db
    })
    .as_str()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A row of api.customer_360 as PostgreSQL renders it to JSON.
fn row_as_json(sql_filter: &str) -> Value {
    let mut c = connect(database());
    let text: String = c
        .query_one(&format!("SELECT row_to_json(c)::text FROM api.customer_360 c WHERE {sql_filter}"), &[])
        .unwrap()
        .get(0);
    serde_json::from_str(&text).unwrap()
}

fn one_text(sql: &str) -> String {
    connect(database()).query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn one_customer_by_golden_id_equals_the_gold_row() {
    let api = Postgrest::start(database());
    let token = api.token("golden360_reader");
    let golden_id = one_text("SELECT golden_id FROM gold.unified_customer_360 WHERE order_count > 1 ORDER BY golden_id LIMIT 1");

    let reply = api.get(&format!("/customer_360?golden_id=eq.{golden_id}"), &[OBJECT, ("Authorization", &bearer(&token))]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let record = reply.json();
    assert_eq!(record, row_as_json(&format!("golden_id = '{golden_id}'")));
    assert!(record["days_since_last_order"].as_i64().unwrap() > 0);
    assert!(record["customer_ids"].as_array().unwrap().contains(&record["customer_id"]));

    // Unknown, and malformed: a JSON error, never a 500.
    let unknown = api.get(&format!("/customer_360?golden_id=eq.{}", "0".repeat(64)), &[OBJECT, ("Authorization", &bearer(&token))]);
    assert_eq!(unknown.status, 406, "{}", unknown.body);
    assert_eq!(unknown.json()["code"], "PGRST116");
    let malformed = api.get("/customer_360?golden_id=eq.'%3B%20drop%20table%20x", &[OBJECT, ("Authorization", &bearer(&token))]);
    assert_eq!(malformed.status, 406, "{}", malformed.body);
    let bad_filter = api.get("/customer_360?golden_id=nope.1", &[("Authorization", &bearer(&token))]);
    assert_eq!(bad_filter.status, 400, "{}", bad_filter.body);
    assert!(bad_filter.json()["message"].is_string());
}

#[test]
fn a_segment_pages_with_an_exact_count() {
    let api = Postgrest::start(database());
    let token = api.token("golden360_reader");
    let mut c = connect(database());
    let total = count(&mut c, "SELECT count(*) FROM gold.unified_customer_360 WHERE ltv_segment = 'Medium'");
    assert!(total > 10, "the sample has Medium people: {total}");
    let expected: Vec<String> = c
        .query("SELECT golden_id FROM gold.unified_customer_360 WHERE ltv_segment = 'Medium' ORDER BY total_spend DESC, golden_id LIMIT 5 OFFSET 5", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();

    let reply = api.get(
        "/customer_360?ltv_segment=eq.Medium&order=total_spend.desc,golden_id&limit=5&offset=5",
        &[("Authorization", &bearer(&token)), ("Prefer", "count=exact")],
    );
    assert_eq!(reply.status, 206, "{}", reply.body);
    assert_eq!(reply.header("Content-Range"), Some(format!("5-9/{total}").as_str()));
    let rows = reply.json();
    let rows = rows.as_array().unwrap();
    assert!(rows.iter().all(|r| r["ltv_segment"] == "Medium"));
    let got: Vec<&str> = rows.iter().map(|r| r["golden_id"].as_str().unwrap()).collect();
    assert_eq!(got, expected);
}

#[test]
fn any_source_id_finds_its_person() {
    let api = Postgrest::start(database());
    let token = api.token("golden360_reader");
    let auth = bearer(&token);
    // A person with several customer_ids, found by one that is not canonical.
    let golden_id = one_text("SELECT golden_id FROM gold.unified_customer_360 WHERE cardinality(customer_ids) > 1 ORDER BY golden_id LIMIT 1");
    let other_id = one_text(&format!(
        "SELECT min(id) FROM gold.unified_customer_360, unnest(customer_ids) AS id WHERE golden_id = '{golden_id}' AND id <> customer_id"
    ));
    let unique_id = one_text(&format!("SELECT customer_unique_id FROM gold.unified_customer_360 WHERE golden_id = '{golden_id}'"));
    assert_ne!(other_id, one_text(&format!("SELECT customer_id FROM gold.unified_customer_360 WHERE golden_id = '{golden_id}'")));

    for id in [&other_id, &unique_id] {
        let reply = api.get(&format!("/rpc/customer_by_source_id?id={id}"), &[("Authorization", &auth)]);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let rows = reply.json();
        assert_eq!(rows.as_array().unwrap().len(), 1, "{id}");
        assert_eq!(rows[0], row_as_json(&format!("golden_id = '{golden_id}'")));
    }
    let unknown = api.get("/rpc/customer_by_source_id?id=no-such-customer", &[("Authorization", &auth)]);
    assert_eq!(unknown.status, 200);
    assert_eq!(unknown.json(), serde_json::json!([]));
}

#[test]
fn customer_data_needs_a_valid_reader_token() {
    let api = Postgrest::start(database());
    let page = "/customer_360?limit=1";
    let by_id = "/rpc/customer_by_source_id?id=x";

    for path in [page, by_id] {
        let anonymous = api.get(path, &[]);
        assert_eq!(anonymous.status, 401, "{path}: {}", anonymous.body);
    }
    let forged = api.token_signed_with("golden360_reader", "not-the-servers-secret-but-long-enough", 3600);
    let expired = api.token_signed_with("golden360_reader", &api.secret(), -60);
    for (what, token) in [("forged", forged), ("expired", expired)] {
        let reply = api.get(page, &[("Authorization", &bearer(&token))]);
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
    }
    // A valid token naming another role gets nothing either: PostgREST's
    // login may switch to the anonymous and reader roles only.
    for role in ["golden360_anon", "golden360_authenticator", "postgres", "golden360_monitor", "golden360_operator"] {
        for path in [page, by_id, "/rpc/health"] {
            let reply = api.get(path, &[("Authorization", &bearer(&api.token(role)))]);
            let allowed = role == "golden360_anon" && path == "/rpc/health";
            assert!(allowed || (400..500).contains(&reply.status), "{role} {path}: {} {}", reply.status, reply.body);
        }
    }
    // An unsigned token (alg "none") naming the reader.
    let b64 = |json: &str| {
        let out = std::process::Command::new("sh")
            .args(["-c", "printf '%s' \"$1\" | openssl base64 -A | tr '+/' '-_' | tr -d '='", "sh", json])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let unsigned = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&format!(r#"{{"role":"golden360_reader","exp":{}}}"#, 4102444800u64))
    );
    let reply = api.get(page, &[("Authorization", &bearer(&unsigned))]);
    assert_eq!(reply.status, 401, "alg none: {}", reply.body);
    let reader = api.get(page, &[("Authorization", &bearer(&api.token("golden360_reader")))]);
    assert_eq!(reader.status, 200, "{}", reader.body);

    let health = api.get("/rpc/health", &[]);
    assert_eq!(health.status, 200, "{}", health.body);
    // Anonymous requests reach /rpc/health and nothing else.
    for path in [page, by_id, "/customer_360?golden_id=eq.x", "/customer_360?select=golden_id&limit=1"] {
        let anonymous = api.get(path, &[]);
        assert_eq!(anonymous.status, 401, "{path}: {}", anonymous.body);
    }
}

/// api.health answers anonymous callers, so its cost must not grow with
/// gold: it reads no row of gold at all (the table's scan counters stay).
#[test]
fn health_reads_nothing_of_gold() {
    // A database of its own: other tests read the shared one's gold meanwhile.
    let db = fresh_database("api_health");
    let dir = ScratchDir::new("api_health");
    generate(&dir.0, 0.01, 22);
    let mut c = connect(&db);
    c.batch_execute("SET golden360.quality_gate = warn").unwrap();
    c.batch_execute(&format!("CALL golden360.run_pipeline('{}')", dir.path())).unwrap();
    c.batch_execute("SET stats_fetch_consistency = none").unwrap();
    let scans = |c: &mut postgres::Client| {
        count(
            c,
            "SELECT coalesce(seq_scan, 0) + coalesce(idx_scan, 0) FROM pg_stat_user_tables
              WHERE schemaname = 'gold' AND relname = 'unified_customer_360'",
        )
    };
    // A statement's scans count once its session flushes its statistics,
    // which the forced flush does as the batch ends.
    c.batch_execute("SELECT count(*) FROM gold.unified_customer_360; SELECT pg_stat_force_next_flush()").unwrap();
    let before = scans(&mut c);
    c.batch_execute("SELECT count(*) FROM gold.unified_customer_360; SELECT pg_stat_force_next_flush()").unwrap();
    assert!(scans(&mut c) > before, "a count(*) over gold shows in the counters");
    let before = scans(&mut c);
    for _ in 0..5 {
        c.batch_execute("SELECT api.health(); SELECT pg_stat_force_next_flush()").unwrap();
    }
    assert_eq!(scans(&mut c), before, "api.health() scanned gold");
    let text: String = c.query_one("SELECT api.health()::text", &[]).unwrap().get(0);
    let health: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        health["gold_rows"].as_i64(),
        Some(count(&mut c, "SELECT people FROM golden360.gold_runs ORDER BY run_id DESC LIMIT 1"))
    );
}

#[test]
fn nothing_but_the_api_schema_is_reachable() {
    let api = Postgrest::start(database());
    let auth = bearer(&api.token("golden360_reader"));
    for path in [
        "/bronze.customers",
        "/silver.customers",
        "/gold.unified_customer_360",
        "/golden360.pipeline_runs",
        "/unified_customer_360",
        "/identity_bridge",
        "/pipeline_runs",
        "/rpc/golden_id?uid=a&cid=b",
        "/rpc/ingest_bronze?source_dir=/etc",
        "/rpc/refresh_gold",
    ] {
        let reply = api.get(path, &[("Authorization", &auth)]);
        assert!((400..500).contains(&reply.status), "{path}: {} {}", reply.status, reply.body);
    }
    for schema in ["bronze", "silver", "gold", "golden360", "public"] {
        let reply = api.get("/customers", &[("Authorization", &auth), ("Accept-Profile", schema)]);
        assert_eq!(reply.status, 406, "{schema}: {}", reply.body);
    }
    // And in the database itself, whatever PostgREST would allow.
    let mut c = connect(database());
    for sql in [
        "SELECT count(*) FROM gold.unified_customer_360",
        "SELECT count(*) FROM gold.identity_bridge",
        "SELECT count(*) FROM silver.customers",
        "SELECT count(*) FROM bronze.customers",
        "SELECT count(*) FROM golden360.pipeline_runs",
        "SELECT golden360.golden_id('a', 'b')",
    ] {
        c.batch_execute("BEGIN; SET LOCAL ROLE golden360_reader").unwrap();
        let error = c.batch_execute(sql).expect_err(sql);
        assert_eq!(error.code(), Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE), "{sql}: {error}");
        c.batch_execute("ROLLBACK").unwrap();
    }
}

#[test]
fn health_reports_the_last_successful_run() {
    let api = Postgrest::start(database());
    let reply = api.get("/rpc/health", &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let health = reply.json();
    let mut c = connect(database());
    assert_eq!(health["database"], "ok");
    assert_eq!(
        health["last_successful_run"].as_i64(),
        Some(count(&mut c, "SELECT max(run_id) FROM golden360.pipeline_runs WHERE status = 'succeeded'"))
    );
    let age = health["last_successful_run_age_seconds"].as_f64().unwrap();
    let expected_age = count(&mut c, "SELECT extract(epoch FROM now() - max(finished_at))::bigint FROM golden360.pipeline_runs WHERE status = 'succeeded'");
    assert!((age - expected_age as f64).abs() <= 2.0, "{age} vs {expected_age}");
    assert_eq!(health["gold_rows"].as_i64(), Some(count(&mut c, "SELECT count(*) FROM gold.unified_customer_360")));
    assert_eq!(health["running"], false);
    // PostgREST's own probes, on its admin port.
    for probe in ["/live", "/ready"] {
        assert_eq!(api.admin_get(probe).status, 200, "{probe}");
    }
}

#[test]
fn the_openapi_description_documents_every_column() {
    let api = Postgrest::start(database());
    let reply = api.get("/", &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let doc = reply.json();
    let properties = doc["definitions"]["customer_360"]["properties"].as_object().expect("customer_360 is described");
    assert_eq!(properties.len(), 29, "28 gold columns and days_since_last_order");
    for (name, property) in properties {
        let description = property["description"].as_str().unwrap_or_default();
        assert!(description.len() > 10, "{name} has no description");
    }
    assert!(properties["days_since_last_order"]["description"].as_str().unwrap().contains("current_date"));
    let paths = doc["paths"].as_object().unwrap();
    for path in ["/customer_360", "/rpc/customer_by_source_id", "/rpc/health"] {
        assert!(paths.contains_key(path), "{path} missing from {:?}", paths.keys().collect::<Vec<_>>());
    }
    assert_eq!(paths.len(), 4, "/, /customer_360 and the two functions: {:?}", paths.keys().collect::<Vec<_>>());
}

/// DDL on the api schema reaches a running PostgREST without a restart.
#[test]
fn a_change_to_the_api_schema_is_picked_up() {
    let db = fresh_database("api_reload");
    let api = Postgrest::start(&db);
    assert_eq!(api.get("/rpc/ping", &[]).status, 404);
    connect(&db)
        .batch_execute("CREATE FUNCTION api.ping() RETURNS text LANGUAGE sql AS $$SELECT 'pong'$$; GRANT EXECUTE ON FUNCTION api.ping() TO golden360_anon")
        .unwrap();
    let reply = eventually("PostgREST serving the new api.ping", Duration::from_secs(10), || {
        Some(api.get("/rpc/ping", &[])).filter(|reply| reply.status == 200)
    });
    assert_eq!(reply.json(), "pong");
    connect(&db).batch_execute("DROP FUNCTION api.ping()").unwrap();
    eventually("PostgREST seeing the DROP", Duration::from_secs(10), || {
        (api.get("/rpc/ping", &[]).status == 404).then_some(())
    });
}
