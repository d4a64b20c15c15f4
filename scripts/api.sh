#!/usr/bin/env bash
# PostgREST serving the local cluster's api schema (docker/postgrest.conf),
# behind Caddy (docker/Caddyfile): HTTPS from a local CA, compression, and
# request-duration histograms on Caddy's admin /metrics.
#
#   scripts/api.sh start                  start both (idempotent); waits until they answer
#   scripts/api.sh stop
#   scripts/api.sh token [role] [seconds] print a signed HS256 JWT
#                                         (default: golden360_reader, valid 1 hour)
#   scripts/api.sh url                    print the API's base URL (HTTPS, through Caddy)
#   scripts/api.sh ca                     print the local CA's root certificate file (curl --cacert)
#   scripts/api.sh docs                   print Swagger UI's URL
#
# The JWT secret is generated once into $run/secrets/jwt-secret: a file of
# mode 0600 in a directory of mode 0700, both created exclusively and
# refused if anyone else owns them or may read them. It never appears on a
# command line: PostgREST gets it in its environment, the token minter on
# a pipe. G360_JWT_SECRET (an environment variable) overrides the file.
# Ports: G360_API_PORT (PostgREST, 3000), G360_API_ADMIN_PORT (3001),
# G360_HTTPS_PORT (Caddy, 8443), G360_DOCS_PORT (Swagger UI, 8444),
# G360_CADDY_ADMIN_PORT (Caddy's admin and metrics, 2019); database:
# G360_API_DB (golden360).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
run=$(run_dir)
port=${G360_API_PORT:-3000}
admin_port=${G360_API_ADMIN_PORT:-3001}
database=${G360_API_DB:-golden360}
https_port=${G360_HTTPS_PORT:-8443}
caddy_admin_port=${G360_CADDY_ADMIN_PORT:-2019}
docs_port=${G360_DOCS_PORT:-8444}
swagger_ui=$here/.run/tools/swagger-ui-dist-5.17.14
pidfile=$run/postgrest-$port.pid
caddy_pidfile=$run/caddy-$https_port.pid
caddy_data=$run/caddy
ca=$caddy_data/pki/authorities/local/root.crt
postgrest=$here/.run/tools/postgrest-12.0.2/postgrest

secrets=$run/secrets

die() { echo "api.sh: $*" >&2; exit 1; }

# owned_privately PATH MODE: PATH is not a symlink, is ours, and has MODE.
owned_privately() {
    [ ! -L "$1" ] && [ "$(stat -c '%u %a' "$1")" = "$(id -u) $2" ]
}

secret() {
    if [ -n "${G360_JWT_SECRET:-}" ]; then
        printf '%s' "$G360_JWT_SECRET"
        return
    fi
    if [ ! -e "$secrets" ]; then
        mkdir -p "$run"
        mkdir -m 0700 "$secrets" || die "cannot create $secrets"
    fi
    owned_privately "$secrets" 700 || die "$secrets must be a directory of mode 0700 owned by $(id -un); refusing it"
    if [ ! -e "$secrets/jwt-secret" ]; then
        (umask 077 && set -o noclobber && openssl rand -hex 32 >"$secrets/jwt-secret") ||
            die "cannot create $secrets/jwt-secret"
    fi
    owned_privately "$secrets/jwt-secret" 600 ||
        die "$secrets/jwt-secret must be a file of mode 0600 owned by $(id -un); refusing it"
    tr -d '\n' <"$secrets/jwt-secret"
}

b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }

case "${1:-}" in
start)
    [ -x "$postgrest" ] || "$here/scripts/setup.sh"
    { command -v caddy >/dev/null && [ -s "$swagger_ui/swagger-ui-bundle.js" ]; } || "$here/scripts/setup.sh"
    if daemon_running "$pidfile"; then
        echo "PostgREST already running on port $port (pid $(cat "$pidfile"))"
    else
        eval "$("$here/scripts/cluster.sh" env)"
        mkdir -p "$run"
        # Exported, not passed as arguments: a process's environment is
        # readable by its owner only, its command line by everyone.
        PGRST_JWT_SECRET=$(secret)
        export PGRST_JWT_SECRET PGRST_SERVER_PORT=$port PGRST_ADMIN_SERVER_PORT=$admin_port
        export PGRST_DB_URI="postgresql:///$database?host=$PGHOST&port=$PGPORT&user=golden360_authenticator&application_name=postgrest"
        export PGRST_OPENAPI_SERVER_PROXY_URI="https://localhost:$https_port"
        # The runtime options the docker stack gives it too; G360_POSTGREST_RTS
        # (given on the command line) overrides them.
        GHCRTS=$(sed -n 's/^GHCRTS=//p' "$here/docker/postgrest.env")
        export GHCRTS
        daemon_start "$pidfile" "$run/postgrest-$port.log" PostgREST \
            "curl -fs -o /dev/null http://127.0.0.1:$admin_port/ready" \
            "$postgrest" ${G360_POSTGREST_RTS:++RTS $G360_POSTGREST_RTS -RTS} "$here/docker/postgrest.conf"
        echo "PostgREST on http://127.0.0.1:$port (admin :$admin_port, database $database)"
    fi
    if daemon_running "$caddy_pidfile"; then
        echo "Caddy already running on port $https_port (pid $(cat "$caddy_pidfile"))"
    else
        mkdir -p "$caddy_data"
        export G360_CADDY_ADMIN=127.0.0.1:$caddy_admin_port G360_CADDY_DATA=$caddy_data
        export G360_HOST=localhost G360_HTTPS_PORT=$https_port G360_DOCS_PORT=$docs_port G360_UPSTREAM=127.0.0.1:$port
        export G360_SWAGGER_UI=$swagger_ui G360_SWAGGER_CONFIG=$here/docker/swagger-ui
        daemon_start "$caddy_pidfile" "$run/caddy-$https_port.log" Caddy \
            "[ -s '$ca' ] && curl -fs -o /dev/null --cacert '$ca' https://localhost:$https_port/rpc/health" \
            caddy run --config "$here/docker/Caddyfile" --adapter caddyfile
        echo "Caddy on https://localhost:$https_port (Swagger UI: https://localhost:$docs_port; metrics: http://127.0.0.1:$caddy_admin_port/metrics; CA: $ca)"
    fi
    ;;
stop)
    daemon_stop "$caddy_pidfile"
    daemon_stop "$pidfile"
    ;;
token)
    role=${2:-golden360_reader}
    ttl=${3:-3600}
    header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
    payload=$(printf '{"role":"%s","exp":%d}' "$role" "$(($(date +%s) + ttl))" | b64url)
    # HMAC-SHA256 with the key read from a pipe (openssl dgst -hmac would
    # take it as an argument, visible to every user in ps).
    signature=$(secret | python3 -c '
import base64, hashlib, hmac, sys
key = sys.stdin.buffer.read()
mac = hmac.new(key, sys.argv[1].encode(), hashlib.sha256).digest()
print(base64.urlsafe_b64encode(mac).rstrip(b"=").decode())' "$header.$payload") || exit 1
    echo "$header.$payload.$signature"
    ;;
url)
    echo "https://localhost:$https_port"
    ;;
ca)
    echo "$ca"
    ;;
docs)
    echo "https://localhost:$docs_port"
    ;;
*)
    echo "usage: $0 start|stop|token [role] [seconds]|url|ca|docs" >&2
    exit 2
    ;;
esac
