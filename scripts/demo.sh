#!/usr/bin/env bash
# The main job on the bundled default: set up, build and install the
# extension, start a local cluster, generate the Olist-shaped sample
# (DEMO_SCALE, default 1 = Olist size) and ingest it into bronze.
# Safe to run twice: the second run reports every file skipped_duplicate.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
"$here/scripts/setup.sh"
"$here/scripts/install-extension.sh"
"$here/scripts/cluster.sh" start
data=$(sample_dir "${DEMO_SCALE:-1}")
db() { "$here/scripts/cluster.sh" psql -v ON_ERROR_STOP=1 "$@"; }
db -qc "CREATE EXTENSION IF NOT EXISTS golden360"
db -qc "ALTER EXTENSION golden360 UPDATE" 2>/dev/null || true
echo
echo "Ingesting the generated sample in $data into bronze:"
db -c "SELECT file_name, rows, rejected, status, batch_id, left(sha256, 16) AS sha256_prefix, bytes
         FROM golden360.ingest_bronze('$data')"
echo "Next: $here/scripts/cluster.sh psql   (then e.g. SELECT * FROM golden360.bronze_batches;)"
