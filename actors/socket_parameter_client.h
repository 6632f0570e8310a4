// The worker's ParameterClient: one ZeroMQ DEALER socket to each parameter server of a
// task, owned by the trainer that uses it (ZeroMQ sockets are not thread-safe), which
// sends each request and waits for the answers on the trainer's own thread.
//
// A server on this host reached through shared memory gets the requests after its first
// answer through the region's doorbell instead (protocols/shared_region.h): the trainer
// posts them into the region and waits on its futex for the answer, and the server's
// doorbell thread (actors/parameter_server_core.h) wakes for them; no ZeroMQ thread in
// between. A wait polls each server's socket or doorbell in slices of 100 ms and asks
// `stopped` between them, so a trainer told to stop leaves a wait for a server that will
// not answer at once. Answers to an earlier, abandoned request are skipped.
// Thread-safety: none; owned by one trainer.
#pragma once

#include <functional>
#include <memory>

#include "actors/parameter_client.h"
#include "core/metrics.h"
#include "protocols/transport.h"

namespace custody::actors {

class SocketParameterClient final : public ParameterClient {
 public:
  // Connects a socket to each server (connecting does not wait for the server; an address
  // served in this process is reached in-process, which the log says). `metrics`: counts
  // the bytes sent and received (custody_network_*_bytes_total{channel="peers"}); null: none.
  static Result<SocketParameterClient> connect(transport::Context& context, ParameterRequests requests,
                                               std::function<bool()> stopped, MetricsRegistry* metrics = nullptr);

  Status pull() override;
  Status push(uint64_t step, uint32_t samples, const float* gradient) override;
  Status wait(float* values, std::chrono::milliseconds timeout) override;
  float* gradient_block() override { return requests_.gradient_block(); }
  float* values_block() override { return requests_.values_block(); }

 private:
  SocketParameterClient(ParameterRequests requests, std::vector<std::unique_ptr<transport::Socket>> sockets,
                        std::function<bool()> stopped)
      : requests_(std::move(requests)), sockets_(std::move(sockets)), stopped_(std::move(stopped)) {}
  Status send(std::vector<msg::Envelope> requests);
  Status send_to(size_t server, Bytes bytes);
  // Server i's answer to the current request through its doorbell, decoded; nothing
  // after a 100 ms slice without one.
  Result<std::optional<msg::Envelope>> receive_from_doorbell(size_t server);

  ParameterRequests requests_;
  std::vector<std::unique_ptr<transport::Socket>> sockets_;  // by server, as requests_.servers()
  std::function<bool()> stopped_;
  Counter* sent_ = nullptr;  // null: not counted
  Counter* received_ = nullptr;
  // By server: the current request went through the doorbell, and the reply number it
  // was posted after (the answer is the next one).
  std::vector<bool> via_doorbell_;
  std::vector<uint32_t> reply_seen_;
};

}  // namespace custody::actors
