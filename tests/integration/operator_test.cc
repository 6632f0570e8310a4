// What an operator deploying Custody on a few machines trips on, with real processes: a
// coordinator that was unreachable for a while receives each node's queued registrations
// at once and counts them as one; a worker that cannot read its data moves its rank or
// fails the job at once, naming the cause.
#include <nlohmann/json.hpp>

#include "tests/integration/cluster.h"
#include "tests/raw_store.h"

namespace custody::testing {
namespace {

using nlohmann::json;

std::vector<uint8_t> be32(uint32_t v) { return {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)}; }

// A small IDX data set (8x8 images, 4 classes) in `dir`, plain files as the job names them.
void write_idx_data(const fs::path& dir, uint32_t train, uint32_t test) {
  fs::create_directories(dir);
  auto write = [&](const std::string& name, uint32_t magic, uint32_t n, bool images) {
    std::vector<uint8_t> b;
    for (auto part : images ? std::vector<std::vector<uint8_t>>{be32(magic), be32(n), be32(8), be32(8)}
                            : std::vector<std::vector<uint8_t>>{be32(magic), be32(n)}) {
      b.insert(b.end(), part.begin(), part.end());
    }
    for (uint32_t i = 0; i < n; ++i) {
      if (!images) {
        b.push_back(static_cast<uint8_t>(i % 4));
        continue;
      }
      for (uint32_t p = 0; p < 64; ++p) b.push_back(static_cast<uint8_t>(((i % 4) * 60 + p * 3 + i) % 256));
    }
    std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), b.size());
  };
  write("train-images", 0x803, train, true);
  write("train-labels", 0x801, train, false);
  write("test-images", 0x803, test, true);
  write("test-labels", 0x801, test, false);
}

std::string idx_job(const fs::path& dir) {
  return "[job]\nname = \"local-files\"\nepochs = 2\nbatch_size = 16\nworkers = 2\n[model]\ntype = \"mlp\"\n"
         "hidden = [16]\nclasses = 4\n[optimizer]\ntype = \"sgd\"\nlearning_rate = 0.1\n[data]\nkind = \"idx\"\n"
         "dir = \"" + dir.string() + "\"\ntrain_images = \"train-images\"\ntrain_labels = \"train-labels\"\n"
         "test_images = \"test-images\"\ntest_labels = \"test-labels\"\n";
}

json status_of(LocalCluster& c, const std::string& job) {
  CliResult r = c.cli({"status", job, "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  return r.code == 0 ? json::parse(r.out) : json();
}

std::string submit(LocalCluster& c, const std::string& text) {
  CliResult r = c.cli({"submit", c.write_job("job.toml", text).string(), "--as", "alice"});
  EXPECT_EQ(r.code, 0) << r.err;
  std::string id = r.out.substr(0, r.out.find('\n'));
  return id;
}

// Waits until the job's state is one of `states`; returns its status.
json wait_for_state(LocalCluster& c, const std::string& job, const std::set<std::string>& states,
                    std::chrono::seconds timeout = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  json s;
  while (std::chrono::steady_clock::now() < deadline) {
    s = status_of(c, job);
    if (s.is_object() && states.count(s.value("state", ""))) return s;
    std::this_thread::sleep_for(100ms);
  }
  ADD_FAILURE() << job << " did not reach the state in time: " << s.dump(2);
  return s;
}

// The lineage records of one event, read from the store's files (coordinator stopped).
std::vector<json> events(const fs::path& store, const std::string& event) {
  RawStore raw(store.string());
  std::vector<json> out;
  for (const auto& [key, value] : raw.scan("lineage")) {
    json record = json::parse(value, nullptr, false);
    if (record.is_discarded()) continue;
    const json body = record.contains("body") ? record["body"] : record;
    if (body.value("event", "") == event) out.push_back(body);
  }
  return out;
}

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
// coordinator read it at submission): rank 0's worker says it cannot open the file, the
// rank moves to the other worker, which cannot either, and the job fails within one
// recovery naming the file for each worker, in status and in the lineage.
TEST(OperatorTest, AWorkerThatCannotReadItsDataMovesItsRankAndTheJobFailsWithinOneRecoveryNamingTheFile) {
  ClusterOptions o;
  o.servers = 1;
  o.workers = 0;
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
