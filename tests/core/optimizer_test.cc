#include "core/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <thread>

namespace custody {
namespace {

OptimizerConfig config(OptimizerConfig::Kind kind, float lr) {
  OptimizerConfig c;
  c.kind = kind;
  c.learning_rate = lr;
  return c;
}

TEST(OptimizerTest, SgdStepsAgainstTheGradient) {
  auto opt = make_optimizer(config(OptimizerConfig::Kind::kSgd, 0.5f), 2);
  std::vector<float> p{1.0f, -1.0f}, g{2.0f, -4.0f};
  opt->apply(p.data(), g.data());
  EXPECT_FLOAT_EQ(p[0], 0.0f);
  EXPECT_FLOAT_EQ(p[1], 1.0f);
}

TEST(OptimizerTest, MomentumAccumulatesVelocity) {
  auto c = config(OptimizerConfig::Kind::kMomentum, 0.1f);
  c.momentum = 0.9f;
  auto opt = make_optimizer(c, 1);
  std::vector<float> p{0.0f}, g{1.0f};
  opt->apply(p.data(), g.data());  // v = 1, p = -0.1
  opt->apply(p.data(), g.data());  // v = 1.9, p = -0.29
  EXPECT_NEAR(p[0], -0.29f, 1e-6f);
}

TEST(OptimizerTest, AdamFirstStepHasTheLearningRateAsMagnitude) {
  auto opt = make_optimizer(config(OptimizerConfig::Kind::kAdam, 0.01f), 2);
  std::vector<float> p{0.0f, 0.0f}, g{3.0f, -0.001f};
  opt->apply(p.data(), g.data());
  EXPECT_NEAR(p[0], -0.01f, 1e-5f);
  EXPECT_NEAR(p[1], 0.01f, 1e-4f);
}

// BSP's last push of a step updates by the mean without writing it out first: for every
// rule, over several steps (momentum and Adam carry state), the same as updating by the
// mean computed beforehand.
TEST(OptimizerTest, AnUpdateByTheMeanOfTwoGradientsEqualsOneByTheirPrecomputedMean) {
  for (auto kind : {OptimizerConfig::Kind::kSgd, OptimizerConfig::Kind::kMomentum, OptimizerConfig::Kind::kAdam}) {
    auto c = config(kind, 0.05f);
    c.weight_decay = 0.01f;
    const size_t n = 1003;  // not a multiple of any SIMD width
    auto fused = make_optimizer(c, n), plain = make_optimizer(c, n);
    std::vector<float> p1(n), p2(n), a(n), b(n), mean(n);
    for (size_t i = 0; i < n; ++i) p1[i] = p2[i] = std::sin(static_cast<float>(i));
    for (int step = 0; step < 3; ++step) {
      for (size_t i = 0; i < n; ++i) {
        a[i] = std::cos(static_cast<float>(i * (step + 1)));
        b[i] = 0.5f - static_cast<float>((i * 7 + static_cast<size_t>(step)) % 11) / 10.0f;
        mean[i] = (a[i] + b[i]) * 0.5f;
      }
      fused->apply_mean(p1.data(), a.data(), b.data(), 0.5f);
      plain->apply(p2.data(), mean.data());
    }
    for (size_t i = 0; i < n; ++i) ASSERT_NEAR(p1[i], p2[i], 1e-6f) << to_string(kind) << " at " << i;
    EXPECT_NE(p1[0], std::sin(0.0f)) << to_string(kind) << ": the values were not updated";
  }
}

// Adam's update by the mean runs in one pass over blocks of keys (the CNN's step end on the
// server: 693k keys, where the separate passes over the whole range cost most of it); it
// gives the values and moments of the mean computed first and apply()'s passes, to the bit,
// with and without weight decay, over a range longer than one block and not a multiple of
// it, and the moments continue from a checkpointed state alike.
TEST(OptimizerTest, AdamsOnePassUpdateByTheMeanEqualsItsPassesOverTheRangeToTheBit) {
  for (float decay : {0.0f, 0.01f}) {
    auto c = config(OptimizerConfig::Kind::kAdam, 1e-3f);
    c.weight_decay = decay;
    const size_t n = 5003;
    auto fused = make_optimizer(c, n), plain = make_optimizer(c, n);
    std::vector<float> p1(n), p2(n), a(n), b(n), mean(n);
    for (size_t i = 0; i < n; ++i) p1[i] = p2[i] = std::sin(static_cast<float>(i)) * 0.1f;
    for (int step = 0; step < 4; ++step) {
      for (size_t i = 0; i < n; ++i) {
        a[i] = std::cos(static_cast<float>(i * (step + 1))) * 1e-2f;
        b[i] = 0.5f - static_cast<float>((i * 7 + static_cast<size_t>(step)) % 11) / 10.0f;
        mean[i] = (a[i] + b[i]) * 0.5f;
      }
      fused->apply_mean(p1.data(), a.data(), b.data(), 0.5f);
      plain->apply(p2.data(), mean.data());
    }
    ASSERT_EQ(0, std::memcmp(p1.data(), p2.data(), n * sizeof(float))) << "weight decay " << decay;
    const OptimizerState s1 = fused->export_state(), s2 = plain->export_state();
    EXPECT_EQ(s1.steps, 4u);
    EXPECT_EQ(s2.steps, 4u);
    ASSERT_EQ(s1.values.size(), 2 * n);
    EXPECT_EQ(0, std::memcmp(s1.values.data(), s2.values.data(), s1.values.size() * sizeof(float)));
    EXPECT_NE(p1[1], std::sin(1.0f) * 0.1f) << "the values were not updated";
  }
}

// A parameter server splits BSP's last update of a step among its threads: the values and
// the state (momentum's velocity, checkpointed) must be the same to the bit as one pass
// over the range, however the keys are cut and wherever the range starts in memory.
TEST(OptimizerTest, AnUpdateSplitAmongThreadsEqualsOnePassToTheBit) {
  // The parts run on threads of their own, last part first.
  const Optimizer::ParallelRun threads = [](size_t n, const std::function<void(size_t)>& task) {
    std::vector<std::thread> running;
    for (size_t i = n; i-- > 0;) running.emplace_back([&task, i] { task(i); });
    for (auto& t : running) t.join();
  };
  for (auto kind :
       {OptimizerConfig::Kind::kSgd, OptimizerConfig::Kind::kMomentum, OptimizerConfig::Kind::kAdam}) {
    for (size_t parts : {2, 3, 8, 5000}) {
      auto c = config(kind, 0.05f);
      c.weight_decay = 0.01f;
      const size_t n = 10007;
      auto split = make_optimizer(c, n), whole = make_optimizer(c, n);
      // One float past an aligned start: the parts' SIMD loops start unaligned.
      std::vector<float> buf1(n + 1), buf2(n + 1), a(n + 1), b(n + 1);
      float* p1 = buf1.data() + 1;
      float* p2 = buf2.data() + 1;
      for (size_t i = 0; i < n; ++i) p1[i] = p2[i] = std::sin(static_cast<float>(i)) * 1e-3f;
      for (int step = 0; step < 3; ++step) {
        for (size_t i = 0; i <= n; ++i) {
          a[i] = std::cos(static_cast<float>(i * (step + 1))) * 1e-2f;
          b[i] = 0.5f - static_cast<float>((i * 7 + static_cast<size_t>(step)) % 11) / 10.0f;
        }
        split->apply_mean_split(p1, a.data() + 1, b.data() + 1, 0.5f, parts, threads);
        whole->apply_mean(p2, a.data() + 1, b.data() + 1, 0.5f);
      }
      ASSERT_EQ(0, std::memcmp(p1, p2, n * sizeof(float))) << to_string(kind) << ", " << parts << " parts";
      const OptimizerState s1 = split->export_state(), s2 = whole->export_state();
      EXPECT_EQ(s1.steps, s2.steps) << to_string(kind);
      ASSERT_EQ(s1.values.size(), s2.values.size());
      EXPECT_EQ(0, std::memcmp(s1.values.data(), s2.values.data(), s1.values.size() * sizeof(float)))
          << to_string(kind) << ", " << parts << " parts";
      EXPECT_NE(p1[0], std::sin(0.0f) * 1e-3f) << to_string(kind) << ": the values were not updated";
    }
  }
}

TEST(OptimizerTest, CosineScheduleAnnealsToZero) {
  auto c = config(OptimizerConfig::Kind::kSgd, 0.2f);
  c.schedule = OptimizerConfig::Schedule::kCosine;
  EXPECT_FLOAT_EQ(scheduled_learning_rate(c, 0, 100), 0.2f);
  EXPECT_NEAR(scheduled_learning_rate(c, 50, 100), 0.1f, 1e-6f);
  EXPECT_NEAR(scheduled_learning_rate(c, 100, 100), 0.0f, 1e-6f);
  c.schedule = OptimizerConfig::Schedule::kConstant;
  EXPECT_FLOAT_EQ(scheduled_learning_rate(c, 50, 100), 0.2f);
}

TEST(OptimizerTest, ParseKindNamesTheChoices) {
  EXPECT_TRUE(parse_optimizer_kind("adam").is_ok());
  auto bad = parse_optimizer_kind("adagrad");
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("sgd, momentum or adam"), std::string::npos);
}

}  // namespace
}  // namespace custody
