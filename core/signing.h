// Ed25519 (RFC 8032) signing keys, signature verification, and signed Merkle tree heads:
// how the custody store's logs are committed to, so that a copy of the store can be
// checked against heads a third party kept.
//
// Contract: keys and signatures travel as lowercase hex of their raw bytes (public key 32
// bytes, signature 64 bytes); a public key may also be given as a PEM SubjectPublicKeyInfo
// ("-----BEGIN PUBLIC KEY-----"). A private key on disk is unencrypted PKCS#8 PEM, mode
// 0600, so `openssl pkey -in FILE -pubout` reads it. Nothing here throws. Error codes:
//   kInvalidArgument    malformed input: bad hex, wrong length, not an Ed25519 key, a tree
//                       head field outside its canonical form
//   kDataLoss           well-formed, but the signature does not verify (the message, the
//                       signature or the key differs from what was signed), or a key file
//                       is not a PEM Ed25519 private key
//   kFailedPrecondition a key file others may read: fix its mode (chmod 600) first
//   kPermissionDenied / kNotFound / kUnavailable  the file system refused (named path)
// Thread-safety: a SigningKey is immutable after construction; its const methods may run
// concurrently from any thread. Copies share the underlying OpenSSL key.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/error.h"

// OpenSSL's key type, declared here so that callers need not include OpenSSL.
struct evp_pkey_st;

namespace custody {

class SigningKey {
 public:
  // Loads the private key at `path`, or, if there is no file there, creates one (a fresh
  // key from the OS's secure random source, written to a temporary file in the same
  // directory with mode 0600, synced, then renamed into place, and the directory synced).
  // A file that group or others may access is refused: a key others could read is not a
  // secret any more. *created (if given) says which happened.
  // Not safe against two processes creating the same path at once (the later rename
  // wins); the one process that owns the store creates its key.
  static Result<SigningKey> load_or_create(const std::string& path, bool* created = nullptr);
  // The key whose RFC 8032 secret key (seed) is these 32 bytes in hex: for test vectors
  // and for keys kept elsewhere.
  static Result<SigningKey> from_seed_hex(std::string_view seed_hex);

  // The raw 32-byte public key, hex.
  std::string public_key_hex() const;
  // SubjectPublicKeyInfo PEM, as `openssl pkey -pubout` prints it.
  std::string public_key_pem() const;
  // key_id_of(public_key_hex()).
  std::string key_id() const;
  // The raw 64-byte Ed25519 signature of `message`, hex. Ed25519 is deterministic: the
  // same key and message always give the same signature. Empty only if OpenSSL could not
  // allocate (a signature that then never verifies).
  std::string sign(std::string_view message) const;

 private:
  explicit SigningKey(std::shared_ptr<evp_pkey_st> key) : key_(std::move(key)) {}
  std::shared_ptr<evp_pkey_st> key_;
};

// Ok when `signature_hex` is `message` signed by the key `public_key` (hex or PEM).
Status verify_signature(std::string_view public_key, std::string_view message,
                        std::string_view signature_hex);

// A short name for a public key (hex or PEM): the first 16 hex digits of SHA-256 of the
// raw 32-byte key. It picks a key, it does not authenticate one: verify_tree_head checks
// the signature with the key it was given.
Result<std::string> key_id_of(std::string_view public_key);

// A Merkle log's head at one size, signed. `log` names the log (1 to 256 printable ASCII
// characters, no spaces); `root_hex` is its RFC 6962 root at `size` as 64 lowercase hex
// digits; `time_ms` is when the head was made (milliseconds since the Unix epoch).
struct TreeHead {
  std::string log;
  uint64_t size = 0;
  std::string root_hex;
  int64_t time_ms = 0;
  std::string signature_hex;  // set by sign_tree_head
  std::string key_id;         // set by sign_tree_head: key_id_of the signing key
};

// The exact bytes that are signed, the decimal numbers without sign padding or leading
// zeros ("-" only for a negative time):
//   "custody-tree-head-v1\n" + log + "\n" + size + "\n" + root_hex + "\n" + time_ms
// No trailing newline. Every field is canonical (see TreeHead), so one head has one
// message and no field can spill into the next. signature_hex and key_id are not part of
// it. kInvalidArgument names the first field that is not canonical.
Result<std::string> tree_head_message(const TreeHead& head);

// Sets head.signature_hex and head.key_id. The other fields must be canonical.
Status sign_tree_head(const SigningKey& key, TreeHead& head);

// Ok when `head` was signed by `public_key` (hex or PEM) and names that key's id.
Status verify_tree_head(const TreeHead& head, std::string_view public_key);

}  // namespace custody
