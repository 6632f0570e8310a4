// Helpers of the multi-process tests: real node executables as child processes on free
// ports of 127.0.0.1, and the real `custody` CLI. Every process started is stopped when
// its owner goes out of scope, also when a test fails.
#pragma once

#include <atomic>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace custody::testing {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

inline std::string bin(const std::string& name) { return std::string(CUSTODY_BIN_DIR) + "/" + name; }

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Process {
 public:
  Process(std::vector<std::string> argv, const fs::path& log) : name_(argv[0]), log_(log) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    int rc = posix_spawn(&pid_, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      ADD_FAILURE() << "cannot start " << name_;
      pid_ = -1;
    }
  }
  ~Process() { stop(); }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const fs::path& log() const { return log_; }

  // SIGTERM, then SIGKILL if it has not exited within the grace period. Returns the exit
  // code, or -signal.
  int stop(std::chrono::milliseconds grace = 5s) {
    if (pid_ <= 0) return exit_code_;
    kill(pid_, SIGTERM);
    if (!wait_for_exit(grace)) {
      kill(pid_, SIGKILL);
      wait_for_exit(5s);
    }
    return exit_code_;
  }
  void signal(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }
  void kill_hard() {
    if (pid_ > 0) kill(pid_, SIGKILL);
    wait_for_exit(5s);
  }
  // True if it exited within the timeout.
  bool wait_for_exit(std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return true;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int status = 0;
      pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
        pid_ = -1;
        return true;
      }
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(20ms);
    }
  }
  bool running() { return pid_ > 0 && !wait_for_exit(0ms); }
  int exit_code() const { return exit_code_; }

 private:
  std::string name_;
  fs::path log_;
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

struct CliResult {
  int code = -1;
  std::string out, err;
};

// Runs argv to completion (bounded by timeout) and captures what it printed. argv[0] is a
// path. The outputs are kept in `dir` as PREFIX-N.out/.err; with keep_outputs only those of
// commands that failed.
inline CliResult run_argv(const fs::path& dir, std::vector<std::string> argv,
                          std::chrono::milliseconds timeout = std::chrono::seconds(30), const std::string& prefix = "cmd",
                          bool keep_outputs = false) {
  static std::atomic<int> counter{0};  // tests call the CLI from several threads at once
  const int n = ++counter;
  const fs::path out = dir / (prefix + "-" + std::to_string(n) + ".out");
  const fs::path err = dir / (prefix + "-" + std::to_string(n) + ".err");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid;
  CliResult r;
  const int spawned = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    r.err = "cannot start " + argv[0] + ": " + std::strerror(spawned);
    return r;
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) != pid) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      r.err = argv[0] + " did not finish within " + std::to_string(timeout.count()) + " ms\n";
      return r;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_file(out);
  r.err = read_file(err);
  if (r.code == 0 && !keep_outputs) {  // what failed stays for a look
    fs::remove(out);
    fs::remove(err);
  }
  return r;
}

// Runs the CLI to completion (bounded by timeout) and captures what it printed.
inline CliResult run_cli(const fs::path& dir, std::vector<std::string> args, std::chrono::seconds timeout = 120s) {
  std::vector<std::string> argv{bin("custody")};
  argv.insert(argv.end(), args.begin(), args.end());
  CliResult r = run_argv(dir, argv, timeout, "cli", true);
  if (r.err.find("did not finish within") != std::string::npos && r.code == -1) {
    ADD_FAILURE() << "custody CLI did not finish within " << timeout.count() << " s";
  }
  return r;
}

struct ClusterOptions {
  int servers = 2, workers = 2;
  // The first `colocated_servers` workers also run a parameter server (ps-1, ...) in
  // their process (custody-worker --with-ps); `servers` more run on their own.
  int colocated_servers = 0;
  int heartbeat_interval_ms = 200, heartbeat_timeout_ms = 2000;
  bool store = true;  // the coordinator keeps a custody store in <dir>/store; false: --no-store
  // Neither --store nor --no-store: the coordinator records into its default store, under
  // XDG_STATE_HOME=<dir>/state (so <dir>/state/custody/store; store() names it).
  bool default_store = false;
  std::vector<std::string> coordinator_args = {};
  // --auth: the admin token lands in <dir>/admin.token; nodes get a "node" principal's token.
  bool auth = false;
  // The coordinator keeps one port across restarts (nodes reconnect to the same address).
  bool fixed_port = false;
  // --security curve: the coordinator's key pair in <dir>/coordinator.key, the admin's in
  // <dir>/admin.key; nodes get a "node" principal's key pair (<dir>/node.key).
  bool curve = false;
};

// A small job: an MLP 32-16-4 on synthetic data (train_samples / 8 test samples), SGD,
// 2 workers, batch 16; trains in a second or two. data_keys go under [data].
inline std::string synthetic_mlp_job(const std::string& name, int epochs, int train_samples,
                                     const std::string& data_keys = "") {
  return "[job]\nname = \"" + name + "\"\nepochs = " + std::to_string(epochs) +
         "\nbatch_size = 16\nworkers = 2\n[model]\ntype = \"mlp\"\nhidden = [16]\nclasses = 4\n"
         "[optimizer]\ntype = \"sgd\"\nlearning_rate = 0.1\n[data]\nkind = \"synthetic\"\n" +
         data_keys + "[data.synthetic]\ntrain_samples = " + std::to_string(train_samples) +
         "\ntest_samples = " + std::to_string(train_samples / 8) + "\nfeatures = 32\nclasses = 4\n";
}

// One row of input for synthetic_mlp_job's model (32 features), as a line of CSV.
inline std::string synthetic_mlp_row() {
  std::string row;
  for (int f = 0; f < 32; ++f) row += (f ? "," : "") + std::to_string(f % 3);
  return row + "\n";
}

// A short Fashion-MNIST job (the data installed by scripts/setup.sh): an MLP 784-64-10,
// momentum SGD on a cosine schedule, kFashionWorkers workers in BSP, batches of
// kFashionBatch. job_keys go under [job].
constexpr int kFashionBatch = 64, kFashionWorkers = 2;
inline std::string fashion_mlp_job(const std::string& name, int epochs, const std::string& job_keys = "") {
  return "[job]\nname = \"" + name + "\"\nepochs = " + std::to_string(epochs) +
         "\nbatch_size = " + std::to_string(kFashionBatch) +
         "\nworkers = " + std::to_string(kFashionWorkers) + "\nconsistency = \"bsp\"\n" + job_keys +
         "[model]\ntype = \"mlp\"\nhidden = [64]\n[optimizer]\ntype = \"momentum\"\nlearning_rate = 0.1\n"
         "momentum = 0.9\nschedule = \"cosine\"\n[data]\nkind = \"idx\"\ndir = "
         "\"/usr/share/datasets/fashion-mnist\"\n";
}

// A TCP port of 127.0.0.1 that was free a moment ago.
inline int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// A coordinator, parameter servers and workers on free ports of 127.0.0.1.
class LocalCluster {
 public:
  explicit LocalCluster(const std::string& test_name, ClusterOptions o = ClusterOptions()) : options_(o) {
    dir_ = fs::temp_directory_path() / ("custody-" + test_name + "-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    listen_ = o.fixed_port ? "tcp://127.0.0.1:" + std::to_string(free_port()) : "tcp://127.0.0.1:0";
    start_coordinator();
    if (o.auth) {
      CliResult node = cli({"--token-file", admin_token().string(), "principal", "add", "nodes", "--role", "node"});
      std::ofstream(dir_ / "node.token") << node.out;
      node_args_ = {"--token-file", (dir_ / "node.token").string()};
    }
    if (o.curve) {
      std::vector<std::string> args = admin_args();
      args.insert(args.end(), {"principal", "add", "nodes", "--role", "node", "--key-out", (dir_ / "node.key").string()});
      CliResult node = cli(args);
      if (node.code != 0) std::cerr << "could not issue the nodes' key: " << node.err << "\n";
      node_args_ = curve_args(dir_ / "node.key");
    }
    for (int i = 1; i <= o.servers; ++i) add_node("custody-ps", "ps-" + std::to_string(o.colocated_servers + i));
    for (int i = 1; i <= o.workers; ++i) {
      std::vector<std::string> extra;
      if (i <= o.colocated_servers) extra = {"--with-ps", "ps-" + std::to_string(i)};
      add_node("custody-worker", "worker-" + std::to_string(i), extra);
    }
  }
  ~LocalCluster() {
    // All at once: a node stopping waits up to 1 s for the coordinator to acknowledge its
    // deregistration (none comes when the test stopped the coordinator first).
    for (auto& p : nodes_) p->signal(SIGTERM);
    for (auto& p : nodes_) p->stop();
    if (coordinator_) coordinator_->stop();
    // CUSTODY_KEEP_LOGS=1 keeps them after a passing test too.
    if (!::testing::Test::HasFailure() && !std::getenv("CUSTODY_KEEP_LOGS")) fs::remove_all(dir_);
    else std::cerr << "cluster logs kept in " << dir_ << "\n";
  }

  // (Re)starts the coordinator; its address file is rewritten when it listens.
  void start_coordinator(const std::string& log_name = "coordinator.log") {
    fs::remove(dir_ / "coordinator.addr");
    std::vector<std::string> argv{bin("custody-coordinator"), "--listen", listen_, "--port-file",
                                  (dir_ / "coordinator.addr").string(), "--heartbeat-interval-ms",
                                  std::to_string(options_.heartbeat_interval_ms), "--heartbeat-timeout-ms",
                                  std::to_string(options_.heartbeat_timeout_ms)};
    if (options_.default_store) argv.insert(argv.begin(), {"/usr/bin/env", "XDG_STATE_HOME=" + (dir_ / "state").string()});
    else if (options_.store) argv.insert(argv.end(), {"--store", store().string()});
    else argv.push_back("--no-store");  // without --store the coordinator records into its default store
    if (options_.auth) argv.insert(argv.end(), {"--auth", "--admin-token-file", admin_token().string()});
    if (options_.curve) {
      argv.insert(argv.end(), {"--security", "curve", "--key-file", (dir_ / "coordinator.key").string(),
                               "--admin-key-file", admin_key().string()});
    }
    argv.insert(argv.end(), options_.coordinator_args.begin(), options_.coordinator_args.end());
    coordinator_ = std::make_unique<Process>(argv, dir_ / log_name);
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!fs::exists(dir_ / "coordinator.addr") && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(20ms);
    }
    address_ = read_file(dir_ / "coordinator.addr");
    while (!address_.empty() && address_.back() == '\n') address_.pop_back();
  }
  fs::path store() const { return options_.default_store ? dir_ / "state" / "custody" / "store" : dir_ / "store"; }
  fs::path admin_token() const { return dir_ / "admin.token"; }
  fs::path admin_key() const { return dir_ / "admin.key"; }
  // The CLI flags that connect as the holder of `key_file` (security curve).
  std::vector<std::string> curve_args(const fs::path& key_file) const {
    return {"--key-file", key_file.string(), "--coordinator-key", (dir_ / "coordinator.key.pub").string()};
  }
  // The CLI flags that make a call the admin's, in whatever security mode the cluster runs.
  std::vector<std::string> admin_args() const {
    if (options_.curve) return curve_args(admin_key());
    if (options_.auth) return {"--token-file", admin_token().string()};
    return {};
  }

  Process& add_node(const std::string& exe, const std::string& name, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv{bin(exe), "--coordinator", address_, "--name", name};
    // Each worker its own records cache in the test's directory, never the runner's home.
    if (exe == "custody-worker") argv.insert(argv.end(), {"--data-cache", (dir_ / (name + ".records")).string()});
    argv.insert(argv.end(), node_args_.begin(), node_args_.end());
    argv.insert(argv.end(), extra.begin(), extra.end());
    nodes_.push_back(std::make_unique<Process>(argv, dir_ / (name + ".log")));
    return *nodes_.back();
  }
  // Waits until `count` nodes are registered and alive.
  bool wait_for_nodes(int count, std::chrono::seconds timeout = 20s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      std::vector<std::string> args = admin_args();
      args.insert(args.end(), {"status", "--json"});
      CliResult r = cli(args, 10s);
      if (r.code == 0) {
        int alive = 0;
        const nlohmann::json status = nlohmann::json::parse(r.out);
        for (const auto& n : status["nodes"]) alive += n["alive"].get<bool>();
        if (alive == count) return true;
      }
      std::this_thread::sleep_for(100ms);
    }
    return false;
  }
  CliResult cli(std::vector<std::string> args, std::chrono::seconds timeout = 180s) {
    args.insert(args.begin(), {"--coordinator", address_});
    return run_cli(dir_, args, timeout);
  }
  fs::path write_job(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p;
  }
  Process& node(size_t i) { return *nodes_.at(i); }
  Process& coordinator() { return *coordinator_; }
  const std::string& address() const { return address_; }
  const fs::path& dir() const { return dir_; }

 private:
  ClusterOptions options_;
  fs::path dir_;
  std::string listen_, address_;
  std::unique_ptr<Process> coordinator_;
  std::vector<std::string> node_args_;
  std::vector<std::unique_ptr<Process>> nodes_;
};

}  // namespace custody::testing
