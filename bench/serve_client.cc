// A load generator for the serving path: CALLS predict requests of BATCH rows, one after
// the other over one connection, against a running coordinator; prints calls/s,
// predictions/s and latency percentiles as one JSON line. Used by bench/serving.sh.
//   custody-bench-serve ADDRESS MODEL BATCH CALLS [FEATURES]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>

#include "protocols/codec.h"
#include "protocols/transport.h"

using namespace custody;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: custody-bench-serve ADDRESS MODEL BATCH CALLS [FEATURES]\n");
    return 2;
  }
  const std::string address = argv[1], model = argv[2];
  const uint32_t batch = static_cast<uint32_t>(std::stoul(argv[3]));
  const int calls = std::stoi(argv[4]);
  const uint32_t features = argc > 5 ? static_cast<uint32_t>(std::stoul(argv[5])) : 784;
  transport::Context ctx;
  auto socket = transport::Socket::connect(ctx, address);
  if (!socket.is_ok()) {
    std::fprintf(stderr, "%s\n", socket.status().to_string().c_str());
    return 2;
  }
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  msg::Envelope e;
  e.sender = "bench";
  msg::Predict p{model, "bench", batch, features, std::vector<float>(size_t(batch) * features), "benchmark"};
  for (float& v : p.inputs) v = u(rng);
  std::vector<double> latency_us;
  const auto start = Clock::now();
  for (int i = 0; i < calls + 10; ++i) {  // the first 10 warm the model cache
    e.request_id = static_cast<uint64_t>(i + 1);
    e.body = p;
    const auto t0 = Clock::now();
    if (!socket.value()->send("", msg::encode(e)).is_ok()) return 3;
    auto in = socket.value()->receive(std::chrono::seconds(30));
    if (!in.is_ok() || !in.value()) {
      std::fprintf(stderr, "no reply within 30 s\n");
      return 3;
    }
    auto reply = msg::decode(in.value()->bytes.data(), in.value()->bytes.size());
    if (!reply.is_ok() || reply->get<msg::Error>()) {
      std::fprintf(stderr, "call failed: %s\n",
                   reply.is_ok() ? reply->get<msg::Error>()->message.c_str() : reply.status().message().c_str());
      return 3;
    }
    if (i >= 10) latency_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::sort(latency_us.begin(), latency_us.end());
  auto pct = [&](double q) { return latency_us[std::min(latency_us.size() - 1, size_t(q * latency_us.size()))]; };
  double total = 0;
  for (double l : latency_us) total += l;
  std::printf("{\"batch\": %u, \"calls\": %d, \"calls_per_sec\": %.1f, \"predictions_per_sec\": %.1f, "
              "\"p50_us\": %.1f, \"p99_us\": %.1f}\n",
              batch, calls, calls / (total / 1e6), calls * double(batch) / (total / 1e6), pct(0.50), pct(0.99));
  (void)seconds;
  return 0;
}
