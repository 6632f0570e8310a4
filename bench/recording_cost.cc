// What custody recording costs per checkpoint, against the training it records, measured
// in one process: recording a checkpoint of the default model (784-256-128-10: tensor
// hashes, manifest, lineage and contribution records, one synced RocksDB batch) versus
// training one epoch of Fashion-MNIST-sized data with the same math the workers run.
// The cluster records one checkpoint per epoch by default, so the ratio is the share of
// training time that recording takes, on one core; in the cluster it runs in the
// coordinator, beside the training, not in its path.
//   build/bin/custody-bench-recording [CHECKPOINTS]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include "actors/custody_recorder.h"
#include "core/dataset.h"
#include "core/model.h"
#include "core/optimizer.h"

using namespace custody;
using SteadyClock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  const int checkpoints = argc > 1 ? std::atoi(argv[1]) : 20;
  const Model model({784, 256, 128, 10});
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("custody-bench-recording-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto store = storage::CustodyStore::open(dir.string(), storage::OpenMode::kReadWrite);
  if (!store.is_ok()) {
    std::fprintf(stderr, "%s\n", store.status().to_string().c_str());
    return 2;
  }
  actors::CustodyRecorder recorder(store.value().get());
  msg::JobStatus job;
  job.job_id = "job-bench";
  job.name = "bench";
  job.submitter = "bench";
  JobSpec spec;
  (void)recorder.job_submitted(job, spec, {"d", "tr", "te", 60000, 10000}, model.layer_sizes(), "");

  std::vector<float> values = model.initial_parameters(1);
  std::map<std::string, actors::WorkerContribution> contributions;
  contributions["worker-1"].accepted = contributions["worker-2"].accepted = 468;
  std::vector<double> record_ms;
  std::string parent;
  for (int i = 0; i < checkpoints; ++i) {
    values[static_cast<size_t>(i)] += 1.0f;  // a new checkpoint each time, as training makes
    auto t0 = SteadyClock::now();
    auto id = recorder.checkpoint(job, model, values,
                                  {job.job_id, 0, static_cast<uint64_t>(i + 1) * 468, static_cast<uint32_t>(i + 1), parent,
                                   false},
                                  contributions);
    record_ms.push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count());
    if (!id.is_ok()) {
      std::fprintf(stderr, "%s\n", id.status().to_string().c_str());
      return 2;
    }
    parent = id.value();
  }
  std::sort(record_ms.begin(), record_ms.end());
  const double median_record = record_ms[record_ms.size() / 2];

  // The baseline: one epoch (60,000 samples, batch 64) of the same model's gradient and
  // optimizer math on synthetic 784-pixel data.
  LabeledSet data = make_synthetic(60000, 784, 10, 3);
  Matrix x = features(data, 0, data.count);
  std::vector<float> params = model.initial_parameters(2), grad(params.size());
  OptimizerConfig oc;
  auto opt = make_optimizer(oc, params.size());
  Workspace ws;
  auto t0 = SteadyClock::now();
  for (int64_t s = 0; s + 64 <= data.count; s += 64) {
    MatrixView v(x.data() + s * 784, 784, 64);
    (void)model.gradient(params.data(), v, data.labels.data() + s, grad.data(), ws);
    opt->apply(params.data(), grad.data());
  }
  const double epoch_ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
  std::printf("%-46s %10.2f ms\n", ("record one checkpoint (median of " + std::to_string(checkpoints) + ")").c_str(),
              median_record);
  std::printf("%-46s %10.2f ms\n", "train one epoch in one process (baseline)", epoch_ms);
  std::printf("%-46s %10.2f %%\n", "recording / training, one checkpoint per epoch", 100.0 * median_record / epoch_ms);
  std::printf("{\"benchmark\": \"recording_cost\", \"record_checkpoint_ms\": %.3f, \"epoch_ms\": %.1f, "
              "\"ratio\": %.5f}\n",
              median_record, epoch_ms, median_record / epoch_ms);
  store.value().reset();
  fs::remove_all(dir);
  return 0;
}
