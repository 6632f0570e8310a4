// Update rules that run on the parameter servers, one instance per key range.
//
// An optimizer owns the per-parameter state of its key range (momentum buffer, Adam
// moments) and updates that range in place from a gradient of the same length.
// Its state is checkpointed with the values (export_state/import_state), so a job resumed
// from a checkpoint continues the update it interrupted instead of restarting momentum.
// Thread-safety: none; each parameter-server shard owns its optimizers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"

namespace custody {

struct OptimizerConfig {
  enum class Kind { kSgd, kMomentum, kAdam };
  Kind kind = Kind::kMomentum;
  float learning_rate = 0.05f;  // Default: 0.05
  float momentum = 0.9f;        // momentum only. Default: 0.9
  float beta1 = 0.9f;           // adam only
  float beta2 = 0.999f;         // adam only
  float epsilon = 1e-8f;        // adam only
  float weight_decay = 0.0f;    // L2 penalty added to the gradient. Default: 0
  enum class Schedule { kConstant, kCosine };
  // kCosine anneals the learning rate from learning_rate to 0 over the job's steps.
  Schedule schedule = Schedule::kConstant;
};

// The learning rate at update `step` (0-based) of `total_steps`.
float scheduled_learning_rate(const OptimizerConfig& config, int64_t step, int64_t total_steps);

const char* to_string(OptimizerConfig::Kind kind);
Result<OptimizerConfig::Kind> parse_optimizer_kind(const std::string& name);

// An optimizer's state, for checkpoints. Layout: `values` is state_tensor_names(kind).size()
// blocks of size() floats each, one per name in that order, each indexed like the key range
// (so a block can be sliced and reassembled by key like the parameters themselves):
//   sgd: none;  momentum: {velocity};  adam: {m (first moment), v (second moment)}.
// `steps` is the number of updates the state has absorbed (Adam's bias-correction step t;
// the others count too, but do not use it).
struct OptimizerState {
  std::vector<float> values;
  uint64_t steps = 0;
};

// The names of an optimizer's per-parameter state blocks, in layout order.
const std::vector<std::string>& state_tensor_names(OptimizerConfig::Kind kind);

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // REQUIRES: params and grad each hold size() floats.
  virtual void apply(float* params, const float* grad) = 0;
  // The update for the mean of several gradients, given as `partial` (the sum of all but
  // the last one), `last`, and `scale` (1 / their count): BSP's last push of a step. The
  // mean is formed in the update's own pass instead of being written out first (the
  // last push is on every step's critical path). Equals apply() of (partial + last) * scale.
  // REQUIRES: params, partial and last each hold size() floats.
  virtual void apply_mean(float* params, const float* partial, const float* last, float scale);
  // Runs task(0) .. task(n - 1), possibly several at once on other threads, and returns
  // when all have returned (a ForkJoin's run(), protocols/fork_join.h).
  using ParallelRun = std::function<void(size_t n, const std::function<void(size_t)>& task)>;
  // apply_mean, its keys cut into `parts` contiguous ranges (64-byte multiples) that `run`
  // updates: the same result to the bit as apply_mean, since each key's update reads and
  // writes only that key's value and state, in the same operations. A parameter server
  // uses it for BSP's last push, when every worker waits for the update and the cores are
  // idle. An optimizer that updates only its whole range at once runs apply_mean on this
  // thread instead (none now: Adam takes its bias corrections from the step count before
  // the parts run, and counts the update once after them).
  void apply_mean_split(float* params, const float* partial, const float* last, float scale, size_t parts,
                        const ParallelRun& run);
  virtual size_t size() const = 0;
  virtual void set_learning_rate(float lr) = 0;
  // The state in the layout above; a fresh optimizer's is all zeros.
  virtual OptimizerState export_state() const = 0;
  // Continues from an exported state instead of zeros. Errors: values that are not
  // state_tensor_names(kind).size() * size() floats (invalid argument, naming both).
  [[nodiscard]] virtual Status import_state(const OptimizerState& state) = 0;

 protected:
  // Whether apply_mean_keys is implemented (otherwise apply_mean_split runs apply_mean).
  virtual bool splits() const { return false; }
  // Keys [begin, end) of one apply_mean update; count_update() then counts it once.
  virtual void apply_mean_keys(float* /*params*/, const float* /*partial*/, const float* /*last*/,
                               float /*scale*/, size_t /*begin*/, size_t /*end*/) {}
  virtual void count_update() {}
};

// An optimizer for a key range of `size` parameters.
std::unique_ptr<Optimizer> make_optimizer(const OptimizerConfig& config, size_t size);

}  // namespace custody
