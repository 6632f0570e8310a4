// DP-SGD's two local pieces: per-example clipping (Model::clipped_gradient_sum) and the
// secure Gaussian noise (SecureRandom), as a user would check them: one example's
// influence is bounded by C, and the noise has the stated standard deviation.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/model.h"
#include "core/secure_random.h"

namespace custody {
namespace {

struct Batch {
  Matrix x;
  std::vector<uint8_t> y;
};

Batch random_batch(int features, int n, int classes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  Batch b{Matrix(features, n), std::vector<uint8_t>(n)};
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < features; ++i) b.x(i, j) = g(rng);
    b.y[j] = static_cast<uint8_t>(rng() % classes);
  }
  return b;
}

std::vector<float> clipped_sum(const Model& m, const std::vector<float>& p, const Batch& b, float clip) {
  std::vector<float> g(m.num_parameters());
  Workspace ws;
  MatrixView v(b.x.data(), b.x.rows(), b.x.cols());
  m.clipped_gradient_sum(p.data(), v, b.y.data(), clip, g.data(), ws);
  return g;
}

std::vector<float> mean_gradient(const Model& m, const std::vector<float>& p, const Batch& b) {
  std::vector<float> g(m.num_parameters());
  Workspace ws;
  MatrixView v(b.x.data(), b.x.rows(), b.x.cols());
  m.gradient(p.data(), v, b.y.data(), g.data(), ws);
  return g;
}

double norm(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += static_cast<double>(x) * x;
  return std::sqrt(s);
}

Batch column(const Batch& b, int j) { return {b.x.col(j), {b.y[j]}}; }

TEST(DpSgdTest, PerExampleNormsMatchTheExplicitPerExampleGradients) {
  // The outer-product shortcut against each example's gradient formed in full (a batch of
  // one through Model::gradient): clipping at half of each example's own norm must give
  // exactly half of that example's gradient; the sum is the sum of those.
  for (const std::vector<int>& sizes : {std::vector<int>{6, 3}, std::vector<int>{6, 5, 4, 3}}) {
    Model m(sizes);
    std::vector<float> p = m.initial_parameters(3);
    Batch b = random_batch(6, 5, 3, 9);
    std::vector<double> expected(m.num_parameters(), 0.0);
    for (int j = 0; j < 5; ++j) {
      const std::vector<float> g = mean_gradient(m, p, column(b, j));
      const float c = static_cast<float>(norm(g) / 2);
      const std::vector<float> one = clipped_sum(m, p, column(b, j), c);
      EXPECT_NEAR(norm(one), c, 1e-5 * c);
      for (size_t k = 0; k < g.size(); ++k) {
        EXPECT_NEAR(one[k], g[k] / 2, 1e-5) << "example " << j << " parameter " << k;
        expected[k] += g[k];
      }
    }
    // With a clip norm no example reaches, the sum is the batch size times the mean.
    const std::vector<float> unclipped = clipped_sum(m, p, b, 1e9f);
    for (size_t k = 0; k < expected.size(); ++k) EXPECT_NEAR(unclipped[k], expected[k], 1e-4) << k;
  }
}

TEST(DpSgdTest, OneExampleScaledByAMillionMovesTheSumByAtMostC) {
  // Add/remove adjacency: the batch with and without one record whose features are
  // multiplied by 1e6. Without clipping it would dominate the update; with it, the two
  // sums differ by that record's clipped gradient, of norm <= C.
  const std::vector<int> sizes{20, 16, 8, 4};
  Model m(sizes);
  std::vector<float> p = m.initial_parameters(4);
  Batch without = random_batch(20, 32, 4, 5);
  Batch with{Matrix(20, 33), without.y};
  with.x.leftCols(32) = without.x;
  with.x.col(32) = random_batch(20, 1, 4, 77).x.col(0) * 1e6f;
  with.y.push_back(2);
  for (float clip : {0.1f, 1.0f, 4.0f}) {
    const std::vector<float> a = clipped_sum(m, p, without, clip), b = clipped_sum(m, p, with, clip);
    std::vector<float> diff(a.size());
    for (size_t k = 0; k < a.size(); ++k) diff[k] = b[k] - a[k];
    EXPECT_LE(norm(diff), clip * (1 + 1e-4)) << "clip " << clip;
    EXPECT_GT(norm(diff), clip * 0.5) << "the outlier's gradient is large, so it is clipped to about C";
  }
  // What the same record does to the unclipped mean gradient (for contrast).
  const std::vector<float> a = mean_gradient(m, p, without), b = mean_gradient(m, p, with);
  std::vector<float> diff(a.size());
  for (size_t k = 0; k < a.size(); ++k) diff[k] = b[k] - a[k];
  EXPECT_GT(norm(diff), 1000.0);
}

TEST(DpSgdTest, AnEmptyBatchGivesAZeroGradient) {
  Model m({4, 3});
  std::vector<float> p = m.initial_parameters(1);
  Batch empty{Matrix(4, 0), {}};
  const std::vector<float> g = clipped_sum(m, p, empty, 1.0f);
  EXPECT_EQ(norm(g), 0.0);
}

TEST(DpSgdTest, NoiseHasTheStatedStandardDeviation) {
  // 1e6 draws with a fixed seed at std 0.37: the sample std's own standard error is
  // std / sqrt(2n) = 2.6e-4, so a tolerance of 1.5e-3 is over 5 standard errors; the mean's
  // is std / sqrt(n) = 3.7e-4 (tolerance 2e-3). Kurtosis near 3 and the fraction within
  // one std (0.6827, standard error 4.7e-4) check the shape, not only the scale.
  auto rng = SecureRandom::from_seed(std::string(32, 's'));
  ASSERT_TRUE(rng.is_ok());
  const size_t n = 1000000;
  const double stated = 0.37;
  std::vector<float> x(n, 0.0f);
  rng->add_gaussian(x.data(), n, stated);
  double sum = 0, sq = 0, quad = 0;
  size_t within = 0;
  for (float v : x) sum += v;
  const double mean = sum / n;
  for (float v : x) {
    const double d = v - mean;
    sq += d * d;
    quad += d * d * d * d;
    if (std::fabs(v) <= stated) ++within;
  }
  const double sd = std::sqrt(sq / (n - 1));
  EXPECT_NEAR(mean, 0.0, 2e-3);
  EXPECT_NEAR(sd, stated, 1.5e-3);
  EXPECT_NEAR(quad / n / (sd * sd * sd * sd), 3.0, 0.03);
  EXPECT_NEAR(static_cast<double>(within) / n, 0.682689, 3e-3);
}

TEST(DpSgdTest, SecureRandomIsUnpredictableFromTheOsAndFixedFromASeed) {
  auto a = SecureRandom::from_os(), b = SecureRandom::from_os();
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  EXPECT_NE(a->next_u64(), b->next_u64());
  auto c = SecureRandom::from_seed(std::string(32, 'x')), d = SecureRandom::from_seed(std::string(32, 'x'));
  ASSERT_TRUE(c.is_ok() && d.is_ok());
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(c->next_u64(), d->next_u64());
  EXPECT_EQ(SecureRandom::from_seed("short").status().code(), ErrorCode::kInvalidArgument);
}

TEST(DpSgdTest, GeometricSkipsSampleAtTheStatedRate) {
  // Poisson sampling by skips: over 1e6 examples at q = 0.01 the count is Binomial, with
  // standard deviation sqrt(n q (1-q)) = 99.5; tolerance 500 (5 sd).
  auto rng = SecureRandom::from_seed(std::string(32, 'g'));
  ASSERT_TRUE(rng.is_ok());
  const uint64_t n = 1000000;
  uint64_t taken = 0;
  for (uint64_t i = rng->geometric_skip(0.01); i < n; i += 1 + rng->geometric_skip(0.01)) ++taken;
  EXPECT_NEAR(static_cast<double>(taken), 10000.0, 500.0);
  EXPECT_EQ(rng->geometric_skip(1.0), 0u);
}

}  // namespace
}  // namespace custody
