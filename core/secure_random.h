// Random numbers for differential privacy: Poisson sampling of examples and the Gaussian
// noise of DP-SGD. A keystream of AES-256 in counter mode (OpenSSL) whose key comes from
// the OS's secure random source (RAND_bytes), so neither the noise nor the sampling can be
// predicted by whoever knows the job file, its seed, or earlier outputs: a noise draw that
// could be reproduced could be subtracted, and the guarantee would be void.
//
// from_seed() takes the key from the caller instead; only tests use it (fixed draws to
// check the distribution). The Gaussian uses the Box-Muller transform in double precision
// on 53-bit uniforms. Known limit: floating-point samplers leak through the low bits of
// their outputs in theory (Mironov 2012 for Laplace; Jin et al. 2022 for Gaussian
// samplers); Custody does not use a discrete or snapping sampler (docs/ARCHITECTURE.md).
// Errors: kUnavailable when the OS's source or OpenSSL fails; kInvalidArgument for a seed
// that is not 32 bytes. Thread-safety: none; one generator per thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "core/error.h"

namespace custody {

class SecureRandom {
 public:
  static Result<SecureRandom> from_os();
  static Result<SecureRandom> from_seed(std::string_view seed32);
  SecureRandom(SecureRandom&&) noexcept;
  SecureRandom& operator=(SecureRandom&&) noexcept;
  ~SecureRandom();

  uint64_t next_u64();
  // Uniform on (0, 1): never 0, so log() of it is finite.
  double uniform();
  // N(0, 1).
  double gaussian();
  // x[i] += std * N(0, 1), independently for each i.
  void add_gaussian(float* x, size_t n, double std);
  // The number of failures before the next success of a Bernoulli(p) sequence: skipping
  // this many examples is Poisson sampling at rate p without one draw per example.
  // REQUIRES: 0 < p <= 1.
  uint64_t geometric_skip(double p);

 private:
  struct Cipher;
  explicit SecureRandom(std::unique_ptr<Cipher> cipher);
  void refill();

  std::unique_ptr<Cipher> cipher_;
  std::array<uint64_t, 512> block_{};
  size_t next_ = 512;
  double spare_ = 0;
  bool has_spare_ = false;
};

}  // namespace custody
