#!/usr/bin/env bash
# What the store at rest costs. In one process (bench/store_at_rest.cc): a checkpoint of the
# default model with Adam's state written and read sealed against in clear, verify with and
# without the key, a backup's MB/s. Then on a local cluster (1 coordinator, 1 parameter
# server, 2 workers, BSP, the default Fashion-MNIST job cut to EPOCHS epochs): the job's
# samples/s with no backup running against with online backups (`custody store backup`,
# unthrottled, one after another into one directory) running the whole time, alternating,
# ROUNDS times each. Throughput = samples trained / (finished - started), both taken by
# the coordinator. Prints the medians and their ratio; writes build/bench/store_at_rest.json.
#   bench/store_at_rest.sh [ROUNDS] [EPOCHS]     (default 3 rounds of 2 epochs)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/bench.sh"
rounds=${1:-3}
epochs=${2:-2}
bench_setup "$epochs"

inside=$("$bin/custody-bench-at-rest" 30 | tr -d '\n')
echo "in process: $inside" >&2

measure() {  # mode (quiet|backups) -> samples/s
  local mode=$1 run job js backups=0 loop=
  run=$(mktemp -d "$work/$mode.XXXX")
  cluster_start "$run" 1 2 --store "$run/store"
  job=$(custody submit "$work/job.toml")
  if [ "$mode" = backups ]; then
    (
      while custody status "$job" --json | grep -q '"state": "\(pending\|starting\|running\)"'; do
        custody store backup "$run/backups" >/dev/null 2>&1 || true
      done
    ) &
    loop=$!
  fi
  custody wait "$job" >/dev/null
  if [ -n "$loop" ]; then
    wait "$loop"
    backups=$(custody store backups "$run/backups" --json | grep -c '"backup":' || true)
  fi
  js=$(custody status "$job" --json)
  cluster_stop
  echo "$mode: $backups backups" >&2
  job_samples_per_sec "$js"
}

quiet=() busy=()
for r in $(seq "$rounds"); do
  quiet+=("$(measure quiet)")
  busy+=("$(measure backups)")
  echo "round $r: no backup ${quiet[-1]} samples/s, backups running ${busy[-1]} samples/s" >&2
done
m_quiet=$(median "${quiet[@]}")
m_busy=$(median "${busy[@]}")
ratio=$(awk -v a="$m_busy" -v b="$m_quiet" 'BEGIN {printf "%.3f", a / b}')
printf "%-34s %12s\n" "training while backups run" "samples/s"
printf "%-34s %12s\n" "no backup (median of $rounds)" "$m_quiet"
printf "%-34s %12s\n" "backups running (median of $rounds)" "$m_busy"
printf "%-34s %12s\n" "running / none" "$ratio"
cat >"$out_dir/store_at_rest.json" <<JSON
{"benchmark": "store_at_rest", "in_process": $inside,
 "job": "fashion_mlp, $epochs epochs, 1 ps, 2 workers, bsp", "rounds": $rounds,
 "no_backup_samples_per_sec": [$(IFS=,; echo "${quiet[*]}")],
 "backups_running_samples_per_sec": [$(IFS=,; echo "${busy[*]}")],
 "median_no_backup": $m_quiet, "median_backups_running": $m_busy, "ratio_running_none": $ratio}
JSON
echo "wrote $out_dir/store_at_rest.json"
