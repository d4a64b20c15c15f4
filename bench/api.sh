#!/usr/bin/env bash
# API benchmark (issue 5): wrk against the real PostgREST on the scale-1
# sample, a reader JWT on every request.
#   lookup   GET /customer_360?golden_id=eq.<random id> (object), 16 and 64 connections
#   segment  GET /customer_360?ltv_segment=eq.<segment>&order=total_spend.desc,golden_id&limit=50
#            &offset=<one of the first 20 pages>
# Baselines in the same run: the same PostgREST serving a bare indexed copy
# of the gold rows (api.bench_bare: its own ceiling here), and pgbench with
# the same prepared point query (the database's limit).
# Targets: lookup P95 < 15 ms at 16 connections; API within 10% of bare.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
bench_setup
DURATION=${DURATION:-10}
export G360_API_PORT=3100 G360_API_ADMIN_PORT=3101 G360_API_DB=$BENCH_DB
"$here/scripts/api.sh" stop
bench_psql -c "CREATE EXTENSION golden360" -c "CALL golden360.run_pipeline('$data')" 2>/dev/null
# The ceiling: the same rows as a plain table with the same indexes.
bench_psql <<'SQL'
CREATE TABLE api.bench_bare (LIKE gold.unified_customer_360 INCLUDING INDEXES, days_since_last_order integer);
INSERT INTO api.bench_bare SELECT * FROM api.customer_360;
GRANT SELECT ON api.bench_bare TO golden360_reader;
ANALYZE api.bench_bare;
CREATE TABLE bench_ids AS SELECT row_number() OVER (ORDER BY golden_id) AS n, golden_id FROM gold.unified_customer_360;
CREATE UNIQUE INDEX ON bench_ids (n);
SQL
"$here/scripts/api.sh" start >/dev/null
api=$("$here/scripts/api.sh" url)
export WRK_AUTH="Bearer $("$here/scripts/api.sh" token golden360_reader 86400)"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"; "$here/scripts/api.sh" stop' EXIT
people=$(bench_psql -c "SELECT count(*) FROM gold.unified_customer_360")
bench_psql -c "SELECT golden_id FROM gold.unified_customer_360 ORDER BY random() LIMIT 20000" >"$scratch/ids"
for relation in customer_360 bench_bare; do
    sed "s|^|/$relation?golden_id=eq.|" "$scratch/ids" >"$scratch/lookup-$relation"
    bench_psql -c "SELECT ltv_segment, count(*) FROM gold.unified_customer_360 GROUP BY 1" |
        while IFS='|' read -r segment n; do
            for _ in $(seq 50); do
                echo "/$relation?ltv_segment=eq.$segment&order=total_spend.desc,golden_id&limit=50&offset=$(((RANDOM % 20) * 50))"
            done
        done >"$scratch/segment-$relation"
done

# wrk_run PATHS CONNECTIONS [extra header]: prints "rps p50 p95 p99 non2xx errors"
wrk_run() {
    WRK_PATHS=$1 wrk -t2 -c"$2" -d"${DURATION}s" --timeout 10s -s "$here/bench/wrk-report.lua" \
        ${3:+-H "$3"} "$api" | awk '/^RESULT/ {print $2, $3, $4, $5, $6, $7}'
}
# Warm every cache (PostgREST's schema and JWT caches, shared buffers) on
# every case first, so the order of the cases does not favour later ones.
for paths in "$scratch"/lookup-* "$scratch"/segment-*; do
    DURATION=3 wrk_run "$paths" 16 >/dev/null
done

printf '\nPostgREST 12.0.2 on the scale-1 sample (%s people), %ss per case, JWT on every request\n' "$people" "$DURATION"
printf '%-34s %9s %8s %8s %8s %7s\n' case "req/s" "p50 ms" "p95 ms" "p99 ms" "errors"
row() { read -r rps p50 p95 p99 bad err; printf '%-34s %9s %8s %8s %8s %7s\n' "$1" "$rps" "$p50" "$p95" "$p99" "$((bad + err))"; echo "$rps" >"$scratch/rps-$2"; }
for c in 16 64; do
    wrk_run "$scratch/lookup-customer_360" $c "Accept: application/vnd.pgrst.object+json" | row "lookup, api.customer_360, c$c" "api-$c"
    wrk_run "$scratch/lookup-bench_bare" $c "Accept: application/vnd.pgrst.object+json" | row "lookup, bare table (ceiling), c$c" "bare-$c"
done
wrk_run "$scratch/segment-customer_360" 16 | row "segment page of 50, api, c16" "seg-api"
wrk_run "$scratch/segment-bench_bare" 16 | row "segment page of 50, bare, c16" "seg-bare"

cat >"$scratch/point.sql" <<SQL
\set n random(1, $people)
SELECT c.* FROM api.customer_360 c WHERE c.golden_id = (SELECT golden_id FROM bench_ids WHERE n = :n);
SQL
eval "$("$here/scripts/cluster.sh" env)"
for c in 16 64; do
    pgbench -n -M prepared -c $c -j 2 -T "$DURATION" -f "$scratch/point.sql" "$BENCH_DB" 2>/dev/null |
        awk -v c=$c '/latency average/ {lat=$4} /^tps/ {tps=$3} END {printf "%-34s %9.0f %8s %8s %8s %7s\n", "pgbench same point query, c" c, tps, "avg " lat, "", "", 0}'
done
echo
for c in 16 64; do
    echo "lookup at c$c: API at $(echo "scale=1; 100 * $(cat "$scratch/rps-api-$c") / $(cat "$scratch/rps-bare-$c")" | bc)% of the bare-table rate"
done
echo "segment page: API at $(echo "scale=1; 100 * $(cat "$scratch/rps-seg-api") / $(cat "$scratch/rps-seg-bare")" | bc)% of the bare-table rate"
