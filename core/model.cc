#include "core/model.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
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
  if (st.pools) {
    conv_relu_pool_forward(l, params, B, ws);
    return;
  }
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
  if (!st.pools) {  // (with pools, the pool's backward has written them there)
    d_out.resize(B * P, F);
    for (Eigen::Index b = 0; b < B; ++b) {
      for (int f = 0; f < F; ++f) {
        std::copy_n(delta.data() + b * F * P + f * P, P, d_out.data() + f * B * P + b * P);
      }
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

// The conv's GEMM output (b*P + p, f) read as, per sample and filter, an OH x OW image:
// each s x s window's maximum plus the bias, then ReLU, is the pool's output, identical to
// the bits to ReLU then max-pool over the CHW activations (max and ReLU commute, the bias
// is added to each value before the comparison as before, and the arg-max is the first
// strict maximum either way wherever the output is positive). The conv's own activations
// (21632 values a sample for the seeds' CNN, 4x the pool's) are never written: a pass to
// reorder them, one for ReLU and one to pool them are saved, and the backward needs only
// the pool's output and arg-max.
void Model::conv_relu_pool_forward(int l, const float* params, Eigen::Index B, Workspace& ws) const {
  const Stage& st = stages_[l];
  const Stage& pool = stages_[l + 1];
  const int F = st.spec.units, OW = st.out.width, s = pool.spec.kernel;
  const int PH = pool.out.height, PW = pool.out.width;
  const Eigen::Index P = static_cast<Eigen::Index>(st.out.height) * OW, outs = pool.out.size();
  const Eigen::Index PHW = static_cast<Eigen::Index>(PH) * PW;
  if (ws.argmax.size() < stages_.size()) ws.argmax.resize(stages_.size());
  std::vector<int32_t>& arg = ws.argmax[l + 1];
  arg.resize(static_cast<size_t>(outs * B));
  ws.activations[l + 1].resize(0, B);  // not computed (see above)
  Matrix& out = ws.activations[l + 2];
  out.resize(outs, B);
  const float* bias = params + st.bias;
  for (Eigen::Index b = 0; b < B; ++b) {
    for (int f = 0; f < F; ++f) {
      const float* z = ws.scratch.data() + f * B * P + b * P;
      const float bf = bias[f];
      float* o = out.data() + b * outs + f * PHW;
      int32_t* a = arg.data() + b * outs + f * PHW;
      for (int py = 0; py < PH; ++py) {
        for (int px = 0; px < PW; ++px) {
          int32_t best = py * s * OW + px * s;
          float best_value = z[best] + bf;
          for (int i = 0; i < s; ++i) {
            for (int j = 0; j < s; ++j) {
              // Branch-free (selects): which value of a window is largest is data, and
              // mispredicted branches cost more than the comparisons.
              const int32_t at = (py * s + i) * OW + px * s + j;
              const float v = z[at] + bf;
              const bool larger = v > best_value;
              best = larger ? at : best;
              best_value = larger ? v : best_value;
            }
          }
          o[py * PW + px] = std::max(best_value, 0.0f);
          a[py * PW + px] = best;
        }
      }
    }
  }
}

// Where the pooled output is positive, its delta goes to its arg-max (ReLU's derivative
// there is 1); elsewhere ReLU stopped it. Zeros then += as the unfused path, so the deltas
// are the same bits.
void Model::pool_relu_backward_into_conv(int l, const Matrix& delta, Workspace& ws) const {
  const Stage& conv = stages_[l - 1];
  const Eigen::Index P = static_cast<Eigen::Index>(conv.out.height) * conv.out.width;
  const Eigen::Index B = delta.cols(), outs = stages_[l].out.size();
  const int F = conv.spec.units;
  const Eigen::Index PHW = outs / F;
  Matrix& d_out = ws.scratch;
  d_out.setZero(B * P, F);
  const Matrix& pooled = ws.activations[l + 1];
  const std::vector<int32_t>& arg = ws.argmax[l];
  for (Eigen::Index b = 0; b < B; ++b) {
    for (int f = 0; f < F; ++f) {
      const Eigen::Index first = b * outs + f * PHW;
      const float* d = delta.data() + first;
      const float* y = pooled.data() + first;
      const int32_t* a = arg.data() + first;
      float* column = d_out.data() + f * B * P + b * P;
      for (Eigen::Index o = 0; o < PHW; ++o) {
        if (y[o] > 0.0f) column[a[o]] += d[o];
      }
    }
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
      conv_backward(l, params, delta, ws, grad, below);
      break;
    case LayerKind::kMaxPool:
      if (st.pooled_by_conv) {
        pool_relu_backward_into_conv(l, delta, ws);
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
      if (below != nullptr) *below = delta;
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
