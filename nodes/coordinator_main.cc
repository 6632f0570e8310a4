// custody-coordinator: membership, the job queue and scheduling. See docs/ARCHITECTURE.md.
#include "nodes/node_options.h"

using namespace custody;

int main(int argc, char** argv) {
  actors::CoordinatorNodeConfig c;
  std::string config_file = nodes::config_path(argc, argv);
  int64_t interval_ms = c.options.heartbeat_interval.count(), timeout_ms = c.options.heartbeat_timeout.count();
  int64_t max_mib = static_cast<int64_t>(c.max_message_bytes >> 20);
  int64_t stall_ms = c.options.stall_after.count(), start_ms = c.options.start_timeout.count();
  int64_t max_recoveries = c.options.max_recoveries;
  int64_t head_interval_ms = c.head_interval.count();
  std::string security = "none";
  bool auth = false;
  std::string sealing = "auto";
  bool no_store = false;
  const std::vector<std::string> sealings = {"auto", "on", "off"};
  Status s = nodes::read_config(config_file, [&](ConfigReader& r) {
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.listen", c.listen));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.store", c.store));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.no_store", no_store));
    CUSTODY_RETURN_IF_ERROR(r.get("serving.record_usage", c.serving.record_usage));
    CUSTODY_RETURN_IF_ERROR(r.get("serving.receipts", c.serving.receipts));
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
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.max_recoveries", max_recoveries, nodes::kMaxRecoveries));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.signing_key", c.signing_key));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.store_key", c.store_key));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.head_file", c.head_file));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.head_interval_ms", head_interval_ms, nodes::kHeadIntervalMs));
    CUSTODY_RETURN_IF_ERROR(r.get("coordinator.data_plane_sealing", sealing, sealings));
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
  nodes::ranged_option(app, "--max-recoveries", max_recoveries, nodes::kMaxRecoveries,
                       "rollbacks to a checkpoint a job may take before it fails");
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
  CLI11_PARSE(app, argc, argv);
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
  c.options.stall_after = std::chrono::milliseconds(stall_ms);
  c.options.start_timeout = std::chrono::milliseconds(start_ms);
  c.head_interval = std::chrono::milliseconds(head_interval_ms);
  c.options.max_recoveries = static_cast<uint32_t>(max_recoveries);  // in kMaxRecoveries: checked above
  nodes::install_signal_handlers();
  return actors::run_coordinator(c, nodes::g_stop);
}
