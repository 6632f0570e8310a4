#!/usr/bin/env bash
# What pinning compute threads to CPUs (--pin-cpu, off by default) gives, in one run: the
# bench's cluster, 1 parameter server + 2 workers, BSP, separate processes on 127.0.0.1,
# training the default job (configs/jobs/fashion_mlp.toml cut to EPOCHS epochs), unpinned
# and pinned, alternating, ROUNDS times each (these machines' speed drifts between runs: only
# alternating repeats compare). Pinned: worker-1's trainer on CPU 0, worker-2's on CPU 1,
# the server's actor on CPU 0 and its sealing helper on CPU 1 (--pin-cpu 0,1): in BSP the
# server computes while the workers wait for it, so sharing their CPUs costs no step time.
# On a machine with more CPUs, PIN_W1, PIN_W2 and PIN_PS set the lists. samples/s =
# samples trained / (finished - started), both taken by the coordinator; the medians, and
# the median of each round's pinned/unpinned ratio. Each pinned run's logs are checked for
# the pinning. Writes build/bench/pinning.json.
#   bench/pinning.sh [ROUNDS] [EPOCHS]      (defaults 5 rounds of 2 epochs)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/bench.sh"
rounds=${1:-5}
epochs=${2:-2}
pin_w1=${PIN_W1:-0}
pin_w2=${PIN_W2:-1}
pin_ps=${PIN_PS:-0,1}
bench_setup "$epochs"

measure() {  # unpinned|pinned -> "samples/s cpu-ms-per-step"
  local mode=$1 run js
  run=$(mktemp -d "$work/$mode.XXXX")
  if [ "$mode" = pinned ]; then
    export CLUSTER_WORKER_1_ARGS="--pin-cpu $pin_w1" CLUSTER_WORKER_2_ARGS="--pin-cpu $pin_w2" \
      CLUSTER_PS_1_ARGS="--pin-cpu $pin_ps"
  else
    unset CLUSTER_WORKER_1_ARGS CLUSTER_WORKER_2_ARGS CLUSTER_PS_1_ARGS
  fi
  cluster_start "$run" 1 2 --store "$run/store"
  local result pinned recoveries
  result=$(timed_job "$run")
  cluster_stop
  js=$(cat "$run/status.json")
  # One trainer per worker and attempt: a rollback (a loaded machine can miss a deadline)
  # starts them again, pinned again.
  pinned=$(cat "$run"/worker-*.log | grep -c "trainer pinned to CPU" || true)
  recoveries=$(echo "$js" | sed -n 's/.*"recoveries": \([0-9]*\).*/\1/p')
  if [ "${recoveries:-0}" != 0 ]; then echo "($mode run: $recoveries rollbacks)" >&2; fi
  if { [ "$mode" = pinned ] && [ "$pinned" -lt 2 ]; } || { [ "$mode" = unpinned ] && [ "$pinned" != 0 ]; }; then
    echo "the $mode run had $pinned trainers pinned; see $run" >&2
    KEEP=1
    exit 1
  fi
  if [ "$mode" = pinned ] && ! grep -q "pinned to CPUs" "$run/ps-1.log"; then
    echo "the pinned run's server was not pinned; see $run/ps-1.log" >&2
    KEEP=1
    exit 1
  fi
  echo "$result"
}

alternate "$rounds" measure unpinned pinned
unpinned=("${ab_a[@]}") pinned=("${ab_b[@]}") ratios=("${ab_ratios[@]}") loads=("${ab_loads[@]}")
m_unpinned=$m_a m_pinned=$m_b

printf "%-44s %12s\n" "1 ps + 2 workers, BSP, $epochs epochs, $(nproc) CPUs" "samples/s"
printf "%-44s %12s\n" "unpinned (median of $rounds)" "$m_unpinned"
printf "%-44s %12s\n" "pinned w1=$pin_w1 w2=$pin_w2 ps=$pin_ps (median of $rounds)" "$m_pinned"
printf "%-44s %12s\n" "pinned / unpinned" "$ratio (median of the rounds' ratios: $m_ratio; rounds $r_lo to $r_hi)"
cat >"$out_dir/pinning.json" <<JSON
{"benchmark": "pinning", "job": "fashion_mlp, $epochs epochs, 1 ps, 2 workers, bsp", "cpus": $(nproc), "rounds": $rounds,
 "pin": {"worker-1": "$pin_w1", "worker-2": "$pin_w2", "ps-1": "$pin_ps"},
 "unpinned_samples_per_sec": [$(IFS=,; echo "${unpinned[*]}")], "pinned_samples_per_sec": [$(IFS=,; echo "${pinned[*]}")],
 "round_ratios": [$(IFS=,; echo "${ratios[*]}")], "load_after_each_round": [$(IFS=,; echo "${loads[*]}")],
 "median_unpinned": $m_unpinned, "median_pinned": $m_pinned, "ratio_of_medians": $ratio, "median_ratio": $m_ratio}
JSON
