// What sealing costs a parameter block of the default model (MLP 784-256-128-10: 235,146
// floats, 0.94 MB), in one process:
//   seal, open    AES-256-GCM (core/aead.h) of the block in its chunks (protocols/
//                 data_plane.h), on one core and on every core (ForkJoin), GB/s of block
//   push/pull     a worker's push and the server's answer through the transport on TCP
//                 loopback, as a 1-worker BSP step runs them: the worker's ParameterRequests
//                 (sealing its push, opening the answer into its values) against a
//                 ParameterServerState (opening the push, applying it, sealing the values)
//                 behind a ROUTER socket, threads as the nodes have them; sealed
//                 against in clear, GB/s of blocks moved (both directions).
// Each alternates three times, for SECONDS each.
// Prints one JSON line with the medians.
//   build/bin/custody-bench-sealing [SECONDS]
//   build/bin/custody-bench-sealing SECONDS sealed|clear [SERVER_HELPERS]   (that push/pull alone, for perf)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "actors/data_plane_policy.h"
#include "actors/parameter_client.h"
#include "actors/parameter_server_state.h"
#include "protocols/codec.h"
#include "protocols/data_plane.h"
#include "protocols/fork_join.h"
#include "protocols/transport.h"

using namespace custody;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint64_t kFloats = 235146;  // the default model's parameters
const char* kSpec =
    "[job]\nworkers = 1\nconsistency = \"bsp\"\n[model]\ntype = \"mlp\"\nhidden = [256, 128]\nclasses = 10\n"
    "[optimizer]\ntype = \"momentum\"\nlearning_rate = 0.001\nmomentum = 0.9\n[data]\nkind = \"synthetic\"\n";

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Blocks per second through one AES-256-GCM operation.
double crypt(double seconds, bool open, ForkJoin* parallel) {
  const AeadKey key = AeadKey::random().value();
  std::vector<float> block(kFloats, 0.25f), out(kFloats);
  const auto sealed = data_plane::seal_floats(key, block.data(), kFloats, "aad").value();
  int64_t n = 0;
  const auto t0 = Clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    if (open) {
      if (!data_plane::open_floats(key, sealed, kFloats, "aad", out.data(), parallel).is_ok()) std::abort();
    } else {
      if (!data_plane::seal_floats(key, block.data(), kFloats, "aad", parallel).is_ok()) std::abort();
    }
    ++n;
    elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  return n / elapsed;
}

// Round trips per second of a push and its answer.
double push_pull(double seconds, bool sealed,
                 unsigned server_helpers = ForkJoin::helpers_for_this_machine()) {
  transport::Context ctx;
  auto server = transport::Socket::bind(ctx, "tcp://127.0.0.1:0").value();
  auto client = transport::Socket::connect(ctx, server->endpoint()).value();
  const std::vector<KeyRange> ranges = {{0, kFloats}};
  std::optional<actors::AttemptKeys> keys;
  if (sealed) keys = actors::AttemptKeys::make(1, ranges).value();
  // One rank: each push is a whole BSP step, and push n is of step n.
  actors::ParameterServerState ps("ps-1");
  ForkJoin server_threads(server_helpers);  // as the server node has; a worker seals alone
  ps.set_parallel(&server_threads);
  {
    msg::AssignKeyRange a{kSpec, 0, 0, kFloats, kFloats, 1, 1u << 30, 784, 1000, 0, 0, {}};
    a.rank_nodes = {"worker-1"};
    if (keys) keys->fill(a, 0);
    msg::Envelope e;
    e.job_id = "job-bench";
    e.body = std::move(a);
    if (ps.handle_control("coordinator", e).at(0).envelope.get<msg::Error>()) std::abort();
  }
  std::atomic<bool> stop{false};
  std::thread serve([&] {
    while (!stop) {
      auto in = server->receive(std::chrono::milliseconds(100));
      if (!in.is_ok() || !in.value()) continue;
      const transport::Frame& frame = in.value()->bytes;
      auto e = msg::decode(frame.data(), frame.size(), {}, frame.owner());
      if (!e.is_ok()) std::abort();
      for (auto& o : ps.handle_data(in.value()->peer, e.value())) {
        if (!o.to_coordinator) (void)server->send(o.peer, msg::encode(o.envelope));
      }
    }
  });
  actors::ParameterRequests requests(
      actors::KeySlices::make({{"ps-1", server->endpoint(), 0, kFloats}}, kFloats).value(), "worker-1",
      "job-bench", 0, 0);
  if (keys) {
    msg::AssignTask t;
    t.rank = 0;
    keys->fill(t);
    if (!requests.seal_with(t.rank_key, t.replies_key).is_ok()) std::abort();
  }
  std::vector<float> gradient(kFloats, 0.25f), params(kFloats);
  int64_t n = 0;
  const auto t0 = Clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    (void)client->send("", msg::encode(requests.push(static_cast<uint64_t>(n), 64, gradient.data()).at(0)));
    auto in = client->receive(std::chrono::seconds(10));
    if (!in.is_ok() || !in.value()) std::abort();
    const transport::Frame& frame = in.value()->bytes;
    auto answer = msg::decode(frame.data(), frame.size(), {}, frame.owner());
    if (!answer.is_ok()) std::abort();
    auto accepted = requests.accept(0, answer.value(), params.data());
    if (!accepted.is_ok() || !accepted.value()) {
      std::fprintf(stderr, "%s\n",
                   accepted.is_ok() ? "a late answer" : accepted.status().to_string().c_str());
      std::abort();
    }
    ++n;
    elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  stop = true;
  serve.join();
  server->close();
  client->close();
  return n / elapsed;
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 2.0;
  if (argc > 2) {
    const bool sealed = std::string(argv[2]) == "sealed";
    const unsigned helpers = argc > 3 ? static_cast<unsigned>(std::atoi(argv[3])) : 1;
    std::printf("{\"%s_round_trips_per_sec\": %.1f}\n", argv[2], push_pull(seconds, sealed, helpers));
    return 0;
  }
  std::vector<double> seal, open, seal_all, open_all, sealed, clear;
  ForkJoin every_core(ForkJoin::helpers_for_this_machine());
  for (int round = 0; round < 3; ++round) {
    seal.push_back(crypt(seconds / 2, false, nullptr));
    open.push_back(crypt(seconds / 2, true, nullptr));
    seal_all.push_back(crypt(seconds / 2, false, &every_core));
    open_all.push_back(crypt(seconds / 2, true, &every_core));
    clear.push_back(push_pull(seconds, false));
    sealed.push_back(push_pull(seconds, true));
  }
  const double block = double(kFloats * sizeof(float));
  std::printf(
      "{\"benchmark\": \"sealing_block\", \"block_bytes\": %.0f, \"cores\": %u, \"seal_gb_per_sec\": %.3f, "
      "\"open_gb_per_sec\": %.3f, \"seal_all_cores_gb_per_sec\": %.3f, \"open_all_cores_gb_per_sec\": %.3f, "
      "\"sealed_gb_per_sec\": %.3f, \"clear_gb_per_sec\": %.3f, \"ratio\": %.3f}\n",
      block, std::thread::hardware_concurrency(), median(seal) * block / 1e9, median(open) * block / 1e9,
      median(seal_all) * block / 1e9, median(open_all) * block / 1e9, median(sealed) * 2 * block / 1e9,
      median(clear) * 2 * block / 1e9, median(sealed) / median(clear));
  return 0;
}
