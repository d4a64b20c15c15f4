#!/usr/bin/env bash
# PostgREST serving the local cluster's api schema, with the configuration
# kept in docker/postgrest.conf.
#
#   scripts/api.sh start                  start (idempotent); waits until /ready
#   scripts/api.sh stop
#   scripts/api.sh token [role] [seconds] print a signed HS256 JWT
#                                         (default: golden360_reader, valid 1 hour)
#   scripts/api.sh url                    print the API's base URL
#
# The JWT secret is generated once into $run/jwt-secret (mode 0600);
# G360_JWT_SECRET overrides it. Ports: G360_API_PORT (3000) and
# G360_API_ADMIN_PORT (3001); database: G360_API_DB (golden360).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
run=$(run_dir)
port=${G360_API_PORT:-3000}
admin_port=${G360_API_ADMIN_PORT:-3001}
database=${G360_API_DB:-golden360}
pidfile=$run/postgrest-$port.pid
postgrest=$here/.run/tools/postgrest-12.0.2/postgrest

secret() {
    if [ -n "${G360_JWT_SECRET:-}" ]; then
        printf '%s' "$G360_JWT_SECRET"
        return
    fi
    if [ ! -s "$run/jwt-secret" ]; then
        mkdir -p "$run"
        (umask 077 && openssl rand -hex 32 >"$run/jwt-secret")
    fi
    tr -d '\n' <"$run/jwt-secret"
}

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

case "${1:-}" in
start)
    [ -x "$postgrest" ] || "$here/scripts/setup.sh"
    if daemon_running "$pidfile"; then
        echo "PostgREST already running on port $port (pid $(cat "$pidfile"))"
        exit 0
    fi
    eval "$("$here/scripts/cluster.sh" env)"
    mkdir -p "$run"
    daemon_start "$pidfile" "$run/postgrest-$port.log" PostgREST \
        "curl -fs -o /dev/null http://127.0.0.1:$admin_port/ready" \
        env PGRST_DB_URI="postgresql:///$database?host=$PGHOST&port=$PGPORT&user=golden360_authenticator&application_name=postgrest" \
        PGRST_JWT_SECRET="$(secret)" PGRST_SERVER_PORT="$port" PGRST_ADMIN_SERVER_PORT="$admin_port" \
        "$postgrest" "$here/docker/postgrest.conf"
    echo "PostgREST on http://127.0.0.1:$port (admin :$admin_port, database $database)"
    ;;
stop)
    daemon_stop "$pidfile"
    ;;
token)
    role=${2:-golden360_reader}
    ttl=${3:-3600}
    header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
    payload=$(printf '{"role":"%s","exp":%d}' "$role" "$(($(date +%s) + ttl))" | b64url)
    signature=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -hmac "$(secret)" -binary | b64url)
    echo "$header.$payload.$signature"
    ;;
url)
    echo "http://127.0.0.1:$port"
    ;;
*)
    echo "usage: $0 start|stop|token [role] [seconds]|url" >&2
    exit 2
    ;;
esac
