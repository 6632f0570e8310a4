// A checkpoint assembled from its servers' shards: every value and optimizer state block
// lands at its key, step counts and contributions combine as the servers' semantics say,
// and a shard that does not fit its range is refused by name.
#include "actors/checkpoint_assembly.h"

#include <gtest/gtest.h>

namespace custody::actors {
namespace {

using Kind = OptimizerConfig::Kind;

// Server ps-1 holds keys [0, 3), ps-2 holds [3, 5) of 5 parameters. Value at key k is k;
// Adam's two blocks hold 100 + k (m) and 200 + k (v).
msg::CheckpointShard shard(uint64_t begin, uint64_t end, bool with_state, uint64_t optimizer_steps) {
  msg::CheckpointShard s;
  s.step = 40;
  s.range_begin = begin;
  for (uint64_t k = begin; k < end; ++k) s.values.push_back(static_cast<float>(k));
  if (with_state) {
    for (float base : {100.f, 200.f})
      for (uint64_t k = begin; k < end; ++k) s.optimizer_state.push_back(base + static_cast<float>(k));
  }
  s.optimizer_steps = optimizer_steps;
  return s;
}

msg::Contribution contribution(const std::string& worker, uint32_t rank, uint64_t accepted, double norm) {
  msg::Contribution c;
  c.worker = worker;
  c.rank = rank;
  c.accepted = accepted;
  c.samples = accepted * 32;
  c.rejected = 1;
  c.update_norm_sum = norm;
  c.staleness_max = 2;
  c.staleness_sum = 7;
  return c;
}

std::vector<msg::AssignTask> two_tasks() {
  std::vector<msg::AssignTask> tasks(2);
  for (uint32_t r = 0; r < 2; ++r) {
    tasks[r].rank = r;
    tasks[r].shard = {"d4t4", r, 2, r * 50, (r + 1) * 50};
  }
  return tasks;
}

TEST(CheckpointAssemblyTest, ValuesAndOptimizerBlocksLandAtTheirKeys) {
  std::map<std::string, msg::CheckpointShard> shards{{"ps-1", shard(0, 3, true, 40)},
                                                     {"ps-2", shard(3, 5, true, 39)}};
  auto a = assemble_checkpoint(shards, 5, Kind::kAdam, {"worker-1", "worker-2"}, two_tasks(), 20, 40);
  EXPECT_EQ(a.values, (std::vector<float>{0, 1, 2, 3, 4}));
  ASSERT_TRUE(a.optimizer.has_value());
  EXPECT_FALSE(a.optimizer_incomplete);
  EXPECT_EQ(a.optimizer->kind, Kind::kAdam);
  EXPECT_EQ(a.optimizer->state.values, (std::vector<float>{100, 101, 102, 103, 104, 200, 201, 202, 203, 204}));
  EXPECT_EQ(a.optimizer->state.steps, 39u) << "the smallest count of the servers' applied updates";
  EXPECT_FALSE(a.final);
}

TEST(CheckpointAssemblyTest, AServerWithoutOptimizerStateLeavesNoneButTheValues) {
  std::map<std::string, msg::CheckpointShard> shards{{"ps-1", shard(0, 3, true, 40)},
                                                     {"ps-2", shard(3, 5, false, 40)}};
  auto a = assemble_checkpoint(shards, 5, Kind::kMomentum, {"worker-1"}, {}, 0, 40);
  EXPECT_FALSE(a.optimizer.has_value());
  EXPECT_TRUE(a.optimizer_incomplete);
  EXPECT_EQ(a.values, (std::vector<float>{0, 1, 2, 3, 4}));

  auto sgd = assemble_checkpoint(shards, 5, Kind::kSgd, {"worker-1"}, {}, 0, 40);
  EXPECT_FALSE(sgd.optimizer.has_value());
  EXPECT_FALSE(sgd.optimizer_incomplete) << "plain SGD keeps no state: nothing is missing";
}

TEST(CheckpointAssemblyTest, ContributionsCombineOverServersAndOnlyTheRanksNodeGetsItsShard) {
  auto s1 = shard(0, 3, false, 40), s2 = shard(3, 5, false, 40);
  s1.contributions = {contribution("worker-1", 0, 20, 1.5), contribution("worker-9", 1, 3, 0.5)};
  s2.contributions = {contribution("worker-1", 0, 20, 2.0), contribution("worker-9", 1, 3, 0.25)};
  s2.final = true;
  std::map<std::string, msg::CheckpointShard> shards{{"ps-1", s1}, {"ps-2", s2}};
  // Rank 1 runs on worker-2; worker-9 pushed for it (a stale node of an old placement).
  auto a = assemble_checkpoint(shards, 5, Kind::kSgd, {"worker-1", "worker-2"}, two_tasks(), 20, 40);
  EXPECT_TRUE(a.final);
  ASSERT_EQ(a.contributions.size(), 2u);
  const WorkerContribution& w1 = a.contributions.at("worker-1|0");
  EXPECT_EQ(w1.accepted, 20u) << "each server sees every accepted push: not summed";
  EXPECT_EQ(w1.samples, 640u);
  EXPECT_EQ(w1.rejected, 2u) << "rejections add up over the ranges";
  EXPECT_DOUBLE_EQ(w1.update_norm_sum, 3.5);
  EXPECT_EQ(w1.staleness_max, 2u);
  EXPECT_EQ(w1.interval_begin, 20u);
  EXPECT_EQ(w1.interval_end, 40u);
  EXPECT_EQ(w1.shard.dataset_hash, "d4t4");
  EXPECT_EQ(w1.shard.end, 50u);
  const WorkerContribution& stale = a.contributions.at("worker-9|1");
  EXPECT_TRUE(stale.shard.dataset_hash.empty()) << "a node that did not run the rank is not credited with its data";
}

TEST(CheckpointAssemblyTest, AShardThatDoesNotFitItsRangeIsRefusedByName) {
  const KeyRange range{3, 5};
  EXPECT_EQ(check_shard(shard(3, 5, true, 1), range, Kind::kAdam, "ps-2"), "");
  EXPECT_EQ(check_shard(shard(3, 5, false, 1), range, Kind::kAdam, "ps-2"), "") << "no state at all is allowed";
  EXPECT_NE(check_shard(shard(2, 5, false, 1), range, Kind::kAdam, "ps-2").find("ps-2 sent a checkpoint shard that is not its key range"),
            std::string::npos);
  EXPECT_NE(check_shard(shard(3, 4, false, 1), range, Kind::kAdam, "ps-2"), "");
  auto half = shard(3, 5, true, 1);
  half.optimizer_state.resize(2);  // one block of two
  const std::string why = check_shard(half, range, Kind::kAdam, "ps-2");
  EXPECT_NE(why.find("2 floats of adam state for a key range of 2 (expected 4)"), std::string::npos) << why;
}

}  // namespace
}  // namespace custody::actors
