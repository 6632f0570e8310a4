// The RocksDB implementation of KeyValue, and the only file that includes RocksDB: the
// store, its private file modes, its backups (RocksDB's BackupEngine) and their restore.
#include <fcntl.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/utilities/backup_engine.h>
#include <rocksdb/write_batch.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "core/log.h"
#include "storage/key_value.h"

namespace custody::storage {
namespace {

namespace fs = std::filesystem;

constexpr mode_t kFileMode = 0600, kDirMode = 0700;

// RocksDB creates its files with mode 0644 & ~umask and has no option for it
// (Env::SetAllowNonOwnerAccess(false) is accepted and changes nothing in 7.8, measured).
// This file system gives every file it creates mode 0600 and every directory 0700 right
// after creating it; the store's directory is already 0700 then, so no one else can reach
// a file in the moment before. It does not depend on the process's umask, so a test or a
// tool that links the storage layer gets private files too, and it also serves
// BackupEngine, so backups and restored stores are private alike.
class PrivateFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  using FileSystemWrapper::FileSystemWrapper;
  static const char* kClassName() { return "CustodyPrivateFileSystem"; }
  const char* Name() const override { return kClassName(); }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r, rocksdb::IODebugContext* d) override {
    return file(f, target()->NewWritableFile(f, o, r, d));
  }
  rocksdb::IOStatus ReopenWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                       std::unique_ptr<rocksdb::FSWritableFile>* r,
                                       rocksdb::IODebugContext* d) override {
    return file(f, target()->ReopenWritableFile(f, o, r, d));
  }
  rocksdb::IOStatus ReuseWritableFile(const std::string& f, const std::string& old, const rocksdb::FileOptions& o,
                                      std::unique_ptr<rocksdb::FSWritableFile>* r,
                                      rocksdb::IODebugContext* d) override {
    return file(f, target()->ReuseWritableFile(f, old, o, r, d));
  }
  rocksdb::IOStatus NewRandomRWFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSRandomRWFile>* r, rocksdb::IODebugContext* d) override {
    return file(f, target()->NewRandomRWFile(f, o, r, d));
  }
  rocksdb::IOStatus LockFile(const std::string& f, const rocksdb::IOOptions& o, rocksdb::FileLock** l,
                             rocksdb::IODebugContext* d) override {
    return file(f, target()->LockFile(f, o, l, d));
  }
  rocksdb::IOStatus CreateDir(const std::string& f, const rocksdb::IOOptions& o, rocksdb::IODebugContext* d) override {
    return dir(f, target()->CreateDir(f, o, d));
  }
  rocksdb::IOStatus CreateDirIfMissing(const std::string& f, const rocksdb::IOOptions& o,
                                       rocksdb::IODebugContext* d) override {
    return dir(f, target()->CreateDirIfMissing(f, o, d));
  }

 private:
  static rocksdb::IOStatus file(const std::string& path, rocksdb::IOStatus s) { return chmod_after(path, s, kFileMode); }
  static rocksdb::IOStatus dir(const std::string& path, rocksdb::IOStatus s) { return chmod_after(path, s, kDirMode); }
  static rocksdb::IOStatus chmod_after(const std::string& path, rocksdb::IOStatus s, mode_t mode) {
    if (s.ok() && ::chmod(path.c_str(), mode) != 0) {
      return rocksdb::IOStatus::IOError("cannot make " + path + " private (chmod): " + std::strerror(errno));
    }
    return s;
  }
};

// The info LOG is made by the Env, not through the file system.
class PrivateEnv final : public rocksdb::EnvWrapper {
 public:
  explicit PrivateEnv(rocksdb::Env* target) : EnvWrapper(target) {}
  static const char* kClassName() { return "CustodyPrivateEnv"; }
  const char* Name() const override { return kClassName(); }
  rocksdb::Status NewLogger(const std::string& f, std::shared_ptr<rocksdb::Logger>* r) override {
    rocksdb::Status s = target()->NewLogger(f, r);
    if (s.ok()) ::chmod(f.c_str(), kFileMode);
    return s;
  }
};

// One Env for every store of the process, as RocksDB's own Env::Default() is: it holds no
// state of its own beyond the file system it wraps, and RocksDB keeps a pointer to it for
// as long as a database is open, so it lives as long as the process.
rocksdb::Env* private_env() {
  static const auto composite = rocksdb::NewCompositeEnv(
      std::make_shared<PrivateFileSystem>(rocksdb::FileSystem::Default()));
  static PrivateEnv env(composite.get());
  return &env;
}

std::string mode_text(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// Tightens a store written before its files were private (or loosened by hand): the
// directory (and any below it) 0700, every file 0600. Returns how many it changed.
Result<int> make_private(const std::string& path) {
  int changed = 0;
  auto tighten = [&](const fs::path& p, mode_t want) -> Status {
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) return Status::ok();  // gone meanwhile (an obsolete file)
    if (S_ISLNK(st.st_mode) || (st.st_mode & 077) == 0) return Status::ok();
    if (::chmod(p.c_str(), want) != 0) {
      return Status(ErrorCode::kPermissionDenied,
                    "the custody store's " + p.string() + " has mode " + mode_text(st.st_mode) +
                        ", which lets other users read it, and it cannot be made private (" + std::strerror(errno) +
                        "); run the coordinator as the store's owner, or `chmod -R go-rwx " + path + "`");
    }
    ++changed;
    return Status::ok();
  };
  CUSTODY_RETURN_IF_ERROR(tighten(path, kDirMode));
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    CUSTODY_RETURN_IF_ERROR(tighten(it->path(), it->is_directory(ec) ? kDirMode : kFileMode));
  }
  return changed;
}

// Creates `path` (and its parents) if missing; `path` itself private.
Status create_private_directory(const std::string& path, const std::string& what) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) return unavailable("cannot create " + what + " '" + path + "': " + ec.message());
  if (::chmod(path.c_str(), kDirMode) != 0) {
    return unavailable("cannot make " + what + " '" + path + "' private (chmod 0700): " + std::strerror(errno));
  }
  return Status::ok();
}

// Backups.

// BackupEngine allows one writer per backup directory ("unspecified behaviour, possibly
// trashing the backup directory" for two), and the coordinator's online backup and a
// local `custody store backup` could meet there: an advisory lock on a file of ours in the
// directory's root, which BackupEngine's garbage collection does not touch.
class BackupDirLock {
 public:
  static Result<BackupDirLock> take(const std::string& dir) {
    const std::string path = (fs::path(dir) / "custody-backup.lock").string();
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, kFileMode);
    if (fd < 0) return unavailable("cannot open '" + path + "': " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      return unavailable("another backup into '" + dir + "' is running; try again when it has ended");
    }
    return BackupDirLock(fd);
  }
  BackupDirLock(BackupDirLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  BackupDirLock(const BackupDirLock&) = delete;
  BackupDirLock& operator=(const BackupDirLock&) = delete;
  BackupDirLock& operator=(BackupDirLock&&) = delete;
  ~BackupDirLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
  }

 private:
  explicit BackupDirLock(int fd) : fd_(fd) {}
  int fd_;
};

rocksdb::BackupEngineOptions backup_engine_options(const std::string& dir, uint64_t rate_limit = 0) {
  rocksdb::BackupEngineOptions o(dir);
  o.backup_env = private_env();
  o.sync = true;                // a listed backup survives a crash of the machine
  o.share_table_files = true;   // later backups copy only the files that changed
  o.backup_rate_limit = rate_limit;
  o.callback_trigger_interval_size = 1 << 20;  // how often a stop request is looked at
  return o;
}

BackupInfo info_of(const rocksdb::BackupInfo& b) {
  BackupInfo i;
  i.id = b.backup_id;
  i.time_s = b.timestamp;
  i.bytes = b.size;
  i.files = b.number_files;
  i.metadata = b.app_metadata;
  return i;
}

Status no_backup_dir(const std::string& dir) {
  return not_found("no backups in '" + dir + "' (`custody store backup " + dir + "` makes one there)");
}

bool is_backup_dir(const std::string& dir) {
  std::error_code ec;
  return fs::is_directory(fs::path(dir) / "meta", ec);
}

// A deferred write's ticket: fdatasync()s the log file(s) that can hold the write, through
// descriptors of its own, opened right after the write. Its own: Linux reports a failed
// writeback once per open file description, so a descriptor shared with a concurrent wait
// could see "ok" while the other reports the failure of this write's pages. fdatasync()
// flushes every byte written to the file before the call, so waits may overlap.
class WalSync final : public PendingWrite {
 public:
  ~WalSync() override {
    for (const auto& [fd, path] : files_) ::close(fd);
  }
  bool add(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    files_.emplace_back(fd, path);
    return true;
  }
  Status wait() override {
    for (const auto& [fd, path] : files_) {
      if (::fdatasync(fd) != 0) {
        return unavailable("syncing the custody store's log '" + path + "' failed: " + std::strerror(errno) +
                           " (the disk may be full or failing)");
      }
    }
    return Status::ok();
  }

 private:
  std::vector<std::pair<int, std::string>> files_;
};

class SyncedAlready final : public PendingWrite {
 public:
  Status wait() override { return Status::ok(); }
};

class RocksKeyValue final : public KeyValue {
 public:
  RocksKeyValue(std::unique_ptr<rocksdb::DB> db, std::vector<rocksdb::ColumnFamilyHandle*> handles,
                std::string shadow_dir)
      : db_(std::move(db)), handles_(std::move(handles)), shadow_dir_(std::move(shadow_dir)) {}
  ~RocksKeyValue() override {
    // Deferred writes not yet waited for reach the disk at a clean close too.
    if (!wal_path_.empty()) db_->SyncWAL();
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    db_.reset();
    if (!shadow_dir_.empty()) {
      std::error_code ec;
      fs::remove_all(shadow_dir_, ec);
    }
  }

  Status apply(const std::vector<Put>& puts) override {
    rocksdb::WriteBatch batch;
    CUSTODY_RETURN_IF_ERROR(fill(puts, batch));
    rocksdb::WriteOptions options;
    options.sync = true;  // a recorded event survives a crash of the machine
    auto s = db_->Write(options, &batch);
    if (!s.ok()) return unavailable("writing to the custody store failed: " + s.ToString());
    return Status::ok();
  }

  // Written without sync (RocksDB hands the log's bytes to the operating system before
  // Write() returns unless manual_wal_flush, which this store never sets), then the ticket
  // fdatasyncs the log file that holds them. Which file: the log is switched only at the
  // start of a write (a full memtable, max_total_wal_size) or by a flush, and the store's
  // writes are serialized by its single writer, so the current log file right after this
  // write is the one that holds it; should a switch have come between (a flush on another
  // thread), the ticket also syncs the file current at the write before. If the file
  // cannot be opened, the write is synced here and now, as apply() would.
  Result<std::shared_ptr<PendingWrite>> apply_deferred(const std::vector<Put>& puts) override {
    if (!shadow_dir_.empty()) return failed_precondition("a store opened for reading cannot be written");
    rocksdb::WriteBatch batch;
    CUSTODY_RETURN_IF_ERROR(fill(puts, batch));
    auto s = db_->Write(rocksdb::WriteOptions(), &batch);
    if (!s.ok()) return unavailable("writing to the custody store failed: " + s.ToString());
    std::unique_ptr<rocksdb::LogFile> current;
    s = db_->GetCurrentWalFile(&current);
    auto ticket = std::make_shared<WalSync>();
    bool ready = s.ok();
    if (ready) {
      std::string dir = db_->GetDBOptions().wal_dir;
      if (dir.empty()) dir = db_->GetName();
      const std::string path = dir + current->PathName();
      ready = ticket->add(path);
      if (ready && path != wal_path_) {
        // A new log file's name must be durable too, or a crash could lose the file
        // whole: its directory is synced once, here (as RocksDB does on a new log's first
        // synced write), and the file before it is synced as well in case the switch came
        // between this write and the question (if it is gone, a flush has written its
        // contents to synced table files).
        ready = sync_directory(dir);
        if (ready && !wal_path_.empty()) ticket->add(wal_path_);
        if (ready) wal_path_ = path;
      }
    }
    if (!ready) {
      s = db_->SyncWAL();
      if (!s.ok()) return unavailable("syncing the custody store's log failed: " + s.ToString());
      return std::shared_ptr<PendingWrite>(std::make_shared<SyncedAlready>());
    }
    return std::shared_ptr<PendingWrite>(std::move(ticket));
  }

  Result<BackupInfo> backup(const std::string& dir, const std::string& metadata,
                            const BackupOptions& options) const override {
    if (!shadow_dir_.empty()) return failed_precondition("a store opened for reading is backed up by its writer");
    CUSTODY_RETURN_IF_ERROR(create_private_directory(dir, "the backup directory"));
    CUSTODY_ASSIGN_OR_RETURN(auto lock, BackupDirLock::take(dir));
    rocksdb::BackupEngine* raw = nullptr;
    auto s = rocksdb::BackupEngine::Open(backup_engine_options(dir, options.rate_limit_bytes_per_s), private_env(), &raw);
    if (!s.ok()) return unavailable("cannot open the backup directory '" + dir + "': " + s.ToString());
    std::unique_ptr<rocksdb::BackupEngine> engine(raw);
    rocksdb::CreateBackupOptions create;
    // The live WAL is copied with the table files, up to where it stood when the file list
    // was taken: one consistent moment of every column family, without forcing a flush of
    // the families that the coordinator writes rarely.
    create.flush_before_backup = false;
    // The copying threads yield the CPU to the training beside them (bench/store_at_rest.sh).
    create.decrease_background_thread_cpu_priority = true;
    create.background_thread_cpu_priority = rocksdb::CpuPriority::kLow;
    rocksdb::BackupEngine* stoppable = engine.get();
    create.progress_callback = [stoppable, stop = options.stop] {
      if (stop && stop->load()) stoppable->StopBackup();
    };
    rocksdb::BackupID id = 0;
    s = engine->CreateNewBackupWithMetadata(create, db_.get(), metadata, &id);
    if (!s.ok()) {
      return unavailable("the backup into '" + dir + "' " + (s.IsIncomplete() ? "was stopped" : "failed") + ": " +
                         s.ToString() + "; what it copied is not a backup (the next backup there removes it)");
    }
    rocksdb::BackupInfo info;
    const rocksdb::Status listed = engine->GetBackupInfo(id, &info);
    if (!listed.ok()) {
      return data_loss("backup " + std::to_string(id) + " in '" + dir + "' is not readable: " + listed.ToString());
    }
    return info_of(info);
  }

  Status compact() override {
    rocksdb::CompactRangeOptions options;
    // Rewrite the last level too: that is where deleted values would otherwise stay.
    options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    for (auto* h : handles_) {
      auto s = db_->CompactRange(options, h, nullptr, nullptr);
      if (!s.ok()) return unavailable("compacting the custody store failed: " + s.ToString());
    }
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
  Status fill(const std::vector<Put>& puts, rocksdb::WriteBatch& batch) const {
    for (const auto& p : puts) {
      auto* h = handle(p.family);
      if (!h) return invalid_argument("no column family '" + p.family + "'");
      auto s = p.erase ? batch.Delete(h, p.key) : batch.Put(h, p.key, p.value);
      if (!s.ok()) return invalid_argument("cannot batch '" + p.key + "': " + s.ToString());
    }
    return Status::ok();
  }
  rocksdb::ColumnFamilyHandle* handle(const std::string& family) const {
    const auto& families = column_families();
    for (size_t i = 0; i < families.size(); ++i)
      if (families[i] == family) return handles_[i];
    return nullptr;
  }
  static bool sync_directory(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = ::fsync(fd) == 0;
    ::close(fd);
    return ok;
  }
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  std::string shadow_dir_;
  std::string wal_path_;  // the log file of the last deferred write (single writer)
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
  options.env = private_env();
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
    if (!exists) {
      CUSTODY_RETURN_IF_ERROR(create_private_directory(path, "the custody store"));
    } else {
      // Only the writer (the store's owner) tightens: a reader may be another user whom
      // the owner let in on purpose.
      CUSTODY_ASSIGN_OR_RETURN(const int changed, make_private(path));
      if (changed > 0) {
        log(LogLevel::kWarn, "custody store",
            "'" + path + "' was readable by other users: made " + std::to_string(changed) +
                " of its files and directories private (0600 and 0700); a copy made before this may have "
                "kept the looser modes");
      }
    }
    s = rocksdb::DB::Open(options, path, descriptors, &handles, &raw);
  } else {
    // A secondary instance reads safely beside the coordinator that holds the store open.
    static std::atomic<int> counter{0};
    shadow = (fs::temp_directory_path() /
              ("custody-shadow-" + std::to_string(getpid()) + "-" + std::to_string(counter++)))
                 .string();
    CUSTODY_RETURN_IF_ERROR(create_private_directory(shadow, "a reader's scratch directory"));
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

// Backups.

Result<BackupListing> list_backups(const std::string& dir) {
  if (!is_backup_dir(dir)) return no_backup_dir(dir);
  rocksdb::BackupEngineReadOnly* raw = nullptr;
  auto s = rocksdb::BackupEngineReadOnly::Open(backup_engine_options(dir), private_env(), &raw);
  if (!s.ok()) return data_loss("cannot read the backup directory '" + dir + "': " + s.ToString());
  std::unique_ptr<rocksdb::BackupEngineReadOnly> engine(raw);
  std::vector<rocksdb::BackupInfo> infos;
  engine->GetBackupInfo(&infos, /*include_file_details=*/true);
  BackupListing listing;
  std::set<std::string> referenced;
  for (const auto& b : infos) {
    listing.backups.push_back(info_of(b));
    // relative_filename is relative to the backup directory (not to `directory`, which
    // names the backup's private directory), measured with RocksDB 7.8.
    for (const auto& f : b.file_details) referenced.insert((fs::path(dir) / f.relative_filename).lexically_normal().string());
  }
  // Whatever a backup copied before it was cut short belongs to no listed backup.
  std::error_code ec;
  for (const char* sub : {"private", "shared", "shared_checksum"}) {
    const fs::path root = fs::path(dir) / sub;
    for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (!it->is_regular_file(ec)) continue;
      if (!referenced.count(it->path().lexically_normal().string())) ++listing.unfinished_files;
    }
    ec.clear();
  }
  return listing;
}

Result<BackupInfo> restore_backup(const std::string& dir, uint32_t id, const std::string& store_path, bool replace,
                                  std::string* moved_aside) {
  if (!is_backup_dir(dir)) return no_backup_dir(dir);
  std::string target = store_path;
  while (target.size() > 1 && target.back() == '/') target.pop_back();
  std::error_code ec;
  const bool taken = fs::exists(target, ec) && !(fs::is_directory(target, ec) && fs::is_empty(target, ec));
  if (taken && !replace) {
    return failed_precondition("'" + target + "' already exists and is not empty: restoring there would replace it. "
                               "Choose a new path, or pass --force to move it aside and restore in its place");
  }
  rocksdb::BackupEngineReadOnly* raw = nullptr;
  auto s = rocksdb::BackupEngineReadOnly::Open(backup_engine_options(dir), private_env(), &raw);
  if (!s.ok()) return data_loss("cannot read the backup directory '" + dir + "': " + s.ToString());
  std::unique_ptr<rocksdb::BackupEngineReadOnly> engine(raw);
  rocksdb::BackupInfo info;
  const rocksdb::Status found = id == 0 ? engine->GetLatestBackupInfo(&info) : engine->GetBackupInfo(id, &info);
  if (!found.ok()) {
    return not_found(id == 0 ? "'" + dir + "' holds no complete backup"
                             : "'" + dir + "' holds no complete backup " + std::to_string(id) +
                                   " (`custody store backups " + dir + "` lists them)");
  }
  // Every file's size and checksum, before anything is written: a damaged backup is
  // named here, not found later in a store that half works.
  s = engine->VerifyBackup(info.backup_id, /*verify_with_checksum=*/true);
  if (!s.ok()) {
    return data_loss("backup " + std::to_string(info.backup_id) + " in '" + dir + "' is damaged: " + s.ToString());
  }
  if (taken) {
    // Not while a coordinator (or anyone) has the store open.
    rocksdb::FileLock* lock = nullptr;
    auto locked = private_env()->LockFile((fs::path(target) / "LOCK").string(), &lock);
    if (!locked.ok()) {
      return unavailable("the custody store at '" + target + "' is in use (" + locked.ToString() +
                         "): stop its coordinator before restoring over it");
    }
    private_env()->UnlockFile(lock);
  }
  // Restored beside the target and renamed into place when whole.
  const std::string staging = target + ".restoring-" + std::to_string(getpid());
  fs::remove_all(staging, ec);
  CUSTODY_RETURN_IF_ERROR(create_private_directory(staging, "the restore's staging directory"));
  s = engine->RestoreDBFromBackup(rocksdb::RestoreOptions(), info.backup_id, staging, staging);
  if (!s.ok()) {
    fs::remove_all(staging, ec);
    return unavailable("restoring backup " + std::to_string(info.backup_id) + " failed: " + s.ToString());
  }
  if (taken) {
    const std::string aside = target + ".replaced-" + std::to_string(::time(nullptr));
    if (::rename(target.c_str(), aside.c_str()) != 0) {
      return unavailable("cannot move '" + target + "' aside to '" + aside + "': " + std::strerror(errno) +
                         "; the restored store is complete in '" + staging + "'");
    }
    if (moved_aside) *moved_aside = aside;
  } else {
    fs::remove(target, ec);  // an empty directory
  }
  if (::rename(staging.c_str(), target.c_str()) != 0) {
    return unavailable("cannot move the restored store from '" + staging + "' to '" + target +
                       "': " + std::strerror(errno));
  }
  const std::string parent = fs::path(target).parent_path().empty() ? "." : fs::path(target).parent_path().string();
  const int dfd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return info_of(info);
}

}  // namespace custody::storage
