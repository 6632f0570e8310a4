#include "protocols/shared_region.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <linux/futex.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/hex.h"

namespace custody::shm {

namespace {

constexpr char kMagic[8] = {'C', 'U', 'S', 'T', 'S', 'H', 'M', '2'};

struct Header {
  char magic[8];
  uint64_t floats;
  uint32_t attempt;
  uint32_t rank;
  uint32_t job_id_size;
  char job_id[SharedRegion::kMaxJobId];
};
static_assert(sizeof(Header) <= SharedRegion::kHeaderBytes, "the header fits its 128 bytes");

size_t block_bytes(uint64_t floats) { return (floats * sizeof(float) + 63) / 64 * 64; }

// The doorbell's two directions, each a sequence word (a futex) with its message's length
// on a cache line of its own, then the message slot.
struct Bell {
  alignas(64) std::atomic<uint32_t> seq;
  uint32_t bytes;
};
static_assert(sizeof(Bell) == 64, "a bell fills one cache line");
static_assert(std::atomic<uint32_t>::is_always_lock_free, "a futex word is a plain 32-bit word");
constexpr size_t kDoorbellBytes = 2 * sizeof(Bell) + 2 * SharedRegion::kSlotBytes;

Bell* bell(void* base, int slot) {
  return reinterpret_cast<Bell*>(static_cast<char*>(base) + SharedRegion::kHeaderBytes) + slot;
}
uint8_t* slot_bytes(void* base, int slot) {
  return static_cast<uint8_t*>(base) + SharedRegion::kHeaderBytes + 2 * sizeof(Bell) + slot * SharedRegion::kSlotBytes;
}
size_t blocks_offset() { return SharedRegion::kHeaderBytes + kDoorbellBytes; }

// Not FUTEX_PRIVATE: the word is shared with another process.
long futex(std::atomic<uint32_t>* word, int op, uint32_t value, const timespec* timeout) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, value, timeout, nullptr, 0);
}

std::string errno_text() { return std::strerror(errno); }

// /custody-shm-<pid>-<32 hex digits>, nothing else: a name from the network is only ever
// one of ours, never a path.
bool well_formed(const std::string& name, pid_t* pid) {
  const std::string prefix = std::string("/") + SharedRegion::kPrefix;
  if (name.size() > 64 || name.compare(0, prefix.size(), prefix) != 0) return false;
  size_t i = prefix.size(), digits = 0;
  long long p = 0;
  for (; i < name.size() && name[i] >= '0' && name[i] <= '9' && digits < 10; ++i, ++digits) p = p * 10 + (name[i] - '0');
  if (digits == 0 || i >= name.size() || name[i] != '-') return false;
  ++i;
  if (name.size() - i != 32) return false;
  for (; i < name.size(); ++i) {
    const char c = name[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  if (pid) *pid = static_cast<pid_t>(p);
  return true;
}

std::string first_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

std::string host_identity() {
  const std::string boot = first_line("/proc/sys/kernel/random/boot_id");
  char target[128];
  const ssize_t n = readlink("/proc/self/ns/net", target, sizeof(target) - 1);
  if (boot.empty() || n <= 0) return "";
  target[n] = '\0';
  return boot + "/" + target;  // e.g. 1b9e...-.../net:[4026531840]
}

size_t SharedRegion::size_for(uint64_t floats) { return blocks_offset() + 2 * block_bytes(floats); }

Status SharedRegion::post(Slot slot, const uint8_t* data, size_t n) {
  if (n > kSlotBytes) {
    return invalid_argument("a message of " + std::to_string(n) + " bytes does not fit shared-memory region " +
                            name_ + "'s " + std::to_string(kSlotBytes) + "-byte slot");
  }
  Bell* b = bell(base_, slot);
  std::memcpy(slot_bytes(base_, slot), data, n);
  b->bytes = static_cast<uint32_t>(n);
  b->seq.fetch_add(1, std::memory_order_release);  // the slot and its length before the number
  futex(&b->seq, FUTEX_WAKE, 1, nullptr);
  return Status::ok();
}

std::optional<SharedRegion::Message> SharedRegion::wait(Slot slot, uint32_t seen,
                                                        std::chrono::milliseconds timeout) const {
  Bell* b = bell(base_, slot);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const uint32_t seq = b->seq.load(std::memory_order_acquire);
    if (seq != seen) {
      Message m{seq, {}};
      const uint32_t n = b->bytes;
      if (n <= kSlotBytes) m.bytes.assign(slot_bytes(base_, slot), slot_bytes(base_, slot) + n);
      return m;
    }
    const auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::nanoseconds(0)) return std::nullopt;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    timespec ts{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
    // Returns at once if the word is no longer `seen` (EAGAIN), on a wake, a signal or the
    // timeout: the loop looks again in every case.
    futex(&b->seq, FUTEX_WAIT, seen, &ts);
  }
}

uint32_t SharedRegion::reply_seq() const { return bell(base_, kReply)->seq.load(std::memory_order_acquire); }

Result<SharedRegion> SharedRegion::create(const std::string& job_id, uint32_t attempt, uint32_t rank,
                                          uint64_t floats) {
  if (floats == 0) return invalid_argument("a shared-memory region needs at least one float");
  unsigned char random[16];
  if (getrandom(random, sizeof(random), 0) != static_cast<ssize_t>(sizeof(random)))
    return unavailable("no random bytes for a shared-memory region's name: " + errno_text());
  SharedRegion r;
  r.name_ = "/" + std::string(kPrefix) + std::to_string(getpid()) + "-" +
            to_hex(std::string_view(reinterpret_cast<const char*>(random), sizeof(random)));
  const int fd = shm_open(r.name_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return unavailable("cannot create shared-memory region " + r.name_ + ": " + errno_text());
  r.linked_ = true;  // from here the destructor removes the name on any failure
  r.size_ = size_for(floats);
  // 0600 whatever the umask; ftruncate zero-fills.
  if (fchmod(fd, 0600) != 0 || ftruncate(fd, static_cast<off_t>(r.size_)) != 0) {
    const std::string why = errno_text();
    close(fd);
    return unavailable("cannot size shared-memory region " + r.name_ + " to " + std::to_string(r.size_) +
                       " bytes: " + why);
  }
  void* base = mmap(nullptr, r.size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  const std::string why = errno_text();
  close(fd);
  if (base == MAP_FAILED) return unavailable("cannot map shared-memory region " + r.name_ + ": " + why);
  r.base_ = base;
  r.floats_ = floats;
  auto* h = static_cast<Header*>(base);
  std::memcpy(h->magic, kMagic, sizeof(kMagic));
  h->floats = floats;
  h->attempt = attempt;
  h->rank = rank;
  h->job_id_size = static_cast<uint32_t>(std::min(job_id.size(), kMaxJobId));
  std::memcpy(h->job_id, job_id.data(), h->job_id_size);
  r.gradient_ = reinterpret_cast<float*>(static_cast<char*>(base) + blocks_offset());
  r.values_ = reinterpret_cast<float*>(static_cast<char*>(base) + blocks_offset() + block_bytes(floats));
  return r;
}

Result<SharedRegion> SharedRegion::open(const std::string& name, const std::string& job_id, uint32_t attempt,
                                        uint32_t rank, uint64_t floats) {
  const std::string named = "shared-memory region '" + name + "'";
  if (!well_formed(name, nullptr)) {
    return invalid_argument(named + " is not a region name this cluster makes (/" + std::string(kPrefix) +
                            "<pid>-<32 hex digits>)");
  }
  const int fd = shm_open(name.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0);
  if (fd < 0) {
    if (errno == ENOENT) {
      return not_found(named + " does not exist on this server's host: the worker is on another host or "
                               "network namespace, or removed it; start the coordinator with "
                               "--no-data-plane-shared-memory if hosts are misidentified");
    }
    return invalid_argument("cannot open " + named + ": " + errno_text());
  }
  struct stat st {};
  const int stated = fstat(fd, &st);
  const size_t want = size_for(floats);
  Status wrong = Status::ok();
  if (stated != 0) {
    wrong = invalid_argument("cannot stat " + named + ": " + errno_text());
  } else if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
    wrong = invalid_argument(named + " is not owned by this server's user with mode 0600; it is not taken");
  } else if (static_cast<uint64_t>(st.st_size) != want) {
    wrong = invalid_argument(named + " is " + std::to_string(st.st_size) + " bytes, but blocks of this server's " +
                             std::to_string(floats) + " parameters need " + std::to_string(want));
  }
  if (!wrong.is_ok()) {
    close(fd);
    return wrong;
  }
  void* base = mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  const std::string why = errno_text();
  close(fd);
  if (base == MAP_FAILED) return unavailable("cannot map " + named + ": " + why);
  SharedRegion r;
  r.name_ = name;
  r.base_ = base;
  r.size_ = want;
  r.floats_ = floats;
  // The server holds the mapping; the name has done its work. Removing it now means no
  // other process can open the region from here on, and nothing is left if either dies.
  shm_unlink(name.c_str());
  const auto* h = static_cast<const Header*>(base);
  const std::string id = job_id.substr(0, kMaxJobId);
  if (std::memcmp(h->magic, kMagic, sizeof(kMagic)) != 0 || h->floats != floats || h->attempt != attempt ||
      h->rank != rank || h->job_id_size != id.size() || std::memcmp(h->job_id, id.data(), id.size()) != 0) {
    return invalid_argument(named + " was not made for rank " + std::to_string(rank) + " of " + job_id +
                            " (attempt " + std::to_string(attempt) + ") on " + std::to_string(floats) +
                            " parameters; it is not taken");
  }
  r.gradient_ = reinterpret_cast<float*>(static_cast<char*>(base) + blocks_offset());
  r.values_ = reinterpret_cast<float*>(static_cast<char*>(base) + blocks_offset() + block_bytes(floats));
  return r;
}

SharedRegion::SharedRegion(SharedRegion&& o) noexcept { *this = std::move(o); }

SharedRegion& SharedRegion::operator=(SharedRegion&& o) noexcept {
  if (this == &o) return *this;
  this->~SharedRegion();
  name_ = std::move(o.name_);
  base_ = o.base_;
  size_ = o.size_;
  floats_ = o.floats_;
  gradient_ = o.gradient_;
  values_ = o.values_;
  linked_ = o.linked_;
  o.base_ = nullptr;
  o.linked_ = false;
  o.gradient_ = o.values_ = nullptr;
  return *this;
}

SharedRegion::~SharedRegion() {
  unlink();
  if (base_) munmap(base_, size_);
  base_ = nullptr;
}

void SharedRegion::unlink() {
  if (linked_) shm_unlink(name_.c_str());
  linked_ = false;
}

size_t SharedRegion::sweep_stale() {
  size_t removed = 0;
  DIR* dir = opendir("/dev/shm");
  if (!dir) return 0;
  while (dirent* e = readdir(dir)) {
    const std::string name = std::string("/") + e->d_name;
    pid_t pid = 0;
    if (!well_formed(name, &pid)) continue;
    // Only our own user's, and only of processes gone: kill(pid, 0) fails with ESRCH.
    struct stat st {};
    if (stat(("/dev/shm/" + std::string(e->d_name)).c_str(), &st) != 0 || st.st_uid != geteuid()) continue;
    if (kill(pid, 0) == 0 || errno != ESRCH) continue;
    if (shm_unlink(name.c_str()) == 0) ++removed;
  }
  closedir(dir);
  return removed;
}

}  // namespace custody::shm
