#include "core/job_spec.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include <toml++/toml.h>

#include "core/config_reader.h"

namespace custody {

std::string DataSpec::path(const std::string& file) const {
  if (!file.empty() && file[0] == '/') return file;
  return dir + "/" + file;
}

const char* to_string(Consistency c) {
  switch (c) {
    case Consistency::kBsp: return "bsp";
    case Consistency::kAsp: return "asp";
    case Consistency::kSsp: return "ssp";
  }
  return "?";
}

const char* to_string(PrivacySpec::Sampling s) {
  return s == PrivacySpec::Sampling::kShuffled ? "shuffled" : "poisson";
}

namespace {

// The data's machine-readable terms: an SPDX identifier, and purposes as lowercase words.
// An empty list is refused rather than read as "not declared": `purposes = []` would say
// that nothing is allowed, and a model that may be used for nothing should not be trained.
Status parse_terms(ConfigReader& r, const std::string& origin, DataSpec& d) {
  CUSTODY_RETURN_IF_ERROR(r.get("data.spdx", d.spdx));
  for (char c : d.spdx) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '+') {
      return invalid_argument(origin + ": data.spdx '" + d.spdx + "' is not an SPDX license identifier (such as "
                              "MIT, CC-BY-4.0, CC-BY-NC-4.0; LicenseRef-NAME for one SPDX does not list)");
    }
  }
  const std::string unset = "\x01";  // no purpose word can be this: the key was absent
  for (const auto& [key, list] : {std::pair<const char*, std::vector<std::string>*>{"data.purposes", &d.purposes},
                                  std::pair<const char*, std::vector<std::string>*>{"data.consent_purposes",
                                                                                    &d.consent_purposes}}) {
    *list = {unset};
    CUSTODY_RETURN_IF_ERROR(r.get(key, *list));
    if (*list == std::vector<std::string>{unset}) {
      list->clear();
      continue;
    }
    if (list->empty()) {
      return invalid_argument(origin + ": " + key + " = [] allows no purpose at all; leave the key out if it "
                              "declares nothing, or list what is allowed (e.g. [\"research\"])");
    }
    for (const auto& p : *list) {
      const bool word = !p.empty() && p.size() <= 64 && std::all_of(p.begin(), p.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      });
      if (!word) {
        return invalid_argument(origin + ": " + key + " holds '" + p + "'; a purpose is a lowercase word "
                                "(letters, digits, '-', '_'), such as research, commercial, evaluation");
      }
    }
    std::sort(list->begin(), list->end());
    list->erase(std::unique(list->begin(), list->end()), list->end());
  }
  return Status::ok();
}

// The [privacy] section: present or not, then each key; the combinations are checked here,
// the reachability of the target by the coordinator (it needs the data set's size).
Status parse_privacy(ConfigReader& r, const std::string& origin, JobSpec& s) {
  PrivacySpec& p = s.privacy;
  std::string sampling = "poisson";
  double delta = -1, target = -1, sigma = -1;
  CUSTODY_RETURN_IF_ERROR(r.get("privacy.target_epsilon", target, 1e-6, 1e6));
  CUSTODY_RETURN_IF_ERROR(r.get("privacy.delta", delta, 1e-300, 0.999999));
  CUSTODY_RETURN_IF_ERROR(r.get("privacy.noise_multiplier", sigma, 1e-3, 1e6));
  CUSTODY_RETURN_IF_ERROR(r.get("privacy.clip_norm", p.clip_norm, 1e-9, 1e9));
  CUSTODY_RETURN_IF_ERROR(r.get("privacy.sampling", sampling, {"poisson", "shuffled"}));
  CUSTODY_RETURN_IF_ERROR(r.get("privacy.max_noise_multiplier", p.max_noise_multiplier, 1e-3, 1e6));
  bool enabled = false;
  CUSTODY_RETURN_IF_ERROR(r.get("privacy.enabled", enabled));
  const bool any = enabled || target > 0 || delta > 0 || sigma > 0;
  if (!any) return Status::ok();
  p.enabled = true;
  p.sampling = sampling == "shuffled" ? PrivacySpec::Sampling::kShuffled : PrivacySpec::Sampling::kPoisson;
  if ((target > 0) == (sigma > 0)) {
    return invalid_argument(
        origin +
        ": section [privacy] needs exactly one of 'privacy.target_epsilon' (Custody "
        "calibrates the noise) and 'privacy.noise_multiplier' (Custody computes epsilon)");
  }
  if (delta <= 0) {
    return invalid_argument(origin +
                            ": key 'privacy.delta' is required in [privacy] (e.g. 1e-5; it must be well "
                            "below 1 / the number of training examples)");
  }
  p.delta = delta;
  p.target_epsilon = std::max(target, 0.0);
  p.noise_multiplier = std::max(sigma, 0.0);
  if (s.consistency != Consistency::kBsp) {
    // Under ASP/SSP every push is applied alone: each would need its own noise, and the
    // accountant's one-mechanism-per-step analysis would not describe what ran.
    return invalid_argument(origin + ": key 'job.consistency' is '" + to_string(s.consistency) +
                            "', but a private job runs only with \"bsp\": noise is added once to each step's "
                            "summed gradient, which ASP and SSP never form");
  }
  return Status::ok();
}

// model.layers: each table's type and the keys that type takes.
Status parse_layers(ConfigReader& r, const std::string& origin, JobSpec& s) {
  std::vector<ConfigReader::Row> rows;
  CUSTODY_RETURN_IF_ERROR(r.get("model.layers", rows));
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string where = origin + ": model.layers[" + std::to_string(i) + "]";
    std::string type;
    for (const auto& [k, v] : rows[i]) {
      if (k == "type") type = v.text;
    }
    struct Arg {
      const char* key;
      int* out;
      int min, max, fallback;
    };
    LayerSpec layer;
    std::vector<Arg> args;
    if (type == "dense") {
      layer.kind = LayerKind::kDense;
      args.push_back({"units", &layer.units, 1, 1 << 20, 0});
    } else if (type == "conv2d") {
      layer.kind = LayerKind::kConv2D;
      args.push_back({"filters", &layer.units, 1, 4096, 0});
      args.push_back({"kernel", &layer.kernel, 1, 64, 0});
    } else if (type == "maxpool") {
      layer.kind = LayerKind::kMaxPool;
      args.push_back({"size", &layer.kernel, 1, 64, 2});
    } else if (type == "flatten") {
      layer.kind = LayerKind::kFlatten;
    } else {
      return invalid_argument(where + ": key 'type' must be \"conv2d\", \"maxpool\", \"flatten\" or \"dense\"" +
                              (type.empty() ? std::string(", and is missing") : ", got \"" + type + "\""));
    }
    for (Arg& a : args) *a.out = a.fallback;
    std::vector<std::string> given;
    for (const auto& [k, v] : rows[i]) {
      if (k == "type") continue;
      Arg* arg = nullptr;
      for (Arg& a : args) {
        if (k == a.key) arg = &a;
      }
      if (arg == nullptr) {
        std::string takes;
        for (const Arg& a : args) takes += std::string(takes.empty() ? "" : ", ") + a.key;
        return invalid_argument(where + ": a " + type + " layer has no key '" + k + "' (it takes " +
                                (takes.empty() ? std::string("none") : takes) + ")");
      }
      if (!v.is_int || v.number < arg->min || v.number > arg->max) {
        return invalid_argument(where + ": key '" + k + "' must be an integer in [" + std::to_string(arg->min) +
                                ", " + std::to_string(arg->max) + "]");
      }
      *arg->out = static_cast<int>(v.number);
      given.push_back(k);
    }
    for (const Arg& a : args) {
      if (a.fallback == 0 && std::find(given.begin(), given.end(), a.key) == given.end()) {
        return invalid_argument(where + ": a " + type + " layer needs key '" + a.key + "'");
      }
    }
    s.layers.push_back(layer);
  }
  return Status::ok();
}

}  // namespace

Result<Model> JobSpec::make_model(int input_features) const {
  const Activation act = parse_activation(activation).value_or(Activation::kRelu);
  if (layers.empty()) return Model::make(layer_sizes(input_features), act);
  Shape in{input_features, 1, 1};
  const bool spatial = std::any_of(layers.begin(), layers.end(), [](const LayerSpec& l) {
    return l.kind == LayerKind::kConv2D || l.kind == LayerKind::kMaxPool;
  });
  if (input_shape.size() == 3) {
    in = Shape{input_shape[0], input_shape[1], input_shape[2]};
    if (in.size() != input_features) {
      return invalid_argument("model.input_shape " + std::to_string(in.channels) + "x" + std::to_string(in.height) +
                              "x" + std::to_string(in.width) + " holds " + std::to_string(in.size()) +
                              " values, but the data has " + std::to_string(input_features) + " per sample");
    }
  } else if (spatial) {
    int side = 1;
    while (side * side < input_features) ++side;
    if (side * side != input_features) {
      return invalid_argument("the data's " + std::to_string(input_features) +
                              " values per sample are not a square image: set model.input_shape = "
                              "[channels, height, width]");
    }
    in = Shape{1, side, side};
  }
  auto m = Model::make(in, layers, act);
  if (!m.is_ok()) return invalid_argument("model.layers: " + m.status().message());
  return m;
}

std::vector<int> JobSpec::layer_sizes(int input_features) const {
  if (!layers.empty()) {
    auto m = make_model(input_features);
    if (m.is_ok()) return m->layer_sizes();
    return {input_features, classes};
  }
  std::vector<int> sizes{input_features};
  if (model == "mlp") sizes.insert(sizes.end(), hidden.begin(), hidden.end());
  sizes.push_back(classes);
  return sizes;
}

Result<JobSpec> parse_job_spec(std::string_view toml_text, const std::string& origin) {
  return parse_job_spec(toml_text, origin, nullptr);
}

Result<JobSpec> parse_job_spec(std::string_view toml_text, const std::string& origin,
                               std::vector<ConfigReader::KeyRead>* reads) {
  CUSTODY_ASSIGN_OR_RETURN(auto parsed, ConfigReader::parse(toml_text, origin));
  ConfigReader& r = parsed;
  r.trace(reads);
  JobSpec s;
  s.text = std::string(toml_text);
  std::string consistency = "bsp", optimizer = to_string(s.optimizer.kind), kind = "idx";
  int64_t seed = static_cast<int64_t>(s.seed);
  CUSTODY_RETURN_IF_ERROR(r.get("job.name", s.name));
  CUSTODY_RETURN_IF_ERROR(r.get("job.epochs", s.epochs, 1, 10000));
  CUSTODY_RETURN_IF_ERROR(r.get("job.batch_size", s.batch_size, 1, 65536));
  CUSTODY_RETURN_IF_ERROR(r.get("job.workers", s.workers, 1, 1024));
  CUSTODY_RETURN_IF_ERROR(r.get("job.seed", seed, 0, INT64_MAX));
  CUSTODY_RETURN_IF_ERROR(r.get("job.consistency", consistency, {"bsp", "asp", "ssp"}));
  CUSTODY_RETURN_IF_ERROR(r.get("job.staleness", s.staleness, 0, 1000000));
  CUSTODY_RETURN_IF_ERROR(r.get("job.checkpoint_every_steps", s.checkpoint_every_steps, 0, INT64_MAX));
  CUSTODY_RETURN_IF_ERROR(r.get("job.init_from", s.init_from));
  // Read from the defaults, as every key is (the job-file reference test traces them), and
  // told apart from what the file sets by has(): with model.layers, type, hidden and
  // classes must not say something else.
  std::string type = s.model;
  std::vector<int> hidden = s.hidden;
  int classes = s.classes;
  const bool type_set = r.has("model.type"), hidden_set = r.has("model.hidden"), classes_set = r.has("model.classes");
  CUSTODY_RETURN_IF_ERROR(r.get("model.type", type, {"mlp", "softmax", "layers"}));
  CUSTODY_RETURN_IF_ERROR(r.get("model.hidden", hidden, 1, 65536));
  CUSTODY_RETURN_IF_ERROR(r.get("model.classes", classes, 2, 256));
  CUSTODY_RETURN_IF_ERROR(parse_layers(r, origin, s));
  CUSTODY_RETURN_IF_ERROR(r.get("model.input_shape", s.input_shape, 1, 1 << 20));
  if (!s.layers.empty()) {
    if (type_set && type != "layers") {
      return invalid_argument(origin + ": key 'model.type' is \"" + type + "\", but model.layers describes the "
                              "model; leave model.type out (or set it to \"layers\")");
    }
    if (hidden_set) {
      return invalid_argument(origin + ": key 'model.hidden' is for model.type = \"mlp\"; with model.layers, "
                              "list the dense layers there");
    }
    if (s.layers.back().kind != LayerKind::kDense) {
      return invalid_argument(origin + ": the last of model.layers must be a dense layer (its units are the "
                              "classes)");
    }
    if (classes_set && classes != s.layers.back().units) {
      return invalid_argument(origin + ": key 'model.classes' (" + std::to_string(classes) +
                              ") differs from the last dense layer's units (" +
                              std::to_string(s.layers.back().units) + ")");
    }
    s.model = "layers";
    s.classes = s.layers.back().units;
    if (s.classes < 2 || s.classes > 256) {
      return invalid_argument(origin + ": the last of model.layers has " + std::to_string(s.classes) +
                              " units; they are the classes, in [2, 256]");
    }
  } else {
    if (type == "layers") {
      return invalid_argument(origin + ": model.type = \"layers\" needs model.layers (e.g. [{type = \"dense\", "
                              "units = 10}])");
    }
    if (!s.input_shape.empty()) {
      return invalid_argument(origin + ": key 'model.input_shape' is for model.layers");
    }
    s.model = type;
    s.hidden = hidden;
    s.classes = classes;
  }
  if (!s.input_shape.empty() && s.input_shape.size() != 3) {
    return invalid_argument(origin + ": key 'model.input_shape' is [channels, height, width]");
  }
  CUSTODY_RETURN_IF_ERROR(r.get("model.activation", s.activation, {"relu", "tanh"}));
  CUSTODY_RETURN_IF_ERROR(r.get("optimizer.type", optimizer, {"sgd", "momentum", "adam"}));
  CUSTODY_RETURN_IF_ERROR(r.get("optimizer.learning_rate", s.optimizer.learning_rate, 1e-9f, 10.0f));
  CUSTODY_RETURN_IF_ERROR(r.get("optimizer.momentum", s.optimizer.momentum, 0.0f, 0.9999f));
  CUSTODY_RETURN_IF_ERROR(r.get("optimizer.beta1", s.optimizer.beta1, 0.0f, 0.9999f));
  CUSTODY_RETURN_IF_ERROR(r.get("optimizer.beta2", s.optimizer.beta2, 0.0f, 0.999999f));
  CUSTODY_RETURN_IF_ERROR(r.get("optimizer.epsilon", s.optimizer.epsilon, 1e-12f, 1.0f));
  std::string schedule = "constant";
  CUSTODY_RETURN_IF_ERROR(r.get("optimizer.schedule", schedule, {"constant", "cosine"}));
  CUSTODY_RETURN_IF_ERROR(r.get("optimizer.weight_decay", s.optimizer.weight_decay, 0.0f, 1.0f));
  CUSTODY_RETURN_IF_ERROR(r.get("data.kind", kind, {"idx", "synthetic", "csv"}));
  CUSTODY_RETURN_IF_ERROR(r.get("data.name", s.data.name));
  CUSTODY_RETURN_IF_ERROR(r.get("data.dir", s.data.dir));
  CUSTODY_RETURN_IF_ERROR(r.get("data.train_images", s.data.train_images));
  CUSTODY_RETURN_IF_ERROR(r.get("data.train_labels", s.data.train_labels));
  CUSTODY_RETURN_IF_ERROR(r.get("data.test_images", s.data.test_images));
  CUSTODY_RETURN_IF_ERROR(r.get("data.test_labels", s.data.test_labels));
  CUSTODY_RETURN_IF_ERROR(r.get("data.license", s.data.license));
  CUSTODY_RETURN_IF_ERROR(r.get("data.consent", s.data.consent));
  CUSTODY_RETURN_IF_ERROR(parse_terms(r, origin, s.data));
  CUSTODY_RETURN_IF_ERROR(r.get("data.without", s.data.without));
  for (const auto& w : s.data.without) {
    if (w.rfind("revocation:", 0) != 0) {
      return invalid_argument(origin + ": data.without holds '" + w + "'; it lists revocations (revocation:<16 hex>)");
    }
  }
  CUSTODY_RETURN_IF_ERROR(r.get("job.replaces", s.replaces));
  if (!s.replaces.empty() && s.replaces.find('@') == std::string::npos) {
    return invalid_argument(origin + ": job.replaces is a model version NAME@VERSION, not '" + s.replaces + "'");
  }
  CUSTODY_RETURN_IF_ERROR(r.get("data.synthetic.train_samples", s.data.synthetic_train, 1, 10000000));
  CUSTODY_RETURN_IF_ERROR(r.get("data.synthetic.test_samples", s.data.synthetic_test, 1, 10000000));
  CUSTODY_RETURN_IF_ERROR(r.get("data.synthetic.features", s.data.synthetic_features, 1, 1 << 16));
  CUSTODY_RETURN_IF_ERROR(r.get("data.synthetic.classes", s.data.synthetic_classes, 2, 256));
  std::string missing = "refuse";
  int64_t split_seed = static_cast<int64_t>(s.data.csv_split_seed);
  CUSTODY_RETURN_IF_ERROR(r.get("data.train", s.data.csv_train));
  CUSTODY_RETURN_IF_ERROR(r.get("data.test", s.data.csv_test));
  CUSTODY_RETURN_IF_ERROR(r.get("data.label", s.data.csv_label));
  CUSTODY_RETURN_IF_ERROR(r.get("data.missing", missing, {"refuse", "drop"}));
  CUSTODY_RETURN_IF_ERROR(r.get("data.test_fraction", s.data.csv_test_fraction, 1e-6, 0.999999));
  CUSTODY_RETURN_IF_ERROR(r.get("data.split_seed", split_seed, 0, INT64_MAX));
  s.data.csv_drop_missing = missing == "drop";
  s.data.csv_split_seed = static_cast<uint64_t>(split_seed);
  int64_t data_seed = static_cast<int64_t>(s.data.synthetic_seed);
  CUSTODY_RETURN_IF_ERROR(r.get("data.synthetic.seed", data_seed, 0, INT64_MAX));
  s.consistency = consistency == "asp"   ? Consistency::kAsp
                  : consistency == "ssp" ? Consistency::kSsp
                                         : Consistency::kBsp;
  CUSTODY_RETURN_IF_ERROR(parse_privacy(r, origin, s));
  CUSTODY_RETURN_IF_ERROR(r.unknown_keys_error());

  s.seed = static_cast<uint64_t>(seed);
  s.data.synthetic_seed = static_cast<uint64_t>(data_seed);
  s.optimizer.kind = parse_optimizer_kind(optimizer).value();
  s.optimizer.schedule = schedule == "cosine" ? OptimizerConfig::Schedule::kCosine
                                               : OptimizerConfig::Schedule::kConstant;
  s.data.kind = kind == "synthetic" ? DataSpec::Kind::kSynthetic
                : kind == "csv"     ? DataSpec::Kind::kCsv
                                    : DataSpec::Kind::kIdx;
  // Set, not merely present: reference.toml lists them, with their empty defaults, for idx.
  const bool csv_keys = !s.data.csv_train.empty() || !s.data.csv_test.empty() || !s.data.csv_label.empty();
  if (s.data.kind == DataSpec::Kind::kCsv) {
    // The default dir is Fashion-MNIST's; a table named relatively without a dir of its own
    // is where the job file's reader runs, not in there.
    if (!r.has("data.dir")) s.data.dir = ".";
    if (s.data.csv_train.empty()) {
      return invalid_argument(origin + ": data.kind = \"csv\" needs key 'data.train' (the CSV file of training "
                              "rows, with a header row)");
    }
    if (s.data.csv_label.empty()) {
      return invalid_argument(origin + ": data.kind = \"csv\" needs key 'data.label' (the header's name of the "
                              "label column)");
    }
    if (!s.data.csv_test.empty() && r.has("data.test_fraction")) {
      return invalid_argument(origin + ": keys 'data.test' and 'data.test_fraction' are exclusive: the test rows "
                              "are either a file of their own or a seeded fraction of data.train's");
    }
  } else if (csv_keys) {
    return invalid_argument(origin + ": keys 'data.train', 'data.test' and 'data.label' are for data.kind = "
                            "\"csv\"; set it, or use train_images/train_labels/... for IDX files");
  }
  if (s.data.name.empty()) {
    s.data.name = s.data.kind == DataSpec::Kind::kIdx   ? "fashion-mnist"
                  : s.data.kind == DataSpec::Kind::kCsv ? s.data.csv_train.substr(s.data.csv_train.rfind('/') + 1)
                      : "synthetic-" + std::to_string(s.data.synthetic_train) + "x" +
                            std::to_string(s.data.synthetic_features) + "-c" +
                            std::to_string(s.data.synthetic_classes) + "-s" + std::to_string(s.data.synthetic_seed);
  }
  if (s.data.kind == DataSpec::Kind::kSynthetic && s.data.synthetic_classes > s.classes) {
    return invalid_argument(origin + ": key 'model.classes' (" + std::to_string(s.classes) +
                            ") is smaller than 'data.synthetic.classes' (" +
                            std::to_string(s.data.synthetic_classes) + ")");
  }
  if (s.model == "softmax" && s.activation != "relu") {
    return invalid_argument(origin + ": key 'model.activation' is for an mlp's hidden layers; a softmax model "
                                     "has none");
  }
  if (s.model == "mlp" && s.hidden.empty()) {
    return invalid_argument(origin + ": key 'model.hidden' must list at least one layer size "
                                     "for an mlp (use model.type = \"softmax\" for none)");
  }
  if (s.data.kind == DataSpec::Kind::kSynthetic && s.data.synthetic_train < s.workers) {
    return invalid_argument(origin + ": key 'job.workers' (" + std::to_string(s.workers) +
                            ") exceeds the number of training samples");
  }
  return s;
}

std::string JobSpec::canonical_form() const {
  std::ostringstream o;
  o.precision(9);
  auto line = [&](const char* key, const auto& value) { o << key << " = " << value << "\n"; };
  auto list = [](const auto& values) {
    std::ostringstream l;
    l << "[";
    for (size_t i = 0; i < values.size(); ++i) l << (i ? ", " : "") << values[i];
    l << "]";
    return l.str();
  };
  line("job.name", name);
  line("job.epochs", epochs);
  line("job.batch_size", batch_size);
  line("job.workers", workers);
  line("job.seed", seed);
  line("job.consistency", to_string(consistency));
  if (consistency == Consistency::kSsp) line("job.staleness", staleness);
  line("job.checkpoint_every_steps", checkpoint_every_steps);
  line("job.init_from", init_from);
  line("model.type", model);
  line("model.hidden", model == "mlp" ? list(hidden) : "[]");
  line("model.classes", classes);
  if (!layers.empty()) {  // only for layered models, so that every other job keeps its hash
    std::string text;
    for (const LayerSpec& l : layers) {
      text += std::string(text.empty() ? "" : " ") + to_string(l.kind);
      if (l.kind == LayerKind::kDense) text += ":" + std::to_string(l.units);
      if (l.kind == LayerKind::kConv2D) text += ":" + std::to_string(l.units) + ":" + std::to_string(l.kernel);
      if (l.kind == LayerKind::kMaxPool) text += ":" + std::to_string(l.kernel);
    }
    line("model.layers", text);
    if (!input_shape.empty()) line("model.input_shape", list(input_shape));
  }
  // Only when not the default, so that every job spec written before it keeps its hash.
  if (activation != "relu") line("model.activation", activation);
  line("optimizer.type", to_string(optimizer.kind));
  line("optimizer.learning_rate", optimizer.learning_rate);
  line("optimizer.momentum", optimizer.momentum);
  line("optimizer.beta1", optimizer.beta1);
  line("optimizer.beta2", optimizer.beta2);
  line("optimizer.epsilon", optimizer.epsilon);
  line("optimizer.weight_decay", optimizer.weight_decay);
  line("optimizer.schedule", optimizer.schedule == OptimizerConfig::Schedule::kCosine ? "cosine" : "constant");
  line("data.kind", data.kind == DataSpec::Kind::kSynthetic ? "synthetic"
                    : data.kind == DataSpec::Kind::kCsv     ? "csv"
                                                            : "idx");
  line("data.name", data.name);
  if (data.kind == DataSpec::Kind::kCsv) {  // only for CSV jobs: other jobs keep their hashes
    o.precision(17);
    line("data.files", list(std::vector<std::string>{data.path(data.csv_train),
                                                     data.csv_test.empty() ? "" : data.path(data.csv_test)}));
    line("data.label", data.csv_label);
    line("data.missing", data.csv_drop_missing ? "drop" : "refuse");
    if (data.csv_test.empty()) {
      line("data.test_fraction", data.csv_test_fraction);
      line("data.split_seed", data.csv_split_seed);
    }
    o.precision(9);
  } else if (data.kind == DataSpec::Kind::kSynthetic) {
    line("data.synthetic", list(std::vector<int64_t>{data.synthetic_train, data.synthetic_test,
                                                     data.synthetic_features, data.synthetic_classes,
                                                     static_cast<int64_t>(data.synthetic_seed)}));
  } else {
    line("data.files", list(std::vector<std::string>{data.path(data.train_images), data.path(data.train_labels),
                                                     data.path(data.test_images), data.path(data.test_labels)}));
  }
  line("data.license", data.license);
  line("data.consent", list(data.consent));
  // Only when declared, so that the hashes of jobs without them stay what they were.
  if (!data.spdx.empty()) line("data.spdx", data.spdx);
  if (!data.purposes.empty()) line("data.purposes", list(data.purposes));
  if (!data.consent_purposes.empty()) line("data.consent_purposes", list(data.consent_purposes));
  if (!data.without.empty()) line("data.without", list(data.without));
  if (!replaces.empty()) line("job.replaces", replaces);
  if (privacy.enabled) {  // absent for other jobs, so their hashes stay what they were
    o.precision(17);
    line("privacy.target_epsilon", privacy.target_epsilon);
    line("privacy.delta", privacy.delta);
    line("privacy.noise_multiplier", privacy.noise_multiplier);
    line("privacy.clip_norm", privacy.clip_norm);
    line("privacy.sampling", to_string(privacy.sampling));
    line("privacy.max_noise_multiplier", privacy.max_noise_multiplier);
  }
  return o.str();
}

Result<JobSpec> read_job_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open job file '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_job_spec(ss.str(), path);
}

}  // namespace custody

namespace custody {

Result<std::string> retraining_spec(std::string_view text, const std::vector<std::string>& without,
                                    const std::string& replaces, const std::string& origin) {
  toml::table table;
  try {
    table = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    return invalid_argument(origin + ": " + std::string(e.description()));
  }
  if (!table.contains("job")) table.insert("job", toml::table{});
  if (!table.contains("data")) table.insert("data", toml::table{});
  auto* job = table["job"].as_table();
  auto* data = table["data"].as_table();
  if (!job || !data) return invalid_argument(origin + ": [job] and [data] must be tables");
  toml::array list;
  for (const auto& w : without) list.push_back(w);
  data->insert_or_assign("without", std::move(list));
  job->insert_or_assign("replaces", replaces);
  std::ostringstream out;
  out << "# Written by `custody retrain` (replaces " << replaces << "); the original job file is in the\n"
      << "# custody record of the run it replaces.\n"
      << table << "\n";
  // What it wrote must be a valid job, the same job but for the two keys.
  CUSTODY_RETURN_IF_ERROR(parse_job_spec(out.str(), origin + " (retraining)").status());
  return out.str();
}

}  // namespace custody
