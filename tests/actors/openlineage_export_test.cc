// The OpenLineage export of runs written by the real CustodyRecorder into a real store:
// the whole history of each run (completed; cancelled, resumed, rolled back, completed;
// failed; fine-tuned from another run's checkpoint) as events that OpenLineage's published
// schemas accept (tests/openlineage/validate.py, format checks on) and that say what
// happened: one terminal event per OpenLineage run, name-based UUIDs, the model version
// among the outputs, parents for resumes and fine-tuning.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "actors/custody_recorder.h"
#include "core/hash.h"
#include "storage/queries.h"
#include "tests/actors/synthetic_job.h"
#include "tests/test_dir.h"

namespace custody::actors {
namespace {

namespace fs = std::filesystem;
using storage::CustodyStore;
using storage::json;

const std::vector<int> kLayers{4, 3};
const char* kProducer = "https://github.com/custody/custody";

// Writes one run's records event by event, as the coordinator does.
class RunWriter {
 public:
  // privacy: a private run's plan (charged at submission, its guarantee in each checkpoint).
  RunWriter(CustodyRecorder& recorder, const std::string& job_id, const std::string& name, int64_t at_ms,
            const std::string& init_checkpoint = "", const PrivacyPlan* privacy = nullptr)
      : recorder_(recorder), privacy_(privacy) {
    auto spec = parse_job_spec(
        synthetic_job_text(name, "name = \"triples\"\nlicense = \"CC-BY-4.0\"\nconsent = [\"research\"]\n"),
        name + ".toml");
    EXPECT_TRUE(spec.is_ok()) << spec.status().to_string();
    job_.job_id = job_id;
    job_.name = name;
    job_.submitter = "alice";
    job_.submitted_at_ms = at_ms;
    job_.workers = {"worker-1"};
    job_.servers = {"ps-1"};
    DatasetInfo data{sha256_hex("triples"), sha256_hex("train"), sha256_hex("test"), 30, 10};
    job_.dataset_hash = data.version_hash;
    EXPECT_TRUE(recorder_.job_submitted(job_, spec.value(), data, kLayers, init_checkpoint, privacy).is_ok());
  }
  void started(uint64_t step, uint32_t attempt) {
    msg::AssignTask task;
    task.shard.dataset_hash = sha256_hex("triples");
    task.shard.end = 30;
    msg::ServerRange server;
    server.node_id = "ps-1";
    server.range_end = 15;
    EXPECT_TRUE(recorder_.job_started(job_, {task}, {server}, step, attempt).is_ok());
  }
  std::string checkpoint(uint64_t step, bool final) {
    std::vector<float> values(15, 0.01f * static_cast<float>(step));
    storage::CheckpointSpec spec;
    spec.job = job_.job_id;
    spec.step = step;
    spec.parent = last_checkpoint_;
    spec.final = final;
    if (privacy_) spec.privacy = privacy_record(*privacy_, step, 0).value();
    auto id = recorder_.checkpoint(job_, kLayers, values, spec, {});
    EXPECT_TRUE(id.is_ok()) << id.status().to_string();
    last_checkpoint_ = id.is_ok() ? id.value() : "";
    return last_checkpoint_;
  }
  void ended(msg::JobState state, const std::string& final_checkpoint, const std::string& message = "") {
    job_.state = state;
    job_.message = message;
    EXPECT_TRUE(recorder_.job_ended(job_, final_checkpoint).is_ok());
  }
  void recovered(uint32_t attempt, uint64_t reached, uint64_t back_to) {
    EXPECT_TRUE(recorder_
                    .job_recovered(job_, attempt, "worker-1 stopped sending heartbeats", reached, back_to,
                                   last_checkpoint_)
                    .is_ok());
  }
  void resumed(uint64_t step) {
    job_.state = msg::JobState::kPending;
    EXPECT_TRUE(recorder_.job_resumed(job_, last_checkpoint_, step, "alice").is_ok());
  }

 private:
  CustodyRecorder& recorder_;
  const PrivacyPlan* privacy_;
  msg::JobStatus job_;
  std::string last_checkpoint_;
};

std::string uuid5(std::string_view ns, std::string_view name) {
  auto u = uuid_v5(ns, name);
  EXPECT_TRUE(u.is_ok()) << u.status().to_string();
  return u.is_ok() ? u.value() : std::string();
}

// The documented derivation of every run id (storage/queries.cc, docs/ARCHITECTURE.md).
std::string expected_run_id(const std::string& name) {
  const std::string ns = uuid5("6ba7b811-9dad-11d1-80b4-00c04fd430c8",  // RFC 4122's URL namespace
                               "https://github.com/custody/custody/openlineage/run");
  return uuid5(ns, name);
}

std::vector<std::string> types(const std::vector<json>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e["eventType"]);
  return out;
}

bool has_dataset(const json& list, const std::string& name) {
  for (const auto& d : list) {
    if (d["namespace"] == "custody" && d["name"] == name) return true;
  }
  return false;
}

class OpenLineageExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = CustodyStore::open((dir_ / "store").string(), storage::OpenMode::kReadWrite);
    ASSERT_TRUE(store.is_ok()) << store.status().to_string();
    store_ = std::move(store).value();
    CustodyRecorder recorder(store_.get());

    RunWriter done(recorder, "job-done", "alpha", 1700000000000);
    done.started(0, 0);
    done.checkpoint(10, false);
    done_final_ = done.checkpoint(20, true);
    done.ended(msg::JobState::kCompleted, done_final_);

    RunWriter resumed(recorder, "job-resumed", "beta", 1700000100000);
    resumed.started(0, 0);
    resumed_first_ = resumed.checkpoint(10, false);
    resumed.ended(msg::JobState::kCancelled, "", "cancelled by alice");
    resumed.resumed(10);
    resumed.started(10, 1);
    resumed.recovered(1, 17, 10);
    resumed.started(10, 2);
    resumed_final_ = resumed.checkpoint(20, true);
    resumed.ended(msg::JobState::kCompleted, resumed_final_);

    RunWriter failed(recorder, "job-failed", "gamma", 1700000200000);
    failed.started(0, 0);
    failed.ended(msg::JobState::kFailed, "", "ps-1 lost and max_recoveries (0) reached");

    RunWriter tuned(recorder, "job-tuned", "delta", 1700000300000, done_final_);
    tuned.started(0, 0);
    tuned_final_ = tuned.checkpoint(5, true);
    tuned.ended(msg::JobState::kCompleted, tuned_final_);

    private_plan_.q = 0.1;
    private_plan_.sigma = 1.2;
    private_plan_.clip_norm = 1;
    private_plan_.delta = 1e-3;
    private_plan_.steps = 20;
    private_plan_.expected_batch = 3;
    RunWriter dp(recorder, "job-private", "epsilon", 1700000400000, "", &private_plan_);
    dp.started(0, 0);
    dp.checkpoint(10, false);
    private_final_ = dp.checkpoint(20, true);
    dp.ended(msg::JobState::kCompleted, private_final_);
  }

  // The export of one job, as lines and as parsed events.
  std::vector<json> exported(const std::string& job, std::string* lines = nullptr) {
    auto text = storage::openlineage(*store_, job);
    EXPECT_TRUE(text.is_ok()) << text.status().to_string();
    if (!text.is_ok()) return {};
    if (lines) *lines += text.value();
    std::vector<json> out;
    std::istringstream in(text.value());
    for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
    return out;
  }

  // Runs tests/openlineage/validate.py over `lines`; its exit code, and its output in *said.
  int validate(const std::string& lines, std::string* said) {
    const fs::path events = dir_ / "events.jsonl", out = dir_ / "validate.out";
    std::ofstream(events) << lines;
    const std::string command = std::string(CUSTODY_PYTHON) + " " + CUSTODY_SOURCE_DIR +
                                "/tests/openlineage/validate.py --spec '" + CUSTODY_OPENLINEAGE_SPEC_DIR +
                                "' --facets " + CUSTODY_SOURCE_DIR + "/docs/facets '" + events.string() +
                                "' > '" + out.string() + "' 2>&1";
    const int status = std::system(command.c_str());
    std::ifstream in(out);
    *said = std::string(std::istreambuf_iterator<char>(in), {});
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  custody::testing::TestDir dir_{"custody-openlineage-test"};
  std::unique_ptr<CustodyStore> store_;
  std::string done_final_, resumed_first_, resumed_final_, tuned_final_, private_final_;
  PrivacyPlan private_plan_;
};

TEST_F(OpenLineageExportTest, ACompletedRunStartsAndCompletesWithItsModelVersionAmongTheOutputs) {
  auto events = exported("job-done");
  ASSERT_EQ(types(events), (std::vector<std::string>{"START", "COMPLETE"}));
  const std::string run_id = expected_run_id("job-done");
  EXPECT_EQ(events[0]["run"]["runId"], run_id);
  EXPECT_EQ(events[1]["run"]["runId"], run_id);
  EXPECT_TRUE(std::regex_match(
      run_id, std::regex("[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")))
      << run_id;
  const json& outputs = events[1]["outputs"];
  EXPECT_TRUE(has_dataset(outputs, "model:alpha@1")) << outputs;
  EXPECT_TRUE(has_dataset(outputs, done_final_)) << outputs;
  EXPECT_EQ(outputs.size(), 3u) << outputs;  // two checkpoints and the model version
  EXPECT_TRUE(events[0]["outputs"].empty());
  for (const auto& e : events) {
    EXPECT_EQ(e["producer"], kProducer);
    EXPECT_EQ(e["job"], json({{"namespace", "custody"}, {"name", "alpha"}}));
    EXPECT_FALSE(e["run"]["facets"].contains("parent")) << e;
    const json& facet = e["inputs"][0]["facets"]["custody_dataset"];
    EXPECT_EQ(facet["_producer"], e["producer"]);
    EXPECT_EQ(facet["_schemaURL"],
              "https://github.com/custody/custody/blob/main/docs/facets/CustodyDatasetFacet.json#/$defs/"
              "CustodyDatasetFacet");
    EXPECT_EQ(facet["license"], "CC-BY-4.0");
    EXPECT_EQ(facet["consent"], json({"research"}));
    EXPECT_EQ(e["run"]["facets"]["custody_run"]["job"], "job-done");
  }
  EXPECT_TRUE(fs::exists(fs::path(CUSTODY_SOURCE_DIR) / "docs/facets/CustodyDatasetFacet.json"));
  EXPECT_TRUE(fs::exists(fs::path(CUSTODY_SOURCE_DIR) / "docs/facets/CustodyRunFacet.json"));
}

// Regression: the ABORT of the cancelled attempt was lost once the run completed.
TEST_F(OpenLineageExportTest, ACancelledRunKeepsItsAbortAndItsResumeIsANewRunUnderIt) {
  auto events = exported("job-resumed");
  ASSERT_EQ(types(events), (std::vector<std::string>{"START", "ABORT", "START", "RUNNING", "COMPLETE"}));
  const std::string first = expected_run_id("job-resumed"), second = expected_run_id("job-resumed/resume/1");
  EXPECT_NE(first, second);
  for (size_t i : {0, 1}) EXPECT_EQ(events[i]["run"]["runId"], first);
  for (size_t i : {2, 3, 4}) {
    EXPECT_EQ(events[i]["run"]["runId"], second);
    const json& parent = events[i]["run"]["facets"]["parent"];
    EXPECT_EQ(parent["run"]["runId"], first) << events[i];
    EXPECT_EQ(parent["job"], json({{"namespace", "custody"}, {"name", "beta"}}));
    EXPECT_EQ(events[i]["run"]["facets"]["custody_run"]["resume"], 1);
  }
  EXPECT_FALSE(events[0]["run"]["facets"].contains("parent"));
  // The cancelled run made the first checkpoint; the resumed one read it and made the rest.
  EXPECT_EQ(events[1]["outputs"], json::array({{{"namespace", "custody"}, {"name", resumed_first_}}}));
  EXPECT_TRUE(has_dataset(events[2]["inputs"], resumed_first_)) << events[2]["inputs"];
  EXPECT_TRUE(has_dataset(events[4]["outputs"], resumed_final_));
  EXPECT_TRUE(has_dataset(events[4]["outputs"], "model:beta@1"));
  EXPECT_FALSE(has_dataset(events[4]["outputs"], resumed_first_));
  // The rollback is reported on the run, not as its end.
  const json& rollback = events[3]["run"]["facets"]["custody_run"]["rollback"];
  EXPECT_EQ(rollback["reason"], "worker-1 stopped sending heartbeats");
  EXPECT_EQ(rollback["discarded_steps"], 7);
  EXPECT_EQ(rollback["next_attempt"], 2);
}

TEST_F(OpenLineageExportTest, AFailedRunEndsWithFailAndItsMessage) {
  auto events = exported("job-failed");
  ASSERT_EQ(types(events), (std::vector<std::string>{"START", "FAIL"}));
  EXPECT_EQ(events[1]["run"]["facets"]["errorMessage"]["message"],
            "ps-1 lost and max_recoveries (0) reached");
  EXPECT_TRUE(events[1]["outputs"].empty());
}

TEST_F(OpenLineageExportTest, AFineTunedRunNamesTheRunThatMadeItsOriginAsParentAndReadsTheCheckpoint) {
  auto events = exported("job-tuned");
  ASSERT_EQ(types(events), (std::vector<std::string>{"START", "COMPLETE"}));
  for (const auto& e : events) {
    const json& parent = e["run"]["facets"]["parent"];
    EXPECT_EQ(parent["run"]["runId"], expected_run_id("job-done")) << e;
    EXPECT_EQ(parent["job"]["name"], "alpha");
    EXPECT_TRUE(has_dataset(e["inputs"], done_final_)) << e["inputs"];
  }
  EXPECT_TRUE(has_dataset(events[1]["outputs"], "model:delta@1"));
}

TEST_F(OpenLineageExportTest, APrivateRunCarriesItsPlannedAndReachedGuaranteeInTheCustodyPrivacyFacet) {
  auto events = exported("job-private");
  ASSERT_EQ(types(events), (std::vector<std::string>{"START", "COMPLETE"}));
  const json& planned = events[0]["run"]["facets"]["custody_privacy"];
  EXPECT_EQ(planned["status"], "planned");
  EXPECT_DOUBLE_EQ(planned["epsilon"].get<double>(), dp_sgd_epsilon(0.1, 1.2, 20, 1e-3)->epsilon);
  EXPECT_EQ(planned["delta"], 1e-3);
  EXPECT_EQ(planned["steps_accounted"], 20);
  EXPECT_EQ(planned["_schemaURL"],
            "https://github.com/custody/custody/blob/main/docs/facets/CustodyPrivacyRunFacet.json#/$defs/"
            "CustodyPrivacyRunFacet");
  const json& reached = events[1]["run"]["facets"]["custody_privacy"];
  EXPECT_EQ(reached["status"], "reached");
  EXPECT_EQ(reached["checkpoint"], private_final_) << "the newest checkpoint's guarantee";
  EXPECT_DOUBLE_EQ(reached["epsilon"].get<double>(), planned["epsilon"].get<double>());
  EXPECT_EQ(reached["clip_norm"], 1);
  EXPECT_EQ(reached["adjacency"], "example-level add/remove");
  // A run without a guarantee carries no privacy facet at all (absence, not a zero).
  for (const auto& e : exported("job-done")) EXPECT_FALSE(e["run"]["facets"].contains("custody_privacy")) << e;
  EXPECT_TRUE(fs::exists(fs::path(CUSTODY_SOURCE_DIR) / "docs/facets/CustodyPrivacyRunFacet.json"));
}

TEST_F(OpenLineageExportTest, EveryEventValidatesAgainstTheOpenLineageSpecWithFormatChecks) {
  std::string lines;
  size_t count = 0;
  for (const char* job : {"job-done", "job-resumed", "job-failed", "job-tuned", "job-private"})
    count += exported(job, &lines).size();
  ASSERT_EQ(count, 13u);
  if (!fs::exists(fs::path(CUSTODY_OPENLINEAGE_SPEC_DIR) / "OpenLineage.json")) {
    GTEST_SKIP() << "OpenLineage's schemas are not at " << CUSTODY_OPENLINEAGE_SPEC_DIR
                 << " (see tests/openlineage/README.md; cmake -DCUSTODY_OPENLINEAGE_SPEC_DIR=DIR)";
  }
  std::string said;
  EXPECT_EQ(validate(lines, &said), 0) << said;
  EXPECT_NE(said.find("13 events checked, 0 problems"), std::string::npos) << said;

  // The checker is not a rubber stamp: what the export used to write is refused, by name.
  json old = json::parse(lines.substr(0, lines.find('\n')));
  old["run"]["runId"] = "9e1c4f0a-2b7d-5c3e-8f6a";
  old["inputs"][0]["facets"]["custody_dataset"]["_producer"] = "custody";
  old["inputs"][0]["facets"]["custody_dataset"]["_schemaURL"] = "custody://facets/dataset";
  old["eventTime"] = "2023-11-14 22:13:20";
  EXPECT_EQ(validate(old.dump() + "\n", &said), 1) << said;
  for (const char* expected :
       {"run/runId: '9e1c4f0a-2b7d-5c3e-8f6a' is not a 'uuid'", "_producer: 'custody' is not a 'uri'",
        "names no loaded schema", "eventTime: '2023-11-14 22:13:20' is not a 'date-time'"}) {
    EXPECT_NE(said.find(expected), std::string::npos) << expected << "\n" << said;
  }
}

}  // namespace
}  // namespace custody::actors
