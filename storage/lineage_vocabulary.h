// The custody record's vocabulary, written once: the names of the logs, record types,
// entity kinds, relations, lineage events and usage actions, and every id's prefix, with
// the functions that build ids and take them apart. Shared by the writer
// (actors/custody_recorder.cc, storage/checkpoint.cc), the replay that rebuilds the
// coordinator after a restart (actors/custody_replay.cc), the schema check
// (storage/record_schema.cc) and the queries, so that they cannot spell the schema
// differently (as LevelDB's db/log_format.h is shared by log reader and writer, and
// db/filename.h builds every file name in one place).
//
// The names are stored in records: changing one is a change of the store's format, and a
// store written before the change still holds the old spelling.
//
// Ids (the lineage graph's nodes; storage/custody_store.h has the record model):
//   run          job-<8 hex>              (the coordinator's job id)
//   dataset      dataset:<SHA-256 of the data set's bytes>
//   jobspec      jobspec:<SHA-256 of the canonical job spec>
//   principal    principal:<name>
//   credential   credential:<SHA-256 of the token, or of "curve:" + the CurveZMQ public key>
//   node         node:<node id>           (worker-N, ps-N)
//   checkpoint   ckpt-<16 hex>            (storage/checkpoint.h says of what)
//   model        model:<name>@<version>
//   signing key  signing_key:<key id>
//   revocation   revocation:<16 hex>      (a data set, or some of its records, withdrawn)
//   override     override:<16 hex>        (an admin's permission to use one tainted version)
// and in the usage log: a prediction call call-<16 hex>, each row's prediction
// pred-<16 hex>-<row>, an export use-<16 hex>.
// Thread-safety: constants and pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace custody::storage::lineage {

// The append-only logs (storage/custody_store.h).
inline constexpr char kLineageLog[] = "lineage";
inline constexpr char kUsageLog[] = "usage";
inline constexpr char kAuditLog[] = "audit";

// A record body's "type".
inline constexpr char kEntity[] = "entity";
inline constexpr char kRelation[] = "relation";
inline constexpr char kEvent[] = "event";
inline constexpr char kUsage[] = "usage";

// Entity kinds ("kind").
namespace kind {
inline constexpr char kRun[] = "run";
inline constexpr char kDataset[] = "dataset";
inline constexpr char kJobSpec[] = "jobspec";
inline constexpr char kPrincipal[] = "principal";
inline constexpr char kCredential[] = "credential";
inline constexpr char kNode[] = "node";
inline constexpr char kCheckpoint[] = "checkpoint";
inline constexpr char kModelVersion[] = "model_version";
inline constexpr char kSigningKey[] = "signing_key";
// Liability (storage/liability.h): a withdrawal of data, and an admin's exception to the
// taint it derives for one model version and one purpose.
inline constexpr char kRevocation[] = "revocation";
inline constexpr char kTaintOverride[] = "taint_override";
}  // namespace kind

// Relations ("rel"), from -> to.
namespace rel {
inline constexpr char kSubmittedBy[] = "submitted_by";        // run -> principal
inline constexpr char kConsumed[] = "consumed";               // run -> dataset, with the declaration
inline constexpr char kSpecifiedBy[] = "specified_by";        // run -> jobspec
inline constexpr char kInitializedFrom[] = "initialized_from";  // run -> checkpoint (fine-tuning)
inline constexpr char kAssigned[] = "assigned";               // run -> node, per attempt
inline constexpr char kProduced[] = "produced";               // run -> checkpoint
inline constexpr char kDerivedFrom[] = "derived_from";        // checkpoint -> checkpoint
inline constexpr char kContributed[] = "contributed";         // node -> checkpoint, with counts
inline constexpr char kVersionOf[] = "version_of";            // model -> checkpoint
inline constexpr char kRecoveredFrom[] = "recovered_from";    // run -> checkpoint
inline constexpr char kResumedFrom[] = "resumed_from";        // run -> checkpoint
inline constexpr char kCredentialOf[] = "credential_of";      // credential -> principal
// Privacy budgets (storage/privacy_budget.h).
inline constexpr char kPrivacyBudget[] = "privacy_budget";    // principal -> dataset: a budget set
inline constexpr char kPrivacyCharged[] = "privacy_charged";  // run -> dataset: steps spent from it
inline constexpr char kPrivacyOverride[] = "privacy_budget_overridden";  // run -> dataset, by an admin
inline constexpr char kPrivacyRefused[] = "privacy_refused";  // principal -> dataset: a job refused
inline constexpr char kRevokes[] = "revokes";                 // revocation -> dataset
inline constexpr char kRevokedBy[] = "revoked_by";            // revocation -> principal
inline constexpr char kAllows[] = "allows";                   // taint_override -> checkpoint
inline constexpr char kOverrides[] = "overrides";             // taint_override -> revocation
inline constexpr char kSubsetOf[] = "subset_of";              // dataset (a retraining's) -> dataset
inline constexpr char kReplaces[] = "replaces";               // model (retrained) -> model (tainted)
}  // namespace rel

// Lineage events ("event").
namespace event {
inline constexpr char kNodeRegistered[] = "node_registered";
// A node stopped by its operator told the coordinator it was leaving (heartbeat{leaving}).
inline constexpr char kNodeDeregistered[] = "node_deregistered";
inline constexpr char kRunStarted[] = "run_started";
inline constexpr char kRunRecovered[] = "run_recovered";
inline constexpr char kAttemptDiscarded[] = "attempt_discarded";
// How a worker came by a rank's records, each checked against the digests of submission
// (data shipping): "local", "cache" or "fetched" (msg::ShardSource).
inline constexpr char kShardObtained[] = "shard_obtained";
inline constexpr char kEpochEvaluated[] = "epoch_evaluated";
inline constexpr char kRunEnded[] = "run_ended";
inline constexpr char kRunResumed[] = "run_resumed";
inline constexpr char kCredentialRevoked[] = "credential_revoked";
// Not of a run: a checkpoint's tensors sealed again under a new store key, and the end of
// that rekey (storage/store_rekey.h).
inline constexpr char kCheckpointResealed[] = "checkpoint_resealed";
inline constexpr char kStoreRekeyed[] = "store_rekeyed";
// Not of a run: a request refused for liability reasons, kept so that a dispute can see
// who tried what: a revocation by someone who may not revoke that data set, and a use
// (prediction, export) of a tainted model version or for a purpose its data does not allow.
inline constexpr char kRevocationRefused[] = "revocation_refused";
inline constexpr char kUseRefused[] = "use_refused";
}  // namespace event

// Usage actions ("action").
namespace action {
inline constexpr char kPredict[] = "predict";
inline constexpr char kExport[] = "export";
inline constexpr char kAttribute[] = "attribute";  // custody attribute: TracIn over a run's records
}  // namespace action

// Id prefixes.
namespace prefix {
inline constexpr char kRun[] = "job-";
inline constexpr char kDataset[] = "dataset:";
inline constexpr char kJobSpec[] = "jobspec:";
inline constexpr char kPrincipal[] = "principal:";
inline constexpr char kCredential[] = "credential:";
inline constexpr char kNode[] = "node:";
inline constexpr char kCheckpoint[] = "ckpt-";
inline constexpr char kModel[] = "model:";
inline constexpr char kSigningKey[] = "signing_key:";
inline constexpr char kCall[] = "call-";
inline constexpr char kPrediction[] = "pred-";
inline constexpr char kUse[] = "use-";
inline constexpr char kRevocation[] = "revocation:";
inline constexpr char kTaintOverride[] = "override:";
}  // namespace prefix

// Id builders.
inline std::string dataset_id(std::string_view sha256) { return prefix::kDataset + std::string(sha256); }
inline std::string jobspec_id(std::string_view sha256) { return prefix::kJobSpec + std::string(sha256); }
inline std::string principal_id(std::string_view name) { return prefix::kPrincipal + std::string(name); }
inline std::string credential_id(std::string_view token_sha256) {
  return prefix::kCredential + std::string(token_sha256);
}
inline std::string node_entity_id(std::string_view node_id) { return prefix::kNode + std::string(node_id); }
inline std::string signing_key_id(std::string_view key_id) { return prefix::kSigningKey + std::string(key_id); }
// "model:NAME@V"; `label` is "NAME@V".
inline std::string model_id(std::string_view label) { return prefix::kModel + std::string(label); }
inline std::string model_label(std::string_view name, int version) {
  return std::string(name) + "@" + std::to_string(version);
}
inline std::string model_id(std::string_view name, int version) { return model_id(model_label(name, version)); }
// Usage ids from 16 random hex digits (one call's, and row `row`'s of that call).
inline std::string call_id(std::string_view hex16) { return prefix::kCall + std::string(hex16); }
inline std::string prediction_id(std::string_view hex16, uint32_t row) {
  return prefix::kPrediction + std::string(hex16) + "-" + std::to_string(row);
}
inline std::string use_id(std::string_view hex16) { return prefix::kUse + std::string(hex16); }
inline std::string revocation_id(std::string_view hex16) { return prefix::kRevocation + std::string(hex16); }
inline std::string override_id(std::string_view hex16) { return prefix::kTaintOverride + std::string(hex16); }

// Parsers.
inline bool has_prefix(std::string_view id, std::string_view p) { return id.substr(0, p.size()) == p; }
// What follows the prefix ("principal:alice" -> "alice"), or nullopt without it.
inline std::optional<std::string> without_prefix(std::string_view id, std::string_view p) {
  if (!has_prefix(id, p)) return std::nullopt;
  return std::string(id.substr(p.size()));
}
// What follows the prefix, or the id as it is: for display of ids that may predate it.
inline std::string display_name(std::string_view id, std::string_view p) {
  return without_prefix(id, p).value_or(std::string(id));
}

// The kinds of id a user may hand to `lineage show/trace`.
enum class IdKind {
  kOther, kRun, kCheckpoint, kModel, kDataset, kPrincipal, kNode, kCall, kPrediction, kUse, kRevocation
};
inline IdKind kind_of(std::string_view id) {
  if (has_prefix(id, prefix::kCheckpoint)) return IdKind::kCheckpoint;
  if (has_prefix(id, prefix::kModel)) return IdKind::kModel;
  if (has_prefix(id, prefix::kPrediction)) return IdKind::kPrediction;
  if (has_prefix(id, prefix::kCall)) return IdKind::kCall;
  if (has_prefix(id, prefix::kUse)) return IdKind::kUse;
  if (has_prefix(id, prefix::kRun)) return IdKind::kRun;
  if (has_prefix(id, prefix::kDataset)) return IdKind::kDataset;
  if (has_prefix(id, prefix::kPrincipal)) return IdKind::kPrincipal;
  if (has_prefix(id, prefix::kNode)) return IdKind::kNode;
  if (has_prefix(id, prefix::kRevocation)) return IdKind::kRevocation;
  return IdKind::kOther;
}
// An id found in the usage log rather than as an entity (a call, a prediction, a use).
inline bool is_usage_id(std::string_view id) {
  const IdKind k = kind_of(id);
  return k == IdKind::kCall || k == IdKind::kPrediction || k == IdKind::kUse;
}

}  // namespace custody::storage::lineage
