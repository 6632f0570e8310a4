// A private job's plan and guarantee: what the coordinator derives from a job file's
// [privacy] section (core/job_spec.h) and its data set's size before the job starts, and
// the (epsilon, delta) the job has reached after any number of steps. See
// docs/ARCHITECTURE.md "Differential privacy" for the threat model.
//
// The mechanism: each step, every training example joins the step's batch with
// probability q = (workers * batch_size) / (training examples) (Poisson sampling; or a
// shuffled fixed-size batch, which the statement then names), each example's gradient is
// clipped to L2 norm C, the clipped gradients are summed, Gaussian noise N(0, sigma^2 C^2)
// is added once per step to the sum, and the noisy sum is divided by the expected batch
// size (workers * batch_size, a constant, so the divisor reveals nothing). The
// accountant is core/dp_accountant.h. Adjacency: adding or removing one training example.
//
// Errors name the numbers: kInvalidArgument for a delta not below 1/N or a batch larger
// than the data set, kFailedPrecondition for a target epsilon no noise up to the limit
// reaches. Thread-safety: pure functions and plain values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dp_accountant.h"
#include "core/job_spec.h"

namespace custody {

struct PrivacyPlan {
  double q = 0;                // sampling rate
  int64_t expected_batch = 0;  // workers * batch_size = q * N: the divisor of the noisy sum
  int64_t train_examples = 0;  // N
  int64_t steps = 0;           // planned steps
  double sigma = 0;            // noise multiplier (given, or calibrated)
  double clip_norm = 0;        // C
  double delta = 0;
  double target_epsilon = 0;   // 0 when sigma was given
  double planned_epsilon = 0;  // epsilon after `steps` steps
  bool calibrated = false;     // sigma came from target_epsilon
  PrivacySpec::Sampling sampling = PrivacySpec::Sampling::kPoisson;
  // The noise's standard deviation on each coordinate of the mean update: sigma * C / B.
  double noise_std_of_mean() const { return sigma * clip_norm / static_cast<double>(expected_batch); }
};

// One job's spending on a data set: `steps` steps of the Poisson-subsampled Gaussian
// mechanism with rate q and noise multiplier sigma. A data set's spending is the
// composition of its charges: their RDP curves add, order by order.
struct PrivacyCharge {
  double q = 0;
  double sigma = 0;
  int64_t steps = 0;
};

// The RDP curve of every charge composed, over the accountant's default orders.
Result<RdpAccountant> compose_charges(const std::vector<PrivacyCharge>& charges);

// The epsilon of a composed curve at `delta`; 0 for a curve nothing was charged to.
Result<double> epsilon_of(const RdpAccountant& curve, double delta);

// A submission against a data set's budget (epsilon, delta): what was spent, what the job
// asks for on its own, and what spent and asked compose to, each as epsilon at the
// budget's delta (the budget's delta, not the job's: RDP curves carry no delta, so every
// charge converts at the one the budget fixes).
struct BudgetCheck {
  double budget_epsilon = 0, delta = 0;
  double spent_epsilon = 0;      // every charge so far, composed
  double requested_epsilon = 0;  // this job's charge alone
  double total_epsilon = 0;      // spent and requested, composed
  double remaining_epsilon() const { return budget_epsilon > spent_epsilon ? budget_epsilon - spent_epsilon : 0; }
  bool fits() const { return total_epsilon <= budget_epsilon; }
  // "spent epsilon 1.2 of the budget's 3 (delta 1e-05); this job needs 2.5 on its own, 3.4 with
  // what was spent": the numbers a refusal names.
  std::string describe() const;
};
Result<BudgetCheck> check_budget(double budget_epsilon, double budget_delta, const std::vector<PrivacyCharge>& spent,
                                 const std::vector<PrivacyCharge>& requested);

// REQUIRES: spec.privacy.enabled. `steps` is the job's total (steps per epoch * epochs).
Result<PrivacyPlan> plan_privacy(const JobSpec& spec, int64_t train_examples, int64_t steps);

// The guarantee after `steps_done` steps (rolled-back steps included: they were computed
// and the servers saw their sums).
Result<EpsilonAtOrder> privacy_spent(const PrivacyPlan& plan, int64_t steps_done);

}  // namespace custody
