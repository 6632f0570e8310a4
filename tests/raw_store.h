// A custody store's RocksDB files opened directly, as an intruder, a disk fault or an
// operator with `ldb` would change them behind the program's back: for tests that tamper
// with a store and check that Custody notices. Opens every column family the store has.
// Not thread-safe; close it (destroy it) before Custody opens the store again.
#pragma once

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "storage/key_value.h"

namespace custody::testing {

class RawStore {
 public:
  explicit RawStore(const std::string& path) {
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const auto& f : storage::column_families()) cfs.emplace_back(f, rocksdb::ColumnFamilyOptions());
    rocksdb::DB* db = nullptr;
    const rocksdb::Status s = rocksdb::DB::Open(rocksdb::DBOptions(), path, cfs, &handles_, &db);
    EXPECT_TRUE(s.ok()) << path << ": " << s.ToString();
    db_.reset(db);
  }
  ~RawStore() {
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
  }
  RawStore(const RawStore&) = delete;
  RawStore& operator=(const RawStore&) = delete;

  bool ok() const { return db_ != nullptr; }
  std::string get(const std::string& family, const std::string& key) {
    std::string v;
    EXPECT_TRUE(db_->Get(rocksdb::ReadOptions(), cf(family), key, &v).ok()) << family << "/" << key;
    return v;
  }
  void put(const std::string& family, const std::string& key, const std::string& value) {
    EXPECT_TRUE(db_->Put(rocksdb::WriteOptions(), cf(family), key, value).ok()) << family << "/" << key;
  }
  void erase(const std::string& family, const std::string& key) {
    EXPECT_TRUE(db_->Delete(rocksdb::WriteOptions(), cf(family), key).ok()) << family << "/" << key;
  }
  // Every (key, value) of a family whose key starts with prefix, in key order.
  std::vector<std::pair<std::string, std::string>> scan(const std::string& family, const std::string& prefix = "") {
    std::vector<std::pair<std::string, std::string>> out;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cf(family)));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      out.emplace_back(it->key().ToString(), it->value().ToString());
    }
    return out;
  }

 private:
  rocksdb::ColumnFamilyHandle* cf(const std::string& name) {
    const auto& all = storage::column_families();
    return handles_.at(static_cast<size_t>(std::find(all.begin(), all.end(), name) - all.begin()));
  }
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::unique_ptr<rocksdb::DB> db_;
};

}  // namespace custody::testing
