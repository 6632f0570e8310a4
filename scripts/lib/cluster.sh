# Sourced by scripts/demo.sh and bench/*.sh: a local cluster of separate processes on
# 127.0.0.1. Requires $bin (the build's bin/ directory).
#   cluster_start RUN_DIR SERVERS WORKERS [extra coordinator flags...]
#   custody ARGS...          the CLI, pointed at the running coordinator (with the token
#                            in $cluster_token, or the key pair in $cluster_key, if set)
#   cluster_stop             SIGTERM to every process started, SIGKILL after 5 s
# With CLUSTER_AUTH=1 the coordinator requires tokens: the admin's lands in
# RUN_DIR/admin.token (and in $cluster_token), the nodes get a "node" principal's token.
# With CLUSTER_SECURITY=curve every connection is CurveZMQ: the coordinator's key pair is
# RUN_DIR/coordinator.key (public half in .pub), the admin's RUN_DIR/admin.key (and in
# $cluster_key), the nodes get a "node" principal's key pair, RUN_DIR/node.key.
# CLUSTER_PS_<i>_ARGS and CLUSTER_WORKER_<i>_ARGS (words) are added to the command line of
# ps-<i> and worker-<i> (bench/pinning.sh gives each its --pin-cpu so).
cluster_pids=()
cluster_token=
cluster_key=
cluster_run=

cluster_start() {
  local run=$1 servers=$2 workers=$3
  shift 3
  rm -f "$run/coordinator.addr"  # a previous cluster's address must not be taken for this one's
  local auth=() node_auth=()
  cluster_run=$run
  if [ -n "${CLUSTER_AUTH:-}" ]; then auth=(--auth --admin-token-file "$run/admin.token"); fi
  if [ "${CLUSTER_SECURITY:-}" = curve ]; then
    auth=(--security curve --key-file "$run/coordinator.key" --admin-key-file "$run/admin.key")
  fi
  "$bin/custody-coordinator" --config "$root/configs/coordinator.toml" --listen tcp://127.0.0.1:0 \
    --port-file "$run/coordinator.addr" "${auth[@]}" "$@" >"$run/coordinator.log" 2>&1 &
  cluster_pids+=($!)
  for _ in $(seq 200); do [ -s "$run/coordinator.addr" ] && break; sleep 0.05; done
  if [ ! -s "$run/coordinator.addr" ]; then
    echo "the coordinator did not start; see $run/coordinator.log:" >&2
    tail -n 5 "$run/coordinator.log" >&2
    return 1
  fi
  cluster_addr=$(cat "$run/coordinator.addr")
  if [ -n "${CLUSTER_AUTH:-}" ]; then
    cluster_token="$run/admin.token"
    custody principal add nodes --role node >"$run/node.token" 2>/dev/null
    node_auth=(--token-file "$run/node.token")
  fi
  if [ "${CLUSTER_SECURITY:-}" = curve ]; then
    cluster_key="$run/admin.key"
    custody principal add nodes --role node --key-out "$run/node.key" >/dev/null 2>&1
    node_auth=(--key-file "$run/node.key" --coordinator-key "$run/coordinator.key.pub")
  fi
  local i
  local extra_var extra
  for i in $(seq "$servers"); do
    extra_var="CLUSTER_PS_${i}_ARGS"
    read -ra extra <<<"${!extra_var:-}"
    "$bin/custody-ps" --config "$root/configs/ps.toml" --coordinator "$cluster_addr" --name "ps-$i" \
      "${node_auth[@]}" "${extra[@]}" >"$run/ps-$i.log" 2>&1 &
    cluster_pids+=($!)
  done
  for i in $(seq "$workers"); do
    extra_var="CLUSTER_WORKER_${i}_ARGS"
    read -ra extra <<<"${!extra_var:-}"
    "$bin/custody-worker" --config "$root/configs/worker.toml" --coordinator "$cluster_addr" --name "worker-$i" \
      "${node_auth[@]}" "${extra[@]}" >"$run/worker-$i.log" 2>&1 &
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

custody() {
  if [ -n "$cluster_key" ]; then
    "$bin/custody" --coordinator "$cluster_addr" --key-file "$cluster_key" \
      --coordinator-key "$cluster_run/coordinator.key.pub" "$@"
  elif [ -n "$cluster_token" ]; then
    "$bin/custody" --coordinator "$cluster_addr" --token-file "$cluster_token" "$@"
  else
    "$bin/custody" --coordinator "$cluster_addr" "$@"
  fi
}

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
