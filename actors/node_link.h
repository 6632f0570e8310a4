// A parameter server's or worker's membership in the cluster: registering with the
// coordinator, heartbeats, and noticing a coordinator that does not answer.
//
//   unregistered --registerAck--> registered --heartbeatAck{known=false}--> unregistered
//   (each time it becomes unregistered it takes a new session: the registrations it sends
//   until the next registerAck, one a second, all carry it, so the coordinator counts
//   however many of them arrive, e.g. queued behind a partition, as one registration)
//   unregistered for longer than connect_timeout, before the first registerAck: fatal
//   ("could not reach the coordinator ..."); after it, the node keeps trying and logs.
//   any --leave (SIGTERM/SIGINT)--> leaving --heartbeatAck--> left
//   (a registered node sends one heartbeat{leaving}, so the coordinator deregisters it at
//   once instead of declaring it dead a heartbeat timeout later; then nothing more. The
//   node's runtime waits for `left()` a bounded time: a coordinator that is down does not
//   hold up the exit.)
// Plain logic: the node's state machine drives it (on_tick, on_message) with the time,
// and the node's actor sends what it returns. Thread-safety: none; owned by one actor.
#pragma once

#include <string>

#include "actors/outgoing.h"

namespace custody::actors {

class NodeLink {
 public:
  // `now`: when the node started to reach for the coordinator.
  NodeLink(msg::Register registration, std::string coordinator_address,
           std::chrono::milliseconds connect_timeout, std::string token, SteadyClock::time_point now);

  // A registration or a heartbeat, when one is due. A fatal error when the coordinator
  // was never reached in time, or refused this node's credentials.
  Result<Outbox> on_tick(SteadyClock::time_point now, bool busy);
  // True if the message was the link's own (registerAck, heartbeatAck).
  bool on_message(const msg::Envelope& in, SteadyClock::time_point now);

  // The node is stopping: the heartbeat that deregisters it, or nothing when it is not
  // registered (nothing to take back; `left()` is then true at once). Afterwards on_tick
  // sends nothing.
  Outbox leave();
  bool leaving() const { return leaving_; }
  // The coordinator has acknowledged the deregistration (or there was nothing to say).
  bool left() const { return left_; }

  bool registered() const { return registered_; }
  // How many times this node has registered: above 1, a coordinator lost it (restarted, or
  // declared it dead), and the node drops the work it held, which that coordinator
  // reassigns from its last checkpoint.
  uint64_t registrations() const { return registrations_; }
  const std::string& node_id() const { return node_id_; }
  // The session the registrations it sends now carry.
  const std::string& session() const { return registration_.session; }
  // `e` as this node's message to the coordinator: from this node, with its token.
  Outgoing to_coordinator(msg::Envelope e) const;

 private:
  msg::Register registration_;
  std::string address_;
  std::chrono::milliseconds connect_timeout_;
  std::chrono::milliseconds interval_{1000};
  std::string node_id_;
  bool registered_ = false, ever_registered_ = false;
  bool leaving_ = false, left_ = false;
  uint64_t registrations_ = 0;
  SteadyClock::time_point since_, last_sent_, last_ack_;
  std::string label_;
  std::string token_;
  Status refusal_;  // the coordinator refused this node's credentials: fatal

  void new_session();
  uint64_t sessions_ = 0;
};

}  // namespace custody::actors
