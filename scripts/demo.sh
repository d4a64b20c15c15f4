#!/usr/bin/env bash
# The main job on the bundled default: set up, build and install the
# extension, start a local cluster, generate the Olist-shaped sample
# (DEMO_SCALE, default 1 = Olist size), run the pipeline (bronze -> silver
# -> gold) in one CALL, start PostgREST, and fetch one golden record over
# HTTP. Safe to run twice: the second run skips the files already in
# bronze, rebuilds silver and gold, and reuses the running PostgREST.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
"$here/scripts/setup.sh"
"$here/scripts/install-extension.sh"
"$here/scripts/cluster.sh" start
data=$(sample_dir "${DEMO_SCALE:-1}")
db() { "$here/scripts/cluster.sh" psql -v ON_ERROR_STOP=1 "$@"; }
# An older install is upgraded in place (ALTER EXTENSION ... UPDATE, through
# the sql/ upgrade scripts), never dropped: bronze is an audit trail. A
# development build of the same version whose SQL changed cannot be
# upgraded; the demo says so and stops, and leaves the data alone.
installed=$(db -Atc "SELECT extversion FROM pg_extension WHERE extname = 'golden360'")
available=$(db -Atc "SELECT default_version FROM pg_available_extensions WHERE name = 'golden360'")
script="$(/usr/lib/postgresql/15/bin/pg_config --sharedir)/extension/golden360--$available.sql"
stamp="$(run_dir)/demo-extension.sha256"
# pgrx emits the same statements in varying order: fingerprint them sorted.
built=$(grep -v '^--' "$script" | sort | sha256sum | cut -d' ' -f1)
if [ -n "$installed" ] && [ "$installed" != "$available" ]; then
    echo "Upgrading golden360 $installed to $available in database golden360 (ALTER EXTENSION golden360 UPDATE)"
    db -qc "ALTER EXTENSION golden360 UPDATE"
elif [ -n "$installed" ] && [ -s "$stamp" ] && [ "$(cat "$stamp")" != "$built" ]; then
    echo "The demo database holds a development build of golden360 $installed whose SQL differs from this build's," >&2
    echo "and a version cannot be upgraded to itself. Nothing was changed. To start the demo afresh:" >&2
    echo "  $here/scripts/cluster.sh psql -d postgres -c 'DROP DATABASE golden360' && $0" >&2
    exit 1
fi
db -qc "CREATE EXTENSION IF NOT EXISTS golden360"
echo "$built" >"$stamp"

echo
echo "Running the pipeline on the generated sample in $data:"
db -c "CALL golden360.run_pipeline('$data')"
db -c "SELECT step->>'step' AS step, step->>'rows' AS rows, step->>'ms' AS ms
         FROM golden360.pipeline_runs, jsonb_array_elements(steps) AS step
        WHERE run_id = (SELECT max(run_id) FROM golden360.pipeline_runs)"
db -c "SELECT ltv_segment, count(*) AS people, round(avg(total_spend), 2) AS avg_spend
         FROM gold.unified_customer_360 GROUP BY 1 ORDER BY min(total_spend)"

"$here/scripts/api.sh" start
api=$("$here/scripts/api.sh" url)
ca=$("$here/scripts/api.sh" ca)
token=$("$here/scripts/api.sh" token)
golden_id=$(db -Atc "SELECT golden_id FROM gold.unified_customer_360 WHERE order_count > 1
                      ORDER BY total_spend DESC, golden_id LIMIT 1")
source_id=$(db -Atc "SELECT customer_ids[cardinality(customer_ids)] FROM gold.unified_customer_360 WHERE golden_id = '$golden_id'")
echo
echo "One golden record over HTTP (GET $api/customer_360?golden_id=eq.$golden_id):"
curl -fsS --cacert "$ca" "$api/customer_360?golden_id=eq.$golden_id" \
     -H "Authorization: Bearer $token" -H "Accept: application/vnd.pgrst.object+json" |
    if command -v python3 >/dev/null; then python3 -m json.tool; else cat; echo; fi
echo
echo "Next, with a reader token (valid one hour):"
echo "  TOKEN=\$($here/scripts/api.sh token)"
echo "  curl --cacert $ca -H \"Authorization: Bearer \$TOKEN\" -H 'Accept: application/vnd.pgrst.object+json' '$api/customer_360?golden_id=eq.$golden_id'"
echo "  curl --cacert $ca -H \"Authorization: Bearer \$TOKEN\" -H 'Prefer: count=exact' '$api/customer_360?ltv_segment=eq.VIP&order=total_spend.desc&limit=10&offset=0'"
echo "  curl --cacert $ca -H \"Authorization: Bearer \$TOKEN\" '$api/rpc/customer_by_source_id?id=$source_id'   # any customer_id or customer_unique_id"
echo "  curl --cacert $ca '$api/rpc/health'"
echo "SQL: $here/scripts/cluster.sh psql   (SELECT * FROM golden360.pipeline_runs ORDER BY run_id DESC;)"
