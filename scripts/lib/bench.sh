# Sourced by bench/*.sh (from the repository root): builds, loads the local-cluster
# helpers, and prepares a work directory that is removed on exit (kept with KEEP=1).
#   bench_setup EPOCHS   -> $bin, $out_dir (build/bench), $work, and $work/job.toml: the
#                           default job (configs/jobs/fashion_mlp.toml) cut to EPOCHS epochs
bench_setup() {
  scripts/build.sh
  bin="$root/${CUSTODY_BUILD_DIR:-build}/bin"
  source scripts/lib/cluster.sh
  out_dir="$root/${CUSTODY_BUILD_DIR:-build}/bench"
  mkdir -p "$out_dir"
  work=$(mktemp -d "${TMPDIR:-/tmp}/custody-bench.XXXXXX")
  trap 'cluster_stop; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
  sed "s/^epochs = .*/epochs = $1/" configs/jobs/fashion_mlp.toml >"$work/job.toml"
}
