#!/usr/bin/env bash
# The README's first command. Installs what is missing, builds (Release), starts a local
# cluster of separate processes on 127.0.0.1 (1 coordinator, 2 parameter servers,
# 2 workers), submits the job through the CLI, follows it with a live progress line,
# prints the final test accuracy, and stops every process it started.
#   scripts/demo.sh [JOBFILE]        (default: configs/jobs/fashion_mlp.toml)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
job_file=${1:-configs/jobs/fashion_mlp.toml}

scripts/setup.sh
scripts/build.sh
bin="$root/${CUSTODY_BUILD_DIR:-build}/bin"

run=$(mktemp -d "${TMPDIR:-/tmp}/custody-demo.XXXXXX")
pids=()
stop_cluster() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  echo "cluster stopped; logs are in $run"
}
trap stop_cluster EXIT

echo "starting a local cluster (logs in $run)"
"$bin/custody-coordinator" --config configs/coordinator.toml --listen tcp://127.0.0.1:0 \
  --port-file "$run/coordinator.addr" >"$run/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$run/coordinator.addr" ] && break; sleep 0.05; done
[ -s "$run/coordinator.addr" ] || { echo "the coordinator did not start; see $run/coordinator.log" >&2; exit 1; }
addr=$(cat "$run/coordinator.addr")
for i in 1 2; do
  "$bin/custody-ps" --config configs/ps.toml --coordinator "$addr" --name "ps-$i" >"$run/ps-$i.log" 2>&1 &
  pids+=($!)
  "$bin/custody-worker" --config configs/worker.toml --coordinator "$addr" --name "worker-$i" \
    >"$run/worker-$i.log" 2>&1 &
  pids+=($!)
done
custody() { "$bin/custody" --coordinator "$addr" "$@"; }
for _ in $(seq 100); do
  [ "$(custody status --json | grep -c '"alive": true')" = 4 ] && break
  sleep 0.1
done
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
exit $rc
