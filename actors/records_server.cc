#include "actors/records_server.h"

#include <optional>
#include <set>

#include "core/blob_dir.h"
#include "core/log.h"

namespace custody::actors {
namespace {

constexpr char kSelf[] = "coordinator";

struct RecordsServerState {
  std::optional<BlobDir> dir;
  std::set<std::string> checked;  // blobs whose whole bytes matched their name in this process
  // Blobs found damaged (and removed) in this process: a later fetch of one gets the same
  // answer, whichever worker asks first, not "holds no records".
  std::set<std::string> damaged;
};

Result<msg::RecordsChunk> answer(RecordsServerState& st, const msg::FetchRecords& m) {
  if (!st.dir) return failed_precondition("this coordinator keeps no records directory to ship records from");
  if (!BlobDir::is_sha256(m.sha256)) return invalid_argument("fetchRecords.sha256 is not a SHA-256 in hex");
  if (!st.checked.count(m.sha256)) {
    bool damaged = false;
    CUSTODY_ASSIGN_OR_RETURN(auto whole, st.dir->read(m.sha256, &damaged));
    if (damaged) st.damaged.insert(m.sha256);
    // Absent because this process removed it as damaged (until a submission writes it again).
    if (!whole && st.damaged.count(m.sha256)) damaged = true;
    if (whole) st.damaged.erase(m.sha256);
    if (!whole) {
      return damaged ? data_loss("the coordinator's copy of records " + m.sha256.substr(0, 16) + "... in " +
                                 st.dir->dir() + " was damaged (removed); submit the job again to restore it")
                     : not_found("the coordinator holds no records " + m.sha256.substr(0, 16) + "... in " +
                                 st.dir->dir() + "; submit the job again to restore them");
    }
    st.checked.insert(m.sha256);
  }
  msg::RecordsChunk chunk;
  chunk.sha256 = m.sha256;
  chunk.offset = m.offset;
  CUSTODY_ASSIGN_OR_RETURN(chunk.data, st.dir->read_range(m.sha256, m.offset, m.length, &chunk.total_bytes));
  return chunk;
}

caf::behavior records_server(caf::stateful_actor<RecordsServerState>* self, SocketPort port,
                             std::string records_dir) {
  if (!records_dir.empty()) {
    auto dir = BlobDir::open(records_dir);
    if (dir.is_ok()) self->state.dir.emplace(std::move(dir).value());
    else log(LogLevel::kWarn, kSelf, "records are not shipped: " + dir.status().message());
  }
  return {
      [=](Inbound& in) {
        const auto* m = in.envelope->get<msg::FetchRecords>();
        if (!m) return;
        auto chunk = answer(self->state, *m);
        if (!chunk.is_ok()) {
          log(LogLevel::kWarn, kSelf, "refused records " + m->sha256.substr(0, 16) + "... to " + in.envelope->sender +
                                          ": " + chunk.status().message());
          port.send(in.peer, msg::make_error(*in.envelope, kSelf, chunk.status()));
          return;
        }
        port.send(in.peer, msg::reply_to(*in.envelope, kSelf, std::move(chunk).value()));
      },
  };
}

}  // namespace

caf::actor spawn_records_server(caf::actor_system& system, SocketPort port, std::string records_dir) {
  return system.spawn<caf::detached>(records_server, port, std::move(records_dir));
}

}  // namespace custody::actors
