#include "actors/store_backup.h"

#include <chrono>
#include <filesystem>

#include "core/log.h"

namespace custody::actors {
namespace {

namespace fs = std::filesystem;

constexpr char kSelf[] = "coordinator";

struct BackupState {
  bool busy = false;
  std::string dir;  // of the backup running
  std::chrono::steady_clock::time_point started;
};

// "" if `dir` may hold backups of the store at `store_path`; else why not.
std::string check_dir(const std::string& dir, const std::string& store_path) {
  if (dir.empty() || dir.front() != '/') {
    return "the backup directory must be an absolute path on the coordinator's machine, not '" + dir + "'";
  }
  std::error_code ec;
  const fs::path d = fs::weakly_canonical(dir, ec), s = fs::weakly_canonical(store_path, ec);
  const auto [store_end, dir_end] = std::mismatch(s.begin(), s.end(), d.begin(), d.end());
  if (store_end == s.end()) {
    return "the backup directory '" + dir + "' is inside the custody store '" + store_path +
           "': choose a directory outside it (better: on another disk)";
  }
  return "";
}

// One backup, on a thread of its own (a blocking actor): the reply goes straight to the
// caller through the socket's port, and the parent hears that the slot is free.
void take_backup(caf::blocking_actor* self, caf::actor parent, SocketPort port, storage::CustodyStore* store,
                 std::string store_path, Inbound in, const std::atomic<bool>* stop) {
  const auto& request = *in.envelope->get<msg::StoreBackup>();
  const auto started = std::chrono::steady_clock::now();
  storage::BackupOptions options;
  options.rate_limit_bytes_per_s = request.rate_limit_bytes_per_s;
  options.stop = stop;
  log(LogLevel::kInfo, kSelf, "backing up the custody store into " + request.dir);
  auto taken = store->backup(request.dir, options);
  auto versions = store->key_versions();
  if (!taken.is_ok()) {
    log(LogLevel::kError, kSelf, "the backup into " + request.dir + " failed: " + taken.status().message());
    port.send(in.peer, msg::make_error(*in.envelope, kSelf, taken.status()));
  } else {
    msg::StoreBackupReply reply;
    reply.dir = request.dir;
    reply.backup_id = taken->id;
    reply.taken_at_s = taken->time_s;
    reply.bytes = taken->bytes;
    reply.files = taken->files;
    reply.store_path = store_path;
    if (versions.is_ok()) reply.store_keys = versions.value();
    reply.elapsed_ms = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started)
            .count());
    log(LogLevel::kInfo, kSelf,
        "backup " + std::to_string(taken->id) + " of the custody store is complete in " + request.dir + " (" +
            std::to_string(taken->files) + " files, " + std::to_string(taken->bytes) + " bytes, " +
            std::to_string(reply.elapsed_ms) + " ms)");
    port.send(in.peer, msg::reply_to(*in.envelope, kSelf, std::move(reply)));
  }
  self->send(parent, done_atom::value);
}

caf::behavior store_backup_actor(caf::stateful_actor<BackupState>* self, SocketPort port,
                                 storage::CustodyStore* store, std::string store_path,
                                 const std::atomic<bool>* stop) {
  return {
      [=](Inbound& in) {
        const auto* request = in.envelope->get<msg::StoreBackup>();
        if (!request) return;
        auto refuse = [&](const Status& s) { port.send(in.peer, msg::make_error(*in.envelope, kSelf, s)); };
        if (!store) {
          refuse(failed_precondition(
              "this coordinator keeps no custody store (--store): there is nothing to back up"));
          return;
        }
        if (const std::string bad = check_dir(request->dir, store_path); !bad.empty()) {
          refuse(invalid_argument(bad));
          return;
        }
        if (self->state.busy) {
          const auto running = std::chrono::duration_cast<std::chrono::seconds>(
              std::chrono::steady_clock::now() - self->state.started);
          refuse(unavailable("a backup into " + self->state.dir + " has been running for " +
                             std::to_string(running.count()) + " s; ask again when it has ended"));
          return;
        }
        self->state.busy = true;
        self->state.dir = request->dir;
        self->state.started = std::chrono::steady_clock::now();
        self->spawn(take_backup, caf::actor_cast<caf::actor>(self), port, store, store_path, in, stop);
      },
      [=](done_atom) { self->state.busy = false; },
  };
}

}  // namespace

caf::actor spawn_store_backup(caf::actor_system& system, SocketPort port, storage::CustodyStore* store,
                              std::string store_path, const std::atomic<bool>* stop) {
  return system.spawn(store_backup_actor, port, store, std::move(store_path), stop);
}

}  // namespace custody::actors
