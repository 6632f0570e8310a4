#!/usr/bin/env bash
# The README's first command. Installs what is missing, builds (Release), starts a local
# cluster of separate processes on 127.0.0.1 (1 coordinator with a custody store and
# security = "curve": every connection CurveZMQ, every caller and node proven by its key
# pair; 2 parameter servers, 2 workers), issues its principals' key pairs (a submitter,
# a consumer), submits the job as the submitter, follows it with a live progress line,
# prints the final test accuracy and the lineage trace of the model it trained, then
# serves it: the consumer predicts five test images and the first prediction is traced
# back to data and people. Then the liability story (scripts/liability_demo.sh): the data
# owner withdraws some records, the model is tainted and refused, it is retrained without
# them, and the replacement is served and traced. Stops every process it started; the store
# stays in the run directory.
#   scripts/demo.sh [JOBFILE]        (default: configs/jobs/fashion_mlp.toml)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
job_file=${1:-configs/jobs/fashion_mlp.toml}

scripts/setup.sh
scripts/build.sh
bin="$root/${CUSTODY_BUILD_DIR:-build}/bin"
source scripts/lib/cluster.sh
source scripts/liability_demo.sh

run=$(mktemp -d "${TMPDIR:-/tmp}/custody-demo.XXXXXX")
finish() {
  cluster_stop
  echo "cluster stopped; logs and the custody store are in $run"
  echo "inspect the store later: $bin/custody lineage trace MODEL --store $run/store"
}
trap finish EXIT

echo "starting a local cluster (logs in $run)"
CLUSTER_SECURITY=curve cluster_start "$run" 2 2 --store "$run/store"
custody status
custody principal add demo-user --role submitter --key-out "$run/demo-user.key" >/dev/null
custody principal add demo-client --role consumer --key-out "$run/demo-client.key" >/dev/null
custody principal list
admin_key=$cluster_key

start=$(date +%s%N)
cluster_key="$run/demo-user.key"
job=$(custody submit "$job_file")
echo "submitted $job_file as $job"
set +e
custody wait "$job"
rc=$?
set -e
elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
accuracy=$(custody status "$job" --json | sed -n 's/.*"test_accuracy": \([0-9.]*\).*/\1/p')
echo
printf "final test accuracy: %s   time from submit to end: %d.%03d s\n" "${accuracy:-unknown}" $((elapsed / 1000)) $((elapsed % 1000))
if [ $rc = 0 ]; then
  model=$(custody status "$job" --json | sed -n 's/.*"name": "\([^"]*\)".*/\1/p' | head -n 1)
  echo
  echo "lineage of the model it trained (custody lineage trace $model):"
  custody lineage trace "$model"
  echo
  echo "serving it: demo-client predicts five test images (each call recorded before its answer):"
  cluster_key="$run/demo-client.key"
  custody predict "$model" --input /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz --rows 5 \
    --purpose demo --receipt "$run/receipts.jsonl" | tee "$run/predictions.txt" | cut -c1-60
  prediction=$(head -n 1 "$run/predictions.txt" | cut -d' ' -f1)
  echo
  echo "where did $prediction come from, and who answers for it (custody lineage trace $prediction):"
  custody lineage trace "$prediction" --store "$run/store"
  echo
  echo "the consumer's receipt, checked offline against the coordinator's public key (custody audit prove):"
  custody audit prove "$run/receipts.jsonl" --public-key "$run/store.signing-key.pub"
  liability_demo "$model" "$run" "$prediction"
  cluster_key=$admin_key
  echo
  custody audit verify
fi
exit $rc
