#!/usr/bin/env bash
# What attribution costs (docs/ARCHITECTURE.md, "Training-data attribution"), in two parts:
#  1. The scoring alone, in one process (custody-bench-attribution-math): the whole
#     Fashion-MNIST training set (60,000 records) against 1, 5 and 10 checkpoints of the
#     default MLP 784-256-128-10, on 1 and 2 threads; the median of ROUNDS alternating runs.
#  2. End to end on a local cluster (1 parameter server + 2 workers, separate processes):
#     the default job (configs/jobs/fashion_mlp.toml) cut to EPOCHS epochs, a checkpoint
#     each epoch; one prediction of a test image; then `custody attribute` of it, ROUNDS
#     times: the CLI's wall time (reading the input, the request, the coordinator loading
#     the run's checkpoints and data set, scoring, recording, the reply) and the time the
#     coordinator reports for the attribution itself.
# The scoring runs in the coordinator's process (the workers do not take part yet), so it
# scales with the coordinator's threads and the number of checkpoints, not with workers.
# Writes build/bench/attribution.json.
#   bench/attribution.sh [ROUNDS] [EPOCHS]      (defaults 3 rounds, 5 epochs)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/bench.sh"
rounds=${1:-3}
epochs=${2:-5}
bench_setup "$epochs"

echo "== scoring in one process (median of $rounds)" >&2
"$bin/custody-bench-attribution-math" "$rounds" | tee "$work/math.txt"

echo "== end to end: $epochs epochs of the default job, then custody attribute" >&2
cluster_start "$work" 1 2 --store "$work/store"
job=$(custody submit "$work/job.toml")
custody wait "$job" >/dev/null
test_images=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
pred=$(custody predict fashion-mlp --input "$test_images" --rows 1 --json | sed -n 's/.*"prediction_id": "\([^"]*\)".*/\1/p' | head -1)
walls=() inside=()
for r in $(seq "$rounds"); do
  start=$(date +%s.%N)
  custody attribute "$pred" --input "$test_images" --top 10 --json >"$work/answer.json"
  end=$(date +%s.%N)
  walls+=("$(awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f", b - a}')")
  inside+=("$(sed -n 's/^  "elapsed_ms": \([0-9]*\).*/\1/p' "$work/answer.json" | awk '{printf "%.2f", $1 / 1000}')")
  echo "round $r: custody attribute ${walls[-1]} s (coordinator: ${inside[-1]} s); load $(cut -d' ' -f1 /proc/loadavg)" >&2
done
checkpoints=$(grep -c '"learning_rate"' "$work/answer.json")
records=$(sed -n 's/^  "records_scored": \([0-9]*\).*/\1/p' "$work/answer.json")
cluster_stop
m_wall=$(fmedian "${walls[@]}")
m_inside=$(fmedian "${inside[@]}")
printf "%-58s %8s\n" "custody attribute, $records records x $checkpoints checkpoints" "seconds"
printf "%-58s %8s\n" "CLI wall time (median of $rounds)" "$m_wall"
printf "%-58s %8s\n" "in the coordinator: load, score, rank (median of $rounds)" "$m_inside"
cat >"$out_dir/attribution.json" <<JSON
{"rounds": $rounds, "epochs": $epochs, "records": $records, "checkpoints": $checkpoints,
 "cli_seconds": [$(IFS=,; echo "${walls[*]}")], "coordinator_seconds": [$(IFS=,; echo "${inside[*]}")],
 "median_cli_seconds": $m_wall, "median_coordinator_seconds": $m_inside,
 "in_process": $(awk 'NR > 1 {printf "%s{\"checkpoints\": %d, \"threads\": %d, \"seconds\": %s}", (NR > 2 ? ", " : "["), $1, $3, $5} END {print "]"}' "$work/math.txt")}
JSON
