#!/usr/bin/env bash
# The whole test suite: installs what it needs, then
#   1. generator tests (cargo test -p olist-gen),
#   2. in-database tests (cargo pgrx test: each test a rolled-back transaction),
#   3. integration tests (pg_test/: several connections against a real
#      cluster this script starts, with the release build installed; and a
#      Citus coordinator with two workers, Citus built from ../shared/vendor
#      when it is not installed).
#   4. the SQL regression suite (pg_regress, pg_test/regress: what a DBA
#      sees, as expected files) against the integration cluster.
# Ends with one line "tests: N passed, N failed"; exits non-zero on any failure.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
"$here/scripts/setup.sh" || exit 1
. "$here/scripts/lib.sh"
logs="$here/.run/test-logs"
mkdir -p "$logs"
passed=0 failed=0 broken=()

# stage NAME COMMAND...: runs a stage, shows its test lines, tallies counts.
stage() {
    local name=$1
    shift
    echo "==> $name"
    "$@" >"$logs/$name.log" 2>&1
    local rc=$?
    grep -E "\.\.\. FAILED$|panicked at|^error(\[|:)" "$logs/$name.log" || true
    local p f
    p=$(grep -Eo "test result: [a-zA-Z]+\. [0-9]+ passed" "$logs/$name.log" | awk '{s+=$4} END {print s+0}')
    f=$(grep -Eo "; [0-9]+ failed" "$logs/$name.log" | awk '{s+=$2} END {print s+0}')
    # pg_regress: one line per test, "ok" or "FAILED", then its time.
    p=$((p + $(grep -Ec "^test .* \.\.\. +ok +[0-9]+ ms$" "$logs/$name.log")))
    f=$((f + $(grep -Ec "^test .* \.\.\. +FAILED +[0-9]+ ms$" "$logs/$name.log")))
    # Free disk after each stage: a full disk fails a build far from its cause.
    echo "    $p passed, $f failed (log: $logs/$name.log; disk free: $(df -h --output=avail "$here" | tail -n 1 | tr -d ' '))"
    passed=$((passed + p)) failed=$((failed + f))
    if [ "$rc" != 0 ]; then
        broken+=("$name")
        [ "$f" = 0 ] && tail -n 30 "$logs/$name.log"
    fi
}

# The real Olist copy beside the checkout, as the database server (OS user
# postgres) can read it: in place when it may, else copied outside the repo.
olist=$here/../shared/data/olist
if [ -r "$olist/olist_customers_dataset.csv" ] && ! runuser -u postgres -- test -r "$olist/olist_customers_dataset.csv"; then
    copy=/var/tmp/golden360-olist
    rm -rf "$copy" && mkdir -p "$copy" && cp "$olist"/*.csv "$copy"/ && chmod -R a+rX "$copy"
    olist=$copy
fi
export G360_OLIST_REAL=$(cd "$olist" && pwd)

stage generator cargo test -p olist-gen -p olist-model

pgdata=${G360_PGRX_PGDATA:-/tmp/pgrx-pgdata}
mkdir -p "$pgdata" && chown postgres "$pgdata"
# One at a time: each pg_test is one long transaction, and tests that hold
# bronze locks while another waits to TRUNCATE can deadlock each other.
# Concurrency is what the integration stage tests, with real sessions.
RUST_TEST_THREADS=1 stage in-database cargo pgrx test pg15 --runas postgres --pgdata "$pgdata"
# On CI (a clean clone, G360_CI set by .ci/run) the debug build of the
# in-database tests is not used again: 1.2 GB of a small disk, freed before
# the integration stage builds its own (and keeps the release build).
[ -n "${G360_CI:-}" ] && rm -rf "$here/target/debug"

integration() {
    "$here/scripts/install-extension.sh" || return 1
    # A cluster of its own, apart from the demo's: tests drop databases and roles.
    export G360_RUN="$(G360_RUN= run_dir)-test" G360_PGPORT=5437 G360_MAX_WAL_SIZE=256MB
    "$here/scripts/cluster.sh" start || return 1
    eval "$("$here/scripts/cluster.sh" env)"
    cargo build -q --release -p olist-gen || return 1
    # Citus: a coordinator with worker1 registered; worker2 is the one the
    # Citus tests add later.
    "$here/scripts/citus.sh" install || return 1
    export G360_CITUS_RUN="$(G360_RUN= run_dir)-citus-test" G360_CITUS_PORT=5460
    G360_CITUS_WORKERS=worker1 "$here/scripts/citus.sh" start || return 1
    export G360_OLIST_GEN="$here/target/release/olist-gen"
    export G360_POSTGREST="$here/.run/tools/postgrest-12.0.2/postgrest"
    cargo test -p golden360-it --no-fail-fast
}
stage integration integration

# pg_regress against the integration cluster (owned by postgres), on the
# hand-written fixture in pg_test/regress/data, laid out at fixed paths so
# the expected files are the same on every machine.
regress() {
    export G360_RUN="$(G360_RUN= run_dir)-test" G360_PGPORT=5437
    eval "$("$here/scripts/cluster.sh" env)"
    local fixture=/var/tmp/golden360-regress data=$here/pg_test/regress/data out
    rm -rf "$fixture" && mkdir -p "$fixture/olist" "$fixture/partial" "$fixture/bad-header" "$fixture/symlinked" "$fixture/ragged"
    cp "$data"/*.csv "$fixture/olist/"
    cp "$data/olist_customers_dataset.csv" "$data/olist_orders_dataset.csv" "$fixture/partial/"
    printf 'customer_id,customer_unique_id,zip,city,state\nx,y,1,a,b\n' >"$fixture/bad-header/olist_customers_dataset.csv"
    ln -s "$fixture/olist/olist_sellers_dataset.csv" "$fixture/symlinked/olist_sellers_dataset.csv"
    printf 'seller_id,seller_zip_code_prefix,seller_city,seller_state\ns3,1000,x,SP\ns4,1000,x\n' >"$fixture/ragged/olist_sellers_dataset.csv"
    chmod -R a+rX "$fixture"
    out=$(mktemp -d) && chown postgres "$out"
    # --use-existing leaves the database to us: a fresh one per run.
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS g360_it_regress WITH (FORCE)" -c "CREATE DATABASE g360_it_regress" || return 1
    runuser -u postgres -- /usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress \
        --use-existing --host="$PGHOST" --port="$PGPORT" --user=postgres --dbname=g360_it_regress \
        --inputdir="$here/pg_test/regress" --outputdir="$out" \
        bronze silver gold pipeline api surface settings
    local rc=$?
    [ -s "$out/regression.diffs" ] && cp "$out/regression.diffs" "$logs/regression.diffs" && head -n 80 "$out/regression.diffs"
    rm -rf "$out"
    return $rc
}
stage regress regress

echo
[ ${#broken[@]} -gt 0 ] && echo "failed stages: ${broken[*]}"
echo "tests: $passed passed, $failed failed"
[ ${#broken[@]} -eq 0 ]
