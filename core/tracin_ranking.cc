#include "core/tracin_ranking.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <string>
#include <thread>

namespace custody {
namespace {

// Records scored per pass: a (features x chunk) float matrix per thread, 6 MB for
// Fashion-MNIST, and each checkpoint's activations of the chunk.
constexpr int64_t kChunk = 2048;

std::vector<ScoredRecord> top(std::vector<ScoredRecord> all, uint32_t k, bool highest) {
  const size_t n = std::min<size_t>(k, all.size());
  auto before = [highest](const ScoredRecord& a, const ScoredRecord& b) { return ranks_before(a, b, highest); };
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(), before);
  all.resize(n);
  return all;
}

}  // namespace

bool ranks_before(const ScoredRecord& a, const ScoredRecord& b, bool highest) {
  const bool na = std::isnan(a.score), nb = std::isnan(b.score);
  if (na != nb) return nb;  // numbers before NaN in both lists
  if (!na && a.score != b.score) return highest ? a.score > b.score : a.score < b.score;
  return a.index < b.index;
}

RangeRanking rank_scores(const float* scores, size_t n, uint64_t first_index, uint32_t k, bool with_lowest) {
  std::vector<ScoredRecord> all(n);
  for (size_t i = 0; i < n; ++i) all[i] = {first_index + i, scores[i]};
  RangeRanking r;
  r.scored = n;
  if (with_lowest) r.lowest = top(all, k, false);
  r.highest = top(std::move(all), k, true);
  return r;
}

RangeRanking merge_rankings(const std::vector<RangeRanking>& ranges, uint32_t k) {
  std::vector<ScoredRecord> highest, lowest;
  RangeRanking merged;
  for (const auto& r : ranges) {
    highest.insert(highest.end(), r.highest.begin(), r.highest.end());
    lowest.insert(lowest.end(), r.lowest.begin(), r.lowest.end());
    merged.scored += r.scored;
  }
  merged.highest = top(std::move(highest), k, true);
  merged.lowest = top(std::move(lowest), k, false);
  return merged;
}

Result<RangeRanking> score_range(const TracinScorer& scorer, const Model& model, const LabeledSet& set,
                                 int64_t begin, int64_t end, uint64_t first_index, bool self_influence,
                                 uint32_t k, unsigned threads) {
  if (begin < 0 || begin >= end || end > set.count) {
    return invalid_argument("records [" + std::to_string(begin) + ", " + std::to_string(end) +
                            ") are not a range of the " + std::to_string(set.count) + " records held");
  }
  if (set.features != model.input_size()) {
    return invalid_argument("the records have " + std::to_string(set.features) + " features, the model takes " +
                            std::to_string(model.input_size()));
  }
  if (!self_influence && scorer.test_points() != 1) {
    return invalid_argument("a prediction's records are scored against one test point, not " +
                            std::to_string(scorer.test_points()));
  }
  for (int64_t i = begin; i < end; ++i) {
    if (set.labels[static_cast<size_t>(i)] >= model.num_classes()) {
      return invalid_argument("record " + std::to_string(first_index + static_cast<uint64_t>(i - begin)) +
                              " has label " + std::to_string(set.labels[static_cast<size_t>(i)]) +
                              ", not a class of the model");
    }
  }
  std::vector<float> out(static_cast<size_t>(end - begin));
  std::atomic<int64_t> next{begin};
  auto work = [&] {
    Workspace ws;
    for (int64_t b; (b = next.fetch_add(kChunk)) < end;) {
      const int64_t e = std::min(end, b + kChunk);
      const Matrix x = features(set, b, e);
      const MatrixView view(x.data(), x.rows(), x.cols());
      float* dst = out.data() + (b - begin);
      if (self_influence) {
        scorer.self_influence(view, set.labels.data() + b, dst, ws);
      } else {
        scorer.score(view, set.labels.data() + b, dst, ws);
      }
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < std::max(1u, threads); ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  return rank_scores(out.data(), out.size(), first_index, k, !self_influence);
}

Result<RangeRanking> score_records(const TracinQuestion& q, const LabeledSet& set, int64_t begin, int64_t end,
                                   uint64_t first_index, unsigned threads) {
  CUSTODY_ASSIGN_OR_RETURN(Model model, q.architecture.empty() ? Model::make(q.layer_sizes, q.activation)
                                                                : Model::parse_architecture(q.architecture, q.activation));
  if (q.params.size() != q.rates.size()) {
    return invalid_argument(std::to_string(q.params.size()) + " checkpoints but " + std::to_string(q.rates.size()) +
                            " learning rates");
  }
  std::vector<TracinCheckpoint> cps;
  for (size_t c = 0; c < q.params.size(); ++c) {
    if (q.params[c].size() != model.num_parameters()) {
      return invalid_argument("checkpoint " + std::to_string(c) + " has " + std::to_string(q.params[c].size()) +
                              " parameters, the model " + std::to_string(model.num_parameters()));
    }
    cps.push_back({q.params[c].data(), q.rates[c]});
  }
  CUSTODY_ASSIGN_OR_RETURN(TracinScorer scorer, TracinScorer::make(model, std::move(cps)));
  if (!q.self_influence) {
    if (q.test_input.size() != static_cast<size_t>(model.input_size())) {
      return invalid_argument("the test input has " + std::to_string(q.test_input.size()) +
                              " values, the model takes " + std::to_string(model.input_size()));
    }
    if (q.test_label >= model.num_classes()) {
      return invalid_argument("test label " + std::to_string(q.test_label) + " is not a class of the model");
    }
    scorer.set_test(MatrixView(q.test_input.data(), model.input_size(), 1), &q.test_label);
  }
  return score_range(scorer, model, set, begin, end, first_index, q.self_influence, q.top, threads);
}

}  // namespace custody
