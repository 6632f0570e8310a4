// Reading a node's typed configuration: a documented TOML file (configs/*.toml) first,
// then command-line flags on top. Nothing is read from the environment, except where the
// coordinator's default store and a worker's default records cache live (default_store_dir,
// default_data_cache_dir: the XDG base directory variables, as every program that keeps
// state in a user's home does), and only here, in main's
// helpers. Thread-safety: none needed; called from main before any thread starts.
#pragma once

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "actors/node_runtime.h"
#include "core/config_reader.h"
#include "core/log.h"
#include "core/version.h"

namespace custody::nodes {

inline std::atomic<bool> g_stop{false};  // set by SIGINT/SIGTERM only
inline void on_signal(int) { g_stop = true; }
inline void install_signal_handlers() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
}

// The ranges of the nodes' integer settings. Each is used by its key in the config file
// and by its flag (ranged_option), so a value the file refuses is refused as a flag too:
// `--max-message-mib 0` stops the node at startup, naming the flag and the range.
inline constexpr IntRange kHeartbeatIntervalMs{50, 600000};
inline constexpr IntRange kTimeoutMs{100, 3600000};  // heartbeats, stalls, starts, connects, steps
inline constexpr IntRange kMaxMessageMib{1, 4096};
inline constexpr IntRange kMaxRecoveries{0, 1000};
inline constexpr IntRange kHeadIntervalMs{100, 86400000};
inline constexpr IntRange kHttpMaxBodyKib{1, 1048576};  // 1 KiB to 1 GiB
inline constexpr IntRange kHttpThreads{1, 1024};
inline constexpr IntRange kUsageSyncsInFlight{1, 64};
inline constexpr IntRange kUsageGroupWaitUs{0, 100000};  // at most 100 ms
inline constexpr IntRange kHttpTimeoutMs{100, 600000};
inline constexpr IntRange kDataCacheMib{0, int64_t(1) << 30};  // 0: no limit; at most 1 PiB

// A flag taking an integer in `range`; CLI11 refuses any other value with
// "FLAG: Value V not in range MIN to MAX".
// Parses the command line as every node does: --version prints version_string(), --help
// the usage (both exit 0); a parse error (an unknown flag, a value out of its range) is
// one line naming the binary and how to see its usage, exit 2 as the CLI's bad usage.
// Returns the exit code when the process should stop here.
inline std::optional<int> parse_command_line(CLI::App& app, const char* binary, int argc, char** argv) {
  app.set_version_flag("--version", version_string());
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::fprintf(stderr, "%s: %s (%s --help shows the usage)\n", binary, e.what(), binary);
    return 2;
  }
  return std::nullopt;
}

inline CLI::Option* ranged_option(CLI::App& app, const std::string& flag, int64_t& value, IntRange range,
                                  const std::string& description) {
  return app.add_option(flag, value, description)->check(CLI::Range(range.min, range.max))->capture_default_str();
}

// Reads a config file into `apply`'s getters, then refuses unknown keys.
template <class Apply>
Status read_config(const std::string& path, Apply apply) {
  if (path.empty()) return Status::ok();
  CUSTODY_ASSIGN_OR_RETURN(ConfigReader reader, ConfigReader::parse_file(path));
  CUSTODY_RETURN_IF_ERROR(apply(reader));
  return reader.unknown_keys_error();
}

// Finds "--config PATH" before CLI11 parses, so that flags can override the file.
inline std::string config_path(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--config") return argv[i + 1];
  return "";
}

inline Status read_peer_config(ConfigReader& r, actors::PeerNodeConfig& c) {
  int64_t connect_ms = c.connect_timeout.count(), step_ms = c.step_timeout.count();
  int64_t max_mib = static_cast<int64_t>(c.max_message_bytes >> 20);
  CUSTODY_RETURN_IF_ERROR(r.get("node.coordinator", c.coordinator));
  CUSTODY_RETURN_IF_ERROR(r.get("node.name", c.name));
  CUSTODY_RETURN_IF_ERROR(r.get("node.connect_timeout_ms", connect_ms, kTimeoutMs));
  CUSTODY_RETURN_IF_ERROR(r.get("node.max_message_mib", max_mib, kMaxMessageMib));
  CUSTODY_RETURN_IF_ERROR(r.get("node.token_file", c.token));  // a path until main reads it
  CUSTODY_RETURN_IF_ERROR(r.get("node.key_file", c.key_file));
  CUSTODY_RETURN_IF_ERROR(r.get("node.coordinator_key", c.coordinator_key));
  CUSTODY_RETURN_IF_ERROR(r.get("server.listen", c.listen));
  CUSTODY_RETURN_IF_ERROR(r.get("server.advertise_host", c.advertise_host));
  CUSTODY_RETURN_IF_ERROR(r.get("worker.step_timeout_ms", step_ms, kTimeoutMs));
  CUSTODY_RETURN_IF_ERROR(r.get("worker.data_cache", c.data_cache));
  int64_t cache_mib = static_cast<int64_t>(c.data_cache_max_bytes >> 20);
  CUSTODY_RETURN_IF_ERROR(r.get("worker.data_cache_max_mib", cache_mib, kDataCacheMib));
  c.data_cache_max_bytes = static_cast<uint64_t>(cache_mib) << 20;
  CUSTODY_RETURN_IF_ERROR(r.get("node.metrics_listen", c.metrics_listen));
  CUSTODY_RETURN_IF_ERROR(r.get("node.pin_cpu", c.pin_cpu));
  c.connect_timeout = std::chrono::milliseconds(connect_ms);
  c.step_timeout = std::chrono::milliseconds(step_ms);
  c.max_message_bytes = static_cast<size_t>(max_mib) << 20;
  return Status::ok();
}

// custody-ps and custody-worker: the config file (if --config names one) into c.
// Returns false, having said why on stderr, when the file is unusable.
inline bool load_peer_config(int argc, char** argv, const char* program, actors::PeerNodeConfig& c,
                             std::string& config_file) {
  config_file = config_path(argc, argv);
  Status s = read_config(config_file, [&](ConfigReader& r) { return read_peer_config(r, c); });
  if (!s.is_ok()) std::fprintf(stderr, "%s: %s\n", program, s.message().c_str());
  return s.is_ok();
}

// The flags shared by custody-ps and custody-worker.
// The first line of a token file, or an error naming the file.
inline Result<std::string> read_token_file(const std::string& path) {
  std::ifstream in(path);
  std::string token;
  if (!in || !std::getline(in, token) || token.empty()) {
    return invalid_argument("cannot read a token from '" + path + "'");
  }
  return token;
}

inline void add_peer_flags(CLI::App& app, actors::PeerNodeConfig& c, std::string& config_file, int64_t& connect_ms) {
  app.add_option("--config", config_file, "TOML config file (configs/ps.toml, configs/worker.toml)");
  app.add_option("--coordinator", c.coordinator, "coordinator address")->capture_default_str();
  app.add_option("--name", c.name, "node id to register as (default: chosen by the coordinator)");
  ranged_option(app, "--connect-timeout-ms", connect_ms, kTimeoutMs,
                "give up if the coordinator is not reached in this time");
  app.add_option("--token-file", c.token, "file holding this node's token (for a coordinator with --auth)");
  app.add_option("--key-file", c.key_file,
                 "this node's CurveZMQ key pair (for a coordinator with --security curve; from `custody principal "
                 "add NAME --role node`)");
  app.add_option("--coordinator-key", c.coordinator_key,
                 "the coordinator's CurveZMQ public key, or its .pub file (with --key-file)");
  app.add_option("--metrics-listen", c.metrics_listen,
                 "serve Prometheus metrics at GET /metrics on HOST:PORT (port 0: any free one)");
  app.add_option("--metrics-port-file", c.metrics_port_file, "write the metrics listener's HOST:PORT here");
  app.add_option("--pin-cpu", c.pin_cpu,
                 "pin the compute threads to these CPUs, each to the next in turn (\"1\", \"0,1\", \"0-3\"; "
                 "default: not pinned)");
}

// Replaces the token file's path in c.token by the token itself.
inline bool load_token(actors::PeerNodeConfig& c, const char* program) {
  if (c.token.empty()) return true;
  auto token = read_token_file(c.token);
  if (!token.is_ok()) {
    std::fprintf(stderr, "%s: %s\n", program, token.status().message().c_str());
    return false;
  }
  c.token = token.value();
  return true;
}

// A worker's cache of records fetched from the coordinator (data shipping) when
// --data-cache (worker.data_cache) is not given: $XDG_CACHE_HOME/custody/records, else
// $HOME/.cache/custody/records (a cache: deleting it costs a fetch, nothing else). Empty
// when there is no home directory: the worker then fetches into nothing and says so.
inline std::string default_data_cache_dir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && xdg[0] == '/') return std::string(xdg) + "/custody/records";
  std::string home;
  if (const char* h = std::getenv("HOME"); h && h[0] == '/') home = h;
  if (home.empty()) {
    if (const passwd* pw = getpwuid(getuid()); pw && pw->pw_dir) home = pw->pw_dir;
  }
  return home.empty() ? "" : home + "/.cache/custody/records";
}

// The coordinator's custody store when neither --store (coordinator.store) nor --no-store
// is given: $XDG_STATE_HOME/custody/store, else $HOME/.local/state/custody/store (the home
// from the password database if HOME is unset). A custody cluster that records nothing is
// the wrong default, so one that was started without a thought gets a store, at a place
// the documentation names and the log prints. The "custody" directory is created 0700
// (the store's key files land beside the store, in it); the store itself is made 0700 by
// the store. An error names the directory that could not be made and what to do.
inline Result<std::string> default_store_dir() {
  std::string state;
  if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg && xdg[0] == '/') state = xdg;
  if (state.empty()) {
    std::string home;
    if (const char* h = std::getenv("HOME"); h && h[0] == '/') home = h;
    if (home.empty()) {
      if (const passwd* pw = getpwuid(getuid()); pw && pw->pw_dir) home = pw->pw_dir;
    }
    if (home.empty()) {
      return failed_precondition("no home directory to keep the default custody store in: give --store DIR, "
                                 "or --no-store to run without one");
    }
    state = home + "/.local/state";
  }
  std::error_code ec;
  std::filesystem::create_directories(state, ec);
  const std::string dir = state + "/custody";
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return unavailable("cannot create the default custody store's directory '" + dir + "': " + std::strerror(errno) +
                       "; give --store DIR, or --no-store to run without one");
  }
  return dir + "/store";
}

}  // namespace custody::nodes
