// The writer and the reader of the custody record agree: what CustodyRecorder writes for a
// run's life (submission, start, rollback, evaluations, checkpoints, end, resumption, node
// registrations) is what replay() reads back for a restarted coordinator. A name spelled
// differently on either side would lose jobs on restart; these tests fail then.
#include <gtest/gtest.h>

#include "actors/custody_recorder.h"
#include "actors/custody_replay.h"
#include "storage/lineage_vocabulary.h"
#include "tests/actors/synthetic_job.h"

namespace custody::actors {
namespace {

using storage::CustodyStore;
namespace lineage = storage::lineage;

class CustodyReplayTest : public ::testing::Test {
 protected:
  msg::JobStatus submit(const std::string& id, const std::string& name, const std::string& init_from = "") {
    auto spec = parse_job_spec(synthetic_job_text(name), name + ".toml");
    EXPECT_TRUE(spec.is_ok()) << spec.status().to_string();
    msg::JobStatus job;
    job.job_id = id;
    job.name = name;
    job.submitter = "alice";
    job.submitted_at_ms = 1700000000000;  // the same millisecond for every job
    job.workers = {"worker-1"};
    job.servers = {"ps-1"};
    DatasetInfo data{"d4t4", "tr41n", "t35t", 3200, 800};
    EXPECT_TRUE(recorder_.job_submitted(job, spec.value(), data, {32, 4}, init_from).is_ok());
    texts_[id] = spec->text;
    return job;
  }
  void start(const msg::JobStatus& job, uint32_t attempt) {
    msg::AssignTask task;
    task.shard.dataset_hash = "d4t4";
    msg::ServerRange server;
    server.node_id = "ps-1";
    ASSERT_TRUE(recorder_.job_started(job, {task}, {server}, 0, attempt).is_ok());
  }
  std::string checkpoint(const msg::JobStatus& job, uint32_t attempt, uint64_t step, bool final) {
    storage::CheckpointSpec spec;
    spec.job = job.job_id;
    spec.attempt = attempt;
    spec.step = step;
    spec.final = final;
    auto id = recorder_.checkpoint(job, {32, 4}, std::vector<float>(32 * 4 + 4, 0.5f), spec, {});
    EXPECT_TRUE(id.is_ok()) << id.status().to_string();
    return id.is_ok() ? id.value() : "";
  }
  const ReplayedRun* run(const Replayed& r, const std::string& id) {
    for (const auto& x : r.runs)
      if (x.id == id) return &x;
    return nullptr;
  }

  ManualClock clock_{1800000000000};  // the store stamps records with this time
  std::unique_ptr<CustodyStore> store_ = CustodyStore::in_memory(clock_);
  CustodyRecorder recorder_{store_.get(), nullptr, clock_};
  std::map<std::string, std::string> texts_;
};

TEST_F(CustodyReplayTest, ARunsWholeLifeReadsBackAsItWasWritten) {
  msg::Register worker;
  worker.role = msg::NodeRole::kWorker;
  worker.host = "h1";
  worker.address = "tcp://h1:1";
  ASSERT_TRUE(recorder_.node_registered("worker-1", worker).is_ok());
  msg::Register server;
  server.role = msg::NodeRole::kParameterServer;
  server.host = "h2";
  ASSERT_TRUE(recorder_.node_registered("ps-1", server).is_ok());

  msg::JobStatus job = submit("job-00000001", "alpha");
  start(job, 0);
  const std::string first = checkpoint(job, 0, 100, false);
  ASSERT_TRUE(recorder_.epoch_evaluated(job, 0, 1, 0.5, 1.25).is_ok());
  ASSERT_TRUE(recorder_.job_recovered(job, 0, "worker-1 died", 150, 100, first, {"ps-1"}).is_ok());
  start(job, 1);
  ASSERT_TRUE(recorder_.epoch_evaluated(job, 1, 1, 0.55, 1.0).is_ok());  // epoch 1 again, newer
  ASSERT_TRUE(recorder_.epoch_evaluated(job, 1, 2, 0.75, 0.5).is_ok());
  const std::string last = checkpoint(job, 1, 200, true);
  job.state = msg::JobState::kCompleted;
  job.message = "done";
  job.test_accuracy = 0.75;
  job.accuracy_history = {0.55, 0.75};
  job.step = 200;
  clock_.advance(std::chrono::minutes(5));
  ASSERT_TRUE(recorder_.job_ended(job, last).is_ok());

  auto replayed = replay(*store_);
  ASSERT_TRUE(replayed.is_ok()) << replayed.status().to_string();
  ASSERT_EQ(replayed->nodes.size(), 2u);
  EXPECT_EQ(replayed->nodes[0].id, "worker-1");
  EXPECT_EQ(replayed->nodes[0].role, msg::NodeRole::kWorker);
  EXPECT_EQ(replayed->nodes[0].address, "tcp://h1:1");
  EXPECT_EQ(replayed->nodes[1].role, msg::NodeRole::kParameterServer);

  ASSERT_EQ(replayed->runs.size(), 1u);
  const ReplayedRun& r = replayed->runs[0];
  EXPECT_EQ(r.id, "job-00000001");
  EXPECT_EQ(r.entity.value("name", ""), "alpha");
  EXPECT_EQ(r.entity.value("submitter", ""), "alice");
  EXPECT_EQ(r.spec_text, texts_["job-00000001"]);
  EXPECT_EQ(r.train_samples, 3200u);
  EXPECT_EQ(r.attempts, 2u);
  EXPECT_EQ(r.recoveries, 1u);
  EXPECT_EQ(r.accuracy, (std::vector<double>{0.55, 0.75}));
  EXPECT_DOUBLE_EQ(r.test_loss, 0.5);
  EXPECT_EQ(r.newest_checkpoint, last);
  EXPECT_EQ(r.newest_step, 200u);
  EXPECT_TRUE(r.newest_final);
  ASSERT_TRUE(r.end.has_value());
  EXPECT_EQ(r.end->state, msg::JobState::kCompleted);
  EXPECT_EQ(r.end->message, "done");
  EXPECT_EQ(r.end->final_checkpoint, last);
  EXPECT_EQ(r.end->steps, 200u);
  EXPECT_DOUBLE_EQ(r.end->test_accuracy, 0.75);
  EXPECT_EQ(r.end->at_ms, 1800000000000 + 5 * 60 * 1000) << "the time the injected clock gave the end record";
}

TEST_F(CustodyReplayTest, AResumedRunIsNotEndedAndFineTuningKeepsItsOrigin) {
  msg::JobStatus base = submit("job-0000000a", "base");
  start(base, 0);
  const std::string origin = checkpoint(base, 0, 50, true);
  base.state = msg::JobState::kCancelled;
  ASSERT_TRUE(recorder_.job_ended(base, "").is_ok());
  ASSERT_TRUE(recorder_.job_resumed(base, origin, 50, "bob").is_ok());

  msg::JobStatus tuned = submit("job-0000000b", "tuned", origin);

  auto replayed = replay(*store_);
  ASSERT_TRUE(replayed.is_ok()) << replayed.status().to_string();
  const ReplayedRun* b = run(replayed.value(), "job-0000000a");
  ASSERT_NE(b, nullptr);
  EXPECT_FALSE(b->end.has_value()) << "resumed after it ended: it is to run again";
  const ReplayedRun* t = run(replayed.value(), "job-0000000b");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->init_from, origin);
  EXPECT_EQ(t->attempts, 0u);
  EXPECT_TRUE(t->newest_checkpoint.empty());
}

TEST_F(CustodyReplayTest, RunsComeBackInSubmissionOrderNotByIdOrClock) {
  // Ids that sort the other way round, all submitted in the same millisecond.
  for (const char* id : {"job-ffffffff", "job-00000000", "job-88888888"}) submit(id, "x");
  auto replayed = replay(*store_);
  ASSERT_TRUE(replayed.is_ok());
  ASSERT_EQ(replayed->runs.size(), 3u);
  EXPECT_EQ(replayed->runs[0].id, "job-ffffffff");
  EXPECT_EQ(replayed->runs[1].id, "job-00000000");
  EXPECT_EQ(replayed->runs[2].id, "job-88888888");
}

TEST_F(CustodyReplayTest, ANodeOfAnUnknownRoleIsPassedOverWithAWarning) {
  storage::Batch b("node registered");
  b.entity(lineage::kind::kNode, lineage::node_entity_id("gpu-1"), {{"node_id", "gpu-1"}, {"role", "gpu"}});
  ASSERT_TRUE(store_->write(b).is_ok());
  auto replayed = replay(*store_);
  ASSERT_TRUE(replayed.is_ok());
  EXPECT_TRUE(replayed->nodes.empty());
  ASSERT_EQ(replayed->warnings.size(), 1u);
  EXPECT_NE(replayed->warnings[0].find("unknown role 'gpu'"), std::string::npos);
}

// Regression (review): a node_registered record had no schema, so one whose "node" was a
// number was written and read, and the restart's replay threw on it (the coordinator
// aborted). It is now refused on write, naming the field, and named as damaged on read.
TEST_F(CustodyReplayTest, ANodeEventWhoseNodeIsNotAStringIsRefused) {
  storage::Batch b("node registered");
  b.event({{"event", lineage::event::kNodeRegistered}, {"node", 3}});
  Status refused = store_->write(b);
  EXPECT_EQ(refused.code(), ErrorCode::kInternal) << refused.to_string();
  EXPECT_NE(refused.message().find("field 'node'"), std::string::npos) << refused.to_string();
  EXPECT_TRUE(replay(*store_).is_ok());
}

TEST_F(CustodyReplayTest, AnUnknownEndStateReadsAsFailedNotAsCompleted) {
  storage::Batch b("job submitted");
  b.entity(lineage::kind::kRun, "job-12345678", {{"name", "x"}, {"submitter", "a"}, {"submitted_at_ms", 1}});
  b.event({{"event", lineage::event::kRunEnded}, {"run", "job-12345678"}, {"state", "vanished"}});
  ASSERT_TRUE(store_->write(b).is_ok());
  auto replayed = replay(*store_);
  ASSERT_TRUE(replayed.is_ok());
  ASSERT_EQ(replayed->runs.size(), 1u);
  ASSERT_TRUE(replayed->runs[0].end.has_value());
  EXPECT_EQ(replayed->runs[0].end->state, msg::JobState::kFailed);
}

TEST(LineageVocabularyTest, IdsAreBuiltAndTakenApartInOnePlace) {
  EXPECT_EQ(lineage::principal_id("alice"), "principal:alice");
  EXPECT_EQ(lineage::without_prefix("principal:alice", lineage::prefix::kPrincipal), "alice");
  EXPECT_EQ(lineage::without_prefix("alice", lineage::prefix::kPrincipal), std::nullopt);
  EXPECT_EQ(lineage::display_name("alice", lineage::prefix::kPrincipal), "alice");
  EXPECT_EQ(lineage::model_id("m", 3), "model:m@3");
  EXPECT_EQ(lineage::model_id("m@3"), "model:m@3");
  EXPECT_EQ(lineage::prediction_id("0123456789abcdef", 7), "pred-0123456789abcdef-7");
  EXPECT_EQ(lineage::kind_of(lineage::prediction_id("0123456789abcdef", 7)), lineage::IdKind::kPrediction);
  EXPECT_EQ(lineage::kind_of(lineage::call_id("0123456789abcdef")), lineage::IdKind::kCall);
  EXPECT_EQ(lineage::kind_of(lineage::use_id("0123456789abcdef")), lineage::IdKind::kUse);
  EXPECT_EQ(lineage::kind_of(storage::checkpoint_id("job-1", 0, 10)), lineage::IdKind::kCheckpoint);
  EXPECT_EQ(lineage::kind_of(lineage::dataset_id("ab")), lineage::IdKind::kDataset);
  EXPECT_EQ(lineage::kind_of("job-00000001"), lineage::IdKind::kRun);
  EXPECT_EQ(lineage::kind_of("fashion"), lineage::IdKind::kOther);
  EXPECT_TRUE(lineage::is_usage_id("use-1"));
  EXPECT_FALSE(lineage::is_usage_id("ckpt-1"));
}

}  // namespace
}  // namespace custody::actors
