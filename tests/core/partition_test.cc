#include "core/partition.h"

#include <gtest/gtest.h>

namespace custody {
namespace {

TEST(PartitionTest, CoversEveryKeyOnceInOrderWithBalancedSizes) {
  for (uint64_t n : {1ull, 2ull, 7ull, 10ull, 235146ull, 60000ull}) {
    for (uint32_t k = 1; k <= 9 && k <= n; ++k) {
      auto parts = partition_range(n, k);
      ASSERT_TRUE(parts.is_ok());
      ASSERT_EQ(parts->size(), k);
      EXPECT_EQ(parts->front().begin, 0u);
      EXPECT_EQ(parts->back().end, n);
      uint64_t smallest = n, largest = 0;
      for (uint32_t i = 0; i < k; ++i) {
        if (i > 0) {
          EXPECT_EQ((*parts)[i].begin, (*parts)[i - 1].end) << "gap or overlap at part " << i;
        }
        EXPECT_GT((*parts)[i].size(), 0u);
        smallest = std::min(smallest, (*parts)[i].size());
        largest = std::max(largest, (*parts)[i].size());
      }
      EXPECT_LE(largest - smallest, 1u) << n << " over " << k;
    }
  }
}

TEST(PartitionTest, DocumentedRuleForTheDefaultModelOverTwoServers) {
  auto parts = partition_range(235146, 2).value();
  EXPECT_EQ(parts[0], (KeyRange{0, 117573}));
  EXPECT_EQ(parts[1], (KeyRange{117573, 235146}));
}

TEST(PartitionTest, RefusesZeroPartsAndMorePartsThanKeys) {
  EXPECT_EQ(partition_range(10, 0).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(partition_range(3, 4).status().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace custody
