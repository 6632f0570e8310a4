#include "actors/socket_bridge.h"

#include "core/log.h"

namespace custody::actors {

void SocketPort::send(const std::string& peer, msg::Envelope envelope) const {
  caf::anon_send(bridge_, Outbound{peer, std::make_shared<const msg::Envelope>(std::move(envelope))});
  waker_->notify();
}

namespace {

void bridge_loop(caf::blocking_actor* self, std::shared_ptr<transport::Socket> socket,
                 std::shared_ptr<transport::Waker> waker, BridgeOptions options) {
  bool running = true;
  caf::actor handler;
  Counter* received = nullptr;
  Counter* sent = nullptr;
  if (options.metrics) {
    NetworkBytes bytes = network_bytes_metric(*options.metrics, options.channel);
    received = &bytes.received;
    sent = &bytes.sent;
  }
  self->receive([&](caf::actor& h) { handler = h; }, [&](caf::exit_msg&) { running = false; });
  auto reply_error = [&](const std::string& peer, const Status& status, std::optional<uint64_t> request_id) {
    msg::Envelope e;
    e.sender = options.node_name;
    e.request_id = request_id.value_or(0);
    e.body = msg::Error{status.code(), status.message()};
    (void)socket->send(peer, msg::encode(e));
  };
  // A DirectHandler's answers: encoded and sent on this thread, now.
  const BridgeReply reply_now = [&](const std::string& peer, const msg::Envelope& envelope) {
    auto bytes = msg::encode(envelope);
    if (sent) sent->add(static_cast<double>(bytes.size()));
    Status s = socket->send(peer, std::move(bytes));
    if (!s.is_ok()) log(LogLevel::kWarn, options.node_name, s.to_string());
  };
  while (running) {
    auto ready = socket->wait(std::chrono::milliseconds(200), waker.get());
    if (!ready.is_ok()) {
      log(LogLevel::kError, options.node_name, ready.status().to_string());
    }
    // Take at most a bounded batch, so a flood of input cannot starve outgoing replies.
    for (int i = 0; i < 64 && ready.is_ok() && ready.value(); ++i) {
      auto in = socket->try_receive();
      if (!in.is_ok()) {
        log(LogLevel::kError, options.node_name, in.status().to_string());
        break;
      }
      if (!in.value()) break;
      transport::Incoming& frame = *in.value();
      if (received) received->add(static_cast<double>(frame.bytes.size()));
      if (frame.multipart) {
        reply_error(frame.peer, invalid_argument("a message must be a single ZeroMQ frame"),
                    msg::readable_request_id(frame.bytes.data(), frame.bytes.size(), options.limits));
        continue;
      }
      auto decoded = msg::decode(frame.bytes.data(), frame.bytes.size(), options.limits, frame.bytes.owner());
      if (!decoded.is_ok()) {
        log(LogLevel::kWarn, options.node_name, "refused a message: " + decoded.status().message());
        reply_error(frame.peer, decoded.status(),
                    msg::readable_request_id(frame.bytes.data(), frame.bytes.size(), options.limits));
        continue;
      }
      Inbound inbound{options.channel, std::move(frame.peer),
                      std::make_shared<const msg::Envelope>(std::move(decoded).value()), std::move(frame.identity),
                      std::move(frame.address)};
      if (options.direct) {
        options.direct(inbound, handler, reply_now);
      } else {
        self->send(handler, std::move(inbound));
      }
    }
    // Drain the mailbox: replies to send, or the order to stop.
    bool more = true;
    while (more && running) {
      self->receive(
          [&](Outbound& out) {
            auto bytes = msg::encode(*out.envelope);
            if (sent) sent->add(static_cast<double>(bytes.size()));
            Status s = socket->send(out.peer, std::move(bytes));
            if (!s.is_ok()) log(LogLevel::kWarn, options.node_name, s.to_string());
          },
          [&](stop_atom) { running = false; },
          [&](caf::exit_msg&) { running = false; },
          caf::after(std::chrono::seconds(0)) >> [&] { more = false; });
    }
  }
  socket->close();
}

}  // namespace

NetworkBytes network_bytes_metric(MetricsRegistry& m, Channel channel) {
  const MetricLabels labels{{"channel", channel == Channel::kCoordinator ? "coordinator" : "peers"}};
  return {m.counter("custody_network_sent_bytes_total", "Bytes of ZeroMQ messages sent, by socket.", labels),
          m.counter("custody_network_received_bytes_total", "Bytes of ZeroMQ messages received, by socket.", labels)};
}

SocketPort spawn_socket_bridge(caf::actor_system& system, std::unique_ptr<transport::Socket> socket,
                               BridgeOptions options) {
  auto waker = std::make_shared<transport::Waker>();
  std::shared_ptr<transport::Socket> owned(std::move(socket));
  auto bridge = system.spawn<caf::detached>(bridge_loop, owned, waker, options);
  return SocketPort(bridge, waker);
}

}  // namespace custody::actors
