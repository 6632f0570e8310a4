// A worker's task intake, attempt fencing and reports, one message at a time with a
// controlled clock.
#include "actors/worker_state.h"

#include <gtest/gtest.h>

namespace custody::actors {
namespace {

using namespace std::chrono_literals;
using msg::Envelope;

class WorkerStateTest : public ::testing::Test {
 protected:
  WorkerStateTest() : state_(NodeLink(registration(), "tcp://coordinator:5555", 10s, "node-token", now_)) {}

  static msg::Register registration() {
    msg::Register r;
    r.role = msg::NodeRole::kWorker;
    r.name = "worker-1";
    return r;
  }
  WorkerActions from_coordinator(msg::Body body, const std::string& job = "", uint32_t attempt = 0) {
    Envelope e;
    e.sender = "coordinator";
    e.job_id = job;
    e.attempt = attempt;
    e.request_id = 9;
    e.body = std::move(body);
    return state_.handle(e, now_);
  }
  void registered() { from_coordinator(msg::RegisterAck{"worker-1", 100}); }
  // Rank `rank` of a job of 2 ranks whose 10 parameters two servers hold.
  static msg::AssignTask task(uint32_t rank) {
    msg::AssignTask t;
    t.rank = rank;
    t.shard = {"data-hash", rank, 2, rank * 50, rank * 50 + 50};
    t.test_begin = 0;
    t.test_end = 10;
    t.steps_per_epoch = 5;
    t.servers = {{"ps-1", "tcp://ps:1", 0, 4}, {"ps-2", "tcp://ps:2", 4, 10}};
    t.num_parameters = 10;
    return t;
  }
  WorkerActions assign(const std::string& job, uint32_t attempt, uint32_t rank) {
    return from_coordinator(task(rank), job, attempt);
  }
  WorkerActions stop(const std::string& job, uint32_t attempt) {
    return from_coordinator(msg::StopJob{"cancelled"}, job, attempt);
  }
  WorkerActions end(const std::string& job, uint32_t attempt, uint32_t rank, Status result = Status::ok()) {
    return state_.on_trainer_end({job, attempt, rank}, result);
  }
  // The (job, attempt, rank) of each trainer the actions start.
  static std::vector<std::tuple<std::string, uint32_t, uint32_t>> started(const WorkerActions& a) {
    std::vector<std::tuple<std::string, uint32_t, uint32_t>> out;
    for (const Envelope& e : a.start) out.emplace_back(e.job_id, e.attempt, e.get<msg::AssignTask>()->rank);
    return out;
  }
  static const msg::Error* error_in(const WorkerActions& a) {
    return a.outbox.size() == 1 ? a.outbox[0].envelope.get<msg::Error>() : nullptr;
  }
  static bool nothing(const WorkerActions& a) {
    return a.outbox.empty() && a.start.empty() && !a.stop_trainers;
  }

  SteadyClock::time_point now_ = SteadyClock::now();
  WorkerState state_;
};

using Started = std::vector<std::tuple<std::string, uint32_t, uint32_t>>;

TEST_F(WorkerStateTest, AnAssignedTaskStartsATrainerAndARepeatedAssignmentDoesNot) {
  registered();
  WorkerActions a = assign("job-1", 0, 1);
  EXPECT_EQ(started(a), (Started{{"job-1", 0, 1}}));
  EXPECT_TRUE(a.outbox.empty());
  EXPECT_EQ(state_.job(), "job-1");
  EXPECT_TRUE(nothing(assign("job-1", 0, 1))) << "the same rank again";
  EXPECT_EQ(state_.running_ranks(), (std::set<uint32_t>{1}));
}

TEST_F(WorkerStateTest, AnotherRankOfTheSameAttemptStartsBesideTheFirst) {
  assign("job-1", 3, 0);
  EXPECT_EQ(started(assign("job-1", 3, 1)), (Started{{"job-1", 3, 1}}));
  EXPECT_EQ(state_.running_ranks(), (std::set<uint32_t>{0, 1}));
}

TEST_F(WorkerStateTest, ATaskOfAnOlderAttemptIsDropped) {
  assign("job-1", 2, 0);
  EXPECT_TRUE(nothing(assign("job-1", 1, 1))) << "attempt 1 was rolled back; attempt 2 runs";
  EXPECT_EQ(state_.attempt(), 2u);
  EXPECT_EQ(state_.running_ranks(), (std::set<uint32_t>{0}));
  EXPECT_EQ(state_.queued(), 0u);
}

TEST_F(WorkerStateTest, ANewerAttemptStopsTheRunningOneAndStartsOnceItsTrainersHaveEnded) {
  assign("job-1", 0, 0);
  assign("job-1", 0, 1);
  WorkerActions a = assign("job-1", 1, 0);
  EXPECT_TRUE(a.stop_trainers);
  EXPECT_TRUE(a.start.empty()) << "not beside the trainers of attempt 0";
  EXPECT_TRUE(state_.stopping());
  EXPECT_TRUE(nothing(end("job-1", 0, 0, Status(ErrorCode::kCancelled, "stopped"))));
  // A server that released attempt 0 refused the other trainer's push: the stop arriving
  // by another path, not a failure to report.
  a = end("job-1", 0, 1, failed_precondition("parameter server ps-1: attempt 0 of job-1 was replaced"));
  EXPECT_TRUE(a.outbox.empty());
  EXPECT_EQ(started(a), (Started{{"job-1", 1, 0}}));
  EXPECT_EQ(state_.attempt(), 1u);
  EXPECT_FALSE(state_.stopping());
}

TEST_F(WorkerStateTest, WhileStoppingOnlyTheNewestQueuedAttemptOfAJobIsKept) {
  assign("job-1", 0, 0);
  assign("job-1", 2, 0);
  EXPECT_TRUE(nothing(assign("job-1", 1, 0))) << "older than the attempt queued";
  assign("job-1", 3, 0);
  assign("job-1", 3, 1);
  assign("job-1", 3, 1);
  EXPECT_EQ(state_.queued(), 2u) << "attempt 3's two ranks; attempt 2 was replaced, the repeat ignored";
  EXPECT_EQ(started(end("job-1", 0, 0, Status(ErrorCode::kCancelled, "stopped"))),
            (Started{{"job-1", 3, 0}, {"job-1", 3, 1}}));
}

TEST_F(WorkerStateTest, AStopJobStopsTheAttemptItNamesButNotANewerOne) {
  assign("job-1", 1, 0);
  EXPECT_TRUE(nothing(stop("job-1", 0))) << "the stop of a rolled-back attempt";
  EXPECT_TRUE(nothing(stop("job-2", 1))) << "another job";
  EXPECT_FALSE(state_.stopping());
  EXPECT_TRUE(stop("job-1", 1).stop_trainers);
  EXPECT_TRUE(state_.stopping());
  EXPECT_TRUE(nothing(end("job-1", 1, 0, Status(ErrorCode::kCancelled, "stopped"))));
  EXPECT_EQ(state_.job(), "") << "idle";
}

TEST_F(WorkerStateTest, AStopJobDropsTheQueuedTasksOfItsAttempt) {
  assign("job-1", 0, 0);
  assign("job-1", 1, 0);
  EXPECT_EQ(state_.queued(), 1u);
  stop("job-1", 1);
  EXPECT_EQ(state_.queued(), 0u);
  EXPECT_TRUE(nothing(end("job-1", 0, 0, Status(ErrorCode::kCancelled, "stopped"))));
  EXPECT_EQ(state_.job(), "");
}

TEST_F(WorkerStateTest, ATaskOfAnotherJobIsRefusedAsBusyWhileOneRuns) {
  registered();
  assign("job-1", 0, 0);
  WorkerActions a = assign("job-2", 4, 0);
  EXPECT_TRUE(a.start.empty());
  const msg::Error* err = error_in(a);
  ASSERT_NE(err, nullptr);
  EXPECT_EQ(err->code, ErrorCode::kFailedPrecondition);
  EXPECT_EQ(err->message, "busy with job-1");
  const Envelope& e = a.outbox[0].envelope;
  EXPECT_TRUE(a.outbox[0].to_coordinator);
  EXPECT_EQ(e.job_id, "job-2");
  EXPECT_EQ(e.attempt, 4u);
  EXPECT_EQ(e.request_id, 9u);
  EXPECT_EQ(e.sender, "worker-1");
  EXPECT_EQ(e.token, "node-token");
}

TEST_F(WorkerStateTest, ATaskOfAnotherJobWaitsWhileTheRunningOneStops) {
  assign("job-1", 0, 0);
  stop("job-1", 0);
  EXPECT_TRUE(nothing(assign("job-2", 0, 0)));
  EXPECT_EQ(started(end("job-1", 0, 0, Status(ErrorCode::kCancelled, "stopped"))),
            (Started{{"job-2", 0, 0}}));
}

TEST_F(WorkerStateTest, TrainersReportToTheCoordinatorWithTheirJobAndAttempt) {
  registered();
  assign("job-1", 2, 1);
  WorkerActions a = state_.on_report({"job-1", 2, 1}, msg::Progress{1, 5, 40, 3.5, 1000, 1});
  ASSERT_EQ(a.outbox.size(), 1u);
  const Envelope& e = a.outbox[0].envelope;
  EXPECT_TRUE(a.outbox[0].to_coordinator);
  EXPECT_EQ(e.job_id, "job-1");
  EXPECT_EQ(e.attempt, 2u);
  EXPECT_EQ(e.sender, "worker-1");
  EXPECT_EQ(e.token, "node-token");
  ASSERT_NE(e.get<msg::Progress>(), nullptr);
  EXPECT_EQ(e.get<msg::Progress>()->step, 5u);
  EXPECT_TRUE(nothing(state_.on_report({"job-1", 1, 1}, msg::TaskDone{5, 40, 1}))) << "not a trainer of ours";
  EXPECT_TRUE(nothing(state_.on_report({"job-1", 2, 0}, msg::TaskDone{5, 40, 0}))) << "not a trainer of ours";
}

TEST_F(WorkerStateTest, ATrainerThatFailsIsReportedAsAnErrorOfItsAttempt) {
  registered();
  assign("job-1", 2, 0);
  WorkerActions a = end("job-1", 2, 0, deadline_exceeded("no reply to a push from parameter server ps-1"));
  const msg::Error* err = error_in(a);
  ASSERT_NE(err, nullptr);
  EXPECT_EQ(err->code, ErrorCode::kDeadlineExceeded) << "the coordinator recovers the job";
  EXPECT_EQ(err->message, "no reply to a push from parameter server ps-1");
  EXPECT_EQ(a.outbox[0].envelope.job_id, "job-1");
  EXPECT_EQ(a.outbox[0].envelope.attempt, 2u);
  EXPECT_EQ(state_.job(), "") << "idle again";
}

TEST_F(WorkerStateTest, AFinishedOrCancelledTrainerIsNotAnError) {
  assign("job-1", 0, 0);
  assign("job-1", 0, 1);
  EXPECT_TRUE(nothing(end("job-1", 0, 0)));
  EXPECT_TRUE(nothing(end("job-1", 0, 1, Status(ErrorCode::kCancelled, "stopped"))));
  EXPECT_EQ(state_.job(), "");
}

TEST_F(WorkerStateTest, TheEndOfATrainerThatIsNotOursChangesNothing) {
  assign("job-1", 1, 0);
  EXPECT_TRUE(nothing(end("job-1", 0, 0, data_loss("late"))));
  EXPECT_TRUE(nothing(end("job-2", 1, 0)));
  EXPECT_EQ(state_.running_ranks(), (std::set<uint32_t>{0}));
}

TEST_F(WorkerStateTest, RegisteringAgainStopsTheTasksOfThePreviousCoordinatorSession) {
  registered();
  assign("job-1", 0, 0);
  from_coordinator(msg::HeartbeatAck{false});  // the coordinator no longer knows this node
  WorkerActions a = from_coordinator(msg::RegisterAck{"worker-1", 100});
  EXPECT_TRUE(a.stop_trainers) << "the new session reassigns the job from its last checkpoint";
  EXPECT_TRUE(state_.stopping());
}

TEST_F(WorkerStateTest, AMessageAWorkerDoesNotHandleIsAnsweredWithAnErrorNamingIt) {
  registered();
  WorkerActions a = from_coordinator(msg::Pull{"someone"}, "job-1", 0);
  const msg::Error* err = error_in(a);
  ASSERT_NE(err, nullptr);
  EXPECT_EQ(err->code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(err->message, "a worker does not handle 'pull' from the coordinator");
  EXPECT_TRUE(nothing(from_coordinator(msg::Error{ErrorCode::kNotFound, "no such job"})))
      << "an error is logged, never answered";
}

TEST_F(WorkerStateTest, ATaskThatCannotBeRunIsRefusedWithoutATrainer) {
  registered();
  msg::AssignTask gap = task(0);
  gap.servers[1].range_begin = 5;
  WorkerActions a = from_coordinator(gap, "job-1", 0);
  EXPECT_TRUE(a.start.empty());
  ASSERT_NE(error_in(a), nullptr);
  EXPECT_EQ(error_in(a)->code, ErrorCode::kInvalidArgument);
  EXPECT_EQ(error_in(a)->message,
            "the task for rank 0 of job-1 cannot be run: keys [4, 5) are held by no parameter server");
  a = from_coordinator(task(0), "", 0);
  ASSERT_NE(error_in(a), nullptr);
  EXPECT_EQ(error_in(a)->message, "an assignTask without a job id");
  EXPECT_EQ(state_.job(), "");
}

TEST_F(WorkerStateTest, TicksRegisterThenHeartbeatBusyWhileTrainersRun) {
  WorkerActions a = state_.tick(now_).value();
  ASSERT_EQ(a.outbox.size(), 1u);
  EXPECT_NE(a.outbox[0].envelope.get<msg::Register>(), nullptr);
  EXPECT_EQ(a.outbox[0].envelope.sender, "worker") << "no id yet";
  registered();
  now_ += 100ms;
  a = state_.tick(now_).value();
  ASSERT_EQ(a.outbox.size(), 1u);
  ASSERT_NE(a.outbox[0].envelope.get<msg::Heartbeat>(), nullptr);
  EXPECT_FALSE(a.outbox[0].envelope.get<msg::Heartbeat>()->busy);
  EXPECT_TRUE(state_.tick(now_ + 50ms).value().outbox.empty()) << "not due yet";
  assign("job-1", 0, 0);
  now_ += 100ms;
  a = state_.tick(now_).value();
  ASSERT_EQ(a.outbox.size(), 1u);
  EXPECT_TRUE(a.outbox[0].envelope.get<msg::Heartbeat>()->busy);
}

TEST_F(WorkerStateTest, ACoordinatorNeverReachedEndsTheWorkerWithAnErrorNamingIt) {
  ASSERT_TRUE(state_.tick(now_ + 5s).is_ok());
  Result<WorkerActions> a = state_.tick(now_ + 11s);
  ASSERT_FALSE(a.is_ok());
  EXPECT_EQ(a.status().code(), ErrorCode::kUnavailable);
  EXPECT_NE(a.status().message().find("could not reach the coordinator at tcp://coordinator:5555"),
            std::string::npos)
      << a.status().message();
}

// The registrations one attempt to register sends (one a second until answered) carry one
// session; after losing the coordinator the node registers with a new one, so the
// coordinator can tell retries of one registration from a node that dropped its work.
TEST_F(WorkerStateTest, RetriesOfOneRegistrationCarryOneSessionAndRegisteringAgainANewOne) {
  std::set<std::string> sessions;
  for (int i = 0; i < 4; ++i) {
    WorkerActions a = state_.tick(now_).value();
    ASSERT_EQ(a.outbox.size(), 1u);
    sessions.insert(a.outbox[0].envelope.get<msg::Register>()->session);
    now_ += 1s;
  }
  ASSERT_EQ(sessions.size(), 1u) << "every retry the same session";
  EXPECT_GE(sessions.begin()->size(), 16u) << "random, not a counter: another process cannot repeat it";
  registered();
  from_coordinator(msg::HeartbeatAck{false});
  WorkerActions a = state_.tick(now_).value();
  ASSERT_EQ(a.outbox.size(), 1u);
  const msg::Register* again = a.outbox[0].envelope.get<msg::Register>();
  ASSERT_NE(again, nullptr);
  EXPECT_NE(again->session, *sessions.begin()) << "a new registration after the coordinator lost it";
  EXPECT_EQ(again->name, "worker-1");
}

// A trainer that could not use this node's data reports its rank and that the task cannot
// run here, so the coordinator moves the rank rather than retrying it on this node.
TEST_F(WorkerStateTest, ATrainerThatCannotReadItsDataReportsItsRankAsNotRunnableHere) {
  registered();
  assign("job-1", 0, 1);
  WorkerActions a =
      state_.on_trainer_end({"job-1", 0, 1}, not_found("cannot open data file '/data/train-labels-idx1-ubyte'"), true);
  const msg::Error* err = error_in(a);
  ASSERT_NE(err, nullptr);
  EXPECT_EQ(err->rank, 1);
  EXPECT_TRUE(err->node_local);
  EXPECT_EQ(err->message, "cannot open data file '/data/train-labels-idx1-ubyte'");
}

// SIGTERM: one heartbeat{leaving} to the coordinator, every trainer stopped, nothing more
// sent or started; left once that heartbeat (not an earlier one) is acknowledged.
TEST_F(WorkerStateTest, LeavingSendsOneLeavingHeartbeatStopsTheTrainersAndWaitsForItsOwnAck) {
  registered();
  assign("job-1", 0, 0);
  WorkerActions a = state_.leave();
  ASSERT_EQ(a.outbox.size(), 1u);
  const auto* hb = a.outbox[0].envelope.get<msg::Heartbeat>();
  ASSERT_NE(hb, nullptr);
  EXPECT_TRUE(hb->leaving);
  EXPECT_TRUE(a.stop_trainers);
  EXPECT_FALSE(state_.left());
  EXPECT_TRUE(state_.leave().outbox.empty()) << "said once";
  EXPECT_TRUE(state_.tick(now_ + 5s)->outbox.empty()) << "no heartbeat or registration after leaving";
  EXPECT_TRUE(nothing(assign("job-1", 1, 0))) << "no task starts while stopping";
  EXPECT_TRUE(state_.on_report({"job-1", 0, 0}, msg::Progress{}).outbox.empty());
  from_coordinator(msg::HeartbeatAck{true});  // request id 9: an earlier heartbeat's answer
  EXPECT_FALSE(state_.left());
  Envelope ack;
  ack.sender = "coordinator";
  ack.request_id = a.outbox[0].envelope.request_id;
  ack.body = msg::HeartbeatAck{false};
  state_.handle(ack, now_);
  EXPECT_TRUE(state_.left());
  EXPECT_TRUE(end("job-1", 0, 0, Status(ErrorCode::kUnavailable, "server gone")).outbox.empty())
      << "a trainer's end after leaving is not reported";
}

TEST_F(WorkerStateTest, AnUnregisteredWorkerHasNothingToDeregister) {
  WorkerActions a = state_.leave();
  EXPECT_TRUE(a.outbox.empty());
  EXPECT_TRUE(state_.left());
}

}  // namespace
}  // namespace custody::actors
