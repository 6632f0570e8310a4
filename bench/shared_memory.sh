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

cpu_ticks() {  # the cluster's processes' user + system time, in clock ticks
  local pid total=0
  for pid in "${cluster_pids[@]}"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  echo "$total"
}

measure() {  # shared|sockets -> "samples/s cpu-ms-per-step"
  local mode=$1 run js steps t0 t1 job flags=()
  [ "$mode" = sockets ] && flags=(--no-data-plane-shared-memory)
  run=$(mktemp -d "$work/$mode.XXXX")
  cluster_start "$run" 1 2 --store "$run/store" "${flags[@]}"
  t0=$(cpu_ticks)
  job=$(custody submit "$work/job.toml")
  custody wait "$job" >/dev/null
  t1=$(cpu_ticks)
  js=$(custody status "$job" --json)
  cluster_stop
  local shared
  shared=$(cat "$run"/worker-*.log | grep -c "through shared memory" || true)
  if { [ "$mode" = shared ] && [ "$shared" != 2 ]; } || { [ "$mode" = sockets ] && [ "$shared" != 0 ]; }; then
    echo "the run meant to go through $mode had $shared workers on shared memory; see $run" >&2
    KEEP=1
    exit 1
  fi
  steps=$(echo "$js" | sed -n 's/.*"total_steps": \([0-9]*\).*/\1/p')
  echo "$(job_samples_per_sec "$js") $(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v s="$steps" \
    'BEGIN {printf "%.3f", t * 1000 / hz / s}')"
}

shared=() sockets=() ratios=() cpu_shared=() cpu_sockets=()
for r in $(seq "$rounds"); do
  read -r rate cpu < <(measure sockets)
  sockets+=("$rate")
  cpu_sockets+=("$cpu")
  read -r rate cpu < <(measure shared)
  shared+=("$rate")
  cpu_shared+=("$cpu")
  ratios+=("$(awk -v a="${shared[-1]}" -v b="${sockets[-1]}" 'BEGIN {printf "%.3f", a / b}')")
  echo "round $r: sockets ${sockets[-1]} samples/s (${cpu_sockets[-1]} ms CPU a step), shared memory" \
    "${shared[-1]} samples/s (${cpu_shared[-1]} ms) (${ratios[-1]}); load $(cut -d' ' -f1 /proc/loadavg)" >&2
done
m_sockets=$(fmedian "${sockets[@]}")
m_shared=$(fmedian "${shared[@]}")
ratio=$(awk -v a="$m_shared" -v b="$m_sockets" 'BEGIN {printf "%.3f", a / b}')
m_ratio=$(fmedian "${ratios[@]}")
r_lo=$(printf '%s\n' "${ratios[@]}" | sort -g | head -1)
r_hi=$(printf '%s\n' "${ratios[@]}" | sort -g | tail -1)
m_cpu_sockets=$(fmedian "${cpu_sockets[@]}")
m_cpu_shared=$(fmedian "${cpu_shared[@]}")

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
