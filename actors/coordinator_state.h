// The coordinator's logic as a plain state machine: membership (registration,
// heartbeats, liveness), the job queue, scheduling jobs onto idle nodes, and the job
// state each CLI request reads. The coordinator actor feeds it one message or one clock
// tick at a time and sends what it returns; this class does no I/O of its own, except
// reading a job's data set to learn its size and identity when the job is submitted.
//
// Job life: pending (waits for `workers` idle workers and >= 1 parameter server)
//   -> starting (key ranges sent to the servers, waiting for each keyRangeReady)
//   -> running (tasks sent to the workers) -> completed | failed | cancelled.
// A node whose heartbeats stop for heartbeat_timeout is marked dead; a job that loses a
// node fails with a message naming it (taking over its shard is a later issue).
// Custody: with a store, every event is recorded (CustodyRecorder) before it takes
// effect; a job whose records cannot be written is refused or failed, never run unrecorded.
// A job completes once every worker is done and its final checkpoint is recorded.
// Thread-safety: none; owned by one actor.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "actors/custody_recorder.h"
#include "actors/outgoing.h"
#include "core/job_spec.h"
#include "core/partition.h"

namespace custody::actors {

struct CoordinatorOptions {
  std::chrono::milliseconds heartbeat_interval{1000};  // Default: 1 s
  std::chrono::milliseconds heartbeat_timeout{5000};   // Default: 5 s
  size_t max_finished_jobs = 1000;  // finished jobs kept for status. Default: 1000
  // Require a token on every request (principals, roles: see Caller). Default: off, for a
  // single-user local cluster; a shared cluster turns it on.
  bool auth = false;
};

// Who sent a request, as its token says (with auth on).
struct Caller {
  std::string principal;
  std::string role;  // submitter, consumer, auditor, admin, node
};

class CoordinatorState {
 public:
  // store: null runs without custody records (and without checkpoints).
  explicit CoordinatorState(CoordinatorOptions options, storage::CustodyStore* store = nullptr,
                            std::string store_path = "");

  Outbox handle(const std::string& peer, const msg::Envelope& in, Clock::time_point now);
  // Liveness and scheduling; call about once per heartbeat interval.
  Outbox tick(Clock::time_point now);

  msg::StatusReply status(const std::string& job_id, bool include_nodes, Clock::time_point now) const;

  // With auth on: the caller its token names, if the role may send this request. Without
  // auth: a caller named by the request itself, with every right.
  Result<Caller> authorize(const msg::Envelope& in);

 private:
  struct Node {
    std::string id, peer, address, host;
    msg::NodeRole role = msg::NodeRole::kWorker;
    uint32_t pid = 0;
    bool alive = true;
    std::string job;  // the job it works on, if any
    Clock::time_point last_seen;
  };
  struct WorkerProgress {
    uint64_t step = 0;
    double rate = 0;  // samples/s over the last report
    bool done = false;
  };
  struct Job {
    msg::JobStatus status;
    JobSpec spec;
    int64_t train_count = 0, test_count = 0;
    int features = 0;
    uint64_t num_parameters = 0, steps_per_epoch = 0;
    std::vector<std::string> workers, servers;  // node ids, by rank / server index
    std::vector<KeyRange> ranges;
    std::set<std::string> servers_ready;
    std::map<std::string, WorkerProgress> progress;
    std::map<uint32_t, std::vector<msg::EpochEval>> evals;  // epoch -> per-worker reports
    double loss_ema = -1;
    std::vector<int> layer_sizes;
    uint64_t checkpoint_every = 0, start_step = 0;
    std::vector<float> initial_values;  // resume or fine-tune; empty: seeded
    std::string init_checkpoint;        // fine-tuning origin
    std::vector<msg::AssignTask> tasks;  // by rank
    // step -> server id -> its shard, until every server's shard of the step is in
    std::map<uint64_t, std::map<std::string, msg::CheckpointShard>> shards;
    uint64_t last_checkpoint_step = 0;
    bool final_recorded = false;
  };

  Outbox on_register(const std::string& peer, const msg::Envelope& in, const msg::Register& m,
                     Clock::time_point now);
  Outbox on_submit(const msg::Envelope& in, const msg::SubmitJob& m, const std::string& peer);
  Outbox on_cancel(const msg::Envelope& in, const msg::CancelJob& m, const std::string& peer);
  Outbox on_node_report(const Node& node, const msg::Envelope& in);
  Outbox on_checkpoint_shard(Job& job, const Node& node, const msg::CheckpointShard& m);
  Outbox on_resume(const msg::Envelope& in, const msg::ResumeJob& m, const std::string& peer);
  Outbox maybe_complete(Job& job);
  Outbox handle_export(const std::string& peer, const msg::Envelope& in, const msg::ExportRequest& m);
  Outbox on_add_principal(const msg::Envelope& in, const msg::AddPrincipal& m, const std::string& peer);
  Status add_credential(const std::string& name, const std::string& role, const std::string& token,
                        const std::string& by);
  Outbox schedule();
  Outbox start_tasks(Job& job);
  // Ends a job: sets its state, frees its nodes and tells them to stop.
  Outbox finish(Job& job, msg::JobState state, const std::string& message);

  Node* node_by_peer(const std::string& peer);
  Node* node_by_id(const std::string& id);
  msg::Envelope envelope(const std::string& job_id, msg::Body body) const;
  int64_t wall_ms() const;
  std::string new_job_id();

  CoordinatorOptions options_;
  CustodyRecorder recorder_;
  std::string store_path_;
  std::map<std::string, Node> nodes_;  // by node id
  std::map<std::string, Job> jobs_;    // by job id
  std::vector<std::string> queue_;     // pending job ids, oldest first
  std::vector<std::string> order_;     // every job id, in submission order
  int next_ps_ = 1, next_worker_ = 1;
  uint64_t next_request_ = 1;
  std::mt19937_64 rng_;
  std::map<std::string, Caller> credentials_;  // token SHA-256 -> caller, read through
};

}  // namespace custody::actors
