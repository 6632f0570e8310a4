// What the plain state machines of actors/ produce: messages to send, and to whom.
// Kept free of CAF so that the coordinator's and the parameter server's logic are
// unit-tested one message at a time with a controlled clock.
#pragma once

#include <algorithm>
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

// Orders what a state machine returned for sending, which happens one message after the
// other: messages to peers in other processes first, as theirs still have to cross the
// kernel; a peer that `in_process(peer)` says is in this process gets its message by
// pointer, so it can wait the least. The order within each group is kept. Where a peer is
// is the transport's knowledge, so the actor, not the state machine, decides this.
template <class InProcess>
void remote_peers_first(Outbox& out, InProcess in_process) {
  std::stable_partition(out.begin(), out.end(),
                        [&](const Outgoing& o) { return o.to_coordinator || !in_process(o.peer); });
}

}  // namespace custody::actors
