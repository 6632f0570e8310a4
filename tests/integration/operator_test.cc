// What an operator deploying Custody on a few machines trips on, with real processes: a
// coordinator that was unreachable for a while receives each node's queued registrations
// at once and counts them as one; a worker that cannot read its data moves its rank or
// fails the job at once, naming the cause.
#include <nlohmann/json.hpp>

#include "tests/integration/cluster.h"
#include "tests/integration/operator_helpers.h"

namespace custody::testing {
namespace {

using nlohmann::json;

size_t count_node(const std::vector<json>& registrations, const std::string& node) {
  size_t n = 0;
  for (const auto& r : registrations) n += r.value("node", "") == "node:" + node;
  return n;
}

// The coordinator stops answering (SIGSTOP: a hung host, a partition) for long enough that
// each worker gives up on it and registers again, once a second, its retries queueing on the
// connection. When it answers again they all arrive at once: one registration record each.
TEST(OperatorTest, RegistrationsQueuedWhileTheCoordinatorWasUnreachableAreOneRecordEach) {
  ClusterOptions o;
  o.servers = 1;
  o.workers = 0;
  LocalCluster c("operator-registrations", o);
  for (const std::string name : {"worker-1", "worker-2"}) {
    // Gives up on a silent coordinator after 1 s (5 heartbeat intervals), then registers
    // again every second.
    c.add_node("custody-worker", name, {"--connect-timeout-ms", "1000"});
  }
  ASSERT_TRUE(c.wait_for_nodes(3));
  c.coordinator().signal(SIGSTOP);
  std::this_thread::sleep_for(8s);
  c.coordinator().signal(SIGCONT);
  ASSERT_TRUE(c.wait_for_nodes(3));
  std::this_thread::sleep_for(2s);  // the rest of the queue
  const std::string worker_log = read_file(c.dir() / "worker-1.log");
  EXPECT_NE(worker_log.find("registering again"), std::string::npos) << "the worker did give up and re-register";
  c.coordinator().stop();
  const auto registrations = events(c.store(), "node_registered");
  for (const std::string name : {"worker-1", "worker-2"}) {
    EXPECT_EQ(count_node(registrations, name), 2u) << name << ": its first registration and one rejoin, "
                                                   << "however many of the rejoin's retries arrived";
  }
}

// Both workers' copy of the data is gone by the time they start (removed after the
// coordinator read it at submission), and the coordinator ships no records
// (--no-data-shipping): rank 0's worker says it cannot open the file, the rank moves to
// the other worker, which cannot either, and the job fails within one recovery naming the
// file for each worker, in status and in the lineage.
TEST(OperatorTest, AWorkerThatCannotReadItsDataMovesItsRankAndTheJobFailsWithinOneRecoveryNamingTheFile) {
  ClusterOptions o;
  o.servers = 1;
  o.workers = 0;
  o.coordinator_args = {"--no-data-shipping"};
  LocalCluster c("operator-missing-data", o);
  const fs::path data = c.dir() / "data";
  write_idx_data(data, 640, 64);
  ASSERT_TRUE(c.wait_for_nodes(1));
  const std::string job = submit(c, idx_job(data));
  ASSERT_FALSE(job.empty());
  fs::remove(data / "train-labels");
  c.add_node("custody-worker", "worker-1");
  c.add_node("custody-worker", "worker-2");
  const json s = wait_for_state(c, job, {"failed", "completed"});
  EXPECT_EQ(s.value("state", ""), "failed") << s.dump(2);
  const std::string message = s.value("message", "");
  EXPECT_NE(message.find("no live worker can run rank"), std::string::npos) << message;
  const std::string file = "cannot open data file '" + (data / "train-labels").string() + "'";
  EXPECT_NE(message.find("worker-1: " + file), std::string::npos) << message;
  EXPECT_NE(message.find("worker-2: " + file), std::string::npos) << message;
  EXPECT_LE(s.value("recoveries", 99), 1) << "not max_recoveries identical tries";
  c.coordinator().stop();
  const auto recovered = events(c.store(), "run_recovered");
  ASSERT_LE(recovered.size(), 1u);
  for (const auto& r : recovered) EXPECT_NE(r.dump().find(file), std::string::npos) << r.dump();
  const auto ended = events(c.store(), "run_ended");
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_NE(ended[0].dump().find("no live worker can run rank"), std::string::npos) << ended[0].dump();
}

// One byte of the training images changed after the coordinator read them at submission
// (a worker's copy that differs): the worker of the rank whose records it is in refuses to
// train on them, naming the file; here every worker shares the changed copy, so the job
// fails within one recovery, naming the file for both.
TEST(OperatorTest, AWorkersCopyThatDiffersByOneByteIsRefusedNamingTheFile) {
  ClusterOptions o;
  o.servers = 1;
  o.workers = 0;
  LocalCluster c("operator-one-byte", o);
  const fs::path data = c.dir() / "data";
  write_idx_data(data, 640, 64);
  ASSERT_TRUE(c.wait_for_nodes(1));
  const std::string job = submit(c, idx_job(data));
  ASSERT_FALSE(job.empty());
  {
    // Record 500 (rank 1's shard [320, 640)), pixel 9.
    std::fstream f(data / "train-images", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(16 + 500 * 64 + 9);
    f.put('\x7f');
  }
  c.add_node("custody-worker", "worker-1");
  c.add_node("custody-worker", "worker-2");
  const json s = wait_for_state(c, job, {"failed", "completed"});
  EXPECT_EQ(s.value("state", ""), "failed") << s.dump(2);
  const std::string message = s.value("message", "");
  const std::string refused = "'" + (data / "train-images").string() + "' holds other bytes in training records [320, 640)";
  EXPECT_NE(message.find("no live worker can run rank 1"), std::string::npos) << message;
  EXPECT_NE(message.find("worker-1: " + refused), std::string::npos) << message;
  EXPECT_NE(message.find("worker-2: " + refused), std::string::npos) << message;
  EXPECT_LE(s.value("recoveries", 99), 1);
}

}  // namespace
}  // namespace custody::testing
