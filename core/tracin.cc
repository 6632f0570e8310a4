#include "core/tracin.h"

#include <cmath>
#include <string>

#include "core/optimizer.h"

namespace custody {

float learning_rate_at(const OptimizerConfig& optimizer, uint64_t step, uint64_t total_steps) {
  return scheduled_learning_rate(optimizer, static_cast<int64_t>(step), static_cast<int64_t>(total_steps));
}

float interval_learning_rate(const OptimizerConfig& optimizer, uint64_t from_step, uint64_t to_step,
                             uint64_t total_steps) {
  double sum = 0;
  for (uint64_t t = from_step; t < to_step; ++t) sum += learning_rate_at(optimizer, t, total_steps);
  return static_cast<float>(sum / static_cast<double>(to_step - from_step));
}

LastLayerFactors last_layer_factors(const Model& model, const float* params, const MatrixView& x,
                                    const uint8_t* labels, Workspace& ws) {
  LastLayerFactors f;
  f.errors = model.predict(params, x, ws);
  for (Eigen::Index i = 0; i < x.cols(); ++i) f.errors(labels[i], i) -= 1.0f;
  // predict() leaves every layer's output in ws.activations (model.h): the last layer's
  // input is the one below the softmax, or x itself when there is no hidden layer.
  const int layers = model.num_layers();
  if (layers == 1) {
    f.inputs = x;
  } else {
    f.inputs = std::move(ws.activations[layers - 1]);
  }
  return f;
}

Result<TracinScorer> TracinScorer::make(const Model& model, std::vector<TracinCheckpoint> checkpoints) {
  if (checkpoints.empty()) return invalid_argument("TracIn needs at least one checkpoint of the run");
  for (size_t c = 0; c < checkpoints.size(); ++c) {
    if (!checkpoints[c].params)
      return invalid_argument("checkpoint " + std::to_string(c) + " has no parameters");
    if (!std::isfinite(checkpoints[c].learning_rate)) {
      return invalid_argument("checkpoint " + std::to_string(c) + " has a non-finite learning rate");
    }
  }
  return TracinScorer(model, std::move(checkpoints));
}

void TracinScorer::set_test(const MatrixView& x, const uint8_t* labels) {
  Workspace ws;
  test_.clear();
  for (const auto& c : checkpoints_) test_.push_back(last_layer_factors(*model_, c.params, x, labels, ws));
}

void TracinScorer::score(const MatrixView& x, const uint8_t* labels, float* out, Workspace& ws) const {
  const Eigen::Index m = test_points(), n = x.cols();
  Eigen::Map<Matrix> scores(out, m, n);  // column i: record i's score for each test point
  scores.setZero();
  Matrix dot_e, dot_h;
  for (size_t c = 0; c < checkpoints_.size(); ++c) {
    const LastLayerFactors train = last_layer_factors(*model_, checkpoints_[c].params, x, labels, ws);
    const LastLayerFactors& test = test_[c];
    // <g, g'> = <e, e'> (<h, h'> + 1): weight gradient e h^T, bias gradient e.
    dot_e.noalias() = test.errors.transpose() * train.errors;
    dot_h.noalias() = test.inputs.transpose() * train.inputs;
    scores.array() += checkpoints_[c].learning_rate * dot_e.array() * (dot_h.array() + 1.0f);
  }
}

void TracinScorer::self_influence(const MatrixView& x, const uint8_t* labels, float* out,
                                  Workspace& ws) const {
  Eigen::Map<Eigen::RowVectorXf> scores(out, x.cols());
  scores.setZero();
  for (const auto& c : checkpoints_) {
    const LastLayerFactors f = last_layer_factors(*model_, c.params, x, labels, ws);
    scores.array() += c.learning_rate * f.errors.colwise().squaredNorm().array() *
                      (f.inputs.colwise().squaredNorm().array() + 1.0f);
  }
}

}  // namespace custody
