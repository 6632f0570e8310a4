// The entry points of the three node kinds. Each builds its transport context, its CAF
// actor system, its sockets and actors, runs until `stop` turns true (the node's main
// sets it on SIGINT/SIGTERM) or a fatal error, shuts everything down in order, and
// returns the process exit code. nodes/ parses configuration and calls these; this
// header is the whole interface of actors/ to the layer above, and includes no CAF.
#pragma once

#include <atomic>
#include <chrono>
#include <string>

#include "actors/coordinator_state.h"
#include "actors/serving_state.h"

namespace custody::transport {
class Context;
}

namespace custody::actors {

struct CoordinatorNodeConfig {
  std::string listen = "tcp://127.0.0.1:5555";  // ":0" picks a free port
  std::string port_file;  // if set, the bound endpoint is written there once listening
  // The custody store (a RocksDB directory, created if missing). Empty: no lineage, no
  // checkpoints; the coordinator says so at start.
  std::string store;
  CoordinatorOptions options;
  ServingOptions serving;
  // With options.auth: the admin's token. Created (mode 0600) on first start if the file
  // does not exist; registered in the store if the store does not know it.
  std::string admin_token_file;
  // Checkpoint shards carry a server's whole key range. Default: 256 MiB
  size_t max_message_bytes = size_t(256) << 20;
  // The Ed25519 key that signs the store's Merkle heads and every receipt: a file outside
  // the store, created (mode 0600) on first start; its public half goes to FILE.pub, the
  // log and the store. Default (with a store): "<store>.signing-key" beside the store.
  std::string signing_key;
  // If set, a signed head of every log is appended to this file (one JSON document per
  // line) at start and every head_interval: a copy of the history the store's writer
  // cannot silently change (keep it on another machine or medium). Default: none.
  std::string head_file;
  std::chrono::milliseconds head_interval{60000};  // Default: 60 s
};

struct PeerNodeConfig {
  std::string coordinator = "tcp://127.0.0.1:5555";
  std::string name;  // requested node id; empty: the coordinator picks one
  std::chrono::milliseconds connect_timeout{10000};  // to first reach the coordinator
  // Parameter servers: where workers connect. ":0" picks a free port; a wildcard host
  // (tcp://*:PORT or 0.0.0.0) is advertised as advertise_host.
  std::string listen = "tcp://127.0.0.1:0";
  std::string advertise_host = "127.0.0.1";
  size_t max_message_bytes = size_t(256) << 20;
  // The node's token (a principal of role "node"), sent with every message to a
  // coordinator that runs with --auth. Empty: none.
  std::string token;
  // Workers: the longest wait for a parameter server's reply to one step.
  std::chrono::milliseconds step_timeout{60000};
};

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
