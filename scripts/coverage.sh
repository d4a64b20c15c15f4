#!/usr/bin/env bash
# Line coverage of the extension's Rust code across every test stage: the
# in-database tests, the integration tests (whose clusters load the
# instrumented build) and the SQL regression suite.
#
#   scripts/coverage.sh           build instrumented, run scripts/test.sh, report
#   scripts/coverage.sh --report  the report again, from the last run's counters
#
# Builds go to target/coverage (normal builds are left alone); every
# process that runs the library, the postgres backends included, writes
# its counters to /var/tmp/golden360-coverage. Prints the line coverage per
# module and in total; the tools are Debian's llvm-19 (setup.sh installs it).
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
"$here/scripts/setup.sh" >/dev/null || exit 1
llvm=/usr/lib/llvm-19/bin
profiles=/var/tmp/golden360-coverage
export CARGO_TARGET_DIR=$here/target/coverage
status=0
if [ "${1:-}" != --report ]; then
rm -rf "$profiles" && mkdir -p "$profiles" && chmod 0777 "$profiles"

# golden360_coverage: the library itself tells the profile runtime where to
# write (src/lib.rs), since not every server passes its environment on.
export RUSTFLAGS="-C instrument-coverage --cfg golden360_coverage"
# %m: one file per build, merged (under a lock) by every process that runs it.
export LLVM_PROFILE_FILE=$profiles/golden360-%m.profraw G360_COVERAGE_PROFILE=$profiles/golden360-%m.profraw
# The test cluster must start with LLVM_PROFILE_FILE in its environment.
. "$here/scripts/lib.sh"
G360_RUN="$(G360_RUN= run_dir)-test" G360_PGPORT=5437 "$here/scripts/cluster.sh" stop
bash "$here/scripts/test.sh"
status=$?
G360_RUN="$(G360_RUN= run_dir)-test" G360_PGPORT=5437 "$here/scripts/cluster.sh" stop
fi

"$llvm/llvm-profdata" merge -sparse "$profiles"/*.profraw -o "$profiles/merged.profdata" || exit 1
objects=()
for object in "$CARGO_TARGET_DIR"/release/libgolden360.so "$CARGO_TARGET_DIR"/debug/libgolden360.so \
              $(find "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 -type f -executable -name 'golden360-*' 2>/dev/null); do
    [ -f "$object" ] && objects+=(-object "$object")
done
report=$("$llvm/llvm-cov" report "${objects[1]}" "${objects[@]:2}" -instr-profile="$profiles/merged.profdata" \
    -ignore-filename-regex='(/\.cargo/|/rustc/|/pg_test/|/gen/|/target/|tests\.rs$|testing\.rs$)' 2>/dev/null)
echo "$report" >"$profiles/report.txt"
echo
echo "line coverage of the extension's Rust code, per module (report: $profiles/report.txt)"
# Columns of llvm-cov report: file, regions, missed, cover, functions, missed, cover, lines, missed, cover, ...
echo "$report" | awk -v root="$here/" '
    $1 ~ /\.rs$/ {
        file = $1; sub(root, "", file)
        module = file; sub(/\/[^\/]*$/, "", module)
        if (module == file || module == "src") module = file
        lines[module] += $8; missed[module] += $9; total += $8; totalmissed += $9
    }
    END {
        for (m in lines) printf "  %-28s %6d lines  %6.1f%%\n", m, lines[m], 100 * (lines[m] - missed[m]) / lines[m] | "sort"
        close("sort")
        printf "  %-28s %6d lines  %6.1f%%\n", "total", total, 100 * (total - totalmissed) / total
    }'
exit $status
