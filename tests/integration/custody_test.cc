// The custody store as an auditor meets it: real cluster processes train, and the CLI
// answers from the RocksDB files what was trained on what, by whom, with whose work.
#include <nlohmann/json.hpp>
#include <rocksdb/db.h>

#include "tests/integration/cluster.h"

namespace custody::testing {
namespace {

using nlohmann::json;

std::string job_text(const std::string& name, int epochs, const std::string& extra = "") {
  return "[job]\nname = \"" + name + "\"\nepochs = " + std::to_string(epochs) +
         "\nbatch_size = 16\nworkers = 2\nseed = 3\n" + extra +
         "[model]\ntype = \"mlp\"\nhidden = [16]\nclasses = 4\n[optimizer]\ntype = \"sgd\"\nlearning_rate = 0.1\n"
         "[data]\nkind = \"synthetic\"\nname = \"clusters\"\nlicense = \"CC-BY-4.0\"\nconsent = [\"research\"]\n"
         "[data.synthetic]\ntrain_samples = 3200\ntest_samples = 400\nfeatures = 32\nclasses = 4\n";
}

std::string submit(LocalCluster& c, const std::string& name, const std::string& text, const std::string& as) {
  CliResult r = c.cli({"submit", c.write_job(name + ".toml", text).string(), "--as", as});
  EXPECT_EQ(r.code, 0) << r.err;
  std::string id = r.out.substr(0, r.out.find('\n'));
  return id;
}

json cli_json(LocalCluster& c, std::vector<std::string> args) {
  args.push_back("--json");
  CliResult r = c.cli(args);
  EXPECT_EQ(r.code, 0) << r.err;
  return json::parse(r.out, nullptr, false);
}

// Every node of a trace tree, depth first.
void collect(const json& node, std::vector<json>& out) {
  out.push_back(node);
  for (const auto& child : node.value("children", json::array())) collect(child, out);
}

TEST(CustodyTest, TraceOfTheFinalCheckpointNamesDataSubmitterAndBothWorkers) {
  LocalCluster c("custody-trace", {1, 2});
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string job = submit(c, "traced", job_text("traced", 2), "alice");
  ASSERT_EQ(c.cli({"wait", job}).code, 0);
  json status = cli_json(c, {"status", job});
  const std::string dataset_hash = status["dataset_hash"];
  const std::string final_ckpt = status["last_checkpoint"];
  ASSERT_EQ(final_ckpt.rfind("ckpt-", 0), 0u) << status.dump(2);

  json ckpts = cli_json(c, {"checkpoints", job});
  ASSERT_EQ(ckpts.size(), 2u) << "one checkpoint per epoch by default";
  EXPECT_EQ(ckpts[1]["id"], final_ckpt);
  EXPECT_TRUE(ckpts[1]["final"].get<bool>());
  EXPECT_EQ(ckpts[1]["parent"], ckpts[0]["id"]);

  json models = cli_json(c, {"models"});
  ASSERT_EQ(models.size(), 1u);
  EXPECT_EQ(models[0]["name"], "traced");
  EXPECT_EQ(models[0]["version"], 1);
  EXPECT_EQ(models[0]["checkpoint"], final_ckpt);

  for (const std::string& ref : {final_ckpt, std::string("traced@1")}) {
    json trace = cli_json(c, {"lineage", "trace", ref});
    std::vector<json> nodes;
    collect(trace, nodes);
    bool saw_data = false, saw_alice = false;
    json contributors;
    for (const auto& n : nodes) {
      const json e = n.value("entity", json::object());
      if (e.value("kind", "") == "dataset") {
        saw_data = e["sha256"] == dataset_hash && e["license"] == "CC-BY-4.0" && e["consent"] == json({"research"});
      }
      if (e.value("kind", "") == "principal") saw_alice = e["name"] == "alice";
      if (n.contains("contributors")) contributors = n["contributors"];
    }
    EXPECT_TRUE(saw_data) << trace.dump(2);
    EXPECT_TRUE(saw_alice) << trace.dump(2);
    ASSERT_EQ(contributors.size(), 2u) << trace.dump(2);
    std::set<uint64_t> shard_begins;
    for (const auto& w : contributors) {
      EXPECT_EQ(w["steps"].get<uint64_t>(), 2u * (1600 / 16)) << w.dump();
      EXPECT_EQ(w["samples"].get<uint64_t>(), 2u * 1600) << w.dump();
      EXPECT_GT(w["update_norm_sum"].get<double>(), 0.0) << w.dump();
      EXPECT_EQ(w["shard"]["dataset"], "dataset:" + dataset_hash);
      shard_begins.insert(w["shard"]["begin"].get<uint64_t>());
    }
    EXPECT_EQ(shard_begins, (std::set<uint64_t>{0, 1600})) << "both shards, one per worker";
  }
  // The readable tree says the same.
  CliResult tree = c.cli({"lineage", "trace", "traced"});
  EXPECT_NE(tree.out.find("submitted by alice"), std::string::npos) << tree.out;
  EXPECT_NE(tree.out.find(dataset_hash), std::string::npos);
  EXPECT_NE(tree.out.find("node:worker-1: shard 0"), std::string::npos) << tree.out;
  EXPECT_NE(tree.out.find("node:worker-2: shard 1"), std::string::npos) << tree.out;

  // Downstream from the data: the run, its checkpoints and the model.
  json impact = cli_json(c, {"lineage", "impact", dataset_hash.substr(0, 10)});
  EXPECT_EQ(impact["affected_checkpoints"].size(), 2u);
  EXPECT_EQ(impact["affected_models"], json({"model:traced@1"}));

  // OpenLineage: START, then COMPLETE with the data set as input and the checkpoints and
  // the model version as outputs (tests/actors/openlineage_export_test.cc checks the rest).
  CliResult ol = c.cli({"lineage", "export", "--openlineage", job});
  ASSERT_EQ(ol.code, 0) << ol.err;
  std::istringstream lines(ol.out);
  std::string start, complete, more;
  std::getline(lines, start);
  std::getline(lines, complete);
  EXPECT_FALSE(std::getline(lines, more)) << ol.out;
  json s = json::parse(start), e = json::parse(complete);
  EXPECT_EQ(s["eventType"], "START");
  EXPECT_EQ(e["eventType"], "COMPLETE");
  EXPECT_EQ(s["run"]["runId"], e["run"]["runId"]);
  EXPECT_EQ(s["run"]["runId"].get<std::string>().substr(14, 1), "5") << s;  // a name-based UUID
  EXPECT_EQ(e["inputs"][0]["name"], "dataset:" + dataset_hash);
  EXPECT_EQ(e["inputs"][0]["facets"]["custody_dataset"]["_producer"], e["producer"]);
  ASSERT_EQ(e["outputs"].size(), 3u) << e["outputs"];
  EXPECT_EQ(e["outputs"][2], json({{"namespace", "custody"}, {"name", "model:traced@1"}}));
  EXPECT_NE(e["schemaURL"].get<std::string>().find("2-0-2"), std::string::npos);

  EXPECT_EQ(c.cli({"audit", "verify"}).code, 0);
}

// Regression: training is deterministic, and checkpoint ids were the weights' hash, so the
// second run of the same job overwrote the first's checkpoint records: its trace named the
// first run, its submitter and licence, and summed both runs' contributions. The data plane
// is sealed, each run under keys of its own: sealing does not change the weights.
TEST(CustodyTest, TheSameJobSubmittedTwiceKeepsTwoRecordsWithTheirOwnPeopleAndTerms) {
  ClusterOptions sealed{1, 2};
  sealed.coordinator_args = {"--data-plane-sealing", "on"};
  LocalCluster c("custody-twice", sealed);
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string text = job_text("twice", 1);
  std::string withdrawn = text;
  for (const auto& [from, to] : {std::make_pair(std::string("\"CC-BY-4.0\""), std::string("\"proprietary\"")),
                                 std::make_pair(std::string("[\"research\"]"), std::string("[\"withdrawn\"]"))}) {
    withdrawn.replace(withdrawn.find(from), from.size(), to);
  }
  const std::string first = submit(c, "twice-a", text, "alice");
  ASSERT_EQ(c.cli({"wait", first}).code, 0);
  const std::string second = submit(c, "twice-b", withdrawn, "bob");
  ASSERT_EQ(c.cli({"wait", second}).code, 0);
  json a = cli_json(c, {"checkpoints", first}), b = cli_json(c, {"checkpoints", second});
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(a[0]["root_hash"], b[0]["root_hash"]) << "the same job trains the same weights";
  EXPECT_NE(a[0]["id"], b[0]["id"]) << "but each run's checkpoint is its own record";
  EXPECT_EQ(b[0]["job"], second);
  EXPECT_EQ(b[0]["parent"], "");
  const std::string tree = c.cli({"lineage", "trace", "twice@2"}).out;
  EXPECT_NE(tree.find("run " + second + " 'twice'"), std::string::npos) << tree;
  EXPECT_EQ(tree.find("run " + first + " 'twice'"), std::string::npos) << tree;
  EXPECT_NE(tree.find("submitted by bob"), std::string::npos) << tree;
  EXPECT_EQ(tree.find("submitted by alice"), std::string::npos) << tree;
  EXPECT_NE(tree.find("licence: proprietary; consent: withdrawn)"), std::string::npos) << tree;
  EXPECT_NE(tree.find("CONFLICTING declaration for the same bytes: run " + first + " (alice)"), std::string::npos)
      << tree;
  EXPECT_NE(tree.find("steps 0-" + std::to_string(b[0]["step"].get<uint64_t>()) + ")"), std::string::npos) << tree;
  for (const auto& w : cli_json(c, {"lineage", "trace", "twice@2"})["children"][0]["children"][1]["contributors"]) {
    EXPECT_EQ(w["steps"].get<uint64_t>(), b[0]["step"].get<uint64_t>()) << "this run's steps only: " << w.dump();
  }
  EXPECT_EQ(cli_json(c, {"status", first})["data_plane_sealed"], true);
  EXPECT_EQ(cli_json(c, {"status", second})["data_plane_sealed"], true);
  EXPECT_EQ(c.cli({"audit", "verify"}).code, 0);
}

TEST(CustodyTest, ResumeContinuesFromTheLastCheckpointAndFineTuningShowsDerivedFrom) {
  LocalCluster c("custody-resume", {2, 2});
  ASSERT_TRUE(c.wait_for_nodes(4));
  const std::string job = submit(c, "long", job_text("long", 2000, "checkpoint_every_steps = 50\n"), "alice");
  // Cancel once a checkpoint exists.
  std::string last;
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (last.empty() && std::chrono::steady_clock::now() < deadline) {
    last = cli_json(c, {"status", job})["last_checkpoint"];
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_FALSE(last.empty());
  ASSERT_EQ(c.cli({"cancel", job}).code, 0);
  json cancelled = cli_json(c, {"status", job});
  last = cancelled["last_checkpoint"];
  json manifest = cli_json(c, {"lineage", "show", last})["manifest"];
  const uint64_t resumed_step = manifest["step"];
  EXPECT_EQ(resumed_step % 50, 0u);

  // Resume, then cancel again soon: the run goes on from the checkpoint's step.
  CliResult resumed = c.cli({"resume", job});
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("at step " + std::to_string(resumed_step)), std::string::npos) << resumed.out;
  deadline = std::chrono::steady_clock::now() + 60s;
  std::string after;
  while (std::chrono::steady_clock::now() < deadline) {
    after = cli_json(c, {"status", job})["last_checkpoint"];
    if (after != last) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_NE(after, last) << "no checkpoint after resuming";
  // The first checkpoint after resuming is the next one after the checkpoint resumed from.
  json next;
  for (const auto& k : cli_json(c, {"checkpoints", job})) {
    if (k["parent"] == last) next = k;
  }
  ASSERT_FALSE(next.is_null()) << "no checkpoint continues from " << last;
  EXPECT_EQ(next["step"].get<uint64_t>(), resumed_step + 50) << "the resumed run continues from its checkpoint";
  ASSERT_EQ(c.cli({"cancel", job}).code, 0);

  // Fine-tune a new job from the cancelled one's last checkpoint.
  const std::string origin = cli_json(c, {"status", job})["last_checkpoint"];
  // Bob submits through his CLI config (no --as): the principal comes from the file.
  const fs::path cli_config = c.dir() / "bob.toml";
  std::ofstream(cli_config) << "[cli]\nprincipal = \"bob\"\n";
  CliResult submitted = c.cli({"--config", cli_config.string(), "submit",
                               c.write_job("tuned.toml", job_text("tuned", 1, "init_from = \"" + origin + "\"\n")).string()});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string tuned = submitted.out.substr(0, submitted.out.find('\n'));
  ASSERT_EQ(c.cli({"wait", tuned}).code, 0);
  json tuned_ckpts = cli_json(c, {"checkpoints", tuned});
  ASSERT_FALSE(tuned_ckpts.empty());
  EXPECT_EQ(tuned_ckpts[0]["parent"], origin);
  json shown = cli_json(c, {"lineage", "show", tuned_ckpts[0]["id"]});
  bool derived = false;
  for (const auto& r : shown["outgoing"]) derived = derived || (r["body"]["rel"] == "derived_from" && r["body"]["to"] == origin);
  EXPECT_TRUE(derived) << shown.dump(2);
  CliResult tree = c.cli({"lineage", "trace", "tuned"});
  EXPECT_NE(tree.out.find("initialised from (fine-tuning)"), std::string::npos) << tree.out;
  EXPECT_NE(tree.out.find("submitted by alice"), std::string::npos) << "the origin's submitter is upstream too";
  EXPECT_NE(tree.out.find("submitted by bob"), std::string::npos);
  EXPECT_EQ(c.cli({"audit", "verify"}).code, 0);
}

// Edits a lineage record in the RocksDB files, as someone with file access could.
void tamper(const fs::path& store, uint64_t seq) {
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const char* f : {"default", "checkpoints", "lineage", "usage", "audit", "index"}) {
    cfs.emplace_back(f, rocksdb::ColumnFamilyOptions());
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(rocksdb::DBOptions(), store.string(), cfs, &handles, &db).ok());
  char key[24];
  std::snprintf(key, sizeof(key), "%020llu", static_cast<unsigned long long>(seq));
  std::string value;
  ASSERT_TRUE(db->Get(rocksdb::ReadOptions(), handles[2], key, &value).ok());
  json j = json::parse(value);
  j["body"]["tampered"] = true;
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[2], key, j.dump()).ok());
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  delete db;
}

TEST(CustodyTest, AuditVerifyNamesAnEditedRecordAndLdbReadsTheFamilies) {
  LocalCluster c("custody-audit", {1, 2});
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string job = submit(c, "audited", job_text("audited", 1), "alice");
  ASSERT_EQ(c.cli({"wait", job}).code, 0);
  CliResult ok = c.cli({"audit", "verify", "--store", c.store().string()});
  EXPECT_EQ(ok.code, 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find(": ok"), std::string::npos);
  c.coordinator().stop();  // release the store, as an intruder would wait for

  // RocksDB's own tool reads the store.
  const fs::path ldb_out = c.dir() / "ldb.out";
  const std::string cmd = "ldb --db=" + c.store().string() + " list_column_families > " + ldb_out.string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << read_file(ldb_out) << " (rocksdb-tools installs ldb)";
  const std::string families = read_file(ldb_out);
  for (const char* f : {"checkpoints", "lineage", "usage", "audit", "index"}) {
    EXPECT_NE(families.find(f), std::string::npos) << families;
  }

  tamper(c.store(), 7);
  CliResult bad = c.cli({"audit", "verify", "--store", c.store().string()});
  EXPECT_EQ(bad.code, 5) << bad.out << bad.err;
  EXPECT_NE(bad.out.find("lineage record 7"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find("was changed"), std::string::npos) << bad.out;
}

TEST(CustodyTest, UnknownIdsCorruptCheckpointsAndForeignStorePathsGetClearErrors) {
  LocalCluster c("custody-errors", {1, 2});
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string job = submit(c, "small", job_text("small", 1), "alice");
  ASSERT_EQ(c.cli({"wait", job}).code, 0);
  const std::string ckpt = cli_json(c, {"status", job})["last_checkpoint"];

  CliResult unknown = c.cli({"lineage", "trace", "ckpt-0000000000000000"});
  EXPECT_EQ(unknown.code, 4);
  EXPECT_NE(unknown.err.find("ckpt-0000000000000000"), std::string::npos) << unknown.err;
  CliResult no_model = c.cli({"export", "nosuchmodel@3", (c.dir() / "w.f32").string()});
  EXPECT_EQ(no_model.code, 4);
  EXPECT_NE(no_model.err.find("nosuchmodel"), std::string::npos) << no_model.err;
  EXPECT_EQ(c.cli({"checkpoints", "job-ffffffff"}).code, 4);

  // Exporting works and is recorded as a use.
  CliResult exported = c.cli({"export", "small", (c.dir() / "w.f32").string(), "--as", "bob"});
  ASSERT_EQ(exported.code, 0) << exported.err;
  EXPECT_EQ(fs::file_size(c.dir() / "w.f32"), (32u * 16 + 16 + 16 * 4 + 4) * sizeof(float));
  json usage = cli_json(c, {"usage", "small"});
  EXPECT_EQ(usage["by_principal"]["principal:bob"]["calls"], 1);

  // A corrupt tensor: export refuses it, verify names it, nothing else is lost.
  json manifest = cli_json(c, {"lineage", "show", ckpt})["manifest"];
  // Where the tensor's bytes are: sealed under the store key (storage/checkpoint.h).
  const std::string sha = manifest["tensors"][0]["sealed_sha256"];
  c.coordinator().stop();
  {
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const char* f : {"default", "checkpoints", "lineage", "usage", "audit", "index"}) {
      cfs.emplace_back(f, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::DBOptions(), c.store().string(), cfs, &handles, &db).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[1], "blob/" + sha, "garbage!").ok());
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    delete db;
  }
  c.start_coordinator();
  CliResult corrupt = c.cli({"export", ckpt, (c.dir() / "w2.f32").string()});
  EXPECT_EQ(corrupt.code, 4);
  EXPECT_NE(corrupt.err.find("layer1.weight"), std::string::npos) << corrupt.err;
  EXPECT_NE(corrupt.err.find("corrupt"), std::string::npos) << corrupt.err;
  CliResult verify = c.cli({"audit", "verify"});
  EXPECT_EQ(verify.code, 5);
  EXPECT_NE(verify.out.find("tensor layer1.weight of checkpoint " + ckpt), std::string::npos) << verify.out;
  EXPECT_EQ(cli_json(c, {"models"}).size(), 1u) << "the records are all still there";

  // A coordinator pointed at a directory that is not a store refuses to start and
  // leaves the directory alone.
  const fs::path other = c.dir() / "photos";
  fs::create_directories(other);
  std::ofstream(other / "holiday.jpg") << "jpeg";
  Process refused({bin("custody-coordinator"), "--listen", "tcp://127.0.0.1:0", "--store", other.string()},
                  c.dir() / "refused.log");
  ASSERT_TRUE(refused.wait_for_exit(10s));
  EXPECT_EQ(refused.exit_code(), 2);
  EXPECT_NE(read_file(refused.log()).find("something other than a custody store"), std::string::npos)
      << read_file(refused.log());
  EXPECT_EQ(read_file(other / "holiday.jpg"), "jpeg");
}

// An operator's one-line coordinator (no --store) records: into the documented default
// store, created private, which the CLI finds through the coordinator. Running without a
// store takes --no-store and says so loudly; contradictory or empty store flags are refused.
TEST(CustodyTest, ACoordinatorStartedWithoutStoreFlagsRecordsIntoItsDefaultStore) {
  ClusterOptions o;
  o.servers = 1;
  o.default_store = true;
  LocalCluster c("default-store", o);
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string job = submit(c, "recorded", job_text("recorded", 1), "alice");
  ASSERT_EQ(c.cli({"wait", job}).code, 0);

  const fs::path store = c.dir() / "state" / "custody" / "store";
  ASSERT_TRUE(fs::is_directory(store)) << "the default store is $XDG_STATE_HOME/custody/store";
  EXPECT_EQ(fs::status(store.parent_path()).permissions() & fs::perms::all, fs::perms::owner_all);
  EXPECT_EQ(fs::status(store).permissions() & fs::perms::all, fs::perms::owner_all);
  EXPECT_TRUE(fs::exists(store.string() + ".store-key")) << "its key files sit beside it, in the private directory";
  const std::string log = read_file(c.dir() / "coordinator.log");
  EXPECT_NE(log.find("custody store at " + store.string() + " (the default"), std::string::npos) << log;
  // The CLI, given no --store, asks the coordinator where its store is.
  EXPECT_EQ(cli_json(c, {"checkpoints", job}).size(), 1u);
  CliResult verify = c.cli({"audit", "verify"});
  EXPECT_EQ(verify.code, 0) << verify.out << verify.err;

  Process none({bin("custody-coordinator"), "--listen", "tcp://127.0.0.1:0", "--no-store"}, c.dir() / "none.log");
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (read_file(none.log()).find("NOTHING IS RECORDED") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_NE(read_file(none.log()).find("RUNNING WITHOUT A CUSTODY STORE (--no-store): NOTHING IS RECORDED"),
            std::string::npos)
      << read_file(none.log());
  EXPECT_TRUE(none.running());
  none.stop();

  CliResult empty = run_argv(c.dir(), {bin("custody-coordinator"), "--listen", "tcp://127.0.0.1:0", "--store", ""});
  EXPECT_EQ(empty.code, 2);
  EXPECT_NE(empty.err.find("--store is empty: give a directory, or --no-store"), std::string::npos) << empty.err;
  CliResult both = run_argv(c.dir(), {bin("custody-coordinator"), "--listen", "tcp://127.0.0.1:0", "--store",
                                      (c.dir() / "s").string(), "--no-store"});
  EXPECT_EQ(both.code, 2);
  EXPECT_NE(both.err.find("contradict each other"), std::string::npos) << both.err;
  EXPECT_FALSE(fs::exists(c.dir() / "s")) << "a refused start creates nothing";
}

}  // namespace
}  // namespace custody::testing
