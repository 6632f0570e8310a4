#include "actors/serving_state.h"

#include <cmath>
#include <cstdio>

#include "core/float_env.h"
#include "core/hash.h"
#include "core/utf8.h"
#include "storage/checkpoint.h"
#include "storage/liability.h"
#include "storage/lineage_vocabulary.h"

namespace custody::actors {

using storage::json;
namespace lineage = storage::lineage;

ServingState::ServingState(storage::CustodyStore* store, ServingOptions options, const SigningKey* key,
                           const Clock& clock)
    : store_(store), options_(options), recorder_(store, key, clock) {}

Result<std::pair<std::string, std::string>> ServingState::resolve(const std::string& ref) {
  if (lineage::has_prefix(ref, lineage::prefix::kCheckpoint)) return std::make_pair(ref, std::string());
  const auto now = recorder_.clock().steady_now();
  auto it = names_.find(ref);
  if (it != names_.end() && now - it->second.at < std::chrono::seconds(1)) {
    return std::make_pair(it->second.checkpoint, it->second.label);
  }
  CUSTODY_ASSIGN_OR_RETURN(std::string checkpoint, storage::resolve_checkpoint(*store_, ref));
  std::string label = ref;
  if (ref.find('@') == std::string::npos) {
    CUSTODY_ASSIGN_OR_RETURN(auto newest, store_->newest_model_version(ref));
    label = ref + "@" + std::to_string(newest);
  }
  names_[ref] = {checkpoint, label, now};
  return std::make_pair(checkpoint, label);
}

Result<const ServingState::Loaded*> ServingState::load(const std::string& checkpoint) {
  auto it = cache_.find(checkpoint);
  if (it != cache_.end()) return &it->second;
  json manifest;
  CUSTODY_ASSIGN_OR_RETURN(std::vector<float> values, storage::load_checkpoint(*store_, checkpoint, &manifest));
  Loaded l;
  l.checkpoint = checkpoint;
  l.root_hash = manifest["root_hash"];
  CUSTODY_ASSIGN_OR_RETURN(Model model, storage::model_of_manifest(manifest));
  l.model = std::make_unique<Model>(std::move(model));
  l.params = std::move(values);
  CUSTODY_ASSIGN_OR_RETURN(l.input, storage::input_contract_of_manifest(manifest, l.model->input_size()));
  return &(cache_[checkpoint] = std::move(l));
}

Result<ModelInfo> ServingState::describe(const std::string& ref) {
  if (!store_) {
    return failed_precondition("this coordinator runs without a custody store (--store): it has no models to serve");
  }
  CUSTODY_ASSIGN_OR_RETURN(const auto resolved, resolve(ref));
  CUSTODY_ASSIGN_OR_RETURN(const Loaded* m, load(resolved.first));
  ModelInfo info;
  info.name = ref.substr(0, ref.find('@'));
  const auto at = resolved.second.rfind('@');
  if (at != std::string::npos) info.version = resolved.second.substr(at + 1);
  info.checkpoint = m->checkpoint;
  info.root_hash = m->root_hash;
  info.features = static_cast<uint32_t>(m->model->input_size());
  info.classes = static_cast<uint32_t>(m->model->layer_sizes().back());
  info.input = m->input.expected();
  info.preprocessing = m->input.applied();
  if (m->input.pixels()) {
    info.input_range = {InputContract::kPixelMin, InputContract::kPixelMax};
    info.input_scale = kInputScale;
  }
  info.feature_names = m->input.table.feature_names;
  return info;
}

Result<ServingState::PreparedCall> ServingState::prepare(const msg::Predict& r) {
  if (!store_) {
    return failed_precondition("this coordinator runs without a custody store (--store): it has no models to serve");
  }
  if (r.principal.empty()) return invalid_argument("a prediction needs a caller (principal)");
  // Each is written into the call's usage record (and a refusal's), so each is bounded.
  if (r.model.empty() || r.model.size() > kMaxReferenceBytes) {
    return invalid_argument("a model reference (NAME, NAME@VERSION or a checkpoint id) is 1 to " +
                            std::to_string(kMaxReferenceBytes) + " bytes; got " + std::to_string(r.model.size()));
  }
  if (r.purpose.size() > kMaxPurposeBytes) {
    return invalid_argument("a purpose is at most " + std::to_string(kMaxPurposeBytes) + " bytes; got " +
                            std::to_string(r.purpose.size()));
  }
  // Records are JSON, whose writer throws on text that is not UTF-8 (core/utf8.h; the codec
  // already refuses such a message, this guards every other way in).
  for (const auto& [what, text] : {std::pair<const char*, const std::string*>{"model reference", &r.model},
                                   {"purpose", &r.purpose},
                                   {"principal", &r.principal}}) {
    if (!valid_utf8(*text)) {
      return invalid_argument(std::string("the ") + what + " is not UTF-8 (byte " +
                              std::to_string(invalid_utf8_at(*text)) + " of it); send text encoded as UTF-8");
    }
  }
  CUSTODY_ASSIGN_OR_RETURN(const auto resolved, resolve(r.model));
  // Taint and purposes are derived from the store, again whenever the lineage log has grown:
  // a revocation takes effect on the next call (storage/liability.h).
  std::vector<std::string> overrides;
  const bool named_by_newest =
      r.model.find('@') == std::string::npos && !lineage::has_prefix(r.model, lineage::prefix::kCheckpoint);
  if (Status allowed = liability_.check(*store_, resolved.first, resolved.second, r.purpose, named_by_newest,
                                       &overrides);
      !allowed.is_ok()) {
    // Only a liability refusal (taint, purposes) of a model that exists is recorded: a
    // reference to nothing, or a store that could not be read, is answered and not written,
    // so that no caller can append records to the lineage log by naming checkpoints that
    // do not exist.
    if (allowed.code() != ErrorCode::kFailedPrecondition && allowed.code() != ErrorCode::kPermissionDenied) {
      return allowed;
    }
    Status recorded = storage::liability::record_use_refused(
        *store_, {{"action", lineage::action::kPredict}, {"principal", lineage::principal_id(r.principal)},
                  {"target", resolved.first}, {"model", resolved.second}, {"reference", r.model},
                  {"purpose", r.purpose}, {"why", allowed.message()}});
    if (!recorded.is_ok()) {
      return Status(allowed.code(), allowed.message() + " (the refusal could not be recorded: " + recorded.message() + ")");
    }
    return allowed;
  }
  CUSTODY_ASSIGN_OR_RETURN(const Loaded* loaded, load(resolved.first));
  const Loaded& m = *loaded;
  const std::string label = resolved.second.empty() ? m.checkpoint : resolved.second;
  const uint32_t input = static_cast<uint32_t>(m.model->input_size());
  if (r.rows == 0 || r.rows > options_.max_rows) {
    return invalid_argument("a call holds 1 to " + std::to_string(options_.max_rows) + " rows; got " +
                            std::to_string(r.rows));
  }
  if (r.features != input) {
    return invalid_argument("model " + label + " takes " + std::to_string(input) + " features per row; got " +
                            std::to_string(r.features));
  }
  if (r.inputs.size() != static_cast<size_t>(r.rows) * r.features) {
    return invalid_argument("the input holds " + std::to_string(r.inputs.size()) + " values, not rows x features = " +
                            std::to_string(static_cast<size_t>(r.rows) * r.features));
  }
  CUSTODY_RETURN_IF_ERROR(m.input.check(r.inputs.data(), r.rows, r.features, label));
  // Raw values become what the model was trained on (pixels x 1/255, or a table's rows
  // standardized); the usage record hashes the values as the caller sent them.
  if (model_inputs_.size() < r.inputs.size()) model_inputs_.resize(r.inputs.size());
  m.input.apply(r.inputs.data(), model_inputs_.data(), r.inputs.size());
  // Row-major rows x features is column-major features x rows: samples as columns.
  MatrixView x(model_inputs_.data(), r.features, r.rows);
  const FlushDenormals flush;  // the same arithmetic as the workers' evaluation (core/float_env.h)
  Matrix probs = m.model->predict(m.params.data(), x, ws_);
  // Finite inputs can still overflow a model's arithmetic (a table model takes any finite
  // value: 3e38 in a column); such an answer would be NaN, and a record of it unreadable.
  if (!probs.allFinite()) {
    for (Eigen::Index row = 0; row < probs.cols(); ++row) {
      if (probs.col(row).allFinite()) continue;
      const Eigen::Map<const Eigen::ArrayXf> raw(r.inputs.data() + row * r.features, r.features);
      Eigen::Index column = 0;
      raw.abs().maxCoeff(&column);
      char value[32];
      std::snprintf(value, sizeof(value), "%.9g", static_cast<double>(raw[column]));
      return invalid_argument("model " + label + " gives no finite answer for row " + std::to_string(row) +
                              ": its values overflow the model's arithmetic (column " + std::to_string(column) +
                              " is " + value +
                              "); send values of the size the model was trained on (" + m.input.expected() + ")");
    }
  }

  PreparedCall prepared;
  msg::PredictReply& reply = prepared.reply;
  CUSTODY_ASSIGN_OR_RETURN(const std::string call, random_token(8));  // 16 hex digits
  reply.call_id = lineage::call_id(call);
  reply.checkpoint = m.checkpoint;
  reply.model = resolved.second;
  reply.root_hash = m.root_hash;
  reply.classes = static_cast<uint32_t>(probs.rows());
  reply.probabilities.assign(probs.data(), probs.data() + probs.size());
  json predictions = json::array();
  for (uint32_t row = 0; row < r.rows; ++row) {
    std::string id = lineage::prediction_id(call, row);
    Eigen::Index best = 0;
    const float p = probs.col(row).maxCoeff(&best);
    predictions.push_back({{"id", id}, {"class", best}, {"probability", p}});
    reply.prediction_ids.push_back(std::move(id));
  }
  ServedCall& served = prepared.served;
  served.call_id = reply.call_id;
  served.checkpoint = m.checkpoint;
  served.model = resolved.second;
  served.principal = r.principal;
  served.purpose = r.purpose;
  served.rows = r.rows;
  served.input_sha256 = sha256_hex(r.inputs.data(), r.inputs.size() * sizeof(float));
  served.root_hash = m.root_hash;
  served.prediction_ids = reply.prediction_ids;
  served.predictions = std::move(predictions);
  served.overrides = std::move(overrides);
  // Serialized here, by the thread that evaluated the call, while its group fills: the
  // usage writer then only hashes and stores the text (actors/serving_actor.h).
  if (options_.record_usage) serialize_usage_record(served);
  return prepared;
}

Status ServingState::record(const std::vector<PreparedCall*>& calls) {
  if (!options_.record_usage || calls.empty()) return Status::ok();
  std::vector<ServedCall> served;
  served.reserve(calls.size());
  for (PreparedCall* call : calls) served.push_back(std::move(call->served));
  CUSTODY_ASSIGN_OR_RETURN(auto receipts, recorder_.predictions_served(std::move(served), options_.receipts));
  for (size_t i = 0; i < calls.size(); ++i) calls[i]->reply.receipt = std::move(receipts[i]);
  return Status::ok();
}

Result<msg::PredictReply> ServingState::predict(const msg::Predict& request) {
  CUSTODY_ASSIGN_OR_RETURN(PreparedCall call, prepare(request));
  CUSTODY_RETURN_IF_ERROR(record({&call}));
  return std::move(call.reply);
}

msg::Envelope ServingState::answer(const msg::Envelope& request) {
  constexpr const char* kSender = "coordinator";  // serving runs in the coordinator's process
  const auto* predict_request = request.get<msg::Predict>();
  if (!predict_request) {
    return msg::make_error(request, kSender,
                           invalid_argument(std::string("serving answers predict, not '") +
                                            msg::body_name(request.body) + "'"));
  }
  auto reply = predict(*predict_request);
  if (!reply.is_ok()) return msg::make_error(request, kSender, reply.status());
  return msg::reply_to(request, kSender, std::move(reply).value());
}

}  // namespace custody::actors
