#include "actors/checkpoint_assembly.h"

#include <algorithm>

namespace custody::actors {

std::string check_shard(const msg::CheckpointShard& shard, const KeyRange& range, OptimizerConfig::Kind optimizer,
                        const std::string& server) {
  if (shard.range_begin != range.begin || shard.values.size() != range.size()) {
    return server + " sent a checkpoint shard that is not its key range";
  }
  const size_t blocks = state_tensor_names(optimizer).size();
  if (!shard.optimizer_state.empty() && shard.optimizer_state.size() != blocks * range.size()) {
    return server + " sent " + std::to_string(shard.optimizer_state.size()) + " floats of " + to_string(optimizer) +
           " state for a key range of " + std::to_string(range.size()) + " (expected " +
           std::to_string(blocks * range.size()) + ")";
  }
  return "";
}

AssembledCheckpoint assemble_checkpoint(const std::map<std::string, msg::CheckpointShard>& shards,
                                        uint64_t num_parameters, OptimizerConfig::Kind optimizer,
                                        const std::vector<std::string>& workers,
                                        const std::vector<msg::AssignTask>& tasks, uint64_t interval_begin,
                                        uint64_t step) {
  AssembledCheckpoint out;
  out.values.resize(num_parameters);
  const size_t blocks = state_tensor_names(optimizer).size();
  storage::OptimizerCheckpoint state;
  state.kind = optimizer;
  state.state.values.resize(blocks * num_parameters);
  bool whole_state = blocks > 0;
  bool first = true;
  for (const auto& [server_id, shard] : shards) {
    const auto begin = static_cast<std::ptrdiff_t>(shard.range_begin);
    std::copy(shard.values.begin(), shard.values.end(), out.values.begin() + begin);
    if (shard.optimizer_state.empty()) whole_state = false;
    const auto size = static_cast<std::ptrdiff_t>(shard.values.size());
    for (size_t b = 0; whole_state && b < blocks; ++b) {
      const auto from = shard.optimizer_state.begin() + static_cast<std::ptrdiff_t>(b) * size;
      std::copy(from, from + size,
                state.state.values.begin() + static_cast<std::ptrdiff_t>(b * num_parameters) + begin);
    }
    // Every server applies the same updates (BSP: one per step), so their counts agree;
    // under ASP a push refused by one server alone (a non-finite value in its range) makes
    // them differ by that push, and the smallest is kept.
    state.state.steps = first ? shard.optimizer_steps : std::min(state.state.steps, shard.optimizer_steps);
    first = false;
    out.final = out.final || shard.final;
    for (const auto& c : shard.contributions) {
      // Every server sees each accepted push once: steps and samples are the same on each;
      // norms and rejections add up over the ranges.
      WorkerContribution& w = out.contributions[c.worker + "|" + std::to_string(c.rank)];
      w.worker = c.worker;
      w.rank = c.rank;
      w.accepted = std::max(w.accepted, c.accepted);
      w.samples = std::max(w.samples, c.samples);
      w.rejected += c.rejected;
      w.update_norm_sum += c.update_norm_sum;
      w.staleness_max = std::max(w.staleness_max, c.staleness_max);
      w.staleness_sum = std::max(w.staleness_sum, c.staleness_sum);
      w.interval_begin = interval_begin;
      w.interval_end = step;
      if (!c.key_fingerprint.empty()) w.key_fingerprints[server_id] = c.key_fingerprint;
      w.unauthenticated += c.unauthenticated;
    }
  }
  for (auto& [key, c] : out.contributions) {
    // Only the node that ran a rank is credited with its shard.
    if (c.rank < tasks.size() && c.rank < workers.size() && workers[c.rank] == c.worker) {
      c.shard = tasks[c.rank].shard;
    }
  }
  out.optimizer_incomplete = blocks > 0 && !whole_state;
  if (whole_state) out.optimizer = std::move(state);
  return out;
}

}  // namespace custody::actors
