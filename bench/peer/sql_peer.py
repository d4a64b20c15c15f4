#!/usr/bin/env python3
"""The SPEC's pipeline as plain SQL, on PostgreSQL or DuckDB: issue 11's peers.

    sql_peer.py postgres DIR DB     (PG* variables name the server; DB is
                                     dropped and created, collation C)
    sql_peer.py duckdb DIR FILE [THREADS]
    sql_peer.py extension DB        (the fingerprint of the extension's gold)

Loads the nine files of DIR (names, tables and columns from
`olist-gen --list-files`; $G360_OLIST_GEN names the binary), runs
sql/prelude.<engine>.sql and the phases of sql/medallion.sql, and prints one
JSON line: each phase's milliseconds and gold's fingerprint (counts and exact
sums), which bench/scale.sh compares with the extension's.
"""
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


def source_files():
    gen = os.environ.get("G360_OLIST_GEN", "olist-gen")
    lines = subprocess.run([gen, "--list-files"], check=True, capture_output=True, text=True).stdout
    return [(f, t, cols.split(",")) for f, t, cols in (l.split("\t") for l in lines.splitlines())]


class Postgres:
    def __init__(self, db, admin_db="postgres"):
        self.db = db
        self.admin_db = admin_db

    def psql(self, sql, db=None, rows=False):
        args = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db or self.db]
        if rows:
            args += ["-A", "-F", "\t", "-P", "footer=off"]
        done = subprocess.run(args, input=sql, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"psql: {done.stderr.strip()}")
        return done.stdout

    def create(self):
        self.psql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)', db=self.admin_db)
        self.psql(f"""CREATE DATABASE "{self.db}" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C.UTF-8'""",
                  db=self.admin_db)

    def load(self, directory):
        sql = []
        for file, table, cols in source_files():
            sql.append(f"CREATE TABLE raw_{table} (rn bigserial, {', '.join(c + ' text' for c in cols)});")
            path = str(Path(directory, file).resolve()).replace("'", "''")
            sql.append(f"COPY raw_{table} ({', '.join(cols)}) FROM '{path}' WITH (FORMAT csv, HEADER true);")
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

    def load(self, directory):
        for file, table, cols in source_files():
            columns = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in cols) + "}"
            path = str(Path(directory, file).resolve()).replace("'", "''")
            # Insertion order is file order (preserve_insertion_order is on),
            # so rowid is the row's position in its file.
            self.con.execute(f"CREATE TABLE raw_{table}_rows AS SELECT * FROM read_csv('{path}', header = true, "
                             f"columns = {columns}, quote = '\"', escape = '\"', auto_detect = false)")
            self.con.execute(f"CREATE VIEW raw_{table} AS SELECT rowid AS rn, * FROM raw_{table}_rows")

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
    directory = sys.argv[2]
    if kind == "postgres":
        engine = Postgres(sys.argv[3])
    elif kind == "duckdb":
        engine = DuckDB(sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else os.cpu_count())
    else:
        sys.exit(__doc__)
    engine.create()
    engine.run((HERE / f"prelude.{kind}.sql").read_text())
    started = time.monotonic()
    engine.load(directory)
    times["load"] = round((time.monotonic() - started) * 1000)
    for name in ("silver", "gold"):
        started = time.monotonic()
        engine.run(steps[name])
        times[name] = round((time.monotonic() - started) * 1000)
    print(json.dumps({"ms": times, "fingerprint": fingerprint(engine, steps["fingerprint"])}))


if __name__ == "__main__":
    main()
