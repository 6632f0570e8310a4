#include "core/optimizer.h"

#include <Eigen/Core>
#include <algorithm>
#include <cmath>

namespace custody {
namespace {

using Span = Eigen::Map<Eigen::ArrayXf>;
using ConstSpan = Eigen::Map<const Eigen::ArrayXf>;

Status check_state_size(OptimizerConfig::Kind kind, const OptimizerState& state, size_t n) {
  const size_t blocks = state_tensor_names(kind).size();
  if (state.values.size() == blocks * n) return Status::ok();
  return invalid_argument(std::string(to_string(kind)) + " state of " + std::to_string(state.values.size()) +
                          " floats for a key range of " + std::to_string(n) + " (expected " +
                          std::to_string(blocks) + " blocks of " + std::to_string(n) + ")");
}

// Copies `blocks` out of / into the state's flat layout.
OptimizerState export_blocks(std::initializer_list<const Eigen::ArrayXf*> blocks, uint64_t steps) {
  OptimizerState s;
  s.steps = steps;
  for (const auto* b : blocks) s.values.insert(s.values.end(), b->data(), b->data() + b->size());
  return s;
}
void import_blocks(const OptimizerState& s, std::initializer_list<Eigen::ArrayXf*> blocks) {
  size_t offset = 0;
  for (auto* b : blocks) {
    *b = ConstSpan(s.values.data() + offset, b->size());
    offset += static_cast<size_t>(b->size());
  }
}

class Sgd final : public Optimizer {
 public:
  Sgd(const OptimizerConfig& c, size_t n) : c_(c), n_(n) {}
  void apply(float* params, const float* grad) override {
    Span p(params, n_);
    ConstSpan g(grad, n_);
    p -= c_.learning_rate * (g + c_.weight_decay * p);
  }
  void apply_mean(float* params, const float* partial, const float* last, float scale) override {
    apply_mean_keys(params, partial, last, scale, 0, n_);
  }
  size_t size() const override { return n_; }
  void set_learning_rate(float lr) override { c_.learning_rate = lr; }
  OptimizerState export_state() const override { return {}; }
  Status import_state(const OptimizerState& state) override {
    return check_state_size(OptimizerConfig::Kind::kSgd, state, n_);
  }

 protected:
  bool splits() const override { return true; }
  void apply_mean_keys(float* params, const float* partial, const float* last, float scale, size_t begin,
                       size_t end) override {
    const auto n = static_cast<Eigen::Index>(end - begin);
    Span p(params + begin, n);
    ConstSpan s(partial + begin, n), g(last + begin, n);
    p -= c_.learning_rate * ((s + g) * scale + c_.weight_decay * p);
  }

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
    ++t_;
  }
  void apply_mean(float* params, const float* partial, const float* last, float scale) override {
    apply_mean_keys(params, partial, last, scale, 0, static_cast<size_t>(v_.size()));
    count_update();
  }
  size_t size() const override { return v_.size(); }
  void set_learning_rate(float lr) override { c_.learning_rate = lr; }
  OptimizerState export_state() const override { return export_blocks({&v_}, t_); }
  Status import_state(const OptimizerState& state) override {
    CUSTODY_RETURN_IF_ERROR(check_state_size(OptimizerConfig::Kind::kMomentum, state, size()));
    import_blocks(state, {&v_});
    t_ = state.steps;
    return Status::ok();
  }

 protected:
  bool splits() const override { return true; }
  void apply_mean_keys(float* params, const float* partial, const float* last, float scale, size_t begin,
                       size_t end) override {
    const auto b = static_cast<Eigen::Index>(begin), n = static_cast<Eigen::Index>(end - begin);
    Span p(params + begin, n);
    ConstSpan s(partial + begin, n), g(last + begin, n);
    auto v = v_.segment(b, n);
    v = c_.momentum * v + (s + g) * scale + c_.weight_decay * p;
    p -= c_.learning_rate * v;
  }
  void count_update() override { ++t_; }

 private:
  OptimizerConfig c_;
  Eigen::ArrayXf v_;
  uint64_t t_ = 0;
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
  void apply_mean(float* params, const float* partial, const float* last, float scale) override {
    apply_mean_keys(params, partial, last, scale, 0, static_cast<size_t>(m_.size()));
    count_update();
  }
  size_t size() const override { return m_.size(); }
  void set_learning_rate(float lr) override { c_.learning_rate = lr; }
  OptimizerState export_state() const override { return export_blocks({&m_, &v_}, t_); }
  Status import_state(const OptimizerState& state) override {
    CUSTODY_RETURN_IF_ERROR(check_state_size(OptimizerConfig::Kind::kAdam, state, size()));
    import_blocks(state, {&m_, &v_});
    t_ = state.steps;
    return Status::ok();
  }

 protected:
  bool splits() const override { return true; }
  // The update of keys [begin, end) at step t_ + 1 (count_update() then counts it): the
  // bias corrections depend only on the step, so any cut of the keys gives the same values.
  // One pass over the keys in blocks that stay in L1, each statement the same per-key
  // expression as the mean's then apply()'s separate passes over the whole range (which
  // wrote two temporaries of the range's size and read every array again for each
  // statement): the same values to the bit (OptimizerTest).
  void apply_mean_keys(float* params, const float* partial, const float* last, float scale, size_t begin,
                       size_t end) override {
    const float bc1 = 1.0f - std::pow(c_.beta1, static_cast<float>(t_ + 1));
    const float bc2 = 1.0f - std::pow(c_.beta2, static_cast<float>(t_ + 1));
    constexpr size_t kBlock = 512;  // 2 KiB of each of the six arrays
    alignas(64) float buffer[kBlock];
    for (size_t b = begin; b < end; b += kBlock) {
      const auto n = static_cast<Eigen::Index>(std::min(kBlock, end - b));
      const auto at = static_cast<Eigen::Index>(b);
      Span p(params + b, n), g(buffer, n);
      g = (ConstSpan(partial + b, n) + ConstSpan(last + b, n)) * scale;
      g = g + c_.weight_decay * p;
      auto m = m_.segment(at, n);
      auto v = v_.segment(at, n);
      m = c_.beta1 * m + (1 - c_.beta1) * g;
      v = c_.beta2 * v + (1 - c_.beta2) * g.square();
      p -= c_.learning_rate * (m / bc1) / ((v / bc2).sqrt() + c_.epsilon);
    }
  }
  void count_update() override { ++t_; }

 private:
  OptimizerConfig c_;
  Eigen::ArrayXf m_, v_;
  uint64_t t_ = 0;
};

}  // namespace

void Optimizer::apply_mean(float* params, const float* partial, const float* last, float scale) {
  Eigen::ArrayXf mean = (ConstSpan(partial, size()) + ConstSpan(last, size())) * scale;
  apply(params, mean.data());
}

void Optimizer::apply_mean_split(float* params, const float* partial, const float* last, float scale,
                                 size_t parts, const ParallelRun& run) {
  const size_t n = size();
  // Each part a whole number of 64-byte lines, so that no two threads write one line.
  constexpr size_t kLine = 16;
  const size_t per = parts == 0 ? n : ((n + parts - 1) / parts + kLine - 1) / kLine * kLine;
  if (!splits() || parts < 2 || per >= n) {
    apply_mean(params, partial, last, scale);
    return;
  }
  run((n + per - 1) / per,
      [&](size_t i) { apply_mean_keys(params, partial, last, scale, i * per, std::min(n, (i + 1) * per)); });
  count_update();
}

float scheduled_learning_rate(const OptimizerConfig& config, int64_t step, int64_t total_steps) {
  if (config.schedule == OptimizerConfig::Schedule::kConstant || total_steps <= 0) {
    return config.learning_rate;
  }
  const double progress = std::min(1.0, double(step) / double(total_steps));
  return static_cast<float>(0.5 * config.learning_rate * (1.0 + std::cos(M_PI * progress)));
}

const std::vector<std::string>& state_tensor_names(OptimizerConfig::Kind kind) {
  static const std::vector<std::string> kNone, kMomentum{"velocity"}, kAdam{"m", "v"};
  switch (kind) {
    case OptimizerConfig::Kind::kSgd: return kNone;
    case OptimizerConfig::Kind::kMomentum: return kMomentum;
    case OptimizerConfig::Kind::kAdam: return kAdam;
  }
  return kNone;
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
