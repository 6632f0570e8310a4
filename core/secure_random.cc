#include "core/secure_random.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cmath>
#include <cstring>

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
  for (size_t i = 0; i < n; ++i) x[i] += static_cast<float>(std * gaussian());
}

uint64_t SecureRandom::geometric_skip(double p) {
  if (p >= 1) return 0;
  const double skip = std::floor(std::log(uniform()) / std::log1p(-p));
  return skip >= 1.8e19 ? UINT64_MAX : static_cast<uint64_t>(skip);
}

}  // namespace custody
