# Sourced by bench/*.sh, as  source "$(dirname "$0")/../scripts/lib/bench.sh"
# Moves to the repository root ($root) and defines:
#   bench_build          builds -> $bin, $out_dir (build/bench, created)
#   bench_setup EPOCHS   bench_build, loads the local-cluster helpers, and prepares a work
#                        directory that is removed on exit (kept with KEEP=1)
#                        -> also $work, and $work/job.toml: the default job
#                        (configs/jobs/fashion_mlp.toml) cut to EPOCHS epochs
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

bench_build() {
  scripts/build.sh
  bin="$root/${CUSTODY_BUILD_DIR:-build}/bin"
  out_dir="$root/${CUSTODY_BUILD_DIR:-build}/bench"
  mkdir -p "$out_dir"
}

bench_setup() {
  bench_build
  source scripts/lib/cluster.sh
  work=$(mktemp -d "${TMPDIR:-/tmp}/custody-bench.XXXXXX")
  trap 'cluster_stop; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
  sed "s/^epochs = .*/epochs = $1/" configs/jobs/fashion_mlp.toml >"$work/job.toml"
}
