// HTTP serving against a real coordinator process, with the clients users already have:
// curl and a Python script using only `requests` (tests/integration/oip_client.py). Their
// predictions match `custody predict` on the same rows; every call is authenticated by a
// bearer token and metered before it is answered; bad calls get the protocol's error
// object with the right status and leave no record; hostile clients (huge bodies, slow
// senders, many idle connections) are turned away while the server keeps answering.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <nlohmann/json.hpp>

#include "tests/integration/cluster.h"

namespace custody::testing {
namespace {

using nlohmann::json;

const std::string kJob = synthetic_mlp_job("served", 2, 3200);

struct HttpResult {
  int status = 0;
  std::string body;
  json doc;  // body as JSON, or null
};

// curl, as a user would type it. `extra`: more curl flags (headers, data, TLS).
HttpResult curl(const fs::path& dir, const std::string& url, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv = {"/usr/bin/curl", "-sS", "--max-time", "20", "-o", "-", "-w",
                                   "\n%{http_code}"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(url);
  CliResult r = run_argv(dir, argv, std::chrono::seconds(30), "curl");
  HttpResult h;
  const auto nl = r.out.rfind('\n');
  if (nl == std::string::npos) return h;
  h.status = std::atoi(r.out.c_str() + nl + 1);
  h.body = r.out.substr(0, nl);
  h.doc = json::parse(h.body, nullptr, false);
  if (h.doc.is_discarded()) h.doc = nullptr;
  return h;
}

std::string trimmed(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  return s;
}

// The HTTP listener's base URL, once it has written its port file.
std::string wait_for_http(const fs::path& port_file, const std::string& scheme = "http") {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!fs::exists(port_file) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  return scheme + "://" + trimmed(read_file(port_file));
}

// A TCP connection to HOST:PORT of `url`, or -1.
int connect_to(const std::string& url) {
  const auto colon = url.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(url.substr(colon + 1))));
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// 3 rows of the synthetic job's 32 features (raw values 0 to 255, as the model takes
// them), as CSV and as an OIP tensor's data.
struct Rows {
  std::string csv;
  std::vector<float> values;
};
Rows three_rows() {
  Rows r;
  for (int row = 0; row < 3; ++row) {
    for (int f = 0; f < 32; ++f) {
      const float v = static_cast<float>((row * 5 + f * 3) % 7 * 42);
      r.values.push_back(v);
      r.csv += (f ? "," : "") + std::to_string(v);
    }
    r.csv += "\n";
  }
  return r;
}

std::string repeated(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// `values` with the one at `index` replaced.
std::vector<float> with_value(std::vector<float> values, size_t index, float v) {
  values[index] = v;
  return values;
}

std::string infer_body(const std::vector<float>& values, size_t rows, size_t features) {
  return json{
      {"inputs", {{{"name", "input"}, {"shape", {rows, features}}, {"datatype", "FP32"}, {"data", values}}}}}
      .dump();
}

class HttpTest : public ::testing::Test {
 protected:
  // A token-secured cluster that has trained "served", with the HTTP listener on.
  void start(std::vector<std::string> http_args = {}) {
    ClusterOptions o;
    o.auth = true;
    const fs::path dir = fs::temp_directory_path() / ("custody-http-" + std::to_string(getpid()));
    port_file_ = dir / "http.addr";
    o.coordinator_args = {"--http-listen", "127.0.0.1:0", "--http-port-file", port_file_.string()};
    o.coordinator_args.insert(o.coordinator_args.end(), http_args.begin(), http_args.end());
    cluster_ = std::make_unique<LocalCluster>("http", o);
    LocalCluster& c = *cluster_;
    ASSERT_TRUE(c.wait_for_nodes(4));
    url_ = wait_for_http(port_file_);
    const std::string admin = c.admin_token().string();
    CliResult alice = c.cli({"--token-file", admin, "principal", "add", "alice", "--role", "submitter"});
    ASSERT_EQ(alice.code, 0) << alice.err;
    std::ofstream(c.dir() / "alice.token") << alice.out;
    CliResult carol = c.cli({"--token-file", admin, "principal", "add", "carol", "--role", "consumer"});
    ASSERT_EQ(carol.code, 0) << carol.err;
    carol_token_ = trimmed(carol.out);
    std::ofstream(c.dir() / "carol.token") << carol_token_ << "\n";
    CliResult submitted = c.cli({"--token-file", (c.dir() / "alice.token").string(), "submit",
                                 c.write_job("served.toml", kJob).string()});
    ASSERT_EQ(submitted.code, 0) << submitted.err;
    const std::string job = submitted.out.substr(0, submitted.out.find('\n'));
    ASSERT_EQ(c.cli({"--token-file", admin, "wait", job}).code, 0);
  }
  size_t usage_records() {  // every record of "served", not only the newest page the listing shows
    CliResult r =
        cluster_->cli({"--token-file", cluster_->admin_token().string(), "usage", "served", "--json"});
    EXPECT_EQ(r.code, 0) << r.err;
    return json::parse(r.out)["records_total"].get<size_t>();
  }
  std::vector<std::string> auth(const std::string& token) { return {"-H", "Authorization: Bearer " + token}; }
  HttpResult post(const std::string& path, const std::string& body, const std::string& token) {
    const fs::path f = cluster_->write_job("body-" + std::to_string(++posts_) + ".json", body);
    std::vector<std::string> args = auth(token);
    args.insert(args.end(), {"-H", "Content-Type: application/json", "--data-binary", "@" + f.string()});
    return curl(cluster_->dir(), url_ + path, args);
  }

  std::unique_ptr<LocalCluster> cluster_;
  fs::path port_file_;
  std::string url_, carol_token_;
  int posts_ = 0;
};

TEST_F(HttpTest, CurlAndRequestsGetTheCliPredictionsAuthenticatedAndMetered) {
  start();
  if (HasFatalFailure()) return;
  LocalCluster& c = *cluster_;
  const Rows rows = three_rows();
  const fs::path csv = c.write_job("rows.csv", rows.csv);
  CliResult cli = c.cli({"--token-file", (c.dir() / "carol.token").string(), "predict", "served", "--input",
                         csv.string(), "--json"});
  ASSERT_EQ(cli.code, 0) << cli.err;
  const json expected = json::parse(cli.out);
  ASSERT_EQ(expected.size(), 3u);
  const size_t before = usage_records();

  // Health and metadata, as a KServe client asks them.
  EXPECT_EQ(curl(c.dir(), url_ + "/v2/health/live").status, 200);
  EXPECT_EQ(curl(c.dir(), url_ + "/v2/health/ready").status, 200);
  EXPECT_EQ(curl(c.dir(), url_ + "/v2").doc["name"], "custody");
  HttpResult meta = curl(c.dir(), url_ + "/v2/models/served", auth(carol_token_));
  ASSERT_EQ(meta.status, 200) << meta.body;
  EXPECT_EQ(meta.doc["inputs"][0]["shape"], json({-1, 32}));
  EXPECT_EQ(meta.doc["outputs"][0]["shape"], json({-1, 4}));
  // The input contract: raw pixel values 0 to 255, scaled by the service.
  const json& contract = meta.doc["inputs"][0]["parameters"];
  EXPECT_NE(contract.value("expects", "").find("raw pixel values 0 to 255"), std::string::npos) << meta.body;
  EXPECT_NE(contract.value("preprocessing", "").find("pixel x (1/255)"), std::string::npos) << meta.body;
  EXPECT_EQ(contract["range"], json({0, 255})) << meta.body;
  EXPECT_EQ(meta.doc["parameters"]["input_range"], json({0, 255})) << meta.body;
  EXPECT_EQ(meta.doc["versions"], json({"1"}));
  EXPECT_EQ(curl(c.dir(), url_ + "/v2/models/served/versions/1/ready", auth(carol_token_)).status, 200);

  // curl: an OIP tensor.
  HttpResult inferred = post("/v2/models/served/infer", infer_body(rows.values, 3, 32), carol_token_);
  ASSERT_EQ(inferred.status, 200) << inferred.body;
  EXPECT_EQ(inferred.doc["model_name"], "served");
  EXPECT_EQ(inferred.doc["model_version"], "1");
  const json& probabilities = inferred.doc["outputs"][0];
  ASSERT_EQ(probabilities["shape"], json({3, 4}));
  for (int r = 0; r < 3; ++r) {
    for (int k = 0; k < 4; ++k) {
      EXPECT_NEAR(probabilities["data"][r * 4 + k].get<double>(),
                  expected[r]["probabilities"][k].get<double>(), 1e-6)
          << "row " << r;
    }
    EXPECT_EQ(inferred.doc["outputs"][1]["data"][r], expected[r]["class"]);
  }
  const json ids = inferred.doc["parameters"]["prediction_ids"];
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_FALSE(inferred.doc["parameters"]["receipt"].is_null()) << "a recorded call's receipt";

  // Python with requests: the Flask-style route and the OIP route.
  for (const bool flask : {true, false}) {
    std::vector<std::string> argv = {"/usr/bin/python3",
                                     CUSTODY_SOURCE_DIR "/tests/integration/oip_client.py",
                                     url_,
                                     "served",
                                     csv.string(),
                                     "--token",
                                     (c.dir() / "carol.token").string()};
    if (flask) argv.push_back("--flask");
    CliResult py = run_argv(c.dir(), argv, std::chrono::seconds(30), "python");
    ASSERT_EQ(py.code, 0) << py.err;
    const json answer = json::parse(py.out);
    ASSERT_EQ(answer["status"], 200) << py.out;
    for (int r = 0; r < 3; ++r) {
      const double got = flask ? answer["body"]["predictions"][r]["probabilities"][2].get<double>()
                               : answer["body"]["outputs"][0]["data"][r * 4 + 2].get<double>();
      EXPECT_NEAR(got, expected[r]["probabilities"][2].get<double>(), 1e-6) << (flask ? "flask" : "oip");
    }
    EXPECT_EQ(answer["body"]["parameters"]["prediction_ids"].size(), 3u);
  }
  EXPECT_EQ(usage_records(), before + 3) << "each HTTP call recorded once";

  // The prediction id traces to the caller the token proves, whatever the body claims.
  const json spoofed =
      json::parse(post("/predict",
                       R"({"model": "served", "instances": [[)" + rows.csv.substr(0, rows.csv.find('\n')) +
                           R"(]], "parameters": {"principal": "mallory"}})",
                       carol_token_)
                      .body);
  const std::string pid = spoofed["parameters"]["prediction_ids"][0];
  CliResult trace = c.cli({"--token-file", c.admin_token().string(), "lineage", "trace", pid, "--json"});
  ASSERT_EQ(trace.code, 0) << trace.err;
  EXPECT_EQ(json::parse(trace.out)["usage"]["body"]["principal"], "principal:carol");
}

TEST_F(HttpTest, BadCallsGetTheRightStatusAnErrorObjectAndNoRecord) {
  start();
  if (HasFatalFailure()) return;
  LocalCluster& c = *cluster_;
  const Rows rows = three_rows();
  const size_t before = usage_records();
  const std::string good = infer_body(rows.values, 3, 32);
  struct Case {
    std::string what, path, body, token;
    int status;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"no token", "/v2/models/served/infer", good, "", 401, "Authorization: Bearer TOKEN"},
      {"a wrong token", "/v2/models/served/infer", good, std::string(64, 'a'), 401, "not known"},
      {"a role that may not predict", "/v2/models/served/infer", good,
       trimmed(read_file(c.dir() / "node.token")), 403, "(node) may not send 'predict'"},
      {"an unknown model", "/v2/models/nosuch/infer", good, carol_token_, 404, "nosuch"},
      {"an unknown version", "/v2/models/served/versions/9/infer", good, carol_token_, 404, "no version 9"},
      {"malformed JSON", "/v2/models/served/infer", "{\"inputs\": [", carol_token_, 400, "not valid JSON"},
      {"NaN", "/v2/models/served/infer",
       R"({"inputs":[{"name":"x","shape":[1,1],"datatype":"FP32","data":[NaN]}]})", carol_token_, 400,
       "not valid JSON"},
      {"an overflowing value", "/predict", R"({"model":"served","instances":[[1e39]]})", carol_token_, 400,
       "not a finite float32"},
      {"the wrong width", "/v2/models/served/infer", infer_body({1, 2, 3}, 1, 3), carol_token_, 400,
       "takes 32 features per row; got 3"},
      {"a shape that lies", "/v2/models/served/infer", infer_body(rows.values, 2, 32), carol_token_, 400,
       "more values than its shape says"},
      {"no model for /predict", "/predict", R"({"instances":[[1]]})", carol_token_, 400, "name the model"},
      {"a pixel above 255", "/v2/models/served/infer", infer_body(with_value(rows.values, 37, 256), 3, 32),
       carol_token_, 400, "row 1, column 5: 256 is outside the range model served@1 accepts: raw pixel values 0 to 255"},
      {"a negative pixel", "/predict", R"({"model":"served","instances":[[-1)" + repeated(",0", 31) + "]]}",
       carol_token_, 400, "row 0, column 0: -1 is outside the range"},
      {"pixels scaled to [0, 1] (the Flask examples' habit)", "/predict",
       R"({"model":"served","instances":[[0.5)" + repeated(",0.25", 31) + "]]}", carol_token_, 400,
       "row 0 looks already scaled to [0, 1]"},
  };
  for (const auto& k : cases) {
    HttpResult r = post(k.path, k.body, k.token);
    EXPECT_EQ(r.status, k.status) << k.what << ": " << r.body;
    ASSERT_TRUE(r.doc.is_object() && r.doc.contains("error")) << k.what << ": " << r.body;
    EXPECT_NE(r.doc["error"].get<std::string>().find(k.says), std::string::npos) << k.what << ": " << r.body;
  }
  HttpResult route = curl(c.dir(), url_ + "/v3/nothing");
  EXPECT_EQ(route.status, 404);
  EXPECT_NE(route.body.find("no route GET /v3/nothing"), std::string::npos) << route.body;
  EXPECT_EQ(usage_records(), before) << "failed calls leave no record";
  EXPECT_EQ(post("/v2/models/served/infer", good, carol_token_).status, 200)
      << "and the server still answers";
}

// Issue 15 on a token-secured cluster: only the data set's owner (or an admin) may withdraw
// it, and a tainted model is refused over HTTP exactly as over ZeroMQ (one serving path),
// unless an admin allowed it for the purpose the call gives (parameters.purpose).
TEST_F(HttpTest, ATaintedModelIsRefusedOverHttpUnlessAnAdminAllowedItForThePurpose) {
  start();
  if (HasFatalFailure()) return;
  LocalCluster& c = *cluster_;
  const std::string admin = c.admin_token().string();
  const std::string carol = (c.dir() / "carol.token").string(), alice = (c.dir() / "alice.token").string();
  const std::string dataset = "synthetic-3200x32-c4-s7";
  CliResult by_carol = c.cli({"--token-file", carol, "revoke", dataset, "--reason", "not hers"});
  EXPECT_NE(by_carol.code, 0);
  EXPECT_NE(by_carol.err.find("only an admin or the data set's owner (alice"), std::string::npos) << by_carol.err;
  CliResult shown = c.cli({"--token-file", admin, "lineage", "show", dataset, "--json"});
  ASSERT_EQ(shown.code, 0) << shown.err;
  CliResult by_alice = c.cli({"--token-file", alice, "revoke", dataset, "--reason", "licence ended"});
  ASSERT_EQ(by_alice.code, 0) << by_alice.err;
  const std::string rev = trimmed(by_alice.out);

  const Rows rows = three_rows();
  const std::string body = infer_body(rows.values, 3, 32);
  HttpResult refused = post("/v2/models/served/infer", body, carol_token_);
  EXPECT_EQ(refused.status, 451) << refused.body;  // Unavailable For Legal Reasons
  EXPECT_NE(refused.doc.value("error", std::string()).find("is tainted by revocation " + rev), std::string::npos)
      << refused.body;
  // An admin's exception for one purpose: calls for it are answered, others still refused.
  CliResult allowed = c.cli({"--token-file", admin, "allow", "served@1", "--despite", rev, "--purpose",
                             "legal-hold", "--reason", "evidence in the dispute"});
  ASSERT_EQ(allowed.code, 0) << allowed.err;
  json with_purpose = json::parse(body);
  with_purpose["parameters"] = {{"purpose", "legal-hold"}};
  HttpResult answered = post("/v2/models/served/infer", with_purpose.dump(), carol_token_);
  EXPECT_EQ(answered.status, 200) << answered.body;
  with_purpose["parameters"]["purpose"] = "marketing";
  EXPECT_EQ(post("/v2/models/served/infer", with_purpose.dump(), carol_token_).status, 451);
  CliResult by_alice_allow = c.cli({"--token-file", alice, "allow", "served@1", "--despite", rev, "--purpose",
                                    "marketing", "--reason", "mine"});
  EXPECT_NE(by_alice_allow.code, 0);
  EXPECT_NE(by_alice_allow.err.find("only an admin may allow"), std::string::npos) << by_alice_allow.err;
}

TEST_F(HttpTest, HostileClientsAreTurnedAwayAndTheServerKeepsAnswering) {
  start({"--http-max-body-kib", "64", "--http-threads", "4", "--http-read-timeout-ms", "500",
         "--http-idle-timeout-ms", "1000"});
  if (HasFatalFailure()) return;
  LocalCluster& c = *cluster_;
  const Rows rows = three_rows();
  const std::string good = infer_body(rows.values, 3, 32);

  // A body over the limit: 413 before it is read (curl sends 2 MB; the limit is 64 KiB).
  std::vector<float> huge(2000 * 32, 0.5f);
  HttpResult big = post("/v2/models/served/infer", infer_body(huge, 2000, 32), carol_token_);
  EXPECT_EQ(big.status, 413) << big.body;
  EXPECT_NE(big.body.find("over this server's limit of 65536 bytes"), std::string::npos) << big.body;
  // Chunked, so no Content-Length to refuse it by: cut off at the limit as it arrives.
  const fs::path chunked = c.write_job("chunked.json", infer_body(huge, 2000, 32));
  std::vector<std::string> args = auth(carol_token_);
  args.insert(args.end(), {"-H", "Transfer-Encoding: chunked", "--data-binary", "@" + chunked.string()});
  EXPECT_EQ(curl(c.dir(), url_ + "/v2/models/served/infer", args).status, 413);

  // Slow clients and a crowd of idle connections: more than the 4 threads.
  std::vector<int> idle;
  for (int i = 0; i < 24; ++i) {
    const int fd = connect_to(url_);
    ASSERT_GE(fd, 0);
    if (i % 2 == 0) {  // half start a request and stall mid-header
      const std::string partial = "POST /v2/models/served/infer HTTP/1.1\r\nHost: x\r\nContent-Le";
      ASSERT_EQ(send(fd, partial.data(), partial.size(), 0), static_cast<ssize_t>(partial.size()));
    }
    idle.push_back(fd);
  }
  const auto t0 = std::chrono::steady_clock::now();
  HttpResult through = post("/v2/models/served/infer", good, carol_token_);
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(through.status, 200) << through.body;
  EXPECT_LT(waited, 15s) << "the stalled connections are cut at their timeouts, in turn";
  // Each stalled connection was closed by the server: reading gives end-of-file.
  for (int fd : idle) {
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[512];
    ssize_t n = 0;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
    }
    EXPECT_EQ(n, 0) << "closed by the server";
    close(fd);
  }
  EXPECT_TRUE(c.coordinator().running());
  EXPECT_EQ(post("/v2/models/served/infer", good, carol_token_).status, 200);
}

// A curve cluster's HTTP side: HTTPS only, callers proven by a bearer token issued to
// their principal; that token opens nothing on the ZeroMQ socket, where only keys count.
TEST(HttpsTest, ACurveClusterServesHttpsToBearerTokensAndRefusesPlainHttp) {
  // Not the cluster's own directory (custody-https-PID), which it empties when it starts.
  const fs::path dir = fs::temp_directory_path() / ("custody-tls-" + std::to_string(getpid()));
  fs::create_directories(dir);
  CliResult made =
      run_argv(dir, {"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                     "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                     (dir / "key.pem").string(), "-out", (dir / "cert.pem").string()});
  ASSERT_EQ(made.code, 0) << made.err;
  const std::string cacert = (dir / "cert.pem").string();

  // Without a certificate, a curve cluster's listener does not start.
  Process refused(
      {std::string(CUSTODY_BIN_DIR) + "/custody-coordinator", "--listen", "tcp://127.0.0.1:0", "--store",
       (dir / "store").string(), "--security", "curve", "--http-listen", "127.0.0.1:0"},
      dir / "refused.log");
  ASSERT_TRUE(refused.wait_for_exit(10s));
  EXPECT_EQ(refused.exit_code(), 2);
  EXPECT_NE(read_file(dir / "refused.log").find("HTTPS only: give --http-tls-cert"), std::string::npos)
      << read_file(dir / "refused.log");

  ClusterOptions o;
  o.curve = true;
  o.workers = 2;
  o.servers = 1;
  o.coordinator_args = {"--http-listen",   "127.0.0.1:0", "--http-port-file", (dir / "https.addr").string(),
                        "--http-tls-cert", cacert,        "--http-tls-key",   (dir / "key.pem").string()};
  LocalCluster c("https", o);
  ASSERT_TRUE(c.wait_for_nodes(3));
  const std::string url = wait_for_http(dir / "https.addr", "https");
  std::vector<std::string> add = c.admin_args();
  add.insert(add.end(), {"principal", "add", "carol", "--role", "consumer", "--bearer-token"});
  CliResult carol = c.cli(add);
  ASSERT_EQ(carol.code, 0) << carol.err;
  const std::string token = trimmed(carol.out);
  ASSERT_GE(token.size(), 32u) << carol.out;
  std::vector<std::string> submit = c.admin_args();
  submit.insert(submit.end(), {"submit", c.write_job("served.toml", kJob).string()});
  CliResult submitted = c.cli(submit);
  ASSERT_EQ(submitted.code, 0) << submitted.err;
  std::vector<std::string> wait = c.admin_args();
  wait.insert(wait.end(), {"wait", submitted.out.substr(0, submitted.out.find('\n'))});
  ASSERT_EQ(c.cli(wait).code, 0);

  const Rows rows = three_rows();
  const fs::path body = c.write_job("body.json", infer_body(rows.values, 3, 32));
  const std::vector<std::string> call = {"--cacert",
                                         cacert,
                                         "-H",
                                         "Authorization: Bearer " + token,
                                         "-H",
                                         "Content-Type: application/json",
                                         "--data-binary",
                                         "@" + body.string()};
  HttpResult inferred = curl(dir, url + "/v2/models/served/infer", call);
  ASSERT_EQ(inferred.status, 200) << inferred.body;
  EXPECT_EQ(inferred.doc["parameters"]["prediction_ids"].size(), 3u);
  const fs::path csv = c.write_job("rows.csv", rows.csv);
  CliResult py = run_argv(dir,
                          {"/usr/bin/python3", CUSTODY_SOURCE_DIR "/tests/integration/oip_client.py", url,
                           "served", csv.string(), "--token", "/dev/null", "--cacert", cacert},
                          std::chrono::seconds(30), "python");
  ASSERT_EQ(py.code, 0) << py.err;
  EXPECT_EQ(json::parse(py.out)["status"], 401) << "no token, no prediction: " << py.out;
  HttpResult plain = curl(dir, "http" + url.substr(5) + "/v2/health/live");
  EXPECT_NE(plain.status, 200) << "no plain HTTP on an HTTPS listener";

  // The same token on the ZeroMQ socket: refused, keys only there.
  std::ofstream(dir / "carol.token") << token << "\n";
  CliResult zmq = c.cli({"--token-file", (dir / "carol.token").string(), "--timeout-ms", "1500", "predict",
                         "served", "--input", csv.string()});
  EXPECT_NE(zmq.code, 0) << zmq.out;
  if (!::testing::Test::HasFailure()) fs::remove_all(dir);
}

}  // namespace
}  // namespace custody::testing
