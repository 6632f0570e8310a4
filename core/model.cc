#include "core/model.h"

#include <cmath>
#include <random>

namespace custody {

const char* to_string(Activation a) { return a == Activation::kTanh ? "tanh" : "relu"; }

std::optional<Activation> parse_activation(std::string_view name) {
  if (name == "relu") return Activation::kRelu;
  if (name == "tanh") return Activation::kTanh;
  return std::nullopt;
}

Model::Model(std::vector<int> layer_sizes, Activation hidden) : sizes_(std::move(layer_sizes)), activation_(hidden) {
  size_t offset = 0;
  for (int l = 0; l + 1 < static_cast<int>(sizes_.size()); ++l) {
    LayerOffsets o;
    o.weights = offset;
    offset += static_cast<size_t>(sizes_[l]) * sizes_[l + 1];
    o.bias = offset;
    offset += sizes_[l + 1];
    offsets_.push_back(o);
  }
  num_params_ = offset;
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
  return Model(std::move(layer_sizes), hidden);
}

std::vector<Model::Tensor> Model::tensors() const {
  std::vector<Tensor> out;
  for (int l = 0; l < num_layers(); ++l) {
    const std::string layer = "layer" + std::to_string(l + 1);
    out.push_back({layer + ".weight", offsets_[l].weights, static_cast<size_t>(sizes_[l]) * sizes_[l + 1],
                   {sizes_[l + 1], sizes_[l]}});
    out.push_back({layer + ".bias", offsets_[l].bias, static_cast<size_t>(sizes_[l + 1]), {sizes_[l + 1]}});
  }
  return out;
}

std::vector<float> Model::initial_parameters(uint64_t seed) const {
  std::vector<float> p(num_params_, 0.0f);
  std::mt19937_64 rng(seed);
  for (int l = 0; l < num_layers(); ++l) {
    const float gain = activation_ == Activation::kTanh ? 1.0f : 2.0f;
    std::normal_distribution<float> dist(0.0f, std::sqrt(gain / static_cast<float>(sizes_[l])));
    size_t n = static_cast<size_t>(sizes_[l]) * sizes_[l + 1];
    for (size_t i = 0; i < n; ++i) p[offsets_[l].weights + i] = dist(rng);
  }
  return p;
}

void Model::forward(const float* params, const MatrixView& x, Workspace& ws) const {
  const int layers = num_layers();
  ws.activations.resize(layers + 1);
  for (int l = 0; l < layers; ++l) {
    Eigen::Map<const Matrix> w(params + offsets_[l].weights, sizes_[l + 1], sizes_[l]);
    Eigen::Map<const Vector> b(params + offsets_[l].bias, sizes_[l + 1]);
    Matrix& out = ws.activations[l + 1];
    if (l == 0) {
      out.noalias() = w * x;
    } else {
      out.noalias() = w * ws.activations[l];
    }
    out.colwise() += b;
    if (l + 1 < layers) {
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
    const Matrix& delta = ws.deltas[l + 1];
    write_layer_gradient(l, delta, x, ws, grad);
    if (l > 0) {
      Eigen::Map<const Matrix> w(params + offsets_[l].weights, sizes_[l + 1], sizes_[l]);
      Matrix& below = ws.deltas[l];
      below.noalias() = w.transpose() * delta;
      activation_backward(ws.activations[l], below);
    }
  }
  return stats;
}

BatchStats Model::clipped_gradient_sum(const float* params, const MatrixView& x, const uint8_t* labels,
                                       float clip_norm, float* grad, Workspace& ws) const {
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
    const Matrix& delta = ws.deltas[l + 1];
    const Eigen::RowVectorXf delta_sq = delta.colwise().squaredNorm();
    const Eigen::RowVectorXf input_sq = l == 0 ? Eigen::RowVectorXf(x.colwise().squaredNorm())
                                               : Eigen::RowVectorXf(ws.activations[l].colwise().squaredNorm());
    squared.array() += delta_sq.array() * (input_sq.array() + 1.0f);  // weights, then bias
    if (l > 0) {
      Eigen::Map<const Matrix> w(params + offsets_[l].weights, sizes_[l + 1], sizes_[l]);
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
    write_layer_gradient(l, delta, x, ws, grad);
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

void Model::write_layer_gradient(int l, const Matrix& delta, const MatrixView& x, const Workspace& ws,
                                 float* grad) const {
  Eigen::Map<Matrix> gw(grad + offsets_[l].weights, sizes_[l + 1], sizes_[l]);
  Eigen::Map<Vector> gb(grad + offsets_[l].bias, sizes_[l + 1]);
  if (l == 0) {
    gw.noalias() = delta * x.transpose();
  } else {
    gw.noalias() = delta * ws.activations[l].transpose();
  }
  gb = delta.rowwise().sum();
}

BatchStats Model::evaluate(const float* params, const MatrixView& x, const uint8_t* labels,
                           Workspace& ws) const {
  forward(params, x, ws);
  return score(ws.activations[num_layers()], labels);
}

Matrix Model::predict(const float* params, const MatrixView& x, Workspace& ws) const {
  forward(params, x, ws);
  return ws.activations[num_layers()];
}

}  // namespace custody
