// The RocksDB implementation of KeyValue, and the only file that includes RocksDB.
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>

#include "storage/key_value.h"

namespace custody::storage {
namespace {

namespace fs = std::filesystem;

class RocksKeyValue final : public KeyValue {
 public:
  RocksKeyValue(std::unique_ptr<rocksdb::DB> db, std::vector<rocksdb::ColumnFamilyHandle*> handles,
                std::string shadow_dir)
      : db_(std::move(db)), handles_(std::move(handles)), shadow_dir_(std::move(shadow_dir)) {}
  ~RocksKeyValue() override {
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    db_.reset();
    if (!shadow_dir_.empty()) {
      std::error_code ec;
      fs::remove_all(shadow_dir_, ec);
    }
  }

  Status apply(const std::vector<Put>& puts) override {
    rocksdb::WriteBatch batch;
    for (const auto& p : puts) {
      auto* h = handle(p.family);
      if (!h) return invalid_argument("no column family '" + p.family + "'");
      batch.Put(h, p.key, p.value);
    }
    rocksdb::WriteOptions options;
    options.sync = true;  // a recorded event survives a crash of the machine
    auto s = db_->Write(options, &batch);
    if (!s.ok()) return unavailable("writing to the custody store failed: " + s.ToString());
    return Status::ok();
  }

  Result<std::optional<std::string>> get(const std::string& family, const std::string& key) const override {
    auto* h = handle(family);
    if (!h) return invalid_argument("no column family '" + family + "'");
    std::string value;
    auto s = db_->Get(rocksdb::ReadOptions(), h, key, &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return data_loss("reading '" + key + "' from the custody store failed: " + s.ToString());
    return std::optional<std::string>(std::move(value));
  }

  Status scan(const std::string& family, const std::string& prefix,
              const std::function<bool(const std::string&, const std::string&)>& visit) const override {
    auto* h = handle(family);
    if (!h) return invalid_argument("no column family '" + family + "'");
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), h));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      if (!visit(it->key().ToString(), it->value().ToString())) break;
    }
    if (!it->status().ok()) return data_loss("scanning the custody store failed: " + it->status().ToString());
    return Status::ok();
  }

  Status scan_from(const std::string& family, const std::string& prefix, const std::string& from, bool newest_first,
                   const std::function<bool(const std::string&, const std::string&)>& visit) const override {
    auto* h = handle(family);
    if (!h) return invalid_argument("no column family '" + family + "'");
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), h));
    if (!newest_first) {
      it->Seek(from > prefix ? from : prefix);
    } else if (!from.empty()) {
      it->SeekForPrev(from);
    } else {
      // The prefix's last key: just before the first key after every key with the prefix.
      std::string end = prefix;
      while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) end.pop_back();
      if (end.empty()) {
        it->SeekToLast();
      } else {
        end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
        it->SeekForPrev(end);
        if (it->Valid() && it->key() == rocksdb::Slice(end)) it->Prev();
      }
    }
    for (; it->Valid() && it->key().starts_with(prefix); newest_first ? it->Prev() : it->Next()) {
      if (!visit(it->key().ToString(), it->value().ToString())) break;
    }
    if (!it->status().ok()) return data_loss("scanning the custody store failed: " + it->status().ToString());
    return Status::ok();
  }

 private:
  rocksdb::ColumnFamilyHandle* handle(const std::string& family) const {
    const auto& families = column_families();
    for (size_t i = 0; i < families.size(); ++i)
      if (families[i] == family) return handles_[i];
    return nullptr;
  }
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::string shadow_dir_;
};

}  // namespace

Result<std::unique_ptr<KeyValue>> open_rocksdb(const std::string& path, OpenMode mode) {
  std::error_code ec;
  const bool exists = fs::exists(path, ec);
  if (exists && !fs::is_directory(path, ec)) {
    return failed_precondition("'" + path + "' is a file, not a custody store (a directory)");
  }
  const bool is_db = exists && fs::exists(fs::path(path) / "CURRENT", ec);
  if (exists && !is_db && !fs::is_empty(path, ec)) {
    return failed_precondition("'" + path + "' is a directory that holds something other than a custody store "
                               "(no RocksDB CURRENT file); choose an empty or new directory");
  }
  if (mode == OpenMode::kReadShadow && !is_db) {
    return not_found("no custody store at '" + path + "' (the coordinator creates it on its first start; "
                     "check --store)");
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& f : column_families()) descriptors.emplace_back(f, rocksdb::ColumnFamilyOptions());
  rocksdb::DBOptions options;
  options.create_if_missing = true;
  options.create_missing_column_families = true;
  options.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  // The small families (default, lineage, audit) fill their memtables slowly, and a WAL file
  // is kept until every family it holds writes for has flushed: without a bound, a store of a
  // million usage records kept 856 MB of WAL, which every reader (a secondary instance)
  // replays on open: 2.3 s before `custody usage` could start. Past this size the families
  // holding the oldest WAL are flushed.
  options.max_total_wal_size = 64 << 20;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s;
  std::string shadow;
  if (mode == OpenMode::kReadWrite) {
    if (!exists) fs::create_directories(path, ec);
    s = rocksdb::DB::Open(options, path, descriptors, &handles, &raw);
  } else {
    // A secondary instance reads safely beside the coordinator that holds the store open.
    static std::atomic<int> counter{0};
    shadow = (fs::temp_directory_path() /
              ("custody-shadow-" + std::to_string(getpid()) + "-" + std::to_string(counter++)))
                 .string();
    fs::create_directories(shadow, ec);
    options.max_open_files = -1;
    s = rocksdb::DB::OpenAsSecondary(options, path, shadow, descriptors, &handles, &raw);
    if (s.ok()) s = raw->TryCatchUpWithPrimary();
  }
  if (!s.ok()) {
    if (!shadow.empty()) fs::remove_all(shadow, ec);
    if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
      return unavailable("the custody store at '" + path + "' is in use by another process (" + s.ToString() +
                         "); only one coordinator may own a store");
    }
    return data_loss("cannot open the custody store at '" + path + "': " + s.ToString());
  }
  return std::unique_ptr<KeyValue>(new RocksKeyValue(std::unique_ptr<rocksdb::DB>(raw), std::move(handles), shadow));
}

}  // namespace custody::storage
