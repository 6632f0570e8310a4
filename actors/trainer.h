// One task's training loop: rank r's shard of a job, from the task's start step to the
// job's last step.
//
//   load: the job's data set (the version the job was submitted with), the shard and the
//         test range the task names, the model of the assignment's size
//   run:  pull the values; then for each step: its batch (core/data_order.h), the
//         gradient (Eigen), a push of each server's slice, a wait for the new values.
//         A private job's step (DP-SGD, docs/ARCHITECTURE.md "Differential privacy"):
//         a Poisson sample of the shard (or the shuffled batch), the sum of the examples'
//         gradients each clipped to C, pushed divided by job.batch_size (so the servers'
//         mean over ranks is the sum over the expected batch); the servers add the noise.
//         After each epoch the test range is evaluated (epochEval); about every
//         progress_interval a progress report; at the end taskDone.
//
// The loop reaches the servers only through a ParameterClient (actors/parameter_client.h)
// and the coordinator only through `report`, so it runs against servers in memory in the
// tests exactly as against ZeroMQ sockets in the worker (actors/worker_actor.cc, where
// each trainer is a detached actor; WorkerState decides which trainers run).
// Thread-safety: none; a trainer runs on one thread.
#pragma once

#include <functional>
#include <optional>

#include "actors/parameter_client.h"
#include "actors/records_fetcher.h"
#include "core/metrics.h"
#include "core/data_order.h"
#include "core/dataset.h"
#include "core/job_spec.h"
#include "core/model.h"
#include "core/secure_random.h"

namespace custody::actors {

struct TrainerOptions {
  // The longest wait for the servers' answers to one pull or push. Default: 60 s
  std::chrono::milliseconds step_timeout{60000};
  // Progress is reported after the first step that ends more than this after the last
  // report. Default: 500 ms
  std::chrono::milliseconds progress_interval{500};
  // Times progress reports. Default: the steady clock
  std::function<SteadyClock::time_point()> now = [] { return SteadyClock::now(); };
  // custody_training_samples_total and custody_training_step_duration_seconds; null: none.
  MetricsRegistry* metrics = nullptr;
  // Where a task's records come from when the job file's paths are not on this node (data
  // shipping: the node's records cache, then the coordinator). Null: only the node's files.
  RecordsFetcher* records = nullptr;
};

// The worker's training metrics, registered at once so that a scrape sees them at 0 before
// the first step (a rate needs the value before the jump).
Counter& training_samples_metric(MetricsRegistry& m);
Histogram& training_step_metric(MetricsRegistry& m);

// Training records [begin, end) of a job's data set, obtained as a trainer obtains a
// task's (Trainer::load; attribution's scoring on a worker uses it, actors/record_scoring.h):
// from the files the spec names when this node has them, held to `digest` (or, without
// one, the whole set to `dataset_hash`), else (records, when the spec's files are absent
// and a digest is given) from the node's cache or the coordinator, held to the digest.
struct TrainingRange {
  LabeledSet set;              // the range's records alone (record `begin` of the data set first)
  int64_t begin = 0, end = 0;  // the range within `set`: always [0, set.count)
  msg::ShardObtained obtained;  // how (rank unused)
};
Result<TrainingRange> load_training_range(const DataSpec& data, uint64_t begin, uint64_t end,
                                          const RecordsDigest& digest, const std::string& dataset_hash,
                                          RecordsFetcher* records);

class Trainer {
 public:
  using Report = std::function<void(msg::Body)>;

  // Reads the job's data and takes the task's part of it: from the files the job file
  // names when this node has them, else (options.records) only the task's records, from the
  // node's cache or the coordinator. Either way each file's records are held to the task's
  // digests. Errors name the mismatch: a
  // spec that does not parse, a data set other than the version the job was submitted
  // with (failed precondition), a shard or test range outside it, a model whose size is
  // not the assignment's, steps that do not fit the shard (invalid argument).
  // `data_failure`, if given, is set when the failure lies in this node's copy of the data
  // set (missing, unreadable, other bytes): another node may run the task.
  static Result<Trainer> load(const msg::AssignTask& task, const std::string& job_id,
                              TrainerOptions options = {}, bool* data_failure = nullptr);

  // Trains to the job's last step, reporting progress, epochEval and at the end taskDone.
  // Returns the client's errors as they are (kCancelled when told to stop).
  Status run(ParameterClient& servers, const Report& report);

  // The values the last step ended with (the servers' values after it).
  const float* values() const { return params_.data(); }
  // How load() came by the task's records (the worker reports it: shardObtained).
  const msg::ShardObtained& obtained() const { return obtained_; }

 private:
  Trainer(msg::AssignTask task, JobSpec spec, Model model, BatchOrder order, TrainerOptions options)
      : task_(std::move(task)),
        spec_(std::move(spec)),
        model_(std::move(model)),
        order_(std::move(order)),
        options_(std::move(options)) {}
  void evaluate(uint32_t epoch, const Report& report);

  msg::AssignTask task_;
  JobSpec spec_;
  Model model_;
  BatchOrder order_;
  TrainerOptions options_;
  msg::ShardObtained obtained_;
  // A private job (spec_.privacy): Poisson sampling's rate, and the secure source of its
  // draws (keyed from the OS: which examples a step used must not be predictable from the
  // job file, or sampling would not amplify privacy). Unset for other jobs.
  double sampling_rate_ = 0;
  std::optional<SecureRandom> sampler_;
  uint32_t private_batch(Matrix& x, std::vector<uint8_t>& y, uint64_t step);
  // The shard and the test range as the data's bytes, sample-major (features_ a sample,
  // each value_bytes_ wide: LabeledSet::value_bytes).
  std::vector<uint8_t> shard_, test_pixels_;
  Eigen::Index features_ = 0;
  int value_bytes_ = 1;
  void put_sample(Matrix& x, Eigen::Index col, const std::vector<uint8_t>& pixels, Eigen::Index features,
                  int64_t j) const;
  std::vector<uint8_t> labels_, test_y_;
  // The values the next gradient is computed at, copied out of each answer into memory
  // aligned for Eigen's widest vectors. Computing at the received frame itself (tried:
  // it saves a 0.9 MB copy a step) made the result depend, in the last bits, on where
  // the frame happened to lie (three runs of one job gave three models; copying made
  // them one again), most likely because Eigen splits its loops at aligned addresses.
  // Gradients are written to aligned memory too.
  using AlignedFloats = std::vector<float, Eigen::aligned_allocator<float>>;
  AlignedFloats params_;
  Workspace ws_;
};

}  // namespace custody::actors
