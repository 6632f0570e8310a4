#!/usr/bin/env bash
# The randomized kill trials (tests/integration/chaos.h) over many seeds: a soak to run
# by hand or nightly, beside the fixed seeds CI runs. Builds, then runs build/bin/chaos_soak.
#   scripts/soak.sh [TRIALS] [FIRST_SEED]   seeds FIRST_SEED .. FIRST_SEED+TRIALS-1
#                                           (default 20 trials from seed 1000)
# Ends with "chaos soak: N trials, F failed, failed seeds: ..." (also in
# <build>/soak-FIRST_SEED.log); a failed trial keeps its cluster's logs (the path is printed)
# and is replayed with: build/bin/chaos_soak --seeds SEED
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
trials=${1:-20}
first=${2:-1000}
scripts/build.sh
build=${CUSTODY_BUILD_DIR:-build}
"$build/bin/chaos_soak" --trials "$trials" --first-seed "$first" 2>&1 | tee "$build/soak-$first.log"
