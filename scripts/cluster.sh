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
# with a system cluster. $G360_MAX_WAL_SIZE (default 4GB, so a benchmark's
# load is not paced by checkpoints) bounds pg_wal: the test suite asks for
# less, to fit a small CI disk. $G360_PRELOAD names libraries to load
# before pg_cron (scripts/citus.sh starts its nodes with citus, which must
# come first).
#
# No other OS user can reach the cluster: it listens on no TCP address, only
# on a Unix socket in $G360_RUN/socket, a directory of mode 0700 owned by
# postgres. Only root and postgres, who could become the superuser anyway,
# can connect; pg_hba.conf has nothing but that socket.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
run=$(run_dir)
port=${G360_PGPORT:-5436}
bin=/usr/lib/postgresql/15/bin
pgdata=$run/pgdata
socket=$run/socket

as_postgres() {
    if [ "$(id -un)" = postgres ]; then "$@"; else runuser -u postgres -- "$@"; fi
}

case "${1:-}" in
start)
    mkdir -p "$run" "$socket"
    chown postgres "$run" "$socket"
    chmod 0700 "$socket"
    if [ ! -s "$pgdata/PG_VERSION" ]; then
        as_postgres "$bin/initdb" -D "$pgdata" -U postgres --auth=reject -E UTF8 --locale=C.UTF-8 >"$run/initdb.log"
        echo "include 'golden360.conf'" >>"$pgdata/postgresql.conf"
    fi
    # Rewritten at every start, so a cluster made by an older script gets
    # today's settings (a change restarts it).
    settings=$(cat <<CONF
# golden360 development cluster (scripts/cluster.sh writes this file)
port = $port
listen_addresses = ''
unix_socket_directories = '$socket'
unix_socket_permissions = 0700
shared_preload_libraries = '${G360_PRELOAD:+$G360_PRELOAD,}pg_cron'
cron.database_name = 'golden360'
cron.host = '$socket'
max_connections = 200
shared_buffers = 512MB
work_mem = 64MB
maintenance_work_mem = 512MB
max_wal_size = ${G360_MAX_WAL_SIZE:-4GB}
# Structured logs: one JSON object per line in pgdata/log/postgresql.json.
logging_collector = on
log_destination = 'jsonlog'
log_filename = 'postgresql'
log_rotation_age = 0
log_rotation_size = 0
CONF
)
    hba="# golden360 development cluster: the private socket only (see scripts/cluster.sh)
local all all trust"
    changed=
    if [ "$(cat "$pgdata/golden360.conf" 2>/dev/null)" != "$settings" ]; then
        printf '%s\n' "$settings" | as_postgres tee "$pgdata/golden360.conf" >/dev/null
        changed=1
    fi
    if [ "$(cat "$pgdata/pg_hba.conf")" != "$hba" ]; then
        printf '%s\n' "$hba" | as_postgres tee "$pgdata/pg_hba.conf" >/dev/null
        changed=1
    fi
    if as_postgres "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
        if [ -n "$changed" ]; then
            as_postgres "$bin/pg_ctl" -D "$pgdata" -l "$run/postgres.log" -w -m fast restart >/dev/null
        fi
    else
        as_postgres "$bin/pg_ctl" -D "$pgdata" -l "$run/postgres.log" -w start >/dev/null
    fi
    as_postgres "$bin/psql" -h "$socket" -p "$port" -U postgres -d postgres -Atqc \
        "SELECT 1 FROM pg_database WHERE datname = 'golden360'" | grep -q 1 ||
        as_postgres "$bin/createdb" -h "$socket" -p "$port" -U postgres golden360
    ;;
stop)
    if [ -d "$pgdata" ]; then as_postgres "$bin/pg_ctl" -D "$pgdata" -m fast stop >/dev/null 2>&1 || true; fi
    ;;
psql)
    shift
    exec "$bin/psql" -h "$socket" -p "$port" -U postgres -d golden360 "$@"
    ;;
env)
    echo "export PGHOST=$socket PGPORT=$port PGUSER=postgres PGDATABASE=golden360 G360_PGLOG=$pgdata/log/postgresql.json"
    ;;
*)
    echo "usage: $0 start|stop|psql [args]|env" >&2
    exit 2
    ;;
esac
