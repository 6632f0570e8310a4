#!/usr/bin/env bash
# The README's first command. Installs what is missing, builds (Release), starts a local
# cluster of separate processes on 127.0.0.1 (1 coordinator with a custody store,
# 2 parameter servers, 2 workers), submits the job through the CLI, follows it with a
# live progress line, prints the final test accuracy and the lineage trace of the model
# it trained, and stops every process it started. The store stays in the run directory.
#   scripts/demo.sh [JOBFILE]        (default: configs/jobs/fashion_mlp.toml)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
job_file=${1:-configs/jobs/fashion_mlp.toml}

scripts/setup.sh
scripts/build.sh
bin="$root/${CUSTODY_BUILD_DIR:-build}/bin"
source scripts/lib/cluster.sh

run=$(mktemp -d "${TMPDIR:-/tmp}/custody-demo.XXXXXX")
finish() {
  cluster_stop
  echo "cluster stopped; logs and the custody store are in $run"
  echo "inspect the store later: $bin/custody lineage trace MODEL --store $run/store"
}
trap finish EXIT

echo "starting a local cluster (logs in $run)"
cluster_start "$run" 2 2 --store "$run/store"
custody status

start=$(date +%s%N)
job=$(custody submit "$job_file" --as demo-user)
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
  custody audit verify
fi
exit $rc
