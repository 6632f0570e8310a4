# Sourced by bench/*.sh, as  source "$(dirname "$0")/../scripts/lib/bench.sh"
# Moves to the repository root ($root) and defines:
#   bench_build          builds -> $bin, $out_dir (build/bench, created); with
#                        CUSTODY_BENCH_NO_BUILD=1 uses the binaries as they are (the build
#                        then needs only the targets the bench runs)
#   bench_setup EPOCHS   bench_build, loads the local-cluster helpers, and prepares a work
#                        directory that is removed on exit (kept with KEEP=1)
#                        -> also $work, and $work/job.toml: the default job
#                        (configs/jobs/fashion_mlp.toml, or the job file $BENCH_JOB names)
#                        cut to EPOCHS epochs
#   job_samples_per_sec STATUS_JSON   a finished job's samples/s (`custody status JOB
#                        --json`): samples trained / (finished - started), both taken by
#                        the coordinator, for 2 workers of 64 samples a step
#   median N...          the median of integers
#   fmedian X...         the median of numbers, decimals kept
#   timed_job RUN        submits $work/job.toml to the running local cluster, waits, keeps
#                        the job's status in RUN/status.json and prints
#                        "samples/s cpu-ms-per-step" (CPU of all the cluster's processes,
#                        from /proc, per step: what the job cost whatever else ran)
#   alternate ROUNDS MEASURE A B   runs `MEASURE A` then `MEASURE B` (each printing
#                        "samples/s X", X a second figure: CPU ms a step, an accuracy)
#                        ROUNDS times, alternating, and sets ab_a ab_b (samples/s), ab_x_a
#                        ab_x_b (X), ab_ratios (B/A a round), ab_loads (the load average
#                        after each round) and the summary m_a m_b, ratio
#                        (of the medians), m_ratio r_lo r_hi, m_x_a m_x_b; X is named in the
#                        progress lines by $ab_x_label (default "ms CPU a step"). These
#                        machines drift up to 2x between runs: only alternating repeats compare
#   json_list X...       the numbers as a JSON array
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

bench_build() {
  [ -n "${CUSTODY_BENCH_NO_BUILD:-}" ] || scripts/build.sh
  bin="$root/${CUSTODY_BUILD_DIR:-build}/bin"
  out_dir="$root/${CUSTODY_BUILD_DIR:-build}/bench"
  mkdir -p "$out_dir"
}

bench_setup() {
  bench_build
  source scripts/lib/cluster.sh
  work=$(mktemp -d "${TMPDIR:-/tmp}/custody-bench.XXXXXX")
  trap 'cluster_stop; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
  bench_job=${BENCH_JOB:-configs/jobs/fashion_mlp.toml}
  [ -f "$bench_job" ] || { echo "BENCH_JOB=$bench_job: no such job file" >&2; exit 2; }
  sed "s/^epochs = .*/epochs = $1/" "$bench_job" >"$work/job.toml"
}

job_samples_per_sec() {
  local steps started finished
  steps=$(echo "$1" | sed -n 's/.*"total_steps": \([0-9]*\).*/\1/p')
  started=$(echo "$1" | sed -n 's/.*"started_at_ms": \([0-9]*\).*/\1/p')
  finished=$(echo "$1" | sed -n 's/.*"finished_at_ms": \([0-9]*\).*/\1/p')
  echo $((steps * 2 * 64 * 1000 / (finished - started)))
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }
fmedian() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

cluster_cpu_ticks() {  # the local cluster's processes' user + system time, in clock ticks
  local pid total=0
  for pid in "${cluster_pids[@]}"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  echo "$total"
}

timed_job() {
  local run=$1 job t0 t1 js steps
  t0=$(cluster_cpu_ticks)
  job=$(custody submit "$work/job.toml")
  custody wait "$job" >/dev/null
  t1=$(cluster_cpu_ticks)
  js=$(custody status "$job" --json)
  echo "$js" >"$run/status.json"
  steps=$(echo "$js" | sed -n 's/.*"total_steps": \([0-9]*\).*/\1/p')
  echo "$(job_samples_per_sec "$js") $(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v s="$steps" \
    'BEGIN {printf "%.3f", t * 1000 / hz / s}')"
}

alternate() {
  local rounds=$1 measure=$2 a=$3 b=$4 r rate x label=${ab_x_label:-ms CPU a step}
  ab_a=() ab_b=() ab_x_a=() ab_x_b=() ab_ratios=() ab_loads=()
  for r in $(seq "$rounds"); do
    read -r rate x < <("$measure" "$a") || true
    [ -n "$rate" ] || { echo "round $r: measuring $a failed (see above)" >&2; exit 1; }
    ab_a+=("$rate")
    ab_x_a+=("$x")
    read -r rate x < <("$measure" "$b") || true
    [ -n "$rate" ] || { echo "round $r: measuring $b failed (see above)" >&2; exit 1; }
    ab_b+=("$rate")
    ab_x_b+=("$x")
    ab_ratios+=("$(awk -v p="${ab_b[-1]}" -v q="${ab_a[-1]}" 'BEGIN {printf "%.3f", p / q}')")
    ab_loads+=("$(cut -d' ' -f1 /proc/loadavg)")
    echo "round $r: $a ${ab_a[-1]} samples/s (${ab_x_a[-1]} $label), $b ${ab_b[-1]} samples/s" \
      "(${ab_x_b[-1]} $label) ($b/$a ${ab_ratios[-1]}); load ${ab_loads[-1]}" >&2
  done
  m_a=$(fmedian "${ab_a[@]}")
  m_b=$(fmedian "${ab_b[@]}")
  ratio=$(awk -v p="$m_b" -v q="$m_a" 'BEGIN {printf "%.3f", p / q}')
  m_ratio=$(fmedian "${ab_ratios[@]}")
  r_lo=$(printf '%s\n' "${ab_ratios[@]}" | sort -g | head -1)
  r_hi=$(printf '%s\n' "${ab_ratios[@]}" | sort -g | tail -1)
  m_x_a=$(fmedian "${ab_x_a[@]}")
  m_x_b=$(fmedian "${ab_x_b[@]}")
}

json_list() { local IFS=,; echo "[$*]"; }  # numbers -> a JSON array
