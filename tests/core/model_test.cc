#include "core/model.h"

#include <gtest/gtest.h>

#include <random>

#include "core/dataset.h"
#include "core/optimizer.h"

namespace custody {
namespace {

struct SmallBatch {
  Matrix x;
  std::vector<uint8_t> y;
};

SmallBatch random_batch(int features, int batch, int classes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  SmallBatch b{Matrix(features, batch), std::vector<uint8_t>(batch)};
  for (int j = 0; j < batch; ++j) {
    for (int i = 0; i < features; ++i) b.x(i, j) = n(rng);
    b.y[j] = static_cast<uint8_t>(rng() % classes);
  }
  return b;
}

double mean_loss(const Model& m, const std::vector<float>& p, const SmallBatch& b) {
  Workspace ws;
  MatrixView v(b.x.data(), b.x.rows(), b.x.cols());
  return m.evaluate(p.data(), v, b.y.data(), ws).loss_sum / static_cast<double>(b.x.cols());
}

// Central finite differences in double-checked float: every parameter of a small MLP.
void check_gradient(const std::vector<int>& sizes, Activation activation = Activation::kRelu) {
  Model m(sizes, activation);
  std::vector<float> p = m.initial_parameters(3);
  // Non-zero biases, so their gradients are exercised away from the ReLU kink at 0.
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> u(-0.1f, 0.1f);
  for (float& v : p) v += u(rng);
  SmallBatch b = random_batch(sizes.front(), 7, sizes.back(), 11);
  std::vector<float> g(m.num_parameters());
  Workspace ws;
  MatrixView v(b.x.data(), b.x.rows(), b.x.cols());
  m.gradient(p.data(), v, b.y.data(), g.data(), ws);
  const float eps = 1e-2f;
  for (size_t i = 0; i < p.size(); ++i) {
    std::vector<float> plus = p, minus = p;
    plus[i] += eps;
    minus[i] -= eps;
    const double numeric = (mean_loss(m, plus, b) - mean_loss(m, minus, b)) / (2 * eps);
    EXPECT_NEAR(g[i], numeric, 2e-3 + 2e-2 * std::abs(numeric)) << "parameter " << i;
  }
}

TEST(ModelTest, SoftmaxGradientMatchesFiniteDifferences) { check_gradient({5, 3}); }
TEST(ModelTest, MlpGradientMatchesFiniteDifferences) { check_gradient({6, 5, 4, 3}); }
TEST(ModelTest, TanhMlpGradientMatchesFiniteDifferences) { check_gradient({6, 5, 4, 3}, Activation::kTanh); }

TEST(ModelTest, TanhIsAnotherFunctionOfTheSameParametersAndItsClippedSumIsBounded) {
  Model relu({6, 5, 3}), tanh_model({6, 5, 3}, Activation::kTanh);
  EXPECT_EQ(relu.num_parameters(), tanh_model.num_parameters());
  EXPECT_EQ(tanh_model.activation(), Activation::kTanh);
  auto p = relu.initial_parameters(4);
  SmallBatch b = random_batch(6, 9, 3, 8);
  MatrixView v(b.x.data(), 6, 9);
  Workspace ws;
  const Matrix a = relu.predict(p.data(), v, ws), t = tanh_model.predict(p.data(), v, ws);
  EXPECT_GT((a - t).cwiseAbs().maxCoeff(), 1e-4f) << "the activation changes the function";
  // DP-SGD's clipped sum with tanh: each example moves it by at most C, as with ReLU.
  std::vector<float> g(tanh_model.num_parameters());
  tanh_model.clipped_gradient_sum(p.data(), v, b.y.data(), 0.05f, g.data(), ws);
  EXPECT_LE(Eigen::Map<Vector>(g.data(), static_cast<Eigen::Index>(g.size())).norm(), 9 * 0.05f + 1e-5f);
  EXPECT_EQ(parse_activation("tanh"), Activation::kTanh);
  EXPECT_EQ(parse_activation("sigmoid"), std::nullopt);
  EXPECT_STREQ(to_string(Activation::kTanh), "tanh");
}

TEST(ModelTest, ParameterLayoutCountsWeightsAndBiases) {
  Model m({784, 256, 128, 10});
  EXPECT_EQ(m.num_parameters(), 784u * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10);
  EXPECT_EQ(m.num_layers(), 3);
}

TEST(ModelTest, InitialParametersAreDeterministicPerSeed) {
  Model m({10, 4, 3});
  EXPECT_EQ(m.initial_parameters(1), m.initial_parameters(1));
  EXPECT_NE(m.initial_parameters(1), m.initial_parameters(2));
}

TEST(ModelTest, MakeRefusesImpossibleShapes) {
  EXPECT_EQ(Model::make({784}).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(Model::make({784, 0, 10}).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(Model::make({784, 1}).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(Model::make({784, 10}).is_ok());
}

TEST(ModelTest, PredictReturnsProbabilitiesThatSumToOne) {
  Model m({4, 6, 3});
  auto p = m.initial_parameters(9);
  SmallBatch b = random_batch(4, 5, 3, 2);
  Workspace ws;
  Matrix probs = m.predict(p.data(), MatrixView(b.x.data(), 4, 5), ws);
  ASSERT_EQ(probs.rows(), 3);
  for (int j = 0; j < 5; ++j) EXPECT_NEAR(probs.col(j).sum(), 1.0f, 1e-5f);
}

TEST(ModelTest, SgdLearnsSyntheticDataWellAboveChance) {
  LabeledSet all = make_synthetic(2400, 16, 4, 1);
  LabeledSet train = slice(all, 0, 2000), test = slice(all, 2000, 2400);
  Model m({16, 32, 4});
  auto p = m.initial_parameters(1);
  OptimizerConfig c;
  c.kind = OptimizerConfig::Kind::kMomentum;
  c.learning_rate = 0.05f;
  auto opt = make_optimizer(c, p.size());
  Matrix x = features(train, 0, train.count);
  std::vector<float> g(p.size());
  Workspace ws;
  for (int epoch = 0; epoch < 3; ++epoch) {
    for (int64_t s = 0; s + 32 <= train.count; s += 32) {
      MatrixView v(x.data() + s * 16, 16, 32);
      m.gradient(p.data(), v, train.labels.data() + s, g.data(), ws);
      opt->apply(p.data(), g.data());
    }
  }
  Matrix tx = features(test, 0, test.count);
  BatchStats st = m.evaluate(p.data(), MatrixView(tx.data(), 16, test.count), test.labels.data(), ws);
  EXPECT_GT(double(st.correct) / double(st.samples), 0.9);
}

}  // namespace
}  // namespace custody
