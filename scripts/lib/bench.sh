# Sourced by bench/*.sh, as  source "$(dirname "$0")/../scripts/lib/bench.sh"
# Moves to the repository root ($root) and defines:
#   bench_build          builds -> $bin, $out_dir (build/bench, created); with
#                        CUSTODY_BENCH_NO_BUILD=1 uses the binaries as they are (the build
#                        then needs only the targets the bench runs)
#   bench_setup EPOCHS   bench_build, loads the local-cluster helpers, and prepares a work
#                        directory that is removed on exit (kept with KEEP=1)
#                        -> also $work, and $work/job.toml: the default job
#                        (configs/jobs/fashion_mlp.toml) cut to EPOCHS epochs
#   job_samples_per_sec STATUS_JSON   a finished job's samples/s (`custody status JOB
#                        --json`): samples trained / (finished - started), both taken by
#                        the coordinator, for 2 workers of 64 samples a step
#   median N...          the median of integers
#   fmedian X...         the median of numbers, decimals kept
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

bench_build() {
  [ -n "${CUSTODY_BENCH_NO_BUILD:-}" ] || scripts/build.sh
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

job_samples_per_sec() {
  local steps started finished
  steps=$(echo "$1" | sed -n 's/.*"total_steps": \([0-9]*\).*/\1/p')
  started=$(echo "$1" | sed -n 's/.*"started_at_ms": \([0-9]*\).*/\1/p')
  finished=$(echo "$1" | sed -n 's/.*"finished_at_ms": \([0-9]*\).*/\1/p')
  echo $((steps * 2 * 64 * 1000 / (finished - started)))
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }
fmedian() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
