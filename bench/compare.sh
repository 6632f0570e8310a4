#!/usr/bin/env bash
# Custody against PyTorch and the machine's limits, in one run: builds Custody, installs the
# benchmark's extra Debian packages (python3-torch and OpenBLAS, which PyTorch would
# otherwise replace by the slow reference BLAS), then runs bench/compare.py.
#   bench/compare.sh [--epochs N] [--target 0.88] [--quick] [--cnn | --cnn-only [--cnn-epochs N]]
# Prints a table with ratios; writes build/bench/compare.json. About 6 minutes here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh --bench
scripts/build.sh
exec /usr/bin/python3 bench/compare.py "$@"
