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
#pragma once

#include <string>
#include <vector>

#include "core/model.h"
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

// The id of the checkpoint a run's attempt records at a step (see above).
std::string checkpoint_id(const std::string& job, uint32_t attempt, uint64_t step);

// Adds the checkpoint's tensors, manifest, entity and relations (produced, derived_from)
// to the batch; returns its id.
std::string add_checkpoint(Batch& batch, const Model& model, const std::vector<float>& values,
                           const CheckpointSpec& spec);

// The checkpoint's parameters in the model's flat layout. Errors: unknown id (not found),
// a missing or altered tensor (data loss, naming the tensor).
Result<std::vector<float>> load_checkpoint(const CustodyStore& store, const std::string& id, json* manifest);

// "ckpt-..." as is; "NAME@V" a model version; "NAME" its newest version.
Result<std::string> resolve_checkpoint(const CustodyStore& store, const std::string& ref);

// The next version number for a model name (1 for a new name).
Result<int> next_model_version(const CustodyStore& store, const std::string& name);

}  // namespace custody::storage
