#!/usr/bin/env bash
# Serving throughput and latency on loopback: trains the default model (MLP
# 784-256-128-10, one epoch) on a local cluster, then calls `predict` CALLS times with
# batches of 1 and 64 rows, with usage recording on (every call durably recorded before
# its reply) and off (--no-usage-recording, only for this comparison). Prints a table and
# writes JSON to build/bench/serving.json.
#   bench/serving.sh [CALLS]       (default 2000)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
calls=${1:-2000}
source scripts/lib/bench.sh
bench_setup 1

cluster_start "$work" 2 2 --store "$work/store"
job=$(custody submit "$work/job.toml")
custody wait "$job" >/dev/null
cluster_stop

results=()
for mode in on off; do
  flags=(--store "$work/store")
  [ "$mode" = off ] && flags+=(--no-usage-recording)
  cluster_start "$work" 0 0 "${flags[@]}"
  for batch in 1 64; do
    line=$("$bin/custody-bench-serve" "$cluster_addr" fashion-mlp "$batch" "$calls")
    results+=("{\"recording\": \"$mode\", ${line#\{}")
    echo "recording $mode: $line" >&2
  done
  cluster_stop
done
printf '%-10s %-6s %14s %16s %10s %10s\n' recording batch "calls/s" "predictions/s" "p50 us" "p99 us"
for r in "${results[@]}"; do
  echo "$r" | sed -E 's/.*"recording": "([a-z]+)", "batch": ([0-9]+), "calls": [0-9]+, "calls_per_sec": ([0-9.]+), "predictions_per_sec": ([0-9.]+), "p50_us": ([0-9.]+), "p99_us": ([0-9.]+).*/\1 \2 \3 \4 \5 \6/' |
    awk '{printf "%-10s %-6s %14s %16s %10s %10s\n", $1, $2, $3, $4, $5, $6}'
done
(IFS=,; echo "[${results[*]}]") >"$out_dir/serving.json"
echo "wrote $out_dir/serving.json"
