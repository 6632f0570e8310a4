// AES-256-GCM (NIST SP 800-38D, through OpenSSL): sealing bytes so that whoever lacks the
// key can neither read nor alter them unnoticed. Custody seals the data plane's parameter
// blocks between hosts and the checkpoint tensors at rest with it.
//
// Contract: a sealed message is nonce (12 bytes, from the OS's secure random source) ||
// ciphertext (as long as the plaintext) || tag (16 bytes). `aad` is authenticated, not
// encrypted: bind a message to its context (job, attempt, rank, record id) with it, so a
// sealed message cannot be replayed into another context. Random 96-bit nonces are safe
// for up to 2^32 messages per key (SP 800-38D 8.3); Custody's keys seal far fewer (one key
// per job attempt, or per store key version).
// Errors: kInvalidArgument for a key of the wrong length or a message too short to be
// sealed; kDataLoss when the tag does not verify (wrong key, wrong aad, or altered bytes);
// kUnavailable when the random source or OpenSSL fails. Nothing throws.
// Thread-safety: an AeadKey is immutable; seal/open may run concurrently with one key.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace custody {

inline constexpr size_t kAeadKeyBytes = 32;
inline constexpr size_t kAeadNonceBytes = 12;
inline constexpr size_t kAeadTagBytes = 16;
inline constexpr size_t kAeadOverhead = kAeadNonceBytes + kAeadTagBytes;

class AeadKey {
 public:
  // A fresh key from the OS's secure random source.
  static Result<AeadKey> random();
  // The key these 32 bytes (hex: 64 digits) are.
  static Result<AeadKey> from_hex(std::string_view hex);
  static Result<AeadKey> from_bytes(std::string_view bytes);
  AeadKey(const AeadKey&) = default;
  AeadKey& operator=(const AeadKey&) = default;
  ~AeadKey();

  // A key derived from this one for one purpose (HKDF-SHA256, RFC 5869, with `label` as
  // its info): the data plane's key of one rank, say. Different labels give independent
  // keys; holding a derived key reveals nothing of this one.
  Result<AeadKey> derive(std::string_view label) const;
  std::string hex() const;
  // The first 8 bytes of the key's SHA-256, hex: names the key in records and errors
  // without revealing it.
  std::string fingerprint() const;
  const uint8_t* data() const { return bytes_.data(); }

 private:
  AeadKey() = default;
  std::array<uint8_t, kAeadKeyBytes> bytes_{};
};

// Seals `size` bytes at `plain` into `out`, which must hold size + kAeadOverhead bytes.
Status seal_into(const AeadKey& key, const uint8_t* plain, size_t size, std::string_view aad, uint8_t* out);
// The same, returning the sealed bytes.
Result<std::vector<uint8_t>> seal(const AeadKey& key, const uint8_t* plain, size_t size, std::string_view aad);
inline Result<std::vector<uint8_t>> seal(const AeadKey& key, std::string_view plain, std::string_view aad) {
  return seal(key, reinterpret_cast<const uint8_t*>(plain.data()), plain.size(), aad);
}

// Opens a sealed message of `size` bytes into `out` (size - kAeadOverhead bytes); `out` is
// unspecified when it fails.
Status open_into(const AeadKey& key, const uint8_t* sealed, size_t size, std::string_view aad, uint8_t* out);
Result<std::vector<uint8_t>> open(const AeadKey& key, const uint8_t* sealed, size_t size, std::string_view aad);
inline Result<std::vector<uint8_t>> open(const AeadKey& key, std::string_view sealed, std::string_view aad) {
  return open(key, reinterpret_cast<const uint8_t*>(sealed.data()), sealed.size(), aad);
}

}  // namespace custody
