#!/usr/bin/env bash
# A local PostgreSQL 15 cluster for the demo, tests and benchmarks, owned by
# the OS user postgres (PostgreSQL refuses to run as root).
#
#   scripts/cluster.sh start   initdb if needed, start (idempotent)
#   scripts/cluster.sh stop
#   scripts/cluster.sh psql [args]
#   scripts/cluster.sh env     print the PG* variables to eval
#
# State lives in $G360_RUN (default: /var/tmp/golden360-<hash of this
# checkout's path>, which the postgres OS user can reach wherever the
# checkout is); the port is $G360_PGPORT (default 5436), so it never collides
# with a system cluster.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
run=$(run_dir)
port=${G360_PGPORT:-5436}
bin=/usr/lib/postgresql/15/bin
pgdata=$run/pgdata

as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

case "${1:-}" in
start)
    mkdir -p "$run"
    chown postgres "$run"
    if [ ! -s "$pgdata/PG_VERSION" ]; then
        as_postgres "$bin/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$run/initdb.log"
        cat >>"$pgdata/postgresql.conf" <<CONF
# golden360 development cluster
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$run'
shared_preload_libraries = 'pg_cron'
cron.database_name = 'golden360'
max_connections = 200
shared_buffers = 512MB
work_mem = 64MB
maintenance_work_mem = 512MB
max_wal_size = 4GB
CONF
    fi
    if ! as_postgres "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
        as_postgres "$bin/pg_ctl" -D "$pgdata" -l "$run/postgres.log" -w start >/dev/null
    fi
    as_postgres "$bin/psql" -h "$run" -p "$port" -U postgres -d postgres -Atqc \
        "SELECT 1 FROM pg_database WHERE datname = 'golden360'" | grep -q 1 ||
        as_postgres "$bin/createdb" -h "$run" -p "$port" -U postgres golden360
    ;;
stop)
    if [ -d "$pgdata" ]; then as_postgres "$bin/pg_ctl" -D "$pgdata" -m fast stop >/dev/null 2>&1 || true; fi
    ;;
psql)
    shift
    exec "$bin/psql" -h "$run" -p "$port" -U postgres -d golden360 "$@"
    ;;
env)
    echo "export PGHOST=$run PGPORT=$port PGUSER=postgres PGDATABASE=golden360"
    ;;
*)
    echo "usage: $0 start|stop|psql [args]|env" >&2
    exit 2
    ;;
esac
