#include "actors/access_policy.h"

#include <variant>

namespace custody::actors {
namespace {

struct Named {
  Role role;
  const char* name;
};
constexpr Named kRoles[] = {{Role::kSubmitter, "submitter"},
                            {Role::kConsumer, "consumer"},
                            {Role::kAuditor, "auditor"},
                            {Role::kAdmin, "admin"},
                            {Role::kNode, "node"}};

template <class... T>
bool is_one_of(const msg::Body& body) {
  return (std::holds_alternative<T>(body) || ...);
}

}  // namespace

const char* to_string(Role role) {
  for (const auto& r : kRoles)
    if (r.role == role) return r.name;
  return "?";
}

std::optional<Role> parse_role(std::string_view name) {
  for (const auto& r : kRoles)
    if (name == r.name) return r.role;
  return std::nullopt;
}

const char* role_names() { return "submitter, consumer, auditor, admin or node"; }

bool may_send(Role role, const msg::Body& body) {
  if (role == Role::kAdmin) return true;
  if (is_one_of<msg::Register, msg::Heartbeat, msg::KeyRangeReady, msg::Progress, msg::EpochEval, msg::TaskDone,
                msg::CheckpointShard, msg::JobReleased, msg::Error, msg::FetchRecords, msg::ShardObtained,
                msg::RecordScores>(body)) {
    return role == Role::kNode;
  }
  // Usage answers are filtered by role (sees_everyones_usage); heads are for anyone to keep.
  if (is_one_of<msg::StatusRequest, msg::UsageRequest, msg::AuditHeadRequest>(body)) return true;
  // Store queries are checked by name (may_query) once the caller is known.
  if (is_one_of<msg::StoreQuery>(body)) return role != Role::kNode;
  // A data set's budget: its owner, who declared it by submitting a job on it (the
  // coordinator checks ownership), or an admin.
  if (is_one_of<msg::SubmitJob, msg::CancelJob, msg::ResumeJob, msg::SetPrivacyBudget>(body)) {
    return role == Role::kSubmitter;
  }
  if (is_one_of<msg::Predict, msg::ExportRequest>(body)) return role == Role::kConsumer || role == Role::kSubmitter;
  // Revocations and taint overrides: who may do which depends on the data set's owner and
  // on the action (CoordinatorState::on_liability), and a refusal is recorded there, so every
  // user role gets that far; nodes never do.
  if (is_one_of<msg::LiabilityRequest>(body)) return role != Role::kNode;
  // Attribution: the caller who made a prediction (who holds its input), the submitter who
  // trained the model, and an auditor answering a complaint about it.
  if (is_one_of<msg::Attribute>(body)) {
    return role == Role::kConsumer || role == Role::kSubmitter || role == Role::kAuditor;
  }
  // Admins only: addPrincipal; storeBackup (a copy of every record and every sealed
  // tensor); and any request added later, until it is given a rule here.
  return false;
}

bool sees_everyones_usage(Role role) { return role == Role::kAuditor || role == Role::kAdmin; }

bool may_query(Role role, const std::string& query) {
  if (role == Role::kAuditor || role == Role::kAdmin) return true;
  if (role == Role::kConsumer) return query == "models" || query == "privacy";
  if (role == Role::kSubmitter) return query != "verify";
  return false;
}

}  // namespace custody::actors
