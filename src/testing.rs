//! Helpers shared by the in-database tests (`cargo pgrx test`): fixture
//! directories of CSV files, one-value queries, and errors caught in a
//! subtransaction so a test can assert the error and what was (not) written.

use olist_model::SOURCE_FILES;
use pgrx::prelude::*;
use std::path::PathBuf;

/// A directory of the nine files, each a header plus two valid rows,
/// removed when dropped.
pub struct Fixture {
    pub dir: PathBuf,
}

impl Fixture {
    pub fn new(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("g360-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for source in &SOURCE_FILES {
            let header = source.columns.join(",");
            let row = |n: usize| source.columns.iter().map(|c| format!("{c}-{n}")).collect::<Vec<_>>().join(",");
            std::fs::write(dir.join(source.file_name), format!("{header}\n{}\n{}\n", row(1), row(2))).unwrap();
        }
        Fixture { dir }
    }
    pub fn path(&self) -> &str {
        self.dir.to_str().unwrap()
    }
    pub fn write(&self, file_name: &str, content: &[u8]) {
        std::fs::write(self.dir.join(file_name), content).unwrap();
    }
    pub fn remove(&self, file_name: &str) {
        std::fs::remove_file(self.dir.join(file_name)).unwrap();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn one<T: FromDatum + IntoDatum>(sql: &str) -> T {
    Spi::get_one::<T>(sql).expect("query runs").expect("query returns a value")
}

pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// (file_name, status, rows, rejected) per file of one ingestion.
pub fn ingest(dir: &str, allow_partial: bool) -> Vec<(String, String, i64, i64)> {
    Spi::connect_mut(|client| {
        client
            .update(
                &format!(
                    "SELECT file_name, status, rows, rejected FROM golden360.ingest_bronze({}, {allow_partial})",
                    quote(dir)
                ),
                None,
                &[],
            )
            .unwrap()
            .map(|row| {
                (
                    row.get::<String>(1).unwrap().unwrap(),
                    row.get::<String>(2).unwrap().unwrap(),
                    row.get::<i64>(3).unwrap().unwrap(),
                    row.get::<i64>(4).unwrap().unwrap(),
                )
            })
            .collect()
    })
}

/// The error a statement raises ("SQLSTATE message / DETAIL / HINT"), or
/// None; the statement runs in a subtransaction that is rolled back.
pub fn error_of(sql: &str) -> Option<String> {
    // Created once per session, so it also works after SET ROLE.
    Spi::run(
        r#"DO $do$ BEGIN
           IF to_regprocedure('pg_temp.error_of(text)') IS NULL THEN
               CREATE FUNCTION pg_temp.error_of(query text) RETURNS text LANGUAGE plpgsql AS $$
               DECLARE m text; d text; h text; s text;
               BEGIN
                   EXECUTE query;
                   RETURN NULL;
               EXCEPTION WHEN others THEN
                   GET STACKED DIAGNOSTICS m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL,
                                           h = PG_EXCEPTION_HINT, s = RETURNED_SQLSTATE;
                   RETURN s || ' ' || m || E'\nDETAIL: ' || coalesce(d, '') || E'\nHINT: ' || coalesce(h, '');
               END $$;
               GRANT EXECUTE ON FUNCTION pg_temp.error_of(text) TO PUBLIC;
           END IF;
           END $do$"#,
    )
    .unwrap();
    Spi::get_one::<String>(&format!("SELECT pg_temp.error_of({})", quote(sql))).unwrap()
}

pub fn ingest_error(dir: &str, allow_partial: bool) -> String {
    error_of(&format!("SELECT * FROM golden360.ingest_bronze({}, {allow_partial})", quote(dir)))
        .expect("ingestion should have failed")
}

