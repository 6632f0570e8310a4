// The bridge between one ZeroMQ socket and the actors of a process.
//
// A detached (own-thread) actor owns the socket and is its only user. It waits on the
// socket and on a Waker; decodes each incoming frame (with the limits given) and sends
// it to the handler actor as an Inbound; answers undecodable frames itself with an error
// reply and carries on; and sends every Outbound found in its mailbox. Other actors send
// through a SocketPort, which queues the message in the bridge's mailbox and then wakes
// the bridge, so that replies leave at once instead of at the next poll timeout.
//
// A bridge given a DirectHandler (BridgeOptions::direct) instead hands each decoded
// message to that function on its own thread, and the function's replies leave on the
// socket at once, from that thread: a request and its answer then cost no hop through an
// actor's mailbox and no second wake-up of the bridge (the parameter server's data plane,
// whose every step waits on them).
#pragma once

#include <caf/all.hpp>
#include <functional>
#include <memory>

#include "actors/caf_types.h"
#include "core/metrics.h"
#include "protocols/codec.h"
#include "protocols/transport.h"

namespace custody::actors {

class SocketPort {
 public:
  SocketPort() = default;
  SocketPort(caf::actor bridge, std::shared_ptr<transport::Waker> waker)
      : bridge_(std::move(bridge)), waker_(std::move(waker)) {}
  // Thread-safe.
  void send(const std::string& peer, msg::Envelope envelope) const;
  const caf::actor& actor() const { return bridge_; }
  // Starts the bridge's socket loop: from now on it sends Inbound messages to handler.
  void start(const caf::actor& handler) const { caf::anon_send(bridge_, handler); }

 private:
  caf::actor bridge_;
  std::shared_ptr<transport::Waker> waker_;
};

// Sends an answer on the bridge's socket at once (only from inside a DirectHandler's call,
// on the bridge's thread).
using BridgeReply = std::function<void(const std::string& peer, const msg::Envelope& envelope)>;
// Handles one decoded message on the bridge's thread. `handler` is the actor that
// start() named, for whatever the function does not answer itself.
using DirectHandler = std::function<void(Inbound& in, const caf::actor& handler, const BridgeReply& reply)>;

struct BridgeOptions {
  Channel channel = Channel::kPeers;
  std::string node_name;  // sender of error replies, and log prefix
  msg::DecodeLimits limits;
  // Counts the bytes in and out (custody_network_*_bytes_total{channel}); null: none.
  MetricsRegistry* metrics = nullptr;
  // Set: every decoded message goes to this function on the bridge's thread, not to the
  // handler actor's mailbox (see the top of this file).
  DirectHandler direct;
};

// The bytes a node's sockets carry, custody_network_{sent,received}_bytes_total{channel}:
// channel "coordinator" (a node's link to the coordinator, or the coordinator's socket) or
// "peers" (the data plane: a server's socket, and a worker's trainers' sockets to the
// servers). Registered on first use; the same counters every time after.
struct NetworkBytes {
  Counter& sent;
  Counter& received;
};
NetworkBytes network_bytes_metric(MetricsRegistry& m, Channel channel);

// Spawns the bridge; it owns `socket` from now on and reads nothing from it until
// start(handler) names the actor to deliver to (which may itself need the port, so it
// is spawned in between). Stop it with an exit message.
SocketPort spawn_socket_bridge(caf::actor_system& system, std::unique_ptr<transport::Socket> socket,
                               BridgeOptions options);

}  // namespace custody::actors
