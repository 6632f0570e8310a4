#!/usr/bin/env bash
# What recording custody costs: the same job on the same local cluster (1 coordinator,
# 2 parameter servers, 2 workers, separate processes) with the custody store on and off,
# alternating, ROUNDS times each. Throughput = samples trained / (finished - started),
# both taken by the coordinator. Prints the medians and their ratio; writes JSON.
#   bench/lineage_overhead.sh [ROUNDS] [EPOCHS]     (default 3 rounds of 3 epochs)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/bench.sh"
rounds=${1:-3}
epochs=${2:-3}
bench_setup $epochs

measure() {  # mode -> samples/s
  local mode=$1 run
  run=$(mktemp -d "$work/$mode.XXXX")
  if [ "$mode" = on ]; then
    cluster_start "$run" 2 2 --store "$run/store"
  else
    cluster_start "$run" 2 2 --no-store
  fi
  local job
  job=$(custody submit "$work/job.toml")
  custody wait "$job" >/dev/null
  local js
  js=$(custody status "$job" --json)
  cluster_stop
  job_samples_per_sec "$js"
}

on=() off=()
for r in $(seq "$rounds"); do
  off+=("$(measure off)")
  on+=("$(measure on)")
  echo "round $r: lineage off ${off[-1]} samples/s, on ${on[-1]} samples/s" >&2
done
m_off=$(median "${off[@]}")
m_on=$(median "${on[@]}")
ratio=$(awk -v a="$m_on" -v b="$m_off" 'BEGIN {printf "%.3f", a / b}')
cost=$(awk -v r="$ratio" 'BEGIN {printf "%.1f", (1 - r) * 100}')
printf "%-28s %12s\n" "lineage recording" "samples/s"
printf "%-28s %12s\n" "off (median of $rounds)" "$m_off"
printf "%-28s %12s\n" "on  (median of $rounds)" "$m_on"
printf "%-28s %12s\n" "on / off" "$ratio  (cost ${cost}%)"
cat >"$out_dir/lineage_overhead.json" <<JSON
{"benchmark": "lineage_overhead", "job": "fashion_mlp, $epochs epochs, 2 ps, 2 workers, bsp",
 "rounds": $rounds, "off_samples_per_sec": [$(IFS=,; echo "${off[*]}")], "on_samples_per_sec": [$(IFS=,; echo "${on[*]}")],
 "median_off": $m_off, "median_on": $m_on, "ratio_on_off": $ratio}
JSON
echo "wrote $out_dir/lineage_overhead.json"
