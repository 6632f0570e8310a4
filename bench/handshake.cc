// What CurveZMQ costs Custody's control plane: the handshake of a new connection, and the
// throughput of large messages, each against plain ZeroMQ in the same run.
//   handshake: a fresh DEALER connects to a ROUTER over TCP loopback, sends 64 bytes and
//              waits for the 64-byte answer, then closes; plain vs CURVE (with the ZAP
//              handler deciding by key, as the coordinator's does), alternating, REPEATS
//              times each. Reports the median time per connection and the difference.
//   bulk:      1 MiB round trips on one open connection for SECONDS, plain vs CURVE,
//              alternating three times: GB/s moved (both directions), medians, and the
//              ratio. This is why the data plane is sealed with AES-256-GCM instead of CURVE
//              (bench/sealing.sh measures that).
//   build/bin/custody-bench-handshake [REPEATS] [SECONDS]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "protocols/transport.h"

using namespace custody;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// A server that answers every message with the same bytes, until stopped.
struct EchoServer {
  std::unique_ptr<transport::Socket> socket;
  std::atomic<bool> stop{false};
  std::thread thread;
  void start() {
    thread = std::thread([this] {
      while (!stop) {
        auto in = socket->receive(50ms);
        if (!in.is_ok() || !*in) continue;
        (void)socket->send(in.value()->peer, in.value()->bytes.data(), in.value()->bytes.size());
      }
      socket->close();
    });
  }
  ~EchoServer() {
    stop = true;
    if (thread.joinable()) thread.join();
  }
};

bool round_trip(transport::Socket& client, const std::vector<uint8_t>& bytes) {
  if (!client.send("", bytes).is_ok()) return false;
  auto reply = client.receive(10s);
  return reply.is_ok() && reply.value().has_value() && reply.value()->bytes.size() == bytes.size();
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 200;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 2.0;
  const auto server_keys = transport::make_curve_key_pair().value();
  const auto client_keys = transport::make_curve_key_pair().value();

  transport::Context server_context;
  if (!server_context
           .start_authenticator([&](const std::string& key, const std::string&) -> std::optional<std::string> {
             if (key == client_keys.public_key) return std::string("bench");
             return std::nullopt;
           })
           .is_ok()) {
    std::fprintf(stderr, "no CURVE in this libzmq\n");
    return 1;
  }
  EchoServer plain_server, curve_server;
  plain_server.socket = transport::Socket::bind(server_context, "tcp://127.0.0.1:0").value();
  transport::SocketOptions server_options;
  server_options.curve_secret_key = server_keys.secret_key;
  curve_server.socket = transport::Socket::bind(server_context, "tcp://127.0.0.1:0", server_options).value();
  const std::string plain_address = plain_server.socket->endpoint(), curve_address = curve_server.socket->endpoint();
  plain_server.start();
  curve_server.start();

  transport::Context client_context;
  transport::SocketOptions curve_client;
  curve_client.curve_server_key = server_keys.public_key;
  curve_client.curve_client = client_keys;
  curve_client.linger_ms = 0;
  transport::SocketOptions plain_client;
  plain_client.linger_ms = 0;

  const std::vector<uint8_t> small(64, 7);
  std::vector<double> plain_ms, curve_ms;
  for (int i = 0; i < repeats; ++i) {
    for (bool curve : {false, true}) {
      const auto t0 = Clock::now();
      auto client = transport::Socket::connect(client_context, curve ? curve_address : plain_address,
                                               curve ? curve_client : plain_client)
                        .value();
      if (!round_trip(*client, small)) {
        std::fprintf(stderr, "a %s connection got no answer\n", curve ? "CURVE" : "plain");
        return 1;
      }
      client->close();
      (curve ? curve_ms : plain_ms).push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
  }

  const std::vector<uint8_t> block(1 << 20, 3);
  std::vector<double> plain_gbs, curve_gbs;
  for (int round = 0; round < 3; ++round) {
    for (bool curve : {false, true}) {
      auto client = transport::Socket::connect(client_context, curve ? curve_address : plain_address,
                                               curve ? curve_client : plain_client)
                        .value();
      round_trip(*client, small);  // the handshake is not part of the throughput
      size_t trips = 0;
      const auto t0 = Clock::now();
      while (std::chrono::duration<double>(Clock::now() - t0).count() < seconds) {
        if (!round_trip(*client, block)) return 1;
        ++trips;
      }
      const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
      (curve ? curve_gbs : plain_gbs).push_back(2.0 * trips * block.size() / elapsed / 1e9);
      client->close();
    }
  }
  const double p = median(plain_ms), c = median(curve_ms);
  std::printf("{\"connections\": %d, \"plain_connect_round_trip_ms\": %.3f, \"curve_connect_round_trip_ms\": %.3f, "
              "\"curve_handshake_cost_ms\": %.3f,\n \"bulk_1mib_plain_gb_per_s\": %.3f, "
              "\"bulk_1mib_curve_gb_per_s\": %.3f, \"bulk_curve_over_plain\": %.3f}\n",
              repeats, p, c, c - p, median(plain_gbs), median(curve_gbs), median(curve_gbs) / median(plain_gbs));
  return 0;
}
