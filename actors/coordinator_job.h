// A job as the coordinator keeps it, split by lifetime (as LevelDB's db/db_impl.h groups
// DBImpl's fields): the plan admission derives once from the job file, the start point
// each attempt begins from, the attempt that is running (placement, progress,
// evaluations, checkpoint shards, tasks), and what outlives attempts (the status users
// read, recovery, discarded attempts). A new attempt is a fresh Attempt: nothing of the
// one before can leak into it. Plain data; the logic is CoordinatorState's.
// Thread-safety: none; owned by the coordinator's state machine.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "actors/custody_recorder.h"
#include "actors/data_plane_policy.h"
#include "actors/outgoing.h"
#include "core/job_spec.h"
#include "core/optimizer.h"
#include "core/partition.h"
#include "core/privacy.h"

namespace custody::actors {

// What admission derives from the job file and its data set (CoordinatorState::prepare).
// Constant for the job's life. A job restored after a restart that had already ended is
// not prepared again: its plan holds only the spec's text (prepared() is false).
struct JobPlan {
  JobSpec spec;
  DatasetInfo data;  // its data set's identity and sizes
  int features = 0;
  std::vector<int> layer_sizes;
  uint64_t num_parameters = 0, steps_per_epoch = 0, checkpoint_every = 0;
  std::string init_checkpoint;  // fine-tuning origin, if any
  // A private job's plan (core/privacy.h): q, sigma (calibrated for a target epsilon), the
  // noise the servers add. Derived again, identically, when a restart restores the job.
  std::optional<PrivacyPlan> privacy;
  bool prepared() const { return steps_per_epoch > 0; }
  uint64_t total_steps() const { return steps_per_epoch * static_cast<uint64_t>(spec.epochs); }
};

// Where the next attempt starts: set by submission (fine-tuning), resume, recovery and
// restore; handed to the servers in assignKeyRange. Dropped when the job ends.
struct StartPoint {
  uint64_t step = 0;
  std::vector<float> values;  // empty: seeded initial values
  // The optimizer state at `step` (layout of core/optimizer.h over every parameter);
  // empty: a fresh optimizer.
  OptimizerState optimizer;
};

// One rank's progress in the running attempt.
struct WorkerProgress {
  uint64_t step = 0;
  double rate = 0;  // samples/s over the last report
  bool done = false;
  SteadyClock::time_point last_step_at;  // when `step` last advanced
};

// One attempt: from placement (schedule) to its end (completion, rollback, cancel).
struct Attempt {
  uint32_t number = 0;  // Envelope.attempt: +1 per recovery or resume
  // Placement.
  std::vector<std::string> workers, servers;  // node ids, by rank / server index
  std::vector<KeyRange> ranges;               // by server index
  SteadyClock::time_point starting_since;
  std::set<std::string> servers_ready;  // servers that confirmed their key range
  std::vector<msg::AssignTask> tasks;   // by rank, without their keys
  // Sealed: the attempt's data-plane keys (actors/data_plane_policy.h). Memory only, never
  // recorded; a new attempt is a new Attempt, and finish() drops them.
  std::optional<AttemptKeys> keys;
  // Progress.
  std::map<uint32_t, WorkerProgress> progress;                    // by rank
  std::map<uint32_t, std::map<uint32_t, msg::EpochEval>> evals;  // epoch -> rank -> report
  // step -> server id -> its shard, until every server's shard of the step is in
  std::map<uint64_t, std::map<std::string, msg::CheckpointShard>> shards;
};

// A rolled-back attempt whose stopped servers have not all answered (jobReleased).
struct Discard {
  uint64_t back_to_step = 0;
  uint64_t reported_step = 0;  // the workers' reports at the rollback: charged up to it then
  std::set<std::string> waiting;  // server ids
  std::map<std::string, msg::JobReleased> applied;
  SteadyClock::time_point since;
};

struct Job {
  // What `custody status` shows; kept across attempts.
  msg::JobStatus status;
  double loss_ema = -1;  // status.loss, smoothed over progress reports

  // Constant after admission.
  JobPlan plan;

  // Changed by each attempt.
  StartPoint start;
  Attempt attempt;
  uint64_t last_checkpoint_step = 0;  // of status.last_checkpoint
  bool final_recorded = false;        // the final checkpoint of this run is in the store

  // Recovery, across attempts.
  bool recovering = false;      // may run on fewer worker nodes than ranks
  std::string recovery_reason;  // of the last rollback
  // Until then a restored job waits for all its workers to re-register before it takes
  // fewer nodes than ranks.
  SteadyClock::time_point full_nodes_until;
  std::map<uint32_t, Discard> discards;  // by attempt number
  // The nodes that reported they cannot run a rank (its data missing, unreadable or not
  // the submitted bytes there; today a worker reads the whole data set, so a node is out
  // for every rank at once), with what each said: rank -> node -> cause. Scheduling
  // never gives the rank to those nodes again; with no other worker alive the job fails.
  std::map<uint32_t, std::map<std::string, std::string>> cannot_run;
  // A private job: steps computed by attempts and then rolled back. They count against the
  // privacy guarantee (the servers saw their sums, and released their noisy updates).
  // Counted from the progress reports at each rollback (or the last checkpoint, whichever is
  // later), raised to the servers' count when they answer, and the steps a resume computes
  // again; each increment is charged in the custody record (privacy_charged), from which a
  // restarted coordinator reads it back (docs/ARCHITECTURE.md "Privacy budgets").
  uint64_t privacy_steps_rolled_back = 0;
};

}  // namespace custody::actors
