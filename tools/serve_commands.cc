// custody predict MODEL --input FILE | export CHECKPOINT FILE: using a model through the
// coordinator; every call is recorded (in the usage log) before it is answered.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>

#include "core/files.h"
#include "core/hash.h"
#include "tools/command.h"
#include "tools/model_files.h"
#include "tools/prediction_input.h"
#include "tools/render.h"

namespace custody::cli {
namespace {

// predict --batch: rows per call.
constexpr IntRange kBatchRange{1, int64_t{1} << 20};

struct ServeArgs {
  std::string model, input_file, format = "auto", receipt_file, out_file, purpose = "unspecified";
  std::string export_format = "auto";
  int64_t features = 0, batch_rows = 256, max_rows = 0;
  bool as_json = false;
};

// A reply with a prediction id and a row of class probabilities for each of `rows` rows.
Status check_shape(const msg::PredictReply& p, int64_t rows) {
  const auto n = static_cast<size_t>(rows);
  if (p.classes > 0 && p.prediction_ids.size() == n && p.probabilities.size() == n * p.classes)
    return Status::ok();
  return no_answer(data_loss("the coordinator answered " + std::to_string(rows) + " rows with " +
                             std::to_string(p.prediction_ids.size()) + " prediction ids and " +
                             std::to_string(p.probabilities.size()) + " probabilities of " +
                             std::to_string(p.classes) + " classes"));
}

Status predict(Session& s, const ServeArgs& a) {
  CUSTODY_ASSIGN_OR_RETURN(PredictionInput in,
                           bad_input(read_prediction_input(a.input_file, a.format, a.features)));
  keep_first_rows(in, a.max_rows);
  json all = json::array();
  for (int64_t first = 0; first < in.rows; first += a.batch_rows) {
    const int64_t n = std::min<int64_t>(a.batch_rows, in.rows - first);
    msg::Predict request{a.model, s.principal, static_cast<uint32_t>(n), static_cast<uint32_t>(in.features),
                         {},      a.purpose};
    request.inputs.assign(in.values.begin() + first * in.features,
                          in.values.begin() + (first + n) * in.features);
    CUSTODY_ASSIGN_OR_RETURN(auto p, s.client.ask<msg::PredictReply>("", std::move(request)));
    CUSTODY_RETURN_IF_ERROR(check_shape(p, n));
    if (!a.receipt_file.empty()) {
      if (p.receipt.empty()) {
        return failed_precondition("the coordinator sent no receipt (it keeps no custody store or key)");
      }
      CUSTODY_RETURN_IF_ERROR(bad_input(append_line_synced(a.receipt_file, p.receipt)));
    }
    for (size_t r = 0; r < static_cast<size_t>(n); ++r) {
      if (a.as_json) {
        all.push_back(prediction_json(p, r, first));
      } else {
        print(prediction_line(p, r, first));
      }
    }
    if (!a.as_json && first == 0) std::fprintf(stderr, "%s\n", answered_by(p).c_str());
  }
  if (a.as_json) print(as_json_text(all));
  return Status::ok();
}

Status export_weights(Session& s, const ServeArgs& a) {
  CUSTODY_ASSIGN_OR_RETURN(const ModelFileFormat format, model_file_format(a.export_format, a.out_file));
  CUSTODY_ASSIGN_OR_RETURN(
      auto x, s.client.ask<msg::ExportReply>("", msg::ExportRequest{a.model, s.principal, a.purpose}));
  json card = json::parse(x.model_card, nullptr, false);
  if (card.is_discarded() || !card.is_object()) {
    return data_loss("the coordinator's reply carries no readable model card; is it older than this CLI?");
  }
  if (!x.architecture.empty()) {
    // A conv model: its layers, which the recorded layer sizes alone do not describe.
    card["architecture"]["layers"] = x.architecture;
    card["architecture"]["parameters"] =
        "per layer: dense weight (out x in, column-major) or conv2d weight [filters, in_channels, kh, kw], then bias";
  }
  ExportedModel model;
  model.layer_sizes = x.layer_sizes;
  model.architecture = x.architecture;
  model.values = std::move(x.values);
  model.hidden_activation = card["architecture"].value("hidden_activation", std::string("relu"));
  model.input_scale = card["preprocessing"].value("scale", 1.0f);
  model.metadata = {{"custody_checkpoint", x.checkpoint},
                    {"custody_root_hash", x.root_hash},
                    {"custody_usage_id", x.usage_id},
                    {"layer_sizes", json(x.layer_sizes).dump()},
                    {"architecture", x.architecture},
                    {"hidden_activation", model.hidden_activation},
                    {"input_scale", json(model.input_scale).dump()},
                    {"model_card", a.out_file + ".card.json"}};
  if (card["preprocessing"].contains("standardize")) {
    // Read without exceptions: a card that is not what it should be is an error, not a crash.
    const json& st = card["preprocessing"]["standardize"];
    for (const auto& [key, out] : {std::pair<const char*, std::vector<float>*>{"mean", &model.standardize_mean},
                                   {"std", &model.standardize_std}}) {
      const json v = st.is_object() ? st.value(key, json()) : json();
      for (const json& e : v.is_array() ? v : json::array()) {
        if (e.is_number()) out->push_back(e.get<float>());
      }
      if (!v.is_array() || out->size() != v.size()) out->clear();
    }
    if (model.standardize_mean.size() != model.standardize_std.size() || model.standardize_mean.empty() ||
        (!x.layer_sizes.empty() && model.standardize_mean.size() != x.layer_sizes.front())) {
      return data_loss("the model card's standardization does not fit the model's " +
                       std::to_string(x.layer_sizes.empty() ? 0 : x.layer_sizes.front()) + " inputs");
    }
    model.metadata["standardize_mean"] = json(model.standardize_mean).dump();
    model.metadata["standardize_std"] = json(model.standardize_std).dump();
  }
  CUSTODY_ASSIGN_OR_RETURN(const std::string bytes, model_file_bytes(format, model));
  CUSTODY_RETURN_IF_ERROR(write_file_atomically(a.out_file, bytes, 0644));
  card["export"]["file"] = a.out_file;
  card["export"]["format"] = to_string(format);
  card["export"]["sha256"] = sha256_hex(bytes);
  CUSTODY_RETURN_IF_ERROR(write_file_atomically(a.out_file + ".card.json", card.dump(2) + "\n", 0644));
  CUSTODY_RETURN_IF_ERROR(write_file_atomically(a.out_file + ".card.md", model_card_markdown(card), 0644));
  if (format == ModelFileFormat::kRaw) {
    // The raw layout's own description, as before: raw floats carry no names or shapes.
    CUSTODY_RETURN_IF_ERROR(write_file_atomically(
        a.out_file + ".json",
        json{{"checkpoint", x.checkpoint},
             {"root_hash", x.root_hash},
             {"layer_sizes", x.layer_sizes},
             {"architecture", x.architecture},
             {"format", "little-endian float32, the model's flat layout (docs/ARCHITECTURE.md)"},
             {"usage_id", x.usage_id},
             // A table model's inputs: (raw - mean) / std per feature (null: none).
             {"standardize", card["preprocessing"].value("standardize", json())}}
                .dump(2) +
            "\n",
        0644));
  }
  if (!x.receipt.empty()) {
    // The evidence of what was recorded about this export, checkable offline.
    CUSTODY_RETURN_IF_ERROR(write_file_atomically(a.out_file + ".receipt.json", x.receipt + "\n", 0644));
  }
  std::printf("wrote %s (%s, %zu parameters of %s) and its model card %s.card.md; recorded as %s\n",
              a.out_file.c_str(), to_string(format), model.values.size(), x.checkpoint.c_str(), a.out_file.c_str(),
              x.usage_id.c_str());
  return Status::ok();
}

}  // namespace

void add_serve_commands(CommandSet& commands) {
  auto a = std::make_shared<ServeArgs>();

  auto* export_cmd = commands.add("export", "write a checkpoint's weights to a file (recorded as a use)",
                                  [a](Session& s) { return export_weights(s, *a); });
  export_cmd->add_option("CHECKPOINT", a->model, "checkpoint id or model NAME[@VERSION]")->required();
  export_cmd->add_option("FILE", a->out_file, "output file; FILE.card.json and FILE.card.md describe the model")
      ->required();
  export_cmd
      ->add_option("--format", a->export_format,
                   "onnx (opset 13, input scaling in the graph), safetensors (named [out, in] weights), raw "
                   "(Custody's flat float32 layout, FILE.json), or auto: by FILE's extension")
      ->capture_default_str();
  commands.add_as_option(export_cmd, "the principal exporting");
  export_cmd->add_option("--purpose", a->purpose, "why (recorded)");

  auto* predict_cmd = commands.add("predict", "predict with a model; every call is recorded",
                                   [a](Session& s) { return predict(s, *a); });
  predict_cmd->add_option("MODEL", a->model, "NAME (newest version), NAME@VERSION or a checkpoint id")
      ->required();
  predict_cmd->add_option("--input", a->input_file, "IDX images (gzipped or not), CSV rows, or raw float32")
      ->required();
  predict_cmd->add_option("--format", a->format, "auto (by name: .csv, .f32, else IDX), idx, csv or f32")
      ->check(CLI::IsMember({"auto", "idx", "csv", "f32"}))
      ->capture_default_str();
  add_ranged_option(predict_cmd, "--features", a->features, kFeaturesRange,
                    "values per row of a raw float32 file");
  add_ranged_option(predict_cmd, "--batch", a->batch_rows, kBatchRange,
                    "rows per call (each call is one usage record)");
  predict_cmd->add_option("--rows", a->max_rows, "predict only the first N rows of the input (0: all)")
      ->check(CLI::NonNegativeNumber);
  commands.add_as_option(predict_cmd, "the caller");
  predict_cmd->add_option("--purpose", a->purpose, "why (recorded)");
  add_json_flag(predict_cmd, a->as_json);
  predict_cmd->add_option("--receipt", a->receipt_file,
                          "append each call's signed receipt to this file (JSON lines)");
}

}  // namespace custody::cli
