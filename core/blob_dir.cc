#include "core/blob_dir.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/hash.h"
#include "core/hex.h"

namespace custody {
namespace {

std::string errno_text() { return std::strerror(errno); }

}  // namespace

struct BlobDir::Writer::Hasher {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx{EVP_MD_CTX_new(), EVP_MD_CTX_free};
};

bool BlobDir::is_sha256(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

Result<BlobDir> BlobDir::open(const std::string& dir) {
  if (dir.empty()) return invalid_argument("no directory given for the records cache");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return unavailable("cannot create the records directory '" + dir + "': " + ec.message());
  ::chmod(dir.c_str(), 0700);  // records may be personal data: the owner's only
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return unavailable("'" + dir + "' is not a directory; give the records cache a directory");
  }
  return BlobDir(dir);
}

Result<std::optional<std::vector<uint8_t>>> BlobDir::read(const std::string& sha256, bool* damaged) const {
  if (!is_sha256(sha256)) return invalid_argument("'" + sha256 + "' is not a SHA-256 (64 lowercase hex digits)");
  const std::string path = path_of(sha256);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<std::vector<uint8_t>>();
    return unavailable("cannot open '" + path + "': " + errno_text());
  }
  struct stat st {};
  ::fstat(fd, &st);
  std::vector<uint8_t> bytes(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n <= 0) {
      ::close(fd);
      return unavailable("cannot read '" + path + "': " + (n < 0 ? errno_text() : "it shrank while read"));
    }
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  if (sha256_hex(bytes.data(), bytes.size()) != sha256) {
    ::unlink(path.c_str());  // a name that lies about its bytes is worse than none
    if (damaged) *damaged = true;
    return std::optional<std::vector<uint8_t>>();
  }
  // Used now: the last to go when the directory is trimmed. (A directory mounted read-only
  // keeps its times; trimming it then goes by when blobs were written.)
  ::utimensat(AT_FDCWD, path.c_str(), nullptr, 0);
  return std::optional<std::vector<uint8_t>>(std::move(bytes));
}

Result<BlobDir::Trimmed> BlobDir::trim(uint64_t max_bytes, const std::set<std::string>& keep) const {
  struct Entry {
    struct timespec used;
    std::string name;
    uint64_t size;
  };
  std::vector<Entry> blobs;
  Trimmed t;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string name = entry.path().filename().string();
    if (!is_sha256(name)) continue;  // a writer's temporary file, or not ours
    struct stat st {};
    if (::stat(entry.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    blobs.push_back({st.st_mtim, name, static_cast<uint64_t>(st.st_size)});
    t.bytes_before += static_cast<uint64_t>(st.st_size);
  }
  if (ec) return unavailable("cannot list the records directory '" + dir_ + "': " + ec.message());
  t.bytes_after = t.bytes_before;
  if (max_bytes == 0 || t.bytes_before <= max_bytes) return t;
  std::sort(blobs.begin(), blobs.end(), [](const Entry& a, const Entry& b) {
    if (a.used.tv_sec != b.used.tv_sec) return a.used.tv_sec < b.used.tv_sec;
    if (a.used.tv_nsec != b.used.tv_nsec) return a.used.tv_nsec < b.used.tv_nsec;
    return a.name < b.name;
  });
  for (const Entry& b : blobs) {
    if (t.bytes_after <= max_bytes) break;
    if (keep.count(b.name)) continue;
    if (::unlink(path_of(b.name).c_str()) != 0 && errno != ENOENT) {
      return unavailable("cannot remove '" + path_of(b.name) + "' to keep the records directory within " +
                         std::to_string(max_bytes) + " bytes: " + errno_text());
    }
    t.bytes_after -= b.size;
    t.removed.push_back(b.name);
  }
  return t;
}

Result<bool> BlobDir::has(const std::string& sha256) const {
  CUSTODY_ASSIGN_OR_RETURN(auto bytes, read(sha256));
  return bytes.has_value();
}

Result<std::vector<uint8_t>> BlobDir::read_range(const std::string& sha256, uint64_t offset, uint32_t length,
                                                 uint64_t* total) const {
  if (!is_sha256(sha256)) return invalid_argument("'" + sha256 + "' is not a SHA-256 (64 lowercase hex digits)");
  const std::string path = path_of(sha256);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return not_found("no records " + sha256.substr(0, 16) + "... in '" + dir_ + "'");
  struct stat st {};
  ::fstat(fd, &st);
  const auto size = static_cast<uint64_t>(st.st_size);
  if (total) *total = size;
  if (offset > size) {
    ::close(fd);
    return invalid_argument("offset " + std::to_string(offset) + " is past the end of records " +
                            sha256.substr(0, 16) + "... (" + std::to_string(size) + " bytes)");
  }
  std::vector<uint8_t> out(static_cast<size_t>(std::min<uint64_t>(length, size - offset)));
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t n = ::pread(fd, out.data() + got, out.size() - got, static_cast<off_t>(offset + got));
    if (n <= 0) {
      ::close(fd);
      return unavailable("cannot read '" + path + "': " + (n < 0 ? errno_text() : "it shrank while read"));
    }
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  return out;
}

Status BlobDir::put(const std::string& sha256, const uint8_t* data, size_t size, const std::string& source) const {
  CUSTODY_ASSIGN_OR_RETURN(bool present, has(sha256));
  if (present) return Status::ok();
  CUSTODY_ASSIGN_OR_RETURN(Writer w, write(sha256, size, source));
  CUSTODY_RETURN_IF_ERROR(w.append(data, size));
  return w.commit();
}

Result<BlobDir::Writer> BlobDir::write(const std::string& sha256, uint64_t expected_size, std::string source) const {
  if (!is_sha256(sha256)) return invalid_argument("'" + sha256 + "' is not a SHA-256 (64 lowercase hex digits)");
  CUSTODY_ASSIGN_OR_RETURN(std::string nonce, random_token(8));
  const std::string temp = dir_ + "/." + sha256 + "." + nonce + ".part";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return unavailable("cannot create '" + temp + "': " + errno_text());
  auto hasher = std::make_unique<Writer::Hasher>();
  if (!hasher->ctx || EVP_DigestInit_ex(hasher->ctx.get(), EVP_sha256(), nullptr) != 1) {
    ::close(fd);
    ::unlink(temp.c_str());
    return internal_error("cannot start a SHA-256");
  }
  return Writer(sha256, path_of(sha256), temp, fd, expected_size, std::move(source), std::move(hasher));
}

BlobDir::Writer::Writer(std::string sha256, std::string final_path, std::string temp_path, int fd,
                        uint64_t expected_size, std::string source, std::unique_ptr<Hasher> hasher)
    : sha256_(std::move(sha256)),
      final_path_(std::move(final_path)),
      temp_path_(std::move(temp_path)),
      fd_(fd),
      expected_size_(expected_size),
      source_(std::move(source)),
      hasher_(std::move(hasher)) {}

BlobDir::Writer::Writer(Writer&& o) noexcept
    : sha256_(std::move(o.sha256_)),
      final_path_(std::move(o.final_path_)),
      temp_path_(std::move(o.temp_path_)),
      fd_(o.fd_),
      expected_size_(o.expected_size_),
      written_(o.written_),
      source_(std::move(o.source_)),
      hasher_(std::move(o.hasher_)) {
  o.fd_ = -1;
  o.temp_path_.clear();
}

BlobDir::Writer::~Writer() {
  if (fd_ >= 0) ::close(fd_);
  if (!temp_path_.empty()) ::unlink(temp_path_.c_str());
}

Status BlobDir::Writer::append(const uint8_t* data, size_t size) {
  if (fd_ < 0) return failed_precondition("the records writer of " + sha256_.substr(0, 16) + "... is closed");
  if (written_ + size > expected_size_) {
    return data_loss(source_ + " sent more than the " + std::to_string(expected_size_) + " bytes of records " +
                     sha256_.substr(0, 16) + "...; refused");
  }
  EVP_DigestUpdate(hasher_->ctx.get(), data, size);
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd_, data + done, size - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return unavailable("cannot write '" + temp_path_ + "': " + errno_text());
    }
    done += static_cast<size_t>(n);
  }
  written_ += size;
  return Status::ok();
}

Status BlobDir::Writer::commit() {
  if (fd_ < 0) return failed_precondition("the records writer of " + sha256_.substr(0, 16) + "... is closed");
  if (written_ != expected_size_) {
    return data_loss(source_ + " sent " + std::to_string(written_) + " of the " + std::to_string(expected_size_) +
                     " bytes of records " + sha256_.substr(0, 16) + "...; refused");
  }
  unsigned char digest[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(hasher_->ctx.get(), digest, &len);
  const std::string got = to_hex(std::string_view(reinterpret_cast<const char*>(digest), len));
  if (got != sha256_) {
    return data_loss("the records from " + source_ + " hash to " + got.substr(0, 16) + "..., not to " +
                     sha256_.substr(0, 16) + "..., the SHA-256 the coordinator recorded for them at submission: "
                     "refused, nothing was trained on them or kept");
  }
  if (::fsync(fd_) != 0) return unavailable("cannot sync '" + temp_path_ + "': " + errno_text());
  ::close(fd_);
  fd_ = -1;
  if (::rename(temp_path_.c_str(), final_path_.c_str()) != 0) {
    return unavailable("cannot rename '" + temp_path_ + "' to '" + final_path_ + "': " + errno_text());
  }
  temp_path_.clear();
  return Status::ok();
}

}  // namespace custody
