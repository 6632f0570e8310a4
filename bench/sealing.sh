#!/usr/bin/env bash
# What sealing the data plane costs (docs/ARCHITECTURE.md, "The data plane: keys and
# sealing"), in one run:
#   - the bench's cluster, 1 parameter server + 2 workers, BSP, separate processes on
#     127.0.0.1, training the default job (configs/jobs/fashion_mlp.toml, EPOCHS epochs)
#     with the coordinator's --data-plane-sealing on and off (blocks on sockets both ways,
#     as between hosts: --no-data-plane-shared-memory), alternating, ROUNDS times
#     each (these machines' speed drifts between runs: only alternating repeats compare);
#     samples/s = samples trained / (finished - started), both taken by the coordinator;
#     the medians, and the median of each round's sealed/unsealed ratio (the bar: >= 0.85);
#     and the CPU time all the cluster's processes used for the job (from /proc), whose
#     difference per step is what sealing costs in CPU whatever else the machine runs;
#   - custody-bench-sealing: seal and open of a 0.94 MB block (a push of the default
#     model) in GB/s, and a push/pull round trip of that block through the transport on
#     loopback, sealed against in clear (bench/sealing.cc).
# Writes build/bench/sealing.json.
#   bench/sealing.sh [ROUNDS] [EPOCHS]      (defaults 5 rounds of 2 epochs; about 6 minutes)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/bench.sh"
rounds=${1:-5}
epochs=${2:-2}
bench_setup "$epochs"

measure() {  # off|on -> "samples/s cpu-ms-per-step"
  local mode=$1 run sealed result
  run=$(mktemp -d "$work/$mode.XXXX")
  # Blocks on sockets either way, as between hosts: in clear, on one host, they would
  # otherwise go through shared memory, which a sealed job does not use.
  cluster_start "$run" 1 2 --store "$run/store" --data-plane-sealing "$mode" --no-data-plane-shared-memory
  result=$(timed_job "$run")
  cluster_stop
  sealed=$(sed -n 's/.*"data_plane_sealed": \([a-z]*\).*/\1/p' "$run/status.json")
  if [ "$mode" = on ] && [ "$sealed" != true ] || [ "$mode" = off ] && [ "$sealed" != false ]; then
    echo "the run with --data-plane-sealing $mode was not $mode: $(grep '"data_plane"' "$run/status.json")" >&2
    exit 1
  fi
  echo "$result"
}

alternate "$rounds" measure off on
off=("${ab_a[@]}") on=("${ab_b[@]}") ratios=("${ab_ratios[@]}") cpu_off=("${ab_x_a[@]}") cpu_on=("${ab_x_b[@]}")
m_off=$m_a m_on=$m_b m_cpu_off=$m_x_a m_cpu_on=$m_x_b
micro=$("$bin/custody-bench-sealing" 2>/dev/null)

printf "%-36s %12s\n" "1 ps + 2 workers, BSP, $epochs epochs" "samples/s"
printf "%-36s %12s\n" "in clear (median of $rounds)" "$m_off"
printf "%-36s %12s\n" "sealed   (median of $rounds)" "$m_on"
printf "%-36s %12s\n" "sealed / in clear" "$ratio (median of the rounds' ratios: $m_ratio; bar >= 0.85)"
echo "CPU of all the cluster's processes per step (medians; the data's loading included): in clear $m_cpu_off ms," \
  "sealed $m_cpu_on ms: sealing adds $(awk -v a="$m_cpu_on" -v b="$m_cpu_off" 'BEGIN {printf "%.2f ms (%.0f%%)", a - b, (a - b) * 100 / b}')"
MICRO="$micro" /usr/bin/python3 - <<'PY'
import json, os
m = json.loads(os.environ["MICRO"])
mb = m["block_bytes"] / 1e6
print(f"seal of a {mb:.2f} MB block: {m['seal_gb_per_sec']:.2f} GB/s; open: {m['open_gb_per_sec']:.2f} GB/s (one core); "
      f"on all {m['cores']} cores: {m['seal_all_cores_gb_per_sec']:.2f} and {m['open_all_cores_gb_per_sec']:.2f} GB/s")
print(f"push/pull of that block through the transport on loopback (1 worker, BSP): sealed "
      f"{m['sealed_gb_per_sec']:.2f} GB/s, in clear {m['clear_gb_per_sec']:.2f} GB/s ({m['ratio']:.3f})")
PY
cat >"$out_dir/sealing.json" <<JSON
{"benchmark": "sealing", "job": "fashion_mlp, $epochs epochs, 1 ps, 2 workers, bsp", "rounds": $rounds,
 "clear_samples_per_sec": [$(IFS=,; echo "${off[*]}")], "sealed_samples_per_sec": [$(IFS=,; echo "${on[*]}")],
 "round_ratios": [$(IFS=,; echo "${ratios[*]}")],
 "clear_cpu_ms_per_step": [$(IFS=,; echo "${cpu_off[*]}")], "sealed_cpu_ms_per_step": [$(IFS=,; echo "${cpu_on[*]}")],
 "median_clear": $m_off, "median_sealed": $m_on, "ratio_of_medians": $ratio, "median_of_ratios": $m_ratio,
 "block": $micro}
JSON
echo "wrote $out_dir/sealing.json"
