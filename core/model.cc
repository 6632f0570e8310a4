#include "core/model.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>

namespace custody {

const char* to_string(Activation a) { return a == Activation::kTanh ? "tanh" : "relu"; }

std::optional<Activation> parse_activation(std::string_view name) {
  if (name == "relu") return Activation::kRelu;
  if (name == "tanh") return Activation::kTanh;
  return std::nullopt;
}

const char* to_string(LayerKind k) {
  switch (k) {
    case LayerKind::kDense: return "dense";
    case LayerKind::kConv2D: return "conv2d";
    case LayerKind::kMaxPool: return "maxpool";
    case LayerKind::kFlatten: return "flatten";
  }
  return "?";
}

namespace {

std::string shape_text(const Shape& s) {
  return std::to_string(s.channels) + "x" + std::to_string(s.height) + "x" + std::to_string(s.width);
}

std::vector<LayerSpec> dense_layers(const std::vector<int>& sizes) {
  std::vector<LayerSpec> layers;
  for (size_t l = 1; l < sizes.size(); ++l) layers.push_back({LayerKind::kDense, sizes[l], 0});
  return layers;
}

}  // namespace

Model::Model(std::vector<int> layer_sizes, Activation hidden) {
  auto m = make(Shape{layer_sizes.empty() ? 0 : layer_sizes.front(), 1, 1}, dense_layers(layer_sizes), hidden);
  if (!m.is_ok()) std::abort();  // a broken REQUIRES; make() is the checked way
  *this = std::move(m).value();
}

Result<Model> Model::make(std::vector<int> layer_sizes, Activation hidden) {
  if (layer_sizes.size() < 2) {
    return invalid_argument("a model needs at least an input and an output layer size");
  }
  for (int s : layer_sizes) {
    if (s <= 0 || s > (1 << 20)) {
      return invalid_argument("layer size " + std::to_string(s) + " is out of range [1, 1048576]");
    }
  }
  if (layer_sizes.back() < 2 || layer_sizes.back() > 256) {
    return invalid_argument("the output layer (number of classes) must be in [2, 256]");
  }
  return make(Shape{layer_sizes.front(), 1, 1}, dense_layers(layer_sizes), hidden);
}

Result<Model> Model::make(Shape input, std::vector<LayerSpec> layers, Activation hidden) {
  constexpr int64_t kMaxSide = 1 << 20;
  if (input.channels < 1 || input.height < 1 || input.width < 1 || input.channels > kMaxSide ||
      input.height > kMaxSide || input.width > kMaxSide || input.size() > kMaxSide * 16) {
    return invalid_argument("the input shape " + shape_text(input) +
                            " is out of range: each side in [1, 1048576], at most 16777216 values per sample");
  }
  if (layers.empty()) return invalid_argument("a model needs at least one layer (the last one dense)");
  if (layers.back().kind != LayerKind::kDense) {
    return invalid_argument("the last layer must be dense (its units are the classes), not " +
                            std::string(to_string(layers.back().kind)));
  }
  if (layers.back().units < 2 || layers.back().units > 256) {
    return invalid_argument("the output layer (number of classes) must be in [2, 256]");
  }
  Model m;
  m.input_ = input;
  m.activation_ = hidden;
  m.sizes_.push_back(static_cast<int>(input.size()));
  size_t offset = 0;
  Shape shape = input;
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerSpec& spec = layers[l];
    const std::string name = "layer " + std::to_string(l + 1) + " (" + to_string(spec.kind) + ")";
    Stage st;
    st.spec = spec;
    st.in = shape;
    int64_t weights = 0, biases = 0;
    switch (spec.kind) {
      case LayerKind::kDense:
        if (!shape.flat()) {
          return invalid_argument(name + " gets a " + shape_text(shape) +
                                  " image: put a flatten layer before it");
        }
        if (spec.units < 1 || spec.units > kMaxSide) {
          return invalid_argument(name + ": units " + std::to_string(spec.units) + " is out of range [1, 1048576]");
        }
        st.out = Shape{spec.units, 1, 1};
        st.fan_in = shape.channels;
        weights = shape.size() * spec.units;
        biases = spec.units;
        break;
      case LayerKind::kConv2D:
        if (spec.units < 1 || spec.units > 4096) {
          return invalid_argument(name + ": filters " + std::to_string(spec.units) + " is out of range [1, 4096]");
        }
        if (spec.kernel < 1 || spec.kernel > shape.height || spec.kernel > shape.width) {
          return invalid_argument(name + ": kernel " + std::to_string(spec.kernel) + " does not fit its " +
                                  shape_text(shape) + " input (at least 1, at most the height and width)");
        }
        st.out = Shape{spec.units, shape.height - spec.kernel + 1, shape.width - spec.kernel + 1};
        st.fan_in = shape.channels * spec.kernel * spec.kernel;
        weights = static_cast<int64_t>(st.fan_in) * spec.units;
        biases = spec.units;
        break;
      case LayerKind::kMaxPool:
        if (spec.kernel < 1 || spec.kernel > shape.height || spec.kernel > shape.width) {
          return invalid_argument(name + ": size " + std::to_string(spec.kernel) + " does not fit its " +
                                  shape_text(shape) + " input (at least 1, at most the height and width)");
        }
        st.out = Shape{shape.channels, shape.height / spec.kernel, shape.width / spec.kernel};
        break;
      case LayerKind::kFlatten:
        st.out = Shape{static_cast<int>(shape.size()), 1, 1};
        break;
      default:
        return invalid_argument(name + ": unknown layer type");
    }
    if (spec.kind != LayerKind::kDense) m.dense_only_ = false;
    st.activated = (spec.kind == LayerKind::kDense || spec.kind == LayerKind::kConv2D) && l + 1 < layers.size();
    st.weights = offset;
    offset += static_cast<size_t>(weights);
    st.bias = offset;
    offset += static_cast<size_t>(biases);
    if (offset > (size_t{1} << 31) || st.out.size() > kMaxSide * 64) {
      return invalid_argument(name + " makes the model too large: at most 2^31 parameters and 67108864 "
                                     "values per sample and layer");
    }
    m.sizes_.push_back(static_cast<int>(st.out.size()));
    m.stages_.push_back(st);
    shape = st.out;
  }
  for (size_t l = 0; l + 1 < m.stages_.size(); ++l) {
    Stage& conv = m.stages_[l];
    if (conv.spec.kind == LayerKind::kConv2D && conv.activated && hidden == Activation::kRelu &&
        m.stages_[l + 1].spec.kind == LayerKind::kMaxPool) {
      conv.pools = true;
      m.stages_[l + 1].pooled_by_conv = true;
    }
  }
  m.specs_ = std::move(layers);
  m.num_params_ = offset;
  return m;
}

std::string Model::architecture() const {
  std::string out = input_.flat() ? std::to_string(input_.channels) : shape_text(input_);
  for (const LayerSpec& s : specs_) {
    out += " ";
    out += to_string(s.kind);
    if (s.kind == LayerKind::kDense) out += ":" + std::to_string(s.units);
    if (s.kind == LayerKind::kConv2D) out += ":" + std::to_string(s.units) + ":" + std::to_string(s.kernel);
    if (s.kind == LayerKind::kMaxPool) out += ":" + std::to_string(s.kernel);
  }
  return out;
}

namespace {

std::vector<std::string> split(std::string_view text, char sep) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : text) {
    if (c == sep) {
      if (!cur.empty() || sep != ' ') parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty() || sep != ' ') parts.push_back(cur);
  return parts;
}

std::optional<int> number(const std::string& s) {
  if (s.empty() || s.size() > 9) return std::nullopt;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

}  // namespace

Result<Model> Model::parse_architecture(std::string_view text, Activation hidden) {
  const auto bad = [&](const std::string& why) {
    return invalid_argument("model architecture '" + std::string(text) + "': " + why +
                            " (expected e.g. '1x28x28 conv2d:32:3 maxpool:2 flatten dense:128 dense:10')");
  };
  const std::vector<std::string> words = split(text, ' ');
  if (words.empty()) return bad("empty");
  Shape input;
  const std::vector<std::string> sides = split(words[0], 'x');
  std::vector<int> dims;
  for (const auto& side : sides) {
    auto n = number(side);
    if (!n) return bad("the input shape '" + words[0] + "' is not N or CxHxW");
    dims.push_back(*n);
  }
  if (dims.size() == 1) {
    input = Shape{dims[0], 1, 1};
  } else if (dims.size() == 3) {
    input = Shape{dims[0], dims[1], dims[2]};
  } else {
    return bad("the input shape '" + words[0] + "' is not N or CxHxW");
  }
  std::vector<LayerSpec> layers;
  for (size_t i = 1; i < words.size(); ++i) {
    const std::vector<std::string> f = split(words[i], ':');
    std::vector<int> args;
    for (size_t j = 1; j < f.size(); ++j) {
      auto n = number(f[j]);
      if (!n) return bad("layer '" + words[i] + "' has a non-numeric argument");
      args.push_back(*n);
    }
    if (f[0] == "dense" && args.size() == 1) {
      layers.push_back({LayerKind::kDense, args[0], 0});
    } else if (f[0] == "conv2d" && args.size() == 2) {
      layers.push_back({LayerKind::kConv2D, args[0], args[1]});
    } else if (f[0] == "maxpool" && args.size() == 1) {
      layers.push_back({LayerKind::kMaxPool, 0, args[0]});
    } else if (f[0] == "flatten" && args.empty()) {
      layers.push_back({LayerKind::kFlatten, 0, 0});
    } else {
      return bad("layer '" + words[i] + "' is not dense:UNITS, conv2d:FILTERS:KERNEL, maxpool:SIZE or flatten");
    }
  }
  return make(input, std::move(layers), hidden);
}

std::vector<Model::Tensor> Model::tensors() const {
  std::vector<Tensor> out;
  for (int l = 0; l < num_layers(); ++l) {
    const Stage& st = stages_[l];
    const std::string layer = "layer" + std::to_string(l + 1);
    if (st.spec.kind == LayerKind::kDense) {
      out.push_back({layer + ".weight", st.weights, st.bias - st.weights, {st.out.channels, st.in.channels}});
    } else if (st.spec.kind == LayerKind::kConv2D) {
      out.push_back({layer + ".weight", st.weights, st.bias - st.weights,
                     {st.spec.units, st.in.channels, st.spec.kernel, st.spec.kernel}});
    } else {
      continue;
    }
    out.push_back({layer + ".bias", st.bias, static_cast<size_t>(st.spec.units), {st.spec.units}});
  }
  return out;
}

std::vector<float> Model::initial_parameters(uint64_t seed) const {
  std::vector<float> p(num_params_, 0.0f);
  std::mt19937_64 rng(seed);
  for (const Stage& st : stages_) {
    if (st.spec.kind != LayerKind::kDense && st.spec.kind != LayerKind::kConv2D) continue;
    const float gain = activation_ == Activation::kTanh ? 1.0f : 2.0f;
    std::normal_distribution<float> dist(0.0f, std::sqrt(gain / static_cast<float>(st.fan_in)));
    const size_t n = st.bias - st.weights;
    for (size_t i = 0; i < n; ++i) p[st.weights + i] = dist(rng);
  }
  return p;
}

void Model::forward(const float* params, const MatrixView& x, Workspace& ws) const {
  const int layers = num_layers();
  ws.activations.resize(layers + 1);
  for (int l = 0; l < layers; ++l) {
    const Stage& st = stages_[l];
    Matrix& out = ws.activations[l + 1];
    const MatrixView in = l == 0 ? x : MatrixView(ws.activations[l].data(), ws.activations[l].rows(), x.cols());
    switch (st.spec.kind) {
      case LayerKind::kDense: {
        Eigen::Map<const Matrix> w(params + st.weights, st.out.channels, st.in.channels);
        Eigen::Map<const Vector> b(params + st.bias, st.out.channels);
        if (l == 0) {
          out.noalias() = w * x;
        } else {
          out.noalias() = w * ws.activations[l];
        }
        out.colwise() += b;
        break;
      }
      case LayerKind::kConv2D:
        conv_forward(l, params, in, ws);
        break;
      case LayerKind::kMaxPool:
        if (!st.pooled_by_conv) pool_forward(l, in, ws);
        break;
      case LayerKind::kFlatten:
        out = in;  // CHW per sample is already the flattened order
        break;
    }
    if (st.activated && !st.pools) {
      if (activation_ == Activation::kTanh) {
        out = out.array().tanh();
      } else {
        out = out.cwiseMax(0.0f);
      }
    }
  }
  // Softmax per column, shifted by the column max for numerical stability.
  Matrix& z = ws.activations[layers];
  Eigen::RowVectorXf max = z.colwise().maxCoeff();
  z.rowwise() -= max;
  z = z.array().exp();
  Eigen::RowVectorXf sum = z.colwise().sum();
  z.array().rowwise() /= sum.array();
}

// im2col: row b*P + p (sample b, output position p = oy*OW + ox) and column
// (c*k + i)*k + j hold input (c, oy+i, ox+j) of sample b; each (column, sample, oy) is a
// contiguous run of OW inputs. One GEMM with the (C*k*k x F) weights then gives every
// sample's outputs as (b*P + p, f), reordered into the CHW columns of the activations.
void Model::conv_forward(int l, const float* params, const MatrixView& in, Workspace& ws) const {
  const Stage& st = stages_[l];
  const int C = st.in.channels, H = st.in.height, W = st.in.width, k = st.spec.kernel, F = st.spec.units;
  const int OH = st.out.height, OW = st.out.width;
  const Eigen::Index B = in.cols(), P = static_cast<Eigen::Index>(OH) * OW, K = st.fan_in;
  const Eigen::Index HW = static_cast<Eigen::Index>(H) * W, CHW = C * HW;
  if (st.pools) {
    conv_relu_pool_forward(l, params, in, ws);
    return;
  }
  if (ws.patches.size() < stages_.size()) ws.patches.resize(stages_.size());
  Matrix& cols = ws.patches[l];
  cols.resize(B * P, K);
  for (int c = 0; c < C; ++c) {
    for (int i = 0; i < k; ++i) {
      for (int j = 0; j < k; ++j) {
        float* dst = cols.data() + ((c * k + i) * k + j) * B * P;
        for (Eigen::Index b = 0; b < B; ++b) {
          const float* src = in.data() + b * CHW + c * HW + static_cast<Eigen::Index>(i) * W + j;
          for (int oy = 0; oy < OH; ++oy) std::copy_n(src + oy * W, OW, dst + b * P + oy * OW);
        }
      }
    }
  }
  Eigen::Map<const Matrix> w(params + st.weights, K, F);
  ws.scratch.noalias() = cols * w;
  Matrix& out = ws.activations[l + 1];
  out.resize(F * P, B);
  const float* bias = params + st.bias;
  for (Eigen::Index b = 0; b < B; ++b) {
    for (int f = 0; f < F; ++f) {
      const float* s = ws.scratch.data() + f * B * P + b * P;
      float* d = out.data() + b * F * P + f * P;
      const float bf = bias[f];
      for (Eigen::Index p = 0; p < P; ++p) d[p] = s[p] + bf;
    }
  }
}

void Model::conv_backward(int l, const float* params, const Matrix& delta, Workspace& ws, float* grad,
                          Matrix* below) const {
  const Stage& st = stages_[l];
  const int C = st.in.channels, H = st.in.height, W = st.in.width, k = st.spec.kernel, F = st.spec.units;
  const int OH = st.out.height, OW = st.out.width;
  const Eigen::Index P = static_cast<Eigen::Index>(OH) * OW, B = ws.patches[l].rows() / P, K = st.fan_in;
  const Eigen::Index HW = static_cast<Eigen::Index>(H) * W, CHW = C * HW;
  Matrix& d_out = ws.scratch;  // the deltas as (b*P + p, f), the GEMMs' layout
  d_out.resize(B * P, F);
  for (Eigen::Index b = 0; b < B; ++b) {
    for (int f = 0; f < F; ++f) {
      std::copy_n(delta.data() + b * F * P + f * P, P, d_out.data() + f * B * P + b * P);
    }
  }
  Eigen::Map<Matrix> gw(grad + st.weights, K, F);
  gw.noalias() = ws.patches[l].transpose() * d_out;
  Eigen::Map<Vector> gb(grad + st.bias, F);
  gb = d_out.colwise().sum().transpose();
  if (below == nullptr) return;
  Eigen::Map<const Matrix> w(params + st.weights, K, F);
  Matrix& d_cols = ws.scratch2;
  d_cols.noalias() = d_out * w.transpose();
  below->setZero(CHW, B);  // col2im: every patch entry adds back to the input it came from
  for (int c = 0; c < C; ++c) {
    for (int i = 0; i < k; ++i) {
      for (int j = 0; j < k; ++j) {
        const float* src = d_cols.data() + ((c * k + i) * k + j) * B * P;
        for (Eigen::Index b = 0; b < B; ++b) {
          float* dst = below->data() + b * CHW + c * HW + static_cast<Eigen::Index>(i) * W + j;
          for (int oy = 0; oy < OH; ++oy) {
            const float* s = src + b * P + oy * OW;
            float* d = dst + oy * W;
            for (int ox = 0; ox < OW; ++ox) d[ox] += s[ox];
          }
        }
      }
    }
  }
}

namespace {

// Eight floats: one AVX register under -march=x86-64-v3 (GCC's vector extension; the
// operators work per element and `a += b * c` contracts into one FMA). The pooled conv
// below computes eight filters at once with them. Each element goes through the same
// operations in the same order wherever the buffers lie, so, unlike Eigen's loops (which
// split at aligned addresses: "The data path" in ARCHITECTURE), no result depends on the
// alignment of the batch or the parameters.
typedef float Floats8 __attribute__((vector_size(32)));
typedef int32_t Ints8 __attribute__((vector_size(32)));
constexpr int kLanes = 8;

Floats8 load8(const float* p) {
  Floats8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

void store8(float* p, const Floats8& v) { std::memcpy(p, &v, sizeof v); }

// The conv's outputs at `rows` x `cols` positions for eight filters (w: K rows of their 8
// weights): z[(r*cols + c)*8 + lane] = the sum over kk, in order, of x[r*W + c + off[kk]]
// times w[kk*8 + lane]. Four positions at a time, so four FMA chains run side by side.
// (Two blocks of filters at a time, so that each input read served twice as many FMAs,
// measured no faster.)
void conv_rows8(const float* x, int W, int rows, int cols, const int32_t* off, int K, const float* w, float* z) {
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<ptrdiff_t>(r) * W;
    float* zr = z + static_cast<ptrdiff_t>(r) * cols * kLanes;
    int c = 0;
    for (; c + 4 <= cols; c += 4) {
      Floats8 a0{}, a1{}, a2{}, a3{};
      for (int kk = 0; kk < K; ++kk) {
        const Floats8 wk = load8(w + kk * kLanes);
        const float* xk = xr + c + off[kk];
        a0 += xk[0] * wk;
        a1 += xk[1] * wk;
        a2 += xk[2] * wk;
        a3 += xk[3] * wk;
      }
      store8(zr + c * kLanes, a0);
      store8(zr + (c + 1) * kLanes, a1);
      store8(zr + (c + 2) * kLanes, a2);
      store8(zr + (c + 3) * kLanes, a3);
    }
    for (; c < cols; ++c) {
      Floats8 a{};
      for (int kk = 0; kk < K; ++kk) a += xr[c + off[kk]] * load8(w + kk * kLanes);
      store8(zr + c * kLanes, a);
    }
  }
}

// Adds to g (N rows of 8) N weights' gradient over `rows` x `cols` positions of eight
// filters' deltas dz (laid out as conv_rows8's z): g[u*8 + lane] += x[r*W + c + off[u]]
// times dz[(r*cols + c)*8 + lane], positions in order; with kBias, g[N*8 + lane] += the
// deltas (the bias's gradient). The accumulators stay in registers.
template <int N, bool kBias>
void weight_gradient8(const float* x, int W, int rows, int cols, const int32_t* off, const float* dz, float* g) {
  Floats8 acc[N + 1];
  for (int u = 0; u < N + kBias; ++u) acc[u] = load8(g + u * kLanes);
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<ptrdiff_t>(r) * W;
    const float* dr = dz + static_cast<ptrdiff_t>(r) * cols * kLanes;
    for (int c = 0; c < cols; ++c) {
      const Floats8 d = load8(dr + c * kLanes);
      for (int u = 0; u < N; ++u) acc[u] += xr[c + off[u]] * d;
      if (kBias) acc[N] += d;
    }
  }
  for (int u = 0; u < N + kBias; ++u) store8(g + u * kLanes, acc[u]);
}

using WeightGradient8 = void (*)(const float*, int, int, int, const int32_t*, const float*, float*);
template <bool kBias>
constexpr WeightGradient8 kWeightGradient8[] = {
    weight_gradient8<0, kBias>, weight_gradient8<1, kBias>, weight_gradient8<2, kBias>, weight_gradient8<3, kBias>,
    weight_gradient8<4, kBias>, weight_gradient8<5, kBias>, weight_gradient8<6, kBias>, weight_gradient8<7, kBias>,
    weight_gradient8<8, kBias>, weight_gradient8<9, kBias>, weight_gradient8<10, kBias>,
};

// The K weights' gradient and the bias's (g: K + 1 rows of 8), in chunks of equal size of
// at most 10 accumulators (with the deltas and a broadcast they fit AVX2's 16 registers),
// the bias with the last weights, whose rows it follows: one chunk of 9 + 1 for a 3x3
// kernel on one channel.
void weight_gradient(const float* x, int W, int rows, int cols, const int32_t* off, int K, const float* dz,
                     float* g) {
  const int chunks = (K + 1 + 9) / 10;
  const int last = (K + 1) / chunks - 1;
  kWeightGradient8<true>[last](x, W, rows, cols, off + (K - last), dz, g + (K - last) * kLanes);
  for (int i = 1, done = 0; i < chunks; ++i) {
    const int n = (K - last - done) / (chunks - i);
    kWeightGradient8<false>[n](x, W, rows, cols, off + done, dz, g + done * kLanes);
    done += n;
  }
}

}  // namespace

// A conv2d and the max-pool computed with it, as their kernels see them.
struct Model::PooledConv {
  int F, K, W, s;       // filters, weights a filter, input width, pool window side
  int PH, PW, row;      // pooled height and width; conv outputs a row of windows covers
  int blocks;           // blocks of eight filters
  Eigen::Index CHW, outs, PHW;  // input and pooled output size a sample; a filter's pooled map
};

// Layer l's shapes, and its filters laid out for the kernels in ws: per block of eight
// filters (the last one padded with zero filters) K rows of their weights, then their
// biases; and each weight's input offset. (Each call lays them out again: another pooled
// conv's pass may have used ws since.)
Model::PooledConv Model::pooled_conv(int l, const float* params, Workspace& ws) const {
  const Stage& st = stages_[l];
  const Stage& pool = stages_[l + 1];
  PooledConv c;
  c.F = st.spec.units;
  c.K = st.fan_in;
  c.W = st.in.width;
  c.s = pool.spec.kernel;
  c.PH = pool.out.height;
  c.PW = pool.out.width;
  c.row = c.PW * c.s;
  c.blocks = (c.F + kLanes - 1) / kLanes;
  c.CHW = st.in.size();
  c.outs = pool.out.size();
  c.PHW = static_cast<Eigen::Index>(c.PH) * c.PW;
  const int k = st.spec.kernel, H = st.in.height;
  ws.conv_filters.assign(static_cast<size_t>(c.blocks) * (c.K + 1) * kLanes, 0.0f);
  for (int f = 0; f < c.F; ++f) {
    float* block = ws.conv_filters.data() + static_cast<size_t>(f / kLanes) * (c.K + 1) * kLanes + f % kLanes;
    for (int kk = 0; kk < c.K; ++kk) block[kk * kLanes] = params[st.weights + static_cast<size_t>(f) * c.K + kk];
    block[c.K * kLanes] = params[st.bias + f];
  }
  ws.conv_offsets.resize(c.K);
  for (int ch = 0; ch < st.in.channels; ++ch) {
    for (int i = 0; i < k; ++i) {
      for (int j = 0; j < k; ++j) ws.conv_offsets[(ch * k + i) * k + j] = (ch * H + i) * c.W + j;
    }
  }
  return c;
}

// Per sample, block of eight filters and row of pool windows, the conv's outputs that the
// windows cover (s rows of PW*s: a few KiB, in L1) straight from the input, then each
// window's maximum plus the bias, then ReLU, as the pool's output. Identical in value to
// ReLU then max-pool over the CHW activations (max and ReLU commute, the bias is added to
// each value before the comparison, and the arg-max is the first strict maximum either
// way wherever the output is positive). Neither the im2col matrix nor the conv's own
// activations (21632 values a sample for the seeds' CNN, 4x the pool's) are written: this
// replaced a GEMM of the whole batch's patches into a 5.5 MB matrix (zeroed first) and a
// pass over it.
void Model::conv_relu_pool_forward(int l, const float* params, const MatrixView& in, Workspace& ws) const {
  const PooledConv c = pooled_conv(l, params, ws);
  const int F = c.F, K = c.K, W = c.W, s = c.s, PH = c.PH, PW = c.PW, row = c.row, blocks = c.blocks;
  const Eigen::Index B = in.cols(), CHW = c.CHW, outs = c.outs, PHW = c.PHW;
  ws.conv_rows.resize(static_cast<size_t>(s) * row * kLanes);
  ws.conv_pooled.resize(static_cast<size_t>(PHW) * kLanes);
  ws.conv_argmax.resize(static_cast<size_t>(PHW) * kLanes);
  if (ws.argmax.size() < stages_.size()) ws.argmax.resize(stages_.size());
  std::vector<int32_t>& arg = ws.argmax[l + 1];
  arg.resize(static_cast<size_t>(outs * B));
  ws.activations[l + 1].resize(0, B);  // not computed (see above)
  Matrix& out = ws.activations[l + 2];
  out.resize(outs, B);
  float* z = ws.conv_rows.data();
  for (Eigen::Index b = 0; b < B; ++b) {
    const float* x = in.data() + b * CHW;
    for (int fb = 0; fb < blocks; ++fb) {
      const float* w = ws.conv_filters.data() + static_cast<size_t>(fb) * (K + 1) * kLanes;
      const Floats8 bias = load8(w + K * kLanes);
      for (int py = 0; py < PH; ++py) {
        conv_rows8(x + static_cast<ptrdiff_t>(py) * s * W, W, s, row, ws.conv_offsets.data(), K, w, z);
        for (int px = 0; px < PW; ++px) {
          // The arg-max as the position among the conv outputs the windows cover
          // ((py*s + i)*row + px*s + j), which the backward reads; selects, not branches
          // (which value is largest is data).
          Floats8 best = load8(z + px * s * kLanes) + bias;
          Ints8 at = Ints8{} + px * s;
          for (int i = 0; i < s; ++i) {
            for (int j = 0; j < s; ++j) {
              const int q = i * row + px * s + j;
              const Floats8 v = load8(z + q * kLanes) + bias;
              const Ints8 larger = v > best;
              best = larger ? v : best;
              at = larger ? Ints8{} + q : at;
            }
          }
          best = best < Floats8{} ? Floats8{} : best;  // std::max(best, 0.0f)
          at += py * s * row;
          const int o = py * PW + px;
          store8(ws.conv_pooled.data() + o * kLanes, best);
          std::memcpy(ws.conv_argmax.data() + o * kLanes, &at, sizeof at);
        }
      }
      // Into each filter's CHW rows: one stream of stores a filter, not eight at once.
      const int lanes = std::min(kLanes, F - fb * kLanes);
      for (int lane = 0; lane < lanes; ++lane) {
        const Eigen::Index first = b * outs + (static_cast<Eigen::Index>(fb) * kLanes + lane) * PHW;
        for (Eigen::Index o = 0; o < PHW; ++o) {
          out.data()[first + o] = ws.conv_pooled[o * kLanes + lane];
          arg[first + o] = ws.conv_argmax[o * kLanes + lane];
        }
      }
    }
  }
}

// The pooled conv's gradients from the pool's output deltas (ws.deltas[l + 2]), per
// sample and block of eight filters: the conv's output deltas that the windows cover (each
// pooled delta at its arg-max where the ReLU passed it, zero elsewhere; 21 KiB for the
// seeds' CNN, in L1), then the
// weights' gradient against the input read in place (no im2col), the bias's as the deltas'
// sum and, below a lower layer, the input's deltas. Each sample's sums are formed apart and
// added to the batch's in sample order.
void Model::conv_relu_pool_backward(int l, const float* params, const MatrixView& in, Workspace& ws, float* grad,
                                    Matrix* below) const {
  const PooledConv c = pooled_conv(l, params, ws);
  const int F = c.F, K = c.K, W = c.W, s = c.s, PH = c.PH, row = c.row, blocks = c.blocks;
  const Eigen::Index B = in.cols(), CHW = c.CHW, outs = c.outs, PHW = c.PHW;
  const size_t block_size = static_cast<size_t>(K + 1) * kLanes;
  const float* delta = ws.deltas[l + 2].data();
  const float* pooled = ws.activations[l + 2].data();
  const int32_t* arg = ws.argmax[l + 1].data();
  ws.conv_total.assign(blocks * block_size, 0.0f);
  ws.conv_sample.resize(blocks * block_size);
  const size_t rows_size = static_cast<size_t>(PH) * s * row * kLanes;
  ws.conv_rows.resize(rows_size);
  float* dz = ws.conv_rows.data();
  if (below != nullptr) below->setZero(CHW, B);
  for (Eigen::Index b = 0; b < B; ++b) {
    const float* x = in.data() + b * CHW;
    std::fill(ws.conv_sample.begin(), ws.conv_sample.end(), 0.0f);
    for (int fb = 0; fb < blocks; ++fb) {
      const int lanes = std::min(kLanes, F - fb * kLanes);
      std::fill(dz, dz + rows_size, 0.0f);
      for (int lane = 0; lane < lanes; ++lane) {
        const Eigen::Index first = b * outs + (static_cast<Eigen::Index>(fb) * kLanes + lane) * PHW;
        for (Eigen::Index o = first; o < first + PHW; ++o) {
          // The delta where ReLU passed it, else +0, by a mask: GCC makes a select into a
          // branch here, and whether ReLU passed is data (mispredicted half the time).
          uint32_t bits;
          std::memcpy(&bits, delta + o, sizeof bits);
          bits &= 0u - static_cast<uint32_t>(pooled[o] > 0.0f);
          std::memcpy(dz + arg[o] * kLanes + lane, &bits, sizeof bits);
        }
      }
      weight_gradient(x, W, PH * s, row, ws.conv_offsets.data(), K, dz, ws.conv_sample.data() + fb * block_size);
      if (below == nullptr) continue;
      const float* w = ws.conv_filters.data() + fb * block_size;
      float* d_in = below->data() + b * CHW;
      for (int r = 0; r < PH * s; ++r) {
        for (int c = 0; c < row; ++c) {
          const Floats8 d = load8(dz + (r * row + c) * kLanes);
          for (int kk = 0; kk < K; ++kk) {
            const Floats8 t = d * load8(w + kk * kLanes);
            float sum = 0.0f;
            for (int lane = 0; lane < kLanes; ++lane) sum += t[lane];
            d_in[r * W + c + ws.conv_offsets[kk]] += sum;
          }
        }
      }
    }
    for (size_t i = 0; i < ws.conv_total.size(); i += kLanes) {
      store8(ws.conv_total.data() + i, load8(ws.conv_total.data() + i) + load8(ws.conv_sample.data() + i));
    }
  }
  for (int f = 0; f < F; ++f) {
    const float* block = ws.conv_total.data() + (f / kLanes) * block_size + f % kLanes;
    for (int kk = 0; kk < K; ++kk) grad[stages_[l].weights + static_cast<size_t>(f) * K + kk] = block[kk * kLanes];
    grad[stages_[l].bias + f] = block[K * kLanes];
  }
}

void Model::pool_forward(int l, const MatrixView& in, Workspace& ws) const {
  const Stage& st = stages_[l];
  const int C = st.in.channels, H = st.in.height, W = st.in.width, s = st.spec.kernel;
  const int OH = st.out.height, OW = st.out.width;
  const Eigen::Index B = in.cols(), HW = static_cast<Eigen::Index>(H) * W, CHW = C * HW;
  const Eigen::Index outs = st.out.size();
  if (ws.argmax.size() < stages_.size()) ws.argmax.resize(stages_.size());
  std::vector<int32_t>& arg = ws.argmax[l];
  arg.resize(static_cast<size_t>(outs * B));
  Matrix& out = ws.activations[l + 1];
  out.resize(outs, B);
  for (Eigen::Index b = 0; b < B; ++b) {
    const float* x = in.data() + b * CHW;
    float* o = out.data() + b * outs;
    int32_t* a = arg.data() + b * outs;
    for (int c = 0; c < C; ++c) {
      for (int oy = 0; oy < OH; ++oy) {
        for (int ox = 0; ox < OW; ++ox) {
          int32_t best = static_cast<int32_t>(c * HW + static_cast<Eigen::Index>(oy) * s * W + ox * s);
          for (int i = 0; i < s; ++i) {
            for (int j = 0; j < s; ++j) {
              const int32_t at = static_cast<int32_t>(c * HW + static_cast<Eigen::Index>(oy * s + i) * W + ox * s + j);
              if (x[at] > x[best]) best = at;
            }
          }
          const Eigen::Index idx = (static_cast<Eigen::Index>(c) * OH + oy) * OW + ox;
          o[idx] = x[best];
          a[idx] = best;
        }
      }
    }
  }
}

void Model::backward_layer(int l, const float* params, Matrix& delta, const MatrixView& x, Workspace& ws,
                           float* grad, Matrix* below) const {
  const Stage& st = stages_[l];
  switch (st.spec.kind) {
    case LayerKind::kDense: {
      Eigen::Map<Matrix> gw(grad + st.weights, st.out.channels, st.in.channels);
      Eigen::Map<Vector> gb(grad + st.bias, st.out.channels);
      if (l == 0) {
        gw.noalias() = delta * x.transpose();
      } else {
        gw.noalias() = delta * ws.activations[l].transpose();
      }
      gb = delta.rowwise().sum();
      if (below != nullptr) {
        Eigen::Map<const Matrix> w(params + st.weights, st.out.channels, st.in.channels);
        below->noalias() = w.transpose() * delta;
      }
      break;
    }
    case LayerKind::kConv2D:
      if (st.pools) {
        conv_relu_pool_backward(l, params,
                                l == 0 ? x : MatrixView(ws.activations[l].data(), st.in.size(), x.cols()), ws, grad,
                                below);
      } else {
        conv_backward(l, params, delta, ws, grad, below);
      }
      break;
    case LayerKind::kMaxPool:
      if (st.pooled_by_conv) {
        // Nothing here: the conv below reads this layer's deltas (conv_relu_pool_backward).
      } else if (below != nullptr) {
        const Eigen::Index outs = st.out.size();
        below->setZero(st.in.size(), delta.cols());
        const std::vector<int32_t>& arg = ws.argmax[l];
        for (Eigen::Index b = 0; b < delta.cols(); ++b) {
          for (Eigen::Index o = 0; o < outs; ++o) (*below)(arg[b * outs + o], b) += delta(o, b);
        }
      }
      break;
    case LayerKind::kFlatten:
      // The same values in the same order: the buffers trade places (the seeds' CNN's
      // 5408 x 64 deltas are not copied), and nothing reads the deltas above again.
      if (below != nullptr) below->swap(delta);
      break;
  }
}

BatchStats Model::score(const Matrix& probs, const uint8_t* labels) const {
  BatchStats s;
  s.samples = probs.cols();
  for (Eigen::Index i = 0; i < probs.cols(); ++i) {
    Eigen::Index arg = 0;
    probs.col(i).maxCoeff(&arg);
    if (arg == labels[i]) ++s.correct;
    s.loss_sum -= std::log(std::max(probs(labels[i], i), 1e-30f));
  }
  return s;
}

BatchStats Model::gradient(const float* params, const MatrixView& x, const uint8_t* labels,
                           float* grad, Workspace& ws) const {
  forward(params, x, ws);
  const int layers = num_layers();
  BatchStats stats = score(ws.activations[layers], labels);
  const float inv_batch = 1.0f / static_cast<float>(x.cols());

  ws.deltas.resize(layers + 1);
  // d(mean CE)/d(logits) = (softmax - onehot) / batch
  Matrix& top = ws.deltas[layers];
  top = ws.activations[layers];
  for (Eigen::Index i = 0; i < x.cols(); ++i) top(labels[i], i) -= 1.0f;
  top *= inv_batch;

  for (int l = layers - 1; l >= 0; --l) {
    backward_layer(l, params, ws.deltas[l + 1], x, ws, grad, l > 0 ? &ws.deltas[l] : nullptr);
    if (l > 0 && stages_[l - 1].activated && !stages_[l - 1].pools) {
      activation_backward(ws.activations[l], ws.deltas[l]);
    }
  }
  return stats;
}

BatchStats Model::clipped_gradient_sum(const float* params, const MatrixView& x, const uint8_t* labels,
                                       float clip_norm, float* grad, Workspace& ws) const {
  if (!dense_only_) return clipped_sum_by_example(params, x, labels, clip_norm, grad, ws);
  Eigen::Map<Vector>(grad, static_cast<Eigen::Index>(num_params_)).setZero();
  if (x.cols() == 0) return {};
  forward(params, x, ws);
  const int layers = num_layers();
  BatchStats stats = score(ws.activations[layers], labels);
  ws.deltas.resize(layers + 1);
  Matrix& top = ws.deltas[layers];  // d(CE_i)/d(logits_i), one column per example: not averaged
  top = ws.activations[layers];
  for (Eigen::Index i = 0; i < x.cols(); ++i) top(labels[i], i) -= 1.0f;
  // Every layer's deltas first (unclipped), and each example's squared gradient norm.
  Eigen::RowVectorXf squared = Eigen::RowVectorXf::Zero(x.cols());
  for (int l = layers - 1; l >= 0; --l) {
    const Stage& st = stages_[l];
    const Matrix& delta = ws.deltas[l + 1];
    const Eigen::RowVectorXf delta_sq = delta.colwise().squaredNorm();
    const Eigen::RowVectorXf input_sq = l == 0 ? Eigen::RowVectorXf(x.colwise().squaredNorm())
                                               : Eigen::RowVectorXf(ws.activations[l].colwise().squaredNorm());
    squared.array() += delta_sq.array() * (input_sq.array() + 1.0f);  // weights, then bias
    if (l > 0) {
      Eigen::Map<const Matrix> w(params + st.weights, st.out.channels, st.in.channels);
      Matrix& below = ws.deltas[l];
      below.noalias() = w.transpose() * delta;
      activation_backward(ws.activations[l], below);
    }
  }
  // min(1, C/||g_i||); a non-finite norm (an overflowing example) is clipped to zero
  // rather than let through.
  ws.scale.resize(x.cols());
  for (Eigen::Index i = 0; i < x.cols(); ++i) {
    const float norm = std::sqrt(squared[i]);
    ws.scale[i] = std::isfinite(norm) ? (norm > clip_norm ? clip_norm / norm : 1.0f) : 0.0f;
  }
  for (int l = layers - 1; l >= 0; --l) {
    Matrix& delta = ws.deltas[l + 1];
    delta.array().rowwise() *= ws.scale.array();
    backward_layer(l, params, delta, x, ws, grad, nullptr);
  }
  return stats;
}

// Each example's own gradient (a batch of one: its mean is the example's gradient), its
// norm, the clipping factor, the scaled sum. B backward passes instead of one: correct for
// any layer, and the price a conv model pays for DP-SGD here.
BatchStats Model::clipped_sum_by_example(const float* params, const MatrixView& x, const uint8_t* labels,
                                         float clip_norm, float* grad, Workspace& ws) const {
  Eigen::Map<Vector> sum(grad, static_cast<Eigen::Index>(num_params_));
  sum.setZero();
  ws.example_grad.resize(num_params_);
  Eigen::Map<Vector> g(ws.example_grad.data(), static_cast<Eigen::Index>(num_params_));
  BatchStats stats;
  for (Eigen::Index i = 0; i < x.cols(); ++i) {
    const MatrixView xi(x.data() + i * x.rows(), x.rows(), 1);
    const BatchStats s = gradient(params, xi, labels + i, ws.example_grad.data(), ws);
    stats.loss_sum += s.loss_sum;
    stats.correct += s.correct;
    stats.samples += s.samples;
    const float norm = g.norm();
    const float scale = std::isfinite(norm) ? (norm > clip_norm ? clip_norm / norm : 1.0f) : 0.0f;
    if (scale > 0.0f) sum += scale * g;
  }
  return stats;
}

void Model::activation_backward(const Matrix& a, Matrix& below) const {
  if (activation_ == Activation::kTanh) {
    below.array() *= 1.0f - a.array().square();  // tanh' = 1 - tanh^2, from the output alone
  } else {
    below = (a.array() > 0.0f).select(below, 0.0f);  // ReLU: only where the unit was active
  }
}

// A model with conv layers evaluates and predicts in chunks of kChunk samples: a worker's
// test slice of 5,000 images at once would need about a gigabyte of patch and activation
// matrices for the seeds' CNN. Dense-only models keep their one pass (and its bits).
constexpr Eigen::Index kChunk = 256;

BatchStats Model::evaluate(const float* params, const MatrixView& x, const uint8_t* labels,
                           Workspace& ws) const {
  if (dense_only_ || x.cols() <= kChunk) {
    forward(params, x, ws);
    return score(ws.activations[num_layers()], labels);
  }
  BatchStats total;
  for (Eigen::Index first = 0; first < x.cols(); first += kChunk) {
    const Eigen::Index n = std::min(kChunk, x.cols() - first);
    forward(params, MatrixView(x.data() + first * x.rows(), x.rows(), n), ws);
    const BatchStats s = score(ws.activations[num_layers()], labels + first);
    total.loss_sum += s.loss_sum;
    total.correct += s.correct;
    total.samples += s.samples;
  }
  return total;
}

Matrix Model::predict(const float* params, const MatrixView& x, Workspace& ws) const {
  const int layers = num_layers();
  if (dense_only_ || x.cols() <= kChunk) {
    forward(params, x, ws);
    return ws.activations[layers];
  }
  Matrix probs(num_classes(), x.cols()), below(sizes_[layers - 1], x.cols());
  for (Eigen::Index first = 0; first < x.cols(); first += kChunk) {
    const Eigen::Index n = std::min(kChunk, x.cols() - first);
    forward(params, MatrixView(x.data() + first * x.rows(), x.rows(), n), ws);
    probs.middleCols(first, n) = ws.activations[layers];
    below.middleCols(first, n) = ws.activations[layers - 1];
  }
  // As a single pass leaves them (TracIn reads the last layer's input there).
  ws.activations[layers - 1] = std::move(below);
  ws.activations[layers] = probs;
  return probs;
}

}  // namespace custody
