// Prometheus metrics on every node, scraped by a real Prometheus server (Debian's
// `prometheus`): a local cluster trains a job and answers predictions while Prometheus
// scrapes the coordinator, the parameter server and both workers once a second; PromQL
// over its HTTP API then finds the training samples, the servers' accepted pushes and the
// prediction counters at exactly the values the job and the calls imply. Skipped, saying
// why, where the prometheus binary is not installed.
#include <nlohmann/json.hpp>

#include <map>

#include "tests/integration/cluster.h"

namespace custody::testing {
namespace {

using nlohmann::json;

constexpr const char* kPrometheus = "/usr/bin/prometheus";

std::string trimmed(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

std::string wait_for_file(const fs::path& p) {
  auto deadline = std::chrono::steady_clock::now() + 15s;
  while (!fs::exists(p) && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
  return fs::exists(p) ? trimmed(read_file(p)) : "";
}

// GET url with curl; the body, or "" on failure.
std::string http_get(const fs::path& dir, const std::string& url) {
  CliResult r = run_argv(dir, {"/usr/bin/curl", "-sS", "--max-time", "10", url}, 20s, "curl");
  return r.code == 0 ? r.out : "";
}

// One PromQL instant query's scalar (the first series' value), or NaN.
double promql(const fs::path& dir, const std::string& prometheus, const std::string& query) {
  CliResult r = run_argv(dir,
                         {"/usr/bin/curl", "-sS", "--max-time", "10", "-G", prometheus + "/api/v1/query",
                          "--data-urlencode", "query=" + query},
                         20s, "promql");
  const json doc = json::parse(r.out, nullptr, false);
  if (doc.is_discarded() || doc.value("status", "") != "success") return std::nan("");
  const json& result = doc["data"]["result"];
  if (!result.is_array() || result.empty()) return std::nan("");
  return std::stod(result[0]["value"][1].get<std::string>());
}

TEST(MetricsTest, PrometheusScrapesEveryNodeAndPromqlSeesTrainingAndPredictions) {
  if (!fs::exists(kPrometheus))
    GTEST_SKIP() << kPrometheus << " is not installed (Debian: apt-get install prometheus)";
  ClusterOptions o;
  o.servers = 0;
  o.workers = 0;
  const fs::path dir = fs::temp_directory_path() / ("custody-metrics-" + std::to_string(getpid()));
  o.coordinator_args = {
      "--metrics-listen", "127.0.0.1:0", "--metrics-port-file", (dir / "coordinator.metrics").string(),
      "--http-listen",    "127.0.0.1:0", "--http-port-file",    (dir / "http.addr").string(),
      // The byte counters count sockets: parameter blocks go through them, not through
      // shared memory, so that the servers' replies are on the wire the test measures.
      "--no-data-plane-shared-memory"};
  LocalCluster c("metrics", o);
  std::vector<std::string> targets = {wait_for_file(dir / "coordinator.metrics")};
  auto metrics_args = [&](const std::string& name) {
    return std::vector<std::string>{"--metrics-listen", "127.0.0.1:0", "--metrics-port-file",
                                    (dir / (name + ".metrics")).string()};
  };
  c.add_node("custody-ps", "ps-1", metrics_args("ps-1"));
  c.add_node("custody-worker", "worker-1", metrics_args("worker-1"));
  c.add_node("custody-worker", "worker-2", metrics_args("worker-2"));
  for (const char* n : {"ps-1", "worker-1", "worker-2"})
    targets.push_back(wait_for_file(dir / (std::string(n) + ".metrics")));
  for (const auto& t : targets) ASSERT_FALSE(t.empty()) << "a node did not write its metrics address";
  ASSERT_TRUE(c.wait_for_nodes(3));

  // A Prometheus server scraping the four nodes every second.
  const int prom_port = free_port();
  std::string config =
      "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n"
      "  - job_name: custody\n    static_configs:\n      - targets: [";
  for (size_t i = 0; i < targets.size(); ++i) config += (i ? ", '" : "'") + targets[i] + "'";
  config += "]\n";
  std::ofstream(dir / "prometheus.yml") << config;
  Process prometheus({kPrometheus, "--config.file=" + (dir / "prometheus.yml").string(),
                      "--storage.tsdb.path=" + (dir / "tsdb").string(),
                      "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)},
                     dir / "prometheus.log");
  const std::string prom = "http://127.0.0.1:" + std::to_string(prom_port);
  // Scraping before the job starts: a rate needs the counters' values before the jump.
  for (auto deadline = std::chrono::steady_clock::now() + 30s;
       promql(dir, prom, "count(custody_training_samples_total == 0)") != 2 && std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(200ms)) {
  }

  // The job: 2 workers x 2 epochs x 100 steps of 16 samples; one server takes every push.
  CliResult submitted =
      c.cli({"submit", c.write_job("served.toml", synthetic_mlp_job("served", 2, 3200)).string()});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  ASSERT_EQ(c.cli({"wait", submitted.out.substr(0, submitted.out.find('\n'))}).code, 0);
  // Predictions: 2 CLI calls of 3 rows (ZeroMQ), 1 HTTP call of 2 rows, 1 refused call.
  const std::string row = trimmed(synthetic_mlp_row());
  const fs::path rows = c.write_job("rows.csv", row + "\n" + row + "\n" + row + "\n");
  for (int i = 0; i < 2; ++i) ASSERT_EQ(c.cli({"predict", "served", "--input", rows.string()}).code, 0);
  const std::string http = "http://" + wait_for_file(dir / "http.addr");
  const fs::path body =
      c.write_job("body.json", "{\"model\":\"served\",\"instances\":[[" + row + "],[" + row + "]]}");
  CliResult posted = run_argv(dir, {"/usr/bin/curl", "-sS", "-H", "Content-Type: application/json",
                                    "--data-binary", "@" + body.string(), http + "/predict"});
  ASSERT_NE(posted.out.find("prediction_ids"), std::string::npos) << posted.out << posted.err;
  EXPECT_NE(c.cli({"predict", "served@7", "--input", rows.string()}).code, 0);

  // What a scrape reads, by name.
  const std::string text = http_get(dir, "http://" + targets[0] + "/metrics");
  for (const char* name :
       {"# TYPE custody_prediction_duration_seconds histogram", "custody_jobs{state=\"completed\"} 1",
        "custody_store_write_duration_seconds_bucket", "custody_network_received_bytes_total",
        "custody_job_recoveries_total 0"}) {
    EXPECT_NE(text.find(name), std::string::npos) << name << " in\n" << text;
  }

  // PromQL, once Prometheus has scraped everything since the calls.
  auto settled = [&](const std::string& q, double want) {
    double got = std::nan("");
    for (auto deadline = std::chrono::steady_clock::now() + 30s; std::chrono::steady_clock::now() < deadline;
         std::this_thread::sleep_for(500ms)) {
      got = promql(dir, prom, q);
      if (got == want) break;
    }
    return got;
  };
  EXPECT_EQ(settled("count(up == 1)", 4), 4) << "every node scraped";
  EXPECT_EQ(settled("sum(custody_training_samples_total)", 6400), 6400)
      << "2 workers x 200 steps x 16 samples";
  EXPECT_EQ(settled("sum(custody_ps_pushes_total{result=\"accepted\"})", 400), 400);
  EXPECT_EQ(settled("sum(custody_training_step_duration_seconds_count)", 400), 400);
  EXPECT_EQ(settled("sum(custody_prediction_calls_total{result=\"ok\"})", 3), 3);
  EXPECT_EQ(settled("custody_predictions_total", 8), 8) << "3 + 3 + 2 rows";
  EXPECT_EQ(settled("sum(custody_prediction_calls_total{result=\"not_found\"})", 1), 1);
  EXPECT_EQ(settled("custody_prediction_duration_seconds_count{route=\"http\"}", 1), 1);
  // The training rate: samples/s over the job's run, as a dashboard would plot it. A short
  // job may fall between two scrapes (counters 0, then the total): the subquery's steps
  // fall on whole seconds, so one of them holds both samples only once a step after the
  // jump has passed. Two scrapes after the jump's are waited for.
  for (auto deadline = std::chrono::steady_clock::now() + 30s;
       !(promql(dir, prom, "min(count_over_time(custody_training_samples_total[5m]))") >= 4) &&
       std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(250ms)) {
  }
  const double peak =
      promql(dir, prom, "max_over_time(sum(rate(custody_training_samples_total[3s]))[5m:1s])");
  EXPECT_GT(peak, 100) << "samples/s while training";
  EXPECT_GE(promql(dir, prom, "sum(custody_network_sent_bytes_total)"), 400 * 4.0 * 596)
      << "at least the servers' replies: 400 pushes answered with the 596 parameters each";
  if (!::testing::Test::HasFailure()) fs::remove_all(dir / "tsdb");
}

// The value of the sample `series` (name and labels, as rendered) in a /metrics text; -1 if
// absent.
double sample(const std::string& text, const std::string& series) {
  const size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

// Every node counts the bytes its sockets carry, workers included: after a job, each
// worker's /metrics shows at least its gradients sent and the new values received on the
// data plane, and its traffic with the coordinator. No Prometheus needed.
TEST(MetricsTest, EveryWorkerCountsTheBytesItSendsAndReceives) {
  ClusterOptions o;
  o.servers = 0;
  o.workers = 0;
  // Parameter blocks through the sockets, not shared memory: the bytes are on the wire.
  o.coordinator_args = {"--no-data-plane-shared-memory"};
  LocalCluster c("metrics-bytes", o);
  auto metrics_args = [&](const std::string& name) {
    return std::vector<std::string>{"--metrics-listen", "127.0.0.1:0", "--metrics-port-file",
                                    (c.dir() / (name + ".metrics")).string()};
  };
  c.add_node("custody-ps", "ps-1", metrics_args("ps-1"));
  c.add_node("custody-worker", "worker-1", metrics_args("worker-1"));
  c.add_node("custody-worker", "worker-2", metrics_args("worker-2"));
  ASSERT_TRUE(c.wait_for_nodes(3));
  std::map<std::string, std::string> address;
  for (const char* n : {"ps-1", "worker-1", "worker-2"}) {
    address[n] = wait_for_file(c.dir() / (std::string(n) + ".metrics"));
    ASSERT_FALSE(address[n].empty()) << n << " did not write its metrics address";
  }
  const std::string before = http_get(c.dir(), "http://" + address["worker-1"] + "/metrics");
  EXPECT_EQ(sample(before, "custody_network_sent_bytes_total{channel=\"peers\"}"), 0) << before;
  // 2 workers x 2 epochs x 100 steps; each push carries the 596 parameters' gradient, each
  // answer their new values (4 bytes each).
  CliResult submitted = c.cli({"submit", c.write_job("bytes.toml", synthetic_mlp_job("bytes", 2, 3200)).string()});
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  ASSERT_EQ(c.cli({"wait", submitted.out.substr(0, submitted.out.find('\n'))}).code, 0);
  const double floats = 200.0 * 596 * 4;
  for (const char* n : {"worker-1", "worker-2"}) {
    const std::string text = http_get(c.dir(), "http://" + address[n] + "/metrics");
    EXPECT_NE(text.find("# TYPE custody_network_sent_bytes_total counter"), std::string::npos) << text;
    EXPECT_GE(sample(text, "custody_network_sent_bytes_total{channel=\"peers\"}"), floats) << n << "\n" << text;
    EXPECT_GE(sample(text, "custody_network_received_bytes_total{channel=\"peers\"}"), floats) << n << "\n" << text;
    EXPECT_GT(sample(text, "custody_network_sent_bytes_total{channel=\"coordinator\"}"), 0) << n << "\n" << text;
    EXPECT_GT(sample(text, "custody_network_received_bytes_total{channel=\"coordinator\"}"), 0) << n << "\n" << text;
  }
  const std::string server = http_get(c.dir(), "http://" + address["ps-1"] + "/metrics");
  EXPECT_GE(sample(server, "custody_network_received_bytes_total{channel=\"peers\"}"), 2 * floats) << server;
  EXPECT_GE(sample(server, "custody_network_sent_bytes_total{channel=\"peers\"}"), 2 * floats) << server;
}

}  // namespace
}  // namespace custody::testing
