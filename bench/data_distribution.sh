#!/usr/bin/env bash
# What data shipping costs (docs/ARCHITECTURE.md, "Data shipping"): the time to distribute
# Fashion-MNIST's shards to two workers that do not have the data set, against the time of
# one epoch of the default job (configs/jobs/fashion_mlp.toml, 2 workers, BSP) on workers
# that have it, in one run, alternating, ROUNDS times each. Per round, on a fresh cluster
# (1 ps + 2 workers, separate processes on 127.0.0.1, records caches empty):
#   epoch        a 1-epoch job with the files in place: its time from start to end, taken
#                by the coordinator (loading the gzipped files included, as every job has it);
#   distribution the same job with the files gone before the workers start: the longer of
#                the two workers' fetch-and-verify times, as each recorded it in its
#                shard_obtained event (both fetch at once, each its own rank's records);
# then the ratio distribution / epoch, and the medians. Also the workers' time to read and
# check the local gzipped files (how = local), for comparison. On loopback this measures the
# protocol's own cost (chunks, hashing, the cache's writes and syncs), not a network's
# bandwidth: across hosts, add the records' bytes (about 27 MB a worker) over the link.
# Writes build/bench/data_distribution.json.
#   bench/data_distribution.sh [ROUNDS]      (default 5)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/bench.sh"
rounds=${1:-5}
bench_setup 1
data_src=/usr/share/datasets/fashion-mnist
[ -r "$data_src/train-images-idx3-ubyte.gz" ] || { echo "needs Fashion-MNIST in $data_src (scripts/setup.sh)" >&2; exit 1; }

start_workers() {  # RUN: two workers, each with an empty records cache of its own
  local i
  for i in 1 2; do
    "$bin/custody-worker" --config "$root/configs/worker.toml" --coordinator "$cluster_addr" --name "worker-$i" \
      --data-cache "$1/records-$i" >"$1/worker-$i.log" 2>&1 &
    cluster_pids+=($!)
  done
  for _ in $(seq 200); do
    [ "$(custody status --json | grep -c '"alive": true')" = 3 ] && return 0
    sleep 0.1
  done
  echo "the workers did not register; see $1" >&2
  return 1
}

obtained_ms() {  # JOB HOW: the longest elapsed_ms of the job's shard_obtained events of that kind
  custody lineage show "$1" --json | python3 -c '
import json, sys
events = [e.get("body", e) for e in json.load(sys.stdin)["events"]]
times = [e["elapsed_ms"] for e in events if e.get("event") == "shard_obtained" and e.get("how") == sys.argv[1]]
if len(times) != 2: sys.exit("expected 2 shard_obtained events of kind %s, got %d" % (sys.argv[1], len(times)))
print(max(times))' "$2"
}

measure() {  # local|fetched -> "ms-of-the-measure ms-to-obtain"
  local mode=$1 run job js
  run=$(mktemp -d "$work/$mode.XXXX")
  mkdir -p "$run/data"
  cp "$data_src"/*.gz "$run/data/"
  sed "s|^dir = .*|dir = \"$run/data\"|" "$work/job.toml" >"$run/job.toml"
  cluster_start "$run" 1 0 --store "$run/store"
  job=$(custody submit "$run/job.toml")
  [ "$mode" = fetched ] && mv "$run/data" "$run/data.away"
  start_workers "$run"
  custody wait "$job" >/dev/null
  js=$(custody status "$job" --json)
  local obtained
  obtained=$(obtained_ms "$job" "$mode")
  cluster_stop
  cluster_pids=()
  local started finished
  started=$(echo "$js" | sed -n 's/.*"started_at_ms": \([0-9]*\).*/\1/p')
  finished=$(echo "$js" | sed -n 's/.*"finished_at_ms": \([0-9]*\).*/\1/p')
  echo "$((finished - started)) $obtained"
}

epochs=() loads=() dists=() ratios=()
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then
    read -r epoch load < <(measure local)
    read -r _ dist < <(measure fetched)
  else
    read -r _ dist < <(measure fetched)
    read -r epoch load < <(measure local)
  fi
  epochs+=("$epoch") loads+=("$load") dists+=("$dist")
  ratios+=("$(awk -v a="$dist" -v b="$epoch" 'BEGIN {printf "%.3f", a / b}')")
  echo "round $r: one epoch $epoch ms (local files read and checked in $load ms), distribution to two" \
    "data-less workers $dist ms (${ratios[-1]} of an epoch); load $(cut -d' ' -f1 /proc/loadavg)" >&2
done
m_epoch=$(fmedian "${epochs[@]}")
m_load=$(fmedian "${loads[@]}")
m_dist=$(fmedian "${dists[@]}")
m_ratio=$(fmedian "${ratios[@]}")
r_lo=$(printf '%s\n' "${ratios[@]}" | sort -g | head -1)
r_hi=$(printf '%s\n' "${ratios[@]}" | sort -g | tail -1)
printf "%-58s %10s\n" "Fashion-MNIST, 2 workers (1 ps), medians of $rounds rounds" "ms"
printf "%-58s %10s\n" "one epoch of fashion_mlp, files on the workers" "$m_epoch"
printf "%-58s %10s\n" "  of which a worker reads and checks its local files" "$m_load"
printf "%-58s %10s\n" "distribution: both workers fetch and verify their shards" "$m_dist"
printf "%-58s %10s\n" "distribution / epoch (median of the rounds' ratios)" "$m_ratio (rounds $r_lo to $r_hi)"
cat >"$out_dir/data_distribution.json" <<JSON
{"benchmark": "data_distribution", "job": "fashion_mlp, 1 epoch, 1 ps, 2 workers, bsp, loopback", "rounds": $rounds,
 "epoch_ms": [$(IFS=,; echo "${epochs[*]}")], "local_load_ms": [$(IFS=,; echo "${loads[*]}")],
 "distribution_ms": [$(IFS=,; echo "${dists[*]}")], "round_ratios": [$(IFS=,; echo "${ratios[*]}")],
 "median_epoch_ms": $m_epoch, "median_local_load_ms": $m_load, "median_distribution_ms": $m_dist,
 "median_ratio": $m_ratio}
JSON
echo "wrote $out_dir/data_distribution.json"
