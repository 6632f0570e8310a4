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

// Central finite differences in double-checked float: every parameter of a small model.
void check_gradient(const Model& m, float eps = 1e-2f) {
  std::vector<float> p = m.initial_parameters(3);
  // Non-zero biases, so their gradients are exercised away from the ReLU kink at 0.
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> u(-0.1f, 0.1f);
  for (float& v : p) v += u(rng);
  SmallBatch b = random_batch(m.input_size(), 7, m.num_classes(), 11);
  std::vector<float> g(m.num_parameters());
  Workspace ws;
  MatrixView v(b.x.data(), b.x.rows(), b.x.cols());
  m.gradient(p.data(), v, b.y.data(), g.data(), ws);
  for (size_t i = 0; i < p.size(); ++i) {
    std::vector<float> plus = p, minus = p;
    plus[i] += eps;
    minus[i] -= eps;
    const double numeric = (mean_loss(m, plus, b) - mean_loss(m, minus, b)) / (2 * eps);
    EXPECT_NEAR(g[i], numeric, 2e-3 + 2e-2 * std::abs(numeric)) << m.architecture() << ": parameter " << i;
  }
}

void check_gradient(const std::vector<int>& sizes, Activation activation = Activation::kRelu) {
  check_gradient(Model(sizes, activation));
}

Model model_of(const std::string& architecture, Activation activation = Activation::kRelu) {
  auto m = Model::parse_architecture(architecture, activation);
  EXPECT_TRUE(m.is_ok()) << m.status().message();
  return std::move(m).value();
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

// Every layer type, alone before a dense head and stacked: the conv's weights and bias, the
// pool's routing of deltas to its maxima, flatten's identity, on multi-channel inputs. The
// conv models take a smaller step: a conv weight feeds every position, so a step of 1e-2
// moves some pre-activation across the ReLU kink and the difference quotient is off by 5%.
TEST(ModelTest, ConvGradientMatchesFiniteDifferences) { check_gradient(model_of("2x6x5 conv2d:3:3 flatten dense:3"), 2e-3f); }
TEST(ModelTest, MaxPoolGradientMatchesFiniteDifferences) {
  check_gradient(model_of("2x6x6 maxpool:2 flatten dense:4 dense:3"));
}
TEST(ModelTest, FlattenGradientMatchesFiniteDifferences) { check_gradient(model_of("6 flatten dense:5 dense:3")); }
TEST(ModelTest, StackedCnnGradientMatchesFiniteDifferences) {
  check_gradient(model_of("2x8x7 conv2d:3:2 maxpool:2 conv2d:2:2 flatten dense:5 dense:3"), 2e-3f);
  check_gradient(model_of("1x7x7 conv2d:2:3 maxpool:2 flatten dense:4 dense:3", Activation::kTanh));
}

// A ReLU conv followed by a pool is computed as one step, eight filters at a time, from
// the input in place (conv_relu_pool_forward and _backward): a pooled conv that is not the
// first layer (its input deltas go on down), a pool that leaves the conv's last row and
// column out (5x4 outputs, 2x2 windows), and 11 filters (a block of eight and one of three
// padded with empty filters) of 18 weights each (their gradient in two register chunks)
// under 3x3 windows.
TEST(ModelTest, FusedConvReluPoolGradientMatchesFiniteDifferences) {
  check_gradient(model_of("2x8x8 conv2d:3:2 conv2d:2:2 maxpool:2 flatten dense:3"), 2e-3f);
  check_gradient(model_of("2x7x6 conv2d:2:3 maxpool:2 flatten dense:3"), 2e-3f);
  check_gradient(model_of("2x9x8 conv2d:11:3 maxpool:3 flatten dense:3"), 5e-4f);
}

// ReLU then max-pool, by hand: each window's largest conv output, or 0 when none is
// positive (the top-left window is all negative, the bottom-right's maximum is exactly 0).
TEST(ModelTest, AReluConvAndItsPoolGiveReluThenMaxPoolByHand) {
  Model m = model_of("1x4x4 conv2d:1:1 maxpool:2 flatten dense:2");
  std::vector<float> p(m.num_parameters(), 0.0f);
  p[0] = 2.0f;   // layer1.weight: conv output = 2x - 1
  p[1] = -1.0f;  // layer1.bias
  Matrix x(16, 1);
  x << 0.1f, 0.2f, 1.0f, 3.0f,   //
      0.3f, 0.4f, 2.0f, 0.0f,    //
      0.5f, 1.5f, -1.0f, -2.0f,  //
      0.6f, 0.7f, -3.0f, 0.5f;
  Workspace ws;
  m.predict(p.data(), MatrixView(x.data(), 16, 1), ws);
  const Matrix& pooled = ws.activations[2];
  ASSERT_EQ(pooled.rows(), 4);
  EXPECT_EQ(pooled(0, 0), 0.0f);
  EXPECT_EQ(pooled(1, 0), 5.0f);
  EXPECT_EQ(pooled(2, 0), 2.0f);
  EXPECT_EQ(pooled(3, 0), 0.0f);
}

// The weight layout is ONNX's [filters, in_channels, kh, kw]: weight (f, c, i, j) multiplies
// input (c, oy + i, ox + j), and outputs are channel-major per sample.
TEST(ModelTest, ConvolutionComputesTheOnnxLayoutByHand) {
  Model m = model_of("2x3x3 conv2d:2:2 flatten dense:2");
  std::vector<float> p(m.num_parameters(), 0.0f);
  for (int i = 0; i < 16; ++i) p[i] = 0.01f * static_cast<float>(i + 1);  // [2, 2, 2, 2]
  p[16] = 0.5f;                                                          // bias of filter 0
  p[17] = -100.0f;                                                       // filter 1: ReLU zeroes it
  std::vector<float> x(18);
  for (int i = 0; i < 18; ++i) x[i] = static_cast<float>(i);  // (c, y, x) at c*9 + y*3 + x
  Workspace ws;
  m.predict(p.data(), MatrixView(x.data(), 18, 1), ws);
  const Matrix& conv = ws.activations[1];
  ASSERT_EQ(conv.rows(), 8);
  for (int oy = 0; oy < 2; ++oy) {
    for (int ox = 0; ox < 2; ++ox) {
      float want = 0.5f;
      for (int c = 0; c < 2; ++c)
        for (int i = 0; i < 2; ++i)
          for (int j = 0; j < 2; ++j) want += p[((0 * 2 + c) * 2 + i) * 2 + j] * x[c * 9 + (oy + i) * 3 + ox + j];
      EXPECT_NEAR(conv(oy * 2 + ox, 0), want, 1e-5f) << "filter 0 at " << oy << "," << ox;
      EXPECT_EQ(conv(4 + oy * 2 + ox, 0), 0.0f) << "filter 1 at " << oy << "," << ox;
    }
  }
}

TEST(ModelTest, TheSeedsCnnHasOnnxShapedTensorsAndRoundTripsItsArchitecture) {
  const std::string text = "1x28x28 conv2d:32:3 maxpool:2 flatten dense:128 dense:10";
  Model m = model_of(text);
  EXPECT_EQ(m.architecture(), text);
  EXPECT_FALSE(m.dense_only());
  EXPECT_EQ(m.input_size(), 784);
  EXPECT_EQ(m.num_classes(), 10);
  EXPECT_EQ(m.layer_sizes(), (std::vector<int>{784, 32 * 26 * 26, 32 * 13 * 13, 5408, 128, 10}));
  EXPECT_EQ(m.num_parameters(), 32u * 9 + 32 + 5408u * 128 + 128 + 128u * 10 + 10);
  const auto t = m.tensors();
  ASSERT_EQ(t.size(), 6u);
  EXPECT_EQ(t[0].name, "layer1.weight");
  EXPECT_EQ(t[0].shape, (std::vector<int>{32, 1, 3, 3}));
  EXPECT_EQ(t[1].name, "layer1.bias");
  EXPECT_EQ(t[1].offset, 288u);
  EXPECT_EQ(t[2].name, "layer4.weight");
  EXPECT_EQ(t[2].shape, (std::vector<int>{128, 5408}));
  EXPECT_EQ(t[5].name, "layer5.bias");
  EXPECT_EQ(t[5].offset + t[5].size, m.num_parameters());
  // A dense-only model writes its feature count and reads back as the same MLP.
  Model mlp({784, 256, 10});
  EXPECT_EQ(mlp.architecture(), "784 dense:256 dense:10");
  EXPECT_TRUE(model_of(mlp.architecture()).dense_only());
  EXPECT_EQ(model_of(mlp.architecture()).layer_sizes(), mlp.layer_sizes());
}

TEST(ModelTest, ImpossibleArchitecturesAreRefusedNamingTheLayer) {
  const auto error = [](const std::string& text) {
    auto m = Model::parse_architecture(text);
    EXPECT_FALSE(m.is_ok()) << text;
    return m.is_ok() ? std::string() : m.status().message();
  };
  EXPECT_NE(error("1x28x28 dense:10").find("layer 1 (dense) gets a 1x28x28 image: put a flatten layer"),
            std::string::npos);
  EXPECT_NE(error("1x4x4 conv2d:2:5 flatten dense:2").find("layer 1 (conv2d): kernel 5 does not fit its 1x4x4"),
            std::string::npos);
  EXPECT_NE(error("1x4x4 conv2d:2:3 flatten").find("the last layer must be dense"), std::string::npos);
  EXPECT_NE(error("1x4x4 conv2d:2:3 maxpool:3 flatten dense:2").find("layer 2 (maxpool): size 3"),
            std::string::npos);
  EXPECT_NE(error("1x4x4 conv:2:3 flatten dense:2").find("'conv:2:3' is not dense"), std::string::npos);
  EXPECT_NE(error("1x28 flatten dense:2").find("not N or CxHxW"), std::string::npos);
  EXPECT_NE(error("").find("empty"), std::string::npos);
  EXPECT_NE(error("4 dense:1").find("number of classes"), std::string::npos);
}

// DP-SGD on a CNN: each example's gradient clipped to C (computed one example at a time),
// so a large C gives the plain sum of the examples' gradients and a small one bounds it.
TEST(ModelTest, ClippedSumOfACnnIsTheSumOfClippedExampleGradients) {
  Model m = model_of("1x6x6 conv2d:2:3 maxpool:2 flatten dense:3");
  auto p = m.initial_parameters(4);
  SmallBatch b = random_batch(36, 5, 3, 8);
  MatrixView v(b.x.data(), 36, 5);
  Workspace ws;
  std::vector<float> mean(m.num_parameters()), sum(m.num_parameters());
  m.gradient(p.data(), v, b.y.data(), mean.data(), ws);
  const BatchStats s = m.clipped_gradient_sum(p.data(), v, b.y.data(), 1e6f, sum.data(), ws);
  EXPECT_EQ(s.samples, 5);
  for (size_t i = 0; i < mean.size(); ++i) EXPECT_NEAR(sum[i], 5 * mean[i], 1e-4f + 1e-4f * std::abs(sum[i]));
  m.clipped_gradient_sum(p.data(), v, b.y.data(), 0.01f, sum.data(), ws);
  EXPECT_LE(Eigen::Map<Vector>(sum.data(), static_cast<Eigen::Index>(sum.size())).norm(), 5 * 0.01f + 1e-6f);
}

// Large batches of a conv model are evaluated in chunks (memory); the answers are those of
// small batches, and predict leaves the last layer's input for the whole batch (TracIn).
TEST(ModelTest, AConvModelPredictsALargeBatchAsItsParts) {
  Model m = model_of("1x5x5 conv2d:2:2 maxpool:2 flatten dense:6 dense:3");
  auto p = m.initial_parameters(2);
  SmallBatch b = random_batch(25, 600, 3, 4);
  Workspace ws;
  const Matrix all = m.predict(p.data(), MatrixView(b.x.data(), 25, 600), ws);
  const Matrix below = ws.activations[m.num_layers() - 1];
  ASSERT_EQ(all.cols(), 600);
  ASSERT_EQ(below.cols(), 600);
  for (int first : {0, 250, 590}) {
    const Matrix part = m.predict(p.data(), MatrixView(b.x.data() + first * 25, 25, 10), ws);
    EXPECT_LT((part - all.middleCols(first, 10)).cwiseAbs().maxCoeff(), 1e-6f);
    EXPECT_LT((ws.activations[m.num_layers() - 1] - below.middleCols(first, 10)).cwiseAbs().maxCoeff(), 1e-6f);
  }
  const BatchStats whole = m.evaluate(p.data(), MatrixView(b.x.data(), 25, 600), b.y.data(), ws);
  EXPECT_EQ(whole.samples, 600);
  int64_t correct = 0;
  for (int i = 0; i < 600; ++i) {
    Eigen::Index arg;
    all.col(i).maxCoeff(&arg);
    correct += arg == b.y[i];
  }
  EXPECT_EQ(whole.correct, correct);
}

// A dense-only model described as layers is the MLP itself, to the bit.
TEST(ModelTest, AnMlpDescribedAsLayersIsTheSameModel) {
  Model a({12, 8, 3});
  auto made = Model::make(Shape{12, 1, 1}, {{LayerKind::kDense, 8, 0}, {LayerKind::kDense, 3, 0}});
  ASSERT_TRUE(made.is_ok());
  const Model& b = made.value();
  EXPECT_EQ(a.num_parameters(), b.num_parameters());
  EXPECT_EQ(a.initial_parameters(1), b.initial_parameters(1));
  auto p = a.initial_parameters(1);
  SmallBatch batch = random_batch(12, 4, 3, 1);
  Workspace wa, wb;
  MatrixView v(batch.x.data(), 12, 4);
  EXPECT_TRUE(a.predict(p.data(), v, wa) == b.predict(p.data(), v, wb));
}

}  // namespace
}  // namespace custody
