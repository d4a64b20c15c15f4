#!/usr/bin/env bash
# Bronze ingestion benchmark (issue 2).
#
# Baseline: plain COPY of the same nine files into text tables with the
# same CSV columns (no lineage, no hashing), in one transaction, on the same
# cluster; and ingest_bronze with golden360.helper_threads = 0 (every file
# parsed and hashed on the backend's own thread, not ahead on a helper).
# Each side runs $RUNS times, alternating, from a warm page cache; the
# median is reported. Then the backend's peak private memory (RssAnon,
# sampled every 20 ms, and VmHWM) while ingesting scale 1 and scale 5: it must
# not grow with file size.
#
#   bench/bronze.sh            (make bench-bronze)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
sample_dir 5 >/dev/null

bench_setup
bench_psql -c "CREATE EXTENSION golden360"

# The COPY baseline's tables, derived from the same registry.
bench_psql <<'SQL'
CREATE SCHEMA baseline;
DO $$
DECLARE f record;
BEGIN
    FOR f IN SELECT * FROM golden360.source_files() LOOP
        EXECUTE format('CREATE TABLE baseline.%I (%s)', f.table_name,
            (SELECT string_agg(format('%I text', c), ', ') FROM unnest(f.columns) c));
    END LOOP;
END $$;
SQL
copy_sql=$(bench_psql -c "SELECT string_agg(format('COPY baseline.%I FROM %L (FORMAT csv, HEADER true);',
                                   table_name, '$data/' || file_name), E'\n')
                        FROM golden360.source_files()")
rows=$(bench_psql -c "SELECT sum(rows) FROM golden360.ingest_bronze('$data')")
bytes=$(du -cb "$data"/*.csv | tail -1 | cut -f1)

time_bronze() { # [helper_threads]
    bench_psql -c "DROP EXTENSION golden360 CASCADE" -c "CREATE EXTENSION golden360" -c "CHECKPOINT"
    local t0; t0=$(now_ms)
    bench_psql -c "SET golden360.helper_threads = ${1:-1}" -c "SELECT count(*) FROM golden360.ingest_bronze('$data')" >/dev/null
    echo $(( $(now_ms) - t0 ))
}
time_copy() {
    bench_psql -c "SELECT format('TRUNCATE baseline.%I;', table_name) FROM golden360.source_files()" | bench_psql >/dev/null
    bench_psql -c "CHECKPOINT"
    local t0; t0=$(now_ms)
    { echo "BEGIN;"; echo "$copy_sql"; echo "COMMIT;"; } | bench_psql >/dev/null
    echo $(( $(now_ms) - t0 ))
}

cat "$data"/*.csv >/dev/null # warm the page cache for both sides
bronze_runs=(); copy_runs=(); alone_runs=()
for _ in $(seq "$RUNS"); do
    copy_runs+=("$(time_copy)")
    bronze_runs+=("$(time_bronze)")
    alone_runs+=("$(time_bronze 0)")
done
b=$(printf '%s\n' "${bronze_runs[@]}" | median)
c=$(printf '%s\n' "${copy_runs[@]}" | median)
a=$(printf '%s\n' "${alone_runs[@]}" | median)

# The hashes taken before loading, alone: the same files again (all
# skipped as already loaded), with and without a helper hashing beside the
# backend, alternating.
time_skipped() { # helper_threads -> ms
    local t0; t0=$(now_ms)
    bench_psql -c "SET golden360.helper_threads = $1" -c "SELECT count(*) FROM golden360.ingest_bronze('$data')" >/dev/null
    echo $(( $(now_ms) - t0 ))
}
skip_with=(); skip_without=()
for _ in $(seq "$RUNS"); do skip_without+=("$(time_skipped 0)"); skip_with+=("$(time_skipped 1)"); done

# Peak private memory of the ingesting backend.
peak_memory() { # scale -> "rss_anon_peak_kb vm_hwm_kb"
    local dir; dir=$(sample_dir "$1")
    bench_psql -c "DROP EXTENSION golden360 CASCADE" -c "CREATE EXTENSION golden360"
    PGAPPNAME=g360-bench-mem "$here/scripts/cluster.sh" psql -d "$BENCH_DB" -Atqc \
        "SELECT pg_sleep(0.3); SELECT count(*) FROM golden360.ingest_bronze('$dir')" >/dev/null &
    local client=$! pid="" peak=0 hwm=0
    until [ -n "$pid" ]; do
        pid=$(bench_psql -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'g360-bench-mem'")
    done
    while kill -0 "$client" 2>/dev/null; do
        read -r anon vm < <(awk '/^RssAnon/{a=$2} /^VmHWM/{h=$2} END{print a+0, h+0}' "/proc/$pid/status" 2>/dev/null || echo "0 0")
        [ "$anon" -gt "$peak" ] && peak=$anon
        [ "$vm" -gt "$hwm" ] && hwm=$vm
        sleep 0.02
    done
    wait "$client"
    echo "$peak $hwm"
}
read -r m1 h1 < <(peak_memory 1)
read -r m5 h5 < <(peak_memory 5)
bytes5=$(du -cb "$(sample_dir 5)"/*.csv | tail -1 | cut -f1)

echo
echo "bronze ingestion vs plain COPY — generated sample, scale 1: $rows rows, $((bytes / 1048576)) MiB, median of $RUNS"
printf '%-36s %10s %14s %10s\n' "" "ms" "rows/s" "MiB/s"
printf '%-36s %10d %14d %10.1f\n' "COPY into text tables (baseline)" "$c" $((rows * 1000 / c)) "$(echo "$bytes / 1048576 / ($c / 1000)" | bc -l)"
printf '%-36s %10d %14d %10.1f\n' "golden360.ingest_bronze" "$b" $((rows * 1000 / b)) "$(echo "$bytes / 1048576 / ($b / 1000)" | bc -l)"
printf '%-36s %10d %14d %10.1f\n' "  the same, helper_threads = 0" "$a" $((rows * 1000 / a)) "$(echo "$bytes / 1048576 / ($a / 1000)" | bc -l)"
printf 'throughput ratio bronze/COPY: %.2fx (target >= 0.90x)   runs: COPY %s, bronze %s\n' \
    "$(echo "$c / $b" | bc -l)" "${copy_runs[*]}" "${bronze_runs[*]}"
printf 'parsing ahead on a helper thread: %.2fx the time of the backend alone   runs: %s\n' \
    "$(echo "$b / $a" | bc -l)" "${alone_runs[*]}"
printf 'hashing the 9 files again (all skipped): %d ms with a helper, %d ms without   runs: with %s; without %s\n' \
    "$(printf '%s\n' "${skip_with[@]}" | median)" "$(printf '%s\n' "${skip_without[@]}" | median)" "${skip_with[*]}" "${skip_without[*]}"
echo
echo "ingesting backend's peak memory (must not grow with file size)"
printf '%-10s %10s %18s %12s\n' "scale" "MiB in" "peak RssAnon KiB" "VmHWM KiB"
printf '%-10s %10d %18d %12d\n' 1 $((bytes / 1048576)) "$m1" "$h1"
printf '%-10s %10d %18d %12d\n' 5 $((bytes5 / 1048576)) "$m5" "$h5"
