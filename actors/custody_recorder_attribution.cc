// The custody recorder's record of an answered `custody attribute` request (the usage
// log's action "attribute"; actors/attribution_actor.h). Split from custody_recorder.cc to
// keep actors/ files under 500 lines; same class, same thread-safety (none: one actor owns
// each recorder).
#include "actors/custody_recorder.h"

#include "core/hash.h"
#include "storage/lineage_vocabulary.h"
#include "storage/notary.h"

namespace custody::actors {

namespace {
namespace lineage = storage::lineage;
using lineage::principal_id;
}  // namespace

Result<std::pair<std::string, std::string>> CustodyRecorder::attribution_made(const AttributionMade& made) {
  if (!store_) return failed_precondition("an attribution is recorded in the custody store: start with --store");
  CUSTODY_ASSIGN_OR_RETURN(const std::string random, random_token(8));  // 16 hex digits
  const std::string usage_id = lineage::use_id(random);
  const storage::json& a = made.answer;
  storage::json weighed = storage::json::array();
  for (const auto& c : a["checkpoints"]) weighed.push_back(c["id"]);
  storage::json body = {{"usage_id", usage_id},
                        {"action", lineage::action::kAttribute},
                        {"target", a["checkpoint"]},
                        {"principal", principal_id(made.principal)},
                        {"purpose", made.purpose},
                        {"kind", a["kind"]},
                        {"run", a["run"]},
                        {"dataset", a["dataset"]},
                        {"method", a["method"]},
                        {"checkpoints", weighed},
                        {"records_scored", a["records_scored"]},
                        {"time_ms", clock_->wall_ms()}};
  // The request (which prediction, which input, which label) and the answer as it was given,
  // with who scored which range of the records (workers or the coordinator, and why).
  for (const char* field :
       {"prediction", "call", "input_sha256", "test_label", "label_source", "proponents", "opponents", "records",
        "scored_by"}) {
    if (a.contains(field)) body[field] = a[field];
  }
  storage::Batch b("attribute");
  b.usage(std::move(body));
  std::vector<storage::Inclusion> recorded;
  Status s = store_->write(b, &recorded);
  if (!s.is_ok()) {
    return Status(s.code(), "the attribution could not be recorded, so it was not answered: " + s.message());
  }
  std::string receipt;
  if (key_) {
    CUSTODY_ASSIGN_OR_RETURN(const storage::json signed_receipt,
                             storage::make_receipt(std::move(recorded.at(0)), *key_, clock_->wall_ms(), usage_id));
    receipt = signed_receipt.dump();
  }
  return std::make_pair(usage_id, receipt);
}

}  // namespace custody::actors
