#!/usr/bin/env bash
# The main job on the bundled default: set up, build and install the
# extension, start a local cluster, generate the Olist-shaped sample
# (DEMO_SCALE, default 1 = Olist size), ingest it into bronze, refresh
# silver and gold, and show one golden record. Safe to run twice: the second
# run reports every file skipped_duplicate and rebuilds the same layers.
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
echo "Refreshing silver (golden360.quality_gate = $(db -Atc "SHOW golden360.quality_gate" 2>/dev/null || echo error)):"
db -c "CALL golden360.refresh_silver()"
db -c "SELECT table_name, bronze_rows, silver_rows, duplicates, quarantined, round(millis) AS ms
         FROM golden360.silver_runs WHERE run_id = (SELECT max(run_id) FROM golden360.silver_runs)"
db -c "SELECT table_name, reason, count(*) AS rows FROM silver.quarantine GROUP BY 1, 2 ORDER BY 1, 2"
echo "Refreshing gold:"
db -c "CALL golden360.refresh_gold()"
db -c "SELECT ltv_segment, count(*) AS people, round(avg(total_spend), 2) AS avg_spend
         FROM gold.unified_customer_360 GROUP BY 1 ORDER BY min(total_spend)"
db -x -c "SELECT * FROM gold.unified_customer_360 WHERE order_count > 1 ORDER BY total_spend DESC, golden_id LIMIT 1"
echo "Next: $here/scripts/cluster.sh psql"
echo "  SELECT * FROM golden360.silver_rules;          -- every rule, its kind and reason"
echo "  SELECT * FROM golden360.quality_checks ORDER BY run_id DESC, table_name;"
