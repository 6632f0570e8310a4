#include "core/partition.h"

#include <string>

namespace custody {

Result<std::vector<KeyRange>> partition_range(uint64_t n, uint32_t k) {
  if (k == 0) return invalid_argument("cannot split " + std::to_string(n) + " items into 0 parts");
  if (k > n) {
    return invalid_argument("cannot split " + std::to_string(n) + " items into " +
                            std::to_string(k) + " non-empty parts");
  }
  std::vector<KeyRange> parts(k);
  for (uint32_t i = 0; i < k; ++i) {
    // 128-bit products would only matter past 2^32 parts of 2^32 items; n*i fits for
    // any model or data set this cluster holds (n < 2^40, k < 2^20).
    parts[i].begin = n * i / k;
    parts[i].end = n * (i + 1) / k;
  }
  return parts;
}

}  // namespace custody
