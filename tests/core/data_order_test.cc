// The per-epoch data order, which the resume guarantee rests on.
#include "core/data_order.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

namespace custody {
namespace {

// The order exactly as the worker drew it inline before it had a name: the orders must
// stay these, or every job trains another model.
std::vector<int64_t> order_as_first_written(uint64_t seed, uint32_t rank, uint32_t epoch, size_t n) {
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed * 1000003 + rank * 7919 + epoch);
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

TEST(DataOrderTest, EpochOrdersAreTheOnesJobsHaveAlwaysTrainedOn) {
  EXPECT_EQ(epoch_order(42, 0, 1, 10), (std::vector<int64_t>{0, 3, 9, 2, 7, 8, 1, 4, 5, 6}));
  EXPECT_EQ(epoch_order(42, 1, 1, 10), (std::vector<int64_t>{0, 4, 2, 1, 8, 5, 3, 6, 9, 7}));
  EXPECT_EQ(epoch_order(42, 0, 2, 10), (std::vector<int64_t>{7, 8, 6, 3, 4, 2, 1, 9, 0, 5}));
  EXPECT_EQ(epoch_order(7, 3, 5, 12), (std::vector<int64_t>{9, 6, 4, 3, 10, 0, 1, 2, 8, 7, 11, 5}));
  for (uint64_t seed : {0ull, 42ull, 0xFFFFFFFFFFFFull}) {
    for (uint32_t rank : {0u, 1u, 7u, 600000u}) {  // 600000 * 7919 wraps at 32 bits
      for (uint32_t epoch : {1u, 2u, 100u}) {
        EXPECT_EQ(epoch_order(seed, rank, epoch, 257), order_as_first_written(seed, rank, epoch, 257))
            << "seed " << seed << " rank " << rank << " epoch " << epoch;
      }
    }
  }
}

TEST(DataOrderTest, AnEpochOrderIsADeterministicPermutationOfTheShard) {
  for (uint64_t n : {0ull, 1ull, 2ull, 1000ull}) {
    std::vector<int64_t> order = epoch_order(42, 1, 3, n);
    EXPECT_EQ(order, epoch_order(42, 1, 3, n));
    std::vector<int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> identity(n);
    std::iota(identity.begin(), identity.end(), 0);
    EXPECT_EQ(sorted, identity) << "every sample of a shard of " << n << " exactly once";
  }
}

TEST(DataOrderTest, OrdersDifferFromEpochToEpochRankToRankAndSeedToSeed) {
  const std::vector<int64_t> base = epoch_order(42, 0, 1, 1000);
  EXPECT_NE(base, epoch_order(42, 0, 2, 1000));
  EXPECT_NE(base, epoch_order(42, 1, 1, 1000));
  EXPECT_NE(base, epoch_order(43, 0, 1, 1000));
  std::vector<int64_t> identity(1000);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_NE(base, identity);
}

std::vector<int64_t> samples_of(BatchOrder& order, uint64_t step) {
  const int64_t* b = order.batch(step);
  return std::vector<int64_t>(b, b + order.batch_size());
}

// 7 steps of 8 samples an epoch over a shard of 60: 4 samples sit out each epoch.
TEST(DataOrderTest, AStepsBatchIsItsSliceOfItsEpochsOrder) {
  BatchOrder order = BatchOrder::make(42, 1, 60, 7, 8).value();
  EXPECT_EQ(order.epoch_of(0), 1u);
  EXPECT_EQ(order.epoch_of(6), 1u);
  EXPECT_EQ(order.epoch_of(7), 2u);
  EXPECT_TRUE(order.ends_epoch(6));
  EXPECT_FALSE(order.ends_epoch(7));
  const std::vector<int64_t> second_epoch = epoch_order(42, 1, 2, 60);
  EXPECT_EQ(samples_of(order, 9), std::vector<int64_t>(second_epoch.begin() + 16, second_epoch.begin() + 24));
}

// The resume guarantee: a task started at step S (from a checkpoint) sees, step for step,
// the batches the uninterrupted task saw from S on, wherever S lies in its epoch.
TEST(DataOrderTest, ATaskResumedAtAnyStepSeesTheBatchesOfTheUninterruptedRun) {
  const uint64_t steps_per_epoch = 7, epochs = 4;
  BatchOrder uninterrupted = BatchOrder::make(42, 1, 60, steps_per_epoch, 8).value();
  std::vector<std::vector<int64_t>> seen;
  for (uint64_t step = 0; step < epochs * steps_per_epoch; ++step)
    seen.push_back(samples_of(uninterrupted, step));
  for (uint64_t start : {1ull, 6ull, 7ull, 8ull, 20ull, 27ull}) {
    BatchOrder resumed = BatchOrder::make(42, 1, 60, steps_per_epoch, 8).value();
    for (uint64_t step = start; step < epochs * steps_per_epoch; ++step) {
      ASSERT_EQ(samples_of(resumed, step), seen[step]) << "resumed at " << start << ", step " << step;
    }
  }
}

TEST(DataOrderTest, StepsThatDoNotFitTheShardAreRefused) {
  EXPECT_EQ(BatchOrder::make(1, 0, 60, 8, 8).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(BatchOrder::make(1, 0, 60, 0, 8).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(BatchOrder::make(1, 0, 60, 7, 0).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(BatchOrder::make(1, 0, 60, 8, 8)
                .status()
                .message()
                .find("8 steps of 8 samples do not fit the assigned "
                      "shard of 60"),
            std::string::npos);
  EXPECT_TRUE(BatchOrder::make(1, 0, 64, 8, 8).is_ok());
}

}  // namespace
}  // namespace custody
