#include "storage/store_rekey.h"

#include <set>

#include "core/hash.h"
#include "storage/checkpoint.h"
#include "storage/lineage_vocabulary.h"
#include "storage/store_key.h"

namespace custody::storage {
namespace {

// True if every tensor of the manifest is sealed under `version`.
bool sealed_under(const json& manifest, const std::string& version) {
  for (const char* list : {"tensors", "optimizer_state"}) {
    for (const auto& t : manifest.value(list, json::array())) {
      if (!is_sealed(t) || t.value("store_key", std::string()) != version) return false;
    }
  }
  return true;
}

// The batch that reseals one checkpoint's tensors under keys.current(); the number of
// tensors in `tensors`.
Result<Batch> reseal(const CustodyStore& store, const StoreKeys& keys, const json& manifest,
                     const std::string& by, uint64_t& tensors) {
  const std::string id = manifest["id"];
  Batch b("rekey");
  json resealed = manifest;
  for (const char* list : {"tensors", "optimizer_state"}) {
    if (!resealed.contains(list)) continue;
    for (auto& t : resealed[list]) {
      const std::string what = std::string(list) == "tensors" ? "tensor " : "optimizer tensor ";
      CUSTODY_ASSIGN_OR_RETURN(auto stored, store.blob(tensor_address(t)));
      if (!stored) {
        return data_loss("checkpoint " + id + "'s " + what + t["name"].get<std::string>() +
                         " is missing; run `custody audit verify`");
      }
      CUSTODY_ASSIGN_OR_RETURN(std::string plain,
                               open_tensor(&keys, id, t, *stored, what + t["name"].get<std::string>()));
      t.erase("sealed_sha256");
      t.erase("store_key");
      CUSTODY_ASSIGN_OR_RETURN(std::string sealed, seal_tensor(keys, id, plain, t));
      b.blob(tensor_address(t), std::move(sealed));
      ++tensors;
    }
  }
  b.event({{"event", lineage::event::kCheckpointResealed},
           {"checkpoint", id},
           {"manifest_sha256", sha256_hex(resealed.dump())},
           {"previous_manifest_sha256", sha256_hex(manifest.dump())},
           {"store_key", keys.current_version()},
           {"tensors", tensors},
           {"by", by}});
  b.checkpoint(std::move(resealed));
  return b;
}

}  // namespace

Result<RekeyReport> rekey_store(CustodyStore& store, const std::string& key_path,
                                const RekeyOptions& options) {
  RekeyReport report;
  auto step = [&](const std::string& what) { return !options.progress || options.progress(what); };

  // 1. The key file: rotated, or resumed, or (a store from before encryption) created.
  CUSTODY_ASSIGN_OR_RETURN(auto existing, load_store_keys_if_present(key_path));
  if (!existing) {
    report.new_key_file = true;  // attach_store_keys makes it, unless tensors need another key
  } else if (existing->rotating()) {
    report.resumed = true;
  } else {
    CUSTODY_ASSIGN_OR_RETURN(auto rotated, existing->rotated());
    CUSTODY_RETURN_IF_ERROR(rotated.save(key_path));
  }
  CUSTODY_ASSIGN_OR_RETURN(auto keys, attach_store_keys(store, key_path));
  report.store_key = keys->current_version();
  report.retired.assign(keys->versions().begin() + 1, keys->versions().end());
  if (!step(report.resumed ? "resuming the unfinished rekey to store key " + report.store_key
                           : "store key " + report.store_key + " written to " + key_path)) {
    return report;
  }

  // 2. Every checkpoint whose tensors are not all sealed under the current key.
  CUSTODY_ASSIGN_OR_RETURN(const auto ids, store.manifest_ids());
  report.checkpoints = ids.size();
  uint64_t done = 0;
  for (const auto& id : ids) {
    ++done;
    CUSTODY_ASSIGN_OR_RETURN(auto manifest, store.checkpoint(id));
    if (!manifest || sealed_under(*manifest, keys->current_version())) continue;
    uint64_t tensors = 0;
    auto batch = reseal(store, *keys, *manifest, options.by, tensors);
    if (!batch.is_ok()) {
      return Status(
          batch.status().code(),
          "the rekey stopped at checkpoint " + id + ": " + batch.status().message() +
              ". The checkpoints before it are resealed and the store is consistent; the key file keeps "
              "both keys until a rekey finishes");
    }
    CUSTODY_RETURN_IF_ERROR(store.write(batch.value()));
    ++report.checkpoints_resealed;
    report.tensors_resealed += tensors;
    if (!step("resealed " + id + " (" + std::to_string(done) + " of " + std::to_string(ids.size()) + ")")) {
      return report;
    }
  }

  // 3. The blobs no manifest names: the old sealed bytes, the tensors stored in clear.
  std::set<std::string> named;
  for (const auto& id : ids) {
    CUSTODY_ASSIGN_OR_RETURN(auto manifest, store.checkpoint(id));
    if (!manifest) continue;
    for (const char* list : {"tensors", "optimizer_state"}) {
      for (const auto& t : manifest->value(list, json::array())) named.insert(tensor_address(t));
    }
  }
  CUSTODY_ASSIGN_OR_RETURN(const auto blobs, store.blob_addresses());
  Batch sweep("rekey");
  for (const auto& address : blobs) {
    if (named.count(address)) continue;
    sweep.drop_blob(address);
    ++report.blobs_dropped;
  }
  sweep.event({{"event", lineage::event::kStoreRekeyed},
               {"store_key", report.store_key},
               {"retired_store_keys", report.retired},
               {"checkpoints_resealed", report.checkpoints_resealed},
               {"blobs_dropped", report.blobs_dropped},
               {"by", options.by}});
  CUSTODY_RETURN_IF_ERROR(store.write(sweep));
  if (!step("dropped " + std::to_string(report.blobs_dropped) + " blobs no checkpoint names any more"))
    return report;

  // 4. The deleted values out of the files.
  CUSTODY_RETURN_IF_ERROR(store.compact());
  if (!step("compacted the store's files")) return report;

  // 5. Only the current key is needed: the store says so first, then the key file.
  const StoreKeys current = keys->current_only();
  CUSTODY_RETURN_IF_ERROR(store.record_key_versions(current.versions()));
  CUSTODY_RETURN_IF_ERROR(current.save(key_path));
  store.set_keys(std::make_shared<const StoreKeys>(current));
  report.finished = true;
  step("done");
  return report;
}

}  // namespace custody::storage
