#include "core/aead.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <climits>
#include <memory>

#include "core/hash.h"
#include "core/hex.h"

namespace custody {
namespace {

using CipherContext = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

CipherContext new_context() { return CipherContext(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free); }

Status openssl_failed(const char* what) { return unavailable(std::string("OpenSSL could not ") + what); }

}  // namespace

AeadKey::~AeadKey() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }

Result<AeadKey> AeadKey::random() {
  AeadKey key;
  if (RAND_bytes(key.bytes_.data(), static_cast<int>(key.bytes_.size())) != 1) {
    return unavailable("the system's secure random source failed; no key was made");
  }
  return key;
}

Result<AeadKey> AeadKey::from_bytes(std::string_view bytes) {
  if (bytes.size() != kAeadKeyBytes) {
    return invalid_argument("an AES-256 key is 32 bytes, not " + std::to_string(bytes.size()));
  }
  AeadKey key;
  std::copy(bytes.begin(), bytes.end(), key.bytes_.begin());
  return key;
}

Result<AeadKey> AeadKey::from_hex(std::string_view hex) {
  CUSTODY_ASSIGN_OR_RETURN(std::string raw, custody::from_hex(hex, kAeadKeyBytes, "AES-256 key"));
  auto key = from_bytes(raw);
  OPENSSL_cleanse(raw.data(), raw.size());
  return key;
}

Result<AeadKey> AeadKey::derive(std::string_view label) const {
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr),
                                                                   &EVP_PKEY_CTX_free);
  AeadKey out;
  size_t length = out.bytes_.size();
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) <= 0 || EVP_PKEY_CTX_set_hkdf_md(ctx.get(), EVP_sha256()) <= 0 ||
      EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), bytes_.data(), static_cast<int>(bytes_.size())) <= 0 ||
      EVP_PKEY_CTX_add1_hkdf_info(ctx.get(), reinterpret_cast<const unsigned char*>(label.data()),
                                  static_cast<int>(label.size())) <= 0 ||
      EVP_PKEY_derive(ctx.get(), out.bytes_.data(), &length) <= 0 || length != out.bytes_.size()) {
    return openssl_failed("derive a key (HKDF-SHA256)");
  }
  return out;
}

std::string AeadKey::hex() const {
  return to_hex(std::string_view(reinterpret_cast<const char*>(bytes_.data()), bytes_.size()));
}

std::string AeadKey::fingerprint() const { return sha256_hex(bytes_.data(), bytes_.size()).substr(0, 16); }

Status seal_into(const AeadKey& key, const uint8_t* plain, size_t size, std::string_view aad, uint8_t* out) {
  if (size > static_cast<size_t>(INT_MAX) || aad.size() > static_cast<size_t>(INT_MAX)) {
    return invalid_argument("a sealed message is at most 2 GiB");
  }
  if (RAND_bytes(out, static_cast<int>(kAeadNonceBytes)) != 1) {
    return unavailable("the system's secure random source failed; nothing was sealed");
  }
  auto ctx = new_context();
  int n = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), out) != 1 ||
      (!aad.empty() && EVP_EncryptUpdate(ctx.get(), nullptr, &n, reinterpret_cast<const unsigned char*>(aad.data()),
                                         static_cast<int>(aad.size())) != 1) ||
      EVP_EncryptUpdate(ctx.get(), out + kAeadNonceBytes, &n, plain, static_cast<int>(size)) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out + kAeadNonceBytes + n, &n) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kAeadTagBytes),
                          out + kAeadNonceBytes + size) != 1) {
    return openssl_failed("seal a message (AES-256-GCM)");
  }
  return Status::ok();
}

Result<std::vector<uint8_t>> seal(const AeadKey& key, const uint8_t* plain, size_t size, std::string_view aad) {
  std::vector<uint8_t> out(size + kAeadOverhead);
  CUSTODY_RETURN_IF_ERROR(seal_into(key, plain, size, aad, out.data()));
  return out;
}

Status open_into(const AeadKey& key, const uint8_t* sealed, size_t size, std::string_view aad, uint8_t* out) {
  if (size < kAeadOverhead) {
    return invalid_argument("a sealed message is at least " + std::to_string(kAeadOverhead) + " bytes, not " +
                            std::to_string(size));
  }
  if (size > static_cast<size_t>(INT_MAX) || aad.size() > static_cast<size_t>(INT_MAX)) {
    return invalid_argument("a sealed message is at most 2 GiB");
  }
  const size_t length = size - kAeadOverhead;
  auto ctx = new_context();
  int n = 0;
  // The tag is checked by EVP_DecryptFinal_ex; OpenSSL wants it as a non-const pointer.
  uint8_t tag[kAeadTagBytes];
  std::copy(sealed + kAeadNonceBytes + length, sealed + size, tag);
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), sealed) != 1 ||
      (!aad.empty() && EVP_DecryptUpdate(ctx.get(), nullptr, &n, reinterpret_cast<const unsigned char*>(aad.data()),
                                         static_cast<int>(aad.size())) != 1) ||
      EVP_DecryptUpdate(ctx.get(), out, &n, sealed + kAeadNonceBytes, static_cast<int>(length)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kAeadTagBytes), tag) != 1) {
    return openssl_failed("open a sealed message (AES-256-GCM)");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), out + n, &n) != 1) {
    return data_loss("a sealed message does not verify: it was altered, or sealed under another key or for "
                     "another purpose");
  }
  return Status::ok();
}

Result<std::vector<uint8_t>> open(const AeadKey& key, const uint8_t* sealed, size_t size, std::string_view aad) {
  if (size < kAeadOverhead) {
    return invalid_argument("a sealed message is at least " + std::to_string(kAeadOverhead) + " bytes, not " +
                            std::to_string(size));
  }
  std::vector<uint8_t> out(size - kAeadOverhead);
  CUSTODY_RETURN_IF_ERROR(open_into(key, sealed, size, aad, out.data()));
  return out;
}

}  // namespace custody
