// custody-worker: computes gradients on its shard of a job's data; with --with-ps, also
// a parameter server in the same process. See docs/ARCHITECTURE.md.
#include "nodes/node_options.h"

using namespace custody;

int main(int argc, char** argv) {
  actors::PeerNodeConfig c;
  std::string config_file;
  if (!nodes::load_peer_config(argc, argv, "custody-worker", c, config_file)) return 2;
  int64_t connect_ms = c.connect_timeout.count(), step_ms = c.step_timeout.count();
  CLI::App app{"custody-worker: a worker of a Custody cluster"};
  nodes::add_peer_flags(app, c, config_file, connect_ms);
  nodes::ranged_option(app, "--step-timeout-ms", step_ms, nodes::kTimeoutMs,
                       "longest wait for the parameter servers in one step");
  app.add_option("--data-cache", c.data_cache,
                 "where records fetched from the coordinator are kept, by SHA-256, for later jobs (default: "
                 "$XDG_CACHE_HOME/custody/records, else ~/.cache/custody/records)");
  int64_t cache_mib = static_cast<int64_t>(c.data_cache_max_bytes >> 20);
  nodes::ranged_option(app, "--data-cache-max-mib", cache_mib, nodes::kDataCacheMib,
                       "trim the records cache to this many MiB after each fetch, least recently used first "
                       "(never the running task's records); 0: no limit")
      ->capture_default_str();
  // A parameter server in this process (a second node, with the same coordinator and
  // token): this worker reaches it without copies; other workers over TCP as usual.
  actors::PeerNodeConfig server;
  server.listen = c.listen;  // the file's [server] keys, as custody-ps reads them
  server.advertise_host = c.advertise_host;
  std::string with_ps;
  app.add_option("--with-ps", with_ps,
                 "also run a parameter server named NAME in this process; this worker reaches it in-process "
                 "(no copies), the others over TCP");
  app.add_option("--ps-listen", server.listen, "with --with-ps: the address other workers connect to")
      ->capture_default_str();
  app.add_option("--ps-advertise-host", server.advertise_host,
                 "with --with-ps: the host name given to workers when listening on a wildcard")
      ->capture_default_str();
  if (auto stop = nodes::parse_command_line(app, "custody-worker", argc, argv)) return *stop;
  c.connect_timeout = std::chrono::milliseconds(connect_ms);
  c.step_timeout = std::chrono::milliseconds(step_ms);
  c.data_cache_max_bytes = static_cast<uint64_t>(cache_mib) << 20;
  if (!nodes::load_token(c, "custody-worker")) return 2;
  if (c.data_cache.empty()) c.data_cache = nodes::default_data_cache_dir();
  nodes::install_signal_handlers();
  if (with_ps.empty()) return actors::run_worker(c, nodes::g_stop);
  server.coordinator = c.coordinator;
  server.name = with_ps;
  server.connect_timeout = c.connect_timeout;
  server.max_message_bytes = c.max_message_bytes;
  server.token = c.token;
  server.key_file = c.key_file;  // one process, one key: both nodes register as its principal
  server.coordinator_key = c.coordinator_key;
  server.pin_cpu = c.pin_cpu;  // --pin-cpu covers both nodes' compute threads
  return actors::run_worker_with_parameter_server(c, server, nodes::g_stop);
}
