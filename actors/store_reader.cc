#include "actors/store_reader.h"

#include "storage/store_query.h"

namespace custody::actors {
namespace {

constexpr char kSelf[] = "coordinator";

caf::behavior store_reader(caf::event_based_actor*, SocketPort port, const storage::CustodyStore* store) {
  return {
      [=](Inbound& in) {
        const auto* request = in.envelope->get<msg::StoreQuery>();
        if (!request) return;
        if (!store) {
          port.send(in.peer, msg::make_error(*in.envelope, kSelf,
                                             failed_precondition("this coordinator keeps no custody store "
                                                                 "(--no-store): it has no lineage to query")));
          return;
        }
        auto answer = storage::run_query(*store, request->query, request->argument);
        if (!answer.is_ok()) {
          port.send(in.peer, msg::make_error(*in.envelope, kSelf, answer.status()));
          return;
        }
        port.send(in.peer, msg::reply_to(*in.envelope, kSelf, msg::StoreQueryReply{answer->dump()}));
      },
  };
}

}  // namespace

caf::actor spawn_store_reader(caf::actor_system& system, SocketPort port, const storage::CustodyStore* store) {
  return system.spawn<caf::detached>(store_reader, port, store);
}

}  // namespace custody::actors
