#!/usr/bin/env bash
# Shows that scripts/check_layers.sh fails when it should (ctest: layering_detects_violations):
# on a small tree where nodes/ reaches CAF only through two allowed headers, and two core/
# headers include each other, it must exit non-zero and name both chains; on the same tree
# without them it must pass; and it must fail on a file in actors/ of more than 500 lines.
#   tests/scripts/check_layers_test.sh [path/to/check_layers.sh]
set -uo pipefail
checker=${1:-$(cd "$(dirname "$0")/../.." && pwd)/scripts/check_layers.sh}
tree=$(mktemp -d "${TMPDIR:-/tmp}/custody-layers.XXXXXX")
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree/core" "$tree/actors" "$tree/nodes"
printf '#include "core/b.h"\n' >"$tree/core/a.h"
printf '#include <string>\n#include "core/a.h"\n' >"$tree/core/b.h"
printf '#include "actors/node_config.h"\n' >"$tree/actors/node_runtime.h"
printf '#include <chrono>\n#include <caf/all.hpp>\n' >"$tree/actors/node_config.h"
printf '// a main\n#include "actors/node_runtime.h"\n' >"$tree/nodes/main.cc"
fail() {
  echo "check_layers_test: $1"
  echo "--- the checker said (exit $status):"
  echo "$out"
  exit 1
}
expect() { grep -qF -- "$1" <<<"$out" || fail "expected a line with: $1"; }

out=$("$checker" "$tree" 2>&1)
status=$?
[ "$status" -ne 0 ] || fail "a tree with a transitive violation and a cycle passed"
expect "layering: nodes/main.cc must not reach CAF"
expect ": nodes/main.cc:2 -> actors/node_runtime.h:1 -> actors/node_config.h:2 -> caf/all.hpp"
expect "layering: include cycle: core/a.h -> core/b.h -> core/a.h"
[ "$(grep -c '^layering:' <<<"$out")" -eq 2 ] || fail "expected exactly the two failures above"

printf '#include <chrono>\n' >"$tree/actors/node_config.h"
printf '#include <string>\n' >"$tree/core/b.h"
out=$("$checker" "$tree" 2>&1)
status=$?
[ "$status" -eq 0 ] || fail "the same tree without the violations failed"
expect "layering: ok"

seq 1 501 | sed 's|^|// line |' >"$tree/actors/big.cc"
out=$("$checker" "$tree" 2>&1)
status=$?
[ "$status" -ne 0 ] || fail "an actors/ file of 501 lines passed"
expect "layering: actors/big.cc has 501 lines; a file in actors/ stays within 500"
echo "check_layers_test: ok"
