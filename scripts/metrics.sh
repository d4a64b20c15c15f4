#!/usr/bin/env bash
# prometheus-postgres-exporter (Debian package) with the project's queries
# file, in front of the local cluster: golden360_* metrics at
# http://127.0.0.1:${G360_METRICS_PORT:-9187}/metrics.
#
#   scripts/metrics.sh start    start (idempotent)
#   scripts/metrics.sh stop
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
run=$(run_dir)
port=${G360_METRICS_PORT:-9187}
pidfile=$run/exporter-$port.pid

case "${1:-}" in
start)
    command -v prometheus-postgres-exporter >/dev/null || "$here/scripts/setup.sh"
    if daemon_running "$pidfile"; then
        echo "exporter already running on port $port (pid $(cat "$pidfile"))"
        exit 0
    fi
    eval "$("$here/scripts/cluster.sh" env)"
    daemon_start "$pidfile" "$run/exporter-$port.log" "the exporter (golden360_ metrics)" \
        "curl -fs http://127.0.0.1:$port/metrics | grep -q '^golden360_'" \
        env DATA_SOURCE_NAME="host=$PGHOST port=$PGPORT user=golden360_monitor dbname=${G360_METRICS_DB:-golden360} sslmode=disable" \
        prometheus-postgres-exporter --extend.query-path="$here/docker/exporter-queries.yaml" \
        --web.listen-address="127.0.0.1:$port"
    echo "metrics on http://127.0.0.1:$port/metrics"
    ;;
stop)
    daemon_stop "$pidfile"
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
