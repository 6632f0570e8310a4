// Feed-forward classifiers on Eigen: softmax regression and the MLP, whose hidden layers
// use ReLU (the default) or tanh (bounded activations suit DP-SGD: clipped gradients lose
// less, Papernot et al. 2021, "Tempered Sigmoid Activations for Deep Learning with
// Differential Privacy").
//
// A model is its layer sizes, e.g. {784, 256, 128, 10}; {784, 10} is softmax regression.
// All parameters live in ONE flat float vector, so that the parameter servers can split
// it into key ranges without knowing about layers (see partition.h). Layout, layer by
// layer l = 1..L:  W_l (out_l x in_l, column-major), then b_l (out_l).
// Samples are columns: a batch is a (features x batch) column-major matrix, which is the
// memory order of IDX images, so a batch is a view of the data set without copies.
//
// Thread-safety: Model is immutable after construction; Workspace is per thread.
#pragma once

#include <Eigen/Dense>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace custody {

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
using Vector = Eigen::Matrix<float, Eigen::Dynamic, 1>;
using MatrixView = Eigen::Map<const Matrix>;

// Scratch space of one forward/backward pass, reused across steps so that the hot loop
// allocates nothing once the batch size has been seen.
struct Workspace {
  std::vector<Matrix> activations;  // a_0 = input .. a_L = softmax output
  std::vector<Matrix> deltas;
  Eigen::RowVectorXf scale;  // clipped_gradient_sum: each example's clipping factor
};

// The hidden layers' activation ("relu", "tanh" in job files, checkpoints and model cards).
enum class Activation : uint8_t { kRelu = 0, kTanh = 1 };
const char* to_string(Activation a);
std::optional<Activation> parse_activation(std::string_view name);

struct BatchStats {
  double loss_sum = 0;  // sum over samples of the cross-entropy
  int64_t correct = 0;  // samples whose arg-max matches the label
  int64_t samples = 0;
};

class Model {
 public:
  // REQUIRES: at least 2 sizes, all > 0. Use make() for unchecked input.
  explicit Model(std::vector<int> layer_sizes, Activation hidden = Activation::kRelu);
  static Result<Model> make(std::vector<int> layer_sizes, Activation hidden = Activation::kRelu);

  const std::vector<int>& layer_sizes() const { return sizes_; }
  int num_layers() const { return static_cast<int>(sizes_.size()) - 1; }
  int input_size() const { return sizes_.front(); }
  int num_classes() const { return sizes_.back(); }
  size_t num_parameters() const { return num_params_; }
  Activation activation() const { return activation_; }

  // The named tensors inside the flat vector: "layer1.weight" (out x in, column-major),
  // "layer1.bias" (out), ... in layout order; checkpoints store each one.
  struct Tensor {
    std::string name;
    size_t offset, size;
    std::vector<int> shape;
  };
  std::vector<Tensor> tensors() const;

  // Weights normal with stddev sqrt(2/fan_in) (He, for ReLU) or sqrt(1/fan_in) (LeCun,
  // for tanh, which has unit gain near 0), zero biases; the same seed gives the same vector
  // on every machine of the same build.
  std::vector<float> initial_parameters(uint64_t seed) const;

  // Mean cross-entropy gradient of the batch, written into grad (num_parameters()).
  // Returns the batch's loss sum and accuracy counts.
  // REQUIRES: params.size() == grad.size() == num_parameters(); x.rows() == input_size();
  //           labels has x.cols() entries, each < num_classes().
  BatchStats gradient(const float* params, const MatrixView& x, const uint8_t* labels,
                      float* grad, Workspace& ws) const;

  // DP-SGD's step on a batch (Abadi et al. 2016): the SUM over the batch of every example's
  // cross-entropy gradient clipped to L2 norm clip_norm, written into grad; each example
  // thus moves the sum by at most clip_norm. The norms need no per-example gradient: a
  // dense layer's weight gradient for example i is the outer product delta_i a_i^T, whose
  // Frobenius norm is ||delta_i|| ||a_i|| (Goodfellow 2015, "Efficient per-example
  // gradient computations"), and its bias gradient is delta_i. One backward pass keeps
  // every layer's deltas, takes the norms, scales each example's deltas by
  // min(1, C / ||g_i||) (backpropagation is linear in the top delta, so this scales the
  // example's whole gradient) and forms the layers' gradients from the scaled deltas.
  // An empty batch (Poisson sampling may draw none) gives a zero gradient.
  // REQUIRES: as gradient(); clip_norm > 0.
  BatchStats clipped_gradient_sum(const float* params, const MatrixView& x, const uint8_t* labels, float clip_norm,
                                  float* grad, Workspace& ws) const;

  // Loss and accuracy counts without a gradient.
  BatchStats evaluate(const float* params, const MatrixView& x, const uint8_t* labels,
                      Workspace& ws) const;

  // Class probabilities (num_classes x batch) of the batch.
  Matrix predict(const float* params, const MatrixView& x, Workspace& ws) const;

 private:
  struct LayerOffsets {
    size_t weights;
    size_t bias;
  };
  void forward(const float* params, const MatrixView& x, Workspace& ws) const;
  BatchStats score(const Matrix& probs, const uint8_t* labels) const;
  // Layer l's weight and bias gradients from its output deltas and its input (x for the
  // first layer, the activations below otherwise), written into grad.
  void write_layer_gradient(int l, const Matrix& delta, const MatrixView& x, const Workspace& ws, float* grad) const;

  // The activation's derivative at the activations a = act(z) of hidden layer l, applied to
  // the deltas flowing down into it.
  void activation_backward(const Matrix& a, Matrix& below) const;

  std::vector<int> sizes_;
  Activation activation_ = Activation::kRelu;
  std::vector<LayerOffsets> offsets_;
  size_t num_params_ = 0;
};

}  // namespace custody
