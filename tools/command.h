// The `custody` CLI's commands and what they share. Each command file (job_commands.cc,
// store_commands.cc, lineage_commands.cc, serve_commands.cc, audit_commands.cc,
// admin_commands.cc) has one add_*_commands(CommandSet&) that adds its subcommands, with
// their flags, to the CLI11 app, and for each the function that runs it. main() builds the
// Session and the app, lets every file add its commands, parses, runs the one command
// given and maps its Status to the exit code (tools/exit_codes.h). A command prints its
// results; it reports a failure only by returning it.
// Thread-safety: none; main's thread only.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/config_reader.h"
#include "storage/custody_store.h"
#include "tools/client.h"

namespace custody::cli {

// cli.timeout_ms in the CLI config, and --timeout-ms.
inline constexpr IntRange kReplyTimeoutMs{1, 3600000};

// What every command may use: the global options, their defaults from the CLI config
// (configs/cli.toml), and the connection to the coordinator.
struct Session {
  Client client;
  std::string principal;    // who acts: --as, else the config's `principal`, else the login
  std::string store_path;   // --store, else the config's; empty: ask the coordinator
  std::string config_file;  // --config, else ~/.config/custody/cli.toml if it exists
  std::string token_file;
  std::string key_file;         // your CurveZMQ key pair (a coordinator with security curve)
  std::string coordinator_key;  // its public key, or its .pub file
  int64_t timeout_ms = 10000;
  bool wait_gave_up = false;  // `wait --max-seconds` ran out: main exits kWaitGaveUpExit

  // Defaults from the CLI config, read before the flags are parsed, so flags override it.
  Status read_config(int argc, char** argv);
  // After parsing: the token read from --token-file, the key pair from --key-file, the
  // reply timeout set.
  Status apply_flags();
  // The custody store, opened for reading beside the coordinator that writes it:
  // --store, else the directory the coordinator reports (on the coordinator's machine):
  // for what only the store's files can do (restore, offline checks); queries use ask_store.
  Result<std::unique_ptr<storage::CustodyStore>> open_store();
};

// --config, --token-file, --coordinator, --timeout-ms, --store: accepted before or after
// the command.
void add_global_options(CLI::App& app, Session& session);

class CommandSet {
 public:
  // What runs a command: its flags are bound to variables it captures.
  using Run = std::function<Status(Session&)>;

  CommandSet(CLI::App& app, Session& session) : app_(app), session_(session) {}

  // Adds command `name` (under `parent`: a group) and what runs it when it is the command
  // given.
  CLI::App* add(const std::string& name, const std::string& description, Run run);
  CLI::App* add(CLI::App& parent, const std::string& name, const std::string& description, Run run);
  // A group of commands (`lineage`, `audit`, `principal`): one of them must follow.
  CLI::App* add_group(const std::string& name, const std::string& description);
  // --as on `command`: who acts (Session::principal).
  void add_as_option(CLI::App* command, const std::string& description);

  // Applies the global flags and runs the command given.
  // REQUIRES: the app has parsed the command line.
  Status run() const;

 private:
  CLI::App& app_;
  Session& session_;
  std::vector<std::pair<CLI::App*, Run>> commands_;
};

// The flags several commands share.
void add_json_flag(CLI::App* command, bool& as_json, const std::string& description = "print JSON");
// A flag taking an integer in `range`; CLI11 refuses any other value with
// "FLAG: Value V not in range MIN to MAX".
CLI::Option* add_ranged_option(CLI::App* command, const std::string& flag, int64_t& value, IntRange range,
                               const std::string& description);

// How the CLI ends: prints a failure's message on stderr ("custody: ..."; nothing for one
// already reported) and returns its exit code.
int finish(const Status& status);
// The exit code after CLI11 refused the command line (or printed --help, exit 0): bad
// usage is an invalid argument.
int finish(CLI::App& app, const CLI::ParseError& error);

// Writes `text` to stdout as it is.
void print(const std::string& text);

// A store query's answer: printed as JSON with --json, else as `as_text` renders it; an
// error is a refusal (exit 4).
Status print_answer(const Result<storage::json>& answer, bool as_json,
                    const std::function<std::string(const storage::json&)>& as_text);
// A named store query (storage/store_query.h): with --store (or the config's store), read
// from the store's files; else asked of the coordinator (storeQuery), which answers from
// its store for a caller on any machine, as its role allows (actors/access_policy.h).
// The answer's JSON is the same either way.
Result<storage::json> ask_store(Session& session, const std::string& query, const std::string& argument);
// ask_store, then prints the answer (print_answer).
Status print_query(Session& session, bool as_json, const std::string& query, const std::string& argument,
                   const std::function<std::string(const storage::json&)>& as_text);
// The text of an answer without a table of its own: its JSON.
std::string as_json_text(const storage::json& answer);

// The command files.
void add_job_commands(CommandSet& commands);      // submit status jobs wait cancel resume
void add_store_commands(CommandSet& commands);    // models checkpoints usage store ...
void add_lineage_commands(CommandSet& commands);  // lineage show|trace|impact|export
void add_serve_commands(CommandSet& commands);    // predict export
void add_audit_commands(CommandSet& commands);    // audit verify|head|prove
void add_admin_commands(CommandSet& commands);    // principal add, rotate, list, revoke
void add_privacy_commands(CommandSet& commands);  // privacy MODEL|DATASET, privacy budget set
void add_liability_commands(CommandSet& commands);  // revoke, allow, retrain
void add_attribute_commands(CommandSet& commands);  // attribute

}  // namespace custody::cli
