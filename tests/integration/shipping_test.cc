// Data shipping with real processes (docs/ARCHITECTURE.md, "Data shipping"): workers that
// do not have the job's data files fetch their ranks' records from the coordinator, check
// them against the digests of submission, keep them in their records cache for the next
// job, and the lineage says, per worker and rank, how its records came; bytes that do not
// match are never trained on. The same over CurveZMQ. (Across network namespaces, with one
// worker holding the files and one not: netns_test.cc.)
#include <nlohmann/json.hpp>

#include "tests/integration/cluster.h"
#include "tests/integration/operator_helpers.h"

namespace custody::testing {
namespace {

using nlohmann::json;

// The shard_obtained events of a job, through `custody lineage show` (the store the
// coordinator writes, read while it runs), by node.
std::map<std::string, json> obtained_by_node(LocalCluster& c, const std::string& job) {
  CliResult r = c.cli({"lineage", "show", job, "--json"});
  EXPECT_EQ(r.code, 0) << r.err;
  std::map<std::string, json> out;
  if (r.code != 0) return out;
  const json shown = json::parse(r.out);
  for (const auto& e : shown["events"]) {
    const json& body = e.contains("body") ? e["body"] : e;
    if (body.value("event", "") == "shard_obtained") out[body.value("node", "").substr(5)] = body;  // "node:"
  }
  return out;
}

// One bit of the file flipped, at `offset`.
void flip(const fs::path& file, std::streamoff offset) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(offset);
  const char c = static_cast<char>(f.get());
  f.seekp(offset);
  f.put(static_cast<char>(c ^ 0x01));
}

// Runs idx_job on `data` with the files present at submission and gone (moved aside)
// before the workers see its tasks (they are stopped meanwhile: an idle cluster starts a
// job at once), as on hosts that never had them.
std::string run_without_the_files(LocalCluster& c, const fs::path& data, const std::vector<Process*>& workers) {
  const fs::path away = data.string() + ".away";
  if (fs::exists(away)) fs::rename(away, data);
  for (Process* w : workers) w->signal(SIGSTOP);
  const std::string job = submit(c, idx_job(data));
  fs::rename(data, away);
  for (Process* w : workers) w->signal(SIGCONT);
  const json s = wait_for_state(c, job, {"completed", "failed"});
  EXPECT_EQ(s.value("state", ""), "completed") << s.dump(2);
  return job;
}

// 640 training and 64 test records of 8x8 pixels, two ranks: each rank's records are 320
// training images and labels and 32 test images and labels.
constexpr uint64_t kRankBytes = 320 * 64 + 320 + 32 * 64 + 32;

TEST(ShippingTest, WorkersWithoutTheDataFetchItsRecordsVerifiedKeepThemAndTheLineageSaysHow) {
  ClusterOptions o;
  o.servers = 1;
  o.workers = 0;
  LocalCluster c("shipping-fetch", o);
  const fs::path data = c.dir() / "data";
  write_idx_data(data, 640, 64);
  ASSERT_TRUE(c.wait_for_nodes(1));
  // The workers start without the files: each fetches its rank's records.
  const std::string first = submit(c, idx_job(data));
  fs::rename(data, data.string() + ".away");
  const std::vector<Process*> workers{&c.add_node("custody-worker", "worker-1"),
                                      &c.add_node("custody-worker", "worker-2")};
  json s = wait_for_state(c, first, {"completed", "failed"});
  ASSERT_EQ(s.value("state", ""), "completed") << s.dump(2);
  auto obtained = obtained_by_node(c, first);
  ASSERT_EQ(obtained.size(), 2u);
  std::set<uint64_t> ranks;
  for (const std::string node : {"worker-1", "worker-2"}) {
    const json& e = obtained[node];
    EXPECT_EQ(e.value("how", ""), "fetched") << e.dump();
    EXPECT_EQ(e.value("source", ""), "the coordinator at " + c.address()) << e.dump();
    EXPECT_EQ(e.value("bytes_fetched", uint64_t(0)), kRankBytes) << "each rank's records, once: " << e.dump();
    EXPECT_EQ(e["verified"].size(), 4u) << e.dump();
    ranks.insert(e.value("rank", uint64_t(99)));
    const std::string log = read_file(c.dir() / (node + ".log"));
    EXPECT_NE(log.find("SHA-256 verified, kept in " + (c.dir() / (node + ".records")).string()), std::string::npos)
        << log;
  }
  EXPECT_EQ(ranks, (std::set<uint64_t>{0, 1}));
  const std::string trace = c.cli({"lineage", "trace", s["last_checkpoint"]}).out;
  for (const std::string rank : {"shard 0 records [0, 320)", "shard 1 records [320, 640)"}) {
    EXPECT_NE(trace.find(rank + " of "), std::string::npos) << trace;
  }
  EXPECT_NE(trace.find("records fetched from the coordinator at " + c.address() + " (" + std::to_string(kRankBytes) +
                       " bytes), verified against the submitted SHA-256s"),
            std::string::npos)
      << trace;

  // The next job on the same records: from each worker's cache, nothing fetched.
  const std::string second = run_without_the_files(c, data, workers);
  obtained = obtained_by_node(c, second);
  ASSERT_EQ(obtained.size(), 2u);
  for (const std::string node : {"worker-1", "worker-2"}) {
    EXPECT_EQ(obtained[node].value("how", ""), "cache") << obtained[node].dump();
    EXPECT_EQ(obtained[node].value("bytes_fetched", uint64_t(1)), 0u);
  }

  // A cached copy damaged on disk is not trained on: it is fetched again.
  const std::string images = obtained["worker-1"]["verified"].value("train_images_sha256", "");
  flip(c.dir() / "worker-1.records" / images, 100);
  const std::string third = run_without_the_files(c, data, workers);
  obtained = obtained_by_node(c, third);
  EXPECT_EQ(obtained["worker-1"].value("how", ""), "fetched") << obtained["worker-1"].dump();
  EXPECT_EQ(obtained["worker-2"].value("how", ""), "cache") << obtained["worker-2"].dump();
  EXPECT_NE(read_file(c.dir() / "worker-1.log").find("no longer matches its SHA-256: removed, fetching it again"),
            std::string::npos);
  EXPECT_EQ(c.cli({"audit", "verify"}).code, 0);
}

// Bytes of the files a directory holds directly.
uint64_t bytes_in(const fs::path& dir) {
  uint64_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) n += e.is_regular_file() ? e.file_size() : 0;
  return n;
}

// Each worker's records cache held to 1 MiB (--data-cache-max-mib 1), and two data sets of
// about 0.67 MB a rank: fetching the second trims the first's records away (used least
// recently), never the running task's, and a later job on the first fetches them again.
TEST(ShippingTest, ARecordsCacheHeldToItsLimitDropsTheLeastRecentlyUsedRecordsAndFetchesThemAgainWhenNeeded) {
  ClusterOptions o;
  o.servers = 1;
  o.workers = 0;
  LocalCluster c("shipping-trim", o);
  const fs::path a = c.dir() / "data-a", b = c.dir() / "data-b";
  write_idx_data(a, 20000, 640);
  write_idx_data(b, 20002, 640);  // other bytes, another data set
  ASSERT_TRUE(c.wait_for_nodes(1));
  const std::vector<std::string> limit{"--data-cache-max-mib", "1"};
  const std::vector<Process*> workers{&c.add_node("custody-worker", "worker-1", limit),
                                      &c.add_node("custody-worker", "worker-2", limit)};
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string first = run_without_the_files(c, a, workers);
  for (const auto& [node, e] : obtained_by_node(c, first)) EXPECT_EQ(e.value("how", ""), "fetched") << node;
  const std::string second = run_without_the_files(c, b, workers);
  for (const auto& [node, e] : obtained_by_node(c, second)) EXPECT_EQ(e.value("how", ""), "fetched") << node;
  for (const std::string node : {"worker-1", "worker-2"}) {
    EXPECT_LE(bytes_in(c.dir() / (node + ".records")), uint64_t(1) << 20) << node << "'s cache kept to its limit";
    const std::string log = read_file(c.dir() / (node + ".log"));
    EXPECT_NE(log.find("trimmed from"), std::string::npos) << log;
    EXPECT_NE(log.find("(limit 1048576): removed the"), std::string::npos) << log;
  }
  // The first data set again: what was trimmed away is fetched again, and verified.
  const std::string third = run_without_the_files(c, a, workers);
  auto obtained = obtained_by_node(c, third);
  ASSERT_EQ(obtained.size(), 2u);
  for (const auto& [node, e] : obtained) {
    EXPECT_EQ(e.value("how", ""), "fetched") << node << ": " << e.dump();
    EXPECT_GT(e.value("bytes_fetched", uint64_t(0)), 20000u / 2 * 64) << "its training images at least: " << e.dump();
  }
  EXPECT_EQ(c.cli({"audit", "verify"}).code, 0);
}

// The coordinator's own copy of the records was altered after submission: it refuses to
// send them (naming them), no worker trains on them, and the job fails within one
// recovery with the cause in its status.
TEST(ShippingTest, RecordsTheCoordinatorCannotVouchForAreNeverShippedAndTheJobFailsSayingWhy) {
  ClusterOptions o;
  o.servers = 1;
  o.workers = 0;
  LocalCluster c("shipping-damaged", o);
  const fs::path data = c.dir() / "data";
  write_idx_data(data, 640, 64);
  ASSERT_TRUE(c.wait_for_nodes(1));
  const std::string job = submit(c, idx_job(data));
  fs::rename(data, data.string() + ".away");
  const fs::path records = c.store().string() + ".records";
  ASSERT_TRUE(fs::is_directory(records));
  for (const auto& f : fs::directory_iterator(records)) flip(f.path(), 3);
  c.add_node("custody-worker", "worker-1");
  c.add_node("custody-worker", "worker-2");
  const json s = wait_for_state(c, job, {"completed", "failed"});
  EXPECT_EQ(s.value("state", ""), "failed") << s.dump(2);
  const std::string message = s.value("message", "");
  EXPECT_NE(message.find("no live worker can run rank"), std::string::npos) << message;
  EXPECT_NE(message.find("the coordinator's copy of records"), std::string::npos) << message;
  EXPECT_NE(message.find("was damaged"), std::string::npos) << message;
  EXPECT_LE(s.value("recoveries", 99), 1);
  EXPECT_TRUE(obtained_by_node(c, job).empty()) << "no worker holds records it could verify";
}

// Over CurveZMQ: the fetch is one more control-plane connection, made with the node's key.
TEST(ShippingTest, ASecuredClusterShipsRecordsOverTheNodesAuthenticatedConnection) {
  ClusterOptions o;
  o.servers = 1;
  o.workers = 0;
  o.curve = true;
  LocalCluster c("shipping-curve", o);
  const fs::path data = c.dir() / "data";
  write_idx_data(data, 640, 64);
  ASSERT_TRUE(c.wait_for_nodes(1));
  std::vector<std::string> args = c.admin_args();
  args.insert(args.end(), {"submit", c.write_job("job.toml", idx_job(data)).string()});
  CliResult submitted = c.cli(args);
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  const std::string job = submitted.out.substr(0, submitted.out.find('\n'));
  fs::rename(data, data.string() + ".away");
  c.add_node("custody-worker", "worker-1");
  c.add_node("custody-worker", "worker-2");
  args = c.admin_args();
  args.insert(args.end(), {"wait", job, "--max-seconds", "60"});
  CliResult waited = c.cli(args);
  EXPECT_EQ(waited.code, 0) << waited.out << waited.err;
  c.coordinator().stop();
  const auto obtained = events(c.store(), "shard_obtained");
  ASSERT_EQ(obtained.size(), 2u);
  for (const auto& e : obtained) EXPECT_EQ(e.value("how", ""), "fetched") << e.dump();
}

}  // namespace
}  // namespace custody::testing
