// The coordinator's logic as a plain state machine: membership (registration,
// heartbeats, liveness), the job queue, scheduling jobs onto idle nodes, and the job
// state each CLI request reads. The coordinator actor feeds it one message or one clock
// tick at a time and sends what it returns. Its only I/O: the custody store (records,
// checkpoints, credentials) and reading a job's data set, to learn its size and identity,
// when the job is admitted (and again when a restored job is resumed or restarted). Time comes from the actor (each event's monotonic time) and
// from an injected Clock (wall time).
// A job's fields are grouped by lifetime in actors/coordinator_job.h (plan, start point,
// attempt, recovery). Scheduling runs once per event, after it (handle(), tick()).
//
// Job life: pending (waits for `workers` idle workers and >= 1 parameter server)
//   -> starting (key ranges sent to the servers, waiting for each keyRangeReady)
//   -> running (tasks sent to the workers) -> completed | failed | cancelled.
// A job has `workers` ranks (shards of the training set); each rank runs on a worker
// node, and after a failure one node may run several ranks.
// Recovery: a node whose heartbeats stop for heartbeat_timeout is marked dead; a running
// job that loses a node (or whose node restarted, or whose worker reports a timeout) is
// rolled back: its current attempt is stopped everywhere, the lost ranks go to live
// workers (a spare, or one already in the job), the key ranges are spread over the live
// servers, and the job runs again as attempt + 1 from its last checkpoint (or its start).
// Every message carries its attempt; those of older attempts are dropped, so updates made
// after the checkpoint are discarded as a whole, never applied twice. A job is failed
// after max_recoveries rollbacks, with the reasons. What was discarded is recorded twice:
// run_recovered at once, with the step the workers last reported (they report every
// 500 ms, so it lags), and attempt_discarded once the stopped servers have answered the
// stopJob with jobReleased (the step each had applied), or after heartbeat_timeout with
// the answers that came; the servers' figure is the true one.
// Optimizer state: checkpoints keep it with the values (each server's range, assembled like
// the values); resume, recovery and restore hand each server its slice in assignKeyRange,
// so the run continues the interrupted update. A checkpoint from before optimizer state was
// kept resumes with a fresh optimizer, and the job's status message says so.
// Restart: restore() rebuilds jobs and membership from the store (actors/custody_replay.h
// reads what CustodyRecorder wrote; credentials are read through on use); jobs that
// had not ended resume from their last checkpoint once nodes re-register (they do so by
// themselves when the new coordinator does not know them).
// Custody: with a store, every event is recorded (CustodyRecorder) before it takes
// effect; a job whose records cannot be written is refused or failed, never run unrecorded.
// A job completes once every worker is done and its final checkpoint is recorded.
// Thread-safety: none; owned by one actor.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "actors/access_control.h"
#include "actors/attribution_scatter.h"
#include "actors/coordinator_job.h"
#include "actors/custody_recorder.h"
#include "actors/node_config.h"
#include "actors/outgoing.h"
#include "core/job_spec.h"
#include "core/partition.h"

namespace custody {
}

namespace custody::actors {

class CoordinatorState {
 public:
  // store: null runs without custody records (and without checkpoints).
  // key: signs the store's heads and the receipts of exports; null: none.
  // clock: the wall time of job submissions, starts and ends (records take the store's).
  explicit CoordinatorState(CoordinatorOptions options, storage::CustodyStore* store = nullptr,
                            std::string store_path = "", const SigningKey* key = nullptr,
                            const Clock& clock = Clock::system());

  // Rebuilds the jobs, the known nodes and the id counters from the custody store after
  // a restart; unfinished jobs are queued to resume from their last checkpoint. Call once,
  // before the first message.
  Status restore(SteadyClock::time_point now);

  // authenticated: the principal the transport proved the sender is (CurveZMQ), or "".
  Outbox handle(const std::string& peer, const msg::Envelope& in, SteadyClock::time_point now,
                const std::string& authenticated = "");
  // Liveness and scheduling; call about once per heartbeat interval.
  Outbox tick(SteadyClock::time_point now);

  msg::StatusReply status(const std::string& job_id, bool include_nodes, SteadyClock::time_point now) const;

  // Every Merkle log's head, signed (the head file, `custody audit head`).
  Result<storage::json> signed_heads() const { return recorder_.signed_heads(); }
  // Records the public half of the key that signs heads and receipts.
  Status signing_key_in_use(const std::string& key_file) { return recorder_.signing_key_in_use(key_file); }

  // With security on: the caller its key or token proves, if the role may send this
  // request. Without: a caller named by the request itself, with every right.
  Result<Caller> authorize(const msg::Envelope& in, const std::string& authenticated = "") const {
    return access_->authorize(in, authenticated);
  }
  // The credentials, shared with the transport's authenticator thread (CurveZMQ).
  const std::shared_ptr<AccessControl>& access_control() const { return access_; }
  // Whether a fetchRecords may be answered: its sender is a live worker of the caller's
  // principal (security on) that runs, in the envelope's job and attempt, a rank whose
  // task names that SHA-256. The answer comes from the records directory
  // (actors/records_server.h). Errors say which condition failed.
  Status authorize_fetch(const msg::Envelope& in, const std::string& authenticated = "") const;
  // For the metrics: the jobs held (finished ones until evicted) in each state, and the
  // rollbacks taken since this coordinator started.
  std::map<msg::JobState, size_t> jobs_by_state() const;
  // The workers alive now (attribution's scoring, actors/attribution_scatter.h).
  std::vector<LiveWorker> live_workers() const;
  uint64_t recoveries_total() const { return recoveries_total_; }

 private:
  static constexpr const char* kSelf = "coordinator";  // the sender of its messages and logs
  struct Node {
    std::string id, peer, address, host;
    std::string host_id;    // kernel and network namespace (msg::Register::host_id); empty: unknown
    std::string principal;  // the key's principal that registered it (security curve or token)
    msg::NodeRole role = msg::NodeRole::kWorker;
    uint32_t pid = 0;
    std::string session;  // of the registration it holds (msg::Register::session)
    bool alive = true;
    bool left = false;  // not alive because it deregistered (heartbeat{leaving}), not silent
    std::string job;  // the job it works on, if any
    SteadyClock::time_point last_seen;
  };

  // Membership and requests (coordinator_state.cc).
  // One request or node report, before scheduling (handle() schedules once per event).
  Outbox dispatch(const std::string& peer, const msg::Envelope& in, SteadyClock::time_point now,
                  const std::string& authenticated);
  Outbox on_register(const std::string& peer, const msg::Envelope& in, const msg::Register& m,
                     SteadyClock::time_point now, const Caller& caller);
  // A node stopping (heartbeat{leaving}): recorded (node_deregistered), marked gone at
  // once, and its jobs recovered as after a death, without the heartbeat timeout.
  Outbox on_leaving(Node& node, const msg::Envelope& in, const std::string& peer);
  // A node is gone (dead or left): every running or starting job it took part in is
  // rolled back (`why` says how it went).
  Outbox lose_node(Node& node, const std::string& why);
  Outbox handle_export(const std::string& peer, const msg::Envelope& in, const msg::ExportRequest& m);
  Outbox on_add_principal(const msg::Envelope& in, const msg::AddPrincipal& m, const std::string& peer,
                          const Caller& caller);
  Outbox on_revoke_principal(const msg::Envelope& in, const msg::RevokePrincipal& m, const std::string& peer,
                             const Caller& caller);
  // Revocations and taint overrides (coordinator_liability.cc).
  // The training records a job file's `data.without` revocations withdraw from the data set
  // whose bytes hash to `data_hash` (sorted, without repeats); empty without any.
  Result<std::vector<uint64_t>> excluded_records(const JobSpec& spec, const std::string& data_hash,
                                                 const std::string& origin) const;
  Outbox on_liability(const msg::Envelope& in, const msg::LiabilityRequest& m, const std::string& peer,
                      const Caller& caller);
  // The credentials as JSON (principal list), of one principal or all.
  std::string credentials_json(const std::string& principal) const;
  bool secured() const { return options_.security != Security::kNone; }
  // The nodes a starting or stalled job waits for, each with why; empty if it is moving.
  std::vector<std::string> waiting_for(const Job& job, SteadyClock::time_point now) const;
  Node* node_by_peer(const std::string& peer);
  Node* node_by_id(const std::string& id);
  // A message the coordinator starts (to a node, about a job's attempt); replies are
  // msg::reply_to.
  msg::Envelope envelope(const std::string& job_id, msg::Body body, uint32_t attempt = 0) const;
  int64_t wall_ms() const { return recorder_.clock().wall_ms(); }
  Result<std::string> new_job_id() const;

  // Admission (coordinator_admission.cc).
  Outbox on_submit(const msg::Envelope& in, const msg::SubmitJob& m, const std::string& peer, const Caller& caller);
  // A job from its file: reads the data set (sizes, identity), checks the model, and with
  // resolve_init the checkpoint named by 'job.init_from'.
  Result<Job> prepare(const std::string& spec_text, const std::string& origin, bool resolve_init);
  // Only the job's submitter or an admin may cancel or resume it (with security on).
  Outbox on_cancel(const msg::Envelope& in, const msg::CancelJob& m, const std::string& peer, const Caller& caller);
  Outbox on_resume(const msg::Envelope& in, const msg::ResumeJob& m, const std::string& peer, const Caller& caller);
  Status may_change(const Job& job, const Caller& caller, const char* what) const;
  // Loads a checkpoint's values and optimizer state as the job's starting point; returns the
  // checkpoint's step. A note for the status message says where the optimizer starts.
  Result<uint64_t> load_start(Job& job, const std::string& checkpoint, std::string* optimizer_note);

  // Privacy budgets (coordinator_budgets.cc).
  Outbox on_set_privacy_budget(const msg::Envelope& in, const msg::SetPrivacyBudget& m, const std::string& peer,
                               const Caller& caller);
  // A submitted job against its data set's privacy budget, read from the custody record:
  // ok, or the refusal (recorded, with the numbers). A job without a guarantee on a data
  // set with a budget passes only with an admin's override; *override_by names that admin.
  Status admit_privacy(const Job& job, const msg::SubmitJob& m, const Caller& caller, std::string* override_by);

  // Attempts (coordinator_attempts.cc).
  // Places every pending job that fits (docs/ARCHITECTURE.md, "Scheduling"); once per event.
  Outbox schedule();
  Outbox start_tasks(Job& job);
  Outbox on_node_report(const Node& node, const msg::Envelope& in, SteadyClock::time_point now);
  Outbox on_checkpoint_shard(Job& job, const Node& node, const msg::CheckpointShard& m);
  Outbox maybe_complete(Job& job);
  // A server let go of a job's attempt; after a rollback, what it had applied is recorded.
  void on_job_released(Job& job, const Node& node, uint32_t attempt, const msg::JobReleased& m);
  // Records a rolled-back attempt's discarded work with the answers so far, and forgets it.
  void record_discard(Job& job, uint32_t attempt);
  // Ends a job: sets its state, frees its nodes and tells them to stop.
  Outbox finish(Job& job, msg::JobState state, const std::string& message);
  // Stops the job's current attempt on its live nodes and frees them.
  Outbox stop_attempt(Job& job, const std::string& reason);
  // Makes a job pending again as its next attempt, starting at `step` (the values to start
  // from are the caller's): shared by resume and recovery.
  void rewind(Job& job, uint64_t step);
  // Rolls a running or starting job back to its last checkpoint and queues it again.
  // `counts`: subject to max_recoveries (a lost node); a rank moved off a node that cannot
  // run it is not (it cannot repeat: that node never gets the rank again).
  Outbox recover(Job& job, const std::string& why, bool counts = true);
  // A worker's trainer cannot run its rank on that node (error.nodeLocal): keep the node
  // off the job's ranks, and roll back once onto others or fail now naming the causes.
  Outbox on_task_cannot_run(Job& job, const Node& node, const msg::Error& m);
  // Which of `workers` (idle, in scheduling order) runs each rank, given job.cannot_run:
  // `nodes` by rank (all null: no constraint, round-robin), or why no live worker can run a
  // rank (`unplaceable`: the job fails), or what it waits for. Drops unused workers.
  struct RankPlacement {
    std::vector<Node*> nodes;
    std::string unplaceable, waiting;
  };
  RankPlacement place_ranks(const Job& job, std::vector<Node*>& workers) const;
  // The live workers, busy or idle, that have not said they cannot run `rank`.
  std::vector<std::string> eligible_workers(const Job& job, uint32_t rank) const;
  // Why no live worker can run `rank`: each node's cause, and what the operator can do.
  std::string no_worker_for(const Job& job, uint32_t rank) const;

  // Data shipping (coordinator_shipping.cc; docs/ARCHITECTURE.md, "Data shipping").
  // What keeps each rank's records (by their SHA-256) in the records directory as the
  // data set streams past at admission, for workers that lack the data set's files; null
  // when there is nothing to keep. A failure only costs the shipping, and is logged.
  std::function<Status(const std::string&, const std::vector<uint8_t>&)> records_keeper(const DataSpec& data) const;
  // A worker recorded how it came by a rank's records (shardObtained).
  Outbox on_shard_obtained(Job& job, const Node& node, uint32_t attempt, const msg::ShardObtained& m);

  // Constant after construction.
  CoordinatorOptions options_;
  CustodyRecorder recorder_;
  std::string store_path_;

  // Membership, and who may do what: changed by registrations, heartbeats, ticks and
  // `principal add`.
  std::map<std::string, Node> nodes_;  // by node id
  int next_ps_ = 1, next_worker_ = 1;  // the numbers of the next nodes' ids
  std::shared_ptr<AccessControl> access_;

  // Jobs: changed by requests, node reports and ticks.
  std::map<std::string, Job> jobs_;  // by job id
  uint64_t recoveries_total_ = 0;
  std::vector<std::string> queue_;   // pending job ids, in scheduling order
  std::vector<std::string> order_;   // every job id, in submission order

  // The event being handled.
  SteadyClock::time_point now_;  // of the message or tick
  std::string just_submitted_;   // the job it accepted, whose answer waits for scheduling
};

}  // namespace custody::actors
