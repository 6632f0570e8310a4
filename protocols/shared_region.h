// Shared memory for the data plane between a worker and a parameter server in separate
// processes on one host: one POSIX shared-memory region per (job attempt, rank, server),
// made by the worker, mapped by both, so that a step's parameter blocks cross no socket
// buffer. ZeroMQ still carries every push, pull and reply, now without the block: a push
// names the region (msg::Push::region) and a reply says its values are there
// (msg::Params::in_region). See docs/ARCHITECTURE.md, "The data path".
//
// Layout (all little-endian, the host's own floats):
//   [0, 128)            header: magic "CUSTSHM2", floats n, attempt, rank, the job id
//   doorbell            two sequence words (futexes) and two 16 KiB message slots: the
//                       request slot written by the worker only, the reply slot by the
//                       server only (see "The doorbell" below)
//   gradient block      n floats, written by the worker only, read by the server only
//   values block        n floats, written by the server only, read by the worker only
// Each block starts on a 64-byte boundary.
//
// Who writes when (why no reader sees a half-written block): a trainer has at most one
// request outstanding per server (it waits for every answer before its next pull or push).
//  * The worker writes the gradient block before it sends the push that names the region,
//    and not again until it has that push's answer; the server reads (copies) the block
//    while it handles the push, before it answers. The push message orders the write
//    before the read, the answer orders the read before the next write.
//  * The server writes the values block only when it answers that rank's request, before
//    sending the answer; the worker reads it only after receiving the answer to its current
//    request, and sends its next request after reading. (An answer to an abandoned request
//    would break this, so a worker that abandons a wait drops the region: the trainer's
//    wait ends the attempt, and the next attempt makes new regions.)
// Both sides fence (release before the send, acquire after the receive); the messages
// cross kernel calls, which order memory on every host this runs on anyway.
//
// The doorbell: once the server has answered through the region, the worker sends its
// pulls and pushes (the small encoded messages, the blocks stay where they are) through the
// request slot instead of its socket, and the server answers through the reply slot: each
// side writes a slot, then bumps its sequence word (release) and wakes the other with a
// futex (FUTEX_WAKE on shared memory); the other waits on the word (FUTEX_WAIT), acquires,
// and copies the message out of the slot before decoding it (the writer cannot change what
// is being decoded). The same one-outstanding-request rule orders the slots as it orders
// the blocks: the worker writes the request slot only with no request outstanding, the
// server writes a rank's reply slot only as it answers that rank's request. A step's
// messages then wake only the thread that waits for them: no ZeroMQ I/O thread, socket
// poll or actor mailbox in between.
//
// Security and cleanup: the name is /custody-shm-<creator's pid>-<128 random bits>, made
// with O_EXCL and mode 0600, so only the same user can open it and only a process told the
// name can find it. The server refuses a region not owned by its own user, open to others,
// of the wrong size, or whose header names another job, attempt, rank or size. The server
// unlinks the name as soon as it has mapped the region, and the worker as soon as the server
// has answered through it (or when it drops it), so the name exists only for the first
// exchange; the mappings go when the attempt ends. A worker killed before the server opened
// its region leaves a name, which sweep_stale() (run by every worker and server at start)
// removes since its pid no longer runs.
// Thread-safety: a region is owned by one thread at a time; host_identity and sweep_stale
// may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

namespace custody::shm {

// Which kernel and network namespace this process runs in: the kernel's boot id and the
// inode of /proc/self/ns/net. Two processes with the same identity share /dev/shm's kernel
// and loopback; processes in different network namespaces of one kernel (containers) get
// different identities and keep using their sockets. Empty if either cannot be read.
std::string host_identity();

class SharedRegion {
 public:
  static constexpr size_t kHeaderBytes = 128;
  static constexpr size_t kSlotBytes = 16 * 1024;  // the largest message through the doorbell
  static constexpr size_t kMaxJobId = 96;  // header bytes for the job id (a longer one: its prefix)

  // The worker's side: a new region for blocks of `floats` floats of `rank`'s task of the
  // job's attempt. Errors: kUnavailable naming what the system refused (no /dev/shm, out
  // of memory, limits).
  static Result<SharedRegion> create(const std::string& job_id, uint32_t attempt, uint32_t rank, uint64_t floats);
  // The server's side: opens and maps the region `name`, checks it, and unlinks its name.
  // Errors (kInvalidArgument, naming the region and what is wrong): a malformed name; no
  // such region (kNotFound); not this user's, or open to others; not the size of blocks of
  // `floats` floats; a header naming another job, attempt, rank or size.
  static Result<SharedRegion> open(const std::string& name, const std::string& job_id, uint32_t attempt,
                                   uint32_t rank, uint64_t floats);

  SharedRegion(SharedRegion&& other) noexcept;
  SharedRegion& operator=(SharedRegion&& other) noexcept;
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;
  ~SharedRegion();  // unmaps; the creator also unlinks the name if still there

  const std::string& name() const { return name_; }
  uint64_t floats() const { return floats_; }
  float* gradient() const { return gradient_; }
  float* values() const { return values_; }
  // Removes the name from /dev/shm (the mappings stay). Idempotent.
  void unlink();

  // The doorbell (see the top of this file). post_request (the worker) and post_reply (the
  // server) copy `n` bytes into their slot, bump its sequence number and wake the other
  // side; kInvalidArgument if n exceeds kSlotBytes (nothing is posted). wait_request and
  // wait_reply wait up to `timeout` for the other side's sequence number to differ from
  // `seen` (the last one taken), and return a copy of the slot's message with its sequence
  // number; nothing on a timeout. A slot length beyond kSlotBytes (a corrupted region)
  // comes back empty, which decodes as an error.
  struct Message {
    uint32_t seq;
    std::vector<uint8_t> bytes;
  };
  Status post_request(const uint8_t* data, size_t n) { return post(kRequest, data, n); }
  Status post_reply(const uint8_t* data, size_t n) { return post(kReply, data, n); }
  std::optional<Message> wait_request(uint32_t seen, std::chrono::milliseconds timeout) const {
    return wait(kRequest, seen, timeout);
  }
  std::optional<Message> wait_reply(uint32_t seen, std::chrono::milliseconds timeout) const {
    return wait(kReply, seen, timeout);
  }
  // The sequence number of the last reply posted (the worker's starting point).
  uint32_t reply_seq() const;

  // Bytes of a region whose blocks hold `floats` floats.
  static size_t size_for(uint64_t floats);
  // Removes the regions whose creating process no longer runs (a worker killed before its
  // server opened them). Returns how many it removed.
  static size_t sweep_stale();
  // The prefix of every region's name in /dev/shm (without the leading slash).
  static constexpr const char* kPrefix = "custody-shm-";

 private:
  SharedRegion() = default;
  enum Slot { kRequest = 0, kReply = 1 };
  Status post(Slot slot, const uint8_t* data, size_t n);
  std::optional<Message> wait(Slot slot, uint32_t seen, std::chrono::milliseconds timeout) const;
  std::string name_;
  void* base_ = nullptr;
  size_t size_ = 0;
  uint64_t floats_ = 0;
  float* gradient_ = nullptr;
  float* values_ = nullptr;
  bool linked_ = false;  // the name is still in /dev/shm and this side should remove it
};

}  // namespace custody::shm
