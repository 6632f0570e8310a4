// Models as a service, through the CLI against a real coordinator: predictions match the
// model evaluated directly, every successful call leaves exactly one usage record, failed
// calls leave none, and a prediction id traces back to data and people.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <cmath>
#include <thread>

#include "core/input_contract.h"
#include "core/model.h"
#include "tests/integration/cluster.h"

namespace custody::testing {
namespace {

using nlohmann::json;

const std::string kJob = synthetic_mlp_job("served", 2, 3200, "name = \"clusters\"\nlicense = \"CC-BY-4.0\"\n");

json run_json(LocalCluster& c, std::vector<std::string> args) {
  args.push_back("--json");
  CliResult r = c.cli(args);
  EXPECT_EQ(r.code, 0) << r.err;
  return json::parse(r.out, nullptr, false);
}

ClusterOptions one_server() {
  ClusterOptions o;
  o.servers = 1;
  return o;
}

// Trains kJob ("served") on the cluster, which has 3 nodes.
void train_served(LocalCluster& c) {
  ASSERT_TRUE(c.wait_for_nodes(3));
  CliResult submitted = c.cli({"submit", c.write_job("served.toml", kJob).string()});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  ASSERT_EQ(c.cli({"wait", submitted.out.substr(0, submitted.out.find('\n'))}).code, 0);
}

// One client a result: each predicts every row of `input` as client-I, a call a row,
// appending its receipts to receipts-I.jsonl; the threads run until joined.
std::vector<std::thread> call_at_once(LocalCluster& c, const fs::path& input, std::vector<CliResult>& results,
                                      const std::vector<std::string>& flags) {
  std::vector<std::thread> clients;
  for (size_t i = 0; i < results.size(); ++i) {
    clients.emplace_back([&c, &results, input, flags, i] {
      std::vector<std::string> args{"predict", "served", "--input", input.string(), "--batch", "1", "--as",
                                    "client-" + std::to_string(i), "--receipt",
                                    (c.dir() / ("receipts-" + std::to_string(i) + ".jsonl")).string()};
      args.insert(args.end(), flags.begin(), flags.end());
      results[i] = c.cli(args);
    });
  }
  return clients;
}

size_t usage_records(LocalCluster& c) { return run_json(c, {"usage", "served"})["records"].size(); }

TEST(ServingTest, PredictionsMatchTheModelAreRecordedOnceAndTraceToDataAndPeople) {
  LocalCluster c("serving", {1, 2});
  ASSERT_TRUE(c.wait_for_nodes(3));
  CliResult submitted = c.cli({"submit", c.write_job("served.toml", kJob).string(), "--as", "alice"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string job = submitted.out.substr(0, submitted.out.find('\n'));
  ASSERT_EQ(c.cli({"wait", job}).code, 0);
  const std::string dataset_hash = run_json(c, {"status", job})["dataset_hash"];

  // 5 rows of 32 raw values 0 to 255 (the synthetic data's bytes; the service scales them).
  std::vector<float> inputs(5 * 32);
  std::ostringstream csv;
  for (int r = 0; r < 5; ++r) {
    for (int f = 0; f < 32; ++f) {
      inputs[r * 32 + f] = static_cast<float>((r * 7 + f * 3) % 11 * 25);
      csv << (f ? "," : "") << inputs[r * 32 + f];
    }
    csv << "\n";
  }
  const fs::path rows = c.write_job("rows.csv", csv.str());
  json predictions = run_json(c, {"predict", "served", "--input", rows.string(), "--batch", "2", "--as", "carol"});
  ASSERT_EQ(predictions.size(), 5u);
  EXPECT_EQ(usage_records(c), 3u) << "5 rows in calls of 2: three calls, one record each";

  // The same weights, evaluated here.
  const fs::path weights = c.dir() / "w.f32";
  ASSERT_EQ(c.cli({"export", "served@1", weights.string()}).code, 0);
  std::ifstream in(weights, std::ios::binary);
  Model model({32, 16, 4});
  std::vector<float> params(model.num_parameters());
  in.read(reinterpret_cast<char*>(params.data()), static_cast<std::streamsize>(params.size() * sizeof(float)));
  ASSERT_TRUE(in.good());
  Workspace ws;
  std::vector<float> scaled(inputs.size());
  scale_pixels(inputs.data(), scaled.data(), inputs.size());  // as training scaled its bytes
  Matrix probs = model.predict(params.data(), MatrixView(scaled.data(), 32, 5), ws);
  for (int r = 0; r < 5; ++r) {
    const auto& p = predictions[r];
    for (int k = 0; k < 4; ++k) EXPECT_NEAR(p["probabilities"][k].get<float>(), probs(k, r), 1e-4) << "row " << r;
    Eigen::Index best;
    probs.col(r).maxCoeff(&best);
    EXPECT_EQ(p["class"], best);
  }

  // Failed calls: an error that says why, and no record.
  const size_t before = usage_records(c);
  CliResult wrong = c.cli({"predict", "served", "--input", c.write_job("short.csv", "1,2,3\n").string()});
  EXPECT_EQ(wrong.code, 4);
  EXPECT_NE(wrong.err.find("takes 32 features per row; got 3"), std::string::npos) << wrong.err;
  // Values outside the model's range: named by row and column (from 0) with the range.
  for (const auto& [bad, says] : std::vector<std::pair<std::string, std::string>>{
           {"nan", "row 1, column 3: nan is not a finite number"},
           {"256", "row 1, column 3: 256 is outside the range"},
           {"-1", "row 1, column 3: -1 is outside the range"}}) {
    std::string two = "0";
    for (int f = 1; f < 32; ++f) two += ",128";
    two += "\n0,1,2," + bad;
    for (int f = 4; f < 32; ++f) two += ",255";
    CliResult refused = c.cli({"predict", "served", "--input", c.write_job("bad.csv", two + "\n").string()});
    EXPECT_EQ(refused.code, 4) << bad;
    EXPECT_NE(refused.err.find(says), std::string::npos) << refused.err;
    EXPECT_NE(refused.err.find("raw pixel values 0 to 255"), std::string::npos) << refused.err;
  }
  CliResult unknown = c.cli({"predict", "served@9", "--input", rows.string()});
  EXPECT_EQ(unknown.code, 4);
  EXPECT_NE(unknown.err.find("no version 9"), std::string::npos) << unknown.err;
  EXPECT_EQ(usage_records(c), before);

  // A prediction id traces back to the caller, the model version, the data and the submitter.
  const std::string pid = predictions[3]["prediction_id"];
  json trace = run_json(c, {"lineage", "trace", pid});
  EXPECT_EQ(trace["usage"]["body"]["principal"], "principal:carol");
  const std::string text = trace.dump();
  EXPECT_NE(text.find(dataset_hash), std::string::npos);
  EXPECT_NE(text.find("submitted by alice"), std::string::npos);
  EXPECT_NE(text.find("answered by model served@1"), std::string::npos);
  CliResult tree = c.cli({"lineage", "trace", pid});
  EXPECT_NE(tree.out.find("called by carol"), std::string::npos) << tree.out;

  json usage = run_json(c, {"usage", "served"});
  EXPECT_EQ(usage["by_principal"]["principal:carol"]["calls"], 3);
  json carol_predicts;
  for (const auto& row : usage["summary"]) {
    if (row["principal"] == "principal:carol" && row["action"] == "predict") carol_predicts = row;
  }
  ASSERT_FALSE(carol_predicts.is_null()) << usage.dump(2);
  EXPECT_EQ(carol_predicts["version"], "served@1");
  EXPECT_EQ(carol_predicts["calls"], 3);
  EXPECT_EQ(carol_predicts["rows"], 5);
  EXPECT_TRUE(run_json(c, {"usage", "served", "--since", "2999-01-01"})["records"].empty());
  EXPECT_EQ(run_json(c, {"usage", "served", "--until", "2999-01-01T00:00:00"})["records"].size(), 4u)
      << "3 predict calls and 1 export";
  EXPECT_EQ(c.cli({"usage", "served", "--since", "yesterday"}).code, 2);
  EXPECT_EQ(c.cli({"audit", "verify"}).code, 0);
}

// A consumer disputing a prediction holds evidence of what was recorded about the call: a
// receipt that verifies offline against the coordinator's public key, and stops verifying
// when one bit of it changes or when the store's record behind it is changed.
TEST(ServingTest, EveryCallCarriesAReceiptThatProvesItsRecordOffline) {
  ClusterOptions o;
  o.servers = 1;
  // The head file, outside the store, written by the coordinator every 300 ms.
  const fs::path head_file =
      fs::temp_directory_path() / ("custody-receipts-" + std::to_string(getpid())) / "coordinator-heads.jsonl";
  o.coordinator_args = {"--head-file", head_file.string(), "--head-interval-ms", "300"};
  LocalCluster c("receipts", o);
  ASSERT_TRUE(c.wait_for_nodes(3));
  CliResult submitted = c.cli({"submit", c.write_job("served.toml", kJob).string(), "--as", "alice"});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string job = submitted.out.substr(0, submitted.out.find('\n'));
  ASSERT_EQ(c.cli({"wait", job}).code, 0);
  const fs::path public_key = c.dir() / "store.signing-key.pub";
  ASSERT_TRUE(fs::exists(public_key)) << "the coordinator writes its public key beside its key";
  EXPECT_EQ(fs::status(c.dir() / "store.signing-key").permissions() & (fs::perms::group_all | fs::perms::others_all),
            fs::perms::none)
      << "the private key is the owner's alone";

  // An auditor keeps the heads before the calls.
  const fs::path kept = c.dir() / "kept-heads.jsonl";
  CliResult head = c.cli({"audit", "head", "--out", kept.string()});
  ASSERT_EQ(head.code, 0) << head.err;
  EXPECT_NE(head.out.find("usage"), std::string::npos) << head.out;

  std::string row;
  for (int f = 0; f < 32; ++f) row += (f ? "," : "") + std::to_string(f % 5 * 60);  // raw pixels
  const fs::path rows = c.write_job("rows.csv", row + "\n" + row + "\n" + row + "\n");
  const fs::path receipts = c.dir() / "receipts.jsonl";
  ASSERT_EQ(c.cli({"predict", "served", "--input", rows.string(), "--batch", "2", "--as", "dave", "--purpose",
                   "triage", "--receipt", receipts.string()})
                .code,
            0);
  CliResult proved = c.cli({"audit", "prove", receipts.string(), "--public-key", public_key.string()});
  EXPECT_EQ(proved.code, 0) << proved.out << proved.err;
  EXPECT_EQ(std::count(proved.out.begin(), proved.out.end(), '\n'), 2) << "two calls, two receipts: " << proved.out;
  EXPECT_NE(proved.out.find("predict by principal:dave, purpose triage"), std::string::npos) << proved.out;
  CliResult with_store =
      c.cli({"audit", "prove", receipts.string(), "--public-key", public_key.string(), "--store", c.store().string()});
  EXPECT_EQ(with_store.code, 0) << with_store.out << with_store.err;
  EXPECT_NE(with_store.out.find("the store still holds it"), std::string::npos) << with_store.out;

  // One flipped bit in the receipt: it proves nothing.
  std::ifstream in(receipts);
  std::string first;
  std::getline(in, first);
  for (size_t at : {first.find("\"principal\"") + 20, first.find("\"inclusion_proof\"") + 22,
                    first.find("\"signature\"") + 15, first.find("\"root\"") + 10}) {
    std::string flipped = first;
    flipped[at] = static_cast<char>(flipped[at] ^ 1);
    const fs::path bad = c.write_job("flipped.json", flipped + "\n");
    CliResult r = c.cli({"audit", "prove", bad.string(), "--public-key", public_key.string()});
    EXPECT_EQ(r.code, 5) << "bit flipped at " << at << ": " << r.out << r.err;
  }
  // Another key does not vouch for it.
  CliResult other = c.cli({"audit", "prove", receipts.string(), "--public-key", std::string(64, 'a')});
  EXPECT_NE(other.code, 0);

  // The store extends the heads kept before the calls, and the head file the coordinator
  // writes on its own.
  CliResult since = c.cli({"audit", "verify", "--since", kept.string()});
  EXPECT_EQ(since.code, 0) << since.out << since.err;
  EXPECT_NE(since.out.find("the usage log extends its kept head"), std::string::npos) << since.out;
  EXPECT_EQ(c.cli({"audit", "verify", "--since", kept.string(), "--public-key", public_key.string()}).code, 0);
  EXPECT_EQ(c.cli({"audit", "verify", "--since", kept.string(), "--public-key", std::string(64, 'b')}).code, 5)
      << "heads not signed by the key given prove nothing";

  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  std::ifstream heads(head_file);
  const auto lines = std::count(std::istreambuf_iterator<char>(heads), std::istreambuf_iterator<char>(), '\n');
  EXPECT_GE(lines, 3) << "one at start, then one every 300 ms";
  CliResult coordinator_heads = c.cli({"audit", "verify", "--since", head_file.string(), "--public-key",
                                       public_key.string()});
  EXPECT_EQ(coordinator_heads.code, 0) << coordinator_heads.out << coordinator_heads.err;

  // The exported weights carry a receipt too.
  const fs::path weights = c.dir() / "w.f32";
  ASSERT_EQ(c.cli({"export", "served", weights.string(), "--as", "erin"}).code, 0);
  CliResult export_proved =
      c.cli({"audit", "prove", weights.string() + ".receipt.json", "--public-key", public_key.string()});
  EXPECT_EQ(export_proved.code, 0) << export_proved.out << export_proved.err;
  EXPECT_NE(export_proved.out.find("export by principal:erin"), std::string::npos) << export_proved.out;
}

// Group commit (actors/serving_actor.h): callers that arrive together share one synced
// write of the usage log, and each still gets its own record and a receipt that proves it.
// Eight clients call at once; afterwards the store holds one record per call, fewer
// predict writes than calls (the audit log has one record per write), every receipt
// proves its record against the store, and the store verifies.
TEST(ServingTest, ConcurrentCallersShareSyncedWritesAndEachKeepsItsOwnRecordAndReceipt) {
  LocalCluster c("group-commit", one_server());
  ASSERT_NO_FATAL_FAILURE(train_served(c));
  constexpr int kClients = 8, kCalls = 40;  // --batch 1: one call per row
  std::string rows;
  for (int r = 0; r < kCalls; ++r) {
    for (int f = 0; f < 32; ++f) rows += (f ? "," : "") + std::to_string((r + f) % 7 * 40);  // raw pixels
    rows += "\n";
  }
  const fs::path input = c.write_job("rows.csv", rows);
  std::vector<CliResult> results(kClients);
  std::vector<std::thread> clients = call_at_once(c, input, results, {"--json"});
  for (auto& t : clients) t.join();
  std::set<std::string> ids;
  for (int i = 0; i < kClients; ++i) {
    ASSERT_EQ(results[i].code, 0) << results[i].err;
    const json answers = json::parse(results[i].out, nullptr, false);
    ASSERT_EQ(answers.size(), size_t(kCalls)) << results[i].out;
    for (const auto& a : answers) ids.insert(a["prediction_id"].get<std::string>());
    const fs::path receipts = c.dir() / ("receipts-" + std::to_string(i) + ".jsonl");
    CliResult proved = c.cli({"audit", "prove", receipts.string(), "--public-key",
                              (c.dir() / "store.signing-key.pub").string(), "--store", c.store().string()});
    EXPECT_EQ(proved.code, 0) << proved.out << proved.err;
    EXPECT_EQ(std::count(proved.out.begin(), proved.out.end(), '\n'), kCalls) << proved.out;
  }
  EXPECT_EQ(ids.size(), size_t(kClients * kCalls)) << "every row its own prediction id";
  CliResult verified = c.cli({"audit", "verify"});
  EXPECT_EQ(verified.code, 0) << verified.out << verified.err;

  // Counted with RocksDB's own tool: one audit record per write, one usage record per call.
  c.coordinator().stop();  // the store's single writer lets go of it
  auto count_lines = [&](const std::string& family, const std::string& needle) {
    const fs::path out = c.dir() / ("ldb-" + family + ".out");
    const std::string cmd = "ldb --db=" + c.store().string() + " --column_family=" + family + " scan > " +
                            out.string() + " 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << "rocksdb-tools installs ldb";
    std::ifstream in(out);
    size_t n = 0;
    for (std::string line; std::getline(in, line);) n += line.find(needle) != std::string::npos;
    return n;
  };
  const size_t predict_writes = count_lines("audit", "\"event\":\"predict\"");
  EXPECT_EQ(count_lines("usage", "\"principal\":\"principal:client-"), size_t(kClients * kCalls))
      << "one usage record per call";
  EXPECT_GT(predict_writes, 0u);
  EXPECT_LT(predict_writes, size_t(kClients * kCalls)) << "calls that arrived together shared a write";
  std::cout << kClients * kCalls << " calls recorded by " << predict_writes << " synced writes\n";
}

// The coordinator's metric `name` (first sample whose line starts with it), scraped with
// curl from the address in `addr_file`; NaN if absent.
double scraped(LocalCluster& c, const fs::path& addr_file, const std::string& name) {
  std::string addr;
  for (int i = 0; i < 100 && addr.empty(); ++i) {
    std::ifstream(addr_file) >> addr;
    if (addr.empty()) std::this_thread::sleep_for(100ms);
  }
  CliResult r = run_argv(c.dir(), {"/usr/bin/curl", "-sS", "--max-time", "10", "http://" + addr + "/metrics"});
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return std::nan("");
}

// Group wait (--usage-group-wait-us): a group waits for the recent callers whose calls are
// not yet with the writer, so eight concurrent callers share writes of about eight calls;
// one caller alone never waits, and a caller that stops delays the others at most once.
// The wait is set to 100 ms so that a wait shows: twenty calls that each waited would take
// two seconds.
TEST(ServingTest, AGroupWaitsForItsRecentCallersButALoneCallerNeverWaits) {
  ClusterOptions o = one_server();
  const fs::path metrics_file =
      fs::temp_directory_path() / ("custody-group-wait-" + std::to_string(getpid())) / "coordinator.metrics";
  o.coordinator_args = {"--usage-group-wait-us", "100000", "--metrics-listen", "127.0.0.1:0", "--metrics-port-file",
                        metrics_file.string()};
  LocalCluster c("group-wait", o);
  ASSERT_NO_FATAL_FAILURE(train_served(c));
  std::string rows;
  for (int r = 0; r < 20; ++r) rows += synthetic_mlp_row();
  const fs::path input = c.write_job("rows.csv", rows);

  const auto started = std::chrono::steady_clock::now();
  CliResult alone = c.cli({"predict", "served", "--input", input.string(), "--batch", "1", "--json"});
  const auto alone_took = std::chrono::steady_clock::now() - started;
  ASSERT_EQ(alone.code, 0) << alone.err;
  EXPECT_EQ(json::parse(alone.out, nullptr, false).size(), 20u) << alone.out;
  EXPECT_LT(alone_took, 1500ms) << "a lone caller's calls waited for callers that do not exist";
  EXPECT_TRUE(std::isnan(scraped(c, metrics_file, "custody_prediction_group_waits_total{outcome=\"filled\"}")) ||
              scraped(c, metrics_file, "custody_prediction_group_waits_total{outcome=\"filled\"}") == 0);

  constexpr int kClients = 8, kCalls = 40;
  rows.clear();
  for (int r = 0; r < kCalls; ++r) rows += synthetic_mlp_row();
  const fs::path many = c.write_job("many.csv", rows);
  const double calls_before = scraped(c, metrics_file, "custody_prediction_group_calls_sum");
  const double groups_before = scraped(c, metrics_file, "custody_prediction_group_calls_count");
  std::vector<CliResult> results(kClients);
  std::vector<std::thread> clients = call_at_once(c, many, results, {"--json"});
  for (auto& t : clients) t.join();
  for (int i = 0; i < kClients; ++i) ASSERT_EQ(results[i].code, 0) << results[i].err;
  const double calls = scraped(c, metrics_file, "custody_prediction_group_calls_sum") - calls_before;
  const double groups = scraped(c, metrics_file, "custody_prediction_group_calls_count") - groups_before;
  EXPECT_EQ(calls, kClients * kCalls);
  // Without the wait, groups here hold two or three calls; the callers start one by one,
  // and each that finishes costs one wait that runs out.
  EXPECT_GE(calls / groups, 4.0) << groups << " writes for " << calls << " calls";
  const double timed_out = scraped(c, metrics_file, "custody_prediction_group_waits_total{outcome=\"timed_out\"}");
  EXPECT_LE(std::isnan(timed_out) ? 0 : timed_out, 3.0 * kClients) << "waits that ran out";
  EXPECT_EQ(c.cli({"audit", "verify"}).code, 0);
  std::cout << calls << " calls of " << kClients << " concurrent callers recorded by " << groups << " writes\n";
}

// The pipelined group commit answers a call only once its record is on the disk, and
// groups strictly in order. The coordinator is killed (SIGKILL) while eight clients call;
// each client's receipts file holds exactly the calls it got answers for (the CLI appends
// each receipt, synced, as the answer comes). After a restart every one of those receipts
// proves its record against the store, and the store verifies: no call was answered
// ahead of its record, and no record depends on one that was lost.
TEST(ServingTest, EveryCallAnsweredBeforeTheCoordinatorWasKilledIsRecordedAfterItsRestart) {
  LocalCluster c("group-commit-kill", one_server());
  ASSERT_NO_FATAL_FAILURE(train_served(c));
  constexpr int kClients = 8, kCalls = 100000;  // far more than are answered before the kill
  std::string rows;
  for (int r = 0; r < kCalls; ++r) rows += "64,128,192," + std::string("0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\n");
  const fs::path input = c.write_job("rows.csv", rows);
  std::vector<CliResult> results(kClients);
  std::vector<std::thread> clients = call_at_once(c, input, results, {"--timeout-ms", "2000"});
  // Killed once every client has some answers: mid-stream, groups written and syncing.
  auto answered = [&](int i) {
    std::ifstream in(c.dir() / ("receipts-" + std::to_string(i) + ".jsonl"));
    return std::count(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(), '\n');
  };
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  for (bool all = false; !all && std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(100ms);
    all = true;
    for (int i = 0; i < kClients; ++i) all = all && answered(i) >= 20;
  }
  c.coordinator().kill_hard();
  for (auto& t : clients) t.join();
  size_t total = 0;
  for (int i = 0; i < kClients; ++i) {
    EXPECT_NE(results[i].code, 0) << "client " << i << " was cut off mid-stream";
    total += answered(i);
  }
  ASSERT_GE(total, size_t(kClients * 20));
  c.start_coordinator("coordinator-restarted.log");
  for (int i = 0; i < kClients; ++i) {
    const fs::path receipts = c.dir() / ("receipts-" + std::to_string(i) + ".jsonl");
    CliResult proved = c.cli({"audit", "prove", receipts.string(), "--public-key",
                              (c.dir() / "store.signing-key.pub").string(), "--store", c.store().string()});
    EXPECT_EQ(proved.code, 0) << proved.out << proved.err;
    EXPECT_EQ(std::count(proved.out.begin(), proved.out.end(), '\n'), answered(i)) << proved.out;
  }
  CliResult verified = c.cli({"audit", "verify"});
  EXPECT_EQ(verified.code, 0) << verified.out << verified.err;
  std::cout << total << " calls answered before the kill, each proved recorded after the restart\n";
}

}  // namespace
}  // namespace custody::testing
