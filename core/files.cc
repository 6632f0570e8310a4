#include "core/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/hash.h"

namespace custody {
namespace {

Status io_error(const std::string& what, const std::string& path) {
  const int e = errno;
  const std::string message = what + " '" + path + "': " + std::strerror(e);
  if (e == EACCES || e == EPERM) return Status(ErrorCode::kPermissionDenied, message);
  if (e == ENOENT) return not_found(message);
  return unavailable(message);
}

Status write_all(int fd, const std::string& bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return io_error("cannot write", path);
    done += static_cast<size_t>(n);
  }
  return Status::ok();
}

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

Status write_file_atomically(const std::string& path, const std::string& content, mode_t mode) {
  // The temporary file is new (O_EXCL: never a file someone placed there beforehand, nor
  // a link), unguessable, and only its owner's while the content is written: key files
  // pass through it.
  auto suffix = random_token(8);
  if (!suffix.is_ok()) return suffix.status();
  const std::string tmp = path + ".tmp-" + suffix.value();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return io_error("cannot create", tmp);
  Status s = write_all(fd, content, tmp);
  if (s.is_ok() && ::fchmod(fd, mode) != 0) s = io_error("cannot set the mode of", tmp);
  if (s.is_ok() && ::fsync(fd) != 0) s = io_error("cannot sync", tmp);
  if (::close(fd) != 0 && s.is_ok()) s = io_error("cannot close", tmp);
  if (s.is_ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = io_error("cannot rename into", path);
  if (!s.is_ok()) {
    ::unlink(tmp.c_str());
    return s;
  }
  const int dir = ::open(directory_of(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);  // best effort: some file systems refuse to sync a directory
    ::close(dir);
  }
  return Status::ok();
}

Status append_line_synced(const std::string& path, const std::string& line) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("cannot open", path);
  Status s = write_all(fd, line + "\n", path);
  if (s.is_ok() && ::fsync(fd) != 0) s = io_error("cannot sync", path);
  if (::close(fd) != 0 && s.is_ok()) s = io_error("cannot close", path);
  return s;
}

}  // namespace custody
