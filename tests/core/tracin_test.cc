#include "core/tracin.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "core/dataset.h"
#include "core/optimizer.h"

namespace custody {
namespace {

struct Records {
  Matrix x;
  std::vector<uint8_t> y;
  MatrixView view() const { return MatrixView(x.data(), x.rows(), x.cols()); }
};

Records random_records(int features, int n, int classes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Records r{Matrix(features, n), std::vector<uint8_t>(n)};
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < features; ++i) r.x(i, j) = normal(rng);
    r.y[j] = static_cast<uint8_t>(rng() % classes);
  }
  return r;
}

// A run's checkpoints: SGD on the records, a snapshot every `every` steps.
std::vector<std::vector<float>> train(const Model& model, const Records& data, int steps, int every, float lr,
                                      int batch = 8) {
  std::vector<float> p = model.initial_parameters(11), grad(model.num_parameters());
  std::vector<std::vector<float>> snapshots;
  Workspace ws;
  for (int s = 0; s < steps; ++s) {
    const int begin = (s * batch) % static_cast<int>(data.x.cols() - batch);
    MatrixView b(data.x.data() + static_cast<size_t>(begin) * data.x.rows(), data.x.rows(), batch);
    model.gradient(p.data(), b, data.y.data() + begin, grad.data(), ws);
    for (size_t i = 0; i < p.size(); ++i) p[i] -= lr * grad[i];
    if ((s + 1) % every == 0) snapshots.push_back(p);
  }
  return snapshots;
}

// The brute force: each example's full gradient (a batch of one: Model::gradient's mean is
// the example's own gradient), and the dot product over the last layer's weight and bias.
std::vector<float> example_gradient(const Model& model, const std::vector<float>& p, const Records& r,
                                    int i) {
  std::vector<float> g(model.num_parameters());
  Workspace ws;
  MatrixView x(r.x.data() + static_cast<size_t>(i) * r.x.rows(), r.x.rows(), 1);
  model.gradient(p.data(), x, &r.y[i], g.data(), ws);
  return g;
}
double last_layer_dot(const Model& model, const std::vector<float>& a, const std::vector<float>& b) {
  const auto tensors = model.tensors();
  const size_t begin = tensors[tensors.size() - 2].offset;  // last layer's weight, then its bias
  double dot = 0;
  for (size_t k = begin; k < model.num_parameters(); ++k) dot += double(a[k]) * double(b[k]);
  return dot;
}

void expect_scores_match_brute_force(const std::vector<int>& sizes) {
  Model model(sizes);
  const int classes = sizes.back();
  const Records data = random_records(sizes.front(), 64, classes, 1);
  const auto snapshots = train(model, data, 24, 6, 0.1f);
  ASSERT_EQ(snapshots.size(), 4u);
  const std::vector<float> lrs{0.1f, 0.08f, 0.05f, 0.02f};
  std::vector<TracinCheckpoint> cps;
  for (size_t c = 0; c < snapshots.size(); ++c) cps.push_back({snapshots[c].data(), lrs[c]});
  auto scorer = TracinScorer::make(model, cps);
  ASSERT_TRUE(scorer.is_ok()) << scorer.status().message();
  const Records test = random_records(sizes.front(), 3, classes, 2);
  scorer.value().set_test(test.view(), test.y.data());
  ASSERT_EQ(scorer.value().test_points(), 3);

  std::vector<float> scores(data.x.cols() * 3), self(data.x.cols());
  Workspace ws;
  scorer.value().score(data.view(), data.y.data(), scores.data(), ws);
  scorer.value().self_influence(data.view(), data.y.data(), self.data(), ws);

  double largest = 0;
  for (float s : scores) largest = std::max(largest, std::abs(double(s)));
  ASSERT_GT(largest, 1e-3);  // the comparison below is not between zeros
  for (int i = 0; i < data.x.cols(); ++i) {
    double expected_self = 0;
    std::vector<double> expected(3, 0.0);
    for (size_t c = 0; c < snapshots.size(); ++c) {
      const auto g = example_gradient(model, snapshots[c], data, i);
      expected_self += lrs[c] * last_layer_dot(model, g, g);
      for (int j = 0; j < 3; ++j) {
        expected[j] += lrs[c] * last_layer_dot(model, g, example_gradient(model, snapshots[c], test, j));
      }
    }
    for (int j = 0; j < 3; ++j) {
      EXPECT_NEAR(scores[i * 3 + j], expected[j], 1e-4 * largest + 1e-6)
          << "record " << i << ", test point " << j;
    }
    EXPECT_NEAR(self[i], expected_self, 1e-4 * std::abs(expected_self) + 1e-6) << "record " << i;
  }
}

TEST(Tracin, MlpScoresMatchLastLayerGradientDotProductsOfEveryCheckpoint) {
  expect_scores_match_brute_force({6, 5, 4, 3});
}

TEST(Tracin, SoftmaxRegressionScoresAreTheFullGradientTracIn) {
  // One layer: the last layer's gradient is the whole gradient, so this is exact TracInCP.
  expect_scores_match_brute_force({7, 4});
}

TEST(Tracin, ARecordScoredAgainstItselfIsItsSelfInfluence) {
  Model model({8, 6, 3});
  Records data = random_records(8, 40, 3, 3);
  const auto snapshots = train(model, data, 20, 5, 0.1f);
  std::vector<TracinCheckpoint> cps;
  for (size_t c = 0; c < snapshots.size(); ++c) cps.push_back({snapshots[c].data(), 0.1f / float(c + 1)});
  auto scorer = TracinScorer::make(model, cps).value();
  std::vector<float> self(40), scores(40);
  Workspace ws;
  scorer.self_influence(data.view(), data.y.data(), self.data(), ws);
  Records test{data.x.col(17), {data.y[17]}};
  scorer.set_test(test.view(), test.y.data());
  scorer.score(data.view(), data.y.data(), scores.data(), ws);
  EXPECT_GT(self[17], 0.0f);
  EXPECT_NEAR(scores[17], self[17], 1e-5f * self[17]);
  // Cauchy-Schwarz per checkpoint: no record is more influential on it than it is on itself
  // times the other's self-influence.
  for (int i = 0; i < 40; ++i) EXPECT_LE(scores[i] * scores[i], self[i] * self[17] * (1 + 1e-4f)) << i;
}

TEST(Tracin, SelfInfluenceRanksFlippedLabelsFirst) {
  // Synthetic classes (one prototype each plus noise); 10% of the labels flipped.
  const int classes = 4, n = 1000;
  LabeledSet set = make_synthetic(n, 32, classes, 7);
  std::mt19937_64 rng(9);
  std::vector<bool> flipped(n, false);
  for (int i = 0; i < n; ++i) {
    if (rng() % 10 == 0) {
      set.labels[i] = static_cast<uint8_t>((set.labels[i] + 1 + rng() % (classes - 1)) % classes);
      flipped[i] = true;
    }
  }
  const int total_flipped = static_cast<int>(std::count(flipped.begin(), flipped.end(), true));
  Records data{features(set, 0, n), set.labels};
  Model model({32, 16, classes});
  const auto snapshots = train(model, data, 600, 100, 0.05f, 16);
  std::vector<TracinCheckpoint> cps;
  for (const auto& s : snapshots) cps.push_back({s.data(), 0.05f});
  auto scorer = TracinScorer::make(model, cps).value();
  std::vector<float> self(n);
  Workspace ws;
  scorer.self_influence(data.view(), data.y.data(), self.data(), ws);
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return self[a] > self[b]; });
  int in_top = 0;
  for (int k = 0; k < total_flipped; ++k) in_top += flipped[order[k]];
  const double fraction = double(in_top) / total_flipped, chance = double(total_flipped) / n;
  std::printf("self-influence: %d of the top %d records are flipped (%.2f; chance %.2f)\n", in_top,
              total_flipped, fraction, chance);
  EXPECT_GT(fraction, 5 * chance);
}

TEST(Tracin, RefusesAScorerWithoutCheckpointsOrWithANonFiniteLearningRate) {
  Model model({4, 3});
  auto none = TracinScorer::make(model, {});
  EXPECT_EQ(none.status().code(), ErrorCode::kInvalidArgument);
  std::vector<float> p(model.num_parameters());
  auto nan = TracinScorer::make(model, {{p.data(), std::nanf("")}});
  EXPECT_EQ(nan.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(nan.status().message().find("learning rate"), std::string::npos);
}

TEST(Tracin, LearningRateAtACheckpointFollowsTheJobsSchedule) {
  OptimizerConfig cosine;
  cosine.learning_rate = 0.1f;
  cosine.schedule = OptimizerConfig::Schedule::kCosine;
  EXPECT_FLOAT_EQ(learning_rate_at(cosine, 0, 100), 0.1f);
  EXPECT_NEAR(learning_rate_at(cosine, 50, 100), 0.05f, 1e-6);
  // A checkpoint's weight: the mean over the updates that led to it, so the last one of a
  // cosine run (whose rate at its own step is 0) still counts.
  EXPECT_NEAR(interval_learning_rate(cosine, 0, 1, 100), 0.1f, 1e-7);
  EXPECT_GT(interval_learning_rate(cosine, 75, 100, 100), 0.0f);
  EXPECT_LT(interval_learning_rate(cosine, 75, 100, 100), learning_rate_at(cosine, 75, 100));
  double mean = 0;
  for (int t = 20; t < 40; ++t) mean += learning_rate_at(cosine, t, 100) / 20.0;
  EXPECT_NEAR(interval_learning_rate(cosine, 20, 40, 100), mean, 1e-6);
  OptimizerConfig constant;
  constant.learning_rate = 0.03f;
  EXPECT_FLOAT_EQ(learning_rate_at(constant, 70, 100), 0.03f);
  EXPECT_FLOAT_EQ(interval_learning_rate(constant, 10, 70, 100), 0.03f);
}

// A CNN's TracIn uses its last dense layer: the factors' outer product is exactly that
// layer's weight gradient of the example, the last block of the model's gradient.
TEST(Tracin, ACnnsFactorsAreItsLastDenseLayersGradient) {
  auto made = Model::parse_architecture("1x6x6 conv2d:3:3 maxpool:2 flatten dense:5 dense:4");
  ASSERT_TRUE(made.is_ok());
  const Model& model = made.value();
  const Records r = random_records(36, 300, 4, 3);  // > 256: predict runs in chunks
  const std::vector<float> p = model.initial_parameters(5);
  Workspace ws;
  const LastLayerFactors f = last_layer_factors(model, p.data(), r.view(), r.y.data(), ws);
  ASSERT_EQ(f.inputs.rows(), 5);
  ASSERT_EQ(f.inputs.cols(), 300);
  std::vector<float> grad(model.num_parameters());
  for (int i : {0, 150, 299}) {
    model.gradient(p.data(), MatrixView(r.x.data() + i * 36, 36, 1), r.y.data() + i, grad.data(), ws);
    const Model::Tensor w = model.tensors()[4];  // layer5.weight, 4 x 5 column-major
    ASSERT_EQ(w.name, "layer5.weight");
    const Matrix outer = f.errors.col(i) * f.inputs.col(i).transpose();
    const Eigen::Map<const Matrix> g(grad.data() + w.offset, 4, 5);
    EXPECT_LT((outer - g).cwiseAbs().maxCoeff(), 1e-5f) << "example " << i;
  }
}

}  // namespace
}  // namespace custody
