// The typed configuration of the node kinds: what nodes/ fills from a TOML file and flags
// and hands to the entry points of node_runtime.h, and the options of the coordinator's
// and the serving actor's state machines inside it. Kept apart from those state machines
// (as LevelDB's options.h is from db_impl.h) so that a node's main sees settings, not the
// logic they set: this header includes the standard library only.
// Thread-safety: plain values.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace custody::actors {

// Of CoordinatorState (actors/coordinator_state.h).
struct CoordinatorOptions {
  std::chrono::milliseconds heartbeat_interval{1000};  // Default: 1 s
  std::chrono::milliseconds heartbeat_timeout{5000};   // Default: 5 s
  size_t max_finished_jobs = 1000;  // finished jobs kept for status. Default: 1000
  // Require a token on every request (principals and roles: actors/access_policy.h).
  // Default: off, for a single-user local cluster; a shared cluster turns it on.
  bool auth = false;
  // Rollbacks a job may take before it is failed. Default: 5
  uint32_t max_recoveries = 5;
  // A running job with no step for this long is stalled: status names what it waits for.
  // Default: 3 s
  std::chrono::milliseconds stall_after{3000};
  // Longest wait for the servers to confirm their key ranges, then the attempt is retried.
  // Default: 30 s
  std::chrono::milliseconds start_timeout{30000};
};

// Of ServingState (actors/serving_state.h).
struct ServingOptions {
  // Off only to measure what recording costs (bench/serving.sh); a service that does not
  // record its calls cannot answer for them. Default: on.
  bool record_usage = true;
  // Off only to measure what receipts cost against recording alone (bench/serving.sh):
  // with a signing key, each recorded call's reply carries a signed receipt. Default: on.
  bool receipts = true;
  uint32_t max_rows = 65536;  // per call
};

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
  // The store key that seals checkpoint tensors at rest (storage/store_key.h): a file
  // outside the store, created (mode 0600) on first start, refused if others may read it.
  // Default (with a store): "<store>.store-key" beside the store.
  std::string store_key;
  // If set, a signed head of every log is appended to this file (one JSON document per
  // line) at start and every head_interval: a copy of the history the store's writer
  // cannot silently change (keep it on another machine or medium). Default: none.
  std::string head_file;
  std::chrono::milliseconds head_interval{60000};  // Default: 60 s
};

// Of a parameter server or a worker.
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

}  // namespace custody::actors
