#include "storage/attribution.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>

#include "core/dataset.h"
#include "core/hash.h"
#include "core/job_spec.h"
#include "core/partition.h"
#include "core/tracin_ranking.h"
#include "storage/checkpoint.h"
#include "storage/lineage_vocabulary.h"

namespace custody::storage {
namespace {

namespace lineage = storage::lineage;
using Direction = CustodyStore::Direction;

struct Run {
  std::string id;
  std::string spec_text;
  JobSpec spec;
  std::string dataset;  // "dataset:HASH"
  DataSplit data;
  std::vector<KeyRange> shards;
  std::map<uint64_t, std::set<std::string>> workers;  // shard index -> nodes assigned it
};

Result<Run> load_run(const CustodyStore& store, const std::string& run_id) {
  Run run;
  run.id = run_id;
  CUSTODY_ASSIGN_OR_RETURN(auto specified,
                           store.relations(run_id, Direction::kOut, lineage::rel::kSpecifiedBy));
  if (specified.empty()) return data_loss("run " + run_id + " has no job spec in the custody store");
  const std::string spec_id = specified.front().body.value("to", "");
  CUSTODY_ASSIGN_OR_RETURN(auto spec_entity, store.entity(spec_id));
  if (!spec_entity || !spec_entity->body.contains("text") || !spec_entity->body["text"].is_string()) {
    return data_loss("the job spec " + spec_id + " of run " + run_id +
                     " has no text; run `custody audit verify`");
  }
  run.spec_text = spec_entity->body["text"].get<std::string>();
  auto spec = parse_job_spec(run.spec_text, spec_id);
  if (!spec.is_ok())
    return data_loss("the job spec of run " + run_id + " does not parse: " + spec.status().message());
  run.spec = std::move(spec).value();

  CUSTODY_ASSIGN_OR_RETURN(auto consumed, store.relations(run_id, Direction::kOut, lineage::rel::kConsumed));
  if (consumed.empty()) return data_loss("run " + run_id + " consumed no data set in the custody store");
  run.dataset = consumed.front().body.value("to", "");
  auto data = load_data(run.spec.data);
  if (!data.is_ok()) {
    return failed_precondition("the training data of run " + run_id +
                               " cannot be read again to score it: " + data.status().message());
  }
  run.data = std::move(data).value();
  if (lineage::dataset_id(run.data.version_hash) != run.dataset) {
    // A retraining consumed a version of its own: these bytes less the withdrawn records.
    // Scoring would rank the withdrawn records too (the scorers take whole ranges of the
    // bytes), naming records the model never read: refused, saying so, never answered.
    CUSTODY_ASSIGN_OR_RETURN(auto consumed_entity, store.entity(run.dataset));
    if (consumed_entity && consumed_entity->body.value("base", "") == lineage::dataset_id(run.data.version_hash)) {
      return failed_precondition(
          "run " + run_id + " is a retraining: it trained on " + run.dataset + ", data set " +
          lineage::dataset_id(run.data.version_hash) + " without " +
          std::to_string(consumed_entity->body.value("excluded", json::array()).size()) +
          " withdrawn records; attribution to a retraining's records is not built (the withdrawn records would "
          "be scored with the rest)");
    }
    return failed_precondition("the files the job of run " + run_id + " named (" + run.spec.data.dir +
                               ") now hold data set " + run.data.version_hash + ", not " + run.dataset +
                               ", which the run consumed: restore those files to attribute to its records");
  }
  CUSTODY_ASSIGN_OR_RETURN(run.shards, partition_range(static_cast<uint64_t>(run.data.train.count),
                                                       static_cast<uint32_t>(run.spec.workers)));
  CUSTODY_ASSIGN_OR_RETURN(auto assigned, store.relations(run_id, Direction::kOut, lineage::rel::kAssigned));
  for (const auto& a : assigned) {
    const json& b = a.body;
    if (b.value("role", "") != "worker" || !b.contains("shard") || !b["shard"].is_object()) continue;
    const std::string node = b.value("to", "");
    run.workers[b["shard"].value("index", uint64_t{0})].insert(
        lineage::has_prefix(node, lineage::prefix::kNode)
            ? node.substr(std::string(lineage::prefix::kNode).size())
            : node);
  }
  return run;
}

// The run's checkpoints that shaped `answering` (at or before its step), one per step.
struct Weighed {
  std::vector<json> manifests;
  std::vector<std::vector<float>> values;
  std::vector<float> rates;
};
Result<Weighed> load_checkpoints(const CustodyStore& store, const Run& run, const json& answering) {
  const uint64_t last = answering.value("step", uint64_t{0});
  CUSTODY_ASSIGN_OR_RETURN(auto all, store.checkpoints_of(run.id));
  std::map<uint64_t, json> by_step;  // later attempts replace earlier ones at a step
  for (auto& m : all) {
    const uint64_t step = m.value("step", uint64_t{0});
    if (step == 0 || step > last) continue;  // step 0: the initial weights, before any record was read
    auto it = by_step.find(step);
    if (it == by_step.end() || m.value("attempt", 0u) >= it->second.value("attempt", 0u)) by_step[step] = m;
  }
  if (by_step.empty())
    return not_found("run " + run.id + " has no checkpoint at or before step " + std::to_string(last));
  uint64_t min_shard = UINT64_MAX;
  for (const auto& s : run.shards) min_shard = std::min(min_shard, s.size());
  const uint64_t total =
      static_cast<uint64_t>(run.spec.epochs) * (min_shard / static_cast<uint64_t>(run.spec.batch_size));
  Weighed w;
  uint64_t previous = 0;
  for (auto& [step, m] : by_step) {
    json manifest;
    CUSTODY_ASSIGN_OR_RETURN(auto values, load_checkpoint(store, m["id"].get<std::string>(), &manifest));
    w.rates.push_back(interval_learning_rate(run.spec.optimizer, previous, step, total));
    previous = step;
    w.values.push_back(std::move(values));
    w.manifests.push_back(std::move(m));
  }
  return w;
}

json record_entry(const AttributionQuestion& run, int64_t index, float score) {
  uint64_t shard = 0;
  for (size_t s = 0; s < run.shards.size(); ++s) {
    if (static_cast<uint64_t>(index) >= run.shards[s].begin &&
        static_cast<uint64_t>(index) < run.shards[s].end)
      shard = s;
  }
  json workers = json::array();
  if (auto it = run.workers.find(shard); it != run.workers.end()) {
    for (const auto& w : it->second) workers.push_back(w);
  }
  json entry = {{"dataset", run.dataset}, {"index", index}, {"label", run.data.train.labels[index]},
                {"score", score},         {"shard", shard}, {"workers", workers}};
  const TablePreprocessing& table = run.data.table;
  if (static_cast<size_t>(index) < table.train_lines.size()) {
    // A CSV record is named as the row a person can open: the file and its line (the
    // header is line 1), and its label as the table wrote it.
    entry["file"] = table.train_file;
    entry["line"] = table.train_lines[static_cast<size_t>(index)];
    entry["row"] = table.train_file + ":" + std::to_string(table.train_lines[static_cast<size_t>(index)]);
    const uint8_t label = run.data.train.labels[index];
    if (label < table.classes.size()) entry["class"] = table.classes[label];
  }
  return entry;
}

// The first row of the call whose input hashes to `recorded` among the input's batches
// (see AttributionRequest), or -1.
Result<int64_t> find_call(const AttributionRequest& r, uint32_t call_rows, const std::string& recorded) {
  const uint64_t batch = r.batch_rows == 0 ? r.rows : r.batch_rows;
  if (call_rows == 0) return data_loss("the usage record of the call names no rows");
  for (uint64_t first = 0; first + call_rows <= r.rows; first += batch) {
    const float* begin = r.inputs.data() + first * r.features;
    if (sha256_hex(begin, static_cast<size_t>(call_rows) * r.features * sizeof(float)) == recorded) {
      return static_cast<int64_t>(first);
    }
  }
  return int64_t{-1};
}

}  // namespace

Result<AttributionQuestion> prepare_attribution(const CustodyStore& store, const AttributionRequest& r) {
  AttributionQuestion q;
  q.started = std::chrono::steady_clock::now();
  json& answer = q.answer;
  std::string checkpoint;
  json call;
  int64_t call_first_row = 0;  // the call's first row in the input
  if (!r.prediction_id.empty()) {
    if (!lineage::has_prefix(r.prediction_id, lineage::prefix::kPrediction)) {
      return invalid_argument("'" + r.prediction_id +
                              "' is not a prediction id (pred-…, as `custody predict` prints)");
    }
    CUSTODY_ASSIGN_OR_RETURN(auto record, store.prediction(r.prediction_id));
    if (!record) return not_found("no prediction '" + r.prediction_id + "' in the custody store's usage log");
    call = record->body;
    checkpoint = call.value("target", "");
    const std::string recorded = call.value("input_sha256", "");
    if (r.rows == 0 || r.features == 0 || r.inputs.size() != static_cast<size_t>(r.rows) * r.features) {
      return invalid_argument("the input holds " + std::to_string(r.inputs.size()) +
                              " values, not rows x features = " + std::to_string(r.rows) + " x " +
                              std::to_string(r.features));
    }
    CUSTODY_ASSIGN_OR_RETURN(call_first_row, find_call(r, call.value("rows", uint32_t{0}), recorded));
    if (call_first_row < 0) {
      const std::string given = sha256_hex(r.inputs.data(), r.inputs.size() * sizeof(float));
      return invalid_argument(
          "the input given (" + std::to_string(r.rows) + " rows, SHA-256 " + given +
          ") does not hold the input of call " + call.value("call_id", "") + " that made " + r.prediction_id +
          ", recorded with " + std::to_string(call.value("rows", 0)) + " rows of SHA-256 " + recorded +
          ": supply the very file that was sent to `custody predict` (same rows, same order, "
          "and its --batch if one was given)");
    }
  } else {
    CUSTODY_ASSIGN_OR_RETURN(checkpoint, resolve_checkpoint(store, r.self_influence_model));
  }
  CUSTODY_ASSIGN_OR_RETURN(auto manifest, store.checkpoint(checkpoint));
  if (!manifest) return not_found("no checkpoint '" + checkpoint + "' in the custody store");
  CUSTODY_ASSIGN_OR_RETURN(Run run, load_run(store, manifest->value("job", "")));
  CUSTODY_ASSIGN_OR_RETURN(auto model, model_of_manifest(*manifest));
  if (run.data.train.features != model.input_size()) {
    return failed_precondition("the data set of run " + run.id + " has " +
                               std::to_string(run.data.train.features) +
                               " features per record, the model takes " + std::to_string(model.input_size()));
  }
  CUSTODY_ASSIGN_OR_RETURN(Weighed weighed, load_checkpoints(store, run, *manifest));
  TracinQuestion& question = q.question;
  question.layer_sizes = model.layer_sizes();
  question.activation = model.activation();
  if (!model.dense_only()) question.architecture = model.architecture();
  question.top = r.top;
  json listed = json::array();
  for (size_t c = 0; c < weighed.values.size(); ++c) {
    listed.push_back({{"id", weighed.manifests[c]["id"]},
                      {"step", weighed.manifests[c]["step"]},
                      {"learning_rate", weighed.rates[c]}});
  }
  question.params = std::move(weighed.values);
  question.rates = std::move(weighed.rates);

  answer["checkpoint"] = checkpoint;
  answer["run"] = run.id;
  answer["dataset"] = run.dataset;
  answer["method"] =
      "TracInCP (Pruthi et al. 2020): sum over the checkpoints of learning rate x dot product of "
      "the loss gradients of the last layer (weights and bias)";
  answer["checkpoints"] = listed;
  if (!r.prediction_id.empty()) {
    // The prediction's row of its call, and the class the model answered.
    const auto& ids = call["prediction_ids"];
    size_t row = 0;
    while (row < ids.size() && ids[row] != r.prediction_id) ++row;
    if (row >= ids.size() || row >= call["predictions"].size()) {
      return data_loss("the usage record of " + r.prediction_id + " does not list it among its rows");
    }
    const int answered = call["predictions"][row].value("class", 0);
    const int label = r.label >= 0 ? r.label : answered;
    if (label >= model.num_classes()) {
      return invalid_argument("label " + std::to_string(label) + " is not a class of the model (0 to " +
                              std::to_string(model.num_classes() - 1) + ")");
    }
    question.test_label = static_cast<uint8_t>(label);
    const size_t test_row = static_cast<size_t>(call_first_row) + row;
    // The row as the caller sent it (raw pixels, or a table's raw columns), made the model's
    // input exactly as serving made it when it answered (core/input_contract.h).
    question.test_input.assign(r.inputs.begin() + static_cast<std::ptrdiff_t>(test_row * r.features),
                               r.inputs.begin() + static_cast<std::ptrdiff_t>((test_row + 1) * r.features));
    CUSTODY_ASSIGN_OR_RETURN(const InputContract contract, input_contract_of_manifest(*manifest, model.input_size()));
    // Range and finiteness only: a call recorded before pre-scaled rows were refused must
    // still be explainable from the very values its record hashes.
    CUSTODY_RETURN_IF_ERROR(contract.check_values(question.test_input.data(), 1, static_cast<int64_t>(r.features),
                                                  call.value("model", checkpoint)));
    contract.apply(question.test_input);
    answer["kind"] = "prediction";
    answer["prediction"] = r.prediction_id;
    answer["call"] = call.value("call_id", "");
    answer["model"] = call.value("model", "");
    answer["input_sha256"] = call.value("input_sha256", "");
    answer["test_label"] = label;
    answer["label_source"] = r.label >= 0 ? "given" : "predicted";
  } else {
    question.self_influence = true;
    answer["kind"] = "self_influence";
    answer["model"] = r.self_influence_model;
  }
  q.run = run.id;
  q.spec_text = std::move(run.spec_text);
  q.spec = std::move(run.spec);
  q.dataset = std::move(run.dataset);
  q.data = std::move(run.data);
  q.shards = std::move(run.shards);
  q.workers = std::move(run.workers);
  return q;
}

json answer_attribution(const AttributionQuestion& q, const RangeRanking& merged) {
  json answer = q.answer;
  auto entries = [&](const std::vector<ScoredRecord>& list) {
    json out = json::array();
    for (const auto& s : list) out.push_back(record_entry(q, static_cast<int64_t>(s.index), s.score));
    return out;
  };
  answer["records_scored"] = merged.scored;
  if (q.question.self_influence) {
    answer["records"] = entries(merged.highest);
  } else {
    answer["proponents"] = entries(merged.highest);
    answer["opponents"] = entries(merged.lowest);
  }
  answer["elapsed_ms"] =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - q.started).count();
  return answer;
}

Result<json> attribute(const CustodyStore& store, const AttributionRequest& r) {
  CUSTODY_ASSIGN_OR_RETURN(AttributionQuestion q, prepare_attribution(store, r));
  CUSTODY_ASSIGN_OR_RETURN(RangeRanking all, score_records(q.question, q.data.train, 0, q.data.train.count, 0,
                                                           r.threads));
  return answer_attribution(q, all);
}

}  // namespace custody::storage
