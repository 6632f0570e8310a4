#!/usr/bin/env bash
# Evidence beyond the formula: the loss-threshold membership-inference attack (Yeom et al.
# 2018) against a non-private and a private model trained by the cluster (1 parameter
# server + 2 workers, BSP, separate processes) on the same data: the first half of
# Fashion-MNIST's training set (30000 members); the second half (30000 non-members, never
# trained on) is what the attack must tell them from. Each model is exported (raw) and
# build/bin/custody-bench-membership scores every member and non-member by its loss.
# Reports each model's test accuracy and each attack's advantage (TPR - FPR): the Yeom
# attack's (threshold = the members' mean loss) and the best any threshold gets (an upper
# bound for this attack). Writes build/bench/membership_inference.json.
#   bench/membership_inference.sh [EPOCHS] [EPSILON] [ACTIVATION]   (defaults 30 3 relu)
# The non-private job is the default job (momentum, cosine, batch 64) for EPOCHS epochs;
# the private one bench/dp_accuracy.sh's settings (batch 512, learning rate 1.0, C = 1,
# delta 1e-5) at target EPSILON for 10 epochs.
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/bench.sh"
epochs=${1:-30}
epsilon=${2:-3}
activation=${3:-relu}
bench_setup "$epochs"
mi="$work/halves"
mkdir -p "$mi"
fm=/usr/share/datasets/fashion-mnist
"$bin/custody-bench-membership" split "$fm/train-images-idx3-ubyte.gz" "$fm/train-labels-idx1-ubyte.gz" "$mi" >&2
# The members as the training set; the real test set for the reported accuracy.
data_keys() {
  sed -e "s|^dir = .*|dir = \"$mi\"|" -e 's|^train_images = .*|train_images = "members-images"|' \
    -e 's|^train_labels = .*|train_labels = "members-labels"|' \
    -e "s|^test_images = .*|test_images = \"$fm/t10k-images-idx3-ubyte.gz\"|" \
    -e "s|^test_labels = .*|test_labels = \"$fm/t10k-labels-idx1-ubyte.gz\"|" \
    -e "s|^name = \"fashion-mnist\"|name = \"fashion-mnist-first-half\"|"
}
with_activation() { sed "s/^activation = .*/activation = \"$activation\"/"; }
data_keys <"$work/job.toml" | with_activation | sed 's/^name = "fashion-mlp"/name = "mi-plain"/' >"$work/plain.toml"
data_keys <"$work/job.toml" | with_activation | sed -e 's/^name = "fashion-mlp"/name = "mi-private"/' \
  -e 's/^epochs = .*/epochs = 10/' -e 's/^batch_size = .*/batch_size = 512/' -e 's/^learning_rate = .*/learning_rate = 1.0/' \
  >"$work/private.toml"
printf '[privacy]\ntarget_epsilon = %s\ndelta = 1e-5\nclip_norm = 1.0\n' "$epsilon" >>"$work/private.toml"
run="$work/run"
mkdir -p "$run"
cluster_start "$run" 1 2 --store "$run/store"
rows=()
for kind in plain private; do
  job=$(custody submit "$work/$kind.toml")
  custody wait "$job" >/dev/null
  acc=$(custody status "$job" --json | sed -n 's/.*"test_accuracy": \([0-9.e-]*\).*/\1/p')
  custody export "mi-$kind" "$work/$kind.raw" --format raw >/dev/null
  attack=$("$bin/custody-bench-membership" attack "$work/$kind.raw" "$mi" "$activation")
  eps=null
  [ "$kind" = private ] && eps=$(custody privacy "mi-$kind" --json | sed -n 's/.*"epsilon": \([0-9.e-]*\).*/\1/p' | head -1)
  echo "$kind: test accuracy $acc, epsilon $eps, attack $attack" >&2
  rows+=("{\"model\": \"$kind\", \"test_accuracy\": $acc, \"epsilon\": $eps, \"attack\": $attack}")
done
cluster_stop
echo "{\"epochs_plain\": $epochs, \"target_epsilon\": $epsilon, \"activation\": \"$activation\", \"members\": 30000," \
  "\"nonmembers\": 30000, \"runs\": [$(IFS=,; echo "${rows[*]}")]}" | tee "$out_dir/membership_inference.json"
