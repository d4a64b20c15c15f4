# Shared helpers for the project's scripts (sourced, not run).

# The generated sample at a scale, built once and cached under .run/samples.
# Prints its directory. Readable by the postgres OS user.
sample_dir() {
    local scale=$1 root dir
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    dir=${G360_RUN:-$root/.run}/samples/scale-$scale
    if [ ! -s "$dir/_generator.json" ]; then
        (cd "$root" && cargo build -q --release -p olist-gen)
        "$root/target/release/olist-gen" --out "$dir" --scale "$scale" >/dev/null
        chmod -R a+rX "${G360_RUN:-$root/.run}/samples"
    fi
    echo "$dir"
}
