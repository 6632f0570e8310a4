// A data set's privacy budget and what was spent from it, read from the custody record
// (docs/ARCHITECTURE.md, "Privacy budgets"). The record is the ledger: the coordinator
// writes, in the batch of the event that causes it,
//   privacy_budget            principal -> dataset  {epsilon, delta, reason}  a budget set
//   privacy_charged           run -> dataset        {steps, sampling_rate, noise_multiplier,
//                                                    why, attempt}           steps spent
//   privacy_budget_overridden run -> dataset        {by, reason}  a non-private job an
//                                                                 admin let through
//   privacy_refused           principal -> dataset  {job_name, reason, numbers}
// A private job is charged its whole plan when it is accepted (it may be resumed after a
// cancel, so its plan stays reserved), and again for every step it computes twice: steps
// rolled back by a recovery, a resume, or a coordinator restart (each an increment, `why`
// names it). Each charge is one more run of the subsampled Gaussian; the data set's spending
// is their RDP curves added order by order and converted to epsilon at the budget's delta
// (core/privacy.h check_budget), so admission, `custody privacy DATASET` and an auditor
// reading the files compute the same numbers from the same records.
// Reads go through the index (in/<dataset>|<rel>|...): no scan of the log.
// Thread-safety: as CustodyStore's reads.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/privacy.h"
#include "storage/custody_store.h"

namespace custody::storage {

struct DatasetBudget {
  double epsilon = 0, delta = 0;
  std::string set_by;  // principal id
  std::string reason;
  int64_t time_ms = 0;
};

// One run's charges on the data set.
struct RunSpending {
  std::string run;
  double q = 0, sigma = 0;
  uint64_t steps_planned = 0;  // charged at acceptance
  uint64_t steps_repeated = 0;  // charged later: computed twice (rollbacks, resumes, restarts)
  uint64_t steps() const { return steps_planned + steps_repeated; }
};

struct PrivacyLedger {
  std::string dataset;                 // "dataset:<sha256>"
  std::optional<DatasetBudget> budget;  // the newest one set; none: unbudgeted
  std::vector<RunSpending> runs;        // in the order they were first charged
  json overrides = json::array();       // privacy_budget_overridden relations, as recorded
  json refusals = json::array();        // privacy_refused relations, as recorded
  std::vector<PrivacyCharge> charges() const;
};

// The ledger of `dataset_id` ("dataset:<sha256>"). A data set nothing was charged to and
// no budget was set on has an empty ledger (not an error).
Result<PrivacyLedger> privacy_ledger(const CustodyStore& store, const std::string& dataset_id);

// The data set's owner: the principal who first declared it (the submitter of the first
// job that consumed it), as "principal:NAME"; "" if no job consumed it yet.
Result<std::string> dataset_owner(const CustodyStore& store, const std::string& dataset_id);

// `custody privacy DATASET`: the budget, each run with its steps and its epsilon alone (at
// the budget's delta, or its own delta without a budget), the composed total, what remains,
// overrides and refusals. `ref` as users type it (a hash, a prefix, a name, dataset:HASH).
Result<json> privacy_spending(const CustodyStore& store, const std::string& ref);
// The same as text for a person.
std::string render_spending(const json& spending);

}  // namespace custody::storage
