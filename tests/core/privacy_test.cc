// The [privacy] section of a job file and the plan the coordinator derives from it.
#include "core/privacy.h"

#include <gtest/gtest.h>

namespace custody {
namespace {

const char* kPrivate = R"(
[job]
workers = 2
batch_size = 128
epochs = 10
[privacy]
target_epsilon = 3
delta = 1e-5
clip_norm = 1.5
)";

Status refusal(const std::string& text) { return parse_job_spec(text, "p.toml").status(); }

TEST(PrivacySpecTest, ASectionMakesAPrivateJobAndEveryKeyIsRead) {
  auto spec = parse_job_spec(kPrivate, "p.toml");
  ASSERT_TRUE(spec.is_ok()) << spec.status().to_string();
  EXPECT_TRUE(spec->privacy.enabled);
  EXPECT_EQ(spec->privacy.target_epsilon, 3);
  EXPECT_EQ(spec->privacy.delta, 1e-5);
  EXPECT_EQ(spec->privacy.clip_norm, 1.5);
  EXPECT_EQ(spec->privacy.noise_multiplier, 0);
  EXPECT_EQ(spec->privacy.sampling, PrivacySpec::Sampling::kPoisson);
  EXPECT_NE(spec->canonical_form().find("privacy.target_epsilon = 3"), std::string::npos);
  auto plain = parse_job_spec("[job]\nworkers = 2\n", "q.toml");
  ASSERT_TRUE(plain.is_ok());
  EXPECT_FALSE(plain->privacy.enabled);
  EXPECT_EQ(plain->canonical_form().find("privacy"), std::string::npos);  // old hashes unchanged
}

TEST(PrivacySpecTest, BadCombinationsAreRefusedNamingTheKey) {
  Status both = refusal("[privacy]\ntarget_epsilon = 3\nnoise_multiplier = 1.1\ndelta = 1e-5\n");
  EXPECT_EQ(both.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(both.message().find("exactly one of 'privacy.target_epsilon'"), std::string::npos)
      << both.message();
  Status neither = refusal("[privacy]\ndelta = 1e-5\n");
  EXPECT_NE(neither.message().find("exactly one"), std::string::npos) << neither.message();
  Status no_delta = refusal("[privacy]\ntarget_epsilon = 3\n");
  EXPECT_NE(no_delta.message().find("'privacy.delta' is required"), std::string::npos) << no_delta.message();
  Status asp = refusal("[job]\nconsistency = \"asp\"\n[privacy]\ntarget_epsilon = 3\ndelta = 1e-5\n");
  EXPECT_NE(asp.message().find("only with \"bsp\""), std::string::npos) << asp.message();
  Status ssp = refusal("[job]\nconsistency = \"ssp\"\n[privacy]\nnoise_multiplier = 1\ndelta = 1e-5\n");
  EXPECT_EQ(ssp.code(), ErrorCode::kInvalidArgument);
  Status sampling = refusal("[privacy]\ntarget_epsilon = 3\ndelta = 1e-5\nsampling = \"uniform\"\n");
  EXPECT_NE(sampling.message().find("privacy.sampling"), std::string::npos) << sampling.message();
  Status clip = refusal("[privacy]\ntarget_epsilon = 3\ndelta = 1e-5\nclip_norm = -1\n");
  EXPECT_NE(clip.message().find("privacy.clip_norm"), std::string::npos) << clip.message();
  Status typo = refusal("[privacy]\ntarget_epsilon = 3\ndelta = 1e-5\nclipnorm = 1\n");
  EXPECT_NE(typo.message().find("privacy.clipnorm"), std::string::npos) << typo.message();
}

TEST(PrivacyPlanTest, TargetEpsilonIsCalibratedFromTheDataSetsSize) {
  auto spec = parse_job_spec(kPrivate, "p.toml");
  ASSERT_TRUE(spec.is_ok());
  const int64_t n = 60000, steps = 10 * (n / 2 / 128);
  auto plan = plan_privacy(*spec, n, steps);
  ASSERT_TRUE(plan.is_ok()) << plan.status().to_string();
  EXPECT_DOUBLE_EQ(plan->q, 256.0 / 60000);
  EXPECT_EQ(plan->expected_batch, 256);
  EXPECT_TRUE(plan->calibrated);
  EXPECT_LE(plan->planned_epsilon, 3.0);
  EXPECT_GE(plan->planned_epsilon, 3.0 - 1e-3);
  auto again = dp_sgd_epsilon(plan->q, plan->sigma, steps, 1e-5);
  ASSERT_TRUE(again.is_ok());
  EXPECT_DOUBLE_EQ(again->epsilon, plan->planned_epsilon);
  EXPECT_DOUBLE_EQ(plan->noise_std_of_mean(), plan->sigma * 1.5 / 256);
  // Half-way through, half of the steps have been spent: less epsilon, more than none.
  auto half = privacy_spent(*plan, steps / 2);
  ASSERT_TRUE(half.is_ok());
  EXPECT_LT(half->epsilon, plan->planned_epsilon);
  EXPECT_GT(half->epsilon, 0);
}

TEST(PrivacyPlanTest, AGivenNoiseMultiplierGivesItsEpsilon) {
  auto spec = parse_job_spec(
      "[job]\nworkers = 2\nbatch_size = 128\n[privacy]\nnoise_multiplier = 1.1\ndelta = 1e-5\n", "p.toml");
  ASSERT_TRUE(spec.is_ok());
  auto plan = plan_privacy(*spec, 60000, 2340);
  ASSERT_TRUE(plan.is_ok());
  EXPECT_FALSE(plan->calibrated);
  EXPECT_EQ(plan->sigma, 1.1);
  auto direct = dp_sgd_epsilon(256.0 / 60000, 1.1, 2340, 1e-5);
  ASSERT_TRUE(direct.is_ok());
  EXPECT_DOUBLE_EQ(plan->planned_epsilon, direct->epsilon);
}

TEST(PrivacyPlanTest, AnUnreachableTargetIsRefusedNamingTheNumbers) {
  // Full batches (q = 1) for 5000 steps at epsilon 0.05: even sigma = 100 is not enough.
  auto spec = parse_job_spec(
      "[job]\nworkers = 2\nbatch_size = 500\nepochs = 1\n[privacy]\ntarget_epsilon = 0.05\ndelta = 1e-5\n",
      "p.toml");
  ASSERT_TRUE(spec.is_ok());
  auto plan = plan_privacy(*spec, 1000, 5000);
  ASSERT_FALSE(plan.is_ok());
  EXPECT_EQ(plan.status().code(), ErrorCode::kFailedPrecondition);
  const std::string m = plan.status().message();
  EXPECT_NE(m.find("cannot reach its privacy target"), std::string::npos) << m;
  EXPECT_NE(m.find("epsilon=0.05"), std::string::npos) << m;
  EXPECT_NE(m.find("5000 steps"), std::string::npos) << m;
  EXPECT_NE(m.find("q = 1000/1000"), std::string::npos) << m;
}

TEST(PrivacyPlanTest, DeltaMustBeBelowOneOverN) {
  auto spec =
      parse_job_spec("[privacy]\ntarget_epsilon = 3\ndelta = 0.01\n[job]\nbatch_size = 10\n", "p.toml");
  ASSERT_TRUE(spec.is_ok());
  auto plan = plan_privacy(*spec, 1000, 100);
  ASSERT_FALSE(plan.is_ok());
  EXPECT_EQ(plan.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(plan.status().message().find("below 1/N = 0.001"), std::string::npos) << plan.status().message();
}

}  // namespace
}  // namespace custody
