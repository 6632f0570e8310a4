// Data shipping, the coordinator's side of it (docs/ARCHITECTURE.md, "Data shipping"):
// each rank's records are kept by their SHA-256 in the records directory when a job is
// admitted, a worker's fetchRecords is checked against the tasks of its job's attempt, and
// a worker's account of how it came by its records is recorded.
#include <tuple>

#include "actors/coordinator_state.h"
#include "core/blob_dir.h"
#include "core/dataset.h"
#include "core/log.h"
#include "core/partition.h"

namespace custody::actors {

void CoordinatorState::shelve_records(const JobPlan& plan, const DataSplit& data) {
  if (options_.records_dir.empty() || plan.spec.data.kind != DataSpec::Kind::kIdx) return;
  auto fail = [&](const Status& s) {
    log(LogLevel::kWarn, kSelf, "cannot keep the records of data set " + data.version_hash.substr(0, 16) + "... in " +
                                    options_.records_dir + " (" + s.message() +
                                    "): workers without the data set's files cannot run its jobs");
  };
  auto dir = BlobDir::open(options_.records_dir);
  if (!dir.is_ok()) return fail(dir.status());
  const auto ranks = static_cast<uint32_t>(plan.data.train_digests.size());
  auto train = partition_range(static_cast<uint64_t>(data.train.count), ranks);
  auto test = partition_range(static_cast<uint64_t>(data.test.count), ranks);
  if (!train.is_ok() || !test.is_ok()) return fail(train.is_ok() ? test.status() : train.status());
  const auto f = static_cast<size_t>(data.train.features);
  const std::string source = "the data set read at submission";
  for (uint32_t r = 0; r < ranks; ++r) {
    // What the digests were computed over (core/dataset.h records_digest): pixel bytes
    // sample-major, a byte a label.
    for (const auto& [set, range, digest] :
         {std::tuple{&data.train, (*train)[r], plan.data.train_digests[r]},
          std::tuple{&data.test, (*test)[r], plan.data.test_digests[r]}}) {
      const size_t b = static_cast<size_t>(range.begin), e = static_cast<size_t>(range.end);
      Status s = dir->put(digest.images_sha256, set->pixels.data() + b * f, (e - b) * f, source);
      if (s.is_ok()) s = dir->put(digest.labels_sha256, set->labels.data() + b, e - b, source);
      if (!s.is_ok()) return fail(s);
    }
  }
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
