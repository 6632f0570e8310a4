#include "storage/record_schema.h"

#include <cmath>

#include <map>
#include <vector>

#include "storage/custody_store.h"
#include "storage/lineage_vocabulary.h"

namespace custody::storage {
namespace {

enum class Type { kString, kUint, kInt, kNumber, kBool, kObject, kArray, kStrings, kNumbers };

struct Field {
  const char* name;
  Type type;
  bool required;
};

const char* type_name(Type t) {
  switch (t) {
    case Type::kString: return "a string";
    case Type::kUint: return "an unsigned number";
    case Type::kInt: return "an integer";
    case Type::kNumber: return "a number";
    case Type::kBool: return "true or false";
    case Type::kObject: return "an object";
    case Type::kArray: return "an array";
    case Type::kStrings: return "an array of strings";
    case Type::kNumbers: return "an array of numbers";
  }
  return "?";
}

const char* json_type(const json& v) {
  if (v.is_number_unsigned()) return "an unsigned number";
  if (v.is_number_integer()) return "a negative number";
  return v.type_name();
}

bool finite_number(const json& v) {
  return v.is_number() && (!v.is_number_float() || std::isfinite(v.get<double>()));
}

bool has_type(const json& v, Type t) {
  auto all = [&](auto pred) {
    if (!v.is_array()) return false;
    for (const auto& x : v)
      if (!pred(x)) return false;
    return true;
  };
  switch (t) {
    case Type::kString: return v.is_string();
    // Parsed JSON holds a non-negative integer as unsigned; one built in C++ from an int
    // is signed until it is written. Both are the same record.
    case Type::kUint: return v.is_number_unsigned() || (v.is_number_integer() && v.get<int64_t>() >= 0);
    case Type::kInt: return v.is_number_integer();
    // Finite: a NaN or an infinity is written as null, which the reader then calls damaged.
    case Type::kNumber: return finite_number(v);
    case Type::kBool: return v.is_boolean();
    case Type::kObject: return v.is_object();
    case Type::kArray: return v.is_array();
    case Type::kStrings: return all([](const json& x) { return x.is_string(); });
    case Type::kNumbers: return all([](const json& x) { return finite_number(x); });
  }
  return false;
}

// "" if every field has its type; else what is wrong, naming the field.
std::string check_fields(const json& body, const std::vector<Field>& fields, const std::string& where = "") {
  for (const Field& f : fields) {
    auto it = body.find(f.name);
    if (it == body.end()) {
      if (f.required) return "field '" + where + f.name + "' is missing";
      continue;
    }
    if (!has_type(*it, f.type)) {
      return "field '" + where + f.name + "' is " + json_type(*it) + ", not " + type_name(f.type);
    }
  }
  return "";
}

using Table = std::map<std::string, std::vector<Field>>;

// What readers rely on, per entity kind, relation and event. Fields not listed are
// carried along (shown by `lineage show`) but never interpreted.
const Table& entity_fields() {
  static const Table t{
      {lineage::kind::kCheckpoint,
       {{"job", Type::kString, true}, {"step", Type::kUint, true}, {"epoch", Type::kUint, true},
        {"root_hash", Type::kString, true}, {"final", Type::kBool, true}, {"attempt", Type::kUint, false},
        {"manifest_sha256", Type::kString, false}, {"privacy", Type::kObject, false}}},
      {lineage::kind::kRun,
       {{"name", Type::kString, true}, {"submitter", Type::kString, true}, {"submitted_at_ms", Type::kInt, true},
        {"epochs", Type::kUint, false}, {"workers", Type::kUint, false}, {"consistency", Type::kString, false},
        {"layer_sizes", Type::kNumbers, false}}},
      {lineage::kind::kDataset,
       {{"sha256", Type::kString, true}, {"name", Type::kString, false}, {"train_samples", Type::kInt, false},
        {"test_samples", Type::kInt, false}, {"license", Type::kString, false}, {"consent", Type::kStrings, false},
        {"files", Type::kObject, false}}},
      {lineage::kind::kModelVersion,
       {{"name", Type::kString, true}, {"version", Type::kUint, true}, {"checkpoint", Type::kString, true},
        {"run", Type::kString, false}, {"test_accuracy", Type::kNumber, false}}},
      {lineage::kind::kPrincipal, {{"name", Type::kString, true}}},
      {lineage::kind::kNode, {{"node_id", Type::kString, true}, {"role", Type::kString, true}, {"host", Type::kString, false},
                {"address", Type::kString, false}}},
      {lineage::kind::kCredential,
       {{"principal", Type::kString, true}, {"role", Type::kString, true}, {"credential_kind", Type::kString, false},
        {"public_key", Type::kString, false}}},
      {lineage::kind::kSigningKey, {{"public_key", Type::kString, true}, {"public_key_pem", Type::kString, false}}},
      {lineage::kind::kRevocation,
       {{"dataset", Type::kString, true}, {"scope", Type::kString, true}, {"records", Type::kNumbers, true},
        {"reason", Type::kString, true}, {"by", Type::kString, true}, {"time_ms", Type::kInt, true},
        {"record_count", Type::kUint, false}, {"dataset_name", Type::kString, false}}},
      {lineage::kind::kTaintOverride,
       {{"checkpoint", Type::kString, true}, {"revocation", Type::kString, true}, {"purpose", Type::kString, true},
        {"reason", Type::kString, true}, {"by", Type::kString, true}, {"time_ms", Type::kInt, true},
        {"model", Type::kString, false}}},
      {lineage::kind::kJobSpec, {{"text", Type::kString, false}, {"canonical", Type::kString, false}, {"sha256", Type::kString, false}}},
  };
  return t;
}

const Table& relation_fields() {
  static const Table t{
      {lineage::rel::kContributed,
       {{"rank", Type::kUint, false}, {"steps", Type::kUint, true}, {"samples", Type::kUint, true},
        {"update_norm_sum", Type::kNumber, true}, {"rejected", Type::kUint, false},
        {"staleness_max", Type::kUint, false}, {"shard", Type::kObject, false}, {"run", Type::kString, false}}},
      {lineage::rel::kConsumed,
       {{"train_samples", Type::kInt, false}, {"license", Type::kString, false}, {"consent", Type::kStrings, false},
        {"name", Type::kString, false}, {"files", Type::kObject, false}, {"spdx", Type::kString, false},
        {"purposes", Type::kStrings, false}, {"consent_purposes", Type::kStrings, false}}},
      {lineage::rel::kRevokes, {{"scope", Type::kString, true}}},
      {lineage::rel::kAllows, {{"purpose", Type::kString, true}}},
      {lineage::rel::kProduced, {{"step", Type::kUint, false}}},
      {lineage::rel::kPrivacyBudget,
       {{"epsilon", Type::kNumber, true}, {"delta", Type::kNumber, true}, {"reason", Type::kString, false}}},
      {lineage::rel::kPrivacyCharged,
       {{"steps", Type::kUint, true}, {"sampling_rate", Type::kNumber, true}, {"noise_multiplier", Type::kNumber, true},
        {"why", Type::kString, true}, {"attempt", Type::kUint, false}}},
      {lineage::rel::kPrivacyOverride, {{"by", Type::kString, true}, {"reason", Type::kString, true}}},
      {lineage::rel::kPrivacyRefused, {{"job_name", Type::kString, false}, {"reason", Type::kString, true}}},
      {lineage::rel::kAssigned, {{"role", Type::kString, false}, {"rank", Type::kUint, false}, {"attempt", Type::kUint, false}}},
  };
  return t;
}

const Table& event_fields() {
  static const Table t{
      {lineage::event::kRunEnded,
       {{"state", Type::kString, true}, {"message", Type::kString, false}, {"test_accuracy", Type::kNumber, false},
        {"accuracy_history", Type::kNumbers, false}, {"steps", Type::kUint, false},
        {"final_checkpoint", Type::kString, false}}},
      {lineage::event::kRunStarted, {{"attempt", Type::kUint, false}, {"start_step", Type::kUint, false}}},
      {lineage::event::kNodeRegistered,
       {{"node", Type::kString, true}, {"pid", Type::kUint, false}, {"host", Type::kString, false},
        {"principal", Type::kString, false}, {"session", Type::kString, false}}},
      {lineage::event::kNodeDeregistered,
       {{"node", Type::kString, true}, {"reason", Type::kString, false}, {"session", Type::kString, false}}},
      {lineage::event::kRunRecovered, {{"attempt", Type::kUint, false}, {"next_attempt", Type::kUint, false}}},
      {lineage::event::kShardObtained,
       {{"run", Type::kString, true}, {"attempt", Type::kUint, true}, {"node", Type::kString, true},
        {"rank", Type::kUint, true}, {"how", Type::kString, true}, {"source", Type::kString, true},
        {"bytes_fetched", Type::kUint, false}, {"elapsed_ms", Type::kUint, false}, {"verified", Type::kObject, true}}},
      {lineage::event::kRunResumed, {{"from_checkpoint", Type::kString, false}, {"step", Type::kUint, false}}},
      {lineage::event::kCredentialRevoked,
       {{"credential", Type::kString, true}, {"principal", Type::kString, true}, {"reason", Type::kString, false}}},
      {lineage::event::kEpochEvaluated,
       {{"epoch", Type::kUint, true}, {"test_accuracy", Type::kNumber, true}, {"test_loss", Type::kNumber, false}}},
      {lineage::event::kCheckpointResealed,
       {{"checkpoint", Type::kString, true}, {"manifest_sha256", Type::kString, true},
        {"store_key", Type::kString, true}, {"previous_manifest_sha256", Type::kString, false},
        {"tensors", Type::kUint, false}, {"by", Type::kString, false}}},
      {lineage::event::kRevocationRefused,
       {{"dataset", Type::kString, true}, {"principal", Type::kString, true}, {"why", Type::kString, true}}},
      {lineage::event::kUseRefused,
       {{"action", Type::kString, true}, {"principal", Type::kString, true}, {"target", Type::kString, true},
        {"why", Type::kString, true}, {"purpose", Type::kString, false}}},
      {lineage::event::kStoreRekeyed,
       {{"store_key", Type::kString, true}, {"retired_store_keys", Type::kStrings, false},
        {"checkpoints_resealed", Type::kUint, false}, {"blobs_dropped", Type::kUint, false},
        {"by", Type::kString, false}}},
  };
  return t;
}

std::string check_body(const std::string& log, const json& b) {
  if (!b.is_object()) return "its body is " + std::string(b.type_name()) + ", not an object";
  if (log == lineage::kAuditLog) {
    return check_fields(b, {{"event", Type::kString, true}, {"lineage", Type::kNumbers, false},
                            {"usage", Type::kNumbers, false}, {"checkpoint", Type::kString, false}});
  }
  std::string problem = check_fields(b, {{"type", Type::kString, true}});
  if (!problem.empty()) return problem;
  const std::string type = b["type"];
  if (log == lineage::kUsageLog) {
    if (type != lineage::kUsage) return "it is of type '" + type + "' in the usage log";
    problem = check_fields(b, {{"target", Type::kString, true}, {"principal", Type::kString, true},
                               {"action", Type::kString, true}, {"purpose", Type::kString, false},
                               {"root_hash", Type::kString, false}, {"model", Type::kString, false},
                               {"call_id", Type::kString, false}, {"usage_id", Type::kString, false},
                               {"input_sha256", Type::kString, false}, {"rows", Type::kInt, false},
                               {"prediction_ids", Type::kStrings, false}, {"predictions", Type::kArray, false}});
    if (!problem.empty()) return problem;
    const auto predictions = b.find("predictions");  // an array if there (checked above)
    if (predictions != b.end()) for (const auto& p : *predictions) {
      if (!p.is_object()) return "an entry of field 'predictions' is not an object";
      problem = check_fields(p, {{"id", Type::kString, true}, {"class", Type::kInt, true},
                                 {"probability", Type::kNumber, true}},
                             "predictions[].");
      if (!problem.empty()) return problem;
    }
    return "";
  }
  const Table* table = nullptr;
  std::string sub;
  if (type == lineage::kEntity) {
    problem = check_fields(b, {{"kind", Type::kString, true}, {"id", Type::kString, true}});
    if (!problem.empty()) return problem;
    table = &entity_fields();
    sub = b["kind"];
  } else if (type == lineage::kRelation) {
    problem = check_fields(b, {{"rel", Type::kString, true}, {"from", Type::kString, true}, {"to", Type::kString, true}});
    if (!problem.empty()) return problem;
    table = &relation_fields();
    sub = b["rel"];
  } else if (type == lineage::kEvent) {
    problem = check_fields(b, {{"event", Type::kString, true}, {"run", Type::kString, false}});
    if (!problem.empty()) return problem;
    table = &event_fields();
    sub = b["event"];
  } else {
    return "it is of type '" + type + "', which the lineage log does not hold";
  }
  auto it = table->find(sub);
  if (it == table->end()) return "";
  problem = check_fields(b, it->second);
  if (!problem.empty()) return problem;
  if (type == lineage::kRelation && sub == lineage::rel::kContributed && b.contains("shard")) {
    problem = check_fields(b["shard"], {{"dataset", Type::kString, true}, {"index", Type::kUint, false},
                                        {"begin", Type::kUint, false}, {"end", Type::kUint, false}},
                           "shard.");
  }
  return problem;
}

}  // namespace

std::string describe(const Record& r) {
  std::string what;
  auto add = [&](const char* key) {
    auto it = r.body.is_object() ? r.body.find(key) : r.body.end();
    if (it != r.body.end() && it->is_string()) what += (what.empty() ? "" : " ") + it->get<std::string>();
  };
  add("type");
  add("kind");
  add("rel");
  add("event");
  add("id");
  add("from");
  if (r.body.is_object() && r.body.contains("from")) {
    what += " ->";
    add("to");
  }
  add("target");
  return r.log + " record " + std::to_string(r.seq) + " (" + (what.empty() ? "record" : what) + ")";
}

Status check_record(const Record& r) {
  const std::string problem = check_body(r.log, r.body);
  if (problem.empty()) return Status::ok();
  return data_loss(describe(r) + " is damaged: " + problem + "; run `custody audit verify` for the whole store");
}

std::string body_problem(const std::string& log, const json& body) { return check_body(log, body); }

}  // namespace custody::storage
