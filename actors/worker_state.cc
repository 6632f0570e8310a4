#include "actors/worker_state.h"

#include <algorithm>

#include "actors/parameter_client.h"
#include "core/log.h"

namespace custody::actors {

namespace {

std::string job_attempt(const std::string& job_id, uint32_t attempt) {
  return job_id + " (attempt " + std::to_string(attempt) + ")";
}

// What can be checked of a task before a trainer reads its data.
Status check_task(const msg::Envelope& in, const msg::AssignTask& task) {
  if (in.job_id.empty()) return invalid_argument("an assignTask without a job id");
  auto servers = KeySlices::make(task.servers, task.num_parameters);
  if (!servers.is_ok()) {
    return invalid_argument("the task for rank " + std::to_string(task.rank) + " of " + in.job_id +
                            " cannot be run: " + servers.status().message());
  }
  return Status::ok();
}

}  // namespace

void WorkerState::refuse(const msg::Envelope& in, const Status& status, WorkerActions& out) const {
  log(LogLevel::kWarn, node_id(), status.message());
  out.outbox.push_back(link_.to_coordinator(msg::make_error(in, node_id(), status)));
}

WorkerActions WorkerState::handle(const msg::Envelope& in, SteadyClock::time_point now) {
  WorkerActions out;
  const uint64_t before = link_.registrations();
  if (link_.on_message(in, now)) {
    if (link_.registrations() > before && before > 0 && !running_.empty()) {
      log(LogLevel::kWarn, node_id(),
          "registered again: stopping the tasks of the previous coordinator session "
          "(it reassigns them)");
      queue_.clear();
      stop_all(out);
    }
    return out;
  }
  if (link_.leaving()) return out;  // stopping: start nothing more
  if (auto* task = in.get<msg::AssignTask>()) {
    on_assign(in, *task, out);
  } else if (in.get<msg::StopJob>()) {
    if (!running_.empty() && in.job_id == job_ && in.attempt >= attempt_) stop_all(out);
    queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                                [&](const msg::Envelope& t) {
                                  return t.job_id == in.job_id && t.attempt <= in.attempt;
                                }),
                 queue_.end());
  } else if (auto* err = in.get<msg::Error>()) {
    log(LogLevel::kWarn, node_id(), "coordinator: " + err->message);
  } else {
    refuse(in,
           invalid_argument(std::string("a worker does not handle '") + msg::body_name(in.body) +
                            "' from the coordinator"),
           out);
  }
  return out;
}

void WorkerState::on_assign(const msg::Envelope& in, const msg::AssignTask& task, WorkerActions& out) {
  Status valid = check_task(in, task);
  if (!valid.is_ok()) return refuse(in, valid, out);
  if (job_.empty()) return start(in, out);
  if (in.job_id == job_) {
    if (in.attempt < attempt_) {
      log(LogLevel::kInfo, node_id(),
          "dropped a task of " + job_attempt(in.job_id, in.attempt) + ": attempt " +
              std::to_string(attempt_) + " replaced it");
    } else if (in.attempt == attempt_ && !stopping_) {
      start(in, out);  // one more rank of the same attempt
    } else {
      if (in.attempt > attempt_) stop_all(out);  // a newer attempt replaces the running one
      enqueue(in);
    }
    return;
  }
  if (stopping_) return enqueue(in);
  refuse(in, failed_precondition("busy with " + job_), out);
}

void WorkerState::enqueue(const msg::Envelope& task) {
  const uint32_t rank = task.get<msg::AssignTask>()->rank;
  for (const msg::Envelope& q : queue_) {
    if (q.job_id != task.job_id) continue;
    if (q.attempt > task.attempt) {
      log(LogLevel::kInfo, node_id(),
          "dropped a task of " + job_attempt(task.job_id, task.attempt) + ": attempt " +
              std::to_string(q.attempt) + " replaced it");
      return;
    }
    if (q.attempt == task.attempt && q.get<msg::AssignTask>()->rank == rank) return;  // a repeated assignment
  }
  queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                              [&](const msg::Envelope& q) {
                                return q.job_id == task.job_id && q.attempt < task.attempt;
                              }),
               queue_.end());
  queue_.push_back(task);
}

void WorkerState::start(const msg::Envelope& e, WorkerActions& out) {
  const auto& task = *e.get<msg::AssignTask>();
  if (running_.count(task.rank)) return;  // a repeated assignment
  job_ = e.job_id;
  attempt_ = e.attempt;
  running_.insert(task.rank);
  log(LogLevel::kInfo, node_id(),
      "task for " + job_attempt(e.job_id, e.attempt) + ": rank " + std::to_string(task.rank) + ", records [" +
          std::to_string(task.shard.begin) + ", " + std::to_string(task.shard.end) + "), from step " +
          std::to_string(task.start_step) + (task.rank_key ? ", data plane sealed" : ", data plane in clear"));
  out.start.push_back(e);
}

void WorkerState::stop_all(WorkerActions& out) {
  if (running_.empty() || stopping_) return;  // told once is enough
  stopping_ = true;
  out.stop_trainers = true;
}

WorkerActions WorkerState::leave() {
  WorkerActions out;
  out.outbox = link_.leave();
  queue_.clear();
  if (!running_.empty()) stop_all(out);
  return out;
}

Result<WorkerActions> WorkerState::tick(SteadyClock::time_point now) {
  WorkerActions out;
  CUSTODY_ASSIGN_OR_RETURN(out.outbox, link_.on_tick(now, !job_.empty()));
  return out;
}

WorkerActions WorkerState::on_report(const TaskKey& from, msg::Body report) {
  WorkerActions out;
  if (from.job_id != job_ || from.attempt != attempt_ || !running_.count(from.rank))
    return out;  // not a trainer of ours
  if (link_.leaving()) return out;  // deregistered: the coordinator no longer counts this node
  msg::Envelope e;
  e.job_id = from.job_id;
  e.attempt = from.attempt;
  e.body = std::move(report);
  out.outbox.push_back(link_.to_coordinator(std::move(e)));
  return out;
}

WorkerActions WorkerState::on_trainer_end(const TaskKey& task, const Status& result, bool node_local) {
  WorkerActions out;
  if (task.job_id != job_ || task.attempt != attempt_ || !running_.count(task.rank)) return out;
  const std::string which = task.job_id + " rank " + std::to_string(task.rank);
  if (result.is_ok()) {
    log(LogLevel::kInfo, node_id(), which + ": task finished");
  } else if (stopping_ || result.code() == ErrorCode::kCancelled) {
    log(LogLevel::kInfo, node_id(), which + ": task stopped");
  } else {
    log(LogLevel::kError, node_id(), which + ": " + result.to_string());
    msg::Envelope e;
    e.job_id = task.job_id;
    e.attempt = task.attempt;
    e.body = msg::Error{result.code(), result.message(), static_cast<int32_t>(task.rank), node_local};
    out.outbox.push_back(link_.to_coordinator(std::move(e)));
  }
  running_.erase(task.rank);
  if (!running_.empty()) return out;
  job_.clear();
  stopping_ = false;
  std::vector<msg::Envelope> queued = std::move(queue_);
  queue_.clear();
  for (const msg::Envelope& next : queued) {
    if (job_.empty() || (next.job_id == job_ && next.attempt == attempt_)) {
      start(next, out);
    } else {
      log(LogLevel::kWarn, node_id(),
          "dropped a queued task of " + job_attempt(next.job_id, next.attempt) + ": busy with " +
              job_attempt(job_, attempt_));
    }
  }
  return out;
}

}  // namespace custody::actors
