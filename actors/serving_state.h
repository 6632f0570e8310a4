// Models as a service: answers predict requests from model versions in the custody store
// and records every successful call in the usage log before its reply is sent.
//
// Where it runs: an actor of its own inside the coordinator process (see
// docs/ARCHITECTURE.md, "Serving"), because the coordinator's process owns the store's
// single RocksDB writer and a call must be durably recorded before it is answered.
//
// A call: resolve the model (NAME = newest version, NAME@V, or a checkpoint id), load and
// verify its tensors once (cached by checkpoint), check the input (shape; every value
// finite and, for an image model, a raw pixel 0 to 255), apply the model's preprocessing,
// evaluate, write one usage record (caller, time, model version, weights root hash, input
// SHA-256, each row's prediction id, class and probability), then reply with a receipt
// of that record (storage/notary.h) the caller can check offline. A failed call gets an
// error and leaves no record marked successful.
// Thread-safety: none; owned by the serving actor.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "actors/node_config.h"
#include "actors/serving_call.h"
#include "core/input_contract.h"
#include "core/model.h"
#include "actors/custody_recorder.h"
#include "core/signing.h"
#include "protocols/messages.h"
#include "storage/custody_store.h"
#include "storage/liability.h"

namespace custody::actors {

class ServingState {
 public:
  // A call's model reference and purpose are written into its usage record: bounded.
  static constexpr size_t kMaxReferenceBytes = 256, kMaxPurposeBytes = 1024;

  // key: signs each call's receipt (the call's usage record, its inclusion proof and a
  // signed head of the usage log); null: replies carry no receipt.
  // clock: how long a resolved model name is cached, and the time receipts are signed at.
  ServingState(storage::CustodyStore* store, ServingOptions options, const SigningKey* key = nullptr,
               const Clock& clock = Clock::system());

  // One call, recorded on its own: prepare() then record() of that call.
  Result<msg::PredictReply> predict(const msg::Predict& request);

  // Group commit, for the serving actor: calls that arrive together are each prepared
  // (checked and evaluated, nothing written), then recorded in one synced write, and only
  // then answered. "Recorded before answered" holds for every call; the sync is shared.
  struct PreparedCall {
    msg::PredictReply reply;  // without its receipt until record()
    ServedCall served;        // the usage record to write; moved out by record()
  };
  Result<PreparedCall> prepare(const msg::Predict& request);
  // Writes the usage records of `calls` in one batch and gives each reply its receipt. On
  // failure nothing of the batch was recorded, and none of the calls may be answered.
  Status record(const std::vector<PreparedCall*>& calls);
  // What `ref` (as predict() takes it) expects and returns, its weights loaded and
  // checked: a model that describes is ready to serve. Records nothing.
  Result<ModelInfo> describe(const std::string& ref);
  // The reply to a predict request, from the coordinator: predict()'s result, or an error
  // naming the problem; addressed to the request (msg::reply_to).
  msg::Envelope answer(const msg::Envelope& request);

 private:
  struct Loaded {
    std::string checkpoint, root_hash;
    std::unique_ptr<Model> model;
    std::vector<float> params;
    // What callers send and how it becomes the model's input (core/input_contract.h): raw
    // pixels scaled by 1/255, or a table's raw rows standardized, as training did (the same
    // arithmetic, the same bits).
    InputContract input;
  };
  Result<const Loaded*> load(const std::string& checkpoint);
  // NAME -> (checkpoint, "NAME@V"); resolved names are cached for a second.
  Result<std::pair<std::string, std::string>> resolve(const std::string& ref);

  storage::CustodyStore* store_;
  ServingOptions options_;
  CustodyRecorder recorder_;  // the usage records, as every other record is written
  std::map<std::string, Loaded> cache_;
  struct Resolved {
    std::string checkpoint, label;
    std::chrono::steady_clock::time_point at;
  };
  std::map<std::string, Resolved> names_;
  Workspace ws_;
  std::vector<float> model_inputs_;  // a call's inputs after the preprocessing (reused)
  storage::liability::UseCheckCache liability_;  // taint and purposes, until the lineage grows
};

}  // namespace custody::actors
