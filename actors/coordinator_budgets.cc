// CoordinatorState: privacy budgets per data set (docs/ARCHITECTURE.md "Privacy budgets").
// Setting a budget, and holding each submission against it. The ledger is the custody
// record (storage/privacy_budget.h): read at each decision, written in the batch of the
// event that spends, so it survives restarts and needs no copy in memory.
#include <cmath>
#include <sstream>

#include "actors/coordinator_state.h"
#include "core/log.h"
#include "storage/lineage_vocabulary.h"
#include "storage/privacy_budget.h"

namespace custody::actors {

namespace lineage = storage::lineage;

namespace {

std::string num(double v) {
  std::ostringstream s;
  s.precision(4);
  s << v;
  return s.str();
}

bool is_dataset_id(const std::string& id) {
  auto hash = lineage::without_prefix(id, lineage::prefix::kDataset);
  if (!hash || hash->size() != 64) return false;
  for (char c : *hash)
    if (!std::isxdigit(static_cast<unsigned char>(c)) || std::isupper(static_cast<unsigned char>(c))) return false;
  return true;
}

}  // namespace

Outbox CoordinatorState::on_set_privacy_budget(const msg::Envelope& in, const msg::SetPrivacyBudget& m,
                                               const std::string& peer, const Caller& caller) {
  auto error = [&](Status s) { return Outbox{{peer, msg::make_error(in, kSelf, s)}}; };
  if (!recorder_.enabled()) {
    return error(failed_precondition("privacy budgets are kept in the custody store; this coordinator runs without one"));
  }
  if (!is_dataset_id(m.dataset)) {
    return error(invalid_argument("'" + m.dataset + "' is not a data set id (dataset: and 64 lowercase hex digits; "
                                  "`custody lineage impact NAME` shows a data set's id)"));
  }
  if (!(m.epsilon > 0) || !std::isfinite(m.epsilon) || !(m.delta > 0 && m.delta < 1)) {
    return error(invalid_argument("a privacy budget needs a finite epsilon > 0 and 0 < delta < 1 (got epsilon " +
                                  num(m.epsilon) + ", delta " + num(m.delta) + ")"));
  }
  storage::CustodyStore& store = *recorder_.store();
  if (secured() && caller.role != Role::kAdmin) {
    auto owner = storage::dataset_owner(store, m.dataset);
    if (!owner.is_ok()) return error(owner.status());
    if (owner->empty()) {
      return error(Status(ErrorCode::kPermissionDenied,
                          "no job has declared " + m.dataset + " yet, so it has no owner: only an admin may set its "
                          "privacy budget"));
    }
    if (owner.value() != lineage::principal_id(caller.principal)) {
      return error(Status(ErrorCode::kPermissionDenied,
                          "only the owner of " + m.dataset + " (" + owner.value() + ", who first declared it) or an "
                          "admin may set its privacy budget, not " + caller.principal));
    }
  }
  auto ledger = storage::privacy_ledger(store, m.dataset);
  if (!ledger.is_ok()) return error(ledger.status());
  auto spent = check_budget(m.epsilon, m.delta, ledger->charges(), {});
  if (!spent.is_ok()) return error(spent.status());
  // A budget below what was spent would be a budget already broken; the spending cannot be
  // undone, so it is refused rather than recorded as a fiction.
  if (spent->spent_epsilon > m.epsilon) {
    return error(failed_precondition("the jobs on " + m.dataset + " have already spent epsilon " +
                                     num(spent->spent_epsilon) + " at delta " + num(m.delta) +
                                     ", more than the budget of " + num(m.epsilon) + " asked for"));
  }
  const std::string by = caller.principal.empty() ? "anonymous" : caller.principal;
  Status recorded = recorder_.privacy_budget_set(m.dataset, m.epsilon, m.delta, by, m.reason, spent->spent_epsilon);
  if (!recorded.is_ok()) return error(recorded);
  log(LogLevel::kInfo, kSelf, by + " set the privacy budget of " + m.dataset + " to epsilon " + num(m.epsilon) +
                                  " at delta " + num(m.delta) + " (spent so far: " + num(spent->spent_epsilon) + ")");
  auto listing = storage::privacy_spending(store, m.dataset);
  if (!listing.is_ok()) return error(listing.status());
  return {{peer, msg::reply_to(in, kSelf, msg::PrivacyBudgetReply{listing->dump()})}};
}

Status CoordinatorState::admit_privacy(const Job& job, const msg::SubmitJob& m, const Caller& caller,
                                       std::string* override_by) {
  override_by->clear();
  if (!recorder_.enabled()) return Status::ok();  // no record, no budgets
  storage::CustodyStore& store = *recorder_.store();
  const std::string dataset = lineage::dataset_id(job.plan.data.version_hash);
  CUSTODY_ASSIGN_OR_RETURN(storage::PrivacyLedger ledger, storage::privacy_ledger(store, dataset));
  if (!ledger.budget) return Status::ok();
  const storage::DatasetBudget& budget = *ledger.budget;
  const std::string submitter = m.submitter.empty() ? "anonymous" : m.submitter;
  const std::string name = job.plan.spec.name;
  auto refuse = [&](Status why, storage::json numbers) {
    Status recorded = recorder_.privacy_refused(dataset, submitter, name, why.message(), numbers);
    if (!recorded.is_ok()) log(LogLevel::kError, kSelf, "could not record a privacy refusal: " + recorded.message());
    log(LogLevel::kWarn, kSelf, "refused '" + name + "' from " + submitter + ": " + why.message());
    return why;
  };
  const std::string budget_text =
      "epsilon " + num(budget.epsilon) + " at delta " + num(budget.delta) + ", set by " + lineage::display_name(budget.set_by, lineage::prefix::kPrincipal);
  if (!job.plan.privacy) {
    if (m.budget_override.empty()) {
      return refuse(failed_precondition("data set " + dataset + " has a privacy budget (" + budget_text +
                                        ") and job '" + name + "' has no [privacy] section, so nothing would bound "
                                        "what its model reveals of the data; add a [privacy] section, or an admin "
                                        "may let it through with `custody submit --override-privacy-budget REASON`"),
                    {{"private", false}, {"budget_epsilon", budget.epsilon}, {"delta", budget.delta}});
    }
    if (secured() && caller.role != Role::kAdmin) {
      return refuse(Status(ErrorCode::kPermissionDenied,
                           "only an admin may override the privacy budget of " + dataset + " (" + budget_text +
                               "), not " + caller.principal + " (" + to_string(caller.role) + ")"),
                    {{"private", false}, {"override_asked", m.budget_override}});
    }
    *override_by = caller.principal.empty() ? submitter : caller.principal;
    log(LogLevel::kWarn, kSelf, *override_by + " overrode the privacy budget of " + dataset + " for '" + name +
                                    "', a job without a privacy guarantee: " + m.budget_override);
    return Status::ok();
  }
  if (!m.budget_override.empty()) {
    return invalid_argument("--override-privacy-budget is for a job without a [privacy] section; a private job "
                            "spends from the budget, which its owner may raise (`custody privacy budget set`)");
  }
  const PrivacyPlan& p = *job.plan.privacy;
  CUSTODY_ASSIGN_OR_RETURN(BudgetCheck check, check_budget(budget.epsilon, budget.delta, ledger.charges(),
                                                           {{p.q, p.sigma, p.steps}}));
  if (!check.fits()) {
    return refuse(failed_precondition("job '" + name + "' would exceed the privacy budget of data set " + dataset +
                                      ": " + check.describe() + "; lower the job's epsilon (or its epochs), or ask "
                                      "the data set's owner to raise the budget"),
                  {{"private", true},
                   {"budget_epsilon", check.budget_epsilon},
                   {"delta", check.delta},
                   {"spent_epsilon", check.spent_epsilon},
                   {"requested_epsilon", check.requested_epsilon},
                   {"total_epsilon", check.total_epsilon}});
  }
  log(LogLevel::kInfo, kSelf, "'" + name + "' spends from the privacy budget of " + dataset + ": " + check.describe());
  return Status::ok();
}

}  // namespace custody::actors
