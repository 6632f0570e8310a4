// The RDP accountant against values published by the libraries that compute it, against
// its own closed forms, and against an independent multi-precision integration.
//
// Sources (each value below names one):
//  [DPA] Google dp_accounting (github.com/google/differential-privacy, python/dp_accounting,
//        dp_accounting/rdp/rdp_privacy_accountant_test.py at commit 0b109e95, the version
//        published as dp-accounting 0.4.x): test_compute_rdp_poisson_sampled_gaussian,
//        test_compute_epsilon_delta_pure_dp, test_compute_epsilon_delta_gaussian.
//  [OPA] Opacus (github.com/pytorch/opacus, opacus/tests/accountants_test.py, 1.x):
//        test_rdp_accountant: RDPAccountant, sigma=1.5, q=0.04, steps=int(90/0.04)=2250,
//        delta=1e-5, Opacus' orders [1+x/10 for x in 1..99] + [12..63] -> 7.32911117143.
//  [MP]  Our own check, not a library: A_alpha = E_{z~N(0,s^2)}[((1-q) + q e^{(2z-1)/(2s^2)})^alpha]
//        integrated numerically by mpmath 1.3.0 (Debian's python3-mpmath) at 40 digits,
//        rdp = log(A)/(alpha-1). It reproduces [OPA] to 5e-11 (7.329111171484, at order 3.9).
//
// A finding worth recording: [DPA]'s published values at the fractional orders 1.5 and 2.5
// (6.70579741e-04, 1.08548710e-03 for 50 steps) are larger than the exact values
// ([MP]: 6.50070897e-04, 1.08541806e-03). That version of dp_accounting sums |C(alpha,i)|
// in its fractional-order series and drops the signs of the terms past i > alpha + 1, which
// gives an upper bound (sound, but not exact). Custody keeps the signs (as Opacus and TF
// Privacy <= 0.8 do), so it matches [MP] and [OPA] and stays below [DPA] there.
#include "core/dp_accountant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace custody {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::vector<double> opacus_orders() {
  std::vector<double> o;
  for (int x = 1; x < 100; ++x) o.push_back(1 + x / 10.0);
  for (int a = 12; a < 64; ++a) o.push_back(a);
  return o;
}

double rdp_or_die(double q, double sigma, double order) {
  auto r = rdp_subsampled_gaussian(q, sigma, order);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r.is_ok() ? *r : std::nan("");
}

TEST(DpAccountantTest, IntegerOrdersMatchDpAccountingPublishedValues) {
  // [DPA] test_compute_rdp_poisson_sampled_gaussian: q=0.01, sigma=2.5, 50 steps, rtol 1e-4.
  // [MP] gives 2.18075656231e-03, 2.38460375387e-02, 167.416307548 for the same three.
  const struct {
    double order, expected;
  } cases[] = {{5, 2.18075656e-03}, {50, 2.38460375e-02}, {100, 1.67416308e02}};
  for (const auto& c : cases) {
    EXPECT_NEAR(50 * rdp_or_die(0.01, 2.5, c.order), c.expected, 1e-4 * c.expected) << "order " << c.order;
  }
  EXPECT_EQ(rdp_or_die(0.01, 2.5, kInf), kInf);
}

TEST(DpAccountantTest, FractionalOrdersAreExactAndBelowDpAccountingsUpperBound) {
  // [MP] exact values for q=0.01, sigma=2.5, 50 steps; [DPA]'s published upper bounds.
  const struct {
    double order, exact, dpa_bound;
  } cases[] = {{1.5, 6.50070897187e-04, 6.70579741e-04}, {2.5, 1.08541805692e-03, 1.08548710e-03}};
  for (const auto& c : cases) {
    const double got = 50 * rdp_or_die(0.01, 2.5, c.order);
    EXPECT_NEAR(got, c.exact, 1e-6 * c.exact) << "order " << c.order;
    EXPECT_LT(got, c.dpa_bound) << "order " << c.order;
  }
}

TEST(DpAccountantTest, FractionalOrdersAgreeWithTheIntegerOnesAroundThem) {
  // RDP is non-decreasing in the order; the series and the binomial sum must interleave.
  for (double q : {0.001, 0.04, 0.3}) {
    for (double sigma : {0.7, 1.1, 4.0}) {
      double last = 0;
      for (double order = 1.5; order <= 40; order += 0.5) {
        const double r = rdp_or_die(q, sigma, order);
        EXPECT_GE(r, last * (1 - 1e-9)) << "q=" << q << " sigma=" << sigma << " order=" << order;
        last = r;
      }
    }
  }
}

TEST(DpAccountantTest, OpacusPublishedEpsilonIsReproduced) {
  // [OPA] test_rdp_accountant.
  auto e = dp_sgd_epsilon(0.04, 1.5, 2250, 1e-5, opacus_orders());
  ASSERT_TRUE(e.is_ok()) << e.status().to_string();
  EXPECT_NEAR(e->epsilon, 7.32911117143, 1e-7);
  EXPECT_DOUBLE_EQ(e->order, 3.9);
}

TEST(DpAccountantTest, FullBatchIsTheGaussianMechanismClosedForm) {
  // q = 1: no amplification; RDP of the Gaussian mechanism is alpha / (2 sigma^2)
  // (Mironov 2017, Proposition 7), and T steps compose to T times that.
  for (double sigma : {0.5, 1.0, 2.71828}) {
    for (double order : {1.5, 2.0, 3.14159, 32.0}) {
      EXPECT_DOUBLE_EQ(rdp_or_die(1.0, sigma, order), order / (2 * sigma * sigma));
    }
  }
  RdpAccountant acc({2.0, 8.0});
  ASSERT_TRUE(acc.compose_subsampled_gaussian(1.0, 2.0, 10).is_ok());
  EXPECT_DOUBLE_EQ(acc.rdp()[0], 10 * 2.0 / 8);
  EXPECT_DOUBLE_EQ(acc.rdp()[1], 10 * 8.0 / 8);
}

TEST(DpAccountantTest, SeriesAtQNearOneApproachesTheClosedForm) {
  // The general path (q < 1) must tend to the q = 1 closed form.
  for (double order : {2.0, 2.5, 7.0}) {
    EXPECT_NEAR(rdp_or_die(1 - 1e-9, 3.0, order), order / 18, 1e-6) << order;
  }
}

TEST(DpAccountantTest, TightConversionMatchesDpAccountingPureDpValue) {
  // [DPA] test_compute_epsilon_delta_pure_dp: orders 2..32, rdp 1.1 at each, delta 1e-5
  // -> epsilon 1.32783806176 at order 32. By hand: 1.1 + log(31/32) - log(32e-5)/31.
  std::vector<double> orders, rdp;
  for (int a = 2; a <= 32; ++a) {
    orders.push_back(a);
    rdp.push_back(1.1);
  }
  auto e = epsilon_from_rdp(orders, rdp, 1e-5);
  ASSERT_TRUE(e.is_ok());
  EXPECT_NEAR(e->epsilon, 1.32783806176, 1e-10);
  EXPECT_EQ(e->order, 32);
  // The classic conversion (Mironov 2017, Prop. 3) is looser: 1.1 + log(1e5)/31.
  auto c = epsilon_from_rdp(orders, rdp, 1e-5, RdpConversion::kClassic);
  ASSERT_TRUE(c.is_ok());
  EXPECT_NEAR(c->epsilon, 1.1 + std::log(1e5) / 31, 1e-12);
  EXPECT_GT(c->epsilon, e->epsilon);
}

TEST(DpAccountantTest, GaussianCalibratedToExactlyOneEpsilonMatchesDpAccounting) {
  // [DPA] test_compute_epsilon_delta_gaussian: q=1, sigma=4.530877117 is (1, 1e-6)-DP over
  // the orders 1.000..99.999 (step 0.001); expects epsilon 1 to 7 places.
  std::vector<double> orders;
  for (int i = 1001; i < 100000; ++i) orders.push_back(0.001 * i);
  RdpAccountant acc(orders);
  ASSERT_TRUE(acc.compose_subsampled_gaussian(1.0, 4.530877117, 1).is_ok());
  auto e = acc.epsilon(1e-6);
  ASSERT_TRUE(e.is_ok());
  EXPECT_NEAR(e->epsilon, 1.0, 5e-8);
}

TEST(DpAccountantTest, CompositionAddsCurvesAcrossJobs) {
  RdpAccountant a, b, both;
  ASSERT_TRUE(a.compose_subsampled_gaussian(0.01, 1.1, 3000).is_ok());
  ASSERT_TRUE(b.compose_subsampled_gaussian(0.02, 2.0, 500).is_ok());
  ASSERT_TRUE(both.compose_subsampled_gaussian(0.01, 1.1, 3000).is_ok());
  ASSERT_TRUE(both.compose_subsampled_gaussian(0.02, 2.0, 500).is_ok());
  ASSERT_TRUE(a.add(b).is_ok());
  for (size_t i = 0; i < a.rdp().size(); ++i) EXPECT_NEAR(a.rdp()[i], both.rdp()[i], 1e-12 * both.rdp()[i]);
  // Spending more never lowers epsilon.
  auto one = b.epsilon(1e-5);
  auto two = a.epsilon(1e-5);
  ASSERT_TRUE(one.is_ok() && two.is_ok());
  EXPECT_GT(two->epsilon, one->epsilon);
  EXPECT_FALSE(a.add(RdpAccountant({2.0, 3.0})).is_ok());
}

TEST(DpAccountantTest, NoSamplingIsFreeAndNoNoiseIsInfinite) {
  auto free = dp_sgd_epsilon(0.0, 1.0, 1000, 1e-5);
  ASSERT_TRUE(free.is_ok());
  EXPECT_EQ(free->epsilon, 0);
  auto open = dp_sgd_epsilon(0.01, 0.0, 1, 1e-5);
  ASSERT_TRUE(open.is_ok());
  EXPECT_EQ(open->epsilon, kInf);
}

TEST(DpAccountantTest, CalibrationFindsTheNoiseOfThePublishedEpsilon) {
  // Inverting [OPA]: the sigma for epsilon 7.32911117143 at q=0.04, 2250 steps is 1.5.
  auto c = calibrate_noise_multiplier(7.32911117143, 1e-5, 0.04, 2250, 1000, 1e-6, opacus_orders());
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  EXPECT_NEAR(c->sigma, 1.5, 1e-4);
  EXPECT_LE(c->epsilon, 7.32911117143);
  EXPECT_GE(c->epsilon, 7.32911117143 - 1e-6);
}

TEST(DpAccountantTest, CalibrationReachesEachTargetFromBelow) {
  // A Fashion-MNIST-like job: 60000 examples, expected batch 256, 20 epochs.
  const double q = 256.0 / 60000;
  const int64_t steps = 20 * 60000 / 256;
  for (double target : {1.0, 2.0, 3.0, 8.0}) {
    auto c = calibrate_noise_multiplier(target, 1e-5, q, steps);
    ASSERT_TRUE(c.is_ok()) << c.status().to_string();
    EXPECT_LE(c->epsilon, target);
    EXPECT_GE(c->epsilon, target - 1e-3);
    auto again = dp_sgd_epsilon(q, c->sigma, steps, 1e-5);
    ASSERT_TRUE(again.is_ok());
    EXPECT_DOUBLE_EQ(again->epsilon, c->epsilon);
  }
}

TEST(DpAccountantTest, CalibrationRefusesAnUnreachableTargetNamingTheNumbers) {
  // Full batches over a million steps: even sigma = 50 leaves epsilon far above 0.01.
  auto c = calibrate_noise_multiplier(0.01, 1e-5, 1.0, 1000000, 50);
  ASSERT_FALSE(c.is_ok());
  EXPECT_EQ(c.status().code(), ErrorCode::kFailedPrecondition);
  const std::string m = c.status().message();
  EXPECT_NE(m.find("epsilon=0.01"), std::string::npos) << m;
  EXPECT_NE(m.find("1000000 steps"), std::string::npos) << m;
  EXPECT_NE(m.find("sigma=50"), std::string::npos) << m;
}

TEST(DpAccountantTest, BadInputIsNamed) {
  EXPECT_EQ(rdp_subsampled_gaussian(1.5, 1, 2).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(rdp_subsampled_gaussian(1.5, 1, 2).status().message().find("q=1.5"), std::string::npos);
  EXPECT_EQ(rdp_subsampled_gaussian(0.1, -1, 2).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(rdp_subsampled_gaussian(0.1, 1, 1).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(rdp_subsampled_gaussian(std::nan(""), 1, 2).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(dp_sgd_epsilon(0.1, 1, 10, 0).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(dp_sgd_epsilon(0.1, 1, -1, 1e-5).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(calibrate_noise_multiplier(-1, 1e-5, 0.1, 10).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(calibrate_noise_multiplier(1, 1e-5, 0, 10).status().code(), ErrorCode::kInvalidArgument);
  RdpAccountant acc({2.0, 3.0});
  EXPECT_FALSE(acc.set_rdp({1.0}).is_ok());
  EXPECT_FALSE(acc.set_rdp({1.0, -1.0}).is_ok());
}

}  // namespace
}  // namespace custody
