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

// Budgets: jobs on one data set compose by adding their RDP curves order by order.
TEST(PrivacyBudgetTest, TwoJobsComposeAsTheAccountantOnTheSummedCurve) {
  const PrivacyCharge a{0.01, 1.1, 1000}, b{0.02, 0.9, 500};
  // The accountant, curve by curve, added by hand: what composition must equal.
  RdpAccountant first, second;
  ASSERT_TRUE(first.compose_subsampled_gaussian(a.q, a.sigma, a.steps).is_ok());
  ASSERT_TRUE(second.compose_subsampled_gaussian(b.q, b.sigma, b.steps).is_ok());
  std::vector<double> summed(first.rdp().size());
  for (size_t i = 0; i < summed.size(); ++i) summed[i] = first.rdp()[i] + second.rdp()[i];
  auto expected = epsilon_from_rdp(default_rdp_orders(), summed, 1e-5);
  ASSERT_TRUE(expected.is_ok());

  auto check = check_budget(10, 1e-5, {a}, {b});
  ASSERT_TRUE(check.is_ok()) << check.status().to_string();
  EXPECT_DOUBLE_EQ(check->total_epsilon, expected->epsilon);
  EXPECT_DOUBLE_EQ(check->spent_epsilon, dp_sgd_epsilon(a.q, a.sigma, a.steps, 1e-5)->epsilon);
  EXPECT_DOUBLE_EQ(check->requested_epsilon, dp_sgd_epsilon(b.q, b.sigma, b.steps, 1e-5)->epsilon);
  // Composition costs less than adding the epsilons (that is what RDP buys), more than either.
  EXPECT_LT(check->total_epsilon, check->spent_epsilon + check->requested_epsilon);
  EXPECT_GT(check->total_epsilon, std::max(check->spent_epsilon, check->requested_epsilon));
  EXPECT_TRUE(check->fits());
  // Order does not matter; a charge split in two (a rollback's repeated steps) is the same
  // as one charge of all its steps.
  EXPECT_DOUBLE_EQ(check_budget(10, 1e-5, {b}, {a})->total_epsilon, check->total_epsilon);
  auto split = check_budget(10, 1e-5, {{a.q, a.sigma, 700}, {a.q, a.sigma, 300}}, {b});
  EXPECT_NEAR(split->total_epsilon, check->total_epsilon, 1e-9);
}

TEST(PrivacyBudgetTest, AJobBeyondTheBudgetDoesNotFitAndTheNumbersAreNamed) {
  const PrivacyCharge spent{0.01, 1.0, 2000}, asked{0.01, 1.0, 2000};
  auto check = check_budget(3, 1e-5, {spent}, {asked});
  ASSERT_TRUE(check.is_ok());
  EXPECT_FALSE(check->fits()) << check->describe();
  // Twice the steps of one job: the same as one job of 4000 steps.
  EXPECT_NEAR(check->total_epsilon, dp_sgd_epsilon(0.01, 1.0, 4000, 1e-5)->epsilon, 1e-9);
  const std::string text = check->describe();
  for (const char* part : {"spent epsilon", "budget of 3", "delta 1e-05", "remaining", "needs epsilon"}) {
    EXPECT_NE(text.find(part), std::string::npos) << part << " in " << text;
  }
  // Nothing spent: zero, and all of the budget remains.
  auto fresh = check_budget(3, 1e-5, {}, {asked});
  EXPECT_EQ(fresh->spent_epsilon, 0);
  EXPECT_EQ(fresh->remaining_epsilon(), 3);
  EXPECT_EQ(check_budget(0, 1e-5, {}, {}).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(check_budget(3, 1, {}, {}).status().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace custody
