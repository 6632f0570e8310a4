#!/usr/bin/env bash
# HTTP serving against the ZeroMQ path and against a Flask server over the same model, at
# batch 1, one call at a time over one connection (what a latency-bound client sees):
# trains the default model (MLP 784-256-128-10, one epoch), exports its weights for the
# Flask peer (bench/flask_server.py, NumPy, Debian's python3-flask), then alternates, REPEATS
# times, CALLS calls of
#   zmq     custody-bench-serve  -> the coordinator's socket (recorded, with receipts)
#   http    custody-bench-http   -> POST /v2/models/fashion-mlp/infer (recorded, with receipts)
#   predict custody-bench-http   -> POST /predict on the same listener
#   flask   custody-bench-http   -> POST /predict on the Flask server (not recorded)
# and prints the medians of calls/s and latency percentiles per path, and the medians of
# each repeat's ratios http/flask (target >= 5) and http/zmq (target >= 0.7).
# Writes build/bench/http_serving.json.
#   bench/http_serving.sh [CALLS] [REPEATS]       (defaults 2000 and 5)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/bench.sh"
calls=${1:-2000}
repeats=${2:-5}
bench_setup 1
py=/usr/bin/python3  # Debian's, with python3-flask and python3-numpy

cluster_start "$work" 2 2 --store "$work/store"
job=$(custody submit "$work/job.toml")
custody wait "$job" >/dev/null
custody export fashion-mlp "$work/weights.f32" >/dev/null
cluster_stop

cluster_start "$work" 0 0 --store "$work/store" --http-listen 127.0.0.1:0 --http-port-file "$work/http.addr"
for _ in $(seq 100); do [ -s "$work/http.addr" ] && break; sleep 0.05; done
http_addr=$(cat "$work/http.addr")
flask_port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$py" bench/flask_server.py "$work/weights.f32" "$flask_port" 784,256,128,10 >"$work/flask.log" 2>&1 &
flask_pid=$!
trap 'kill $flask_pid 2>/dev/null; cluster_stop; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$flask_port/" && break; sleep 0.1; done

results=()
for repeat in $(seq "$repeats"); do
  for path in zmq http predict flask; do
    case $path in
      zmq) line=$("$bin/custody-bench-serve" "$cluster_addr" fashion-mlp 1 "$calls") ;;
      http) line=$("$bin/custody-bench-http" "$http_addr" oip fashion-mlp 1 "$calls") ;;
      predict) line=$("$bin/custody-bench-http" "$http_addr" predict fashion-mlp 1 "$calls") ;;
      flask) line=$("$bin/custody-bench-http" "127.0.0.1:$flask_port" predict fashion-mlp 1 "$calls") ;;
    esac
    results+=("{\"path\": \"$path\", \"repeat\": $repeat, ${line#\{}")
    echo "repeat $repeat, $path: $line" >&2
  done
done
(IFS=,; echo "[${results[*]}]") >"$out_dir/http_serving.json"
"$py" - "$out_dir/http_serving.json" <<'PY'
import json, statistics, sys
runs = json.load(open(sys.argv[1]))
paths = ("zmq", "http", "predict", "flask")
print("%-8s %10s %10s %10s" % ("path", "calls/s", "p50 us", "p99 us"))
for p in paths:
    rs = [r for r in runs if r["path"] == p]
    print("%-8s %10.1f %10.1f %10.1f" % (p, statistics.median(r["calls_per_sec"] for r in rs),
          statistics.median(r["p50_us"] for r in rs), statistics.median(r["p99_us"] for r in rs)))
by = {p: {r["repeat"]: r["calls_per_sec"] for r in runs if r["path"] == p} for p in paths}
ratio = lambda a, b: statistics.median(by[a][k] / by[b][k] for k in by[a])
print("medians of each repeat's ratio of calls/s:")
print("  http/flask %.2f (target >= 5)   http/zmq %.2f (target >= 0.7)   predict/flask %.2f" %
      (ratio("http", "flask"), ratio("http", "zmq"), ratio("predict", "flask")))
PY
echo "wrote $out_dir/http_serving.json"
