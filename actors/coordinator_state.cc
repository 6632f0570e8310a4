#include "actors/coordinator_state.h"

#include <algorithm>
#include <cstdio>

#include "core/dataset.h"
#include "core/hash.h"
#include "storage/queries.h"
#include "core/log.h"
#include "core/model.h"
#include "core/partition.h"

namespace custody::actors {

using msg::Envelope;
using msg::JobState;

namespace {
const char* kSelf = "coordinator";

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}
}  // namespace

CoordinatorState::CoordinatorState(CoordinatorOptions options, storage::CustodyStore* store,
                                   std::string store_path)
    : options_(options), recorder_(store), store_path_(std::move(store_path)), rng_(std::random_device{}()) {}

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

Envelope CoordinatorState::envelope(const std::string& job_id, msg::Body body) const {
  Envelope e;
  e.sender = kSelf;
  e.job_id = job_id;
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

Outbox CoordinatorState::handle(const std::string& peer, const Envelope& in, Clock::time_point now) {
  auto reply = [&](msg::Body body) {
    Envelope e = envelope(in.job_id, std::move(body));
    e.request_id = in.request_id;
    return Outbox{{peer, std::move(e)}};
  };
  auto error = [&](Status s) { return Outbox{{peer, msg::make_error(in, kSelf, s)}}; };

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
  if (auto* m = in.get<msg::UsageRequest>()) {
    if (!recorder_.enabled()) return error(failed_precondition("this coordinator keeps no custody store (--store)"));
    // Others' usage is for auditors and admins; everyone else sees their own calls.
    const bool all = !options_.auth || caller->role == "auditor" || caller->role == "admin";
    auto summary = storage::usage(*recorder_.store(), m->model, all ? "" : "principal:" + caller->principal,
                                  m->since_ms, m->until_ms);
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
  return on_node_report(*node, in);
}

Outbox CoordinatorState::handle_export(const std::string& peer, const Envelope& in, const msg::ExportRequest& m) {
  auto exported = recorder_.export_checkpoint(m);
  if (!exported.is_ok()) return {{peer, msg::make_error(in, kSelf, exported.status())}};
  log(LogLevel::kInfo, kSelf, "exported " + exported->checkpoint + " to " + m.principal + " (" + exported->usage_id + ")");
  Envelope e = envelope(in.job_id, std::move(exported).value());
  e.request_id = in.request_id;
  return {{peer, std::move(e)}};
}

namespace {

// Which roles may send which requests (admin may send all).
bool allowed(const std::string& role, const msg::Body& body) {
  if (role == "admin") return true;
  const bool node_message = std::holds_alternative<msg::Register>(body) ||
                            std::holds_alternative<msg::Heartbeat>(body) ||
                            std::holds_alternative<msg::KeyRangeReady>(body) ||
                            std::holds_alternative<msg::Progress>(body) ||
                            std::holds_alternative<msg::EpochEval>(body) ||
                            std::holds_alternative<msg::TaskDone>(body) ||
                            std::holds_alternative<msg::CheckpointShard>(body) ||
                            std::holds_alternative<msg::Error>(body);
  if (node_message) return role == "node";
  if (std::holds_alternative<msg::StatusRequest>(body) || std::holds_alternative<msg::UsageRequest>(body)) {
    return true;  // usage answers are filtered by role
  }
  if (std::holds_alternative<msg::SubmitJob>(body) || std::holds_alternative<msg::CancelJob>(body) ||
      std::holds_alternative<msg::ResumeJob>(body)) {
    return role == "submitter";
  }
  if (std::holds_alternative<msg::Predict>(body) || std::holds_alternative<msg::ExportRequest>(body)) {
    return role == "consumer" || role == "submitter";
  }
  return false;  // addPrincipal and anything new: admin only
}

const std::vector<std::string>& roles() {
  static const std::vector<std::string> kRoles{"submitter", "consumer", "auditor", "admin", "node"};
  return kRoles;
}

}  // namespace

Result<Caller> CoordinatorState::authorize(const Envelope& in) {
  if (!options_.auth) return Caller{in.sender, "admin"};
  if (in.token.empty()) {
    return Status(ErrorCode::kPermissionDenied, "this cluster requires a token (--token-file, or token_file in the "
                                                "CLI config); an admin creates one with `custody principal add`");
  }
  const std::string hash = sha256_hex(in.token);
  auto it = credentials_.find(hash);
  if (it == credentials_.end()) {
    auto e = recorder_.enabled() ? recorder_.store()->entity("credential:" + hash)
                                 : Result<std::optional<storage::Record>>(std::optional<storage::Record>());
    if (!e.is_ok()) return e.status();
    if (!e.value()) return Status(ErrorCode::kPermissionDenied, "the token is not known to this cluster");
    it = credentials_.emplace(hash, Caller{e.value()->body["principal"], e.value()->body["role"]}).first;
  }
  if (!allowed(it->second.role, in.body)) {
    return Status(ErrorCode::kPermissionDenied, "principal " + it->second.principal + " (" + it->second.role +
                                                    ") may not send '" + msg::body_name(in.body) + "'");
  }
  return it->second;
}

Status CoordinatorState::add_credential(const std::string& name, const std::string& role, const std::string& token,
                                        const std::string& by) {
  const std::string hash = sha256_hex(token);
  CUSTODY_RETURN_IF_ERROR(recorder_.principal_added(name, role, hash, by));
  credentials_[hash] = Caller{name, role};
  return Status::ok();
}

Outbox CoordinatorState::on_add_principal(const Envelope& in, const msg::AddPrincipal& m, const std::string& peer) {
  auto error = [&](Status s) { return Outbox{{peer, msg::make_error(in, kSelf, s)}}; };
  if (!options_.auth) {
    return error(failed_precondition("this coordinator runs without --auth, so tokens would not be checked; "
                                     "start it with --auth to use principals"));
  }
  if (std::find(roles().begin(), roles().end(), m.role) == roles().end()) {
    return error(invalid_argument("unknown role '" + m.role + "' (submitter, consumer, auditor, admin or node)"));
  }
  if (m.name.empty() || m.name.find_first_of("|:/ ") != std::string::npos) {
    return error(invalid_argument("a principal's name must be non-empty, without '|', ':', '/' or spaces"));
  }
  auto token = random_token();
  if (!token.is_ok()) return error(token.status());
  auto by = authorize(in);
  Status s = add_credential(m.name, m.role, token.value(), by.is_ok() ? by->principal : "?");
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
  if (existing && !existing->job.empty()) {
    auto it = jobs_.find(existing->job);
    if (it != jobs_.end() && !msg::is_terminal(it->second.status.state)) {
      auto more = finish(it->second, JobState::kFailed, "node " + id + " restarted during the job");
      out.insert(out.end(), more.begin(), more.end());
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
  auto scheduled = schedule();
  out.insert(out.end(), scheduled.begin(), scheduled.end());
  return out;
}

Outbox CoordinatorState::on_submit(const Envelope& in, const msg::SubmitJob& m, const std::string& peer) {
  auto error = [&](Status s) { return Outbox{{peer, msg::make_error(in, kSelf, s)}}; };
  const std::string origin = m.origin.empty() ? "job file" : m.origin;
  auto spec = parse_job_spec(m.spec_text, origin);
  if (!spec.is_ok()) return error(spec.status());
  // The coordinator reads the data once, to split it and to pin its identity.
  auto data = load_data(spec->data);
  if (!data.is_ok()) {
    return error(Status(data.status().code(), data.status().message() +
                                                  " (the coordinator reads the data set named in the "
                                                  "job file to split it among the workers)"));
  }
  auto model = Model::make(spec->layer_sizes(data->train.features));
  if (!model.is_ok()) return error(model.status());
  for (uint8_t label : data->train.labels) {
    if (label >= spec->classes) {
      return error(invalid_argument(origin + ": the training labels go up to " + std::to_string(label) +
                                    " but 'model.classes' is " + std::to_string(spec->classes)));
    }
  }
  const int64_t min_shard = data->train.count / spec->workers;
  if (min_shard < spec->batch_size) {
    return error(invalid_argument(origin + ": 'job.batch_size' (" + std::to_string(spec->batch_size) +
                                  ") is larger than each worker's shard (" + std::to_string(min_shard) +
                                  " samples); lower the batch size or the number of workers"));
  }
  if (data->test.count < spec->workers) {
    return error(invalid_argument(origin + ": the test set has fewer samples than 'job.workers'"));
  }
  Job job;
  if (!spec->init_from.empty()) {
    if (!recorder_.enabled()) {
      return error(failed_precondition(origin + ": 'job.init_from' needs a coordinator with a custody store (--store)"));
    }
    auto id = storage::resolve_checkpoint(*recorder_.store(), spec->init_from);
    if (!id.is_ok()) return error(Status(id.status().code(), origin + ": 'job.init_from': " + id.status().message()));
    storage::json manifest;
    auto values = storage::load_checkpoint(*recorder_.store(), id.value(), &manifest);
    if (!values.is_ok()) return error(values.status());
    if (manifest["layer_sizes"] != model->layer_sizes()) {
      return error(invalid_argument(origin + ": 'job.init_from' names " + id.value() + ", a model of layers " +
                                    manifest["layer_sizes"].dump() + ", but this job's model has layers " +
                                    storage::json(model->layer_sizes()).dump()));
    }
    job.initial_values = std::move(values).value();
    job.init_checkpoint = id.value();
  }
  job.spec = spec.value();
  job.layer_sizes = model->layer_sizes();
  job.train_count = data->train.count;
  job.test_count = data->test.count;
  job.features = data->train.features;
  job.num_parameters = model->num_parameters();
  job.steps_per_epoch = static_cast<uint64_t>(min_shard / spec->batch_size);
  job.checkpoint_every = spec->checkpoint_every_steps > 0 ? static_cast<uint64_t>(spec->checkpoint_every_steps)
                                                          : job.steps_per_epoch;
  msg::JobStatus& s = job.status;
  s.job_id = new_job_id();
  s.name = spec->name;
  s.state = JobState::kPending;
  s.submitter = m.submitter.empty() ? "anonymous" : m.submitter;
  s.epochs = static_cast<uint32_t>(spec->epochs);
  s.total_steps = job.steps_per_epoch * static_cast<uint64_t>(spec->epochs);
  s.submitted_at_ms = wall_ms();
  s.dataset_hash = data->version_hash;
  s.consistency = to_string(spec->consistency);
  s.message = "waiting for " + std::to_string(spec->workers) + " idle workers and a parameter server";
  const std::string id = s.job_id;
  Status recorded = recorder_.job_submitted(
      s, job.spec, {data->version_hash, data->train.content_hash, data->test.content_hash, data->train.count, data->test.count},
      job.layer_sizes, job.init_checkpoint);
  if (!recorded.is_ok()) {
    return error(Status(recorded.code(), recorded.message() + "; the job was not accepted"));
  }
  log(LogLevel::kInfo, kSelf, "accepted " + id + " '" + s.name + "' from " + s.submitter + ": " +
                                  std::to_string(job.num_parameters) + " parameters, " +
                                  std::to_string(spec->workers) + " workers, " + s.consistency + ", data " +
                                  data->version_hash.substr(0, 12));
  jobs_[id] = std::move(job);
  queue_.push_back(id);
  order_.push_back(id);
  Envelope ack = envelope(id, msg::JobAccepted{id, "queued"});
  ack.request_id = in.request_id;
  Outbox out{{peer, std::move(ack)}};
  auto scheduled = schedule();
  out.insert(out.end(), scheduled.begin(), scheduled.end());
  return out;
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

Outbox CoordinatorState::on_node_report(const Node& node, const Envelope& in) {
  auto it = jobs_.find(in.job_id);
  if (it == jobs_.end() || msg::is_terminal(it->second.status.state)) {
    return {};  // a late report of a job that has ended: nothing to do
  }
  Job& job = it->second;
  msg::JobStatus& s = job.status;
  if (auto* m = in.get<msg::CheckpointShard>()) return on_checkpoint_shard(job, node, *m);
  if (auto* m = in.get<msg::KeyRangeReady>()) {
    job.servers_ready.insert(node.id);
    (void)m;
    if (s.state == JobState::kStarting && job.servers_ready.size() == job.servers.size()) {
      return start_tasks(job);
    }
    return {};
  }
  if (auto* m = in.get<msg::Progress>()) {
    auto& p = job.progress[node.id];
    p.step = m->step;
    if (m->elapsed_us > 0) p.rate = double(m->samples) * 1e6 / double(m->elapsed_us);
    if (m->samples > 0) {
      double loss = m->loss_sum / double(m->samples);
      job.loss_ema = job.loss_ema < 0 ? loss : 0.7 * job.loss_ema + 0.3 * loss;
    }
    uint64_t min_step = UINT64_MAX;
    double rate = 0;
    for (auto& [id, wp] : job.progress) {
      min_step = std::min(min_step, wp.step);
      rate += wp.rate;
    }
    s.step = min_step;
    s.samples_per_sec = rate;
    s.loss = job.loss_ema;
    return {};
  }
  if (auto* m = in.get<msg::EpochEval>()) {
    auto& reports = job.evals[m->epoch];
    reports.push_back(*m);
    if (reports.size() == job.workers.size()) {
      uint64_t correct = 0, total = 0;
      double loss = 0;
      for (auto& r : reports) {
        correct += r.correct;
        total += r.total;
        loss += r.loss_sum;
      }
      s.epoch = std::max(s.epoch, m->epoch);
      s.test_accuracy = total ? double(correct) / double(total) : 0;
      s.test_loss = total ? loss / double(total) : 0;
      s.accuracy_history.push_back(s.test_accuracy);
      job.evals.erase(m->epoch);
      log(LogLevel::kInfo, kSelf, s.job_id + " epoch " + std::to_string(m->epoch) + "/" +
                                      std::to_string(s.epochs) + ": test accuracy " +
                                      fmt("%.4f", s.test_accuracy) + ", test loss " + fmt("%.4f", s.test_loss) +
                                      ", " + fmt("%.0f", s.samples_per_sec) + " samples/s");
    }
    return {};
  }
  if (auto* m = in.get<msg::TaskDone>()) {
    job.progress[node.id].done = true;
    job.progress[node.id].step = m->steps;
    uint64_t min_step = UINT64_MAX;
    for (auto& [id, wp] : job.progress) min_step = std::min(min_step, wp.step);
    s.step = min_step;
    return maybe_complete(job);
  }
  if (auto* m = in.get<msg::Error>()) {
    return finish(job, JobState::kFailed, node.id + " reported: " + m->message);
  }
  return {};
}

Outbox CoordinatorState::maybe_complete(Job& job) {
  for (auto& w : job.workers)
    if (!job.progress[w].done) return {};
  if (!job.evals.empty()) return {};
  if (recorder_.enabled() && !job.final_recorded) return {};  // the final checkpoint is on its way
  return finish(job, JobState::kCompleted, "final test accuracy " + fmt("%.4f", job.status.test_accuracy));
}

Outbox CoordinatorState::on_checkpoint_shard(Job& job, const Node& node, const msg::CheckpointShard& m) {
  if (!recorder_.enabled()) return {};  // no store: nothing to keep
  auto server = std::find(job.servers.begin(), job.servers.end(), node.id);
  if (server == job.servers.end()) return {};
  const KeyRange& range = job.ranges[server - job.servers.begin()];
  if (m.range_begin != range.begin || m.values.size() != range.size()) {
    return finish(job, JobState::kFailed, node.id + " sent a checkpoint shard that is not its key range");
  }
  auto& pending = job.shards[m.step];
  pending[node.id] = m;
  if (pending.size() < job.servers.size()) return {};

  std::vector<float> values(job.num_parameters);
  std::map<std::string, WorkerContribution> contributions;
  bool final = false;
  for (const auto& [server_id, shard] : pending) {
    std::copy(shard.values.begin(), shard.values.end(), values.begin() + static_cast<std::ptrdiff_t>(shard.range_begin));
    final = final || shard.final;
    for (const auto& c : shard.contributions) {
      // Every server sees each accepted push once: steps and samples are the same on each;
      // norms and rejections add up over the ranges.
      WorkerContribution& w = contributions[c.worker];
      w.accepted = std::max(w.accepted, c.accepted);
      w.samples = std::max(w.samples, c.samples);
      w.rejected += c.rejected;
      w.update_norm_sum += c.update_norm_sum;
      w.staleness_max = std::max(w.staleness_max, c.staleness_max);
      w.staleness_sum = std::max(w.staleness_sum, c.staleness_sum);
      w.interval_begin = job.last_checkpoint_step;
      w.interval_end = m.step;
    }
  }
  for (size_t r = 0; r < job.workers.size(); ++r) {
    auto it = contributions.find(job.workers[r]);
    if (it != contributions.end() && r < job.tasks.size()) it->second.shard = job.tasks[r].shard;
  }
  job.shards.erase(m.step);
  storage::CheckpointSpec spec;
  spec.job = job.status.job_id;
  spec.step = m.step;
  spec.epoch = static_cast<uint32_t>(m.step / job.steps_per_epoch);
  spec.parent = job.status.last_checkpoint.empty() ? job.init_checkpoint : job.status.last_checkpoint;
  spec.final = final;
  auto id = recorder_.checkpoint(job.status, job.layer_sizes, values, spec, contributions);
  if (!id.is_ok()) {
    return finish(job, JobState::kFailed,
                  "could not record the checkpoint of step " + std::to_string(m.step) + ": " + id.status().message());
  }
  job.status.last_checkpoint = id.value();
  job.last_checkpoint_step = m.step;
  log(LogLevel::kInfo, kSelf, job.status.job_id + " checkpoint " + id.value() + " at step " + std::to_string(m.step) +
                                  (final ? " (final)" : ""));
  if (!final) return {};
  job.final_recorded = true;
  return maybe_complete(job);
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
  storage::json manifest;
  auto values = storage::load_checkpoint(*recorder_.store(), s.last_checkpoint, &manifest);
  if (!values.is_ok()) return error(values.status());
  const uint64_t step = manifest["step"];
  Status recorded = recorder_.job_resumed(s, s.last_checkpoint, step, m.principal);
  if (!recorded.is_ok()) return error(recorded);
  job.initial_values = std::move(values).value();
  job.start_step = step;
  job.last_checkpoint_step = step;
  job.final_recorded = false;
  job.shards.clear();
  job.evals.clear();
  job.progress.clear();
  s.state = JobState::kPending;
  s.message = "resuming from " + s.last_checkpoint + " at step " + std::to_string(step);
  s.finished_at_ms = 0;
  s.step = step;
  s.epoch = static_cast<uint32_t>(step / job.steps_per_epoch);
  if (s.accuracy_history.size() > s.epoch) s.accuracy_history.resize(s.epoch);
  queue_.push_back(in.job_id);
  log(LogLevel::kInfo, kSelf, in.job_id + " " + s.message);
  Envelope ack = envelope(in.job_id, msg::JobAccepted{in.job_id, s.message});
  ack.request_id = in.request_id;
  Outbox out{{peer, std::move(ack)}};
  auto scheduled = schedule();
  out.insert(out.end(), scheduled.begin(), scheduled.end());
  return out;
}

Outbox CoordinatorState::schedule() {
  Outbox out;
  for (auto qit = queue_.begin(); qit != queue_.end();) {
    Job& job = jobs_.at(*qit);
    std::vector<Node*> workers, servers;
    for (auto& [id, n] : nodes_) {
      if (!n.alive || !n.job.empty()) continue;
      if (n.role == msg::NodeRole::kWorker && workers.size() < size_t(job.spec.workers)) workers.push_back(&n);
    }
    // Servers are shared by jobs: every live one takes a range of every job.
    for (auto& [id, n] : nodes_)
      if (n.alive && n.role == msg::NodeRole::kParameterServer) servers.push_back(&n);
    if (workers.size() < size_t(job.spec.workers) || servers.empty()) {
      job.status.message = "waiting for " + std::to_string(job.spec.workers) + " idle workers (" +
                           std::to_string(workers.size()) + " idle) and a parameter server (" +
                           std::to_string(servers.size()) + " alive)";
      break;  // first come, first served: later jobs wait behind this one
    }
    if (servers.size() > job.num_parameters) servers.resize(job.num_parameters);
    job.ranges = partition_range(job.num_parameters, static_cast<uint32_t>(servers.size())).value();
    job.workers.clear();
    job.servers.clear();
    for (Node* w : workers) {
      w->job = job.status.job_id;
      job.workers.push_back(w->id);
      job.progress[w->id] = WorkerProgress{};
    }
    for (size_t i = 0; i < servers.size(); ++i) {
      job.servers.push_back(servers[i]->id);
      msg::AssignKeyRange a;
      a.spec_text = job.spec.text;
      a.server_index = static_cast<uint32_t>(i);
      a.range_begin = job.ranges[i].begin;
      a.range_end = job.ranges[i].end;
      a.num_parameters = job.num_parameters;
      a.num_workers = static_cast<uint32_t>(workers.size());
      a.total_steps = job.status.total_steps;
      a.input_features = static_cast<uint32_t>(job.features);
      a.steps_per_epoch = job.steps_per_epoch;
      a.checkpoint_every = job.checkpoint_every;
      a.start_step = job.start_step;
      if (!job.initial_values.empty()) {
        a.initial_values.assign(job.initial_values.begin() + static_cast<std::ptrdiff_t>(job.ranges[i].begin),
                                job.initial_values.begin() + static_cast<std::ptrdiff_t>(job.ranges[i].end));
      }
      out.push_back({servers[i]->peer, envelope(job.status.job_id, std::move(a))});
    }
    job.status.workers = job.workers;
    job.status.servers = job.servers;
    job.status.state = JobState::kStarting;
    job.status.message = "parameter servers are loading their key ranges";
    qit = queue_.erase(qit);
  }
  return out;
}

Outbox CoordinatorState::start_tasks(Job& job) {
  Outbox out;
  job.tasks.clear();
  auto shards = partition_range(static_cast<uint64_t>(job.train_count), static_cast<uint32_t>(job.workers.size())).value();
  auto tests = partition_range(static_cast<uint64_t>(job.test_count), static_cast<uint32_t>(job.workers.size())).value();
  std::vector<msg::ServerRange> servers;
  for (size_t i = 0; i < job.servers.size(); ++i) {
    Node* n = node_by_id(job.servers[i]);
    servers.push_back({n->id, n->address, job.ranges[i].begin, job.ranges[i].end});
  }
  for (size_t r = 0; r < job.workers.size(); ++r) {
    msg::AssignTask t;
    t.spec_text = job.spec.text;
    t.rank = static_cast<uint32_t>(r);
    t.shard = {job.status.dataset_hash, static_cast<uint32_t>(r), static_cast<uint32_t>(job.workers.size()),
               shards[r].begin, shards[r].end};
    t.test_begin = tests[r].begin;
    t.test_end = tests[r].end;
    t.steps_per_epoch = job.steps_per_epoch;
    t.servers = servers;
    t.num_parameters = job.num_parameters;
    t.start_step = job.start_step;
    out.push_back({node_by_id(job.workers[r])->peer, envelope(job.status.job_id, t)});
    job.tasks.push_back(std::move(t));
  }
  Status recorded = recorder_.job_started(job.status, job.tasks, servers, job.start_step);
  if (!recorded.is_ok()) return finish(job, JobState::kFailed, recorded.message());
  job.status.state = JobState::kRunning;
  job.status.started_at_ms = wall_ms();
  job.status.message = "training";
  log(LogLevel::kInfo, kSelf, job.status.job_id + " running on " + std::to_string(job.workers.size()) +
                                  " workers and " + std::to_string(job.servers.size()) + " parameter servers");
  return out;
}

Outbox CoordinatorState::finish(Job& job, JobState state, const std::string& message) {
  Outbox out;
  msg::JobStatus& s = job.status;
  const bool was_queued = s.state == JobState::kPending;
  s.state = state;
  s.message = message;
  s.finished_at_ms = wall_ms();
  if (was_queued) queue_.erase(std::remove(queue_.begin(), queue_.end(), s.job_id), queue_.end());
  std::vector<std::string> involved = job.workers;
  involved.insert(involved.end(), job.servers.begin(), job.servers.end());
  for (const auto& id : involved) {
    Node* n = node_by_id(id);
    if (!n) continue;
    if (n->job == s.job_id) n->job.clear();
    if (n->alive) out.push_back({n->peer, envelope(s.job_id, msg::StopJob{message})});
  }
  log(state == JobState::kCompleted ? LogLevel::kInfo : LogLevel::kWarn, kSelf,
      s.job_id + " " + msg::to_string(state) + ": " + message);
  Status recorded = recorder_.job_ended(s, job.final_recorded ? s.last_checkpoint : "");
  if (!recorded.is_ok()) log(LogLevel::kError, kSelf, s.job_id + ": " + recorded.message());
  job.initial_values.clear();
  job.initial_values.shrink_to_fit();
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
  auto scheduled = schedule();
  out.insert(out.end(), scheduled.begin(), scheduled.end());
  return out;
}

Outbox CoordinatorState::tick(Clock::time_point now) {
  Outbox out;
  for (auto& [id, n] : nodes_) {
    if (!n.alive || now - n.last_seen <= options_.heartbeat_timeout) continue;
    n.alive = false;
    const double ago = std::chrono::duration<double>(now - n.last_seen).count();
    log(LogLevel::kWarn, kSelf, id + " missed its heartbeats for " + fmt("%.1f", ago) + " s; marked dead");
    for (auto& [job_id, job] : jobs_) {
      if (msg::is_terminal(job.status.state)) continue;
      bool involved = std::count(job.workers.begin(), job.workers.end(), id) +
                      std::count(job.servers.begin(), job.servers.end(), id);
      if (!involved) continue;
      auto more = finish(job, JobState::kFailed,
                         std::string(msg::to_string(n.role)) + " " + id + " stopped sending heartbeats (" +
                             fmt("%.1f", ago) + " s); the job cannot continue without it");
      out.insert(out.end(), more.begin(), more.end());
    }
    n.job.clear();
  }
  auto scheduled = schedule();
  out.insert(out.end(), scheduled.begin(), scheduled.end());
  return out;
}

msg::StatusReply CoordinatorState::status(const std::string& job_id, bool include_nodes,
                                          Clock::time_point now) const {
  msg::StatusReply r;
  r.store_path = store_path_;
  for (const auto& id : order_) {
    if (!job_id.empty() && id != job_id) continue;
    r.jobs.push_back(jobs_.at(id).status);
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
