// Custody's math path in one process, without actors or sockets: the same Model and
// Optimizer code the workers and parameter servers run, with W workers' gradients
// averaged per step as BSP does, on one thread. Prints samples/s and test accuracy per
// epoch, then one JSON line (with the time to TARGET test accuracy, default 0.88).
//   build/bin/custody-bench-math [JOBFILE [TARGET]]
// With --ceiling SECONDS: one step's math (a worker's gradient of the next batch and the
// server's optimizer update) against the plain Eigen matrix products of the same step
// alone (the ceiling: forward products and the backward weight and input products, no
// bias, activation, loss or update), each run for SECONDS on this thread, alternating
// three times; prints JSON with the medians and their ratio.
//   build/bin/custody-bench-math --ceiling 2 [JOBFILE]
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <numeric>
#include <random>

#include "core/dataset.h"
#include "core/float_env.h"
#include "core/job_spec.h"
#include "core/model.h"
#include "core/optimizer.h"

using namespace custody;

namespace {

// Runs fn (which trains `batch` samples) for about `seconds`; samples/s.
template <class F>
double rate(double seconds, int batch, F fn) {
  int64_t samples = 0;
  auto t0 = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    for (int i = 0; i < 20; ++i) fn();
    samples += 20 * batch;
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return samples / elapsed;
}

double median3(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int ceiling(double seconds, const JobSpec& spec, const LabeledSet& train) {
  if (!spec.layers.empty()) {
    std::fprintf(stderr, "--ceiling compares the MLP's products only; this job has model.layers\n");
    return 2;
  }
  Model model(spec.layer_sizes(train.features));
  std::vector<float> params = model.initial_parameters(spec.seed);
  auto opt = make_optimizer(spec.optimizer, params.size());
  const int B = spec.batch_size;
  // Every step takes the next batch of the training set, as a worker does: one batch
  // trained over and over drives values into the denormal range and measures that instead
  // of the math (issue 17). Both sides read the same batches.
  const Matrix all = features(train, 0, train.count);
  const int64_t batches = train.count / B;
  int64_t next = 0;
  auto next_batch = [&] {
    const float* first = all.data() + (next++ % batches) * B * all.rows();
    return MatrixView(first, all.rows(), B);
  };
  std::vector<float> grad(params.size());
  Workspace ws;
  auto custody_step = [&] {
    const int64_t b = next % batches;
    MatrixView view = next_batch();
    (void)model.gradient(params.data(), view, train.labels.data() + b * B, grad.data(), ws);
    opt->apply(params.data(), grad.data());
  };
  // The plain products: W_l (out x in) times A_{l-1} (in x B) forward; backward
  // dW_l = D_l A_{l-1}^T and D_{l-1} = W_l^T D_l.
  const auto& sizes = model.layer_sizes();
  std::vector<Matrix> w, a, d, dw;
  a.push_back(Matrix());  // a[0] is the batch, read in place
  for (size_t l = 1; l < sizes.size(); ++l) {
    w.push_back(Matrix::Random(sizes[l], sizes[l - 1]));
    dw.push_back(Matrix(sizes[l], sizes[l - 1]));
    a.push_back(Matrix(sizes[l], B));
    d.push_back(Matrix::Random(sizes[l], B));
  }
  auto eigen_step = [&] {
    MatrixView x = next_batch();
    a[1].noalias() = w[0] * x;
    for (size_t l = 1; l < w.size(); ++l) a[l + 1].noalias() = w[l] * a[l];
    for (size_t l = w.size(); l-- > 0;) {
      if (l == 0) {
        dw[0].noalias() = d[0] * x.transpose();
      } else {
        dw[l].noalias() = d[l] * a[l].transpose();
      }
      if (l > 0) d[l - 1].noalias() = w[l].transpose() * d[l];
    }
  };
  std::vector<double> ours, ceil;
  for (int round = 0; round < 3; ++round) {
    ours.push_back(rate(seconds, B, custody_step));
    ceil.push_back(rate(seconds, B, eigen_step));
  }
  const double m_ours = median3(ours), m_ceil = median3(ceil);
  std::printf("{\"benchmark\": \"math_path\", \"layers\": \"%s\", \"batch\": %d, \"threads\": %d, "
              "\"custody_samples_per_sec\": %.0f, \"eigen_ceiling_samples_per_sec\": %.0f, \"ratio\": %.3f, "
              "\"simd\": \"%s\"}\n",
              [&] {
                std::string t;
                for (size_t i = 0; i < sizes.size(); ++i) t += (i ? "-" : "") + std::to_string(sizes[i]);
                return t;
              }().c_str(),
              B, Eigen::nbThreads(), m_ours, m_ceil, m_ours / m_ceil, Eigen::SimdInstructionSetsInUse());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const FlushDenormals flush;  // as every worker and server computes (core/float_env.h)
  const bool compare = argc > 2 && std::string(argv[1]) == "--ceiling";
  const int path_arg = compare ? 3 : 1;
  auto spec = read_job_file(argc > path_arg ? argv[path_arg] : "configs/jobs/fashion_mlp.toml");
  if (!spec.is_ok()) {
    std::fprintf(stderr, "%s\n", spec.status().to_string().c_str());
    return 2;
  }
  auto data = load_data(spec->data);
  if (!data.is_ok()) {
    std::fprintf(stderr, "%s\n", data.status().to_string().c_str());
    return 2;
  }
  if (compare) {
    const double seconds = std::atof(argv[2]);
    return ceiling(seconds > 0 ? seconds : 2, spec.value(), data->train);
  }
  auto made = spec->make_model(data->train.features);
  if (!made.is_ok()) {
    std::fprintf(stderr, "%s\n", made.status().to_string().c_str());
    return 2;
  }
  const Model& model = made.value();
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
  double busy = 0, time_to_target = -1;
  std::string history;
  const double target = argc > path_arg + 1 ? std::atof(argv[path_arg + 1]) : 0.88;
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
    const double accuracy = double(st.correct) / st.samples;
    if (time_to_target < 0 && accuracy >= target) time_to_target = busy;
    history += (history.empty() ? "" : ", ") + std::to_string(accuracy);
    std::printf("epoch %d  test accuracy %.4f  loss %.4f  %.0f samples/s\n", e, accuracy, st.loss_sum / st.samples,
                double(steps) * B * W * e / busy);
    std::fflush(stdout);
  }
  // The last line, for bench/compare.py: one JSON object.
  std::printf("{\"benchmark\": \"math_path_training\", \"samples_per_sec\": %.0f, \"train_seconds\": %.3f, "
              "\"time_to_target_s\": %s, \"accuracy_history\": [%s]}\n",
              double(steps) * B * W * spec->epochs / busy, busy,
              time_to_target < 0 ? "null" : std::to_string(time_to_target).c_str(), history.c_str());
}
