#include "storage/model_card.h"

#include <set>

#include "core/dataset.h"
#include "storage/lineage_vocabulary.h"
#include "storage/queries.h"

namespace custody::storage {
namespace {

// The trace is a tree of {label, entity?, children?, contributors?}; the card wants its
// entities by kind. The first run met is the model's own; runs further down are the
// checkpoints it was fine-tuned from, whose data sets it inherits.
struct Gathered {
  json model_version, checkpoint, run, spec, submitter;
  json datasets = json::array();
  json contributors = json::array();
  json upstream_checkpoints = json::array();
  std::set<std::string> dataset_ids;
};

void gather(const json& node, Gathered& g, bool upstream) {
  if (node.contains("entity") && node["entity"].is_object()) {
    const json& e = node["entity"];
    const std::string kind = e.value("kind", std::string());
    if (kind == lineage::kind::kModelVersion && g.model_version.is_null()) {
      g.model_version = e;
    } else if (kind == lineage::kind::kCheckpoint) {
      if (!upstream && g.checkpoint.is_null()) {
        g.checkpoint = e;
      } else if (upstream) {
        g.upstream_checkpoints.push_back({{"checkpoint", e.value("id", "")}, {"root_hash", e.value("root_hash", "")}});
      }
    } else if (kind == lineage::kind::kRun && !upstream && g.run.is_null()) {
      g.run = e;
    } else if (kind == lineage::kind::kJobSpec && !upstream && g.spec.is_null()) {
      g.spec = e;
    } else if (kind == lineage::kind::kPrincipal && !upstream && g.submitter.is_null()) {
      g.submitter = e;
    } else if (kind == lineage::kind::kDataset && g.dataset_ids.insert(e.value("id", "")).second) {
      g.datasets.push_back({{"id", e.value("id", "")},
                            {"name", e.value("name", "")},
                            {"sha256", e.value("sha256", "")},
                            {"license", e.value("license", "")},
                            {"consent", e.value("consent", json::array())},
                            {"train_samples", e.value("train_samples", 0)},
                            {"declared_by", e.value("declared_by", "")},
                            {"inherited_through_fine_tuning", upstream}});
    }
  }
  if (node.contains("contributors") && !upstream) {
    for (const json& w : node["contributors"]) {
      g.contributors.push_back({{"node", w.value("node", "")},
                                {"rank", w.value("rank", 0)},
                                {"shard", w.value("shard", json::object())},
                                {"steps", w.value("steps", 0)},
                                {"samples", w.value("samples", 0)}});
    }
  }
  if (!node.contains("children")) return;
  const bool below_fine_tuning = node.value("label", std::string()) == "initialised from (fine-tuning)";
  for (const json& c : node["children"]) gather(c, g, upstream || below_fine_tuning);
}

}  // namespace

Result<json> model_card(const CustodyStore& store, const std::string& reference) {
  CUSTODY_ASSIGN_OR_RETURN(const std::string id, resolve_id(store, reference));
  CUSTODY_ASSIGN_OR_RETURN(const json tree, trace(store, id));
  Gathered g;
  gather(tree, g, false);
  if (g.checkpoint.is_null()) {
    return invalid_argument("'" + reference + "' is " + id + ", not a model version or checkpoint: a model card "
                            "describes one trained model");
  }
  const json& run = g.run.is_null() ? json::object() : g.run;
  json card{
      {"card_version", 1},
      {"model", g.model_version.is_null()
                    ? json(nullptr)
                    : json{{"name", g.model_version.value("name", "")}, {"version", g.model_version.value("version", 0)}}},
      {"checkpoint", g.checkpoint.value("id", "")},
      {"root_hash", g.checkpoint.value("root_hash", "")},
      {"step", g.checkpoint.value("step", 0)},
      {"final", g.checkpoint.value("final", false)},
      {"test_accuracy", g.model_version.is_null() ? json(nullptr) : g.model_version.value("test_accuracy", json(nullptr))},
      {"architecture",
       {{"layer_sizes", run.value("layer_sizes", json::array())},
        {"hidden_activation", run.value("activation", std::string("relu"))},
        {"output", "softmax over the classes"},
        {"parameters", "per layer l: weight (out_l x in_l), then bias (out_l)"}}},
      // The input contract (core/input_contract.h): what every consumer of this model sends,
      // and where the scaling happens, so the file and the service answer alike.
      {"preprocessing",
       {{"input", "one row per sample: " + InputContract().expected()},
        {"range", {InputContract::kPixelMin, InputContract::kPixelMax}},
        {"scale", kInputScale},
        {"applied",
         "model input = pixel x scale (1/255 as a float32, one rounding); `custody predict` and HTTP serving apply "
         "it to the raw pixels they are sent, ONNX exports inside the graph (node 'scale')"}}},
      {"training",
       {{"run", run.value("id", "")},
        {"name", run.value("name", "")},
        {"consistency", run.value("consistency", "")},
        {"workers", run.value("workers", 0)},
        {"epochs", run.value("epochs", 0)},
        {"batch_size", run.value("batch_size", 0)},
        {"optimizer", run.value("optimizer", "")},
        {"learning_rate", run.value("learning_rate", 0.0)},
        {"submitted_at_ms", run.value("submitted_at_ms", 0)},
        {"job_spec", g.spec.is_null() ? json(nullptr) : json(g.spec.value("id", ""))},
        {"job_spec_canonical", g.spec.is_null() ? json(nullptr) : json(g.spec.value("canonical", ""))}}},
      {"submitter", g.submitter.is_null() ? json(nullptr) : json(g.submitter.value("name", ""))},
      {"datasets", g.datasets},
      {"fine_tuned_from", g.upstream_checkpoints},
      {"contributors", g.contributors},
      // Written by the run when it trained with differential privacy (ε, δ, σ, C, q, steps,
      // accountant); null: no privacy guarantee is claimed for this model.
      {"privacy", g.checkpoint.contains("privacy") ? g.checkpoint["privacy"]
                  : run.contains("privacy")        ? run["privacy"]
                                                   : json(nullptr)}};
  if (run.contains("preprocessing") && run["preprocessing"].is_object()) {
    // Trained on a CSV table: raw rows are standardized, not scaled.
    json pre = run["preprocessing"];
    pre["input"] = "one row per sample: the table's raw feature values (finite), in the columns named";
    pre["scale"] = 1.0;
    pre["applied"] =
        "model input = (raw value - mean) / std per feature, the training rows' statistics; `custody predict` and "
        "HTTP serving apply it to the rows they are sent, ONNX exports inside the graph (nodes 'standardize_sub', "
        "'standardize_div')";
    card["preprocessing"] = std::move(pre);
  }
  return card;
}

}  // namespace custody::storage
