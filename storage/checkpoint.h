// Checkpoints in the custody store: writing one (content-addressed tensors, a manifest,
// and its lineage) and reading one back with every tensor's hash checked.
//
// A checkpoint's id is "ckpt-" + the first 16 hex digits of its root hash, where
//   root_hash = SHA-256 over "NAME:SHA256\n" of each tensor in layout order
// and each tensor is stored once under "blob/<SHA-256 of its little-endian float32 bytes>".
// Models are names with versions: entity "model:NAME@V" -> version_of -> checkpoint.
#pragma once

#include <string>
#include <vector>

#include "core/model.h"
#include "storage/custody_store.h"

namespace custody::storage {

struct CheckpointSpec {
  std::string job;
  uint64_t step = 0;
  uint32_t epoch = 0;
  std::string parent;  // previous checkpoint of the run, or the fine-tuning origin; may be empty
  bool final = false;
};

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
