#include "actors/node_link.h"

#include <algorithm>

#include "core/hash.h"
#include "core/log.h"

namespace custody::actors {
namespace {
constexpr uint64_t kLeaveRequest = 0x6c65617665;  // "leave"
}  // namespace

NodeLink::NodeLink(msg::Register registration, std::string coordinator_address,
                   std::chrono::milliseconds connect_timeout, std::string token, SteadyClock::time_point now)
    : registration_(std::move(registration)),
      address_(std::move(coordinator_address)),
      connect_timeout_(connect_timeout),
      since_(now),
      label_(msg::to_string(registration_.role)),
      token_(std::move(token)) {
  new_session();
}

void NodeLink::new_session() {
  ++sessions_;
  auto token = random_token(16);
  // Without the system's randomness (never seen), the count still tells this process's
  // sessions apart; the coordinator also compares the pid.
  registration_.session = token.is_ok() ? token.value() : "local-" + std::to_string(sessions_);
}

Outgoing NodeLink::to_coordinator(msg::Envelope e) const {
  e.sender = node_id_.empty() ? label_ : node_id_;
  e.token = token_;
  return {"", std::move(e), true};
}

Outbox NodeLink::leave() {
  Outbox out;
  if (leaving_) return out;
  leaving_ = true;
  if (!registered_) {
    left_ = true;  // the coordinator holds no live registration of this session
    return out;
  }
  msg::Envelope e;
  e.body = msg::Heartbeat{false, true};
  e.request_id = kLeaveRequest;  // echoed by its ack: an ack of an earlier heartbeat is not it
  out.push_back(to_coordinator(std::move(e)));
  return out;
}

Result<Outbox> NodeLink::on_tick(SteadyClock::time_point now, bool busy) {
  if (!refusal_.is_ok()) return refusal_;
  Outbox out;
  if (leaving_) return out;  // stopping: no registration, no heartbeat
  if (!registered_) {
    if (!ever_registered_ && now - since_ > connect_timeout_) {
      return unavailable("could not reach the coordinator at " + address_ + " within " +
                         std::to_string(connect_timeout_.count() / 1000.0).substr(0, 4) +
                         " s; is it running, and is the address right (--coordinator)?");
    }
    if (now - last_sent_ >= std::chrono::milliseconds(1000)) {
      msg::Envelope e;
      e.body = registration_;
      out.push_back(to_coordinator(std::move(e)));
      last_sent_ = now;
    }
    return out;
  }
  if (now - last_ack_ > std::max(connect_timeout_, 5 * interval_)) {
    log(LogLevel::kWarn, node_id_, "no answer from the coordinator at " + address_ +
                                       " for a while; registering again");
    registered_ = false;
    since_ = now;
    new_session();
    return out;
  }
  if (now - last_sent_ >= interval_) {
    msg::Envelope e;
    e.body = msg::Heartbeat{busy};
    out.push_back(to_coordinator(std::move(e)));
    last_sent_ = now;
  }
  return out;
}

bool NodeLink::on_message(const msg::Envelope& in, SteadyClock::time_point now) {
  if (leaving_ && in.request_id == kLeaveRequest && in.get<msg::Error>()) {
    // Refused (say the coordinator restarted and no longer knows this connection): it
    // answered, so waiting longer brings nothing; it marks the node dead in due course.
    log(LogLevel::kWarn, node_id_, "the coordinator did not take the deregistration: " + in.get<msg::Error>()->message);
    left_ = true;
    return true;
  }
  if (auto* err = in.get<msg::Error>(); err && err->code == ErrorCode::kPermissionDenied && !registered_) {
    // Refused at the door: retrying with the same credentials cannot help.
    refusal_ = Status(ErrorCode::kPermissionDenied, "the coordinator at " + address_ +
                                                        " refused this node: " + err->message);
    return true;
  }
  if (auto* ack = in.get<msg::RegisterAck>()) {
    if (leaving_) return true;  // too late: the node is stopping
    if (!registered_) {
      log(LogLevel::kInfo, ack->node_id, "registered with the coordinator at " + address_);
      ++registrations_;
    }
    node_id_ = ack->node_id;
    registration_.name = node_id_;  // keep the same id when registering again
    interval_ = std::chrono::milliseconds(std::max<uint32_t>(50, ack->heartbeat_interval_ms));
    registered_ = ever_registered_ = true;
    last_ack_ = now;
    return true;
  }
  if (auto* ack = in.get<msg::HeartbeatAck>()) {
    last_ack_ = now;
    if (leaving_) {
      if (in.request_id == kLeaveRequest) left_ = true;
      return true;
    }
    if (!ack->known && registered_) {
      log(LogLevel::kWarn, node_id_, "the coordinator no longer knows this node; registering again");
      registered_ = false;
      new_session();
      since_ = now;
      last_sent_ = SteadyClock::time_point();
    }
    return true;
  }
  return false;
}

}  // namespace custody::actors
