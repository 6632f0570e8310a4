// CoordinatorState: admission. A job file becomes a job (prepare), is accepted, cancelled or
// resumed, and the jobs of a coordinator that restarted come back from the custody record.
#include "actors/coordinator_state.h"

#include "core/partition.h"
#include <algorithm>
#include <cstdio>
#include <sstream>

#include "actors/custody_replay.h"
#include "core/dataset.h"
#include "core/log.h"
#include "core/model.h"
#include "storage/checkpoint.h"
#include "storage/lineage_vocabulary.h"
#include "storage/privacy_budget.h"

namespace custody::actors {
namespace {

// ", private: ..." for the coordinator's log of an accepted private job; "" otherwise.
std::string privacy_summary(const JobPlan& plan) {
  if (!plan.privacy) return "";
  const PrivacyPlan& p = *plan.privacy;
  std::ostringstream o;
  o.precision(4);
  o << ", private (DP-SGD): sigma=" << p.sigma << (p.calibrated ? " (calibrated)" : "") << ", C=" << p.clip_norm
    << ", q=" << p.q << ", epsilon=" << p.planned_epsilon << " at delta=" << p.delta << " after " << p.steps
    << " steps, " << to_string(p.sampling) << " sampling";
  return o.str();
}

}  // namespace

using msg::Envelope;
using msg::JobState;
namespace lineage = storage::lineage;

namespace {
// Gives a job its plan, and its status what the status derives from the plan. Submission,
// restore and the resumption of a restored job all go through here, so the status cannot
// keep a stale or empty data set version or step count (it once did, on resume).
void adopt_plan(Job& job, JobPlan plan) {
  job.plan = std::move(plan);
  job.status.total_steps = job.plan.total_steps();
  job.status.dataset_hash = job.plan.data.version_hash;
}
}  // namespace

Status CoordinatorState::restore(SteadyClock::time_point now) {
  now_ = now;
  if (!recorder_.enabled()) return Status::ok();
  storage::CustodyStore& store = *recorder_.store();
  CUSTODY_ASSIGN_OR_RETURN(Replayed replayed, replay(store));
  for (const auto& w : replayed.warnings) log(LogLevel::kWarn, kSelf, w);
  for (const auto& r : replayed.nodes) {
    Node n;
    n.id = r.id;
    n.role = r.role;
    n.host = r.host;
    n.address = r.address;
    n.principal = r.principal;  // its id stays that principal's across restarts
    n.alive = false;  // until it registers again
    n.left = r.left;
    // Last heard of when its newest registration or deregistration was recorded (heartbeats
    // are not recorded, so a node that went silent shows when it registered).
    const int64_t ago_ms = r.last_event_ms > 0 ? std::max<int64_t>(0, wall_ms() - r.last_event_ms) : 0;
    n.last_seen = now - std::chrono::milliseconds(ago_ms);
    int number = 0;
    if (std::sscanf(n.id.c_str(), "worker-%d", &number) == 1) next_worker_ = std::max(next_worker_, number + 1);
    if (std::sscanf(n.id.c_str(), "ps-%d", &number) == 1) next_ps_ = std::max(next_ps_, number + 1);
    nodes_[n.id] = n;
  }
  size_t resumed = 0;
  for (const ReplayedRun& run : replayed.runs) {
    const std::string& id = run.id;
    const storage::json& e = run.entity;
    order_.push_back(id);
    Job job;
    job.plan.spec.text = run.spec_text;
    msg::JobStatus& s = job.status;
    s.job_id = id;
    s.name = e.value("name", "");
    s.submitter = e.value("submitter", "");
    s.submitted_at_ms = e.value("submitted_at_ms", int64_t{0});
    s.epochs = e.value("epochs", 0u);
    s.consistency = e.value("consistency", "");
    // As prepare() derives it, for the jobs that end here and are not prepared again.
    const uint64_t workers = e.value("workers", uint64_t{0}), batch = e.value("batch_size", uint64_t{0});
    if (workers > 0 && batch > 0) s.total_steps = run.train_samples / workers / batch * s.epochs;
    s.recoveries = run.recoveries;
    job.attempt.number = run.attempts;
    s.last_checkpoint = run.newest_checkpoint;
    s.dataset_hash = run.dataset_hash;
    s.accuracy_history = run.accuracy;
    if (!run.accuracy.empty()) {
      s.test_accuracy = run.accuracy.back();
      s.test_loss = run.test_loss;
    }
    if (run.end) {
      const ReplayedEnd& end = *run.end;
      s.state = end.state;
      s.message = end.message;
      s.test_accuracy = end.test_accuracy;
      // Stores from before evaluations were recorded one by one have only the end's list.
      if (s.accuracy_history.empty()) s.accuracy_history = end.accuracy_history;
      s.epoch = static_cast<uint32_t>(s.accuracy_history.size());
      s.step = end.steps;
      s.finished_at_ms = end.at_ms;
      if (!end.final_checkpoint.empty()) s.last_checkpoint = end.final_checkpoint;
      job.final_recorded = !end.final_checkpoint.empty();
      jobs_[id] = std::move(job);
      continue;
    }
    if (run.newest_final) {
      // The coordinator stopped between recording the final checkpoint and the run's end:
      // the training is complete and recorded, so the run ends now. Resuming it would
      // start its workers at the last step, where they have nothing left to do.
      s.state = JobState::kRunning;
      s.step = run.newest_step;
      s.epoch = static_cast<uint32_t>(s.accuracy_history.size());
      job.final_recorded = true;
      jobs_[id] = std::move(job);
      finish(jobs_[id], JobState::kCompleted,
             "completed when the coordinator restarted: its final checkpoint " + s.last_checkpoint +
                 " was recorded before the coordinator stopped" +
                 (s.test_accuracy >= 0 ? "; final test accuracy " + fixed(s.test_accuracy, 4) : ""));
      continue;
    }
    // Not ended: it was queued or running when the coordinator stopped. It resumes from
    // its newest checkpoint (or its start) once its nodes are back.
    auto prepared = prepare(job.plan.spec.text, "job " + id, false);
    if (!prepared.is_ok()) {
      jobs_[id] = std::move(job);
      finish(jobs_[id], JobState::kFailed, "could not be restored after a coordinator restart: " +
                                               prepared.status().message());
      continue;
    }
    // The plan is derived again from the job file; the status is what the record says.
    adopt_plan(job, std::move(prepared->plan));
    if (job.plan.privacy) {  // the steps it computed twice, as charged in the record
      CUSTODY_ASSIGN_OR_RETURN(auto ledger, storage::privacy_ledger(store, lineage::dataset_id(s.dataset_hash)));
      for (const auto& spent : ledger.runs)
        if (spent.run == id) job.privacy_steps_rolled_back = spent.steps_repeated;
    }
    s.state = JobState::kPending;
    std::string optimizer_note;
    if (!s.last_checkpoint.empty()) {
      CUSTODY_ASSIGN_OR_RETURN(job.start.step, load_start(job, s.last_checkpoint, &optimizer_note));
    } else if (!run.init_from.empty()) {  // fine-tuning from its origin, with a fresh optimizer
      CUSTODY_ASSIGN_OR_RETURN(job.start.values, storage::load_checkpoint(store, run.init_from, nullptr));
      job.plan.init_checkpoint = run.init_from;
    }
    job.last_checkpoint_step = job.start.step;
    if (job.attempt.number > 0) {  // it had started: the attempt it was on is over
      CUSTODY_RETURN_IF_ERROR(recorder_.job_recovered(s, job.attempt.number - 1, "the coordinator restarted",
                                                      job.start.step, job.start.step, s.last_checkpoint));
      ++s.recoveries;
      if (job.plan.privacy) {
        // How far its servers went while no coordinator watched is unknown (nodes train on
        // until they register again), so every step after the checkpoint up to the plan's
        // end counts as computed: a bound that errs on the side of the people in the data.
        const uint64_t bound = job.plan.total_steps() > job.start.step ? job.plan.total_steps() - job.start.step : 0;
        CUSTODY_RETURN_IF_ERROR(recorder_.privacy_charged(
            s, *job.plan.privacy, bound, "coordinator restarted (a bound: every step past the checkpoint)",
            job.attempt.number - 1));
        job.privacy_steps_rolled_back += bound;
      }
    }
    job.recovering = true;
    job.recovery_reason = "the coordinator restarted";
    job.full_nodes_until = now + options_.heartbeat_timeout;
    s.step = job.start.step;
    s.epoch = static_cast<uint32_t>(job.start.step / job.plan.steps_per_epoch);
    // Epochs evaluated past the checkpoint are trained again, and evaluated again.
    if (s.accuracy_history.size() > s.epoch) s.accuracy_history.resize(s.epoch);
    s.test_accuracy = s.accuracy_history.empty() ? -1 : s.accuracy_history.back();
    s.message = "restored after a coordinator restart; resumes from " +
                (s.last_checkpoint.empty() ? std::string("its start") : s.last_checkpoint) + optimizer_note +
                " once its nodes register";
    jobs_[id] = std::move(job);
    queue_.push_back(id);
    ++resumed;
  }
  log(LogLevel::kInfo, kSelf, "restored " + std::to_string(jobs_.size()) + " jobs (" + std::to_string(resumed) +
                                  " to resume) and " + std::to_string(nodes_.size()) + " known nodes from the store");
  return Status::ok();
}

Result<Job> CoordinatorState::prepare(const std::string& spec_text, const std::string& origin,
                                                        bool resolve_init) {
  CUSTODY_ASSIGN_OR_RETURN(auto spec, parse_job_spec(spec_text, origin));
  // The coordinator reads the data once, streaming (core/dataset.h), to pin its identity,
  // digest each rank's records and keep them for shipping.
  auto data = summarize_data(spec.data, static_cast<uint32_t>(std::max(0, spec.workers)), records_keeper(spec.data));
  if (!data.is_ok()) {
    return Status(data.status().code(), data.status().message() +
                                            " (the coordinator reads the data set named in the "
                                            "job file to split it among the workers)");
  }
  auto made = spec.make_model(data->train.features);
  if (!made.is_ok()) return Status(made.status().code(), origin + ": " + made.status().message());
  Model model = std::move(made).value();
  if (data->table.classes.size() > static_cast<size_t>(spec.classes)) {
    // The test table's labels count too: a class only the test rows hold is still an output.
    std::string names;
    for (const auto& c : data->table.classes) names += (names.empty() ? "" : ", ") + c;
    return invalid_argument(origin + ": the table's label column '" + data->table.label + "' holds " +
                            std::to_string(data->table.classes.size()) + " classes (" + names +
                            ") but 'model.classes' is " + std::to_string(spec.classes));
  }
  if (data->train.count > 0 && data->train.max_label >= spec.classes) {
    return invalid_argument(origin + ": the training labels go up to " + std::to_string(data->train.max_label) +
                            " but 'model.classes' is " + std::to_string(spec.classes));
  }
  // Retraining without withdrawn records: which, from the revocations the file names.
  CUSTODY_ASSIGN_OR_RETURN(auto excluded, excluded_records(spec, data->version_hash, origin));
  CUSTODY_ASSIGN_OR_RETURN(auto split, partition_range(static_cast<uint64_t>(data->train.count),
                                                       static_cast<uint32_t>(spec.workers)));
  int64_t min_shard = data->train.count;
  for (const auto& range : split) {
    const auto in_range = std::lower_bound(excluded.begin(), excluded.end(), range.end) -
                          std::lower_bound(excluded.begin(), excluded.end(), range.begin);
    min_shard = std::min(min_shard, static_cast<int64_t>(range.end - range.begin) - static_cast<int64_t>(in_range));
  }
  if (min_shard < spec.batch_size) {
    return invalid_argument(origin + ": 'job.batch_size' (" + std::to_string(spec.batch_size) +
                            ") is larger than each worker's shard (" + std::to_string(min_shard) +
                            " samples); lower the batch size or the number of workers");
  }
  if (data->test.count < spec.workers || data->test.digests.size() != static_cast<size_t>(spec.workers)) {
    return invalid_argument(origin + ": the test set has fewer samples than 'job.workers'");
  }
  Job job;
  if (resolve_init && !spec.init_from.empty()) {
    if (!recorder_.enabled()) {
      return failed_precondition(origin + ": 'job.init_from' needs a coordinator with a custody store (--store)");
    }
    auto id = storage::resolve_checkpoint(*recorder_.store(), spec.init_from);
    if (!id.is_ok()) return Status(id.status().code(), origin + ": 'job.init_from': " + id.status().message());
    storage::json manifest;
    CUSTODY_ASSIGN_OR_RETURN(auto values, storage::load_checkpoint(*recorder_.store(), id.value(), &manifest));
    if (manifest["layer_sizes"] != model.layer_sizes() ||
        manifest.value("architecture", model.architecture()) != model.architecture()) {
      return invalid_argument(origin + ": 'job.init_from' names " + id.value() + ", a model of layers " +
                              manifest["layer_sizes"].dump() + ", but this job's model has layers " +
                              storage::json(model.layer_sizes()).dump());
    }
    job.start.values = std::move(values);
    job.plan.init_checkpoint = id.value();
  }
  JobPlan plan;
  plan.spec = spec;
  plan.layer_sizes = model.layer_sizes();
  plan.data = {data->version_hash, data->train.content_hash, data->test.content_hash, data->train.count,
               data->test.count};
  plan.data.excluded = std::move(excluded);
  plan.data.without = spec.data.without;
  plan.data.table = std::move(data->table);
  // Each rank's records, file by file, as read now: what its worker must hold. The split
  // is the one start_tasks makes (a rank's shard never changes).
  plan.data.train_digests = std::move(data->train.digests);
  plan.data.test_digests = std::move(data->test.digests);
  plan.features = data->train.features;
  plan.num_parameters = model.num_parameters();
  plan.steps_per_epoch = static_cast<uint64_t>(min_shard / spec.batch_size);
  plan.checkpoint_every = spec.checkpoint_every_steps > 0 ? static_cast<uint64_t>(spec.checkpoint_every_steps)
                                                      : plan.steps_per_epoch;
  plan.init_checkpoint = std::move(job.plan.init_checkpoint);  // set above when fine-tuning
  if (spec.privacy.enabled) {
    // Calibrated before the job starts: a target no noise reaches is refused here, naming
    // the numbers, and never half-trained.
    // N is what the run samples from: a retraining's records less those it excludes (with
    // the whole count, q would be understated and the epsilon claimed too small).
    const int64_t examples = data->train.count - static_cast<int64_t>(plan.data.excluded.size());
    auto privacy = plan_privacy(spec, examples, static_cast<int64_t>(plan.total_steps()));
    if (!privacy.is_ok()) return Status(privacy.status().code(), origin + ": " + privacy.status().message());
    plan.privacy = privacy.value();
  }
  adopt_plan(job, std::move(plan));
  msg::JobStatus& s = job.status;
  s.name = spec.name;
  s.state = JobState::kPending;
  s.epochs = static_cast<uint32_t>(spec.epochs);
  s.consistency = to_string(spec.consistency);
  s.message = "waiting for " + std::to_string(spec.workers) + " idle workers and a parameter server";
  return job;
}

Outbox CoordinatorState::on_submit(const Envelope& in, const msg::SubmitJob& m, const std::string& peer,
                                   const Caller& caller) {
  auto error = [&](Status s) { return Outbox{{peer, msg::make_error(in, kSelf, s)}}; };
  const std::string origin = m.origin.empty() ? "job file" : m.origin;
  auto prepared = prepare(m.spec_text, origin, true);
  if (!prepared.is_ok()) return error(prepared.status());
  Job job = std::move(prepared).value();
  // The data set's privacy budget: read and charged in this one event, so two submissions
  // cannot both spend what remains.
  std::string override_by;
  if (Status s = admit_privacy(job, m, caller, &override_by); !s.is_ok()) return error(s);
  msg::JobStatus& s = job.status;
  auto job_id = new_job_id();
  if (!job_id.is_ok()) return error(job_id.status());
  s.job_id = job_id.value();
  s.submitter = m.submitter.empty() ? "anonymous" : m.submitter;
  s.submitted_at_ms = wall_ms();
  const std::string id = s.job_id;
  Status recorded = recorder_.job_submitted(s, job.plan.spec, job.plan.data, job.plan.layer_sizes, job.plan.init_checkpoint,
                                            job.plan.privacy ? &*job.plan.privacy : nullptr, override_by,
                                            m.budget_override);
  if (!recorded.is_ok()) {
    return error(Status(recorded.code(), recorded.message() + "; the job was not accepted"));
  }
  log(LogLevel::kInfo, kSelf, "accepted " + id + " '" + s.name + "' from " + s.submitter + ": " +
                                  std::to_string(job.plan.num_parameters) + " parameters, " +
                                  std::to_string(job.plan.spec.workers) + " workers, " + s.consistency + ", data " +
                                  s.dataset_hash.substr(0, 12) + privacy_summary(job.plan));
  jobs_[id] = std::move(job);
  queue_.push_back(id);
  order_.push_back(id);
  // The answer says whether the job starts, waits its turn, or cannot be placed on the
  // nodes that are alive: handle() writes it once scheduling has run.
  just_submitted_ = id;
  Envelope ack = msg::reply_to(in, kSelf, msg::JobAccepted{id, ""});
  ack.job_id = id;  // the request named no job: this answer names the new one
  return {{peer, std::move(ack)}};
}

Status CoordinatorState::may_change(const Job& job, const Caller& caller, const char* what) const {
  if (!secured() || caller.role == Role::kAdmin || caller.principal == job.status.submitter) return Status::ok();
  return Status(ErrorCode::kPermissionDenied, "only " + job.status.submitter + " (who submitted " +
                                                  job.status.job_id + ") or an admin may " + what + " it, not " +
                                                  caller.principal);
}

Outbox CoordinatorState::on_cancel(const Envelope& in, const msg::CancelJob& m, const std::string& peer,
                                   const Caller& caller) {
  auto it = jobs_.find(in.job_id);
  if (it == jobs_.end()) {
    return {{peer, msg::make_error(in, kSelf, not_found("no job '" + in.job_id + "' to cancel"))}};
  }
  Job& job = it->second;
  if (Status s = may_change(job, caller, "cancel"); !s.is_ok()) return {{peer, msg::make_error(in, kSelf, s)}};
  if (msg::is_terminal(job.status.state)) {
    return {{peer, msg::make_error(in, kSelf,
                                   failed_precondition("job " + in.job_id + " has already ended (" +
                                                       msg::to_string(job.status.state) + ")"))}};
  }
  // Who cancelled is the proven caller (with security on), never a name the request typed.
  const std::string by = caller.principal.empty() ? "" : " by " + caller.principal;
  Outbox out = finish(job, JobState::kCancelled, "cancelled" + by + (m.reason.empty() ? std::string() : ": " + m.reason));
  out.insert(out.begin(), {peer, msg::reply_to(in, kSelf, msg::JobAccepted{in.job_id, "cancelled"})});
  return out;
}

Result<uint64_t> CoordinatorState::load_start(Job& job, const std::string& checkpoint, std::string* optimizer_note) {
  storage::json manifest;
  CUSTODY_ASSIGN_OR_RETURN(auto values, storage::load_checkpoint(*recorder_.store(), checkpoint, &manifest));
  CUSTODY_ASSIGN_OR_RETURN(auto optimizer, storage::load_optimizer_state(*recorder_.store(), manifest));
  job.start.values = std::move(values);
  job.start.optimizer = {};
  const OptimizerConfig::Kind kind = job.plan.spec.optimizer.kind;
  const size_t blocks = state_tensor_names(kind).size();
  const auto& saved = optimizer;
  optimizer_note->clear();
  if (saved && saved->kind == kind && saved->state.values.size() == blocks * job.plan.num_parameters) {
    job.start.optimizer = saved->state;
    if (blocks > 0) *optimizer_note = ", with its " + std::string(to_string(kind)) + " state";
  } else if (blocks > 0) {
    *optimizer_note = "; the " + std::string(to_string(kind)) + " state starts from zeros (" +
                      (saved ? "the checkpoint's is of " + std::string(to_string(saved->kind)) + " or another size"
                             : checkpoint + " was written before optimizer state was checkpointed") +
                      ")";
    log(LogLevel::kWarn, kSelf, job.status.job_id + ": resuming from " + checkpoint + ":" + optimizer_note->substr(1));
  }
  return manifest["step"].get<uint64_t>();
}

Outbox CoordinatorState::on_resume(const Envelope& in, const msg::ResumeJob&, const std::string& peer,
                                   const Caller& caller) {
  auto error = [&](Status s) { return Outbox{{peer, msg::make_error(in, kSelf, s)}}; };
  auto it = jobs_.find(in.job_id);
  if (it == jobs_.end()) return error(not_found("no job '" + in.job_id + "' to resume"));
  Job& job = it->second;
  if (Status s = may_change(job, caller, "resume"); !s.is_ok()) return error(s);
  msg::JobStatus& s = job.status;
  if (s.state != JobState::kFailed && s.state != JobState::kCancelled) {
    return error(failed_precondition("job " + in.job_id + " is " + msg::to_string(s.state) +
                                     "; only failed or cancelled jobs can be resumed"));
  }
  if (s.last_checkpoint.empty() || !recorder_.enabled()) {
    return error(failed_precondition("job " + in.job_id + " has no checkpoint to resume from"));
  }
  if (!job.plan.prepared()) {  // restored from the store after a restart: read its file again
    auto prepared = prepare(job.plan.spec.text, "job " + in.job_id, false);
    if (!prepared.is_ok()) return error(prepared.status());
    adopt_plan(job, std::move(prepared->plan));
  }
  std::string optimizer_note;
  auto loaded = load_start(job, s.last_checkpoint, &optimizer_note);
  if (!loaded.is_ok()) return error(loaded.status());
  const uint64_t step = loaded.value();
  // A private job computes again the steps it had computed past its checkpoint: they are
  // spent twice (s.step: where it ended, as recorded).
  const PrivacyPlan* privacy = job.plan.privacy ? &*job.plan.privacy : nullptr;
  const uint64_t computed = s.step;
  Status recorded = recorder_.job_resumed(s, s.last_checkpoint, step, caller.principal, privacy, computed,
                                          job.attempt.number);
  if (!recorded.is_ok()) return error(recorded);
  if (privacy && computed > step) job.privacy_steps_rolled_back += computed - step;
  rewind(job, step);
  job.recovering = false;
  s.message = "resuming from " + s.last_checkpoint + " at step " + std::to_string(step) + optimizer_note;
  s.finished_at_ms = 0;
  queue_.push_back(in.job_id);
  log(LogLevel::kInfo, kSelf, in.job_id + " " + s.message);
  return {{peer, msg::reply_to(in, kSelf, msg::JobAccepted{in.job_id, s.message})}};
}

}  // namespace custody::actors
