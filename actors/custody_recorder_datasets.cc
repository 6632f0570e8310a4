// The custody recorder's records about data sets: privacy budgets (storage/privacy_budget.h:
// the steps a private job is charged, a budget set, a job refused) and a retraining's own data
// set version (storage/liability.h). Split from custody_recorder.cc to keep actors/ files
// under 500 lines; same class, same thread-safety (none: one actor owns the recorder).
#include "actors/custody_recorder.h"

#include <algorithm>

#include "core/hash.h"
#include "storage/lineage_vocabulary.h"

namespace custody::actors {

namespace {
namespace lineage = storage::lineage;
using lineage::principal_id;
}  // namespace

void charge_privacy(storage::Batch& b, const std::string& run, const std::string& dataset_hash,
                    const PrivacyPlan& plan, uint64_t steps, const std::string& why, uint32_t attempt) {
  if (steps == 0) return;
  b.relation(lineage::rel::kPrivacyCharged, run, lineage::dataset_id(dataset_hash),
             {{"steps", steps},
              {"sampling_rate", plan.q},
              {"noise_multiplier", plan.sigma},
              {"delta", plan.delta},
              {"why", why},
              {"attempt", attempt}});
}

Status CustodyRecorder::privacy_charged(const msg::JobStatus& job, const PrivacyPlan& plan, uint64_t steps,
                                        const std::string& why, uint32_t attempt) {
  if (steps == 0) return Status::ok();
  storage::Batch b("privacy charged");
  charge_privacy(b, job.job_id, job.dataset_hash, plan, steps, why, attempt);
  return write(b);
}

Status CustodyRecorder::privacy_budget_set(const std::string& dataset_id, double epsilon, double delta,
                                           const std::string& by, const std::string& reason, double spent_epsilon) {
  if (!store_) return failed_precondition("privacy budgets are kept in the custody store: start with --store");
  storage::Batch b("privacy budget set");
  b.entity(lineage::kind::kPrincipal, principal_id(by), {{"name", by}});
  b.relation(lineage::rel::kPrivacyBudget, principal_id(by), dataset_id,
             {{"epsilon", epsilon}, {"delta", delta}, {"reason", reason}, {"spent_epsilon", spent_epsilon}});
  return write(b);
}

Status CustodyRecorder::privacy_refused(const std::string& dataset_id, const std::string& principal,
                                        const std::string& job_name, const std::string& reason,
                                        const storage::json& numbers) {
  storage::Batch b("privacy budget refused a job");
  b.entity(lineage::kind::kPrincipal, principal_id(principal), {{"name", principal}});
  storage::json fields = numbers.is_object() ? numbers : storage::json::object();
  fields["job_name"] = job_name;
  fields["reason"] = reason;
  b.relation(lineage::rel::kPrivacyRefused, principal_id(principal), dataset_id, std::move(fields));
  return write(b);
}

std::string lineage_dataset_hash(const DatasetInfo& data) {
  if (data.excluded.empty()) return data.version_hash;
  std::string text = data.version_hash + " without ";
  for (size_t i = 0; i < data.excluded.size(); ++i) text += (i ? "," : "") + std::to_string(data.excluded[i]);
  return sha256_hex(text);
}

std::vector<uint64_t> excluded_in(const std::vector<uint64_t>& excluded, uint64_t begin, uint64_t end) {
  return {std::lower_bound(excluded.begin(), excluded.end(), begin), std::lower_bound(excluded.begin(), excluded.end(), end)};
}

}  // namespace custody::actors
