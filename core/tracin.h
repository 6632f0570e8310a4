// Training-data attribution with TracInCP (Pruthi et al. 2020, "Estimating Training Data
// Influence by Tracing Gradient Descent"), restricted to the last layer's gradient.
//
// The influence of a training record z = (x, y) on a test point z' = (x', y') is
//   TracInCP(z, z') = sum over the run's checkpoints c of lr_c * <g_c(z), g_c(z')>
// where g_c is the gradient of the cross-entropy loss at checkpoint c's weights and lr_c
// the learning rate in effect at c's step. A positive score marks a proponent (training on
// z lowered the loss of z'), a negative one an opponent. Self-influence is TracInCP(z, z).
//
// Which gradient: the last layer's weights and bias only. For softmax cross-entropy the
// last layer's weight gradient is the outer product e h^T, with e = p - onehot(y) (the
// softmax output minus the label) and h the last layer's input (the last hidden layer's
// activations; for softmax regression the scaled input itself), and its bias gradient is e.
// So
//   <g(z), g(z')> = <e, e'> * <h, h'> + <e, e'> = <e, e'> * (<h, h'> + 1)
// and no per-example gradient is ever formed: one forward pass per checkpoint gives every
// record's e and h, and a record's score costs (classes + hidden) multiply-adds per test
// point. The lower layers' gradients are left out; Pruthi et al. (section 3.2) and later
// work find the last layer carries most of the signal for ranking, at a fraction of the
// cost (a full-gradient dot product would cost a backward pass per record and checkpoint).
//
// Limits: the learning rate stands in for the optimizer's step; with momentum or Adam the
// update is not lr * gradient, so the scores approximate what the run did (TracIn's own
// caveat); checkpoints sample the run, so influence between checkpoints is extrapolated
// from them.
// Thread-safety: TracinScorer is immutable after set_test(); each thread passes its own
// Workspace.
#pragma once

#include <cstdint>
#include <vector>

#include "core/error.h"
#include "core/model.h"
#include "core/optimizer.h"

namespace custody {

// One checkpoint of a run as TracIn weighs it. The parameters are borrowed, not owned.
struct TracinCheckpoint {
  const float* params = nullptr;  // the model's flat parameter vector at the checkpoint
  float learning_rate = 0;        // lr in effect at the checkpoint's step
};

// The learning rate a run's optimizer applied at update `step` (0-based): the job's
// schedule over its epochs * steps_per_epoch steps, as the parameter servers apply it (the
// schedule depends only on the fraction of the run done, under BSP, ASP and SSP alike).
float learning_rate_at(const OptimizerConfig& optimizer, uint64_t step, uint64_t total_steps);

// The weight TracInCP gives a checkpoint: the step size between checkpoints (Pruthi et al.
// 2020, eq. 3), taken as the mean learning rate of the updates [from_step, to_step) that
// led to the checkpoint at to_step from the one before it (from_step; 0 for the first).
// The checkpoint's gradient stands for that interval. (The rate at the checkpoint's own
// step would give a cosine schedule's last checkpoint a weight of 0.)
// REQUIRES: from_step < to_step.
float interval_learning_rate(const OptimizerConfig& optimizer, uint64_t from_step, uint64_t to_step,
                             uint64_t total_steps);

// Every record's last-layer factors at one checkpoint: e = p - onehot(y) (classes x n) and
// h, the last layer's input (hidden x n).
struct LastLayerFactors {
  Matrix errors;
  Matrix inputs;
};
// REQUIRES: params has model.num_parameters() floats; labels has x.cols() entries < classes.
LastLayerFactors last_layer_factors(const Model& model, const float* params, const MatrixView& x,
                                    const uint8_t* labels, Workspace& ws);

class TracinScorer {
 public:
  // Errors: no checkpoints, a null parameter vector, or a non-finite learning rate
  // (invalid argument, naming which).
  static Result<TracinScorer> make(const Model& model, std::vector<TracinCheckpoint> checkpoints);

  // The test points (features x m, scaled as the model's inputs are) and their labels: the
  // label a test point's gradient is taken for (the answering model's prediction, or one
  // the caller names). REQUIRES: x.rows() == model.input_size(); labels < classes.
  void set_test(const MatrixView& x, const uint8_t* labels);
  int test_points() const { return static_cast<int>(test_.empty() ? 0 : test_.front().errors.cols()); }

  // TracInCP scores of training records x (features x n) with labels: out[i * m + j] is
  // record i's score for test point j (m = test_points()). REQUIRES: set_test() was called;
  // out holds n * m floats.
  void score(const MatrixView& x, const uint8_t* labels, float* out, Workspace& ws) const;

  // Each record's self-influence, sum over checkpoints of lr_c * ||g_c(z)||^2 (last layer):
  // out[i] for record i. Needs no test points.
  void self_influence(const MatrixView& x, const uint8_t* labels, float* out, Workspace& ws) const;

  size_t checkpoints() const { return checkpoints_.size(); }

 private:
  TracinScorer(const Model& model, std::vector<TracinCheckpoint> checkpoints)
      : model_(&model), checkpoints_(std::move(checkpoints)) {}
  const Model* model_;
  std::vector<TracinCheckpoint> checkpoints_;
  std::vector<LastLayerFactors> test_;  // per checkpoint, the test points' factors
};

}  // namespace custody
