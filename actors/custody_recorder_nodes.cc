// The custody recorder's records about nodes: a registration (node_registered) and a
// deregistration (node_deregistered, a node stopped by its operator). Split from
// custody_recorder.cc to keep actors/ files under 500 lines; same class, same
// thread-safety (none: one actor owns the recorder).
#include "actors/custody_recorder.h"

#include "storage/lineage_vocabulary.h"

namespace custody::actors {

using storage::json;

namespace {
namespace lineage = storage::lineage;
using lineage::node_entity_id;
using lineage::principal_id;
}  // namespace

Status CustodyRecorder::node_registered(const std::string& node_id, const msg::Register& r,
                                       const std::string& principal) {
  storage::Batch b("node registered");
  json attributes = {{"node_id", node_id}, {"role", msg::to_string(r.role)}, {"host", r.host}, {"address", r.address}};
  if (!principal.empty()) attributes["principal"] = principal;
  b.entity(lineage::kind::kNode, node_entity_id(node_id), std::move(attributes));
  json event = {{"event", lineage::event::kNodeRegistered}, {"node", node_entity_id(node_id)}, {"pid", r.pid}, {"host", r.host}};
  // Who the node proved it is (its key's principal): attribution names a key, not a claim.
  if (!principal.empty()) event["principal"] = principal_id(principal);
  // Which registration: its retries carry the same session and are not recorded again.
  if (!r.session.empty()) event["session"] = r.session;
  b.event(std::move(event));
  return write(b);
}

Status CustodyRecorder::node_deregistered(const std::string& node_id, const std::string& session,
                                         const std::string& principal) {
  storage::Batch b("node deregistered");
  // One record per stop: the node sends its leaving heartbeat once, and a second one from
  // the same connection finds the node gone (it is no longer a live node of that peer).
  json event = {{"event", lineage::event::kNodeDeregistered}, {"node", node_entity_id(node_id)},
                {"reason", "stopped by its operator (SIGTERM or SIGINT)"}};
  if (!principal.empty()) event["principal"] = principal_id(principal);
  if (!session.empty()) event["session"] = session;  // which registration ended
  b.event(std::move(event));
  return write(b);
}

}  // namespace custody::actors
