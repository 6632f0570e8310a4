#include "actors/inference_http.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "storage/liability.h"

namespace custody::actors::http {
namespace {

using nlohmann::json;

Result<json> parse_object(std::string_view body) {
  json doc = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return invalid_argument(
        "the request body is not valid JSON (NaN and Infinity are not JSON numbers either)");
  }
  if (!doc.is_object()) return invalid_argument("the request body must be a JSON object");
  return doc;
}

// Appends `v` (a number, or rows of numbers nested `depth` deep) to `out` as float32.
Status append_numbers(const json& v, std::vector<float>& out, const std::string& where, size_t limit) {
  if (v.is_array()) {
    for (const auto& e : v) CUSTODY_RETURN_IF_ERROR(append_numbers(e, out, where, limit));
    return Status::ok();
  }
  if (!v.is_number())
    return invalid_argument(where + " holds " + std::string(v.type_name()) + ", not a number");
  if (out.size() >= limit) return invalid_argument(where + " holds more values than its shape says");
  const double d = v.get<double>();
  const float f = static_cast<float>(d);
  if (!std::isfinite(f)) {
    return invalid_argument(where + " value " + std::to_string(out.size()) + " (" + v.dump() +
                            ") is not a finite float32");
  }
  out.push_back(f);
  return Status::ok();
}

void put_purpose_and_caller(const json& parameters, msg::Predict& p) {
  if (!parameters.is_object()) return;
  if (auto it = parameters.find("purpose"); it != parameters.end() && it->is_string()) p.purpose = *it;
  // Heard only by a cluster without security (as the CLI's --as); a secured one takes the
  // caller from the bearer token.
  if (auto it = parameters.find("principal"); it != parameters.end() && it->is_string()) p.principal = *it;
}

Status check_rows(uint64_t rows, uint32_t max_rows) {
  if (rows == 0 || rows > max_rows) {
    return invalid_argument("a call holds 1 to " + std::to_string(max_rows) + " rows; got " +
                            std::to_string(rows));
  }
  return Status::ok();
}

json call_parameters(const msg::PredictReply& reply) {
  json p = {{"call_id", reply.call_id},
            {"prediction_ids", reply.prediction_ids},
            {"model", reply.model},
            {"checkpoint", reply.checkpoint},
            {"root_hash", reply.root_hash}};
  if (!reply.receipt.empty()) {
    json receipt = json::parse(reply.receipt, nullptr, false);
    p["receipt"] = receipt.is_discarded() ? json(reply.receipt) : receipt;
  }
  return p;
}

int64_t best_class(const msg::PredictReply& reply, size_t row) {
  const float* p = reply.probabilities.data() + row * reply.classes;
  return std::max_element(p, p + reply.classes) - p;
}

}  // namespace

Result<InferRequest> parse_infer(std::string_view body, const std::string& model, uint32_t max_rows) {
  CUSTODY_ASSIGN_OR_RETURN(json doc, parse_object(body));
  InferRequest r;
  r.predict.model = model;
  if (auto it = doc.find("id"); it != doc.end()) {
    if (!it->is_string()) return invalid_argument("\"id\" must be a string");
    r.id = *it;
  }
  if (auto it = doc.find("parameters"); it != doc.end()) put_purpose_and_caller(*it, r.predict);
  if (auto it = doc.find("outputs"); it != doc.end()) {
    if (!it->is_array()) return invalid_argument("\"outputs\" must be an array of {\"name\": ...}");
    for (const auto& o : *it) {
      if (!o.is_object() || !o.contains("name") || !o["name"].is_string()) {
        return invalid_argument("each of \"outputs\" must be an object with a string \"name\"");
      }
      const std::string name = o["name"];
      if (name != "probabilities" && name != "class") {
        return invalid_argument("unknown output '" + name +
                                "': this model has \"probabilities\" and \"class\"");
      }
      r.outputs.push_back(name);
    }
  }
  auto inputs = doc.find("inputs");
  if (inputs == doc.end() || !inputs->is_array() || inputs->size() != 1) {
    return invalid_argument("\"inputs\" must be an array of exactly one tensor (FP32, shape [N, features])");
  }
  const json& t = (*inputs)[0];
  if (!t.is_object())
    return invalid_argument("inputs[0] must be an object with name, shape, datatype and data");
  const std::string name = t.value("name", "");
  const std::string where = "input '" + name + "'";
  if (!t.contains("datatype") || !t["datatype"].is_string()) {
    return invalid_argument(where + " needs a \"datatype\" (FP32)");
  }
  const std::string datatype = t["datatype"];
  static const char* kNumeric[] = {"FP32",  "FP64",  "FP16",   "INT8",   "INT16", "INT32",
                                   "INT64", "UINT8", "UINT16", "UINT32", "UINT64"};
  if (std::find(std::begin(kNumeric), std::end(kNumeric), datatype) == std::end(kNumeric)) {
    return invalid_argument(where + " has datatype '" + datatype +
                            "'; this server takes FP32 (or another numeric type)");
  }
  auto shape = t.find("shape");
  if (shape == t.end() || !shape->is_array() || shape->size() != 2 || !(*shape)[0].is_number_unsigned() ||
      !(*shape)[1].is_number_unsigned()) {
    return invalid_argument(where + " needs \"shape\": [N, features], two non-negative integers; got " +
                            (shape == t.end() ? std::string("none") : shape->dump()));
  }
  const uint64_t rows = (*shape)[0], features = (*shape)[1];
  CUSTODY_RETURN_IF_ERROR(check_rows(rows, max_rows));
  if (features == 0 || features > (uint64_t(1) << 24)) {
    return invalid_argument(where + " has " + std::to_string(features) + " features per row");
  }
  auto data = t.find("data");
  if (data == t.end() || !data->is_array())
    return invalid_argument(where + " needs \"data\": an array of numbers");
  const size_t expected = rows * features;
  r.predict.inputs.reserve(expected);
  CUSTODY_RETURN_IF_ERROR(append_numbers(*data, r.predict.inputs, where, expected));
  if (r.predict.inputs.size() != expected) {
    return invalid_argument(where + " holds " + std::to_string(r.predict.inputs.size()) +
                            " values; its shape [" + std::to_string(rows) + ", " + std::to_string(features) +
                            "] needs " + std::to_string(expected));
  }
  r.predict.rows = static_cast<uint32_t>(rows);
  r.predict.features = static_cast<uint32_t>(features);
  return r;
}

Result<InferRequest> parse_instances(std::string_view body, const std::string& model, uint32_t max_rows) {
  CUSTODY_ASSIGN_OR_RETURN(json doc, parse_object(body));
  InferRequest r;
  r.predict.model = model;
  if (auto it = doc.find("model"); it != doc.end()) {
    if (!it->is_string()) return invalid_argument("\"model\" must be a string (NAME or NAME@VERSION)");
    r.predict.model = *it;
  }
  if (r.predict.model.empty()) {
    return invalid_argument(
        "name the model: \"model\" in the body or ?model=NAME (or start the listener with a "
        "default model)");
  }
  if (auto it = doc.find("parameters"); it != doc.end()) put_purpose_and_caller(*it, r.predict);
  auto instances = doc.find("instances");
  if (instances == doc.end() || !instances->is_array()) {
    return invalid_argument("\"instances\" must be an array of rows, each an array of numbers");
  }
  CUSTODY_RETURN_IF_ERROR(check_rows(instances->size(), max_rows));
  const json& first = (*instances)[0];
  if (!first.is_array() || first.empty())
    return invalid_argument("instance 0 must be a non-empty array of numbers");
  const size_t features = first.size();
  r.predict.inputs.reserve(instances->size() * features);
  for (size_t i = 0; i < instances->size(); ++i) {
    const json& row = (*instances)[i];
    const std::string where = "instance " + std::to_string(i);
    if (!row.is_array() || row.size() != features) {
      return invalid_argument(where + " must be an array of " + std::to_string(features) +
                              " numbers, as instance 0 is");
    }
    for (size_t f = 0; f < features; ++f) {
      if (!row[f].is_number())
        return invalid_argument(where + ", feature " + std::to_string(f) + " is not a number");
      const float v = static_cast<float>(row[f].get<double>());
      if (!std::isfinite(v)) {
        return invalid_argument(where + ", feature " + std::to_string(f) + " (" + row[f].dump() +
                                ") is not a finite float32");
      }
      r.predict.inputs.push_back(v);
    }
  }
  r.predict.rows = static_cast<uint32_t>(instances->size());
  r.predict.features = static_cast<uint32_t>(features);
  return r;
}

std::string infer_response(const std::string& model_name, const InferRequest& request,
                           const msg::PredictReply& reply) {
  const size_t rows = reply.prediction_ids.size();
  auto wanted = [&](const char* name) {
    return request.outputs.empty() ||
           std::find(request.outputs.begin(), request.outputs.end(), name) != request.outputs.end();
  };
  json outputs = json::array();
  if (wanted("probabilities")) {
    outputs.push_back({{"name", "probabilities"},
                       {"datatype", "FP32"},
                       {"shape", {rows, reply.classes}},
                       {"data", reply.probabilities}});
  }
  if (wanted("class")) {
    std::vector<int64_t> classes(rows);
    for (size_t i = 0; i < rows; ++i) classes[i] = best_class(reply, i);
    outputs.push_back({{"name", "class"}, {"datatype", "INT64"}, {"shape", {rows}}, {"data", classes}});
  }
  const auto at = reply.model.rfind('@');
  json doc = {{"model_name", model_name},
              {"model_version", at == std::string::npos ? std::string() : reply.model.substr(at + 1)},
              {"id", request.id.empty() ? reply.call_id : request.id},
              {"parameters", call_parameters(reply)},
              {"outputs", std::move(outputs)}};
  return doc.dump();
}

std::string instances_response(const msg::PredictReply& reply) {
  json predictions = json::array();
  for (size_t i = 0; i < reply.prediction_ids.size(); ++i) {
    const float* p = reply.probabilities.data() + i * reply.classes;
    predictions.push_back({{"class", best_class(reply, i)},
                           {"probabilities", std::vector<float>(p, p + reply.classes)},
                           {"prediction_id", reply.prediction_ids[i]}});
  }
  return json{{"predictions", std::move(predictions)}, {"parameters", call_parameters(reply)}}.dump();
}

std::string model_metadata(const ModelInfo& info) {
  json versions = json::array();
  if (!info.version.empty()) versions.push_back(info.version);
  json doc = {{"name", info.name},
              {"versions", versions},
              {"platform", "custody"},
              {"inputs", {{{"name", "input"}, {"datatype", "FP32"}, {"shape", {-1, info.features}}}}},
              {"outputs",
               {{{"name", "probabilities"}, {"datatype", "FP32"}, {"shape", {-1, info.classes}}},
                {{"name", "class"}, {"datatype", "INT64"}, {"shape", {-1}}}}},
              {"parameters", {{"checkpoint", info.checkpoint}, {"root_hash", info.root_hash}}}};
  // The input contract (core/input_contract.h), on the input tensor and the model alike: a
  // client reads what to send and what the service does with it before the model sees it.
  json contract = {{"expects", info.input}, {"preprocessing", info.preprocessing}};
  if (!info.input_range.empty()) {
    contract["range"] = info.input_range;
    contract["scale"] = info.input_scale;
  }
  if (!info.feature_names.empty()) contract["columns"] = info.feature_names;
  doc["inputs"][0]["parameters"] = contract;
  for (auto& [key, value] : contract.items()) doc["parameters"]["input_" + key] = value;
  return doc.dump();
}

std::string model_ready(const ModelInfo& info) { return json{{"name", info.name}, {"ready", true}}.dump(); }

std::string server_metadata() {
  return json{{"name", "custody"}, {"version", "1"}, {"extensions", json::array()}}.dump();
}

std::string error_body(const std::string& message) { return json{{"error", message}}.dump(); }

int status_of(const Status& status, bool authenticated) {
  // A version tainted by a revocation (withdrawn data, a licence that ended): RFC 7725's
  // 451 Unavailable For Legal Reasons, not a 503 that invites the client to retry.
  if (storage::liability::is_taint_refusal(status)) return 451;
  switch (status.code()) {
    case ErrorCode::kInvalidArgument:
      return 400;
    case ErrorCode::kPermissionDenied:
      return authenticated ? 403 : 401;
    case ErrorCode::kNotFound:
      return 404;
    case ErrorCode::kUnavailable:
    case ErrorCode::kFailedPrecondition:
    case ErrorCode::kDeadlineExceeded:
    case ErrorCode::kCancelled:
      return 503;
    default:
      return 500;
  }
}

}  // namespace custody::actors::http
