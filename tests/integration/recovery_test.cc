// Killing real processes in the middle of a Fashion-MNIST job: a worker, a parameter
// server, the coordinator. Each time the job must complete, meet its accuracy bound, and
// its updates must add up: following the final checkpoint back through its parents, the
// pushes the servers accepted cover every (rank, step) of the job exactly once (updates of
// a rolled-back attempt after its checkpoint are discarded as a whole, never counted).
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/integration/checkpoint_chain.h"
#include "tests/integration/cluster.h"

namespace custody::testing {
namespace {

using nlohmann::json;

constexpr int kEpochs = 3, kBatch = kFashionBatch, kRanks = kFashionWorkers;
constexpr double kAccuracyBound = 0.80;

std::string fashion_job(int checkpoint_every) {
  return fashion_mlp_job("fashion-recovery", kEpochs,
                         "checkpoint_every_steps = " + std::to_string(checkpoint_every) + "\n");
}

json cli_json(LocalCluster& c, std::vector<std::string> args, const std::vector<std::string>& auth = {}) {
  args.push_back("--json");
  args.insert(args.begin(), auth.begin(), auth.end());
  CliResult r = c.cli(args);
  EXPECT_EQ(r.code, 0) << r.err;
  return r.code == 0 ? json::parse(r.out) : json();
}

std::string submit_job(LocalCluster& c, const std::string& text, const std::vector<std::string>& auth = {}) {
  std::vector<std::string> args = auth;
  args.insert(args.end(), {"submit", c.write_job("job.toml", text).string(), "--as", "alice"});
  CliResult r = c.cli(args);
  EXPECT_EQ(r.code, 0) << r.err;
  std::string id = r.out;
  while (!id.empty() && id.back() == '\n') id.pop_back();
  return id;
}

// Waits until the job has done `step` steps and recorded a checkpoint.
bool wait_until_past(LocalCluster& c, const std::string& job, uint64_t step,
                     const std::vector<std::string>& auth = {}) {
  auto deadline = std::chrono::steady_clock::now() + 120s;
  while (std::chrono::steady_clock::now() < deadline) {
    json s = cli_json(c, {"status", job}, auth);
    if (s.is_null() || s["state"] == "failed") return false;
    if (s["step"].get<uint64_t>() >= step && !s["last_checkpoint"].get<std::string>().empty()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return false;
}

// The checks every kill test ends with.
void expect_completed_and_accounted(LocalCluster& c, const std::string& job, const std::vector<std::string>& auth = {}) {
  CliResult waited = c.cli([&] {
    std::vector<std::string> a = auth;
    a.insert(a.end(), {"wait", job, "--max-seconds", "180"});
    return a;
  }());
  ASSERT_EQ(waited.code, 0) << waited.out << waited.err;
  json s = cli_json(c, {"status", job}, auth);
  EXPECT_EQ(s["state"], "completed") << s.dump(2);
  EXPECT_GE(s["test_accuracy"].get<double>(), kAccuracyBound) << s.dump(2);
  EXPECT_GE(s["recoveries"].get<int>(), 1) << "the kill was noticed and recovered from";
  const uint64_t total_steps = s["total_steps"];
  Updates u = count_updates(c, s["last_checkpoint"], {"--store", c.store().string()});
  expect_every_update_once(u, total_steps, kRanks, kBatch, job);
  CliResult verify = c.cli({"--store", c.store().string(), "audit", "verify"});
  EXPECT_EQ(verify.code, 0) << verify.out << verify.err;
}

// The run's recorded history (started per attempt, recovered, ended).
json run_events(LocalCluster& c, const std::string& job) {
  json shown = cli_json(c, {"--store", c.store().string(), "lineage", "show", job});
  return shown.is_null() ? json::array() : shown["events"];
}

// What a cluster's processes left of the data plane's shared memory
// (protocols/shared_region.h): names in /dev/shm made by any of `pids`, and regions still
// mapped by those that run. Waits up to 5 s for the servers to let go of the job.
std::vector<std::string> shared_memory_left(const std::vector<pid_t>& pids) {
  std::vector<std::string> left;
  for (int tries = 0; tries < 50; ++tries, std::this_thread::sleep_for(100ms)) {
    left.clear();
    for (const auto& e : fs::directory_iterator("/dev/shm")) {
      const std::string n = e.path().filename().string();
      for (pid_t p : pids) {
        if (n.rfind("custody-shm-" + std::to_string(p) + "-", 0) == 0) left.push_back("/dev/shm/" + n);
      }
    }
    for (pid_t p : pids) {
      std::ifstream maps("/proc/" + std::to_string(p) + "/maps");
      for (std::string line; std::getline(maps, line);) {
        if (line.find("/custody-shm-") != std::string::npos) left.push_back("pid " + std::to_string(p) + " maps " + line);
      }
    }
    if (left.empty()) break;
  }
  return left;
}

bool used_shared_memory(LocalCluster& c, const std::string& node) {
  return read_file(c.dir() / (node + ".log")).find("through shared memory") != std::string::npos;
}

// The separate processes of this cluster share one host: blocks go through shared memory,
// and a worker killed mid-step leaves no region behind, neither a name in /dev/shm nor a
// mapping in the server once the job is done.
TEST(RecoveryTest, AKilledWorkersShardGoesToALiveWorkerAndTheJobCompletes) {
  LocalCluster c("kill-worker", {1, 2});
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string job = submit_job(c, fashion_job(100));
  ASSERT_TRUE(wait_until_past(c, job, 250));
  const std::vector<pid_t> pids{c.node(0).pid(), c.node(1).pid(), c.node(2).pid()};
  c.node(2).kill_hard();  // worker-2, mid-job (of 1404 steps)
  expect_completed_and_accounted(c, job);
  EXPECT_TRUE(used_shared_memory(c, "worker-1"));
  EXPECT_TRUE(used_shared_memory(c, "worker-2"));
  EXPECT_EQ(shared_memory_left(pids), std::vector<std::string>()) << "shared memory left after the job";
  json s = cli_json(c, {"status", job});
  EXPECT_EQ(s["workers"], json({"worker-1", "worker-1"})) << "both ranks ended on the live worker";
  bool recorded = false;
  for (const auto& e : run_events(c, job)) {
    const json& b = e["body"];
    if (b["event"] != "run_recovered") continue;
    recorded = true;
    EXPECT_NE(b["reason"].get<std::string>().find("worker-2"), std::string::npos) << b.dump();
    EXPECT_GT(b["rolled_back_to_step"].get<uint64_t>(), 0u) << "back to a checkpoint, not the start";
  }
  EXPECT_TRUE(recorded) << "lineage records the reassignment";
  // What the server had applied when attempt 0 was stopped (issue 11, item 8): at least
  // what the workers had reported, and exactly what the record calls discarded.
  bool discarded = false;
  for (const auto& e : run_events(c, job)) {
    const json& b = e["body"];
    if (b["event"] != "attempt_discarded") continue;
    discarded = true;
    EXPECT_EQ(b["attempt"], 0) << b.dump();
    ASSERT_TRUE(b["applied_steps_by_server"].contains("ps-1")) << b.dump();
    const uint64_t applied = b["applied_steps_by_server"]["ps-1"], back = b["rolled_back_to_step"];
    EXPECT_GE(applied, 250u) << b.dump();
    EXPECT_EQ(b["discarded_steps"].get<uint64_t>(), applied - back) << b.dump();
    EXPECT_EQ(b["unanswered"], json::array()) << b.dump();
  }
  EXPECT_TRUE(discarded) << "the servers' count of the discarded work is recorded";
  // The reassignment itself: rank 1 assigned to worker-1 in attempt 1.
  json shown = cli_json(c, {"--store", c.store().string(), "lineage", "show", job});
  bool reassigned = false;
  for (const auto& r : shown["outgoing"]) {
    const json& b = r["body"];
    if (b["rel"] == "assigned" && b["to"] == "node:worker-1" && b.value("rank", -1) == 1 && b.value("attempt", 0) >= 1) {
      reassigned = true;
    }
  }
  EXPECT_TRUE(reassigned) << shown["outgoing"].dump(2);
}

TEST(RecoveryTest, AKilledParameterServersRangeIsTakenOverFromTheLastCheckpoint) {
  LocalCluster c("kill-ps", {2, 2});
  ASSERT_TRUE(c.wait_for_nodes(4));
  const std::string job = submit_job(c, fashion_job(100));
  ASSERT_TRUE(wait_until_past(c, job, 250));
  const std::vector<pid_t> pids{c.node(0).pid(), c.node(1).pid(), c.node(2).pid(), c.node(3).pid()};
  c.node(1).kill_hard();                  // ps-2
  c.add_node("custody-ps", "ps-2");       // restarted by its supervisor, empty
  expect_completed_and_accounted(c, job);
  EXPECT_TRUE(used_shared_memory(c, "worker-1"));
  std::vector<pid_t> all = pids;
  all.push_back(c.node(4).pid());
  EXPECT_EQ(shared_memory_left(all), std::vector<std::string>()) << "shared memory left after the job";
  json s = cli_json(c, {"status", job});
  EXPECT_EQ(s["servers"].size(), 2u) << "the restarted ps-2 holds a range again: " << s.dump();
  bool recorded = false;
  for (const auto& e : run_events(c, job)) {
    if (e["body"]["event"] == "run_recovered") {
      recorded = true;
      EXPECT_NE(e["body"]["reason"].get<std::string>().find("ps-2"), std::string::npos) << e.dump();
    }
  }
  EXPECT_TRUE(recorded);
}

// A worker that hosts a parameter server (custody-worker --with-ps) is one process: killing
// it loses both nodes at once. The other server takes the whole model from the last
// checkpoint, the other worker both ranks, and nothing is lost or doubled.
TEST(RecoveryTest, AKilledProcessOfAWorkerAndItsParameterServerIsRecoveredAsBothNodes) {
  ClusterOptions o;
  o.servers = 1;            // ps-2, a process of its own
  o.colocated_servers = 1;  // ps-1, inside worker-1's process
  LocalCluster c("kill-colocated", o);
  ASSERT_TRUE(c.wait_for_nodes(4));
  const std::string job = submit_job(c, fashion_job(100));
  ASSERT_TRUE(wait_until_past(c, job, 250));
  EXPECT_EQ(cli_json(c, {"status", job})["servers"].size(), 2u);
  c.node(1).kill_hard();  // worker-1 with ps-1
  expect_completed_and_accounted(c, job);
  json s = cli_json(c, {"status", job});
  EXPECT_EQ(s["workers"], json({"worker-2", "worker-2"})) << s.dump(2);
  EXPECT_EQ(s["servers"], json({"ps-2"})) << s.dump(2);
}

TEST(RecoveryTest, WithoutASpareTheSurvivingServerTakesTheWholeModel) {
  LocalCluster c("kill-ps-no-spare", {2, 2});
  ASSERT_TRUE(c.wait_for_nodes(4));
  const std::string job = submit_job(c, fashion_job(100));
  ASSERT_TRUE(wait_until_past(c, job, 250));
  c.node(1).kill_hard();  // ps-2, not restarted: noticed by its missing heartbeats
  expect_completed_and_accounted(c, job);
  json s = cli_json(c, {"status", job});
  EXPECT_EQ(s["servers"], json({"ps-1"})) << s.dump();
}

TEST(RecoveryTest, ARestartedCoordinatorReloadsJobsAndPrincipalsAndTheJobResumes) {
  ClusterOptions o;
  o.servers = 1;
  o.workers = 2;
  o.auth = true;
  o.fixed_port = true;
  LocalCluster c("kill-coordinator", o);
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::vector<std::string> admin = {"--token-file", c.admin_token().string()};
  CliResult alice = c.cli({"--token-file", c.admin_token().string(), "principal", "add", "alice", "--role", "submitter"});
  ASSERT_EQ(alice.code, 0) << alice.err;
  std::ofstream(c.dir() / "alice.token") << alice.out;
  const std::vector<std::string> as_alice = {"--token-file", (c.dir() / "alice.token").string()};
  const std::string job = submit_job(c, fashion_job(100), as_alice);
  ASSERT_TRUE(wait_until_past(c, job, 250, as_alice));

  c.coordinator().kill_hard();
  c.start_coordinator("coordinator-restarted.log");
  // Alice's token still works (principals come from the store), the job is known, and the
  // nodes come back by themselves.
  json s = cli_json(c, {"status", job}, as_alice);
  EXPECT_NE(s["state"], "failed") << s.dump(2);
  expect_completed_and_accounted(c, job, as_alice);
  bool restarted = false;
  for (const auto& e : run_events(c, job)) {
    if (e["body"]["event"] == "run_recovered" && e["body"]["reason"] == "the coordinator restarted") restarted = true;
  }
  EXPECT_TRUE(restarted);
  json all = cli_json(c, {"status"}, admin);
  int alive = 0;
  for (const auto& n : all["nodes"]) alive += n["alive"].get<bool>();
  EXPECT_EQ(alive, 3) << all["nodes"].dump(2);
}

// Issue 11, item 9: optimizer state is checkpointed with the weights, so a BSP job with
// momentum that is cancelled after a checkpoint and resumed ends on the model the same job
// trains straight through, to the last bit (the final checkpoint's root hash). Before, the
// resumed run restarted momentum from zeros and ended on another model. With the data
// plane sealed, the resume's new attempt runs under keys of its own.
TEST(RecoveryTest, AJobCancelledAtACheckpointAndResumedEndsOnTheUninterruptedModelBitForBit) {
  const std::string spec =
      "[job]\nname = \"resume-identity\"\nepochs = 2\nbatch_size = 8\nworkers = 2\nseed = 11\n"
      "consistency = \"bsp\"\ncheckpoint_every_steps = 25\n"
      "[model]\ntype = \"mlp\"\nhidden = [64]\nclasses = 4\n"
      "[optimizer]\ntype = \"momentum\"\nlearning_rate = 0.05\nmomentum = 0.9\nschedule = \"cosine\"\n"
      "weight_decay = 0.0005\n"
      "[data]\nkind = \"synthetic\"\n[data.synthetic]\ntrain_samples = 48000\ntest_samples = 400\nfeatures = 64\n"
      "classes = 4\n";  // 3000 steps an epoch: the cancel lands well before the end
  ClusterOptions sealed{2, 2};
  sealed.coordinator_args = {"--data-plane-sealing", "on"};
  LocalCluster c("resume-identity", sealed);
  ASSERT_TRUE(c.wait_for_nodes(4));
  auto final_root = [&](const std::string& job) {
    CliResult waited = c.cli({"wait", job, "--max-seconds", "180"});
    EXPECT_EQ(waited.code, 0) << waited.out << waited.err;
    json checkpoints = cli_json(c, {"--store", c.store().string(), "checkpoints", job});
    std::string root;
    for (const auto& k : checkpoints) {
      if (k.value("final", false)) root = k.value("root_hash", std::string());
    }
    EXPECT_EQ(root.size(), 64u) << checkpoints.dump(2);
    return root;
  };
  const std::string straight = submit_job(c, spec);
  const std::string straight_root = final_root(straight);

  const std::string interrupted = submit_job(c, spec);
  ASSERT_TRUE(wait_until_past(c, interrupted, 25));
  CliResult cancelled = c.cli({"cancel", interrupted});
  ASSERT_EQ(cancelled.code, 0) << cancelled.err;
  json s = cli_json(c, {"status", interrupted});
  ASSERT_EQ(s["state"], "cancelled") << "it ended before the cancel: " << s.dump(2);
  const std::string checkpoint = s["last_checkpoint"];
  ASSERT_FALSE(checkpoint.empty());
  const uint64_t total = s["total_steps"];
  CliResult resumed = c.cli({"resume", interrupted});
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("with its momentum state"), std::string::npos) << resumed.out;
  const std::string resumed_root = final_root(interrupted);
  json resumed_from = cli_json(c, {"--store", c.store().string(), "lineage", "show", checkpoint});
  const uint64_t step = resumed_from["manifest"]["step"];
  EXPECT_GT(step, 0u);
  EXPECT_LT(step, total) << "resumed from a checkpoint before the end";
  EXPECT_EQ(resumed_from["manifest"]["optimizer"]["kind"], "momentum") << resumed_from["manifest"].dump(2);
  EXPECT_EQ(resumed_root, straight_root) << "resumed at step " << step << " of " << total
                                         << ", the job ended on another model than the uninterrupted run";
  CliResult verify = c.cli({"--store", c.store().string(), "audit", "verify"});
  EXPECT_EQ(verify.code, 0) << verify.out << verify.err;
}

TEST(RecoveryTest, StatusNamesTheNodeAStalledJobWaitsFor) {
  ClusterOptions o;
  o.servers = 1;
  o.workers = 2;
  o.heartbeat_timeout_ms = 30000;  // stopped, not yet declared dead
  LocalCluster c("stall", o);
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string job = submit_job(c, fashion_job(0));
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (cli_json(c, {"status", job})["step"].get<uint64_t>() < 50 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  c.node(2).signal(SIGSTOP);  // worker-2 hangs (a stuck disk, a debugger, a swap storm)
  std::this_thread::sleep_for(5s);
  CliResult r = c.cli({"status", job});
  c.node(2).signal(SIGCONT);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("waits for"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("worker-2 (rank 1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("no heartbeat"), std::string::npos) << r.out;
  CliResult waited = c.cli({"wait", job, "--max-seconds", "180"});
  EXPECT_EQ(waited.code, 0) << "after SIGCONT the job goes on: " << waited.out << waited.err;
}

}  // namespace
}  // namespace custody::testing
