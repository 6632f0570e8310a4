// A Custody cluster spread over network namespaces (netns.h): the coordinator, each
// parameter server and each worker on a host of its own, joined by a switch, so every
// message between nodes crosses a real veth link with real addresses, where it can be
// captured and where a cable can be pulled. Hosts, in order (host i is 10.77.0.i):
//
//   coordinator (10.77.0.1, :5555)   ps-1 .. ps-S (:6000)   worker-1 .. worker-W   extra hosts
//
// The coordinator listens on tcp://*:5555 and the servers on tcp://*:6000, advertising
// their own address (README "Across machines"); fixed ports are safe because each host
// has its own port space. The CLI runs on the coordinator's host, as its operator would.
// Construct, optionally start captures of links (so they see the nodes register), then
// start(). Everything stops when the cluster goes out of scope: processes, captures, then
// the namespaces; the directory with logs, command outputs and pcap files is kept when the
// test failed (or with CUSTODY_KEEP_LOGS=1).
//
// Callers are proven by token (--auth) or, secured, by CurveZMQ key pairs (--security
// curve); whether the data plane between workers and servers is sealed is the
// coordinator's decision, which `custody status` reports per job.
// Not thread-safe: one test thread drives it.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/integration/cluster.h"
#include "tests/integration/netns.h"

namespace custody::testing {

inline constexpr int kCoordinatorPort = 5555, kServerPort = 6000;

// What this build can secure, as its coordinator's --help says: empty if it has the
// flag, otherwise why a test that needs it is skipped. "--security" (CurveZMQ on the
// control plane), "--data-plane-sealing" (AES-GCM between workers and servers).
inline std::string unavailable_without(const std::string& flag, const std::string& what) {
  // The outputs go to a file named after this process: ctest runs two test processes at
  // once, and a shared name let one truncate the other's help text (a skip, not a run).
  const fs::path dir = fs::temp_directory_path();
  CliResult help = run_argv(dir, {bin("custody-coordinator"), "--help"}, std::chrono::seconds(30),
                            "custody-help-" + std::to_string(getpid()));
  if (help.out.find(flag) != std::string::npos) return "";
  return "custody-coordinator has no " + flag + " on this build (" + what +
         " is not merged); this test runs when it is";
}

struct NetnsClusterOptions {
  int servers = 1, workers = 2;
  std::vector<std::string> extra_hosts = {};  // hosts that run no node, e.g. "intruder"
  // How callers are proven: by token (--auth: an admin token and a "node" principal's
  // token, which travel in clear) unless curve (--security curve: the coordinator's key
  // pair in <dir>/coordinator.key, the admin's in <dir>/admin.key, and a "node"
  // principal's in <dir>/node.key, as LocalCluster does).
  bool curve = false;
  int heartbeat_interval_ms = 200, heartbeat_timeout_ms = 2000;  // as LocalCluster's
  std::vector<std::string> coordinator_args = {};
  // Per node: directories mounted over others in that node's own mount namespace, since
  // these "hosts" share one file system where real ones do not: {target, source}, where an
  // empty source mounts an empty tmpfs (the host does not have what the target holds) and
  // another directory is bound over it (the host holds a different copy).
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> mounts = {};
  // Per node: more flags for it ("worker-2": {"--connect-timeout-ms", "1000"}).
  std::map<std::string, std::vector<std::string>> node_args = {};
};

class NetnsCluster {
 public:
  NetnsCluster(const std::string& test_name, NetnsClusterOptions o) : options_(std::move(o)) {
    dir_ = fs::temp_directory_path() / ("custody-netns-" + test_name + "-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::vector<std::string> hosts{"coordinator"};
    for (int i = 1; i <= options_.servers; ++i) hosts.push_back("ps-" + std::to_string(i));
    for (int i = 1; i <= options_.workers; ++i) hosts.push_back("worker-" + std::to_string(i));
    hosts.insert(hosts.end(), options_.extra_hosts.begin(), options_.extra_hosts.end());
    topology_ = std::make_unique<NetnsTopology>(dir_, hosts);
  }
  ~NetnsCluster() {
    for (auto& [name, p] : nodes_) p->stop();
    if (coordinator_) coordinator_->stop();
    for (auto& [host, capture] : captures_) {
      capture->stop();
      capture->write_pcap(dir_ / (host + ".pcap"));
    }
    captures_.clear();
    topology_.reset();
    if (!::testing::Test::HasFailure() && !std::getenv("CUSTODY_KEEP_LOGS"))
      fs::remove_all(dir_);
    else
      std::cerr << "cluster logs, command outputs and captures (*.pcap) kept in " << dir_ << "\n";
  }
  NetnsCluster(const NetnsCluster&) = delete;
  NetnsCluster& operator=(const NetnsCluster&) = delete;

  bool ok() const { return topology_->ok(); }
  NetnsTopology& topology() { return *topology_; }
  const fs::path& dir() const { return dir_; }
  // The coordinator runs with its default store, as the README's one-line coordinator does:
  // $XDG_STATE_HOME/custody/store, with XDG_STATE_HOME set to a directory of the cluster's.
  fs::path state_home() const { return dir_ / "state"; }
  fs::path store() const { return state_home() / "custody" / "store"; }
  fs::path admin_token() const { return dir_ / "admin.token"; }
  fs::path node_token() const { return dir_ / "node.token"; }
  fs::path admin_key() const { return dir_ / "admin.key"; }
  fs::path node_key() const { return dir_ / "node.key"; }
  fs::path coordinator_public_key() const { return dir_ / "coordinator.key.pub"; }
  const std::string& ip(const std::string& host) const { return topology_->host(host).ip; }
  std::string coordinator_address() const {
    return "tcp://" + ip("coordinator") + ":" + std::to_string(kCoordinatorPort);
  }
  std::string server_address(const std::string& ps) const {
    return "tcp://" + ip(ps) + ":" + std::to_string(kServerPort);
  }

  // Records the switch port of `host` from now until the cluster ends (its pcap file is
  // written then). Start it before start() to see registration and tokens.
  LinkCapture& capture(const std::string& host) {
    auto& c = captures_[host];
    c = std::make_unique<LinkCapture>(*topology_, host);
    return *c;
  }

  // The coordinator, then (with auth) a node principal, then the servers and workers.
  // False, with a test failure naming it, if something did not come up.
  bool start() {
    std::vector<std::string> argv{"env",
                                  "XDG_STATE_HOME=" + state_home().string(),
                                  bin("custody-coordinator"),
                                  "--listen",
                                  "tcp://*:" + std::to_string(kCoordinatorPort),
                                  "--port-file",
                                  (dir_ / "coordinator.addr").string(),
                                  "--heartbeat-interval-ms",
                                  std::to_string(options_.heartbeat_interval_ms),
                                  "--heartbeat-timeout-ms",
                                  std::to_string(options_.heartbeat_timeout_ms)};
    if (options_.curve) {
      argv.insert(argv.end(), {"--security", "curve", "--key-file", (dir_ / "coordinator.key").string(),
                               "--admin-key-file", admin_key().string()});
    } else {
      argv.insert(argv.end(), {"--auth", "--admin-token-file", admin_token().string()});
    }
    argv.insert(argv.end(), options_.coordinator_args.begin(), options_.coordinator_args.end());
    coordinator_ = std::make_unique<Process>(topology_->on("coordinator", argv), dir_ / "coordinator.log");
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!fs::exists(dir_ / "coordinator.addr") && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(20ms);
    }
    if (!fs::exists(dir_ / "coordinator.addr")) {
      ADD_FAILURE() << "the coordinator did not start listening within 10 s:\n"
                    << read_file(dir_ / "coordinator.log");
      return false;
    }
    // One "node" principal for every node, as LocalCluster does.
    CliResult node =
        options_.curve
            ? cli({"principal", "add", "nodes", "--role", "node", "--key-out", node_key().string()})
            : cli({"principal", "add", "nodes", "--role", "node"});
    if (node.code != 0) {
      ADD_FAILURE() << "principal add nodes: " << node.err;
      return false;
    }
    if (options_.curve) {
      node_args_ = curve_args(node_key());
    } else {
      std::ofstream(node_token()) << node.out;
      node_args_ = {"--token-file", node_token().string()};
    }
    for (int i = 1; i <= options_.servers; ++i) {
      const std::string name = "ps-" + std::to_string(i);
      start_node("custody-ps", name,
                 {"--listen", "tcp://*:" + std::to_string(kServerPort), "--advertise-host", ip(name)});
    }
    for (int i = 1; i <= options_.workers; ++i)
      start_node("custody-worker", "worker-" + std::to_string(i), {});
    return true;
  }

  Process& start_node(const std::string& exe, const std::string& name,
                      const std::vector<std::string>& extra) {
    std::vector<std::string> argv{bin(exe), "--coordinator", coordinator_address(), "--name", name};
    // Each worker its records cache on its "host", never the runner's home.
    if (exe == "custody-worker") argv.insert(argv.end(), {"--data-cache", (dir_ / (name + ".records")).string()});
    argv.insert(argv.end(), node_args_.begin(), node_args_.end());
    argv.insert(argv.end(), extra.begin(), extra.end());
    if (auto a = options_.node_args.find(name); a != options_.node_args.end()) {
      argv.insert(argv.end(), a->second.begin(), a->second.end());
    }
    if (auto m = options_.mounts.find(name); m != options_.mounts.end()) {
      // unshare and sh exec what follows, so the process's pid is still the node's.
      std::string script;
      for (const auto& [target, source] : m->second) {
        script += source.empty() ? "mount -t tmpfs -o mode=0755 tmpfs '" + target + "' && "
                                 : "mount --bind '" + source + "' '" + target + "' && ";
      }
      argv.insert(argv.begin(), {"/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-c",
                                 script + "exec \"$@\"", "sh"});
    }
    auto& p = nodes_[name];
    p = std::make_unique<Process>(topology_->on(name, argv), dir_ / (name + ".log"));
    return *p;
  }
  Process& node(const std::string& name) { return *nodes_.at(name); }
  Process& coordinator() { return *coordinator_; }

  // The CLI on the coordinator's host, as its operator (the admin).
  CliResult cli(std::vector<std::string> args, std::chrono::seconds timeout = 120s) {
    return admin_cli_on("coordinator", std::move(args), timeout);
  }
  // The CLI on `host`, as the admin: what an operator at another machine runs. It reaches
  // the coordinator over the host's link, like the nodes there.
  CliResult admin_cli_on(const std::string& host, std::vector<std::string> args,
                         std::chrono::seconds timeout = 120s) {
    const std::vector<std::string> as_admin =
        options_.curve ? curve_args(admin_key())
                       : std::vector<std::string>{"--token-file", admin_token().string()};
    args.insert(args.begin(), as_admin.begin(), as_admin.end());
    return cli_from(host, args, timeout);
  }
  // The flags that connect as the holder of `key_file` (curve): for the CLI and the nodes.
  std::vector<std::string> curve_args(const fs::path& key_file) const {
    return {"--key-file", key_file.string(), "--coordinator-key", coordinator_public_key().string()};
  }
  // The CLI on any host, with only the flags given (no token, no key).
  CliResult cli_from(const std::string& host, std::vector<std::string> args,
                     std::chrono::seconds timeout = 120s) {
    args.insert(args.begin(), {bin("custody"), "--coordinator", coordinator_address()});
    return run_argv(dir_, topology_->on(host, args), timeout);
  }
  // Any program on any host.
  CliResult run_on(const std::string& host, std::vector<std::string> argv,
                   std::chrono::seconds timeout = 60s) {
    return run_argv(dir_, topology_->on(host, std::move(argv)), timeout);
  }

  // Waits until `count` nodes are registered and alive.
  bool wait_for_nodes(size_t count, std::chrono::seconds timeout = 30s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      CliResult r = cli({"status", "--json"}, 10s);
      if (r.code == 0) {
        size_t alive = 0;
        const nlohmann::json status = nlohmann::json::parse(r.out);
        for (const auto& n : status["nodes"]) alive += n["alive"].get<bool>();
        if (alive == count) return true;
      }
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }

 private:
  NetnsClusterOptions options_;
  fs::path dir_;
  std::unique_ptr<NetnsTopology> topology_;
  std::map<std::string, std::unique_ptr<LinkCapture>> captures_;
  std::unique_ptr<Process> coordinator_;
  std::vector<std::string> node_args_;
  std::map<std::string, std::unique_ptr<Process>> nodes_;
};

}  // namespace custody::testing
