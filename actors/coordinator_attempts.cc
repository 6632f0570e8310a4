// CoordinatorState: attempts. Scheduling pending jobs onto nodes, starting an attempt, its
// progress and checkpoints, and its end: completion, failure, cancellation (a rollback to
// the last checkpoint as the next attempt is coordinator_recovery.cc's).
#include "actors/coordinator_state.h"

#include <algorithm>

#include "actors/checkpoint_assembly.h"
#include "core/log.h"
#include "core/partition.h"

namespace custody::actors {

using msg::Envelope;
using msg::JobState;

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
  std::vector<std::pair<std::string, std::string>> to_fail;  // job, why: no live worker can run a rank
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
    // Each rank on a worker that has not said it cannot run it (coordinator_recovery.cc).
    const RankPlacement placement = place_ranks(job, workers);
    if (!placement.unplaceable.empty()) {
      const std::string& why = placement.unplaceable;
      to_fail.push_back({job.status.job_id, job.recovery_reason.empty() ? why : job.recovery_reason + "; " + why});
      ++qit;
      continue;
    }
    if (!placement.waiting.empty()) {
      const std::string& wait = placement.waiting;
      job.status.message = job.recovering ? "recovering (" + job.recovery_reason + "): " + wait : wait;
      ++qit;
      continue;
    }
    std::vector<Node*> servers = live_servers;
    if (servers.size() > job.plan.num_parameters) servers.resize(job.plan.num_parameters);
    job.attempt.ranges = partition_range(job.plan.num_parameters, static_cast<uint32_t>(servers.size())).value();
    // The data plane is chosen per attempt: a recovery may move the job onto other hosts.
    std::vector<DataPlaneNode> on_workers, on_servers;
    for (Node* w : workers) on_workers.push_back({w->id, w->host, ""});
    for (Node* sv : servers) on_servers.push_back({sv->id, sv->host, sv->address});
    const DataPlaneChoice plane = choose_data_plane(options_.data_plane_sealing, on_workers, on_servers);
    if (plane.sealed) {
      auto keys = AttemptKeys::make(static_cast<uint32_t>(ranks), job.attempt.ranges);
      if (!keys.is_ok()) {  // never in clear instead: it waits
        job.status.message = "waiting: no keys for its sealed data plane: " + keys.status().message();
        ++qit;
        continue;
      }
      job.attempt.keys = std::move(keys).value();
    }
    if (plane.overridden) {
      log(LogLevel::kWarn, kSelf, "DATA PLANE SEALED ANYWAY: " + job.status.job_id + " spans hosts, so its pushes and "
                                  "pulls are sealed although data_plane_sealing = off (never in clear between hosts): " +
                                  plane.how);
    }
    job.status.data_plane_sealed = plane.sealed;
    job.status.data_plane = plane.how;
    for (Node* w : workers) idle.erase(std::find(idle.begin(), idle.end(), w));
    // The attempt is a fresh one (a new job's, or rewind()'s): placement starts empty.
    for (Node* w : workers) w->job = job.status.job_id;
    for (size_t r = 0; r < ranks; ++r) {
      job.attempt.workers.push_back(placement.nodes[r] ? placement.nodes[r]->id : workers[r % workers.size()]->id);
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
      a.rank_nodes = job.attempt.workers;
      if (job.plan.privacy) a.noise_std = job.plan.privacy->noise_std_of_mean();
      if (job.attempt.keys) job.attempt.keys->fill(a, i);
      out.push_back({servers[i]->peer, envelope(job.status.job_id, std::move(a), job.attempt.number)});
    }
    job.status.workers = job.attempt.workers;
    job.status.servers = job.attempt.servers;
    job.status.state = JobState::kStarting;
    job.status.message = job.recovering ? "recovering (" + job.recovery_reason + "): parameter servers are loading "
                                                                                 "their key ranges"
                                        : "parameter servers are loading their key ranges";
    job.attempt.starting_since = now_;
    qit = queue_.erase(qit);
  }
  for (const auto& [id, why] : to_fail) {
    auto more = finish(jobs_.at(id), JobState::kFailed, why);
    out.insert(out.end(), more.begin(), more.end());
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
  size_t shared_pairs = 0;
  for (size_t r = 0; r < job.attempt.workers.size(); ++r) {
    msg::AssignTask t;
    t.spec_text = job.plan.spec.text;
    t.rank = static_cast<uint32_t>(r);
    t.shard = {job.plan.data.version_hash, static_cast<uint32_t>(r), static_cast<uint32_t>(job.attempt.workers.size()),
               shards[r].begin, shards[r].end};
    t.test_begin = tests[r].begin;
    t.test_end = tests[r].end;
    t.steps_per_epoch = job.plan.steps_per_epoch;
    t.servers = servers;
    // Shared memory where the rank's worker and a server are separate processes of one host
    // (same kernel and network namespace) and the attempt is in clear; a sealed attempt keeps
    // its sockets, a --with-ps worker reaches its own server in-process without copies.
    const Node* worker = node_by_id(job.attempt.workers[r]);
    for (size_t i = 0; i < t.servers.size(); ++i) {
      const Node* server = node_by_id(job.attempt.servers[i]);
      t.servers[i].shared_memory = options_.data_plane_shared_memory && !job.attempt.keys && worker && server &&
                                   !worker->host_id.empty() && worker->host_id == server->host_id &&
                                   worker->pid != server->pid;
      shared_pairs += t.servers[i].shared_memory;
    }
    t.num_parameters = job.plan.num_parameters;
    t.start_step = job.start.step;
    if (r < job.plan.data.train_digests.size()) t.train_digest = job.plan.data.train_digests[r];
    if (r < job.plan.data.test_digests.size()) t.test_digest = job.plan.data.test_digests[r];
    t.train_records = static_cast<uint64_t>(job.plan.data.train_count);
    t.excluded = excluded_in(job.plan.data.excluded, shards[r].begin, shards[r].end);
    job.attempt.tasks.push_back(t);  // kept without the keys
    if (job.attempt.keys) job.attempt.keys->fill(t);
    out.push_back({node_by_id(job.attempt.workers[r])->peer, envelope(job.status.job_id, std::move(t), job.attempt.number)});
  }
  if (shared_pairs > 0 && job.status.data_plane.find("shared memory") == std::string::npos) {
    job.status.data_plane += "; blocks through shared memory for " + std::to_string(shared_pairs) + " of " +
                             std::to_string(job.attempt.workers.size() * servers.size()) +
                             " (rank, server) pairs on one host";
  }
  // Which key each server checks each rank with, by fingerprint: the contributions name them too.
  std::vector<std::map<std::string, std::string>> fingerprints(job.attempt.keys ? job.attempt.workers.size() : 0);
  for (size_t r = 0; r < fingerprints.size(); ++r) {
    for (size_t i = 0; i < servers.size(); ++i)
      fingerprints[r][servers[i].node_id] = job.attempt.keys->push_key_fingerprint(static_cast<uint32_t>(r), i);
  }
  Status recorded = recorder_.job_started(job.status, job.attempt.tasks, servers, job.start.step, job.attempt.number,
                                          fingerprints);
  if (!recorded.is_ok()) return finish(job, JobState::kFailed, recorded.message());
  job.status.state = JobState::kRunning;
  if (job.status.started_at_ms == 0) job.status.started_at_ms = wall_ms();
  job.status.message = job.recovering ? "training (recovered: " + job.recovery_reason + ")" : "training";
  for (auto& [rank, p] : job.attempt.progress) p.last_step_at = now_;
  log(LogLevel::kInfo, kSelf, job.status.job_id + " running on " + std::to_string(job.attempt.workers.size()) +
                                  " ranks and " + std::to_string(job.attempt.servers.size()) + " parameter servers (attempt " +
                                  std::to_string(job.attempt.number) + ", from step " + std::to_string(job.start.step) +
                                  (job.attempt.keys ? ", data plane sealed" : ", data plane in clear") + ")");
  return out;
}

Outbox CoordinatorState::on_node_report(const Node& node, const Envelope& in, SteadyClock::time_point now) {
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
  if (auto* m = in.get<msg::ShardObtained>()) return on_shard_obtained(job, node, in.attempt, *m);
  if (auto* m = in.get<msg::KeyRangeReady>()) {
    auto server = std::find(job.attempt.servers.begin(), job.attempt.servers.end(), node.id);
    if (server == job.attempt.servers.end()) return {};
    const KeyRange& range = job.attempt.ranges[server - job.attempt.servers.begin()];
    if (m->range_begin != range.begin || m->range_end != range.end) {
      // A server that confirms a range other than its own holds the wrong keys: not ready.
      log(LogLevel::kWarn, kSelf, s.job_id + ": " + node.id + " confirmed keys [" + std::to_string(m->range_begin) +
                                      ", " + std::to_string(m->range_end) + "), not its range [" +
                                      std::to_string(range.begin) + ", " + std::to_string(range.end) + ")");
      return {};
    }
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
                                      fixed(s.test_accuracy, 4) + ", test loss " + fixed(s.test_loss, 4) +
                                      ", " + fixed(s.samples_per_sec, 0) + " samples/s");
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
    if (m->node_local && m->rank >= 0 && rank_of(static_cast<uint32_t>(m->rank))) {
      return on_task_cannot_run(job, node, *m);  // its copy of the data: another node may do
    }
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
  return finish(job, JobState::kCompleted, "final test accuracy " + fixed(job.status.test_accuracy, 4));
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
  spec.activation = job.plan.spec.activation;
  if (!job.plan.data.table.empty()) spec.preprocessing = storage::preprocessing_json(job.plan.data.table);
  if (job.plan.privacy) {
    auto guarantee = privacy_record(*job.plan.privacy, m.step + job.privacy_steps_rolled_back,
                                    job.privacy_steps_rolled_back);
    if (!guarantee.is_ok()) return finish(job, JobState::kFailed, guarantee.status().message());
    spec.privacy = std::move(guarantee).value();
  }
  if (assembled.optimizer_incomplete) {
    log(LogLevel::kWarn, kSelf, job.status.job_id + ": a server sent no optimizer state with step " +
                                    std::to_string(m.step) + "; a resume from this checkpoint starts the optimizer from zeros");
  }
  auto model = job.plan.spec.make_model(job.plan.features);  // admitted: it builds
  if (!model.is_ok()) return finish(job, JobState::kFailed, "the job's model: " + model.status().message());
  auto id = recorder_.checkpoint(job.status, model.value(), assembled.values, spec, assembled.contributions,
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
  Status recorded = recorder_.job_ended(s, job.final_recorded ? s.last_checkpoint : "", job.plan.spec.replaces);
  if (!recorded.is_ok()) log(LogLevel::kError, kSelf, s.job_id + ": " + recorded.message());
  job.start.values.clear();
  job.start.values.shrink_to_fit();
  job.start.optimizer = {};
  job.attempt.keys.reset();  // the attempt is over: its keys go
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

}  // namespace custody::actors
