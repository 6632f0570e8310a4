// What the plain state machines of actors/ produce: messages to send, and to whom.
// Kept free of CAF so that the coordinator's and the parameter server's logic are
// unit-tested one message at a time with a controlled clock.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "protocols/messages.h"

namespace custody::actors {

using SteadyClock = std::chrono::steady_clock;

struct Outgoing {
  std::string peer;  // routing id of the recipient on the receiving socket
  msg::Envelope envelope;
  bool to_coordinator = false;  // a node's message to its coordinator (peer is unused)
};
using Outbox = std::vector<Outgoing>;

}  // namespace custody::actors
