// The custody recorder's records of served predictions: one usage record per call, written
// for a whole group of calls at once, synced (predictions_served) or deferred for the
// serving actor's pipelined group commit (predictions_written), with each call's receipt.
// Split from custody_recorder.cc to keep actors/ files under 500 lines; same class, same
// thread-safety (none: one actor owns the recorder).
#include "actors/custody_recorder.h"

#include "storage/lineage_vocabulary.h"
#include "storage/notary.h"

namespace custody::actors {

using storage::json;
namespace lineage = storage::lineage;
using lineage::principal_id;

namespace {
json usage_body(ServedCall& call) {
  json usage{{"call_id", call.call_id},
             {"action", lineage::action::kPredict},
             {"target", call.checkpoint},
             {"model", call.model.empty() ? "" : lineage::model_id(call.model)},
             {"principal", principal_id(call.principal)},
             {"purpose", call.purpose},
             {"rows", call.rows},
             {"input_sha256", call.input_sha256},
             {"root_hash", call.root_hash},
             {"prediction_ids", call.prediction_ids},
             {"predictions", std::move(call.predictions)},
             {"success", true}};
  // A tainted version answered under an admin's exception: the record says which.
  if (!call.overrides.empty()) usage["taint_overrides"] = call.overrides;
  return usage;
}

storage::Batch prediction_batch(std::vector<ServedCall>& calls) {
  storage::Batch b("predict");
  for (ServedCall& call : calls) {
    if (call.usage) b.usage(std::move(*call.usage));
    else b.usage(usage_body(call));
  }
  return b;
}

Status not_recorded(const Status& s) {
  // Not recorded, not answered: the callers get an error instead of an unaccountable result.
  return Status(s.code(), "the call could not be recorded, so it was not answered: " + s.message());
}
}  // namespace

Result<std::vector<std::string>> CustodyRecorder::receipts_for(std::vector<storage::Inclusion> recorded,
                                                       const std::vector<ServedCall>& calls, bool receipts) const {
  std::vector<std::string> out(calls.size());
  if (!key_ || !receipts) return out;
  const int64_t now = clock_->wall_ms();
  const std::string public_key = key_->public_key_hex();
  // A group's records are proved under one tree head (CustodyStore::write): signed once.
  std::string head;
  uint64_t head_size = 0;
  std::string head_root;
  for (size_t i = 0; i < calls.size(); ++i) {
    if (head.empty() || recorded[i].tree_size != head_size || recorded[i].root != head_root) {
      CUSTODY_ASSIGN_OR_RETURN(const json signed_head, storage::signed_head_of(recorded[i], *key_, now));
      head = signed_head.dump();
      head_size = recorded[i].tree_size;
      head_root = recorded[i].root;
    }
    out[i] = storage::receipt_text(recorded[i], head, public_key, calls[i].call_id);
  }
  return out;
}

void serialize_usage_record(ServedCall& call) {
  if (!call.usage) call.usage = storage::serialize_usage(usage_body(call));
}

Result<std::vector<std::string>> CustodyRecorder::predictions_served(std::vector<ServedCall> calls, bool receipts) {
  if (!store_) return failed_precondition("a prediction is recorded in the custody store: start with --store");
  std::vector<storage::Inclusion> recorded;
  Status s = store_->write(prediction_batch(calls), receipts && key_ ? &recorded : nullptr);
  if (!s.is_ok()) return not_recorded(s);
  return receipts_for(std::move(recorded), calls, receipts);
}

Result<CustodyRecorder::PendingPredictions> CustodyRecorder::predictions_written(std::vector<ServedCall> calls,
                                                                                bool receipts) {
  if (!store_) return failed_precondition("a prediction is recorded in the custody store: start with --store");
  std::vector<storage::Inclusion> recorded;
  // Proofs only for receipts: without them the tree's roots and paths are not computed.
  auto pending = store_->write_deferred(prediction_batch(calls), receipts && key_ ? &recorded : nullptr);
  if (!pending.is_ok()) return not_recorded(pending.status());
  PendingPredictions out;
  out.durable = std::move(pending).value();
  // The records are written; without their receipts the calls are not answered.
  CUSTODY_ASSIGN_OR_RETURN(out.receipts, receipts_for(std::move(recorded), calls, receipts));
  return out;
}

}  // namespace custody::actors
