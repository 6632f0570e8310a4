#!/usr/bin/env bash
# Peak resident memory (VmHWM, /proc/PID/status, read after the job ends and before the
# processes stop) of every node of a local cluster, 1 parameter server + WORKERS workers,
# training the default job (configs/jobs/fashion_mlp.toml cut to EPOCHS epochs):
#   1. the default job (2 workers, Fashion-MNIST, 47 MB of uint8 pixels) with this build,
#      and, if BEFORE_BIN names the bin/ directory of a build of the base commit, with it
#      too, alternating, ROUNDS times each (medians);
#   2. the data set doubled (both splits written twice into one IDX file pair, gzipped, in
#      a temporary directory: 120,000 + 20,000 records) with twice the workers (4), this
#      build: a worker's shard is the same size, so its peak should be too.
# Also the slowest worker's time to read and check its records (from the coordinator's log
# of each shardObtained). Writes build/bench/memory.json.
#   [BEFORE_BIN=DIR] [NO_BUILD=1] bench/memory.sh [ROUNDS] [EPOCHS]   (defaults 1 round of 1 epoch)
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/bench.sh"
rounds=${1:-1}
epochs=${2:-1}
# bench_setup, building only the four programs the bench runs.
[ -n "${NO_BUILD:-}" ] || cmake --build "${CUSTODY_BUILD_DIR:-build}" --target custody custody-coordinator custody-ps custody-worker >&2
bin="$root/${CUSTODY_BUILD_DIR:-build}/bin"
out_dir="$root/${CUSTODY_BUILD_DIR:-build}/bench"
mkdir -p "$out_dir"
source scripts/lib/cluster.sh
work=$(mktemp -d "${TMPDIR:-/tmp}/custody-bench.XXXXXX")
trap 'cluster_stop; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
sed "s/^epochs = .*/epochs = $epochs/" configs/jobs/fashion_mlp.toml >"$work/job.toml"
after_bin=$bin

# Both splits twice over, as one IDX pair each (gzip -1: the bench measures memory).
double_data() {
  python3 - "$1" <<'PY'
import gzip, struct, sys
src, dst = "/usr/share/datasets/fashion-mnist", sys.argv[1]
for split in ("train", "t10k"):
    for kind, header in (("images", 16), ("labels", 8)):
        raw = gzip.open(f"{src}/{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz").read()
        n = struct.unpack(">I", raw[4:8])[0]
        out = raw[:4] + struct.pack(">I", 2 * n) + raw[8:header] + raw[header:] * 2
        with gzip.open(f"{dst}/{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte.gz", "wb", 1) as f:
            f.write(out)
PY
}

hwm_mb() { awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# measure BIN JOB_FILE SERVERS WORKERS -> "coordinator ps worker-1 ... worker-N" in MB
measure() {
  local run job out=() pid
  bin=$1
  run=$(mktemp -d "$work/run.XXXX")
  cluster_start "$run" "$3" "$4" --store "$run/store" >&2
  job=$(custody submit "$2")
  custody wait "$job" >/dev/null
  if ! custody status "$job" --json | grep -q '"state": "completed"'; then
    echo "the job did not complete:" >&2
    custody status "$job" >&2 || true
    tail -n 5 "$run"/*.log >&2
    cluster_stop
    exit 1
  fi
  for pid in "${cluster_pids[@]}"; do out+=("$(hwm_mb "$pid")"); done
  cluster_stop
  # How long each worker took to read and check its records (its shardObtained, as the
  # coordinator logged it): the slowest, in ms.
  load_ms=$(sed -n "s/.*records, verified (local: .*, \([0-9]*\) ms).*/\1/p" "$run/coordinator.log" | sort -n | tail -1)
  echo "${load_ms:-0} ${out[*]}"
}

summary() {  # label load-ms MB... -> "coordinator X, ps Y, workers max Z"
  local label=$1 load=$2 coord=$3 ps=$4
  shift 4
  local max
  max=$(printf '%s\n' "$@" | sort -g | tail -1)
  echo "$label: coordinator $coord MB, server $ps MB, workers $* MB (max $max); slowest worker load $load ms"
}

declare -A col
for r in $(seq "$rounds"); do
  for side in before after; do
    if [ "$side" = before ]; then
      [ -n "${BEFORE_BIN:-}" ] || continue
      b=$BEFORE_BIN
    else
      b=$after_bin
    fi
    read -r -a mb < <(measure "$b" "$work/job.toml" 1 2)
    summary "round $r, $side, default job (2 workers)" "${mb[@]}" >&2
    col[$side.load]+=" ${mb[0]}"
    col[$side.coordinator]+=" ${mb[1]}"
    col[$side.server]+=" ${mb[2]}"
    col[$side.worker]+=" $(printf '%s\n' "${mb[@]:3}" | sort -g | tail -1)"
  done
done

mkdir -p "$work/double"
double_data "$work/double"
sed -e "s#^dir = .*#dir = \"$work/double\"#" -e 's/^workers = .*/workers = 4/' -e 's/^name = "fashion-mnist"/name = "fashion-mnist-doubled"/' \
  "$work/job.toml" >"$work/double.toml"
read -r -a dmb < <(measure "$after_bin" "$work/double.toml" 1 4)
summary "doubled data set (4 workers)" "${dmb[@]}" >&2
dworker=$(printf '%s\n' "${dmb[@]:3}" | sort -g | tail -1)

med() { [ -n "${1// /}" ] && fmedian $1 || echo null; }
{
  echo "{"
  echo "  \"rounds\": $rounds, \"epochs\": $epochs, \"unit\": \"MB (VmHWM)\","
  for side in before after; do
    echo "  \"$side\": {\"coordinator\": $(med "${col[$side.coordinator]:-}"), \"server\": $(med "${col[$side.server]:-}"), \"worker_max\": $(med "${col[$side.worker]:-}"), \"worker_load_ms\": $(med "${col[$side.load]:-}")},"
  done
  echo "  \"doubled_4_workers\": {\"coordinator\": ${dmb[1]}, \"server\": ${dmb[2]}, \"worker_max\": $dworker, \"worker_load_ms\": ${dmb[0]}}"
  echo "}"
} | tee "$out_dir/memory.json"
