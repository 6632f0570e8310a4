// TracInCP's scoring in one process (core/tracin.h): the whole Fashion-MNIST training set
// (60,000 records) against C checkpoints of the default MLP (784-256-128-10), on T threads,
// as storage/attribution.cc runs it (chunks of 2,048 records, one Workspace per thread).
// The checkpoints are the model's seeded initial weights drawn with C seeds: the cost does
// not depend on the values. Prints one line per (checkpoints, threads): seconds (the median
// of ROUNDS, alternating the configurations) and records per second.
//   custody-bench-attribution-math [ROUNDS] [DATA_DIR]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "core/dataset.h"
#include "core/float_env.h"
#include "core/tracin.h"

using namespace custody;

namespace {

double score_seconds(const Model& model, const std::vector<std::vector<float>>& params, size_t checkpoints,
                     unsigned threads, const LabeledSet& train, const Matrix& test) {
  std::vector<TracinCheckpoint> cps;
  for (size_t c = 0; c < checkpoints; ++c) cps.push_back({params[c].data(), 0.1f});
  auto scorer = TracinScorer::make(model, cps).value();
  const uint8_t label = 3;
  scorer.set_test(MatrixView(test.data(), test.rows(), 1), &label);
  std::vector<float> out(static_cast<size_t>(train.count));
  const auto start = std::chrono::steady_clock::now();
  std::atomic<int64_t> next{0};
  auto work = [&] {
    const FlushDenormals flush;
    Workspace ws;
    for (int64_t b; (b = next.fetch_add(2048)) < train.count;) {
      const int64_t e = std::min(train.count, b + 2048);
      const Matrix x = features(train, b, e);
      scorer.score(MatrixView(x.data(), x.rows(), x.cols()), train.labels.data() + b, out.data() + b, ws);
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::stoi(argv[1]) : 3;
  const std::string dir = argc > 2 ? argv[2] : "/usr/share/datasets/fashion-mnist";
  auto data = read_idx(dir + "/train-images-idx3-ubyte.gz", dir + "/train-labels-idx1-ubyte.gz");
  if (!data.is_ok()) {
    std::fprintf(stderr, "%s\n", data.status().message().c_str());
    return 1;
  }
  const Model model({784, 256, 128, 10});
  std::vector<std::vector<float>> params;
  for (uint64_t seed = 1; seed <= 10; ++seed) params.push_back(model.initial_parameters(seed));
  const Matrix test = features(data.value(), 0, 1);
  struct Config {
    size_t checkpoints;
    unsigned threads;
    std::vector<double> seconds;
  };
  std::vector<Config> configs{{1, 1, {}}, {5, 1, {}}, {10, 1, {}}, {5, 2, {}}, {10, 2, {}}};
  for (int r = 0; r < rounds; ++r) {
    for (auto& c : configs) c.seconds.push_back(score_seconds(model, params, c.checkpoints, c.threads, data.value(), test));
  }
  std::printf("%-28s %10s %14s\n", "60,000 records, 784-256-128-10", "seconds", "records/s");
  for (auto& c : configs) {
    std::sort(c.seconds.begin(), c.seconds.end());
    const double median = c.seconds[c.seconds.size() / 2];
    std::printf("%2zu checkpoint(s), %u thread(s) %10.2f %14.0f\n", c.checkpoints, c.threads, median,
                double(data.value().count) / median);
  }
  return 0;
}
