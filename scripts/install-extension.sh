#!/usr/bin/env bash
# Builds the extension (release) and installs it into the system PostgreSQL 15.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config 2>&1 |
    grep -E "^error|Installing|Finished installing" || true
test -f /usr/lib/postgresql/15/lib/golden360.so
