// A worker's logic as a plain state machine: its membership (NodeLink), the tasks the
// coordinator assigns it, which trainers run them, and what it reports.
//
// A task is one rank of one attempt of a job; each runs in a trainer of its own
// (actors/trainer.h). A worker runs the ranks of one job's attempt at a time: usually
// one, several when a failure left the job fewer nodes than ranks.
//
//   idle --assignTask J@A--> running J@A --assignTask J@A, another rank--> running J@A
//   running --stopJob J@A' (A' >= A), assignTask J@A' (A' > A), registered again--> stopping
//   stopping --the last trainer ended--> idle, then the tasks queued meanwhile start
//
// Attempts (the fence): the coordinator numbers a job's attempts, and a message of an
// older attempt must not disturb a newer one. An assignTask of an older attempt than the
// one running or queued is dropped; a newer attempt stops the running one and waits for
// its trainers to end; a stopJob stops the attempt it names or an older one, never a
// newer. Tasks that arrive while trainers stop wait in a queue; when the last trainer
// has ended, the first queued task's job and attempt start with every queued rank of it
// (the coordinator gives a worker one job at a time; other queued tasks are dropped and
// logged). An assignTask of another job while one runs is refused ("busy with ...").
//
// Reports: the trainers' progress, epochEval and taskDone go to the coordinator with
// their job and attempt. A trainer that fails is reported as an error of its attempt
// (a server that did not answer in time is named, and the coordinator recovers the job),
// unless it was told to stop: a server that released a stopped job answers with an
// error, which is the stop arriving by another path. A message a worker does not handle
// is answered with an error naming it; none ends the worker.
//
// Driven by the worker actor (actors/worker_actor.cc), which feeds it the coordinator's
// messages, a tick every 100 ms, and its trainers' reports and ends, and does what each
// returned WorkerActions says. Thread-safety: none; owned by one actor.
#pragma once

#include <set>

#include "actors/node_link.h"

namespace custody::actors {

// One trainer: a rank of a job's attempt.
struct TaskKey {
  std::string job_id;
  uint32_t attempt = 0;
  uint32_t rank = 0;
};

// What the worker actor does after a message or a tick.
struct WorkerActions {
  Outbox outbox;                     // to the coordinator
  std::vector<msg::Envelope> start;  // assignTasks to start a trainer for, one rank each
  bool stop_trainers = false;        // tell every running trainer to stop
};

class WorkerState {
 public:
  explicit WorkerState(NodeLink link) : link_(std::move(link)) {}

  // A message from the coordinator.
  WorkerActions handle(const msg::Envelope& in, SteadyClock::time_point now);
  // Registration and heartbeats. A fatal error: the coordinator was not reached in time,
  // or refused this node.
  Result<WorkerActions> tick(SteadyClock::time_point now);
  // A running trainer's progress, epochEval or taskDone, for the coordinator.
  WorkerActions on_report(const TaskKey& from, msg::Body report);
  // A trainer has ended with `result` (kCancelled: it was told to stop). `node_local`: the
  // task cannot run on this node (its data), which the report to the coordinator says.
  WorkerActions on_trainer_end(const TaskKey& task, const Status& result, bool node_local = false);

  // The node is stopping (SIGTERM/SIGINT): deregister (NodeLink::leave), stop every
  // trainer and queued task; reports and trainer ends after it are not sent (the
  // coordinator has recovered the job already). `left()`: the coordinator acknowledged.
  WorkerActions leave();
  bool left() const { return link_.left(); }

  const std::string& node_id() const { return link_.node_id(); }
  // `e` as this node's message to the coordinator (its token), for what the worker actor
  // answers itself (attribution's recordScores).
  Outgoing to_coordinator(msg::Envelope e) const { return link_.to_coordinator(std::move(e)); }
  // The job whose trainers run or stop; empty when idle.
  const std::string& job() const { return job_; }
  uint32_t attempt() const { return attempt_; }
  const std::set<uint32_t>& running_ranks() const { return running_; }
  bool stopping() const { return stopping_; }
  size_t queued() const { return queue_.size(); }

 private:
  void start(const msg::Envelope& task, WorkerActions& out);
  void stop_all(WorkerActions& out);
  // Queues a task until the running trainers have ended; an older attempt than one
  // queued for its job is dropped, a newer one drops the older.
  void enqueue(const msg::Envelope& task);
  void on_assign(const msg::Envelope& in, const msg::AssignTask& task, WorkerActions& out);
  void refuse(const msg::Envelope& in, const Status& status, WorkerActions& out) const;

  NodeLink link_;
  std::string job_;  // the job whose ranks run, if any
  uint32_t attempt_ = 0;
  std::set<uint32_t> running_;        // ranks with a trainer
  bool stopping_ = false;             // the running trainers were told to stop
  std::vector<msg::Envelope> queue_;  // assignTasks waiting for the running trainers to end
};

}  // namespace custody::actors
