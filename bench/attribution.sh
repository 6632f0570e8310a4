#!/usr/bin/env bash
# What attribution costs (docs/ARCHITECTURE.md, "Training-data attribution"), in two parts:
#  1. The scoring alone, in one process (custody-bench-attribution-math): the whole
#     Fashion-MNIST training set (60,000 records) against 1, 5 and 10 checkpoints of the
#     default MLP 784-256-128-10, on 1 and 2 threads; the median of ROUNDS alternating runs.
#  2. End to end on a local cluster (1 parameter server + 2 workers, separate processes):
#     the default job (configs/jobs/fashion_mlp.toml) cut to EPOCHS epochs, a checkpoint
#     each epoch; one prediction of a test image; then `custody attribute` of it, ROUNDS
#     times each way, alternating: scored on the workers (one range each, the default) and
#     scored in the coordinator (--in-coordinator): the CLI's wall time (reading the input,
#     the request, the coordinator loading the run's checkpoints and data set, scoring,
#     recording, the reply) and the time the coordinator reports for the attribution.
#     The ratio workers / coordinator is of the medians. On this 2-core machine the two
#     workers share the cores the coordinator's two threads use, so the ratio shows the
#     cost of the fan-out (checkpoints sent, the range read again on each worker), not the
#     speed-up of workers on machines of their own.
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
walls=() inside=() walls_c=() inside_c=()
attribute_once() {  # $1: extra flag ("" or --in-coordinator); prints "wall inside"
  local start end
  start=$(date +%s.%N)
  custody attribute "$pred" --input "$test_images" --rows 1 --top 10 --json $1 >"$work/answer.json"
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN {printf "%.2f ", b - a}'
  sed -n 's/^  "elapsed_ms": \([0-9]*\).*/\1/p' "$work/answer.json" | awk '{printf "%.2f\n", $1 / 1000}'
}
for r in $(seq "$rounds"); do
  read -r w i < <(attribute_once "")
  grep -q '"by": "worker-' "$work/answer.json" || { echo "round $r: the workers did not score" >&2; cat "$work/answer.json" >&2; exit 1; }
  walls+=("$w") inside+=("$i")
  read -r w i < <(attribute_once --in-coordinator)
  walls_c+=("$w") inside_c+=("$i")
  echo "round $r: workers ${walls[-1]} s (coordinator reports ${inside[-1]} s); in the coordinator ${walls_c[-1]} s (${inside_c[-1]} s); load $(cut -d' ' -f1 /proc/loadavg)" >&2
done
checkpoints=$(grep -c '"learning_rate"' "$work/answer.json")
records=$(sed -n 's/^  "records_scored": \([0-9]*\).*/\1/p' "$work/answer.json")
cluster_stop
m_wall=$(fmedian "${walls[@]}")
m_inside=$(fmedian "${inside[@]}")
m_wall_c=$(fmedian "${walls_c[@]}")
m_inside_c=$(fmedian "${inside_c[@]}")
ratio=$(awk -v a="$m_wall" -v b="$m_wall_c" 'BEGIN {printf "%.2f", a / b}')
printf "%-66s %8s\n" "custody attribute, $records records x $checkpoints checkpoints" "seconds"
printf "%-66s %8s\n" "scored on 2 workers: CLI wall time (median of $rounds)" "$m_wall"
printf "%-66s %8s\n" "scored on 2 workers: as the coordinator reports it" "$m_inside"
printf "%-66s %8s\n" "scored in the coordinator (--in-coordinator): CLI wall time" "$m_wall_c"
printf "%-66s %8s\n" "scored in the coordinator: as the coordinator reports it" "$m_inside_c"
printf "%-66s %8s\n" "ratio workers / coordinator (CLI wall, medians, alternating)" "$ratio"
cat >"$out_dir/attribution.json" <<JSON
{"rounds": $rounds, "epochs": $epochs, "records": $records, "checkpoints": $checkpoints,
 "cli_seconds": [$(IFS=,; echo "${walls[*]}")], "coordinator_seconds": [$(IFS=,; echo "${inside[*]}")],
 "median_cli_seconds": $m_wall, "median_coordinator_seconds": $m_inside,
 "in_coordinator_cli_seconds": [$(IFS=,; echo "${walls_c[*]}")], "in_coordinator_seconds": [$(IFS=,; echo "${inside_c[*]}")],
 "median_in_coordinator_cli_seconds": $m_wall_c, "median_in_coordinator_seconds": $m_inside_c,
 "ratio_workers_over_coordinator": $ratio,
 "in_process": $(awk 'NR > 1 {printf "%s{\"checkpoints\": %d, \"threads\": %d, \"seconds\": %s}", (NR > 2 ? ", " : "["), $1, $3, $5} END {print "]"}' "$work/math.txt")}
JSON
