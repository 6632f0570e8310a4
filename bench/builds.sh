#!/usr/bin/env bash
# Two builds of Custody against each other, in one run: the bench's cluster (1 parameter
# server + 2 workers, BSP, separate processes on 127.0.0.1, the data plane through shared
# memory as on one host by default) trains the default job (configs/jobs/fashion_mlp.toml,
# or the job file BENCH_JOB=FILE names, e.g. configs/jobs/fashion_cnn.toml; cut to EPOCHS epochs) with build A's binaries, then with build B's, alternating, ROUNDS
# times each (these machines' speed drifts between runs: only alternating repeats compare).
# samples/s = samples trained / (finished - started), both taken by the coordinator; the
# medians, the median of each round's B/A ratio, and the CPU all the cluster's processes
# used per step. For a change to the data path: build the commit before it into another
# directory (git worktree add /tmp/base COMMIT; cd /tmp/base && scripts/build.sh) and pass
# its bin/. Writes build/bench/builds.json.
#   bench/builds.sh BIN_A BIN_B [ROUNDS] [EPOCHS]      (defaults 5 rounds of 2 epochs)
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
bin_a=$(cd "$1" && pwd)
bin_b=$(cd "$2" && pwd)
rounds=${3:-5}
epochs=${4:-2}
for b in "$bin_a" "$bin_b"; do
  for exe in custody custody-coordinator custody-ps custody-worker; do
    [ -x "$b/$exe" ] || { echo "$b/$exe is missing: give the bin/ directory of a build" >&2; exit 2; }
  done
done
export CUSTODY_BENCH_NO_BUILD=1  # the builds are given
source "$(dirname "$0")/../scripts/lib/bench.sh"
bench_setup "$epochs"

measure() {  # A|B -> "samples/s cpu-ms-per-step"
  local which=$1 run result
  if [ "$which" = A ]; then bin=$bin_a; else bin=$bin_b; fi
  run=$(mktemp -d "$work/$which.XXXX")
  cluster_start "$run" 1 2 --store "$run/store"
  result=$(timed_job "$run")
  cluster_stop
  echo "$result"
}

alternate "$rounds" measure A B
printf "%-44s %12s\n" "1 ps + 2 workers, BSP, $epochs epochs" "samples/s"
printf "%-44s %12s\n" "A $bin_a (median of $rounds)" "$m_a"
printf "%-44s %12s\n" "B $bin_b (median of $rounds)" "$m_b"
printf "%-44s %12s\n" "B / A" "$ratio (median of the rounds' ratios: $m_ratio; rounds $r_lo to $r_hi)"
echo "CPU of all the cluster's processes per step (medians; the data's loading included): A $m_x_a ms, B $m_x_b ms"
cat >"$out_dir/builds.json" <<JSON
{"benchmark": "builds", "job": "$(basename "$bench_job" .toml), $epochs epochs, 1 ps, 2 workers, bsp", "rounds": $rounds,
 "a": "$bin_a", "b": "$bin_b",
 "a_samples_per_sec": $(json_list "${ab_a[@]}"), "b_samples_per_sec": $(json_list "${ab_b[@]}"),
 "round_ratios": $(json_list "${ab_ratios[@]}"), "loads": $(json_list "${ab_loads[@]}"),
 "a_cpu_ms_per_step": $(json_list "${ab_x_a[@]}"), "b_cpu_ms_per_step": $(json_list "${ab_x_b[@]}"),
 "median_a": $m_a, "median_b": $m_b, "ratio_of_medians": $ratio, "median_of_ratios": $m_ratio}
JSON
echo "wrote $out_dir/builds.json"
