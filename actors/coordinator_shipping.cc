// Data shipping, the coordinator's side of it (docs/ARCHITECTURE.md, "Data shipping"):
// each rank's records are kept by their SHA-256 in the records directory when a job is
// admitted, a worker's fetchRecords is checked against the tasks of its job's attempt, and
// a worker's account of how it came by its records is recorded.
#include <memory>
#include <optional>
#include <tuple>

#include "actors/coordinator_state.h"
#include "core/blob_dir.h"
#include "core/dataset.h"
#include "core/log.h"
#include "core/partition.h"

namespace custody::actors {

std::function<Status(const std::string&, const std::vector<uint8_t>&)> CoordinatorState::records_keeper(
    const DataSpec& data) const {
  if (options_.records_dir.empty() || data.kind != DataSpec::Kind::kIdx) return nullptr;
  // Keeping is best effort: the first failure is logged and the rest of the pass keeps nothing.
  struct Keeper {
    std::string dir;
    std::optional<BlobDir> blobs;
    bool failed = false;
  };
  auto k = std::make_shared<Keeper>();
  k->dir = options_.records_dir;
  return [k](const std::string& sha256, const std::vector<uint8_t>& bytes) -> Status {
    if (k->failed) return Status::ok();
    Status s = Status::ok();
    if (!k->blobs) {
      auto dir = BlobDir::open(k->dir);
      if (dir.is_ok()) k->blobs.emplace(std::move(dir).value());
      else s = dir.status();
    }
    // What the digests were computed over (core/dataset.h records_digest): pixel bytes
    // sample-major, a byte a label.
    if (s.is_ok()) s = k->blobs->put(sha256, bytes.data(), bytes.size(), "the data set read at submission");
    if (!s.is_ok()) {
      k->failed = true;
      log(LogLevel::kWarn, "coordinator", "cannot keep a job's records in " + k->dir + " (" + s.message() +
                                              "): workers without the data set's files cannot run its jobs");
    }
    return Status::ok();
  };
}

Status CoordinatorState::authorize_fetch(const msg::Envelope& in, const std::string& authenticated) const {
  CUSTODY_ASSIGN_OR_RETURN(Caller caller, authorize(in, authenticated));
  const auto& m = std::get<msg::FetchRecords>(in.body);
  if (options_.records_dir.empty()) {
    return failed_precondition("this coordinator keeps no records to ship (it runs without a records directory: "
                               "give it --records-dir, or give the worker the data set's files)");
  }
  auto node = nodes_.find(in.sender);
  if (node == nodes_.end() || !node->second.alive || node->second.role != msg::NodeRole::kWorker) {
    return failed_precondition("records are shipped only to registered, live workers; '" + in.sender + "' is not one");
  }
  if (secured() && node->second.principal != caller.principal) {
    return Status(ErrorCode::kPermissionDenied, "node " + in.sender + " registered as principal " +
                                                    node->second.principal + ", not " + caller.principal);
  }
  auto it = jobs_.find(in.job_id);
  if (it == jobs_.end() || msg::is_terminal(it->second.status.state)) {
    return not_found("no running job '" + in.job_id + "' to ship records of");
  }
  const Attempt& attempt = it->second.attempt;
  if (in.attempt != attempt.number) {
    return failed_precondition("attempt " + std::to_string(in.attempt) + " of " + in.job_id + " has ended (now " +
                               std::to_string(attempt.number) + ")");
  }
  for (size_t r = 0; r < attempt.tasks.size() && r < attempt.workers.size(); ++r) {
    if (attempt.workers[r] != in.sender) continue;
    const msg::AssignTask& t = attempt.tasks[r];
    for (const std::string* d : {&t.train_digest.images_sha256, &t.train_digest.labels_sha256,
                                 &t.test_digest.images_sha256, &t.test_digest.labels_sha256}) {
      if (*d == m.sha256) return Status::ok();
    }
  }
  return Status(ErrorCode::kPermissionDenied, "records " + m.sha256.substr(0, 16) + "... are not those of a rank " +
                                                  in.sender + " runs in " + in.job_id + " attempt " +
                                                  std::to_string(in.attempt));
}

Outbox CoordinatorState::on_shard_obtained(Job& job, const Node& node, uint32_t attempt,
                                           const msg::ShardObtained& m) {
  if (m.rank >= job.attempt.workers.size() || job.attempt.workers[m.rank] != node.id) return {};
  const msg::AssignTask& t = job.attempt.tasks[m.rank];
  log(LogLevel::kInfo, kSelf, job.status.job_id + ": " + node.id + " holds rank " + std::to_string(m.rank) +
                                  "'s records, verified (" + msg::to_string(m.how) + ": " + m.source +
                                  (m.bytes_fetched ? ", " + std::to_string(m.bytes_fetched) + " bytes fetched" : "") +
                                  ", " + std::to_string(m.elapsed_ms) + " ms)");
  Status s = recorder_.shard_obtained(job.status, attempt, node.id, m, t.train_digest, t.test_digest);
  if (!s.is_ok()) log(LogLevel::kError, kSelf, job.status.job_id + ": cannot record shard_obtained: " + s.message());
  return {};
}

}  // namespace custody::actors
