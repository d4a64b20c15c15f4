#!/usr/bin/env bash
# Metrics without Docker: prometheus-postgres-exporter with the project's
# queries file (golden360_* metrics), and Debian's Prometheus scraping it
# and Caddy (scripts/api.sh) with docker/alerts.yml loaded.
#
#   scripts/metrics.sh start    start both (idempotent)
#   scripts/metrics.sh stop
#   scripts/metrics.sh url      print Prometheus's URL
#
# Ports: G360_METRICS_PORT (exporter, 9187), G360_PROMETHEUS_PORT (9090),
# G360_CADDY_ADMIN_PORT (Caddy's metrics, 2019); G360_SCRAPE_INTERVAL (30s).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
run=$(run_dir)
port=${G360_METRICS_PORT:-9187}
prometheus_port=${G360_PROMETHEUS_PORT:-9090}
caddy_admin_port=${G360_CADDY_ADMIN_PORT:-2019}
pidfile=$run/exporter-$port.pid
prometheus_pidfile=$run/prometheus-$prometheus_port.pid

case "${1:-}" in
start)
    command -v prometheus-postgres-exporter >/dev/null && command -v prometheus >/dev/null || "$here/scripts/setup.sh"
    mkdir -p "$run"
    if daemon_running "$pidfile"; then
        echo "exporter already running on port $port (pid $(cat "$pidfile"))"
    else
        eval "$("$here/scripts/cluster.sh" env)"
        daemon_start "$pidfile" "$run/exporter-$port.log" "the exporter (golden360_ metrics)" \
            "curl -fs http://127.0.0.1:$port/metrics | grep '^golden360_' >/dev/null" \
            env DATA_SOURCE_NAME="host=$PGHOST port=$PGPORT user=golden360_monitor dbname=${G360_METRICS_DB:-golden360} sslmode=disable" \
            prometheus-postgres-exporter --extend.query-path="$here/docker/exporter-queries.yaml" \
            --web.listen-address="127.0.0.1:$port"
        echo "metrics on http://127.0.0.1:$port/metrics"
    fi
    if daemon_running "$prometheus_pidfile"; then
        echo "Prometheus already running on port $prometheus_port (pid $(cat "$prometheus_pidfile"))"
    else
        # docker/prometheus.yml with this machine's targets and paths.
        config=$run/prometheus-$prometheus_port.yml
        interval=${G360_SCRAPE_INTERVAL:-30s}
        sed -e "s|\"exporter:9187\"|\"127.0.0.1:$port\"|; s|\"caddy:2019\"|\"127.0.0.1:$caddy_admin_port\"|" \
            -e "s|/etc/prometheus/alerts.yml|$here/docker/alerts.yml|" \
            -e "s|^\(  scrape_interval:\).*|\1 $interval|; s|^\(  evaluation_interval:\).*|\1 $interval|" \
            "$here/docker/prometheus.yml" >"$config"
        daemon_start "$prometheus_pidfile" "$run/prometheus-$prometheus_port.log" Prometheus \
            "curl -fs -o /dev/null http://127.0.0.1:$prometheus_port/-/ready" \
            prometheus --config.file="$config" --storage.tsdb.path="$run/prometheus-$prometheus_port" \
            --web.listen-address="127.0.0.1:$prometheus_port"
        echo "Prometheus on http://127.0.0.1:$prometheus_port (rules: docker/alerts.yml)"
    fi
    ;;
stop)
    daemon_stop "$prometheus_pidfile"
    daemon_stop "$pidfile"
    ;;
url)
    echo "http://127.0.0.1:$prometheus_port"
    ;;
*)
    echo "usage: $0 start|stop|url" >&2
    exit 2
    ;;
esac
