// custody-worker: computes gradients on its shard of a job's data. See docs/ARCHITECTURE.md.
#include "nodes/node_options.h"

using namespace custody;

int main(int argc, char** argv) {
  actors::PeerNodeConfig c;
  std::string config_file;
  if (!nodes::load_peer_config(argc, argv, "custody-worker", c, config_file)) return 2;
  int64_t connect_ms = c.connect_timeout.count(), step_ms = c.step_timeout.count();
  CLI::App app{"custody-worker: a worker of a Custody cluster"};
  nodes::add_peer_flags(app, c, config_file, connect_ms);
  app.add_option("--step-timeout-ms", step_ms, "longest wait for the parameter servers in one step")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  c.connect_timeout = std::chrono::milliseconds(connect_ms);
  c.step_timeout = std::chrono::milliseconds(step_ms);
  if (!nodes::load_token(c, "custody-worker")) return 2;
  nodes::install_signal_handlers();
  return actors::run_worker(c, nodes::g_stop);
}
