#!/usr/bin/env bash
# Test accuracy against epsilon for DP-SGD on Fashion-MNIST on the cluster (1 parameter
# server + 2 workers, BSP, separate processes): the default MLP job with a [privacy]
# section (delta 1e-5, clip_norm CLIP, Poisson sampling), its noise calibrated by Custody
# for each target epsilon in EPSILONS, EPOCHS epochs, BATCH samples per worker per step.
# Prints a table and writes build/bench/dp_accuracy.json and its picture,
# build/bench/dp_accuracy.svg (bench/accuracy_svg.py).
#   bench/dp_accuracy.sh [--activation relu|tanh] [EPOCHS] [BATCH] [LR] [CLIP] [EPSILONS...]
#   (defaults relu 10 512 1.0 1.0 1 2 3 8); with --activation tanh the MLP's hidden layers
#   use tanh (model.activation) and the outputs are dp_accuracy_tanh.json and .svg.
set -euo pipefail
activation=relu
if [ "${1:-}" = --activation ]; then
  activation=$2
  shift 2
fi
source "$(dirname "$0")/../scripts/lib/bench.sh"
epochs=${1:-10}
batch=${2:-512}
lr=${3:-1.0}
clip=${4:-1.0}
shift $(( $# < 4 ? $# : 4 ))
epsilons=("$@")
[ ${#epsilons[@]} -gt 0 ] || epsilons=(1 2 3 8)
bench_setup "$epochs"
rows=()
for eps in "${epsilons[@]}"; do
  sed -e "s/^batch_size = .*/batch_size = $batch/" -e "s/^learning_rate = .*/learning_rate = $lr/" \
    -e "s/^activation = .*/activation = \"$activation\"/" "$work/job.toml" >"$work/eps$eps.toml"
  printf '[privacy]\ntarget_epsilon = %s\ndelta = 1e-5\nclip_norm = %s\n' "$eps" "$clip" >>"$work/eps$eps.toml"
  run=$(mktemp -d "$work/run.XXXX")
  cluster_start "$run" 1 2 --store "$run/store"
  job=$(custody submit "$work/eps$eps.toml")
  custody wait "$job" >/dev/null
  js=$(custody status "$job" --json)
  cluster_stop
  acc=$(echo "$js" | sed -n 's/.*"test_accuracy": \([0-9.e-]*\).*/\1/p')
  sigma=$(sed -n 's/.*private (DP-SGD): sigma=\([0-9.e-]*\).*/\1/p' "$run/coordinator.log" | head -1)
  echo "epsilon $eps: sigma $sigma, test accuracy $acc" >&2
  rows+=("{\"epsilon\": $eps, \"sigma\": $sigma, \"test_accuracy\": $acc}")
done
suffix=""
[ "$activation" = relu ] || suffix="_$activation"
echo "{\"activation\": \"$activation\", \"epochs\": $epochs, \"batch_per_worker\": $batch, \"learning_rate\": $lr, \"clip_norm\": $clip, \"delta\": 1e-5," \
  "\"runs\": [$(IFS=,; echo "${rows[*]}")]}" | tee "$out_dir/dp_accuracy$suffix.json"
python3 "$(dirname "$0")/accuracy_svg.py" "$out_dir/dp_accuracy$suffix.json" "$out_dir/dp_accuracy$suffix.svg"
echo "wrote $out_dir/dp_accuracy$suffix.svg" >&2
