#!/usr/bin/env bash
# API benchmark: wrk against the project's API on the scale-1 sample, a
# reader JWT on every request, next to the seed's stack done well as a peer
# (bench/peer/app.py: FastAPI + Pydantic + asyncpg, 2 uvicorn workers with
# uvloop and httptools, prepared statements, HS256 verified per request with
# a 1 h cache, in a venv this script makes from PyPI), in the same run:
#   lookup   GET /customer_360?golden_id=eq.<random id> (one object), 16 and 64 connections
#   segment  GET /customer_360?ltv_segment=eq.<segment>&order=total_spend.desc,golden_id&limit=50
#            &offset=<one of the first 20 pages>, 16 connections
# Engines: PostgREST (plain HTTP, 127.0.0.1), PostgREST through Caddy
# (HTTPS, compression), the FastAPI peer. ROUNDS rounds (default 2), the
# engines interleaved within each, so drift on this noisy machine hits all.
# Targets: PostgREST req/s >= the peer's at both concurrencies (aiming at
# 1.2x), P95 <= the peer's; Caddy costs <= 10% of throughput.
# PostgREST's knobs: PGRST_DB_POOL (docker/postgrest.conf: 10) and
# G360_POSTGREST_RTS (GHC runtime options beyond docker/postgrest.env's GHCRTS,
# e.g. "-A64m").
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
bench_setup
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-2}
export G360_API_PORT=3100 G360_API_ADMIN_PORT=3101 G360_HTTPS_PORT=3443 G360_DOCS_PORT=3444 G360_CADDY_ADMIN_PORT=3019
export G360_API_DB=$BENCH_DB G360_JWT_SECRET=${G360_JWT_SECRET:-bench-secret-$(openssl rand -hex 16)}
peer_port=3200
"$here/scripts/api.sh" stop
bench_psql -c "CREATE EXTENSION golden360" -c "SET golden360.quality_gate = warn" -c "CALL golden360.run_pipeline('$data')" 2>/dev/null
# The peer's login: the reader's rights, as PostgREST has them per request.
bench_psql -c "DO \$\$ BEGIN CREATE ROLE g360_bench_peer LOGIN IN ROLE golden360_reader; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$"

venv=$(bench_venv)
eval "$("$here/scripts/cluster.sh" env)"
"$here/scripts/api.sh" start >/dev/null
scratch=$(mktemp -d)
(cd "$here/bench/peer" && PEER_JWT_SECRET=$G360_JWT_SECRET \
    PEER_DSN="postgresql:///$BENCH_DB?host=$PGHOST&port=$PGPORT&user=g360_bench_peer" \
    nohup "$venv/bin/uvicorn" app:app --host 127.0.0.1 --port $peer_port --workers 2 --loop uvloop --http httptools \
    --no-access-log >"$scratch/peer.log" 2>&1 & echo $! >"$scratch/peer.pid")
# uvicorn's workers outlive a signal to the master alone: stop them all.
trap 'pkill -f "uvicorn app:app --host 127.0.0.1 --port $peer_port" || true; rm -rf "$scratch"; "$here/scripts/api.sh" stop' EXIT
for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$peer_port/docs" && break; sleep 0.1; done

export WRK_AUTH="Bearer $("$here/scripts/api.sh" token golden360_reader 86400)"
people=$(bench_psql -c "SELECT count(*) FROM gold.unified_customer_360")
bench_psql -c "SELECT golden_id FROM gold.unified_customer_360 ORDER BY random() LIMIT 20000" | sed "s|^|/customer_360?golden_id=eq.|" >"$scratch/lookup"
bench_psql -c "SELECT ltv_segment FROM gold.unified_customer_360 GROUP BY 1" | while read -r segment; do
    for _ in $(seq 50); do
        echo "/customer_360?ltv_segment=eq.$segment&order=total_spend.desc,golden_id&limit=50&offset=$(((RANDOM % 20) * 50))"
    done
done >"$scratch/segment"
declare -A url=([postgrest]="http://127.0.0.1:$G360_API_PORT" [caddy]="https://localhost:$G360_HTTPS_PORT" [fastapi]="http://127.0.0.1:$peer_port")
object="Accept: application/vnd.pgrst.object+json"

# wrk_run URL PATHS CONNECTIONS [extra header]: prints "rps p50 p95 p99 non2xx errors"
wrk_run() {
    WRK_PATHS=$2 wrk -t2 -c"$3" -d"${DURATION}s" --timeout 10s -s "$here/bench/wrk-report.lua" \
        ${4:+-H "$4"} "$1" | awk '/^RESULT/ {print $2, $3, $4, $5, $6, $7}'
}
# A correct answer from each engine before any timing.
for engine in postgrest caddy fastapi; do
    path=$(head -n 1 "$scratch/lookup")
    code=$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: $WRK_AUTH" -H "$object" "${url[$engine]}$path")
    [ "$code" = 200 ] || { echo "$engine answered $code to $path" >&2; exit 1; }
done
# Warm every engine and case (schema and JWT caches, shared buffers, JIT).
for engine in postgrest caddy fastapi; do
    DURATION=3 wrk_run "${url[$engine]}" "$scratch/lookup" 16 "$object" >/dev/null
    DURATION=3 wrk_run "${url[$engine]}" "$scratch/segment" 16 >/dev/null
done

printf '\nThe API on the scale-1 sample (%s people): %s s per case, %s rounds, JWT on every request\n' "$people" "$DURATION" "$ROUNDS"
printf '%-7s %-26s %-12s %9s %8s %8s %8s %7s\n' round case engine "req/s" "p50 ms" "p95 ms" "p99 ms" errors
for round in $(seq "$ROUNDS"); do
    for case in lookup-16 lookup-64 segment-16; do
        for engine in postgrest caddy fastapi; do
            c=${case#*-}; kind=${case%-*}
            header=; [ "$kind" = lookup ] && header=$object
            wrk_run "${url[$engine]}" "$scratch/$kind" "$c" "$header" | {
                read -r rps p50 p95 p99 bad err
                printf '%-7s %-26s %-12s %9s %8s %8s %8s %7s\n' "$round" "$kind, c$c" "$engine" "$rps" "$p50" "$p95" "$p99" "$((bad + err))"
                echo "$case $engine $rps $p95" >>"$scratch/results"
            }
        done
    done
done
echo
# The lower median over the rounds (with two rounds: the lower), and the
# ratios the targets are about.
for case in lookup-16 lookup-64 segment-16; do
    med() { awk -v c="$case" -v e="$1" -v f="$2" '$1 == c && $2 == e {print $f}' "$scratch/results" | median; }
    pg=$(med postgrest 3) cd=$(med caddy 3) fa=$(med fastapi 3)
    printf '%-11s PostgREST %6s req/s (p95 %s ms), through Caddy %6s, FastAPI %6s (p95 %s ms): PostgREST/FastAPI %.2fx, Caddy costs %.1f%%\n' \
        "$case" "$pg" "$(med postgrest 4)" "$cd" "$fa" "$(med fastapi 4)" "$(echo "$pg / $fa" | bc -l)" "$(echo "100 * (1 - $cd / $pg)" | bc -l)"
done
