# Sourced by scripts/demo.sh and bench/*.sh: a local cluster of separate processes on
# 127.0.0.1. Requires $bin (the build's bin/ directory).
#   cluster_start RUN_DIR SERVERS WORKERS [extra coordinator flags...]
#   custody ARGS...          the CLI, pointed at the running coordinator
#   cluster_stop             SIGTERM to every process started, SIGKILL after 5 s
cluster_pids=()

cluster_start() {
  local run=$1 servers=$2 workers=$3
  shift 3
  rm -f "$run/coordinator.addr"  # a previous cluster's address must not be taken for this one's
  "$bin/custody-coordinator" --config "$root/configs/coordinator.toml" --listen tcp://127.0.0.1:0 \
    --port-file "$run/coordinator.addr" "$@" >"$run/coordinator.log" 2>&1 &
  cluster_pids+=($!)
  for _ in $(seq 200); do [ -s "$run/coordinator.addr" ] && break; sleep 0.05; done
  if [ ! -s "$run/coordinator.addr" ]; then
    echo "the coordinator did not start; see $run/coordinator.log:" >&2
    tail -n 5 "$run/coordinator.log" >&2
    return 1
  fi
  cluster_addr=$(cat "$run/coordinator.addr")
  local i
  for i in $(seq "$servers"); do
    "$bin/custody-ps" --config "$root/configs/ps.toml" --coordinator "$cluster_addr" --name "ps-$i" \
      >"$run/ps-$i.log" 2>&1 &
    cluster_pids+=($!)
  done
  for i in $(seq "$workers"); do
    "$bin/custody-worker" --config "$root/configs/worker.toml" --coordinator "$cluster_addr" --name "worker-$i" \
      >"$run/worker-$i.log" 2>&1 &
    cluster_pids+=($!)
  done
  local want=$((servers + workers))
  for _ in $(seq 200); do
    [ "$(custody status --json | grep -c '"alive": true')" = "$want" ] && return 0
    sleep 0.1
  done
  echo "not all $want nodes registered within 20 s; see the logs in $run" >&2
  return 1
}

custody() { "$bin/custody" --coordinator "$cluster_addr" "$@"; }

cluster_stop() {
  local pid alive
  for pid in "${cluster_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=0
    for pid in "${cluster_pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${cluster_pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "${cluster_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  cluster_pids=()
}
