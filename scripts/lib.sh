# Shared helpers for the project's scripts (sourced, not run).

# Where clusters and samples live: somewhere the postgres OS user can read
# even when the checkout sits under a private directory such as /root.
run_dir() {
    local root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    echo "${G360_RUN:-/var/tmp/golden360-$(printf '%s' "$root" | md5sum | cut -c1-8)}"
}

# The generated sample at a scale, cached under .run/samples until the
# generator is rebuilt.
# Prints its directory. Readable by the postgres OS user.
sample_dir() {
    local scale=$1 root dir
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    dir=$(G360_RUN= run_dir)/samples/scale-$scale
    (cd "$root" && cargo build -q --release -p olist-gen)
    # Regenerate when the generator changed since the sample was written.
    if [ ! -s "$dir/_generator.json" ] || [ "$root/target/release/olist-gen" -nt "$dir/_generator.json" ]; then
        rm -rf "$dir"
        "$root/target/release/olist-gen" --out "$dir" --scale "$scale" >/dev/null
        chmod -R a+rX "$(G360_RUN= run_dir)/samples"
    fi
    echo "$dir"
}

# Benchmarks: a scratch database, a psql on it, and timing helpers.
BENCH_DB=g360_bench

# Every benchmark starts here: `cargo pgrx test` installs a debug build into
# the same PostgreSQL, so install the release build; start the cluster; make
# the scratch database; set RUNS and the scale-1 sample directory (data).
bench_setup() {
    local scripts
    scripts=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    "$scripts/install-extension.sh" >/dev/null
    "$scripts/cluster.sh" start
    RUNS=${RUNS:-3}
    data=$(sample_dir 1)
    bench_fresh_db
}
bench_psql() { "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/cluster.sh" psql -d "$BENCH_DB" -v ON_ERROR_STOP=1 -Atq "$@"; }
bench_fresh_db() {
    "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/cluster.sh" psql -Atqc "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" -c "CREATE DATABASE $BENCH_DB"
}
# The benchmarks' peers from PyPI, pinned, in one venv made once: prints
# its directory.
bench_venv() {
    local venv
    venv=$(G360_RUN= run_dir)/bench-venv
    if [ ! -x "$venv/bin/uvicorn" ] || [ ! -d "$venv/lib/python3"*/site-packages/duckdb ]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q fastapi==0.115.6 'uvicorn[standard]==0.34.0' asyncpg==0.30.0 pyjwt==2.10.1 duckdb==2.0.1 >&2
    fi
    echo "$venv"
}
now_ms() { date +%s%3N; }
# full_pipeline_step ingest|silver|gold DIR: the SQL of that step of a full
# pipeline on DIR's files, as the scale and Citus benchmarks time it.
full_pipeline_step() {
    case $1 in
    ingest) echo "SELECT count(*) FROM golden360.ingest_bronze('$2')" ;;
    silver) echo "CALL golden360.refresh_silver()" ;;
    gold) echo "CALL golden360.refresh_gold()" ;;
    esac
}

# apt_install_missing PKG...: install (as root) those of the Debian packages
# that are not installed yet; nothing when all are.
apt_install_missing() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        printf '\033[1m==> %s\033[0m\n' "apt: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# Background servers (PostgREST, the exporter), found again by a pid file.
daemon_running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# daemon_start PIDFILE LOG WHAT READY COMMAND...: run COMMAND in the
# background, logging to LOG, and wait up to 10 s for the shell command
# READY to succeed; if it does not, print the log's end and fail.
daemon_start() {
    local pidfile=$1 log=$2 what=$3 ready=$4
    shift 4
    nohup "$@" >>"$log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 100); do
        if eval "$ready"; then
            return 0
        fi
        daemon_running "$pidfile" || break
        sleep 0.1
    done
    echo "$what did not become ready; its log ($log) ends:" >&2
    tail -n 20 "$log" >&2
    return 1
}

# daemon_stop PIDFILE: stop the server and wait (up to 10 s) until it has
# exited, so that a start right after it finds its port free instead of
# taking the old server's readiness for its own.
daemon_stop() {
    if daemon_running "$1"; then
        kill "$(cat "$1")"
        for _ in $(seq 100); do
            daemon_running "$1" || break
            sleep 0.1
        done
    fi
    rm -f "$1"
}
