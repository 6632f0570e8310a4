#!/usr/bin/env bash
# What DP-SGD costs on the cluster (docs/ARCHITECTURE.md, "Differential privacy"), in one
# run: 1 parameter server + 2 workers, BSP, separate processes on 127.0.0.1, the default job
# (configs/jobs/fashion_mlp.toml, EPOCHS epochs) as it is and with a [privacy] section
# (target_epsilon 3, delta 1e-5, clip_norm 1, Poisson sampling), alternating ROUNDS times
# (only alternating repeats compare on these machines); samples/s = samples trained /
# (finished - started), both taken by the coordinator (a private job's samples are its
# expected batches); the medians, the median of the rounds' ratios (target >= 0.5), and each
# run's test accuracy. Writes build/bench/dp_training.json.
#   bench/dp_training.sh [ROUNDS] [EPOCHS]      (defaults 3 rounds of 1 epoch)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/bench.sh"
rounds=${1:-3}
epochs=${2:-1}
bench_setup "$epochs"
cp "$work/job.toml" "$work/private.toml"
printf '[privacy]\ntarget_epsilon = 3\ndelta = 1e-5\nclip_norm = 1.0\nsampling = "poisson"\n' >>"$work/private.toml"

measure() {  # non-private|private -> "samples/s accuracy"
  local run js job file="$work/job.toml"
  [ "$1" = private ] && file="$work/private.toml"
  run=$(mktemp -d "$work/run.XXXX")
  cluster_start "$run" 1 2 --store "$run/store"
  job=$(custody submit "$file")
  custody wait "$job" >/dev/null
  js=$(custody status "$job" --json)
  cluster_stop
  echo "$(job_samples_per_sec "$js") $(echo "$js" | sed -n 's/.*"test_accuracy": \([0-9.e-]*\).*/\1/p')"
}

ab_x_label=accuracy alternate "$rounds" measure non-private private
plain=("${ab_a[@]}") private=("${ab_b[@]}") ratios=("${ab_ratios[@]}") acc_plain=("${ab_x_a[@]}") acc_private=("${ab_x_b[@]}")
m_plain=$m_a m_private=$m_b
printf "%-40s %12s\n" "1 ps + 2 workers, BSP, $epochs epoch(s)" "samples/s"
printf "%-40s %12s\n" "non-private (median of $rounds)" "$m_plain"
printf "%-40s %12s\n" "private, epsilon 3 (median of $rounds)" "$m_private"
printf "%-40s %12s\n" "private / non-private" "$m_ratio (median of the rounds' ratios; target >= 0.5)"
cat >"$out_dir/dp_training.json" <<JSON
{"rounds": $rounds, "epochs": $epochs, "non_private_samples_per_s": [$(IFS=,; echo "${plain[*]}")],
 "private_samples_per_s": [$(IFS=,; echo "${private[*]}")], "ratios": [$(IFS=,; echo "${ratios[*]}")],
 "median_ratio": $m_ratio, "non_private_accuracy": [$(IFS=,; echo "${acc_plain[*]}")],
 "private_accuracy": [$(IFS=,; echo "${acc_private[*]}")]}
JSON
