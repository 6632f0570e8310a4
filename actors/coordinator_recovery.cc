// CoordinatorState: recovery. Rolling a job back to its last checkpoint as the next
// attempt, recording what the servers had applied of the attempt it ends, and keeping
// ranks off the nodes that said they cannot run them (their copy of the data).
#include <algorithm>

#include "actors/coordinator_state.h"
#include "core/log.h"

namespace custody::actors {

using msg::JobState;

Outbox CoordinatorState::on_task_cannot_run(Job& job, const Node& node, const msg::Error& m) {
  // A worker reads the whole data set for any of its ranks, so what failed one rank there
  // fails them all: the node is out for every rank of the job.
  for (uint32_t r = 0; r < static_cast<uint32_t>(job.plan.spec.workers); ++r) job.cannot_run[r][node.id] = m.message;
  const auto rank = static_cast<uint32_t>(m.rank);
  const std::string why = node.id + " cannot run rank " + std::to_string(rank) + ": " + m.message;
  if (eligible_workers(job, rank).empty()) return finish(job, JobState::kFailed, why + "; " + no_worker_for(job, rank));
  // Not a node that died: no retry there. The ranks move, once.
  return recover(job, why, /*counts=*/false);
}

CoordinatorState::RankPlacement CoordinatorState::place_ranks(const Job& job, std::vector<Node*>& workers) const {
  // A worker no rank can use is not taken. A rank no live worker can run fails the job (its
  // causes named); one that only busy workers could run waits for them.
  const size_t ranks = static_cast<size_t>(job.plan.spec.workers);
  RankPlacement p;
  p.nodes.assign(ranks, nullptr);
  if (job.cannot_run.empty()) return p;
  std::map<Node*, size_t> load;
  for (size_t r = 0; r < ranks; ++r) {
    auto excluded = job.cannot_run.find(static_cast<uint32_t>(r));
    for (Node* w : workers) {
      if (excluded != job.cannot_run.end() && excluded->second.count(w->id)) continue;
      if (!p.nodes[r] || load[w] < load[p.nodes[r]]) p.nodes[r] = w;
    }
    if (p.nodes[r]) {
      ++load[p.nodes[r]];
    } else if (eligible_workers(job, static_cast<uint32_t>(r)).empty()) {
      p.unplaceable = no_worker_for(job, static_cast<uint32_t>(r));
      return p;
    } else if (p.waiting.empty()) {
      p.waiting = "waiting for a worker that can run rank " + std::to_string(r) + " (" +
                  std::to_string(job.cannot_run.at(static_cast<uint32_t>(r)).size()) + " cannot)";
    }
  }
  workers.erase(std::remove_if(workers.begin(), workers.end(), [&](Node* w) { return !load.count(w); }),
                workers.end());
  return p;
}

std::vector<std::string> CoordinatorState::eligible_workers(const Job& job, uint32_t rank) const {
  std::vector<std::string> out;
  auto excluded = job.cannot_run.find(rank);
  for (const auto& [id, n] : nodes_) {
    if (!n.alive || n.role != msg::NodeRole::kWorker) continue;
    if (excluded != job.cannot_run.end() && excluded->second.count(id)) continue;
    out.push_back(id);
  }
  return out;
}

std::string CoordinatorState::no_worker_for(const Job& job, uint32_t rank) const {
  std::string causes;
  auto excluded = job.cannot_run.find(rank);
  if (excluded != job.cannot_run.end()) {
    for (const auto& [id, cause] : excluded->second) causes += (causes.empty() ? "" : "; ") + id + ": " + cause;
  }
  return "no live worker can run rank " + std::to_string(rank) + " (" + causes +
         "); give those workers the data set's files, or start a worker that has them, and `custody resume` the job";
}

Outbox CoordinatorState::recover(Job& job, const std::string& why, bool counts) {
  msg::JobStatus& s = job.status;
  if (msg::is_terminal(s.state)) return {};
  if (s.state == JobState::kPending) return {};  // holds no nodes yet: nothing to roll back
  if (counts && s.recoveries >= options_.max_recoveries) {
    return finish(job, JobState::kFailed, why + "; gave up after " + std::to_string(s.recoveries) +
                                              " recoveries (last: " + job.recovery_reason + ")");
  }
  ++recoveries_total_;
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
  if (job.plan.privacy && reached > job.start.step) job.privacy_steps_rolled_back += reached - job.start.step;
  Status recorded = recorder_.job_recovered(s, job.attempt.number, why, reached, job.start.step, checkpoint,
                                            recorder_.enabled() ? to_report : std::vector<std::string>(),
                                            job.plan.privacy ? &*job.plan.privacy : nullptr);
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
    d.reported_step = reached;
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
  const PrivacyPlan* privacy = job.plan.privacy ? &*job.plan.privacy : nullptr;
  Status recorded = recorder_.attempt_discarded(job.status, attempt, discard.back_to_step, discard.applied, unanswered,
                                                privacy, discard.reported_step);
  if (privacy && recorded.is_ok()) {  // the servers' count beyond the reports, as charged
    uint64_t most = discard.back_to_step;
    for (const auto& [server, r] : discard.applied) most = std::max(most, r.applied_step);
    const uint64_t charged = std::max(discard.reported_step, discard.back_to_step);
    if (most > charged) job.privacy_steps_rolled_back += most - charged;
  }
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

}  // namespace custody::actors
