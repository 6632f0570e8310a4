#!/usr/bin/env bash
# The custody store at scale: builds a store of RECORDS usage records (default 1,000,000,
# written 1000 per write; a few minutes) with bench/store_scale.cc, times verify() and the
# auditor's queries inside one process (medians of REPEATS), then times the CLI as whole
# processes on the same store: `custody usage`, `custody lineage trace` (newest and oldest
# prediction), `custody lineage impact` and `custody audit verify` (its peak RSS from
# /usr/bin/time -v). Prints a table; writes build/bench/store_scale.json.
#   bench/store_scale.sh [RECORDS] [REPEATS]
# The store is kept in build/bench/store-scale-RECORDS and reused by the next run
# (STORE=DIR to put it elsewhere; remove it to rebuild).
set -euo pipefail
source "$(dirname "$0")/../scripts/lib/bench.sh"
records=${1:-1000000}
repeats=${2:-5}
bench_build
store=${STORE:-$out_dir/store-scale-$records}

if [ ! -f "$store/CURRENT" ]; then
  echo "building a store of $records usage records in $store (1000 records per write)" >&2
  "$bin/custody-bench-store" build "$store" --records "$records" >"$out_dir/store_scale_build.json"
fi
inside=$("$bin/custody-bench-store" measure "$store" --repeats "$repeats")
echo "in process: $inside" >&2
field() { echo "$inside" | sed -E "s/.*\"$1\": \"?([^\",}]*)\"?.*/\1/"; }
newest=$(field newest_prediction)
oldest=$(field oldest_prediction)
dataset=$(field dataset)

# Whole processes: start-up, opening the store (a RocksDB secondary), the query, output.
cli=("$bin/custody" --store "$store")
median_ms() {  # COMMAND...: the median wall time of $repeats runs, in ms
  local times=() t0 t1 i
  for i in $(seq "$repeats"); do
    t0=$(date +%s%N)
    "$@" >/dev/null
    t1=$(date +%s%N)
    times+=($(((t1 - t0) / 1000000)))
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n "$(((repeats + 1) / 2))p"
}
usage_ms=$(median_ms "${cli[@]}" usage fashion-mlp --json)
trace_newest_ms=$(median_ms "${cli[@]}" lineage trace "$newest" --json)
trace_oldest_ms=$(median_ms "${cli[@]}" lineage trace "$oldest" --json)
impact_ms=$(median_ms "${cli[@]}" lineage impact "$dataset" --json)
verify_log=$(mktemp)
t0=$(date +%s%N)
/usr/bin/time -v "${cli[@]}" audit verify >/dev/null 2>"$verify_log"
t1=$(date +%s%N)
verify_ms=$(((t1 - t0) / 1000000))
verify_rss_mb=$(($(sed -nE 's/.*Maximum resident set size \(kbytes\): ([0-9]+).*/\1/p' "$verify_log") / 1024))
rm -f "$verify_log"
cli_json="{\"usage_ms\": $usage_ms, \"trace_newest_ms\": $trace_newest_ms, \"trace_oldest_ms\": $trace_oldest_ms, \"impact_ms\": $impact_ms, \"audit_verify_ms\": $verify_ms, \"audit_verify_peak_rss_mb\": $verify_rss_mb}"
if command -v hyperfine >/dev/null; then
  hyperfine -N --warmup 1 --runs "$repeats" --export-json "$out_dir/store_scale_hyperfine.json" \
    "${cli[*]} usage fashion-mlp --json" "${cli[*]} lineage trace $newest --json" \
    "${cli[*]} lineage trace $oldest --json" "${cli[*]} lineage impact $dataset --json" >&2
fi
printf '%-34s %12s %12s\n' "$records usage records" "in process" "CLI process"
printf '%-34s %12s %12s\n' "custody usage fashion-mlp" "$(field usage_ms) ms" "$usage_ms ms"
printf '%-34s %12s %12s\n' "custody lineage trace (newest)" "$(field trace_newest_prediction_ms) ms" "$trace_newest_ms ms"
printf '%-34s %12s %12s\n' "custody lineage trace (oldest)" "$(field trace_oldest_prediction_ms) ms" "$trace_oldest_ms ms"
printf '%-34s %12s %12s\n' "custody lineage impact" "$(field impact_ms) ms" "$impact_ms ms"
printf '%-34s %12s %12s\n' "custody audit verify" "$(field verify_ms) ms" "$verify_ms ms"
printf '%-34s %12s %12s\n' "  peak RSS" "$(field peak_rss_mb_after_verify) MB" "$verify_rss_mb MB"
echo "{\"in_process\": $inside, \"cli\": $cli_json}" >"$out_dir/store_scale.json"
echo "wrote $out_dir/store_scale.json"
