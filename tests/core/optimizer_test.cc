#include "core/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>

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
