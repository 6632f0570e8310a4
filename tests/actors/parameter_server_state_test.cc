// A parameter server's update protocol, one message at a time.
#include "actors/parameter_server_state.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <set>

#include "actors/data_plane_policy.h"
#include "core/model.h"
#include "protocols/codec.h"
#include "protocols/data_plane.h"
#include "protocols/transport.h"

namespace custody::actors {
namespace {

using msg::Envelope;

std::string spec(const char* consistency, uint32_t workers = 2, const std::string& optimizer = "learning_rate = 1.0\n") {
  return "[job]\nworkers = " + std::to_string(workers) + "\nseed = 5\nstaleness = 1\nconsistency = \"" + consistency +
         "\"\n[model]\ntype = \"softmax\"\nclasses = 4\n[optimizer]\ntype = \"sgd\"\n" + optimizer +
         "[data]\nkind = \"synthetic\"\n";
}

// The nodes the coordinator assigned the ranks to: "w1" runs rank 0, "w2" rank 1, ...
std::vector<std::string> rank_nodes(uint32_t workers = 2) {
  std::vector<std::string> out;
  for (uint32_t r = 0; r < workers; ++r) out.push_back("w" + std::to_string(r + 1));
  return out;
}

class ParameterServerStateTest : public ::testing::Test {
 protected:
  // Softmax regression 8 -> 4: 36 parameters; this server holds keys [10, 30).
  void assign(const char* consistency, uint64_t total_steps = 100, uint64_t checkpoint_every = 0,
              std::vector<float> initial = {}, uint32_t workers = 2) {
    Envelope e;
    e.job_id = "job-1";
    msg::AssignKeyRange a{spec(consistency, workers, optimizer_), 0, 10, 30, 36, workers, total_steps, 8, 50, checkpoint_every, 0,
                          std::move(initial)};
    a.rank_nodes = rank_nodes(workers);
    e.body = std::move(a);
    Outbox out = ps_.handle_control("COORD", e);
    ASSERT_EQ(out.size(), 1u);
    ASSERT_NE(out[0].envelope.get<msg::KeyRangeReady>(), nullptr);
    initial_ = ps_.values("job-1");
  }
  Outbox push(const std::string& worker, uint64_t step, std::vector<float> g, const std::string& job = "job-1") {
    Envelope e;
    e.job_id = job;
    e.request_id = step + 100;
    e.body = msg::Push{worker, step, std::move(g), 10, step, rank_of(worker)};
    return ps_.handle_data("PEER-" + worker, e);
  }
  // "w1" runs rank 0, "w2" rank 1.
  static uint32_t rank_of(const std::string& worker) {
    return worker.size() == 2 && worker[0] == 'w' ? static_cast<uint32_t>(worker[1] - '1') : 0;
  }
  static ErrorCode error_code(const Outbox& out) {
    return out.size() == 1 && out[0].envelope.get<msg::Error>() ? out[0].envelope.get<msg::Error>()->code
                                                                 : ErrorCode::kOk;
  }

  ParameterServerState ps_{"ps-1"};
  std::vector<float> initial_;
  std::string optimizer_ = "learning_rate = 1.0\n";  // the job's [optimizer] keys besides its type (sgd)
};

TEST_F(ParameterServerStateTest, HoldsItsSliceOfTheSameInitialVectorAsEveryServer) {
  assign("bsp");
  Model m({8, 4});
  auto all = m.initial_parameters(5);
  EXPECT_EQ(initial_, std::vector<float>(all.begin() + 10, all.begin() + 30));
}

TEST_F(ParameterServerStateTest, BspAppliesTheMeanOnceEveryWorkerPushed) {
  assign("bsp");
  EXPECT_TRUE(push("w1", 0, std::vector<float>(20, 1.0f)).empty()) << "w2 has not pushed yet";
  EXPECT_EQ(ps_.version("job-1"), 0u);
  Outbox out = push("w2", 0, std::vector<float>(20, 3.0f));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].peer, "PEER-w1");
  EXPECT_EQ(out[1].peer, "PEER-w2");
  EXPECT_EQ(out[0].envelope.request_id, 100u);
  const auto* p = out[0].envelope.get<msg::Params>();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->version, 1u);
  EXPECT_EQ(p->range_begin, 10u);
  for (size_t i = 0; i < 20; ++i) EXPECT_FLOAT_EQ(p->values[i], initial_[i] - 2.0f);  // lr 1 * mean 2
}

// A step's first gradient is held until the last arrives, without a copy when it shares
// its received frame; a push whose values are only borrowed from the caller is copied,
// so reusing the caller's buffer cannot change the step's update.
TEST_F(ParameterServerStateTest, BspAppliesTheMeanOfThreeWorkersAndHoldsNoBorrowedValues) {
  assign("bsp", 100, 0, {}, 3);
  std::vector<float> buffer(20, 1.0f);
  Envelope e;
  e.job_id = "job-1";
  e.request_id = 100;
  e.body = msg::Push{"w1", 0, msg::Floats::borrowed(buffer.data(), buffer.size()), 10, 0, 0};
  EXPECT_TRUE(ps_.handle_data("PEER-w1", e).empty());
  std::fill(buffer.begin(), buffer.end(), 100.0f);
  EXPECT_TRUE(push("w2", 0, std::vector<float>(20, 2.0f)).empty()) << "w3 has not pushed yet";
  Outbox out = push("w3", 0, std::vector<float>(20, 6.0f));
  ASSERT_EQ(out.size(), 3u);
  const auto* p = out[2].envelope.get<msg::Params>();
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < 20; ++i) EXPECT_FLOAT_EQ(p->values[i], initial_[i] - 3.0f);  // lr 1 * mean (1+2+6)/3
  // The next step starts from nothing held.
  EXPECT_TRUE(push("w1", 1, std::vector<float>(20, 3.0f)).empty());
  EXPECT_TRUE(push("w2", 1, std::vector<float>(20, 3.0f)).empty());
  out = push("w3", 1, std::vector<float>(20, 3.0f));
  ASSERT_EQ(out.size(), 3u);
  for (size_t i = 0; i < 20; ++i) EXPECT_FLOAT_EQ(out[0].envelope.get<msg::Params>()->values[i], initial_[i] - 6.0f);
}

// The step's replies leave one after the other: a worker in another process first, as its
// reply still has to cross the kernel; one in this process (handed over by pointer) last.
// The state machine answers in the order the pushes came and knows nothing of where its
// peers are; its actor orders the replies with remote_peers_first, as here.
TEST_F(ParameterServerStateTest, BspAnswersWorkersInOtherProcessesFirst) {
  assign("bsp");
  Envelope e;
  e.job_id = "job-1";
  e.request_id = 7;
  e.body = msg::Push{"w1", 0, std::vector<float>(20, 1.0f), 10, 0, 0};
  const std::string local = "inproc-peer-0";
  ASSERT_TRUE(transport::Context::is_in_process_peer(local));
  EXPECT_TRUE(ps_.handle_data(local, e).empty());
  Outbox out = push("w2", 0, std::vector<float>(20, 3.0f));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].peer, local) << "the state machine answers in the order the pushes came";
  EXPECT_EQ(out[0].envelope.request_id, 7u);
  remote_peers_first(out, transport::Context::is_in_process_peer);
  EXPECT_EQ(out[0].peer, "PEER-w2");
  EXPECT_EQ(out[1].peer, local);
  EXPECT_EQ(out[1].envelope.request_id, 7u) << "each reply keeps its own request id";
}

TEST(RemotePeersFirst, KeepsTheOrderWithinEachGroupAndTheCoordinatorsMessagesWithTheRemoteOnes) {
  Outbox out = {{"near-1", {}}, {"far-1", {}}, {"", {}, true}, {"near-2", {}}, {"far-2", {}}};
  remote_peers_first(out, [](const std::string& peer) { return peer.rfind("near", 0) == 0; });
  std::vector<std::string> order;
  for (const Outgoing& o : out) order.push_back(o.peer);
  EXPECT_EQ(order, (std::vector<std::string>{"far-1", "", "far-2", "near-1", "near-2"}));
}

TEST_F(ParameterServerStateTest, BspRefusesAReplayedPushInsteadOfApplyingItTwice) {
  assign("bsp");
  push("w1", 0, std::vector<float>(20, 1.0f));
  EXPECT_EQ(error_code(push("w1", 0, std::vector<float>(20, 1.0f))), ErrorCode::kFailedPrecondition);
  Outbox out = push("w2", 0, std::vector<float>(20, 1.0f));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_FLOAT_EQ(out[0].envelope.get<msg::Params>()->values[0], initial_[0] - 1.0f);
  EXPECT_EQ(ps_.version("job-1"), 1u);
}

TEST_F(ParameterServerStateTest, BspRefusesAPushForAnotherStep) {
  assign("bsp");
  Outbox out = push("w1", 3, std::vector<float>(20, 1.0f));
  EXPECT_EQ(error_code(out), ErrorCode::kFailedPrecondition);
  EXPECT_NE(out[0].envelope.get<msg::Error>()->message.find("step 3"), std::string::npos);
}

TEST_F(ParameterServerStateTest, RefusesGradientsOfTheWrongLength) {
  assign("bsp");
  Outbox out = push("w1", 0, std::vector<float>(19, 1.0f));
  EXPECT_EQ(error_code(out), ErrorCode::kInvalidArgument);
  EXPECT_NE(out[0].envelope.get<msg::Error>()->message.find("19"), std::string::npos);
}

TEST_F(ParameterServerStateTest, RefusesNonFiniteGradientsAndKeepsItsValues) {
  assign("asp");
  std::vector<float> g(20, 1.0f);
  g[7] = std::nanf("");
  Outbox out = push("w1", 0, g);
  EXPECT_EQ(error_code(out), ErrorCode::kInvalidArgument);
  EXPECT_NE(out[0].envelope.get<msg::Error>()->message.find("key 17"), std::string::npos);
  g[7] = INFINITY;
  EXPECT_EQ(error_code(push("w1", 1, g)), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ps_.values("job-1"), initial_);
  EXPECT_EQ(ps_.version("job-1"), 0u);
}

TEST_F(ParameterServerStateTest, UnknownJobIsNotFound) {
  Outbox out = push("w1", 0, std::vector<float>(20, 1.0f), "job-nope");
  EXPECT_EQ(error_code(out), ErrorCode::kNotFound);
}

TEST_F(ParameterServerStateTest, AspAppliesEachPushOnArrivalAndRefusesReplays) {
  assign("asp");
  Outbox out = push("w1", 0, std::vector<float>(20, 1.0f));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].envelope.get<msg::Params>()->version, 1u);
  EXPECT_FLOAT_EQ(out[0].envelope.get<msg::Params>()->values[0], initial_[0] - 1.0f);
  out = push("w2", 0, std::vector<float>(20, 1.0f));
  EXPECT_EQ(out[0].envelope.get<msg::Params>()->version, 2u);
  EXPECT_EQ(error_code(push("w1", 0, std::vector<float>(20, 1.0f))), ErrorCode::kFailedPrecondition);
  EXPECT_EQ(ps_.version("job-1"), 2u);
}

TEST_F(ParameterServerStateTest, StopJobReleasesTheRange) {
  assign("bsp");
  Envelope stop;
  stop.job_id = "job-1";
  stop.body = msg::StopJob{"done"};
  stop.request_id = 12;
  Outbox out = ps_.handle_control("COORD", stop);
  EXPECT_EQ(ps_.num_jobs(), 0u);
  ASSERT_EQ(out.size(), 1u) << "the coordinator hears how far the attempt had got";
  EXPECT_EQ(out[0].peer, "COORD");
  const auto* released = out[0].envelope.get<msg::JobReleased>();
  ASSERT_NE(released, nullptr);
  EXPECT_EQ(released->applied_step, 0u);
  EXPECT_EQ(released->range_begin, 10u);
  EXPECT_EQ(released->range_end, 30u);
  EXPECT_TRUE(ps_.handle_control("COORD", stop).empty()) << "a job it no longer holds is not answered";
}

// Regression (issue 11, item 8): a rollback's record took the step from the workers'
// progress reports, which lag; the server says what it had applied when it is stopped.
TEST_F(ParameterServerStateTest, StopJobAnswersWithTheStepsTheAttemptApplied) {
  assign("bsp");
  for (uint64_t step = 0; step < 3; ++step) {
    push("w1", step, std::vector<float>(20, 0.5f));
    push("w2", step, std::vector<float>(20, 0.5f));
  }
  push("w1", 3, std::vector<float>(20, 0.5f));  // step 3 is not complete: not applied
  Envelope stop;
  stop.job_id = "job-1";
  stop.body = msg::StopJob{"rolled back"};
  Outbox out = ps_.handle_control("COORD", stop);
  ASSERT_EQ(out.size(), 1u);
  const auto* released = out[0].envelope.get<msg::JobReleased>();
  ASSERT_NE(released, nullptr);
  EXPECT_EQ(released->applied_step, 3u);
  EXPECT_EQ(released->updates, 3u);
  EXPECT_EQ(out[0].envelope.attempt, 0u);
}

// Replies are addressed when their request comes (msg::reply_to), also those sent later.
TEST_F(ParameterServerStateTest, RepliesCarryTheirRequestsJobRequestIdAndAttempt) {
  Envelope e;
  e.job_id = "job-1";
  e.request_id = 5;
  e.attempt = 2;
  msg::AssignKeyRange a{spec("bsp"), 0, 10, 30, 36, 2, 100, 8, 50, 0, 0, {}};
  a.rank_nodes = rank_nodes();
  e.body = std::move(a);
  Outbox out = ps_.handle_control("COORD", e);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].envelope.sender, "ps-1");
  EXPECT_EQ(out[0].envelope.request_id, 5u);
  EXPECT_EQ(out[0].envelope.attempt, 2u);
  for (uint32_t rank : {0u, 1u}) {
    e.request_id = 40 + rank;
    e.body = msg::Push{"w" + std::to_string(rank + 1), 0, std::vector<float>(20, 1.0f), 10, 0, rank};
    out = ps_.handle_data("PEER-" + std::to_string(rank), e);
  }
  ASSERT_EQ(out.size(), 2u) << "the step's replies, the first deferred until the second push";
  for (uint32_t rank : {0u, 1u}) {
    const Envelope& reply = out[rank].envelope;
    EXPECT_EQ(reply.sender, "ps-1");
    EXPECT_EQ(reply.job_id, "job-1");
    EXPECT_EQ(reply.request_id, 40u + rank);
    EXPECT_EQ(reply.attempt, 2u);
    EXPECT_EQ(reply.token, "");
    ASSERT_NE(reply.get<msg::Params>(), nullptr);
    EXPECT_EQ(reply.get<msg::Params>()->version, 1u);
  }
  e.request_id = 6;
  e.attempt = 3;
  e.body = msg::StopJob{"rolled back"};
  out = ps_.handle_control("COORD", e);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_NE(out[0].envelope.get<msg::JobReleased>(), nullptr);
  EXPECT_EQ(out[0].envelope.request_id, 6u);
  EXPECT_EQ(out[0].envelope.attempt, 2u) << "the attempt it let go of, not the stop's";
}

TEST_F(ParameterServerStateTest, RangeThatDoesNotFitTheModelIsRefused) {
  Envelope e;
  e.job_id = "job-2";
  msg::AssignKeyRange a{spec("bsp"), 0, 10, 99, 36, 2, 100, 8, 50, 0, 0, {}};
  a.rank_nodes = rank_nodes();
  e.body = std::move(a);
  Outbox out = ps_.handle_control("COORD", e);
  EXPECT_EQ(error_code(out), ErrorCode::kInvalidArgument);
}

std::vector<const msg::CheckpointShard*> checkpoints(const Outbox& out) {
  std::vector<const msg::CheckpointShard*> r;
  for (const auto& o : out) {
    if (auto* c = o.envelope.get<msg::CheckpointShard>()) {
      EXPECT_TRUE(o.to_coordinator);
      r.push_back(c);
    }
  }
  return r;
}

TEST_F(ParameterServerStateTest, CheckpointsEveryKStepsWithWhatEachWorkerContributed) {
  assign("bsp", /*total_steps=*/4, /*checkpoint_every=*/2);
  std::vector<float> g(20, 0.0f);
  g[0] = 3.0f;
  g[1] = 4.0f;  // L2 norm 5
  std::vector<float> nan(20, std::nanf(""));
  EXPECT_EQ(error_code(push("w1", 0, nan)), ErrorCode::kInvalidArgument);
  push("w1", 0, g);
  Outbox first = push("w2", 0, g);
  EXPECT_TRUE(checkpoints(first).empty()) << "step 1 is not due";
  push("w1", 1, g);
  Outbox out = push("w2", 1, g);
  auto c = checkpoints(out);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0]->step, 2u);
  EXPECT_FALSE(c[0]->final);
  EXPECT_EQ(c[0]->range_begin, 10u);
  EXPECT_EQ(c[0]->values, ps_.values("job-1"));
  ASSERT_EQ(c[0]->contributions.size(), 2u);
  const msg::Contribution& w1 = c[0]->contributions[0];
  EXPECT_EQ(w1.worker, "w1");
  EXPECT_EQ(w1.accepted, 2u);
  EXPECT_EQ(w1.rejected, 1u);
  EXPECT_EQ(w1.samples, 20u);
  EXPECT_DOUBLE_EQ(w1.update_norm_sum, 10.0);
  EXPECT_EQ(w1.staleness_max, 0u) << "BSP workers always compute on the newest values";
  EXPECT_EQ(c[0]->contributions[1].rejected, 0u);

  push("w1", 2, g);
  push("w2", 2, g);
  push("w1", 3, g);
  Outbox final_out = push("w2", 3, g);  // the shards point into it
  c = checkpoints(final_out);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0]->step, 4u);
  EXPECT_TRUE(c[0]->final);
  EXPECT_EQ(c[0]->contributions[0].accepted, 2u) << "counts restart with each interval";
  EXPECT_EQ(c[0]->contributions[0].rejected, 0u);
}

TEST_F(ParameterServerStateTest, AspMeasuresStaleness) {
  assign("asp", /*total_steps=*/1, /*checkpoint_every=*/0);
  Envelope e;
  e.job_id = "job-1";
  e.body = msg::Push{"w1", 0, std::vector<float>(20, 1.0f), 10, 0, 0};
  ps_.handle_data("P1", e);
  e.body = msg::Push{"w2", 0, std::vector<float>(20, 1.0f), 10, 0, 1};  // computed on version 0, applied at 1
  Outbox out = ps_.handle_data("P2", e);
  auto c = checkpoints(out);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_TRUE(c[0]->final);
  EXPECT_EQ(c[0]->contributions[1].worker, "w2");
  EXPECT_EQ(c[0]->contributions[1].staleness_max, 1u);
}

// ASP's checkpoints are a consistent cut: a rank that has pushed up to the checkpoint
// waits there until every rank has, so the checkpoint of step 2 holds exactly 2 steps of
// each rank (before, w1 ran on and the checkpoint at 4 pushes held 3 of w1 and 1 of w2: a
// rollback to it pushed w1's third step again and never w2's second).
TEST_F(ParameterServerStateTest, AspRanksMeetAtEachCheckpointSoItHoldsTheSameStepsOfEach) {
  assign("asp", /*total_steps=*/4, /*checkpoint_every=*/2);
  std::vector<float> g(20, 1.0f);
  EXPECT_EQ(push("w1", 0, g).size(), 1u) << "before the cut: answered at once";
  EXPECT_TRUE(push("w1", 1, g).empty()) << "w1 reached the checkpoint first: it waits";
  EXPECT_EQ(ps_.version("job-1"), 2u) << "its update is applied at once";
  EXPECT_EQ(push("w2", 0, g).size(), 1u);
  Outbox out = push("w2", 1, g);
  auto c = checkpoints(out);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0]->step, 2u);
  ASSERT_EQ(c[0]->contributions.size(), 2u);
  EXPECT_EQ(c[0]->contributions[0].accepted, 2u);
  EXPECT_EQ(c[0]->contributions[1].accepted, 2u);
  std::set<std::string> answered;
  for (const auto& o : out)
    if (o.envelope.get<msg::Params>()) answered.insert(o.peer);
  EXPECT_EQ(answered, (std::set<std::string>{"PEER-w1", "PEER-w2"})) << "both go on";
  EXPECT_EQ(push("w1", 2, g).size(), 1u);
  EXPECT_EQ(push("w1", 3, g).size(), 1u) << "the last step is no fence: the job ends there";
}

TEST_F(ParameterServerStateTest, SspHoldsAWorkerThatWouldRunMoreThanTheBoundAhead) {
  assign("ssp");  // staleness 1
  std::vector<float> g(20, 1.0f);
  Outbox out = push("w1", 0, g);
  ASSERT_EQ(out.size(), 1u) << "w1 at 1 step, slowest at 0: within the bound";
  EXPECT_EQ(out[0].envelope.get<msg::Params>()->version, 1u);
  EXPECT_TRUE(push("w1", 1, g).empty()) << "w1 at 2 steps would be 2 ahead of w2: held";
  EXPECT_EQ(ps_.held_workers("job-1"), std::vector<std::string>{"w1"});
  EXPECT_EQ(ps_.version("job-1"), 2u) << "the update itself is applied at once";
  out = push("w2", 0, g);
  ASSERT_EQ(out.size(), 2u) << "w2 caught up: both answered";
  EXPECT_EQ(out[0].peer, "PEER-w1");
  EXPECT_EQ(out[0].envelope.request_id, 101u);
  EXPECT_EQ(out[1].peer, "PEER-w2");
  EXPECT_EQ(out[0].envelope.get<msg::Params>()->version, 3u);
  EXPECT_TRUE(ps_.held_workers("job-1").empty());
  EXPECT_EQ(error_code(push("w2", 0, g)), ErrorCode::kFailedPrecondition) << "replays are refused as in ASP";
}

// Issue 17: the schedule runs over the updates the server applies. Under BSP a step is one
// update; under ASP and SSP every worker's push is one, so a job of 4 steps on 2 workers
// applies 8 and the cosine reaches 0 only after the last of them (it used to reach 0 after
// the fourth and train the second half of the job at rate 0). With SGD and a gradient of
// ones, each update moves every value by exactly minus the rate it used.
std::vector<double> rates_of_each_update(ParameterServerState& ps, const std::vector<float>& before_all,
                                         const std::function<void()>& next_update, int updates) {
  std::vector<double> rates;
  std::vector<float> before = before_all;
  for (int u = 0; u < updates; ++u) {
    next_update();
    std::vector<float> after = ps.values("job-1");
    rates.push_back(double(before[0]) - double(after[0]));
    before = after;
  }
  return rates;
}

double cosine(double lr, double position, double total) { return 0.5 * lr * (1.0 + std::cos(M_PI * position / total)); }

TEST_F(ParameterServerStateTest, TheCosineScheduleSpansEveryUpdateOfTheJobUnderEachConsistencyModel) {
  optimizer_ = "learning_rate = 0.1\nschedule = \"cosine\"\n";
  const std::vector<float> ones(20, 1.0f);
  for (const char* consistency : {"bsp", "asp", "ssp"}) {
    SCOPED_TRACE(consistency);
    ps_ = ParameterServerState("ps-1");
    assign(consistency, /*total_steps=*/4);
    const bool bsp = std::string(consistency) == "bsp";
    uint64_t step = 0;
    int pushes = 0;
    // BSP: an update once both ranks pushed the step; ASP and SSP: one per push, the ranks
    // alternating (SSP's bound of 1 is never exceeded).
    auto next_update = [&] {
      if (bsp) {
        push("w1", step, ones);
        push("w2", step, ones);
        ++step;
      } else {
        push(pushes % 2 == 0 ? "w1" : "w2", static_cast<uint64_t>(pushes / 2), ones);
        ++pushes;
      }
    };
    const int updates = bsp ? 4 : 8;
    std::vector<double> rates = rates_of_each_update(ps_, initial_, next_update, updates);
    ASSERT_EQ(rates.size(), size_t(updates));
    for (int u = 0; u < updates; ++u) {
      EXPECT_NEAR(rates[u], cosine(0.1, u, updates), 1e-6) << "update " << u;
    }
    EXPECT_GT(rates.back(), 0.001) << "the last update still learns";
  }
}

// Issue 11, item 9: a job interrupted at a checkpoint and resumed must end on the same
// values as the job run straight through, bit for bit. The optimizer's state travels with
// the checkpoint shard; a new server that takes it (and the values and the step) goes on
// where the first left off: momentum's velocity, Adam's moments and bias-correction step,
// and the cosine schedule's position.
class OptimizerStateResumeTest : public ::testing::TestWithParam<const char*> {
 protected:
  static constexpr uint64_t kSteps = 12, kInterruptAt = 5;
  static std::string spec() {
    return std::string("[job]\nworkers = 2\nseed = 5\nconsistency = \"bsp\"\n[model]\ntype = \"softmax\"\n"
                       "classes = 4\n[optimizer]\ntype = \"") +
           GetParam() +
           "\"\nlearning_rate = 0.1\nschedule = \"cosine\"\nweight_decay = 0.01\n[data]\nkind = "
           "\"synthetic\"\n";
  }
  // Keys [10, 30) of the softmax 8 -> 4 (36 parameters), from `start` with what it carries.
  static void assign(ParameterServerState& ps, uint64_t start, std::vector<float> values,
                     std::vector<float> optimizer_state, uint64_t optimizer_steps) {
    Envelope e;
    e.job_id = "job-1";
    msg::AssignKeyRange a{spec(), 0, 10, 30, 36, 2, kSteps, 8, 50, kInterruptAt, start, std::move(values)};
    a.optimizer_state = std::move(optimizer_state);
    a.optimizer_steps = optimizer_steps;
    a.rank_nodes = rank_nodes();
    e.body = std::move(a);
    Outbox out = ps.handle_control("COORD", e);
    ASSERT_EQ(out.size(), 1u);
    ASSERT_NE(out[0].envelope.get<msg::KeyRangeReady>(), nullptr)
        << (out[0].envelope.get<msg::Error>() ? out[0].envelope.get<msg::Error>()->message : "");
  }
  // The same gradients in either run: a function of (rank, step, key) only.
  static std::vector<float> gradient(uint32_t rank, uint64_t step) {
    std::vector<float> g(20);
    for (size_t i = 0; i < g.size(); ++i) {
      g[i] = std::sin(0.37f * static_cast<float>(i + 1) * static_cast<float>(step + 1) + static_cast<float>(rank)) *
             (1.0f + 0.1f * static_cast<float>(step));
    }
    return g;
  }
  // Steps [from, to) of both ranks; returns the checkpoint shards the server sent.
  static std::vector<msg::CheckpointShard> run(ParameterServerState& ps, uint64_t from, uint64_t to) {
    std::vector<msg::CheckpointShard> shards;
    for (uint64_t step = from; step < to; ++step) {
      for (uint32_t rank = 0; rank < 2; ++rank) {
        Envelope e;
        e.job_id = "job-1";
        e.request_id = step;
        e.body = msg::Push{"w" + std::to_string(rank + 1), step, gradient(rank, step), 10, step, rank};
        for (auto& o : ps.handle_data("PEER", e)) {
          EXPECT_EQ(o.envelope.get<msg::Error>(), nullptr) << o.envelope.get<msg::Error>()->message;
          if (auto* c = o.envelope.get<msg::CheckpointShard>()) shards.push_back(*c);
        }
      }
    }
    return shards;
  }
};

TEST_P(OptimizerStateResumeTest, AResumedServerEndsOnTheValuesOfTheUninterruptedRunBitForBit) {
  ParameterServerState straight("ps-1");
  assign(straight, 0, {}, {}, 0);
  run(straight, 0, kSteps);
  const std::vector<float> expected = straight.values("job-1");

  ParameterServerState first("ps-1");
  assign(first, 0, {}, {}, 0);
  auto shards = run(first, 0, kInterruptAt);
  ASSERT_EQ(shards.size(), 1u);
  const msg::CheckpointShard& c = shards[0];
  ASSERT_EQ(c.step, kInterruptAt);
  const size_t blocks = std::string(GetParam()) == "adam" ? 2 : 1;
  ASSERT_EQ(c.optimizer_state.size(), blocks * 20) << "one block of the range's length per state tensor";
  EXPECT_EQ(c.optimizer_steps, kInterruptAt);

  // A new server that knows nothing but the checkpoint. Its values land elsewhere in memory
  // (each padding shifts them): the update must not depend on their alignment.
  for (size_t pad = 0; pad < 8; ++pad) {
    std::vector<float> padding(pad + 1);
    ParameterServerState resumed("ps-2");
    assign(resumed, c.step, c.values, c.optimizer_state, c.optimizer_steps);
    run(resumed, kInterruptAt, kSteps);
    const std::vector<float> got = resumed.values("job-1");
    ASSERT_EQ(got.size(), expected.size());
    EXPECT_EQ(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)), 0)
        << "not bit for bit (padding " << pad << ")";
  }

  // What the resume did before: the same checkpoint with the optimizer from zeros.
  ParameterServerState fresh("ps-3");
  assign(fresh, c.step, c.values, {}, 0);
  run(fresh, kInterruptAt, kSteps);
  EXPECT_NE(fresh.values("job-1"), expected) << "the test would not see a lost optimizer state";
}

INSTANTIATE_TEST_SUITE_P(MomentumAndAdam, OptimizerStateResumeTest, ::testing::Values("momentum", "adam"));

TEST(OptimizerStateResume, StateOfTheWrongSizeIsRefusedNamingIt) {
  ParameterServerState ps("ps-1");
  Envelope e;
  e.job_id = "job-1";
  msg::AssignKeyRange a{"[job]\nworkers = 2\n[model]\ntype = \"softmax\"\nclasses = 4\n[optimizer]\ntype = "
                        "\"adam\"\n[data]\nkind = \"synthetic\"\n",
                        0, 10, 30, 36, 2, 10, 8, 50, 5, 5, std::vector<float>(20, 0.0f)};
  a.optimizer_state.assign(20, 0.0f);  // adam keeps two blocks
  a.rank_nodes = rank_nodes();
  e.body = std::move(a);
  Outbox out = ps.handle_control("COORD", e);
  ASSERT_EQ(out.size(), 1u);
  const auto* err = out[0].envelope.get<msg::Error>();
  ASSERT_NE(err, nullptr);
  EXPECT_EQ(err->code, ErrorCode::kInvalidArgument);
  EXPECT_NE(err->message.find("adam state of 20 floats"), std::string::npos) << err->message;
  EXPECT_EQ(ps.num_jobs(), 0u);
}

TEST_F(ParameterServerStateTest, StartsFromGivenValuesWhenResumedOrFineTuned) {
  std::vector<float> start(20, 0.25f);
  assign("bsp", 100, 0, start);
  EXPECT_EQ(ps_.values("job-1"), start);
}

// A job whose data plane is sealed (protocols/data_plane.h), with the keys the coordinator
// makes for an attempt: this server holds keys [10, 30) of the softmax 8 -> 4 model, rank 0
// runs on "w1" and rank 1 on "w2". Every message goes through the codec, as over the wire.
class SealedParameterServerTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kBegin = 10, kEnd = 30;
  // Assigns the job with the attempt's keys for this range (or, with `range_keys_of`, the
  // keys of another range: a test of what the seal binds beyond the key).
  Outbox assign(const char* consistency, uint32_t attempt = 0, uint64_t total_steps = 100,
                uint64_t checkpoint_every = 0, ParameterServerState* ps = nullptr, uint64_t begin = kBegin,
                uint64_t end = kEnd) {
    msg::AssignKeyRange a{spec(consistency), 0, begin, end, 36, 2, total_steps, 8, 50, checkpoint_every, 0, {}};
    a.rank_nodes = rank_nodes();
    keys_.fill(a, 0);
    Envelope e;
    e.job_id = "job-1";
    e.attempt = attempt;
    e.body = std::move(a);
    return (ps ? *ps : ps_).handle_control("COORD", e);
  }
  // Rank r's key at this server, derived as its worker derives it from its task's key.
  AeadKey push_key(uint32_t rank) const {
    msg::AssignTask t;
    t.rank = rank;
    keys_.fill(t);
    return data_plane::server_key(*t.rank_key, kBegin, kEnd).value();
  }
  AeadKey reply_key() const {
    msg::AssignTask t;
    keys_.fill(t);
    return data_plane::server_key(*t.replies_key, kBegin, kEnd).value();
  }
  // Worker w<rank+1>'s push of `step`, sealed under `key` for `attempt`.
  Envelope sealed_push(uint32_t rank, uint64_t step, const std::vector<float>& g, const AeadKey& key,
                       uint32_t attempt = 0) const {
    Envelope e;
    e.job_id = "job-1";
    e.attempt = attempt;
    e.request_id = 100 + step;
    msg::Push p{"w" + std::to_string(rank + 1), step, {}, 10, step, rank};
    p.sealed_gradient = data_plane::seal_floats(key, g.data(), g.size(),
                                                data_plane::push_aad("job-1", attempt, rank, step, kBegin, kEnd, 10, step))
                            .value();
    e.body = std::move(p);
    return e;
  }
  Outbox deliver(const Envelope& e, ParameterServerState* ps = nullptr) {
    return (ps ? *ps : ps_).handle_data("PEER", msg::decode(msg::encode(e)).value());
  }
  static ErrorCode code(const Outbox& out) {
    return out.size() == 1 && out[0].envelope.get<msg::Error>() ? out[0].envelope.get<msg::Error>()->code
                                                                 : ErrorCode::kOk;
  }
  // Rank `rank`'s counts in the next checkpoint among `out`.
  static msg::Contribution counts(const Outbox& out, uint32_t rank) {
    for (const auto& o : out) {
      if (auto* c = o.envelope.get<msg::CheckpointShard>()) {
        for (const auto& k : c->contributions)
          if (k.rank == rank) return k;
      }
    }
    ADD_FAILURE() << "no checkpoint with rank " << rank;
    return {};
  }

  ParameterServerState ps_{"ps-1"};
  const AttemptKeys keys_ = AttemptKeys::make(2, {{kBegin, kEnd}}).value();
  const std::vector<float> g_ = std::vector<float>(20, 1.0f);
};

TEST_F(SealedParameterServerTest, TakesPushesSealedUnderTheirRanksKeysAndSealsTheStepsValuesOnceForEveryReply) {
  ASSERT_EQ(code(assign("bsp")), ErrorCode::kOk);
  const std::vector<float> initial = ps_.values("job-1");
  EXPECT_TRUE(deliver(sealed_push(0, 0, std::vector<float>(20, 1.0f), push_key(0))).empty());
  Outbox out = deliver(sealed_push(1, 0, std::vector<float>(20, 3.0f), push_key(1)));
  ASSERT_EQ(out.size(), 2u);
  const auto* first = out[0].envelope.get<msg::Params>();
  const auto* second = out[1].envelope.get<msg::Params>();
  ASSERT_TRUE(first && second);
  EXPECT_TRUE(first->values.empty()) << "nothing of the values in clear";
  EXPECT_EQ(first->sealed_values.data(), second->sealed_values.data()) << "one seal for the step's replies";
  std::vector<float> opened(20);
  const std::string aad = data_plane::params_aad("job-1", 0, kBegin, kEnd, 1, 0);
  ASSERT_TRUE(data_plane::open_floats(reply_key(), first->sealed_values, 20, aad, opened.data()).is_ok());
  for (size_t i = 0; i < 20; ++i) EXPECT_FLOAT_EQ(opened[i], initial[i] - 2.0f);  // lr 1 * mean of 1 and 3
  // The seal answers step 0 at version 1, and nothing else.
  EXPECT_EQ(data_plane::open_floats(reply_key(), first->sealed_values, 20,
                                    data_plane::params_aad("job-1", 0, kBegin, kEnd, 1, 1), opened.data())
                .code(),
            ErrorCode::kDataLoss);
  EXPECT_EQ(data_plane::open_floats(push_key(0), first->sealed_values, 20, aad, opened.data()).code(),
            ErrorCode::kDataLoss)
      << "a rank's own key does not open the servers' replies";
}

// A worker of the job holds its own rank's key only: it cannot push as another rank. The
// refusal is counted against the rank it claimed as unauthenticated, not as a rejection of
// the node that holds the rank (who sent nothing wrong).
TEST_F(SealedParameterServerTest, APushSealedUnderAnotherRanksKeyIsRefusedAndCountedAsUnauthenticated) {
  ASSERT_EQ(code(assign("bsp", 0, /*total_steps=*/1, /*checkpoint_every=*/1)), ErrorCode::kOk);
  Outbox refused = deliver(sealed_push(0, 0, g_, push_key(1)));  // rank 1's node, claiming rank 0
  ASSERT_EQ(code(refused), ErrorCode::kPermissionDenied);
  EXPECT_NE(refused[0].envelope.get<msg::Error>()->message.find("rank 0"), std::string::npos);
  EXPECT_EQ(ps_.version("job-1"), 0u);
  EXPECT_TRUE(deliver(sealed_push(0, 0, g_, push_key(0))).empty()) << "rank 0's own push is still taken";
  Outbox out = deliver(sealed_push(1, 0, g_, push_key(1)));
  EXPECT_EQ(ps_.version("job-1"), 1u);
  const msg::Contribution w1 = counts(out, 0), w2 = counts(out, 1);
  EXPECT_EQ(w1.worker, "w1");
  EXPECT_EQ(w1.accepted, 1u);
  EXPECT_EQ(w1.rejected, 0u);
  EXPECT_EQ(w1.unauthenticated, 1u);
  EXPECT_EQ(w1.key_fingerprint, push_key(0).fingerprint());
  EXPECT_EQ(w2.unauthenticated, 0u);
  EXPECT_EQ(w2.key_fingerprint, push_key(1).fingerprint());
}

// What a seal binds: a push captured on the wire and sent again as another step, into a
// later attempt (even one with the same keys), or to another server's range (even one
// holding the same keys) does not open.
TEST_F(SealedParameterServerTest, ACapturedPushReplayedIntoAnotherStepAttemptOrRangeIsRefused) {
  ASSERT_EQ(code(assign("asp")), ErrorCode::kOk);  // ASP would take step 1 after step 0
  const Envelope captured = sealed_push(0, 0, g_, push_key(0));
  Envelope as_step_1 = captured;
  std::get<msg::Push>(as_step_1.body).step = 1;
  EXPECT_EQ(code(deliver(as_step_1)), ErrorCode::kPermissionDenied);
  EXPECT_EQ(ps_.version("job-1"), 0u);

  ASSERT_EQ(code(assign("asp", /*attempt=*/1)), ErrorCode::kOk);
  Envelope into_attempt_1 = captured;
  into_attempt_1.attempt = 1;
  EXPECT_EQ(code(deliver(into_attempt_1)), ErrorCode::kPermissionDenied);
  EXPECT_EQ(code(deliver(captured)), ErrorCode::kFailedPrecondition) << "attempt 0 is fenced off";
  EXPECT_EQ(ps_.version("job-1"), 0u);

  ParameterServerState other("ps-2");
  ASSERT_EQ(code(assign("asp", 0, 100, 0, &other, 16, 36)), ErrorCode::kOk);
  EXPECT_EQ(code(deliver(captured, &other)), ErrorCode::kPermissionDenied);
  EXPECT_EQ(other.version("job-1"), 0u);

  ParameterServerState fresh("ps-3");
  ASSERT_EQ(code(assign("asp", 0, 100, 0, &fresh)), ErrorCode::kOk);
  Outbox taken = deliver(captured, &fresh);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_NE(taken[0].envelope.get<msg::Params>(), nullptr) << "where it was sealed for, it is taken";
}

TEST_F(SealedParameterServerTest, ASealedPushWithAlteredBytesOrFieldsIsRefused) {
  ASSERT_EQ(code(assign("asp")), ErrorCode::kOk);
  const Envelope good = sealed_push(0, 0, g_, push_key(0));
  const msg::SharedBytes& sealed = std::get<msg::Push>(good.body).sealed_gradient;
  for (size_t at : {size_t(3), size_t(kAeadNonceBytes + 5), sealed.size() - 1}) {  // nonce, ciphertext, tag
    Envelope altered = good;
    std::vector<uint8_t> bytes(sealed.data(), sealed.data() + sealed.size());
    bytes[at] ^= 0x01;
    std::get<msg::Push>(altered.body).sealed_gradient = msg::SharedBytes::copy_of(bytes.data(), bytes.size());
    EXPECT_EQ(code(deliver(altered)), ErrorCode::kPermissionDenied) << "byte " << at;
  }
  Envelope more_samples = good;
  std::get<msg::Push>(more_samples.body).samples = 1000;  // attribution counts it
  EXPECT_EQ(code(deliver(more_samples)), ErrorCode::kPermissionDenied);
  Envelope staler = good;
  std::get<msg::Push>(staler.body).base_version = 7;
  EXPECT_EQ(code(deliver(staler)), ErrorCode::kPermissionDenied);
  Envelope truncated = good;
  std::get<msg::Push>(truncated.body).sealed_gradient = msg::SharedBytes::copy_of(sealed.data(), sealed.size() - 4);
  EXPECT_EQ(code(deliver(truncated)), ErrorCode::kPermissionDenied);
  EXPECT_EQ(ps_.version("job-1"), 0u);
  ASSERT_EQ(deliver(good).size(), 1u);
  EXPECT_EQ(ps_.version("job-1"), 1u) << "the push as sealed is taken";
}

// Someone who knows the job id, a rank and the attempt, but holds no key.
TEST_F(SealedParameterServerTest, PushesAndPullsInClearAreRefusedAndAPullNeedsItsRanksKey) {
  ASSERT_EQ(code(assign("bsp", 0, 1, 1)), ErrorCode::kOk);
  Envelope push;
  push.job_id = "job-1";
  push.body = msg::Push{"w1", 0, g_, 10, 0, 0};
  Outbox refused = deliver(push);
  ASSERT_EQ(code(refused), ErrorCode::kPermissionDenied);
  EXPECT_NE(refused[0].envelope.get<msg::Error>()->message.find("in clear"), std::string::npos);
  Envelope pull;
  pull.job_id = "job-1";
  pull.request_id = 9;
  pull.body = msg::Pull{"w1", 0};
  EXPECT_EQ(code(deliver(pull)), ErrorCode::kPermissionDenied);
  const std::string aad = data_plane::pull_aad("job-1", 0, 0, kBegin, kEnd, 9);
  std::get<msg::Pull>(pull.body).seal = data_plane::seal_pull(push_key(1), aad).value();
  EXPECT_EQ(code(deliver(pull)), ErrorCode::kPermissionDenied) << "rank 1's key, claiming rank 0";
  std::get<msg::Pull>(pull.body).seal = data_plane::seal_pull(push_key(0), aad).value();
  Outbox answer = deliver(pull);
  ASSERT_EQ(answer.size(), 1u);
  const auto* p = answer[0].envelope.get<msg::Params>();
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->values.empty());
  std::vector<float> opened(20);
  ASSERT_TRUE(data_plane::open_floats(reply_key(), p->sealed_values, 20,
                                      data_plane::pull_params_aad("job-1", 0, kBegin, kEnd, 0, 0, 9), opened.data())
                  .is_ok());
  EXPECT_EQ(opened, ps_.values("job-1"));
  EXPECT_EQ(code(deliver(pull)), ErrorCode::kOk) << "a replayed pull gets values only its rank can open";
  deliver(sealed_push(0, 0, g_, push_key(0)));
  const msg::Contribution w1 = counts(deliver(sealed_push(1, 0, g_, push_key(1))), 0);
  EXPECT_EQ(w1.unauthenticated, 3u) << "the push in clear, the pull in clear, the pull under rank 1's key";
  EXPECT_EQ(w1.accepted, 1u);
}

// Without keys the server cannot tell who pushed, but it still credits what it accepts to
// the node the coordinator assigned the rank, never to the name a push gives.
TEST_F(ParameterServerStateTest, ContributionsNameTheNodeAssignedTheRankNotTheNameAPushGives) {
  assign("bsp", /*total_steps=*/1, /*checkpoint_every=*/1);
  Envelope e;
  e.job_id = "job-1";
  e.body = msg::Push{"mallory", 0, std::vector<float>(20, 1.0f), 10, 0, 0};
  EXPECT_TRUE(ps_.handle_data("PEER-m", e).empty());
  const Outbox out = push("w2", 0, std::vector<float>(20, 1.0f));
  auto c = checkpoints(out);
  ASSERT_EQ(c.size(), 1u);
  std::set<std::string> named;
  for (const auto& k : c[0]->contributions) {
    named.insert(k.worker);
    EXPECT_EQ(k.key_fingerprint, "") << "in clear: no key vouches for it";
  }
  EXPECT_EQ(named, (std::set<std::string>{"w1", "w2"}));
}

TEST_F(SealedParameterServerTest, AServerOtherHostsCanReachServesNoJobInClear) {
  ps_.set_listener_loopback_only(false, "tcp://0.0.0.0:7001");
  msg::AssignKeyRange a{spec("bsp"), 0, kBegin, kEnd, 36, 2, 100, 8, 50, 0, 0, {}};
  a.rank_nodes = rank_nodes();
  Envelope e;
  e.job_id = "job-1";
  e.body = a;
  Outbox out = ps_.handle_control("COORD", e);
  ASSERT_EQ(code(out), ErrorCode::kFailedPrecondition);
  const std::string& message = out[0].envelope.get<msg::Error>()->message;
  EXPECT_NE(message.find("tcp://0.0.0.0:7001"), std::string::npos) << message;
  EXPECT_NE(message.find("data_plane_sealing"), std::string::npos) << message;
  EXPECT_EQ(ps_.num_jobs(), 0u);
  EXPECT_EQ(code(assign("bsp")), ErrorCode::kOk) << "sealed, it serves the job";
}

TEST_F(SealedParameterServerTest, AnAssignmentWithoutTheNodesOfItsRanksOrWithPartOfItsKeysIsRefused) {
  msg::AssignKeyRange a{spec("bsp"), 0, kBegin, kEnd, 36, 2, 100, 8, 50, 0, 0, {}};
  Envelope e;
  e.job_id = "job-1";
  e.body = a;
  EXPECT_EQ(code(ps_.handle_control("COORD", e)), ErrorCode::kInvalidArgument) << "no rank nodes";
  a.rank_nodes = rank_nodes();
  keys_.fill(a, 0);
  a.rank_keys.pop_back();
  e.body = a;
  Outbox out = ps_.handle_control("COORD", e);
  ASSERT_EQ(code(out), ErrorCode::kInvalidArgument);
  EXPECT_NE(out[0].envelope.get<msg::Error>()->message.find("keys of 1 of 2 ranks"), std::string::npos);
  EXPECT_EQ(ps_.num_jobs(), 0u);
}

}  // namespace
}  // namespace custody::actors
