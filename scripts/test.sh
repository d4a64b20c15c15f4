#!/usr/bin/env bash
# The whole test suite: installs what it needs, then
#   1. generator tests (cargo test -p olist-gen),
#   2. in-database tests (cargo pgrx test: each test a rolled-back transaction),
#   3. integration tests (pg_test/: several connections against a real
#      cluster this script starts, with the release build installed).
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
    echo "    $p passed, $f failed (log: $logs/$name.log)"
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

integration() {
    "$here/scripts/install-extension.sh" || return 1
    # A cluster of its own, apart from the demo's: tests drop databases and roles.
    export G360_RUN="$(G360_RUN= run_dir)-test" G360_PGPORT=5437
    "$here/scripts/cluster.sh" start || return 1
    eval "$("$here/scripts/cluster.sh" env)"
    cargo build -q --release -p olist-gen || return 1
    export G360_OLIST_GEN="$here/target/release/olist-gen"
    export G360_POSTGREST="$here/.run/tools/postgrest-12.0.2/postgrest"
    cargo test -p golden360-it --no-fail-fast
}
stage integration integration

echo
[ ${#broken[@]} -gt 0 ] && echo "failed stages: ${broken[*]}"
echo "tests: $passed passed, $failed failed"
[ ${#broken[@]} -eq 0 ]
