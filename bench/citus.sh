#!/usr/bin/env bash
# Citus benchmark (issue 14): the full pipeline (ingest, a full
# refresh_silver, a full refresh_gold) at SCALE (default 10) on one node and
# on a coordinator with two workers on this machine (scripts/citus.sh, in a
# cluster of the benchmark's own under <run dir>-citus-bench), in the same
# run. Per step: the wall time, and each node's share of the CPU time its
# PostgreSQL processes spent in that step (the postmaster and every backend
# and worker process it started, exited ones included).
#
# All nodes share this machine's 2 cores, so no speedup is expected: the
# point is where the work runs and what the distribution costs. As of 0.3.0
# golden360 runs on the coordinator with its tables local (the distributed
# layout is designed in the README, not built), so the coordinator's share
# is the whole of it, and the cost printed is that of Citus being loaded.
# Then the model of a refresh at 4, 16 and 64 workers (bench/citus_model.py)
# from the one-node figures of the same run.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
"$here/scripts/install-extension.sh" >/dev/null
"$here/scripts/citus.sh" install
scale=${SCALE:-10}
dir=$(sample_dir "$scale")
export G360_CITUS_RUN=$(G360_RUN= run_dir)-citus-bench G360_CITUS_PORT=${G360_CITUS_PORT:-5470}
"$here/scripts/cluster.sh" start >/dev/null
"$here/scripts/citus.sh" start >/dev/null
trap '"$here/scripts/citus.sh" stop >/dev/null 2>&1 || true' EXIT
# The nodes' WAL budget as the single node's (scripts/citus.sh keeps it
# small for the tests), so that neither setup checkpoints more in a step.
wal=$("$here/scripts/cluster.sh" psql -Atqc "SHOW max_wal_size")
for n in coordinator worker1 worker2; do
    "$here/scripts/citus.sh" psql "$n" -Atqc "ALTER SYSTEM SET max_wal_size = '$wal'" -c "SELECT pg_reload_conf()" >/dev/null
done
ticks=$(getconf CLK_TCK)

# node_cpu PGDATA: CPU ticks so far of the cluster's postmaster, its live
# children, and the children it has reaped (cutime, cstime).
node_cpu() {
    local postmaster total=0 p
    postmaster=$(head -n1 "$1/postmaster.pid")
    total=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$postmaster/stat")
    for p in $(pgrep -P "$postmaster" || true); do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
# settle PGDATA CHILDREN: wait (up to 5 s) until the cluster's postmaster
# has exactly CHILDREN again: a step's backends (and on Citus the
# connections it opened to the workers) end after psql returns, and their
# CPU time joins the postmaster's only once it has reaped them.
children() { pgrep -P "$(head -n1 "$1/postmaster.pid")" | sort | tr '\n' ' ' || true; }
settle() {
    for _ in $(seq 100); do
        [ "$(children "$1")" = "$2" ] && return
        sleep 0.05
    done
}
# Each node's data directory, from its cluster's environment.
declare -A pgdata=([single]=$(eval "$("$here/scripts/cluster.sh" env)" && dirname "$(dirname "$G360_PGLOG")"))
for n in coordinator worker1 worker2; do
    pgdata[$n]=$(eval "$("$here/scripts/citus.sh" env "$n")" && dirname "$(dirname "$G360_PGLOG")")
done
psql_on() {
    local PGOPTIONS="-c client_min_messages=warning"
    export PGOPTIONS
    case $1 in
    single) "$here/scripts/cluster.sh" psql -X -v ON_ERROR_STOP=1 -Atq -d "$BENCH_DB" "${@:2}" ;;
    coordinator) "$here/scripts/citus.sh" psql coordinator -X -v ON_ERROR_STOP=1 -Atq "${@:2}" ;;
    esac
}

declare -A ms=() cpu=() nodes_of=([single]=single [citus]="coordinator worker1 worker2")
setups=(single citus)
for setup in "${setups[@]}"; do
    if [ "$setup" = single ]; then
        bench_fresh_db
        target=single
    else
        target=coordinator
        psql_on coordinator -c "DROP EXTENSION IF EXISTS golden360 CASCADE"
    fi
    psql_on "$target" -c "CREATE EXTENSION golden360" -c "CHECKPOINT"
    psql_on "$target" -c "ALTER DATABASE $(psql_on "$target" -c "SELECT current_database()") SET golden360.quality_gate = warn"
    for what in ingest silver gold; do
        declare -A before=() idle=()
        for n in ${nodes_of[$setup]}; do
            idle[$n]=$(children "${pgdata[$n]}")
            before[$n]=$(node_cpu "${pgdata[$n]}")
        done
        t0=$(now_ms)
        psql_on "$target" -c "$(full_pipeline_step "$what" "$dir")" >/dev/null
        ms[$setup.$what]=$(($(now_ms) - t0))
        for n in ${nodes_of[$setup]}; do
            settle "${pgdata[$n]}" "${idle[$n]}"
            cpu[$setup.$what.$n]=$(($(node_cpu "${pgdata[$n]}") - before[$n]))
        done
    done
done

echo
echo "Full pipeline at scale $scale: one node, and a coordinator with 2 workers on the same 2 cores"
printf '%-8s %-7s %10s %12s   %s\n' setup step ms "/ one node" "CPU s (share) per node"
for setup in "${setups[@]}"; do
    for what in ingest silver gold; do
        sum=0
        for n in ${nodes_of[$setup]}; do sum=$((sum + cpu[$setup.$what.$n])); done
        shares=
        for n in ${nodes_of[$setup]}; do
            c=${cpu[$setup.$what.$n]}
            shares+=$(printf '%s %.1f (%.0f%%)  ' "$n" "$(echo "$c / $ticks" | bc -l)" "$(echo "100 * $c / ($sum + ($sum == 0))" | bc -l)")
        done
        printf '%-8s %-7s %10d %11.2fx   %s\n' "$setup" "$what" "${ms[$setup.$what]}" \
            "$(echo "${ms[$setup.$what]} / ${ms[single.$what]}" | bc -l)" "$shares"
    done
done

# The model at 4, 16 and 64 workers (bench/citus_model.py), from this run's
# one-node figures: its step times, the bytes that would cross nodes, and
# the cost of writing the moved rows again (INSERT ... SELECT of each moved
# table into a logged copy with its indexes, one core, rolled back).
rewrite_ms() {
    local t0 sql="BEGIN;"
    for table in "$@"; do
        sql+="CREATE TABLE public.moved_${table#*.} (LIKE $table INCLUDING INDEXES);
              INSERT INTO public.moved_${table#*.} SELECT * FROM $table;"
    done
    t0=$(now_ms)
    psql_on single -c "$sql ROLLBACK;" >/dev/null
    echo $(($(now_ms) - t0))
}
heap_bytes() { psql_on single -c "SELECT sum(pg_relation_size(t::regclass)) FROM unnest('{$1}'::text[]) AS t"; }
silver_moved=silver.customers,silver.orders,silver.order_items,silver.order_payments,silver.order_reviews
gold_moved=gold.unified_customer_360,gold.identity_bridge
echo
python3 "$here/bench/citus_model.py" --scale "$scale" \
    --ingest-ms "${ms[single.ingest]}" --silver-ms "${ms[single.silver]}" --gold-ms "${ms[single.gold]}" \
    --csv-bytes "$(du -sb --apparent-size "$dir" | cut -f1)" \
    --silver-moved-bytes "$(heap_bytes "$silver_moved")" --silver-rewrite-ms "$(rewrite_ms ${silver_moved//,/ })" \
    --gold-moved-bytes "$(heap_bytes "$gold_moved")" --gold-rewrite-ms "$(rewrite_ms ${gold_moved//,/ })" \
    --gold-passes "$(psql_on single -c "SELECT passes FROM golden360.gold_runs ORDER BY run_id DESC LIMIT 1")"
