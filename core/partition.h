// How the flat parameter vector is split across parameter servers, and how a data set
// is split across workers.
//
// Both use the same rule, so that it is documented and tested once:
//   n items over k parts; part i gets [i*n/k, (i+1)*n/k) (integer division).
// Parts are contiguous, cover every item exactly once, in order, and their sizes differ
// by at most one. Contiguous key ranges keep pushes and pulls as one block per server
// (no key lists on the wire), and the rule needs no state: any node that knows n and k
// computes the same ranges.
#pragma once

#include <cstdint>
#include <vector>

#include "core/error.h"

namespace custody {

struct KeyRange {
  uint64_t begin = 0;  // first index
  uint64_t end = 0;    // one past the last
  uint64_t size() const { return end - begin; }
  bool operator==(const KeyRange& o) const { return begin == o.begin && end == o.end; }
};

// REQUIRES nothing: k == 0 or k > n is an invalid-argument error.
Result<std::vector<KeyRange>> partition_range(uint64_t n, uint32_t k);

}  // namespace custody
