// Checkpoints in the custody store: writing one (content-addressed tensors, a manifest,
// and its lineage) and reading one back with every tensor's hash checked.
//
// A checkpoint is an event of one run: its id names (run, attempt, step),
//   id = "ckpt-" + the first 16 hex digits of SHA-256("custody-checkpoint\n" run "\n" attempt "\n" step),
// never its weights. Training is deterministic, so two runs of one job spec reach the same
// weights; had the id been the weights' hash, the second run's checkpoint would have
// overwritten the first's record, and its trace, usage and contributions would have
// named the other run. The weights' content is a property of the checkpoint:
//   root_hash = SHA-256 over "NAME:SHA256\n" of each tensor in layout order,
// and each tensor is stored once under "blob/<SHA-256 of its little-endian float32 bytes>",
// so identical weights share their bytes, never their records.
// Models are names with versions: entity "model:NAME@V" -> version_of -> checkpoint.
//
// Optimizer state (momentum's velocity, Adam's moments and step) is checkpointed with the
// weights, so that a resumed or recovered job continues the run it interrupted, bit for
// bit, instead of restarting momentum. The manifest keeps it apart from the weights:
//   "optimizer": {"kind": "adam", "steps": N},
//   "optimizer_state": [{"name": "m/TENSOR", "sha256": ..., "shape": ...}, ...]
// one tensor per state block (core/optimizer.h) and model tensor, stored as blobs like the
// weights. root_hash covers the weights only, so a model's identity does not depend on how
// it was trained; the state is covered by the manifest's SHA-256 in the chained entity, and
// verify() checks its blobs. Manifests written before this have neither field: such a
// checkpoint resumes with a fresh optimizer (and says so).
#pragma once

#include <optional>

#include <string>
#include <vector>

#include "core/model.h"
#include "core/optimizer.h"
#include "storage/custody_store.h"

namespace custody::storage {

struct CheckpointSpec {
  std::string job;
  uint32_t attempt = 0;
  uint64_t step = 0;
  uint32_t epoch = 0;
  std::string parent;  // previous checkpoint of the run, or the fine-tuning origin; may be empty
  bool final = false;
};

// An optimizer's state over the whole parameter vector (core/optimizer.h's layout, with
// blocks of num_parameters floats).
struct OptimizerCheckpoint {
  OptimizerConfig::Kind kind = OptimizerConfig::Kind::kSgd;
  OptimizerState state;
};

// The id of the checkpoint a run's attempt records at a step (see above).
std::string checkpoint_id(const std::string& job, uint32_t attempt, uint64_t step);

// Adds the checkpoint's tensors, manifest, entity and relations (produced, derived_from)
// to the batch; returns its id. `optimizer`, if given, is stored with them (see above).
// REQUIRES: optimizer->state.values holds state_tensor_names(kind).size() * the model's
// parameters.
std::string add_checkpoint(Batch& batch, const Model& model, const std::vector<float>& values,
                           const CheckpointSpec& spec, const OptimizerCheckpoint* optimizer = nullptr);

// The checkpoint's parameters in the model's flat layout. Errors: unknown id (not found),
// a missing or altered tensor (data loss, naming the tensor).
Result<std::vector<float>> load_checkpoint(const CustodyStore& store, const std::string& id, json* manifest);

// The optimizer state a checkpoint's manifest names, every tensor's hash checked; nullopt
// for a manifest without one (written before optimizer state was kept, or sgd). Errors: a
// missing or altered tensor (data loss, naming the tensor), an unknown optimizer kind.
Result<std::optional<OptimizerCheckpoint>> load_optimizer_state(const CustodyStore& store, const json& manifest);

// "ckpt-..." as is; "NAME@V" a model version; "NAME" its newest version.
Result<std::string> resolve_checkpoint(const CustodyStore& store, const std::string& ref);

// The next version number for a model name (1 for a new name).
Result<int> next_model_version(const CustodyStore& store, const std::string& name);

}  // namespace custody::storage
