// The privacy accountant of DP-SGD: Renyi differential privacy (RDP, Mironov 2017) of the
// Poisson-subsampled Gaussian mechanism (Mironov, Talwar, Zhang 2019, "Renyi Differential
// Privacy of the Sampled Gaussian Mechanism", arXiv:1908.10530), composed over steps and
// converted to (epsilon, delta)-DP; and the calibration of the noise multiplier sigma for a
// target epsilon.
//
// What it assumes (and what the privacy statement must therefore say): each step samples
// every example independently with probability q (Poisson sampling); each sampled example's
// gradient is clipped to L2 norm C; Gaussian noise of standard deviation sigma*C is added
// once to the step's summed gradient; neighbouring data sets differ by adding or removing
// one example (example-level add/remove adjacency). Shuffled fixed-size batches are not
// covered by this analysis; callers that use them must say so.
//
// Orders: integer orders are exact (binomial expansion of A_alpha, summed in log space);
// fractional orders use the two-sided series of Mironov et al. 2019 section 3.3 with erfc
// terms, summed until the terms fall below e^-30 of the total. kDefaultOrders is the set
// Google's dp_accounting uses by default (1.1..10.9 step 0.1, 11..63, 128, 256, 512, 1024).
//
// Conversion RDP -> (epsilon, delta): the tighter bound of Canonne, Kamath, Steinke 2020
// (arXiv:2004.00010 Proposition 12) / Balle et al. 2020 (arXiv:1905.09982 Theorem 21):
//   epsilon = rdp(alpha) + log1p(-1/alpha) - log(delta * alpha) / (alpha - 1),
// minimised over the orders, clamped at 0; the same as dp_accounting and Opacus >= 1.0.
// The classic conversion (rdp + log(1/delta)/(alpha-1)) is also offered, for comparison.
//
// Errors: kInvalidArgument naming the bad value (q outside [0,1], sigma < 0, delta outside
// (0,1), an order <= 1, steps < 0). Nothing throws.
// Thread-safety: free functions are pure; an RdpAccountant is a plain value (not
// synchronised: one thread at a time, or copy it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"

namespace custody {

// The orders this accountant evaluates by default (see above).
const std::vector<double>& default_rdp_orders();

// RDP at `order` of one step of the Poisson-subsampled Gaussian mechanism with sampling
// rate q and noise multiplier sigma (noise std / sensitivity). Infinity when sigma == 0
// (and q > 0) or order is infinite; 0 when q == 0; alpha / (2 sigma^2) when q == 1.
Result<double> rdp_subsampled_gaussian(double q, double sigma, double order);

enum class RdpConversion : uint8_t {
  kTight = 0,    // Canonne-Kamath-Steinke 2020 / Balle et al. 2020 (the default)
  kClassic = 1,  // Mironov 2017 Proposition 3: rdp + log(1/delta) / (alpha - 1)
};

struct EpsilonAtOrder {
  double epsilon = 0;
  double order = 0;  // the order that gave the smallest epsilon
};

// The smallest epsilon such that the mechanism with RDP curve `rdp` over `orders` is
// (epsilon, delta)-DP. REQUIRES: orders.size() == rdp.size() (else kInvalidArgument).
Result<EpsilonAtOrder> epsilon_from_rdp(const std::vector<double>& orders, const std::vector<double>& rdp,
                                        double delta, RdpConversion conversion = RdpConversion::kTight);

// An RDP curve accumulated over steps: composition adds the curves order by order. Two
// accountants over the same orders add (composition across jobs on one data set).
class RdpAccountant {
 public:
  explicit RdpAccountant(std::vector<double> orders = default_rdp_orders());

  // Adds `steps` steps of the subsampled Gaussian mechanism (q, sigma).
  Status compose_subsampled_gaussian(double q, double sigma, int64_t steps);
  // Adds another curve over the same orders (kInvalidArgument if the orders differ).
  Status add(const RdpAccountant& other);
  Result<EpsilonAtOrder> epsilon(double delta, RdpConversion conversion = RdpConversion::kTight) const;

  const std::vector<double>& orders() const { return orders_; }
  const std::vector<double>& rdp() const { return rdp_; }
  // Restores a recorded curve (kInvalidArgument on a size mismatch or a negative value).
  Status set_rdp(std::vector<double> rdp);

 private:
  std::vector<double> orders_;
  std::vector<double> rdp_;
};

// Epsilon of `steps` steps of the subsampled Gaussian mechanism at `delta`.
Result<EpsilonAtOrder> dp_sgd_epsilon(double q, double sigma, int64_t steps, double delta,
                                      const std::vector<double>& orders = default_rdp_orders());

struct NoiseCalibration {
  double sigma = 0;    // the smallest noise multiplier found whose epsilon <= target
  double epsilon = 0;  // the epsilon that sigma gives (<= target, within `tolerance` of it)
  double order = 0;
};

// The noise multiplier for a target epsilon: bisection on sigma (epsilon decreases as sigma
// grows) until the epsilon reached lies in [target - tolerance, target]. Refuses, naming the
// numbers, when even sigma = max_sigma does not reach the target (kFailedPrecondition).
Result<NoiseCalibration> calibrate_noise_multiplier(double target_epsilon, double delta, double q,
                                                    int64_t steps, double max_sigma = 1000.0,
                                                    double tolerance = 1e-3,
                                                    const std::vector<double>& orders = default_rdp_orders());

}  // namespace custody
