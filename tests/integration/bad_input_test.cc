// Hostile and broken input over real sockets: a raw ZeroMQ client (not Custody's own
// transport) sends malformed, truncated, oversized, multi-frame and unknown messages to a
// running coordinator and parameter server. Each must answer with an error naming the
// problem, and keep serving.
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "protocols/codec.h"
#include "protocols/data_plane.h"
#include "tests/integration/cluster.h"

namespace custody::testing {
namespace {

class RawClient {
 public:
  explicit RawClient(const std::string& address) : socket_(ctx_, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.connect(address);
  }
  void send(const std::vector<uint8_t>& bytes) { socket_.send(zmq::buffer(bytes), zmq::send_flags::none); }
  void send_parts(const std::vector<std::vector<uint8_t>>& parts) {
    for (size_t i = 0; i < parts.size(); ++i) {
      socket_.send(zmq::buffer(parts[i]), i + 1 < parts.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  // The next reply, decoded; fails the test if none comes in time.
  msg::Envelope reply() {
    zmq::pollitem_t items[] = {{socket_.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items, 1, std::chrono::milliseconds(10000));
    zmq::message_t m;
    if (!(items[0].revents & ZMQ_POLLIN) || !socket_.recv(m, zmq::recv_flags::none)) {
      ADD_FAILURE() << "no reply within 10 s";
      return {};
    }
    auto e = msg::decode(static_cast<const uint8_t*>(m.data()), m.size());
    EXPECT_TRUE(e.is_ok()) << e.status().to_string();
    return e.is_ok() ? e.value() : msg::Envelope{};
  }
  std::string error_reply_after(const std::vector<uint8_t>& bytes) {
    send(bytes);
    return error_reply();
  }
  std::string error_reply() {
    msg::Envelope e = reply();
    const auto* err = e.get<msg::Error>();
    EXPECT_NE(err, nullptr) << "expected an error reply, got " << msg::body_name(e.body);
    return err ? err->message : "";
  }

 private:
  zmq::context_t ctx_;
  zmq::socket_t socket_;
};

std::vector<uint8_t> valid(msg::Body body, const std::string& job = "", uint16_t version = msg::kProtocolVersion) {
  msg::Envelope e;
  e.version = version;
  e.sender = "test";
  e.job_id = job;
  e.body = std::move(body);
  return msg::encode(e).to_vector();
}

void expect_mentions(const std::string& message, const std::string& what) {
  EXPECT_NE(message.find(what), std::string::npos) << "error reply: " << message;
}

// A job submitted to a cluster with one parameter server, once it runs: its id, the status
// that showed it running, and the address of the server that holds the whole model.
struct RunningJob {
  std::string id, ps_address, submit_error;
  nlohmann::json status;
};
RunningJob submit_and_wait_until_running(LocalCluster& c, const std::string& spec) {
  RunningJob r;
  CliResult submitted = c.cli({"submit", c.write_job("target.toml", spec).string()});
  if (submitted.code != 0) {
    r.submit_error = submitted.err;
    return r;
  }
  r.id = submitted.out.substr(0, submitted.out.find('\n'));
  auto deadline = std::chrono::steady_clock::now() + 30s;
  do {
    r.status = nlohmann::json::parse(c.cli({"status", "--json"}).out);
    std::this_thread::sleep_for(50ms);
  } while (r.status["jobs"][0]["state"] != "running" && std::chrono::steady_clock::now() < deadline);
  for (const auto& n : r.status["nodes"])
    if (n["role"] == "parameter-server") r.ps_address = n["address"];
  return r;
}

TEST(BadInputTest, CoordinatorAnswersGarbageWithErrorsAndStaysUp) {
  ClusterOptions options;
  options.servers = options.workers = 0;
  options.coordinator_args = {"--max-message-mib", "1"};
  LocalCluster c("badinput-coord", options);
  RawClient client(c.address());

  client.send({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13});
  expect_mentions(client.error_reply(), "8-byte");

  client.send(std::vector<uint8_t>(64, 0xff));
  expect_mentions(client.error_reply(), "malformed");

  auto truncated = valid(msg::SubmitJob{std::string(500, 'x'), "f.toml", "eve"});
  truncated.resize(truncated.size() / 2 / 8 * 8);
  expect_mentions(client.error_reply_after(truncated), "malformed");

  client.send(std::vector<uint8_t>(size_t(2) << 20, 0));  // over the 1 MiB cap set above
  expect_mentions(client.error_reply(), "exceeds the limit");

  client.send_parts({valid(msg::StatusRequest{}), valid(msg::StatusRequest{})});
  expect_mentions(client.error_reply(), "single ZeroMQ frame");

  client.send(valid(msg::Heartbeat{}, "", 99));
  expect_mentions(client.error_reply(), "protocol version 99");

  client.send(valid(msg::TaskDone{1, 1}, "job-1"));
  expect_mentions(client.error_reply(), "register first");

  client.send(valid(msg::SubmitJob{"[job]\nworkers = 0\n", "w.toml", "eve"}));
  expect_mentions(client.error_reply(), "job.workers");

  // Still serving.
  client.send(valid(msg::StatusRequest{true}));
  msg::Envelope status = client.reply();
  EXPECT_NE(status.get<msg::StatusReply>(), nullptr);
  EXPECT_TRUE(c.coordinator().running());
}

TEST(BadInputTest, ParameterServerAnswersBadPushesWithErrorsAndStaysUp) {
  LocalCluster c("badinput-ps", {1, 0});
  ASSERT_TRUE(c.wait_for_nodes(1));
  auto status = nlohmann::json::parse(c.cli({"status", "--json"}).out);
  const std::string ps_address = status["nodes"][0]["address"];
  RawClient client(ps_address);

  client.send({0xde, 0xad, 0xbe, 0xef});
  expect_mentions(client.error_reply(), "8-byte");

  client.send(valid(msg::Push{"w", 0, std::vector<float>(10, 1.0f)}, "job-unknown"));
  expect_mentions(client.error_reply(), "holds no keys of job 'job-unknown'");

  client.send(valid(msg::Pull{"w"}, "job-unknown"));
  expect_mentions(client.error_reply(), "job-unknown");

  client.send(valid(msg::SubmitJob{"", "", ""}));
  EXPECT_FALSE(client.error_reply().empty());

  EXPECT_TRUE(c.node(0).running());
  // And it still answers its coordinator: it is alive in the status.
  ASSERT_TRUE(c.wait_for_nodes(1));
}

// Hostile pushes into a running job's own key range: the wrong length, NaN and infinite
// values, a rank the job does not have, an attempt that is not the current one, a replay of
// an applied step. Each is refused with an error naming it; the job completes as if nothing
// happened, and the custody store still verifies.
TEST(BadInputTest, HostilePushesIntoARunningJobAreRefusedAndTheJobCompletes) {
  LocalCluster c("badinput-job", {1, 2});
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string spec =
      "[job]\nname = \"target\"\nepochs = 40\nbatch_size = 16\nworkers = 2\n[model]\ntype = \"mlp\"\n"
      "hidden = [16]\nclasses = 4\n[optimizer]\ntype = \"sgd\"\nlearning_rate = 0.1\n[data]\nkind = \"synthetic\"\n"
      "[data.synthetic]\ntrain_samples = 4000\ntest_samples = 400\nfeatures = 32\nclasses = 4\n";
  const RunningJob running = submit_and_wait_until_running(c, spec);
  ASSERT_EQ(running.status["jobs"][0]["state"], "running") << running.submit_error;
  const std::string& job = running.id;
  const std::string& ps_address = running.ps_address;
  // `wait` giving up on a job that goes on has its own exit code (README, "Exit codes").
  CliResult gave_up = c.cli({"wait", job, "--max-seconds", "0"});
  EXPECT_EQ(gave_up.code, 7) << gave_up.err;
  EXPECT_NE(gave_up.err.find("it goes on running"), std::string::npos) << gave_up.err;
  // `custody nodes`: each node with the job it works for.
  auto nodes = nlohmann::json::parse(c.cli({"nodes", "--json"}).out);
  ASSERT_EQ(nodes.size(), 3u) << nodes.dump(2);
  for (const auto& n : nodes) {
    EXPECT_TRUE(n["alive"].get<bool>()) << n.dump();
    EXPECT_EQ(n["job"], job) << n.dump();
  }
  CliResult table = c.cli({"nodes"});
  EXPECT_EQ(table.code, 0) << table.err;
  EXPECT_NE(table.out.find("LAST HEARTBEAT"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("parameter-server"), std::string::npos) << table.out;
  const size_t range = 32 * 16 + 16 + 16 * 4 + 4;  // the whole model on one server
  // The last push below names step 0, which must be long applied: on a loaded machine the
  // job may still be at step 0 here, and the push would then be the rank's first.
  for (int tries = 0; tries < 600; ++tries) {
    const auto s = nlohmann::json::parse(c.cli({"status", job, "--json"}).out);
    if (s["step"].get<uint64_t>() >= 2 || s["state"] != "running") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  RawClient client(ps_address);
  auto push = [&](msg::Push p, uint32_t attempt = 0) {
    msg::Envelope e;
    e.sender = "mallory";
    e.job_id = job;
    e.attempt = attempt;
    e.request_id = 1;
    e.body = std::move(p);
    return client.error_reply_after(msg::encode(e).to_vector());
  };
  std::vector<float> ok(range, 0.01f);
  expect_mentions(push(msg::Push{"mallory", 0, std::vector<float>(range - 1, 0.0f), 16, 0, 0}), "gradient of 595");
  std::vector<float> nan = ok;
  nan[7] = std::nanf("");
  expect_mentions(push(msg::Push{"mallory", 0, nan, 16, 0, 0}), "non-finite value at key 7");
  std::vector<float> inf = ok;
  inf[9] = std::numeric_limits<float>::infinity();
  expect_mentions(push(msg::Push{"mallory", 0, inf, 16, 0, 0}), "non-finite value at key 9");
  expect_mentions(push(msg::Push{"mallory", 0, ok, 16, 0, 7}), "rank 7");
  expect_mentions(push(msg::Push{"mallory", 0, ok, 16, 0, 0}, 3), "attempt 3");
  expect_mentions(push(msg::Push{"mallory", 0, ok, 16, 0, 0}), "step 0");  // long applied (BSP)

  CliResult waited = c.cli({"wait", job, "--max-seconds", "120"});
  EXPECT_EQ(waited.code, 0) << waited.out << waited.err;
  auto done = nlohmann::json::parse(c.cli({"status", job, "--json"}).out);
  EXPECT_EQ(done["state"], "completed");
  EXPECT_GE(done["test_accuracy"].get<double>(), 0.9);
  EXPECT_TRUE(c.node(0).running());
  CliResult verify = c.cli({"--store", c.store().string(), "audit", "verify"});
  EXPECT_EQ(verify.code, 0) << verify.out << verify.err;
  // The refusals are attributed by rank: this job's data plane is in clear (loopback), so
  // the server cannot tell who sent a push and counts it against the node the rank was
  // assigned to, never the name the push gave; the record says it was not sealed.
  uint64_t refused = 0;
  auto checkpoints = nlohmann::json::parse(c.cli({"--store", c.store().string(), "checkpoints", job, "--json"}).out);
  for (const auto& ckpt : checkpoints) {
    auto shown = nlohmann::json::parse(
        c.cli({"--store", c.store().string(), "lineage", "show", ckpt["id"].get<std::string>(), "--json"}).out);
    for (const auto& r : shown["incoming"]) {
      if (r["body"]["rel"] != "contributed") continue;
      EXPECT_NE(r["body"]["from"], "node:mallory") << "a name a push gives is not credited: " << r.dump();
      EXPECT_EQ(r["body"]["sealed"], false) << r.dump();
      if (r["body"]["rank"] == 0) refused += r["body"]["rejected"].get<uint64_t>();
    }
  }
  EXPECT_EQ(refused, 4u) << "size, NaN, infinity and replay of rank 0 (rank 7 is no one's; the wrong attempt "
                            "never reaches the job)";
}

// Someone on the network who knows a running job's id, a rank and the attempt, and holds
// no key: with the data plane sealed, the parameter server refuses every push and pull of
// theirs (in clear, or with a made-up seal), logs each, and keeps serving the job, which
// completes with the refusals counted as unauthenticated against the rank they claimed.
TEST(BadInputTest, ASealedJobsServerRefusesPushesAndPullsWithoutTheRanksKey) {
  ClusterOptions options{1, 2};
  options.coordinator_args = {"--data-plane-sealing", "on"};
  LocalCluster c("badinput-sealed", options);
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string spec = synthetic_mlp_job("target", 40, 4000);
  const RunningJob running = submit_and_wait_until_running(c, spec);
  ASSERT_EQ(running.status["jobs"][0]["state"], "running") << running.submit_error;
  EXPECT_EQ(running.status["jobs"][0]["data_plane_sealed"], true) << running.status.dump(2);
  const std::string& job = running.id;
  const std::string& ps_address = running.ps_address;
  const size_t range = 32 * 16 + 16 + 16 * 4 + 4;
  RawClient client(ps_address);
  auto send = [&](msg::Body body) {
    msg::Envelope e;
    e.sender = "worker-1";
    e.job_id = job;
    e.attempt = 0;
    e.request_id = 1;
    e.body = std::move(body);
    client.send(msg::encode(e).to_vector());
    msg::Envelope reply = client.reply();
    const auto* err = reply.get<msg::Error>();
    EXPECT_NE(err, nullptr) << "taken: " << msg::body_name(reply.body);
    if (err) {
      EXPECT_EQ(err->code, ErrorCode::kPermissionDenied) << err->message;
    }
    return err ? err->message : "";
  };
  // A push in clear, as a worker of an unsealed job sends it, of a step to come.
  expect_mentions(send(msg::Push{"worker-1", 1000000, std::vector<float>(range, 0.01f), 16, 0, 0}), "in clear");
  // A push whose seal is made up: the right size, random bytes.
  msg::Push forged{"worker-1", 1000000, {}, 16, 0, 0};
  std::vector<uint8_t> noise(data_plane::sealed_size(range * sizeof(float)));
  for (size_t i = 0; i < noise.size(); ++i) noise[i] = static_cast<uint8_t>(i * 131 + 7);
  forged.sealed_gradient = msg::SharedBytes::copy_of(noise.data(), noise.size());
  expect_mentions(send(forged), "not sealed under the key of rank 0");
  expect_mentions(send(msg::Pull{"worker-1", 0}), "in clear");
  expect_mentions(send(msg::Pull{"worker-1", 1, std::string(kAeadOverhead, 'x')}), "rank 1");
  EXPECT_TRUE(c.node(0).running());

  CliResult waited = c.cli({"wait", job, "--max-seconds", "120"});
  EXPECT_EQ(waited.code, 0) << waited.out << waited.err;
  auto done = nlohmann::json::parse(c.cli({"status", job, "--json"}).out);
  EXPECT_EQ(done["state"], "completed");
  EXPECT_GE(done["test_accuracy"].get<double>(), 0.9);
  EXPECT_TRUE(c.node(0).running());
  const std::string log = read_file(c.dir() / "ps-1.log");
  EXPECT_NE(log.find("refused a push claiming rank 0 of " + job), std::string::npos) << log;
  EXPECT_NE(log.find("refused a pull claiming rank 1 of " + job), std::string::npos) << log;
  // Counted against the ranks they claimed as unauthenticated, not as the nodes' rejections.
  uint64_t unauthenticated = 0, rejected = 0;
  auto checkpoints = nlohmann::json::parse(c.cli({"--store", c.store().string(), "checkpoints", job, "--json"}).out);
  for (const auto& ckpt : checkpoints) {
    auto shown = nlohmann::json::parse(
        c.cli({"--store", c.store().string(), "lineage", "show", ckpt["id"].get<std::string>(), "--json"}).out);
    for (const auto& r : shown["incoming"]) {
      if (r["body"]["rel"] != "contributed") continue;
      EXPECT_EQ(r["body"]["sealed"], true) << r.dump();
      EXPECT_TRUE(r["body"].contains("key_fingerprints")) << r.dump();
      unauthenticated += r["body"].value("unauthenticated", uint64_t(0));
      rejected += r["body"]["rejected"].get<uint64_t>();
    }
  }
  EXPECT_EQ(unauthenticated, 4u);
  EXPECT_EQ(rejected, 0u);
  CliResult verify = c.cli({"--store", c.store().string(), "audit", "verify"});
  EXPECT_EQ(verify.code, 0) << verify.out << verify.err;
}

// A flag takes the values its config key takes (nodes/node_options.h, tools/command.h): one
// outside the range stops the program at startup, naming the flag and the range, instead of
// (for --max-message-mib 0) a coordinator that refuses every message.
TEST(BadInputTest, FlagsOutsideTheirConfigRangesAreRefusedAtStartupNamingFlagAndRange) {
  const fs::path dir = fs::temp_directory_path() / ("custody-bad-flags-" + std::to_string(getpid()));
  fs::create_directories(dir);
  struct Case {
    std::vector<std::string> argv;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {{bin("custody-coordinator"), "--listen", "tcp://127.0.0.1:0", "--max-message-mib", "0"},
       "--max-message-mib: Value 0 not in range 1 to 4096"},
      {{bin("custody-coordinator"), "--listen", "tcp://127.0.0.1:0", "--heartbeat-interval-ms", "10"},
       "--heartbeat-interval-ms: Value 10 not in range 50 to 600000"},
      {{bin("custody-coordinator"), "--listen", "tcp://127.0.0.1:0", "--max-recoveries", "-1"},
       "--max-recoveries: Value -1 not in range 0 to 1000"},
      {{bin("custody-coordinator"), "--listen", "tcp://127.0.0.1:0", "--data-plane-sealing", "maybe"},
       "--data-plane-sealing: maybe not in {auto,on,off}"},
      {{bin("custody-ps"), "--connect-timeout-ms", "0"}, "--connect-timeout-ms: Value 0 not in range 100 to 3600000"},
      {{bin("custody-worker"), "--step-timeout-ms", "99"}, "--step-timeout-ms: Value 99 not in range 100 to 3600000"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    Process p(cases[i].argv, dir / ("node-" + std::to_string(i) + ".log"));
    ASSERT_TRUE(p.wait_for_exit(10s)) << cases[i].expected << ": the node started anyway";
    EXPECT_EQ(p.exit_code(), 2) << cases[i].expected << ": bad usage exits 2, as the CLI's";
    EXPECT_NE(read_file(p.log()).find(cases[i].expected), std::string::npos) << read_file(p.log());
  }
  // An unknown flag: one line naming the binary and where its usage is. --version: the
  // version, the commit and the CPU baseline, exit 0.
  for (const std::string node : {"custody-coordinator", "custody-ps", "custody-worker"}) {
    CliResult unknown = run_argv(dir, {bin(node), "--no-such-flag"}, 10s);
    EXPECT_EQ(unknown.code, 2) << node;
    EXPECT_EQ(unknown.err, node + ": The following argument was not expected: --no-such-flag (" + node +
                               " --help shows the usage)\n");
    CliResult version = run_argv(dir, {bin(node), "--version"}, 10s);
    EXPECT_EQ(version.code, 0) << node << version.err;
    EXPECT_EQ(version.out.rfind("custody 0.", 0), 0u) << node << ": " << version.out;
    EXPECT_NE(version.out.find("(git "), std::string::npos) << version.out;
  }
  CliResult version = run_cli(dir, {"--version"});
  EXPECT_EQ(version.code, 0);
  EXPECT_EQ(version.out.rfind("custody 0.", 0), 0u) << version.out;
  // The CLI: its flags too, and bad usage is exit code 2 (README, "Exit codes").
  CliResult timeout = run_cli(dir, {"--timeout-ms", "0", "jobs"});
  EXPECT_EQ(timeout.code, 2);
  EXPECT_NE(timeout.err.find("--timeout-ms: Value 0 not in range 1 to 3600000"), std::string::npos) << timeout.err;
  CliResult batch = run_cli(dir, {"predict", "m", "--input", "x.csv", "--batch", "0"});
  EXPECT_EQ(batch.code, 2);
  EXPECT_NE(batch.err.find("--batch: Value 0 not in range 1 to"), std::string::npos) << batch.err;
  CliResult unknown = run_cli(dir, {"stauts"});
  EXPECT_EQ(unknown.code, 2);
  EXPECT_EQ(unknown.err, "custody: unknown command 'stauts' (custody --help shows the usage)\n");
  CliResult unknown_flag = run_cli(dir, {"status", "--bogus"});
  EXPECT_EQ(unknown_flag.code, 2);
  EXPECT_EQ(unknown_flag.err,
            "custody: The following argument was not expected: --bogus (custody status --help shows the usage)\n");
  CliResult help = run_cli(dir, {"--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("Exit codes:\n  0  ok\n  1  the job `wait` followed failed or was cancelled"),
            std::string::npos)
      << help.out;
  EXPECT_NE(help.out.find("  7  `wait --max-seconds` ran out; the job goes on running"), std::string::npos)
      << help.out;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace custody::testing
