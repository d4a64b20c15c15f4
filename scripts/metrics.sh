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

running() { [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${1:-}" in
start)
    command -v prometheus-postgres-exporter >/dev/null || "$here/scripts/setup.sh"
    if running; then
        echo "exporter already running on port $port (pid $(cat "$pidfile"))"
        exit 0
    fi
    eval "$("$here/scripts/cluster.sh" env)"
    DATA_SOURCE_NAME="host=$PGHOST port=$PGPORT user=golden360_monitor dbname=${G360_METRICS_DB:-golden360} sslmode=disable" \
        nohup prometheus-postgres-exporter --extend.query-path="$here/docker/exporter-queries.yaml" \
        --web.listen-address="127.0.0.1:$port" >>"$run/exporter-$port.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 50); do
        if curl -fs "http://127.0.0.1:$port/metrics" | grep -q '^golden360_'; then
            echo "metrics on http://127.0.0.1:$port/metrics"
            exit 0
        fi
        running || break
        sleep 0.2
    done
    echo "the exporter serves no golden360_ metrics; its log ($run/exporter-$port.log) ends:" >&2
    tail -n 20 "$run/exporter-$port.log" >&2
    exit 1
    ;;
stop)
    if running; then kill "$(cat "$pidfile")"; fi
    rm -f "$pidfile"
    ;;
*)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
