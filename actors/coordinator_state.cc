#include "actors/coordinator_state.h"

#include <algorithm>
#include <cstdio>

#include "actors/checkpoint_assembly.h"
#include "actors/custody_replay.h"
#include "core/dataset.h"
#include "core/hash.h"
#include "storage/lineage_vocabulary.h"
#include "storage/queries.h"
#include "core/log.h"
#include "core/model.h"
#include "core/partition.h"

namespace custody::actors {

using msg::Envelope;
using msg::JobState;
namespace lineage = storage::lineage;

namespace {
const char* kSelf = "coordinator";

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}
}  // namespace

CoordinatorState::CoordinatorState(CoordinatorOptions options, storage::CustodyStore* store,
                                   std::string store_path, const SigningKey* key)
    : options_(options), recorder_(store, key), store_path_(std::move(store_path)), rng_(std::random_device{}()) {}

int64_t CoordinatorState::wall_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string CoordinatorState::new_job_id() {
  // Short, unique across coordinator restarts without coordination: random hex.
  for (;;) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "job-%08llx", static_cast<unsigned long long>(rng_() & 0xffffffffu));
    if (!jobs_.count(buf)) return buf;
  }
}

Envelope CoordinatorState::envelope(const std::string& job_id, msg::Body body, uint32_t attempt) const {
  Envelope e;
  e.sender = kSelf;
  e.job_id = job_id;
  e.attempt = attempt;
  e.body = std::move(body);
  return e;
}

CoordinatorState::Node* CoordinatorState::node_by_peer(const std::string& peer) {
  for (auto& [id, n] : nodes_)
    if (n.peer == peer && n.alive) return &n;
  return nullptr;
}

CoordinatorState::Node* CoordinatorState::node_by_id(const std::string& id) {
  auto it = nodes_.find(id);
  return it == nodes_.end() ? nullptr : &it->second;
}

Status CoordinatorState::restore(Clock::time_point now) {
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
    n.alive = false;  // until it registers again
    n.last_seen = now;
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
                 (s.test_accuracy >= 0 ? "; final test accuracy " + fmt("%.4f", s.test_accuracy) : ""));
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
    job.plan = std::move(prepared->plan);
    s.state = JobState::kPending;
    s.total_steps = job.plan.total_steps();
    s.dataset_hash = job.plan.data.version_hash;
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

Outbox CoordinatorState::handle(const std::string& peer, const Envelope& in, Clock::time_point now) {
  now_ = now;
  just_submitted_.clear();
  Outbox out = dispatch(peer, in, now);
  // Scheduling runs once per event, after the event has changed the queue or the nodes.
  Outbox scheduled = schedule();
  out.insert(out.end(), scheduled.begin(), scheduled.end());
  if (!just_submitted_.empty() && !out.empty()) {
    auto* ack = std::get_if<msg::JobAccepted>(&out.front().envelope.body);
    const msg::JobStatus& job = jobs_.at(just_submitted_).status;
    if (ack) ack->message = job.state == JobState::kPending ? job.message : "starting";
  }
  return out;
}

Outbox CoordinatorState::dispatch(const std::string& peer, const Envelope& in, Clock::time_point now) {
  auto reply = [&](msg::Body body) {
    Envelope e = envelope(in.job_id, std::move(body));
    e.request_id = in.request_id;
    return Outbox{{peer, std::move(e)}};
  };
  auto error = [&](Status s) { return Outbox{{peer, msg::make_error(in, kSelf, s)}}; };
  now_ = now;

  auto caller = authorize(in);
  if (!caller.is_ok()) return error(caller.status());
  if (options_.auth) {
    // The token, not the request, says who is acting.
    if (auto* m = in.get<msg::SubmitJob>()) {
      msg::SubmitJob as_caller = *m;
      as_caller.submitter = caller->principal;
      return on_submit(in, as_caller, peer);
    }
    if (auto* m = in.get<msg::ExportRequest>()) {
      msg::ExportRequest as_caller = *m;
      as_caller.principal = caller->principal;
      return handle_export(peer, in, as_caller);
    }
    if (in.get<msg::ResumeJob>()) return on_resume(in, msg::ResumeJob{caller->principal}, peer);
  }
  if (auto* m = in.get<msg::AddPrincipal>()) return on_add_principal(in, *m, peer);
  if (in.get<msg::AuditHeadRequest>()) {
    auto heads = recorder_.signed_heads();
    if (!heads.is_ok()) return error(heads.status());
    return reply(msg::AuditHeadReply{heads->dump()});
  }
  if (auto* m = in.get<msg::UsageRequest>()) {
    if (!recorder_.enabled()) return error(failed_precondition("this coordinator keeps no custody store (--store)"));
    // Others' usage is for auditors and admins; everyone else sees their own calls.
    const bool all = !options_.auth || sees_everyones_usage(caller->role);
    auto summary = storage::usage(*recorder_.store(), m->model, all ? "" : lineage::principal_id(caller->principal),
                                  m->since_ms, m->until_ms, m->limit);
    if (!summary.is_ok()) return error(summary.status());
    return reply(msg::UsageReply{summary->dump()});
  }
  if (auto* m = in.get<msg::Register>()) return on_register(peer, in, *m, now);
  if (in.get<msg::Heartbeat>()) {
    Node* n = node_by_peer(peer);
    if (n) n->last_seen = now;
    return reply(msg::HeartbeatAck{n != nullptr});
  }
  if (auto* m = in.get<msg::SubmitJob>()) return on_submit(in, *m, peer);
  if (auto* m = in.get<msg::StatusRequest>()) {
    if (!in.job_id.empty() && !jobs_.count(in.job_id)) {
      return error(not_found("no job '" + in.job_id + "' (list the jobs with `custody jobs`)"));
    }
    return reply(status(in.job_id, m->include_nodes, now));
  }
  if (auto* m = in.get<msg::CancelJob>()) return on_cancel(in, *m, peer);
  if (auto* m = in.get<msg::ResumeJob>()) return on_resume(in, *m, peer);
  if (auto* m = in.get<msg::ExportRequest>()) return handle_export(peer, in, *m);

  // Everything else comes from registered nodes about their jobs.
  Node* node = node_by_peer(peer);
  if (!node) {
    return error(failed_precondition(std::string("a '") + msg::body_name(in.body) +
                                     "' message from a node that has not registered; register first"));
  }
  node->last_seen = now;
  return on_node_report(*node, in, now);
}

Outbox CoordinatorState::handle_export(const std::string& peer, const Envelope& in, const msg::ExportRequest& m) {
  auto exported = recorder_.export_checkpoint(m);
  if (!exported.is_ok()) return {{peer, msg::make_error(in, kSelf, exported.status())}};
  log(LogLevel::kInfo, kSelf, "exported " + exported->checkpoint + " to " + m.principal + " (" + exported->usage_id + ")");
  Envelope e = envelope(in.job_id, std::move(exported).value());
  e.request_id = in.request_id;
  return {{peer, std::move(e)}};
}

Result<Caller> CoordinatorState::authorize(const Envelope& in) {
  if (!options_.auth) return Caller{in.sender, Role::kAdmin};
  if (in.token.empty()) {
    return Status(ErrorCode::kPermissionDenied, "this cluster requires a token (--token-file, or token_file in the "
                                                "CLI config); an admin creates one with `custody principal add`");
  }
  const std::string hash = sha256_hex(in.token);
  auto it = credentials_.find(hash);
  if (it == credentials_.end()) {
    auto e = recorder_.enabled() ? recorder_.store()->entity(lineage::credential_id(hash))
                                 : Result<std::optional<storage::Record>>(std::optional<storage::Record>());
    if (!e.is_ok()) return e.status();
    if (!e.value()) return Status(ErrorCode::kPermissionDenied, "the token is not known to this cluster");
    const std::string principal = e.value()->body["principal"], role_name = e.value()->body["role"];
    const auto role = parse_role(role_name);
    if (!role) {
      return Status(ErrorCode::kPermissionDenied, "the token's credential (principal " + principal +
                                                      ") has the unknown role '" + role_name + "'");
    }
    it = credentials_.emplace(hash, Caller{principal, *role}).first;
  }
  if (!may_send(it->second.role, in.body)) {
    return Status(ErrorCode::kPermissionDenied, "principal " + it->second.principal + " (" +
                                                    to_string(it->second.role) + ") may not send '" +
                                                    msg::body_name(in.body) + "'");
  }
  return it->second;
}

Status CoordinatorState::add_credential(const std::string& name, Role role, const std::string& token,
                                        const std::string& by) {
  const std::string hash = sha256_hex(token);
  CUSTODY_RETURN_IF_ERROR(recorder_.principal_added(name, to_string(role), hash, by));
  credentials_[hash] = Caller{name, role};
  return Status::ok();
}

Outbox CoordinatorState::on_add_principal(const Envelope& in, const msg::AddPrincipal& m, const std::string& peer) {
  auto error = [&](Status s) { return Outbox{{peer, msg::make_error(in, kSelf, s)}}; };
  if (!options_.auth) {
    return error(failed_precondition("this coordinator runs without --auth, so tokens would not be checked; "
                                     "start it with --auth to use principals"));
  }
  const auto role = parse_role(m.role);
  if (!role) return error(invalid_argument("unknown role '" + m.role + "' (" + role_names() + ")"));
  if (m.name.empty() || m.name.find_first_of("|:/ ") != std::string::npos) {
    return error(invalid_argument("a principal's name must be non-empty, without '|', ':', '/' or spaces"));
  }
  auto token = random_token();
  if (!token.is_ok()) return error(token.status());
  auto by = authorize(in);
  Status s = add_credential(m.name, *role, token.value(), by.is_ok() ? by->principal : "?");
  if (!s.is_ok()) return error(s);
  log(LogLevel::kInfo, kSelf, "added principal " + m.name + " (" + m.role + ")");
  Envelope e = envelope("", msg::PrincipalAdded{m.name, m.role, token.value()});
  e.request_id = in.request_id;
  return {{peer, std::move(e)}};
}

Outbox CoordinatorState::on_register(const std::string& peer, const Envelope& in, const msg::Register& m,
                                     Clock::time_point now) {
  if (m.role == msg::NodeRole::kParameterServer && m.address.empty()) {
    return {{peer, msg::make_error(in, kSelf, invalid_argument("a parameter server must register "
                                                               "with the address workers reach it at"))}};
  }
  Outbox out;
  std::string id = m.name;
  if (id.empty()) {
    // The same peer registering again keeps its id (a retried register).
    if (Node* known = node_by_peer(peer)) id = known->id;
  }
  if (id.empty()) {
    do {
      id = m.role == msg::NodeRole::kWorker ? "worker-" + std::to_string(next_worker_++)
                                            : "ps-" + std::to_string(next_ps_++);
    } while (nodes_.count(id));
  }
  Node* existing = node_by_id(id);
  if (existing && existing->alive && existing->peer != peer) {
    // A node restarted under the same name: the old incarnation is gone.
    log(LogLevel::kWarn, kSelf, "node " + id + " registered again from a new connection; "
                                "replacing the old one");
  }
  // Its new incarnation holds nothing of the job it had: the job is rolled back below,
  // once the node's record names the new connection (the rollback may reassign to it).
  // (Servers are shared by jobs, so every job it serves is involved.)
  std::vector<std::string> lost_jobs;
  if (existing) {
    for (auto& [job_id, job] : jobs_) {
      if (msg::is_terminal(job.status.state) || job.status.state == JobState::kPending) continue;
      if (std::count(job.attempt.workers.begin(), job.attempt.workers.end(), id) + std::count(job.attempt.servers.begin(), job.attempt.servers.end(), id)) {
        lost_jobs.push_back(job_id);
      }
    }
  }
  Status recorded = recorder_.node_registered(id, m);
  if (!recorded.is_ok()) log(LogLevel::kError, kSelf, "node " + id + ": " + recorded.message());
  Node n;
  n.id = id;
  n.peer = peer;
  n.address = m.address;
  n.host = m.host;
  n.role = m.role;
  n.pid = m.pid;
  n.last_seen = now;
  nodes_[id] = n;
  log(LogLevel::kInfo, kSelf, std::string("registered ") + msg::to_string(m.role) + " " + id +
                                  (m.address.empty() ? "" : " at " + m.address) + " (pid " +
                                  std::to_string(m.pid) + " on " + m.host + ")");
  Envelope ack = envelope("", msg::RegisterAck{id, static_cast<uint32_t>(options_.heartbeat_interval.count())});
  ack.request_id = in.request_id;
  out.push_back({peer, std::move(ack)});
  for (const auto& job_id : lost_jobs) {
    auto more = recover(jobs_.at(job_id), std::string(msg::to_string(m.role)) + " " + id +
                                              " registered again (restarted) during the job");
    out.insert(out.end(), more.begin(), more.end());
  }
  return out;
}

Result<Job> CoordinatorState::prepare(const std::string& spec_text, const std::string& origin,
                                                        bool resolve_init) {
  auto spec = parse_job_spec(spec_text, origin);
  if (!spec.is_ok()) return spec.status();
  // The coordinator reads the data once, to split it and to pin its identity.
  auto data = load_data(spec->data);
  if (!data.is_ok()) {
    return Status(data.status().code(), data.status().message() +
                                            " (the coordinator reads the data set named in the "
                                            "job file to split it among the workers)");
  }
  auto model = Model::make(spec->layer_sizes(data->train.features));
  if (!model.is_ok()) return model.status();
  for (uint8_t label : data->train.labels) {
    if (label >= spec->classes) {
      return invalid_argument(origin + ": the training labels go up to " + std::to_string(label) +
                              " but 'model.classes' is " + std::to_string(spec->classes));
    }
  }
  const int64_t min_shard = data->train.count / spec->workers;
  if (min_shard < spec->batch_size) {
    return invalid_argument(origin + ": 'job.batch_size' (" + std::to_string(spec->batch_size) +
                            ") is larger than each worker's shard (" + std::to_string(min_shard) +
                            " samples); lower the batch size or the number of workers");
  }
  if (data->test.count < spec->workers) {
    return invalid_argument(origin + ": the test set has fewer samples than 'job.attempt.workers'");
  }
  Job job;
  if (resolve_init && !spec->init_from.empty()) {
    if (!recorder_.enabled()) {
      return failed_precondition(origin + ": 'job.init_from' needs a coordinator with a custody store (--store)");
    }
    auto id = storage::resolve_checkpoint(*recorder_.store(), spec->init_from);
    if (!id.is_ok()) return Status(id.status().code(), origin + ": 'job.init_from': " + id.status().message());
    storage::json manifest;
    auto values = storage::load_checkpoint(*recorder_.store(), id.value(), &manifest);
    if (!values.is_ok()) return values.status();
    if (manifest["layer_sizes"] != model->layer_sizes()) {
      return invalid_argument(origin + ": 'job.init_from' names " + id.value() + ", a model of layers " +
                              manifest["layer_sizes"].dump() + ", but this job's model has layers " +
                              storage::json(model->layer_sizes()).dump());
    }
    job.start.values = std::move(values).value();
    job.plan.init_checkpoint = id.value();
  }
  job.plan.spec = spec.value();
  job.plan.layer_sizes = model->layer_sizes();
  job.plan.data.train_count = data->train.count;
  job.plan.data.test_count = data->test.count;
  job.plan.features = data->train.features;
  job.plan.num_parameters = model->num_parameters();
  job.plan.steps_per_epoch = static_cast<uint64_t>(min_shard / spec->batch_size);
  job.plan.checkpoint_every = spec->checkpoint_every_steps > 0 ? static_cast<uint64_t>(spec->checkpoint_every_steps)
                                                          : job.plan.steps_per_epoch;
  msg::JobStatus& s = job.status;
  s.name = spec->name;
  s.state = JobState::kPending;
  s.epochs = static_cast<uint32_t>(spec->epochs);
  s.total_steps = job.plan.steps_per_epoch * static_cast<uint64_t>(spec->epochs);
  s.dataset_hash = data->version_hash;
  s.consistency = to_string(spec->consistency);
  s.message = "waiting for " + std::to_string(spec->workers) + " idle workers and a parameter server";
  job.plan.data = {data->version_hash, data->train.content_hash, data->test.content_hash, data->train.count,
                data->test.count};
  return job;
}

Outbox CoordinatorState::on_submit(const Envelope& in, const msg::SubmitJob& m, const std::string& peer) {
  auto error = [&](Status s) { return Outbox{{peer, msg::make_error(in, kSelf, s)}}; };
  const std::string origin = m.origin.empty() ? "job file" : m.origin;
  auto prepared = prepare(m.spec_text, origin, true);
  if (!prepared.is_ok()) return error(prepared.status());
  Job job = std::move(prepared).value();
  msg::JobStatus& s = job.status;
  s.job_id = new_job_id();
  s.submitter = m.submitter.empty() ? "anonymous" : m.submitter;
  s.submitted_at_ms = wall_ms();
  const std::string id = s.job_id;
  Status recorded = recorder_.job_submitted(s, job.plan.spec, job.plan.data, job.plan.layer_sizes, job.plan.init_checkpoint);
  if (!recorded.is_ok()) {
    return error(Status(recorded.code(), recorded.message() + "; the job was not accepted"));
  }
  log(LogLevel::kInfo, kSelf, "accepted " + id + " '" + s.name + "' from " + s.submitter + ": " +
                                  std::to_string(job.plan.num_parameters) + " parameters, " +
                                  std::to_string(job.plan.spec.workers) + " workers, " + s.consistency + ", data " +
                                  s.dataset_hash.substr(0, 12));
  jobs_[id] = std::move(job);
  queue_.push_back(id);
  order_.push_back(id);
  // The answer says whether the job starts, waits its turn, or cannot be placed on the
  // nodes that are alive: handle() writes it once scheduling has run.
  just_submitted_ = id;
  Envelope ack = envelope(id, msg::JobAccepted{id, ""});
  ack.request_id = in.request_id;
  return {{peer, std::move(ack)}};
}

Outbox CoordinatorState::on_cancel(const Envelope& in, const msg::CancelJob& m, const std::string& peer) {
  auto it = jobs_.find(in.job_id);
  if (it == jobs_.end()) {
    return {{peer, msg::make_error(in, kSelf, not_found("no job '" + in.job_id + "' to cancel"))}};
  }
  Job& job = it->second;
  if (msg::is_terminal(job.status.state)) {
    return {{peer, msg::make_error(in, kSelf,
                                   failed_precondition("job " + in.job_id + " has already ended (" +
                                                       msg::to_string(job.status.state) + ")"))}};
  }
  Outbox out = finish(job, JobState::kCancelled,
                      "cancelled" + (m.reason.empty() ? std::string() : ": " + m.reason));
  Envelope ack = envelope(in.job_id, msg::JobAccepted{in.job_id, "cancelled"});
  ack.request_id = in.request_id;
  out.insert(out.begin(), {peer, std::move(ack)});
  return out;
}

Outbox CoordinatorState::on_node_report(const Node& node, const Envelope& in, Clock::time_point now) {
  auto it = jobs_.find(in.job_id);
  // Answers to the stop of a rolled-back attempt: of an older attempt by nature, and still
  // to be recorded if the job has ended since.
  if (auto* m = in.get<msg::JobReleased>()) {
    if (it != jobs_.end()) on_job_released(it->second, node, in.attempt, *m);
    return {};
  }
  if (it == jobs_.end() || msg::is_terminal(it->second.status.state)) {
    return {};  // a late report of a job that has ended: nothing to do
  }
  Job& job = it->second;
  if (in.attempt != job.attempt.number) return {};  // from an attempt that was rolled back
  msg::JobStatus& s = job.status;
  if (auto* m = in.get<msg::CheckpointShard>()) return on_checkpoint_shard(job, node, *m);
  if (in.get<msg::KeyRangeReady>()) {
    if (std::find(job.attempt.servers.begin(), job.attempt.servers.end(), node.id) == job.attempt.servers.end()) return {};
    job.attempt.servers_ready.insert(node.id);
    if (s.state == JobState::kStarting && job.attempt.servers_ready.size() == job.attempt.servers.size()) {
      return start_tasks(job);
    }
    return {};
  }
  // The rest come from a rank's trainer, which must run on the node that sent it.
  auto rank_of = [&](uint32_t rank) -> WorkerProgress* {
    if (rank >= job.attempt.workers.size() || job.attempt.workers[rank] != node.id) return nullptr;
    return &job.attempt.progress[rank];
  };
  auto min_step = [&] {
    uint64_t min = UINT64_MAX;
    for (auto& [rank, wp] : job.attempt.progress) min = std::min(min, wp.step);
    return min == UINT64_MAX ? job.start.step : min;
  };
  if (auto* m = in.get<msg::Progress>()) {
    WorkerProgress* p = rank_of(m->rank);
    if (!p) return {};
    if (m->step > p->step) p->last_step_at = now;
    p->step = m->step;
    if (m->elapsed_us > 0) p->rate = double(m->samples) * 1e6 / double(m->elapsed_us);
    if (m->samples > 0) {
      double loss = m->loss_sum / double(m->samples);
      job.loss_ema = job.loss_ema < 0 ? loss : 0.7 * job.loss_ema + 0.3 * loss;
    }
    double rate = 0;
    for (auto& [rank, wp] : job.attempt.progress) rate += wp.rate;
    s.step = min_step();
    s.samples_per_sec = rate;
    s.loss = job.loss_ema;
    return {};
  }
  if (auto* m = in.get<msg::EpochEval>()) {
    if (!rank_of(m->rank) || m->epoch == 0 || m->epoch > s.epochs) return {};
    auto& reports = job.attempt.evals[m->epoch];
    reports[m->rank] = *m;
    if (reports.size() == job.attempt.workers.size()) {
      uint64_t correct = 0, total = 0;
      double loss = 0;
      for (auto& [rank, r] : reports) {
        correct += r.correct;
        total += r.total;
        loss += r.loss_sum;
      }
      s.epoch = std::max(s.epoch, m->epoch);
      s.test_accuracy = total ? double(correct) / double(total) : 0;
      s.test_loss = total ? loss / double(total) : 0;
      s.accuracy_history.resize(std::max<size_t>(s.accuracy_history.size(), m->epoch), 0.0);
      s.accuracy_history[m->epoch - 1] = s.test_accuracy;
      job.attempt.evals.erase(m->epoch);
      Status recorded = recorder_.epoch_evaluated(s, job.attempt.number, m->epoch, s.test_accuracy, s.test_loss);
      // An evaluation describes the model, it does not change it: a store that cannot take
      // the record is reported, and training goes on (its checkpoints would fail the job).
      if (!recorded.is_ok()) log(LogLevel::kError, kSelf, s.job_id + ": " + recorded.message());
      log(LogLevel::kInfo, kSelf, s.job_id + " epoch " + std::to_string(m->epoch) + "/" +
                                      std::to_string(s.epochs) + ": test accuracy " +
                                      fmt("%.4f", s.test_accuracy) + ", test loss " + fmt("%.4f", s.test_loss) +
                                      ", " + fmt("%.0f", s.samples_per_sec) + " samples/s");
    }
    return {};
  }
  if (auto* m = in.get<msg::TaskDone>()) {
    WorkerProgress* p = rank_of(m->rank);
    if (!p) return {};
    p->done = true;
    p->step = m->steps;
    p->last_step_at = now;
    s.step = min_step();
    return maybe_complete(job);
  }
  if (auto* m = in.get<msg::Error>()) {
    // A server that stopped answering, or that lost the job, is a failure to recover from;
    // anything else (bad data, a bad job) would fail again on every attempt.
    const bool transient = m->code == ErrorCode::kDeadlineExceeded || m->code == ErrorCode::kUnavailable ||
                           m->code == ErrorCode::kNotFound;
    if (transient) return recover(job, node.id + " reported: " + m->message);
    return finish(job, JobState::kFailed, node.id + " reported: " + m->message);
  }
  return {};
}

Outbox CoordinatorState::maybe_complete(Job& job) {
  for (size_t rank = 0; rank < job.attempt.workers.size(); ++rank)
    if (!job.attempt.progress[static_cast<uint32_t>(rank)].done) return {};
  if (!job.attempt.evals.empty()) return {};
  if (recorder_.enabled() && !job.final_recorded) return {};  // the final checkpoint is on its way
  return finish(job, JobState::kCompleted, "final test accuracy " + fmt("%.4f", job.status.test_accuracy));
}

Outbox CoordinatorState::on_checkpoint_shard(Job& job, const Node& node, const msg::CheckpointShard& m) {
  if (!recorder_.enabled()) return {};  // no store: nothing to keep
  auto server = std::find(job.attempt.servers.begin(), job.attempt.servers.end(), node.id);
  if (server == job.attempt.servers.end()) return {};
  const KeyRange& range = job.attempt.ranges[server - job.attempt.servers.begin()];
  const std::string problem = check_shard(m, range, job.plan.spec.optimizer.kind, node.id);
  if (!problem.empty()) return finish(job, JobState::kFailed, problem);
  auto& pending = job.attempt.shards[m.step];
  pending[node.id] = m;
  if (pending.size() < job.attempt.servers.size()) return {};
  AssembledCheckpoint assembled =
      assemble_checkpoint(pending, job.plan.num_parameters, job.plan.spec.optimizer.kind, job.attempt.workers,
                          job.attempt.tasks, job.last_checkpoint_step, m.step);
  job.attempt.shards.erase(m.step);
  storage::CheckpointSpec spec;
  spec.job = job.status.job_id;
  spec.attempt = job.attempt.number;
  spec.step = m.step;
  spec.epoch = static_cast<uint32_t>(m.step / job.plan.steps_per_epoch);
  spec.parent = job.status.last_checkpoint.empty() ? job.plan.init_checkpoint : job.status.last_checkpoint;
  spec.final = assembled.final;
  if (assembled.optimizer_incomplete) {
    log(LogLevel::kWarn, kSelf, job.status.job_id + ": a server sent no optimizer state with step " +
                                    std::to_string(m.step) + "; a resume from this checkpoint starts the optimizer from zeros");
  }
  auto id = recorder_.checkpoint(job.status, job.plan.layer_sizes, assembled.values, spec, assembled.contributions,
                                 assembled.optimizer ? &*assembled.optimizer : nullptr);
  if (!id.is_ok()) {
    return finish(job, JobState::kFailed,
                  "could not record the checkpoint of step " + std::to_string(m.step) + ": " + id.status().message());
  }
  job.status.last_checkpoint = id.value();
  job.last_checkpoint_step = m.step;
  log(LogLevel::kInfo, kSelf, job.status.job_id + " checkpoint " + id.value() + " at step " + std::to_string(m.step) +
                                  (assembled.final ? " (final)" : ""));
  if (!assembled.final) return {};
  job.final_recorded = true;
  return maybe_complete(job);
}

void CoordinatorState::on_job_released(Job& job, const Node& node, uint32_t attempt, const msg::JobReleased& m) {
  auto d = job.discards.find(attempt);
  if (d == job.discards.end() || !d->second.waiting.erase(node.id)) return;  // a stop without a rollback
  d->second.applied[node.id] = m;
  if (d->second.waiting.empty()) record_discard(job, attempt);
}

void CoordinatorState::record_discard(Job& job, uint32_t attempt) {
  auto d = job.discards.find(attempt);
  if (d == job.discards.end()) return;
  const Discard& discard = d->second;
  const std::vector<std::string> unanswered(discard.waiting.begin(), discard.waiting.end());
  Status recorded = recorder_.attempt_discarded(job.status, attempt, discard.back_to_step, discard.applied, unanswered);
  // It describes work already thrown away; a store that cannot take it is reported, and the
  // job goes on (its next checkpoint would fail it).
  if (!recorded.is_ok()) log(LogLevel::kError, kSelf, job.status.job_id + ": " + recorded.message());
  std::string applied;
  for (const auto& [server, r] : discard.applied) {
    applied += (applied.empty() ? "" : ", ") + server + " at step " + std::to_string(r.applied_step);
  }
  log(LogLevel::kInfo, kSelf, job.status.job_id + " attempt " + std::to_string(attempt) + " discarded: " +
                                  (applied.empty() ? std::string("no server answered") : applied) + " (rolled back to step " +
                                  std::to_string(discard.back_to_step) + ")");
  job.discards.erase(d);
}

Result<uint64_t> CoordinatorState::load_start(Job& job, const std::string& checkpoint, std::string* optimizer_note) {
  storage::json manifest;
  auto values = storage::load_checkpoint(*recorder_.store(), checkpoint, &manifest);
  if (!values.is_ok()) return values.status();
  auto optimizer = storage::load_optimizer_state(*recorder_.store(), manifest);
  if (!optimizer.is_ok()) return optimizer.status();
  job.start.values = std::move(values).value();
  job.start.optimizer = {};
  const OptimizerConfig::Kind kind = job.plan.spec.optimizer.kind;
  const size_t blocks = state_tensor_names(kind).size();
  const auto& saved = optimizer.value();
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

Outbox CoordinatorState::on_resume(const Envelope& in, const msg::ResumeJob& m, const std::string& peer) {
  auto error = [&](Status s) { return Outbox{{peer, msg::make_error(in, kSelf, s)}}; };
  auto it = jobs_.find(in.job_id);
  if (it == jobs_.end()) return error(not_found("no job '" + in.job_id + "' to resume"));
  Job& job = it->second;
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
    job.plan = std::move(prepared->plan);
    s.total_steps = job.plan.total_steps();
  }
  std::string optimizer_note;
  auto loaded = load_start(job, s.last_checkpoint, &optimizer_note);
  if (!loaded.is_ok()) return error(loaded.status());
  const uint64_t step = loaded.value();
  Status recorded = recorder_.job_resumed(s, s.last_checkpoint, step, m.principal);
  if (!recorded.is_ok()) return error(recorded);
  rewind(job, step);
  job.recovering = false;
  s.message = "resuming from " + s.last_checkpoint + " at step " + std::to_string(step) + optimizer_note;
  s.finished_at_ms = 0;
  queue_.push_back(in.job_id);
  log(LogLevel::kInfo, kSelf, in.job_id + " " + s.message);
  Envelope ack = envelope(in.job_id, msg::JobAccepted{in.job_id, s.message});
  ack.request_id = in.request_id;
  return {{peer, std::move(ack)}};
}

Outbox CoordinatorState::schedule() {
  Outbox out;
  // The pool, once per event: idle workers, and every live server (servers are shared by
  // jobs: each takes a range of every job).
  std::vector<Node*> idle, live_servers;
  size_t alive_workers = 0;
  for (auto& [id, n] : nodes_) {
    if (!n.alive) continue;
    if (n.role == msg::NodeRole::kParameterServer) live_servers.push_back(&n);
    if (n.role != msg::NodeRole::kWorker) continue;
    ++alive_workers;
    if (n.job.empty()) idle.push_back(&n);
  }
  // The policy (docs/ARCHITECTURE.md, "Scheduling"): in queue order, a job that fits
  // starts. One that does not fit yet holds the idle workers it will need, so that later
  // jobs start only on workers beyond those (they go ahead without delaying it: no
  // starvation). One that cannot fit on the nodes alive at all holds nothing and says so.
  size_t held = 0;  // idle workers promised to earlier jobs that do not fit yet
  for (auto qit = queue_.begin(); qit != queue_.end();) {
    Job& job = jobs_.at(*qit);
    const size_t ranks = static_cast<size_t>(job.plan.spec.workers);
    // A job rolled back after a failure runs on what is left (one node may run several
    // ranks); a first start, or a job restored after a coordinator restart that is still
    // waiting for its nodes to come back, waits for a node per rank.
    const size_t needed = job.recovering && now_ >= job.full_nodes_until ? 1 : ranks;
    const size_t free = idle.size() - std::min(held, idle.size());
    std::string wait;
    if (needed > alive_workers || live_servers.empty()) {
      wait = "cannot be placed on the nodes alive: it needs " + std::to_string(needed) + " workers (" +
             std::to_string(alive_workers) + " alive) and a parameter server (" +
             std::to_string(live_servers.size()) + " alive); it waits for more nodes to register";
    } else if (free < needed) {
      wait = "waiting for " + std::to_string(needed) + " idle workers (" + std::to_string(idle.size()) + " idle" +
             (held > 0 ? ", " + std::to_string(std::min(held, idle.size())) + " of them held for earlier jobs" : "") +
             ")";
      held += needed;
    }
    if (!wait.empty()) {
      job.status.message = job.recovering ? "recovering (" + job.recovery_reason + "): " + wait : wait;
      ++qit;
      continue;
    }
    // The idle workers beyond those held, up to one per rank.
    std::vector<Node*> workers;
    for (size_t i = 0; i < idle.size() && workers.size() < std::min(ranks, free); ++i) {
      if (i >= std::min(held, idle.size())) workers.push_back(idle[i]);
    }
    for (Node* w : workers) idle.erase(std::find(idle.begin(), idle.end(), w));
    std::vector<Node*> servers = live_servers;
    if (servers.size() > job.plan.num_parameters) servers.resize(job.plan.num_parameters);
    job.attempt.ranges = partition_range(job.plan.num_parameters, static_cast<uint32_t>(servers.size())).value();
    job.attempt.workers.clear();
    job.attempt.servers.clear();
    job.attempt.servers_ready.clear();
    job.attempt.progress.clear();
    for (Node* w : workers) w->job = job.status.job_id;
    for (size_t r = 0; r < ranks; ++r) {
      job.attempt.workers.push_back(workers[r % workers.size()]->id);
      job.attempt.progress[static_cast<uint32_t>(r)] = WorkerProgress{job.start.step, 0, false, now_};
    }
    for (size_t i = 0; i < servers.size(); ++i) {
      job.attempt.servers.push_back(servers[i]->id);
      msg::AssignKeyRange a;
      a.spec_text = job.plan.spec.text;
      a.server_index = static_cast<uint32_t>(i);
      a.range_begin = job.attempt.ranges[i].begin;
      a.range_end = job.attempt.ranges[i].end;
      a.num_parameters = job.plan.num_parameters;
      a.num_workers = static_cast<uint32_t>(ranks);
      a.total_steps = job.status.total_steps;
      a.input_features = static_cast<uint32_t>(job.plan.features);
      a.steps_per_epoch = job.plan.steps_per_epoch;
      a.checkpoint_every = job.plan.checkpoint_every;
      a.start_step = job.start.step;
      if (!job.start.values.empty()) {
        a.initial_values.assign(job.start.values.begin() + static_cast<std::ptrdiff_t>(job.attempt.ranges[i].begin),
                                job.start.values.begin() + static_cast<std::ptrdiff_t>(job.attempt.ranges[i].end));
      }
      // The optimizer state's slice: the range of each block (layout: core/optimizer.h).
      const auto& state = job.start.optimizer.values;
      for (size_t b = 0; job.plan.num_parameters > 0 && b < state.size() / job.plan.num_parameters; ++b) {
        const auto block = state.begin() + static_cast<std::ptrdiff_t>(b * job.plan.num_parameters);
        a.optimizer_state.insert(a.optimizer_state.end(), block + static_cast<std::ptrdiff_t>(job.attempt.ranges[i].begin),
                                 block + static_cast<std::ptrdiff_t>(job.attempt.ranges[i].end));
      }
      a.optimizer_steps = job.start.optimizer.steps;
      out.push_back({servers[i]->peer, envelope(job.status.job_id, std::move(a), job.attempt.number)});
    }
    job.status.workers = job.attempt.workers;
    job.status.servers = job.attempt.servers;
    job.status.state = JobState::kStarting;
    job.status.message = "parameter servers are loading their key ranges";
    job.attempt.starting_since = now_;
    qit = queue_.erase(qit);
  }
  return out;
}

Outbox CoordinatorState::start_tasks(Job& job) {
  Outbox out;
  job.attempt.tasks.clear();
  auto shards = partition_range(static_cast<uint64_t>(job.plan.data.train_count), static_cast<uint32_t>(job.attempt.workers.size())).value();
  auto tests = partition_range(static_cast<uint64_t>(job.plan.data.test_count), static_cast<uint32_t>(job.attempt.workers.size())).value();
  std::vector<msg::ServerRange> servers;
  for (size_t i = 0; i < job.attempt.servers.size(); ++i) {
    Node* n = node_by_id(job.attempt.servers[i]);
    servers.push_back({n->id, n->address, job.attempt.ranges[i].begin, job.attempt.ranges[i].end});
  }
  for (size_t r = 0; r < job.attempt.workers.size(); ++r) {
    msg::AssignTask t;
    t.spec_text = job.plan.spec.text;
    t.rank = static_cast<uint32_t>(r);
    t.shard = {job.status.dataset_hash, static_cast<uint32_t>(r), static_cast<uint32_t>(job.attempt.workers.size()),
               shards[r].begin, shards[r].end};
    t.test_begin = tests[r].begin;
    t.test_end = tests[r].end;
    t.steps_per_epoch = job.plan.steps_per_epoch;
    t.servers = servers;
    t.num_parameters = job.plan.num_parameters;
    t.start_step = job.start.step;
    out.push_back({node_by_id(job.attempt.workers[r])->peer, envelope(job.status.job_id, t, job.attempt.number)});
    job.attempt.tasks.push_back(std::move(t));
  }
  Status recorded = recorder_.job_started(job.status, job.attempt.tasks, servers, job.start.step, job.attempt.number);
  if (!recorded.is_ok()) return finish(job, JobState::kFailed, recorded.message());
  job.status.state = JobState::kRunning;
  if (job.status.started_at_ms == 0) job.status.started_at_ms = wall_ms();
  job.status.message = job.recovering ? "training (recovered: " + job.recovery_reason + ")" : "training";
  for (auto& [rank, p] : job.attempt.progress) p.last_step_at = now_;
  log(LogLevel::kInfo, kSelf, job.status.job_id + " running on " + std::to_string(job.attempt.workers.size()) +
                                  " ranks and " + std::to_string(job.attempt.servers.size()) + " parameter servers (attempt " +
                                  std::to_string(job.attempt.number) + ", from step " + std::to_string(job.start.step) + ")");
  return out;
}

Outbox CoordinatorState::stop_attempt(Job& job, const std::string& reason) {
  Outbox out;
  std::set<std::string> involved(job.attempt.workers.begin(), job.attempt.workers.end());
  involved.insert(job.attempt.servers.begin(), job.attempt.servers.end());
  for (const auto& id : involved) {
    Node* n = node_by_id(id);
    if (!n) continue;
    if (n->job == job.status.job_id) n->job.clear();
    if (n->alive) out.push_back({n->peer, envelope(job.status.job_id, msg::StopJob{reason}, job.attempt.number)});
  }
  return out;
}

Outbox CoordinatorState::finish(Job& job, JobState state, const std::string& message) {
  msg::JobStatus& s = job.status;
  const bool was_queued = s.state == JobState::kPending;
  s.state = state;
  s.message = message;
  s.finished_at_ms = wall_ms();
  s.waiting_for.clear();
  if (was_queued) queue_.erase(std::remove(queue_.begin(), queue_.end(), s.job_id), queue_.end());
  Outbox out = stop_attempt(job, message);
  log(state == JobState::kCompleted ? LogLevel::kInfo : LogLevel::kWarn, kSelf,
      s.job_id + " " + msg::to_string(state) + ": " + message);
  Status recorded = recorder_.job_ended(s, job.final_recorded ? s.last_checkpoint : "");
  if (!recorded.is_ok()) log(LogLevel::kError, kSelf, s.job_id + ": " + recorded.message());
  job.start.values.clear();
  job.start.values.shrink_to_fit();
  job.start.optimizer = {};
  // Forget the oldest finished jobs beyond the limit.
  size_t finished = 0;
  for (auto& id : order_) finished += msg::is_terminal(jobs_.at(id).status.state);
  for (auto it = order_.begin(); finished > options_.max_finished_jobs && it != order_.end();) {
    if (msg::is_terminal(jobs_.at(*it).status.state) && *it != s.job_id) {
      jobs_.erase(*it);
      it = order_.erase(it);
      --finished;
    } else {
      ++it;
    }
  }
  return out;
}

void CoordinatorState::rewind(Job& job, uint64_t step) {
  msg::JobStatus& s = job.status;
  Attempt next;  // nothing of the attempt before carries over
  next.number = job.attempt.number + 1;
  job.attempt = std::move(next);
  job.start.step = step;
  job.last_checkpoint_step = step;
  job.final_recorded = false;
  s.state = JobState::kPending;
  s.step = step;
  s.epoch = static_cast<uint32_t>(step / job.plan.steps_per_epoch);
  if (s.accuracy_history.size() > s.epoch) s.accuracy_history.resize(s.epoch);
}

Outbox CoordinatorState::recover(Job& job, const std::string& why) {
  msg::JobStatus& s = job.status;
  if (msg::is_terminal(s.state)) return {};
  if (s.state == JobState::kPending) return {};  // holds no nodes yet: nothing to roll back
  if (s.recoveries >= options_.max_recoveries) {
    return finish(job, JobState::kFailed, why + "; gave up after " + std::to_string(s.recoveries) +
                                              " recoveries (last: " + job.recovery_reason + ")");
  }
  Outbox out = stop_attempt(job, "rolled back: " + why);
  // The live servers answer the stop with what they had applied (jobReleased).
  std::vector<std::string> to_report;
  for (const auto& id : job.attempt.servers) {
    const Node* n = node_by_id(id);
    if (n && n->alive) to_report.push_back(id);
  }
  uint64_t reached = UINT64_MAX;
  for (auto& [rank, p] : job.attempt.progress) reached = std::min(reached, p.step);
  if (reached == UINT64_MAX) reached = job.start.step;
  reached = std::max(reached, job.last_checkpoint_step);  // progress reports lag the servers
  // Back to the newest checkpoint of this job, or to where this run of it started.
  // Without a checkpoint the job goes back to where this run of it started, with the values
  // and optimizer state it started from.
  std::string checkpoint, optimizer_note;
  if (recorder_.enabled() && !s.last_checkpoint.empty()) {
    auto step = load_start(job, s.last_checkpoint, &optimizer_note);
    if (!step.is_ok()) {
      auto more = finish(job, JobState::kFailed, why + "; and its last checkpoint " + s.last_checkpoint +
                                                     " cannot be loaded: " + step.status().message());
      out.insert(out.end(), more.begin(), more.end());
      return out;
    }
    job.start.step = step.value();
    checkpoint = s.last_checkpoint;
  }
  Status recorded = recorder_.job_recovered(s, job.attempt.number, why, reached, job.start.step, checkpoint,
                                            recorder_.enabled() ? to_report : std::vector<std::string>());
  if (!recorded.is_ok()) {
    auto more = finish(job, JobState::kFailed, why + "; and the recovery could not be recorded: " + recorded.message());
    out.insert(out.end(), more.begin(), more.end());
    return out;
  }
  log(LogLevel::kWarn, kSelf, s.job_id + ": " + why + "; rolling back from step " + std::to_string(reached) +
                                  " to step " + std::to_string(job.start.step) +
                                  (checkpoint.empty() ? " (the job's start)" : " (" + checkpoint + ")") +
                                  " as attempt " + std::to_string(job.attempt.number + 1));
  if (recorder_.enabled() && !to_report.empty()) {
    Discard& d = job.discards[job.attempt.number];
    d.back_to_step = job.start.step;
    d.waiting.insert(to_report.begin(), to_report.end());
    d.since = now_;
  }
  rewind(job, job.start.step);
  ++s.recoveries;
  job.recovering = true;
  job.recovery_reason = why;
  s.message = "recovering: " + why + optimizer_note;
  s.waiting_for.clear();
  queue_.insert(queue_.begin(), s.job_id);  // it held nodes: it goes before the jobs that wait
  return out;
}

Outbox CoordinatorState::tick(Clock::time_point now) {
  now_ = now;
  Outbox out;
  for (auto& [id, n] : nodes_) {
    if (!n.alive || now - n.last_seen <= options_.heartbeat_timeout) continue;
    n.alive = false;
    const double ago = std::chrono::duration<double>(now - n.last_seen).count();
    log(LogLevel::kWarn, kSelf, id + " missed its heartbeats for " + fmt("%.1f", ago) + " s; marked dead");
    for (auto& [job_id, job] : jobs_) {
      if (msg::is_terminal(job.status.state) || job.status.state == JobState::kPending) continue;
      bool involved = std::count(job.attempt.workers.begin(), job.attempt.workers.end(), id) +
                      std::count(job.attempt.servers.begin(), job.attempt.servers.end(), id);
      if (!involved) continue;
      auto more = recover(job, std::string(msg::to_string(n.role)) + " " + id + " stopped sending heartbeats (" +
                                   fmt("%.1f", ago) + " s)");
      out.insert(out.end(), more.begin(), more.end());
    }
    n.job.clear();
  }
  for (auto& [job_id, job] : jobs_) {
    // Servers that never answered a rollback's stop (they died, or lost the job): record
    // what the others said.
    for (auto d = job.discards.begin(); d != job.discards.end();) {
      const uint32_t attempt = d->first;
      const bool late = now - d->second.since > options_.heartbeat_timeout;
      ++d;
      if (late) record_discard(job, attempt);
    }
  }
  for (auto& [job_id, job] : jobs_) {
    if (job.status.state != JobState::kStarting || now - job.attempt.starting_since <= options_.start_timeout) continue;
    std::string missing;
    for (const auto& id : job.attempt.servers)
      if (!job.attempt.servers_ready.count(id)) missing += (missing.empty() ? "" : ", ") + id;
    auto more = recover(job, "parameter servers " + missing + " did not confirm their key ranges within " +
                                 fmt("%.0f", std::chrono::duration<double>(options_.start_timeout).count()) + " s");
    out.insert(out.end(), more.begin(), more.end());
  }
  auto scheduled = schedule();
  out.insert(out.end(), scheduled.begin(), scheduled.end());
  return out;
}

std::vector<std::string> CoordinatorState::waiting_for(const Job& job, Clock::time_point now) const {
  std::vector<std::string> out;
  auto secs = [&](Clock::duration d) { return fmt("%.1f", std::chrono::duration<double>(d).count()); };
  auto silent = [&](const std::string& id) -> std::string {
    auto it = nodes_.find(id);
    if (it == nodes_.end()) return "unknown node";
    if (!it->second.alive) return "dead (no heartbeat for " + secs(now - it->second.last_seen) + " s)";
    if (now - it->second.last_seen > 2 * options_.heartbeat_interval) {
      return "silent: no heartbeat for " + secs(now - it->second.last_seen) + " s";
    }
    return "";
  };
  if (job.status.state == JobState::kStarting) {
    for (const auto& id : job.attempt.servers) {
      if (job.attempt.servers_ready.count(id)) continue;
      std::string why = silent(id);
      out.push_back(id + ": has not confirmed its key range for " + secs(now - job.attempt.starting_since) + " s" +
                    (why.empty() ? "" : "; " + why));
    }
    return out;
  }
  if (job.status.state != JobState::kRunning) return out;
  Clock::time_point last_step_at{};
  uint64_t slowest = UINT64_MAX;
  for (const auto& [rank, p] : job.attempt.progress) {
    if (p.done) continue;
    last_step_at = std::max(last_step_at, p.last_step_at);
    slowest = std::min(slowest, p.step);
  }
  if (slowest == UINT64_MAX || now - last_step_at < options_.stall_after) return out;  // moving, or done
  const std::string stalled = "no step for " + secs(now - last_step_at) + " s";
  // First the nodes that went quiet; if none did, the ranks that are furthest behind.
  for (const auto& id : job.attempt.servers) {
    std::string why = silent(id);
    if (!why.empty()) out.push_back(id + " (parameter server): " + why);
  }
  for (const auto& [rank, p] : job.attempt.progress) {
    const std::string& id = job.attempt.workers[rank];
    std::string why = silent(id);
    if (!why.empty()) out.push_back(id + " (rank " + std::to_string(rank) + ", step " + std::to_string(p.step) + "): " + why);
  }
  if (out.empty()) {
    for (const auto& [rank, p] : job.attempt.progress) {
      if (p.done || p.step != slowest) continue;
      out.push_back(job.attempt.workers[rank] + " (rank " + std::to_string(rank) + "): at step " + std::to_string(p.step) +
                    ", " + stalled);
    }
  } else {
    out.insert(out.begin(), stalled);
  }
  return out;
}

msg::StatusReply CoordinatorState::status(const std::string& job_id, bool include_nodes,
                                          Clock::time_point now) const {
  msg::StatusReply r;
  r.store_path = store_path_;
  for (const auto& id : order_) {
    if (!job_id.empty() && id != job_id) continue;
    const Job& job = jobs_.at(id);
    r.jobs.push_back(job.status);
    r.jobs.back().waiting_for = waiting_for(job, now);
  }
  if (include_nodes) {
    for (const auto& [id, n] : nodes_) {
      r.nodes.push_back({id, n.role, n.address, n.alive, !n.job.empty(),
                         std::chrono::duration_cast<std::chrono::milliseconds>(now - n.last_seen).count(),
                         n.host, n.pid});
    }
  }
  return r;
}

}  // namespace custody::actors
