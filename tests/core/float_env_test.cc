// Flush-to-zero and denormals-are-zero (core/float_env.h): the scope sets both flags for
// its thread and gives the thread back as it found it, and training with them ends within
// a tight tolerance of training without them, on a run that does produce denormals.
#include "core/float_env.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "core/model.h"
#include "core/optimizer.h"

namespace custody {
namespace {

TEST(FlushDenormals, SetsBothFlagsForItsScopeAndRestoresTheThreadsOwn) {
  ASSERT_FALSE(FlushDenormals::active()) << "a test thread starts with IEEE denormals";
  volatile float tiny = 1e-30f;
  {
    const FlushDenormals flush;
    EXPECT_TRUE(FlushDenormals::active());
    volatile float product = tiny * 1e-10f;  // 1e-40 is denormal: flushed
    EXPECT_EQ(product, 0.0f);
    {
      const FlushDenormals nested;
      EXPECT_TRUE(FlushDenormals::active());
    }
    EXPECT_TRUE(FlushDenormals::active()) << "a nested scope restores its outer scope's flags";
  }
  EXPECT_FALSE(FlushDenormals::active());
  volatile float product = tiny * 1e-10f;
  EXPECT_GT(product, 0.0f) << "outside the scope the denormal survives";
}

// What the ceiling benchmark did and real data does: inputs that stop appearing (blank
// border pixels, in most Fashion-MNIST images) give their weights gradients of exactly 0,
// and momentum's velocity for them decays by 0.9 a step until it crosses into the denormal
// range (below 1.2e-38, after about 800 steps), where every multiplication is an assist.
// Here: 100 steps on a batch, then 1,400 on the same batch with half its features blank.
struct TrainingRun {
  std::vector<float> params;
  float last_loss = 0;
  int denormals = 0;  // gradient and velocity values in the denormal range, summed over the steps
};

TrainingRun train_one_batch_repeatedly(bool flush_denormals) {
  const int features = 16, classes = 4, batch = 32, steps = 1500;
  Model model({features, 32, classes});
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  Matrix x(features, batch);
  for (int i = 0; i < x.size(); ++i) x.data()[i] = normal(rng);
  std::vector<uint8_t> labels(batch);
  for (int i = 0; i < batch; ++i) labels[i] = static_cast<uint8_t>(i % classes);
  OptimizerConfig config;
  config.kind = OptimizerConfig::Kind::kMomentum;
  config.learning_rate = 0.1f;
  auto optimizer = make_optimizer(config, model.num_parameters());
  TrainingRun run;
  run.params = model.initial_parameters(3);
  std::vector<float> grad(model.num_parameters());
  Workspace ws;
  Matrix blank_half = x;
  blank_half.topRows(features / 2).setZero();
  for (int step = 0; step < steps; ++step) {
    const Matrix& inputs = step < 100 ? x : blank_half;
    MatrixView view(inputs.data(), inputs.rows(), inputs.cols());
    BatchStats st;
    if (flush_denormals) {
      const FlushDenormals flush;
      st = model.gradient(run.params.data(), view, labels.data(), grad.data(), ws);
      optimizer->apply(run.params.data(), grad.data());
    } else {
      st = model.gradient(run.params.data(), view, labels.data(), grad.data(), ws);
      optimizer->apply(run.params.data(), grad.data());
    }
    for (float g : grad) run.denormals += std::fpclassify(g) == FP_SUBNORMAL;
    for (float v : optimizer->export_state().values) run.denormals += std::fpclassify(v) == FP_SUBNORMAL;
    run.last_loss = static_cast<float>(st.loss_sum / batch);
  }
  return run;
}

TEST(FlushDenormals, TrainingEndsWithinToleranceOfTrainingWithDenormals) {
  const TrainingRun ieee = train_one_batch_repeatedly(false);
  const TrainingRun flushed = train_one_batch_repeatedly(true);
  ASSERT_GT(ieee.denormals, 0) << "the run must reach the denormal range, or it shows nothing";
  EXPECT_EQ(flushed.denormals, 0) << "with the flags set no denormal is produced";
  // Flushing changes values smaller than 1.2e-38 only, but 1,400 steps of float arithmetic
  // carry any difference into the last bits of the parameters: they end within 1e-5 of
  // the largest parameter's size (about 40 float ulps), and the loss within 1e-5 of itself.
  ASSERT_EQ(ieee.params.size(), flushed.params.size());
  double worst = 0, largest = 0;
  for (size_t i = 0; i < ieee.params.size(); ++i) {
    worst = std::max(worst, std::abs(double(ieee.params[i]) - double(flushed.params[i])));
    largest = std::max(largest, std::abs(double(ieee.params[i])));
  }
  std::printf("largest parameter %.3g, largest difference %.3g, loss %.9g vs %.9g, %d denormals\n", largest, worst,
              ieee.last_loss, flushed.last_loss, ieee.denormals);
  EXPECT_LE(worst, 1e-5 * largest) << "largest parameter difference";
  EXPECT_NEAR(ieee.last_loss, flushed.last_loss, 1e-5 * ieee.last_loss + 1e-7);
}

}  // namespace
}  // namespace custody
