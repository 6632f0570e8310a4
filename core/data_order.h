// The order in which a worker visits the samples of its shard, epoch by epoch, and which
// samples each step's batch takes.
//
// Each epoch's order is a permutation of the shard's indices [0, shard_size) drawn from
// (seed, rank, epoch) alone; nothing carries over from one epoch to the next. The resume
// guarantee rests on this: a task that starts at step S (from a checkpoint) draws the
// same permutation for S's epoch as the uninterrupted run did and starts at the same
// place in it, so it trains on exactly the batches that run would have from S on, and a
// resumed BSP job ends on the uninterrupted model bit for bit
// (tests/integration/recovery_test.cc).
//
// The draw is fixed: std::shuffle of the identity with a std::mt19937_64 seeded with
// seed * 1000003 + rank * 7919 + epoch (rank * 7919 in 32 bits, as it always was).
// Changing it changes the model every job trains, and a job resumed by an older build
// from a newer build's checkpoint would no longer repeat the uninterrupted run.
// std::shuffle's algorithm is the standard library's, so the orders are those of
// libstdc++ (tests/core/data_order_test.cc pins some).
//
// Thread-safety: epoch_order is a pure function; a BatchOrder belongs to one trainer.
#pragma once

#include <cstdint>
#include <vector>

#include "core/error.h"

namespace custody {

// A permutation of [0, shard_size): the order of rank `rank`'s shard in epoch `epoch`
// (epochs count from 1) of a job with `seed`.
std::vector<int64_t> epoch_order(uint64_t seed, uint32_t rank, uint32_t epoch, uint64_t shard_size);

// Which samples of the shard each step trains on. Steps count from the job's start
// (step 0), epochs from 1: step t is step t % steps_per_epoch of epoch
// t / steps_per_epoch + 1, and its batch is the samples at positions
// [(t % steps_per_epoch) * batch_size, + batch_size) of that epoch's order. A batch is a
// function of the step alone, whichever step the task started at. The samples at the end
// of an epoch's order that fill no whole batch are not used in that epoch.
class BatchOrder {
 public:
  // Errors (invalid argument): steps_per_epoch or batch_size is 0, or steps_per_epoch
  // batches of batch_size do not fit in the shard.
  static Result<BatchOrder> make(uint64_t seed, uint32_t rank, uint64_t shard_size, uint64_t steps_per_epoch,
                                 uint32_t batch_size);

  uint32_t epoch_of(uint64_t step) const { return static_cast<uint32_t>(step / steps_per_epoch_) + 1; }
  // Whether `step` is its epoch's last.
  bool ends_epoch(uint64_t step) const { return step % steps_per_epoch_ == steps_per_epoch_ - 1; }
  uint32_t batch_size() const { return batch_size_; }

  // The shard indices of step `step`'s batch (batch_size() of them), valid until the next
  // call. Draws the epoch's order when the step lies in another epoch than the last call's.
  const int64_t* batch(uint64_t step);

 private:
  BatchOrder(uint64_t seed, uint32_t rank, uint64_t shard_size, uint64_t steps_per_epoch,
             uint32_t batch_size);

  uint64_t seed_;
  uint32_t rank_;
  uint64_t shard_size_;
  uint64_t steps_per_epoch_;
  uint32_t batch_size_;
  uint32_t epoch_ = 0;  // of `order_`; 0: none drawn yet
  std::vector<int64_t> order_;
};

}  // namespace custody
