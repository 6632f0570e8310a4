#!/usr/bin/env bash
# What shared memory gives the data plane between processes on one host
# (docs/ARCHITECTURE.md, "The data path"), in one run: the bench's cluster, 1 parameter
# server + 2 workers, BSP, separate processes on 127.0.0.1, training the default job
# (configs/jobs/fashion_mlp.toml, EPOCHS epochs, data plane in clear as a loopback-only job
# gets by default), with blocks through shared memory (the default) and through the
# server's socket (the coordinator's --no-data-plane-shared-memory), alternating, ROUNDS
# times each (these machines' speed drifts between runs: only alternating repeats compare);
# samples/s = samples trained / (finished - started), both taken by the coordinator; the
# medians, and the median of each round's shared/sockets ratio; and the CPU time all the
# cluster's processes used for the job (from /proc), per step. Each run's worker logs are
# checked for the path it was meant to take. Writes build/bench/shared_memory.json.
#   bench/shared_memory.sh [ROUNDS] [EPOCHS]      (defaults 5 rounds of 2 epochs)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/bench.sh"
rounds=${1:-5}
epochs=${2:-2}
bench_setup "$epochs"

measure() {  # sockets|shared -> "samples/s cpu-ms-per-step"
  local mode=$1 run flags=() shared result
  [ "$mode" = sockets ] && flags=(--no-data-plane-shared-memory)
  run=$(mktemp -d "$work/$mode.XXXX")
  cluster_start "$run" 1 2 --store "$run/store" "${flags[@]}"
  result=$(timed_job "$run")
  cluster_stop
  shared=$(cat "$run"/worker-*.log | grep -c "through shared memory" || true)
  if { [ "$mode" = shared ] && [ "$shared" != 2 ]; } || { [ "$mode" = sockets ] && [ "$shared" != 0 ]; }; then
    echo "the run meant to go through $mode had $shared workers on shared memory; see $run" >&2
    KEEP=1
    exit 1
  fi
  echo "$result"
}

alternate "$rounds" measure sockets shared
sockets=("${ab_a[@]}") shared=("${ab_b[@]}") ratios=("${ab_ratios[@]}")
cpu_sockets=("${ab_x_a[@]}") cpu_shared=("${ab_x_b[@]}")
m_sockets=$m_a m_shared=$m_b m_cpu_sockets=$m_x_a m_cpu_shared=$m_x_b

printf "%-40s %12s\n" "1 ps + 2 workers, BSP, $epochs epochs" "samples/s"
printf "%-40s %12s\n" "sockets       (median of $rounds)" "$m_sockets"
printf "%-40s %12s\n" "shared memory (median of $rounds)" "$m_shared"
printf "%-40s %12s\n" "shared memory / sockets" "$ratio (median of the rounds' ratios: $m_ratio; rounds $r_lo to $r_hi)"
echo "CPU of all the cluster's processes per step (medians; the data's loading included): sockets" \
  "$m_cpu_sockets ms, shared memory $m_cpu_shared ms:" \
  "$(awk -v a="$m_cpu_shared" -v b="$m_cpu_sockets" 'BEGIN {printf "%+.2f ms (%+.0f%%)", a - b, (a - b) * 100 / b}')"
cat >"$out_dir/shared_memory.json" <<JSON
{"benchmark": "shared_memory", "job": "fashion_mlp, $epochs epochs, 1 ps, 2 workers, bsp, in clear", "rounds": $rounds,
 "sockets_samples_per_sec": [$(IFS=,; echo "${sockets[*]}")], "shared_samples_per_sec": [$(IFS=,; echo "${shared[*]}")],
 "round_ratios": [$(IFS=,; echo "${ratios[*]}")],
 "sockets_cpu_ms_per_step": [$(IFS=,; echo "${cpu_sockets[*]}")], "shared_cpu_ms_per_step": [$(IFS=,; echo "${cpu_shared[*]}")],
 "median_sockets": $m_sockets, "median_shared": $m_shared, "ratio_of_medians": $ratio, "median_of_ratios": $m_ratio}
JSON
echo "wrote $out_dir/shared_memory.json"
