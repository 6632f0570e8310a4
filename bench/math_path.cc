// Custody's math path in one process, without actors or sockets: the same Model and
// Optimizer code the workers and parameter servers run, with W workers' gradients
// averaged per step as BSP does. Prints samples/s and test accuracy per epoch.
//   build/bin/custody-bench-math [JOBFILE]
#include <chrono>
#include <cstdio>
#include <numeric>
#include <random>

#include "core/dataset.h"
#include "core/job_spec.h"
#include "core/model.h"
#include "core/optimizer.h"

using namespace custody;

int main(int argc, char** argv) {
  std::string path = argc > 1 ? argv[1] : "configs/jobs/fashion_mlp.toml";
  auto spec = read_job_file(path);
  if (!spec.is_ok()) {
    std::fprintf(stderr, "%s\n", spec.status().to_string().c_str());
    return 2;
  }
  auto data = load_data(spec->data);
  if (!data.is_ok()) {
    std::fprintf(stderr, "%s\n", data.status().to_string().c_str());
    return 2;
  }
  Model model(spec->layer_sizes(data->train.features));
  std::vector<float> params = model.initial_parameters(spec->seed);
  auto opt = make_optimizer(spec->optimizer, params.size());
  const int W = spec->workers, B = spec->batch_size;
  Matrix train = features(data->train, 0, data->train.count);
  Matrix test = features(data->test, 0, data->test.count);
  std::vector<int64_t> order(data->train.count);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(spec->seed);
  std::vector<float> grad(params.size()), sum(params.size());
  Matrix batch(train.rows(), B);
  std::vector<uint8_t> labels(B);
  Workspace ws;
  const int64_t steps = data->train.count / (int64_t(B) * W);
  double busy = 0;
  for (int e = 1; e <= spec->epochs; ++e) {
    std::shuffle(order.begin(), order.end(), rng);
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < steps; ++s) {
      std::fill(sum.begin(), sum.end(), 0.0f);
      for (int w = 0; w < W; ++w) {
        for (int i = 0; i < B; ++i) {
          int64_t idx = order[(s * W + w) * B + i];
          batch.col(i) = train.col(idx);
          labels[i] = data->train.labels[idx];
        }
        MatrixView view(batch.data(), batch.rows(), batch.cols());
        (void)model.gradient(params.data(), view, labels.data(), grad.data(), ws);
        for (size_t k = 0; k < sum.size(); ++k) sum[k] += grad[k] / W;
      }
      opt->set_learning_rate(scheduled_learning_rate(spec->optimizer, (e - 1) * steps + s, steps * spec->epochs));
      opt->apply(params.data(), sum.data());
    }
    busy += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    MatrixView tv(test.data(), test.rows(), test.cols());
    BatchStats st = model.evaluate(params.data(), tv, data->test.labels.data(), ws);
    std::printf("epoch %d  test accuracy %.4f  loss %.4f  %.0f samples/s\n", e,
                double(st.correct) / st.samples, st.loss_sum / st.samples,
                double(steps) * B * W * e / busy);
    std::fflush(stdout);
  }
}
