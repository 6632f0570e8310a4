// A load generator for HTTP serving: CALLS requests of BATCH rows, one after the other
// over one keep-alive connection (as bench/serve_client.cc does over ZeroMQ), against
// Custody's listener or any server speaking the same JSON; prints calls/s,
// predictions/s and latency percentiles as one JSON line. Used by bench/http_serving.sh.
//   custody-bench-http HOST:PORT oip|predict MODEL BATCH CALLS [FEATURES] [TOKEN]
// oip: POST /v2/models/MODEL/infer with an FP32 tensor; predict: POST /predict with
// {"model": MODEL, "instances": [...]}.
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr,
                 "usage: custody-bench-http HOST:PORT oip|predict MODEL BATCH CALLS [FEATURES] [TOKEN]\n");
    return 2;
  }
  const std::string address = argv[1], kind = argv[2], model = argv[3];
  const int batch = std::stoi(argv[4]), calls = std::stoi(argv[5]);
  const int features = argc > 6 ? std::stoi(argv[6]) : 784;
  const std::string token = argc > 7 ? argv[7] : "";
  const auto colon = address.rfind(':');
  httplib::Client client(address.substr(0, colon), std::stoi(address.substr(colon + 1)));
  client.set_keep_alive(true);
  client.set_tcp_nodelay(true);  // the request's headers and body leave in separate writes
  client.set_read_timeout(std::chrono::seconds(30));
  httplib::Headers headers;
  if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);

  std::mt19937 rng(1);
  std::uniform_int_distribution<int> u(0, 255);  // raw pixel values, the models' input contract
  std::string rows;
  for (int r = 0; r < batch; ++r) {
    std::string row;
    for (int f = 0; f < features; ++f) {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "%s%d", f ? "," : "", u(rng));
      row += buf;
    }
    rows += (r ? "," : "") + (kind == "oip" ? row : "[" + row + "]");
  }
  std::string path, body;
  if (kind == "oip") {
    path = "/v2/models/" + model + "/infer";
    body = R"({"inputs":[{"name":"input","datatype":"FP32","shape":[)" + std::to_string(batch) + "," +
           std::to_string(features) + R"(],"data":[)" + rows + "]}]}";
  } else {
    path = "/predict";
    body = R"({"model":")" + model + R"(","instances":[)" + rows + "]}";
  }
  std::vector<double> latency_us;
  for (int i = 0; i < calls + 10; ++i) {  // the first 10 warm the model cache
    const auto t0 = Clock::now();
    auto res = client.Post(path, headers, body, "application/json");
    if (!res || res->status != 200) {
      std::fprintf(stderr, "call failed: %s\n",
                   res ? (std::to_string(res->status) + " " + res->body).c_str()
                       : httplib::to_string(res.error()).c_str());
      return 3;
    }
    if (i >= 10) latency_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  std::sort(latency_us.begin(), latency_us.end());
  auto pct = [&](double q) {
    return latency_us[std::min(latency_us.size() - 1, size_t(q * latency_us.size()))];
  };
  double total = 0;
  for (double l : latency_us) total += l;
  std::printf(
      "{\"batch\": %d, \"calls\": %d, \"calls_per_sec\": %.1f, \"predictions_per_sec\": %.1f, "
      "\"p50_us\": %.1f, \"p99_us\": %.1f}\n",
      batch, calls, calls / (total / 1e6), calls * double(batch) / (total / 1e6), pct(0.50), pct(0.99));
  return 0;
}
