// custody-ps: a parameter server; holds key ranges of jobs' parameters and runs the
// optimizer on them. See docs/ARCHITECTURE.md.
#include "nodes/node_options.h"

using namespace custody;

int main(int argc, char** argv) {
  actors::PeerNodeConfig c;
  std::string config_file;
  if (!nodes::load_peer_config(argc, argv, "custody-ps", c, config_file)) return 2;
  int64_t connect_ms = c.connect_timeout.count();
  CLI::App app{"custody-ps: a parameter server of a Custody cluster"};
  nodes::add_peer_flags(app, c, config_file, connect_ms);
  app.add_option("--listen", c.listen, "address workers connect to; port 0 picks a free port")->capture_default_str();
  app.add_option("--advertise-host", c.advertise_host, "host name given to workers when listening on a wildcard")
      ->capture_default_str();
  if (auto stop = nodes::parse_command_line(app, "custody-ps", argc, argv)) return *stop;
  c.connect_timeout = std::chrono::milliseconds(connect_ms);
  if (!nodes::load_token(c, "custody-ps")) return 2;
  nodes::install_signal_handlers();
  return actors::run_parameter_server(c, nodes::g_stop);
}
