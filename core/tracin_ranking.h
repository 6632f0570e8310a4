// TracIn scores of a range of training records, reduced to the range's top K, and the merge
// of several ranges' top-K lists into the whole training set's: the part of attribution
// that runs wherever the records are (a worker scoring its shard, or the coordinator
// scoring all of them when no worker can; storage/attribution.h prepares the question).
//
// Order: a ranking lists the records with the highest scores first ("highest": proponents,
// or the largest self-influence) and, separately, those with the lowest first ("lowest":
// opponents). Equal scores are ordered by record index, lowest first (a run reads one data
// set, so (data set, index) is the index), so that the merge of any partition of the
// training set into ranges gives exactly the top K of the whole, whichever node scored
// which range. NaN scores (a checkpoint with non-finite values) are ranked below every
// number in both lists, never first.
// Thread-safety: pure functions; score_range runs on `threads` threads of its own and only
// reads the scorer and the records.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dataset.h"
#include "core/error.h"
#include "core/tracin.h"

namespace custody {

struct ScoredRecord {
  uint64_t index = 0;  // in the training set
  float score = 0;
  bool operator==(const ScoredRecord& o) const { return index == o.index && score == o.score; }
};

struct RangeRanking {
  std::vector<ScoredRecord> highest;  // at most K, highest score first
  std::vector<ScoredRecord> lowest;   // at most K, lowest score first (empty for self-influence)
  uint64_t scored = 0;                // records scored
};

// Whether a ranks before b in the highest-first (or lowest-first) list.
bool ranks_before(const ScoredRecord& a, const ScoredRecord& b, bool highest);

// The top k of scores[i] for records first_index + i, i < n. with_lowest: the lowest list
// too (a prediction's opponents).
RangeRanking rank_scores(const float* scores, size_t n, uint64_t first_index, uint32_t k, bool with_lowest);

// The top k of the union of the ranges' lists; `scored` sums. The ranges must not overlap.
RangeRanking merge_rankings(const std::vector<RangeRanking>& ranges, uint32_t k);

// Scores the records [begin, end) of `set` (its record `begin` is training record
// first_index: a shipped shard starts at 0, a whole file at the range's own index) with
// `scorer`: against its one test point (self_influence false; set_test() was called with
// one point) or by self-influence, and keeps the top k. Errors: an empty or out-of-bounds
// range, features that do not fit the model, a scorer without one test point (invalid
// argument).
Result<RangeRanking> score_range(const TracinScorer& scorer, const Model& model, const LabeledSet& set,
                                 int64_t begin, int64_t end, uint64_t first_index, bool self_influence,
                                 uint32_t k, unsigned threads);

// What scoring needs, wherever it runs: the model's shape, the checkpoints that shaped it
// with their TracIn weights, and the test point (or self-influence), with the K kept.
struct TracinQuestion {
  std::vector<int> layer_sizes;
  Activation activation = Activation::kRelu;
  std::string architecture;  // a model with conv layers (Model::architecture()); empty: layer_sizes
  std::vector<std::vector<float>> params;  // per checkpoint, the flat parameter vector
  std::vector<float> rates;                // per checkpoint, its learning-rate weight
  bool self_influence = false;
  std::vector<float> test_input;  // features values, model-scaled (prediction only)
  uint8_t test_label = 0;
  uint32_t top = 10;
};

// score_range for a question: builds the model and scorer, checks every checkpoint has
// the model's parameters and the test input its features (invalid argument, naming which).
Result<RangeRanking> score_records(const TracinQuestion& q, const LabeledSet& set, int64_t begin, int64_t end,
                                   uint64_t first_index, unsigned threads);

}  // namespace custody
