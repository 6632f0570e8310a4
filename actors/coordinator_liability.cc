// CoordinatorState: revocations of data and the admin's exceptions to their taint (issue
// 15; the record and what it derives are storage/liability.h). The coordinator writes them
// because it owns the store's single writer and knows who is asking (the principal its
// session or token proved).
#include "actors/coordinator_state.h"

#include <set>

#include "core/log.h"
#include "storage/checkpoint.h"
#include "storage/liability.h"
#include "storage/lineage_vocabulary.h"
#include "storage/queries.h"

namespace custody::actors {

namespace lineage = storage::lineage;
namespace liability = storage::liability;
using storage::json;

Outbox CoordinatorState::on_liability(const msg::Envelope& in, const msg::LiabilityRequest& m, const std::string& peer,
                                      const Caller& caller) {
  auto error = [&](Status s) { return Outbox{{peer, msg::make_error(in, kSelf, s)}}; };
  if (!recorder_.enabled()) {
    return error(failed_precondition("this coordinator keeps no custody store (--no-store): there is nothing to "
                                     "revoke or allow"));
  }
  storage::CustodyStore& store = *recorder_.store();
  // Secured, the proven principal acts; a cluster without security takes the name given (--as).
  const std::string name = secured() || m.principal.empty() ? caller.principal : m.principal;
  const std::string by = lineage::principal_id(name);
  const bool admin = caller.role == Role::kAdmin;
  if (m.action == msg::LiabilityRequest::Action::kAllow) {
    if (!admin) {
      Status refused(ErrorCode::kPermissionDenied,
                     "only an admin may allow a tainted model version (" + name + " is " + to_string(caller.role) + ")");
      Status recorded = liability::record_use_refused(
          store, {{"action", "allow"}, {"principal", by}, {"target", m.model}, {"revocation", m.revocation},
                  {"purpose", m.purpose}, {"why", refused.message()}});
      if (!recorded.is_ok()) log(LogLevel::kError, kSelf, "could not record a refused override: " + recorded.message());
      return error(refused);
    }
    if (m.model.find('@') == std::string::npos && !lineage::has_prefix(m.model, lineage::prefix::kCheckpoint)) {
      return error(invalid_argument("an override is for one model version: give NAME@VERSION or a checkpoint id, not '" +
                                    m.model + "'"));
    }
    auto checkpoint = storage::resolve_checkpoint(store, m.model);
    if (!checkpoint.is_ok()) return error(checkpoint.status());
    const std::string label = lineage::has_prefix(m.model, lineage::prefix::kCheckpoint) ? "" : m.model;
    auto o = liability::record_override(store, *checkpoint, label, m.revocation, m.purpose, m.reason, by);
    if (!o.is_ok()) return error(o.status());
    log(LogLevel::kInfo, kSelf, name + " allowed tainted " + m.model + " despite " + m.revocation + " for purpose '" +
                                    m.purpose + "' (" + o->value("id", std::string()) + ")");
    return {{peer, msg::reply_to(in, kSelf, msg::LiabilityReply{o->dump()})}};
  }

  auto dataset = storage::resolve_id(store, m.dataset);
  if (!dataset.is_ok()) return error(dataset.status());
  if (!lineage::has_prefix(*dataset, lineage::prefix::kDataset)) {
    return error(invalid_argument("revoke withdraws a data set (dataset:HASH, a unique prefix of its hash, or its "
                                  "name); '" + m.dataset + "' is " + *dataset));
  }
  if (!admin) {
    auto owner = liability::dataset_owner(store, *dataset);
    if (!owner.is_ok()) return error(owner.status());
    if (*owner != by) {
      Status refused(ErrorCode::kPermissionDenied,
                     "only an admin or the data set's owner (" +
                         (owner->empty() ? std::string("none recorded")
                                         : lineage::display_name(*owner, lineage::prefix::kPrincipal)) +
                         ", who declared it in its first submission) may revoke " + *dataset + "; " + name +
                         " may not. The refusal is recorded.");
      Status recorded = liability::record_revocation_refused(store, *dataset, m.records, by, refused.message());
      if (!recorded.is_ok()) log(LogLevel::kError, kSelf, "could not record a refused revocation: " + recorded.message());
      log(LogLevel::kWarn, kSelf, "refused " + name + "'s revocation of " + *dataset);
      return error(refused);
    }
  }
  auto rev = liability::record_revocation(store, *dataset, m.records, m.reason, by);
  if (!rev.is_ok()) return error(rev.status());
  json reply = *rev;
  // What it taints now: every model version downstream (impact follows fine-tuning).
  auto affected = storage::impact(store, *dataset);
  reply["tainted_models"] = affected.is_ok() ? affected->value("tainted_models", json::array()) : json::array();
  log(LogLevel::kInfo, kSelf, name + " revoked " + *dataset + " (" + rev->value("id", std::string()) + ", " +
                                  std::to_string(rev->value("record_count", uint64_t(0))) + " records): " + m.reason);
  return {{peer, msg::reply_to(in, kSelf, msg::LiabilityReply{reply.dump()})}};
}

Result<std::vector<uint64_t>> CoordinatorState::excluded_records(const JobSpec& spec, const std::string& data_hash,
                                                                 const std::string& origin) const {
  std::set<uint64_t> out;
  if (spec.data.without.empty()) return std::vector<uint64_t>();
  if (!recorder_.enabled()) {
    return failed_precondition(origin + ": 'data.without' names revocations, which a coordinator without a custody "
                               "store (--no-store) does not have");
  }
  const std::string dataset = lineage::dataset_id(data_hash);
  for (const auto& id : spec.data.without) {
    CUSTODY_ASSIGN_OR_RETURN(auto e, recorder_.store()->entity(id));
    if (!e || e->body.value("kind", std::string()) != lineage::kind::kRevocation) {
      return not_found(origin + ": 'data.without': no revocation '" + id + "' in the custody store");
    }
    const json& r = e->body;
    if (r.value("dataset", std::string()) != dataset) {
      return invalid_argument(origin + ": 'data.without': " + id + " withdraws records of " +
                              r.value("dataset", std::string("?")) + ", not of this job's data set " + dataset);
    }
    if (r.value("scope", std::string()) == "dataset") {
      return failed_precondition(origin + ": 'data.without': " + id + " withdraws the whole data set " + dataset +
                                 "; nothing of it is left to train on");
    }
    for (const auto& i : r.value("records", json::array())) out.insert(i.get<uint64_t>());
  }
  return std::vector<uint64_t>(out.begin(), out.end());
}

}  // namespace custody::actors
