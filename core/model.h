// Feed-forward classifiers on Eigen, described as a list of layers: dense (fully
// connected), conv2d ('valid' padding, stride 1), maxpool (square window, stride = window)
// and flatten, ending in a dense layer whose outputs go through a softmax. Softmax
// regression ({784, 10}) and the MLP ({784, 256, 128, 10}) are the dense-only instances,
// built from their layer sizes as before; the seeds' CNN is
// conv2d(32, 3) -> maxpool(2) -> flatten -> dense(128) -> dense(10) on 1x28x28 images.
// Dense and conv2d layers other than the last use the hidden activation, ReLU (the default)
// or tanh (bounded activations suit DP-SGD: clipped gradients lose less, Papernot et al.
// 2021, "Tempered Sigmoid Activations for Deep Learning with Differential Privacy").
//
// All parameters live in ONE flat float vector, so that the parameter servers can split
// it into key ranges without knowing about layers (see partition.h). Layout, layer by
// layer (layers without parameters take none):
//   dense:  W (out x in, column-major), then b (out);
//   conv2d: W as ONNX's [filters, in_channels, kh, kw] in row-major order, then b (filters).
// The dense layout is the one every checkpoint, TracIn, DP clipping and the MLP's ONNX
// export were written against; it did not change when convolutions were added.
// Samples are columns: a batch is a (features x batch) column-major matrix, which is the
// memory order of IDX images, so a batch is a view of the data set without copies. A
// sample with channels is stored channel-major (C, H, W), as ONNX's NCHW per sample, so
// that Flatten moves no data and a dense layer after it reads ONNX's flattened order.
//
// Convolutions are im2col + one Eigen GEMM per batch: the (batch*positions x C*kh*kw)
// patch matrix times the (C*kh*kw x filters) weights. Why not Eigen's Tensor
// SpatialConvolution: it does the same im2col-and-contract internally (through a tensor
// contraction, slower than Eigen's matrix GEMM at these shapes), and the patch matrix
// kept from the forward pass gives the weight gradient as one more GEMM. A ReLU conv
// followed by a max-pool (the seeds' CNN) is computed with its pool, eight filters at a
// time straight from the input, a sample at a time in L1: with 9 weights a filter the
// GEMM's packing and its 5.5 MB output for a batch of 64 cost more than its arithmetic
// (conv_relu_pool_forward in model.cc).
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
  std::vector<Matrix> activations;  // a_0 = input (unused: x itself) .. a_L = softmax output
  std::vector<Matrix> deltas;
  std::vector<Matrix> patches;                // conv2d layer l: its im2col matrix of the batch
  std::vector<std::vector<int32_t>> argmax;   // maxpool layer l: each output's input index
                                              // (pooled by a conv: its position in the GEMM
                                              // output's column)
  Matrix scratch, scratch2;                   // conv2d: outputs and deltas as (batch*P x F)
  // A conv2d computed with its pool (Stage::pools): its filters in blocks of eight and
  // their inputs' offsets, one row of pool windows' conv outputs or deltas, gradient sums.
  std::vector<float> conv_filters, conv_rows, conv_pooled, conv_sample, conv_total;
  std::vector<int32_t> conv_offsets, conv_argmax;
  Eigen::RowVectorXf scale;  // clipped_gradient_sum: each example's clipping factor
  std::vector<float> example_grad;  // clipped_gradient_sum of a model with conv layers
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

// One layer of a model description. kDense: `units` outputs; kConv2D: `units` filters of
// kernel x kernel; kMaxPool: kernel x kernel windows, stride kernel; kFlatten: none.
enum class LayerKind : uint8_t { kDense = 0, kConv2D = 1, kMaxPool = 2, kFlatten = 3 };
const char* to_string(LayerKind k);  // "dense", "conv2d", "maxpool", "flatten"

struct LayerSpec {
  LayerKind kind = LayerKind::kDense;
  int units = 0;   // dense: outputs; conv2d: filters
  int kernel = 0;  // conv2d: kernel side; maxpool: window side (= stride)
  bool operator==(const LayerSpec& o) const { return kind == o.kind && units == o.units && kernel == o.kernel; }
};

// A sample's shape: channels x height x width. Plain feature vectors are {features, 1, 1}.
struct Shape {
  int channels = 0, height = 1, width = 1;
  int64_t size() const { return static_cast<int64_t>(channels) * height * width; }
  bool flat() const { return height == 1 && width == 1; }
  bool operator==(const Shape& o) const {
    return channels == o.channels && height == o.height && width == o.width;
  }
};

class Model {
 public:
  // A dense-only model from its layer sizes {in, hidden..., classes}.
  // REQUIRES: at least 2 sizes, all > 0. Use make() for unchecked input.
  explicit Model(std::vector<int> layer_sizes, Activation hidden = Activation::kRelu);
  static Result<Model> make(std::vector<int> layer_sizes, Activation hidden = Activation::kRelu);
  // Any model: input shape and layers. Errors name the layer (1-based) and what is wrong:
  // a dense layer on an unflattened image, a kernel larger than its input, a last layer
  // that is not dense, more than 2^31 parameters or activations per sample.
  static Result<Model> make(Shape input, std::vector<LayerSpec> layers, Activation hidden = Activation::kRelu);

  // The model as one line of text, which checkpoints record and parse_architecture()
  // reads back: "1x28x28 conv2d:32:3 maxpool:2 flatten dense:128 dense:10" (input shape
  // CxHxW, then the layers). A dense-only model writes "784 dense:256 dense:10".
  std::string architecture() const;
  static Result<Model> parse_architecture(std::string_view text, Activation hidden = Activation::kRelu);

  // Each layer's output size per sample, after the input's: {784, 256, 128, 10} for the
  // MLP (its layer sizes, as before); for a CNN {784, 21632, 5408, 5408, 128, 10}.
  const std::vector<int>& layer_sizes() const { return sizes_; }
  const std::vector<LayerSpec>& layers() const { return specs_; }
  Shape input_shape() const { return input_; }
  // Only dense layers (softmax regression or an MLP): what the MLP-only paths (ONNX
  // export's Gemm chain, the layer_sizes checkpoint field) can describe.
  bool dense_only() const { return dense_only_; }
  int num_layers() const { return static_cast<int>(specs_.size()); }
  int input_size() const { return sizes_.front(); }
  int num_classes() const { return sizes_.back(); }
  size_t num_parameters() const { return num_params_; }
  Activation activation() const { return activation_; }

  // The named tensors inside the flat vector, in layout order, named by the layer's
  // 1-based position in the list: "layer1.weight" (dense: [out, in] stored column-major;
  // conv2d: [filters, in_channels, kh, kw] as ONNX expects), "layer1.bias" ([out]).
  // Checkpoints store each one.
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

  // Class probabilities (num_classes x batch) of the batch. Afterwards ws.activations holds
  // the last layer's input and output for the whole batch (TracIn reads them).
  Matrix predict(const float* params, const MatrixView& x, Workspace& ws) const;

 private:
  // A layer with its shapes and where its parameters start.
  struct Stage {
    LayerSpec spec;
    Shape in, out;
    size_t weights = 0, bias = 0;
    int fan_in = 0;        // inputs per output (for the initial weights' scale)
    bool activated = false;  // the hidden activation follows this layer
    // A ReLU conv2d followed by a maxpool is computed as one: the conv writes the pool's
    // output (max then ReLU, which commute) and its arg-max from the GEMM's output, and
    // the pool's backward writes the conv's deltas in the GEMM's layout (see conv_forward).
    bool pools = false;       // conv2d: the next layer (a maxpool) is computed with it
    bool pooled_by_conv = false;  // maxpool: computed by the conv2d before it
  };
  Model() = default;
  void forward(const float* params, const MatrixView& x, Workspace& ws) const;
  BatchStats score(const Matrix& probs, const uint8_t* labels) const;
  // Layer l's parameter gradients from its output deltas and its input, written into grad,
  // and (when below is not null) the deltas of its input, before the activation below it.
  void backward_layer(int l, const float* params, Matrix& delta, const MatrixView& in, Workspace& ws,
                      float* grad, Matrix* below) const;
  void conv_forward(int l, const float* params, const MatrixView& in, Workspace& ws) const;
  void conv_backward(int l, const float* params, const Matrix& delta, Workspace& ws, float* grad,
                     Matrix* below) const;
  void pool_forward(int l, const MatrixView& in, Workspace& ws) const;
  // Layer l (a conv2d with pools set) and the max-pool after it as one: ReLU(max + bias) of
  // each window straight from the input into ws.activations[l + 2], and the gradients back
  // from the pool's deltas (ws.deltas[l + 2]); no im2col, no conv activations.
  void conv_relu_pool_forward(int l, const float* params, const MatrixView& in, Workspace& ws) const;
  void conv_relu_pool_backward(int l, const float* params, const MatrixView& in, Workspace& ws, float* grad,
                               Matrix* below) const;
  struct PooledConv;
  PooledConv pooled_conv(int l, const float* params, Workspace& ws) const;
  // The per-example clipped sum of a model with conv or pool layers: one backward pass
  // per example (their per-example norms have no outer-product shortcut).
  BatchStats clipped_sum_by_example(const float* params, const MatrixView& x, const uint8_t* labels,
                                    float clip_norm, float* grad, Workspace& ws) const;

  // The activation's derivative at the activations a = act(z) of a hidden layer, applied to
  // the deltas flowing down into it.
  void activation_backward(const Matrix& a, Matrix& below) const;

  Shape input_;
  std::vector<LayerSpec> specs_;
  std::vector<Stage> stages_;
  std::vector<int> sizes_;
  Activation activation_ = Activation::kRelu;
  bool dense_only_ = true;
  size_t num_params_ = 0;
};

}  // namespace custody
