// The coordinator's logic, one message at a time with a controlled clock.
#include "actors/coordinator_state.h"

#include <gtest/gtest.h>

#include "core/dataset.h"
#include "core/job_spec.h"
#include "protocols/data_plane.h"

#include <set>

namespace custody::actors {
namespace {

using namespace std::chrono_literals;
using msg::Envelope;

const char* kSyntheticJob = R"(
[job]
name = "tiny"
epochs = 2
batch_size = 10
workers = 2
[model]
type = "softmax"
classes = 4
[data]
kind = "synthetic"
[data.synthetic]
train_samples = 200
test_samples = 50
features = 8
classes = 4
)";

Envelope make(msg::Body body, const std::string& job = "") {
  Envelope e;
  e.job_id = job;
  e.request_id = 7;
  e.body = std::move(body);
  return e;
}

template <class T>
std::vector<const Outgoing*> of_type(const Outbox& out) {
  std::vector<const Outgoing*> r;
  for (const auto& o : out)
    if (o.envelope.get<T>()) r.push_back(&o);
  return r;
}

class CoordinatorStateTest : public ::testing::Test {
 protected:
  CoordinatorStateTest() : state_(options()) {}
  static CoordinatorOptions options() {
    CoordinatorOptions o;
    o.heartbeat_interval = 100ms;
    o.heartbeat_timeout = 1s;
    return o;
  }
  Outbox send(const std::string& peer, msg::Body body, const std::string& job = "") {
    return state_.handle(peer, make(std::move(body), job), now_);
  }
  void register_nodes(int workers) {
    send("P1", msg::Register{msg::NodeRole::kParameterServer, "tcp://127.0.0.1:7001", "h", 1, ""});
    for (int i = 1; i <= workers; ++i) {
      send("W" + std::to_string(i), msg::Register{msg::NodeRole::kWorker, "", "h", 2, ""});
    }
  }
  std::string submit(Outbox* out = nullptr, const std::string& spec = kSyntheticJob) {
    Outbox o = send("CLI", msg::SubmitJob{spec, "tiny.toml", "alice"});
    auto accepted = of_type<msg::JobAccepted>(o);
    if (out) *out = o;
    return accepted.empty() ? "" : accepted[0]->envelope.get<msg::JobAccepted>()->job_id;
  }
  msg::JobStatus job(const std::string& id) { return state_.status(id, false, now_).jobs.at(0); }

  CoordinatorState state_;
  SteadyClock::time_point now_ = SteadyClock::now();
};

TEST_F(CoordinatorStateTest, RegistrationAssignsIdsAndAcks) {
  Outbox out = send("P1", msg::Register{msg::NodeRole::kParameterServer, "tcp://x:1", "h", 1, ""});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].peer, "P1");
  EXPECT_EQ(out[0].envelope.get<msg::RegisterAck>()->node_id, "ps-1");
  out = send("W1", msg::Register{msg::NodeRole::kWorker, "", "h", 2, "worker-blue"});
  EXPECT_EQ(out[0].envelope.get<msg::RegisterAck>()->node_id, "worker-blue");
  auto nodes = state_.status("", true, now_).nodes;
  EXPECT_EQ(nodes.size(), 2u);
}

TEST_F(CoordinatorStateTest, ParameterServerWithoutAddressIsRefused) {
  Outbox out = send("P1", msg::Register{msg::NodeRole::kParameterServer, "", "h", 1, ""});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].envelope.get<msg::Error>()->code, ErrorCode::kInvalidArgument);
}

TEST_F(CoordinatorStateTest, JobRunsFromSubmitToCompletion) {
  register_nodes(2);
  Outbox out;
  const std::string id = submit(&out);
  ASSERT_FALSE(id.empty());
  auto ranges = of_type<msg::AssignKeyRange>(out);
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0]->peer, "P1");
  const auto& range = *ranges[0]->envelope.get<msg::AssignKeyRange>();
  EXPECT_EQ(range.range_begin, 0u);
  EXPECT_EQ(range.range_end, 8u * 4 + 4);
  EXPECT_EQ(range.num_workers, 2u);
  EXPECT_EQ(job(id).state, msg::JobState::kStarting);

  out = send("P1", msg::KeyRangeReady{0, 36}, id);
  auto tasks = of_type<msg::AssignTask>(out);
  ASSERT_EQ(tasks.size(), 2u);
  const auto& t0 = *tasks[0]->envelope.get<msg::AssignTask>();
  const auto& t1 = *tasks[1]->envelope.get<msg::AssignTask>();
  EXPECT_EQ(t0.shard.begin, 0u);
  EXPECT_EQ(t0.shard.end, 100u);
  EXPECT_EQ(t1.shard.begin, 100u);
  EXPECT_EQ(t1.shard.end, 200u);
  EXPECT_EQ(t0.shard.dataset_hash, t1.shard.dataset_hash);
  EXPECT_EQ(t0.shard.dataset_hash.size(), 64u);
  EXPECT_EQ(t0.steps_per_epoch, 10u);
  EXPECT_EQ(t0.test_end, t1.test_begin);
  ASSERT_EQ(t0.servers.size(), 1u);
  EXPECT_EQ(t0.servers[0].address, "tcp://127.0.0.1:7001");
  EXPECT_EQ(job(id).state, msg::JobState::kRunning);

  send("W1", msg::EpochEval{1, 20, 25, 10.0}, id);
  EXPECT_LT(job(id).test_accuracy, 0) << "one worker's half is not the test accuracy yet";
  send("W2", msg::EpochEval{1, 15, 25, 20.0, 1}, id);
  EXPECT_DOUBLE_EQ(job(id).test_accuracy, 35.0 / 50.0);
  EXPECT_DOUBLE_EQ(job(id).test_loss, 30.0 / 50.0);
  EXPECT_EQ(job(id).epoch, 1u);

  send("W1", msg::EpochEval{2, 25, 25, 1.0}, id);
  send("W2", msg::EpochEval{2, 24, 25, 1.0, 1}, id);
  send("W1", msg::TaskDone{20, 200}, id);
  EXPECT_EQ(job(id).state, msg::JobState::kRunning);
  out = send("W2", msg::TaskDone{20, 200, 1}, id);
  EXPECT_EQ(job(id).state, msg::JobState::kCompleted);
  EXPECT_DOUBLE_EQ(job(id).test_accuracy, 49.0 / 50.0);
  EXPECT_EQ(job(id).accuracy_history.size(), 2u);
  EXPECT_EQ(of_type<msg::StopJob>(out).size(), 3u) << "both workers and the server are released";
  auto nodes = state_.status("", true, now_).nodes;
  for (const auto& n : nodes) EXPECT_FALSE(n.busy) << n.node_id;
}

TEST_F(CoordinatorStateTest, JobWaitsForEnoughWorkersAndSaysSo) {
  register_nodes(1);
  Outbox out;
  const std::string id = submit(&out);
  EXPECT_TRUE(of_type<msg::AssignKeyRange>(out).empty());
  EXPECT_EQ(job(id).state, msg::JobState::kPending);
  EXPECT_NE(job(id).message.find("cannot be placed on the nodes alive: it needs 2 workers (1 alive)"),
            std::string::npos)
      << job(id).message;
  EXPECT_EQ(of_type<msg::JobAccepted>(out).at(0)->envelope.get<msg::JobAccepted>()->message, job(id).message)
      << "the submitter is told at once";
  out = send("W2", msg::Register{msg::NodeRole::kWorker, "", "h", 3, ""});
  EXPECT_EQ(of_type<msg::AssignKeyRange>(out).size(), 1u);
  EXPECT_EQ(job(id).state, msg::JobState::kStarting);
}

std::string with_workers(int n) {
  std::string spec = kSyntheticJob;
  spec.replace(spec.find("workers = 2"), 11, "workers = " + std::to_string(n));
  return spec;
}

// Regression: a job that needed more workers than the cluster has blocked every later job
// while workers sat idle ("waiting for 3 idle workers").
TEST_F(CoordinatorStateTest, AJobThatCannotBePlacedDoesNotBlockTheJobsBehindIt) {
  register_nodes(3);
  const std::string a = submit(nullptr, with_workers(2));
  const std::string b = submit(nullptr, with_workers(4));
  const std::string c = submit(nullptr, with_workers(1));
  EXPECT_EQ(job(a).state, msg::JobState::kStarting);
  EXPECT_EQ(job(b).state, msg::JobState::kPending);
  EXPECT_NE(job(b).message.find("needs 4 workers (3 alive)"), std::string::npos) << job(b).message;
  EXPECT_EQ(job(c).state, msg::JobState::kStarting) << "it fits beside the first: " << job(c).message;
  // A fourth worker joins; b fits once a and c are done.
  send("W4", msg::Register{msg::NodeRole::kWorker, "", "h", 4, ""});
  EXPECT_EQ(job(b).state, msg::JobState::kPending);
  EXPECT_NE(job(b).message.find("waiting for 4 idle workers (1 idle)"), std::string::npos) << job(b).message;
  send("CLI", msg::CancelJob{"done", "alice"}, a);
  send("CLI", msg::CancelJob{"done", "alice"}, c);
  EXPECT_EQ(job(b).state, msg::JobState::kStarting) << job(b).message;
}

// A job that fits once running jobs end keeps the workers that free up: later, smaller jobs
// start only beside it, never in front of it.
TEST_F(CoordinatorStateTest, AWaitingJobHoldsTheWorkersItNeedsSoLaterJobsCannotStarveIt) {
  register_nodes(3);
  const std::string a = submit(nullptr, with_workers(2));
  const std::string b = submit(nullptr, with_workers(3));
  const std::string c = submit(nullptr, with_workers(1));
  EXPECT_EQ(job(a).state, msg::JobState::kStarting);
  EXPECT_EQ(job(b).state, msg::JobState::kPending);
  EXPECT_EQ(job(c).state, msg::JobState::kPending) << "the idle worker is held for b";
  EXPECT_NE(job(c).message.find("1 of them held for earlier jobs"), std::string::npos) << job(c).message;
  send("CLI", msg::CancelJob{"done", "alice"}, a);
  EXPECT_EQ(job(b).state, msg::JobState::kStarting);
  EXPECT_EQ(job(c).state, msg::JobState::kPending);
  send("CLI", msg::CancelJob{"done", "alice"}, b);
  EXPECT_EQ(job(c).state, msg::JobState::kStarting);
}

// Sends a body stamped with an attempt, as a node of that attempt would.
Envelope at_attempt(msg::Body body, const std::string& job, uint32_t attempt) {
  Envelope e = make(std::move(body), job);
  e.attempt = attempt;
  return e;
}

TEST_F(CoordinatorStateTest, ASilentWorkersRanksGoToALiveWorkerAsTheNextAttempt) {
  register_nodes(2);
  const std::string id = submit();
  send("P1", msg::KeyRangeReady{0, 36}, id);
  send("W1", msg::Progress{1, 5, 50, 10.0, 1000, 0}, id);
  send("W2", msg::Progress{1, 5, 50, 10.0, 1000, 1}, id);
  now_ += 800ms;
  send("P1", msg::Heartbeat{true});
  send("W1", msg::Heartbeat{true});
  now_ += 400ms;  // worker-2 silent for 1.2 s > 1 s
  Outbox out = state_.tick(now_);
  EXPECT_EQ(job(id).state, msg::JobState::kStarting) << job(id).message;
  EXPECT_EQ(job(id).recoveries, 1u);
  EXPECT_EQ(job(id).step, 0u) << "no checkpoint yet: back to the job's start";
  auto stops = of_type<msg::StopJob>(out);
  ASSERT_EQ(stops.size(), 2u) << "the live worker and the server stop attempt 0";
  for (auto* o : stops) EXPECT_EQ(o->envelope.attempt, 0u);
  auto ranges = of_type<msg::AssignKeyRange>(out);
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0]->envelope.attempt, 1u);
  EXPECT_EQ(ranges[0]->envelope.get<msg::AssignKeyRange>()->num_workers, 2u) << "still two ranks";
  auto nodes = state_.status("", true, now_).nodes;
  for (const auto& n : nodes) EXPECT_EQ(n.alive, n.node_id != "worker-2") << n.node_id;

  // A late confirmation of attempt 0 starts nothing; attempt 1's does.
  EXPECT_TRUE(of_type<msg::AssignTask>(send("P1", msg::KeyRangeReady{0, 36}, id)).empty());
  out = state_.handle("P1", at_attempt(msg::KeyRangeReady{0, 36}, id, 1), now_);
  auto tasks = of_type<msg::AssignTask>(out);
  ASSERT_EQ(tasks.size(), 2u);
  for (auto* t : tasks) {
    EXPECT_EQ(t->peer, "W1") << "both ranks run on worker-1";
    EXPECT_EQ(t->envelope.attempt, 1u);
  }
  EXPECT_EQ(job(id).state, msg::JobState::kRunning);
  EXPECT_EQ(job(id).workers, (std::vector<std::string>{"worker-1", "worker-1"}));
  // Reports of the old attempt do not count.
  send("W1", msg::TaskDone{20, 200, 0}, id);
  EXPECT_EQ(job(id).state, msg::JobState::kRunning);
  state_.handle("W1", at_attempt(msg::TaskDone{20, 200, 0}, id, 1), now_);
  state_.handle("W1", at_attempt(msg::TaskDone{20, 200, 1}, id, 1), now_);
  EXPECT_EQ(job(id).state, msg::JobState::kCompleted) << job(id).message;
}

TEST_F(CoordinatorStateTest, AJobThatKeepsLosingNodesFailsAfterMaxRecoveriesNamingWhy) {
  CoordinatorOptions o = options();
  o.max_recoveries = 1;
  state_ = CoordinatorState(o);
  register_nodes(2);
  const std::string id = submit();
  send("P1", msg::KeyRangeReady{0, 36}, id);
  send("W1", msg::Error{ErrorCode::kDeadlineExceeded, "no reply from ps-1 within 60 s"}, id);
  EXPECT_EQ(job(id).recoveries, 1u);
  EXPECT_EQ(job(id).state, msg::JobState::kStarting);
  state_.handle("P1", at_attempt(msg::KeyRangeReady{0, 36}, id, 1), now_);
  state_.handle("W1", at_attempt(msg::Error{ErrorCode::kDeadlineExceeded, "no reply again"}, id, 1), now_);
  EXPECT_EQ(job(id).state, msg::JobState::kFailed);
  EXPECT_NE(job(id).message.find("gave up after 1 recoveries"), std::string::npos) << job(id).message;
  EXPECT_NE(job(id).message.find("no reply again"), std::string::npos) << job(id).message;
}

TEST_F(CoordinatorStateTest, StatusNamesTheNodesAStalledJobWaitsFor) {
  register_nodes(2);
  const std::string id = submit();
  EXPECT_EQ(job(id).waiting_for.size(), 1u) << "starting: waits for ps-1's key range";
  EXPECT_NE(job(id).waiting_for.at(0).find("ps-1"), std::string::npos);
  send("P1", msg::KeyRangeReady{0, 36}, id);
  send("W1", msg::Progress{1, 7, 70, 1.0, 1000, 0}, id);
  send("W2", msg::Progress{1, 6, 60, 1.0, 1000, 1}, id);
  EXPECT_TRUE(job(id).waiting_for.empty()) << "moving";
  // 3.5 s without a step (the default stall_after is 3 s); worker-2 went quiet, the others
  // keep sending heartbeats.
  for (int i = 0; i < 7; ++i) {
    now_ += 500ms;
    send("P1", msg::Heartbeat{true});
    send("W1", msg::Heartbeat{true});
    if (i < 2) send("W2", msg::Heartbeat{true});
  }
  auto waiting = job(id).waiting_for;
  ASSERT_EQ(waiting.size(), 2u) << "the stall, then the node";
  EXPECT_NE(waiting[0].find("no step for 3.5 s"), std::string::npos) << waiting[0];
  EXPECT_NE(waiting[1].find("worker-2 (rank 1, step 6): silent"), std::string::npos) << waiting[1];
  // All alive but stuck: the rank furthest behind is named.
  send("W2", msg::Heartbeat{true});
  waiting = job(id).waiting_for;
  ASSERT_EQ(waiting.size(), 1u);
  EXPECT_NE(waiting[0].find("worker-2 (rank 1): at step 6"), std::string::npos) << waiting[0];
}

TEST_F(CoordinatorStateTest, HeartbeatFromAnUnknownPeerAsksItToRegister) {
  Outbox out = send("STRANGER", msg::Heartbeat{false});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_FALSE(out[0].envelope.get<msg::HeartbeatAck>()->known);
}

TEST_F(CoordinatorStateTest, CancelStopsTheJobAndFreesItsNodes) {
  register_nodes(2);
  const std::string id = submit();
  send("P1", msg::KeyRangeReady{0, 36}, id);
  Outbox out = send("CLI", msg::CancelJob{"enough", "alice"}, id);
  EXPECT_EQ(job(id).state, msg::JobState::kCancelled);
  EXPECT_EQ(of_type<msg::JobAccepted>(out).size(), 1u);
  EXPECT_EQ(of_type<msg::StopJob>(out).size(), 3u);
  out = send("CLI", msg::CancelJob{"", "alice"}, id);
  EXPECT_EQ(out[0].envelope.get<msg::Error>()->code, ErrorCode::kFailedPrecondition);
}

TEST_F(CoordinatorStateTest, UnknownJobIdsAreNotFound) {
  Outbox out = send("CLI", msg::CancelJob{"", "alice"}, "job-nope");
  EXPECT_EQ(out[0].envelope.get<msg::Error>()->code, ErrorCode::kNotFound);
  out = send("CLI", msg::StatusRequest{false}, "job-nope");
  EXPECT_EQ(out[0].envelope.get<msg::Error>()->code, ErrorCode::kNotFound);
  EXPECT_NE(out[0].envelope.get<msg::Error>()->message.find("job-nope"), std::string::npos);
}

TEST_F(CoordinatorStateTest, BadJobFilesAreRefusedNamingTheKey) {
  Outbox out;
  EXPECT_EQ(submit(&out, "[job]\nepochs = 0\n"), "");
  ASSERT_EQ(out.size(), 1u);
  const auto* err = out[0].envelope.get<msg::Error>();
  ASSERT_NE(err, nullptr);
  EXPECT_EQ(err->code, ErrorCode::kInvalidArgument);
  EXPECT_NE(err->message.find("job.epochs"), std::string::npos) << err->message;

  EXPECT_EQ(submit(&out, "[data]\ndir = \"/nonexistent/custody\"\n"), "");
  EXPECT_EQ(out[0].envelope.get<msg::Error>()->code, ErrorCode::kNotFound);
  EXPECT_NE(out[0].envelope.get<msg::Error>()->message.find("/nonexistent/custody"), std::string::npos);
}

TEST_F(CoordinatorStateTest, BatchLargerThanAShardIsRefused) {
  std::string spec = kSyntheticJob;
  spec.replace(spec.find("batch_size = 10"), 15, "batch_size = 500");
  Outbox out;
  EXPECT_EQ(submit(&out, spec), "");
  EXPECT_NE(out[0].envelope.get<msg::Error>()->message.find("job.batch_size"), std::string::npos);
}

TEST_F(CoordinatorStateTest, ReportsFromUnregisteredPeersAreRefused) {
  Outbox out = send("NOBODY", msg::TaskDone{1, 1}, "job-1");
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].envelope.get<msg::Error>()->code, ErrorCode::kFailedPrecondition);
}

TEST_F(CoordinatorStateTest, WorkerErrorFailsTheJobWithItsMessage) {
  register_nodes(2);
  const std::string id = submit();
  send("P1", msg::KeyRangeReady{0, 36}, id);
  send("W1", msg::Error{ErrorCode::kDataLoss, "bad data on disk"}, id);
  EXPECT_EQ(job(id).state, msg::JobState::kFailed);
  EXPECT_NE(job(id).message.find("worker-1"), std::string::npos);
  EXPECT_NE(job(id).message.find("bad data on disk"), std::string::npos);
}

}  // namespace
}  // namespace custody::actors

namespace custody::actors {
namespace {

// With a custody store: what each event leaves in it.
class CoordinatorCustodyTest : public CoordinatorStateTest {
 protected:
  CoordinatorCustodyTest() : store_(storage::CustodyStore::in_memory()) {
    state_ = CoordinatorState(options(), store_.get(), "mem");
  }
  // Both workers (ranks 0 and 1) evaluated `epoch`: `correct` of their 25 test samples.
  void both_evaluated(const std::string& id, uint32_t epoch, uint64_t correct) {
    send("W1", msg::EpochEval{epoch, correct, 25, 1.0}, id);
    send("W2", msg::EpochEval{epoch, correct, 25, 1.0, 1}, id);
  }
  void run_to_final_step(const std::string& id, Outbox* last = nullptr) {
    send("P1", msg::KeyRangeReady{0, 36}, id);
    both_evaluated(id, 1, 20);
    both_evaluated(id, 2, 24);
    send("W1", msg::TaskDone{20, 200}, id);
    Outbox out = send("W2", msg::TaskDone{20, 200, 1}, id);
    if (last) *last = out;
  }
  msg::CheckpointShard shard(uint64_t step, bool final) {
    msg::CheckpointShard c;
    c.step = step;
    c.range_begin = 0;
    c.values.assign(36, 0.5f);
    c.contributions = {{"worker-1", 10, 1, 100, 2.5, 0, 0}, {"worker-2", 10, 0, 100, 3.5, 0, 0, 1}};
    c.final = final;
    // The job's optimizer is momentum (the default): one block, its velocity.
    c.optimizer_state = velocity(step);
    c.optimizer_steps = step;
    return c;
  }
  static std::vector<float> velocity(uint64_t step) {
    std::vector<float> v(36);
    for (size_t i = 0; i < v.size(); ++i) v[i] = 0.001f * static_cast<float>(i) + static_cast<float>(step);
    return v;
  }
  std::unique_ptr<storage::CustodyStore> store_;
};

// A worker stopped by its operator says so (heartbeat{leaving}): recorded once, listed as
// left (not dead) at once, and its running job rolled back without the heartbeat timeout.
TEST_F(CoordinatorCustodyTest, ALeavingWorkerIsRecordedListedAsLeftAndItsJobRecoveredAtOnce) {
  register_nodes(3);  // worker-3 is the spare
  const std::string id = submit();
  send("P1", msg::KeyRangeReady{0, 36}, id);
  ASSERT_EQ(job(id).state, msg::JobState::kRunning);
  Outbox out = send("W2", msg::Heartbeat{false, true});
  auto acks = of_type<msg::HeartbeatAck>(out);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0]->peer, "W2");
  EXPECT_EQ(acks[0]->envelope.request_id, 7u) << "the ack names the leaving heartbeat";
  EXPECT_EQ(job(id).recoveries, 1u) << "no heartbeat timeout waited for";
  EXPECT_NE(job(id).state, msg::JobState::kFailed);
  for (const auto& n : state_.status("", true, now_).nodes) {
    EXPECT_EQ(n.alive, n.node_id != "worker-2") << n.node_id;
    EXPECT_EQ(n.left, n.node_id == "worker-2") << n.node_id;
  }
  for (const auto* s : of_type<msg::StopJob>(out)) EXPECT_NE(s->peer, "W2") << "a node that left is not told";
  // A second leaving heartbeat on that connection finds no live node: nothing recorded.
  out = send("W2", msg::Heartbeat{false, true});
  EXPECT_FALSE(of_type<msg::HeartbeatAck>(out).at(0)->envelope.get<msg::HeartbeatAck>()->known);
  // Past the heartbeat timeout it is still "left", not "dead", and not recovered twice.
  now_ += 2s;
  send("P1", msg::Heartbeat{false});
  send("W1", msg::Heartbeat{false});
  send("W3", msg::Heartbeat{false});
  state_.tick(now_);
  EXPECT_EQ(job(id).recoveries, 1u);
  auto records = store_->find({{"event", "node_deregistered"}}).value();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].body.value("node", ""), "node:worker-2");
  auto recovered = store_->find({{"event", "run_recovered"}}).value();
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_NE(recovered[0].body.dump().find("worker-2 left the cluster"), std::string::npos) << recovered[0].body.dump();
  // Back under the same name: a new registration, alive again.
  send("W9", msg::Register{msg::NodeRole::kWorker, "", "h", 3, "worker-2"});
  for (const auto& n : state_.status("", true, now_).nodes) {
    if (n.node_id == "worker-2") {
      EXPECT_TRUE(n.alive && !n.left);
    }
  }
}

TEST_F(CoordinatorCustodyTest, ASubmittedJobIsRecordedWithItsPeopleDataAndSpec) {
  register_nodes(2);
  const std::string id = submit();
  auto run = store_->entity(id);
  ASSERT_TRUE(run.is_ok() && run.value());
  EXPECT_EQ(run.value()->body["submitter"], "alice");
  auto out = store_->relations(id, storage::CustodyStore::Direction::kOut);
  std::set<std::string> rels;
  for (const auto& r : out.value()) rels.insert(r.body["rel"]);
  EXPECT_EQ(rels, (std::set<std::string>{"submitted_by", "consumed", "specified_by"}));
  EXPECT_TRUE(store_->entity("principal:alice").value().has_value());
  EXPECT_TRUE(store_->entity("node:worker-1").value().has_value());
}

TEST_F(CoordinatorCustodyTest, CompletionWaitsForTheFinalCheckpointAndMakesAModelVersion) {
  register_nodes(2);
  const std::string id = submit();
  run_to_final_step(id);
  EXPECT_EQ(job(id).state, msg::JobState::kRunning) << "the final checkpoint is not recorded yet";
  Outbox out = send("P1", shard(20, true), id);
  EXPECT_EQ(job(id).state, msg::JobState::kCompleted);
  const std::string ckpt = job(id).last_checkpoint;
  ASSERT_EQ(ckpt.rfind("ckpt-", 0), 0u);
  auto model = store_->entity("model:tiny@1");
  ASSERT_TRUE(model.is_ok() && model.value());
  EXPECT_EQ(model.value()->body["checkpoint"], ckpt);
  auto contributed = store_->relations(ckpt, storage::CustodyStore::Direction::kIn, "contributed");
  ASSERT_EQ(contributed->size(), 2u);
  const auto& w1 = (*contributed)[0].body;
  EXPECT_EQ(w1["from"], "node:worker-1");
  EXPECT_EQ(w1["steps"], 10);
  EXPECT_EQ(w1["rejected"], 1);
  EXPECT_EQ(w1["shard"]["begin"], 0);
  EXPECT_EQ(w1["shard"]["end"], 100);
  EXPECT_EQ((*contributed)[1].body["shard"]["begin"], 100);
  EXPECT_TRUE(store_->verify()->ok);
}

TEST_F(CoordinatorCustodyTest, AShardThatIsNotTheServersRangeFailsTheJob) {
  register_nodes(2);
  const std::string id = submit();
  send("P1", msg::KeyRangeReady{0, 36}, id);
  msg::CheckpointShard bad = shard(10, false);
  bad.values.resize(10);
  send("P1", bad, id);
  EXPECT_EQ(job(id).state, msg::JobState::kFailed);
  EXPECT_NE(job(id).message.find("key range"), std::string::npos);
}

TEST_F(CoordinatorCustodyTest, ARestartedCoordinatorRestoresJobsAndResumesFromTheLastCheckpoint) {
  register_nodes(2);
  const std::string done = submit();
  run_to_final_step(done);
  send("P1", shard(20, true), done);
  ASSERT_EQ(job(done).state, msg::JobState::kCompleted);
  const std::string id = submit();
  send("P1", msg::KeyRangeReady{0, 36}, id);
  send("P1", shard(10, false), id);
  const std::string checkpoint = job(id).last_checkpoint;
  ASSERT_FALSE(checkpoint.empty());

  // A new coordinator on the same store, as after a crash.
  CoordinatorState restarted(options(), store_.get(), "mem");
  ASSERT_TRUE(restarted.restore(now_).is_ok());
  auto jobs = restarted.status("", true, now_);
  ASSERT_EQ(jobs.jobs.size(), 2u);
  EXPECT_EQ(jobs.jobs[0].job_id, done);
  EXPECT_EQ(jobs.jobs[0].state, msg::JobState::kCompleted);
  EXPECT_EQ(jobs.jobs[0].total_steps, job(done).total_steps) << "regression: an ended job read step 20 of 0";
  EXPECT_EQ(jobs.jobs[1].total_steps, job(id).total_steps);
  EXPECT_EQ(jobs.jobs[1].job_id, id);
  EXPECT_EQ(jobs.jobs[1].state, msg::JobState::kPending);
  EXPECT_EQ(jobs.jobs[1].step, 10u);
  EXPECT_EQ(jobs.jobs[1].submitter, "alice");
  EXPECT_EQ(jobs.nodes.size(), 3u) << "membership is known, waiting for the nodes to come back";
  for (const auto& n : jobs.nodes) EXPECT_FALSE(n.alive);

  // The nodes register again under their ids; the job restarts from the checkpoint.
  restarted.handle("P1", make(msg::Register{msg::NodeRole::kParameterServer, "tcp://127.0.0.1:7001", "h", 1, "ps-1"}), now_);
  restarted.handle("W1", make(msg::Register{msg::NodeRole::kWorker, "", "h", 2, "worker-1"}), now_);
  Outbox out = restarted.handle("W2", make(msg::Register{msg::NodeRole::kWorker, "", "h", 2, "worker-2"}), now_);
  auto ranges = of_type<msg::AssignKeyRange>(out);
  ASSERT_EQ(ranges.size(), 1u);
  const auto& a = *ranges[0]->envelope.get<msg::AssignKeyRange>();
  EXPECT_EQ(a.start_step, 10u);
  EXPECT_EQ(a.initial_values, std::vector<float>(36, 0.5f));
  EXPECT_EQ(a.optimizer_state, velocity(10)) << "momentum goes on from the checkpoint";
  EXPECT_EQ(a.optimizer_steps, 10u);
  EXPECT_GE(ranges[0]->envelope.attempt, 1u) << "newer than any attempt the old session started";
  out = restarted.handle("P1", at_attempt(msg::KeyRangeReady{0, 36}, id, ranges[0]->envelope.attempt), now_);
  auto tasks = of_type<msg::AssignTask>(out);
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0]->envelope.get<msg::AssignTask>()->start_step, 10u);
  // A node registering fresh gets an id no earlier node had.
  out = restarted.handle("W3", make(msg::Register{msg::NodeRole::kWorker, "", "h", 9, ""}), now_);
  EXPECT_EQ(out[0].envelope.get<msg::RegisterAck>()->node_id, "worker-3");
  auto recovered = store_->find({{"event", "run_recovered"}, {"run", id}});
  ASSERT_EQ(recovered->size(), 1u);
  EXPECT_EQ(recovered->at(0).body["reason"], "the coordinator restarted");
  EXPECT_EQ(recovered->at(0).body["rolled_back_to_step"], 10);
  EXPECT_TRUE(store_->verify()->ok);
}

// Regression: a coordinator killed after recording a job's final checkpoint but before its
// end resumed the job "from step 20 of 20", and it stayed running forever.
TEST_F(CoordinatorCustodyTest, AJobWhoseFinalCheckpointWasRecordedCompletesOnRestore) {
  register_nodes(2);
  const std::string id = submit();
  send("P1", msg::KeyRangeReady{0, 36}, id);
  both_evaluated(id, 1, 20);
  both_evaluated(id, 2, 24);
  send("P1", shard(10, false), id);
  send("P1", shard(20, true), id);  // ... and the coordinator dies before the workers' taskDone
  const std::string final_ckpt = job(id).last_checkpoint;
  ASSERT_EQ(job(id).state, msg::JobState::kRunning);

  CoordinatorState restarted(options(), store_.get(), "mem");
  ASSERT_TRUE(restarted.restore(now_).is_ok());
  const msg::JobStatus s = restarted.status(id, false, now_).jobs.at(0);
  EXPECT_EQ(s.state, msg::JobState::kCompleted) << s.message;
  EXPECT_EQ(s.last_checkpoint, final_ckpt);
  EXPECT_EQ(s.total_steps, job(id).total_steps);
  EXPECT_EQ(s.accuracy_history, (std::vector<double>{0.8, 0.96}));
  auto model = store_->entity("model:tiny@1");
  ASSERT_TRUE(model.is_ok() && model.value()) << "the completed run is the model's next version";
  EXPECT_EQ(model.value()->body["checkpoint"], final_ckpt);
  EXPECT_DOUBLE_EQ(model.value()->body["test_accuracy"].get<double>(), 0.96);
  // Nodes that come back get nothing of the finished job.
  Outbox out = restarted.handle("P1", make(msg::Register{msg::NodeRole::kParameterServer, "tcp://127.0.0.1:7001", "h",
                                                         1, "ps-1"}),
                                now_);
  EXPECT_TRUE(of_type<msg::AssignKeyRange>(out).empty());
  EXPECT_TRUE(store_->verify()->ok);
}

// Regression: after a restart every epoch evaluated before it read 0.0 in status and in
// the stored run_ended record.
TEST_F(CoordinatorCustodyTest, EpochAccuraciesSurviveARestart) {
  register_nodes(2);
  const std::string id = submit();
  send("P1", msg::KeyRangeReady{0, 36}, id);
  both_evaluated(id, 1, 20);
  send("P1", shard(10, false), id);
  CoordinatorState restarted(options(), store_.get(), "mem");
  ASSERT_TRUE(restarted.restore(now_).is_ok());
  msg::JobStatus s = restarted.status(id, false, now_).jobs.at(0);
  EXPECT_EQ(s.accuracy_history, (std::vector<double>{0.8}));
  EXPECT_DOUBLE_EQ(s.test_accuracy, 0.8);
  restarted.handle("P1", make(msg::Register{msg::NodeRole::kParameterServer, "tcp://127.0.0.1:7001", "h", 1, "ps-1"}),
                   now_);
  restarted.handle("W1", make(msg::Register{msg::NodeRole::kWorker, "", "h", 2, "worker-1"}), now_);
  Outbox out = restarted.handle("W2", make(msg::Register{msg::NodeRole::kWorker, "", "h", 2, "worker-2"}), now_);
  const uint32_t attempt = of_type<msg::AssignKeyRange>(out).at(0)->envelope.attempt;
  restarted.handle("P1", at_attempt(msg::KeyRangeReady{0, 36}, id, attempt), now_);
  restarted.handle("W1", at_attempt(msg::EpochEval{2, 24, 25, 1.0}, id, attempt), now_);
  restarted.handle("W2", at_attempt(msg::EpochEval{2, 24, 25, 1.0, 1}, id, attempt), now_);
  restarted.handle("W1", at_attempt(msg::TaskDone{20, 200}, id, attempt), now_);
  restarted.handle("W2", at_attempt(msg::TaskDone{20, 200, 1}, id, attempt), now_);
  msg::CheckpointShard last = shard(20, true);
  restarted.handle("P1", at_attempt(last, id, attempt), now_);
  s = restarted.status(id, false, now_).jobs.at(0);
  ASSERT_EQ(s.state, msg::JobState::kCompleted) << s.message;
  EXPECT_EQ(s.accuracy_history, (std::vector<double>{0.8, 0.96}));
  auto ended = store_->find({{"event", "run_ended"}, {"run", id}});
  ASSERT_EQ(ended->size(), 1u);
  EXPECT_EQ(ended->at(0).body["accuracy_history"], storage::json({0.8, 0.96}));
}

// Issue 11, item 9: the optimizer state comes back with the values. Two servers send their
// ranges' state; a rollback hands the one live server the whole of it.
TEST_F(CoordinatorCustodyTest, ACheckpointKeepsTheOptimizerStateAndARollbackHandsItBack) {
  send("P1", msg::Register{msg::NodeRole::kParameterServer, "tcp://127.0.0.1:7001", "h", 1, ""});
  send("P2", msg::Register{msg::NodeRole::kParameterServer, "tcp://127.0.0.1:7002", "h", 1, ""});
  send("W1", msg::Register{msg::NodeRole::kWorker, "", "h", 2, ""});
  send("W2", msg::Register{msg::NodeRole::kWorker, "", "h", 2, ""});
  const std::string id = submit();
  send("P1", msg::KeyRangeReady{0, 18}, id);
  send("P2", msg::KeyRangeReady{18, 36}, id);
  const std::vector<float> v = velocity(10);
  for (auto [peer, begin] : {std::pair<std::string, size_t>{"P1", 0}, {"P2", 18}}) {
    msg::CheckpointShard c = shard(10, false);
    c.range_begin = begin;
    c.values.assign(18, 0.5f);
    c.optimizer_state.assign(v.begin() + static_cast<std::ptrdiff_t>(begin),
                             v.begin() + static_cast<std::ptrdiff_t>(begin + 18));
    send(peer, c, id);
  }
  const std::string checkpoint = job(id).last_checkpoint;
  ASSERT_FALSE(checkpoint.empty());
  auto manifest = store_->checkpoint(checkpoint);
  ASSERT_TRUE(manifest.is_ok() && manifest.value());
  EXPECT_EQ((*manifest.value())["optimizer"], storage::json({{"kind", "momentum"}, {"steps", 10}}));
  EXPECT_EQ((*manifest.value())["optimizer_state"].size(), 2u) << "velocity of the weight and of the bias";
  auto loaded = storage::load_optimizer_state(*store_, *manifest.value());
  ASSERT_TRUE(loaded.is_ok() && loaded.value());
  EXPECT_EQ(loaded.value()->state.values, v);

  now_ += 1500ms;  // ps-2 falls silent
  send("P1", msg::Heartbeat{true});
  send("W1", msg::Heartbeat{true});
  send("W2", msg::Heartbeat{true});
  Outbox out = state_.tick(now_);
  auto ranges = of_type<msg::AssignKeyRange>(out);
  ASSERT_EQ(ranges.size(), 1u);
  const auto& a = *ranges[0]->envelope.get<msg::AssignKeyRange>();
  EXPECT_EQ(a.range_end - a.range_begin, 36u) << "the survivor takes the whole model";
  EXPECT_EQ(a.optimizer_state, v);
  EXPECT_EQ(a.optimizer_steps, 10u);
  EXPECT_TRUE(store_->verify()->ok);
}

TEST_F(CoordinatorCustodyTest, ResumingACheckpointWithoutOptimizerStateStartsFromZerosAndSaysSo) {
  register_nodes(2);
  const std::string id = submit();
  send("P1", msg::KeyRangeReady{0, 36}, id);
  msg::CheckpointShard old = shard(10, false);
  old.optimizer_state.clear();  // a server from before optimizer state was checkpointed
  send("P1", old, id);
  ASSERT_FALSE(job(id).last_checkpoint.empty());
  send("CLI", msg::CancelJob{"enough", "alice"}, id);
  Outbox out = send("CLI", msg::ResumeJob{"alice"}, id);
  auto accepted = of_type<msg::JobAccepted>(out);
  ASSERT_EQ(accepted.size(), 1u);
  EXPECT_NE(accepted[0]->envelope.get<msg::JobAccepted>()->message.find("momentum state starts from zeros"),
            std::string::npos)
      << accepted[0]->envelope.get<msg::JobAccepted>()->message;
  auto ranges = of_type<msg::AssignKeyRange>(out);
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0]->envelope.get<msg::AssignKeyRange>()->start_step, 10u);
  EXPECT_TRUE(ranges[0]->envelope.get<msg::AssignKeyRange>()->optimizer_state.empty());
}

// Regression (issue 11, item 8): run_recovered took the step reached from the workers'
// progress reports (every 500 ms), so it said 150 steps were discarded where the server had
// applied 302 past the checkpoint. The servers answer the stop with what they applied, and
// attempt_discarded records it.
TEST_F(CoordinatorCustodyTest, ARollbackRecordsTheStepsTheServersAppliedPastTheCheckpoint) {
  register_nodes(2);
  const std::string id = submit();
  send("P1", msg::KeyRangeReady{0, 36}, id);
  send("P1", shard(10, false), id);
  send("W1", msg::Progress{1, 12, 20, 1.0, 1000, 0}, id);  // the reports lag the server
  send("W2", msg::Progress{1, 12, 20, 1.0, 1000, 1}, id);
  Outbox out = send("W1", msg::Error{ErrorCode::kDeadlineExceeded, "no reply from ps-1 within 60 s"}, id);
  ASSERT_EQ(job(id).recoveries, 1u);
  auto recovered = store_->find({{"event", "run_recovered"}, {"run", id}});
  ASSERT_EQ(recovered->size(), 1u);
  EXPECT_EQ(recovered->at(0).body["reached_step"], 12);
  EXPECT_EQ(recovered->at(0).body["servers_to_report"], storage::json({"ps-1"}));
  EXPECT_TRUE(store_->find({{"event", "attempt_discarded"}, {"run", id}})->empty()) << "ps-1 has not answered";

  // ps-1 answers attempt 0's stop: it had applied 17 steps.
  ASSERT_EQ(of_type<msg::StopJob>(out).size(), 3u);
  state_.handle("P1", at_attempt(msg::JobReleased{17, 17, 0, 36}, id, 0), now_);
  auto discarded = store_->find({{"event", "attempt_discarded"}, {"run", id}});
  ASSERT_EQ(discarded->size(), 1u);
  const storage::json& d = discarded->at(0).body;
  EXPECT_EQ(d["attempt"], 0);
  EXPECT_EQ(d["rolled_back_to_step"], 10);
  EXPECT_EQ(d["applied_steps_by_server"], storage::json({{"ps-1", 17}}));
  EXPECT_EQ(d["discarded_steps"], 7) << "what the server applied past the checkpoint, not the reports' 2";
  EXPECT_EQ(d["unanswered"], storage::json::array());
  // A repeated or unrelated release records nothing more.
  state_.handle("P1", at_attempt(msg::JobReleased{17, 17, 0, 36}, id, 0), now_);
  state_.handle("P1", at_attempt(msg::JobReleased{3, 3, 0, 36}, id, 1), now_);
  EXPECT_EQ(store_->find({{"event", "attempt_discarded"}, {"run", id}})->size(), 1u);
  EXPECT_TRUE(store_->verify()->ok);
}

TEST_F(CoordinatorCustodyTest, ARollbackWhoseServerNeverAnswersIsRecordedAfterTheHeartbeatTimeout) {
  register_nodes(2);
  const std::string id = submit();
  send("P1", msg::KeyRangeReady{0, 36}, id);
  send("W1", msg::Error{ErrorCode::kDeadlineExceeded, "no reply from ps-1"}, id);
  now_ += 500ms;
  send("P1", msg::Heartbeat{true});
  send("W1", msg::Heartbeat{true});
  send("W2", msg::Heartbeat{true});
  state_.tick(now_);
  EXPECT_TRUE(store_->find({{"event", "attempt_discarded"}, {"run", id}})->empty());
  now_ += 600ms;
  send("P1", msg::Heartbeat{true});
  send("W1", msg::Heartbeat{true});
  send("W2", msg::Heartbeat{true});
  state_.tick(now_);
  auto discarded = store_->find({{"event", "attempt_discarded"}, {"run", id}});
  ASSERT_EQ(discarded->size(), 1u);
  EXPECT_EQ(discarded->at(0).body["unanswered"], storage::json({"ps-1"}));
  EXPECT_EQ(discarded->at(0).body["discarded_steps"], 0);
}

TEST_F(CoordinatorCustodyTest, ExportRecordsAUseAndUnknownModelsAreNotFound) {
  register_nodes(2);
  const std::string id = submit();
  run_to_final_step(id);
  send("P1", shard(20, true), id);
  Outbox out = send("CLI", msg::ExportRequest{"tiny@1", "bob", "audit"});
  ASSERT_EQ(out.size(), 1u);
  const auto* x = out[0].envelope.get<msg::ExportReply>();
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(x->values, std::vector<float>(36, 0.5f));
  EXPECT_EQ(x->layer_sizes, (std::vector<uint32_t>{8, 4}));
  auto uses = store_->usage_of(x->checkpoint);
  ASSERT_EQ(uses->size(), 1u);
  EXPECT_EQ((*uses)[0].body["principal"], "principal:bob");
  out = send("CLI", msg::ExportRequest{"tiny@2", "bob", ""});
  EXPECT_EQ(out[0].envelope.get<msg::Error>()->code, ErrorCode::kNotFound);
}

// A job that ended before a coordinator restart and is then resumed: its tasks name the
// data set version (the trainer compares it with the data it reads), and its status keeps
// the data set it was restored with.
TEST_F(CoordinatorCustodyTest, AJobEndedBeforeARestartResumesWithItsDataSetVersion) {
  register_nodes(2);
  const std::string id = submit();
  const std::string hash = job(id).dataset_hash;
  ASSERT_FALSE(hash.empty());
  send("P1", msg::KeyRangeReady{0, 36}, id);
  send("P1", shard(10, false), id);
  send("CLI", msg::CancelJob{"enough", "alice"}, id);
  ASSERT_EQ(job(id).state, msg::JobState::kCancelled);

  CoordinatorState restarted(options(), store_.get(), "mem");
  ASSERT_TRUE(restarted.restore(now_).is_ok());
  EXPECT_EQ(restarted.status(id, false, now_).jobs.at(0).dataset_hash, hash);
  restarted.handle("P1", make(msg::Register{msg::NodeRole::kParameterServer, "tcp://127.0.0.1:7001", "h", 1, "ps-1"}), now_);
  restarted.handle("W1", make(msg::Register{msg::NodeRole::kWorker, "", "h", 2, "worker-1"}), now_);
  restarted.handle("W2", make(msg::Register{msg::NodeRole::kWorker, "", "h", 2, "worker-2"}), now_);
  Outbox out = restarted.handle("CLI", make(msg::ResumeJob{"alice"}, id), now_);
  auto ranges = of_type<msg::AssignKeyRange>(out);
  ASSERT_EQ(ranges.size(), 1u);
  out = restarted.handle("P1", at_attempt(msg::KeyRangeReady{0, 36}, id, ranges[0]->envelope.attempt), now_);
  auto tasks = of_type<msg::AssignTask>(out);
  ASSERT_EQ(tasks.size(), 2u);
  for (const auto* t : tasks) EXPECT_EQ(t->envelope.get<msg::AssignTask>()->shard.dataset_hash, hash);
}

TEST_F(CoordinatorStateTest, ATestSetSmallerThanTheWorkersNamesTheJobFilesKey) {
  std::string spec = kSyntheticJob;
  spec.replace(spec.find("test_samples = 50"), 17, "test_samples = 1");
  Outbox out = send("CLI", msg::SubmitJob{spec, "tiny.toml", "alice"});
  ASSERT_EQ(out.size(), 1u);
  auto* e = out[0].envelope.get<msg::Error>();
  ASSERT_TRUE(e);
  EXPECT_NE(e->message.find("fewer samples than 'job.workers'"), std::string::npos) << e->message;
}

// The data plane's choice, per attempt (actors/data_plane_policy.h), and the keys that go
// with it: a coordinator with `mode`, one server at `server_address` on host `server_host`,
// and two workers on the hosts given.
class DataPlaneChoiceTest : public ::testing::Test {
 protected:
  void start(DataPlaneSealing mode, const std::string& server_address, const std::string& server_host,
             const std::string& worker_1_host, const std::string& worker_2_host) {
    CoordinatorOptions o;
    o.heartbeat_interval = 100ms;
    o.heartbeat_timeout = 1s;
    o.data_plane_sealing = mode;
    state_.emplace(o);
    handle("P1", make(msg::Register{msg::NodeRole::kParameterServer, server_address, server_host, 1, ""}));
    handle("W1", make(msg::Register{msg::NodeRole::kWorker, "", worker_1_host, 2, ""}));
    handle("W2", make(msg::Register{msg::NodeRole::kWorker, "", worker_2_host, 3, ""}));
    Outbox out = handle("CLI", make(msg::SubmitJob{kSyntheticJob, "tiny.toml", "alice"}));
    job_ = of_type<msg::JobAccepted>(out).at(0)->envelope.get<msg::JobAccepted>()->job_id;
    range_ = *of_type<msg::AssignKeyRange>(out).at(0)->envelope.get<msg::AssignKeyRange>();
    const Outbox started = handle("P1", make(msg::KeyRangeReady{0, 36}, job_));
    for (const auto* t : of_type<msg::AssignTask>(started)) tasks_.push_back(*t->envelope.get<msg::AssignTask>());
  }
  Outbox handle(const std::string& peer, const Envelope& e) { return state_->handle(peer, e, now_); }
  msg::JobStatus status() { return state_->status(job_, false, now_).jobs.at(0); }

  std::optional<CoordinatorState> state_;
  SteadyClock::time_point now_ = SteadyClock::now();
  std::string job_;
  msg::AssignKeyRange range_;
  std::vector<msg::AssignTask> tasks_;
};

TEST_F(DataPlaneChoiceTest, AutoLeavesAJobInClearWhenEveryNodeIsOnOneHostAndItsServersOnLoopback) {
  start(DataPlaneSealing::kAuto, "tcp://127.0.0.1:7001", "h", "h", "h");
  EXPECT_TRUE(range_.rank_keys.empty());
  EXPECT_FALSE(range_.reply_key);
  EXPECT_EQ(range_.rank_nodes, (std::vector<std::string>{"worker-1", "worker-2"}));
  ASSERT_EQ(tasks_.size(), 2u);
  for (const auto& t : tasks_) EXPECT_FALSE(t.rank_key || t.replies_key);
  EXPECT_FALSE(status().data_plane_sealed);
  EXPECT_EQ(status().data_plane.rfind("in clear: every node on host h", 0), 0u) << status().data_plane;
}

// Each worker gets its own rank's key and the replies key; the server gets, for its range,
// each rank's key as that rank's worker derives it, and its reply key: the two ends agree,
// and no worker holds another rank's key.
TEST_F(DataPlaneChoiceTest, AutoSealsAJobWhoseServerOtherHostsCanReachAndHandsEachNodeOnlyItsKeys) {
  start(DataPlaneSealing::kAuto, "tcp://10.0.0.5:7001", "a", "b", "c");
  ASSERT_EQ(range_.rank_keys.size(), 2u);
  ASSERT_TRUE(range_.reply_key);
  ASSERT_EQ(tasks_.size(), 2u);
  std::set<std::string> fingerprints;
  for (const auto& t : tasks_) {
    ASSERT_TRUE(t.rank_key && t.replies_key);
    const AeadKey server_side = range_.rank_keys.at(t.rank);
    EXPECT_EQ(data_plane::server_key(*t.rank_key, 0, 36)->fingerprint(), server_side.fingerprint());
    EXPECT_EQ(data_plane::server_key(*t.replies_key, 0, 36)->fingerprint(), range_.reply_key->fingerprint());
    fingerprints.insert(t.rank_key->fingerprint());
  }
  EXPECT_EQ(fingerprints.size(), 2u) << "each rank a key of its own";
  EXPECT_TRUE(status().data_plane_sealed);
  EXPECT_NE(status().data_plane.find("tcp://10.0.0.5:7001"), std::string::npos) << status().data_plane;
}

TEST_F(DataPlaneChoiceTest, AutoSealsAJobWhoseNodesReportOtherHosts) {
  start(DataPlaneSealing::kAuto, "tcp://127.0.0.1:7001", "h", "h", "elsewhere");
  EXPECT_EQ(range_.rank_keys.size(), 2u);
  EXPECT_TRUE(status().data_plane_sealed);
  EXPECT_NE(status().data_plane.find("2 hosts (elsewhere, h)"), std::string::npos) << status().data_plane;
}

TEST_F(DataPlaneChoiceTest, OnSealsEvenALoopbackJob) {
  start(DataPlaneSealing::kOn, "tcp://127.0.0.1:7001", "h", "h", "h");
  EXPECT_EQ(range_.rank_keys.size(), 2u);
  EXPECT_TRUE(status().data_plane_sealed);
}

TEST_F(DataPlaneChoiceTest, OffIsHonouredOnLoopbackOnlyAndNeverBetweenHosts) {
  start(DataPlaneSealing::kOff, "tcp://127.0.0.1:7001", "h", "h", "h");
  EXPECT_TRUE(range_.rank_keys.empty());
  EXPECT_FALSE(status().data_plane_sealed);
  tasks_.clear();
  start(DataPlaneSealing::kOff, "tcp://10.0.0.5:7001", "a", "b", "c");
  EXPECT_EQ(range_.rank_keys.size(), 2u);
  for (const auto& t : tasks_) EXPECT_TRUE(t.rank_key);
  EXPECT_TRUE(status().data_plane_sealed);
  EXPECT_NE(status().data_plane.find("sealed anyway, although data_plane_sealing = off"), std::string::npos)
      << status().data_plane;
}

// Keys belong to one attempt: the rollback's next attempt gets new ones, so nothing sealed
// before it opens after it, and the keys of the ended attempt are gone.
TEST_F(DataPlaneChoiceTest, EachAttemptHasKeysOfItsOwn) {
  start(DataPlaneSealing::kOn, "tcp://127.0.0.1:7001", "h", "h", "h");
  const std::string before = range_.rank_keys.at(0).fingerprint();
  now_ += 800ms;
  handle("P1", make(msg::Heartbeat{true}));
  handle("W1", make(msg::Heartbeat{true}));
  now_ += 400ms;  // worker-2 silent: the job goes back to its start as attempt 1
  Outbox out = state_->tick(now_);
  auto ranges = of_type<msg::AssignKeyRange>(out);
  ASSERT_EQ(ranges.size(), 1u);
  EXPECT_EQ(ranges[0]->envelope.attempt, 1u);
  const auto& next = *ranges[0]->envelope.get<msg::AssignKeyRange>();
  ASSERT_EQ(next.rank_keys.size(), 2u);
  EXPECT_NE(next.rank_keys[0].fingerprint(), before);
  EXPECT_EQ(next.rank_nodes, (std::vector<std::string>{"worker-1", "worker-1"})) << "worker-1 runs both ranks";
}

// How many node_registered records name `node`.
size_t registrations_of(const storage::CustodyStore& store, const std::string& node) {
  auto records = store.find({{"event", "node_registered"}});
  EXPECT_TRUE(records.is_ok());
  size_t n = 0;
  for (const auto& r : records.value()) n += r.body.value("node", "") == "node:" + node;
  return n;
}

// The cut-off worker's retries (one a second, queued behind the partition) arrive together
// at link-up: one registration, one record, and the job it runs is not rolled back.
TEST_F(CoordinatorCustodyTest, RegistrationsRepeatedInOneSessionAreOneRecordAndRollNothingBack) {
  auto reg = [](const std::string& name, const std::string& session) {
    msg::Register r{msg::NodeRole::kWorker, "", "h", 2, name};
    r.session = session;
    return r;
  };
  msg::Register ps{msg::NodeRole::kParameterServer, "tcp://127.0.0.1:7001", "h", 1, "ps-1"};
  ps.session = "sp";
  send("P1", ps);
  send("W1", reg("worker-1", "s1"));
  send("W2", reg("worker-2", "s2"));
  const std::string id = submit();
  send("P1", msg::KeyRangeReady{0, 36}, id);
  ASSERT_EQ(job(id).state, msg::JobState::kRunning);
  for (int i = 0; i < 8; ++i) {
    Outbox out = send("W2", reg("worker-2", "s2"));
    ASSERT_EQ(of_type<msg::RegisterAck>(out).size(), 1u) << "every repeat is answered";
    EXPECT_EQ(of_type<msg::RegisterAck>(out)[0]->envelope.get<msg::RegisterAck>()->node_id, "worker-2");
    EXPECT_TRUE(of_type<msg::StopJob>(out).empty()) << "a repeat is not a restart";
  }
  EXPECT_EQ(registrations_of(*store_, "worker-2"), 1u);
  EXPECT_EQ(job(id).state, msg::JobState::kRunning);
  EXPECT_EQ(job(id).recoveries, 0u);

  // Cut off: marked dead, its ranks rolled back onto worker-1. At link-up its new session's
  // registration arrives eight times: the rejoin is one record.
  now_ += 600ms;
  send("P1", msg::Heartbeat{true});
  send("W1", msg::Heartbeat{true});
  now_ += 600ms;
  state_.tick(now_);
  EXPECT_EQ(job(id).recoveries, 1u);
  for (int i = 0; i < 8; ++i) send("W2", reg("worker-2", "s2-after"));
  EXPECT_EQ(registrations_of(*store_, "worker-2"), 2u);
  EXPECT_EQ(job(id).recoveries, 1u) << "the rejoin rolled nothing back a second time";
  auto nodes = state_.status("", true, now_).nodes;
  for (const auto& n : nodes) EXPECT_TRUE(n.alive) << n.node_id;
  auto events = store_->find({{"event", "node_registered"}, {"node", "node:worker-2"}}).value();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].body["session"], "s2-after");

  // The same name from another process (a restart: a new pid) is a new registration.
  send("W2", [] {
    msg::Register r{msg::NodeRole::kWorker, "", "h", 99, "worker-2"};
    r.session = "s2-after";
    return r;
  }());
  EXPECT_EQ(registrations_of(*store_, "worker-2"), 3u);
}

// A worker that cannot read its data says so for its rank; the rank moves to another node
// in one recovery, and when no live worker can run it the job fails at once, naming each
// node's cause, in status and in the lineage.
TEST_F(CoordinatorCustodyTest, ARankItsNodeCannotRunMovesToAnotherNodeOrFailsTheJobNamingTheCause) {
  register_nodes(2);
  const std::string id = submit();
  send("P1", msg::KeyRangeReady{0, 36}, id);
  ASSERT_EQ(job(id).workers, (std::vector<std::string>{"worker-1", "worker-2"}));
  const std::string missing = "cannot open data file '/data/train-images-idx3-ubyte': No such file or directory";
  Outbox out = send("W1", msg::Error{ErrorCode::kNotFound, missing, 0, true}, id);
  EXPECT_EQ(job(id).recoveries, 1u);
  EXPECT_NE(job(id).message.find("worker-1 cannot run rank 0: " + missing), std::string::npos) << job(id).message;
  out = state_.handle("P1", at_attempt(msg::KeyRangeReady{0, 36}, id, 1), now_);
  EXPECT_EQ(job(id).state, msg::JobState::kRunning) << job(id).message;
  EXPECT_EQ(job(id).workers, (std::vector<std::string>{"worker-2", "worker-2"}))
      << "rank 0 left worker-1, and rank 1 too: worker-1 cannot read the data set for any rank";
  auto recovered = store_->find({{"event", "run_recovered"}}).value();
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_NE(recovered[0].body.dump().find(missing), std::string::npos) << recovered[0].body.dump();

  // worker-2 cannot either: no live worker can run rank 0, so the job fails now, not after
  // max_recoveries identical tries.
  out = state_.handle("W2", at_attempt(msg::Error{ErrorCode::kFailedPrecondition, "other bytes", 0, true}, id, 1),
                      now_);
  EXPECT_EQ(job(id).state, msg::JobState::kFailed);
  EXPECT_EQ(job(id).recoveries, 1u);
  const std::string message = job(id).message;
  EXPECT_NE(message.find("no live worker can run rank 0"), std::string::npos) << message;
  EXPECT_NE(message.find("worker-1: " + missing), std::string::npos) << message;
  EXPECT_NE(message.find("worker-2: other bytes"), std::string::npos) << message;
  auto ended = store_->find({{"event", "run_ended"}}).value();
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_NE(ended[0].body.dump().find("no live worker can run rank 0"), std::string::npos) << ended[0].body.dump();
}

// A failure that is not the node's (a server stopped answering) is still a rollback that
// may go back to the same node.
TEST_F(CoordinatorStateTest, AServerThatStoppedAnsweringIsRetriedOnTheSameNodes) {
  register_nodes(2);
  const std::string id = submit();
  send("P1", msg::KeyRangeReady{0, 36}, id);
  send("W1", msg::Error{ErrorCode::kDeadlineExceeded, "no reply from ps-1 within 60 s", 0, false}, id);
  EXPECT_EQ(job(id).recoveries, 1u);
  state_.handle("P1", at_attempt(msg::KeyRangeReady{0, 36}, id, 1), now_);
  EXPECT_EQ(job(id).workers, (std::vector<std::string>{"worker-1", "worker-2"}));
}

// At submission the coordinator pins what each rank's records are, file by file; each task
// carries its rank's, the lineage keeps them with the submission, and each start's
// assignment names them with the shard.
TEST_F(CoordinatorCustodyTest, EachTaskCarriesWhatItsRecordsAreAsReadAtSubmission) {
  register_nodes(2);
  const std::string id = submit();
  Outbox out = send("P1", msg::KeyRangeReady{0, 36}, id);
  const DataSplit data = load_data(parse_job_spec(kSyntheticJob, "tiny").value().data).value();
  auto tasks = of_type<msg::AssignTask>(out);
  ASSERT_EQ(tasks.size(), 2u);
  for (auto* o : tasks) {
    const msg::AssignTask& t = *o->envelope.get<msg::AssignTask>();
    const RecordsDigest train = records_digest(data.train, static_cast<int64_t>(t.shard.begin), static_cast<int64_t>(t.shard.end));
    const RecordsDigest test = records_digest(data.test, static_cast<int64_t>(t.test_begin), static_cast<int64_t>(t.test_end));
    EXPECT_EQ(t.train_digest.images_sha256, train.images_sha256) << "rank " << t.rank;
    EXPECT_EQ(t.train_digest.labels_sha256, train.labels_sha256) << "rank " << t.rank;
    EXPECT_EQ(t.test_digest.images_sha256, test.images_sha256) << "rank " << t.rank;
    EXPECT_EQ(t.test_digest.labels_sha256, test.labels_sha256) << "rank " << t.rank;
  }
  auto consumed = store_->relations(id, storage::CustodyStore::Direction::kOut).value();
  bool saw = false;
  for (const auto& r : consumed) {
    if (r.body["rel"] != "consumed") continue;
    saw = true;
    const auto& shards = r.body["shards"];
    ASSERT_EQ(shards.size(), 2u) << r.body.dump();
    EXPECT_EQ(shards[1]["begin"], 100u);
    EXPECT_EQ(shards[1]["images_sha256"], records_digest(data.train, 100, 200).images_sha256);
  }
  EXPECT_TRUE(saw);
  auto assigned = store_->relations("node:worker-2", storage::CustodyStore::Direction::kIn).value();
  bool named = false;
  for (const auto& r : assigned) {
    if (r.body["rel"] == "assigned") named = r.body["shard"].contains("images_sha256");
  }
  EXPECT_TRUE(named);
}

}  // namespace
}  // namespace custody::actors

namespace custody::actors {
namespace {

// Data shipping (docs/ARCHITECTURE.md, "Data shipping"): who may fetch which records, and
// the record of how a worker came by its records.
class CoordinatorShippingTest : public CoordinatorCustodyTest {
 protected:
  CoordinatorShippingTest() {
    CoordinatorOptions o = options();
    o.records_dir = "/nonexistent-records";  // authorization does not read it
    state_ = CoordinatorState(o, store_.get(), "mem");
  }
  Status fetch(const std::string& sender, const std::string& job, const std::string& sha256, uint32_t attempt = 0) {
    Envelope e = make(msg::FetchRecords{sha256, 0, 1024}, job);
    e.sender = sender;
    e.attempt = attempt;
    return state_.authorize_fetch(e);
  }
};

TEST_F(CoordinatorShippingTest, AWorkerMayFetchOnlyTheRecordsOfItsOwnRanksInTheCurrentAttempt) {
  register_nodes(3);
  const std::string id = submit();
  Outbox out = send("P1", msg::KeyRangeReady{0, 36}, id);
  auto tasks = of_type<msg::AssignTask>(out);
  ASSERT_EQ(tasks.size(), 2u);
  std::map<std::string, msg::AssignTask> by_node;  // the peers W1, W2 are worker-1, worker-2
  for (const auto* t : tasks) by_node[t->peer == "W1" ? "worker-1" : "worker-2"] = *t->envelope.get<msg::AssignTask>();
  const msg::AssignTask& mine = by_node["worker-1"];
  const msg::AssignTask& theirs = by_node["worker-2"];
  EXPECT_EQ(mine.train_records, 200u) << "N, for a private job's sampling rate on a worker without the files";
  for (const std::string& d : {mine.train_digest.images_sha256, mine.train_digest.labels_sha256,
                               mine.test_digest.images_sha256, mine.test_digest.labels_sha256}) {
    EXPECT_TRUE(fetch("worker-1", id, d).is_ok()) << d;
  }
  Status s = fetch("worker-1", id, theirs.train_digest.images_sha256);
  EXPECT_EQ(s.code(), ErrorCode::kPermissionDenied);
  EXPECT_NE(s.message().find("are not those of a rank worker-1 runs"), std::string::npos) << s.message();
  EXPECT_EQ(fetch("worker-3", id, mine.train_digest.images_sha256).code(), ErrorCode::kPermissionDenied)
      << "a worker outside the job";
  EXPECT_EQ(fetch("worker-1", id, mine.train_digest.images_sha256, 1).code(), ErrorCode::kFailedPrecondition)
      << "another attempt's";
  EXPECT_EQ(fetch("worker-1", "job-unknown", mine.train_digest.images_sha256).code(), ErrorCode::kNotFound);
  EXPECT_EQ(fetch("ps-1", id, mine.train_digest.images_sha256).code(), ErrorCode::kFailedPrecondition)
      << "only workers";
  CoordinatorState without(options(), store_.get(), "mem");  // no records directory
  Envelope e = make(msg::FetchRecords{mine.train_digest.images_sha256, 0, 1024}, id);
  e.sender = "worker-1";
  EXPECT_NE(without.authorize_fetch(e).message().find("keeps no records to ship"), std::string::npos);
}

TEST_F(CoordinatorShippingTest, HowAWorkerCameByARanksRecordsIsRecordedWithTheDigestsItWasHeldTo) {
  register_nodes(2);
  const std::string id = submit();
  Outbox out = send("P1", msg::KeyRangeReady{0, 36}, id);
  const msg::AssignTask* rank1 = nullptr;
  for (const auto* t : of_type<msg::AssignTask>(out))
    if (t->envelope.get<msg::AssignTask>()->rank == 1) rank1 = t->envelope.get<msg::AssignTask>();
  ASSERT_NE(rank1, nullptr);
  send("W2", msg::ShardObtained{1, msg::ShardSource::kFetched, "the coordinator at tcp://c:5555", 2200, 40}, id);
  send("W1", msg::ShardObtained{1, msg::ShardSource::kLocal, "forged", 0, 1}, id);  // not worker-1's rank
  auto found = store_->find({{"type", "event"}, {"event", "shard_obtained"}, {"run", id}});
  ASSERT_TRUE(found.is_ok());
  ASSERT_EQ(found->size(), 1u) << "only the rank's own worker is recorded";
  const auto& e = found->front().body;
  EXPECT_EQ(e["node"], "node:worker-2");
  EXPECT_EQ(e["rank"], 1);
  EXPECT_EQ(e["how"], "fetched");
  EXPECT_EQ(e["bytes_fetched"], 2200);
  EXPECT_EQ(e["verified"]["train_images_sha256"], rank1->train_digest.images_sha256);
  EXPECT_EQ(e["verified"]["test_labels_sha256"], rank1->test_digest.labels_sha256);
}

}  // namespace
}  // namespace custody::actors
