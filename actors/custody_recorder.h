// What the coordinator writes to the custody store, event by event: one atomic batch per
// event (see storage/custody_store.h for the record model and docs/ARCHITECTURE.md for
// the graph). A recorder without a store records nothing (a cluster run without
// --store), and says so in every answer that would need it.
// Thread-safety: none; owned by the coordinator's state machine.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/job_spec.h"
#include "protocols/messages.h"
#include "core/signing.h"
#include "core/privacy.h"
#include "storage/checkpoint.h"

namespace custody::actors {

struct DatasetInfo {
  std::string version_hash, train_hash, test_hash;
  int64_t train_count = 0, test_count = 0;
  // Split for this job, by rank: each shard's training records and each test range, what
  // they are file by file (core/records_digest.h). Workers check their copies against them.
  std::vector<RecordsDigest> train_digests = {}, test_digests = {};
  // Retraining (issue 15): training record indices no worker reads (sorted), and the
  // revocations they come from. The job's data set is then a version of its own,
  // lineage_dataset_hash(), whose identity includes this list.
  std::vector<uint64_t> excluded = {};
  std::vector<std::string> without = {};
  // A CSV data set: its columns, classes, standardization and dropped rows (lineage keeps
  // them on the data set and the run; every checkpoint's manifest keeps the preprocessing).
  TablePreprocessing table = {};
};
// The identity of the data set a job trains on: the bytes' SHA-256, or for a retraining
// SHA-256("<bytes' hash> without <i,j,...>") over the excluded indices.
std::string lineage_dataset_hash(const DatasetInfo& data);
// The indices of sorted `excluded` in [begin, end).
std::vector<uint64_t> excluded_in(const std::vector<uint64_t>& excluded, uint64_t begin, uint64_t end);

// A private job's guarantee at a checkpoint, as its entity record keeps it
// (docs/ARCHITECTURE.md "Differential privacy"): epsilon after `steps_accounted` steps
// (rolled-back ones included) and what it rests on.
Result<storage::json> privacy_record(const PrivacyPlan& plan, uint64_t steps_accounted, uint64_t steps_rolled_back);

// Charges a private run `steps` steps on its data set (storage/privacy_budget.h): one
// privacy_charged relation in `b`. `why`: "planned" at acceptance, else why the steps are
// computed again ("rolled back", "resumed", ...).
void charge_privacy(storage::Batch& b, const std::string& run, const std::string& dataset_hash,
                    const PrivacyPlan& plan, uint64_t steps, const std::string& why, uint32_t attempt);

// Per worker and rank, summed over the parameter servers of one checkpoint interval.
struct WorkerContribution {
  std::string worker;
  uint32_t rank = 0;
  msg::ShardId shard;
  uint64_t accepted = 0, rejected = 0, samples = 0, staleness_max = 0, staleness_sum = 0;
  double update_norm_sum = 0;
  uint64_t interval_begin = 0, interval_end = 0;  // steps
  // Sealed data plane: by server, the fingerprint of the key that authenticated the pushes
  // there; empty: in clear. And the messages claiming the rank without its key, refused.
  std::map<std::string, std::string> key_fingerprints;
  uint64_t unauthenticated = 0;
};

// A prediction call as serving answered it (actors/serving_state.h): what its usage record
// keeps.
struct ServedCall {
  std::string call_id, checkpoint, principal, purpose, input_sha256, root_hash;
  std::string model;  // "NAME@V", or "" when called by checkpoint id
  uint32_t rows = 0;
  std::vector<std::string> prediction_ids;
  storage::json predictions;  // per row: id, class, probability
  // Taint overrides that let a tainted version answer (storage/liability.h); usually none.
  std::vector<std::string> overrides = {};
  // The call's usage record, serialized ahead of the write (serialize_usage_record) by the
  // serving actor while the call's group fills; if absent, the writer builds it.
  std::optional<storage::SerializedUsage> usage = std::nullopt;
};

// Builds the call's usage record and serializes it into call.usage (moving its
// predictions there): done by the thread that evaluated the call, off the writer's path.
void serialize_usage_record(ServedCall& call);

// An answered `custody attribute` request (actors/attribution_actor.h): who asked, why,
// and storage::attribute's answer.
struct AttributionMade {
  std::string principal, purpose;
  storage::json answer;
};

class CustodyRecorder {
 public:
  // key: signs receipts of exports and the store's heads; null: none are made.
  // clock: the time of heads and receipts it signs.
  explicit CustodyRecorder(storage::CustodyStore* store, const SigningKey* key = nullptr,
                           const Clock& clock = Clock::system())
      : store_(store), key_(key), clock_(&clock) {}
  const Clock& clock() const { return *clock_; }
  const SigningKey* key() const { return key_; }
  bool enabled() const { return store_ != nullptr; }
  storage::CustodyStore* store() const { return store_; }

  Status node_registered(const std::string& node_id, const msg::Register& r, const std::string& principal = "");
  // The node stopped and said so (heartbeat{leaving}); `session`: the registration it ends.
  Status node_deregistered(const std::string& node_id, const std::string& session, const std::string& principal = "");
  // A private job (`privacy`) is charged its planned steps on its data set in the same
  // batch (storage/privacy_budget.h); `override_by`/`override_reason`: a job without a
  // guarantee on a data set with a budget, let through by that admin.
  Status job_submitted(const msg::JobStatus& job, const JobSpec& spec, const DatasetInfo& data,
                       const std::vector<int>& layer_sizes, const std::string& init_checkpoint,
                       const PrivacyPlan* privacy = nullptr, const std::string& override_by = "",
                       const std::string& override_reason = "");
  // A private run charged `steps` more on its data set, in a batch of its own.
  Status privacy_charged(const msg::JobStatus& job, const PrivacyPlan& plan, uint64_t steps, const std::string& why,
                         uint32_t attempt);
  // A data set's privacy budget set (or changed) by `by`; `spent_epsilon`: what had been
  // spent from it then, at the budget's delta.
  Status privacy_budget_set(const std::string& dataset_id, double epsilon, double delta, const std::string& by,
                            const std::string& reason, double spent_epsilon);
  // A submission refused because of the data set's budget: who, which job, why (with the
  // numbers: `numbers` holds them as fields).
  Status privacy_refused(const std::string& dataset_id, const std::string& principal, const std::string& job_name,
                         const std::string& reason, const storage::json& numbers);
  // With the data plane (sealed or in clear, from job.data_plane*) and, when sealed, by
  // rank the fingerprint of its key at each server (key_fingerprints[rank][server id]).
  Status job_started(const msg::JobStatus& job, const std::vector<msg::AssignTask>& tasks,
                     const std::vector<msg::ServerRange>& servers, uint64_t start_step, uint32_t attempt,
                     const std::vector<std::map<std::string, std::string>>& key_fingerprints = {});
  // A rollback: why, the attempt that ends and the one that follows, the step it had
  // reached by its workers' progress reports (which lag the servers by up to 500 ms) and the
  // checkpoint (or start) it goes back to. `servers_to_report`: the servers that were told
  // to stop; what they had applied follows in an attempt_discarded record. The next
  // job_started record names the nodes the ranks and key ranges went to.
  Status job_recovered(const msg::JobStatus& job, uint32_t from_attempt, const std::string& why,
                       uint64_t reached_step, uint64_t back_to_step, const std::string& checkpoint,
                       const std::vector<std::string>& servers_to_report = {}, const PrivacyPlan* privacy = nullptr,
                       const std::string& charge_why = "rolled back");
  // What a rolled-back attempt had applied, as its servers said when they let go of it
  // (jobReleased): per server the step its values covered and its updates, and the steps
  // discarded past `back_to_step` (the most any server applied). `unanswered`: servers that
  // were told to stop but did not answer (they died, or lost the job).
  Status attempt_discarded(const msg::JobStatus& job, uint32_t attempt, uint64_t back_to_step,
                           const std::map<std::string, msg::JobReleased>& applied,
                           const std::vector<std::string>& unanswered, const PrivacyPlan* privacy = nullptr,
                           uint64_t charged_to_step = 0);
  // How a worker came by rank m.rank's records in an attempt (data shipping), each file's
  // records having matched the digests of submission (`train`, `test`) on the worker.
  Status shard_obtained(const msg::JobStatus& job, uint32_t attempt, const std::string& node,
                        const msg::ShardObtained& m, const RecordsDigest& train, const RecordsDigest& test);
  // Returns the checkpoint id. `optimizer`: the optimizer state to keep with the values.
  Result<std::string> checkpoint(const msg::JobStatus& job, const Model& model,
                                 const std::vector<float>& values, const storage::CheckpointSpec& spec,
                                 const std::map<std::string, WorkerContribution>& contributions,
                                 const storage::OptimizerCheckpoint* optimizer = nullptr);
  // A dense-only model's checkpoint, by its layer sizes.
  Result<std::string> checkpoint(const msg::JobStatus& job, const std::vector<int>& layer_sizes,
                                 const std::vector<float>& values, const storage::CheckpointSpec& spec,
                                 const std::map<std::string, WorkerContribution>& contributions,
                                 const storage::OptimizerCheckpoint* optimizer = nullptr) {
    return checkpoint(job, Model(layer_sizes), values, spec, contributions, optimizer);
  }
  // One epoch's test evaluation, summed over the ranks: kept so that a restarted
  // coordinator still knows the accuracy of every epoch evaluated before it stopped.
  Status epoch_evaluated(const msg::JobStatus& job, uint32_t attempt, uint32_t epoch, double accuracy, double loss);
  // A completed job also becomes the next version of the model named after it.
  // `replaces`: a retraining's "NAME@V" (job.replaces), recorded as `replaces` from the new
  // version to that one.
  Status job_ended(const msg::JobStatus& job, const std::string& final_checkpoint, const std::string& replaces = "");
  // A private job (`privacy`) is charged the steps it had computed past the checkpoint
  // (up to `computed_step`), which it now computes again.
  Status job_resumed(const msg::JobStatus& job, const std::string& checkpoint, uint64_t step,
                     const std::string& principal, const PrivacyPlan* privacy = nullptr, uint64_t computed_step = 0,
                     uint32_t attempt = 0);
  // A credential of a principal: only the token's SHA-256 is kept (token mode), or the
  // principal's public key (curve mode; the credential is named by SHA-256 of "curve:" +
  // key). `kind`: "token" or "curve".
  Status principal_added(const std::string& name, const std::string& role, const std::string& credential_sha256,
                         const std::string& by, const std::string& kind = "token",
                         const std::string& public_key = "");
  // A credential withdrawn: from now on it proves nothing.
  Status credential_revoked(const std::string& credential_id, const std::string& principal, const std::string& by,
                            const std::string& reason);
  // The key that signs this store's heads, recorded once (its public half, so that an
  // auditor reading the store can see which key to expect; trusting it is another matter:
  // docs/ARCHITECTURE.md, "Trust model").
  Status signing_key_in_use(const std::string& key_file);
  // Every Merkle log's head, signed (`custody audit head`).
  Result<storage::json> signed_heads() const;
  // Records answered prediction calls in the usage log, before any of them is answered:
  // one synced write for all of them (the serving actor's group commit). With `receipts`
  // and a key, returns each call's receipt (storage/notary.h), in order; else "" each.
  Result<std::vector<std::string>> predictions_served(std::vector<ServedCall> calls, bool receipts);
  // As predictions_served, but the write is not yet synced: none of the calls may be
  // answered before `durable->wait()` returns ok (CustodyStore::write_deferred).
  struct PendingPredictions {
    std::vector<std::string> receipts;
    std::shared_ptr<storage::PendingWrite> durable;
  };
  Result<PendingPredictions> predictions_written(std::vector<ServedCall> calls, bool receipts);
  // Loads a checkpoint (id or model reference) and records its export as a use; the reply
  // carries the use's receipt.
  Result<msg::ExportReply> export_checkpoint(const msg::ExportRequest& request);
  // Records an attribution request and its answer (action "attribute", the answering
  // checkpoint as target) before it is answered; returns its usage id ("use-...") and,
  // with a key, its receipt (else "").
  Result<std::pair<std::string, std::string>> attribution_made(const AttributionMade& made);

 private:
  Status write(const storage::Batch& batch);
  // Each call's receipt for its inclusion proof (with `receipts` and a key), else "" each.
  Result<std::vector<std::string>> receipts_for(std::vector<storage::Inclusion> recorded, const std::vector<ServedCall>& calls,
                                        bool receipts) const;
  storage::CustodyStore* store_;
  const SigningKey* key_;
  const Clock* clock_;  // a pointer, so that a recorder (and its owner) can be assigned
};

}  // namespace custody::actors
