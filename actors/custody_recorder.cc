#include "actors/custody_recorder.h"

#include <algorithm>
#include <cmath>

#include "core/partition.h"

#include "core/hash.h"
#include "storage/liability.h"
#include "storage/lineage_vocabulary.h"
#include "storage/model_card.h"
#include "storage/notary.h"

namespace custody::actors {

using storage::json;

namespace {
namespace lineage = storage::lineage;
using lineage::node_entity_id;
using lineage::principal_id;
}  // namespace

Status CustodyRecorder::write(const storage::Batch& batch) {
  if (!store_) return Status::ok();
  Status s = store_->write(batch);
  if (!s.is_ok()) return Status(s.code(), "the custody store refused the record: " + s.message());
  return s;
}

Status CustodyRecorder::job_submitted(const msg::JobStatus& job, const JobSpec& spec, const DatasetInfo& data,
                                      const std::vector<int>& layer_sizes, const std::string& init_checkpoint,
                                      const PrivacyPlan* privacy, const std::string& override_by,
                                      const std::string& override_reason) {
  // The charge lands with the acceptance, in one batch: a job is never accepted uncharged,
  // nor charged without being accepted.
  storage::Batch b(privacy ? "job submitted, privacy charged" : "job submitted");
  const std::string principal = principal_id(job.submitter);
  // A retraining trains on a version of its own: the bytes minus the excluded records.
  const std::string bytes = lineage::dataset_id(data.version_hash);
  const std::string dataset = lineage::dataset_id(lineage_dataset_hash(data));
  const std::string canonical = spec.canonical_form();
  const std::string jobspec = lineage::jobspec_id(sha256_hex(canonical));
  b.entity(lineage::kind::kPrincipal, principal, {{"name", job.submitter}});
  json files = json::object();
  if (spec.data.kind == DataSpec::Kind::kIdx) {
    files = {{"train_images", spec.data.path(spec.data.train_images)},
             {"train_labels", spec.data.path(spec.data.train_labels)},
             {"test_images", spec.data.path(spec.data.test_images)},
             {"test_labels", spec.data.path(spec.data.test_labels)}};
  } else if (spec.data.kind == DataSpec::Kind::kCsv) {
    files = {{"train", spec.data.path(spec.data.csv_train)}};
    if (!spec.data.csv_test.empty()) files["test"] = spec.data.path(spec.data.csv_test);
  }
  // The data set entity holds what its bytes are (one record per content hash); what a
  // submitter declares about them (name, files, licence, consent) is part of this
  // submission, on its `consumed` relation: a later submitter's declaration for the same
  // bytes is recorded beside the first, never lost behind it.
  json dataset_record{{"name", spec.data.name},
                      {"sha256", data.version_hash},
                      {"train_sha256", data.train_hash},
                      {"test_sha256", data.test_hash},
                      {"train_samples", data.train_count},
                      {"test_samples", data.test_count},
                      {"source", spec.data.kind == DataSpec::Kind::kIdx   ? "idx"
                                 : spec.data.kind == DataSpec::Kind::kCsv ? "csv"
                                                                          : "synthetic"}};
  if (!data.table.empty()) {
    // What the version is made of: the files' bytes, and the rows left out of it.
    dataset_record["table"] = {{"files_sha256", data.table.files_sha256},
                               {"label", data.table.label},
                               {"features", data.table.feature_names},
                               {"classes", data.table.classes},
                               {"dropped_rows", data.table.dropped},
                               {"dropped_lines", data.table.dropped_lines},
                               {"missing", spec.data.csv_drop_missing ? "drop" : "refuse"},
                               {"standardize", storage::preprocessing_json(data.table)["standardize"]}};
  }
  b.entity(lineage::kind::kDataset, bytes, std::move(dataset_record));
  if (dataset != bytes) {
    // The bytes' entity above is the base; this version names it, the records it leaves
    // out and the revocations that withdrew them.
    b.entity(lineage::kind::kDataset, dataset,
             {{"name", spec.data.name},
              {"sha256", lineage_dataset_hash(data)},
              {"base", bytes},
              {"excluded", data.excluded},
              {"without", data.without},
              {"train_samples", data.train_count - static_cast<int64_t>(data.excluded.size())},
              {"test_samples", data.test_count},
              {"source", "retraining"}});
    b.relation(lineage::rel::kSubsetOf, dataset, bytes, {{"excluded", data.excluded.size()}});
  }
  b.entity(lineage::kind::kJobSpec, jobspec, {{"sha256", sha256_hex(canonical)}, {"canonical", canonical}, {"text", spec.text}});
  json run{{"name", job.name},
           {"submitter", job.submitter},
           {"submitted_at_ms", job.submitted_at_ms},
           {"layer_sizes", layer_sizes},
           {"activation", spec.activation},
           {"epochs", spec.epochs},
           {"workers", spec.workers},
           {"batch_size", spec.batch_size},
           {"consistency", to_string(spec.consistency)},
           {"optimizer", to_string(spec.optimizer.kind)},
           {"learning_rate", spec.optimizer.learning_rate}};
  // How its models' raw inputs become what they were trained on (CSV data only).
  if (!data.table.empty()) run["preprocessing"] = storage::preprocessing_json(data.table);
  b.entity(lineage::kind::kRun, job.job_id, std::move(run));
  b.relation(lineage::rel::kSubmittedBy, job.job_id, principal);
  // What each rank's shard is, as read at submission: the bytes a worker must hold to
  // train on it (it checks them before it trains).
  json shards = json::array();
  const auto ranges = partition_range(static_cast<uint64_t>(data.train_count), static_cast<uint32_t>(spec.workers));
  for (size_t r = 0; r < data.train_digests.size() && ranges.is_ok() && r < ranges->size(); ++r) {
    json shard{{"index", r},
               {"begin", ranges.value()[r].begin},
               {"end", ranges.value()[r].end},
               {"images_sha256", data.train_digests[r].images_sha256},
               {"labels_sha256", data.train_digests[r].labels_sha256}};
    if (!data.excluded.empty()) shard["excluded"] = excluded_in(data.excluded, ranges.value()[r].begin, ranges.value()[r].end);
    shards.push_back(std::move(shard));
  }
  json consumed{{"train_samples", data.train_count},
                {"shards", shards},
                {"name", spec.data.name},
                {"files", files},
                {"license", spec.data.license},
                {"consent", spec.data.consent},
                {"declared_by", principal}};
  // The machine-readable terms, only as declared: an absent clause restricts nothing
  // (storage/liability.h reads them).
  if (!spec.data.spdx.empty()) consumed["spdx"] = spec.data.spdx;
  if (!spec.data.purposes.empty()) consumed["purposes"] = spec.data.purposes;
  if (!spec.data.consent_purposes.empty()) consumed["consent_purposes"] = spec.data.consent_purposes;
  b.relation(lineage::rel::kConsumed, job.job_id, dataset, std::move(consumed));
  b.relation(lineage::rel::kSpecifiedBy, job.job_id, jobspec);
  if (!init_checkpoint.empty()) b.relation(lineage::rel::kInitializedFrom, job.job_id, init_checkpoint);
  if (privacy) charge_privacy(b, job.job_id, data.version_hash, *privacy, static_cast<uint64_t>(privacy->steps), "planned", 0);
  if (!override_by.empty()) {
    b.relation(lineage::rel::kPrivacyOverride, job.job_id, bytes,
               {{"by", principal_id(override_by)}, {"reason", override_reason}});
  }
  return write(b);
}

Status CustodyRecorder::job_started(const msg::JobStatus& job, const std::vector<msg::AssignTask>& tasks,
                                    const std::vector<msg::ServerRange>& servers, uint64_t start_step,
                                    uint32_t attempt,
                                    const std::vector<std::map<std::string, std::string>>& key_fingerprints) {
  storage::Batch b("job started");
  b.event({{"event", lineage::event::kRunStarted}, {"run", job.job_id}, {"start_step", start_step}, {"attempt", attempt},
           {"workers", job.workers}, {"servers", job.servers},
           {"data_plane", {{"sealed", job.data_plane_sealed}, {"how", job.data_plane}}}});
  for (size_t i = 0; i < tasks.size(); ++i) {
    const auto& t = tasks[i];
    json assigned = {{"role", "worker"},
                     {"rank", t.rank},
                     {"attempt", attempt},
                     {"start_step", start_step},
                     {"shard", {{"dataset", lineage::dataset_id(t.shard.dataset_hash)}, {"index", t.shard.index},
                                {"of", t.shard.num_shards}, {"begin", t.shard.begin}, {"end", t.shard.end}}},
                     {"test_range", {t.test_begin, t.test_end}}};
    // Retraining: the records of the shard this rank was told not to read.
    if (!t.excluded.empty()) assigned["shard"]["excluded"] = t.excluded;
    if (!t.train_digest.empty()) {
      assigned["shard"]["images_sha256"] = t.train_digest.images_sha256;
      assigned["shard"]["labels_sha256"] = t.train_digest.labels_sha256;
    }
    // Fingerprints only: the keys themselves never reach the store.
    if (i < key_fingerprints.size()) assigned["key_fingerprints"] = key_fingerprints[i];
    b.relation(lineage::rel::kAssigned, job.job_id, node_entity_id(job.workers[i]), std::move(assigned));
  }
  for (const auto& s : servers) {
    b.relation(lineage::rel::kAssigned, job.job_id, node_entity_id(s.node_id),
               {{"role", "parameter-server"}, {"key_range", {s.range_begin, s.range_end}}, {"attempt", attempt},
                {"start_step", start_step}});
  }
  return write(b);
}

Status CustodyRecorder::job_recovered(const msg::JobStatus& job, uint32_t from_attempt, const std::string& why,
                                      uint64_t reached_step, uint64_t back_to_step, const std::string& checkpoint,
                                      const std::vector<std::string>& servers_to_report, const PrivacyPlan* privacy,
                                      const std::string& charge_why) {
  storage::Batch b("job recovered");
  // The steps past back_to_step were computed and the servers saw their sums: computed
  // again, they are spent twice.
  if (privacy && reached_step > back_to_step) {
    charge_privacy(b, job.job_id, job.dataset_hash, *privacy, reached_step - back_to_step, charge_why, from_attempt);
  }
  json event{{"event", lineage::event::kRunRecovered},
             {"run", job.job_id},
             {"reason", why},
             {"attempt", from_attempt},
             {"next_attempt", from_attempt + 1},
             {"reached_step", reached_step},
             {"rolled_back_to_step", back_to_step},
             {"from_checkpoint", checkpoint},
             // Updates of the ended attempt after back_to_step are discarded, not applied. As
             // the workers reported them: a lower bound; attempt_discarded has the servers' count.
             {"discarded_steps", reached_step > back_to_step ? reached_step - back_to_step : 0}};
  if (!servers_to_report.empty()) event["servers_to_report"] = servers_to_report;
  b.event(std::move(event));
  if (!checkpoint.empty()) b.relation(lineage::rel::kRecoveredFrom, job.job_id, checkpoint, {{"attempt", from_attempt + 1}});
  return write(b);
}

Status CustodyRecorder::attempt_discarded(const msg::JobStatus& job, uint32_t attempt, uint64_t back_to_step,
                                          const std::map<std::string, msg::JobReleased>& applied,
                                          const std::vector<std::string>& unanswered, const PrivacyPlan* privacy,
                                          uint64_t charged_to_step) {
  storage::Batch b("attempt discarded");
  json steps = json::object(), updates = json::object();
  uint64_t most = back_to_step;
  for (const auto& [server, r] : applied) {
    steps[server] = r.applied_step;
    updates[server] = r.updates;
    most = std::max(most, r.applied_step);
  }
  // The servers' count is the true one; the rollback charged up to the workers' reports.
  if (privacy && most > std::max(charged_to_step, back_to_step)) {
    charge_privacy(b, job.job_id, job.dataset_hash, *privacy, most - std::max(charged_to_step, back_to_step),
                   "rolled back (the servers' count beyond the workers' reports)", attempt);
  }
  b.event({{"event", lineage::event::kAttemptDiscarded},
           {"run", job.job_id},
           {"attempt", attempt},
           {"rolled_back_to_step", back_to_step},
           {"applied_steps_by_server", steps},
           {"updates_by_server", updates},
           {"discarded_steps", most - back_to_step},
           {"unanswered", unanswered}});
  return write(b);
}

Status CustodyRecorder::shard_obtained(const msg::JobStatus& job, uint32_t attempt, const std::string& node,
                                       const msg::ShardObtained& m, const RecordsDigest& train,
                                       const RecordsDigest& test) {
  storage::Batch b("shard obtained");
  b.event({{"event", lineage::event::kShardObtained},
           {"run", job.job_id},
           {"attempt", attempt},
           {"node", lineage::node_entity_id(node)},
           {"rank", m.rank},
           {"how", msg::to_string(m.how)},
           {"source", m.source},
           {"bytes_fetched", m.bytes_fetched},
           {"elapsed_ms", m.elapsed_ms},
           {"verified",
            {{"train_images_sha256", train.images_sha256},
             {"train_labels_sha256", train.labels_sha256},
             {"test_images_sha256", test.images_sha256},
             {"test_labels_sha256", test.labels_sha256}}}});
  return write(b);
}

Result<json> privacy_record(const PrivacyPlan& p, uint64_t steps_accounted, uint64_t steps_rolled_back) {
  auto spent = privacy_spent(p, static_cast<int64_t>(steps_accounted));
  if (!spent.is_ok()) return Status(spent.status().code(), "privacy accounting failed: " + spent.status().message());
  return json{{"epsilon", spent->epsilon},
              {"delta", p.delta},
              {"rdp_order", spent->order},
              {"noise_multiplier", p.sigma},
              {"clip_norm", p.clip_norm},
              {"sampling_rate", p.q},
              {"expected_batch", p.expected_batch},
              {"training_examples", p.train_examples},  // N, the q = B / N divides by
              {"sampling", to_string(p.sampling)},
              {"steps_accounted", steps_accounted},
              {"steps_rolled_back", steps_rolled_back},
              {"planned_epsilon", p.planned_epsilon},
              {"target_epsilon", p.target_epsilon},
              {"accountant", "RDP of the Poisson-subsampled Gaussian (Mironov, Talwar, Zhang 2019); "
                             "conversion of Canonne, Kamath, Steinke 2020"},
              {"adjacency", "example-level add/remove"}};
}

Result<std::string> CustodyRecorder::checkpoint(const msg::JobStatus& job, const Model& model,
                                                const std::vector<float>& values, const storage::CheckpointSpec& spec,
                                                const std::map<std::string, WorkerContribution>& contributions,
                                                const storage::OptimizerCheckpoint* optimizer) {
  storage::Batch b(spec.final ? "final checkpoint" : "checkpoint");
  // Sealed under the store's keys (storage/checkpoint.h) when it has them.
  CUSTODY_ASSIGN_OR_RETURN(const std::string id, storage::add_checkpoint(b, model, values, spec, optimizer,
                                                                          store_ ? store_->keys() : nullptr));
  for (const auto& [key, c] : contributions) {
    json counts = {{"run", job.job_id},
                   {"rank", c.rank},
                   {"interval", {c.interval_begin, c.interval_end}},
                   {"steps", c.accepted},
                   {"samples", c.samples},
                   {"accepted", c.accepted},
                   {"rejected", c.rejected},
                   {"update_norm_sum", c.update_norm_sum},
                   {"staleness_max", c.staleness_max},
                   {"staleness_sum", c.staleness_sum},
                   // Sealed: the pushes were authenticated as the node's by the keys named.
                   {"sealed", !c.key_fingerprints.empty()}};
    if (!c.key_fingerprints.empty()) counts["key_fingerprints"] = c.key_fingerprints;
    if (c.unauthenticated > 0) counts["unauthenticated"] = c.unauthenticated;
    // A sender that held no rank (its pushes were all refused) trained on no shard.
    if (!c.shard.dataset_hash.empty()) {
      counts["shard"] = {{"dataset", lineage::dataset_id(c.shard.dataset_hash)}, {"index", c.shard.index},
                         {"begin", c.shard.begin}, {"end", c.shard.end}};
    }
    b.relation(lineage::rel::kContributed, node_entity_id(c.worker), id, std::move(counts));
  }
  Status s = write(b);
  if (!s.is_ok()) return s;
  return id;
}

Status CustodyRecorder::epoch_evaluated(const msg::JobStatus& job, uint32_t attempt, uint32_t epoch,
                                        double accuracy, double loss) {
  storage::Batch b("epoch evaluated");
  json event = {{"event", lineage::event::kEpochEvaluated},
                {"run", job.job_id},
                {"attempt", attempt},
                {"epoch", epoch},
                {"test_accuracy", accuracy}};
  // A diverged model's loss can be infinite or NaN, which JSON cannot hold (the record
  // schema refuses it): the record then says only the accuracy.
  if (std::isfinite(loss)) event["test_loss"] = loss;
  b.event(std::move(event));
  return write(b);
}

Status CustodyRecorder::job_ended(const msg::JobStatus& job, const std::string& final_checkpoint,
                                  const std::string& replaces) {
  storage::Batch b("job ended");
  b.event({{"event", lineage::event::kRunEnded},
           {"run", job.job_id},
           {"state", msg::to_string(job.state)},
           {"message", job.message},
           {"test_accuracy", job.test_accuracy},
           {"accuracy_history", job.accuracy_history},
           {"steps", job.step},
           {"final_checkpoint", final_checkpoint}});
  if (job.state == msg::JobState::kCompleted && !final_checkpoint.empty() && store_) {
    CUSTODY_ASSIGN_OR_RETURN(auto version, storage::next_model_version(*store_, job.name));
    const std::string model = lineage::model_id(job.name, version);
    b.entity(lineage::kind::kModelVersion, model,
             {{"name", job.name}, {"version", version}, {"checkpoint", final_checkpoint},
              {"run", job.job_id}, {"test_accuracy", job.test_accuracy}});
    b.relation(lineage::rel::kVersionOf, model, final_checkpoint);
    // A retraining: the version it replaces (`custody retrain`), when that version exists.
    if (!replaces.empty()) {
      CUSTODY_ASSIGN_OR_RETURN(auto old, store_->entity(lineage::model_id(replaces)));
      if (old) b.relation(lineage::rel::kReplaces, model, lineage::model_id(replaces));
    }
  }
  return write(b);
}

Status CustodyRecorder::job_resumed(const msg::JobStatus& job, const std::string& checkpoint, uint64_t step,
                                    const std::string& principal, const PrivacyPlan* privacy, uint64_t computed_step,
                                    uint32_t attempt) {
  storage::Batch b("job resumed");
  if (privacy && computed_step > step) {
    charge_privacy(b, job.job_id, job.dataset_hash, *privacy, computed_step - step, "resumed", attempt);
  }
  b.event({{"event", lineage::event::kRunResumed}, {"run", job.job_id}, {"from_checkpoint", checkpoint}, {"step", step},
           {"by", principal_id(principal)}});
  b.relation(lineage::rel::kResumedFrom, job.job_id, checkpoint, {{"step", step}});
  return write(b);
}

Status CustodyRecorder::principal_added(const std::string& name, const std::string& role,
                                       const std::string& credential_sha256, const std::string& by,
                                       const std::string& kind, const std::string& public_key) {
  if (!store_) return failed_precondition("principals are kept in the custody store: start with --store");
  storage::Batch b("principal added");
  const std::string credential = lineage::credential_id(credential_sha256);
  b.entity(lineage::kind::kPrincipal, principal_id(name), {{"name", name}});
  storage::json attributes = {{"principal", name}, {"role", role}, {"created_by", by}, {"credential_kind", kind}};
  if (!public_key.empty()) attributes["public_key"] = public_key;
  b.entity(lineage::kind::kCredential, credential, std::move(attributes));
  b.relation(lineage::rel::kCredentialOf, credential, principal_id(name), {{"role", role}});
  return write(b);
}

Status CustodyRecorder::credential_revoked(const std::string& credential_id, const std::string& principal,
                                          const std::string& by, const std::string& reason) {
  if (!store_) return failed_precondition("principals are kept in the custody store: start with --store");
  storage::Batch b("credential revoked");
  b.event({{"event", lineage::event::kCredentialRevoked}, {"credential", credential_id},
           {"principal", principal_id(principal)}, {"by", principal_id(by)}, {"reason", reason}});
  return write(b);
}

Status CustodyRecorder::signing_key_in_use(const std::string& key_file) {
  if (!store_ || !key_) return Status::ok();
  storage::Batch b("signing key");
  b.entity(lineage::kind::kSigningKey, lineage::signing_key_id(key_->key_id()),
           {{"public_key", key_->public_key_hex()}, {"public_key_pem", key_->public_key_pem()}, {"file", key_file}});
  return write(b);
}

Result<storage::json> CustodyRecorder::signed_heads() const {
  if (!store_ || !key_) {
    return failed_precondition("this coordinator keeps no custody store (--store), so it has no heads to sign");
  }
  return storage::signed_heads(*store_, *key_, clock_->wall_ms());
}

Result<msg::ExportReply> CustodyRecorder::export_checkpoint(const msg::ExportRequest& request) {
  if (!store_) {
    return failed_precondition("this coordinator runs without a custody store (--store), so it holds no "
                               "checkpoints to export");
  }
  CUSTODY_ASSIGN_OR_RETURN(auto id, storage::resolve_checkpoint(*store_, request.checkpoint));
  // The same rule as serving (storage/liability.h): no export of a tainted version without
  // an admin's exception for this purpose, none for a purpose its data does not allow.
  std::string label;
  const bool by_checkpoint = lineage::has_prefix(request.checkpoint, lineage::prefix::kCheckpoint);
  const bool named_by_newest = !by_checkpoint && request.checkpoint.find('@') == std::string::npos;
  if (named_by_newest) {
    CUSTODY_ASSIGN_OR_RETURN(int newest, store_->newest_model_version(request.checkpoint));
    label = lineage::model_label(request.checkpoint, newest);
  } else if (!by_checkpoint) {
    label = request.checkpoint;
  }
  std::vector<std::string> overrides;
  if (Status allowed = storage::liability::check_use(*store_, id, label, request.purpose, named_by_newest, &overrides);
      !allowed.is_ok()) {
    Status recorded = storage::liability::record_use_refused(
        *store_, {{"action", lineage::action::kExport}, {"principal", principal_id(request.principal)},
                  {"target", id}, {"model", label}, {"reference", request.checkpoint},
                  {"purpose", request.purpose}, {"why", allowed.message()}});
    if (!recorded.is_ok()) {
      return Status(allowed.code(), allowed.message() + " (the refusal could not be recorded: " + recorded.message() + ")");
    }
    return allowed;
  }
  storage::json manifest;
  CUSTODY_ASSIGN_OR_RETURN(auto values, storage::load_checkpoint(*store_, id, &manifest));
  // Before the record: an export that cannot describe its model is not recorded as made.
  CUSTODY_ASSIGN_OR_RETURN(storage::json card, storage::model_card(*store_, request.checkpoint));
  CUSTODY_ASSIGN_OR_RETURN(const std::string random, random_token(8));  // 16 hex digits
  const std::string usage_id = lineage::use_id(random);
  storage::Batch b("export");
  b.usage({{"usage_id", usage_id},
           {"target", id},
           {"reference", request.checkpoint},
           {"action", lineage::action::kExport},
           {"principal", principal_id(request.principal)},
           {"purpose", request.purpose},
           {"root_hash", manifest["root_hash"]},
           {"time_ms", clock_->wall_ms()},
           {"taint_overrides", overrides}});
  std::vector<storage::Inclusion> recorded;
  Status s = store_->write(b, &recorded);
  if (!s.is_ok()) return Status(s.code(), "the custody store refused the record: " + s.message());
  msg::ExportReply reply;
  if (key_) {
    CUSTODY_ASSIGN_OR_RETURN(const json receipt,
                             storage::make_receipt(std::move(recorded.front()), *key_, clock_->wall_ms(), usage_id));
    reply.receipt = receipt.dump();
  }
  reply.checkpoint = id;
  reply.root_hash = manifest["root_hash"];
  for (int s : manifest["layer_sizes"]) reply.layer_sizes.push_back(static_cast<uint32_t>(s));
  reply.architecture = manifest.value("architecture", std::string());
  reply.values = std::move(values);
  reply.usage_id = usage_id;
  card["export"] = {{"usage_id", usage_id}, {"principal", request.principal}, {"purpose", request.purpose},
                    {"time_ms", clock_->wall_ms()}};
  reply.model_card = card.dump();
  return reply;
}

}  // namespace custody::actors
