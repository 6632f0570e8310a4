// custody-coordinator: membership, the job queue and scheduling. See docs/ARCHITECTURE.md.
#include "nodes/node_options.h"

using namespace custody;

int main(int argc, char** argv) {
  actors::CoordinatorNodeConfig c;
  std::string config_file = nodes::config_path(argc, argv);
  int64_t interval_ms = c.options.heartbeat_interval.count(), timeout_ms = c.options.heartbeat_timeout.count();
  int64_t max_mib = static_cast<int64_t>(c.max_message_bytes >> 20);
  int64_t syncs_in_flight = c.serving.syncs_in_flight;
  int64_t group_wait_us = c.serving.group_wait.count();
  int64_t stall_ms = c.options.stall_after.count(), start_ms = c.options.start_timeout.count();
  int64_t attribution_ms = c.attribution_worker_timeout.count();
  int64_t max_recoveries = c.options.max_recoveries;
  int64_t head_interval_ms = c.head_interval.count();
  std::string security = "none";
  bool auth = false;
  std::string sealing = "auto";
  int64_t http_max_body_kib = static_cast<int64_t>(c.http.max_body_bytes >> 10), http_threads = c.http.threads;
  int64_t http_read_timeout_ms = c.http.read_timeout.count(), http_idle_timeout_ms = c.http.idle_timeout.count();
  bool no_store = false;
  bool data_shipping = true;
  const std::vector<std::string> sealings = {"auto", "on", "off"};
  Status s = nodes::read_config(config_file, [&](ConfigReader& r) {
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.listen", c.listen));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.store", c.store));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.no_store", no_store));
    CUSTODY_RETURN_IF_ERROR(r.get("serving.record_usage", c.serving.record_usage));
    CUSTODY_RETURN_IF_ERROR(r.get("serving.receipts", c.serving.receipts));
    CUSTODY_RETURN_IF_ERROR(r.get("serving.syncs_in_flight", syncs_in_flight, nodes::kUsageSyncsInFlight));
    CUSTODY_RETURN_IF_ERROR(r.get("serving.group_wait_us", group_wait_us, nodes::kUsageGroupWaitUs));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.security", security, {"none", "token", "curve"}));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.auth", auth));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.admin_token_file", c.admin_token_file));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.key_file", c.key_file));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.admin_key_file", c.admin_key_file));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.heartbeat_interval_ms", interval_ms, nodes::kHeartbeatIntervalMs));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.heartbeat_timeout_ms", timeout_ms, nodes::kTimeoutMs));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.max_message_mib", max_mib, nodes::kMaxMessageMib));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.stall_after_ms", stall_ms, nodes::kTimeoutMs));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.start_timeout_ms", start_ms, nodes::kTimeoutMs));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.attribution_timeout_ms", attribution_ms, nodes::kTimeoutMs));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.max_recoveries", max_recoveries, nodes::kMaxRecoveries));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.signing_key", c.signing_key));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.store_key", c.store_key));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.head_file", c.head_file));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.head_interval_ms", head_interval_ms, nodes::kHeadIntervalMs));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.data_plane_sealing", sealing, sealings));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.data_plane_shared_memory", c.options.data_plane_shared_memory));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.metrics_listen", c.metrics_listen));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.records_dir", c.options.records_dir));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.data_shipping", data_shipping));
    CUSTODY_RETURN_IF_ERROR(r.get("http.listen", c.http.listen));
    CUSTODY_RETURN_IF_ERROR(r.get("http.tls_cert", c.http.tls_cert));
    CUSTODY_RETURN_IF_ERROR(r.get("http.tls_key", c.http.tls_key));
    CUSTODY_RETURN_IF_ERROR(r.get("http.default_model", c.http.default_model));
    CUSTODY_RETURN_IF_ERROR(r.get("http.max_body_kib", http_max_body_kib, nodes::kHttpMaxBodyKib));
    CUSTODY_RETURN_IF_ERROR(r.get("http.threads", http_threads, nodes::kHttpThreads));
    CUSTODY_RETURN_IF_ERROR(r.get("http.read_timeout_ms", http_read_timeout_ms, nodes::kHttpTimeoutMs));
    CUSTODY_RETURN_IF_ERROR(r.get("http.idle_timeout_ms", http_idle_timeout_ms, nodes::kHttpTimeoutMs));
    return Status::ok();
  });
  if (!s.is_ok()) {
    std::fprintf(stderr, "custody-coordinator: %s\n", s.message().c_str());
    return 2;
  }
  CLI::App app{"custody-coordinator: registers nodes, queues jobs and schedules them onto workers"};
  app.add_option("--config", config_file, "TOML config file (see configs/coordinator.toml)");
  app.add_option("--listen", c.listen, "address to listen on; port 0 picks a free port")->capture_default_str();
  CLI::Option* store_flag =
      app.add_option("--store", c.store,
                     "custody store directory (RocksDB; created 0700 if missing; default: "
                     "$XDG_STATE_HOME/custody/store, else ~/.local/state/custody/store)");
  app.add_flag("--no-store", no_store,
               "run without a custody store: nothing is recorded (no lineage, checkpoints, audit log, usage)");
  app.add_option("--security", security,
                 "how callers are proven: none (single user), token, or curve (CurveZMQ keys; encrypted)")
      ->check(CLI::IsMember({"none", "token", "curve"}))
      ->capture_default_str();
  app.add_flag("--auth", auth, "the same as --security token");
  app.add_option("--admin-token-file", c.admin_token_file,
                 "with --security token: the admin's token (created there on first start if missing)");
  app.add_option("--key-file", c.key_file,
                 "with --security curve: the coordinator's key pair (default: <store>.coordinator-key; created if missing)");
  app.add_option("--admin-key-file", c.admin_key_file,
                 "with --security curve: the first admin's key pair (created there on first start if missing)");
  app.add_flag("!--no-usage-recording", c.serving.record_usage,
               "answer predictions without recording them (only to measure what recording costs)");
  app.add_flag("!--no-receipts", c.serving.receipts,
               "record predictions but reply without signed receipts (only to measure what receipts cost)");
  nodes::ranged_option(app, "--usage-syncs-in-flight", syncs_in_flight, nodes::kUsageSyncsInFlight,
                       "groups of recorded predictions whose writes may sync at once (1: one at a time)");
  nodes::ranged_option(app, "--usage-group-wait-us", group_wait_us, nodes::kUsageGroupWaitUs,
                       "how long a group of recorded predictions may wait for the recent callers expected to "
                       "join it (0: no wait)");
  app.add_option("--port-file", c.port_file, "write the bound address to this file once listening");
  nodes::ranged_option(app, "--max-message-mib", max_mib, nodes::kMaxMessageMib,
                       "larger messages are refused with an error reply");
  nodes::ranged_option(app, "--heartbeat-interval-ms", interval_ms, nodes::kHeartbeatIntervalMs,
                       "how often nodes send heartbeats");
  nodes::ranged_option(app, "--heartbeat-timeout-ms", timeout_ms, nodes::kTimeoutMs,
                       "silence after which a node is dead");
  nodes::ranged_option(app, "--stall-after-ms", stall_ms, nodes::kTimeoutMs,
                       "a running job with no step for this long is reported stalled");
  nodes::ranged_option(app, "--start-timeout-ms", start_ms, nodes::kTimeoutMs,
                       "longest wait for servers to load a job's key ranges");
  nodes::ranged_option(app, "--attribution-timeout-ms", attribution_ms, nodes::kTimeoutMs,
                       "longest wait for the workers' scoring of an attribution's ranges; the coordinator "
                       "then scores what is missing itself");
  nodes::ranged_option(app, "--max-recoveries", max_recoveries, nodes::kMaxRecoveries,
                       "rollbacks to a checkpoint a job may take before it fails");
  app.add_option("--records-dir", c.options.records_dir,
                 "where each rank's records are kept, by SHA-256, for workers without the data set's files "
                 "(default: <store>.records)");
  bool no_data_shipping = false;
  app.add_flag("--no-data-shipping", no_data_shipping,
               "keep no records for workers that lack the data set's files: such a worker cannot run the job");
  app.add_option("--signing-key", c.signing_key,
                 "Ed25519 key file that signs heads and receipts (default: <store>.signing-key; created if missing)");
  app.add_option("--store-key", c.store_key,
                 "AES-256 key file that seals checkpoint tensors at rest (default: <store>.store-key; created if "
                 "missing)");
  app.add_option("--head-file", c.head_file, "append signed heads of the store's logs to this file")
      ->capture_default_str();
  nodes::ranged_option(app, "--head-interval-ms", head_interval_ms, nodes::kHeadIntervalMs,
                       "how often to append to --head-file");
  app.add_option("--data-plane-sealing", sealing,
                 "seal pushes and pulls between workers and servers: auto (unless the job is loopback-only), on, "
                 "off (only where the job is loopback-only; sealed anyway between hosts)")
      ->check(CLI::IsMember(sealings))
      ->capture_default_str();
  app.add_flag("!--no-data-plane-shared-memory", c.options.data_plane_shared_memory,
               "send parameter blocks through the servers' sockets even where a worker and a server share a host "
               "(by default they share memory there when the job's data plane is in clear)");
  app.add_option("--http-listen", c.http.listen,
                 "serve the Open Inference Protocol (KServe V2) and POST /predict over HTTP on HOST:PORT (port 0: "
                 "any free one); off unless given");
  app.add_option("--http-port-file", c.http.port_file, "write the HTTP listener's HOST:PORT to this file once listening");
  app.add_option("--http-tls-cert", c.http.tls_cert, "PEM certificate chain: the listener speaks HTTPS only");
  app.add_option("--http-tls-key", c.http.tls_key, "the PEM private key of --http-tls-cert");
  app.add_option("--http-default-model", c.http.default_model,
                 "the model POST /predict serves when the call names none");
  app.add_option("--metrics-listen", c.metrics_listen,
                 "serve Prometheus metrics at GET /metrics on HOST:PORT (also on the HTTP listener when it runs)");
  app.add_option("--metrics-port-file", c.metrics_port_file, "write the metrics listener's HOST:PORT here");
  nodes::ranged_option(app, "--http-max-body-kib", http_max_body_kib, nodes::kHttpMaxBodyKib,
                       "larger HTTP bodies are refused with 413");
  nodes::ranged_option(app, "--http-threads", http_threads, nodes::kHttpThreads,
                       "HTTP connections served at once; more wait their turn");
  nodes::ranged_option(app, "--http-read-timeout-ms", http_read_timeout_ms, nodes::kHttpTimeoutMs,
                       "an HTTP client silent this long mid-request is disconnected");
  nodes::ranged_option(app, "--http-idle-timeout-ms", http_idle_timeout_ms, nodes::kHttpTimeoutMs,
                       "an idle keep-alive HTTP connection is closed after this long");
  if (auto stop = nodes::parse_command_line(app, "custody-coordinator", argc, argv)) return *stop;
  c.http.max_body_bytes = static_cast<size_t>(http_max_body_kib) << 10;
  c.http.threads = static_cast<int>(http_threads);
  c.http.read_timeout = std::chrono::milliseconds(http_read_timeout_ms);
  c.http.idle_timeout = std::chrono::milliseconds(http_idle_timeout_ms);
  if (no_store && store_flag->count() > 0 && !c.store.empty()) {
    std::fprintf(stderr, "custody-coordinator: --store %s and --no-store contradict each other: give one\n",
                 c.store.c_str());
    return 2;
  }
  if (no_store) {
    c.store.clear();
  } else if (c.store.empty() && store_flag->count() > 0) {
    std::fprintf(stderr, "custody-coordinator: --store is empty: give a directory, or --no-store to run "
                         "without a custody store\n");
    return 2;
  } else if (c.store.empty()) {
    auto dir = nodes::default_store_dir();
    if (!dir.is_ok()) {
      std::fprintf(stderr, "custody-coordinator: %s\n", dir.status().message().c_str());
      return 2;
    }
    c.store = dir.value();
    c.store_is_default = true;
  }
  if (no_data_shipping || !data_shipping) {
    c.options.records_dir.clear();
  } else if (c.options.records_dir.empty() && !c.store.empty()) {
    std::string base = c.store;  // beside the store, as its key files are
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    c.options.records_dir = base + ".records";
  }
  if (auth && security == "none") security = "token";
  c.options.security = security == "curve"   ? actors::Security::kCurve
                       : security == "token" ? actors::Security::kToken
                                             : actors::Security::kNone;
  c.options.data_plane_sealing = sealing == "on"    ? actors::DataPlaneSealing::kOn
                                 : sealing == "off" ? actors::DataPlaneSealing::kOff
                                                    : actors::DataPlaneSealing::kAuto;
  if (timeout_ms <= interval_ms) {
    std::fprintf(stderr, "custody-coordinator: the heartbeat timeout (%lld ms) must exceed the interval (%lld ms)\n",
                 static_cast<long long>(timeout_ms), static_cast<long long>(interval_ms));
    return 2;
  }
  c.options.heartbeat_interval = std::chrono::milliseconds(interval_ms);
  c.options.heartbeat_timeout = std::chrono::milliseconds(timeout_ms);
  c.max_message_bytes = static_cast<size_t>(max_mib) << 20;
  c.serving.syncs_in_flight = static_cast<uint32_t>(syncs_in_flight);
  c.serving.group_wait = std::chrono::microseconds(group_wait_us);
  c.options.stall_after = std::chrono::milliseconds(stall_ms);
  c.options.start_timeout = std::chrono::milliseconds(start_ms);
  c.attribution_worker_timeout = std::chrono::milliseconds(attribution_ms);
  c.head_interval = std::chrono::milliseconds(head_interval_ms);
  c.options.max_recoveries = static_cast<uint32_t>(max_recoveries);  // in kMaxRecoveries: checked above
  nodes::install_signal_handlers();
  return actors::run_coordinator(c, nodes::g_stop);
}
