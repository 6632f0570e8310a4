// The store key: the AES-256-GCM keys (core/aead.h) that seal checkpoint tensors at rest,
// kept in a file outside the store, as the notary's signing key is, so that a copy of the
// store's files (a stolen disk, a backup) is not a copy of the weights.
//
// The key file (default "<store>.store-key", the coordinator's --store-key; mode 0600,
// refused if group or others may read it; written whole or not at all) holds JSON:
//   {"format": "custody-store-key-v1", "current": "<64 hex>", "retiring": ["<64 hex>", ...]}
// `current` seals every tensor written. `retiring` keys only open tensors sealed before a
// `custody store rekey` that has not finished; the rekey drops them when every tensor is
// sealed under the current key. A key's *version* is its fingerprint (AeadKey::fingerprint,
// 16 hex digits of its SHA-256): recorded with every sealed tensor, so a reader knows which
// key opens it, and naming it in errors reveals nothing of the key.
//
// How tensors are sealed and bound to their records: storage/checkpoint.h. What the key
// protects and what a stolen store still reveals: docs/ARCHITECTURE.md, "The store at rest".
//
// Thread-safety: a StoreKeys is immutable once made; share it freely. The file functions
// race with another writer of the same path (one coordinator, or one rekey, per store).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/aead.h"
#include "core/error.h"

namespace custody::storage {

class CustodyStore;

class StoreKeys {
 public:
  // The key file at `path`. Errors: kNotFound (no file), kFailedPrecondition (group or
  // others may read it, or it is not a regular file), kDataLoss (not a store key file).
  static Result<StoreKeys> load(const std::string& path);
  // A new key, written to `path` (mode 0600), which must not exist yet.
  static Result<StoreKeys> create(const std::string& path);
  // A key held in memory only (tests; a store that is never written to a file).
  static StoreKeys of(AeadKey key);

  const AeadKey& current() const { return keys_.front(); }
  const std::string& current_version() const { return versions_.front(); }
  // The key of a version; null if these keys do not hold it.
  const AeadKey* find(std::string_view version) const;
  // Current first, then the retiring ones.
  const std::vector<std::string>& versions() const { return versions_; }
  // True while a rekey has not finished: older keys are kept to open what they sealed.
  bool rotating() const { return keys_.size() > 1; }

  // These keys with a fresh current key, every key so far retiring.
  Result<StoreKeys> rotated() const;
  // These keys with the current one only (the rekey's end).
  StoreKeys current_only() const;
  // Writes the keys to `path` atomically (temporary file, sync, rename), mode 0600.
  Status save(const std::string& path) const;

 private:
  explicit StoreKeys(std::vector<AeadKey> keys);
  std::vector<AeadKey> keys_;  // [0] is current
  std::vector<std::string> versions_;
};

// "<store>.store-key", beside the store (trailing slashes of the store's path dropped).
std::string default_store_key_path(const std::string& store_path);

// For the store's writer (the coordinator; a rekey): the keys of the key file at `path`,
// attached to `store` so that add_checkpoint seals with them and every reader of the
// store object opens with them. With no file there, a new key is made and written there
// (`*created`), unless the store already holds tensors sealed under another key: then it
// refuses (kFailedPrecondition), naming the key versions it needs, since a new key could
// never open them. A key file that lacks a version the store's tensors need is refused
// likewise. The store records the versions in use (CustodyStore::key_versions).
Result<std::shared_ptr<const StoreKeys>> attach_store_keys(CustodyStore& store, const std::string& path,
                                                           bool* created = nullptr);

// For a reader (the CLI): the keys of the key file at `path`, or null if there is no file.
// Errors: those of StoreKeys::load other than kNotFound.
Result<std::shared_ptr<const StoreKeys>> load_store_keys_if_present(const std::string& path);

}  // namespace custody::storage
