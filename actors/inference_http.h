// The Open Inference Protocol (KServe V2) and the Flask-style `POST /predict`, as JSON in
// and out: request bodies become a msg::Predict for the serving path, its answers become
// response bodies, and a failed call becomes the protocol's {"error": "..."} with the HTTP
// status that says what kind of failure it was. No sockets here: the listener
// (actors/http_listener.h) moves the bytes, so this is unit-tested on strings.
//
// Accepted tensors (docs/ARCHITECTURE.md, "HTTP serving and metrics"): one input, datatype
// FP32 (FP64 and integer types are converted to float32), shape [N, F], data flat in
// row-major order or nested rows. Every value must be a finite number after conversion.
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "actors/serving_call.h"
#include "core/error.h"
#include "protocols/messages.h"

namespace custody::actors::http {

// A parsed inference request: the Predict to make and what the response should echo.
struct InferRequest {
  msg::Predict predict;
  std::string id;                    // OIP "id", echoed in the response
  std::vector<std::string> outputs;  // OIP "outputs" names; empty: all
};

// POST /v2/models/{model}[/versions/{v}]/infer. `model`: NAME or NAME@V. Errors are
// invalid_argument naming the field and what was expected.
Result<InferRequest> parse_infer(std::string_view body, const std::string& model, uint32_t max_rows);
// POST /predict: {"instances": [[...], ...], "model": NAME (optional)}. `model`: the model
// named by the query string or configured; the body's "model" wins.
Result<InferRequest> parse_instances(std::string_view body, const std::string& model, uint32_t max_rows);

// The OIP response: outputs "probabilities" [N, classes] FP32 and "class" [N] INT64,
// parameters: call_id, prediction_ids, model (NAME@V), checkpoint, root_hash, receipt.
std::string infer_response(const std::string& model_name, const InferRequest& request,
                           const msg::PredictReply& reply);
// {"predictions": [{"class", "probabilities", "prediction_id"}...], "parameters": as above}.
std::string instances_response(const msg::PredictReply& reply);
// GET /v2/models/{model}[/versions/{v}]: name, versions, platform, inputs, outputs.
std::string model_metadata(const ModelInfo& info);
// GET /v2/models/{model}[/versions/{v}]/ready: {"name", "ready": true}.
std::string model_ready(const ModelInfo& info);
// GET /v2: the server's name, version and extensions.
std::string server_metadata();

// {"error": message}.
std::string error_body(const std::string& message);
// The HTTP status of a failed call: 400 bad input, 401 unknown or missing credential,
// 403 a role that may not, 404 unknown model, 451 a model version tainted by a revocation
// (Unavailable For Legal Reasons), 503 not ready or not answering, 500 else.
int status_of(const Status& status, bool authenticated);

}  // namespace custody::actors::http
