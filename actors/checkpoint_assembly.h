// Assembling one checkpoint from the shards its parameter servers send (checkpointShard):
// each server's key range of the values and of the optimizer state, and what it counted of
// each worker's pushes. A pure function, unit-tested in
// tests/actors/checkpoint_assembly_test.cc; CoordinatorState records the result.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "actors/custody_recorder.h"
#include "core/optimizer.h"
#include "core/partition.h"
#include "protocols/messages.h"
#include "storage/checkpoint.h"

namespace custody::actors {

// "" if the shard covers exactly the server's key range, with none or all of the
// optimizer's state for it; else what is wrong, naming the server.
std::string check_shard(const msg::CheckpointShard& shard, const KeyRange& range, OptimizerConfig::Kind optimizer,
                        const std::string& server);

struct AssembledCheckpoint {
  std::vector<float> values;  // every parameter
  // The optimizer's state over every parameter; absent if the optimizer keeps none, or if
  // a server sent none (a server from before optimizer state was checkpointed).
  std::optional<storage::OptimizerCheckpoint> optimizer;
  bool optimizer_incomplete = false;  // the optimizer keeps state, and a server sent none
  bool final = false;                 // a server says this is the run's last step
  // Per worker and rank ("worker|rank"), summed over the servers.
  std::map<std::string, WorkerContribution> contributions;
};

// The checkpoint of `step` from every server's shard (by server id), each already checked
// with check_shard. Values and each optimizer state block are placed by key: block b of a
// server's range [begin, end) goes to [b * n + begin, b * n + end). A contribution's shard
// of the data is credited only to the node that ran that rank in `tasks` / `workers`. The
// interval is (interval_begin, step].
AssembledCheckpoint assemble_checkpoint(const std::map<std::string, msg::CheckpointShard>& shards,
                                        uint64_t num_parameters, OptimizerConfig::Kind optimizer,
                                        const std::vector<std::string>& workers,
                                        const std::vector<msg::AssignTask>& tasks, uint64_t interval_begin,
                                        uint64_t step);

}  // namespace custody::actors
