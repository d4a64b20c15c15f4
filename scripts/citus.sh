#!/usr/bin/env bash
# Citus on this machine: built from ../shared/vendor (Citus is on none of the
# registries here; production installs Citus's packages or runs the
# citusdata/citus image), and a coordinator with two workers, each node a
# scripts/cluster.sh cluster of its own with citus preloaded.
#
#   scripts/citus.sh install        build and install Citus 13.2.2, unless it is
#   scripts/citus.sh start          start the nodes (idempotent); register the
#                                   workers in $G360_CITUS_WORKERS (default
#                                   "worker1 worker2") with the coordinator
#   scripts/citus.sh add NODE       register one more worker (worker1|worker2)
#   scripts/citus.sh reset NODE     a worker made new: unregistered, emptied,
#                                   started again (what "a worker added later" is)
#   scripts/citus.sh stop [NODE]    stop every node, or one
#   scripts/citus.sh env NODE       the PG* variables of coordinator|worker1|worker2
#   scripts/citus.sh psql NODE [args]
#
# The nodes live under $G360_CITUS_RUN (default <run dir>-citus), on ports
# $G360_CITUS_PORT (default 5450), +1 and +2. Like the other clusters they
# listen on no TCP address: the nodes reach each other through their Unix
# sockets, whose directory is what Citus records as a node's name.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
CITUS_VERSION=13.2.2
CITUS_BUILD_PACKAGES=(libzstd-dev liblz4-dev libcurl4-openssl-dev libkrb5-dev)
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
root=${G360_CITUS_RUN:-$(G360_RUN= run_dir)-citus}
base_port=${G360_CITUS_PORT:-5450}
nodes=(coordinator worker1 worker2)

port_of() {
    case $1 in
    coordinator) echo "$base_port" ;;
    worker1) echo $((base_port + 1)) ;;
    worker2) echo $((base_port + 2)) ;;
    *) echo "unknown node $1 (coordinator, worker1, worker2)" >&2; return 2 ;;
    esac
}

# Runs scripts/cluster.sh for one node.
node() {
    local name=$1
    shift
    G360_RUN=$root/$name G360_PGPORT=$(port_of "$name") G360_PRELOAD=citus G360_MAX_WAL_SIZE=512MB \
        "$here/scripts/cluster.sh" "$@"
}
node_psql() { node "$1" psql -X -v ON_ERROR_STOP=1 -Atq "${@:2}"; }
socket_of() { echo "$root/$1/socket"; }

installed() {
    [ -f "$($PG_CONFIG --pkglibdir)/citus.so" ] &&
        grep -qs "default_version = '${CITUS_VERSION%.*}" "$($PG_CONFIG --sharedir)/extension/citus.control"
}

install_citus() {
    if installed; then return 0; fi
    [ "$(id -u)" = 0 ] || { echo "installing Citus needs root" >&2; exit 1; }
    local tarball=$here/../shared/vendor/citus-$CITUS_VERSION.tar.gz build
    [ -s "$tarball" ] || { echo "no $tarball: Citus is built from the vendored source" >&2; exit 1; }
    apt_install_missing "${CITUS_BUILD_PACKAGES[@]}"
    build=$(mktemp -d)
    echo "==> Citus $CITUS_VERSION: building from $tarball (about 2 minutes)"
    tar xzf "$tarball" -C "$build"
    (cd "$build/citus-$CITUS_VERSION" && PG_CONFIG=$PG_CONFIG ./configure >"$build/configure.log" 2>&1 &&
        make -j"$(nproc)" >"$build/make.log" 2>&1 && make install >"$build/install.log" 2>&1) || {
        echo "the Citus build failed; its logs are in $build" >&2
        exit 1
    }
    rm -rf "$build"
    installed
}

register() {
    local worker=$1
    node_psql coordinator -c "SELECT citus_add_node('$(socket_of "$worker")', $(port_of "$worker"))
                               WHERE NOT EXISTS (SELECT FROM pg_dist_node WHERE nodeport = $(port_of "$worker"))" >/dev/null
}

start_node() {
    node "$1" start
    node_psql "$1" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS citus"
}

case "${1:-}" in
install)
    install_citus
    ;;
start)
    installed || { echo "Citus is not installed: scripts/citus.sh install" >&2; exit 1; }
    for n in "${nodes[@]}"; do start_node "$n"; done
    node_psql coordinator -c "SELECT citus_set_coordinator_host('$(socket_of coordinator)', $(port_of coordinator))" >/dev/null
    for w in ${G360_CITUS_WORKERS-worker1 worker2}; do register "$w"; done
    ;;
add)
    register "${2:?which worker}"
    ;;
reset)
    w=${2:?which worker}
    [ "$w" != coordinator ] || { echo "reset makes a worker new, not the coordinator" >&2; exit 2; }
    node_psql coordinator -c "SELECT citus_remove_node(nodename, nodeport) FROM pg_dist_node
                               WHERE nodeport = $(port_of "$w")" >/dev/null
    node "$w" stop
    rm -rf "${root:?}/$w"
    start_node "$w"
    ;;
stop)
    for n in ${2:-${nodes[@]}}; do node "$n" stop; done
    ;;
env)
    node "${2:?which node}" env
    ;;
psql)
    n=${2:?which node}
    shift 2
    node "$n" psql "$@"
    ;;
*)
    echo "usage: $0 install|start|add NODE|reset NODE|stop [NODE]|env NODE|psql NODE [args]" >&2
    exit 2
    ;;
esac
