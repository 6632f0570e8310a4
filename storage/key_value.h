// The ordered key-value layer under the custody store: named column families, reads,
// prefix scans and atomic batches. Two implementations: RocksDB (rocksdb_key_value.cc,
// the only file of the project that includes RocksDB) and an in-memory one for tests.
// The custody logic (custody_store.h) is written once, over this interface.
//
// Files at rest (RocksDB): the store's directory is 0700 and every file in it 0600. The
// store's file system creates each file and directory with those modes itself (a
// wrapper around RocksDB's), whatever the process's umask, and so do backups and
// restores; opening for writing a store whose modes are looser tightens them and logs a
// warning naming how many it changed (a store written before this rule), and refuses
// with an error if it cannot (another user owns the files).
//
// Thread-safety: implementations allow concurrent reads; writes come from one owner.
// backup() may run on another thread while the owner writes.
#pragma once

#include <atomic>
#include <cstdint>
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
  // Deletes the key instead (value unused). Only blobs are ever deleted: the records are
  // append-only, and a blob goes only when no manifest names it any more (after a rekey).
  bool erase = false;
};

// A backup in a backup directory (RocksDB's BackupEngine): complete, or not listed at all.
struct BackupInfo {
  uint32_t id = 0;
  int64_t time_s = 0;  // when it was taken, seconds since the epoch
  uint64_t bytes = 0;  // of the files it consists of (files shared with other backups too)
  uint32_t files = 0;
  std::string metadata;  // what the store wrote with it (CustodyStore::backup: JSON)
};

// A backup directory's complete backups, oldest first, and what an interrupted backup left.
struct BackupListing {
  std::vector<BackupInfo> backups;
  // Files of backups that never completed (a process killed mid-backup): never listed as
  // backups, removed by the next backup into the directory.
  uint64_t unfinished_files = 0;
};

struct BackupOptions {
  // Bytes per second the copy may read and write; 0: unlimited. So that a backup of a
  // large store does not take the disk from the coordinator that trains beside it.
  uint64_t rate_limit_bytes_per_s = 0;
  // If set, the copy stops when it turns true (a node shutting down), at its next chunk of
  // about a megabyte, and fails; what it copied is never listed as a backup.
  const std::atomic<bool>* stop = nullptr;
};

// A write that has reached the operating system but perhaps not yet the disk
// (KeyValue::apply_deferred): wait() returns once it is on the disk, or the error that
// kept it off. Tickets of different writes may be waited on from several threads at once,
// and that is their point: syncs in flight together share the disk's queue, where a
// synced write waits for the one before it (RocksDB syncs its log one write at a time).
// A ticket's wait also makes every earlier write of the same store durable (the log is
// sequential). Thread-safety: wait() may be called from any thread, once.
class PendingWrite {
 public:
  virtual ~PendingWrite() = default;
  virtual Status wait() = 0;
};

class KeyValue {
 public:
  virtual ~KeyValue() = default;
  // All puts land, or none (one RocksDB WriteBatch, synced).
  virtual Status apply(const std::vector<Put>& puts) = 0;
  // As apply(), but returns as soon as the batch is written (readers see it; it survives
  // the process's crash, not yet the machine's); the ticket's wait() makes it durable.
  // A write whose wait() fails may or may not be on the disk, and so may the writes after
  // it: the caller must stop writing (CustodyStore does). By default (the in-memory
  // store): apply() and a ticket that has nothing to wait for.
  virtual Result<std::shared_ptr<PendingWrite>> apply_deferred(const std::vector<Put>& puts);
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

  // A consistent copy of the whole store as it is at one moment, taken while writes go on,
  // added to the backup directory `dir` (created 0700 if missing; earlier backups share
  // its unchanged files). The backup is listed only once every file is in place and
  // synced: a copy interrupted at any point is never taken for a backup. One backup at a
  // time per directory (others fail with kUnavailable naming it). Errors: kUnavailable
  // (I/O, the directory busy), kFailedPrecondition (no backups of an in-memory store).
  virtual Result<BackupInfo> backup(const std::string& dir, const std::string& metadata,
                                    const BackupOptions& options) const {
    (void)dir, (void)metadata, (void)options;
    return failed_precondition("an in-memory store cannot be backed up");
  }
  // Rewrites the stored files so that deleted values leave them (after a rekey: the
  // values sealed under a retired key, the tensors stored in clear before it).
  virtual Status compact() { return Status::ok(); }
};

std::unique_ptr<KeyValue> make_memory_key_value();

enum class OpenMode {
  kReadWrite,   // creates the store if the directory does not exist or is empty
  kReadShadow,  // reads beside a running writer (a RocksDB secondary instance)
};
// Errors: a path that holds something other than a custody store is refused by name.
Result<std::unique_ptr<KeyValue>> open_rocksdb(const std::string& path, OpenMode mode);

// The backups in `dir`. Errors: kNotFound (no backup directory there), kDataLoss.
Result<BackupListing> list_backups(const std::string& dir);
// Restores backup `id` (0: the newest) of `dir` as a new store at `store_path`, each of its
// files' checksums checked first. The store is built beside `store_path` and renamed into
// place when whole, so a restore cut short leaves no half store there. A `store_path`
// that exists and is not empty is refused, unless `replace`: then it must not be in use,
// and it is moved aside to `<store_path>.replaced-<time>` (returned in `moved_aside`), not
// deleted. Errors: kNotFound (no such backup), kFailedPrecondition (the path is taken),
// kUnavailable (in use; I/O), kDataLoss (a backup file does not match its checksum).
Result<BackupInfo> restore_backup(const std::string& dir, uint32_t id, const std::string& store_path, bool replace,
                                  std::string* moved_aside);

}  // namespace custody::storage
