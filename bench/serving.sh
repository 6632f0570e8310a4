#!/usr/bin/env bash
# Serving throughput and latency on loopback, and what accountability costs: trains the
# default model (MLP 784-256-128-10, one epoch) on a local cluster, then calls `predict`
# CALLS times with batches of 1 and 64 rows from one client, and with batches of 1 from 8
# concurrent clients (CALLS each: the usage log's group commit, actors/serving_actor.h,
# shares one synced write among the calls that arrive together; target: recorded calls/s
# at least 0.8 of unrecorded), against a coordinator in each of three modes:
#   receipts   the default: every call durably recorded (its usage record extends the
#              usage log's Merkle tree) and its reply carries a signed receipt
#   recording  recorded, no receipts (--no-receipts, only for this comparison)
#   off        not recorded (--no-usage-recording, only for this comparison)
#   one-sync   as receipts, but each group's sync waits for the one before
#              (--usage-syncs-in-flight 1): what the pipelined group commit gives
# The modes alternate (receipts, one-sync, recording, off; REPEATS times) because these
# machines' speed drifts by 2x between runs; medians of predictions/s per mode, and the
# medians of each repeat's ratios, are printed, with the coordinator's CPU time per call
# (user + system, from /proc: what recording costs in CPU, whatever the disk does).
# Writes build/bench/serving.json.
#   bench/serving.sh [CALLS] [REPEATS]       (defaults 2000 and 5)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/bench.sh"
calls=${1:-2000}
repeats=${2:-5}
bench_setup 1

cluster_start "$work" 2 2 --store "$work/store"
job=$(custody submit "$work/job.toml")
custody wait "$job" >/dev/null
cluster_stop

results=()
for repeat in $(seq "$repeats"); do
  for mode in receipts one-sync recording off; do
    flags=(--store "$work/store")
    [ "$mode" = one-sync ] && flags+=(--usage-syncs-in-flight 1)
    [ "$mode" = recording ] && flags+=(--no-receipts)
    [ "$mode" = off ] && flags+=(--no-usage-recording)
    cluster_start "$work" 0 0 "${flags[@]}"
    for shape in "1 1" "64 1" "1 8"; do
      read -r batch clients <<<"$shape"
      t0=$(cluster_cpu_ticks)
      line=$("$bin/custody-bench-serve" "$cluster_addr" fashion-mlp "$batch" "$calls" 784 "$clients")
      t1=$(cluster_cpu_ticks)
      cpu_us=$(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n=$((calls * clients)) 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')
      results+=("{\"mode\": \"$mode\", \"repeat\": $repeat, \"coordinator_cpu_us_per_call\": $cpu_us, ${line#\{}")
      echo "repeat $repeat, $mode: $line" >&2
    done
    cluster_stop
  done
done
(IFS=,; echo "[${results[*]}]") >"$out_dir/serving.json"
python3 - "$out_dir/serving.json" <<'PY'
import json, statistics, sys
runs = json.load(open(sys.argv[1]))
shapes = [(1, 1), (64, 1), (1, 8)]
def of(mode, shape):
    return [r for r in runs if r["mode"] == mode and (r["batch"], r.get("clients", 1)) == shape]
def pps(mode, shape):
    return {r["repeat"]: r["predictions_per_sec"] for r in of(mode, shape)}
print("%-10s %-6s %-8s %16s %10s %10s %14s" % ("mode", "batch", "clients", "predictions/s", "p50 us", "p99 us",
                                              "cpu us/call"))
for shape in shapes:
    for mode in ("receipts", "one-sync", "recording", "off"):
        rs = of(mode, shape)
        print("%-10s %-6d %-8d %16.1f %10.1f %10.1f %14.1f" % (mode, shape[0], shape[1],
              statistics.median(r["predictions_per_sec"] for r in rs),
              statistics.median(r["p50_us"] for r in rs), statistics.median(r["p99_us"] for r in rs),
              statistics.median(r["coordinator_cpu_us_per_call"] for r in rs)))
print("medians of each repeat's ratio of predictions/s:")
for shape in shapes:
    rec, one, plain, off = pps("receipts", shape), pps("one-sync", shape), pps("recording", shape), pps("off", shape)
    ratio = lambda a, b: statistics.median(a[k] / b[k] for k in a)
    print("  batch %-3d clients %d: receipts/one-sync %.3f   receipts/recording %.3f   recording/off %.3f   "
          "receipts/off %.3f" % (shape[0], shape[1], ratio(rec, one), ratio(rec, plain), ratio(plain, off),
                                 ratio(rec, off)))
PY
echo "wrote $out_dir/serving.json"
