#include "tools/command.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "protocols/curve_key_file.h"
#include "storage/store_query.h"

namespace custody::cli {

Status Session::read_config(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--config") config_file = argv[i + 1];
  const passwd* pw = getpwuid(getuid());
  if (config_file.empty() && pw && pw->pw_dir) {
    const std::string path = std::string(pw->pw_dir) + "/.config/custody/cli.toml";
    if (std::ifstream(path)) config_file = path;
  }
  std::string cfg_principal;
  if (!config_file.empty()) {
    auto reader = ConfigReader::parse_file(config_file);
    Status s = reader.status();
    if (s.is_ok()) s = reader->get("cli.coordinator", client.address);
    if (s.is_ok()) s = reader->get("cli.principal", cfg_principal);
    if (s.is_ok()) s = reader->get("cli.store", store_path);
    if (s.is_ok()) s = reader->get("cli.token_file", token_file);
    if (s.is_ok()) s = reader->get("cli.key_file", key_file);
    if (s.is_ok()) s = reader->get("cli.coordinator_key", coordinator_key);
    if (s.is_ok()) s = reader->get("cli.timeout_ms", timeout_ms, kReplyTimeoutMs);
    if (s.is_ok()) s = reader->unknown_keys_error();
    if (!s.is_ok()) return bad_input(s);
  }
  principal = !cfg_principal.empty() ? cfg_principal : pw && pw->pw_name ? pw->pw_name : "anonymous";
  return Status::ok();
}

Status Session::apply_flags() {
  client.timeout = std::chrono::milliseconds(timeout_ms);
  if (!key_file.empty() || !coordinator_key.empty()) {
    if (key_file.empty() || coordinator_key.empty()) {
      return bad_input(invalid_argument("a CurveZMQ connection needs both --key-file (your key pair) and "
                                        "--coordinator-key (the coordinator's public key or its .pub file)"));
    }
    CUSTODY_ASSIGN_OR_RETURN(auto identity, bad_input(transport::read_key_file(key_file)));
    client.keys = identity.keys;
    CUSTODY_ASSIGN_OR_RETURN(client.coordinator_key, bad_input(transport::read_public_key(coordinator_key)));
  }
  if (token_file.empty()) return Status::ok();
  std::ifstream in(token_file);
  if (!in || !std::getline(in, client.token) || client.token.empty()) {
    return invalid_argument("cannot read a token from '" + token_file + "'");
  }
  return Status::ok();
}

Result<std::unique_ptr<storage::CustodyStore>> Session::open_store() {
  if (store_path.empty()) {
    // Ask the coordinator where its store is (works on the coordinator's machine).
    auto reply = client.ask<msg::StatusReply>("", msg::StatusRequest{false});
    if (!reply.is_ok() || reply->store_path.empty()) {
      return invalid_argument("which custody store? give --store PATH (the coordinator's --store directory)");
    }
    store_path = reply->store_path;
  }
  return refused(storage::CustodyStore::open(store_path, storage::OpenMode::kReadShadow));
}

void add_global_options(CLI::App& app, Session& session) {
  app.add_option("--config", session.config_file, "CLI config file (default ~/.config/custody/cli.toml)");
  app.add_option("--token-file", session.token_file,
                 "file holding your token (a coordinator with --auth needs one)");
  app.add_option("--key-file", session.key_file,
                 "your CurveZMQ key pair (a coordinator with --security curve needs one)");
  app.add_option("--coordinator-key", session.coordinator_key,
                 "the coordinator's CurveZMQ public key, or its .pub file (with --key-file)");
  app.add_option("--coordinator", session.client.address, "coordinator address")->capture_default_str();
  add_ranged_option(&app, "--timeout-ms", session.timeout_ms, kReplyTimeoutMs,
                    "how long to wait for each reply");
  app.add_option("--store", session.store_path, "custody store directory (default: ask the coordinator)");
}

CLI::App* CommandSet::add(const std::string& name, const std::string& description, Run run) {
  return add(app_, name, description, std::move(run));
}

CLI::App* CommandSet::add(CLI::App& parent, const std::string& name, const std::string& description,
                          Run run) {
  CLI::App* command = parent.add_subcommand(name, description);
  commands_.emplace_back(command, std::move(run));
  return command;
}

CLI::App* CommandSet::add_group(const std::string& name, const std::string& description) {
  CLI::App* group = app_.add_subcommand(name, description);
  group->require_subcommand(1);
  group->fallthrough();
  return group;
}

Status CommandSet::run() const {
  CUSTODY_RETURN_IF_ERROR(session_.apply_flags());
  try {
    for (const auto& [command, run] : commands_)
      if (command->parsed()) return run(session_);
  } catch (const std::exception& e) {
    // Commands return their errors; a throw that reaches here is a bug, not a crash.
    return internal_error(std::string("unexpected error: ") + e.what());
  }
  return internal_error("no command was given, and CLI11 did not refuse that");
}

void add_json_flag(CLI::App* command, bool& as_json, const std::string& description) {
  command->add_flag("--json", as_json, description);
}

void CommandSet::add_as_option(CLI::App* command, const std::string& description) {
  command->add_option("--as", session_.principal, description)->capture_default_str();
}

CLI::Option* add_ranged_option(CLI::App* command, const std::string& flag, int64_t& value, IntRange range,
                               const std::string& description) {
  return command->add_option(flag, value, description)
      ->check(CLI::Range(range.min, range.max))
      ->capture_default_str();
}

int finish(const Status& status) {
  if (!status.is_ok() && !is_reported(status))
    std::fprintf(stderr, "custody: %s\n", status.message().c_str());
  return exit_code(status.code());
}

int finish(CLI::App& app, const CLI::ParseError& error) {
  if (error.get_exit_code() == 0) return app.exit(error);  // --help, --version
  // One line: what was wrong, and where the usage is. A first word that is no command
  // reaches CLI11 as "a subcommand is required": name it instead.
  std::string what = error.what(), usage = "custody";
  const std::vector<CLI::App*> chain = app.get_subcommands();
  for (CLI::App* sub = chain.empty() ? nullptr : chain.front(); sub;) {
    usage += " " + sub->get_name();
    const auto next = sub->get_subcommands();
    sub = next.empty() ? nullptr : next.front();
  }
  const std::vector<std::string> rest = app.remaining();
  if (chain.empty() && !rest.empty() && !rest.front().empty() && rest.front()[0] != '-') {
    what = "unknown command '" + rest.front() + "'";
  }
  std::fprintf(stderr, "custody: %s (%s --help shows the usage)\n", what.c_str(), usage.c_str());
  return exit_code(ErrorCode::kInvalidArgument);
}

void print(const std::string& text) { std::fputs(text.c_str(), stdout); }

Status print_answer(const Result<storage::json>& answer, bool as_json,
                    const std::function<std::string(const storage::json&)>& as_text) {
  if (!answer.is_ok()) return refused(answer.status());
  print(as_json ? as_json_text(answer.value()) : as_text(answer.value()));
  return Status::ok();
}

Result<storage::json> ask_store(Session& session, const std::string& query, const std::string& argument) {
  if (!session.store_path.empty()) {
    CUSTODY_ASSIGN_OR_RETURN(auto store, session.open_store());
    return storage::run_query(*store, query, argument);
  }
  CUSTODY_ASSIGN_OR_RETURN(auto reply, session.client.ask<msg::StoreQueryReply>("", msg::StoreQuery{query, argument}));
  storage::json answer = storage::json::parse(reply.json, nullptr, false);
  if (answer.is_discarded()) {
    return no_answer(data_loss("the coordinator's answer to '" + query + "' is not JSON this client can read"));
  }
  return answer;
}

Status print_query(Session& session, bool as_json, const std::string& query, const std::string& argument,
                   const std::function<std::string(const storage::json&)>& as_text) {
  return print_answer(ask_store(session, query, argument), as_json, as_text);
}

std::string as_json_text(const storage::json& answer) { return answer.dump(2) + "\n"; }

}  // namespace custody::cli
