// What DP-SGD's math costs against plain SGD's, in one process (no actors, no sockets): a
// step of the MLP 784-256-128-10 on Fashion-MNIST batches, non-private (Model::gradient)
// against private (a Poisson sample of the same expected size, Model::clipped_gradient_sum,
// and the server's noise: one Gaussian per parameter from SecureRandom). The two run
// alternately, `rounds` times for `seconds` each; prints JSON with each side's median
// samples/s and the ratio private/non-private.
//   build/bin/custody-bench-dp-math [SECONDS] [ROUNDS] [BATCH]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "core/dataset.h"
#include "core/job_spec.h"
#include "core/model.h"
#include "core/secure_random.h"

using namespace custody;

namespace {

template <class F>
double rate(double seconds, F step) {
  int64_t samples = 0;
  const auto t0 = std::chrono::steady_clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    samples += step();
    elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return static_cast<double>(samples) / elapsed;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 3.0;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 5;
  const int batch = argc > 3 ? std::atoi(argv[3]) : 64;
  auto spec = parse_job_spec("", "defaults");
  auto data = load_data(spec->data);
  if (!data.is_ok()) {
    std::fprintf(stderr, "%s\n", data.status().to_string().c_str());
    return 1;
  }
  const LabeledSet& train = data->train;
  Matrix all = features(train, 0, train.count);
  auto made = spec->make_model(train.features);
  if (!made.is_ok()) return 1;
  const Model& model = made.value();
  std::vector<float> params = model.initial_parameters(1), grad(model.num_parameters());
  Workspace ws;
  auto rng = SecureRandom::from_os();
  if (!rng.is_ok()) return 1;
  const double q = static_cast<double>(batch) / static_cast<double>(train.count);
  Matrix x(all.rows(), 4 * batch);
  std::vector<uint8_t> y(4 * batch);
  int64_t next = 0;
  auto plain = [&] {
    for (int i = 0; i < batch; ++i, next = (next + 1) % train.count) {
      x.col(i) = all.col(next);
      y[i] = train.labels[next];
    }
    MatrixView v(x.data(), x.rows(), batch);
    model.gradient(params.data(), v, y.data(), grad.data(), ws);
    return batch;
  };
  bool with_noise = true;
  auto dp = [&] {
    int taken = 0;
    for (uint64_t i = rng->geometric_skip(q); i < static_cast<uint64_t>(train.count) && taken < x.cols();
         i += 1 + rng->geometric_skip(q)) {
      x.col(taken) = all.col(static_cast<Eigen::Index>(i));
      y[taken++] = train.labels[i];
    }
    MatrixView v(x.data(), x.rows(), taken);
    model.clipped_gradient_sum(params.data(), v, y.data(), 1.0f, grad.data(), ws);
    if (with_noise) rng->add_gaussian(grad.data(), grad.size(), 0.01);
    return batch;  // the expected batch: what the step trains on average
  };
  // The worker's part alone (sampling and clipping; the servers add the noise) and the
  // whole step as one process would run it.
  std::vector<double> a, b, c;
  for (int r = 0; r < rounds; ++r) {
    a.push_back(rate(seconds, plain));
    with_noise = false;
    b.push_back(rate(seconds, dp));
    with_noise = true;
    c.push_back(rate(seconds, dp));
  }
  std::printf(
      "{\"batch\": %d, \"rounds\": %d, \"non_private_samples_per_s\": %.0f, "
      "\"private_worker_samples_per_s\": %.0f, \"private_with_noise_samples_per_s\": %.0f, "
      "\"worker_ratio\": %.3f, \"with_noise_ratio\": %.3f}\n",
      batch, rounds, median(a), median(b), median(c), median(b) / median(a), median(c) / median(a));
  return 0;
}
