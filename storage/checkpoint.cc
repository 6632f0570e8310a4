#include "storage/checkpoint.h"

#include <cmath>

#include <algorithm>
#include <cstring>

#include "core/hash.h"
#include "storage/lineage_vocabulary.h"

namespace custody::storage {

std::string checkpoint_id(const std::string& job, uint32_t attempt, uint64_t step) {
  return lineage::prefix::kCheckpoint + sha256_hex("custody-checkpoint\n" + job + "\n" + std::to_string(attempt) + "\n" +
                              std::to_string(step))
                       .substr(0, 16);
}

namespace {

// Stores each model tensor of `values` (one block in the model's flat layout) as a blob,
// sealed if `keys` are given; appends its manifest entry, named prefix + the tensor's
// name, to `entries`. Returns the root hash's input for these tensors.
Result<std::string> add_tensors(Batch& batch, const Model& model, const float* values, const std::string& prefix,
                                const std::string& checkpoint, const StoreKeys* keys, json& entries) {
  std::string roots;
  for (const auto& t : model.tensors()) {
    std::string bytes(reinterpret_cast<const char*>(values + t.offset), t.size * sizeof(float));
    const std::string sha = sha256_hex(bytes);
    json entry{{"name", prefix + t.name}, {"sha256", sha}, {"shape", t.shape}};
    if (keys) {
      CUSTODY_ASSIGN_OR_RETURN(bytes, seal_tensor(*keys, checkpoint, bytes, entry));
    }
    batch.blob(tensor_address(entry), std::move(bytes));
    entries.push_back(std::move(entry));
    roots += prefix + t.name + ":" + sha + "\n";
  }
  return roots;
}

// The floats of a manifest's tensor list, in order, each blob's hash checked. `what` names
// the list in errors ("tensor", "optimizer tensor").
Result<std::vector<float>> read_tensors(const CustodyStore& store, const std::string& id, const json& list,
                                        const std::string& what) {
  size_t total = 0;
  // The manifest's shapes are trusted only as far as a model can be large: a damaged
  // shape must not become a huge allocation.
  constexpr size_t kMaxValues = size_t{1} << 31;
  for (const auto& t : list) {
    size_t n = 1;
    for (const auto& d : t["shape"]) n = std::min(kMaxValues + 1, n * d.get<size_t>());
    total += n;
    if (total > kMaxValues) return data_loss("the manifest of checkpoint " + id + " names impossible tensor shapes");
  }
  std::vector<float> values;
  values.reserve(total);
  for (const auto& t : list) {
    const std::string name = t["name"];
    CUSTODY_ASSIGN_OR_RETURN(auto stored, store.blob(tensor_address(t)));
    if (!stored) return data_loss("checkpoint " + id + " is incomplete: " + what + " " + name + " is missing");
    CUSTODY_ASSIGN_OR_RETURN(const std::string bytes, open_tensor(store.keys(), id, t, *stored, what + " " + name));
    if (bytes.size() % sizeof(float) != 0) {
      return data_loss("checkpoint " + id + " is corrupt: " + what + " " + name + " is not a whole number of floats");
    }
    const size_t old = values.size();
    values.resize(old + bytes.size() / sizeof(float));
    std::memcpy(values.data() + old, bytes.data(), bytes.size());
  }
  if (values.size() != total) return data_loss("checkpoint " + id + " has " + what + "s of the wrong size");
  return values;
}

}  // namespace

Result<std::string> add_checkpoint(Batch& batch, const Model& model, const std::vector<float>& values,
                                   const CheckpointSpec& spec, const OptimizerCheckpoint* optimizer,
                                   const StoreKeys* keys) {
  const std::string id = checkpoint_id(spec.job, spec.attempt, spec.step);
  json tensors = json::array();
  CUSTODY_ASSIGN_OR_RETURN(const std::string roots, add_tensors(batch, model, values.data(), "", id, keys, tensors));
  const std::string root = sha256_hex(roots);
  json manifest{{"id", id},
                    {"job", spec.job},
                    {"attempt", spec.attempt},
                    {"step", spec.step},
                    {"epoch", spec.epoch},
                    {"root_hash", root},
                    {"parent", spec.parent},
                    {"final", spec.final},
                    {"layer_sizes", model.layer_sizes()},
                    {"tensors", tensors}};
  if (spec.activation != "relu") manifest["activation"] = spec.activation;
  // What serving, export and TracIn need to rebuild a model that layer sizes cannot
  // describe; absent for dense-only models, whose manifests stay as they were.
  if (!model.dense_only()) manifest["architecture"] = model.architecture();
  if (!spec.preprocessing.is_null()) manifest["preprocessing"] = spec.preprocessing;
  if (optimizer && !state_tensor_names(optimizer->kind).empty()) {
    json state = json::array();
    const auto& names = state_tensor_names(optimizer->kind);
    for (size_t b = 0; b < names.size(); ++b) {
      CUSTODY_RETURN_IF_ERROR(add_tensors(batch, model, optimizer->state.values.data() + b * model.num_parameters(),
                                          names[b] + "/", id, keys, state)
                                  .status());
    }
    manifest["optimizer"] = {{"kind", to_string(optimizer->kind)}, {"steps", optimizer->state.steps}};
    manifest["optimizer_state"] = std::move(state);
  }
  // The manifest lives outside the chained logs; its hash in the chained entity record
  // makes any change to it (a parent, a step, a tensor list) visible to verify().
  const std::string manifest_sha = sha256_hex(manifest.dump());
  batch.checkpoint(std::move(manifest));
  json entity{{"job", spec.job},
              {"attempt", spec.attempt},
              {"step", spec.step},
              {"epoch", spec.epoch},
              {"root_hash", root},
              {"manifest_sha256", manifest_sha},
              {"final", spec.final}};
  if (!spec.privacy.is_null()) entity["privacy"] = spec.privacy;
  batch.entity(lineage::kind::kCheckpoint, id, std::move(entity));
  batch.relation(lineage::rel::kProduced, spec.job, id, {{"step", spec.step}});
  if (!spec.parent.empty()) batch.relation(lineage::rel::kDerivedFrom, id, spec.parent);
  return id;
}

json preprocessing_json(const TablePreprocessing& p) {
  return {{"standardize", {{"mean", p.standardization.mean}, {"std", p.standardization.std}}},
          {"features", p.feature_names},
          {"label", p.label},
          {"classes", p.classes}};
}

Result<TablePreprocessing> preprocessing_of_manifest(const json& manifest) {
  TablePreprocessing p;
  if (!manifest.contains("preprocessing")) return p;
  const json& j = manifest["preprocessing"];
  auto damaged = [&](const std::string& what) {
    return data_loss("checkpoint " + manifest.value("id", "?") + "'s preprocessing is damaged: " + what +
                     "; run `custody audit verify`");
  };
  auto strings = [](const json& v, std::vector<std::string>& out) {
    if (!v.is_array()) return false;
    for (const json& e : v) {
      if (!e.is_string()) return false;
      out.push_back(e.get<std::string>());
    }
    return true;
  };
  auto floats = [](const json& v, std::vector<float>& out) {
    if (!v.is_array()) return false;
    for (const json& e : v) {
      if (!e.is_number()) return false;
      out.push_back(static_cast<float>(e.get<double>()));
    }
    return true;
  };
  if (!j.is_object() || !j.contains("standardize") || !j["standardize"].is_object()) return damaged("no standardize");
  const json& st = j["standardize"];
  if (!strings(j.value("features", json()), p.feature_names) || !strings(j.value("classes", json()), p.classes) ||
      !floats(st.value("mean", json()), p.standardization.mean) || !floats(st.value("std", json()), p.standardization.std) ||
      !j.value("label", json()).is_string()) {
    return damaged("a field is missing or of the wrong type");
  }
  p.label = j["label"].get<std::string>();
  if (p.feature_names.empty() || p.standardization.mean.size() != p.feature_names.size() ||
      p.standardization.std.size() != p.feature_names.size()) {
    return damaged("it names " + std::to_string(p.feature_names.size()) + " features but " +
                   std::to_string(p.standardization.mean.size()) + " means and " +
                   std::to_string(p.standardization.std.size()) + " stds");
  }
  for (float sd : p.standardization.std) {
    if (!(sd > 0) || !std::isfinite(sd)) return damaged("a std is not a positive number");
  }
  return p;
}

Result<InputContract> input_contract_of_manifest(const json& manifest, int64_t model_inputs) {
  InputContract c;
  CUSTODY_ASSIGN_OR_RETURN(c.table, preprocessing_of_manifest(manifest));
  if (!c.table.empty() && c.table.feature_names.size() != static_cast<size_t>(model_inputs)) {
    return data_loss("checkpoint " + manifest.value("id", "?") + " standardizes " +
                     std::to_string(c.table.feature_names.size()) + " features, but its model takes " +
                     std::to_string(model_inputs));
  }
  return c;
}

Result<Model> model_of_manifest(const json& manifest) {
  const std::string name = manifest.value("activation", std::string("relu"));
  const auto activation = parse_activation(name);
  if (!activation) return data_loss("checkpoint " + manifest.value("id", "?") + " names an unknown activation '" + name + "'");
  Result<Model> model = invalid_argument("no model");
  if (manifest.contains("architecture") && manifest["architecture"].is_string()) {
    model = Model::parse_architecture(manifest["architecture"].get<std::string>(), *activation);
  } else if (manifest.contains("layer_sizes") && manifest["layer_sizes"].is_array() &&
             std::all_of(manifest["layer_sizes"].begin(), manifest["layer_sizes"].end(),
                         [](const json& v) { return v.is_number_integer(); })) {
    model = Model::make(manifest["layer_sizes"].get<std::vector<int>>(), *activation);
  }
  if (!model.is_ok()) {
    return data_loss("checkpoint " + manifest.value("id", "?") + " does not describe its model: " +
                     model.status().message());
  }
  return model;
}

Result<std::vector<float>> load_checkpoint(const CustodyStore& store, const std::string& id, json* manifest_out) {
  CUSTODY_ASSIGN_OR_RETURN(auto manifest, store.checkpoint(id));
  if (!manifest) return not_found("no checkpoint '" + id + "' in the custody store");
  const json& m = *manifest;
  auto values = read_tensors(store, id, m["tensors"], "tensor");
  if (values.is_ok() && manifest_out) *manifest_out = m;
  return values;
}

Result<std::optional<OptimizerCheckpoint>> load_optimizer_state(const CustodyStore& store, const json& manifest) {
  const std::string id = manifest.value("id", "");
  if (!manifest.contains("optimizer_state") || !manifest.contains("optimizer")) {
    return std::optional<OptimizerCheckpoint>();
  }
  const json& o = manifest["optimizer"];
  if (!o.is_object() || !o.contains("kind") || !o["kind"].is_string() || !o.contains("steps") ||
      !o["steps"].is_number_unsigned()) {
    return data_loss("the manifest of checkpoint " + id + " has a damaged 'optimizer' field; run `custody audit verify`");
  }
  auto kind = parse_optimizer_kind(o["kind"].get<std::string>());
  if (!kind.is_ok()) return data_loss("checkpoint " + id + ": " + kind.status().message());
  CUSTODY_ASSIGN_OR_RETURN(auto values, read_tensors(store, id, manifest["optimizer_state"], "optimizer tensor"));
  OptimizerCheckpoint c;
  c.kind = kind.value();
  c.state.values = std::move(values);
  c.state.steps = o["steps"].get<uint64_t>();
  return std::optional<OptimizerCheckpoint>(std::move(c));
}

std::string tensor_address(const json& entry) {
  return is_sealed(entry) ? entry["sealed_sha256"].get<std::string>() : entry["sha256"].get<std::string>();
}

bool is_sealed(const json& entry) { return entry.contains("sealed_sha256"); }

std::string tensor_aad(const std::string& checkpoint, const std::string& name, const std::string& key_version) {
  return "custody-tensor-v1\n" + checkpoint + "\n" + name + "\n" + key_version;
}

Result<std::string> seal_tensor(const StoreKeys& keys, const std::string& checkpoint, std::string_view plain,
                                json& entry) {
  const std::string version = keys.current_version();
  std::string sealed(plain.size() + kAeadOverhead, '\0');
  CUSTODY_RETURN_IF_ERROR(seal_into(keys.current(), reinterpret_cast<const uint8_t*>(plain.data()), plain.size(),
                                    tensor_aad(checkpoint, entry["name"].get<std::string>(), version),
                                    reinterpret_cast<uint8_t*>(sealed.data())));
  entry["sealed_sha256"] = sha256_hex(sealed);
  entry["store_key"] = version;
  return sealed;
}

Result<std::string> open_tensor(const StoreKeys* keys, const std::string& checkpoint, const json& entry,
                                const std::string& stored, const std::string& what) {
  if (!is_sealed(entry)) {
    if (sha256_hex(stored) != entry["sha256"].get<std::string>()) {
      return data_loss("checkpoint " + checkpoint + " is corrupt: " + what +
                       " was changed: its bytes do not match their SHA-256; run `custody audit verify`");
    }
    return stored;
  }
  // Sealed bytes are not hashed here: the GCM tag already fails on any change to them
  // (a second SHA-256 pass cost more than the decryption: bench/store_at_rest.cc).
  // verify() hashes them against their address, which it can do without the key.
  const std::string version = entry.value("store_key", std::string());
  if (!keys) {
    return failed_precondition("checkpoint " + checkpoint + "'s " + what + " is sealed under store key " + version +
                               ", and no store key was given to open it (the coordinator's --store-key file; "
                               "the CLI's --store-key, default <store>.store-key)");
  }
  const AeadKey* key = keys->find(version);
  if (!key) {
    std::string held;
    for (const auto& v : keys->versions()) held += (held.empty() ? "" : ", ") + v;
    return failed_precondition("checkpoint " + checkpoint + "'s " + what + " is sealed under store key " + version +
                               ", which the key file given (key " + held + ") does not hold");
  }
  if (stored.size() < kAeadOverhead) {
    return data_loss("checkpoint " + checkpoint + " is corrupt: its " + what + " is too short to be sealed");
  }
  std::string plain(stored.size() - kAeadOverhead, '\0');
  Status opened = open_into(*key, reinterpret_cast<const uint8_t*>(stored.data()), stored.size(),
                            tensor_aad(checkpoint, entry["name"].get<std::string>(), version),
                            reinterpret_cast<uint8_t*>(plain.data()));
  if (!opened.is_ok()) {
    return data_loss("checkpoint " + checkpoint + " is corrupt: its " + what + " does not open under store key " +
                     version + ": its bytes were altered, or sealed for another tensor or checkpoint (" +
                     opened.message() + "); run `custody audit verify`");
  }
  if (sha256_hex(plain) != entry["sha256"].get<std::string>()) {
    return data_loss("checkpoint " + checkpoint + " is corrupt: " + what +
                     " opens, but not to the bytes its manifest's SHA-256 names; run `custody audit verify`");
  }
  return plain;
}

Result<std::string> resolve_checkpoint(const CustodyStore& store, const std::string& ref) {
  if (lineage::has_prefix(ref, lineage::prefix::kCheckpoint)) {
    CUSTODY_ASSIGN_OR_RETURN(auto m, store.checkpoint(ref));
    if (!m) return not_found("no checkpoint '" + ref + "' in the custody store");
    return ref;
  }
  std::string name = ref;
  int version = 0;
  if (auto at = ref.rfind('@'); at != std::string::npos) {
    name = ref.substr(0, at);
    try {
      version = std::stoi(ref.substr(at + 1));
    } catch (...) {
      return invalid_argument("'" + ref + "' is not NAME@VERSION (the version is a number)");
    }
  } else {
    CUSTODY_ASSIGN_OR_RETURN(auto next, next_model_version(store, name));
    version = next - 1;
  }
  if (version <= 0) return not_found("no model named '" + name + "' (list them with `custody models`)");
  CUSTODY_ASSIGN_OR_RETURN(auto e, store.entity(lineage::model_id(name, version)));
  if (!e) return not_found("no version " + std::to_string(version) + " of model '" + name + "'");
  return e->body["checkpoint"].get<std::string>();
}

Result<int> next_model_version(const CustodyStore& store, const std::string& name) {
  CUSTODY_ASSIGN_OR_RETURN(auto newest, store.newest_model_version(name));
  return newest + 1;
}

}  // namespace custody::storage
