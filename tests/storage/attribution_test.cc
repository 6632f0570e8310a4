// storage::attribute against a store holding a small synthetic run: its scores are the
// brute-force TracIn of the checkpoints stored (each example's full gradient, its last
// layer's part dotted), an input other than the recorded call's is refused, and
// self-influence ranks the records whose labels were flipped first.
#include "storage/attribution.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/dataset.h"
#include "core/hash.h"
#include "core/job_spec.h"
#include "core/partition.h"
#include "core/tracin.h"
#include "storage/checkpoint.h"
#include "storage/lineage_vocabulary.h"
#include "tests/test_dir.h"

namespace custody::storage {
namespace {

constexpr char kRun[] = "job-attr";

std::string job_text(int train) {
  return "[job]\nname = \"attr\"\nepochs = 4\nbatch_size = 10\nworkers = 2\n"
         "[model]\ntype = \"mlp\"\nhidden = [8]\nclasses = 4\n"
         "[optimizer]\ntype = \"sgd\"\nlearning_rate = 0.2\nschedule = \"cosine\"\n"
         "[data]\nkind = \"synthetic\"\n[data.synthetic]\ntrain_samples = " +
         std::to_string(train) + "\ntest_samples = 20\nfeatures = 12\nclasses = 4\nseed = 3\n";
}

class AttributionTest : public ::testing::Test {
 protected:
  // A run of `spec` recorded as the coordinator records one (spec, data set, shards and
  // workers, a checkpoint per epoch), trained here by plain SGD on `labels`.
  void record_run(const std::string& text, const std::vector<uint8_t>* labels = nullptr) {
    spec_ = parse_job_spec(text, "test").value();
    data_ = load_data(spec_.data).value();
    if (labels) data_.train.labels = *labels;
    model_ = std::make_unique<Model>(spec_.layer_sizes(data_.train.features));
    Batch b("submitted");
    b.entity(lineage::kind::kJobSpec, "jobspec:x", {{"text", text}});
    b.relation(lineage::rel::kSpecifiedBy, kRun, "jobspec:x");
    b.relation(lineage::rel::kConsumed, kRun, lineage::dataset_id(data_.version_hash),
               {{"train_samples", data_.train.count}});
    const auto shards = partition_range(data_.train.count, 2).value();
    for (uint32_t r = 0; r < 2; ++r) {
      b.relation(lineage::rel::kAssigned, kRun, lineage::node_entity_id("worker-" + std::to_string(r + 1)),
                 {{"role", "worker"},
                  {"rank", r},
                  {"attempt", 0},
                  {"shard", {{"index", r}, {"begin", shards[r].begin}, {"end", shards[r].end}}}});
    }
    ASSERT_TRUE(store_->write(b).is_ok());
    const uint64_t steps_per_epoch = shards[0].size() / spec_.batch_size;
    total_steps_ = steps_per_epoch * spec_.epochs;
    std::vector<float> p = model_->initial_parameters(spec_.seed), grad(model_->num_parameters());
    const Matrix x = features(data_.train, 0, data_.train.count);
    Workspace ws;
    for (uint64_t step = 1; step <= total_steps_; ++step) {
      const int64_t begin =
          static_cast<int64_t>(((step - 1) * spec_.batch_size) % (data_.train.count - spec_.batch_size));
      MatrixView batch(x.data() + begin * x.rows(), x.rows(), spec_.batch_size);
      model_->gradient(p.data(), batch, data_.train.labels.data() + begin, grad.data(), ws);
      const float lr = learning_rate_at(spec_.optimizer, step - 1, total_steps_);
      for (size_t i = 0; i < p.size(); ++i) p[i] -= lr * grad[i];
      if (step % steps_per_epoch == 0) {
        Batch c("checkpoint");
        CheckpointSpec cs;
        cs.job = kRun;
        cs.step = step;
        cs.epoch = static_cast<uint32_t>(step / steps_per_epoch);
        cs.final = step == total_steps_;
        auto id = add_checkpoint(c, *model_, p, cs);
        ASSERT_TRUE(id.is_ok());
        ASSERT_TRUE(store_->write(c).is_ok());
        checkpoints_.push_back({id.value(), step, p});
      }
    }
  }

  // A prediction of the final checkpoint on `rows` test records, recorded as serving does:
  // the caller sends raw pixel values (what it returns, and what the record hashes), the
  // model sees them scaled (core/input_contract.h).
  std::vector<float> record_prediction(uint32_t rows) {
    const Matrix x = features(data_.test, 0, rows);
    std::vector<float> inputs(data_.test.pixels.begin(), data_.test.pixels.begin() + x.size());
    Workspace ws;
    const Matrix probs =
        model_->predict(checkpoints_.back().values.data(), MatrixView(x.data(), x.rows(), rows), ws);
    json predictions = json::array(), ids = json::array();
    for (uint32_t r = 0; r < rows; ++r) {
      Eigen::Index best = 0;
      probs.col(r).maxCoeff(&best);
      classes_.push_back(static_cast<int>(best));
      ids.push_back(lineage::prediction_id("00112233aabbccdd", r));
      predictions.push_back({{"id", ids.back()}, {"class", best}, {"probability", probs(best, r)}});
    }
    Batch b("predict");
    b.usage({{"call_id", lineage::call_id("00112233aabbccdd")},
             {"action", lineage::action::kPredict},
             {"target", checkpoints_.back().id},
             {"principal", "principal:alice"},
             {"rows", rows},
             {"input_sha256", sha256_hex(inputs.data(), inputs.size() * sizeof(float))},
             {"prediction_ids", ids},
             {"predictions", predictions},
             {"success", true}});
    EXPECT_TRUE(store_->write(b).is_ok());
    return inputs;
  }

  struct Stored {
    std::string id;
    uint64_t step;
    std::vector<float> values;
  };
  std::unique_ptr<CustodyStore> store_ = CustodyStore::in_memory();
  JobSpec spec_;
  DataSplit data_;
  std::unique_ptr<Model> model_;
  uint64_t total_steps_ = 0;
  std::vector<Stored> checkpoints_;
  std::vector<int> classes_;
};

// The brute force: each example's whole gradient (a batch of one), its last layer's part.
std::vector<float> gradient_of(const Model& m, const std::vector<float>& p, const float* x, uint8_t y) {
  std::vector<float> g(m.num_parameters());
  Workspace ws;
  m.gradient(p.data(), MatrixView(x, m.input_size(), 1), &y, g.data(), ws);
  return g;
}

AttributionRequest request(const std::string& prediction, std::vector<float> inputs, uint32_t rows) {
  AttributionRequest r;
  r.prediction_id = prediction;
  r.inputs = std::move(inputs);
  r.rows = rows;
  r.features = 12;
  return r;
}

TEST_F(AttributionTest, ScoresAreTheBruteForceTracInOfTheStoredCheckpoints) {
  record_run(job_text(200));
  const auto inputs = record_prediction(3);
  AttributionRequest r;
  r.prediction_id = lineage::prediction_id("00112233aabbccdd", 1);
  r.inputs = inputs;
  r.rows = 3;
  r.features = 12;
  r.top = 200;  // every record, so each score is checked
  auto answer = attribute(*store_, r);
  ASSERT_TRUE(answer.is_ok()) << answer.status().message();
  const json& a = answer.value();
  EXPECT_EQ(a["kind"], "prediction");
  EXPECT_EQ(a["test_label"], classes_[1]);
  EXPECT_EQ(a["label_source"], "predicted");
  EXPECT_EQ(a["records_scored"], 200);
  ASSERT_EQ(a["checkpoints"].size(), 4u);
  ASSERT_EQ(a["proponents"].size(), 200u);

  const size_t last_layer = model_->tensors()[model_->tensors().size() - 2].offset;
  std::vector<double> expected(200, 0.0);
  const Matrix x = features(data_.train, 0, 200);
  uint64_t since = 0;
  for (const auto& c : checkpoints_) {
    double lr = 0;  // the mean rate of the updates since the checkpoint before
    for (uint64_t t = since; t < c.step; ++t) lr += learning_rate_at(spec_.optimizer, t, total_steps_);
    lr /= double(c.step - since);
    since = c.step;
    // The prediction's row as the model saw it: the raw pixels sent, scaled as serving did.
    const Matrix test_x = features(data_.test, 0, 3);
    const auto test = gradient_of(*model_, c.values, test_x.data() + 12, static_cast<uint8_t>(classes_[1]));
    for (int i = 0; i < 200; ++i) {
      const auto g = gradient_of(*model_, c.values, x.data() + i * 12, data_.train.labels[i]);
      double dot = 0;
      for (size_t k = last_layer; k < g.size(); ++k) dot += double(g[k]) * test[k];
      expected[i] += lr * dot;
    }
  }
  double largest = 0;
  for (double e : expected) largest = std::max(largest, std::abs(e));
  ASSERT_GT(largest, 1e-4);
  double previous = 1e30;
  for (const auto& p : a["proponents"]) {
    const int64_t i = p["index"];
    EXPECT_NEAR(p["score"].get<double>(), expected[i], 1e-4 * largest) << "record " << i;
    EXPECT_LE(p["score"].get<double>(), previous);  // ranked, highest first
    previous = p["score"];
    EXPECT_EQ(p["label"], data_.train.labels[i]);
    EXPECT_EQ(p["dataset"], lineage::dataset_id(data_.version_hash));
    const int shard = i < 100 ? 0 : 1;
    EXPECT_EQ(p["shard"], shard);
    EXPECT_EQ(p["workers"], json::array({"worker-" + std::to_string(shard + 1)}));
  }
  EXPECT_EQ(a["opponents"][0]["index"], a["proponents"][199]["index"]);
}

TEST_F(AttributionTest, AGivenLabelIsUsedAndSaidSo) {
  record_run(job_text(200));
  const auto inputs = record_prediction(2);
  AttributionRequest r = request(lineage::prediction_id("00112233aabbccdd", 0), inputs, 2);
  r.label = (classes_[0] + 1) % 4;
  auto a = attribute(*store_, r);
  ASSERT_TRUE(a.is_ok()) << a.status().message();
  EXPECT_EQ(a.value()["test_label"], (classes_[0] + 1) % 4);
  EXPECT_EQ(a.value()["label_source"], "given");
  r.label = 9;
  EXPECT_EQ(attribute(*store_, r).status().code(), ErrorCode::kInvalidArgument);
}

TEST_F(AttributionTest, AnInputOtherThanTheRecordedCallsIsRefusedNamingBothHashes) {
  record_run(job_text(200));
  auto inputs = record_prediction(2);
  const std::string recorded = sha256_hex(inputs.data(), inputs.size() * sizeof(float));
  inputs[5] += 1.0f;  // one pixel one step brighter
  AttributionRequest r = request(lineage::prediction_id("00112233aabbccdd", 0), inputs, 2);
  auto a = attribute(*store_, r);
  ASSERT_EQ(a.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(a.status().message().find(recorded), std::string::npos) << a.status().message();
  EXPECT_NE(a.status().message().find(sha256_hex(inputs.data(), inputs.size() * sizeof(float))),
            std::string::npos);
  // One row of a two-row call is not that call's input either.
  inputs.resize(12);
  r.inputs = inputs;
  r.rows = 1;
  EXPECT_EQ(attribute(*store_, r).status().code(), ErrorCode::kInvalidArgument);
}

TEST_F(AttributionTest, TheCallIsFoundAmongTheBatchesPredictSentTheInputIn) {
  record_run(job_text(200));
  const auto call = record_prediction(2);
  AttributionRequest exact = request(lineage::prediction_id("00112233aabbccdd", 1), call, 2);
  exact.top = 5;
  auto expected = attribute(*store_, exact);
  ASSERT_TRUE(expected.is_ok()) << expected.status().message();
  // The file held two rows more, sent first: `custody predict --batch 2` made two calls.
  std::vector<float> file(24, 0.5f);
  file.insert(file.end(), call.begin(), call.end());
  AttributionRequest r = request(exact.prediction_id, file, 4);
  r.top = 5;
  r.batch_rows = 2;
  auto found = attribute(*store_, r);
  ASSERT_TRUE(found.is_ok()) << found.status().message();
  EXPECT_EQ(found.value()["proponents"], expected.value()["proponents"]);
  EXPECT_EQ(found.value()["opponents"], expected.value()["opponents"]);
  // Batches of 3 never start at row 2: that call is not among them.
  r.batch_rows = 3;
  EXPECT_EQ(attribute(*store_, r).status().code(), ErrorCode::kInvalidArgument);
}

TEST_F(AttributionTest, AnUnknownPredictionIsNotFound) {
  record_run(job_text(200));
  AttributionRequest r = request("pred-ffffffffffffffff-0", std::vector<float>(12), 1);
  EXPECT_EQ(attribute(*store_, r).status().code(), ErrorCode::kNotFound);
  r.prediction_id = "ckpt-1";
  EXPECT_EQ(attribute(*store_, r).status().code(), ErrorCode::kInvalidArgument);
}

// The synthetic set written as IDX files, its labels as given: a data set of its own.
void write_idx(const std::filesystem::path& dir, const LabeledSet& set, const std::vector<uint8_t>& labels) {
  auto be32 = [](std::string& s, uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) s.push_back(static_cast<char>((v >> shift) & 0xff));
  };
  for (const char* split : {"train", "test"}) {
    const bool train = split[1] == 'r';
    const int64_t count = train ? set.count : 20;
    std::string images, label_bytes;
    be32(images, 0x803);
    be32(images, static_cast<uint32_t>(count));
    be32(images, 3);
    be32(images, static_cast<uint32_t>(set.features / 3));
    images.append(reinterpret_cast<const char*>(set.pixels.data()),
                  static_cast<size_t>(count * set.features));
    be32(label_bytes, 0x801);
    be32(label_bytes, static_cast<uint32_t>(count));
    label_bytes.append(reinterpret_cast<const char*>(labels.data()), static_cast<size_t>(count));
    std::ofstream(dir / (std::string(split) + "-images")) << images;
    std::ofstream(dir / (std::string(split) + "-labels")) << label_bytes;
  }
}

std::string idx_job_text(const std::string& dir) {
  return "[job]\nname = \"attr\"\nepochs = 6\nbatch_size = 10\nworkers = 2\n"
         "[model]\ntype = \"mlp\"\nhidden = [16]\nclasses = 4\n"
         "[optimizer]\ntype = \"sgd\"\nlearning_rate = 0.2\n"
         "[data]\nkind = \"idx\"\ndir = \"" +
         dir +
         "\"\ntrain_images = \"train-images\"\n"
         "train_labels = \"train-labels\"\ntest_images = \"test-images\"\ntest_labels = \"test-labels\"\n";
}

TEST_F(AttributionTest, SelfInfluenceRanksFlippedLabelsFirst) {
  testing::TestDir dir("custody-attribution");
  const int n = 1000;
  const LabeledSet set = make_synthetic(n, 12, 4, 3);
  std::vector<uint8_t> labels = set.labels;
  std::mt19937_64 rng(5);
  std::vector<bool> flipped(n, false);
  for (int i = 0; i < n; ++i) {
    if (rng() % 10 == 0) {
      labels[i] = static_cast<uint8_t>((labels[i] + 1 + rng() % 3) % 4);
      flipped[i] = true;
    }
  }
  write_idx(dir.path(), set, labels);
  record_run(idx_job_text(dir.string()));
  const int total = static_cast<int>(std::count(flipped.begin(), flipped.end(), true));
  AttributionRequest r;
  r.self_influence_model = checkpoints_.back().id;
  r.top = static_cast<uint32_t>(total);
  auto a = attribute(*store_, r);
  ASSERT_TRUE(a.is_ok()) << a.status().message();
  EXPECT_EQ(a.value()["kind"], "self_influence");
  int in_top = 0;
  for (const auto& rec : a.value()["records"]) in_top += flipped[rec["index"].get<int64_t>()];
  const double fraction = double(in_top) / total, chance = double(total) / n;
  std::printf("self-influence: %d of the top %d records have flipped labels (%.2f; chance %.2f)\n", in_top,
              total, fraction, chance);
  EXPECT_GT(fraction, 4 * chance);

  // The files changed since the run (one label more flipped): its records are no longer
  // the ones it trained on, and attribution says so rather than score other data.
  labels[0] = static_cast<uint8_t>((labels[0] + 1) % 4);
  write_idx(dir.path(), set, labels);
  auto changed = attribute(*store_, r);
  ASSERT_EQ(changed.status().code(), ErrorCode::kFailedPrecondition);
  EXPECT_NE(changed.status().message().find("now hold data set"), std::string::npos)
      << changed.status().message();
}

}  // namespace
}  // namespace custody::storage
