// A parameter server's or worker's membership in the cluster: registering with the
// coordinator, heartbeats, and noticing a coordinator that does not answer.
//
//   unregistered --registerAck--> registered --heartbeatAck{known=false}--> unregistered
//   unregistered for longer than connect_timeout, before the first registerAck: fatal
//   ("could not reach the coordinator ..."); after it, the node keeps trying and logs.
// Plain logic driven by the node's actor (on_tick, on_message); sends through a port.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "actors/outgoing.h"
#include "actors/socket_bridge.h"

namespace custody::actors {

class NodeLink {
 public:
  NodeLink(SocketPort coordinator, msg::Register registration, std::string coordinator_address,
           std::chrono::milliseconds connect_timeout, std::string token = "");

  // Returns a fatal error when the coordinator was never reached in time.
  Status on_tick(Clock::time_point now, bool busy);
  // True if the message was the link's own (registerAck, heartbeatAck).
  bool on_message(const msg::Envelope& in, Clock::time_point now);

  bool registered() const { return registered_; }
  // How many times this node has registered: above 1, a coordinator lost it (restarted, or
  // declared it dead), and the node drops the work it held, which that coordinator
  // reassigns from its last checkpoint.
  uint64_t registrations() const { return registrations_; }
  const std::string& node_id() const { return node_id_; }
  std::chrono::milliseconds heartbeat_interval() const { return interval_; }
  void send(msg::Envelope e) const;

 private:
  SocketPort coordinator_;
  msg::Register registration_;
  std::string address_;
  std::chrono::milliseconds connect_timeout_;
  std::chrono::milliseconds interval_{1000};
  std::string node_id_;
  bool registered_ = false, ever_registered_ = false;
  uint64_t registrations_ = 0;
  Clock::time_point since_, last_sent_, last_ack_;
  std::string label_;
  std::string token_;
  Status refusal_;  // the coordinator refused this node's credentials: fatal
};

}  // namespace custody::actors
