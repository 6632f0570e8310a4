#include "core/dp_accountant.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

namespace custody {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string num(double v) {
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}

// log(exp(a) + exp(b)) without overflow; -inf is the log of 0.
double log_add(double a, double b) {
  if (a == -kInf) return b;
  if (b == -kInf) return a;
  const double hi = std::max(a, b);
  return hi + std::log1p(std::exp(std::min(a, b) - hi));
}

// log(exp(a) - exp(b)); REQUIRES a >= b. Returns -inf when they are equal.
double log_sub(double a, double b) {
  if (b == -kInf) return a;
  if (a <= b) return -kInf;
  return a + std::log(-std::expm1(b - a));
}

// log(erfc(x)) for all x: erfc underflows near x = 27, so past x = 20 the asymptotic series
// erfc(x) ~ exp(-x^2) / (x sqrt(pi)) * (1 - 1/(2x^2) + 3/(4x^4) - 15/(8x^6)) is used; its
// next term, 105/(16 x^8), is below 3e-10 there.
double log_erfc(double x) {
  if (x < 20.0) return std::log(std::erfc(x));
  const double x2 = x * x;
  const double series = 1.0 - 1.0 / (2 * x2) + 3.0 / (4 * x2 * x2) - 15.0 / (8 * x2 * x2 * x2);
  return -x2 - std::log(x) - 0.5 * std::log(M_PI) + std::log(series);
}

// log A_alpha for an integer alpha >= 2, where A_alpha = E_{z~mu0}[(mu(z)/mu0(z))^alpha],
// mu0 = N(0, sigma^2), mu = (1-q) mu0 + q N(1, sigma^2). Binomial expansion (Mironov et al.
// 2019, section 3.2): A_alpha = sum_k C(alpha,k) (1-q)^(alpha-k) q^k exp((k^2-k)/(2 sigma^2)).
// Every term is positive, so the log-space sum is exact up to rounding.
double log_a_integer(double q, double sigma, int64_t alpha) {
  double log_a = -kInf;
  const double log_q = std::log(q);
  const double log_1mq = std::log1p(-q);
  const double two_s2 = 2 * sigma * sigma;
  for (int64_t k = 0; k <= alpha; ++k) {
    const double kd = static_cast<double>(k);
    const double log_binom = std::lgamma(alpha + 1.0) - std::lgamma(kd + 1) - std::lgamma(alpha - kd + 1);
    const double term = log_binom + kd * log_q + (alpha - kd) * log_1mq + (kd * kd - kd) / two_s2;
    log_a = log_add(log_a, term);
  }
  return log_a;
}

// log A_alpha for a fractional alpha > 1 (Mironov et al. 2019, section 3.3): the integral
// is split at z0 = sigma^2 log(1/q - 1) + 1/2, where mu = mu0 * (something >= 1 or <= 1) changes
// side, and each half is a convergent series in generalised binomial coefficients
// C(alpha, i) whose signs alternate once i > alpha. Positive and negative terms are summed
// apart (each in log space) and subtracted once at the end, so no partial sum can go
// negative in log space. Stops when both halves' terms are below e^-30 (relative to 1; A >= 1).
Result<double> log_a_fractional(double q, double sigma, double alpha) {
  double pos = -kInf;
  double neg = -kInf;
  const double z0 = sigma * sigma * std::log(1 / q - 1) + 0.5;
  const double log_q = std::log(q);
  const double log_1mq = std::log1p(-q);
  const double two_s2 = 2 * sigma * sigma;
  const double sqrt2_sigma = std::sqrt(2.0) * sigma;
  double log_abs_coef = 0;  // log |C(alpha, 0)|
  bool coef_negative = false;
  for (int64_t i = 0; i < 100000; ++i) {
    const double id = static_cast<double>(i);
    const double j = alpha - id;
    const double log_t0 = log_abs_coef + id * log_q + j * log_1mq;
    const double log_t1 = log_abs_coef + j * log_q + id * log_1mq;
    const double log_e0 = std::log(0.5) + log_erfc((id - z0) / sqrt2_sigma);
    const double log_e1 = std::log(0.5) + log_erfc((z0 - j) / sqrt2_sigma);
    const double log_s0 = log_t0 + (id * id - id) / two_s2 + log_e0;
    const double log_s1 = log_t1 + (j * j - j) / two_s2 + log_e1;
    const double both = log_add(log_s0, log_s1);
    if (coef_negative) {
      neg = log_add(neg, both);
    } else {
      pos = log_add(pos, both);
    }
    if (std::max(log_s0, log_s1) < -30 && id > alpha) return log_sub(pos, neg);
    // C(alpha, i+1) = C(alpha, i) * (alpha - i) / (i + 1): the sign flips when alpha - i < 0.
    log_abs_coef += std::log(std::fabs(alpha - id)) - std::log(id + 1);
    if (alpha - id < 0) coef_negative = !coef_negative;
  }
  return internal_error("the RDP series at order " + num(alpha) + " (q=" + num(q) + ", sigma=" + num(sigma) +
                        ") did not converge in 100000 terms");
}

bool is_integer(double v) { return std::floor(v) == v; }

}  // namespace

const std::vector<double>& default_rdp_orders() {
  static const std::vector<double> orders = [] {
    std::vector<double> o;
    for (int x = 1; x < 100; ++x) o.push_back(1 + x / 10.0);
    for (int a = 11; a < 64; ++a) o.push_back(a);
    for (double a : {128.0, 256.0, 512.0, 1024.0}) o.push_back(a);
    return o;
  }();
  return orders;
}

Result<double> rdp_subsampled_gaussian(double q, double sigma, double order) {
  if (!(q >= 0 && q <= 1)) return invalid_argument("sampling rate q=" + num(q) + " must lie in [0, 1]");
  if (!(sigma >= 0)) return invalid_argument("noise multiplier sigma=" + num(sigma) + " must be >= 0");
  if (!(order > 1)) return invalid_argument("RDP order " + num(order) + " must be > 1");
  if (q == 0) return 0.0;
  if (sigma == 0 || std::isinf(order)) return kInf;
  if (q == 1) return order / (2 * sigma * sigma);
  double log_a = 0;
  if (is_integer(order) && order < 1e6) {
    log_a = log_a_integer(q, sigma, static_cast<int64_t>(order));
  } else {
    CUSTODY_ASSIGN_OR_RETURN(log_a, log_a_fractional(q, sigma, order));
  }
  return log_a / (order - 1);
}

Result<EpsilonAtOrder> epsilon_from_rdp(const std::vector<double>& orders, const std::vector<double>& rdp,
                                        double delta, RdpConversion conversion) {
  if (orders.size() != rdp.size() || orders.empty()) {
    return invalid_argument("an RDP curve needs one value per order: " + std::to_string(orders.size()) +
                            " orders, " + std::to_string(rdp.size()) + " values");
  }
  if (!(delta > 0 && delta < 1)) return invalid_argument("delta=" + num(delta) + " must lie in (0, 1)");
  EpsilonAtOrder best{kInf, orders.front()};
  for (size_t i = 0; i < orders.size(); ++i) {
    const double a = orders[i];
    const double r = rdp[i];
    if (!(a > 1)) return invalid_argument("RDP order " + num(a) + " must be > 1");
    if (!(r >= 0)) return invalid_argument("RDP value " + num(r) + " at order " + num(a) + " must be >= 0");
    double eps = kInf;
    if (conversion == RdpConversion::kClassic) {
      eps = r - std::log(delta) / (a - 1);
    } else if (delta * delta + std::expm1(-r) > 0) {
      // Pinsker: the total variation is at most sqrt(1 - exp(-KL)) <= delta, so (0, delta).
      eps = 0;
    } else if (a > 1.01) {
      // Near alpha = 1 the bound is numerically unstable and never the best one.
      eps = r + std::log1p(-1 / a) - std::log(delta * a) / (a - 1);
    }
    if (eps < best.epsilon) best = {eps, a};
  }
  best.epsilon = std::max(0.0, best.epsilon);
  return best;
}

RdpAccountant::RdpAccountant(std::vector<double> orders)
    : orders_(std::move(orders)), rdp_(orders_.size(), 0.0) {}

Status RdpAccountant::compose_subsampled_gaussian(double q, double sigma, int64_t steps) {
  if (steps < 0) return invalid_argument("steps=" + std::to_string(steps) + " must be >= 0");
  std::vector<double> next = rdp_;
  for (size_t i = 0; i < orders_.size(); ++i) {
    CUSTODY_ASSIGN_OR_RETURN(const double one, rdp_subsampled_gaussian(q, sigma, orders_[i]));
    next[i] += steps == 0 ? 0.0 : one * static_cast<double>(steps);
  }
  rdp_ = std::move(next);
  return Status::ok();
}

Status RdpAccountant::add(const RdpAccountant& other) {
  if (other.orders_ != orders_) {
    return invalid_argument("RDP curves over different orders cannot be added (" +
                            std::to_string(orders_.size()) + " and " + std::to_string(other.orders_.size()) +
                            " orders)");
  }
  for (size_t i = 0; i < rdp_.size(); ++i) rdp_[i] += other.rdp_[i];
  return Status::ok();
}

Result<EpsilonAtOrder> RdpAccountant::epsilon(double delta, RdpConversion conversion) const {
  return epsilon_from_rdp(orders_, rdp_, delta, conversion);
}

Status RdpAccountant::set_rdp(std::vector<double> rdp) {
  if (rdp.size() != orders_.size()) {
    return invalid_argument("a recorded RDP curve has " + std::to_string(rdp.size()) + " values for " +
                            std::to_string(orders_.size()) + " orders");
  }
  for (double r : rdp) {
    if (!(r >= 0)) return invalid_argument("a recorded RDP value " + num(r) + " must be >= 0");
  }
  rdp_ = std::move(rdp);
  return Status::ok();
}

Result<EpsilonAtOrder> dp_sgd_epsilon(double q, double sigma, int64_t steps, double delta,
                                      const std::vector<double>& orders) {
  RdpAccountant acc(orders);
  CUSTODY_RETURN_IF_ERROR(acc.compose_subsampled_gaussian(q, sigma, steps));
  return acc.epsilon(delta);
}

Result<NoiseCalibration> calibrate_noise_multiplier(double target_epsilon, double delta, double q,
                                                    int64_t steps, double max_sigma, double tolerance,
                                                    const std::vector<double>& orders) {
  if (!(target_epsilon > 0 && std::isfinite(target_epsilon))) {
    return invalid_argument("target epsilon=" + num(target_epsilon) + " must be a positive number");
  }
  if (!(q > 0 && q <= 1)) return invalid_argument("sampling rate q=" + num(q) + " must lie in (0, 1]");
  if (steps < 1) return invalid_argument("steps=" + std::to_string(steps) + " must be >= 1");
  if (!(tolerance > 0)) return invalid_argument("tolerance=" + num(tolerance) + " must be > 0");
  auto eps_at = [&](double sigma) { return dp_sgd_epsilon(q, sigma, steps, delta, orders); };

  // Epsilon falls as sigma grows: find an upper bracket by doubling, then bisect.
  double lo = 0;
  double hi = 1;
  CUSTODY_ASSIGN_OR_RETURN(EpsilonAtOrder at_hi, eps_at(hi));
  while (at_hi.epsilon > target_epsilon) {
    if (hi >= max_sigma) {
      return failed_precondition("no noise multiplier up to " + num(max_sigma) +
                                 " reaches epsilon=" + num(target_epsilon) + " at delta=" + num(delta) +
                                 " with sampling rate q=" + num(q) + " over " + std::to_string(steps) +
                                 " steps (sigma=" + num(max_sigma) + " gives epsilon=" + num(at_hi.epsilon) +
                                 "): raise the target, lower q or train for fewer steps");
    }
    lo = hi;
    hi = std::min(hi * 2, max_sigma);
    CUSTODY_ASSIGN_OR_RETURN(at_hi, eps_at(hi));
  }
  while (at_hi.epsilon < target_epsilon - tolerance && hi - lo > 1e-9 * hi) {
    const double mid = (lo + hi) / 2;
    CUSTODY_ASSIGN_OR_RETURN(const EpsilonAtOrder at_mid, eps_at(mid));
    if (at_mid.epsilon > target_epsilon) {
      lo = mid;
    } else {
      hi = mid;
      at_hi = at_mid;
    }
  }
  return NoiseCalibration{hi, at_hi.epsilon, at_hi.order};
}

}  // namespace custody
