// A serving call made inside the coordinator's process rather than over its socket: the
// HTTP listener (actors/http_listener.h) hands each call to the coordinator actor, which
// authenticates it and passes it to the serving actor, exactly as a `predict` from the
// CLI; the answer comes back through a promise instead of a ZeroMQ reply.
// Thread-safety: plain values; a ServingDispatch may be called from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/error.h"
#include "protocols/messages.h"

namespace custody::actors {

// What a client needs to call a model (the Open Inference Protocol's model metadata).
struct ModelInfo {
  std::string name;        // as asked (NAME, or a checkpoint id)
  std::string version;     // V of NAME@V; empty for a checkpoint id
  std::string checkpoint;  // the weights it resolves to
  std::string root_hash;   // their Merkle root
  uint32_t features = 0;   // input: [N, features] FP32
  uint32_t classes = 0;    // output: [N, classes] probabilities
  // The input contract (core/input_contract.h): what a caller sends, what the service does
  // with it; an image model's accepted range [min, max] and scale, a table model's columns.
  std::string input, preprocessing;
  std::vector<float> input_range;
  float input_scale = 0;
  std::vector<std::string> feature_names;
};

enum class ServingCallKind : uint8_t {
  kPredict,   // the envelope's Predict, answered with a PredictReply
  kDescribe,  // the envelope's Predict names a model (no rows): its ModelInfo
};

struct ServingAnswer {
  Status status;  // ok, or why the call failed (nothing was recorded then)
  // Whether the caller's credential was recognised: a refusal is then "not allowed"
  // (HTTP 403), otherwise "who are you" (HTTP 401).
  bool authenticated = true;
  msg::PredictReply prediction;  // kPredict
  ModelInfo model;               // kDescribe
};

// Makes one call and blocks until it is answered, or fails with unavailable after the
// caller's deadline. The envelope carries the Predict body and the bearer token.
using ServingDispatch = std::function<ServingAnswer(ServingCallKind, msg::Envelope)>;

}  // namespace custody::actors
