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

// How callers prove who they are (actors/access_control.h; threat model:
// docs/ARCHITECTURE.md, "Principals, keys and roles").
enum class Security {
  kNone,   // a single-user local cluster: requests name their caller
  kToken,  // a secret token per request (in clear on the wire)
  kCurve,  // CurveZMQ: every connection encrypted, every caller proven by its key
};
// Whether a job's pushes and pulls are sealed (protocols/data_plane.h). kAuto: sealed
// unless every node of the job is on one host and its servers listen on loopback; kOn:
// always; kOff: in clear where the job is loopback-only, and sealed anyway (logged loudly)
// where it is not: the data plane never goes in clear between hosts.
enum class DataPlaneSealing { kAuto, kOn, kOff };

// Of CoordinatorState (actors/coordinator_state.h).
struct CoordinatorOptions {
  std::chrono::milliseconds heartbeat_interval{1000};  // Default: 1 s
  std::chrono::milliseconds heartbeat_timeout{5000};   // Default: 5 s
  size_t max_finished_jobs = 1000;  // finished jobs kept for status. Default: 1000
  // How callers are proven (principals and roles: actors/access_policy.h). Default:
  // none, for a single-user local cluster; a shared cluster uses curve.
  Security security = Security::kNone;
  // Rollbacks a job may take before it is failed. Default: 5
  uint32_t max_recoveries = 5;
  // A running job with no step for this long is stalled: status names what it waits for.
  // Default: 3 s
  std::chrono::milliseconds stall_after{3000};
  // Longest wait for the servers to confirm their key ranges, then the attempt is retried.
  // Default: 30 s
  std::chrono::milliseconds start_timeout{30000};
  DataPlaneSealing data_plane_sealing = DataPlaneSealing::kAuto;  // Default: auto
  // A worker reaches a parameter server of its job through shared memory when both run on
  // one host (same kernel and network namespace), in separate processes, and the job's data
  // plane is in clear (protocols/shared_region.h; docs/ARCHITECTURE.md, "The data path").
  // Off: every block goes through the servers' sockets. Default: on.
  bool data_plane_shared_memory = true;
  // Data shipping (docs/ARCHITECTURE.md, "Data shipping"): where the coordinator keeps each
  // rank's records, named by their SHA-256, for workers that lack the data set's files.
  // Written at admission, read by the records server. Empty: no shipping (a worker without
  // the files cannot run the job). Default (with a store): "<store>.records" beside it.
  std::string records_dir;
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
  // Groups of recorded calls (group commit, actors/serving_actor.h) whose writes may be
  // syncing to the disk at once; 1: each group's sync waits for the one before. Default: 4
  uint32_t syncs_in_flight = 4;
  // Group wait: how long a group of recorded calls may wait for the callers expected to
  // join it (each recent ZeroMQ caller whose call is not already being written) before it
  // is written with fewer; 0: no wait, a group goes as soon as the writer can take it.
  // Default: 500 us
  std::chrono::microseconds group_wait{500};
};

// Of the coordinator's HTTP listener (actors/http_listener.h): the Open Inference
// Protocol (KServe V2) and POST /predict, served through the same path as `custody
// predict`. Off unless `listen` is set.
struct HttpOptions {
  // HOST:PORT, e.g. 127.0.0.1:8080; port 0 picks a free one. Empty: no listener. Default: off
  std::string listen;
  std::string port_file;  // if set, "HOST:PORT" is written there once listening
  // PEM certificate chain and private key: both set, the listener speaks HTTPS only.
  // Required with security = "curve" (bearer tokens never cross a network in clear).
  std::string tls_cert, tls_key;
  // Bodies above this are refused with 413 before they are read whole. Default: 16 MiB
  size_t max_body_bytes = size_t(16) << 20;
  // Connections served at once; further ones wait in the listener's queue. Default: 8
  int threads = 8;
  // A client silent for this long mid-request is disconnected. Default: 5 s
  std::chrono::milliseconds read_timeout{5000};
  // An idle keep-alive connection is closed after this long (it holds a thread). Default: 2 s
  std::chrono::milliseconds idle_timeout{2000};
  // The model POST /predict serves when neither its body nor ?model= names one. Default: none
  std::string default_model;
  // The longest a call waits for the coordinator and serving to answer it (then 503). Default: 30 s
  std::chrono::milliseconds call_timeout{30000};
};

struct CoordinatorNodeConfig {
  std::string listen = "tcp://127.0.0.1:5555";  // ":0" picks a free port
  std::string port_file;  // if set, the bound endpoint is written there once listening
  // The custody store (a RocksDB directory, created 0700 if missing). custody-coordinator
  // fills in its default directory (nodes/node_options.h, default_store_dir) unless told
  // --no-store. Empty: no lineage, no checkpoints; the coordinator says so, loudly, at start.
  std::string store;
  bool store_is_default = false;  // `store` is the default directory: the log says so
  CoordinatorOptions options;
  ServingOptions serving;
  HttpOptions http;
  // With security token: the admin's token. Created (mode 0600) on first start if the
  // file does not exist; registered in the store if the store does not know it.
  std::string admin_token_file;
  // With security curve: the coordinator's long-term CurveZMQ key pair (clients need its
  // public half, written to FILE.pub and printed at start). Created (mode 0600) on first
  // start. Default (with a store): "<store>.coordinator-key" beside the store.
  std::string key_file;
  // With security curve: the first admin's key pair, created (mode 0600) on first start
  // and registered as principal "admin" if the store does not know it. Default: none.
  std::string admin_key_file;
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
  // custody attribute: the longest wait for the workers' scoring of their ranges, after
  // which the coordinator scores the rest itself (actors/attribution_actor.h). Default: 60 s
  std::chrono::milliseconds attribution_worker_timeout{60000};
  // GET /metrics (Prometheus text) on HOST:PORT; also served by the HTTP listener when
  // that runs. Empty: only there. Default: off
  std::string metrics_listen;
  std::string metrics_port_file;  // if set, "HOST:PORT" is written there once listening
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
  // With a coordinator that runs with security curve: this node's key pair file (a
  // principal of role "node", from `custody principal add NAME --role node`), and the
  // coordinator's public key (the key itself, or its .pub file). Empty: no CURVE.
  std::string key_file;
  std::string coordinator_key;
  // Workers: the longest wait for a parameter server's reply to one step.
  std::chrono::milliseconds step_timeout{60000};
  // Workers: the cache of records fetched from the coordinator, named by their SHA-256
  // (data shipping); a later job on the same records reads them from here. custody-worker
  // fills in its default (nodes/node_options.h, default_data_cache_dir). Empty: a worker
  // without the data set's files cannot run a job on them.
  std::string data_cache;
  // Workers: the records cache is trimmed to this size after each fetch, least recently used
  // records first, never the running task's (--data-cache-max-mib). 0: no limit.
  // Default: 10 GiB
  uint64_t data_cache_max_bytes = uint64_t(10) << 30;
  // GET /metrics (Prometheus text) on HOST:PORT; port 0 picks a free one. Default: off
  std::string metrics_listen;
  std::string metrics_port_file;  // if set, "HOST:PORT" is written there once listening
  // Pin the compute threads (a worker's trainers; a server's actor and its sealing
  // helpers) to these CPUs, each thread to the next CPU of the list in turn
  // (core/cpu_affinity.h; "0", "0,1", "0-3"). Empty: not pinned (the default).
  std::string pin_cpu;
};

}  // namespace custody::actors
