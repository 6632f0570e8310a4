#!/usr/bin/env bash
# Fails when a file reaches past its layer (run by ctest as `layering`).
#   core/       -> core/ only; no CAF, ZeroMQ, Cap'n Proto or RocksDB
#   protocols/  -> core/, protocols/; ZeroMQ only in zmq_transport.cc
#   actors/     -> core/, protocols/, actors/; the only folder with CAF
#   nodes/      -> actors/node_runtime.h and core/ (no CAF, ZeroMQ, Cap'n Proto)
#   tools/      -> core/, protocols/ (the CLI is a plain client: no actors)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bad=0
check() {  # folder, pattern of forbidden includes, what to say
  local hits
  hits=$(grep -rnE "^#include [<\"]($2)" "$1" --include='*.h' --include='*.cc' || true)
  if [ -n "$hits" ]; then
    echo "layering: $1 must not include $3:"
    echo "$hits"
    bad=1
  fi
}
check core 'protocols/|storage/|actors/|nodes/|tools/|caf/|zmq|capnp/|kj/|rocksdb/' "higher layers or transport/actor/database libraries"
check protocols 'storage/|actors/|nodes/|tools/|caf/|rocksdb/' "storage, actors, nodes, tools, CAF or RocksDB"
check actors 'nodes/|tools/|zmq|capnp/|kj/' "nodes, tools, ZeroMQ or Cap'n Proto (use protocols/)"
check nodes 'caf/|zmq|capnp/|kj/|protocols/' "CAF, ZeroMQ, Cap'n Proto or protocols/ (go through actors/node_runtime.h)"
check tools 'actors/|caf/|zmq|capnp/|kj/' "actors, CAF, ZeroMQ or Cap'n Proto"
zmq_users=$(grep -rlE '^#include [<"]zmq' core protocols actors nodes tools | grep -v '^protocols/zmq_transport.cc$' || true)
if [ -n "$zmq_users" ]; then
  echo "layering: only protocols/zmq_transport.cc may include ZeroMQ, not: $zmq_users"
  bad=1
fi
[ "$bad" = 0 ] && echo "layering: ok"
exit $bad
