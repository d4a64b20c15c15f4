#!/usr/bin/env bash
# Silver benchmark (issue 3): refresh_silver() on the generated scale-1
# sample, next to the bronze ingestion of the same data, in a fresh database
# each run; median of $RUNS. Prints silver's time per table (the Rust build)
# and the rest of the procedure (checks, index builds, ANALYZE, swap).
# Target: all of silver in at most 2x the bronze ingestion time.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
bench_setup

bronze_runs=() silver_runs=() tables=""
cat "$data"/*.csv >/dev/null
for run in $(seq "$RUNS"); do
    bench_psql -c "DROP EXTENSION IF EXISTS golden360 CASCADE" -c "CREATE EXTENSION golden360" -c "CHECKPOINT"
    t0=$(now_ms)
    bench_psql -c "SELECT count(*) FROM golden360.ingest_bronze('$data')" >/dev/null
    t1=$(now_ms)
    bench_psql -c "CALL golden360.refresh_silver()" 2>/dev/null
    t2=$(now_ms)
    bronze_runs+=($((t1 - t0))) silver_runs+=($((t2 - t1)))
    this=$(bench_psql -F ' ' -c "SELECT table_name, round(millis), bronze_rows, silver_rows, duplicates, quarantined
                                FROM golden360.silver_runs ORDER BY millis DESC")
    [ "$((t2 - t1))" = "$(printf '%s\n' "${silver_runs[@]}" | median)" ] && tables=$this
    [ -z "$tables" ] && tables=$this
done
b=$(printf '%s\n' "${bronze_runs[@]}" | median)
s=$(printf '%s\n' "${silver_runs[@]}" | median)
built=$(echo "$tables" | awk '{s+=$2} END {print s}')

echo
echo "refresh_silver vs ingest_bronze — generated sample, scale 1, median of $RUNS (runs: bronze ${bronze_runs[*]}; silver ${silver_runs[*]})"
printf '%-22s %9s %10s %10s %10s %11s\n' "silver table" "ms" "bronze" "silver" "dups" "quarantined"
echo "$tables" | while read -r t ms br sr du qu; do printf '%-22s %9d %10d %10d %10d %11d\n' "$t" "$ms" "$br" "$sr" "$du" "$qu"; done
printf '%-22s %9d\n' "checks+indexes+swap" $((s - built))
printf '%-22s %9d\n' "silver total" "$s"
printf '%-22s %9d\n' "bronze ingestion" "$b"
printf 'silver / bronze: %.2fx (target <= 2.00x)\n' "$(echo "$s / $b" | bc -l)"

# The same full build with and without a background worker (geolocation's
# pass 1 beside the other tables, golden360.build_workers), alternating,
# over the bronze just loaded.
rebuild() { # build_workers -> ms
    local t0; t0=$(now_ms)
    bench_psql -c "SET golden360.build_workers = $1" -c "SELECT golden360_internal.silver_refresh(true)" >/dev/null 2>&1
    echo $(( $(now_ms) - t0 ))
}
with=() without=()
for _ in $(seq "$RUNS"); do without+=("$(rebuild 0)"); with+=("$(rebuild 1)"); done
w=$(printf '%s\n' "${with[@]}" | median)
wo=$(printf '%s\n' "${without[@]}" | median)
printf 'full rebuild with a background worker: %d ms, without: %d ms (%.2fx)   runs: with %s; without %s\n' \
    "$w" "$wo" "$(echo "$w / $wo" | bc -l)" "${with[*]}" "${without[*]}"
