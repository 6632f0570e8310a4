#include "actors/attribution_actor.h"

#include "actors/custody_recorder.h"
#include "core/log.h"
#include "storage/attribution.h"

namespace custody::actors {
namespace {

constexpr char kSelf[] = "coordinator";

Result<msg::AttributionReply> answer(storage::CustodyStore* store, CustodyRecorder& recorder,
                                     const msg::Attribute& m) {
  if (!store) {
    return failed_precondition(
        "this coordinator runs without a custody store (--store): it has no runs to attribute");
  }
  if (m.principal.empty()) return invalid_argument("an attribution needs a caller (principal)");
  if (m.prediction_id.empty() == m.self_influence.empty()) {
    return invalid_argument(
        "name either a prediction to attribute or a model for --self-influence, not both");
  }
  if (m.top == 0 || m.top > 10000)
    return invalid_argument("--top must be in [1, 10000]; got " + std::to_string(m.top));
  storage::AttributionRequest r;
  r.prediction_id = m.prediction_id;
  r.inputs = m.inputs;
  r.rows = m.rows;
  r.features = m.features;
  r.batch_rows = m.batch_rows;
  r.label = m.label;
  r.self_influence_model = m.self_influence;
  r.top = m.top;
  CUSTODY_ASSIGN_OR_RETURN(storage::json result, storage::attribute(*store, r));
  AttributionMade made{m.principal, m.purpose, result};
  CUSTODY_ASSIGN_OR_RETURN(auto recorded, recorder.attribution_made(made));
  msg::AttributionReply reply;
  reply.usage_id = recorded.first;
  reply.receipt = recorded.second;
  result["usage_id"] = reply.usage_id;
  reply.json = result.dump();
  return reply;
}

caf::behavior attribution_actor(caf::event_based_actor*, SocketPort port, storage::CustodyStore* store,
                                const SigningKey* key) {
  auto recorder = std::make_shared<CustodyRecorder>(store, key);
  return {
      [=](Inbound& in) {
        const auto* request = in.envelope->get<msg::Attribute>();
        if (!request) return;
        auto reply = answer(store, *recorder, *request);
        if (!reply.is_ok()) {
          log(LogLevel::kInfo, kSelf, "attribution refused: " + reply.status().message());
          port.send(in.peer, msg::make_error(*in.envelope, kSelf, reply.status()));
          return;
        }
        port.send(in.peer, msg::reply_to(*in.envelope, kSelf, std::move(reply).value()));
      },
  };
}

}  // namespace

caf::actor spawn_attribution(caf::actor_system& system, SocketPort port, storage::CustodyStore* store,
                             const SigningKey* key) {
  return system.spawn<caf::detached>(attribution_actor, port, store, key);
}

}  // namespace custody::actors
