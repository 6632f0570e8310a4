#include "core/data_order.h"

#include <algorithm>
#include <numeric>
#include <random>
#include <string>

namespace custody {

std::vector<int64_t> epoch_order(uint64_t seed, uint32_t rank, uint32_t epoch, uint64_t shard_size) {
  std::vector<int64_t> order(shard_size);
  std::iota(order.begin(), order.end(), 0);
  // rank * 7919u wraps at 32 bits, as the unsigned int product always did.
  const uint32_t rank_term = rank * 7919u;
  std::mt19937_64 rng(seed * 1000003 + rank_term + epoch);
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

BatchOrder::BatchOrder(uint64_t seed, uint32_t rank, uint64_t shard_size, uint64_t steps_per_epoch,
                       uint32_t batch_size)
    : seed_(seed),
      rank_(rank),
      shard_size_(shard_size),
      steps_per_epoch_(steps_per_epoch),
      batch_size_(batch_size) {}

Result<BatchOrder> BatchOrder::make(uint64_t seed, uint32_t rank, uint64_t shard_size,
                                    uint64_t steps_per_epoch, uint32_t batch_size) {
  if (steps_per_epoch == 0 || batch_size == 0 || steps_per_epoch > shard_size / batch_size) {
    return invalid_argument(std::to_string(steps_per_epoch) + " steps of " + std::to_string(batch_size) +
                            " samples do not fit the assigned shard of " + std::to_string(shard_size));
  }
  return BatchOrder(seed, rank, shard_size, steps_per_epoch, batch_size);
}

const int64_t* BatchOrder::batch(uint64_t step) {
  const uint32_t epoch = epoch_of(step);
  if (epoch != epoch_) {
    order_ = epoch_order(seed_, rank_, epoch, shard_size_);
    epoch_ = epoch;
  }
  return order_.data() + (step % steps_per_epoch_) * batch_size_;
}

}  // namespace custody
