// Push and pull of parameter blocks through Custody's transport against raw ZeroMQ, on
// TCP loopback in one process (a server thread answers a client thread).
//   raw:     a DEALER sends BYTES bytes; a ROUTER sends the same bytes back (cppzmq).
//   custody: a worker's push (Envelope{Push} with BYTES/4 floats, Cap'n Proto encoded)
//            through transport::Socket; the server decodes it and answers with
//            Envelope{Params} of as many floats, which the client decodes into its
//            parameter vector: what one worker-server exchange of a step moves, the way
//            the trainer and the server do it (the push borrows the gradient, decoding
//            shares the received frame, the reply shares the server's values).
// Both alternate three times for SECONDS each; prints JSON with the medians (GB/s moved,
// both directions) and the ratio custody / raw, and the 64-byte round-trip latency of each.
//   build/bin/custody-bench-transport [SECONDS] [BYTES]
// (The only file outside protocols/zmq_transport.cc that includes ZeroMQ: raw ZeroMQ is the
// baseline being measured against.)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "protocols/codec.h"
#include "protocols/transport.h"

using namespace custody;
using Clock = std::chrono::steady_clock;

namespace {

struct Result {
  double round_trips_per_sec;
};

Result raw(double seconds, size_t bytes) {
  zmq::context_t ctx;
  zmq::socket_t server(ctx, zmq::socket_type::router), client(ctx, zmq::socket_type::dealer);
  server.bind("tcp://127.0.0.1:*");
  client.connect(server.get(zmq::sockopt::last_endpoint));
  std::atomic<bool> stop{false};
  std::thread echo([&] {
    server.set(zmq::sockopt::rcvtimeo, 100);
    while (!stop) {
      zmq::message_t id, body;
      if (!server.recv(id)) continue;
      (void)server.recv(body);
      server.send(id, zmq::send_flags::sndmore);
      server.send(body, zmq::send_flags::none);
    }
  });
  std::vector<uint8_t> block(bytes, 7);
  int64_t n = 0;
  auto t0 = Clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    client.send(zmq::buffer(block), zmq::send_flags::none);
    zmq::message_t reply;
    (void)client.recv(reply);
    std::memcpy(block.data(), reply.data(), std::min(bytes, reply.size()));  // into the caller's buffer
    ++n;
    elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  stop = true;
  echo.join();
  return {n / elapsed};
}

Result custody_path(double seconds, size_t bytes) {
  transport::Context ctx;
  auto server = transport::Socket::bind(ctx, "tcp://127.0.0.1:0").value();
  auto client = transport::Socket::connect(ctx, server->endpoint()).value();
  std::atomic<bool> stop{false};
  const size_t floats = bytes / sizeof(float);
  std::thread serve([&] {
    auto values = std::make_shared<const std::vector<float>>(floats, 0.5f);
    while (!stop) {
      auto in = server->receive(std::chrono::milliseconds(100));
      if (!in.is_ok() || !in.value()) continue;
      const transport::Frame& frame = in.value()->bytes;
      auto e = msg::decode(frame.data(), frame.size(), {}, frame.owner());
      if (!e.is_ok()) std::abort();
      const auto* push = e->get<msg::Push>();
      if (!push || push->gradient.size() != floats) std::abort();
      (void)server->send(in.value()->peer,
                         msg::encode(msg::reply_to(*e, "ps-1", msg::Params{1, 0, msg::Floats(values)})));
    }
  });
  std::vector<float> gradient(floats, 0.25f), params(floats);
  int64_t n = 0;
  auto t0 = Clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    msg::Envelope e;
    e.sender = "worker-1";
    e.job_id = "job-bench";
    e.request_id = static_cast<uint64_t>(n);
    e.body = msg::Push{"worker-1", static_cast<uint64_t>(n), msg::Floats::borrowed(gradient.data(), floats), 64, 0, 0};
    (void)client->send("", msg::encode(e));
    auto in = client->receive(std::chrono::seconds(10));
    if (!in.is_ok() || !in.value()) std::abort();
    const transport::Frame& frame = in.value()->bytes;
    auto r = msg::decode(frame.data(), frame.size(), {}, frame.owner());
    const auto* p = r.is_ok() ? r->get<msg::Params>() : nullptr;
    if (!p || p->values.size() != floats) std::abort();
    std::copy(p->values.begin(), p->values.end(), params.begin());
    ++n;
    elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  stop = true;
  serve.join();
  server->close();
  client->close();
  return {n / elapsed};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 2.0;
  const size_t bytes = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : size_t(1) << 20;
  std::vector<double> r_raw, r_custody, l_raw, l_custody;
  for (int round = 0; round < 3; ++round) {
    r_raw.push_back(raw(seconds, bytes).round_trips_per_sec);
    r_custody.push_back(custody_path(seconds, bytes).round_trips_per_sec);
    l_raw.push_back(raw(seconds / 4, 64).round_trips_per_sec);
    l_custody.push_back(custody_path(seconds / 4, 64).round_trips_per_sec);
  }
  const double gb = 2.0 * double(bytes) / 1e9;  // both directions
  const double raw_gbs = median(r_raw) * gb, custody_gbs = median(r_custody) * gb;
  std::printf("{\"benchmark\": \"transport\", \"block_bytes\": %zu, \"raw_zeromq_gb_per_sec\": %.3f, "
              "\"custody_gb_per_sec\": %.3f, \"ratio\": %.3f, \"raw_zeromq_round_trip_us_64b\": %.1f, "
              "\"custody_round_trip_us_64b\": %.1f}\n",
              bytes, raw_gbs, custody_gbs, custody_gbs / raw_gbs, 1e6 / median(l_raw), 1e6 / median(l_custody));
  return 0;
}
