// The CAF message types and atoms used between the actors of one process.
// Internal to actors/: no header outside this folder includes CAF.
//
// Decoded network messages travel between actors as shared pointers to immutable
// Envelopes, so a 1 MiB gradient is not copied from actor to actor. These types never
// leave the process (CAF's network layer is not used: ZeroMQ is the transport), so their
// inspect() covers only the routing fields that a log line would show.
#pragma once

#include <caf/all.hpp>
#include <future>
#include <memory>
#include <string>

#include "actors/serving_call.h"
#include "protocols/messages.h"

namespace custody::actors {

// Which socket of its process a message came in on.
enum class Channel : uint8_t { kCoordinator = 0, kPeers = 1 };

struct Inbound {
  Channel channel = Channel::kPeers;
  std::string peer;
  std::shared_ptr<const msg::Envelope> envelope;
  // Who the CurveZMQ handshake proved the sender's session is (transport::Incoming::
  // identity: the coordinator's authenticator answers with the key's credential); empty
  // on sockets without CURVE.
  std::string identity;
  std::string address;  // the sender's network address (transport::Incoming::address)
};

struct Outbound {
  std::string peer;
  std::shared_ptr<const msg::Envelope> envelope;
};

// A serving call from inside the process (actors/serving_call.h): the answer goes to the
// promise, not to a socket peer.
struct LocalCall {
  ServingCallKind kind = ServingCallKind::kPredict;
  std::shared_ptr<const msg::Envelope> envelope;
  std::shared_ptr<std::promise<ServingAnswer>> answer;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, LocalCall& x) {
  return f(caf::meta::type_name("local_call"), x.kind);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Inbound& x) {
  return f(caf::meta::type_name("inbound"), x.peer);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Outbound& x) {
  return f(caf::meta::type_name("outbound"), x.peer);
}

using tick_atom = caf::atom_constant<caf::atom("tick")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using fatal_atom = caf::atom_constant<caf::atom("fatal")>;
using register_atom = caf::atom_constant<caf::atom("register")>;
using leave_atom = caf::atom_constant<caf::atom("leave")>;  // the node stops: deregister first

inline void add_custody_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<Inbound>("custody_inbound");
  cfg.add_message_type<Outbound>("custody_outbound");
  cfg.add_message_type<LocalCall>("custody_local_call");
}

}  // namespace custody::actors
