#!/usr/bin/env bash
# Fails when a file reaches past its layer, directly or through any chain of project
# headers, or when project headers include each other in a cycle (run by ctest as
# `layering`; `layering_detects_violations` shows that it fails).
#   core/       -> core/ only; no CAF, ZeroMQ, Cap'n Proto or RocksDB
#   protocols/  -> core/, protocols/; ZeroMQ only in zmq_transport.cc
#   storage/    -> core/, storage/; RocksDB only in rocksdb_key_value.cc
#   actors/     -> core/, protocols/, storage/, actors/; the only folder with CAF
#   nodes/      -> actors/node_runtime.h, actors/node_config.h and core/ (no CAF, ZeroMQ,
#                  Cap'n Proto, protocols/, storage/ or the state machines)
#   tools/      -> core/, protocols/, storage/ (the CLI is a plain client: no actors)
#   cpp-httplib only in actors/http_listener.cc
# A failure names the chain: nodes/a.cc:3 -> actors/b.h:12 -> caf/all.hpp.
# Size: no file in actors/ over 500 lines; a state machine that outgrows that does more
# than one thing, and is split by concern (as the coordinator is: state, admission, attempts).
#   scripts/check_layers.sh [ROOT]   (default: this repository)
set -uo pipefail
root=$(cd "${1:-$(dirname "$0")/..}" && pwd)
lib=$(cd "$(dirname "$0")/lib" && pwd)
rules=""
# folder ("*": every folder below), forbidden includes (a Python regex matched at the
# start of the included path), what to say, files excepted (comma-separated)
rule() { rules+="$1"$'\t'"$2"$'\t'"$3"$'\t'"${4:-}"$'\n'; }
rule core 'protocols/|storage/|actors/|nodes/|tools/|caf/|zmq|capnp/|kj/|rocksdb/' \
  "higher layers or transport/actor/database libraries"
rule protocols 'storage/|actors/|nodes/|tools/|caf/|rocksdb/' "storage, actors, nodes, tools, CAF or RocksDB"
rule storage 'protocols/|actors/|nodes/|tools/|caf/|zmq|capnp/|kj/' \
  "protocols, actors, nodes, tools, CAF, ZeroMQ or Cap'n Proto"
rule actors 'nodes/|tools/|zmq|capnp/|kj/' "nodes, tools, ZeroMQ or Cap'n Proto (use protocols/)"
rule nodes 'caf/|zmq|capnp/|kj/|protocols/|storage/|actors/(?!node_runtime\.h$|node_config\.h$)' \
  "CAF, ZeroMQ, Cap'n Proto, protocols/, storage/ or actors/ beyond node_runtime.h and node_config.h"
rule tools 'actors/|caf/|zmq|capnp/|kj/' "actors, CAF, ZeroMQ or Cap'n Proto"
rule '*' 'zmq' "ZeroMQ (only protocols/zmq_transport.cc may)" protocols/zmq_transport.cc
rule '*' 'rocksdb/' "RocksDB (only storage/rocksdb_key_value.cc may)" storage/rocksdb_key_value.cc
rule '*' 'httplib' "cpp-httplib (only actors/http_listener.cc may)" actors/http_listener.cc
folders=()
for f in core protocols storage actors nodes tools; do [ -d "$root/$f" ] && folders+=("$f"); done
printf '%s' "$rules" | python3 "$lib/layers.py" "$root" "${folders[@]}"
bad=$?
max_lines=500
for f in "$root"/actors/*.h "$root"/actors/*.cc; do
  [ -f "$f" ] || continue
  n=$(wc -l <"$f")
  if [ "$n" -gt "$max_lines" ]; then
    echo "layering: ${f#"$root"/} has $n lines; a file in actors/ stays within $max_lines (split it by concern)"
    bad=1
  fi
done
[ "$bad" = 0 ] && echo "layering: ok"
exit $bad
