#include "core/secure_random.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cmath>
#include <cstring>

#include <Eigen/Core>

namespace custody {

struct SecureRandom::Cipher {
  EVP_CIPHER_CTX* ctx = nullptr;
  ~Cipher() { EVP_CIPHER_CTX_free(ctx); }
};

SecureRandom::SecureRandom(std::unique_ptr<Cipher> cipher) : cipher_(std::move(cipher)) {}
SecureRandom::SecureRandom(SecureRandom&&) noexcept = default;
SecureRandom& SecureRandom::operator=(SecureRandom&&) noexcept = default;
SecureRandom::~SecureRandom() = default;

Result<SecureRandom> SecureRandom::from_seed(std::string_view seed32) {
  if (seed32.size() != 32) {
    return invalid_argument("a secure random seed is 32 bytes, not " + std::to_string(seed32.size()));
  }
  auto cipher = std::make_unique<Cipher>();
  cipher->ctx = EVP_CIPHER_CTX_new();
  const std::array<uint8_t, 16> iv{};  // counter 0: each key is used for one stream only
  if (!cipher->ctx ||
      EVP_EncryptInit_ex(cipher->ctx, EVP_aes_256_ctr(), nullptr,
                         reinterpret_cast<const unsigned char*>(seed32.data()), iv.data()) != 1) {
    return unavailable("OpenSSL could not set up AES-256-CTR for the secure random source");
  }
  return SecureRandom(std::move(cipher));
}

Result<SecureRandom> SecureRandom::from_os() {
  std::array<unsigned char, 32> key{};
  if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1) {
    return unavailable("the OS's secure random source (OpenSSL RAND_bytes) failed");
  }
  auto r = from_seed(std::string_view(reinterpret_cast<const char*>(key.data()), key.size()));
  OPENSSL_cleanse(key.data(), key.size());
  return r;
}

void SecureRandom::refill() {
  // The keystream is the encryption of zeros.
  std::memset(block_.data(), 0, sizeof(block_));
  auto* bytes = reinterpret_cast<unsigned char*>(block_.data());
  int out = 0;
  EVP_EncryptUpdate(cipher_->ctx, bytes, &out, bytes, static_cast<int>(sizeof(block_)));
  next_ = 0;
}

uint64_t SecureRandom::next_u64() {
  if (next_ == block_.size()) refill();
  return block_[next_++];
}

double SecureRandom::uniform() { return (static_cast<double>(next_u64() >> 11) + 0.5) * 0x1.0p-53; }

double SecureRandom::gaussian() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  const double r = std::sqrt(-2.0 * std::log(uniform()));
  const double theta = 2.0 * M_PI * uniform();
  spare_ = r * std::sin(theta);
  has_spare_ = true;
  return r * std::cos(theta);
}

void SecureRandom::add_gaussian(float* x, size_t n, double std) {
  // Marsaglia's polar method in batches: (u, v) uniform on the square (-1, 1)^2, kept when
  // s = u^2 + v^2 lies in (0, 1) (pi/4 of them), each kept pair giving two independent
  // N(0, 1) values u f and v f with f = sqrt(-2 ln s / s). No trigonometry, and the
  // logarithms of a batch are one vectorized Eigen expression: a server adds noise to a
  // quarter of a million parameters a step (Box-Muller one value at a time took 6.5 ms).
  constexpr Eigen::Index kPairs = 256;
  Eigen::ArrayXd u(kPairs), v(kPairs), sq(kPairs), f(kPairs);
  size_t i = 0;
  while (i < n) {
    for (Eigen::Index k = 0; k < kPairs; ++k) {
      u[k] = 2 * uniform() - 1;
      v[k] = 2 * uniform() - 1;
    }
    sq = u.square() + v.square();
    // Rejected pairs (s >= 1) give values that are not used; s is never 0 (uniform() > 0
    // and 2 u - 1 is then 0 only for u = 1/2 exactly, whose square adds to v's).
    f = (-2.0 * sq.log() / sq).sqrt();
    for (Eigen::Index k = 0; k < kPairs && i < n; ++k) {
      if (!(sq[k] < 1.0 && sq[k] > 0.0)) continue;
      x[i++] += static_cast<float>(std * u[k] * f[k]);
      if (i < n) x[i++] += static_cast<float>(std * v[k] * f[k]);
    }
  }
}

uint64_t SecureRandom::geometric_skip(double p) {
  if (p >= 1) return 0;
  const double skip = std::floor(std::log(uniform()) / std::log1p(-p));
  return skip >= 1.8e19 ? UINT64_MAX : static_cast<uint64_t>(skip);
}

}  // namespace custody
