// The cluster as its users run it: separate coordinator, parameter-server and worker
// processes on 127.0.0.1, driven through the `custody` CLI.
#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>

#include "tests/integration/cluster.h"

namespace custody::testing {
namespace {

using nlohmann::json;

std::string synthetic_job(const std::string& consistency, int epochs) {
  return "[job]\nname = \"synthetic\"\nepochs = " + std::to_string(epochs) +
         "\nbatch_size = 16\nworkers = 2\nconsistency = \"" + consistency +
         "\"\n[model]\ntype = \"mlp\"\nhidden = [16]\nclasses = 4\n[optimizer]\ntype = \"sgd\"\n"
         "learning_rate = 0.1\n[data]\nkind = \"synthetic\"\n[data.synthetic]\ntrain_samples = 4000\n"
         "test_samples = 400\nfeatures = 32\nclasses = 4\n";
}

json status_json(LocalCluster& c, const std::string& job) {
  CliResult r = c.cli({"status", job, "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  return json::parse(r.out);
}

std::string submit(LocalCluster& c, const fs::path& job_file) {
  CliResult r = c.cli({"submit", job_file.string(), "--as", "alice"});
  EXPECT_EQ(r.code, 0) << r.err;
  std::string id = r.out;
  while (!id.empty() && id.back() == '\n') id.pop_back();
  EXPECT_EQ(id.rfind("job-", 0), 0u) << "submit printed: " << r.out;
  return id;
}

TEST(ClusterTest, TrainsFashionMnistAcrossSeparateProcessesThroughTheCli) {
  ASSERT_TRUE(fs::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"))
      << "install dataset-fashion-mnist (scripts/setup.sh does)";
  LocalCluster c("train");
  ASSERT_TRUE(c.wait_for_nodes(4)) << "2 servers and 2 workers did not register";
  const std::string job = submit(c, c.write_job("short.toml", fashion_mlp_job("fashion-short", 2)));
  CliResult waited = c.cli({"wait", job});
  EXPECT_EQ(waited.code, 0) << waited.out << waited.err;
  EXPECT_NE(waited.out.find("epoch 2/2"), std::string::npos) << waited.out;

  json s = status_json(c, job);
  EXPECT_EQ(s["state"], "completed") << s.dump(2);
  // A 784-64-10 MLP after 2 epochs of Fashion-MNIST: about 0.85; 0.80 leaves room for
  // noise while still failing on broken math, a lost update or a wrong data split.
  EXPECT_GE(s["test_accuracy"].get<double>(), 0.80) << s.dump(2);
  EXPECT_EQ(s["accuracy_history"].size(), 2u);
  EXPECT_EQ(s["workers"], json({"worker-1", "worker-2"}));
  EXPECT_EQ(s["servers"].size(), 2u);
  EXPECT_EQ(s["submitter"], "alice");
  EXPECT_EQ(s["dataset_hash"].get<std::string>().size(), 64u);
  EXPECT_EQ(s["step"], s["total_steps"]);
  EXPECT_EQ(s["total_steps"].get<int>(), 2 * (30000 / 64));

  // The job is in the list, and the nodes are idle again.
  CliResult jobs = c.cli({"jobs"});
  EXPECT_NE(jobs.out.find(job), std::string::npos);
  json all = json::parse(c.cli({"status", "--json"}).out);
  for (const auto& n : all["nodes"]) EXPECT_FALSE(n["busy"].get<bool>()) << n.dump();
}

// A worker that runs the parameter server in its own process reaches it in-process, the
// other worker over TCP; the job is the same job: the model is the same to the last bit
// (the final checkpoint's root hash) as when every node has a process of its own, and the
// same whether its data plane is sealed or in clear, and whether separate processes on one
// host exchange blocks through shared memory (the default in clear) or through sockets.
TEST(ClusterTest, AWorkerWithTheParameterServerInItsProcessTrainsTheSameModelAsSeparateProcesses) {
  const std::string one_epoch = fashion_mlp_job("fashion-short", 1);
  auto train = [&](const std::string& name, ClusterOptions o) {
    LocalCluster c(name, o);
    EXPECT_TRUE(c.wait_for_nodes(3)) << "1 server and 2 workers did not register";
    const std::string job = submit(c, c.write_job("job.toml", one_epoch));
    CliResult waited = c.cli({"wait", job});
    EXPECT_EQ(waited.code, 0) << waited.out << waited.err;
    json s = status_json(c, job);
    EXPECT_EQ(s["state"], "completed") << s.dump(2);
    EXPECT_EQ(s["servers"], json({"ps-1"})) << s.dump(2);
    json checkpoints = json::parse(c.cli({"checkpoints", job, "--json"}).out);
    std::string root;
    for (const auto& k : checkpoints) {
      if (k.value("final", false)) root = k.value("root_hash", std::string());
    }
    EXPECT_EQ(root.size(), 64u) << checkpoints.dump(2);
    const std::string w1 = read_file(c.dir() / "worker-1.log"), w2 = read_file(c.dir() / "worker-2.log");
    const bool in_process = w1.find("reaches parameter server ps-1 in-process") != std::string::npos;
    EXPECT_EQ(w2.find("in-process"), std::string::npos) << w2;
    const bool sealed = std::find(o.coordinator_args.begin(), o.coordinator_args.end(), "on") != o.coordinator_args.end();
    EXPECT_EQ(s["data_plane_sealed"], sealed) << s.dump(2);
    const bool shared = w1.find("through shared memory") != std::string::npos &&
                        w2.find("through shared memory") != std::string::npos;
    const bool any_shared = w1.find("through shared memory") != std::string::npos ||
                            w2.find("through shared memory") != std::string::npos;
    EXPECT_EQ(shared, any_shared) << "one worker used shared memory and the other not:\n" << w1 << w2;
    EXPECT_EQ(s["data_plane"].get<std::string>().find("shared memory") != std::string::npos, shared)
        << "status says where blocks go through shared memory: " << s.dump(2);
    EXPECT_EQ(w1.find("by socket"), std::string::npos) << w1;  // no fallback on one host
    EXPECT_EQ(w2.find("by socket"), std::string::npos) << w2;
    return std::make_tuple(s["test_accuracy"].get<double>(), root, in_process, shared);
  };
  ClusterOptions separate;
  separate.servers = 1;
  ClusterOptions colocated;
  colocated.servers = 0;
  colocated.colocated_servers = 1;
  colocated.coordinator_args = {"--data-plane-sealing", "on"};
  ClusterOptions separate_sealed = separate;
  separate_sealed.coordinator_args = colocated.coordinator_args;
  ClusterOptions separate_sockets = separate;
  separate_sockets.coordinator_args = {"--no-data-plane-shared-memory"};
  const auto [accuracy, root, separate_in_process, separate_shared] = train("separate", separate);
  const auto [colocated_accuracy, colocated_root, colocated_in_process, colocated_shared] =
      train("colocated", colocated);
  const auto [sealed_accuracy, sealed_root, sealed_in_process, sealed_shared] =
      train("separate-sealed", separate_sealed);
  const auto [sockets_accuracy, sockets_root, sockets_in_process, sockets_shared] =
      train("separate-sockets", separate_sockets);
  EXPECT_FALSE(separate_in_process);
  EXPECT_FALSE(sealed_in_process);
  EXPECT_TRUE(separate_shared) << "separate processes on one host in clear did not share memory";
  EXPECT_FALSE(sockets_shared) << "--no-data-plane-shared-memory was not obeyed";
  EXPECT_FALSE(sealed_shared) << "a sealed job's blocks went through shared memory";
  EXPECT_FALSE(colocated_shared);
  EXPECT_EQ(sockets_root, root) << "shared memory and sockets trained different models";
  EXPECT_TRUE(colocated_in_process) << "worker-1 did not reach its own process's server in-process";
  EXPECT_GE(accuracy, 0.78);
  EXPECT_EQ(colocated_accuracy, accuracy);
  EXPECT_EQ(colocated_root, root) << "the same job trained a different model (co-located and sealed)";
  EXPECT_EQ(sealed_root, root) << "the same job trained a different model (sealed)";
}

TEST(ClusterTest, AspJobOnSyntheticDataCompletes) {
  LocalCluster c("asp", {1, 2});
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string job = submit(c, c.write_job("asp.toml", synthetic_job("asp", 3)));
  CliResult waited = c.cli({"wait", job});
  EXPECT_EQ(waited.code, 0) << waited.out << waited.err;
  json s = status_json(c, job);
  EXPECT_EQ(s["consistency"], "asp");
  EXPECT_GE(s["test_accuracy"].get<double>(), 0.9) << s.dump(2);
}

TEST(ClusterTest, SspJobCompletesWithinItsStalenessBound) {
  LocalCluster c("ssp", {2, 2});
  ASSERT_TRUE(c.wait_for_nodes(4));
  std::string text = synthetic_job("ssp", 3);
  text.insert(text.find("[model]"), "staleness = 2\n");
  const std::string job = submit(c, c.write_job("ssp.toml", text));
  CliResult waited = c.cli({"wait", job});
  EXPECT_EQ(waited.code, 0) << waited.out << waited.err;
  json s = status_json(c, job);
  EXPECT_EQ(s["consistency"], "ssp");
  EXPECT_GE(s["test_accuracy"].get<double>(), 0.9) << s.dump(2);
  // The staleness the servers saw stays within what the bound allows: a worker computes on
  // values at most (staleness + 1) rounds of both workers' pushes old.
  json trace = json::parse(c.cli({"lineage", "trace", s["last_checkpoint"], "--json"}).out);
  std::function<void(const json&)> check = [&](const json& n) {
    if (n.contains("contributors")) {
      ASSERT_EQ(n["contributors"].size(), 2u);
      for (const auto& w : n["contributors"]) EXPECT_LE(w["staleness_max"].get<uint64_t>(), 2u * (2 + 1)) << w.dump();
    }
    for (const auto& child : n.value("children", json::array())) check(child);
  };
  check(trace);
}

TEST(ClusterTest, CancelStopsAJobAndTheWorkersTakeTheNextOne) {
  LocalCluster c("cancel", {1, 2});
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string long_job = submit(c, c.write_job("long.toml", synthetic_job("bsp", 10000)));
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (status_json(c, long_job)["state"] != "running" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  // A second job queues behind it.
  const std::string next = submit(c, c.write_job("next.toml", synthetic_job("bsp", 1)));
  EXPECT_EQ(status_json(c, next)["state"], "pending");
  CliResult cancelled = c.cli({"cancel", long_job});
  EXPECT_EQ(cancelled.code, 0) << cancelled.err;
  EXPECT_EQ(status_json(c, long_job)["state"], "cancelled");
  CliResult waited = c.cli({"wait", next});
  EXPECT_EQ(waited.code, 0) << waited.out << waited.err;
  EXPECT_EQ(c.cli({"wait", long_job}).code, 1) << "wait on a cancelled job exits 1";
}

// With recovery turned off (--max-recoveries 0) a lost node fails its job, naming it.
// RecoveryTest covers the default, where the job rolls back and goes on.
TEST(ClusterTest, KilledWorkerIsNoticedByHeartbeatsAndFailsTheJobWhenRecoveryIsOff) {
  ClusterOptions o;
  o.servers = 1;
  o.workers = 2;
  o.coordinator_args = {"--max-recoveries", "0"};
  LocalCluster c("killed", o);
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string job = submit(c, c.write_job("long.toml", synthetic_job("bsp", 10000)));
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (status_json(c, job)["state"] != "running" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  c.node(2).kill_hard();  // worker-2
  CliResult waited = c.cli({"wait", job, "--max-seconds", "60"});
  EXPECT_EQ(waited.code, 1) << waited.out << waited.err;
  json s = status_json(c, job);
  EXPECT_EQ(s["state"], "failed");
  EXPECT_NE(s["message"].get<std::string>().find("worker-2"), std::string::npos) << s.dump(2);
  json all = json::parse(c.cli({"status", "--json"}).out);
  for (const auto& n : all["nodes"]) EXPECT_EQ(n["alive"].get<bool>(), n["node_id"] != "worker-2") << n.dump();
}

TEST(ClusterTest, BadJobFilesAreRefusedNamingTheProblem) {
  LocalCluster c("badjobs", {1, 1});
  ASSERT_TRUE(c.wait_for_nodes(2));
  struct BadJob {
    const char* file;
    const char* text;
    int code;           // of `custody submit`
    const char* named;  // in its error
  };
  const BadJob bad_jobs[] = {
      {"a.toml", "[model]\nhiden = [64]\n", 2, "model.hiden"},
      {"b.toml", "[job]\nepochs = \"many\"\n", 2, "job.epochs"},
      {"c.toml", "[job]\nbatch_size = 0\n", 2, "job.batch_size"},
      // Valid TOML, but the coordinator cannot read the data it names.
      {"d.toml", "[data]\ndir = \"/nonexistent/data\"\n", 4, "/nonexistent/data"},
  };
  for (const BadJob& bad : bad_jobs) {
    CliResult r = c.cli({"submit", c.write_job(bad.file, bad.text).string()});
    EXPECT_EQ(r.code, bad.code) << bad.file;
    EXPECT_NE(r.err.find(bad.named), std::string::npos) << bad.file << ": " << r.err;
  }
  CliResult missing = c.cli({"submit", (c.dir() / "missing.toml").string()});
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("missing.toml"), std::string::npos);
  CliResult unknown_job = c.cli({"status", "job-00000000"});
  EXPECT_EQ(unknown_job.code, 4);
  EXPECT_NE(unknown_job.err.find("job-00000000"), std::string::npos);
  EXPECT_TRUE(c.coordinator().running());
}

TEST(ClusterTest, NodesAndTheCliSayWhenTheCoordinatorCannotBeReached) {
  const fs::path dir = fs::temp_directory_path() / ("custody-unreachable-" + std::to_string(getpid()));
  fs::create_directories(dir);
  // Port 9 (discard): nothing listens there on these machines.
  const std::string nowhere = "tcp://127.0.0.1:9";
  for (const char* exe : {"custody-worker", "custody-ps"}) {
    Process node({bin(exe), "--coordinator", nowhere, "--connect-timeout-ms", "1500"}, dir / (std::string(exe) + ".log"));
    ASSERT_TRUE(node.wait_for_exit(15s)) << exe << " hangs instead of giving up";
    EXPECT_NE(node.exit_code(), 0);
    std::string log = read_file(node.log());
    EXPECT_NE(log.find("could not reach the coordinator at " + nowhere), std::string::npos) << log;
  }
  CliResult r = run_cli(dir, {"--coordinator", nowhere, "--timeout-ms", "500", "jobs"});
  EXPECT_EQ(r.code, 3);
  EXPECT_NE(r.err.find("no reply from the coordinator"), std::string::npos) << r.err;
  fs::remove_all(dir);
}

// Three jobs of different sizes on a small cluster (docs/ARCHITECTURE.md, "Scheduling"):
// one too large for the nodes alive is told so and blocks no one; a small one starts
// beside the first; the large one runs once a fourth worker joins and the others are done.
TEST(ClusterTest, JobsOfDifferentSizesAllCompleteInTheOrderTheSchedulingPolicySays) {
  ClusterOptions o;
  o.servers = 1;
  o.workers = 3;
  LocalCluster c("schedule", o);
  ASSERT_TRUE(c.wait_for_nodes(4));
  auto sized = [](int workers, int epochs) {
    std::string text = synthetic_job("bsp", epochs);
    text.replace(text.find("workers = 2"), 11, "workers = " + std::to_string(workers));
    return text;
  };
  const std::string a = submit(c, c.write_job("a.toml", sized(2, 30)));  // long enough for c to start beside it
  CliResult b_submit = c.cli({"submit", c.write_job("b.toml", sized(4, 1)).string(), "--as", "bob"});
  ASSERT_EQ(b_submit.code, 0) << b_submit.err;
  const std::string b = b_submit.out.substr(0, b_submit.out.find('\n'));
  EXPECT_NE(b_submit.err.find("cannot be placed on the nodes alive: it needs 4 workers (3 alive)"), std::string::npos)
      << "the submitter is told at once: " << b_submit.err;
  const std::string small = submit(c, c.write_job("c.toml", sized(1, 1)));
  json first = status_json(c, small);
  EXPECT_NE(first["state"], "pending") << "the small job starts beside the first: " << first.dump();
  ASSERT_EQ(c.cli({"wait", small}).code, 0);
  c.add_node("custody-worker", "worker-4");
  for (const auto& id : {a, b}) ASSERT_EQ(c.cli({"wait", id}).code, 0) << id;
  json ja = status_json(c, a), jb = status_json(c, b), jc = status_json(c, small);
  EXPECT_LT(jc["started_at_ms"].get<int64_t>(), ja["finished_at_ms"].get<int64_t>()) << "c ran beside a";
  EXPECT_GE(jb["started_at_ms"].get<int64_t>(), ja["finished_at_ms"].get<int64_t>()) << "b waited for a's workers";
  EXPECT_EQ(jb["workers"].size(), 4u);
}

}  // namespace
}  // namespace custody::testing
