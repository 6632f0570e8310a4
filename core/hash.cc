#include "core/hash.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstdlib>
#include <utility>
#include <vector>

#include "core/hex.h"

namespace custody {

namespace {
std::string digest_hex(const unsigned char* digest) {
  static const char* kHex = "0123456789abcdef";
  std::string out(2 * SHA256_DIGEST_LENGTH, '0');
  for (int i = 0; i < SHA256_DIGEST_LENGTH; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 15];
  }
  return out;
}
}  // namespace

struct Sha256::State {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  State() {
    // Only allocation can fail here; without a context no digest is possible at all.
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) std::abort();
  }
  ~State() { EVP_MD_CTX_free(ctx); }
};

Sha256::Sha256() : state_(new State) {}
Sha256::~Sha256() { delete state_; }
Sha256::Sha256(Sha256&& o) noexcept : state_(o.state_) { o.state_ = nullptr; }
Sha256& Sha256::operator=(Sha256&& o) noexcept {
  std::swap(state_, o.state_);
  return *this;
}
void Sha256::update(const void* data, size_t size) { EVP_DigestUpdate(state_->ctx, data, size); }
std::string Sha256::hex() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(state_->ctx, digest, &len);
  EVP_DigestInit_ex(state_->ctx, EVP_sha256(), nullptr);
  return digest_hex(digest);
}

std::string sha256_hex(const void* data, size_t size) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(static_cast<const unsigned char*>(data), size, digest);
  static const char* kHex = "0123456789abcdef";
  std::string out(2 * SHA256_DIGEST_LENGTH, '0');
  for (int i = 0; i < SHA256_DIGEST_LENGTH; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 15];
  }
  return out;
}

Result<std::string> random_token(size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) {
    // No secure randomness means no safe token: refuse rather than hand out a guessable one.
    return unavailable("the system's secure random source failed; no token was made");
  }
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : raw) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

Result<std::string> uuid_v5(std::string_view namespace_uuid, std::string_view name) {
  std::string compact;
  bool dashes = namespace_uuid.size() == 36;
  for (size_t i = 0; dashes && i < namespace_uuid.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      dashes = namespace_uuid[i] == '-';
    } else {
      compact += namespace_uuid[i];
    }
  }
  auto ns = dashes ? from_hex(compact, 16, "namespace UUID")
                   : Result<std::string>(invalid_argument("not of the form 8-4-4-4-12 hex digits"));
  if (!ns.is_ok()) {
    return invalid_argument("'" + std::string(namespace_uuid) + "' is not a UUID: " + ns.status().message());
  }
  // SHA-1 over the namespace's 16 bytes (network order, as written) and the name's bytes;
  // the first 16 bytes of the digest, with the version and variant bits set.
  std::string input = ns.value();
  input.append(name.data(), name.size());
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  digest[6] = static_cast<unsigned char>((digest[6] & 0x0f) | 0x50);
  digest[8] = static_cast<unsigned char>((digest[8] & 0x3f) | 0x80);
  const std::string hex = to_hex(std::string_view(reinterpret_cast<const char*>(digest), 16));
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" + hex.substr(16, 4) + "-" +
         hex.substr(20, 12);
}

}  // namespace custody
