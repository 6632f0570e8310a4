// A node stopped by its operator (SIGTERM) deregisters: `custody nodes` shows it left at
// once instead of dead a heartbeat timeout later, the custody store has one
// node_deregistered record, and a job that had ranks on it recovers without waiting for
// the timeout. A coordinator that is down does not hold the node's exit up. Real processes.
#include <nlohmann/json.hpp>

#include "tests/integration/cluster.h"
#include "tests/integration/operator_helpers.h"

namespace custody::testing {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// A heartbeat timeout long enough that a node seen gone before it was not timed out.
constexpr int kHeartbeatTimeoutMs = 5000;

ClusterOptions one_server_two_workers() {
  ClusterOptions o;
  o.servers = 1;
  o.workers = 2;
  o.heartbeat_timeout_ms = kHeartbeatTimeoutMs;
  return o;
}

// `custody nodes --json`'s row for `node` ({} if absent or the call failed).
json node_row(LocalCluster& c, const std::string& node) {
  CliResult r = c.cli({"nodes", "--json"}, 10s);
  if (r.code != 0) return json::object();
  for (const auto& n : json::parse(r.out, nullptr, false)) {
    if (n.is_object() && n.value("node_id", "") == node) return n;
  }
  return json::object();
}

size_t records_naming(const std::vector<json>& records, const std::string& node) {
  size_t n = 0;
  for (const auto& r : records) n += r.value("node", "") == "node:" + node;
  return n;
}

TEST(DeregisterTest, ASigtermedWorkerIsListedAsLeftWithinASecondWithOneRecord) {
  ClusterOptions o = one_server_two_workers();
  o.fixed_port = true;  // the nodes find the restarted coordinator at the end
  LocalCluster c("deregister-idle", o);
  ASSERT_TRUE(c.wait_for_nodes(3));
  Process& worker2 = c.node(2);
  const auto t0 = Clock::now();
  worker2.signal(SIGTERM);
  json row;
  while (Clock::now() - t0 < 3s) {
    row = node_row(c, "worker-2");
    if (row.value("state", "") == "left") break;
    std::this_thread::sleep_for(20ms);
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_EQ(row.value("state", ""), "left") << row.dump();
  EXPECT_FALSE(row.value("alive", true));
  EXPECT_TRUE(row.value("left", false));
  EXPECT_LT(seconds, 1.0) << "listed as left only after " << seconds << " s";
  ASSERT_TRUE(worker2.wait_for_exit(3s)) << "the worker did not exit after SIGTERM";
  EXPECT_EQ(worker2.exit_code(), 0);
  EXPECT_NE(read_file(worker2.log()).find("deregistered from the coordinator"), std::string::npos);
  // The table an operator reads says so too; worker-1 is untouched.
  CliResult table = c.cli({"nodes"});
  ASSERT_EQ(table.code, 0) << table.err;
  const auto line = table.out.substr(table.out.find("worker-2"));
  EXPECT_NE(line.substr(0, line.find('\n')).find(" left "), std::string::npos) << table.out;
  EXPECT_EQ(node_row(c, "worker-1").value("state", ""), "alive");
  // Past the heartbeat timeout it stays "left", not turned "dead".
  std::this_thread::sleep_for(std::chrono::milliseconds(kHeartbeatTimeoutMs + 500));
  EXPECT_EQ(node_row(c, "worker-2").value("state", ""), "left");
  c.coordinator().stop();
  const auto records = events(c.store(), "node_deregistered");
  EXPECT_EQ(records_naming(records, "worker-2"), 1u);
  EXPECT_EQ(records.size(), 1u) << "only the stopped node deregistered";
  for (const auto& r : records) EXPECT_NE(r.value("reason", "").find("SIGTERM"), std::string::npos) << r.dump();

  // After a coordinator restart the log says what it knew: worker-2 left (not "dead"), and
  // was last heard of when it deregistered, more than the 5.5 s waited above, not at the
  // restart; worker-1, still running, registers again and is alive.
  c.start_coordinator("coordinator-restarted.log");
  json restored;
  for (auto deadline = Clock::now() + 20s; Clock::now() < deadline; std::this_thread::sleep_for(100ms)) {
    restored = node_row(c, "worker-2");
    if (!restored.empty() && node_row(c, "worker-1").value("state", "") == "alive") break;
  }
  EXPECT_EQ(restored.value("state", ""), "left") << restored.dump();
  EXPECT_GE(restored.value("last_seen_ms_ago", int64_t{0}), kHeartbeatTimeoutMs) << restored.dump();
  EXPECT_EQ(node_row(c, "worker-1").value("state", ""), "alive");
}

TEST(DeregisterTest, AWorkerStoppedMidJobIsRecoveredAtOnceAndTheJobCompletes) {
  LocalCluster c("deregister-mid-job", one_server_two_workers());
  ASSERT_TRUE(c.wait_for_nodes(3));
  // Long enough to be caught running past step 20 by a CLI poll on a loaded machine: since
  // the doorbell (protocols/shared_region.h) 40 epochs of this small model took 0.8 s.
  const std::string job = submit(c, synthetic_mlp_job("leaving", 200, 4096));
  ASSERT_FALSE(job.empty());
  // Running, with steps done on both ranks.
  const auto started = Clock::now();
  json s;
  while (Clock::now() - started < 60s) {
    s = status_of(c, job);
    if (!s.is_object()) s = json::object();
    if (s.value("state", "") == "running" && s.value("step", 0) >= 20) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(s.value("state", ""), "running") << s.dump(2);
  ASSERT_EQ(s.value("recoveries", 0), 0);
  const auto t0 = Clock::now();
  c.node(2).signal(SIGTERM);  // worker-2 holds rank 0 or 1
  while (Clock::now() - t0 < 4s) {
    s = status_of(c, job);
    if (!s.is_object()) s = json::object();
    if (s.value("recoveries", 0) >= 1) break;
    std::this_thread::sleep_for(20ms);
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  ASSERT_EQ(s.value("recoveries", 0), 1) << s.dump(2);
  EXPECT_LT(seconds, 1.5) << "recovered " << seconds << " s after the SIGTERM (the heartbeat timeout is "
                          << kHeartbeatTimeoutMs / 1000 << " s)";
  const json done = wait_for_state(c, job, {"completed", "failed", "cancelled"}, 180s);
  EXPECT_EQ(done.value("state", ""), "completed") << done.dump(2);
  EXPECT_EQ(done.value("recoveries", 0), 1);
  for (const auto& w : done["workers"]) EXPECT_EQ(w, "worker-1") << done.dump(2);
  c.coordinator().stop();
  const auto recovered = events(c.store(), "run_recovered");
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_NE(recovered[0].dump().find("worker-2 left the cluster"), std::string::npos) << recovered[0].dump();
  EXPECT_EQ(records_naming(events(c.store(), "node_deregistered"), "worker-2"), 1u);
}

TEST(DeregisterTest, AStoppedNodeDoesNotHangWhenTheCoordinatorIsDown) {
  LocalCluster c("deregister-no-coordinator", one_server_two_workers());
  ASSERT_TRUE(c.wait_for_nodes(3));
  c.coordinator().signal(SIGSTOP);  // hung: the deregistration is never answered
  const auto t0 = Clock::now();
  c.node(2).signal(SIGTERM);
  c.node(0).signal(SIGTERM);
  ASSERT_TRUE(c.node(2).wait_for_exit(8s)) << "the worker hung on its exit";
  ASSERT_TRUE(c.node(0).wait_for_exit(8s)) << "the parameter server hung on its exit";
  // The wait for the acknowledgement is 1 s; the rest is the shutdown (about 1 s on this
  // loaded 2-core machine). Without the bound it would wait for ever.
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_LT(seconds, 5.0);
  EXPECT_EQ(c.node(2).exit_code(), 0);
  EXPECT_NE(read_file(c.node(2).log()).find("without the coordinator's acknowledgement"), std::string::npos);
  c.coordinator().signal(SIGCONT);
}

}  // namespace
}  // namespace custody::testing
