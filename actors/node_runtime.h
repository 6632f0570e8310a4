// The entry points of the three node kinds. Each builds its transport context, its CAF
// actor system, its sockets and actors, runs until `stop` turns true (the node's main
// sets it on SIGINT/SIGTERM) or a fatal error, shuts everything down in order, and
// returns the process exit code. nodes/ parses configuration (actors/node_config.h) and
// calls these; this header and node_config.h are the whole interface of actors/ to the
// layer above, and include neither CAF nor the state machines.
#pragma once

#include <atomic>

#include "actors/node_config.h"

namespace custody::transport {
class Context;
}

namespace custody::actors {

int run_coordinator(const CoordinatorNodeConfig& config, const std::atomic<bool>& stop);
// `shared`: the transport context of a process that runs several nodes (see below);
// null: the node makes its own.
int run_parameter_server(const PeerNodeConfig& config, const std::atomic<bool>& stop,
                         transport::Context* shared = nullptr);
int run_worker(const PeerNodeConfig& config, const std::atomic<bool>& stop, transport::Context* shared = nullptr);

// A worker and a parameter server in one process (two nodes to the coordinator, each with
// its own name, actors and heartbeats). The worker reaches that server in-process:
// ZeroMQ's inproc transport hands its pushes and the server's replies over by pointer,
// so half of a 2-worker step's bytes never cross the kernel. The process is one unit of
// failure: when either node ends, both stop, and the coordinator recovers both.
int run_worker_with_parameter_server(const PeerNodeConfig& worker, const PeerNodeConfig& server,
                                     const std::atomic<bool>& stop);

}  // namespace custody::actors
