#include "core/privacy.h"

#include <sstream>

namespace custody {
namespace {

std::string num(double v) {
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}

}  // namespace

Result<PrivacyPlan> plan_privacy(const JobSpec& spec, int64_t train_examples, int64_t steps) {
  const PrivacySpec& p = spec.privacy;
  if (!p.enabled) return invalid_argument("the job has no [privacy] section");
  if (train_examples <= 0 || steps <= 0) {
    return invalid_argument("a private job needs training examples and steps (" +
                            std::to_string(train_examples) + " examples, " + std::to_string(steps) +
                            " steps)");
  }
  PrivacyPlan plan;
  plan.train_examples = train_examples;
  plan.steps = steps;
  plan.expected_batch = static_cast<int64_t>(spec.workers) * spec.batch_size;
  plan.clip_norm = p.clip_norm;
  plan.delta = p.delta;
  plan.sampling = p.sampling;
  if (plan.expected_batch > train_examples) {
    return invalid_argument("the expected batch (" + std::to_string(plan.expected_batch) +
                            " = workers * batch_size) exceeds the " + std::to_string(train_examples) +
                            " training examples; lower job.batch_size");
  }
  plan.q = static_cast<double>(plan.expected_batch) / static_cast<double>(train_examples);
  // delta bounds the probability of a total failure for one person; at delta >= 1/N a
  // mechanism that publishes one random record outright would qualify.
  if (!(p.delta < 1.0 / static_cast<double>(train_examples))) {
    return invalid_argument("'privacy.delta' (" + num(p.delta) + ") must be below 1/N = " +
                            num(1.0 / static_cast<double>(train_examples)) + " for this data set's " +
                            std::to_string(train_examples) + " training examples (1e-5 or less is usual)");
  }
  if (p.noise_multiplier > 0) {
    plan.sigma = p.noise_multiplier;
    CUSTODY_ASSIGN_OR_RETURN(auto eps, dp_sgd_epsilon(plan.q, plan.sigma, steps, p.delta));
    plan.planned_epsilon = eps.epsilon;
    return plan;
  }
  auto cal = calibrate_noise_multiplier(p.target_epsilon, p.delta, plan.q, steps, p.max_noise_multiplier);
  if (!cal.is_ok()) {
    return Status(cal.status().code(), "the job cannot reach its privacy target: " + cal.status().message() +
                                           " (q = " + std::to_string(plan.expected_batch) + "/" +
                                           std::to_string(train_examples) + ")");
  }
  plan.sigma = cal->sigma;
  plan.planned_epsilon = cal->epsilon;
  plan.target_epsilon = p.target_epsilon;
  plan.calibrated = true;
  return plan;
}

Result<EpsilonAtOrder> privacy_spent(const PrivacyPlan& plan, int64_t steps_done) {
  return dp_sgd_epsilon(plan.q, plan.sigma, steps_done, plan.delta);
}

Result<RdpAccountant> compose_charges(const std::vector<PrivacyCharge>& charges) {
  RdpAccountant composed;
  for (const PrivacyCharge& c : charges) {
    if (c.steps == 0) continue;
    CUSTODY_RETURN_IF_ERROR(composed.compose_subsampled_gaussian(c.q, c.sigma, c.steps));
  }
  return composed;
}

Result<double> epsilon_of(const RdpAccountant& curve, double delta) {
  // Nothing ran: no epsilon at all (the conversion's bound would say a few thousandths).
  bool empty = true;
  for (double r : curve.rdp()) empty = empty && r == 0;
  if (empty) return 0.0;
  CUSTODY_ASSIGN_OR_RETURN(auto e, curve.epsilon(delta));
  return e.epsilon;
}

std::string BudgetCheck::describe() const {
  return "spent epsilon " + num(spent_epsilon) + " of the data set's budget of " + num(budget_epsilon) +
         " (delta " + num(delta) + "), remaining " + num(remaining_epsilon()) + "; this job needs epsilon " +
         num(requested_epsilon) + " on its own, " + num(total_epsilon) + " composed with what was spent";
}

Result<BudgetCheck> check_budget(double budget_epsilon, double budget_delta, const std::vector<PrivacyCharge>& spent,
                                 const std::vector<PrivacyCharge>& requested) {
  if (!(budget_epsilon > 0) || !(budget_delta > 0 && budget_delta < 1)) {
    return invalid_argument("a privacy budget needs epsilon > 0 and 0 < delta < 1 (got epsilon " + num(budget_epsilon) +
                            ", delta " + num(budget_delta) + ")");
  }
  BudgetCheck check;
  check.budget_epsilon = budget_epsilon;
  check.delta = budget_delta;
  CUSTODY_ASSIGN_OR_RETURN(RdpAccountant before, compose_charges(spent));
  CUSTODY_ASSIGN_OR_RETURN(RdpAccountant asked, compose_charges(requested));
  RdpAccountant after = before;
  CUSTODY_RETURN_IF_ERROR(after.add(asked));
  CUSTODY_ASSIGN_OR_RETURN(check.spent_epsilon, epsilon_of(before, budget_delta));
  CUSTODY_ASSIGN_OR_RETURN(check.requested_epsilon, epsilon_of(asked, budget_delta));
  CUSTODY_ASSIGN_OR_RETURN(check.total_epsilon, epsilon_of(after, budget_delta));
  return check;
}

}  // namespace custody
