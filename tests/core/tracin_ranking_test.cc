#include "core/tracin_ranking.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace custody {
namespace {

// Scores with many ties (few distinct values), so that tie-breaking decides the order.
std::vector<float> tied_scores(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> s(n);
  for (auto& v : s) v = static_cast<float>(static_cast<int>(rng() % 21) - 10) * 0.25f;
  return s;
}

TEST(TracinRanking, MergedTopKOfAnyPartitionIsTheTopKOfTheWholeTiesByIndex) {
  const size_t n = 5000;
  const auto scores = tied_scores(n, 3);
  const uint32_t k = 37;
  const RangeRanking whole = rank_scores(scores.data(), n, 0, k, true);
  ASSERT_EQ(whole.highest.size(), k);
  ASSERT_EQ(whole.lowest.size(), k);
  // The whole's order: by score, then by index.
  for (size_t i = 1; i < k; ++i) {
    const auto &a = whole.highest[i - 1], &b = whole.highest[i];
    EXPECT_TRUE(a.score > b.score || (a.score == b.score && a.index < b.index)) << i;
    const auto &c = whole.lowest[i - 1], &d = whole.lowest[i];
    EXPECT_TRUE(c.score < d.score || (c.score == d.score && c.index < d.index)) << i;
  }
  EXPECT_EQ(whole.highest.front().score, 2.5f);
  EXPECT_EQ(whole.lowest.front().score, -2.5f);
  std::mt19937_64 rng(9);
  for (int trial = 0; trial < 20; ++trial) {
    // Random cut points; the ranges handed to the merge in a shuffled order.
    std::vector<size_t> cuts = {0, n};
    for (int c = 0; c < 1 + trial % 6; ++c) cuts.push_back(rng() % n);
    std::sort(cuts.begin(), cuts.end());
    std::vector<RangeRanking> parts;
    for (size_t c = 1; c < cuts.size(); ++c) {
      parts.push_back(rank_scores(scores.data() + cuts[c - 1], cuts[c] - cuts[c - 1], cuts[c - 1], k, true));
    }
    std::shuffle(parts.begin(), parts.end(), rng);
    const RangeRanking merged = merge_rankings(parts, k);
    EXPECT_EQ(merged.scored, n);
    EXPECT_EQ(merged.highest, whole.highest) << "trial " << trial;
    EXPECT_EQ(merged.lowest, whole.lowest) << "trial " << trial;
  }
}

TEST(TracinRanking, NaNScoresRankLastInBothLists) {
  std::vector<float> s = {NAN, 1.0f, -1.0f, NAN, 0.0f};
  const RangeRanking r = rank_scores(s.data(), s.size(), 100, 5, true);
  ASSERT_EQ(r.highest.size(), 5u);
  EXPECT_EQ(r.highest[0].index, 101u);
  EXPECT_EQ(r.lowest[0].index, 102u);
  EXPECT_TRUE(std::isnan(r.highest[3].score));
  EXPECT_EQ(r.highest[3].index, 100u);  // NaNs among themselves by index
  EXPECT_TRUE(std::isnan(r.lowest[4].score));
}

LabeledSet random_set(int features, int64_t n, int classes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  LabeledSet set;
  set.count = n;
  set.features = features;
  set.pixels.resize(static_cast<size_t>(n) * features);
  set.labels.resize(static_cast<size_t>(n));
  for (auto& p : set.pixels) p = static_cast<uint8_t>(rng());
  for (auto& l : set.labels) l = static_cast<uint8_t>(rng() % classes);
  return set;
}

TracinQuestion question(const Model& model, bool self_influence) {
  TracinQuestion q;
  q.layer_sizes = model.layer_sizes();
  for (int c = 0; c < 3; ++c) {
    q.params.push_back(model.initial_parameters(static_cast<uint64_t>(40 + c)));
    q.rates.push_back(0.1f / static_cast<float>(c + 1));
  }
  q.self_influence = self_influence;
  std::mt19937_64 rng(5);
  for (int i = 0; i < model.input_size(); ++i) q.test_input.push_back(static_cast<float>(rng() % 256) / 255.0f);
  q.test_label = 2;
  q.top = 25;
  return q;
}

// What workers do: each scores its range; the coordinator merges. Same records, same order.
TEST(TracinRanking, RangesScoredApartAndMergedEqualTheWholeScoredAtOnce) {
  const Model model({20, 8, 4});
  const LabeledSet set = random_set(20, 7000, 4, 1);
  for (bool self : {false, true}) {
    const TracinQuestion q = question(model, self);
    auto whole = score_records(q, set, 0, set.count, 0, 2);
    ASSERT_TRUE(whole.is_ok()) << whole.status().message();
    std::vector<RangeRanking> parts;
    for (auto [b, e] : {std::pair<int64_t, int64_t>{0, 2333}, {2333, 4666}, {4666, 7000}}) {
      auto part = score_records(q, set, b, e, static_cast<uint64_t>(b), 1);
      ASSERT_TRUE(part.is_ok()) << part.status().message();
      parts.push_back(std::move(part).value());
    }
    const RangeRanking merged = merge_rankings(parts, q.top);
    EXPECT_EQ(merged.scored, 7000u);
    ASSERT_EQ(merged.highest.size(), whole->highest.size());
    ASSERT_EQ(merged.lowest.size(), self ? 0u : 25u);
    for (size_t i = 0; i < merged.highest.size(); ++i) {
      EXPECT_EQ(merged.highest[i].index, whole->highest[i].index) << i;
      EXPECT_NEAR(merged.highest[i].score, whole->highest[i].score, 1e-6f * std::abs(whole->highest[i].score));
    }
    for (size_t i = 0; i < merged.lowest.size(); ++i) EXPECT_EQ(merged.lowest[i].index, whole->lowest[i].index) << i;
  }
}

// A shipped shard holds only its records: its record 0 is training record `first_index`.
TEST(TracinRanking, AShardHeldAloneIsNamedByItsTrainingSetIndices) {
  const Model model({20, 8, 4});
  const LabeledSet set = random_set(20, 3000, 4, 2);
  LabeledSet shard;
  shard.count = 1000;
  shard.features = 20;
  shard.pixels.assign(set.pixels.begin() + 2000 * 20, set.pixels.end());
  shard.labels.assign(set.labels.begin() + 2000, set.labels.end());
  const TracinQuestion q = question(model, false);
  auto in_file = score_records(q, set, 2000, 3000, 2000, 1);
  auto alone = score_records(q, shard, 0, 1000, 2000, 1);
  ASSERT_TRUE(in_file.is_ok() && alone.is_ok());
  EXPECT_EQ(in_file->highest.front().index, alone->highest.front().index);
  EXPECT_GE(alone->highest.front().index, 2000u);
}

TEST(TracinRanking, RefusesARangeOutsideTheRecordsAndCheckpointsOfAnotherModel) {
  const Model model({20, 8, 4});
  const LabeledSet set = random_set(20, 100, 4, 3);
  TracinQuestion q = question(model, false);
  auto outside = score_records(q, set, 50, 101, 50, 1);
  ASSERT_FALSE(outside.is_ok());
  EXPECT_NE(outside.status().message().find("[50, 101)"), std::string::npos) << outside.status().message();
  q.params[1].pop_back();
  auto short_params = score_records(q, set, 0, 100, 0, 1);
  ASSERT_FALSE(short_params.is_ok());
  EXPECT_NE(short_params.status().message().find("checkpoint 1"), std::string::npos);
  q = question(model, false);
  q.test_input.resize(3);
  EXPECT_FALSE(score_records(q, set, 0, 100, 0, 1).is_ok());
  q = question(model, false);
  q.test_label = 9;
  EXPECT_FALSE(score_records(q, set, 0, 100, 0, 1).is_ok());
}

}  // namespace
}  // namespace custody
