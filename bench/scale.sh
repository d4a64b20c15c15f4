#!/usr/bin/env bash
# Scale benchmark (issue 11): the full pipeline (ingest, a full
# refresh_silver, a full refresh_gold) on a fresh database per scale
# (SCALES, default "1 10"; add 100 for about 12 GB of CSV), each step in a
# backend of its own. Per step: its time, the peak RssAnon of the backend
# and any background worker it started (summed)
# (sampled from /proc every 20 ms) and the Rust heap's peak
# (golden360.rust_memory()). The baseline, measured in the same run, is the
# smallest scale: each larger scale prints its time and memory ratios to it,
# next to the data ratio (linear time: within 1.1x the data ratio).
# SETTINGS (e.g. "maintenance_work_mem=64MB work_mem=4MB", PostgreSQL's
# defaults) are set on each scale's database, to measure memory under
# other bounds than the project clusters' 512MB.
#
# Then the peers, on the same files in the same run (PEERS=0 skips them;
# PEERS=duckdb runs DuckDB only, as at scale 100 where plain SQL takes an
# hour):
# the SPEC's silver and gold as plain SQL (bench/peer/sql), on DuckDB
# (2 threads, a file database) and on this PostgreSQL (a database of its
# own). Each loads the files, builds silver and gold; their gold is
# compared with the extension's by counts and exact sums.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
bench_setup

# step SQL: runs SQL in a fresh backend; prints "ms peak_rss_kib rust_peak_kib".
step() {
    local sql=$1 pidfile out peak=0 rss t0 t1
    pidfile=$(mktemp) && out=$(mktemp)
    t0=$(now_ms)
    bench_psql -f - >"$out" 2>/dev/null <<EOF &
SELECT pg_backend_pid() \g $pidfile
$sql;
SELECT peak_bytes / 1024 FROM golden360.rust_memory();
EOF
    local client=$!
    while kill -0 "$client" 2>/dev/null; do
        if [ -s "$pidfile" ]; then
            # The backend's, plus its background workers' (golden360.build_workers).
            rss=0
            for p in $(head -n1 "$pidfile") $(pgrep -f '^postgres: golden360 ' || true); do
                # (a process that just exited has no RssAnon line, or no file)
                rss=$((rss + $(awk '/^RssAnon:/ {a = $2} END {print a + 0}' "/proc/$p/status" 2>/dev/null || echo 0)))
            done
            [ "${rss:-0}" -gt "$peak" ] && peak=$rss
        fi
        sleep 0.02
    done
    wait "$client"
    t1=$(now_ms)
    echo "$((t1 - t0)) $peak $(tail -n1 "$out")"
    rm -f "$pidfile" "$out"
}

declare -A ms=() rss=() rust=() peer_ms=() same=()
json_field() { python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin)['$1'], sort_keys=True))"; }
peers=${PEERS:-1}
[ "$peers" = 1 ] && peers="duckdb postgres"
[ "$peers" != 0 ] && venv=$(bench_venv) && export G360_OLIST_GEN=$here/target/release/olist-gen
eval "$("$here/scripts/cluster.sh" env)"
scales=(${SCALES:-1 10})
for scale in "${scales[@]}"; do
    dir=$(sample_dir "$scale")
    bench_fresh_db
    bench_psql -c "CREATE EXTENSION golden360" -c "ALTER DATABASE $BENCH_DB SET golden360.quality_gate = warn"
    for setting in ${SETTINGS:-}; do
        bench_psql -c "ALTER DATABASE $BENCH_DB SET ${setting%%=*} = '${setting#*=}'"
    done
    bench_psql -c "CHECKPOINT"
    for what in ingest silver gold; do
        read -r t r h <<<"$(step "$(full_pipeline_step "$what" "$dir")")"
        ms[$scale.$what]=$t rss[$scale.$what]=$r rust[$scale.$what]=$h
    done
    if [ "$peers" != 0 ]; then
        ours=$(python3 "$here/bench/peer/sql_peer.py" extension "$BENCH_DB" | json_field fingerprint)
        for peer in $peers; do
            result=$(case $peer in
                duckdb) PEER_THREADS=2 "$venv/bin/python" "$here/bench/peer/sql_peer.py" duckdb "$(run_dir)/peer.duckdb" "$dir" ;;
                postgres) python3 "$here/bench/peer/sql_peer.py" postgres "${BENCH_DB}_peer" "$dir" ;;
            esac)
            peer_ms[$scale.$peer]=$(echo "$result" | json_field ms | python3 -c 'import json,sys; print(sum(json.load(sys.stdin).values()))')
            [ "$(echo "$result" | json_field fingerprint)" = "$ours" ] && same[$scale.$peer]=yes || same[$scale.$peer]=NO
        done
        rm -f "$(run_dir)/peer.duckdb"
        "$here/scripts/cluster.sh" psql -Atqc "DROP DATABASE IF EXISTS ${BENCH_DB}_peer WITH (FORCE)"
    fi
done

base=${scales[0]}
echo
echo "Full pipeline per scale (baseline: scale $base of the same run); ms, peak RssAnon MiB, peak Rust heap MiB${SETTINGS:+; with $SETTINGS}"
printf '%-6s %-7s %10s %10s %10s %14s %14s\n' scale step ms RssAnon "Rust heap" "time / base" "RssAnon / base"
for scale in "${scales[@]}"; do
    for what in ingest silver gold; do
        k=$scale.$what b=$base.$what
        printf '%-6s %-7s %10d %10.0f %10.0f %13.2fx %13.2fx\n' "$scale" "$what" "${ms[$k]}" \
            "$(echo "${rss[$k]} / 1024" | bc -l)" "$(echo "${rust[$k]} / 1024" | bc -l)" \
            "$(echo "${ms[$k]} / ${ms[$b]}" | bc -l)" "$(echo "${rss[$k]} / ${rss[$b]}" | bc -l)"
    done
    total=$((ms[$scale.ingest] + ms[$scale.silver] + ms[$scale.gold]))
    btotal=$((ms[$base.ingest] + ms[$base.silver] + ms[$base.gold]))
    printf '%-6s %-7s %10d %10s %10s %13.2fx   (data: %sx)\n' "$scale" total "$total" "" "" \
        "$(echo "$total / $btotal" | bc -l)" "$(echo "$scale / $base" | bc -l | sed 's/\.0*$//')"
done
echo "targets: time per step within 1.1x the data ratio; RssAnon at scale 10 <= 1.2x scale 1; <= 256 MiB at scale 100"
if [ "$peers" != 0 ]; then
    echo
    echo "Peers on the same files (ms: load + silver + gold; same gold: counts and exact sums equal the extension's)"
    printf '%-6s %12s %12s %12s %16s %16s %10s\n' scale golden360 DuckDB "plain SQL" "DuckDB / ours" "plain SQL / ours" "same gold"
    # (a peer not run at that scale prints "-")
    peer_cell() { [ -n "${peer_ms[$1.$2]:-}" ] && echo "${peer_ms[$1.$2]}" || echo -; }
    peer_ratio() { [ -n "${peer_ms[$1.$2]:-}" ] && printf '%.2fx' "$(echo "${peer_ms[$1.$2]} / $3" | bc -l)" || echo -; }
    for scale in "${scales[@]}"; do
        total=$((ms[$scale.ingest] + ms[$scale.silver] + ms[$scale.gold]))
        printf '%-6s %12d %12s %12s %16s %16s %10s\n' "$scale" "$total" "$(peer_cell "$scale" duckdb)" \
            "$(peer_cell "$scale" postgres)" "$(peer_ratio "$scale" duckdb "$total")" \
            "$(peer_ratio "$scale" postgres "$total")" "${same[$scale.duckdb]:--}/${same[$scale.postgres]:--}"
    done
fi
