#include "core/optimizer.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

namespace custody {
namespace {

using Span = Eigen::Map<Eigen::ArrayXf>;
using ConstSpan = Eigen::Map<const Eigen::ArrayXf>;

class Sgd final : public Optimizer {
 public:
  Sgd(const OptimizerConfig& c, size_t n) : c_(c), n_(n) {}
  void apply(float* params, const float* grad) override {
    Span p(params, n_);
    ConstSpan g(grad, n_);
    p -= c_.learning_rate * (g + c_.weight_decay * p);
  }
  void apply_mean(float* params, const float* partial, const float* last, float scale) override {
    Span p(params, n_);
    ConstSpan s(partial, n_), g(last, n_);
    p -= c_.learning_rate * ((s + g) * scale + c_.weight_decay * p);
  }
  size_t size() const override { return n_; }
  void set_learning_rate(float lr) override { c_.learning_rate = lr; }

 private:
  OptimizerConfig c_;
  size_t n_;
};

// Heavy-ball momentum as in PyTorch: v = mu*v + g; p -= lr*v.
class Momentum final : public Optimizer {
 public:
  Momentum(const OptimizerConfig& c, size_t n) : c_(c), v_(Eigen::ArrayXf::Zero(n)) {}
  void apply(float* params, const float* grad) override {
    Span p(params, v_.size());
    ConstSpan g(grad, v_.size());
    v_ = c_.momentum * v_ + g + c_.weight_decay * p;
    p -= c_.learning_rate * v_;
  }
  void apply_mean(float* params, const float* partial, const float* last, float scale) override {
    Span p(params, v_.size());
    ConstSpan s(partial, v_.size()), g(last, v_.size());
    v_ = c_.momentum * v_ + (s + g) * scale + c_.weight_decay * p;
    p -= c_.learning_rate * v_;
  }
  size_t size() const override { return v_.size(); }
  void set_learning_rate(float lr) override { c_.learning_rate = lr; }

 private:
  OptimizerConfig c_;
  Eigen::ArrayXf v_;
};

class Adam final : public Optimizer {
 public:
  Adam(const OptimizerConfig& c, size_t n)
      : c_(c), m_(Eigen::ArrayXf::Zero(n)), v_(Eigen::ArrayXf::Zero(n)) {}
  void apply(float* params, const float* grad) override {
    Span p(params, m_.size());
    ConstSpan g0(grad, m_.size());
    Eigen::ArrayXf g = g0 + c_.weight_decay * p;
    ++t_;
    m_ = c_.beta1 * m_ + (1 - c_.beta1) * g;
    v_ = c_.beta2 * v_ + (1 - c_.beta2) * g.square();
    const float bc1 = 1.0f - std::pow(c_.beta1, static_cast<float>(t_));
    const float bc2 = 1.0f - std::pow(c_.beta2, static_cast<float>(t_));
    p -= c_.learning_rate * (m_ / bc1) / ((v_ / bc2).sqrt() + c_.epsilon);
  }
  size_t size() const override { return m_.size(); }
  void set_learning_rate(float lr) override { c_.learning_rate = lr; }

 private:
  OptimizerConfig c_;
  Eigen::ArrayXf m_, v_;
  int64_t t_ = 0;
};

}  // namespace

void Optimizer::apply_mean(float* params, const float* partial, const float* last, float scale) {
  Eigen::ArrayXf mean = (ConstSpan(partial, size()) + ConstSpan(last, size())) * scale;
  apply(params, mean.data());
}

float scheduled_learning_rate(const OptimizerConfig& config, int64_t step, int64_t total_steps) {
  if (config.schedule == OptimizerConfig::Schedule::kConstant || total_steps <= 0) {
    return config.learning_rate;
  }
  const double progress = std::min(1.0, double(step) / double(total_steps));
  return static_cast<float>(0.5 * config.learning_rate * (1.0 + std::cos(M_PI * progress)));
}

const char* to_string(OptimizerConfig::Kind kind) {
  switch (kind) {
    case OptimizerConfig::Kind::kSgd: return "sgd";
    case OptimizerConfig::Kind::kMomentum: return "momentum";
    case OptimizerConfig::Kind::kAdam: return "adam";
  }
  return "?";
}

Result<OptimizerConfig::Kind> parse_optimizer_kind(const std::string& name) {
  if (name == "sgd") return OptimizerConfig::Kind::kSgd;
  if (name == "momentum") return OptimizerConfig::Kind::kMomentum;
  if (name == "adam") return OptimizerConfig::Kind::kAdam;
  return invalid_argument("unknown optimizer '" + name + "' (expected sgd, momentum or adam)");
}

std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config, size_t size) {
  switch (config.kind) {
    case OptimizerConfig::Kind::kSgd: return std::make_unique<Sgd>(config, size);
    case OptimizerConfig::Kind::kMomentum: return std::make_unique<Momentum>(config, size);
    case OptimizerConfig::Kind::kAdam: return std::make_unique<Adam>(config, size);
  }
  return nullptr;
}

}  // namespace custody
