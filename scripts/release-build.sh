#!/usr/bin/env bash
# Builds a past release of golden360 (a line of RELEASES: version and
# commit) into an installable package directory, once: later calls print
# the cached directory at once.
#
#   scripts/release-build.sh VERSION    prints the package directory
#
# The package holds usr/lib/postgresql/15/lib/golden360.so and
# usr/share/postgresql/15/extension/golden360*; the build runs in a git
# worktree of that commit, outside the checkout.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
version=${1:?usage: $0 VERSION}
commit=$(awk -v v="$version" '$1 == v {print $2}' "$here/RELEASES")
[ -n "$commit" ] || { echo "release $version is not in RELEASES" >&2; exit 1; }
# Keyed by commit, so every checkout on the machine (CI's clone too) shares it.
cache=${G360_RELEASE_CACHE:-/var/tmp/golden360-releases}/$version-$commit
if [ -s "$cache/done" ]; then
    echo "$cache/package"
    exit 0
fi
rm -rf "$cache"
mkdir -p "$cache"
git -C "$here" worktree prune
git -C "$here" worktree add --detach "$cache/src" "$commit" >/dev/null 2>&1
# A release as shipped: no coverage instrumentation leaks into the cache.
(cd "$cache/src" && unset RUSTFLAGS LLVM_PROFILE_FILE && CARGO_TARGET_DIR="$cache/target" \
    cargo pgrx package --pg-config /usr/lib/postgresql/15/bin/pg_config --out-dir "$cache/package" >"$cache/build.log" 2>&1) ||
    { tail -n 30 "$cache/build.log" >&2; exit 1; }
git -C "$here" worktree remove --force "$cache/src"
rm -rf "$cache/target"
echo "$commit" >"$cache/done"
echo "$cache/package"
