// The ordered key-value layer under the custody store: named column families, reads,
// prefix scans and atomic batches. Two implementations: RocksDB (rocksdb_key_value.cc,
// the only file of the project that includes RocksDB) and an in-memory one for tests.
// The custody logic (custody_store.h) is written once, over this interface.
// Thread-safety: implementations allow concurrent reads; writes come from one owner.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

namespace custody::storage {

// The column families of a custody store; see docs/ARCHITECTURE.md, "The custody store".
inline const std::vector<std::string>& column_families() {
  static const std::vector<std::string> kFamilies{"default", "checkpoints", "lineage", "usage", "audit", "index"};
  return kFamilies;
}

struct Put {
  std::string family, key, value;
};

class KeyValue {
 public:
  virtual ~KeyValue() = default;
  // All puts land, or none (one RocksDB WriteBatch, synced).
  virtual Status apply(const std::vector<Put>& puts) = 0;
  virtual Result<std::optional<std::string>> get(const std::string& family, const std::string& key) const = 0;
  // Visits keys starting with prefix in order until visit returns false.
  virtual Status scan(const std::string& family, const std::string& prefix,
                      const std::function<bool(const std::string& key, const std::string& value)>& visit) const = 0;
  // As scan, but starting at `from` (the first key >= from; "" = the prefix's first), or with
  // newest_first from the last key <= from ("" = the prefix's last) backwards: a log's tail,
  // or the records of a time range, without reading the keys before them.
  virtual Status scan_from(const std::string& family, const std::string& prefix, const std::string& from,
                           bool newest_first,
                           const std::function<bool(const std::string& key, const std::string& value)>& visit) const = 0;
};

std::unique_ptr<KeyValue> make_memory_key_value();

enum class OpenMode {
  kReadWrite,   // creates the store if the directory does not exist or is empty
  kReadShadow,  // reads beside a running writer (a RocksDB secondary instance)
};
// Errors: a path that holds something other than a custody store is refused by name.
Result<std::unique_ptr<KeyValue>> open_rocksdb(const std::string& path, OpenMode mode);

}  // namespace custody::storage
