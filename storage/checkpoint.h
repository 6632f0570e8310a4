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
//
// Sealed at rest. With store keys (storage/store_key.h), every tensor, weights and
// optimizer state alike, is stored sealed with AES-256-GCM under the current key:
//   blob/<SHA-256 of the sealed bytes> = nonce || ciphertext || tag
//   aad = "custody-tensor-v1\n" checkpoint id "\n" tensor name "\n" key version
// and its manifest entry keeps, beside "sha256" (of the plaintext, as before, so root_hash
// and a model's identity do not change with the key), "sealed_sha256" (the blob's address)
// and "store_key" (the key version). The aad binds a sealed blob to the one tensor of the
// one checkpoint it was written for, under that key version: a blob moved to another
// record, or a record re-pointed at another blob, does not open. Sealing uses a fresh
// nonce each time, so sealed tensors are never shared between checkpoints (plaintext
// blobs were, when two runs reached the same weights). Manifests written before
// encryption at rest have no "sealed_sha256": their blobs are plaintext, read as before.
// A rekey (storage/store_rekey.h) writes a checkpoint's manifest again with its tensors
// sealed under the new key, and records the new manifest's SHA-256 in a chained
// `checkpoint_resealed` event, which verify() then holds the manifest to.
#pragma once

#include <optional>

#include <string>
#include <string_view>
#include <vector>

#include "core/model.h"
#include "core/csv_table.h"
#include "core/input_contract.h"
#include "core/optimizer.h"
#include "storage/custody_store.h"
#include "storage/store_key.h"

namespace custody::storage {

struct CheckpointSpec {
  std::string job;
  uint32_t attempt = 0;
  uint64_t step = 0;
  uint32_t epoch = 0;
  std::string parent;  // previous checkpoint of the run, or the fine-tuning origin; may be empty
  bool final = false;
  // A private job: the differential-privacy guarantee reached at this checkpoint (epsilon,
  // delta, sigma, clip_norm, sampling_rate, steps_accounted, accountant, adjacency, ...:
  // docs/ARCHITECTURE.md "Differential privacy"), kept in the checkpoint's entity record so
  // the chain covers it. Null: not a private job.
  json privacy = nullptr;
  // The model's hidden activation ("relu", "tanh"): written into the manifest when not
  // relu, so that serving computes what training did.
  std::string activation = "relu";
  // A model trained on a CSV table: preprocessing_json() of how raw rows become its inputs,
  // written into the manifest (covered by its hash) so serving and export apply it. Null:
  // none (IDX data; the manifest stays as it was).
  json preprocessing = nullptr;
};

// A table's preprocessing as manifests and lineage keep it: {"standardize": {"mean": [...],
// "std": [...]}, "features": [names], "label": NAME, "classes": [texts]} (floats as JSON
// numbers, which give back the same float32).
json preprocessing_json(const TablePreprocessing& p);
// The preprocessing a manifest names (empty if it names none). Errors: one that is damaged
// (lists of other lengths, non-numbers, a std that is not positive), naming the checkpoint.
Result<TablePreprocessing> preprocessing_of_manifest(const json& manifest);
// What the checkpoint's model takes from callers (core/input_contract.h): a table's raw
// columns when its manifest names a preprocessing, else raw pixels 0 to 255. Errors: a
// damaged preprocessing (as above), or one that does not fit a model of `model_inputs`.
Result<InputContract> input_contract_of_manifest(const json& manifest, int64_t model_inputs);

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
// `keys`, if given, seal every tensor under keys->current() (see above); without, the
// tensors are stored in clear (in-memory stores of tests and benchmarks).
// REQUIRES: optimizer->state.values holds state_tensor_names(kind).size() * the model's
// parameters. Errors: the random source or OpenSSL failed while sealing (unavailable).
Result<std::string> add_checkpoint(Batch& batch, const Model& model, const std::vector<float>& values,
                                   const CheckpointSpec& spec, const OptimizerCheckpoint* optimizer = nullptr,
                                   const StoreKeys* keys = nullptr);

// The checkpoint's parameters in the model's flat layout, opened with the store's keys
// (CustodyStore::keys). Errors: unknown id (not found); a missing or altered tensor, or
// one that does not open under its key (data loss, naming the tensor); a tensor sealed
// under a key the store's keys do not hold (failed precondition, naming the key version).
// The model a checkpoint's manifest describes: its "architecture" (models with conv, pool
// or flatten layers) or its "layer_sizes", with its "activation" (default relu).
Result<Model> model_of_manifest(const json& manifest);

Result<std::vector<float>> load_checkpoint(const CustodyStore& store, const std::string& id, json* manifest);

// The optimizer state a checkpoint's manifest names, every tensor's hash checked; nullopt
// for a manifest without one (written before optimizer state was kept, or sgd). Errors: as
// load_checkpoint's, and an unknown optimizer kind.
Result<std::optional<OptimizerCheckpoint>> load_optimizer_state(const CustodyStore& store, const json& manifest);

// One tensor entry of a manifest, at rest.
// Where its bytes are stored: "blob/" + this (the sealed bytes' SHA-256, or the plaintext's).
std::string tensor_address(const json& entry);
bool is_sealed(const json& entry);
std::string tensor_aad(const std::string& checkpoint, const std::string& name, const std::string& key_version);
// Seals `plain` as tensor `name` of `checkpoint` under keys.current(): the blob's bytes,
// and `entry` gains "sealed_sha256" and "store_key".
Result<std::string> seal_tensor(const StoreKeys& keys, const std::string& checkpoint, std::string_view plain,
                                json& entry);
// The plaintext of an entry's stored bytes. Sealed ones are opened with the key their entry
// names (`keys` may be null for plaintext entries), which fails on any change to them (the
// GCM tag); the plaintext must hash to the entry's "sha256". `what` names the entry in
// errors ("tensor W1"). (Whether sealed bytes hash to their address, which needs no key,
// is verify()'s to check.)
Result<std::string> open_tensor(const StoreKeys* keys, const std::string& checkpoint, const json& entry,
                                const std::string& stored, const std::string& what);

// "ckpt-..." as is; "NAME@V" a model version; "NAME" its newest version.
Result<std::string> resolve_checkpoint(const CustodyStore& store, const std::string& ref);

// The next version number for a model name (1 for a new name).
Result<int> next_model_version(const CustodyStore& store, const std::string& name);

}  // namespace custody::storage
