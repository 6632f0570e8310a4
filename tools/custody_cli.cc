// custody: the command-line client of a Custody cluster.
//   custody submit JOBFILE        prints the job id
//   custody status [JOB]          one job, or every job and node
//   custody jobs                  every job
//   custody wait JOB              a live progress line until the job ends
//   custody cancel JOB
//   custody resume JOB            run a failed or cancelled job on from its last checkpoint
//   custody models | checkpoints JOB | usage MODEL
//   custody lineage show ID | trace ID | impact DATASET | export --openlineage JOB
//   custody export CHECKPOINT FILE  (recorded as a use)
//   custody predict MODEL --input FILE   class, probabilities and a prediction id per row
//   custody audit verify [--since HEADS] | head [--out FILE] | prove RECEIPT --public-key KEY
// Every command: --coordinator ADDR, --timeout-ms N; queries: --json. Store queries read
// the custody store directly (--store PATH, or the path the coordinator reports).
// Exit codes: 0 ok; 1 the job failed or was cancelled (wait); 2 bad usage or input;
// 3 the coordinator did not answer; 4 the coordinator refused the request, or the store
// does not hold what was asked for; 5 audit verify found a problem.
#include <pwd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <ctime>
#include <thread>

#include "core/config_reader.h"
#include "core/dataset.h"
#include "core/files.h"
#include "core/job_spec.h"
#include "storage/queries.h"
#include "tools/audit_commands.h"
#include "protocols/codec.h"
#include "protocols/transport.h"

using namespace custody;
using nlohmann::json;

namespace {

struct Client {
  std::string address;
  std::chrono::milliseconds timeout{10000};
  transport::Context context;
  std::unique_ptr<transport::Socket> socket;
  uint64_t next_request = 1;
  std::string token;  // sent with every request (a coordinator with --auth needs it)

  // The reply to one request, or a Status with the exit code it deserves.
  Result<msg::Envelope> call(const std::string& job_id, msg::Body body, int& exit_code) {
    if (!socket) {
      auto s = transport::Socket::connect(context, address);
      if (!s.is_ok()) {
        exit_code = 2;
        return s.status();
      }
      socket = std::move(s).value();
    }
    msg::Envelope e;
    e.sender = "cli";
    e.job_id = job_id;
    e.request_id = next_request++;
    e.body = std::move(body);
    e.token = token;
    Status sent = socket->send("", msg::encode(e));
    if (!sent.is_ok()) {
      exit_code = 3;
      return sent;
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto in = socket->receive(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
      if (!in.is_ok()) {
        exit_code = 3;
        return in.status();
      }
      if (!in.value()) break;
      auto reply = msg::decode(in.value()->bytes.data(), in.value()->bytes.size());
      if (!reply.is_ok()) {
        exit_code = 3;
        return data_loss("the coordinator sent a reply this client cannot read: " + reply.status().message());
      }
      if (reply->request_id != e.request_id) continue;  // a reply to an earlier, timed-out call
      if (auto* err = reply->get<msg::Error>()) {
        exit_code = 4;
        return Status(err->code, err->message);
      }
      return reply;
    }
    exit_code = 3;
    return deadline_exceeded("no reply from the coordinator at " + address + " within " +
                             std::to_string(timeout.count() / 1000.0).substr(0, 4) +
                             " s; is it running (custody-coordinator), and is --coordinator right?");
  }
};

int fail(const Status& s, int code) {
  std::fprintf(stderr, "custody: %s\n", s.message().c_str());
  return code;
}

std::string state_name(msg::JobState s) { return msg::to_string(s); }

json job_json(const msg::JobStatus& j) {
  return json{{"job_id", j.job_id},
              {"name", j.name},
              {"state", state_name(j.state)},
              {"message", j.message},
              {"submitter", j.submitter},
              {"epoch", j.epoch},
              {"epochs", j.epochs},
              {"step", j.step},
              {"total_steps", j.total_steps},
              {"loss", j.loss},
              {"test_accuracy", j.test_accuracy < 0 ? json(nullptr) : json(j.test_accuracy)},
              {"test_loss", j.test_loss},
              {"samples_per_sec", j.samples_per_sec},
              {"submitted_at_ms", j.submitted_at_ms},
              {"started_at_ms", j.started_at_ms},
              {"finished_at_ms", j.finished_at_ms},
              {"workers", j.workers},
              {"servers", j.servers},
              {"dataset_hash", j.dataset_hash},
              {"consistency", j.consistency},
              {"accuracy_history", j.accuracy_history},
              {"last_checkpoint", j.last_checkpoint},
              {"waiting_for", j.waiting_for},
              {"recoveries", j.recoveries}};
}

json node_json(const msg::NodeStatus& n) {
  return json{{"node_id", n.node_id}, {"role", msg::to_string(n.role)}, {"address", n.address},
              {"alive", n.alive},     {"busy", n.busy},                  {"last_seen_ms_ago", n.last_seen_ms_ago},
              {"host", n.host},       {"pid", n.pid}};
}

std::string progress_line(const msg::JobStatus& j) {
  char buf[256];
  std::string acc = j.test_accuracy < 0 ? "  -   " : std::to_string(j.test_accuracy).substr(0, 6);
  std::snprintf(buf, sizeof(buf), "%s %-9s epoch %u/%u  step %llu/%llu  loss %.4f  test acc %s  %.0f samples/s",
                j.job_id.c_str(), state_name(j.state).c_str(), j.epoch, j.epochs,
                static_cast<unsigned long long>(j.step), static_cast<unsigned long long>(j.total_steps),
                j.loss < 0 ? 0.0 : j.loss, acc.c_str(), j.samples_per_sec);
  return buf;
}

void print_jobs(const std::vector<msg::JobStatus>& jobs) {
  std::printf("%-13s %-16s %-10s %-7s %-9s %-8s %s\n", "JOB", "NAME", "STATE", "EPOCH", "TEST ACC", "SUBMITTER",
              "MESSAGE");
  for (const auto& j : jobs) {
    std::string epoch = std::to_string(j.epoch) + "/" + std::to_string(j.epochs);
    std::string acc = j.test_accuracy < 0 ? "-" : std::to_string(j.test_accuracy).substr(0, 6);
    std::printf("%-13s %-16s %-10s %-7s %-9s %-8s %s\n", j.job_id.c_str(), j.name.c_str(),
                state_name(j.state).c_str(), epoch.c_str(), acc.c_str(), j.submitter.c_str(), j.message.c_str());
  }
}

// "2026-11-24" or "2026-11-24T10:15:00" (UTC) as ms since the epoch.
Result<int64_t> parse_utc(const std::string& text) {
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end || *end) {
    tm = std::tm{};
    end = strptime(text.c_str(), "%Y-%m-%d", &tm);
  }
  if (!end || *end) return invalid_argument("'" + text + "' is not a UTC time like 2026-11-24 or 2026-11-24T10:15:00");
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

struct PredictionInput {
  int64_t rows = 0, features = 0;
  std::vector<float> values;  // rows x features, row-major
};

// IDX images are scaled to [0, 1] as in training; CSV and raw float32 values are taken as
// the model's inputs as they are.
Result<PredictionInput> read_prediction_input(const std::string& path, std::string format, int64_t features) {
  auto ends_with = [&](const char* s) {
    const std::string suffix(s);
    return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  if (format == "auto") format = ends_with(".csv") ? "csv" : ends_with(".f32") ? "f32" : "idx";
  PredictionInput in;
  if (format == "idx") {
    auto set = read_idx_images(path);
    if (!set.is_ok()) return set.status();
    in.rows = set->count;
    in.features = set->features;
    in.values.resize(set->pixels.size());
    for (size_t i = 0; i < set->pixels.size(); ++i) in.values[i] = set->pixels[i] / 255.0f;
    return in;
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) return not_found("cannot open input file '" + path + "'");
  if (format == "f32") {
    if (features <= 0) return invalid_argument("a raw float32 input needs --features (values per row)");
    std::stringstream ss;
    ss << file.rdbuf();
    const std::string bytes = ss.str();
    if (bytes.size() % (sizeof(float) * static_cast<size_t>(features)) != 0 || bytes.empty()) {
      return invalid_argument("'" + path + "' holds " + std::to_string(bytes.size()) +
                              " bytes, not a whole number of rows of " + std::to_string(features) + " float32 values");
    }
    in.features = features;
    in.rows = static_cast<int64_t>(bytes.size() / sizeof(float) / features);
    in.values.resize(bytes.size() / sizeof(float));
    std::memcpy(in.values.data(), bytes.data(), bytes.size());
    return in;
  }
  std::string line;
  int64_t line_no = 0;
  while (std::getline(file, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::stringstream cells(line);
    std::string cell;
    int64_t count = 0;
    while (std::getline(cells, cell, ',')) {
      char* end = nullptr;
      const float v = std::strtof(cell.c_str(), &end);
      if (end == cell.c_str()) {
        return invalid_argument("'" + path + "' line " + std::to_string(line_no) + ": '" + cell + "' is not a number");
      }
      in.values.push_back(v);
      ++count;
    }
    if (in.features == 0) in.features = count;
    if (count != in.features) {
      return invalid_argument("'" + path + "' line " + std::to_string(line_no) + " has " + std::to_string(count) +
                              " values; the first row has " + std::to_string(in.features));
    }
    ++in.rows;
  }
  if (in.rows == 0) return invalid_argument("'" + path + "' holds no rows");
  return in;
}

}  // namespace

int main(int argc, char** argv) {
  // Defaults from the CLI config (configs/cli.toml documents it): --config FILE, else
  // ~/.config/custody/cli.toml if it exists. Flags override it.
  std::string config_file;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--config") config_file = argv[i + 1];
  if (config_file.empty()) {
    const passwd* home = getpwuid(getuid());
    if (home && home->pw_dir) {
      std::string path = std::string(home->pw_dir) + "/.config/custody/cli.toml";
      if (std::ifstream(path)) config_file = path;
    }
  }
  std::string cfg_coordinator = "tcp://127.0.0.1:5555", cfg_principal, cfg_store, cfg_token_file;
  int64_t cfg_timeout_ms = 10000;
  if (!config_file.empty()) {
    auto reader = ConfigReader::parse_file(config_file);
    Status s = reader.status();
    if (s.is_ok()) s = reader->get("cli.coordinator", cfg_coordinator);
    if (s.is_ok()) s = reader->get("cli.principal", cfg_principal);
    if (s.is_ok()) s = reader->get("cli.store", cfg_store);
    if (s.is_ok()) s = reader->get("cli.token_file", cfg_token_file);
    if (s.is_ok()) s = reader->get("cli.timeout_ms", cfg_timeout_ms, 1, 3600000);
    if (s.is_ok()) s = reader->unknown_keys_error();
    if (!s.is_ok()) return fail(s, 2);
  }
  CLI::App app{"custody: submit and follow training jobs on a Custody cluster"};
  app.require_subcommand(1);
  // Global options (--coordinator, --store, ...) may also follow the subcommand.
  app.fallthrough();
  Client client;
  client.address = cfg_coordinator;
  int64_t timeout_ms = cfg_timeout_ms;
  bool as_json = false;
  // The principal: --as, else the CLI config's, else the local user.
  const passwd* pw = getpwuid(getuid());
  std::string principal = !cfg_principal.empty() ? cfg_principal : pw && pw->pw_name ? pw->pw_name : "anonymous";
  app.add_option("--config", config_file, "CLI config file (default ~/.config/custody/cli.toml)");
  std::string token_file = cfg_token_file;
  app.add_option("--token-file", token_file, "file holding your token (a coordinator with --auth needs one)");
  std::string new_name, new_role;
  auto* principal_cmd = app.add_subcommand("principal", "manage principals (admin)");
  principal_cmd->require_subcommand(1);
  principal_cmd->fallthrough();
  auto* principal_add = principal_cmd->add_subcommand("add", "create a principal; prints its token once");
  principal_add->add_option("NAME", new_name, "principal name")->required();
  principal_add->add_option("--role", new_role, "submitter, consumer, auditor, admin or node")->required();
  app.add_option("--coordinator", client.address, "coordinator address")->capture_default_str();
  app.add_option("--timeout-ms", timeout_ms, "how long to wait for each reply")->capture_default_str();

  std::string job_file, job_id;
  int64_t max_seconds = 3600;
  auto* submit = app.add_subcommand("submit", "submit a job file; prints the job id");
  submit->add_option("JOBFILE", job_file, "TOML job file (see configs/jobs/)")->required();
  submit->add_option("--as", principal, "the principal submitting the job")->capture_default_str();
  auto* status = app.add_subcommand("status", "the state of one job, or of every job and node");
  status->add_option("JOB", job_id, "job id");
  status->add_flag("--json", as_json, "print JSON");
  auto* jobs = app.add_subcommand("jobs", "list every job");
  jobs->add_flag("--json", as_json, "print JSON");
  auto* wait = app.add_subcommand("wait", "follow a job until it ends; exit 0 if it completed");
  wait->add_option("JOB", job_id, "job id")->required();
  wait->add_option("--max-seconds", max_seconds, "give up waiting after this long")->capture_default_str();
  wait->add_flag("--json", as_json, "print the final status as JSON");
  auto* cancel = app.add_subcommand("cancel", "cancel a job");
  cancel->add_option("JOB", job_id, "job id")->required();
  auto* resume = app.add_subcommand("resume", "run a failed or cancelled job on from its last checkpoint");
  resume->add_option("JOB", job_id, "job id")->required();
  resume->add_option("--as", principal, "the principal resuming the job")->capture_default_str();

  // Store queries.
  std::string store_path = cfg_store, id, out_file, purpose = "unspecified";
  bool openlineage = false;
  app.add_option("--store", store_path, "custody store directory (default: ask the coordinator)");
  auto* models = app.add_subcommand("models", "list model versions");
  models->add_flag("--json", as_json, "print JSON");
  auto* ckpts = app.add_subcommand("checkpoints", "list a job's checkpoints");
  ckpts->add_option("JOB", id, "job id")->required();
  ckpts->add_flag("--json", as_json, "print JSON");
  auto* usage_cmd = app.add_subcommand("usage", "who used a model (all versions) or checkpoint, and when");
  usage_cmd->add_option("MODEL", id, "NAME, NAME@VERSION or a checkpoint id")->required();
  usage_cmd->add_flag("--json", as_json, "print JSON");
  std::string since, until;
  usage_cmd->add_option("--since", since, "only calls from then on (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS, UTC)");
  usage_cmd->add_option("--until", until, "only calls up to then (same forms)");
  uint32_t usage_limit = storage::kUsageListedByDefault;
  usage_cmd->add_option("--limit", usage_limit, "list the newest N calls (0: all); the summary covers all")
      ->capture_default_str();
  auto* lineage = app.add_subcommand("lineage", "inspect lineage");
  lineage->require_subcommand(1);
  lineage->fallthrough();
  auto* show = lineage->add_subcommand("show", "one record and its relations");
  show->add_option("ID", id, "any id")->required();
  show->add_flag("--json", as_json, "print JSON");
  auto* trace = lineage->add_subcommand("trace", "upstream: data, job, submitter, contributors");
  trace->add_option("ID", id, "model (NAME[@VERSION]), checkpoint or job id")->required();
  trace->add_flag("--json", as_json, "print JSON");
  auto* impact = lineage->add_subcommand("impact", "downstream: every checkpoint and model that used a data set");
  impact->add_option("DATASET", id, "data set hash (or a prefix of it) or name")->required();
  impact->add_flag("--json", as_json, "print JSON");
  auto* lexport = lineage->add_subcommand("export", "export a job's lineage");
  lexport->add_option("JOB", id, "job id")->required();
  lexport->add_flag("--openlineage", openlineage, "as OpenLineage 2-0-2 RunEvents, one JSON object per line")
      ->required();
  auto* export_cmd = app.add_subcommand("export", "write a checkpoint's weights to a file (recorded as a use)");
  export_cmd->add_option("CHECKPOINT", id, "checkpoint id or model NAME[@VERSION]")->required();
  export_cmd->add_option("FILE", out_file, "output: raw little-endian float32; FILE.json describes it")->required();
  export_cmd->add_option("--as", principal, "the principal exporting")->capture_default_str();
  export_cmd->add_option("--purpose", purpose, "why (recorded)");
  std::string input_file, format = "auto";
  std::string since_file, public_key, receipt_file, head_out;
  int64_t features = 0, batch_rows = 256;
  auto* predict = app.add_subcommand("predict", "predict with a model; every call is recorded");
  predict->add_option("MODEL", id, "NAME (newest version), NAME@VERSION or a checkpoint id")->required();
  predict->add_option("--input", input_file, "IDX images (gzipped or not), CSV rows, or raw float32")->required();
  predict->add_option("--format", format, "auto (by name: .csv, .f32, else IDX), idx, csv or f32")
      ->check(CLI::IsMember({"auto", "idx", "csv", "f32"}))
      ->capture_default_str();
  predict->add_option("--features", features, "values per row of a raw float32 file")->capture_default_str();
  predict->add_option("--batch", batch_rows, "rows per call (each call is one usage record)")->capture_default_str();
  int64_t max_rows = 0;
  predict->add_option("--rows", max_rows, "predict only the first N rows of the input (0: all)");
  predict->add_option("--as", principal, "the caller")->capture_default_str();
  predict->add_option("--purpose", purpose, "why (recorded)");
  predict->add_flag("--json", as_json, "print JSON");
  predict->add_option("--receipt", receipt_file, "append each call's signed receipt to this file (JSON lines)");
  auto* audit = app.add_subcommand("audit", "check the custody store");
  audit->require_subcommand(1);
  audit->fallthrough();
  auto* verify = audit->add_subcommand("verify", "recompute every hash chain, index, Merkle tree and checkpoint hash");
  verify->add_flag("--json", as_json, "print JSON");
  verify->add_option("--since", since_file,
                     "a head file kept earlier (`audit head --out`, the coordinator's head_file): prove the store "
                     "extends it");
  verify->add_option("--public-key", public_key, "the key the kept heads must be signed by (hex, PEM or a file)");
  auto* head_cmd = audit->add_subcommand("head", "the store's Merkle log heads, signed by the coordinator");
  head_cmd->add_option("--out", head_out, "append them to this file, to keep (one line per call)");
  head_cmd->add_flag("--json", as_json, "print JSON");
  auto* prove = audit->add_subcommand("prove", "check receipts of predictions or exports, offline");
  prove->add_option("RECEIPT_FILE", receipt_file, "receipts (`predict --receipt`, `export`'s FILE.receipt.json)")
      ->required();
  prove->add_option("--public-key", public_key, "the coordinator's public key (hex, PEM or its KEYFILE.pub)")
      ->required();
  prove->add_flag("--json", as_json, "print JSON");
  CLI11_PARSE(app, argc, argv);
  client.timeout = std::chrono::milliseconds(timeout_ms);
  int code = 0;
  if (!token_file.empty()) {
    std::ifstream in(token_file);
    if (!in || !std::getline(in, client.token) || client.token.empty()) {
      return fail(invalid_argument("cannot read a token from '" + token_file + "'"), 2);
    }
  }
  if (principal_add->parsed()) {
    auto reply = client.call("", msg::AddPrincipal{new_name, new_role}, code);
    if (!reply.is_ok()) return fail(reply.status(), code);
    const auto* added = reply->get<msg::PrincipalAdded>();
    std::fprintf(stderr, "principal %s (%s) added; its token (shown only now):\n", added->name.c_str(),
                 added->role.c_str());
    std::printf("%s\n", added->token.c_str());
    return 0;
  }
  if ((wait->parsed() || cancel->parsed() || resume->parsed()) && job_id.empty()) {
    return fail(invalid_argument("an empty job id; `custody jobs` lists the jobs"), 2);
  }

  if (head_cmd->parsed()) {
    auto reply = client.call("", msg::AuditHeadRequest{}, code);
    if (!reply.is_ok()) return fail(reply.status(), code);
    return cli::audit_head(reply->get<msg::AuditHeadReply>()->json, head_out, as_json);
  }
  if (prove->parsed()) {
    // Offline by default: the receipt and the key are all it needs. With --store, the
    // store must also still hold each record and extend each receipt's head.
    std::unique_ptr<storage::CustodyStore> against;
    if (!store_path.empty()) {
      auto opened = storage::CustodyStore::open(store_path, storage::OpenMode::kReadShadow);
      if (!opened.is_ok()) return fail(opened.status(), 4);
      against = std::move(opened).value();
    }
    return cli::audit_prove(receipt_file, public_key, against.get(), as_json);
  }

  int64_t since_ms = 0, until_ms = 0;
  for (auto [text, out] : {std::make_pair(&since, &since_ms), std::make_pair(&until, &until_ms)}) {
    if (text->empty()) continue;
    auto ms = parse_utc(*text);
    if (!ms.is_ok()) return fail(ms.status(), 2);
    *out = ms.value();
  }
  // With a token and no store named, usage goes through the coordinator, which shows a
  // caller only its own calls unless it is an auditor or an admin.
  const bool usage_via_coordinator = usage_cmd->parsed() && !client.token.empty() && store_path.empty();
  if (models->parsed() || ckpts->parsed() || (usage_cmd->parsed() && !usage_via_coordinator) || lineage->parsed() ||
      audit->parsed() || usage_via_coordinator) {
    if (store_path.empty() && !usage_via_coordinator) {
      // Ask the coordinator where its store is (works on the coordinator's machine).
      auto reply = client.call("", msg::StatusRequest{false}, code);
      if (!reply.is_ok() || reply->get<msg::StatusReply>()->store_path.empty()) {
        return fail(invalid_argument("which custody store? give --store PATH (the coordinator's --store directory)"), 2);
      }
      store_path = reply->get<msg::StatusReply>()->store_path;
    }
    Result<json> result = json();
    std::unique_ptr<storage::CustodyStore> opened;
    if (usage_via_coordinator) {
      auto reply = client.call("", msg::UsageRequest{id, since_ms, until_ms, usage_limit}, code);
      if (!reply.is_ok()) return fail(reply.status(), code);
      result = json::parse(reply->get<msg::UsageReply>()->json);
    } else {
      auto store = storage::CustodyStore::open(store_path, storage::OpenMode::kReadShadow);
      if (!store.is_ok()) return fail(store.status(), 4);
      opened = std::move(store).value();
    }
    if (!opened) opened = storage::CustodyStore::in_memory();  // usage came from the coordinator
    const storage::CustodyStore& st = *opened;
    if (models->parsed()) result = storage::models(st);
    if (ckpts->parsed()) result = storage::checkpoints(st, id);
    if (usage_cmd->parsed() && !usage_via_coordinator) result = storage::usage(st, id, "", since_ms, until_ms, usage_limit);
    if (show->parsed()) result = storage::show(st, id);
    if (trace->parsed()) result = storage::trace(st, id);
    if (impact->parsed()) result = storage::impact(st, id);
    if (lexport->parsed()) {
      auto lines = storage::openlineage(st, id);
      if (!lines.is_ok()) return fail(lines.status(), 4);
      std::fputs(lines.value().c_str(), stdout);
      return 0;
    }
    if (verify->parsed()) return cli::audit_verify(st, store_path, since_file, public_key, as_json);
    if (!result.is_ok()) return fail(result.status(), 4);
    const json& j = result.value();
    if (as_json) {
      std::printf("%s\n", j.dump(2).c_str());
    } else if (trace->parsed() || impact->parsed()) {
      std::fputs(storage::render_tree(j).c_str(), stdout);
    } else if (models->parsed()) {
      std::printf("%-24s %-8s %-22s %-13s %-9s %s\n", "MODEL", "VERSION", "CHECKPOINT", "RUN", "TEST ACC", "CREATED");
      for (const auto& m : j) {
        std::printf("%-24s %-8d %-22s %-13s %-9.4f %s\n", m.value("name", std::string()).c_str(), m.value("version", 0),
                    m.value("checkpoint", std::string()).c_str(), m.value("run", std::string()).c_str(),
                    m.value("test_accuracy", 0.0), m.value("created_at", std::string()).c_str());
      }
    } else if (ckpts->parsed()) {
      std::printf("%-22s %-8s %-6s %-6s %-18s %s\n", "CHECKPOINT", "STEP", "EPOCH", "FINAL", "ROOT HASH", "PARENT");
      for (const auto& c : j) {
        std::printf("%-22s %-8llu %-6d %-6s %-18s %s\n", c.value("id", std::string()).c_str(),
                    static_cast<unsigned long long>(c.value("step", uint64_t(0))), c.value("epoch", 0),
                    c.value("final", false) ? "yes" : "no", c.value("root_hash", std::string()).substr(0, 16).c_str(),
                    c.value("parent", std::string()).c_str());
      }
    } else if (usage_cmd->parsed()) {
      std::printf("%-20s %-20s %-8s %-7s %-8s %-25s %s\n", "PRINCIPAL", "VERSION", "ACTION", "CALLS", "ROWS",
                  "FIRST", "LAST");
      for (const auto& r : j["summary"]) {
        std::printf("%-20s %-20s %-8s %-7d %-8lld %-25s %s\n", r["principal"].get<std::string>().substr(10).c_str(),
                    r["version"].get<std::string>().c_str(), r["action"].get<std::string>().c_str(),
                    r["calls"].get<int>(), static_cast<long long>(r["rows"].get<int64_t>()),
                    r["first"].get<std::string>().c_str(), r["last"].get<std::string>().c_str());
      }
    } else {
      std::printf("%s\n", j.dump(2).c_str());
    }
    return 0;
  }
  if (export_cmd->parsed()) {
    auto reply = client.call("", msg::ExportRequest{id, principal, purpose}, code);
    if (!reply.is_ok()) return fail(reply.status(), code);
    const auto* x = reply->get<msg::ExportReply>();
    std::ofstream out(out_file, std::ios::binary);
    out.write(reinterpret_cast<const char*>(x->values.data()), static_cast<std::streamsize>(x->values.size() * sizeof(float)));
    std::ofstream meta(out_file + ".json");
    meta << json{{"checkpoint", x->checkpoint}, {"root_hash", x->root_hash}, {"layer_sizes", x->layer_sizes},
                 {"format", "little-endian float32, the model's flat layout (docs/ARCHITECTURE.md)"},
                 {"usage_id", x->usage_id}}
                .dump(2)
         << "\n";
    if (!out || !meta) return fail(unavailable("cannot write '" + out_file + "'"), 2);
    if (!x->receipt.empty()) {
      // The evidence of what was recorded about this export, checkable offline.
      std::ofstream(out_file + ".receipt.json") << x->receipt << "\n";
    }
    std::printf("wrote %s (%zu parameters of %s); recorded as %s\n", out_file.c_str(), x->values.size(),
                x->checkpoint.c_str(), x->usage_id.c_str());
    return 0;
  }
  if (predict->parsed()) {
    auto rows = read_prediction_input(input_file, format, features);
    if (!rows.is_ok()) return fail(rows.status(), 2);
    PredictionInput& in = rows.value();
    if (batch_rows < 1) return fail(invalid_argument("--batch must be at least 1"), 2);
    if (max_rows > 0 && max_rows < in.rows) {
      in.rows = max_rows;
      in.values.resize(static_cast<size_t>(max_rows * in.features));
    }
    json all = json::array();
    for (int64_t first = 0; first < in.rows; first += batch_rows) {
      const int64_t n = std::min<int64_t>(batch_rows, in.rows - first);
      msg::Predict request{id, principal, static_cast<uint32_t>(n), static_cast<uint32_t>(in.features), {}, purpose};
      request.inputs.assign(in.values.begin() + first * in.features, in.values.begin() + (first + n) * in.features);
      auto reply = client.call("", std::move(request), code);
      if (!reply.is_ok()) return fail(reply.status(), code);
      const auto* p = reply->get<msg::PredictReply>();
      if (!receipt_file.empty()) {
        if (p->receipt.empty()) {
          return fail(failed_precondition("the coordinator sent no receipt (it keeps no custody store or key)"), 4);
        }
        Status s = append_line_synced(receipt_file, p->receipt);
        if (!s.is_ok()) return fail(s, 2);
      }
      for (int64_t r = 0; r < n; ++r) {
        const float* probs = p->probabilities.data() + r * p->classes;
        const int best = static_cast<int>(std::max_element(probs, probs + p->classes) - probs);
        if (as_json) {
          all.push_back({{"prediction_id", p->prediction_ids[r]}, {"row", first + r}, {"class", best},
                         {"probabilities", std::vector<float>(probs, probs + p->classes)},
                         {"model", p->model}, {"checkpoint", p->checkpoint}});
          continue;
        }
        std::printf("%s  row %lld  class %d  p=%.4f  [", p->prediction_ids[r].c_str(),
                    static_cast<long long>(first + r), best, probs[best]);
        for (uint32_t k = 0; k < p->classes; ++k) std::printf("%s%.4f", k ? " " : "", probs[k]);
        std::printf("]\n");
      }
      if (!as_json && first == 0) {
        std::fprintf(stderr, "model %s (%s, weights %s)\n", p->model.empty() ? p->checkpoint.c_str() : p->model.c_str(),
                     p->checkpoint.c_str(), p->root_hash.substr(0, 16).c_str());
      }
    }
    if (as_json) std::printf("%s\n", all.dump(2).c_str());
    return 0;
  }
  if (resume->parsed()) {
    auto reply = client.call(job_id, msg::ResumeJob{principal}, code);
    if (!reply.is_ok()) return fail(reply.status(), code);
    std::printf("%s %s\n", job_id.c_str(), reply->get<msg::JobAccepted>()->message.c_str());
    return 0;
  }

  if (submit->parsed()) {
    std::ifstream in(job_file, std::ios::binary);
    if (!in) return fail(not_found("cannot open job file '" + job_file + "'"), 2);
    std::stringstream text;
    text << in.rdbuf();
    // Check locally first, for an error that points at the file before any network.
    auto spec = parse_job_spec(text.str(), job_file);
    if (!spec.is_ok()) return fail(spec.status(), 2);
    auto reply = client.call("", msg::SubmitJob{text.str(), job_file, principal}, code);
    if (!reply.is_ok()) return fail(reply.status(), code);
    const auto* accepted = reply->get<msg::JobAccepted>();
    std::printf("%s\n", accepted->job_id.c_str());
    // Whether it starts now, waits its turn, or cannot be placed on the nodes alive.
    if (accepted->message != "starting") std::fprintf(stderr, "%s: %s\n", accepted->job_id.c_str(), accepted->message.c_str());
    return 0;
  }
  if (status->parsed() || jobs->parsed()) {
    auto reply = client.call(job_id, msg::StatusRequest{status->parsed() && job_id.empty()}, code);
    if (!reply.is_ok()) return fail(reply.status(), code);
    const auto* r = reply->get<msg::StatusReply>();
    if (!r) return fail(internal_error("unexpected reply to a status request"), 3);
    if (as_json) {
      json out;
      if (!job_id.empty() && r->jobs.size() == 1) {
        out = job_json(r->jobs[0]);
      } else {
        out["jobs"] = json::array();
        for (auto& j : r->jobs) out["jobs"].push_back(job_json(j));
        if (status->parsed()) {
          out["nodes"] = json::array();
          for (auto& n : r->nodes) out["nodes"].push_back(node_json(n));
        }
      }
      std::printf("%s\n", out.dump(2).c_str());
      return 0;
    }
    print_jobs(r->jobs);
    for (const auto& j : r->jobs) {
      if (j.recoveries > 0) std::printf("%s: rolled back %u times after node failures\n", j.job_id.c_str(), j.recoveries);
      if (j.waiting_for.empty()) continue;
      std::printf("%s waits for:\n", j.job_id.c_str());
      for (const auto& w : j.waiting_for) std::printf("  %s\n", w.c_str());
    }
    if (!r->nodes.empty()) {
      std::printf("\n%-12s %-17s %-6s %-5s %-28s %s\n", "NODE", "ROLE", "ALIVE", "BUSY", "ADDRESS", "LAST SEEN");
      for (auto& n : r->nodes) {
        std::printf("%-12s %-17s %-6s %-5s %-28s %.1f s ago\n", n.node_id.c_str(), msg::to_string(n.role),
                    n.alive ? "yes" : "no", n.busy ? "yes" : "no", n.address.c_str(), n.last_seen_ms_ago / 1000.0);
      }
    }
    return 0;
  }
  if (cancel->parsed()) {
    auto reply = client.call(job_id, msg::CancelJob{"by " + principal}, code);
    if (!reply.is_ok()) return fail(reply.status(), code);
    std::printf("%s cancelled\n", job_id.c_str());
    return 0;
  }
  if (wait->parsed()) {
    const bool tty = isatty(STDOUT_FILENO) && !as_json;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(max_seconds);
    uint32_t printed_epoch = UINT32_MAX;
    std::string last_state;
    for (;;) {
      auto reply = client.call(job_id, msg::StatusRequest{false}, code);
      if (!reply.is_ok()) return fail(reply.status(), code);
      const auto* r = reply->get<msg::StatusReply>();
      if (!r || r->jobs.empty()) return fail(not_found("no job '" + job_id + "'"), 4);
      const msg::JobStatus& j = r->jobs[0];
      const std::string line = progress_line(j);
      if (tty) {
        std::printf("\r\033[K%s", line.c_str());
      } else if (!as_json && (j.epoch != printed_epoch || state_name(j.state) != last_state)) {
        std::printf("%s\n", line.c_str());
      }
      std::fflush(stdout);
      printed_epoch = j.epoch;
      last_state = state_name(j.state);
      if (msg::is_terminal(j.state)) {
        if (tty) std::printf("\n");
        if (as_json) {
          std::printf("%s\n", job_json(j).dump(2).c_str());
        } else {
          std::printf("%s %s: %s\n", j.job_id.c_str(), state_name(j.state).c_str(), j.message.c_str());
        }
        return j.state == msg::JobState::kCompleted ? 0 : 1;
      }
      if (std::chrono::steady_clock::now() > give_up) {
        if (tty) std::printf("\n");
        return fail(deadline_exceeded("job " + job_id + " has not ended after " + std::to_string(max_seconds) +
                                      " s (--max-seconds); it goes on running"),
                    3);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }
  return 0;
}
