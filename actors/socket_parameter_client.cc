#include "actors/socket_parameter_client.h"

#include "actors/socket_bridge.h"
#include "core/log.h"
#include "protocols/codec.h"

namespace custody::actors {

Result<SocketParameterClient> SocketParameterClient::connect(transport::Context& context,
                                                             ParameterRequests requests,
                                                             std::function<bool()> stopped,
                                                             MetricsRegistry* metrics) {
  std::vector<std::unique_ptr<transport::Socket>> sockets;
  const KeySlices& servers = requests.servers();
  for (size_t i = 0; i < servers.size(); ++i) {
    const msg::ServerRange& s = servers.server(i);
    CUSTODY_ASSIGN_OR_RETURN(auto socket, transport::Socket::connect(context, s.address));
    if (socket->endpoint().rfind("inproc://", 0) == 0) {
      log(LogLevel::kInfo, requests.worker(),
          "reaches parameter server " + s.node_id + " in-process (" + s.address + ")");
    }
    sockets.push_back(std::move(socket));
  }
  SocketParameterClient client(std::move(requests), std::move(sockets), std::move(stopped));
  if (metrics) {
    NetworkBytes bytes = network_bytes_metric(*metrics, Channel::kPeers);
    client.sent_ = &bytes.sent;
    client.received_ = &bytes.received;
  }
  return client;
}

Status SocketParameterClient::send_to(size_t server, Bytes bytes) {
  via_doorbell_.resize(sockets_.size());
  reply_seen_.resize(sockets_.size());
  if (shm::SharedRegion* region = requests_.doorbell(server)) {
    // No request is outstanding: the reply number is still, and the answer the next one.
    reply_seen_[server] = region->reply_seq();
    via_doorbell_[server] = true;
    return region->post_request(bytes.data(), bytes.size());
  }
  via_doorbell_[server] = false;
  if (sent_) sent_->add(static_cast<double>(bytes.size()));
  return sockets_[server]->send("", std::move(bytes));
}

Result<std::optional<msg::Envelope>> SocketParameterClient::receive_from_doorbell(size_t server) {
  shm::SharedRegion* region = requests_.doorbell(server);
  auto message = region->wait_reply(reply_seen_[server], std::chrono::milliseconds(100));
  if (!message) return std::optional<msg::Envelope>();
  reply_seen_[server] = message->seq;
  // Decoded from this thread's copy of the slot.
  auto answer = msg::decode(message->bytes.data(), message->bytes.size());
  if (!answer.is_ok()) {
    return data_loss("parameter server " + requests_.servers().server(server).node_id +
                     " sent a bad reply through shared memory: " + answer.status().message());
  }
  return std::optional<msg::Envelope>(std::move(answer).value());
}

Status SocketParameterClient::send(std::vector<msg::Envelope> requests) {
  for (size_t i = 0; i < sockets_.size(); ++i)
    CUSTODY_RETURN_IF_ERROR(send_to(i, msg::encode(requests[i])));
  return Status::ok();
}

Status SocketParameterClient::pull() { return send(requests_.pull()); }

Status SocketParameterClient::push(uint64_t step, uint32_t samples, const float* gradient) {
  CUSTODY_ASSIGN_OR_RETURN(std::vector<Bytes> messages, requests_.push_messages(step, samples, gradient));
  for (size_t i = 0; i < sockets_.size(); ++i) CUSTODY_RETURN_IF_ERROR(send_to(i, std::move(messages[i])));
  return Status::ok();
}

Status SocketParameterClient::wait(float* values, std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  for (size_t i = 0; i < sockets_.size(); ++i) {
    for (bool answered = false; !answered;) {
      if (stopped_()) return Status(ErrorCode::kCancelled, "stopped");
      if (SteadyClock::now() > deadline) return requests_.no_answer(i, timeout);
      if (i < via_doorbell_.size() && via_doorbell_[i]) {
        CUSTODY_ASSIGN_OR_RETURN(auto answer, receive_from_doorbell(i));
        if (!answer) continue;
        CUSTODY_ASSIGN_OR_RETURN(answered, requests_.accept(i, *answer, values));
        continue;
      }
      CUSTODY_ASSIGN_OR_RETURN(auto in, sockets_[i]->receive(std::chrono::milliseconds(100)));
      if (!in) continue;
      const transport::Frame& frame = in->bytes;
      if (received_) received_->add(static_cast<double>(frame.size()));
      auto answer = msg::decode(frame.data(), frame.size(), {}, frame.owner());
      if (!answer.is_ok()) {
        return data_loss("parameter server " + requests_.servers().server(i).node_id +
                         " sent a bad reply: " + answer.status().message());
      }
      if (auto again = requests_.fall_back(i, answer.value())) {
        CUSTODY_RETURN_IF_ERROR(send_to(i, msg::encode(*again)));
        continue;
      }
      CUSTODY_ASSIGN_OR_RETURN(answered, requests_.accept(i, answer.value(), values));
    }
  }
  return Status::ok();
}

}  // namespace custody::actors
