// A directory of immutable files ("blobs"), each named by the SHA-256 of its bytes: the
// coordinator's copies of the records it ships to workers, and a worker's cache of the
// records it fetched (docs/ARCHITECTURE.md, "Data shipping"). A name is a promise about the
// content, so every way in checks it: a blob is written to a temporary file while its hash
// is computed, and renamed to its name only if the hash is the name (otherwise the bytes
// are refused, naming where they came from); a whole read checks the hash again, and a
// blob that no longer matches its name (a damaged disk, a hand edit) is removed and
// reported as absent, so the caller fetches it again. Memory: a Writer holds one chunk at
// a time, never the blob. A directory may be held to a size (trim): the blobs used least
// recently go first (a whole read and a commit mark a blob used, by its modification time).
// Thread-safety: the functions touch only the file system; several processes may share a
// directory (each writes its own temporary file and the rename is atomic); one Writer
// belongs to one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace custody {

class BlobDir {
 public:
  // Opens `dir`, creating it (and its parents) with mode 0700 when missing.
  static Result<BlobDir> open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // dir/<sha256>. REQUIRES: sha256 is 64 lowercase hex digits (is_sha256).
  std::string path_of(const std::string& sha256) const { return dir_ + "/" + sha256; }
  static bool is_sha256(const std::string& s);

  // The blob's bytes, their hash checked: nullopt if absent, or if present but damaged
  // (then it is removed, and `damaged`, if given, says so).
  Result<std::optional<std::vector<uint8_t>>> read(const std::string& sha256, bool* damaged = nullptr) const;
  // Whether the blob is present with the right bytes (a damaged one is removed).
  Result<bool> has(const std::string& sha256) const;
  // Bytes [offset, offset + length) of a present blob, clipped at its end; `total` gets
  // its size. not_found if absent. Does not check the hash (the reader checks the whole).
  Result<std::vector<uint8_t>> read_range(const std::string& sha256, uint64_t offset, uint32_t length,
                                          uint64_t* total) const;
  // Writes `data` as the blob `sha256` unless it is present; refuses bytes of another hash.
  Status put(const std::string& sha256, const uint8_t* data, size_t size, const std::string& source) const;

  // A blob written chunk by chunk. Abandoned (its temporary file removed) unless committed.
  class Writer {
   public:
    ~Writer();
    Writer(Writer&&) noexcept;
    Writer& operator=(Writer&&) = delete;
    Status append(const uint8_t* data, size_t size);
    uint64_t written() const { return written_; }
    // Checks the size and the hash against the name, syncs, and renames into place. A
    // mismatch is data_loss naming `source` (where the bytes came from) and both hashes.
    Status commit();

   private:
    friend class BlobDir;
    struct Hasher;
    Writer(std::string sha256, std::string final_path, std::string temp_path, int fd, uint64_t expected_size,
           std::string source, std::unique_ptr<Hasher> hasher);
    std::string sha256_, final_path_, temp_path_;
    int fd_ = -1;
    uint64_t expected_size_ = 0, written_ = 0;
    std::string source_;
    std::unique_ptr<Hasher> hasher_;
  };
  // A writer of blob `sha256`, which must come to `expected_size` bytes; `source` names
  // where the bytes come from, for the refusal.
  Result<Writer> write(const std::string& sha256, uint64_t expected_size, std::string source) const;

  // Removes the blobs used least recently (oldest modification time first; ties by name)
  // until the blobs left take at most `max_bytes`, never one named in `keep` (what the
  // caller is using now: they stay even when they alone exceed the limit). Temporary files
  // of writers in progress are neither counted nor removed. max_bytes 0: no limit.
  struct Trimmed {
    uint64_t bytes_before = 0, bytes_after = 0;
    std::vector<std::string> removed;  // their SHA-256s, in the order removed
  };
  Result<Trimmed> trim(uint64_t max_bytes, const std::set<std::string>& keep) const;

 private:
  explicit BlobDir(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace custody
