// A training job as its TOML job file describes it (configs/jobs/reference.toml documents
// every key with its default; a test holds it to the parser). The spec travels between nodes as its text; every node parses it with this one
// function, so the coordinator, the servers and the workers cannot disagree about it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/config_reader.h"
#include "core/error.h"
#include "core/model.h"
#include "core/optimizer.h"

namespace custody {

struct DataSpec {
  enum class Kind { kIdx, kSynthetic, kCsv };
  Kind kind = Kind::kIdx;
  // Default: "fashion-mnist" for idx data; for synthetic data a name that says how it was
  // drawn ("synthetic-2000x32-c4-s7"), so two different synthetic sets never share a name.
  std::string name;
  std::string dir = "/usr/share/datasets/fashion-mnist";
  std::string train_images = "train-images-idx3-ubyte.gz";
  std::string train_labels = "train-labels-idx1-ubyte.gz";
  std::string test_images = "t10k-images-idx3-ubyte.gz";
  std::string test_labels = "t10k-labels-idx1-ubyte.gz";
  std::string license;               // recorded in lineage
  std::vector<std::string> consent;  // consent tags, recorded in lineage
  // Machine-readable terms (docs/ARCHITECTURE.md, "Withdrawal, taint and purposes"):
  // the licence's SPDX identifier ("LicenseRef-NAME" for one SPDX does not list), the
  // purposes the licence allows, and the purposes the data's people consented to. Empty:
  // not declared (that clause restricts nothing). Every model derived from the data may be
  // used only for a purpose every declaration upstream of it allows.
  std::string spdx;
  std::vector<std::string> purposes;
  std::vector<std::string> consent_purposes;
  // Retraining without withdrawn records: revocations ("revocation:<16 hex>") of records
  // of this data set. The coordinator reads their record indices from the custody store;
  // no worker reads those records, and the job's data set is a new version whose identity
  // includes the exclusion list (`custody retrain` writes this key).
  std::vector<std::string> without;
  // kind == kSynthetic
  int64_t synthetic_train = 2000;
  int64_t synthetic_test = 500;
  int synthetic_features = 32;
  int synthetic_classes = 4;
  uint64_t synthetic_seed = 7;
  // kind == kCsv (core/csv_table.h): a table with a header row. `train` is required; the
  // test rows are `test` if given, else a seeded `test_fraction` of train's kept rows.
  // `label` names the label column; every other column is a numeric feature. A row with a
  // missing or non-numeric cell is refused (the job is) or dropped, as `missing` says.
  std::string csv_train, csv_test, csv_label;
  bool csv_drop_missing = false;  // missing = "drop"; default "refuse"
  double csv_test_fraction = 0.2;
  uint64_t csv_split_seed = 7;

  // dir/name, or name itself when it is absolute.
  std::string path(const std::string& file) const;
};

// BSP: every step waits for all workers' gradients of that step. ASP: each gradient is
// applied as it comes. SSP: applied as they come, but a worker may run at most
// `staleness` steps ahead of the slowest worker of the job.
enum class Consistency { kBsp, kAsp, kSsp };
const char* to_string(Consistency c);

// Differentially private training (DP-SGD), the job file's [privacy] section; see
// docs/ARCHITECTURE.md "Differential privacy". Exactly one of target_epsilon and
// noise_multiplier is set; the coordinator calibrates the other before the job starts
// (core/privacy.h) and refuses a job whose target cannot be reached.
struct PrivacySpec {
  enum class Sampling { kPoisson, kShuffled };
  bool enabled = false;         // a [privacy] section is present
  double target_epsilon = 0;    // 0: not set (noise_multiplier is)
  double delta = 0;             // required; must be below 1 / (training examples)
  double noise_multiplier = 0;  // sigma: noise std / clip_norm; 0: calibrated from target_epsilon
  double clip_norm = 1.0;       // C: each example's gradient is clipped to this L2 norm
  // kPoisson: every example joins each step's batch independently with probability q (what
  // the accountant assumes). kShuffled: fixed-size batches of a shuffled order; the
  // privacy statement then says the epsilon is the Poisson analysis's, not a proof.
  Sampling sampling = Sampling::kPoisson;
  // Calibration gives up above this sigma: a job needing more is refused. Default: 100
  double max_noise_multiplier = 100;
};
const char* to_string(PrivacySpec::Sampling s);

struct JobSpec {
  std::string name = "job";
  std::string model = "mlp";       // "mlp", "softmax" or "layers" (model.layers is set)
  std::vector<int> hidden{256, 128};  // mlp only
  std::string activation = "relu";    // mlp and layers: the hidden layers' "relu" or "tanh"
  int classes = 10;                   // layers: the last dense layer's units
  // model = "layers": the model as a list of layers (configs/jobs/fashion_cnn.toml), and
  // the sample's [channels, height, width]; empty: a square one-channel image when the
  // layers need one (IDX images: 28x28 from 784 pixels), else a flat feature vector.
  std::vector<LayerSpec> layers;
  std::vector<int> input_shape;
  int epochs = 10;
  int batch_size = 64;  // per worker and step
  int workers = 2;
  uint64_t seed = 42;
  Consistency consistency = Consistency::kBsp;
  int staleness = 2;  // ssp only: the bound s
  // Steps (per worker) between checkpoints; 0: at the end of every epoch. The last step
  // is always checkpointed.
  int64_t checkpoint_every_steps = 0;
  // Fine-tune: start from this checkpoint (an id, or a model as NAME@VERSION) instead of
  // seeded initial weights; recorded as derived_from in lineage.
  std::string init_from;
  // Retraining: the model version ("NAME@V") this job's model replaces, recorded as
  // `replaces` between the two versions when it completes (`custody retrain` writes it).
  std::string replaces;
  OptimizerConfig optimizer;
  DataSpec data;
  PrivacySpec privacy;
  std::string text;  // the job file as submitted

  // A canonical text of every setting (defaults included, the file's comments and layout
  // not), so that two files meaning the same job hash the same.
  std::string canonical_form() const;

  // {input, hidden..., classes}; softmax regression has no hidden layers. A layered model:
  // its Model::layer_sizes() (each layer's output size), {input, classes} if it cannot be built.
  std::vector<int> layer_sizes(int input_features) const;

  // The job's model for data with input_features values per sample. Errors name the
  // model.* key and what does not fit (a layer larger than its input, an input_shape
  // that does not multiply to the data's features).
  Result<Model> make_model(int input_features) const;
};

// Parses and validates a job file. origin names it in errors ("configs/jobs/x.toml").
// Unknown keys, wrong types and impossible values are invalid-argument errors that name
// the key.
Result<JobSpec> parse_job_spec(std::string_view toml_text, const std::string& origin);
// The same, listing in *reads every key the parser asked for, with its default and the
// value taken (ConfigReader::KeyRead). With an empty text: every key a job file accepts and
// its default, from the parser itself, so tests/core/job_reference_test.cc can hold
// configs/jobs/reference.toml to it (a key added to the parser fails that test until it
// is documented there). A key the parser reads only under a condition is listed only when
// the condition holds: read every key unconditionally (as the parser does now), checking
// combinations afterwards.
Result<JobSpec> parse_job_spec(std::string_view toml_text, const std::string& origin,
                               std::vector<ConfigReader::KeyRead>* reads);
Result<JobSpec> read_job_file(const std::string& path);

// The job file `text` again, for a retraining: with `data.without` set to `without` and
// `job.replaces` to `replaces` (NAME@V), every other key as it was (comments and layout are
// not kept; the original text stays in the custody record).
Result<std::string> retraining_spec(std::string_view text, const std::vector<std::string>& without,
                                    const std::string& replaces, const std::string& origin);

}  // namespace custody
