#!/usr/bin/env python3
"""The SPEC's pipeline as plain SQL, on PostgreSQL or DuckDB: issue 11's peers.

    sql_peer.py postgres DB DIR [DIR ...]   (PG* variables name the server;
                                             DB is dropped and created, collation C)
    sql_peer.py postgres-schema DB SCHEMA DIR [DIR ...]
                                            (into SCHEMA, dropped and created, of
                                             the existing DB: the tests run it
                                             beside the extension's tables)
    sql_peer.py duckdb FILE DIR [DIR ...]   ($PEER_THREADS threads, default 2)
    sql_peer.py extension DB                (the fingerprint of the extension's gold)

Loads the files of each DIR, a batch each in the order given (names, tables
and columns from `olist-gen --list-files`; $G360_OLIST_GEN names the
binary; a file a batch lacks is skipped, as allow_partial does), runs
sql/prelude.<engine>.sql and the phases of sql/medallion.sql, and prints
one JSON line: each phase's milliseconds and gold's fingerprint (counts and
exact sums), which bench/scale.sh compares with the extension's.
"""
import functools
import hashlib
import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent / "sql"


def phases():
    """medallion.sql split at its `-- phase: NAME` lines, in order."""
    out, name = [], None
    for line in (HERE / "medallion.sql").read_text().splitlines(keepends=True):
        if line.startswith("-- phase: "):
            name = line.removeprefix("-- phase: ").strip()
            out.append((name, []))
        elif name is not None:
            out[-1][1].append(line)
    return [(n, "".join(body)) for n, body in out]


def batches(directories):
    """Per batch (1, 2, ...), the files it lands: (batch, file name, path).
    A file whose bytes an earlier batch already landed is skipped, as
    bronze's SHA-256 idempotency skips it, and so is a file a batch lacks."""
    seen = set()
    for batch, directory in enumerate(directories, 1):
        for file, _, _ in source_files():
            path = Path(directory, file).resolve()
            if not path.exists():
                continue
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            if digest not in seen:
                seen.add(digest)
                yield batch, file, path


@functools.cache
def source_files():
    gen = os.environ.get("G360_OLIST_GEN", "olist-gen")
    lines = subprocess.run([gen, "--list-files"], check=True, capture_output=True, text=True).stdout
    return [(f, t, cols.split(",")) for f, t, cols in (l.split("\t") for l in lines.splitlines())]


class Postgres:
    def __init__(self, db, schema=None, admin_db="postgres"):
        self.db = db
        self.schema = schema
        self.admin_db = admin_db

    def psql(self, sql, db=None, rows=False):
        args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db or self.db]
        if rows:
            args += ["-A", "-F", "\t", "-P", "footer=off"]
        if self.schema and db is None:
            sql = f'SET search_path = "{self.schema}";\n' + sql
        done = subprocess.run(args, input=sql, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"psql: {done.stderr.strip()}")
        return done.stdout

    def create(self):
        if self.schema:
            self.psql(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE; CREATE SCHEMA "{self.schema}"', db=self.db)
            return
        self.psql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)', db=self.admin_db)
        self.psql(f"""CREATE DATABASE "{self.db}" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C.UTF-8'""",
                  db=self.admin_db)

    def load(self, directories):
        sql = []
        landed = list(batches(directories))
        for file, table, cols in source_files():
            sql.append(f"CREATE TABLE raw_{table} (batch integer, rn bigserial, {', '.join(c + ' text' for c in cols)});")
            for batch, path in ((b, p) for b, f, p in landed if f == file):
                # rn counts from 1 in every file, as bronze's _row_number does.
                sql.append(f"ALTER TABLE raw_{table} ALTER batch SET DEFAULT {batch};")
                sql.append(f"SELECT setval(pg_get_serial_sequence('raw_{table}', 'rn'), 1, false);")
                quoted = str(path).replace("'", "''")
                sql.append(f"COPY raw_{table} ({', '.join(cols)}) FROM '{quoted}' WITH (FORMAT csv, HEADER true);")
        self.psql("\n".join(sql))

    def run(self, sql):
        self.psql(sql)

    def query_one(self, sql):
        """The one row of a query, as {column: text or None}."""
        names, values = self.psql(sql, rows=True).strip().split("\n")
        return {n: (v or None) for n, v in zip(names.split("\t"), values.split("\t"))}


class DuckDB:
    def __init__(self, path, threads):
        import duckdb
        Path(path).unlink(missing_ok=True)
        self.con = duckdb.connect(path)
        self.con.execute(f"SET threads = {int(threads)}")

    def create(self):
        pass

    def load(self, directories):
        landed = list(batches(directories))
        for file, table, cols in source_files():
            columns = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in cols) + "}"
            parts = []
            for batch, path in ((b, p) for b, f, p in landed if f == file):
                quoted = str(path).replace("'", "''")
                # Insertion order is file order (preserve_insertion_order is
                # on), so rowid is the row's position in its file.
                self.con.execute(f"CREATE TABLE raw_{table}_{batch} AS SELECT * FROM read_csv('{quoted}', header = true, "
                                 f"columns = {columns}, quote = '\"', escape = '\"', auto_detect = false)")
                parts.append(f"SELECT {batch} AS batch, rowid + 1 AS rn, * FROM raw_{table}_{batch}")
            if not parts:  # no batch has the file: an empty table of its columns
                parts = [f"SELECT NULL::INTEGER AS batch, NULL::BIGINT AS rn, "
                         f"{', '.join('NULL::VARCHAR AS ' + c for c in cols)} WHERE false"]
            self.con.execute(f"CREATE VIEW raw_{table} AS " + " UNION ALL ".join(parts))

    def run(self, sql):
        self.con.execute(sql)

    def query_one(self, sql):
        result = self.con.execute(sql)
        names = [d[0] for d in result.description]
        return {n: (None if v is None else str(v)) for n, v in zip(names, result.fetchone())}


def fingerprint(engine, sql):
    """Gold's counts and sums, as text both engines print alike."""
    return {n: (None if v is None else format(Decimal(v).normalize(), "f")) for n, v in engine.query_one(sql).items()}


def main():
    kind = sys.argv[1]
    times = {}
    steps = dict(phases())
    if kind == "extension":
        engine = Postgres(sys.argv[2])
        sql = steps["fingerprint"].replace("FROM g_customer_360", "FROM gold.unified_customer_360") \
                                  .replace("FROM g_bridge", "FROM gold.identity_bridge")
        print(json.dumps({"fingerprint": fingerprint(engine, sql)}))
        return
    if kind == "postgres" and len(sys.argv) > 3:
        engine, directories, prelude = Postgres(sys.argv[2]), sys.argv[3:], "postgres"
    elif kind == "postgres-schema" and len(sys.argv) > 4:
        engine, directories, prelude = Postgres(sys.argv[2], schema=sys.argv[3]), sys.argv[4:], "postgres"
    elif kind == "duckdb" and len(sys.argv) > 3:
        engine, directories, prelude = DuckDB(sys.argv[2], os.environ.get("PEER_THREADS", "2")), sys.argv[3:], "duckdb"
    else:
        sys.exit(__doc__)
    engine.create()
    engine.run((HERE / f"prelude.{prelude}.sql").read_text())
    started = time.monotonic()
    engine.load(directories)
    times["load"] = round((time.monotonic() - started) * 1000)
    for name in ("silver", "gold"):
        started = time.monotonic()
        engine.run(steps[name])
        times[name] = round((time.monotonic() - started) * 1000)
    print(json.dumps({"ms": times, "fingerprint": fingerprint(engine, steps["fingerprint"])}))


if __name__ == "__main__":
    main()
