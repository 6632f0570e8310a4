// The seeds' CNN math in one process, one thread, no actors (issue 17), in three modes.
//
//   build/bin/custody-bench-cnn step SECONDS [JOBFILE]
// One training step of the job's model (default configs/jobs/fashion_cnn.toml) as a
// worker and a server do it: forward + backward of the next real Fashion-MNIST batch
// (batch_size of the job), then the optimizer's update (Adam), for SECONDS. Prints one
// JSON line with samples/s.
//   build/bin/custody-bench-cnn digest STEPS [JOBFILE]
// STEPS such steps from the initial parameters, then their FNV-1a digest: a change to the
// math that keeps the bits keeps the digest.
// bench/cnn_math.py alternates the step mode with PyTorch doing the same on one thread
// (bench/torch_cnn.py step) and reports the ratio of the medians.
//
//   build/bin/custody-bench-cnn conv SECONDS [ROUNDS]
// The seeds' conv layer (1x28x28 input, 32 filters of 3x3, batch 64) computed three ways
// on this thread, forward (outputs in the activations' CHW layout, bias added) and
// backward (weight and bias gradients; the first layer needs no input gradient):
//   im2col: the patch matrix of the whole batch times the weights, one Eigen GEMM each way
//           (what core/model.cc does for a conv not followed by a pool, written out here so
//           each part can be timed alone; a ReLU conv with a pool after it, as the seeds'
//           CNN's, is computed with the pool and directly, which `step` measures);
//   tensor_patches: Eigen's Tensor module, extract_image_patches + contract (what
//           TensorFlow's SpatialConvolution is built from), then shuffled into CHW;
//   tensor_convolve: Eigen's Tensor .convolve(), one 2-D convolution per filter and channel
//           (the weight gradient as a convolution of the input by the deltas over batch,
//           height and width).
// Each runs for SECONDS per round, ROUNDS (default 3) alternating rounds; prints one JSON
// line with the medians in microseconds per batch (wall, and in cpu_us [forward,
// backward] this thread's CPU time). All three are checked against each
// other first (max abs difference printed).
//
//   build/bin/custody-bench-cnn update SECONDS [ROUNDS]
// A parameter server's BSP step-end update for the CNN's 693,962 keys (Adam, the mean of
// two gradients), three ways, alternating: "passes" (the mean written out, then apply()'s
// passes over the whole range: what the server did before), "one_pass" (apply_mean: one
// pass over L1-sized blocks) and "split" (apply_mean_split in 128 KiB pieces shared with
// one ForkJoin helper, as the server does for ranges from 2^18 floats). Checks first that
// the three give the same values to the bit; prints one JSON line with the medians in
// microseconds per update (wall, and the calling thread's CPU).
// GCC 12 at -O3 reports an out-of-bounds std::array subscript inside Eigen's Tensor
// expression templates (a dimension loop it cannot prove empty): a false positive there.
#pragma GCC diagnostic ignored "-Warray-bounds"
#include <unsupported/Eigen/CXX11/Tensor>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/dataset.h"
#include "core/float_env.h"
#include "core/job_spec.h"
#include "core/model.h"
#include "core/optimizer.h"
#include "protocols/fork_join.h"

using namespace custody;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// This thread's CPU time: on a machine shared with other builds it moves less than the
// wall clock when the thread waits for a core (the caches are still shared).
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Calls fn in groups of `group` for about `seconds`; wall seconds per call (and, through
// cpu_per_call, CPU seconds per call).
double time_per_call(double seconds, int group, const std::function<void()>& fn, double* cpu_per_call = nullptr) {
  int64_t calls = 0;
  const auto t0 = std::chrono::steady_clock::now();
  const double c0 = thread_cpu_seconds();
  double elapsed = 0;
  while (elapsed < seconds) {
    for (int i = 0; i < group; ++i) fn();
    calls += group;
    elapsed = seconds_since(t0);
  }
  if (cpu_per_call != nullptr) *cpu_per_call = (thread_cpu_seconds() - c0) / static_cast<double>(calls);
  return elapsed / static_cast<double>(calls);
}

// With steps > 0: exactly that many steps, then the parameters' FNV-1a digest instead of
// a rate (whether a change of the math kept the CNN's results to the bit).
int step_mode(double seconds, const char* job_path, int64_t digest_steps = 0) {
  auto spec = read_job_file(job_path);
  if (!spec.is_ok()) {
    std::fprintf(stderr, "%s\n", spec.status().to_string().c_str());
    return 2;
  }
  auto data = load_data(spec->data);
  if (!data.is_ok()) {
    std::fprintf(stderr, "%s\n", data.status().to_string().c_str());
    return 2;
  }
  auto made = spec->make_model(data->train.features);
  if (!made.is_ok()) {
    std::fprintf(stderr, "%s\n", made.status().to_string().c_str());
    return 2;
  }
  const Model& model = made.value();
  std::vector<float> params = model.initial_parameters(spec->seed);
  std::vector<float> grad(params.size());
  auto opt = make_optimizer(spec->optimizer, params.size());
  const int B = spec->batch_size;
  // Fresh batches every step, in the data set's order (Fashion-MNIST's files are mixed):
  // training one batch over and over measures something else (denormals, cache).
  const Matrix all = features(data->train, 0, data->train.count);
  const int64_t batches = data->train.count / B;
  int64_t next = 0;
  Workspace ws;
  double loss = 0;
  auto step = [&] {
    const int64_t b = next++ % batches;
    const MatrixView x(all.data() + b * B * all.rows(), all.rows(), B);
    loss += model.gradient(params.data(), x, data->train.labels.data() + b * B, grad.data(), ws).loss_sum;
    opt->apply(params.data(), grad.data());
  };
  if (digest_steps > 0) {
    for (int64_t i = 0; i < digest_steps; ++i) step();
    uint64_t h = 1469598103934665603ull;
    for (float v : params) {
      uint32_t bits;
      std::memcpy(&bits, &v, sizeof bits);
      for (int i = 0; i < 4; ++i) h = (h ^ ((bits >> (8 * i)) & 0xff)) * 1099511628211ull;
    }
    std::printf("{\"benchmark\": \"cnn_math_digest\", \"steps\": %lld, \"mean_loss\": %.6f, "
                "\"parameters_fnv1a\": \"%016llx\"}\n",
                static_cast<long long>(digest_steps), loss / (static_cast<double>(digest_steps) * B),
                static_cast<unsigned long long>(h));
    return 0;
  }
  for (int i = 0; i < 20; ++i) step();  // warm: workspace sized, pages touched
  double cpu_per_step = 0;
  const double per_step = time_per_call(seconds, 10, step, &cpu_per_step);
  std::printf("{\"benchmark\": \"cnn_math_step\", \"architecture\": \"%s\", \"batch\": %d, \"threads\": %d, "
              "\"steps\": %lld, \"samples_per_sec\": %.1f, \"samples_per_cpu_sec\": %.1f, \"ms_per_step\": %.4f, "
              "\"mean_loss\": %.4f, \"simd\": \"%s\"}\n",
              model.architecture().c_str(), B, Eigen::nbThreads(), static_cast<long long>(next), B / per_step,
              B / cpu_per_step, per_step * 1e3, loss / (static_cast<double>(next) * B), Eigen::SimdInstructionSetsInUse());
  return 0;
}

// The seeds' conv layer: C=1, H=W=28, F=32, k=3, batch 64.
constexpr int C = 1, H = 28, W = 28, F = 32, k = 3, OH = H - k + 1, OW = W - k + 1, Bt = 64;
constexpr int P = OH * OW, K = C * k * k, CHW = C * H * W;

struct Im2col {
  Matrix cols, scratch, d_out;
  void forward(const float* x, const float* w_, const float* bias, Matrix& out) {
    cols.resize(static_cast<Eigen::Index>(Bt) * P, K);
    for (int c = 0; c < C; ++c)
      for (int i = 0; i < k; ++i)
        for (int j = 0; j < k; ++j) {
          float* dst = cols.data() + static_cast<Eigen::Index>((c * k + i) * k + j) * Bt * P;
          for (int b = 0; b < Bt; ++b) {
            const float* src = x + b * CHW + c * H * W + i * W + j;
            for (int oy = 0; oy < OH; ++oy) std::copy_n(src + oy * W, OW, dst + b * P + oy * OW);
          }
        }
    Eigen::Map<const Matrix> w(w_, K, F);
    scratch.noalias() = cols * w;
    out.resize(F * P, Bt);
    for (int b = 0; b < Bt; ++b)
      for (int f = 0; f < F; ++f) {
        const float* s = scratch.data() + static_cast<Eigen::Index>(f) * Bt * P + b * P;
        float* d = out.data() + static_cast<Eigen::Index>(b) * F * P + f * P;
        for (int p = 0; p < P; ++p) d[p] = s[p] + bias[f];
      }
  }
  void backward(const Matrix& delta, float* gw_, float* gb_) {
    d_out.resize(static_cast<Eigen::Index>(Bt) * P, F);
    for (int b = 0; b < Bt; ++b)
      for (int f = 0; f < F; ++f)
        std::copy_n(delta.data() + static_cast<Eigen::Index>(b) * F * P + f * P, P,
                    d_out.data() + static_cast<Eigen::Index>(f) * Bt * P + b * P);
    Eigen::Map<Matrix> gw(gw_, K, F);
    gw.noalias() = cols.transpose() * d_out;
    Eigen::Map<Vector>(gb_, F) = d_out.colwise().sum().transpose();
  }
};

using T2 = Eigen::Tensor<float, 2>;
using T3 = Eigen::Tensor<float, 3>;
using T4 = Eigen::Tensor<float, 4>;
using T5 = Eigen::Tensor<float, 5>;
using CT1 = Eigen::TensorMap<const Eigen::Tensor<float, 1>>;
using CT2 = Eigen::TensorMap<const Eigen::Tensor<float, 2>>;
using CT4 = Eigen::TensorMap<const Eigen::Tensor<float, 4>>;
using Pair = Eigen::IndexPair<Eigen::Index>;

// Column-major tensors: a batch of CHW samples is (W, H, C, B) with W fastest. Eigen's
// image patches read (depth, rows, cols, batch): depth C must come first, so the input is
// shuffled to (C, W, H, B) (free for C = 1: the data does not move, but the expression is
// evaluated). Patches (C, kw, kh, P, B): patch index p = ox + OW*oy, as im2col's.
struct TensorPatches {
  T5 patches;
  void forward(const float* x, const float* w_, const float* bias_, Matrix& out_m) {
    CT4 in(x, W, H, C, Bt);
    const Eigen::array<int, 4> to_cwhb{2, 0, 1, 3};
    patches = in.shuffle(to_cwhb).extract_image_patches(k, k, 1, 1, 1, 1, Eigen::PADDING_VALID);
    // Weights [F, C, kh, kw] row-major = col-major (kw, kh, C, F); the patch order is
    // (C, kw, kh): shuffle the weights to (C, kw, kh, F) and flatten to (K, F).
    CT4 w4(w_, k, k, C, F);
    const Eigen::array<int, 4> w_order{2, 0, 1, 3};
    const T2 w = w4.shuffle(w_order).reshape(Eigen::array<Eigen::Index, 2>{K, F});
    const Eigen::array<Pair, 1> over_k{Pair(0, 0)};
    // (P*B, F) -> (P, B, F) -> (P, F, B), the activations' CHW per sample, plus the bias.
    const Eigen::array<Eigen::Index, 3> pbf{P, Bt, F};
    const Eigen::array<int, 3> to_pfb{0, 2, 1};
    CT1 bias(bias_, F);
    const Eigen::array<Eigen::Index, 3> b_shape{1, F, 1}, b_bcast{P, 1, Bt};
    out_m.resize(F * P, Bt);
    Eigen::TensorMap<Eigen::Tensor<float, 3>> o(out_m.data(), P, F, Bt);
    o = patches.reshape(Eigen::array<Eigen::Index, 2>{K, static_cast<Eigen::Index>(P) * Bt})
            .contract(w, over_k)
            .reshape(pbf)
            .shuffle(to_pfb) +
        bias.reshape(b_shape).broadcast(b_bcast);
  }
  void backward(const Matrix& delta, float* gw_, float* gb_) {
    Eigen::TensorMap<const Eigen::Tensor<float, 3>> d(delta.data(), P, F, Bt);
    const auto pk = patches.reshape(Eigen::array<Eigen::Index, 3>{K, P, Bt});
    const Eigen::array<Pair, 2> over_pb{Pair(1, 0), Pair(2, 2)};
    const T2 g = pk.contract(d, over_pb);  // (K, F) in the patches' (C, kw, kh) order
    // Back to [F, C, kh, kw] row-major = col-major (kw, kh, C, F).
    const Eigen::array<int, 4> back{1, 2, 0, 3};
    Eigen::TensorMap<T4>(gw_, k, k, C, F) = g.reshape(Eigen::array<Eigen::Index, 4>{C, k, k, F}).shuffle(back);
    const Eigen::array<Eigen::Index, 2> sum_pb{0, 2};
    Eigen::TensorMap<Eigen::Tensor<float, 1>>(gb_, F) = d.sum(sum_pb);
  }
};

struct TensorConvolve {
  void forward(const float* x, const float* w_, const float* bias, Matrix& out_m) {
    out_m.resize(F * P, Bt);
    const Eigen::array<Eigen::Index, 2> over_wh{0, 1};
    for (int f = 0; f < F; ++f) {
      Eigen::TensorMap<Eigen::Tensor<float, 4>> out(out_m.data(), OW, OH, F, Bt);
      for (int c = 0; c < C; ++c) {
        CT4 in(x, W, H, C, Bt);
        CT2 kernel(w_ + (f * C + c) * k * k, k, k);  // (kw, kh) col-major
        if (c == 0) {
          out.chip(f, 2) = in.chip(c, 2).convolve(kernel, over_wh) + out.chip(f, 2).constant(bias[f]);
        } else {
          out.chip(f, 2) += in.chip(c, 2).convolve(kernel, over_wh);
        }
      }
    }
  }
  void backward(const float* x, const Matrix& delta, float* gw_, float* gb_) {
    CT4 in(x, W, H, C, Bt);
    CT4 d(delta.data(), OW, OH, F, Bt);
    const Eigen::array<Eigen::Index, 3> over_whb{0, 1, 2};
    for (int f = 0; f < F; ++f) {
      const Eigen::Tensor<float, 3> df = d.chip(f, 2);
      for (int c = 0; c < C; ++c) {
        Eigen::TensorMap<Eigen::Tensor<float, 3>>(gw_ + (f * C + c) * k * k, k, k, 1) =
            in.chip(c, 2).convolve(df, over_whb);
      }
      gb_[f] = Eigen::Tensor<float, 0>(df.sum())();
    }
  }
};

int conv_mode(double seconds, int rounds) {
  Matrix x = Matrix::Random(CHW, Bt).cwiseAbs();
  std::vector<float> w(static_cast<size_t>(K) * F), bias(F);
  for (auto& v : w) v = static_cast<float>(std::rand()) / RAND_MAX - 0.5f;
  for (auto& v : bias) v = static_cast<float>(std::rand()) / RAND_MAX - 0.5f;
  const Matrix delta = Matrix::Random(F * P, Bt);
  Im2col a;
  TensorPatches b;
  TensorConvolve c;
  Matrix out_a, out_b, out_c;
  std::vector<float> gw_a(w.size()), gw_b(w.size()), gw_c(w.size()), gb_a(F), gb_b(F), gb_c(F);
  a.forward(x.data(), w.data(), bias.data(), out_a);
  b.forward(x.data(), w.data(), bias.data(), out_b);
  c.forward(x.data(), w.data(), bias.data(), out_c);
  a.backward(delta, gw_a.data(), gb_a.data());
  b.backward(delta, gw_b.data(), gb_b.data());
  c.backward(x.data(), delta, gw_c.data(), gb_c.data());
  auto maxdiff = [](const float* p, const float* q, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; ++i) m = std::max(m, static_cast<double>(std::abs(p[i] - q[i])));
    return m;
  };
  const size_t outs = static_cast<size_t>(out_a.size());
  const double diff = std::max({maxdiff(out_a.data(), out_b.data(), outs), maxdiff(out_a.data(), out_c.data(), outs),
                                maxdiff(gw_a.data(), gw_b.data(), w.size()) / Bt,
                                maxdiff(gw_a.data(), gw_c.data(), w.size()) / Bt, maxdiff(gb_a.data(), gb_b.data(), F) / Bt,
                                maxdiff(gb_a.data(), gb_c.data(), F) / Bt});
  if (!(diff < 1e-3)) {
    std::fprintf(stderr, "the three convolutions disagree: max difference %g\n", diff);
    return 1;
  }
  // Wall and CPU seconds per call of each, every round in the same order.
  std::vector<std::vector<double>> wall(6), cpu(6);
  const std::vector<std::pair<int, std::function<void()>>> kinds = {
      {5, [&] { a.forward(x.data(), w.data(), bias.data(), out_a); }},
      {5, [&] { a.backward(delta, gw_a.data(), gb_a.data()); }},
      {5, [&] { b.forward(x.data(), w.data(), bias.data(), out_b); }},
      {5, [&] { b.backward(delta, gw_b.data(), gb_b.data()); }},
      {2, [&] { c.forward(x.data(), w.data(), bias.data(), out_c); }},
      {2, [&] { c.backward(x.data(), delta, gw_c.data(), gb_c.data()); }}};
  for (int r = 0; r < rounds; ++r) {
    for (size_t i = 0; i < kinds.size(); ++i) {
      double c_s = 0;
      wall[i].push_back(time_per_call(seconds, kinds[i].first, kinds[i].second, &c_s));
      cpu[i].push_back(c_s);
    }
  }
  const double us = 1e6;
  const auto fa = wall[0], ba = wall[1], fb = wall[2], bb = wall[3], fc = wall[4], bc = wall[5];
  std::printf("{\"benchmark\": \"cnn_conv_layer\", \"layer\": \"1x28x28 conv2d:32:3\", \"batch\": %d, \"threads\": %d, "
              "\"rounds\": %d, \"max_abs_difference\": %.3g, "
              "\"im2col_forward_us\": %.1f, \"im2col_backward_us\": %.1f, "
              "\"tensor_patches_forward_us\": %.1f, \"tensor_patches_backward_us\": %.1f, "
              "\"tensor_convolve_forward_us\": %.1f, \"tensor_convolve_backward_us\": %.1f, "
              "\"cpu_us\": {\"im2col\": [%.1f, %.1f], \"tensor_patches\": [%.1f, %.1f], \"tensor_convolve\": [%.1f, %.1f]}, "
              "\"simd\": \"%s\"}\n",
              Bt, Eigen::nbThreads(), rounds, diff, median(fa) * us, median(ba) * us, median(fb) * us, median(bb) * us,
              median(fc) * us, median(bc) * us, median(cpu[0]) * us, median(cpu[1]) * us, median(cpu[2]) * us,
              median(cpu[3]) * us, median(cpu[4]) * us, median(cpu[5]) * us, Eigen::SimdInstructionSetsInUse());
  return 0;
}

int update_mode(double seconds, int rounds) {
  const size_t n = 693962;  // conv 32x(3x3)+32, dense 5408x128+128, dense 128x10+10
  OptimizerConfig c;
  c.kind = OptimizerConfig::Kind::kAdam;
  c.learning_rate = 1e-3f;
  std::vector<float> a(n), b(n), mean(n);
  for (size_t i = 0; i < n; ++i) {
    a[i] = std::sin(static_cast<float>(i)) * 1e-2f;
    b[i] = std::cos(static_cast<float>(i) * 0.7f) * 1e-2f;
  }
  ForkJoin helpers(1);
  const Optimizer::ParallelRun shared = [&](size_t k, const std::function<void(size_t)>& task) {
    helpers.run(k, task);
  };
  constexpr size_t kPiece = size_t{1} << 15;  // as ParameterServerState::apply
  const size_t pieces = (n + kPiece - 1) / kPiece;
  struct Way {
    const char* name;
    std::unique_ptr<Optimizer> opt;
    std::vector<float> params;
    std::function<void(Way&)> run;
  };
  std::vector<Way> ways;
  ways.push_back({"passes", make_optimizer(c, n), std::vector<float>(n, 0.01f), [&](Way& w) {
                    for (size_t i = 0; i < n; ++i) mean[i] = (a[i] + b[i]) * 0.5f;
                    w.opt->apply(w.params.data(), mean.data());
                  }});
  ways.push_back({"one_pass", make_optimizer(c, n), std::vector<float>(n, 0.01f),
                  [&](Way& w) { w.opt->apply_mean(w.params.data(), a.data(), b.data(), 0.5f); }});
  ways.push_back({"split", make_optimizer(c, n), std::vector<float>(n, 0.01f), [&](Way& w) {
                    w.opt->apply_mean_split(w.params.data(), a.data(), b.data(), 0.5f, pieces, shared);
                  }});
  for (Way& w : ways) w.run(w);  // one update each, then the same values to the bit
  for (Way& w : ways) {
    if (std::memcmp(w.params.data(), ways[0].params.data(), n * sizeof(float)) != 0) {
      std::fprintf(stderr, "%s gave other values than %s\n", w.name, ways[0].name);
      return 1;
    }
  }
  std::vector<std::vector<double>> wall(ways.size()), cpu(ways.size());
  for (int r = 0; r < rounds; ++r) {
    for (size_t k = 0; k < ways.size(); ++k) {
      double c1 = 0;
      wall[k].push_back(time_per_call(seconds, 4, [&] { ways[k].run(ways[k]); }, &c1));
      cpu[k].push_back(c1);
    }
  }
  const double us = 1e6;
  std::printf("{\"benchmark\": \"cnn_update\", \"keys\": %zu, \"rounds\": %d, \"wall_us\": {\"passes\": %.0f, "
              "\"one_pass\": %.0f, \"split\": %.0f}, \"caller_cpu_us\": {\"passes\": %.0f, \"one_pass\": %.0f, "
              "\"split\": %.0f}}\n",
              n, rounds, median(wall[0]) * us, median(wall[1]) * us, median(wall[2]) * us, median(cpu[0]) * us,
              median(cpu[1]) * us, median(cpu[2]) * us);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const FlushDenormals flush;  // as every worker and server computes (core/float_env.h)
  const std::string mode = argc > 1 ? argv[1] : "";
  const double seconds = argc > 2 ? std::atof(argv[2]) : 0;
  if (mode == "step" && seconds > 0) {
    return step_mode(seconds, argc > 3 ? argv[3] : "configs/jobs/fashion_cnn.toml");
  }
  if (mode == "digest" && seconds > 0) {
    return step_mode(0, argc > 3 ? argv[3] : "configs/jobs/fashion_cnn.toml", static_cast<int64_t>(seconds));
  }
  if (mode == "conv" && seconds > 0) {
    const int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
    return conv_mode(seconds, rounds > 0 ? rounds : 3);
  }
  if (mode == "update" && seconds > 0) {
    const int rounds = argc > 3 ? std::atoi(argv[3]) : 3;
    return update_mode(seconds, rounds > 0 ? rounds : 3);
  }
  std::fprintf(stderr,
               "usage: custody-bench-cnn step SECONDS [JOBFILE]   (forward+backward+update of the job's model)\n"
               "       custody-bench-cnn digest STEPS [JOBFILE]   (the parameters' digest after STEPS steps)\n"
               "       custody-bench-cnn conv SECONDS [ROUNDS]    (im2col+GEMM vs Eigen Tensor convolutions)\n"
               "       custody-bench-cnn update SECONDS [ROUNDS]  (the server's step-end Adam update, three ways)\n");
  return 2;
}
