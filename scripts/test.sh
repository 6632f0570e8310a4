#!/usr/bin/env bash
# The README's second command: installs what is missing, builds, runs every test.
#   scripts/test.sh [ctest arguments, e.g. -R codec]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/setup.sh
scripts/build.sh
build=${CUSTODY_BUILD_DIR:-build}
cd "$build"
ctest --output-on-failure --timeout 600 -j 2 "$@"
