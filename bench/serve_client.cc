// A load generator for the serving path: CLIENTS concurrent clients (default 1), each
// making CALLS predict requests of BATCH rows, one after the other over its own
// connection, against a running coordinator; prints the calls/s and predictions/s of all
// clients together and the latency percentiles of every call as one JSON line. Used by
// bench/serving.sh (CLIENTS > 1 measures the usage log's group commit).
//   custody-bench-serve ADDRESS MODEL BATCH CALLS [FEATURES] [CLIENTS]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "protocols/codec.h"
#include "protocols/transport.h"

using namespace custody;
using Clock = std::chrono::steady_clock;

namespace {

// One client's calls; fills latency_us (after 10 warm-up calls). Returns false on failure.
bool run_client(transport::Context& ctx, const std::string& address, const msg::Predict& p, int calls, int client,
                std::vector<double>& latency_us) {
  auto socket = transport::Socket::connect(ctx, address);
  if (!socket.is_ok()) {
    std::fprintf(stderr, "%s\n", socket.status().to_string().c_str());
    return false;
  }
  msg::Envelope e;
  e.sender = "bench-" + std::to_string(client);
  for (int i = 0; i < calls + 10; ++i) {  // the first 10 warm the model cache
    e.request_id = static_cast<uint64_t>(i + 1);
    e.body = p;
    const auto t0 = Clock::now();
    if (!socket.value()->send("", msg::encode(e)).is_ok()) return false;
    auto in = socket.value()->receive(std::chrono::seconds(30));
    if (!in.is_ok() || !in.value()) {
      std::fprintf(stderr, "no reply within 30 s\n");
      return false;
    }
    auto reply = msg::decode(in.value()->bytes.data(), in.value()->bytes.size());
    if (!reply.is_ok() || reply->get<msg::Error>()) {
      std::fprintf(stderr, "call failed: %s\n",
                   reply.is_ok() ? reply->get<msg::Error>()->message.c_str() : reply.status().message().c_str());
      return false;
    }
    if (i >= 10) latency_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: custody-bench-serve ADDRESS MODEL BATCH CALLS [FEATURES] [CLIENTS]\n");
    return 2;
  }
  const std::string address = argv[1], model = argv[2];
  const uint32_t batch = static_cast<uint32_t>(std::stoul(argv[3]));
  const int calls = std::stoi(argv[4]);
  const uint32_t features = argc > 5 ? static_cast<uint32_t>(std::stoul(argv[5])) : 784;
  const int clients = argc > 6 ? std::max(1, std::stoi(argv[6])) : 1;
  transport::Context ctx;
  std::mt19937 rng(1);
  // Raw pixel values 0 to 255, the models' input contract (core/input_contract.h).
  std::uniform_int_distribution<int> u(0, 255);
  msg::Predict p{model, "bench", batch, features, std::vector<float>(size_t(batch) * features), "benchmark"};
  for (float& v : p.inputs) v = static_cast<float>(u(rng));
  std::vector<std::vector<double>> latencies(clients);
  std::atomic<bool> ok{true};
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      if (!run_client(ctx, address, p, calls, c, latencies[c])) ok = false;
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (!ok) return 3;
  std::vector<double> latency_us;
  for (const auto& l : latencies) latency_us.insert(latency_us.end(), l.begin(), l.end());
  std::sort(latency_us.begin(), latency_us.end());
  auto pct = [&](double q) { return latency_us[std::min(latency_us.size() - 1, size_t(q * latency_us.size()))]; };
  // One client: calls over the time spent in calls (the warm-up excluded). Several: all
  // calls over the wall time of the run (their calls overlap).
  double total = 0;
  for (double l : latency_us) total += l;
  const double busy = clients == 1 ? total / 1e6 : seconds;
  const double all_calls = double(calls) * clients;
  std::printf("{\"batch\": %u, \"clients\": %d, \"calls\": %.0f, \"calls_per_sec\": %.1f, "
              "\"predictions_per_sec\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f}\n",
              batch, clients, all_calls, all_calls / busy, all_calls * double(batch) / busy, pct(0.50), pct(0.99));
  return 0;
}
