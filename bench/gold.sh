#!/usr/bin/env bash
# Gold benchmark (issue 4): refresh_gold() on the generated scale-1 sample,
# next to refresh_silver() on the same data, in a fresh database each run;
# median of $RUNS. Target: gold in under half of silver's time.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
bench_setup
silver_runs=() gold_runs=()
for run in $(seq "$RUNS"); do
    bench_psql -c "DROP EXTENSION IF EXISTS golden360 CASCADE" -c "CREATE EXTENSION golden360" 2>/dev/null
    bench_psql -c "SELECT count(*) FROM golden360.ingest_bronze('$data')" >/dev/null
    bench_psql -c "CHECKPOINT"
    t0=$(now_ms)
    bench_psql -c "CALL golden360.refresh_silver()" 2>/dev/null
    t1=$(now_ms)
    bench_psql -c "CALL golden360.refresh_gold()" 2>/dev/null
    t2=$(now_ms)
    silver_runs+=($((t1 - t0))) gold_runs+=($((t2 - t1)))
done
# Then an incremental refresh: a new batch re-delivers the orders file with
# one more order of an existing customer.
changed=$(run_dir)/samples/scale-1-plus-one-order
rm -rf "$changed" && cp -r "$data" "$changed"
printf 'zz%030d,%s,delivered,2018-08-01 10:00:00,,,2018-08-05 10:00:00,2018-08-20\n' 1 \
    "$(sed -n 2p "$data/olist_customers_dataset.csv" | cut -d, -f1)" >>"$changed/olist_orders_dataset.csv"
chmod -R a+rX "$changed"
bench_psql -c "SELECT count(*) FROM golden360.ingest_bronze('$changed')" >/dev/null
bench_psql -c "CALL golden360.refresh_silver()" 2>/dev/null
t0=$(now_ms)
bench_psql -c "CALL golden360.refresh_gold()" 2>/dev/null
incremental=$(($(now_ms) - t0))
written=$(bench_psql -c "SELECT written || ' records written, ' || unchanged || ' unchanged' FROM golden360.gold_runs ORDER BY run_id DESC LIMIT 1")

people=$(bench_psql -c "SELECT people || ' people, ' || bridge_rows || ' customer_ids' FROM golden360.gold_runs ORDER BY run_id DESC LIMIT 1")
s=$(printf '%s\n' "${silver_runs[@]}" | median)
g=$(printf '%s\n' "${gold_runs[@]}" | median)
echo
echo "refresh_gold vs refresh_silver — generated sample, scale 1 ($people), median of $RUNS"
printf '%-16s %8s   runs\n' "" "ms"
printf '%-16s %8d   %s\n' "refresh_silver" "$s" "${silver_runs[*]}"
printf '%-16s %8d   %s\n' "refresh_gold" "$g" "${gold_runs[*]}"
printf 'gold / silver: %.2fx (target < 0.50x)\n' "$(echo "$g / $s" | bc -l)"
printf '%-16s %8d   after one new order (%s)\n' "refresh_gold" "$incremental" "$written"
