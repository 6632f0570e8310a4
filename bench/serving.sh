#!/usr/bin/env bash
# Serving throughput and latency on loopback, and what accountability costs: trains the
# default model (MLP 784-256-128-10, one epoch) on a local cluster, then calls `predict`
# CALLS times with batches of 1 and 64 rows from one client, and with batches of 1 from 8
# and 32 concurrent clients (CALLS each: the usage log's group commit, actors/serving_actor.h,
# shares one synced write among the calls that arrive together; target: recorded calls/s
# at least 0.8 of unrecorded with 8 clients), against a coordinator in each of four modes:
#   receipts   the default: every call durably recorded (its usage record extends the
#              usage log's Merkle tree) and its reply carries a signed receipt
#   recording  recorded, no receipts (--no-receipts, only for this comparison)
#   off        not recorded (--no-usage-recording, only for this comparison)
#   no-wait    as receipts, but a group never waits for the callers expected to join it
#              (--usage-group-wait-us 0): what the group wait gives
# The modes alternate (receipts, no-wait, recording, off; REPEATS times) because these
# machines' speed drifts by 2x between runs; medians of predictions/s per mode, and the
# medians of each repeat's ratios, are printed, with the coordinator's CPU time per call
# (user + system, from /proc: what recording costs in CPU, whatever the disk does).
# Each repeat also times this disk's fdatasync of a small append in the store's directory
# (median of 200): a synchronous client of a recorded call waits at least one, so C
# clients get at most C / sync recorded calls/s, however little recording costs in CPU;
# that ceiling, as a share of the unrecorded calls/s, is printed beside the ratios.
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

# The median time of one fdatasync of a small append, in microseconds, in directory $1.
sync_us() {
  python3 - "$1" <<'PY'
import os, statistics, sys, time
path = os.path.join(sys.argv[1], "sync-probe")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
times = []
for _ in range(200):
    os.write(fd, b"x" * 600)  # about one group's usage records
    t = time.perf_counter()
    os.fdatasync(fd)
    times.append(time.perf_counter() - t)
os.close(fd)
os.unlink(path)
print("%.1f" % (statistics.median(times) * 1e6))
PY
}

results=()
syncs=()
for repeat in $(seq "$repeats"); do
  syncs+=("{\"repeat\": $repeat, \"sync_us\": $(sync_us "$work")}")
  for mode in receipts no-wait recording off; do
    flags=(--store "$work/store")
    [ "$mode" = no-wait ] && flags+=(--usage-group-wait-us 0)
    [ "$mode" = recording ] && flags+=(--no-receipts)
    [ "$mode" = off ] && flags+=(--no-usage-recording)
    cluster_start "$work" 0 0 "${flags[@]}"
    for shape in "1 1" "64 1" "1 8" "1 32"; do
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
(IFS=,; echo "{\"runs\": [${results[*]}], \"syncs\": [${syncs[*]}]}") >"$out_dir/serving.json"
python3 - "$out_dir/serving.json" <<'PY'
import json, statistics, sys
data = json.load(open(sys.argv[1]))
runs = data["runs"]
sync_us = {s["repeat"]: s["sync_us"] for s in data["syncs"]}
shapes = [(1, 1), (64, 1), (1, 8), (1, 32)]
def of(mode, shape):
    return [r for r in runs if r["mode"] == mode and (r["batch"], r.get("clients", 1)) == shape]
def pps(mode, shape):
    return {r["repeat"]: r["predictions_per_sec"] for r in of(mode, shape)}
print("%-10s %-6s %-8s %16s %10s %10s %14s" % ("mode", "batch", "clients", "predictions/s", "p50 us", "p99 us",
                                              "cpu us/call"))
for shape in shapes:
    for mode in ("receipts", "no-wait", "recording", "off"):
        rs = of(mode, shape)
        print("%-10s %-6d %-8d %16.1f %10.1f %10.1f %14.1f" % (mode, shape[0], shape[1],
              statistics.median(r["predictions_per_sec"] for r in rs),
              statistics.median(r["p50_us"] for r in rs), statistics.median(r["p99_us"] for r in rs),
              statistics.median(r["coordinator_cpu_us_per_call"] for r in rs)))
print("medians of each repeat's ratio of predictions/s:")
for shape in shapes:
    rec, nowait, plain, off = pps("receipts", shape), pps("no-wait", shape), pps("recording", shape), pps("off", shape)
    ratio = lambda a, b: statistics.median(a[k] / b[k] for k in a)
    # The most a recorded call can reach when every caller waits one sync per call.
    ceiling = statistics.median(min(1.0, shape[1] * shape[0] / (sync_us[k] * 1e-6) / off[k]) for k in off)
    print("  batch %-3d clients %-2d: receipts/no-wait %.3f   receipts/recording %.3f   recording/off %.3f   "
          "receipts/off %.3f   (one sync per caller allows at most %.3f)" % (
              shape[0], shape[1], ratio(rec, nowait), ratio(rec, plain), ratio(plain, off), ratio(rec, off), ceiling))
print("fdatasync of a small append, median per repeat: %s us" % ", ".join("%.0f" % sync_us[k] for k in sorted(sync_us)))
PY
echo "wrote $out_dir/serving.json"
