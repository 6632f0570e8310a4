#!/usr/bin/env bash
# Where a step's thread hand-offs go: runs the bench's cluster (1 parameter server + 2
# workers, BSP, separate processes on 127.0.0.1, blocks through shared memory on one host)
# on the default job (or BENCH_JOB=FILE, e.g. configs/jobs/fashion_cnn.toml) cut to EPOCHS epochs with the binaries in BIN, and reads every thread of
# the server and the workers from /proc twice during the job (WINDOW seconds apart): per step, each thread's
# voluntary context switches (it blocked: each is a wait that a wake-up from another thread
# ends) and involuntary ones (preempted), and its CPU time. Threads are named by their
# comm (CAF's detached actors and ZeroMQ's I/O threads are told apart there).
#   bench/threads.sh BIN [EPOCHS]      (default 4 epochs; WARMUP=2 WINDOW=3 seconds)
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
bin_given=$(cd "$1" && pwd)
epochs=${2:-4}
export CUSTODY_BENCH_NO_BUILD=1
source "$(dirname "$0")/../scripts/lib/bench.sh"
bench_setup "$epochs"
bin=$bin_given

snapshot() {  # -> lines "process tid comm voluntary involuntary cpu_ticks"
  local i pid name t
  for i in 1 2 3; do
    pid=${cluster_pids[$i]}
    name=$(tr '\0' ' ' <"/proc/$pid/cmdline" | grep -o -- '--name [^ ]*' | cut -d' ' -f2)
    for t in /proc/"$pid"/task/*; do
      [ -r "$t/status" ] || continue
      printf '%s %s %s %s %s %s\n' "$name" "${t##*/}" "$(tr ' ' '_' <"$t/comm")" \
        "$(awk '/^voluntary_ctxt/ {print $2}' "$t/status")" \
        "$(awk '/^nonvoluntary_ctxt/ {print $2}' "$t/status")" \
        "$(awk '{print $14 + $15}' "$t/stat")" 2>/dev/null || true
    done
  done
}

mkdir -p "$work/run"
cluster_start "$work/run" 1 2
job=$(custody submit "$work/job.toml")
# The trainers' threads live only while the job runs: read every thread twice in its middle.
sleep "${WARMUP:-2}"
t1=$(date +%s.%N)
before=$(snapshot)
sleep "${WINDOW:-3}"
t2=$(date +%s.%N)
after=$(snapshot)
custody wait "$job" >/dev/null
js=$(custody status "$job" --json)
rate=$(job_samples_per_sec "$js")
# Steps a worker in the window, at the job's mean rate (2 workers of 64 samples a step).
steps=$(awk -v a="$t1" -v b="$t2" -v r="$rate" 'BEGIN {printf "%.0f", (b - a) * r / 128}')
echo "1 ps + 2 workers, BSP, $epochs epoch(s): $rate samples/s; ${steps} steps a worker in the $(awk -v a="$t1" -v b="$t2" 'BEGIN {printf "%.1f", b - a}') s window"
printf '%-10s %-16s %10s %10s %12s\n' process thread "vol/step" "invol/step" "CPU us/step"
join <(echo "$before" | awk '{print $1"/"$2, $4, $5, $6}' | sort) \
     <(echo "$after" | awk '{print $1"/"$2, $3, $4, $5, $6}' | sort) |
  awk -v s="$steps" -v hz="$(getconf CLK_TCK)" '{
    split($1, p, "/"); v = ($6 - $2) / s; n = ($7 - $3) / s; c = ($8 - $4) * 1e6 / hz / s;
    if (v + n + c > 0.01) printf "%-10s %-16s %10.2f %10.2f %12.0f\n", p[1], $5, v, n, c }' | sort
