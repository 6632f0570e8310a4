// The custody record as an auditor reads it, written by the real writers (the
// coordinator's CustodyRecorder and the serving state) into a real RocksDB store:
// one record per run even when two runs reach the same weights, declarations per
// submission, every id the CLI prints answerable, and no query that aborts on a store
// damaged behind the program's back.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <regex>
#include <set>

#include "actors/custody_recorder.h"
#include "actors/serving_state.h"
#include "core/model.h"
#include "storage/queries.h"
#include "tests/actors/synthetic_job.h"
#include "tests/raw_store.h"
#include "tests/test_dir.h"

namespace custody::actors {
namespace {

namespace fs = std::filesystem;
using storage::CustodyStore;
using storage::json;

// One run: submitted, started, two checkpoints, completed; its weights are `values` at the
// end whoever submits it (training is deterministic).
struct RunRecorded {
  std::string job, final_checkpoint, first_checkpoint;
};

RunRecorded record_run(CustodyRecorder& recorder, const std::string& job_id, const std::string& submitter,
                       const std::string& license, const std::vector<std::string>& consent) {
  auto spec = parse_job_spec(synthetic_job_text("twin"), "twin.toml");
  EXPECT_TRUE(spec.is_ok()) << spec.status().to_string();
  spec->data.license = license;
  spec->data.consent = consent;
  msg::JobStatus job;
  job.job_id = job_id;
  job.name = "twin";
  job.submitter = submitter;
  job.submitted_at_ms = 1700000000000;
  job.workers = {"worker-1"};
  job.servers = {"ps-1"};
  DatasetInfo data{"d4t4", "tr41n", "t35t", 30, 10};
  const std::vector<int> layers{4, 3};
  EXPECT_TRUE(recorder.job_submitted(job, spec.value(), data, layers, "").is_ok());
  msg::AssignTask task;
  task.rank = 0;
  task.shard.dataset_hash = "d4t4";
  task.shard.begin = 0;
  task.shard.end = 30;
  msg::ServerRange server;
  server.node_id = "ps-1";
  server.range_end = 15;
  EXPECT_TRUE(recorder.job_started(job, {task}, {server}, 0, 0).is_ok());
  RunRecorded run{job_id, "", ""};
  std::vector<float> values(15);
  for (size_t i = 0; i < values.size(); ++i) values[i] = 0.1f * static_cast<float>(i);
  for (uint64_t step : {10u, 20u}) {
    WorkerContribution c;
    c.worker = "worker-1";
    c.shard = task.shard;
    c.accepted = 10;
    c.samples = 160;
    c.update_norm_sum = 2.5;
    c.interval_begin = step - 10;
    c.interval_end = step;
    storage::CheckpointSpec spec_c;
    spec_c.job = job_id;
    spec_c.step = step;
    spec_c.epoch = step == 20 ? 1 : 0;
    spec_c.parent = run.first_checkpoint;
    spec_c.final = step == 20;
    auto id = recorder.checkpoint(job, layers, values, spec_c, {{"worker-1|0", c}});
    EXPECT_TRUE(id.is_ok()) << id.status().to_string();
    (step == 10 ? run.first_checkpoint : run.final_checkpoint) = id.value();
  }
  job.state = msg::JobState::kCompleted;
  job.test_accuracy = 0.75;
  job.accuracy_history = {0.75};
  job.step = 20;
  EXPECT_TRUE(recorder.job_ended(job, run.final_checkpoint).is_ok());
  return run;
}

// Every node of a trace tree, depth first.
void collect(const json& node, std::vector<json>& out) {
  out.push_back(node);
  for (const auto& child : node.value("children", json::array())) collect(child, out);
}

class CustodyRecordTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = CustodyStore::open(dir_.string(), storage::OpenMode::kReadWrite);
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    store_ = std::move(store).value();
    CustodyRecorder recorder(store_.get());
    msg::Register worker;
    worker.role = msg::NodeRole::kWorker;
    worker.host = "127.0.0.1";
    ASSERT_TRUE(recorder.node_registered("worker-1", worker).is_ok());
    first_ = record_run(recorder, "job-1", "alice", "CC-BY-4.0", {"research"});
    second_ = record_run(recorder, "job-2", "bob", "proprietary", {"withdrawn"});
    msg::ExportRequest exp;
    exp.checkpoint = "twin@1";
    exp.principal = "carol";
    auto exported = recorder.export_checkpoint(exp);
    ASSERT_TRUE(exported.is_ok()) << exported.status().to_string();
    use_id_ = exported->usage_id;
    ServingState serving(store_.get(), ServingOptions{});
    msg::Predict p;
    p.model = "twin@2";
    p.principal = "dave";
    p.rows = 2;
    p.features = 4;
    p.inputs = {1, 2, 3, 4, 0, 0, 0, 1};
    auto reply = serving.predict(p);
    ASSERT_TRUE(reply.is_ok()) << reply.status().to_string();
    call_id_ = reply->call_id;
    prediction_id_ = reply->prediction_ids[1];
  }
  json ok(Result<json> r) {
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    return r.is_ok() ? r.value() : json();
  }
  custody::testing::TestDir dir_{"custody-record-test"};
  std::unique_ptr<CustodyStore> store_;
  RunRecorded first_, second_;
  std::string use_id_, call_id_, prediction_id_;
};

// Regression: checkpoint ids were the weights' hash, so the second run of a job overwrote
// the first's checkpoint records and its trace named the first run's submitter and terms.
TEST_F(CustodyRecordTest, TwoRunsThatReachTheSameWeightsKeepTheirOwnRecords) {
  EXPECT_NE(first_.final_checkpoint, second_.final_checkpoint);
  EXPECT_NE(first_.first_checkpoint, second_.first_checkpoint);
  json a = ok(storage::checkpoints(*store_, "job-1")), b = ok(storage::checkpoints(*store_, "job-2"));
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(a[0]["root_hash"], b[0]["root_hash"]) << "the same weights: shared content, not shared records";
  EXPECT_EQ(b[0]["id"], second_.first_checkpoint);
  EXPECT_EQ(b[1]["id"], second_.final_checkpoint);
  EXPECT_EQ(b[1]["parent"], second_.first_checkpoint) << "not its own parent, not the other run's";
  for (const auto& [model, run, who, license] :
       {std::make_tuple("twin@1", "job-1", "alice", "CC-BY-4.0"), std::make_tuple("twin@2", "job-2", "bob", "proprietary")}) {
    json trace = ok(storage::trace(*store_, model));
    std::vector<json> nodes;
    collect(trace, nodes);
    std::set<std::string> runs, submitters, licences;
    uint64_t steps = 0;
    for (const auto& n : nodes) {
      const json e = n.value("entity", json::object());
      if (e.value("kind", "") == "run") runs.insert(e["id"].get<std::string>());
      if (e.value("kind", "") == "principal") submitters.insert(e["name"].get<std::string>());
      if (e.value("kind", "") == "dataset") licences.insert(e["license"].get<std::string>());
      if (n.contains("contributors"))
        for (const auto& w : n["contributors"]) steps += w["steps"].get<uint64_t>();
    }
    EXPECT_EQ(runs, std::set<std::string>{run}) << model;
    EXPECT_EQ(submitters, std::set<std::string>{who}) << model;
    EXPECT_EQ(licences, std::set<std::string>{license}) << model << ": the declaration made for this run";
    EXPECT_EQ(steps, 20u) << model << ": this run's contributions only";
  }
  // Usage stays with the version that was used.
  json u1 = ok(storage::usage(*store_, "twin@1")), u2 = ok(storage::usage(*store_, "twin@2"));
  ASSERT_EQ(u1["records"].size(), 1u);
  EXPECT_EQ(u1["records"][0]["principal"], "principal:carol");
  ASSERT_EQ(u2["records"].size(), 1u);
  EXPECT_EQ(u2["records"][0]["principal"], "principal:dave");
  auto report = store_->verify();
  ASSERT_TRUE(report.is_ok());
  EXPECT_TRUE(report->ok) << report->problem;
}

// Regression: the first submitter's licence and consent were shown for every later run of
// the same bytes; a later "withdrawn" was lost.
TEST_F(CustodyRecordTest, ConflictingDeclarationsForTheSameBytesAreKeptAndFlagged) {
  json shown = ok(storage::show(*store_, "dataset:d4t4"));
  ASSERT_EQ(shown["declarations"].size(), 2u);
  EXPECT_EQ(shown["declarations"][1]["license"], "proprietary");
  EXPECT_EQ(shown["declarations"][1]["consent"], json({"withdrawn"}));
  EXPECT_EQ(shown["conflicting_declarations"].size(), 2u);
  const std::string tree = storage::render_tree(ok(storage::trace(*store_, "twin@1")));
  EXPECT_NE(tree.find("licence: CC-BY-4.0; consent: research)"), std::string::npos) << tree;
  EXPECT_NE(tree.find("CONFLICTING declaration for the same bytes: run job-2 (bob): licence: proprietary; "
                      "consent: withdrawn"),
            std::string::npos)
      << tree;
  json impact = ok(storage::impact(*store_, "dataset:d4t4"));
  EXPECT_EQ(impact["conflicting_declarations"].size(), 2u);
  const std::string impact_tree = storage::render_tree(impact);
  EXPECT_NE(impact_tree.find("run job-2 'twin' (licence: proprietary; consent: withdrawn)"), std::string::npos)
      << impact_tree;
  auto events = storage::openlineage(*store_, "job-2");
  ASSERT_TRUE(events.is_ok()) << events.status().to_string();
  EXPECT_NE(events->find("\"license\":\"proprietary\""), std::string::npos) << events.value();
  EXPECT_EQ(events->find("CC-BY"), std::string::npos) << events.value();
}

// Regression: `lineage show PREDICTION_ID` aborted; call and use ids were "nothing with id".
TEST_F(CustodyRecordTest, EveryIdTheCliPrintsCanBeShownAndTraced) {
  for (const std::string& id : {prediction_id_, call_id_, use_id_}) {
    json shown = ok(storage::show(*store_, id));
    EXPECT_EQ(shown["log"], "usage") << id;
    json trace = ok(storage::trace(*store_, id));
    const std::string tree = storage::render_tree(trace);
    const std::string run = id == use_id_ ? "job-1" : "job-2";
    EXPECT_NE(tree.find("run " + run), std::string::npos) << id << "\n" << tree;
  }
  EXPECT_EQ(ok(storage::show(*store_, prediction_id_))["prediction"]["id"], prediction_id_);
  EXPECT_EQ(storage::show(*store_, "call-0000000000000000").status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(storage::show(*store_, "pred-nothing").status().code(), ErrorCode::kNotFound);
}

// Call and usage ids keep their form (16 lowercase hex digits) now that their random part
// comes from the secure random source (random_token) instead of a std::mt19937_64.
TEST_F(CustodyRecordTest, CallAndUsageIdsAreSixteenHexDigitsFromTheSecureSource) {
  const std::regex hex16("[0-9a-f]{16}");
  ASSERT_EQ(call_id_.rfind("call-", 0), 0u) << call_id_;
  const std::string call = call_id_.substr(5);
  EXPECT_TRUE(std::regex_match(call, hex16)) << call_id_;
  EXPECT_EQ(prediction_id_, "pred-" + call + "-1");
  ASSERT_EQ(use_id_.rfind("use-", 0), 0u) << use_id_;
  EXPECT_TRUE(std::regex_match(use_id_.substr(4), hex16)) << use_id_;
}

// --- A store damaged behind the program's back -------------------------------------------

// A value of another JSON type than v's.
json other_type(const json& v) {
  if (v.is_string()) return 42;
  if (v.is_number()) return "42";
  if (v.is_boolean()) return "yes";
  if (v.is_array()) return json::object();
  if (v.is_object()) return json::array({1, 2});
  return "null";
}

// Every query an auditor can run, over every id the store answers for. Returns how many
// queries answered with an error; none may abort or throw.
int run_every_query(const std::string& path, const std::vector<std::string>& ids, std::string* verify_problem) {
  auto store = CustodyStore::open(path, storage::OpenMode::kReadShadow);
  if (!store.is_ok()) return 1;
  const CustodyStore& s = *store.value();
  int errors = 0;
  auto count = [&](const Status& st) {
    if (!st.is_ok()) {
      ++errors;
      // Damage is data loss (exit 5) or, where an index no longer finds it, not found (4).
      EXPECT_TRUE(st.code() == ErrorCode::kDataLoss || st.code() == ErrorCode::kNotFound ||
                  st.code() == ErrorCode::kInvalidArgument)
          << st.to_string();
    }
  };
  for (const auto& id : ids) {
    count(storage::show(s, id).status());
    // Trace follows models, checkpoints, runs and usage; a data set goes downstream (impact).
    if (id.rfind("dataset:", 0) != 0 && id.rfind("principal:", 0) != 0) count(storage::trace(s, id).status());
  }
  count(storage::impact(s, "dataset:d4t4").status());
  count(storage::usage(s, "twin").status());
  count(storage::models(s).status());
  for (const char* job : {"job-1", "job-2"}) {
    count(storage::checkpoints(s, job).status());
    count(storage::openlineage(s, job).status());
  }
  auto report = s.verify();
  if (!report.is_ok()) {
    *verify_problem = report.status().to_string();
  } else if (!report->ok) {
    *verify_problem = report->problem;
  }
  return errors;
}

TEST_F(CustodyRecordTest, EveryDamagedRecordIsNamedByVerifyAndNoQueryAborts) {
  const std::vector<std::string> ids{"twin",        "twin@1",         "twin@2",       first_.final_checkpoint,
                                     "job-1",       "job-2",          "dataset:d4t4", "principal:alice",
                                     prediction_id_, call_id_,        use_id_,        second_.first_checkpoint};
  store_.reset();
  std::string untouched;
  ASSERT_EQ(run_every_query(dir_.string(), ids, &untouched), 0);
  ASSERT_EQ(untouched, "") << "the untouched store verifies";

  custody::testing::RawStore db(dir_.string());
  ASSERT_TRUE(db.ok());
  int cases = 0;
  // One change at a time, then put back.
  auto damage = [&](const std::string& family, const std::string& key, const std::string& original,
                    const std::optional<std::string>& changed, const std::string& what) {
    if (changed) {
      db.put(family, key, *changed);
    } else {
      db.erase(family, key);
    }
    std::string problem;
    run_every_query(dir_.string(), ids, &problem);
    EXPECT_NE(problem, "") << what << " of " << family << "/" << key << " passed verify";
    db.put(family, key, original);
    ++cases;
  };
  for (const std::string family : {"lineage", "usage", "audit"}) {
    for (const auto& [key, value] : db.scan(family)) {
      damage(family, key, value, std::nullopt, "deleting");
      json record = json::parse(value);
      for (auto it = record["body"].begin(); it != record["body"].end(); ++it) {
        json retyped = record;
        retyped["body"][it.key()] = other_type(it.value());
        damage(family, key, value, retyped.dump(), "retyping field " + it.key());
        json dropped = record;
        dropped["body"].erase(it.key());
        damage(family, key, value, dropped.dump(), "dropping field " + it.key());
      }
    }
  }
  const auto index = db.scan("index");
  for (size_t i = 0; i < index.size(); ++i) {
    const auto& [key, value] = index[i];
    damage("index", key, value, std::nullopt, "deleting");
    // Pointed at another entry's target: another record, or another id.
    const std::string elsewhere = index[(i + 7) % index.size()].second;
    if (elsewhere != value) damage("index", key, value, elsewhere, "re-pointing");
  }
  for (const auto& [key, value] : db.scan("checkpoints")) {
    if (key.rfind("manifest/", 0) == 0) {
      json m = json::parse(value);
      m["step"] = 999;
      damage("checkpoints", key, value, m.dump(), "changing the step");
      m = json::parse(value);
      m["parent"] = "ckpt-0000000000000000";
      damage("checkpoints", key, value, m.dump(), "changing the parent");
      m = json::parse(value);
      m["tensors"][0]["shape"] = {1u << 27, 1u << 27};
      damage("checkpoints", key, value, m.dump(), "changing a shape");
      damage("checkpoints", key, value, "{", "truncating");
    }
  }
  EXPECT_GT(cases, 500);
}

}  // namespace
}  // namespace custody::actors
