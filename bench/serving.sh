#!/usr/bin/env bash
# Serving throughput and latency on loopback, and what accountability costs: trains the
# default model (MLP 784-256-128-10, one epoch) on a local cluster, then calls `predict`
# CALLS times with batches of 1 and 64 rows against a coordinator in each of three modes:
#   receipts   the default: every call durably recorded (its usage record extends the
#              usage log's Merkle tree) and its reply carries a signed receipt
#   recording  recorded, no receipts (--no-receipts, only for this comparison)
#   off        not recorded (--no-usage-recording, only for this comparison)
# The modes alternate (receipts, recording, off; REPEATS times) because these machines'
# speed drifts by 2x between runs; medians of predictions/s per mode, and the medians of
# each repeat's ratios, are printed. Writes build/bench/serving.json.
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
  for mode in receipts recording off; do
    flags=(--store "$work/store")
    [ "$mode" = recording ] && flags+=(--no-receipts)
    [ "$mode" = off ] && flags+=(--no-usage-recording)
    cluster_start "$work" 0 0 "${flags[@]}"
    for batch in 1 64; do
      line=$("$bin/custody-bench-serve" "$cluster_addr" fashion-mlp "$batch" "$calls")
      results+=("{\"mode\": \"$mode\", \"repeat\": $repeat, ${line#\{}")
      echo "repeat $repeat, $mode: $line" >&2
    done
    cluster_stop
  done
done
(IFS=,; echo "[${results[*]}]") >"$out_dir/serving.json"
python3 - "$out_dir/serving.json" <<'PY'
import json, statistics, sys
runs = json.load(open(sys.argv[1]))
def pps(mode, batch):
    return {r["repeat"]: r["predictions_per_sec"] for r in runs if r["mode"] == mode and r["batch"] == batch}
print("%-10s %-6s %16s %10s %10s" % ("mode", "batch", "predictions/s", "p50 us", "p99 us"))
for batch in (1, 64):
    for mode in ("receipts", "recording", "off"):
        rs = [r for r in runs if r["mode"] == mode and r["batch"] == batch]
        print("%-10s %-6d %16.1f %10.1f %10.1f" % (mode, batch, statistics.median(r["predictions_per_sec"] for r in rs),
              statistics.median(r["p50_us"] for r in rs), statistics.median(r["p99_us"] for r in rs)))
print("medians of each repeat's ratio of predictions/s:")
for batch in (1, 64):
    rec, plain, off = pps("receipts", batch), pps("recording", batch), pps("off", batch)
    ratio = lambda a, b: statistics.median(a[k] / b[k] for k in a)
    print("  batch %-3d receipts/recording %.3f   recording/off %.3f   receipts/off %.3f" %
          (batch, ratio(rec, plain), ratio(plain, off), ratio(rec, off)))
PY
echo "wrote $out_dir/serving.json"
