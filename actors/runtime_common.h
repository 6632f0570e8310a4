// Shared plumbing of the node runtimes (internal to actors/).
#pragma once

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <initializer_list>
#include <thread>

#include "actors/caf_types.h"
#include "actors/http_listener.h"
#include "actors/node_config.h"
#include "actors/socket_bridge.h"
#include "core/cpu_affinity.h"
#include "core/log.h"
#include "protocols/curve_key_file.h"
#include "protocols/shared_region.h"

namespace custody::actors {

// How an actor tells the node's main thread to stop with an exit code.
struct NodeExit {
  std::atomic<bool> requested{false};
  std::atomic<int> code{0};
  // Set by the node's actor once the coordinator acknowledged its deregistration (or the
  // node had no registration to take back): see run_until_stopped.
  std::atomic<bool> left{false};
  void fail(int c) {
    code = c;
    requested = true;
  }
};

// Blocks until the signal flag or a NodeExit request; polls, since neither can wake us.
inline void wait_for_stop(const std::atomic<bool>& stop, const NodeExit& exit) {
  while (!stop && !exit.requested) std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

// How long a stopping node waits for the coordinator to acknowledge its deregistration: a
// live coordinator answers in milliseconds; one that is down must not hold up the exit
// (it then marks the node dead after its heartbeat timeout, as for a crash).
inline constexpr std::chrono::milliseconds kLeaveTimeout{1000};

// Stops a running node: waits for the signal flag or a NodeExit request; on the signal
// (an operator's stop, not a fatal error) first sends `node` (its actor with the NodeLink)
// a leave_atom and waits up to kLeaveTimeout for NodeExit::left, so the coordinator
// deregisters it and recovers its jobs at once; then asks each of `actors` (the node's own
// and its socket bridges) to exit, and waits for every actor of `system` to finish.
// Returns the node's exit code.
inline int run_until_stopped(caf::actor_system& system, const std::atomic<bool>& stop, const NodeExit& exit,
                             std::initializer_list<caf::actor> actors, const caf::actor& node = {},
                             const std::string& name = "") {
  wait_for_stop(stop, exit);
  if (node && !exit.requested) {
    caf::anon_send(node, leave_atom::value);
    const auto deadline = std::chrono::steady_clock::now() + kLeaveTimeout;
    while (!exit.left && !exit.requested && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (!exit.left) {
      log(LogLevel::kWarn, name, "stopping without the coordinator's acknowledgement of the deregistration (none "
                                 "within " + std::to_string(kLeaveTimeout.count()) +
                                     " ms); it will mark this node dead after its heartbeat timeout");
    } else {
      log(LogLevel::kInfo, name, "stopping: deregistered from the coordinator");
    }
  }
  for (const auto& a : actors) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  system.await_all_actors_done();
  return exit.code;
}

// The scheduler of a node that trains (a worker or a parameter server): CAF's
// work-sharing policy, whose idle threads block on a condition variable. The default
// work-stealing policy polls: after each message its threads wake every 50 us for a
// while, then every 10 ms, looking for work to steal. Measured with perf during a BSP job
// (docs/ARCHITECTURE.md, "Where a step's CPU goes"), those wake-ups were 18-19% of each
// worker process's CPU time on a 2-core machine, time taken from the trainers' gradients.
// Nothing on a step's path runs on the shared scheduler (trainers, servers and socket
// bridges have threads of their own), so giving up stealing costs nothing there.
inline void quiet_scheduler(caf::actor_system_config& cfg) {
  cfg.set("scheduler.policy", caf::atom("sharing"));
}

// Logs a failed start-up step under the node's name. True when it failed: the node then
// exits with 2 before any actor runs.
inline bool start_failed(const std::string& node, const Status& s) {
  if (s.is_ok()) return false;
  log(LogLevel::kError, node, s.message());
  return true;
}

// The options of a node's socket bridge: `node` sends its error replies and prefixes its
// log lines; frames over max_message_bytes are refused; `metrics` counts its bytes.
inline BridgeOptions bridge_options(Channel channel, const std::string& node, size_t max_message_bytes,
                                    MetricsRegistry* metrics = nullptr) {
  BridgeOptions o;
  o.channel = channel;
  o.node_name = node;
  o.limits.max_bytes = max_message_bytes;
  o.metrics = metrics;
  return o;
}

// Starts `listener` on the node's metrics_listen, if set. False (logged) if it cannot.
inline bool start_metrics(MetricsListener& listener, const PeerNodeConfig& c, const std::string& node) {
  if (c.metrics_listen.empty()) return true;
  Status s = listener.start(c.metrics_listen, c.metrics_port_file);
  if (start_failed(node, s)) return false;
  log(LogLevel::kInfo, node, "Prometheus metrics at http://" + listener.address() + "/metrics");
  return true;
}

// The node's --pin-cpu list (empty: not pinned), or an error naming the flag.
inline Result<CpuList> pin_cpus(const PeerNodeConfig& c) {
  if (c.pin_cpu.empty()) return CpuList();
  auto list = CpuList::parse(c.pin_cpu);
  if (!list.is_ok()) return Status(list.status().code(), "--pin-cpu (node.pin_cpu): " + list.status().message());
  return list;
}

// How a node connects to the coordinator: over CurveZMQ when it has a key file (then the
// coordinator's public key is needed too), else plain.
inline Result<transport::SocketOptions> coordinator_link_options(const PeerNodeConfig& c) {
  transport::SocketOptions o;
  if (c.key_file.empty() && c.coordinator_key.empty()) return o;
  if (c.key_file.empty() || c.coordinator_key.empty()) {
    return invalid_argument("a CurveZMQ connection needs both key_file (this node's key pair, from `custody "
                            "principal add NAME --role node`) and coordinator_key (the coordinator's public key)");
  }
  CUSTODY_ASSIGN_OR_RETURN(auto identity, transport::read_key_file(c.key_file));
  CUSTODY_ASSIGN_OR_RETURN(o.curve_server_key, transport::read_public_key(c.coordinator_key));
  o.curve_client = identity.keys;
  return o;
}

// Connects a node to the coordinator (coordinator_link_options).
inline Result<std::unique_ptr<transport::Socket>> connect_to_coordinator(transport::Context& context,
                                                                        const PeerNodeConfig& c) {
  CUSTODY_ASSIGN_OR_RETURN(auto options, coordinator_link_options(c));
  return transport::Socket::connect(context, c.coordinator, options);
}

inline std::string host_name() {
  char buf[256] = {0};
  gethostname(buf, sizeof(buf) - 1);
  return buf;
}

// How this process introduces itself to the coordinator.
inline msg::Register registration(msg::NodeRole role, const std::string& name, const std::string& address = "") {
  msg::Register r;
  r.role = role;
  r.address = address;
  r.host = host_name();
  r.host_id = shm::host_identity();  // which nodes may share memory (protocols/shared_region.h)
  r.pid = static_cast<uint32_t>(getpid());
  r.name = name;
  return r;
}

// Removes the shared-memory regions that processes of this user left when they died
// (protocols/shared_region.h), so that a killed node leaves nothing in /dev/shm for long.
inline void sweep_shared_memory(const std::string& node) {
  if (size_t n = shm::SharedRegion::sweep_stale())
    log(LogLevel::kInfo, node, "removed " + std::to_string(n) + " shared-memory regions of processes that died");
}

// tcp://*:5556 or tcp://0.0.0.0:5556 -> tcp://HOST:5556
inline std::string advertised(const std::string& endpoint, const std::string& host) {
  auto colon = endpoint.rfind(':');
  auto scheme = endpoint.find("://");
  if (colon == std::string::npos || scheme == std::string::npos) return endpoint;
  std::string bound_host = endpoint.substr(scheme + 3, colon - scheme - 3);
  if (bound_host == "*" || bound_host == "0.0.0.0" || bound_host == "[::]") {
    return endpoint.substr(0, scheme + 3) + host + endpoint.substr(colon);
  }
  return endpoint;
}

}  // namespace custody::actors
