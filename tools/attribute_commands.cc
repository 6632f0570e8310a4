// custody attribute PREDICTION_ID --input FILE | --self-influence MODEL: which training
// records explain a prediction (TracInCP), or which records of a model's run influence
// themselves most (likely mislabelled). The coordinator computes and records the answer
// (actors/attribution_actor.h, storage/attribution.h); this sends the request and prints.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "tools/command.h"
#include "tools/prediction_input.h"
#include "tools/render.h"

namespace custody::cli {
namespace {

struct AttributeArgs {
  std::string prediction, input_file, format = "auto", self_influence, purpose = "unspecified";
  int64_t features = 0, batch_rows = 256, max_rows = 0, top = 10, label = -1, max_seconds = 600;
  bool as_json = false, in_coordinator = false;
};

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

std::string records_table(const json& records) {
  std::string out = "  rank  record   label  score         shard  workers\n";
  int rank = 0;
  for (const auto& r : records) {
    std::string workers;
    for (const auto& w : r["workers"]) workers += (workers.empty() ? "" : ",") + w.get<std::string>();
    char line[256];
    std::snprintf(line, sizeof line, "  %-5d %-8lld %-6d %-13s %-6llu %s\n", ++rank,
                  static_cast<long long>(r["index"].get<int64_t>()), r["label"].get<int>(),
                  fixed(r["score"].get<double>(), 6).c_str(),
                  static_cast<unsigned long long>(r["shard"].get<uint64_t>()),
                  workers.empty() ? "-" : workers.c_str());
    out += line;
    if (r.contains("row")) {  // a CSV record: the table's row, where a person finds it
      out.pop_back();
      out += "  " + r.value("row", std::string()) + " (" + r.value("class", std::string("?")) + ")\n";
    }
  }
  return out;
}

std::string render(const json& a) {
  std::string out;
  const std::string dataset = a.value("dataset", "");
  if (a["kind"] == "prediction") {
    out += "prediction " + a["prediction"].get<std::string>() + " (call " + a["call"].get<std::string>() +
           "), label " + std::to_string(a["test_label"].get<int>()) +
           (a["label_source"] == "given" ? " (given)" : " (the class the model answered)") + "\n";
  } else {
    out += "self-influence of the training records of " + a["model"].get<std::string>() + "\n";
  }
  out += "model checkpoint " + a["checkpoint"].get<std::string>() + ", run " + a["run"].get<std::string>() +
         "\n";
  out += "data set " + dataset + ": " + std::to_string(a["records_scored"].get<int64_t>()) +
         " records scored against " + std::to_string(a["checkpoints"].size()) + " checkpoints in " +
         fixed(a["elapsed_ms"].get<double>() / 1000.0, 3) + " s\n";
  out += "method: " + a["method"].get<std::string>() + "\n";
  for (const auto& r : a.value("scored_by", json::array())) {
    out += "scored by " + r.value("by", std::string("?")) + ": records [" + std::to_string(r.value("begin", 0ull)) +
           ", " + std::to_string(r.value("end", 0ull)) + ") in " + fixed(r.value("elapsed_ms", 0.0) / 1000.0, 3) +
           " s" + (r.contains("why") ? " (" + r.value("why", std::string()) + ")" : "") + "\n";
  }
  out += "recorded as " + a.value("usage_id", "") + "\n\n";
  if (a["kind"] == "prediction") {
    out += "proponents (training on them lowered this prediction's loss):\n" + records_table(a["proponents"]);
    out += "\nopponents (training on them raised it):\n" + records_table(a["opponents"]);
  } else {
    out += "highest self-influence first (candidates for mislabelled or unusual records):\n" +
           records_table(a["records"]);
  }
  return out;
}

Status attribute(Session& s, const AttributeArgs& a) {
  msg::Attribute request;
  request.principal = s.principal;
  request.purpose = a.purpose;
  request.top = static_cast<uint32_t>(a.top);
  request.label = static_cast<int32_t>(a.label);
  request.in_coordinator = a.in_coordinator;
  if (!a.self_influence.empty()) {
    if (!a.prediction.empty() || !a.input_file.empty()) {
      return invalid_argument("--self-influence MODEL takes neither a PREDICTION_ID nor --input");
    }
    request.self_influence = a.self_influence;
  } else {
    if (a.prediction.empty()) {
      return invalid_argument(
          "name a PREDICTION_ID (pred-…, as `custody predict` printed) or --self-influence MODEL");
    }
    if (a.input_file.empty()) {
      return invalid_argument(
          "attributing " + a.prediction +
          " needs --input FILE: the input sent to `custody predict` (the store keeps only its SHA-256)");
    }
    CUSTODY_ASSIGN_OR_RETURN(PredictionInput in, read_prediction_input(a.input_file, a.format, a.features));
    // As `custody predict --rows N` did: only the first N rows were sent (and are sent now:
    // the rest of a large file is not shipped to the coordinator).
    keep_first_rows(in, a.max_rows);
    request.prediction_id = a.prediction;
    request.rows = static_cast<uint32_t>(in.rows);
    request.features = static_cast<uint32_t>(in.features);
    request.inputs = std::move(in.values);
    request.batch_rows = static_cast<uint32_t>(a.batch_rows);
  }
  // Scoring a training set takes seconds, not the default reply timeout's milliseconds.
  s.client.timeout =
      std::max<std::chrono::milliseconds>(s.client.timeout, std::chrono::seconds(a.max_seconds));
  CUSTODY_ASSIGN_OR_RETURN(auto reply, s.client.ask<msg::AttributionReply>("", std::move(request)));
  json answer = json::parse(reply.json, nullptr, false);
  if (answer.is_discarded() || !answer.is_object()) {
    return data_loss("the coordinator's attribution is not readable JSON; is it older than this CLI?");
  }
  print(a.as_json ? answer.dump(2) + "\n" : render(answer));
  return Status::ok();
}

}  // namespace

void add_attribute_commands(CommandSet& commands) {
  auto a = std::make_shared<AttributeArgs>();
  auto* cmd = commands.add("attribute",
                           "which training records explain a prediction (TracIn), or a model's records by "
                           "self-influence; recorded",
                           [a](Session& s) { return attribute(s, *a); });
  cmd->add_option("PREDICTION_ID", a->prediction, "the prediction to explain (pred-…)");
  cmd->add_option("--input", a->input_file,
                  "the input sent to `custody predict` again (its SHA-256 must be the recorded call's)");
  cmd->add_option("--format", a->format, "auto (by name: .csv, .f32, else IDX), idx, csv or f32")
      ->check(CLI::IsMember({"auto", "idx", "csv", "f32"}))
      ->capture_default_str();
  add_ranged_option(cmd, "--features", a->features, kFeaturesRange, "values per row of a raw float32 file");
  add_ranged_option(cmd, "--batch", a->batch_rows, IntRange{1, int64_t{1} << 20},
                    "rows per call when the input was predicted (predict --batch)");
  add_ranged_option(cmd, "--rows", a->max_rows, IntRange{0, int64_t{1} << 32},
                    "the first N rows of the input, as `custody predict --rows N` sent them (0: all)");
  cmd->add_option("--self-influence", a->self_influence,
                  "rank the training records of this model's run (NAME, NAME@V or a checkpoint id) by "
                  "self-influence");
  add_ranged_option(cmd, "--top", a->top, IntRange{1, 10000}, "proponents and opponents (or records) listed");
  add_ranged_option(cmd, "--label", a->label, IntRange{-1, 255},
                    "the label to explain (-1: the class the model answered)");
  add_ranged_option(cmd, "--max-seconds", a->max_seconds, IntRange{1, 86400},
                    "how long to wait for the answer");
  cmd->add_flag("--in-coordinator", a->in_coordinator,
               "score every record in the coordinator, not on the workers (which the answer's scored_by "
               "names; the coordinator checks one record of each worker's range, not all)");
  commands.add_as_option(cmd, "the caller");
  cmd->add_option("--purpose", a->purpose, "why (recorded)");
  add_json_flag(cmd, a->as_json);
}

}  // namespace custody::cli
